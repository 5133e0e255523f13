#pragma once
// Causally ordered multicast with vector clocks (van Steen & Tanenbaum,
// Distributed Systems, ch. 6 "Enforcing causal communication"; Birman,
// Schiper & Stephenson 1991).
//
// VC[k] at a member counts the messages from k it has delivered. A sender
// increments VC[self], stamps the message with VC and delivers it to itself.
// A member delivers m from j, stamped ts, when
//     ts[j] = VC[j] + 1          (m is the next message from j), and
//     ts[k] <= VC[k] for k != j  (it has delivered everything j had when j sent m),
// then sets VC[j] = ts[j]; until then m waits in a hold-back queue. If m1
// happened before m2 (m2's sender had delivered m1, or sent it, before
// sending m2), every member delivers m1 first. Concurrent messages may be
// delivered in different orders at different members. No acknowledgements:
// N−1 messages per multicast.
//
// ASSUMES reliable channels (here FIFO too: detail::reliable_links, with
// sequence numbers, retransmission and de-duplication, so loss, duplication
// and reordering are tolerated). A member that crashes after its message m
// reached some members but not others leaves every later message that
// depends on m undeliverable where m is missing (no member relays another's
// messages). That is exposed, not hidden: blocked_on() names the members
// whose messages the hold-back queue waits for, a queue that makes no
// progress for `stall_timeout` is counted ("stalled") and reported to
// on_stall(members), and a member the transport reports unreachable (or
// whose link overflows) is reported to on_member_failed.
//
// Bounds: each sender's messages in the hold-back queue are at most
// `max_held_per_sender` (more wait in their link, which retransmits them:
// counted "backpressure"), so a sender that claims dependencies that never
// come blocks only its own messages. This flow control cannot deadlock:
// a causally minimal undelivered message is its sender's next one, so it is
// either at the front of that sender's hold-back queue (and deliverable) or,
// that queue being empty, taken from the link. Hostile input (counted, no state
// change): frames from non-members, sequence numbers beyond the window,
// vector clocks with entries for non-members or more entries than members,
// entries more than `max_clock_lead` ahead of what this member delivered,
// oversized payloads. Stamps that skip or repeat along a FIFO link are
// counted ("bad_clock") and ignored.
//
// Completions: on_deliver, on_stall and on_member_failed callbacks run after
// the event that produced them (DESIGN §10; an outbox, dcp/core/outbox.hpp),
// in the order they happened, so deliveries in delivery order; a member's own
// multicast is delivered to it that way too, never inside multicast(). A
// callback that multicasts finds the member between events; one that
// destroys it ends the callbacks still queued.
// Thread safety: none; drive it from one executor.
#include <algorithm>
#include <cstdint>
#include <deque>
#include <functional>
#include <string_view>
#include <utility>
#include <vector>

#include "dcp/clock/vector_clock.hpp"
#include "dcp/core/bytes.hpp"
#include "dcp/core/env.hpp"
#include "dcp/core/error.hpp"
#include "dcp/core/outbox.hpp"
#include "dcp/core/result.hpp"
#include "dcp/group/static_group.hpp"
#include "dcp/multicast/detail/reliable_links.hpp"
#include "dcp/wire/message.hpp"

namespace dcp::multicast {

struct causal_order_config {
  link_config link{};
  std::size_t max_payload = 1 << 20;
  /// Messages from one sender the hold-back queue holds.
  std::size_t max_held_per_sender = 1 << 12;
  /// A vector clock entry further ahead of this member's than this is hostile.
  std::uint64_t max_clock_lead = std::uint64_t(1) << 32;
  /// A hold-back queue that delivers nothing for this long is reported to on_stall.
  duration stall_timeout = 5s;

