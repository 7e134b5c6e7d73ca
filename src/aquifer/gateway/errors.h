#pragma once

// Status → HTTP, in one place (STYLE.md, "Errors").
//
// Every error the gateway answers, over HTTP or WebSocket, is rendered here:
//   {"error":{"code":"not_found","message":"table 'p.t' not found"}}
// plus "details" for rejected records:
//   {"error":{"code":"invalid_records","message":...,
//             "details":[{"record":3,"field":"items[2].price","message":"..."}]}}
//
// Mapping (engine.h): InvalidArgument 400, Unauthenticated 401,
// PermissionDenied 403, NotFound 404, AlreadyExists / FailedPrecondition /
// Aborted 409, TooLarge 413, ResourceExhausted 429 (+ Retry-After),
// Unavailable 503, Timeout 504, everything else 500.

#include <span>
#include <string>
#include <string_view>

#include "aquifer/base/status.h"
#include "aquifer/engine/engine.h"

namespace aquifer::gateway {

// The HTTP status for a non-OK code.
int HttpStatusFor(StatusCode code);

// The snake_case "code" of the error body: "invalid_argument", "not_found", ...
std::string_view ErrorCodeName(StatusCode code);

// Seconds a 429 asks the client to wait (Retry-After) when the status names no
// time; an over-quota status carries the seconds until the quota resets
// (engine::RetryAfterSeconds), and that is what Retry-After says.
inline constexpr int kRetryAfterSeconds = 60;
// Seconds a 503 (Unavailable: transient) asks the client to wait.
inline constexpr int kUnavailableRetryAfterSeconds = 1;

// {"error":{"code","message"[,"details"]}}. With non-empty `details` the code
// is "invalid_records". `code_override` replaces the code name (for errors
// that are not engine Statuses: "method_not_allowed", "upgrade_required").
std::string ErrorJson(const Status& status,
                      std::span<const engine::RecordError> details = {},
                      std::string_view code_override = {});

}  // namespace aquifer::gateway
