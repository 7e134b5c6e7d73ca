#include "aquifer/driver/store_metrics.h"

#include <map>
#include <mutex>

#include <fmt/format.h>

namespace aquifer::driver {
namespace {

struct Sources {
  std::mutex mu;  // held while a render runs the sources, so unregistering waits for it
  uint64_t next_id = 0;
  std::map<uint64_t, GaugeSource> by_id;
};

Sources& AllSources() {
  static auto* sources = new Sources();
  return *sources;
}

class Registration final : public GaugeRegistration {
 public:
  explicit Registration(uint64_t id) : id_(id) {}
  ~Registration() override {
    Sources& sources = AllSources();
    std::lock_guard<std::mutex> lock(sources.mu);
    sources.by_id.erase(id_);
  }

 private:
  uint64_t id_;
};

}  // namespace

std::unique_ptr<GaugeRegistration> RegisterGaugeSource(GaugeSource source) {
  Sources& sources = AllSources();
  std::lock_guard<std::mutex> lock(sources.mu);
  uint64_t id = sources.next_id++;
  sources.by_id.emplace(id, std::move(source));
  return std::make_unique<Registration>(id);
}

std::string StoreMetricsText() {
  std::vector<Gauge> gauges;
  {
    Sources& sources = AllSources();
    std::lock_guard<std::mutex> lock(sources.mu);
    for (auto& [id, source] : sources.by_id) source(&gauges);
  }
  std::map<std::string, std::vector<const Gauge*>> by_name;
  for (const Gauge& gauge : gauges) by_name[gauge.name].push_back(&gauge);
  std::string out;
  for (const auto& [name, samples] : by_name) {
    fmt::format_to(std::back_inserter(out), "# HELP {} {}\n# TYPE {} gauge\n", name, samples.front()->help, name);
    for (const Gauge* gauge : samples) {
      if (gauge->labels.empty()) {
        fmt::format_to(std::back_inserter(out), "{} {}\n", name, gauge->value);
      } else {
        fmt::format_to(std::back_inserter(out), "{}{{{}}} {}\n", name, gauge->labels, gauge->value);
      }
    }
  }
  return out;
}

}  // namespace aquifer::driver
