#include "aquifer/gateway/errors.h"

#include <nlohmann/json.hpp>

namespace aquifer::gateway {

int HttpStatusFor(StatusCode code) {
  switch (code) {
    case StatusCode::kOk:
      return 200;
    case StatusCode::kInvalidArgument:
      return 400;
    case StatusCode::kUnauthenticated:
      return 401;
    case StatusCode::kPermissionDenied:
      return 403;
    case StatusCode::kNotFound:
      return 404;
    case StatusCode::kAlreadyExists:
    case StatusCode::kFailedPrecondition:
    case StatusCode::kAborted:
      return 409;
    case StatusCode::kTooLarge:
      return 413;
    case StatusCode::kResourceExhausted:
      return 429;
    case StatusCode::kUnavailable:
      return 503;
    case StatusCode::kTimeout:
      return 504;
    case StatusCode::kCorruption:
    case StatusCode::kNotSupported:
    case StatusCode::kInternal:
      return 500;
  }
  return 500;
}

std::string_view ErrorCodeName(StatusCode code) {
  switch (code) {
    case StatusCode::kOk:
      return "ok";
    case StatusCode::kInvalidArgument:
      return "invalid_argument";
    case StatusCode::kNotFound:
      return "not_found";
    case StatusCode::kAlreadyExists:
      return "already_exists";
    case StatusCode::kUnauthenticated:
      return "unauthenticated";
    case StatusCode::kPermissionDenied:
      return "permission_denied";
    case StatusCode::kFailedPrecondition:
      return "failed_precondition";
    case StatusCode::kResourceExhausted:
      return "resource_exhausted";
    case StatusCode::kUnavailable:
      return "unavailable";
    case StatusCode::kTimeout:
      return "timeout";
    case StatusCode::kAborted:
      return "aborted";
    case StatusCode::kCorruption:
      return "corruption";
    case StatusCode::kNotSupported:
      return "not_supported";
    case StatusCode::kInternal:
      return "internal";
    case StatusCode::kTooLarge:
      return "too_large";
  }
  return "internal";
}

std::string ErrorJson(const Status& status, std::span<const engine::RecordError> details,
                      std::string_view code_override) {
  nlohmann::json error;
  if (!code_override.empty()) {
    error["code"] = code_override;
  } else if (!details.empty()) {
    error["code"] = "invalid_records";
  } else {
    error["code"] = ErrorCodeName(status.code());
  }
  error["message"] = status.message();
  if (!details.empty()) {
    nlohmann::json list = nlohmann::json::array();
    for (const engine::RecordError& detail : details) {
      list.push_back({{"record", detail.record}, {"field", detail.field}, {"message", detail.message}});
    }
    error["details"] = std::move(list);
  }
  // Replace invalid UTF-8 (a driver's message may carry raw bytes) instead of throwing.
  return nlohmann::json{{"error", std::move(error)}}.dump(-1, ' ', false,
                                                          nlohmann::json::error_handler_t::replace);
}

}  // namespace aquifer::gateway
