#pragma once
// The Env concept: everything a protocol may do to the world.
//
// A protocol core is a deterministic state machine. It reacts to
//   - a message from a peer:           on_message(from, msg)
//   - a timer it armed firing:         the callback given to arm()
//   - a call from its user:            lock(), broadcast(), put() ...
// and acts only through its Env:
//
//   env.self()             this node's address
//   env.now()              the time in this node's steady clock (skewed in dcp::sim)
//   env.wall_now()         wall-clock time since the Unix epoch: the only time
//                          that may leave this host (see dcp/core/time.hpp)
//   env.send(to, msg)      fire-and-forget; false if refused at once (counted)
//   env.arm(after, fn)     a one-shot timer; returns an id for cancel()
//   env.cancel(id)         true if the timer had not fired yet
//   env.post(fn)           runs fn once the current event (message, timer, call)
//                          has been handled: how a core completes its user's
//                          calls (DESIGN §10; dcp::defer, dcp/core/outbox.hpp).
//                          In the order posted; dropped if the node stops or
//                          crashes first
//   env.rng()              this node's random source (seeded from outside)
//   env.disk()             durable state; see dcp/core/disk.hpp
//   env.perform(io, done)  blocking I/O the core asks the runtime to perform
//                          (an fsync: disk::sync_later), off the event loop
//                          where it can; done(ec) runs afterwards, as an event
//                          of its own. Neither runs if the node stops or
//                          crashes first (the I/O may or may not have happened)
//   env.logs(level), env.log(level, text)   the logging hook
//   env.count(name, delta) a named counter in the runtime's metrics, one the protocol declares
//                          (static constexpr dcp::counter_set counters; dcp/core/counter_set.hpp)
//
// An Env is a small handle (copyable, a few words); a protocol stores it by
// value. dcp::sim::env and dcp::net::env are the two implementations.
// Messages may be lost, duplicated, delayed and reordered by the world; an
// Env promises nothing else.
#include <algorithm>
#include <concepts>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string_view>
#include <type_traits>
#include <utility>

#include "dcp/core/address.hpp"
#include "dcp/core/counter_set.hpp"
#include "dcp/core/disk.hpp"
#include "dcp/core/log.hpp"
#include "dcp/core/rng.hpp"
#include "dcp/core/time.hpp"
#include "dcp/wire/message.hpp"

