#pragma once
// Suzuki–Kasami (1985): a broadcast-request token.
//
// A member without the token broadcasts REQUEST(rank, n) where n counts its
// requests (RN[rank]); the token carries LN (the last request of each member
// it served) and a FIFO queue of members waiting for it. The holder passes the
// token on leaving to the head of the queue, after appending every member
// whose RN is one above its LN. N messages per entry (N−1 requests and the
// token), or 0 when the token is already here; synchronization delay 0 or T.
// The token starts at the lowest-ranked member.
//
// Channels need not be FIFO (RN takes the maximum, so reordered requests are
// harmless). Not tolerated: loss or duplication of the TOKEN message (one
// token must exist), and crashes: a token lost with its holder is not
// regenerated (see token_ring for an algorithm that does), so waiters get
// timed_out after request_timeout; nobody hangs.
#include <algorithm>
#include <cstdint>
#include <deque>
#include <optional>
#include <string_view>
#include <vector>

#include "dcp/core/assert.hpp"
#include "dcp/core/env.hpp"
#include "dcp/core/protocol.hpp"
#include "dcp/group/static_group.hpp"
#include "dcp/mutex/api.hpp"
#include "dcp/mutex/detail/request.hpp"

namespace dcp::mutex {

struct suzuki_kasami_config {
  duration request_timeout = 10s;
  void validate() const {
    if (request_timeout <= duration::zero())
      throw error(errc::invalid_config, "suzuki_kasami: request_timeout must be > 0");
  }
};

namespace suzuki_kasami_msg {
struct request {
  static constexpr message_type wire_id = 1;
  static constexpr std::string_view wire_name = "request";
  std::uint64_t number = 0;
  template <class A> void serialize(A& ar) { ar(number); }
};
struct token {
  static constexpr message_type wire_id = 2;
  static constexpr std::string_view wire_name = "token";
  std::vector<std::uint64_t> last;   ///< LN: the request of each member last served
  std::vector<std::uint32_t> queue;  ///< ranks waiting, in FIFO order
  template <class A> void serialize(A& ar) { ar(last, queue); }
};
}  // namespace suzuki_kasami_msg

template <Env E, group::Group G = group::static_group> class suzuki_kasami {
 public:
  using messages = wire::message_set<suzuki_kasami_msg::request, suzuki_kasami_msg::token>;
  /// What it counts (env.count), declared: dcp/core/counter_set.hpp.
  static constexpr auto counters =
      dcp::join(detail::request_counters, dcp::counter_set{{"not_a_member", "malformed_token", "duplicate_token"}});
  static constexpr std::string_view name = "mutex.suzuki_kasami";
  static constexpr protocol_id default_id = 53;

  suzuki_kasami(E env, G group, suzuki_kasami_config cfg = {})
      : env_(std::move(env)), group_(std::move(group)), cfg_(cfg), request_(env_), requested_(group_.size(), 0) {
    cfg_.validate();
    rank_ = group::rank_of_self(group_, env_.self(), "suzuki_kasami");
    if (rank_ == 0) token_ = suzuki_kasami_msg::token{std::vector<std::uint64_t>(group_.size(), 0), {}};
  }

  void lock(lock_handler h) {
    if (token_ && request_.idle()) {  // the token is here and idle: no message needed
      request_.take();
      request_.defer(std::move(h), {});
      return;
    }
    if (!request_.begin(std::move(h), cfg_.request_timeout, [] {})) return;
    ++requested_[rank_];
    for (std::size_t r = 0; r < group_.size(); ++r)
      if (r != rank_) env_.send(group_.member(r), suzuki_kasami_msg::request{requested_[rank_]});
  }
  bool try_lock() {
    if (!token_ || !request_.idle()) return false;
    request_.take();
    return true;
  }
  void unlock() {
    request_.release("suzuki_kasami");
    pass_token();
  }
  void cancel() {
    if (request_.waiting()) request_.fail(errc::cancelled);  // the token, when it comes, is passed on
  }
  bool holding() const noexcept { return request_.held(); }
  lock_state state() const noexcept { return request_.state(); }
  std::optional<address> holder() const {
    if (holding()) return env_.self();
    return std::nullopt;
  }
  bool has_token() const noexcept { return token_.has_value(); }

  /// Asserts (DCP_ASSERT) what holds of this member's state between events,
  /// whatever its peers sent: it holds the lock only with the token and
  /// waits only without it; a token here is shaped for the group; an idle
  /// token here has an empty queue and is wanted by no member this node
  /// knows of (a request one above LN would have sent it on). O(N + queue).
  void check_invariants() const {
    DCP_ASSERT(requested_.size() == group_.size(), "suzuki_kasami: RN sized for another group");
    DCP_ASSERT(!request_.held() || token_, "suzuki_kasami: in the critical section without the token");
    DCP_ASSERT(!request_.waiting() || !token_, "suzuki_kasami: waiting while the token is here");
    if (!token_) return;
    DCP_ASSERT(token_->last.size() == group_.size(), "suzuki_kasami: the token's LN sized for another group");
    for (auto q : token_->queue) DCP_ASSERT(q < group_.size(), "suzuki_kasami: the token queues a non-member");
    if (request_.held()) return;
    DCP_ASSERT(token_->queue.empty(), "suzuki_kasami: an idle token kept while members are queued for it");
    for (std::size_t r = 0; r < group_.size(); ++r)
      DCP_ASSERT(requested_[r] != token_->last[r] + 1, "suzuki_kasami: an idle token kept while a member wants it");
  }

  void on_message(const address& from, const suzuki_kasami_msg::request& m) {
    auto r = group_.rank_of(from);
    if (!r || *r == rank_) return env_.count("not_a_member");
    requested_[*r] = std::max(requested_[*r], m.number);
    if (token_ && !request_.held() && requested_[*r] == token_->last[*r] + 1) pass_token();
  }
  void on_message(const address& from, suzuki_kasami_msg::token m) {
    if (!group_.contains(from) || m.last.size() != group_.size() ||
        std::any_of(m.queue.begin(), m.queue.end(), [&](std::uint32_t q) { return q >= group_.size(); }))
      return env_.count("malformed_token");
    if (token_) return env_.count("duplicate_token");  // never two: keep the one we have
    token_ = std::move(m);
    if (request_.waiting()) return request_.grant();
    pass_token();  // we withdrew meanwhile: serve the others
  }

 private:
  /// Leaving the section (or not needing the token): hand it to the next waiter.
  void pass_token() {
    if (!token_) return;
    auto& t = *token_;
    t.last[rank_] = requested_[rank_];
    for (std::size_t r = 0; r < group_.size(); ++r) {
      const auto q = static_cast<std::uint32_t>(r);
      if (requested_[r] == t.last[r] + 1 && std::find(t.queue.begin(), t.queue.end(), q) == t.queue.end())
        t.queue.push_back(q);
    }
    if (t.queue.empty()) return;
    const auto next = t.queue.front();
    t.queue.erase(t.queue.begin());
    auto out = std::move(*token_);
    token_.reset();
    env_.send(group_.member(next), out);
  }

  E env_;
  G group_;
  suzuki_kasami_config cfg_;
  detail::request<E> request_;
  std::size_t rank_ = 0;
  std::vector<std::uint64_t> requested_;  ///< RN
  std::optional<suzuki_kasami_msg::token> token_;
};

}  // namespace dcp::mutex
