#pragma once

// Text encodings shared across modules: standard base64 (RFC 4648), hex, and
// JSON string escaping.

#include <cstdint>
#include <string>
#include <string_view>

namespace aquifer {

// Appends the base64 of `bytes`, always padded.
void AppendBase64(std::string* out, std::string_view bytes);
std::string Base64Encode(std::string_view bytes);
// Decodes standard base64; padding is optional. False (and `out` unspecified)
// on a character outside the alphabet or an impossible length.
bool Base64Decode(std::string_view text, std::string* out);

// Lower-case hex of `bytes`; the value of one hex digit (either case), or -1.
std::string HexEncode(std::string_view bytes);
int HexDigitValue(char c);
// Even-length hex (either case) to bytes; false on anything else.
bool HexDecode(std::string_view text, std::string* out);

// Appends `text` as a JSON string literal, quotes included. Control
// characters, quote and backslash are escaped; other bytes pass through (the
// caller guarantees UTF-8).
void AppendJsonString(std::string* out, std::string_view text);

// 8-byte big-endian integers (keys that sort by value, fixed-width fields).
void PutBigEndian64(std::string* out, uint64_t value);
uint64_t GetBigEndian64(const char* p);

}  // namespace aquifer
