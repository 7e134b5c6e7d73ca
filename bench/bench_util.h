#pragma once

// What every bench binary needs to stop on a failed setup step: Die prints the message after
// the program's name and exits 1; Must answers a Result's value or dies with `what` and the
// status (a Status alone: dies unless OK). Figures are printed, never asserted.

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <utility>

#include <fmt/format.h>

#include "aquifer/base/status.h"

namespace aquifer::bench {

[[noreturn]] inline void Die(const std::string& what) {
  fmt::print(stderr, "{}: {}\n", program_invocation_short_name, what);
  std::exit(1);
}

template <typename T>
T Must(Result<T> result, std::string_view what) {
  if (!result.ok()) Die(fmt::format("{}: {}", what, result.status().ToString()));
  return std::move(*result);
}

inline void Must(const Status& status, std::string_view what) {
  if (!status.ok()) Die(fmt::format("{}: {}", what, status.ToString()));
}

}  // namespace aquifer::bench
