#pragma once
// The user-facing half every mutex shares: the state (idle, waiting, held),
// the handler of the waiting request and its time-out. Algorithms call
// grant() / fail() when their protocol decides; the state changes at once and
// the handler runs after the event (DESIGN §10; an outbox,
// dcp/core/outbox.hpp), never inside lock(), cancel() or a message handler,
// so the algorithm finishes its step before user code can call back into it.
#include <functional>
#include <system_error>
#include <utility>

#include "dcp/core/env.hpp"
#include "dcp/core/error.hpp"
#include "dcp/core/outbox.hpp"
#include "dcp/mutex/api.hpp"

namespace dcp::mutex::detail {

/// What request counts, under its host protocol's id (each mutex joins it to its own counters).
inline constexpr counter_set request_counters{{"lock_busy", "lock_timed_out", "lock_granted", "lock_failed"}};

template <Env E> class request {
 public:
  explicit request(E& env) : env_(&env), out_(env) {}
  request(const request&) = delete;
  request& operator=(const request&) = delete;
  ~request() {
    if (timer_) env_->cancel(timer_);
  }

  lock_state state() const noexcept { return state_; }
  bool idle() const noexcept { return state_ == lock_state::idle; }
  bool waiting() const noexcept { return state_ == lock_state::waiting; }
  bool held() const noexcept { return state_ == lock_state::held; }

  /// Starts waiting, or answers `busy` (later, never inside lock()) if not idle.
  /// `on_timeout` withdraws the protocol's request; the handler then gets timed_out.
  bool begin(lock_handler h, duration timeout, std::function<void()> on_timeout) {
    if (!idle()) {
      env_->count("lock_busy");
      defer(std::move(h), errc::busy);
      return false;
    }
    state_ = lock_state::waiting;
    handler_ = std::move(h);
    timer_ = env_->arm(timeout, [this, w = std::move(on_timeout)] {
      timer_ = {};
      if (!waiting()) return;
      env_->count("lock_timed_out");
      w();
      fail(errc::timed_out);
    });
    return true;
  }
  /// Idle -> held at once (try_lock, or a lock() that needs no message).
  void take() noexcept { state_ = lock_state::held; }
  /// Waiting -> held; the handler gets success, after the event.
  void grant() {
    if (!waiting()) return;
    state_ = lock_state::held;
    env_->count("lock_granted");
    finish({});
  }
  /// Waiting -> idle; the handler gets `ec`, after the event. The caller has withdrawn its request.
  void fail(std::error_code ec) {
    if (!waiting()) return;
    state_ = lock_state::idle;
    if (ec != make_error_code(errc::timed_out)) env_->count("lock_failed");
    finish(ec);
  }
  /// Held -> idle. Throws dcp::error if the lock is not held (a caller bug).
  void release(const char* who) {
    if (!held())
      throw error(errc::invalid_argument, std::string(who) + ": unlock() called but this node does not hold the lock");
    state_ = lock_state::idle;
  }
  /// Runs `h(ec)` after the event: a result known inside lock() (busy, or a
  /// token already here) is not delivered inside lock().
  void defer(lock_handler h, std::error_code ec) {
    if (h) out_.complete(std::move(h), ec);
  }

 private:
  void finish(std::error_code ec) {
    if (timer_) env_->cancel(std::exchange(timer_, {}));
    defer(std::exchange(handler_, nullptr), ec);
  }
  E* env_;
  outbox<E> out_;  ///< handlers owed, run after the event; dropped with the mutex
  lock_state state_ = lock_state::idle;
  lock_handler handler_;
  timer_id timer_{};
};

}  // namespace dcp::mutex::detail
