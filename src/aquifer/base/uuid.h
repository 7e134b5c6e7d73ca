#pragma once

// Uuid: the 16-byte id of instances, jobs, writes and secrets.
//
// Random ids are RFC 4122 version 4 from a CSPRNG (OpenSSL RAND_bytes), so
// they may be shown to users and used as unguessable handles. The text form is
// the canonical lower-case 8-4-4-4-12; Parse also accepts upper case and the
// 32-digit form without dashes.

#include <array>
#include <compare>
#include <cstdint>
#include <string>
#include <string_view>

#include "aquifer/base/status.h"

namespace aquifer {

struct Uuid {
  std::array<uint8_t, 16> bytes{};

  static Uuid Random();
  static Result<Uuid> Parse(std::string_view text);
  // From exactly 16 raw bytes.
  static Result<Uuid> FromBytes(std::string_view raw);

  bool IsNil() const;
  std::string ToString() const;  // 8-4-4-4-12
  std::string Hex() const;       // 32 hex digits
  std::string_view AsBytes() const {
    return {reinterpret_cast<const char*>(bytes.data()), bytes.size()};
  }

  auto operator<=>(const Uuid&) const = default;
};

struct UuidHash {
  size_t operator()(const Uuid& id) const;
};

}  // namespace aquifer
