#pragma once

// Text forms shared by the schema parser (defaults) and the codecs. Internal to
// the schema module.

#include <cstdint>
#include <string>
#include <string_view>

#include "aquifer/base/status.h"

namespace aquifer::schema::internal {

// "8-4-4-4-12" hex (either case) to 16 raw bytes; false if malformed.
bool ParseUuidText(std::string_view text, std::string* raw16);
// 16 raw bytes to lowercase "8-4-4-4-12".
std::string FormatUuid(std::string_view raw16);


// Exact decimal text ("-12.50", "1e3", "+0.5") to the unscaled value as
// minimal big-endian two's complement bytes (or sign-extended to `fixed_size`
// bytes when it is > 0). Errors (no rounding ever): malformed text, more
// significant fraction digits than `scale`, more than `precision` digits, or
// the value does not fit `fixed_size`. The message has no path.
Result<std::string> DecimalTextToBytes(std::string_view text, int precision, int scale,
                                       int fixed_size);
// Unscaled two's complement bytes to text with exactly `scale` fraction digits.
// `digits` receives the number of decimal digits of the unscaled magnitude.
std::string DecimalBytesToText(std::string_view bytes, int scale, int* digits = nullptr);
// Minimal two's complement form of `bytes` (non-empty input).
std::string MinimalTwosComplement(std::string_view bytes);

bool IsValidUtf8(std::string_view text);

}  // namespace aquifer::schema::internal
