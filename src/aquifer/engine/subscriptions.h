#pragma once

// SubscriptionHub: instance id → the local listeners waiting for its changes.
//
// The report listener calls Notify(instance) when a write report says new
// records may exist; the hub then calls the callback of every listener of
// that instance. Callbacks only set a flag or post to an executor (the
// Listener contract in engine.h), so a slow subscriber never stalls the hub,
// the report listener or any writer (REFERENCE.md §9.10).
//
// Concurrency: the hub's mutex guards only the map and is never held while a
// callback runs (Notify copies the listener list first). Each listener has
// its own mutex, held while its callback runs: destroying a Listener takes
// it, so once the destructor returns the callback never runs again and may
// safely refer to the subscriber's state. The mutex is recursive, so a
// callback that destroys its own Listener does not deadlock. Listeners share
// ownership of the hub's state, so a Listener may outlive the hub (and the
// Engine) without dangling. Thread-safe.

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "aquifer/base/uuid.h"
#include "aquifer/engine/engine.h"

namespace aquifer::engine {

class SubscriptionHub {
 public:
  SubscriptionHub() = default;
  SubscriptionHub(const SubscriptionHub&) = delete;
  SubscriptionHub& operator=(const SubscriptionHub&) = delete;

  // Registers `on_change` for `instance_id` until the returned Listener is
  // destroyed.
  std::unique_ptr<Listener> Listen(const Uuid& instance_id, std::function<void()> on_change);

  // Calls every callback registered for `instance_id`, on the calling thread.
  void Notify(const Uuid& instance_id);

  // Bumped by every Notify, before its callbacks run: a reader that saw the
  // same generation before and after reading saw every change notified so far
  // (the engine shares change pages between feeds by it).
  uint64_t generation() const { return state_->generation.load(std::memory_order_acquire); }
  // Moves the generation alone: called before a write is made known any other
  // way (a `wait=` answer), so no page shared from before it outlives that.
  void Advance() { state_->generation.fetch_add(1, std::memory_order_acq_rel); }

  int64_t listeners() const { return state_->listeners.load(std::memory_order_relaxed); }
  int64_t notifications() const { return state_->notifications.load(std::memory_order_relaxed); }

 private:
  struct Entry {
    std::recursive_mutex mu;  // held while the callback runs
    bool active = true;       // guarded by mu
    std::function<void()> on_change;
  };
  struct State {
    std::mutex mu;
    std::unordered_map<Uuid, std::vector<std::shared_ptr<Entry>>, UuidHash> by_instance;  // guarded by mu
    std::atomic<int64_t> listeners{0};
    std::atomic<int64_t> notifications{0};
    std::atomic<uint64_t> generation{0};
  };
  class Handle;
  static void Remove(State* state, const Uuid& instance_id, const std::shared_ptr<Entry>& entry);

  std::shared_ptr<State> state_ = std::make_shared<State>();
};

}  // namespace aquifer::engine
