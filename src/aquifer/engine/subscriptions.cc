#include "aquifer/engine/subscriptions.h"

#include <algorithm>

namespace aquifer::engine {

class SubscriptionHub::Handle final : public Listener {
 public:
  Handle(SubscriptionHub* hub, Uuid instance_id, std::shared_ptr<Entry> entry)
      : hub_(hub), instance_id_(instance_id), entry_(std::move(entry)) {}
  ~Handle() override { hub_->Remove(instance_id_, entry_); }

 private:
  SubscriptionHub* hub_;
  Uuid instance_id_;
  std::shared_ptr<Entry> entry_;
};

std::unique_ptr<Listener> SubscriptionHub::Listen(const Uuid& instance_id,
                                                  std::function<void()> on_change) {
  auto entry = std::make_shared<Entry>();
  entry->on_change = std::move(on_change);
  {
    std::lock_guard lock(mu_);
    by_instance_[instance_id].push_back(entry);
  }
  listeners_.fetch_add(1, std::memory_order_relaxed);
  return std::make_unique<Handle>(this, instance_id, std::move(entry));
}

void SubscriptionHub::Remove(const Uuid& instance_id, const std::shared_ptr<Entry>& entry) {
  {
    std::lock_guard lock(mu_);
    auto it = by_instance_.find(instance_id);
    if (it != by_instance_.end()) {
      auto& entries = it->second;
      entries.erase(std::remove(entries.begin(), entries.end(), entry), entries.end());
      if (entries.empty()) by_instance_.erase(it);
    }
  }
  // Waits for a callback in flight on another thread; re-entrant on the hub thread.
  std::lock_guard entry_lock(entry->mu);
  entry->active = false;
  listeners_.fetch_sub(1, std::memory_order_relaxed);
}

void SubscriptionHub::Notify(const Uuid& instance_id) {
  std::vector<std::shared_ptr<Entry>> entries;
  {
    std::lock_guard lock(mu_);
    auto it = by_instance_.find(instance_id);
    if (it == by_instance_.end()) return;
    entries = it->second;
  }
  for (const auto& entry : entries) {
    std::lock_guard entry_lock(entry->mu);
    if (!entry->active) continue;
    notifications_.fetch_add(1, std::memory_order_relaxed);
    entry->on_change();
  }
}

}  // namespace aquifer::engine
