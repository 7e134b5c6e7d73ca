#pragma once

// WriteHealth: whether this process may acknowledge writes, and why not.
//
// The write path fails closed: when the queue or a store refuses writes in a
// way that retrying will not cure (storage corruption, a failed fsync, a full
// disk), the component that saw it calls Fail(); from then on the engine
// answers writes with Unavailable (503) naming the cause, and /healthz reports
// unhealthy with the same text. A component that recovers (its next write
// succeeded) calls Clear(). Reasons are kept per component, so one
// component's recovery does not hide another's failure.
//
// Thread-safe; Check() is cheap enough for every write (one mutex, no I/O).

#include <map>
#include <mutex>
#include <string>
#include <string_view>

#include "aquifer/base/status.h"

namespace aquifer::engine {

class WriteHealth {
 public:
  // Marks the write path failed by `component` ("queue", "lookup service",
  // "warehouse", "worker", ...) because of `cause`.
  void Fail(std::string_view component, const Status& cause) {
    std::lock_guard lock(mu_);
    failed_[std::string(component)] = cause.ToString();
  }
  // `component` works again.
  void Clear(std::string_view component) {
    std::lock_guard lock(mu_);
    failed_.erase(std::string(component));
  }
  // OK, or Unavailable naming each failed component and its cause.
  Status Check() const { return CheckIgnoring({}); }
  // Check() as if `component` were healthy (the engine probes a failed queue
  // with a write when nothing else is failing).
  Status CheckIgnoring(std::string_view ignored) const {
    std::lock_guard lock(mu_);
    std::string text;
    for (const auto& [component, cause] : failed_) {
      if (!ignored.empty() && component == ignored) continue;
      if (!text.empty()) text += "; ";
      text += component + ": " + cause;
    }
    if (text.empty()) return Status::OK();
    return Unavailable("the write path is failing, writes are not acknowledged: {}", text);
  }

 private:
  mutable std::mutex mu_;
  std::map<std::string, std::string> failed_;  // component → cause
};

}  // namespace aquifer::engine
