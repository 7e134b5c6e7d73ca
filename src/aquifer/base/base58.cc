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
  // The number is built in limbs of base 58^5 (< 2^30), least significant
  // first, taking the input 32 bits at a time: about 1/20 of the steps of a
  // byte-by-digit loop, for the same digits.
  constexpr uint64_t kLimbBase = 58ull * 58 * 58 * 58 * 58;  // 656,356,768
  size_t zeros = 0;
  while (zeros < bytes.size() && bytes[zeros] == 0) ++zeros;
  const auto* data = reinterpret_cast<const uint8_t*>(bytes.data());
  std::vector<uint32_t> limbs;
  limbs.reserve((bytes.size() - zeros) * 138 / 500 + 2);
  auto push = [&limbs](uint64_t value, uint64_t multiplier) {
    uint64_t carry = value;
    for (uint32_t& limb : limbs) {
      const uint64_t t = static_cast<uint64_t>(limb) * multiplier + carry;
      limb = static_cast<uint32_t>(t % kLimbBase);
      carry = t / kLimbBase;
    }
    while (carry != 0) {
      limbs.push_back(static_cast<uint32_t>(carry % kLimbBase));
      carry /= kLimbBase;
    }
  };
  size_t i = zeros;
  const size_t head = (bytes.size() - zeros) % 4;
  if (head != 0) {
    uint64_t value = 0;
    for (size_t k = 0; k < head; ++k) value = (value << 8) | data[i++];
    push(value, uint64_t{1} << (8 * head));
  }
  for (; i < bytes.size(); i += 4) {
    const uint64_t value = (uint64_t{data[i]} << 24) | (uint64_t{data[i + 1]} << 16) |
                           (uint64_t{data[i + 2]} << 8) | uint64_t{data[i + 3]};
    push(value, uint64_t{1} << 32);
  }
  std::string out(zeros, '1');
  out.reserve(zeros + limbs.size() * 5);
  bool leading = true;  // no leading zero digits: they would decode as zero bytes
  for (auto it = limbs.rbegin(); it != limbs.rend(); ++it) {
    char digits[5];
    uint32_t limb = *it;
    for (int d = 4; d >= 0; --d) {
      digits[d] = kAlphabet[limb % 58];
      limb /= 58;
    }
    for (char digit : digits) {
      if (leading && digit == '1') continue;
      leading = false;
      out.push_back(digit);
    }
  }
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
