#pragma once

// Text encodings shared by the codecs, the filter language and the drivers'
// result rendering: standard base64 (RFC 4648) and JSON string escaping.

#include <string>
#include <string_view>

namespace aquifer {

// Appends the base64 of `bytes`, always padded.
void AppendBase64(std::string* out, std::string_view bytes);
std::string Base64Encode(std::string_view bytes);
// Decodes standard base64; padding is optional. False (and `out` unspecified)
// on a character outside the alphabet or an impossible length.
bool Base64Decode(std::string_view text, std::string* out);

// Appends `text` as a JSON string literal, quotes included. Control
// characters, quote and backslash are escaped; other bytes pass through (the
// caller guarantees UTF-8).
void AppendJsonString(std::string* out, std::string_view text);

}  // namespace aquifer
