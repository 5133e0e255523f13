#pragma once
// Raymond's tree token (1989).
//
// Members form a fixed tree (a k-ary heap over ranks: the parent of rank r is
// (r−1)/k; the token starts at the root, rank 0). Each member knows only the
// neighbour in the direction of the token (`holder`) and a FIFO queue of
// neighbours (or itself) that asked it. A REQUEST travels toward the token
// once per queue; the PRIVILEGE travels back along the requests, which makes
// the requests of a subtree share one trip. O(log N) messages per entry at
// light load (about 2 × depth), about 4 at heavy load; synchronization delay
// T log N / 2 on average.
//
// ASSUMES FIFO CHANNELS (as over TCP): a request and the privilege crossing
// one edge must not overtake each other. Tolerates delay. Not tolerated: loss,
// duplication and crashes: a lost privilege or a crashed member on the path
// leaves the waiters to time out (timed_out after request_timeout).
#include <algorithm>
#include <cstdint>
#include <deque>
#include <optional>
#include <string_view>

#include "dcp/core/assert.hpp"
#include "dcp/core/env.hpp"
#include "dcp/core/protocol.hpp"
#include "dcp/group/static_group.hpp"
#include "dcp/mutex/api.hpp"
#include "dcp/mutex/detail/request.hpp"

namespace dcp::mutex {

struct raymond_config {
  duration request_timeout = 10s;
  std::size_t arity = 2;  ///< children per tree node
  void validate() const {
    if (request_timeout <= duration::zero()) throw error(errc::invalid_config, "raymond: request_timeout must be > 0");
    if (arity < 1) throw error(errc::invalid_config, "raymond: arity must be >= 1");
  }
};

namespace raymond_msg {
struct request {
  static constexpr message_type wire_id = 1;
  static constexpr std::string_view wire_name = "request";
  template <class A> void serialize(A&) {}
};
struct privilege {
  static constexpr message_type wire_id = 2;
  static constexpr std::string_view wire_name = "privilege";
  template <class A> void serialize(A&) {}
};
}  // namespace raymond_msg

template <Env E, group::Group G = group::static_group> class raymond {
 public:
  using messages = wire::message_set<raymond_msg::request, raymond_msg::privilege>;
  /// What it counts (env.count), declared: dcp/core/counter_set.hpp.
  static constexpr auto counters = dcp::join(
      detail::request_counters, dcp::counter_set{{"not_a_neighbour", "duplicate_request", "unexpected_privilege"}});
  static constexpr std::string_view name = "mutex.raymond";
  static constexpr protocol_id default_id = 54;

  raymond(E env, G group, raymond_config cfg = {})
      : env_(std::move(env)), group_(std::move(group)), cfg_(cfg), request_(env_) {
    cfg_.validate();
    rank_ = group::rank_of_self(group_, env_.self(), "raymond");
    holder_ = rank_ == 0 ? rank_ : parent(rank_);
  }

  void lock(lock_handler h) {
    if (holder_ == rank_ && request_.idle() && queue_.empty()) {
      request_.take();
      request_.defer(std::move(h), {});
      return;
    }
    if (!request_.begin(std::move(h), cfg_.request_timeout, [this] { std::erase(queue_, rank_); })) return;
    queue_.push_back(rank_);
    assign_privilege();
    make_request();
  }
  bool try_lock() {
    if (holder_ != rank_ || !request_.idle() || !queue_.empty()) return false;
    request_.take();
    return true;
  }
  void unlock() {
    request_.release("raymond");
    assign_privilege();
    make_request();
  }
  void cancel() {
    if (!request_.waiting()) return;
    std::erase(queue_, rank_);
    request_.fail(errc::cancelled);
  }
  bool holding() const noexcept { return request_.held(); }
  lock_state state() const noexcept { return request_.state(); }
  std::optional<address> holder() const {
    if (holding()) return env_.self();
    return std::nullopt;
  }
  bool has_token() const noexcept { return holder_ == rank_; }

  /// Asserts (DCP_ASSERT) what holds of this node's state between events,
  /// whatever its peers sent: HOLDER is itself or a tree neighbour; the
  /// queue holds distinct ranks, each itself or a tree neighbour, itself
  /// exactly while it waits; it holds the lock only with the privilege; an
  /// idle privilege here has nobody queued for it (it would have been
  /// passed), and a node without it that has requests queued has asked for
  /// it (Raymond's ASKED). O(queue²); for tests and the simulator.
  void check_invariants() const {
    const auto near = [&](std::size_t r) {
      return r == rank_ || (rank_ != 0 && r == parent(rank_)) || (r != 0 && r < group_.size() && parent(r) == rank_);
    };
    DCP_ASSERT(near(holder_), "raymond: HOLDER is neither this node nor a tree neighbour");
    for (auto it = queue_.begin(); it != queue_.end(); ++it) {
      DCP_ASSERT(near(*it), "raymond: a queued request from neither this node nor a tree neighbour");
      DCP_ASSERT(std::find(it + 1, queue_.end(), *it) == queue_.end(), "raymond: a request queued twice");
    }
    DCP_ASSERT(request_.waiting() == (std::find(queue_.begin(), queue_.end(), rank_) != queue_.end()),
               "raymond: this node queued while not waiting, or waiting unqueued");
    DCP_ASSERT(!request_.held() || holder_ == rank_, "raymond: in the critical section without the privilege");
    DCP_ASSERT(holder_ != rank_ || request_.held() || queue_.empty(),
               "raymond: an idle privilege kept while requests are queued");
    DCP_ASSERT(holder_ == rank_ || queue_.empty() || asked_,
               "raymond: requests queued but the privilege not asked for");
  }

  void on_message(const address& from, const raymond_msg::request&) {
    auto r = neighbour(from);
    if (!r) return env_.count("not_a_neighbour");
    if (std::find(queue_.begin(), queue_.end(), *r) != queue_.end()) return env_.count("duplicate_request");
    queue_.push_back(*r);
    assign_privilege();
    make_request();
  }
  void on_message(const address& from, const raymond_msg::privilege&) {
    auto r = neighbour(from);
    if (!r || *r != holder_) return env_.count("unexpected_privilege");
    holder_ = rank_;
    assign_privilege();
    make_request();
  }

 private:
  std::size_t parent(std::size_t r) const noexcept { return (r - 1) / cfg_.arity; }
  std::optional<std::size_t> neighbour(const address& a) const {
    auto r = group_.rank_of(a);
    if (!r || *r == rank_) return std::nullopt;
    const bool is_parent = rank_ != 0 && *r == parent(rank_);
    const bool is_child = *r != 0 && parent(*r) == rank_;
    if (!is_parent && !is_child) return std::nullopt;
    return r;
  }
  void assign_privilege() {
    if (holder_ != rank_ || request_.held() || queue_.empty()) return;
    const auto next = queue_.front();
    queue_.pop_front();
    asked_ = false;
    if (next == rank_) {
      request_.grant();
      return;
    }
    holder_ = next;
    env_.send(group_.member(next), raymond_msg::privilege{});
  }
  void make_request() {
    if (holder_ == rank_ || queue_.empty() || asked_) return;
    asked_ = true;
    env_.send(group_.member(holder_), raymond_msg::request{});
  }

  E env_;
  G group_;
  raymond_config cfg_;
  detail::request<E> request_;
  std::size_t rank_ = 0, holder_ = 0;
  std::deque<std::size_t> queue_;
  bool asked_ = false;
};

}  // namespace dcp::mutex
