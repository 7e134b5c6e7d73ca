#include <simdjson.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "aquifer/base/text.h"
#include "aquifer/schema/internal.h"

namespace aquifer::schema::internal {
namespace {


// Two's complement negation in place of a big-endian byte string.
void Negate(std::string* bytes) {
  int carry = 1;
  for (size_t idx = bytes->size(); idx-- > 0;) {
    int v = static_cast<uint8_t>(~static_cast<uint8_t>((*bytes)[idx])) + carry;
    (*bytes)[idx] = static_cast<char>(v & 0xff);
    carry = v >> 8;
  }
}

}  // namespace

bool ParseUuidText(std::string_view text, std::string* raw16) {
  if (text.size() != 36) return false;
  raw16->clear();
  raw16->reserve(16);
  for (size_t pos = 0; pos < 36;) {
    if (pos == 8 || pos == 13 || pos == 18 || pos == 23) {
      if (text[pos] != '-') return false;
      ++pos;
      continue;
    }
    int hi = HexDigitValue(text[pos]);
    int lo = HexDigitValue(text[pos + 1]);
    if (hi < 0 || lo < 0) return false;
    raw16->push_back(static_cast<char>(hi * 16 + lo));
    pos += 2;
  }
  return raw16->size() == 16;
}

std::string FormatUuid(std::string_view raw16) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(36);
  for (size_t idx = 0; idx < raw16.size(); ++idx) {
    if (idx == 4 || idx == 6 || idx == 8 || idx == 10) out.push_back('-');
    auto byte = static_cast<uint8_t>(raw16[idx]);
    out.push_back(kHex[byte >> 4]);
    out.push_back(kHex[byte & 15]);
  }
  return out;
}


std::string MinimalTwosComplement(std::string_view bytes) {
  size_t start = 0;
  // Drop a leading 0x00 (0xff) while the next byte keeps the sign bit clear (set).
  while (start + 1 < bytes.size()) {
    auto b0 = static_cast<uint8_t>(bytes[start]);
    auto b1 = static_cast<uint8_t>(bytes[start + 1]);
    if ((b0 == 0x00 && (b1 & 0x80) == 0) || (b0 == 0xff && (b1 & 0x80) != 0)) {
      ++start;
    } else {
      break;
    }
  }
  return std::string(bytes.substr(start));
}

