#pragma once
// Maekawa's quorum mutual exclusion (1985), deadlock-free, over grid quorums.
//
// Members sit in a ⌈√N⌉-wide grid by rank; a member's quorum is its row and
// its column (K ≈ 2√N − 1 members, itself included). Any two quorums
// intersect, and every member is the arbiter of one vote: it LOCKs for one
// request at a time and queues the others by stamp (Lamport time, rank).
// A requester enters with the votes of its whole quorum and RELEASEs them all
// on leaving.
//
// Deadlock freedom (Maekawa's INQUIRE / RELINQUISH / FAILED): an arbiter that
// locked for a request and then queues one of higher priority INQUIREs the
// locked requester; a requester that has learnt it cannot win now (it got a
// FAILED from some arbiter) RELINQUISHes the vote, which goes to the better
// request. Every queued request that is not the best one of its arbiter is
// told FAILED. 3(K−1) messages per entry at light load, up to about 5(K−1)
// under contention (K−1 to the others of the quorum: the own vote is local);
// synchronization delay 2T (release to the arbiter, lock to the next).
//
// ASSUMES FIFO CHANNELS (TCP, or sim::config::fifo): an INQUIRE, FAILED or
// LOCKED must not overtake the one before it on the same link. Tolerates
// delay. Not tolerated: loss, duplication, and crashes of quorum members:
// a requester whose quorum holds a member the transport reports unreachable
// gets member_failed, else timed_out after request_timeout. An arbiter whose
// vote is held by a member reported crashed takes it back.
#include <algorithm>
#include <cmath>
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
#include "dcp/mutex/detail/loopback.hpp"
#include "dcp/mutex/detail/request.hpp"

