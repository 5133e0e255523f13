#pragma once
// Lamport's mutual exclusion (1978): a replicated request queue.
//
// A requester stamps REQUEST with its Lamport time and sends it to the N−1
// others; every member queues it by stamp (time, rank) and answers ACK. A
// member enters when its own request heads its queue and it has heard from
// every other member a message stamped later than its request. On leaving it
// sends RELEASE to all, which dequeue the request. 3(N−1) messages per entry,
// synchronization delay T, entries in stamp order.
//
// ASSUMES FIFO CHANNELS (TCP, or sim::config::fifo): "a later message from j"
// only proves that j's earlier requests have arrived if j's messages arrive in
// order. Faults tolerated: delay and duplication (queue entries are a set).
// Not tolerated: loss (waiters time out) and crashes: every member must
// answer, so a waiter gets member_failed when the transport reports one it
// waits on unreachable, timed_out after request_timeout otherwise.
#include <algorithm>
#include <cstdint>
#include <optional>
#include <set>
#include <string_view>
#include <vector>

#include "dcp/clock/lamport_clock.hpp"
#include "dcp/core/assert.hpp"
#include "dcp/core/env.hpp"
#include "dcp/core/protocol.hpp"
#include "dcp/group/static_group.hpp"
#include "dcp/mutex/api.hpp"
#include "dcp/mutex/detail/request.hpp"

