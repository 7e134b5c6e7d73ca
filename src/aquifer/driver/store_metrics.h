#pragma once

// Store gauges for /metrics: figures a driver reads from its own store when
// the metrics are rendered (RocksDB block cache usage, table readers' memory,
// memtables), without a method on every interface.
//
// A driver registers a source (a function appending Gauge values) and keeps
// the returned registration as long as the store is open; destroying it
// removes the source (and waits for a render that is running it). The engine
// appends StoreMetricsText() to its /metrics text: one HELP/TYPE per metric
// name, every source's samples of that name under it, in name order.
//
// Thread-safe.

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace aquifer::driver {

struct Gauge {
  std::string name;    // e.g. "aquifer_rocksdb_block_cache_usage_bytes"
  std::string help;    // one line
  std::string labels;  // Prometheus label pairs without braces, e.g. `db="lookup"`; may be empty
  int64_t value = 0;
};

using GaugeSource = std::function<void(std::vector<Gauge>* out)>;

class GaugeRegistration {
 public:
  virtual ~GaugeRegistration() = default;
};

// Registers `source` until the registration is destroyed.
std::unique_ptr<GaugeRegistration> RegisterGaugeSource(GaugeSource source);

// Every registered source's gauges in Prometheus text format.
std::string StoreMetricsText();

}  // namespace aquifer::driver