Result<std::string> DecimalTextToBytes(std::string_view text, int precision, int scale,
                                       int fixed_size) {
  size_t pos = 0;
  bool negative = false;
  if (pos < text.size() && (text[pos] == '-' || text[pos] == '+')) {
    negative = text[pos] == '-';
    ++pos;
  }
  std::string digits;  // integer then fraction digits
  size_t int_digits = 0;
  while (pos < text.size() && text[pos] >= '0' && text[pos] <= '9') {
    digits.push_back(text[pos++]);
    ++int_digits;
  }
  bool has_point = pos < text.size() && text[pos] == '.';
  if (has_point) {
    ++pos;
    while (pos < text.size() && text[pos] >= '0' && text[pos] <= '9') digits.push_back(text[pos++]);
  }
  if (digits.empty()) return InvalidArgument("'{}' is not a decimal number", text);
  int64_t exponent = 0;
  if (pos < text.size() && (text[pos] == 'e' || text[pos] == 'E')) {
    ++pos;
    bool exp_negative = false;
    if (pos < text.size() && (text[pos] == '-' || text[pos] == '+')) {
      exp_negative = text[pos] == '-';
      ++pos;
    }
    size_t exp_start = pos;
    while (pos < text.size() && text[pos] >= '0' && text[pos] <= '9') {
      exponent = exponent * 10 + (text[pos++] - '0');
      if (exponent > 100000) return InvalidArgument("decimal exponent out of range in '{}'", text);
    }
    if (pos == exp_start) return InvalidArgument("'{}' is not a decimal number", text);
    if (exp_negative) exponent = -exponent;
  }
  if (pos != text.size()) return InvalidArgument("'{}' is not a decimal number", text);

  // The unscaled value's digits are digits[0, cut), zero-padded when cut is
  // past the end; everything from cut on must be zero (no rounding).
  int64_t cut = static_cast<int64_t>(int_digits) + exponent + scale;
  for (int64_t idx = std::max<int64_t>(cut, 0); idx < static_cast<int64_t>(digits.size()); ++idx) {
    if (digits[idx] != '0') {
      return InvalidArgument("'{}' has more than {} digits after the decimal point", text, scale);
    }
  }
  std::string unscaled;
  if (cut > 0) {
    unscaled = digits.substr(0, std::min<size_t>(cut, digits.size()));
    size_t first = unscaled.find_first_not_of('0');
    unscaled.erase(0, first == std::string::npos ? unscaled.size() : first);
    if (!unscaled.empty() && cut > static_cast<int64_t>(digits.size())) {
      int64_t zeros = cut - static_cast<int64_t>(digits.size());
      if (zeros + static_cast<int64_t>(unscaled.size()) > precision) {
        return InvalidArgument("'{}' has more than {} significant digits (precision {}, scale {})",
                               text, precision, precision, scale);
      }
      unscaled.append(static_cast<size_t>(zeros), '0');
    }
  }
  if (static_cast<int64_t>(unscaled.size()) > precision) {
    return InvalidArgument("'{}' has more than {} significant digits (precision {}, scale {})", text,
                           precision, precision, scale);
  }
  // Decimal digits to a little-endian magnitude, then big-endian two's complement.
  std::vector<uint8_t> magnitude;
  for (char digit : unscaled) {
    int carry = digit - '0';
    for (auto& byte : magnitude) {
      int v = byte * 10 + carry;
      byte = static_cast<uint8_t>(v & 0xff);
      carry = v >> 8;
    }
    while (carry > 0) {
      magnitude.push_back(static_cast<uint8_t>(carry & 0xff));
      carry >>= 8;
    }
  }
  std::string bytes(1, '\0');  // leading sign byte
  for (size_t idx = magnitude.size(); idx-- > 0;) bytes.push_back(static_cast<char>(magnitude[idx]));
  if (negative && !magnitude.empty()) Negate(&bytes);
  bytes = MinimalTwosComplement(bytes);
  if (fixed_size > 0) {
    if (bytes.size() > static_cast<size_t>(fixed_size)) {
      return InvalidArgument("'{}' does not fit in {} bytes", text, fixed_size);
    }
    char fill = (static_cast<uint8_t>(bytes[0]) & 0x80) ? '\xff' : '\0';
    bytes.insert(0, static_cast<size_t>(fixed_size) - bytes.size(), fill);
  }
  return bytes;
}

std::string DecimalBytesToText(std::string_view bytes, int scale, int* digit_count) {
  bool negative = !bytes.empty() && (static_cast<uint8_t>(bytes[0]) & 0x80);
  std::string magnitude(bytes);
  if (negative) Negate(&magnitude);
  // Repeated division by 10^9 of the big-endian magnitude.
  std::vector<uint32_t> words;  // big-endian base 2^32
  size_t lead = magnitude.size() % 4;
  uint32_t word = 0;
  for (size_t idx = 0; idx < magnitude.size(); ++idx) {
    word = (word << 8) | static_cast<uint8_t>(magnitude[idx]);
    if ((idx + 1) % 4 == lead % 4) {
      words.push_back(word);
      word = 0;
    }
  }
  std::string reversed;  // decimal digits, least significant first
  size_t first = 0;
  while (first < words.size() && words[first] == 0) ++first;
  while (first < words.size()) {
    uint64_t remainder = 0;
    for (size_t idx = first; idx < words.size(); ++idx) {
      uint64_t cur = (remainder << 32) | words[idx];
      words[idx] = static_cast<uint32_t>(cur / 1000000000u);
      remainder = cur % 1000000000u;
    }
    while (first < words.size() && words[first] == 0) ++first;
    for (int digit_idx = 0; digit_idx < 9; ++digit_idx) {
      reversed.push_back(static_cast<char>('0' + remainder % 10));
      remainder /= 10;
      if (first == words.size() && remainder == 0) break;
    }
  }
  while (reversed.size() > 1 && reversed.back() == '0') reversed.pop_back();
  if (reversed.empty() || reversed == "0") {
    reversed.clear();
    negative = false;
  }
  if (digit_count != nullptr) *digit_count = static_cast<int>(reversed.size());
  while (reversed.size() < static_cast<size_t>(scale) + 1) reversed.push_back('0');
  std::string out;
  if (negative) out.push_back('-');
  for (size_t idx = reversed.size(); idx-- > 0;) {
    out.push_back(reversed[idx]);
    if (idx == static_cast<size_t>(scale) && scale > 0) out.push_back('.');
  }
  return out;
}

bool IsValidUtf8(std::string_view text) { return simdjson::validate_utf8(text.data(), text.size()); }

}  // namespace aquifer::schema::internal