  void validate() const {
    link.validate();
    if (max_held_per_sender == 0) throw error(errc::invalid_config, "causal_order: max_held_per_sender must be > 0");
    if (stall_timeout <= duration::zero()) throw error(errc::invalid_config, "causal_order: stall_timeout must be > 0");
  }
};

namespace causal_order_msg {
struct body {
  clock::vector_clock stamp;  ///< the sender's delivered counts, its own entry counting this message
  bytes payload;
  template <class A> void serialize(A& ar) { ar(stamp, payload); }
};
}  // namespace causal_order_msg

/// One delivery, as the deliver callback sees it (valid during the call).
struct causal_order_delivery {
  address origin;
  const clock::vector_clock& stamp;  ///< keyed by group rank
  byte_view payload;
};

template <Env E> class causal_order {
 public:
  using body = causal_order_msg::body;
  using messages = wire::message_set<link_msg::frame<body>, link_msg::ack>;
  /// What it counts (env.count), declared: dcp/core/counter_set.hpp.
  static constexpr auto counters =
      dcp::join(detail::reliable_links_counters,
                dcp::counter_set{{"multicast", "delivered", "bad_clock", "stalled", "member_failed"}});
  static constexpr std::string_view name = "multicast.causal_order";
  static constexpr protocol_id default_id = 131;

  causal_order(E env, group::static_group g, causal_order_config cfg = {})
      : env_(std::move(env)),
        out_(env_),
        cfg_((cfg.validate(), cfg)),
        rank_(group::rank_of_self(g, env_.self(), "causal_order")),
        links_(env_, std::vector<address>(g.members().begin(), g.members().end()), rank_, cfg_.link),
        held_(g.size()),
        received_(g.size(), 0),
        failed_(g.size(), false) {
    links_.on_valid([this](std::size_t r, const body& b) { return valid(r, b); });
    links_.on_room([this](std::size_t r, const body&) { return held_[r].size() < cfg_.max_held_per_sender; });
    links_.on_deliver([this](std::size_t r, body&& b) { receive(r, std::move(b)); });
    links_.on_link_failed([this](std::size_t r) { member_failed(r); });
  }
  causal_order(const causal_order&) = delete;
  causal_order& operator=(const causal_order&) = delete;
  ~causal_order() {
    if (stall_timer_) env_.cancel(stall_timer_);
  }

  /// Multicasts `payload`; returns its vector stamp. It is delivered here
  /// after this call returns. Throws dcp::error(invalid_argument) for a
  /// payload above max_payload.
  clock::vector_clock multicast(byte_view payload) {
    if (payload.size() > cfg_.max_payload)
      throw error(errc::invalid_argument, "causal_order::multicast: payload larger than max_payload");
    vc_.tick(rank_);
    ++received_[rank_];
    env_.count("multicast");
    body b{vc_, bytes(payload.begin(), payload.end())};
    for (std::size_t r = 0; r < links_.size(); ++r)
      if (r != rank_) links_.send(r, b);
    env_.count("delivered");
    deliver_later(rank_, std::move(b));
    return vc_;
  }

  void on_deliver(std::function<void(const causal_order_delivery&)> f) { deliver_ = std::move(f); }
  void on_stall(std::function<void(const std::vector<address>&)> f) { stall_ = std::move(f); }
  void on_member_failed(std::function<void(const address&)> f) { failed_cb_ = std::move(f); }

  void on_message(const address& from, const link_msg::frame<body>& f) { links_.on_message(from, f); }
  void on_message(const address& from, const link_msg::ack& a) { links_.on_message(from, a); }
  void on_unreachable(const address& peer) {
    if (auto r = links_.rank_of(peer); r && *r != rank_) links_.fail(*r);
  }

  /// The members whose messages the hold-back queue is waiting for.
  std::vector<address> blocked_on() const {
    std::vector<bool> waits(held_.size(), false);
    for (std::size_t j = 0; j < held_.size(); ++j) {
      if (held_[j].empty()) continue;
      const auto& ts = held_[j].front().stamp;
      for (auto& [k, c] : ts.entries())
        if (k == j ? c > vc_[k] + 1 : c > vc_[k]) waits[k] = true;
    }
    std::vector<address> out;
    for (std::size_t k = 0; k < waits.size(); ++k)
      if (waits[k]) out.push_back(links_.member(k));
    return out;
  }
  std::vector<address> failed_members() const {
    std::vector<address> out;
    for (std::size_t r = 0; r < failed_.size(); ++r)
      if (failed_[r]) out.push_back(links_.member(r));
    return out;
  }
  /// Delivered counts per member (this member's own entry counts its multicasts).
  const clock::vector_clock& delivered_clock() const noexcept { return vc_; }
  std::size_t held() const noexcept {
    std::size_t n = 0;
    for (auto& q : held_) n += q.size();
    return n;
  }
  const address& self() const { return links_.member(rank_); }

  bool check_invariants() const {
    for (std::size_t j = 0; j < held_.size(); ++j) {
      if (held_[j].size() > cfg_.max_held_per_sender) return false;
      if (vc_[j] > received_[j]) return false;
      // held messages from j are the next ones from j, consecutive
      std::uint64_t expect = vc_[j] + 1;
      for (auto& b : held_[j])
        if (b.stamp[j] != expect++) return false;
    }
    return true;
  }

 private:
  bool valid(std::size_t j, const body& b) const {
    if (b.payload.size() > cfg_.max_payload) return false;
    if (b.stamp.entries().size() > held_.size()) return false;
    for (auto& [k, c] : b.stamp.entries()) {
      if (k >= held_.size()) return false;
      if (c > vc_[k] + cfg_.max_clock_lead) return false;
    }
    return b.stamp[j] > 0;
  }
  void receive(std::size_t j, body&& b) {
    // Along a FIFO link j's own entry goes up by one per message.
    if (b.stamp[j] != received_[j] + 1) return env_.count("bad_clock");
    received_[j] = b.stamp[j];
    held_[j].push_back(std::move(b));
    try_deliver();
  }
  bool deliverable(std::size_t j, const clock::vector_clock& ts) const {
    for (auto& [k, c] : ts.entries())
      if (k == j ? c != vc_[k] + 1 : c > vc_[k]) return false;
    return true;
  }
  void try_deliver() {
    bool any = false, progress = true;
    while (progress) {
      progress = false;
      for (std::size_t j = 0; j < held_.size(); ++j)
        while (!held_[j].empty() && deliverable(j, held_[j].front().stamp)) {
          body b = std::move(held_[j].front());
          held_[j].pop_front();
          vc_.merge(b.stamp);  // only entry j moves: the others are <= vc_ already
          ++delivered_;
          env_.count("delivered");
          deliver_later(j, std::move(b));
          any = progress = true;
        }
    }
    if (any) links_.pump();
    watch();
  }
  // ---- completions, after the event (DESIGN §10) ----
  void deliver_later(std::size_t j, body&& b) {
    out_.push([this, j, b = std::move(b)] {
      if (deliver_) deliver_(causal_order_delivery{links_.member(j), b.stamp, b.payload});
    });
  }
  void watch() {
    if (stall_timer_ || held() == 0) return;
    watched_ = delivered_;
    stall_timer_ = env_.arm(cfg_.stall_timeout, [this] {
      stall_timer_ = {};
      if (held() == 0) return;
      if (delivered_ == watched_ && !stall_reported_) {
        stall_reported_ = true;
        env_.count("stalled");
        out_.push([this, blocked = blocked_on()] {
          if (stall_) stall_(blocked);
        });
      } else if (delivered_ != watched_) {
        stall_reported_ = false;
      }
      watch();
    });
  }
  void member_failed(std::size_t r) {
    if (failed_[r]) return;
    failed_[r] = true;
    env_.count("member_failed");
    out_.push([this, who = links_.member(r)] {
      if (failed_cb_) failed_cb_(who);
    });
  }

  E env_;
  outbox<E> out_;  ///< the callbacks owed, run after the event
  causal_order_config cfg_;
  std::size_t rank_;
  detail::reliable_links<E, body> links_;
  clock::vector_clock vc_;               ///< delivered counts per rank
  std::vector<std::deque<body>> held_;   ///< the hold-back queue, per sender, in the sender's order
  std::vector<std::uint64_t> received_;  ///< newest own-entry stamp received from each sender
  std::vector<bool> failed_;
  std::uint64_t delivered_ = 0;
  std::function<void(const causal_order_delivery&)> deliver_;
  std::function<void(const std::vector<address>&)> stall_;
  std::function<void(const address&)> failed_cb_;
  timer_id stall_timer_{};
  std::uint64_t watched_ = 0;
  bool stall_reported_ = false;
};

}  // namespace dcp::multicast
