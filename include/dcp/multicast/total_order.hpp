#pragma once
// Totally ordered multicast with Lamport clocks and acknowledgements
// (van Steen & Tanenbaum, Distributed Systems, ch. 6 "Lamport's logical
// clocks": totally ordered multicasting; Lamport 1978).
//
// A member stamps each message with its Lamport clock and multicasts it to
// the group, itself included. Every member queues the message by stamp
// (time, sender rank) and multicasts an acknowledgement, stamped too. A
// member delivers the message at the head of its queue once it has heard,
// from every other member, a message or acknowledgement stamped later than
// it. Every member then delivers every message in the same order: stamp
// order. Cost per multicast: N−1 messages and N(N−1) acknowledgements (each
// of the N members, the sender included, acknowledges to the N−1 others).
//
// Why "stamped later" suffices: channels are FIFO, so once member r has sent
// something stamped after m, everything r multicast before it has arrived,
// and everything r multicasts later is stamped later still (Lamport's clock
// condition). No message that should precede m can still turn up.
//
// ASSUMES reliable FIFO channels and every member alive. The Env promises
// neither, so the frames go over detail::reliable_links (per-link sequence
// numbers, cumulative acknowledgements, retransmission, a reorder buffer):
// loss, duplication and reordering are tolerated. A crashed or cut-off
// member is not: nothing stamped after its last message can be delivered
// anywhere, because no one can know what it might still have sent. This is
// exposed, never a silent hang: blocked_on() names the members the head of
// the queue waits for; a head that waits longer than `stall_timeout` is
// counted ("stalled") and reported to on_stall(members); a member the
// transport reports unreachable, or whose link overflows, is reported to
// on_member_failed(member) and stays failed (crash-stop; this group has no
// view change: use a consensus-backed group for that).
//
// Bounds: the hold-back queue holds at most `max_queue` messages, plus at
// most one per member that would head the queue (data a full queue cannot
// take waits in its link, which retransmits it: flow control, counted
// "backpressure"; the refused frame's stamp still counts as heard, so flow
// control cannot deadlock the order: see room()); multicast() refuses with errc::busy
// while this member has `max_outstanding` of its own messages undelivered.
// Hostile input (counted, no state change): frames from non-members,
// sequence numbers beyond the window, stamps more than `max_clock_lead`
// ahead of this clock, acknowledgements naming a non-member, oversized
// payloads. A stamp that does not grow along a FIFO link is counted
// ("bad_clock") and ignored.
//
// Completions: on_deliver, on_stall and on_member_failed callbacks run after
// the event that produced them (DESIGN §10; an outbox, dcp/core/outbox.hpp),
// in the order they happened, so deliveries in delivery order; multicast()
// returns before its own message is delivered. A callback that multicasts
// finds the member between events; one that destroys it ends the callbacks
// still queued.
// Thread safety: none; drive it from one executor (as every core).
#include <algorithm>
#include <cstdint>
#include <functional>
#include <map>
#include <string_view>
#include <utility>
#include <vector>

#include "dcp/clock/lamport_clock.hpp"
#include "dcp/core/bytes.hpp"
#include "dcp/core/env.hpp"
#include "dcp/core/error.hpp"
#include "dcp/core/outbox.hpp"
#include "dcp/core/result.hpp"
#include "dcp/group/static_group.hpp"
#include "dcp/multicast/detail/reliable_links.hpp"
#include "dcp/wire/message.hpp"

namespace dcp::multicast {

struct total_order_config {
  link_config link{};
  /// Largest payload multicast() takes and a peer may send.
  std::size_t max_payload = 1 << 20;
  /// Messages the hold-back queue holds (all senders together).
  std::size_t max_queue = 1 << 14;
  /// This member's own messages in flight (multicast but not yet delivered here).
  std::size_t max_outstanding = 256;
  /// A stamp further ahead of this member's clock than this is hostile.
  std::uint64_t max_clock_lead = std::uint64_t(1) << 40;
  /// A head of queue waiting this long is reported to on_stall.
  duration stall_timeout = 5s;

