#pragma once
// Reliable FIFO channels between the members of a static group, over an Env
// that may lose, duplicate, delay and reorder messages: what both ordered
// multicasts assume of their channels (van Steen & Tanenbaum, ch. 6: "reliable
// FIFO-ordered channels").
//
// Per directed link: sequence numbers from 1, a cumulative acknowledgement
// with a 64-frame selective-acknowledgement bitmap (TCP's SACK, RFC 2018)
// piggybacked on every frame (or sent alone `ack_delay` after a receive when
// nothing else goes that way), retransmission every `retransmit_interval` of
// each frame in the window neither acknowledged nor selectively acknowledged,
// and a reorder buffer at the receiver of `window` slots. The body of each frame reaches the owner exactly once and in the
// sender's order.
//
// Bounds: at most `window` frames in flight and `max_backlog` more waiting on
// each link. A link whose backlog overflows (its peer has stopped taking
// frames for that long: crashed, cut off, or stalled) is declared failed:
// counted, reported through on_link_failed, and nothing more is sent on it.
// Ordering is never broken by a failure; delivery that needs the peer stops.
// Hostile input: a frame from a non-member, a sequence number at or beyond the
// receiver's window, an acknowledgement of a frame never sent, or a body the
// owner's `valid` refuses is counted and dropped without a state change.
// Assumes crash-stop members: a member that restarts with fresh state starts
// its sequence numbers again and is not recognised (its frames read as
// duplicates).
#include <algorithm>
#include <bit>
#include <cassert>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <optional>
#include <string_view>
#include <vector>

#include "dcp/core/env.hpp"
#include "dcp/core/error.hpp"

namespace dcp::multicast {

struct link_config {
  /// How often an unacknowledged frame is sent again.
  duration retransmit_interval = 20ms;
  /// How long a receiver waits for outgoing traffic to carry its acknowledgement.
  duration ack_delay = 2ms;
  /// Frames in flight per link, and reorder slots per link.
  std::size_t window = 1024;
  /// Frames waiting for window space per link before the link is declared failed.
  std::size_t max_backlog = 1 << 14;

