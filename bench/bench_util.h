#pragma once

// What every bench binary needs to stop on a failed setup step: Die prints the message after
// the program's name and exits 1; Must answers a Result's value or dies with `what` and the
// status (a Status alone: dies unless OK). Figures are printed, never asserted.

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

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

// A workload timed batch by batch (`batch_records` records each): its rate, and a row of
// rate, MB/s, seconds and batch p50 / p99 / max in ms, then `ratio`, its name padded to
// `name_width` columns.
struct BatchWorkload {
  BatchWorkload(std::string workload_name, size_t batch_records, int name_width)
      : name(std::move(workload_name)), batch_size(batch_records), width(name_width) {}
  std::string name;
  size_t batch_size;
  int width;
  std::vector<double> batch_ms;
  double seconds = 0;
  size_t records = 0, bytes = 0;

  void Add(std::chrono::steady_clock::duration d, size_t batch_bytes) {
    double s = std::chrono::duration<double>(d).count();
    batch_ms.push_back(s * 1e3);
    seconds += s;
    records += batch_size;
    bytes += batch_bytes;
  }
  double rate() const { return seconds > 0 ? records / seconds : 0; }
  void Print(const std::string& ratio) const {
    std::vector<double> sorted = batch_ms;
    std::sort(sorted.begin(), sorted.end());
    auto at = [&](double q) {
      return sorted.empty() ? 0.0 : sorted[std::min(sorted.size() - 1, static_cast<size_t>(q * sorted.size()))];
    };
    fmt::print("{:<{}} {:>11.0f} {:>7.1f} {:>8.1f} {:>8.2f} {:>8.2f} {:>8.2f} {:>7}\n", name, width, rate(),
               seconds > 0 ? bytes / seconds / 1e6 : 0.0, seconds, at(0.5), at(0.99),
               sorted.empty() ? 0.0 : sorted.back(), ratio);
  }
};

}  // namespace aquifer::bench
