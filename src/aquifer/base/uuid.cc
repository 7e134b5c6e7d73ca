#include "aquifer/base/uuid.h"

#include <cstring>

#include <openssl/rand.h>

#include "aquifer/base/text.h"

namespace aquifer {

Uuid Uuid::Random() {
  Uuid id;
  if (RAND_bytes(id.bytes.data(), static_cast<int>(id.bytes.size())) != 1) {
    // OpenSSL's CSPRNG does not fail once seeded; if it ever does we cannot
    // hand out guessable ids, so stop here (a programmer/environment error).
    std::abort();
  }
  id.bytes[6] = (id.bytes[6] & 0x0f) | 0x40;  // version 4
  id.bytes[8] = (id.bytes[8] & 0x3f) | 0x80;  // RFC 4122 variant
  return id;
}

Result<Uuid> Uuid::Parse(std::string_view text) {
  std::string digits;
  if (text.size() == 36) {
    for (size_t i = 0; i < text.size(); ++i) {
      bool dash_position = i == 8 || i == 13 || i == 18 || i == 23;
      if (dash_position != (text[i] == '-')) {
        return InvalidArgument("invalid UUID '{}': expected the form 8-4-4-4-12", text);
      }
      if (!dash_position) digits.push_back(text[i]);
    }
  } else if (text.size() == 32) {
    digits = text;
  } else {
    return InvalidArgument("invalid UUID '{}': expected 36 characters (8-4-4-4-12) or 32 hex digits",
                           text.substr(0, 64));
  }
  Uuid id;
  for (size_t i = 0; i < 16; ++i) {
    int hi = HexDigitValue(digits[2 * i]);
    int lo = HexDigitValue(digits[2 * i + 1]);
    if (hi < 0 || lo < 0) return InvalidArgument("invalid UUID '{}': not a hex digit", text);
    id.bytes[i] = static_cast<uint8_t>(hi << 4 | lo);
  }
  return id;
}

Result<Uuid> Uuid::FromBytes(std::string_view raw) {
  if (raw.size() != 16) return InvalidArgument("a UUID is 16 bytes, got {}", raw.size());
  Uuid id;
  std::memcpy(id.bytes.data(), raw.data(), 16);
  return id;
}

bool Uuid::IsNil() const {
  for (uint8_t b : bytes) {
    if (b != 0) return false;
  }
  return true;
}

std::string Uuid::Hex() const { return HexEncode(AsBytes()); }

std::string Uuid::ToString() const {
  std::string hex = Hex();
  return hex.substr(0, 8) + "-" + hex.substr(8, 4) + "-" + hex.substr(12, 4) + "-" +
         hex.substr(16, 4) + "-" + hex.substr(20, 12);
}

size_t UuidHash::operator()(const Uuid& id) const {
  uint64_t a, b;
  std::memcpy(&a, id.bytes.data(), 8);
  std::memcpy(&b, id.bytes.data() + 8, 8);
  return static_cast<size_t>(a ^ (b * 0x9e3779b97f4a7c15ULL));
}

}  // namespace aquifer
