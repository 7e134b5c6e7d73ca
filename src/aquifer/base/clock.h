#pragma once

// Clock: the one source of time, injectable so timeouts, TTLs and retries are
// tested without sleeping (compare RocksDB's SystemClock / EmulatedClock).
//
// All methods are thread-safe.

#include <atomic>
#include <chrono>
#include <cstdint>

namespace aquifer {

class Clock {
 public:
  virtual ~Clock() = default;
  // Wall time, milliseconds since the Unix epoch (record timestamps, usage periods).
  virtual int64_t NowMillis() const = 0;
  // Monotonic time in microseconds from an arbitrary origin (deadlines, latencies).
  virtual int64_t MonotonicMicros() const = 0;
  // Blocks for `micros` of this clock's time. A manual clock advances instead.
  virtual void SleepForMicros(int64_t micros) = 0;

  // The process-wide real clock.
  static Clock* System();
};

// A clock that moves only when told to. SleepForMicros advances it.
class ManualClock final : public Clock {
 public:
  explicit ManualClock(int64_t start_millis = 1'700'000'000'000) : micros_(start_millis * 1000) {}
  int64_t NowMillis() const override { return micros_.load() / 1000; }
  int64_t MonotonicMicros() const override { return micros_.load(); }
  void SleepForMicros(int64_t micros) override { Advance(micros); }
  void Advance(int64_t micros) { micros_.fetch_add(micros); }

 private:
  std::atomic<int64_t> micros_;
};

}  // namespace aquifer
