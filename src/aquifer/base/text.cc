#include "aquifer/base/text.h"

#include <cstdint>

namespace aquifer {
namespace {

constexpr char kBase64Alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

int Base64Value(unsigned char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

}  // namespace

void AppendBase64(std::string* out, std::string_view bytes) {
  out->reserve(out->size() + (bytes.size() + 2) / 3 * 4);
  size_t idx = 0;
  for (; idx + 3 <= bytes.size(); idx += 3) {
    uint32_t v = (uint32_t{static_cast<uint8_t>(bytes[idx])} << 16) |
                 (uint32_t{static_cast<uint8_t>(bytes[idx + 1])} << 8) |
                 static_cast<uint8_t>(bytes[idx + 2]);
    out->push_back(kBase64Alphabet[(v >> 18) & 63]);
    out->push_back(kBase64Alphabet[(v >> 12) & 63]);
    out->push_back(kBase64Alphabet[(v >> 6) & 63]);
    out->push_back(kBase64Alphabet[v & 63]);
  }
  if (size_t rest = bytes.size() - idx; rest > 0) {
    uint32_t v = uint32_t{static_cast<uint8_t>(bytes[idx])} << 16;
    if (rest == 2) v |= uint32_t{static_cast<uint8_t>(bytes[idx + 1])} << 8;
    out->push_back(kBase64Alphabet[(v >> 18) & 63]);
    out->push_back(kBase64Alphabet[(v >> 12) & 63]);
    out->push_back(rest == 2 ? kBase64Alphabet[(v >> 6) & 63] : '=');
    out->push_back('=');
  }
}

std::string Base64Encode(std::string_view bytes) {
  std::string out;
  AppendBase64(&out, bytes);
  return out;
}

bool Base64Decode(std::string_view text, std::string* out) {
  out->clear();
  size_t len = text.size();
  size_t padding = 0;
  while (len > 0 && text[len - 1] == '=' && padding < 2) {
    --len;
    ++padding;
  }
  if (padding > 0 && text.size() % 4 != 0) return false;
  if (len % 4 == 1) return false;
  out->reserve(len * 3 / 4);
  uint32_t acc = 0;
  int bits = 0;
  for (size_t idx = 0; idx < len; ++idx) {
    int v = Base64Value(static_cast<unsigned char>(text[idx]));
    if (v < 0) return false;
    acc = ((acc << 6) | static_cast<uint32_t>(v)) & 0xFFFFFF;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out->push_back(static_cast<char>((acc >> bits) & 0xff));
    }
  }
  return true;
}

std::string HexEncode(std::string_view bytes) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char byte : bytes) {
    out.push_back(kHex[byte >> 4]);
    out.push_back(kHex[byte & 15]);
  }
  return out;
}

int HexDigitValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool HexDecode(std::string_view text, std::string* out) {
  out->clear();
  if (text.size() % 2 != 0) return false;
  out->reserve(text.size() / 2);
  for (size_t idx = 0; idx < text.size(); idx += 2) {
    int high = HexDigitValue(text[idx]);
    int low = HexDigitValue(text[idx + 1]);
    if (high < 0 || low < 0) return false;
    out->push_back(static_cast<char>(high * 16 + low));
  }
  return true;
}

void AppendJsonString(std::string* out, std::string_view text) {
  static constexpr char kHex[] = "0123456789abcdef";
  out->push_back('"');
  size_t run_start = 0;
  for (size_t idx = 0; idx < text.size(); ++idx) {
    auto c = static_cast<uint8_t>(text[idx]);
    if (c >= 0x20 && c != '"' && c != '\\') continue;
    out->append(text.data() + run_start, idx - run_start);
    run_start = idx + 1;
    switch (c) {
      case '"': out->append("\\\""); break;
      case '\\': out->append("\\\\"); break;
      case '\n': out->append("\\n"); break;
      case '\r': out->append("\\r"); break;
      case '\t': out->append("\\t"); break;
      default:
        out->append("\\u00");
        out->push_back(kHex[c >> 4]);
        out->push_back(kHex[c & 15]);
    }
  }
  out->append(text.data() + run_start, text.size() - run_start);
  out->push_back('"');
}

void PutBigEndian64(std::string* out, uint64_t value) {
  char buf[8];
  for (int byte_idx = 7; byte_idx >= 0; --byte_idx) {
    buf[byte_idx] = static_cast<char>(value & 0xFF);
    value >>= 8;
  }
  out->append(buf, 8);
}

uint64_t GetBigEndian64(const char* p) {
  uint64_t value = 0;
  for (int byte_idx = 0; byte_idx < 8; ++byte_idx) value = (value << 8) | static_cast<uint8_t>(p[byte_idx]);
  return value;
}

}  // namespace aquifer
