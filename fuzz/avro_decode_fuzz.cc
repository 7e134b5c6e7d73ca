// Fuzzes DecodeAvro with arbitrary bytes on a fixed schema covering every
// type. Any input must give a Value or a Corruption error. A Value must
// re-encode to bytes that decode to the same Value, and survive JSON
// (WriteJson then ParseJsonRecord) unchanged; any mismatch aborts.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "aquifer/schema/codec.h"
#include "aquifer/schema/testing_schemas.h"

using namespace aquifer::schema;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const SchemaPtr schema = *Schema::Parse(testing::kRichSchemaJson, {"id"});
  std::string_view avro(reinterpret_cast<const char*>(data), size);
  auto value = DecodeAvro(*schema, avro);
  if (!value.ok()) {
    if (value.status().code() != aquifer::StatusCode::kCorruption) std::abort();
    return 0;
  }
  std::string encoded;
  if (!EncodeAvro(*schema, *value, &encoded).ok()) std::abort();
  auto decoded = DecodeAvro(*schema, encoded);
  if (!decoded.ok() || !testing::SameValue(*value, *decoded)) std::abort();
  std::string json;
  WriteJson(*schema, *value, &json);
  auto reparsed = ParseJsonRecord(*schema, json);
  if (!reparsed.ok()) {
    std::fprintf(stderr, "JSON %s did not parse back: %s\n", json.c_str(), reparsed.status().ToString().c_str());
    std::abort();
  }
  if (!testing::SameValue(*value, *reparsed)) {
    std::fprintf(stderr, "JSON round trip changed the value: %s\n", json.c_str());
    std::abort();
  }
  return 0;
}
