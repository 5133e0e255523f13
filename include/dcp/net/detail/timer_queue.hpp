#pragma once
// timer_queue: the protocol timers of one node, on one asio::steady_timer.
//
// Why one heap over one steady_timer rather than a steady_timer per arm():
//   - exact cancel semantics: cancel(id) returns true iff the callback will
//     not run. With a steady_timer per timer, a timer that has expired but
//     whose handler is still queued cannot be cancelled, so a flag per timer
//     would be needed anyway;
//   - protocols arm and cancel a lot (a time-out per request, re-armed on
//     every answer): here that is a map insert/erase, with no Asio operation
//     and no handler allocation per timer;
//   - timers due at the same instant fire in the order they were armed, as
//     in dcp::sim, so a protocol sees the same ordering in both worlds.
//
// Thread safety: none; every call runs on the node's executor.
#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <unordered_map>
#include <utility>
#include <vector>

#include <asio/any_io_executor.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>

#include "dcp/core/env.hpp"
#include "dcp/core/time.hpp"

namespace dcp::net::detail {

/// steady_clock, read as the Env clock (nanoseconds since the steady epoch).
inline time_point steady_now() noexcept {
  return time_point(std::chrono::duration_cast<duration>(std::chrono::steady_clock::now().time_since_epoch()));
}
inline std::chrono::steady_clock::time_point to_steady(time_point t) noexcept {
  return std::chrono::steady_clock::time_point(
      std::chrono::duration_cast<std::chrono::steady_clock::duration>(t.time_since_epoch()));
}

class timer_queue : public std::enable_shared_from_this<timer_queue> {
 public:
  explicit timer_queue(const asio::any_io_executor& ex) : timer_(ex) {}
  timer_queue(const timer_queue&) = delete;
  timer_queue& operator=(const timer_queue&) = delete;

  timer_id arm(duration after, timer_callback fn) {
    const timer_id id{next_id_++};
    if (stopped_) return id;  // a stopped node never fires; the id is still unique
    const time_point now = steady_now();
    if (after < duration::zero()) after = duration::zero();
    const time_point at = after > time_point::max() - now ? time_point::max() : now + after;
    queue_.emplace(key{at, id.value}, std::move(fn));
    deadline_.emplace(id.value, at);
    schedule();
    return id;
  }

  /// env.post: `fn` runs from a posted handler, as a turn, before the timers
  /// then due and in the order posted; never after stop().
  void post(timer_callback fn) {
    if (stopped_) return;
    posted_.push_back(std::move(fn));
    if (!running_posted_) post_drain();  // else it runs in the pass under way
  }

  bool cancel(timer_id id) noexcept {
    auto it = deadline_.find(id.value);
    if (it == deadline_.end()) return false;
    queue_.erase(key{it->second, id.value});
    deadline_.erase(it);
    return true;  // the steady_timer may wake for nothing: cheaper than re-arming it
  }

  /// Drops every timer and stops waking up; later arm() calls never fire.
  void stop() noexcept {
    stopped_ = true;
    queue_.clear();
    posted_.clear();
    deadline_.clear();
    timer_.cancel();
  }

  std::size_t size() const noexcept { return queue_.size(); }

  /// Runs every firing of the queue as `turn(run)`: the node passes its
  /// transport's turn (basic_tcp_transport::turn), so that what the timers
  /// send in one firing leaves at its end in one write per connection, with
  /// no write-completion handler (Raft's group-commit flush sends an
  /// AppendEntries to every follower from one). Must stay callable until stop().
  void run_in(std::function<void(const std::function<void()>&)> turn) { turn_ = std::move(turn); }

 private:
  struct key {
    time_point at;
    std::uint64_t id;  // ties fire in arm order
    auto operator<=>(const key&) const = default;
  };

  void schedule() {
    if (stopped_ || queue_.empty()) return;
    const time_point earliest = queue_.begin()->first.at;
    if (earliest >= armed_for_) return;  // the pending wait wakes early enough
    if (earliest <= steady_now()) {
      // Already due (arm(0): group commit, deferred work): run it from a
      // posted handler and leave the steady_timer as it is. Re-arming it
      // costs a timerfd_settime, twice (now, then back), and on a virtual
      // machine each is a trap to the hypervisor: tens of microseconds on a
      // hot path.
      post_drain();
      return;
    }
    armed_for_ = earliest;
    const std::uint64_t generation = ++generation_;
    timer_.expires_at(to_steady(earliest));  // aborts the previous wait, which then sees a stale generation
    timer_.async_wait([self = shared_from_this(), generation](const std::error_code&) { self->fire(generation); });
  }

  void post_drain() {
    if (drain_posted_) return;
    drain_posted_ = true;
    asio::post(timer_.get_executor(), [self = shared_from_this()] { self->drain(); });
  }

  void fire(std::uint64_t generation) {
    if (stopped_ || generation != generation_) return;
    armed_for_ = time_point::max();
    run_as_turn();
  }

  void drain() {
    drain_posted_ = false;
    if (!stopped_) run_as_turn();
  }

  void run_as_turn() {
    if (turn_)
      turn_([this] { run_due(); });
    else
      run_due();
  }

  /// Runs what was posted, then every timer that is due, in (deadline, arm
  /// order), then waits for the next.
  void run_due() {
    struct reschedule {  // also when a callback throws: the other timers must keep firing
      timer_queue* q;
      ~reschedule() { q->schedule(); }
    } guard{this};
    run_posted();
    const time_point now = steady_now();
    while (!stopped_ && !queue_.empty() && queue_.begin()->first.at <= now) {
      auto node = queue_.extract(queue_.begin());
      deadline_.erase(node.key().id);
      node.mapped()();  // may arm, cancel or stop
    }
  }

  /// What post() queued, in order; what runs may post more, which runs in
  /// this same turn. What follows a callback that throws runs in a next turn.
  void run_posted() {
    struct consume {
      timer_queue* q;
      std::size_t ran = 0;
      ~consume() {
        q->running_posted_ = false;
        auto& p = q->posted_;
        p.erase(p.begin(), p.begin() + static_cast<std::ptrdiff_t>(std::min(ran, p.size())));
        if (!p.empty()) q->post_drain();
      }
    } done{this};
    running_posted_ = true;
    while (done.ran < posted_.size() && !stopped_) {
      auto fn = std::move(posted_[done.ran++]);
      fn();
    }
  }

  std::map<key, timer_callback> queue_;
  std::vector<timer_callback> posted_;  // post(): run at the start of the next turn
  std::unordered_map<std::uint64_t, time_point> deadline_;
  asio::steady_timer timer_;
  time_point armed_for_ = time_point::max();
  std::uint64_t generation_ = 0;
  std::uint64_t next_id_ = 1;
  bool stopped_ = false;
  bool running_posted_ = false;                             // run_posted() is under way
  bool drain_posted_ = false;                               // a drain() is queued on the executor
  std::function<void(const std::function<void()>&)> turn_;  // run_in()
};

}  // namespace dcp::net::detail