namespace dcp {

/// Names one armed timer. Zero is never a valid id.
struct timer_id {
  std::uint64_t value = 0;
  constexpr explicit operator bool() const noexcept { return value != 0; }
  constexpr bool operator==(const timer_id&) const noexcept = default;
};

using timer_callback = std::function<void()>;

namespace detail {
/// A message used only to check, at compile time, that an Env can send.
struct probe_message {
  static constexpr message_type wire_id = 0xFFFF;
  template <class Archive> void serialize(Archive&) {}
};
}  // namespace detail

template <class E>
concept Env = std::copy_constructible<E> &&
    requires(E& env, const E& cenv, const address& to, duration after, timer_id t, log_level level,
             std::string_view text, std::int64_t delta) {
  { cenv.self() } -> std::convertible_to<address>;
  { cenv.now() } -> std::same_as<time_point>;
  { cenv.wall_now() } -> std::same_as<wall_time>;
  { env.send(to, detail::probe_message{}) } -> std::same_as<bool>;
  { env.arm(after, timer_callback{}) } -> std::same_as<timer_id>;
  { env.cancel(t) } -> std::same_as<bool>;
  env.post(timer_callback{});
  { env.rng() } -> std::same_as<rng&>;
  { env.disk() } -> std::same_as<disk&>;
  env.perform(io_work{}, std::function<void(std::error_code)>{});
  { cenv.logs(level) } -> std::same_as<bool>;
  env.log(level, text);
  env.count(text, delta);
};

/// Runs `fn` once the current message, timer or call has been handled
/// (env.post): how a core completes a call without running its completion
/// inside it (DESIGN §10: a caller is never re-entered while it holds a lock
/// or walks a table). `fn` must not refer to the core, which may be gone by
/// then; a core whose completions do uses a dcp::outbox.
template <Env E, class F> void defer(E& env, F&& fn) { env.post(std::function<void()>(std::forward<F>(fn))); }

/// For a call that may learn its answer before it returns (a lone node, an
/// entry already known): wrap(f) is f, except that when it is invoked before
/// returned() it runs deferred (as defer does), not inside the call.
///
///   after_return done(env_);
///   start(..., done.wrap(std::move(cb)));
///   done.returned();
template <Env E> class after_return {
 public:
  explicit after_return(E env) : env_(std::move(env)), returned_(std::make_shared<bool>(false)) {}
  template <class F> auto wrap(F f) {
    return [env = env_, returned = returned_, f = std::move(f)](auto&&... args) mutable {
      if (*returned) return f(std::forward<decltype(args)>(args)...);
      defer(env,
            [f = std::move(f), ... a = std::decay_t<decltype(args)>(std::forward<decltype(args)>(args))]() mutable {
              f(std::move(a)...);
            });
    };
  }
  void returned() noexcept { *returned_ = true; }

 private:
  E env_;
  std::shared_ptr<bool> returned_;
};

/// A timer that re-arms itself every `period` until stopped or destroyed: the
/// shape of every gossip round, heartbeat and shuffle.
///
/// The owner must outlive it or stop() it (the usual case: it is a member of
/// the protocol that owns the Env).
template <Env E> class periodic {
 public:
  periodic() = default;
  periodic(const periodic&) = delete;
  periodic& operator=(const periodic&) = delete;
  ~periodic() { stop(); }

  /// Starts (or restarts) the cycle: first tick after `first`, then every `period`.
  void start(E env, duration period, std::function<void()> tick, duration first = duration::zero()) {
    stop();
    env_ = std::move(env);
    period_ = period;
    tick_ = std::move(tick);
    arm(first > duration::zero() ? first : period);
  }
  void stop() {
    if (env_ && id_) env_->cancel(id_);
    id_ = {};
  }
  bool running() const noexcept { return static_cast<bool>(id_); }

 private:
  void arm(duration after) {
    id_ = env_->arm(after, [this] {
      id_ = {};
      arm(period_);  // re-arm first: the tick may stop() us
      tick_();
    });
  }
  std::optional<E> env_;
  duration period_{};
  std::function<void()> tick_;
  timer_id id_{};
};

/// A one-shot timer kept at the earliest time asked of it: the shape of a
/// core that sleeps until its next retry, renewal or expiry instead of
/// ticking. An idle node then costs nothing, where a periodic tick costs an
/// event every period per node (5 M events per simulated second for 10^5
/// clients ticking every 20 ms).
///
/// The owner must outlive it or stop() it, as for periodic.
template <Env E> class wakeup {
 public:
  wakeup() = default;
  wakeup(const wakeup&) = delete;
  wakeup& operator=(const wakeup&) = delete;
  ~wakeup() { stop(); }

  /// What runs when it fires; it fires only once armed by wake_by.
  void start(E env, std::function<void()> fire) {
    stop();
    env_ = std::move(env);
    fire_ = std::move(fire);
  }
  /// Fires at `when` at the latest: earlier than it was armed for, or armed anew.
  void wake_by(time_point when) {
    if (!env_ || (id_ && when >= at_)) return;
    if (id_) env_->cancel(id_);
    at_ = when;
    id_ = env_->arm(std::max(when - env_->now(), duration::zero()), [this] {
      id_ = {};
      fire_();
    });
  }
  void stop() {
    if (env_ && id_) env_->cancel(id_);
    id_ = {};
  }
  bool armed() const noexcept { return static_cast<bool>(id_); }

 private:
  std::optional<E> env_;
  std::function<void()> fire_;
  timer_id id_{};
  time_point at_{};
};

}  // namespace dcp
