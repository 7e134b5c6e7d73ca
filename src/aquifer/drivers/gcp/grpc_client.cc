#include "aquifer/drivers/gcp/grpc_client.h"

#include <cstdlib>

#include <fmt/format.h>

namespace aquifer::drivers::gcp {

Result<GrpcOptions> ParseGrpcOptions(const driver::Config& config, std::string_view service,
                                     std::string_view default_endpoint, const char* emulator_env) {
  GrpcOptions options;
  const char* from_env = emulator_env != nullptr ? std::getenv(emulator_env) : nullptr;
  std::string configured = driver::ConfigString(config, "endpoint", "");
  AQ_ASSIGN_OR_RETURN(bool emulator, driver::ConfigBool(config, "emulator", false));
  if (!configured.empty()) {
    options.endpoint = configured;
    options.emulator = emulator;
  } else if (from_env != nullptr && *from_env != '\0') {
    options.endpoint = from_env;
    options.emulator = true;
  } else {
    options.endpoint = std::string(default_endpoint);
    options.emulator = emulator;
  }
  if (options.endpoint.find(':') == std::string::npos) {
    return InvalidArgument("{}: endpoint '{}' must be host:port", service, options.endpoint);
  }
  options.project = driver::ConfigString(config, "project", "");
  if (options.project.empty()) return InvalidArgument("{}: `project` is required", service);
  options.token_env = driver::ConfigString(config, "token_env", options.token_env);
  AQ_ASSIGN_OR_RETURN(int64_t timeout_ms, driver::ConfigInt(config, "request_timeout_ms", 30'000));
  if (timeout_ms < 1) return InvalidArgument("{}: request_timeout_ms must be positive", service);
  options.request_timeout = std::chrono::milliseconds(timeout_ms);
  return options;
}

std::shared_ptr<grpc::Channel> MakeChannel(const GrpcOptions& options) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(256 << 20);
  args.SetMaxSendMessageSize(256 << 20);
  auto credentials = options.emulator ? grpc::InsecureChannelCredentials()
                                      : grpc::SslCredentials(grpc::SslCredentialsOptions());
  return grpc::CreateCustomChannel(options.endpoint, credentials, args);
}

Status PrepareContext(grpc::ClientContext* context, const GrpcOptions& options, std::chrono::milliseconds timeout) {
  context->set_deadline(std::chrono::system_clock::now() +
                        (timeout.count() > 0 ? timeout : options.request_timeout));
  if (options.emulator) return Status::OK();
  const char* token = std::getenv(options.token_env.c_str());
  if (token == nullptr || *token == '\0') {
    return Unauthenticated("no access token for {}: set the environment variable {}", options.endpoint,
                           options.token_env);
  }
  context->AddMetadata("authorization", fmt::format("Bearer {}", token));
  return Status::OK();
}

Status FromGrpc(const grpc::Status& status, std::string_view what) {
  if (status.ok()) return Status::OK();
  std::string message = fmt::format("{}: {} ({})", what, status.error_message(), static_cast<int>(status.error_code()));
  switch (status.error_code()) {
    case grpc::StatusCode::UNAVAILABLE:
    case grpc::StatusCode::CANCELLED:
      return Status(StatusCode::kUnavailable, std::move(message));
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return Status(StatusCode::kTimeout, std::move(message));
    case grpc::StatusCode::NOT_FOUND:
      return Status(StatusCode::kNotFound, std::move(message));
    case grpc::StatusCode::ALREADY_EXISTS:
      return Status(StatusCode::kAlreadyExists, std::move(message));
    case grpc::StatusCode::PERMISSION_DENIED:
      return Status(StatusCode::kPermissionDenied, std::move(message));
    case grpc::StatusCode::UNAUTHENTICATED:
      return Status(StatusCode::kUnauthenticated, std::move(message));
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return Status(StatusCode::kResourceExhausted, std::move(message));
    case grpc::StatusCode::INVALID_ARGUMENT:
    case grpc::StatusCode::OUT_OF_RANGE:
      return Status(StatusCode::kInvalidArgument, std::move(message));
    case grpc::StatusCode::FAILED_PRECONDITION:
      return Status(StatusCode::kFailedPrecondition, std::move(message));
    case grpc::StatusCode::ABORTED:
      return Status(StatusCode::kAborted, std::move(message));
    case grpc::StatusCode::UNIMPLEMENTED:
      return Status(StatusCode::kNotSupported, std::move(message));
    default:
      return Status(StatusCode::kInternal, std::move(message));
  }
}

bool IsRetryable(grpc::StatusCode code) {
  return code == grpc::StatusCode::UNAVAILABLE || code == grpc::StatusCode::ABORTED ||
         code == grpc::StatusCode::RESOURCE_EXHAUSTED || code == grpc::StatusCode::DEADLINE_EXCEEDED;
}

}  // namespace aquifer::drivers::gcp
