#pragma once

// What every bench binary needs to stop on a failed setup step: Die prints the message after
// the program's name and exits 1; Must answers a Result's value or dies with `what` and the
// status (a Status alone: dies unless OK). Figures are printed, never asserted.

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <sys/types.h>
#include <unistd.h>

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

// CPU time (user + system) the process `pid` (0: this one) has used so far, in seconds,
// from /proc; -1 if unknown.
inline double ProcessCpuSeconds(pid_t pid) {
  const std::string path = pid == 0 ? std::string("/proc/self/stat") : "/proc/" + std::to_string(pid) + "/stat";
  FILE* f = std::fopen(path.c_str(), "r");
  if (f == nullptr) return -1;
  char buf[2048] = {0};
  size_t n = std::fread(buf, 1, sizeof buf - 1, f);
  std::fclose(f);
  // Fields after the command name (which may hold spaces): state is field 3, utime 14, stime 15.
  const char* p = std::strrchr(buf, ')');
  if (n == 0 || p == nullptr) return -1;
  unsigned long long utime = 0, stime = 0;
  if (std::sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &utime, &stime) != 2) return -1;
  return static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
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