  void validate() const {
    if (retransmit_interval <= duration::zero() || ack_delay < duration::zero())
      throw error(errc::invalid_config, "multicast link: retransmit_interval must be > 0, ack_delay >= 0");
    if (window == 0) throw error(errc::invalid_config, "multicast link: window must be > 0");
  }
};

namespace link_msg {
/// One frame of a link: its sequence number, the sender's cumulative
/// acknowledgement of the reverse link, and the owner's body.
template <class Body> struct frame {
  static constexpr message_type wire_id = 1;
  static constexpr std::string_view wire_name = "frame";
  std::uint64_t seq = 0;
  std::uint64_t ack = 0;   ///< every frame up to this one has been received
  std::uint64_t sack = 0;  ///< bit i: frame ack + 2 + i has been received too
  Body body;
  template <class A> void serialize(A& ar) { ar(seq, ack, sack, body); }
};
/// A cumulative acknowledgement on its own.
struct ack {
  static constexpr message_type wire_id = 2;
  static constexpr std::string_view wire_name = "link_ack";
  std::uint64_t ack = 0;
  std::uint64_t sack = 0;  ///< as in frame
  template <class A> void serialize(A& ar) { ar(ack, sack); }
};
}  // namespace link_msg

namespace detail {

/// The links from one member to every other member of its group.
///
/// The owner supplies three functions:
///   valid(rank, body)   bad input from the network? (checked on arrival, before buffering)
///   room(rank, body)    can the owner take this body now? If not the link
///                       holds it (and everything after it) until pump()
///   deliver(rank, body) the next body from `rank`, in order, exactly once
/// What reliable_links counts, under its host protocol's id (each host joins it to its own counters).
inline constexpr counter_set reliable_links_counters{{"link_failed_drop", "bad_sequence", "bad_frame", "duplicates",
                                                      "link_failed", "not_a_member", "bad_ack", "retransmissions",
                                                      "backpressure"}};

template <Env E, class Body> class reliable_links {
 public:
  using frame = link_msg::frame<Body>;
  using valid_fn = std::function<bool(std::size_t, const Body&)>;
  using room_fn = std::function<bool(std::size_t, const Body&)>;
  using deliver_fn = std::function<void(std::size_t, Body&&)>;
  using failed_fn = std::function<void(std::size_t)>;

  reliable_links(E& env, std::vector<address> members, std::size_t self, link_config cfg)
      : env_(&env),
        members_(std::move(members)),
        self_(self),
        cfg_(cfg),
        send_(members_.size()),
        recv_(members_.size()) {
    cfg_.validate();
  }
  reliable_links(const reliable_links&) = delete;
  reliable_links& operator=(const reliable_links&) = delete;
  ~reliable_links() {
    if (retransmit_timer_) env_->cancel(retransmit_timer_);
    if (ack_timer_) env_->cancel(ack_timer_);
  }

  void on_valid(valid_fn f) { valid_ = std::move(f); }
  void on_room(room_fn f) { room_ = std::move(f); }
  void on_deliver(deliver_fn f) { deliver_ = std::move(f); }
  void on_link_failed(failed_fn f) { failed_ = std::move(f); }

  std::size_t size() const noexcept { return members_.size(); }
  const address& member(std::size_t r) const { return members_[r]; }
  std::optional<std::size_t> rank_of(const address& a) const {
    auto it = std::lower_bound(members_.begin(), members_.end(), a);
    if (it == members_.end() || *it != a) return std::nullopt;
    return static_cast<std::size_t>(it - members_.begin());
  }

  /// Queues `body` on the link to `r`; sent at once if the window allows.
  void send(std::size_t r, Body body) {
    assert(r != self_ && r < send_.size());
    auto& s = send_[r];
    if (s.failed) return env_->count("link_failed_drop");
    if (s.frames.size() >= cfg_.window + cfg_.max_backlog) return fail(r);
    s.frames.push_back({s.next_seq++, std::move(body), time_point{}, false, false});
    if (s.frames.size() <= cfg_.window) transmit(r, s.frames.back());
  }

  /// Delivers what room() refused before, now that the owner has room.
  /// Called from inside deliver() it only notes the request: the outer drain
  /// loop goes round again (a refused link is never left waiting for a
  /// retransmission, which the duplicate check would not drain).
  void pump() {
    if (pumping_) {
      pump_again_ = true;
      return;
    }
    pumping_ = true;
    do {
      pump_again_ = false;
      for (std::size_t r = 0; r < recv_.size(); ++r) drain(r);
    } while (pump_again_);
    pumping_ = false;
  }

  void on_message(const address& from, const frame& f) {
    auto r = peer(from);
    if (!r) return;
    auto& in = recv_[*r];
    if (!acknowledged(*r, f.ack, f.sack)) return;
    if (f.seq == 0 || f.seq >= in.expected + cfg_.window) return env_->count("bad_sequence");
    const bool duplicate = f.seq < in.expected || in.buffer.contains(f.seq);
    if (!duplicate && valid_ && !valid_(*r, f.body)) return env_->count("bad_frame");
    acknowledge(*r, f.ack, f.sack);
    if (duplicate) {
      env_->count("duplicates");
      owe_ack(*r);  // our acknowledgement may have been lost
      return;
    }
    in.buffer.emplace(f.seq, f.body);
    owe_ack(*r);
    pumping_ = true;
    pump_again_ = false;
    drain(*r);
    pumping_ = false;
    if (pump_again_) pump();  // the owner made room: links it refused before may move now
  }
  void on_message(const address& from, const link_msg::ack& a) {
    auto r = peer(from);
    if (!r || !acknowledged(*r, a.ack, a.sack)) return;
    acknowledge(*r, a.ack, a.sack);
  }

  bool failed(std::size_t r) const noexcept { return send_[r].failed; }
  /// Frames queued (in flight or waiting) on the link to r.
  std::size_t outstanding(std::size_t r) const noexcept { return send_[r].frames.size(); }
  /// Frames received out of order and held on the link from r.
  std::size_t held(std::size_t r) const noexcept { return recv_[r].buffer.size(); }
  /// Declares the link to r failed (the transport said r is unreachable).
  void fail(std::size_t r) {
    auto& s = send_[r];
    if (s.failed) return;
    s.failed = true;
    s.frames.clear();
    env_->count("link_failed");
    if (failed_) failed_(r);
  }

 private:
  struct outgoing {
    std::uint64_t seq;
    Body body;
    time_point sent;
    bool ever_sent;
    bool sacked = false;  ///< the receiver holds it, waiting for an earlier one
  };
  struct sender {
    std::uint64_t next_seq = 1;
    std::deque<outgoing> frames;  ///< unacknowledged, in seq order; the first `window` are in flight
    bool failed = false;
  };
  struct receiver {
    std::uint64_t expected = 1;            ///< next seq to deliver
    std::map<std::uint64_t, Body> buffer;  ///< received ahead of `expected`, at most `window`
    bool ack_owed = false;
  };

  std::optional<std::size_t> peer(const address& from) {
    auto r = rank_of(from);
    if (!r || *r == self_) {
      env_->count("not_a_member");
      return std::nullopt;
    }
    return r;
  }
  /// Checks an acknowledgement: one of a frame never sent is hostile.
  bool acknowledged(std::size_t r, std::uint64_t ack, std::uint64_t sack) {
    const std::uint64_t highest = sack ? ack + 2 + static_cast<std::uint64_t>(63 - std::countl_zero(sack)) : ack;
    if (ack >= send_[r].next_seq || highest >= send_[r].next_seq || highest < ack) {
      env_->count("bad_ack");
      return false;
    }
    return true;
  }
  void acknowledge(std::size_t r, std::uint64_t ack, std::uint64_t sack) {
    auto& s = send_[r];
    bool moved = false;
    while (!s.frames.empty() && s.frames.front().seq <= ack) {
      s.frames.pop_front();
      moved = true;
    }
    // Frames the receiver holds out of order are not sent again (it never drops them).
    for (std::size_t i = 0; sack && i < std::min<std::size_t>(s.frames.size(), 65); ++i) {
      const auto bit = s.frames[i].seq - ack - 2;
      if (s.frames[i].seq >= ack + 2 && bit < 64 && (sack >> bit) & 1) s.frames[i].sacked = true;
    }
    if (!moved) return;
    // Frames that waited for window space go now.
    for (std::size_t i = 0; i < std::min(cfg_.window, s.frames.size()); ++i)
      if (!s.frames[i].ever_sent) transmit(r, s.frames[i]);
  }
  void transmit(std::size_t r, outgoing& o) {
    if (o.ever_sent) env_->count("retransmissions");
    o.ever_sent = true;
    o.sent = env_->now();
    recv_[r].ack_owed = false;  // this frame carries it
    env_->send(members_[r], frame{o.seq, recv_[r].expected - 1, selective(r), o.body});
    arm_retransmit();
  }
  void drain(std::size_t r) {
    auto& in = recv_[r];
    for (auto it = in.buffer.find(in.expected); it != in.buffer.end() && it->first == in.expected;
         it = in.buffer.find(in.expected)) {
      if (room_ && !room_(r, it->second)) {
        env_->count("backpressure");
        return;
      }
      Body body = std::move(it->second);
      in.buffer.erase(it);
      ++in.expected;
      owe_ack(r);
      if (deliver_) deliver_(r, std::move(body));
    }
  }
  void owe_ack(std::size_t r) {
    recv_[r].ack_owed = true;
    if (ack_timer_) return;
    ack_timer_ = env_->arm(cfg_.ack_delay, [this] {
      ack_timer_ = {};
      for (std::size_t p = 0; p < recv_.size(); ++p)
        if (recv_[p].ack_owed) {
          recv_[p].ack_owed = false;
          env_->send(members_[p], link_msg::ack{recv_[p].expected - 1, selective(p)});
        }
    });
  }
  /// The selective acknowledgement of the link from r: frames held past the gap.
  std::uint64_t selective(std::size_t r) const {
    const auto& in = recv_[r];
    std::uint64_t bits = 0;
    for (auto it = in.buffer.upper_bound(in.expected); it != in.buffer.end() && it->first <= in.expected + 64; ++it)
      bits |= std::uint64_t(1) << (it->first - in.expected - 1);
    return bits;
  }
  void arm_retransmit() {
    if (retransmit_timer_) return;
    retransmit_timer_ = env_->arm(cfg_.retransmit_interval, [this] {
      retransmit_timer_ = {};
      const auto due = env_->now() - cfg_.retransmit_interval;
      bool any = false;
      for (std::size_t r = 0; r < send_.size(); ++r) {
        auto& s = send_[r];
        for (std::size_t i = 0; i < std::min(cfg_.window, s.frames.size()); ++i) {
          if (s.frames[i].ever_sent && !s.frames[i].sacked && s.frames[i].sent <= due) transmit(r, s.frames[i]);
          any = true;
        }
      }
      if (any) arm_retransmit();
    });
  }

  E* env_;
  std::vector<address> members_;  ///< sorted (a static_group's order)
  std::size_t self_;
  link_config cfg_;
  std::vector<sender> send_;
  std::vector<receiver> recv_;
  valid_fn valid_;
  room_fn room_;
  deliver_fn deliver_;
  failed_fn failed_;
  timer_id retransmit_timer_{}, ack_timer_{};
  bool pumping_ = false, pump_again_ = false;
};

}  // namespace detail
}  // namespace dcp::multicast
