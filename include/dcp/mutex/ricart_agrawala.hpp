#pragma once
// Ricart–Agrawala (1981): permission from every other member, by timestamp.
//
// A requester stamps its REQUEST with a Lamport time and sends it to the N−1
// others; it enters when all have sent REPLY. A member replies at once unless
// it holds the lock or itself waits with an earlier stamp (time, rank); then it
// defers the reply until it leaves. 2(N−1) messages per entry, synchronization
// delay T, and entries happen in stamp order.
//
// Channels need not be FIFO. Faults tolerated: delay, reordering, duplication
// (replies are matched to the request they answer by (session, time)).
// Not tolerated: loss (the waiter times out) and crashes: the algorithm needs
// every member, so a waiter gets member_failed as soon as the transport
// reports a member it awaits unreachable, and timed_out after request_timeout
// otherwise. A withdrawn request releases everything it deferred.
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

struct ricart_agrawala_config {
  duration request_timeout = 10s;
  void validate() const {
    if (request_timeout <= duration::zero())
      throw error(errc::invalid_config, "ricart_agrawala: request_timeout must be > 0");
  }
};

namespace ricart_agrawala_msg {
struct request {
  static constexpr message_type wire_id = 1;
  static constexpr std::string_view wire_name = "request";
  std::uint64_t session = 0, time = 0;
  template <class A> void serialize(A& ar) { ar(session, time); }
};
struct reply {
  static constexpr message_type wire_id = 2;
  static constexpr std::string_view wire_name = "reply";
  std::uint64_t session = 0, time = 0;  ///< the request answered
  std::uint64_t clock = 0;              ///< the replier's Lamport time
  template <class A> void serialize(A& ar) { ar(session, time, clock); }
};
}  // namespace ricart_agrawala_msg

template <Env E, group::Group G = group::static_group> class ricart_agrawala {
 public:
  using messages = wire::message_set<ricart_agrawala_msg::request, ricart_agrawala_msg::reply>;
  /// What it counts (env.count), declared: dcp/core/counter_set.hpp.
  static constexpr auto counters =
      dcp::join(detail::request_counters, dcp::counter_set{{"not_a_member", "stale_reply"}});
  static constexpr std::string_view name = "mutex.ricart_agrawala";
  static constexpr protocol_id default_id = 51;

  ricart_agrawala(E env, G group, ricart_agrawala_config cfg = {})
      : env_(std::move(env)), group_(std::move(group)), cfg_(cfg), request_(env_) {
    cfg_.validate();
    rank_ = group::rank_of_self(group_, env_.self(), "ricart_agrawala");
    session_ = env_.rng()() | 1;
  }

  void lock(lock_handler h) {
    if (!request_.begin(std::move(h), cfg_.request_timeout, [this] { leave(); })) return;
    stamp_ = {clock_.tick(), rank_};
    awaiting_.clear();
    for (std::size_t r = 0; r < group_.size(); ++r)
      if (r != rank_) awaiting_.insert(r);
    for (auto r : awaiting_) env_.send(group_.member(r), ricart_agrawala_msg::request{session_, stamp_.time});
    if (awaiting_.empty()) request_.grant();
  }
  bool try_lock() {
    if (group_.size() != 1 || !request_.idle()) return false;
    stamp_ = {clock_.tick(), rank_};
    request_.take();
    return true;
  }
  void unlock() {
    request_.release("ricart_agrawala");
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
  /// The stamp of the current (or last) request: entries happen in this order.
  clock::lamport_stamp request_stamp() const noexcept { return stamp_; }

  /// Asserts (DCP_ASSERT) what holds between events, whatever peers sent:
  /// replies are awaited only while waiting, from other members, and a
  /// waiter awaits at least one (with none left it has entered); requests
  /// are deferred only while waiting or holding (leaving answers them all),
  /// and only members'. O(N + deferred); for tests and the simulator.
  void check_invariants() const {
    DCP_ASSERT(request_.waiting() != awaiting_.empty(),
               "ricart_agrawala: replies awaited while not waiting, or a waiter awaiting none");
    for (auto r : awaiting_)
      DCP_ASSERT(r < group_.size() && r != rank_, "ricart_agrawala: awaiting a reply from itself or a non-member");
    DCP_ASSERT(!request_.idle() || deferred_.empty(), "ricart_agrawala: an idle member holding back a reply");
    for (const auto& p : deferred_)
      DCP_ASSERT(group_.contains(p.to), "ricart_agrawala: a reply held back for a non-member");
  }

  void on_message(const address& from, const ricart_agrawala_msg::request& m) {
    auto r = group_.rank_of(from);
    if (!r) return env_.count("not_a_member");
    clock_.observe(m.time);
    const clock::lamport_stamp theirs{m.time, *r};
    if (request_.held() || (request_.waiting() && stamp_ < theirs)) {
      deferred_.push_back({from, m.session, m.time});
      return;
    }
    env_.send(from, ricart_agrawala_msg::reply{m.session, m.time, clock_.tick()});
  }
  void on_message(const address& from, const ricart_agrawala_msg::reply& m) {
    auto r = group_.rank_of(from);
    if (!r) return env_.count("not_a_member");
    clock_.observe(m.clock);
    if (!request_.waiting() || m.session != session_ || m.time != stamp_.time) return env_.count("stale_reply");
    awaiting_.erase(*r);
    if (awaiting_.empty()) request_.grant();
  }
  void on_unreachable(const address& peer) {
    std::erase_if(deferred_, [&](const pending& p) { return p.to == peer; });
    auto r = group_.rank_of(peer);
    if (r && request_.waiting() && awaiting_.contains(*r)) {
      leave();
      request_.fail(errc::member_failed);
    }
  }

 private:
  struct pending {
    address to;
    std::uint64_t session, time;
  };
  /// Leaving (after the section, or withdrawing): answer everyone we held back.
  void leave() {
    awaiting_.clear();
    for (auto& p : std::exchange(deferred_, {}))
      env_.send(p.to, ricart_agrawala_msg::reply{p.session, p.time, clock_.tick()});
  }

  E env_;
  G group_;
  ricart_agrawala_config cfg_;
  detail::request<E> request_;
  std::size_t rank_ = 0;
  std::uint64_t session_ = 0;
  clock::lamport_clock clock_;
  clock::lamport_stamp stamp_{};
  std::set<std::size_t> awaiting_;
  std::vector<pending> deferred_;
};

}  // namespace dcp::mutex
