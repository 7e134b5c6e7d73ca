#include "aquifer/drivers/redshift/s3.h"

#include <curl/curl.h>
#include <openssl/sha.h>
#include <zlib.h>

#include <memory>

#include <fmt/format.h>

#include "aquifer/base/text.h"

namespace aquifer::drivers::redshift {
namespace {

size_t Collect(char* data, size_t size, size_t count, void* out) {
  static_cast<std::string*>(out)->append(data, size * count);
  return size * count;
}

std::string Sha256Hex(std::string_view body) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(body.data()), body.size(), digest);
  return HexEncode(std::string_view(reinterpret_cast<const char*>(digest), sizeof(digest)));
}

}  // namespace

Result<std::string> Gzip(std::string_view data) {
  z_stream stream{};
  // windowBits 15 + 16: a gzip header and trailer instead of zlib's.
  if (deflateInit2(&stream, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
    return Internal("gzip: deflateInit2 failed");
  }
  std::string out(deflateBound(&stream, static_cast<uLong>(data.size())) + 32, '\0');
  stream.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  stream.avail_in = static_cast<uInt>(data.size());
  stream.next_out = reinterpret_cast<Bytef*>(out.data());
  stream.avail_out = static_cast<uInt>(out.size());
  const int result = deflate(&stream, Z_FINISH);
  out.resize(stream.total_out);
  deflateEnd(&stream);
  if (result != Z_STREAM_END) return Internal("gzip: deflate failed ({})", result);
  return out;
}

Result<std::string> Gunzip(std::string_view data) {
  z_stream stream{};
  if (inflateInit2(&stream, 15 + 16) != Z_OK) return Internal("gunzip: inflateInit2 failed");
  stream.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  stream.avail_in = static_cast<uInt>(data.size());
  std::string out;
  char buffer[1 << 16];
  int result = Z_OK;
  while (result == Z_OK) {
    stream.next_out = reinterpret_cast<Bytef*>(buffer);
    stream.avail_out = sizeof(buffer);
    result = inflate(&stream, Z_NO_FLUSH);
    out.append(buffer, sizeof(buffer) - stream.avail_out);
    if (result == Z_BUF_ERROR && stream.avail_in == 0) break;
  }
  inflateEnd(&stream);
  if (result != Z_STREAM_END) return InvalidArgument("gunzip: not a complete gzip stream ({})", result);
  return out;
}

std::string EncodeKey(std::string_view key) {
  std::string out;
  for (unsigned char c : key) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~' || c == '/') {
      out.push_back(static_cast<char>(c));
    } else {
      out += fmt::format("%{:02X}", c);
    }
  }
  return out;
}

Result<std::string> S3Client::Request(std::string_view method, std::string_view path, std::string_view body) const {
  std::unique_ptr<CURL, decltype(&curl_easy_cleanup)> curl(curl_easy_init(), &curl_easy_cleanup);
  if (!curl) return Internal("s3: curl_easy_init failed");
  std::string endpoint = options_.endpoint;
  while (!endpoint.empty() && endpoint.back() == '/') endpoint.pop_back();
  const std::string url = endpoint + "/" + std::string(path);
  const std::string method_text(method);
  const std::string provider = "aws:amz:" + options_.region + ":s3";
  const std::string userpwd = options_.access_key_id + ":" + options_.secret_access_key;
  std::string response;
  char error[CURL_ERROR_SIZE] = {0};
  curl_easy_setopt(curl.get(), CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl.get(), CURLOPT_CUSTOMREQUEST, method_text.c_str());
  curl_easy_setopt(curl.get(), CURLOPT_AWS_SIGV4, provider.c_str());
  curl_easy_setopt(curl.get(), CURLOPT_USERPWD, userpwd.c_str());
  curl_easy_setopt(curl.get(), CURLOPT_WRITEFUNCTION, &Collect);
  curl_easy_setopt(curl.get(), CURLOPT_WRITEDATA, &response);
  curl_easy_setopt(curl.get(), CURLOPT_ERRORBUFFER, error);
  curl_easy_setopt(curl.get(), CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl.get(), CURLOPT_TIMEOUT_MS, static_cast<long>(options_.timeout_ms));
  if (method == "PUT") {
    // The body as POSTFIELDS (with the custom method PUT): curl signs it whole.
    curl_easy_setopt(curl.get(), CURLOPT_POSTFIELDS, body.data());
    curl_easy_setopt(curl.get(), CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
  } else if (method == "GET") {
    curl_easy_setopt(curl.get(), CURLOPT_HTTPGET, 1L);
    curl_easy_setopt(curl.get(), CURLOPT_CUSTOMREQUEST, nullptr);
  }
  struct curl_slist* headers = nullptr;
  const std::string content_hash = "x-amz-content-sha256: " + Sha256Hex(body);
  headers = curl_slist_append(headers, content_hash.c_str());
  const std::string token = "x-amz-security-token: " + options_.session_token;
  if (!options_.session_token.empty()) headers = curl_slist_append(headers, token.c_str());
  headers = curl_slist_append(headers, "Content-Type: application/octet-stream");
  headers = curl_slist_append(headers, "Expect:");
  std::unique_ptr<curl_slist, decltype(&curl_slist_free_all)> header_list(headers, &curl_slist_free_all);
  curl_easy_setopt(curl.get(), CURLOPT_HTTPHEADER, headers);
  const CURLcode code = curl_easy_perform(curl.get());
  if (code != CURLE_OK) {
    return Unavailable("s3: {} {}: {}", method, url, error[0] != '\0' ? error : curl_easy_strerror(code));
  }
  long status = 0;
  curl_easy_getinfo(curl.get(), CURLINFO_RESPONSE_CODE, &status);
  if (status >= 200 && status < 300) return response;
  const std::string what = fmt::format("s3: {} {}: HTTP {}: {}", method, url, status, response.substr(0, 500));
  if (status == 404) return NotFound("{}", what);
  if (status == 403) return PermissionDenied("{}", what);
  if (status >= 500 || status == 429) return Unavailable("{}", what);
  return InvalidArgument("{}", what);
}

Status S3Client::PutObject(std::string_view key, std::string_view body) const {
  return Request("PUT", options_.bucket + "/" + EncodeKey(key), body).status();
}

Result<std::string> S3Client::GetObject(std::string_view key) const {
  return Request("GET", options_.bucket + "/" + EncodeKey(key), "");
}

Status S3Client::DeleteObject(std::string_view key) const {
  return Request("DELETE", options_.bucket + "/" + EncodeKey(key), "").status();
}

Result<std::vector<std::string>> S3Client::ListKeys(std::string_view prefix) const {
  AQ_ASSIGN_OR_RETURN(std::string xml,
                      Request("GET", options_.bucket + "?list-type=2&prefix=" + EncodeKey(prefix), ""));
  std::vector<std::string> keys;
  for (size_t pos = xml.find("<Key>"); pos != std::string::npos; pos = xml.find("<Key>", pos)) {
    pos += 5;
    const size_t end = xml.find("</Key>", pos);
    if (end == std::string::npos) break;
    keys.push_back(xml.substr(pos, end - pos));
  }
  return keys;
}

Status S3Client::CreateBucket() const { return Request("PUT", options_.bucket, "").status(); }

}  // namespace aquifer::drivers::redshift
