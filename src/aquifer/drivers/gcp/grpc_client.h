#pragma once

// What the Google Cloud gRPC drivers (bigtable/, pubsub/) share: where to connect and with
// which credentials, per-call deadlines and authorization, and grpc::Status -> Status.
//
//   An emulator (the endpoint comes from the emulator's environment variable, e.g.
//   BIGTABLE_EMULATOR_HOST, or `emulator = true`): a plaintext channel, no credentials.
//   The real service: TLS to the service's host (or `endpoint`), each call carrying
//   `authorization: Bearer <token>` read from the environment variable `token_env` names
//   (default GOOGLE_OAUTH_ACCESS_TOKEN, e.g. `export GOOGLE_OAUTH_ACCESS_TOKEN=$(gcloud auth
//   print-access-token)`), read again on every call so a refreshed token is used.

#include <chrono>
#include <memory>
#include <string>
#include <string_view>

#include <grpcpp/grpcpp.h>

#include "aquifer/base/status.h"
#include "aquifer/driver/types.h"

namespace aquifer::drivers::gcp {

struct GrpcOptions {
  std::string endpoint;  // host:port
  std::string project;
  bool emulator = false;  // plaintext, no credentials
  std::string token_env = "GOOGLE_OAUTH_ACCESS_TOKEN";
  std::chrono::milliseconds request_timeout{30'000};
};

// Keys: endpoint, project (required), emulator (bool), token_env, request_timeout_ms.
// `service` names the driver in messages ("bigtable"); `default_endpoint` is the real
// service's host ("bigtable.googleapis.com:443"); when `emulator_env` is set in the
// environment and no endpoint is configured, its value is the endpoint and emulator is on.
Result<GrpcOptions> ParseGrpcOptions(const driver::Config& config, std::string_view service,
                                     std::string_view default_endpoint, const char* emulator_env);

// One channel per driver instance; gRPC multiplexes calls over it.
std::shared_ptr<grpc::Channel> MakeChannel(const GrpcOptions& options);

// Sets the call's deadline (`timeout`, or the options' request timeout when zero) and, for
// the real service, its bearer token. Unauthenticated when the token variable is empty.
Status PrepareContext(grpc::ClientContext* context, const GrpcOptions& options,
                      std::chrono::milliseconds timeout = std::chrono::milliseconds{0});

// Maps a failed call's status to ours, prefixed with `what` ("bigtable MutateRows"):
// UNAVAILABLE -> Unavailable, DEADLINE_EXCEEDED -> Timeout (the call may have happened),
// NOT_FOUND, ALREADY_EXISTS, PERMISSION_DENIED, UNAUTHENTICATED, RESOURCE_EXHAUSTED,
// INVALID_ARGUMENT / OUT_OF_RANGE, FAILED_PRECONDITION, ABORTED alike, the rest Internal.
Status FromGrpc(const grpc::Status& status, std::string_view what);

// Whether retrying the same call may succeed (UNAVAILABLE, ABORTED, RESOURCE_EXHAUSTED,
// DEADLINE_EXCEEDED, not INTERNAL or the rest).
bool IsRetryable(grpc::StatusCode code);

}  // namespace aquifer::drivers::gcp
