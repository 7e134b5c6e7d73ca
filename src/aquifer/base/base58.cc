#include "aquifer/base/base58.h"

#include <array>
#include <cstdint>
#include <vector>

namespace aquifer {
namespace {

constexpr char kAlphabet[] = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";

constexpr std::array<int8_t, 256> MakeDecodeTable() {
  std::array<int8_t, 256> table{};
  for (auto& entry : table) entry = -1;
  for (int i = 0; i < 58; ++i) table[static_cast<uint8_t>(kAlphabet[i])] = static_cast<int8_t>(i);
  return table;
}
constexpr std::array<int8_t, 256> kDecode = MakeDecodeTable();

}  // namespace

std::string Base58Encode(std::string_view bytes) {
  size_t zeros = 0;
  while (zeros < bytes.size() && bytes[zeros] == 0) ++zeros;
  // log(256)/log(58) ~ 1.366: upper bound on the digits needed.
  std::vector<uint8_t> digits((bytes.size() - zeros) * 138 / 100 + 1, 0);
  size_t used = 0;
  for (size_t i = zeros; i < bytes.size(); ++i) {
    uint32_t carry = static_cast<uint8_t>(bytes[i]);
    size_t j = 0;
    for (auto it = digits.rbegin(); (carry != 0 || j < used) && it != digits.rend(); ++it, ++j) {
      carry += 256u * *it;
      *it = static_cast<uint8_t>(carry % 58);
      carry /= 58;
    }
    used = j;
  }
  auto it = digits.begin() + static_cast<std::ptrdiff_t>(digits.size() - used);
  std::string out(zeros, '1');
  out.reserve(zeros + used);
  for (; it != digits.end(); ++it) out.push_back(kAlphabet[*it]);
  return out;
}

Result<std::string> Base58Decode(std::string_view text, size_t max_length) {
  if (text.size() > max_length) {
    return InvalidArgument("base58 string too long: {} characters, at most {}", text.size(),
                           max_length);
  }
  size_t ones = 0;
  while (ones < text.size() && text[ones] == '1') ++ones;
  // log(58)/log(256) ~ 0.733
  std::vector<uint8_t> bytes((text.size() - ones) * 733 / 1000 + 1, 0);
  size_t used = 0;
  for (size_t i = ones; i < text.size(); ++i) {
    int value = kDecode[static_cast<uint8_t>(text[i])];
    if (value < 0) {
      return InvalidArgument("invalid base58 character at position {}", i);
    }
    uint32_t carry = static_cast<uint32_t>(value);
    size_t j = 0;
    for (auto it = bytes.rbegin(); (carry != 0 || j < used) && it != bytes.rend(); ++it, ++j) {
      carry += 58u * *it;
      *it = static_cast<uint8_t>(carry & 0xff);
      carry >>= 8;
    }
    used = j;
  }
  std::string out(ones, '\0');
  out.append(reinterpret_cast<const char*>(bytes.data()) + (bytes.size() - used), used);
  return out;
}

}  // namespace aquifer