namespace dcp::mutex {

struct maekawa_config {
  duration request_timeout = 10s;
  void validate() const {
    if (request_timeout <= duration::zero()) throw error(errc::invalid_config, "maekawa: request_timeout must be > 0");
  }
};

/// The grid quorum of `rank` among n members: its row and its column of the
/// ⌈√n⌉-wide grid, sorted. Two such quorums always intersect (a partial last
/// row meets every column it reaches, and each full row meets every column).
inline std::vector<std::size_t> grid_quorum(std::size_t rank, std::size_t n) {
  std::size_t k = static_cast<std::size_t>(std::ceil(std::sqrt(static_cast<double>(n))));
  while (k * k < n) ++k;
  std::vector<std::size_t> q;
  const std::size_t row = rank / k, col = rank % k;
  for (std::size_t c = 0; c < k && row * k + c < n; ++c) q.push_back(row * k + c);
  for (std::size_t r = 0; r * k + col < n; ++r)
    if (r != row) q.push_back(r * k + col);
  std::sort(q.begin(), q.end());
  return q;
}

namespace maekawa_msg {
#define DCP_MAEKAWA_MESSAGE(type, id)                      \
  struct type {                                            \
    static constexpr message_type wire_id = id;            \
    static constexpr std::string_view wire_name = #type;   \
    std::uint64_t time = 0; /* the request's stamp */      \
    template <class A> void serialize(A& ar) { ar(time); } \
  };
DCP_MAEKAWA_MESSAGE(request, 1)
DCP_MAEKAWA_MESSAGE(locked, 2)
DCP_MAEKAWA_MESSAGE(failed, 3)
DCP_MAEKAWA_MESSAGE(inquire, 4)
DCP_MAEKAWA_MESSAGE(relinquish, 5)
DCP_MAEKAWA_MESSAGE(release, 6)
#undef DCP_MAEKAWA_MESSAGE
}  // namespace maekawa_msg

template <Env E, group::Group G = group::static_group> class maekawa {
 public:
  using messages = wire::message_set<maekawa_msg::request, maekawa_msg::locked, maekawa_msg::failed,
                                     maekawa_msg::inquire, maekawa_msg::relinquish, maekawa_msg::release>;
  /// What it counts (env.count), declared: dcp/core/counter_set.hpp.
  static constexpr auto counters =
      dcp::join(detail::request_counters,
                dcp::counter_set{{"not_a_member", "duplicate_request", "stale_relinquish", "stale_locked",
                                  "stale_failed", "stale_inquire", "relinquished"}});
  static constexpr std::string_view name = "mutex.maekawa";
  static constexpr protocol_id default_id = 55;

  maekawa(E env, G group, maekawa_config cfg = {})
      : env_(std::move(env)), group_(std::move(group)), cfg_(cfg), request_(env_), self_(env_) {
    cfg_.validate();
    rank_ = group::rank_of_self(group_, env_.self(), "maekawa");
    quorum_ = grid_quorum(rank_, group_.size());
  }

  void lock(lock_handler h) {
    if (!request_.begin(std::move(h), cfg_.request_timeout, [this] { leave(); })) return;
    stamp_ = {clock_.tick(), rank_};
    votes_.clear();
    failed_.clear();
    inquiries_.clear();
    for (auto r : quorum_) to(r, maekawa_msg::request{stamp_.time});
  }
  bool try_lock() { return false; }  // a vote always takes a message (or a loopback turn)
  void unlock() {
    request_.release("maekawa");
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
  const std::vector<std::size_t>& quorum() const noexcept { return quorum_; }

  /// Asserts (DCP_ASSERT) what holds of this member's state between events,
  /// whatever its peers sent. As a requester: no votes, FAILEDs or deferred
  /// INQUIREs kept while idle; inside the critical section a vote per quorum
  /// member and no deferred INQUIRE; INQUIREs deferred only for votes held,
  /// and never once a FAILED came (then they are relinquished). As an
  /// arbiter: requests queued only while its vote is locked, never the one
  /// it is locked for; FAILED told only to queued requests; an INQUIRE out
  /// only for a locked vote. O(quorum + queue); for tests and the simulator.
  void check_invariants() const {
    DCP_ASSERT(std::is_sorted(quorum_.begin(), quorum_.end()) &&
                   std::binary_search(quorum_.begin(), quorum_.end(), rank_) && quorum_.back() < group_.size(),
               "maekawa: a quorum unsorted, without its owner, or with non-members");
    if (request_.idle())
      DCP_ASSERT(votes_.empty() && failed_.empty() && inquiries_.empty(), "maekawa: an idle member keeps votes");
    if (request_.held())
      DCP_ASSERT(votes_.size() == quorum_.size() && inquiries_.empty(),
                 "maekawa: in the critical section without every vote of its quorum, or with an INQUIRE deferred");
    DCP_ASSERT(votes_.size() <= quorum_.size(), "maekawa: more votes than quorum members");
    for (auto a : inquiries_) DCP_ASSERT(votes_.contains(a), "maekawa: an INQUIRE deferred for a vote not held");
    DCP_ASSERT(failed_.empty() || inquiries_.empty(), "maekawa: an INQUIRE deferred after a FAILED came");
    DCP_ASSERT(locked_for_ || (queue_.empty() && !inquired_),
               "maekawa: requests queued, or an INQUIRE out, while the vote is free");
    DCP_ASSERT(!locked_for_ || !queue_.contains(*locked_for_), "maekawa: the request the vote is locked for is queued");
    for (const auto& s : told_failed_)
      DCP_ASSERT(queue_.contains(s), "maekawa: FAILED recorded for an unqueued request");
    for (const auto& s : queue_) DCP_ASSERT(s.node < group_.size(), "maekawa: a non-member's request queued");
  }

  // ---- arbiter side ----
  void on_message(const address& from, const maekawa_msg::request& m) {
    if (auto s = stamp_of(from, m.time)) on_request(*s);
  }
  void on_message(const address& from, const maekawa_msg::relinquish& m) {
    if (auto s = stamp_of(from, m.time)) on_relinquish(*s);
  }
  void on_message(const address& from, const maekawa_msg::release& m) {
    if (auto s = stamp_of(from, m.time)) on_release(*s);
  }
  // ---- requester side ----
  void on_message(const address& from, const maekawa_msg::locked& m) {
    if (auto s = stamp_of(from, m.time)) on_locked(s->node, m.time);
  }
  void on_message(const address& from, const maekawa_msg::failed& m) {
    if (auto s = stamp_of(from, m.time)) on_failed(s->node, m.time);
  }
  void on_message(const address& from, const maekawa_msg::inquire& m) {
    if (auto s = stamp_of(from, m.time)) on_inquire(s->node, m.time);
  }
  void on_unreachable(const address& peer) {
    auto r = group_.rank_of(peer);
    if (!r || *r == rank_) return;
    // As an arbiter: a crashed requester holds no vote and wants none.
    std::erase_if(queue_, [&](const clock::lamport_stamp& s) { return s.node == *r; });
    std::erase_if(told_failed_, [&](const clock::lamport_stamp& s) { return s.node == *r; });
    if (locked_for_ && locked_for_->node == *r) {
      locked_for_.reset();
      grant_next();
    }
    // As a requester: a quorum member is gone.
    if (request_.waiting() && std::binary_search(quorum_.begin(), quorum_.end(), *r)) {
      leave();
      request_.fail(errc::member_failed);
    }
  }

 private:
  std::optional<clock::lamport_stamp> stamp_of(const address& from, std::uint64_t t) {
    auto r = group_.rank_of(from);
    if (!r) {
      env_.count("not_a_member");
      return std::nullopt;
    }
    clock_.witness(t);
    return clock::lamport_stamp{t, *r};
  }
  template <class M> void to(std::size_t r, const M& m) {
    if (r != rank_) {
      env_.send(group_.member(r), m);
      return;
    }
    self_.post([this, m] {  // our own vote: the same handlers, no network
      const clock::lamport_stamp s{m.time, rank_};
      if constexpr (std::is_same_v<M, maekawa_msg::request>)
        on_request(s);
      else if constexpr (std::is_same_v<M, maekawa_msg::relinquish>)
        on_relinquish(s);
      else if constexpr (std::is_same_v<M, maekawa_msg::release>)
        on_release(s);
      else if constexpr (std::is_same_v<M, maekawa_msg::locked>)
        on_locked(rank_, m.time);
      else if constexpr (std::is_same_v<M, maekawa_msg::failed>)
        on_failed(rank_, m.time);
      else
        on_inquire(rank_, m.time);
    });
  }

  // ---- arbiter ----
  void on_request(const clock::lamport_stamp& s) {
    if (locked_for_ == s || queue_.contains(s)) return env_.count("duplicate_request");
    if (!locked_for_) {
      locked_for_ = s;
      inquired_ = false;
      to(s.node, maekawa_msg::locked{s.time});
      return;
    }
    queue_.insert(s);
    reconsider();
  }
  void on_relinquish(const clock::lamport_stamp& s) {
    if (locked_for_ != s) return env_.count("stale_relinquish");
    queue_.insert(s);
    locked_for_.reset();
    grant_next();
  }
  void on_release(const clock::lamport_stamp& s) {
    told_failed_.erase(s);
    if (locked_for_ == s) {
      locked_for_.reset();
      grant_next();
    } else {
      queue_.erase(s);
    }
  }
  void grant_next() {
    inquired_ = false;
    if (queue_.empty()) return;
    const auto s = *queue_.begin();
    queue_.erase(queue_.begin());
    told_failed_.erase(s);
    locked_for_ = s;
    to(s.node, maekawa_msg::locked{s.time});
    reconsider();
  }
  /// The best queued request, if it beats the locked one, makes us INQUIRE;
  /// every other queued request cannot be next and is told FAILED (once).
  void reconsider() {
    if (!locked_for_ || queue_.empty()) return;
    const auto best = *queue_.begin();
    const bool best_wins = best < *locked_for_;
    if (best_wins && !inquired_) {
      inquired_ = true;
      to(locked_for_->node, maekawa_msg::inquire{locked_for_->time});
    }
    for (const auto& s : queue_) {
      if (best_wins && s == best) continue;
      if (told_failed_.insert(s).second) to(s.node, maekawa_msg::failed{s.time});
    }
  }

  // ---- requester ----
  bool current(std::uint64_t t) const noexcept { return request_.waiting() && t == stamp_.time; }
  void on_locked(std::size_t arbiter, std::uint64_t t) {
    if (!current(t)) return env_.count("stale_locked");
    votes_.insert(arbiter);
    failed_.erase(arbiter);
    if (votes_.size() == quorum_.size()) {
      inquiries_.clear();  // we enter; the inquirers get their vote back at release
      request_.grant();
    }
  }
  void on_failed(std::size_t arbiter, std::uint64_t t) {
    if (!current(t)) return env_.count("stale_failed");
    failed_.insert(arbiter);
    for (auto a : std::exchange(inquiries_, {})) relinquish(a);
  }
  void on_inquire(std::size_t arbiter, std::uint64_t t) {
    if (!current(t) || !votes_.contains(arbiter)) return env_.count("stale_inquire");
    if (!failed_.empty())
      relinquish(arbiter);
    else
      inquiries_.insert(arbiter);  // answered when a FAILED comes, or at release
  }
  void relinquish(std::size_t arbiter) {
    if (!votes_.erase(arbiter)) return;
    env_.count("relinquished");
    to(arbiter, maekawa_msg::relinquish{stamp_.time});
  }
  void leave() {
    votes_.clear();
    failed_.clear();
    inquiries_.clear();
    for (auto r : quorum_) to(r, maekawa_msg::release{stamp_.time});
  }

  E env_;
  G group_;
  maekawa_config cfg_;
  detail::request<E> request_;
  detail::loopback<E> self_;
  std::size_t rank_ = 0;
  std::vector<std::size_t> quorum_;
  clock::lamport_clock clock_;
  // requester
  clock::lamport_stamp stamp_{};
  std::set<std::size_t> votes_, failed_, inquiries_;
  // arbiter
  std::optional<clock::lamport_stamp> locked_for_;
  std::set<clock::lamport_stamp> queue_, told_failed_;
  bool inquired_ = false;
};

}  // namespace dcp::mutex
