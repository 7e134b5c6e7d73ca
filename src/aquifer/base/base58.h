#pragma once

// Base58 (Bitcoin alphabet: no 0, O, I, l) for opaque strings shown to users:
// cursors, write ids. Leading zero bytes map to leading '1's, so encoding is a
// bijection between byte strings and canonical base58 strings.

#include <string>
#include <string_view>

#include "aquifer/base/status.h"

namespace aquifer {

std::string Base58Encode(std::string_view bytes);
// Fails with InvalidArgument on any character outside the alphabet, or on
// input longer than `max_length` characters (decoding is quadratic).
Result<std::string> Base58Decode(std::string_view text, size_t max_length = 4096);

}  // namespace aquifer
