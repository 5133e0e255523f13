#pragma once
// outbox: the completions a core owes its users, run after the current event.
//
// DESIGN §10: a call such as propose() returns before its completion runs,
// and a message handler finishes its work before any user callback runs, so
// a core never sees itself re-entered half-way through a transition (etcd's
// raft hands committed entries back in Ready for the same reason). A core
// pushes each completion here as it learns it; the outbox posts one drain
// (env.post) for everything pushed during the event, and runs them in the
// order pushed.
//
// Unlike dcp::defer, the completions may refer to the core: an outbox
// destroyed with its core drops what it still holds, and a completion that
// destroys the core stops the drain (the rest may refer to the core too).
#include <algorithm>
#include <cstddef>
#include <functional>
#include <memory>
#include <utility>
#include <vector>

#include "dcp/core/env.hpp"

namespace dcp {

template <Env E> class outbox {
 public:
  explicit outbox(E env) : queue_(std::make_shared<queue>(std::move(env))) {}
  outbox(const outbox&) = delete;
  outbox& operator=(const outbox&) = delete;
  ~outbox() {
    queue_->live = false;
    queue_->items.clear();
  }

  /// Runs fn() after the current event.
  void push(std::function<void()> fn) {
    if (queue_->items.empty() && !queue_->draining) post_drain(queue_);
    queue_->items.push_back(std::move(fn));
  }
  /// Runs done(value) after the current event.
  template <class Done, class V> void complete(Done done, V value) {
    push([done = std::move(done), value = std::move(value)]() mutable { done(std::move(value)); });
  }

  /// `fn`, as a callable that does nothing once the outbox is gone: how a
  /// core hands the runtime a callback that refers to it (env.perform's).
  template <class F> auto guard(F fn) {
    return [q = std::weak_ptr<queue>(queue_), fn = std::move(fn)](auto&&... args) mutable {
      if (auto live = q.lock(); live && live->live) fn(std::forward<decltype(args)>(args)...);
    };
  }

  std::size_t size() const noexcept { return queue_->items.size(); }

 private:
  struct queue {
    explicit queue(E e) : env(std::move(e)) {}
    E env;
    std::vector<std::function<void()>> items;
    bool live = true;
    bool draining = false;
  };
  static void post_drain(const std::shared_ptr<queue>& q) {
    q->env.post([w = std::weak_ptr<queue>(q)] {
      if (auto live = w.lock()) drain(live);
    });
  }
  // Index, not iterators: a completion may push more, which runs in this
  // pass. What follows a completion that throws runs in a later drain.
  static void drain(const std::shared_ptr<queue>& q) {
    struct consume {
      const std::shared_ptr<queue>& q;
      std::size_t ran = 0;
      ~consume() {
        auto& items = q->items;
        items.erase(items.begin(), items.begin() + static_cast<std::ptrdiff_t>(std::min(ran, items.size())));
        q->draining = false;
        if (q->live && !items.empty()) post_drain(q);
      }
    } done{q};
    q->draining = true;
    while (done.ran < q->items.size() && q->live) {
      auto fn = std::move(q->items[done.ran++]);
      fn();
    }
  }

  std::shared_ptr<queue> queue_;
};

}  // namespace dcp
