#pragma once

// Helpers shared by tuple.cc and filter.cc; not part of the module's API.

#include <string>
#include <string_view>

#include "aquifer/schema/schema.h"
#include "aquifer/schema/value.h"

namespace aquifer::keys {

// The alternative of schema::Value::v that holds a Record (Array and Record
// are the same C++ type, so they are told apart by index).
inline constexpr size_t kRecordValueIndex = 9;

// A short name of a type for messages, ignoring nullability: "long",
// "timestamp-millis", "uuid", "fixed(16)", "enum Color".
std::string TypeName(const schema::Type& type);

// What a Value holds, for messages: "null", "integer", "string", ...
std::string_view ValueKindName(const schema::Value& value);

}  // namespace aquifer::keys
