#pragma once

// A minimal S3 client for the COPY staging files: PUT, GET and DELETE of one
// object, and PUT of a bucket (tests), path-style
// (`<endpoint>/<bucket>/<key>`), signed with AWS Signature Version 4 by
// libcurl (CURLOPT_AWS_SIGV4, curl ≥ 7.75). The payload's SHA-256 goes in
// `x-amz-content-sha256`, as S3 requires for signed requests. Tested against
// moto's S3 server on loopback (s3_test.cc); never against AWS here.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "aquifer/base/status.h"

namespace aquifer::drivers::redshift {

struct S3Options {
  std::string endpoint;  // e.g. https://s3.us-east-1.amazonaws.com or http://127.0.0.1:PORT
  std::string region = "us-east-1";
  std::string bucket;
  std::string access_key_id;
  std::string secret_access_key;
  std::string session_token;  // temporary credentials: sent as x-amz-security-token
  int64_t timeout_ms = 60'000;
};

class S3Client {
 public:
  explicit S3Client(S3Options options) : options_(std::move(options)) {}

  Status PutObject(std::string_view key, std::string_view body) const;
  Result<std::string> GetObject(std::string_view key) const;
  Status DeleteObject(std::string_view key) const;
  Status CreateBucket() const;
  // ListObjectsV2 of the keys under `prefix`: the keys, in S3's order (first 1000).
  Result<std::vector<std::string>> ListKeys(std::string_view prefix) const;

  const S3Options& options() const { return options_; }

 private:
  // One signed request; returns the body. Non-2xx → an error naming the
  // method, the URL and S3's answer (NotFound for 404, Unavailable when the
  // endpoint cannot be reached, PermissionDenied for 403).
  Result<std::string> Request(std::string_view method, std::string_view path, std::string_view body) const;

  S3Options options_;
};

// gzip (RFC 1952) of `data`, as COPY ... GZIP reads a staging file, and back.
Result<std::string> Gzip(std::string_view data);
Result<std::string> Gunzip(std::string_view data);

// Percent-encodes an object key for the URL path (RFC 3986 unreserved
// characters and '/' stay as they are).
std::string EncodeKey(std::string_view key);

}  // namespace aquifer::drivers::redshift