namespace dcp::mutex {

struct lamport_config {
  duration request_timeout = 10s;
  void validate() const {
    if (request_timeout <= duration::zero()) throw error(errc::invalid_config, "lamport: request_timeout must be > 0");
  }
};

namespace lamport_msg {
struct request {
  static constexpr message_type wire_id = 1;
  static constexpr std::string_view wire_name = "request";
  std::uint64_t time = 0;
  template <class A> void serialize(A& ar) { ar(time); }
};
struct ack {
  static constexpr message_type wire_id = 2;
  static constexpr std::string_view wire_name = "ack";
  std::uint64_t time = 0;
  template <class A> void serialize(A& ar) { ar(time); }
};
struct release {
  static constexpr message_type wire_id = 3;
  static constexpr std::string_view wire_name = "release";
  std::uint64_t request_time = 0;  ///< the request being released
  std::uint64_t time = 0;
  template <class A> void serialize(A& ar) { ar(request_time, time); }
};
}  // namespace lamport_msg

template <Env E, group::Group G = group::static_group> class lamport {
 public:
  using messages = wire::message_set<lamport_msg::request, lamport_msg::ack, lamport_msg::release>;
  /// What it counts (env.count), declared: dcp/core/counter_set.hpp.
  static constexpr auto counters = dcp::join(detail::request_counters, dcp::counter_set{{"not_a_member"}});
  static constexpr std::string_view name = "mutex.lamport";
  static constexpr protocol_id default_id = 52;

  lamport(E env, G group, lamport_config cfg = {})
      : env_(std::move(env)), group_(std::move(group)), cfg_(cfg), request_(env_), heard_(group_.size(), 0) {
    cfg_.validate();
    rank_ = group::rank_of_self(group_, env_.self(), "lamport");
  }

  void lock(lock_handler h) {
    if (!request_.begin(std::move(h), cfg_.request_timeout, [this] { leave(); })) return;
    stamp_ = {clock_.tick(), rank_};
    queue_.insert(stamp_);
    for (std::size_t r = 0; r < group_.size(); ++r)
      if (r != rank_) env_.send(group_.member(r), lamport_msg::request{stamp_.time});
    try_enter();
  }
  bool try_lock() {
    if (group_.size() != 1 || !request_.idle()) return false;
    stamp_ = {clock_.tick(), rank_};
    queue_.insert(stamp_);
    request_.take();
    return true;
  }
  void unlock() {
    request_.release("lamport");
    leave();
  }
  void cancel() {
    if (!request_.waiting()) return;
    leave();
    request_.fail(errc::cancelled);
  }
  bool holding() const noexcept { return request_.held(); }
  lock_state state() const noexcept { return request_.state(); }
  std::optional<address> holder() const {
    if (holding()) return env_.self();
    return std::nullopt;
  }
  clock::lamport_stamp request_stamp() const noexcept { return stamp_; }

  /// Asserts (DCP_ASSERT) what holds of this member's state between events,
  /// whatever its peers sent: its queue holds its own request exactly while
  /// it waits or holds the lock, and only members' requests; inside the
  /// critical section it has heard from every other member a message stamped
  /// later than its request (Lamport's entry rule; what it heard only grows).
  /// O(queue + N); for tests and the simulator (dcp/core/assert.hpp).
  void check_invariants() const {
    DCP_ASSERT(heard_.size() == group_.size() && rank_ < group_.size(), "lamport: state sized for another group");
    std::size_t own = 0;
    for (const auto& s : queue_) {
      DCP_ASSERT(s.node < group_.size(), "lamport: a queued request of no member");
      if (s.node == rank_) {
        ++own;
        DCP_ASSERT(s == stamp_, "lamport: an old request of this member still queued");
      }
    }
    DCP_ASSERT(own == (request_.idle() ? 0u : 1u),
               "lamport: this member's request queued while idle, or missing while it waits or holds");
    if (request_.held())
      for (std::size_t r = 0; r < group_.size(); ++r)
        DCP_ASSERT((r == rank_ || stamp_ < clock::lamport_stamp{heard_[r], r}),
                   "lamport: in the critical section without a later message from every member");
  }

  void on_message(const address& from, const lamport_msg::request& m) {
    auto r = heard(from, m.time);
    if (!r) return;
    queue_.insert({m.time, *r});
    env_.send(from, lamport_msg::ack{clock_.tick()});
  }
  void on_message(const address& from, const lamport_msg::ack& m) {
    if (heard(from, m.time)) try_enter();
  }
  void on_message(const address& from, const lamport_msg::release& m) {
    auto r = heard(from, m.time);
    if (!r) return;
    queue_.erase({m.request_time, *r});
    try_enter();
  }
  void on_unreachable(const address& peer) {
    auto r = group_.rank_of(peer);
    if (!r || *r == rank_) return;
    // A crashed member is in no critical section: its requests go.
    std::erase_if(queue_, [&](const clock::lamport_stamp& s) { return s.node == *r; });
    if (request_.waiting()) {
      leave();
      request_.fail(errc::member_failed);
    }
  }

 private:
  /// Records a message from a member; its rank, or nullopt (counted) if not a member.
  std::optional<std::size_t> heard(const address& from, std::uint64_t t) {
    auto r = group_.rank_of(from);
    if (!r || *r == rank_) {
      env_.count("not_a_member");
      return std::nullopt;
    }
    clock_.observe(t);
    heard_[*r] = std::max(heard_[*r], t);
    return r;
  }
  void try_enter() {
    if (!request_.waiting() || queue_.empty() || *queue_.begin() != stamp_) return;
    for (std::size_t r = 0; r < group_.size(); ++r)
      if (r != rank_ && clock::lamport_stamp{heard_[r], r} < stamp_) return;
    request_.grant();
  }
  void leave() {
    queue_.erase(stamp_);
    const auto t = clock_.tick();
    for (std::size_t r = 0; r < group_.size(); ++r)
      if (r != rank_) env_.send(group_.member(r), lamport_msg::release{stamp_.time, t});
  }

  E env_;
  G group_;
  lamport_config cfg_;
  detail::request<E> request_;
  std::size_t rank_ = 0;
  clock::lamport_clock clock_;
  clock::lamport_stamp stamp_{};
  std::set<clock::lamport_stamp> queue_;
  std::vector<std::uint64_t> heard_;  ///< newest time heard from each member
};

}  // namespace dcp::mutex
