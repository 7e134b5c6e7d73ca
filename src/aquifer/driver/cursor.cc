#include "aquifer/driver/cursor.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "aquifer/base/base58.h"

namespace aquifer::driver {
namespace {

constexpr uint8_t kVersion = 1;
constexpr size_t kHeaderSize = 2 + 16;

}  // namespace

CursorCodec::CursorCodec(std::string key) : key_(std::move(key)) {}

std::string CursorCodec::Tag(std::string_view bytes) const {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  HMAC(EVP_sha256(), key_.data(), static_cast<int>(key_.size()),
       reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(), digest, &length);
  return std::string(reinterpret_cast<const char*>(digest), kTagSize);
}

std::string CursorCodec::Encode(const Cursor& cursor) const {
  std::string bytes;
  bytes.reserve(kHeaderSize + cursor.payload.size() + kTagSize);
  bytes.push_back(static_cast<char>(kVersion));
  bytes.push_back(static_cast<char>(cursor.type));
  bytes.append(cursor.id.AsBytes());
  bytes.append(cursor.payload);
  bytes.append(Tag(bytes));
  return Base58Encode(bytes);
}

Result<Cursor> CursorCodec::Decode(std::string_view text) const {
  if (text.empty()) return InvalidArgument("invalid cursor: empty");
  if (text.size() > kMaxEncodedLength) {
    return InvalidArgument("invalid cursor: {} characters, at most {}", text.size(),
                           kMaxEncodedLength);
  }
  auto decoded = Base58Decode(text, kMaxEncodedLength);
  if (!decoded.ok()) return InvalidArgument("invalid cursor: {}", decoded.status().message());
  const std::string& bytes = *decoded;
  if (bytes.size() < kHeaderSize + kTagSize) return InvalidArgument("invalid cursor: too short");
  std::string_view body(bytes.data(), bytes.size() - kTagSize);
  std::string expected = Tag(body);
  if (CRYPTO_memcmp(expected.data(), bytes.data() + body.size(), kTagSize) != 0) {
    return InvalidArgument("invalid cursor: not issued by this server, or altered");
  }
  if (static_cast<uint8_t>(bytes[0]) != kVersion) {
    return InvalidArgument("invalid cursor: unknown version {}", static_cast<uint8_t>(bytes[0]));
  }
  uint8_t type = static_cast<uint8_t>(bytes[1]);
  if (type < static_cast<uint8_t>(CursorType::kLog) || type > static_cast<uint8_t>(CursorType::kJob)) {
    return InvalidArgument("invalid cursor: unknown type {}", type);
  }
  Cursor cursor;
  cursor.type = static_cast<CursorType>(type);
  AQ_ASSIGN_OR_RETURN(cursor.id, Uuid::FromBytes(body.substr(2, 16)));
  cursor.payload.assign(body.substr(kHeaderSize));
  return cursor;
}

}  // namespace aquifer::driver