  void validate() const {
    link.validate();
    if (max_queue == 0 || max_outstanding == 0 || max_outstanding > max_queue)
      throw error(errc::invalid_config, "total_order: need 0 < max_outstanding <= max_queue");
    if (stall_timeout <= duration::zero()) throw error(errc::invalid_config, "total_order: stall_timeout must be > 0");
  }
};

namespace total_order_msg {
/// What travels in a link frame: a stamped message or a stamped acknowledgement.
struct body {
  enum kind_type : std::uint8_t { data = 0, ack = 1 };
  std::uint8_t kind = data;
  std::uint64_t time = 0;     ///< the sender's Lamport time of this message or acknowledgement
  std::uint64_t of_time = 0;  ///< ack: the acknowledged message's stamp
  std::uint32_t of_node = 0;
  bytes payload;  ///< data only
  template <class A> void serialize(A& ar) { ar(kind, time, of_time, of_node, payload); }
};
}  // namespace total_order_msg

/// One delivery, as the deliver callback sees it (valid during the call).
struct total_order_delivery {
  address origin;              ///< the member that multicast it
  clock::lamport_stamp stamp;  ///< its place in the total order
  byte_view payload;
};

template <Env E> class total_order {
 public:
  using body = total_order_msg::body;
  using messages = wire::message_set<link_msg::frame<body>, link_msg::ack>;
  /// What it counts (env.count), declared: dcp/core/counter_set.hpp.
  static constexpr auto counters =
      dcp::join(detail::reliable_links_counters,
                dcp::counter_set{{"multicast_busy", "multicast", "bad_clock", "acks_received", "delivered", "stalled",
                                  "member_failed"}});
  static constexpr std::string_view name = "multicast.total_order";
  static constexpr protocol_id default_id = 130;

  total_order(E env, group::static_group g, total_order_config cfg = {})
      : env_(std::move(env)),
        out_(env_),
        cfg_((cfg.validate(), cfg)),
        rank_(group::rank_of_self(g, env_.self(), "total_order")),
        links_(env_, std::vector<address>(g.members().begin(), g.members().end()), rank_, cfg_.link),
        heard_(g.size(), 0),
        peeked_(g.size(), 0),
        failed_(g.size(), false) {
    links_.on_valid([this](std::size_t r, const body& b) { return valid(r, b); });
    links_.on_room([this](std::size_t r, const body& b) { return room(r, b); });
    links_.on_deliver([this](std::size_t r, body&& b) { receive(r, std::move(b)); });
    links_.on_link_failed([this](std::size_t r) { member_failed(r); });
  }
  total_order(const total_order&) = delete;
  total_order& operator=(const total_order&) = delete;
  ~total_order() {
    if (stall_timer_) env_.cancel(stall_timer_);
  }

  /// Multicasts `payload` to the group (this member included); its stamp, or
  /// errc::busy when max_outstanding of this member's messages are undelivered.
  /// Throws dcp::error(invalid_argument) for a payload above max_payload.
  result<clock::lamport_stamp> multicast(byte_view payload) {
    if (payload.size() > cfg_.max_payload)
      throw error(errc::invalid_argument, "total_order::multicast: payload larger than max_payload");
    if (outstanding_ >= cfg_.max_outstanding || queue_.size() >= cfg_.max_queue) {
      env_.count("multicast_busy");
      return errc::busy;
    }
    const clock::lamport_stamp stamp{clock_.tick(), rank_};
    queue_.emplace(stamp, bytes(payload.begin(), payload.end()));
    ++outstanding_;
    env_.count("multicast");
    for (std::size_t r = 0; r < links_.size(); ++r)
      if (r != rank_) links_.send(r, body{body::data, stamp.time, 0, 0, bytes(payload.begin(), payload.end())});
    acknowledge(stamp);
    try_deliver();
    return stamp;
  }

  void on_deliver(std::function<void(const total_order_delivery&)> f) { deliver_ = std::move(f); }
  /// Called (after the event) with the members the head of the queue has
  /// waited on for longer than stall_timeout.
  void on_stall(std::function<void(const std::vector<address>&)> f) { stall_ = std::move(f); }
  /// Called (after the event) when a member is known to have failed.
  void on_member_failed(std::function<void(const address&)> f) { failed_cb_ = std::move(f); }

  void on_message(const address& from, const link_msg::frame<body>& f) { links_.on_message(from, f); }
  void on_message(const address& from, const link_msg::ack& a) { links_.on_message(from, a); }
  /// The transport gave up on `peer`: it has crashed (crash-stop assumed).
  void on_unreachable(const address& peer) {
    if (auto r = links_.rank_of(peer); r && *r != rank_) links_.fail(*r);
  }

  /// The members the head of the queue is waiting to hear from (empty when
  /// nothing waits). A failed member in this list blocks delivery for good.
  std::vector<address> blocked_on() const {
    std::vector<address> out;
    if (queue_.empty()) return out;
    const auto head = queue_.begin()->first;
    for (std::size_t r = 0; r < heard_.size(); ++r)
      if (r != rank_ && !(clock::lamport_stamp{latest(r), r} > head)) out.push_back(links_.member(r));
    return out;
  }
  std::vector<address> failed_members() const {
    std::vector<address> out;
    for (std::size_t r = 0; r < failed_.size(); ++r)
      if (failed_[r]) out.push_back(links_.member(r));
    return out;
  }
  std::size_t queued() const noexcept { return queue_.size(); }
  std::size_t outstanding() const noexcept { return outstanding_; }
  std::uint64_t delivered() const noexcept { return delivered_; }
  std::uint64_t clock() const noexcept { return clock_.now(); }
  const address& self() const { return links_.member(rank_); }

  /// What must hold after every event.
  bool check_invariants() const {
    if (queue_.size() > cfg_.max_queue + heard_.size() || outstanding_ > cfg_.max_outstanding) return false;
    if (!queue_.empty() && queue_.begin()->first < last_delivered_) return false;  // order never goes back
    for (auto& [s, p] : queue_)
      if (s.time > clock_.now()) return false;
    return true;
  }

 private:
  bool valid(std::size_t, const body& b) {
    if (b.time == 0 || b.time - 1 >= clock_.now() + cfg_.max_clock_lead) return false;
    if (b.kind == body::data) return b.payload.size() <= cfg_.max_payload;
    return b.kind == body::ack && b.of_node < heard_.size() && b.of_time < b.time && b.payload.empty();
  }
  /// Whether the queue takes `b`, the next frame from r. Flow control without
  /// deadlock: a message that would head the queue is always taken (at most
  /// one per link beyond max_queue: the next from the same link is stamped
  /// later), and a refused one's stamp still counts as heard from r, since
  /// everything r sends after it is stamped later. So the globally smallest
  /// undelivered message always reaches the head everywhere and collects a
  /// later stamp from every member.
  bool room(std::size_t r, const body& b) {
    if (b.kind != body::data || queue_.size() < cfg_.max_queue) return true;
    if (clock::lamport_stamp{b.time, r} < queue_.begin()->first && queue_.size() < cfg_.max_queue + heard_.size())
      return true;
    if (b.time > peeked_[r]) {
      peeked_[r] = b.time;
      try_deliver();
    }
    return false;
  }
  std::uint64_t latest(std::size_t r) const noexcept { return std::max(heard_[r], peeked_[r]); }
  /// The next frame from `r`, in r's order.
  void receive(std::size_t r, body&& b) {
    if (b.time <= heard_[r]) return env_.count("bad_clock");  // stamps grow along a FIFO link
    clock_.observe(b.time);
    heard_[r] = b.time;
    if (b.kind == body::data) {
      const clock::lamport_stamp stamp{b.time, r};
      queue_.emplace(stamp, std::move(b.payload));
      acknowledge(stamp);
    } else {
      env_.count("acks_received");
    }
    try_deliver();
  }
  /// The acknowledgement every member (the sender too) multicasts for each message.
  void acknowledge(const clock::lamport_stamp& m) {
    const auto t = clock_.tick();
    for (std::size_t r = 0; r < links_.size(); ++r)
      if (r != rank_) links_.send(r, body{body::ack, t, m.time, static_cast<std::uint32_t>(m.node), {}});
  }
  bool deliverable(const clock::lamport_stamp& head) const {
    for (std::size_t r = 0; r < heard_.size(); ++r)
      if (r != rank_ && !(clock::lamport_stamp{latest(r), r} > head)) return false;
    return true;
  }
  void try_deliver() {
    bool any = false;
    while (!queue_.empty() && deliverable(queue_.begin()->first)) {
      auto node = queue_.extract(queue_.begin());
      last_delivered_ = node.key();
      if (node.key().node == rank_) --outstanding_;
      ++delivered_;
      env_.count("delivered");
      out_.push([this, stamp = node.key(), payload = std::move(node.mapped())] {
        if (deliver_) deliver_(total_order_delivery{links_.member(stamp.node), stamp, payload});
      });
      any = true;
    }
    if (any) links_.pump();  // the queue has room again
    watch_head();
  }
  /// Arms the stall check while something waits at the head of the queue.
  void watch_head() {
    if (queue_.empty() || stall_timer_) return;
    watched_ = queue_.begin()->first;
    stall_timer_ = env_.arm(cfg_.stall_timeout, [this] {
      stall_timer_ = {};
      if (queue_.empty()) return;
      if (queue_.begin()->first == watched_ && !stall_reported_) {
        stall_reported_ = true;
        env_.count("stalled");
        out_.push([this, blocked = blocked_on()] {
          if (stall_) stall_(blocked);
        });
      } else if (queue_.begin()->first != watched_) {
        stall_reported_ = false;
      }
      watch_head();
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
  total_order_config cfg_;
  std::size_t rank_;
  detail::reliable_links<E, body> links_;
  clock::lamport_clock clock_;
  std::map<clock::lamport_stamp, bytes> queue_;  ///< the hold-back queue, in total order
  std::vector<std::uint64_t> heard_;             ///< newest stamp received from each member
  std::vector<std::uint64_t> peeked_;            ///< stamp of a data frame from each member refused for room
  std::vector<bool> failed_;
  std::size_t outstanding_ = 0;
  std::uint64_t delivered_ = 0;
  clock::lamport_stamp last_delivered_{};
  std::function<void(const total_order_delivery&)> deliver_;
  std::function<void(const std::vector<address>&)> stall_;
  std::function<void(const address&)> failed_cb_;
  timer_id stall_timer_{};
  clock::lamport_stamp watched_{};
  bool stall_reported_ = false;
};

}  // namespace dcp::multicast
