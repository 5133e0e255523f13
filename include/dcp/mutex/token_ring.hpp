#pragma once
// Token ring with token-loss detection and regeneration.
//
// Members form a logical ring by rank. One TOKEN circulates; a member that
// wants the lock keeps it for its critical section, the others pass it on to
// their successor (after pass_delay, to let an idle ring breathe). 1 message
// per entry when everyone wants the lock, unbounded when nobody does; a
// waiter waits 1 to N−1 transmissions.
//
// Token loss: every member expects to see the token within token_timeout
// (plus a random jitter, so that one member usually acts alone). One that
// does not starts a REGENERATE for a new epoch (counter, rank), greater than
// any it has seen. A member that accepts a newer epoch stops honouring tokens
// of older epochs at once, and ACKs; a member inside its critical section
// with an old token ACKs only when it leaves (and then drops that token). The
// initiator creates the new token only when every member has acked except
// those the transport reports crashed: so when the new token exists, no
// member honours an old one, and an old token found anywhere is discarded.
// Competing initiators are ordered by epoch; the lower one gives up when it
// hears the higher. Each token also carries a hop count, so a duplicated
// token message is recognised and dropped.
//
// Faults tolerated: loss (of tokens, regenerates and acks: they are retried),
// duplication, delay, reordering, and crash-stop of any member (the ring
// skips members the transport reports unreachable, and regenerates the token
// if it died with its holder). A partition blocks regeneration (a cut-off
// member may hold the token) until it heals: safe, not live; waiters then get
// timed_out after request_timeout.
#include <algorithm>
#include <compare>
#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <string_view>

#include "dcp/core/bytes.hpp"
#include "dcp/core/disk.hpp"
#include "dcp/core/assert.hpp"
#include "dcp/core/env.hpp"
#include "dcp/core/protocol.hpp"
#include "dcp/group/static_group.hpp"
#include "dcp/mutex/api.hpp"
#include "dcp/mutex/detail/request.hpp"

