#include "aquifer/engine/subscriptions.h"

#include <algorithm>

namespace aquifer::engine {

class SubscriptionHub::Handle final : public Listener {
 public:
  Handle(std::shared_ptr<State> state, Uuid instance_id, std::shared_ptr<Entry> entry)
      : state_(std::move(state)), instance_id_(instance_id), entry_(std::move(entry)) {}
  ~Handle() override { Remove(state_.get(), instance_id_, entry_); }

 private:
  std::shared_ptr<State> state_;
  Uuid instance_id_;
  std::shared_ptr<Entry> entry_;
};

std::unique_ptr<Listener> SubscriptionHub::Listen(const Uuid& instance_id,
                                                  std::function<void()> on_change) {
  auto entry = std::make_shared<Entry>();
  entry->on_change = std::move(on_change);
  {
    std::lock_guard lock(state_->mu);
    state_->by_instance[instance_id].push_back(entry);
  }
  state_->listeners.fetch_add(1, std::memory_order_relaxed);
  return std::make_unique<Handle>(state_, instance_id, std::move(entry));
}

void SubscriptionHub::Remove(State* state, const Uuid& instance_id,
                             const std::shared_ptr<Entry>& entry) {
  {
    std::lock_guard lock(state->mu);
    auto it = state->by_instance.find(instance_id);
    if (it != state->by_instance.end()) {
      auto& entries = it->second;
      entries.erase(std::remove(entries.begin(), entries.end(), entry), entries.end());
      if (entries.empty()) state->by_instance.erase(it);
    }
  }
  // Waits for a callback in flight on another thread; re-entrant on the hub thread.
  std::lock_guard entry_lock(entry->mu);
  entry->active = false;
  state->listeners.fetch_sub(1, std::memory_order_relaxed);
}

void SubscriptionHub::Notify(const Uuid& instance_id) {
  state_->generation.fetch_add(1, std::memory_order_acq_rel);
  std::vector<std::shared_ptr<Entry>> entries;
  {
    std::lock_guard lock(state_->mu);
    auto it = state_->by_instance.find(instance_id);
    if (it == state_->by_instance.end()) return;
    entries = it->second;
  }
  for (const auto& entry : entries) {
    std::lock_guard entry_lock(entry->mu);
    if (!entry->active) continue;
    state_->notifications.fetch_add(1, std::memory_order_relaxed);
    entry->on_change();
  }
}

}  // namespace aquifer::engine
