#pragma once

// Thread names (Linux; a no-op elsewhere): they show in `top -H`, `perf
// sched`, `perf report --sort comm` and /proc/<pid>/task/*/comm, so a profile
// tells the WebSocket threads (aq-ws) from the HTTP threads (aq-http) and the
// stores' consumers (aq-lookup-wk, aq-warehouse-wk).

#include <string_view>

namespace aquifer {

// Names the calling thread (at most 15 bytes are kept).
void NameThisThread(std::string_view name);

}  // namespace aquifer