namespace dcp::mutex {

struct token_ring_config {
  duration request_timeout = 10s;
  /// Silence after which a member suspects the token lost: above one full
  /// rotation (N × (delay + pass_delay + longest critical section)).
  duration token_timeout = 2s;
  duration pass_delay = duration::zero();
  /// Between two retransmissions of an unanswered REGENERATE.
  duration retry_interval = 200ms;
  /// The file (on the Env's disk) recording that the first token was created.
  std::string marker_file = "token_ring.first_token";
  void validate() const {
    if (!disk::valid_name(marker_file))
      throw error(errc::invalid_config, "token_ring: marker_file is not a valid file name");
    if (request_timeout <= duration::zero())
      throw error(errc::invalid_config, "token_ring: request_timeout must be > 0");
    if (token_timeout <= duration::zero()) throw error(errc::invalid_config, "token_ring: token_timeout must be > 0");
    if (retry_interval <= duration::zero()) throw error(errc::invalid_config, "token_ring: retry_interval must be > 0");
    if (pass_delay < duration::zero()) throw error(errc::invalid_config, "token_ring: pass_delay must be >= 0");
  }
};

/// A token generation: higher epochs supersede lower ones everywhere.
struct ring_epoch {
  std::uint64_t counter = 0, rank = 0;
  constexpr auto operator<=>(const ring_epoch&) const noexcept = default;
  template <class A> void serialize(A& ar) { ar(counter, rank); }
};

namespace token_ring_msg {
struct token {
  static constexpr message_type wire_id = 1;
  static constexpr std::string_view wire_name = "token";
  ring_epoch epoch;
  std::uint64_t hop = 0;  ///< transmissions of this token so far
  template <class A> void serialize(A& ar) { ar(epoch, hop); }
};
struct regenerate {
  static constexpr message_type wire_id = 2;
  static constexpr std::string_view wire_name = "regenerate";
  ring_epoch epoch;
  template <class A> void serialize(A& ar) { ar(epoch); }
};
struct ack {
  static constexpr message_type wire_id = 3;
  static constexpr std::string_view wire_name = "ack";
  ring_epoch epoch;
  template <class A> void serialize(A& ar) { ar(epoch); }
};
}  // namespace token_ring_msg

template <Env E, group::Group G = group::static_group> class token_ring {
 public:
  using messages = wire::message_set<token_ring_msg::token, token_ring_msg::regenerate, token_ring_msg::ack>;
  /// What it counts (env.count), declared: dcp/core/counter_set.hpp.
  static constexpr auto counters =
      dcp::join(detail::request_counters,
                dcp::counter_set{{"stale_token_dropped", "duplicate_token_dropped", "stale_regenerate", "not_a_member",
                                  "marker_write_failed", "regenerations_started", "tokens_regenerated"}});
  static constexpr std::string_view name = "mutex.token_ring";
  static constexpr protocol_id default_id = 56;

  token_ring(E env, G group, token_ring_config cfg = {})
      : env_(std::move(env)), group_(std::move(group)), cfg_(cfg), request_(env_) {
    cfg_.validate();
    rank_ = group::rank_of_self(group_, env_.self(), "token_ring");
  }
  ~token_ring() {
    for (auto t : {watchdog_, pass_timer_, retry_timer_})
      if (t) env_.cancel(t);
  }

  /// The lowest rank creates the first token, epoch (0, 0). A member that
  /// restarts starts without one and waits to see it, or regenerates it.
  void start() {
    if (rank_ == 0 && !restarted())
      take_token({epoch_, 0});
    else
      arm_watchdog();
  }

  void lock(lock_handler h) {
    if (token_ && request_.idle()) {
      cancel_pass();
      request_.take();
      request_.defer(std::move(h), {});
      return;
    }
    request_.begin(std::move(h), cfg_.request_timeout, [] {});  // a withdrawn waiter just lets the token pass
  }
  bool try_lock() {
    if (!token_ || !request_.idle()) return false;
    cancel_pass();
    request_.take();
    return true;
  }
  void unlock() {
    request_.release("token_ring");
    if (pending_ack_) {  // a regeneration waited for us to leave
      env_.send(pending_ack_->first, token_ring_msg::ack{pending_ack_->second});
      pending_ack_.reset();
    }
    if (token_ && token_->epoch != epoch_) {
      env_.count("stale_token_dropped");
      token_.reset();
      arm_watchdog();
      return;
    }
    pass();
  }
  void cancel() {
    if (request_.waiting()) request_.fail(errc::cancelled);
  }
  bool holding() const noexcept { return request_.held(); }
  lock_state state() const noexcept { return request_.state(); }
  std::optional<address> holder() const {
    if (holding()) return env_.self();
    return std::nullopt;
  }
  bool has_token() const noexcept { return token_.has_value(); }
  ring_epoch epoch() const noexcept { return epoch_; }

  /// Asserts (DCP_ASSERT) what holds of this member's state between events,
  /// whatever its peers sent: it holds the lock only with a token and waits
  /// only without one; an idle token here is of the current epoch (a newer
  /// epoch drops it at once) with the last hop seen, and only a held one of
  /// an older epoch delays an ACK; a token here has not also been sent on;
  /// a regeneration in progress is this member's own epoch, counts its own
  /// ACK and has its retry timer (and only then); a pass is scheduled only
  /// for an idle token here. O(N); for tests and the simulator.
  void check_invariants() const {
    DCP_ASSERT(!request_.held() || token_, "token_ring: in the critical section without the token");
    DCP_ASSERT(!request_.waiting() || !token_, "token_ring: waiting while the token is here");
    if (token_) {
      DCP_ASSERT(token_->epoch <= epoch_, "token_ring: a token of an epoch newer than this member's");
      DCP_ASSERT(request_.held() || token_->epoch == epoch_, "token_ring: an idle token of an old epoch kept");
      DCP_ASSERT(token_->epoch != epoch_ || token_->hop == last_hop_,
                 "token_ring: the token here is not the last one seen of its epoch");
      DCP_ASSERT(!token_sent_to_, "token_ring: the token both here and sent on");
    }
    DCP_ASSERT(!pending_ack_ || (request_.held() && token_ && token_->epoch < epoch_),
               "token_ring: an ACK delayed without an old token in use");
    DCP_ASSERT(!token_sent_to_ || (*token_sent_to_ != rank_ && *token_sent_to_ < group_.size()),
               "token_ring: the token sent to itself or a non-member");
    DCP_ASSERT(regenerating_ == static_cast<bool>(retry_timer_),
               "token_ring: a regeneration without its retry timer, or the timer without one");
    DCP_ASSERT(!regenerating_ || (epoch_.rank == rank_ && acks_.contains(rank_)),
               "token_ring: regenerating another member's epoch, or without its own ACK");
    DCP_ASSERT(!pass_timer_ || (token_ && !request_.held()), "token_ring: a pass scheduled without an idle token here");
    DCP_ASSERT(!down_.contains(rank_) && (down_.empty() || *down_.rbegin() < group_.size()),
               "token_ring: itself, or a non-member, taken as down");
  }

  void on_message(const address& from, const token_ring_msg::token& m) {
    if (!heard(from)) return;
    if (m.epoch < epoch_) return env_.count("stale_token_dropped");
    if (m.epoch == epoch_ && m.hop <= last_hop_) return env_.count("duplicate_token_dropped");
    if (token_) return env_.count("duplicate_token_dropped");  // cannot happen with one token per epoch
    if (m.epoch > epoch_) adopt(m.epoch);
    take_token(m);
  }
  void on_message(const address& from, const token_ring_msg::regenerate& m) {
    if (!heard(from)) return;
    if (m.epoch < epoch_) return env_.count("stale_regenerate");
    if (m.epoch > epoch_) adopt(m.epoch);
    if (request_.held() && token_ && token_->epoch < epoch_) {
      pending_ack_ = {from, m.epoch};  // ack once we stop using the old token
      return;
    }
    env_.send(from, token_ring_msg::ack{m.epoch});
  }
  void on_message(const address& from, const token_ring_msg::ack& m) {
    auto r = heard(from);
    if (!r || !regenerating_ || m.epoch != epoch_) return;
    acks_.insert(*r);
    maybe_complete_regeneration();
  }
  void on_unreachable(const address& peer) {
    auto r = group_.rank_of(peer);
    if (!r || *r == rank_) return;
    down_.insert(*r);
    if (token_sent_to_ == *r) arm_watchdog_soon();  // the token may have died with it
    maybe_complete_regeneration();
  }

 private:
  std::optional<std::size_t> heard(const address& from) {
    auto r = group_.rank_of(from);
    if (!r || *r == rank_) {
      env_.count("not_a_member");
      return std::nullopt;
    }
    down_.erase(*r);
    return r;
  }
  /// True if this member has started before (a restart): the first token was
  /// created once, by its first life, and must never be created again. The
  /// fact is kept on the member's disk, synced before the token exists.
  bool restarted() {
    auto& d = env_.disk();
    if (d.read(cfg_.marker_file)) return true;
    if (d.write(cfg_.marker_file, as_bytes("1")) || d.sync(cfg_.marker_file)) {
      env_.count("marker_write_failed");
      return true;  // cannot promise not to create it twice: let regeneration make it
    }
    return false;
  }

  /// Moves to a newer epoch: tokens of older epochs are no longer honoured here.
  void adopt(ring_epoch e) {
    epoch_ = e;
    last_hop_ = 0;
    if (regenerating_ && e.rank != rank_) stop_regenerating();
    if (token_ && !request_.held()) {  // an idle old token: drop it now
      env_.count("stale_token_dropped");
      token_.reset();
      cancel_pass();
    }
  }

  void take_token(const token_ring_msg::token& t) {
    token_ = t;
    last_hop_ = t.hop;
    token_sent_to_.reset();
    disarm_watchdog();
    if (request_.waiting()) return request_.grant();
    if (!request_.held()) schedule_pass();
  }
  /// Passes the token from a timer, never inside the handler that brought it:
  /// at start-up the successor may not exist yet, and a lone member would recurse.
  void schedule_pass() {
    if (!pass_timer_)
      pass_timer_ = env_.arm(cfg_.pass_delay, [this] {
        pass_timer_ = {};
        if (!request_.held()) pass();
      });
  }
  void cancel_pass() {
    if (pass_timer_) env_.cancel(std::exchange(pass_timer_, {}));
  }
  void pass() {
    if (!token_) return;
    auto t = *token_;
    token_.reset();
    ++t.hop;
    const auto next = successor();
    arm_watchdog();
    if (next == rank_) {  // alone in the ring: keep it (take_token passes it again later)
      take_token(t);
      return;
    }
    token_sent_to_ = next;
    env_.send(group_.member(next), t);
  }
  std::size_t successor() const {
    const auto n = group_.size();
    for (std::size_t k = 1; k < n; ++k) {
      const auto r = (rank_ + k) % n;
      if (!down_.contains(r)) return r;
    }
    return rank_;
  }

  // ---- loss detection and regeneration ----
  void arm_watchdog(duration after = duration::zero()) {
    disarm_watchdog();
    if (after == duration::zero())
      after = cfg_.token_timeout + duration(env_.rng().between(0, cfg_.token_timeout.count()));
    watchdog_ = env_.arm(after, [this] {
      watchdog_ = {};
      if (!token_) regenerate();
    });
  }
  void arm_watchdog_soon() {
    arm_watchdog(cfg_.retry_interval + duration(env_.rng().between(0, cfg_.retry_interval.count())));
  }
  void disarm_watchdog() {
    if (watchdog_) env_.cancel(std::exchange(watchdog_, {}));
  }
  void regenerate() {
    env_.count("regenerations_started");
    adopt({epoch_.counter + 1, rank_});
    regenerating_ = true;
    acks_ = {rank_};
    send_regenerates();
    maybe_complete_regeneration();
  }
  void send_regenerates() {
    for (std::size_t r = 0; r < group_.size(); ++r)
      if (!acks_.contains(r) && !down_.contains(r)) env_.send(group_.member(r), token_ring_msg::regenerate{epoch_});
    retry_timer_ = env_.arm(cfg_.retry_interval, [this] {
      retry_timer_ = {};
      if (regenerating_) send_regenerates();
    });
  }
  void stop_regenerating() {
    regenerating_ = false;
    if (retry_timer_) env_.cancel(std::exchange(retry_timer_, {}));
    arm_watchdog();
  }
  void maybe_complete_regeneration() {
    if (!regenerating_) return;
    for (std::size_t r = 0; r < group_.size(); ++r)
      if (!acks_.contains(r) && !down_.contains(r)) return;
    regenerating_ = false;
    if (retry_timer_) env_.cancel(std::exchange(retry_timer_, {}));
    env_.count("tokens_regenerated");
    take_token({epoch_, 0});
  }

  E env_;
  G group_;
  token_ring_config cfg_;
  detail::request<E> request_;
  std::size_t rank_ = 0;
  ring_epoch epoch_{};
  std::uint64_t last_hop_ = 0;
  std::optional<token_ring_msg::token> token_;
  std::optional<std::size_t> token_sent_to_;
  std::set<std::size_t> down_, acks_;
  bool regenerating_ = false;
  std::optional<std::pair<address, ring_epoch>> pending_ack_;
  timer_id watchdog_{}, pass_timer_{}, retry_timer_{};
};

}  // namespace dcp::mutex
