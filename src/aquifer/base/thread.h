#pragma once

// Thread names and scheduling priority of the calling thread (Linux; no-ops
// elsewhere). Names show in `top -H`, `perf sched` and /proc/<pid>/task/*/comm;
// the priority is a nice value relative to the process's (README
// "Benchmarks": background work — the warehouse's paced writes, RocksDB's
// flushes and compactions — yields the cores to the WebSocket threads).

#include <string_view>

namespace aquifer {

// Names the calling thread (at most 15 bytes are kept).
void NameThisThread(std::string_view name);

// Background work's nice value: a runnable background thread gets about a
// third of the CPU share of a nice-0 thread on a contended core (weights
// 335 vs 1024), and all of an idle one, so it yields to latency-carrying
// threads without being starved under sustained load.
inline constexpr int kBackgroundNice = 5;

// Makes the calling thread at least `nice` (never raises its priority: a
// thread already nicer keeps its value). Returns false if the kernel refused.
bool LowerThisThreadPriority(int nice = kBackgroundNice);

// The calling thread's nice value.
int ThisThreadNice();

}  // namespace aquifer
