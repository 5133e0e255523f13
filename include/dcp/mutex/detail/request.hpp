#pragma once
// The user-facing half every mutex shares: the state (idle, waiting, held),
// the handler of the waiting request and its time-out. Algorithms call
// grant() / fail() when their protocol decides; the handler runs last, after
// the state is consistent, so it may call back into the mutex.
#include <functional>
#include <system_error>
#include <utility>
#include <vector>

#include "dcp/core/env.hpp"
#include "dcp/core/error.hpp"
#include "dcp/mutex/api.hpp"

namespace dcp::mutex::detail {

/// What request counts, under its host protocol's id (each mutex joins it to its own counters).
inline constexpr counter_set request_counters{{"lock_busy", "lock_timed_out", "lock_granted", "lock_failed"}};

template <Env E> class request {
 public:
  explicit request(E& env) : env_(&env) {}
  request(const request&) = delete;
  request& operator=(const request&) = delete;
  ~request() { stop_timers(); }

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
  /// Waiting -> held; runs the handler with success.
  void grant() {
    if (!waiting()) return;
    state_ = lock_state::held;
    env_->count("lock_granted");
    finish({});
  }
  /// Waiting -> idle; runs the handler with `ec`. The caller has withdrawn its request.
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
  /// Runs `h(ec)` from a zero-delay timer: results known inside lock() are not
  /// delivered inside lock().
  void defer(lock_handler h, std::error_code ec) {
    if (!h) return;
    deferred_.emplace_back(std::move(h), ec);
    if (!flush_)
      flush_ = env_->arm(duration::zero(), [this] {
        flush_ = {};
        auto due = std::exchange(deferred_, {});
        for (auto& [handler, code] : due) handler(code);
      });
  }

 private:
  void finish(std::error_code ec) {
    if (timer_) env_->cancel(std::exchange(timer_, {}));
    if (auto h = std::exchange(handler_, nullptr)) h(ec);
  }
  void stop_timers() noexcept {
    if (timer_) env_->cancel(timer_);
    if (flush_) env_->cancel(flush_);
  }
  E* env_;
  lock_state state_ = lock_state::idle;
  lock_handler handler_;
  timer_id timer_{};
  std::vector<std::pair<lock_handler, std::error_code>> deferred_;
  timer_id flush_{};
};

}  // namespace dcp::mutex::detail
