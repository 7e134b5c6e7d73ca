#pragma once

// Status and Result<T>: the one error type of Aquifer.
//
// A Status is a code plus a message. Codes name the decision the caller must
// make (retry, fix the input, give up), not the library that failed. Messages
// say what was being done, to what, and why; drivers include the server's own
// error text. No exception crosses a module boundary: code that calls a
// throwing library catches and converts at the call site.
//
// Both types are [[nodiscard]]: ignoring an error is a compile-time warning.

#include <string>
#include <string_view>
#include <utility>
#include <variant>

#include <fmt/format.h>

namespace aquifer {

enum class StatusCode : int {
  kOk = 0,
  kInvalidArgument,     // the caller's input is wrong; retrying the same input fails again
  kNotFound,            // the thing does not exist (or the caller may not see it)
  kAlreadyExists,       // a create found the thing already there
  kUnauthenticated,     // no valid credentials
  kPermissionDenied,    // valid credentials, not allowed to do this
  kFailedPrecondition,  // the system is not in a state to do this (e.g. job not finished)
  kResourceExhausted,   // over a quota or size limit
  kUnavailable,         // a dependency cannot be reached right now; retry may succeed
  kTimeout,             // a deadline passed; the operation may or may not have happened
  kAborted,             // a conflict with a concurrent operation; retry may succeed
  kCorruption,          // stored data is damaged
  kNotSupported,        // this driver or build does not do this
  kInternal,            // a bug
  kTooLarge,            // the input is over a size limit; smaller input may succeed
};

std::string_view StatusCodeName(StatusCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status OK() { return Status(); }

  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }

  // "InvalidArgument: items[3].price: expected double, got string"
  std::string ToString() const;

  // Returns a copy whose message is prefixed with context: "ctx: message".
  Status WithContext(std::string_view context) const;

  bool operator==(const Status& other) const = default;

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

// Helpers that format their message with fmt: InvalidArgument("bad {}", x).
#define AQUIFER_STATUS_FACTORY(Name)                                                  \
  template <typename... Args>                                                        \
  inline Status Name(fmt::format_string<Args...> format, Args&&... args) {           \
    return Status(StatusCode::k##Name, fmt::format(format, std::forward<Args>(args)...)); \
  }
AQUIFER_STATUS_FACTORY(InvalidArgument)
AQUIFER_STATUS_FACTORY(NotFound)
AQUIFER_STATUS_FACTORY(AlreadyExists)
AQUIFER_STATUS_FACTORY(Unauthenticated)
AQUIFER_STATUS_FACTORY(PermissionDenied)
AQUIFER_STATUS_FACTORY(FailedPrecondition)
AQUIFER_STATUS_FACTORY(ResourceExhausted)
AQUIFER_STATUS_FACTORY(Unavailable)
AQUIFER_STATUS_FACTORY(Timeout)
AQUIFER_STATUS_FACTORY(Aborted)
AQUIFER_STATUS_FACTORY(Corruption)
AQUIFER_STATUS_FACTORY(NotSupported)
AQUIFER_STATUS_FACTORY(Internal)
AQUIFER_STATUS_FACTORY(TooLarge)
#undef AQUIFER_STATUS_FACTORY

// A value of type T, or the Status saying why there is none.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : data_(std::in_place_index<1>, std::move(value)) {}  // NOLINT
  Result(Status status) : data_(std::in_place_index<0>, std::move(status)) {  // NOLINT
    if (std::get<0>(data_).ok()) {
      data_.template emplace<0>(StatusCode::kInternal, "Result constructed from an OK status");
    }
  }

  bool ok() const { return data_.index() == 1; }
  const Status& status() const& {
    static const Status kOkStatus;
    return ok() ? kOkStatus : std::get<0>(data_);
  }
  Status status() && { return ok() ? Status() : std::move(std::get<0>(data_)); }

  // Precondition: ok().
  T& value() & { return std::get<1>(data_); }
  const T& value() const& { return std::get<1>(data_); }
  T&& value() && { return std::get<1>(std::move(data_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T&& operator*() && { return std::move(*this).value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

  T value_or(T fallback) const& { return ok() ? value() : std::move(fallback); }

 private:
  std::variant<Status, T> data_;
};

}  // namespace aquifer

#define AQUIFER_CONCAT_INNER(a, b) a##b
#define AQUIFER_CONCAT(a, b) AQUIFER_CONCAT_INNER(a, b)

// Returns the Status from the enclosing function if `expr` is not OK.
#define AQ_RETURN_IF_ERROR(expr)                             \
  do {                                                       \
    ::aquifer::Status aq_status_ = ::aquifer::ToStatus(expr); \
    if (!aq_status_.ok()) return aq_status_;                 \
  } while (0)

// `AQ_ASSIGN_OR_RETURN(auto x, MakeX());` declares x from the Result's value,
// or returns its Status from the enclosing function.
#define AQ_ASSIGN_OR_RETURN(lhs, rexpr) \
  AQ_ASSIGN_OR_RETURN_IMPL(AQUIFER_CONCAT(aq_result_, __LINE__), lhs, rexpr)
#define AQ_ASSIGN_OR_RETURN_IMPL(result, lhs, rexpr) \
  auto result = (rexpr);                             \
  if (!result.ok()) return std::move(result).status(); \
  lhs = std::move(result).value()

namespace aquifer {
inline const Status& ToStatus(const Status& status) { return status; }
template <typename T>
Status ToStatus(const Result<T>& result) {
  return result.status();
}
}  // namespace aquifer
