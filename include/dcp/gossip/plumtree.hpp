#pragma once
// Plumtree: epidemic broadcast trees (Leitão, Pereira, Rodrigues, SRDS 2007).
//
// Payloads travel on a spanning tree embedded in the membership's overlay;
// the other links carry only announcements (IHAVE), which repair the tree.
//
//   eager / lazy   every new neighbour starts as an eager peer. A node that
//                  delivers a message forwards the payload to its eager peers
//                  and an IHAVE(id) to its lazy peers.
//   PRUNE          a payload received twice means a cycle: the node moves the
//                  sender to its lazy peers and tells it to do the same.
//   GRAFT          an IHAVE for a message not delivered starts a timer
//                  (`ihave_timeout`); when it fires the node asks the first
//                  announcer for the payload (GRAFT) and makes that link
//                  eager: the tree grows a branch where it was broken. Each
//                  further `graft_timeout` without the payload grafts the next
//                  announcer.
//   membership     a neighbour that goes down leaves both sets and its
//                  announcements; the tree heals through the lazy links.
//   optimisation   (the paper's optional one, `optimization_threshold` > 0)
//                  a payload that arrives `threshold` or more hops later than
//                  an IHAVE for it that arrived earlier marks a tree branch
//                  that is both slower and longer than a lazy link: the node
//                  makes the announcer's link a tree link (GRAFT that asks for
//                  no payload) and PRUNEs the link the payload came on. Trees
//                  grafted together after failures get shallower again.
//
// In a stable overlay the first broadcast floods and prunes the cycles; the
// ones after it cost one payload per node (RMR near 0). Delivery to every
// correct node holds while the overlay stays connected, the payload cache
// still holds the message when a graft for it arrives, and some announcer of
// it survives. A message lost by every announcer is lost for good: pair
// Plumtree with anti_entropy when that matters.
//
// Hostile input: in the paper IHAVE and GRAFT travel only between overlay
// neighbours, so both are refused from anyone else ("ihave_not_neighbour",
// "graft_not_neighbour": a graft from a stranger would be a small request
// answered by a large payload). Messages announced but not delivered are
// tracked for at most `max_missing` ids ("missing_refused_full" beyond), each
// with at most one announcement per neighbour ("ihave_repeated"), so a
// neighbour announcing ids it never sends costs bounded memory and grafts.
// A payload (GOSSIP) is delivered and forwarded only from a peer the
// membership admits ("gossip_not_member"; HyParView: its active or passive
// view, so a payload under way from a peer that just left the active view
// still counts), so a process outside the overlay cannot inject broadcasts.
#include <algorithm>
#include <deque>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "dcp/core/assert.hpp"
#include "dcp/core/env.hpp"
#include "dcp/core/error.hpp"
#include "dcp/gossip/broadcast.hpp"
#include "dcp/gossip/detail/seen_cache.hpp"
#include "dcp/membership/detail/distinct.hpp"
#include "dcp/membership/membership.hpp"
#include "dcp/wire/message.hpp"

namespace dcp::gossip {

struct plumtree_config {
  /// How long an announced message may be missing before a GRAFT (timer 1 of
  /// the paper). It must exceed how much longer the tree path from a source
  /// can be than a lazy link's path: a shorter timer grafts around healthy
  /// but long branches and keeps reshaping the tree towards each source
  /// (measured: RMR 0.01-0.3 at 100 ms with 1-20 ms links, 0 at 1 s).
  duration ihave_timeout = 1s;
  /// Between two GRAFTs for the same message (timer 2).
  duration graft_timeout = 500ms;
  /// Hops by which an earlier announcement must beat the payload's path for
  /// the tree to be rewired through the announcer (0: never rewire).
  std::uint32_t optimization_threshold = 0;
  std::size_t seen_capacity = 1 << 16;
  /// Payloads kept to answer GRAFTs.
  std::size_t payload_capacity = 4096;
  std::size_t max_payload = 1 << 20;
  /// Messages announced (IHAVE) but not yet delivered that are tracked for a GRAFT.
  std::size_t max_missing = 4096;

  void validate() const {
    if (ihave_timeout <= duration::zero() || graft_timeout <= duration::zero())
      throw error(errc::invalid_config, "plumtree: ihave_timeout and graft_timeout must be > 0");
    if (seen_capacity == 0 || payload_capacity == 0 || max_missing == 0)
      throw error(errc::invalid_config, "plumtree: seen_capacity, payload_capacity and max_missing must be > 0");
  }
};

namespace plumtree_msg {
struct gossip {
  static constexpr message_type wire_id = 1;
  static constexpr std::string_view wire_name = "gossip";
  message_id id = 0;
  std::uint32_t round = 0;
  bytes payload;
  template <class A> void serialize(A& ar) { ar(id, round, payload); }
};
struct ihave {
  static constexpr message_type wire_id = 2;
  static constexpr std::string_view wire_name = "ihave";
  message_id id = 0;
  std::uint32_t round = 0;
  template <class A> void serialize(A& ar) { ar(id, round); }
};
/// Asks for message `id` and makes the link a tree link; id 0 (never a
/// message's: broadcast() skips it) only makes the link a tree link.
struct graft {
  static constexpr message_type wire_id = 3;
  static constexpr std::string_view wire_name = "graft";
  message_id id = 0;
  std::uint32_t round = 0;
  template <class A> void serialize(A& ar) { ar(id, round); }
};
struct prune {
  static constexpr message_type wire_id = 4;
  static constexpr std::string_view wire_name = "prune";
  template <class A> void serialize(A&) {}
};
}  // namespace plumtree_msg

template <Env E, class Membership> class plumtree {
  static_assert(membership::Membership<Membership>,
                "dcp: plumtree<Env, M> needs M to model dcp::membership::Membership (neighbours(), sample(k), "
                "on_neighbour_up(f), on_neighbour_down(f)), e.g. dcp::membership::hyparview<Env>");

 public:
  using messages =
      wire::message_set<plumtree_msg::gossip, plumtree_msg::ihave, plumtree_msg::graft, plumtree_msg::prune>;
  /// What it counts (env.count), declared: dcp/core/counter_set.hpp.
  static constexpr auto counters =
      dcp::join(deliver_own_counters,
                dcp::counter_set{{"bad_gossip", "gossip_not_member", "link_duplicates", "duplicates",
                                  "ihave_not_neighbour", "ihave_repeated", "missing_refused_full", "bad_graft",
                                  "graft_not_neighbour", "tree_links_grafted", "graft_unanswerable", "delivered",
                                  "tree_optimized", "graft_exhausted", "grafts"}});
  static constexpr std::string_view name = "plumtree";
  static constexpr protocol_id default_id = 21;

  plumtree(E env, Membership& m, plumtree_config cfg = {})
      : env_(std::move(env)), membership_(m), cfg_(cfg), seen_((cfg_.validate(), cfg_.seen_capacity)) {
    neighbours_ = m.neighbours();
    eager_ = neighbours_;
    m.on_neighbour_up([this](const address& p) { neighbour_up(p); });
    m.on_neighbour_down([this](const address& p) { neighbour_down(p); });
  }
  plumtree(const plumtree&) = delete;
  plumtree& operator=(const plumtree&) = delete;
  ~plumtree() {
    for (auto& [id, m] : missing_) env_.cancel(m.timer);
  }

  message_id broadcast(byte_view payload) {
    if (payload.size() > cfg_.max_payload)
      throw error(errc::invalid_argument, "plumtree::broadcast: payload larger than max_payload");
    message_id id = 0;
    while (id == 0 || seen_.contains(id)) id = env_.rng()();
    plumtree_msg::gossip g{id, 0, bytes(payload.begin(), payload.end())};
    accept(g, env_.self());
    return id;
  }
  void on_deliver(deliver_callback f) { deliver_ = std::move(f); }

  const std::vector<address>& eager_peers() const noexcept { return eager_; }
  const std::vector<address>& lazy_peers() const noexcept { return lazy_; }
  bool delivered(message_id id) const { return seen_.contains(id); }

  /// Asserts (DCP_ASSERT) what holds of this node's state between events,
  /// whatever its peers sent. The eager and lazy peers partition the
  /// membership's neighbours as last reported (the paper: every neighbour is
  /// in exactly one set), without duplicates or this node. The payload cache
  /// and its eviction order agree and stay within payload_capacity; the
  /// messages tracked as missing within max_missing, none delivered, each
  /// with its timer and announcers that are distinct current neighbours.
  /// O(n log n) for n neighbours, plus O(missing × announcers²); for tests
  /// and the simulator.
  void check_invariants() const {
    seen_.check_invariants();
    for (auto& p : neighbours_) DCP_ASSERT(p != env_.self() && !p.empty(), "plumtree: this node or nobody a neighbour");
    std::vector<address> tree = eager_;
    tree.insert(tree.end(), lazy_.begin(), lazy_.end());
    // Distinct, and the same set as the neighbours (which are then distinct too).
    DCP_ASSERT(membership::detail::distinct(tree), "plumtree: a peer twice eager, twice lazy, or both");
    DCP_ASSERT(membership::detail::same_set(tree, neighbours_),
               "plumtree: the eager and lazy peers are not the neighbours, or a neighbour is listed twice");
    DCP_ASSERT(payloads_.size() == order_.size() && payloads_.size() <= cfg_.payload_capacity,
               "plumtree: the payload cache and its eviction order disagree, or exceed payload_capacity");
    DCP_ASSERT(missing_.size() <= cfg_.max_missing, "plumtree: more messages tracked as missing than max_missing");
    for (const auto& kv : missing_) {
      DCP_ASSERT(!seen_.contains(kv.first), "plumtree: a delivered message still tracked as missing");
      DCP_ASSERT(static_cast<bool>(kv.second.timer), "plumtree: a missing message without its graft timer");
      const auto& a = kv.second.announcers;
      for (auto i = a.begin(); i != a.end(); ++i) {
        DCP_ASSERT(contains(neighbours_, i->from), "plumtree: an announcer that is not a neighbour");
        DCP_ASSERT(std::none_of(i + 1, a.end(), [&](const announcement& b) { return b.from == i->from; }),
                   "plumtree: one neighbour's announcement recorded twice");
      }
    }
  }

  void on_message(const address& from, const plumtree_msg::gossip& m) {
    if (m.payload.size() > cfg_.max_payload || from == env_.self()) return env_.count("bad_gossip");
    if (!membership::admits(membership_, from)) return env_.count("gossip_not_member");
    if (seen_.contains(m.id)) {
      // The same payload again from the peer it first came from is the
      // link's duplicate, not a cycle: pruning would cut this node's own
      // tree branch (the paper assumes links that never duplicate).
      if (auto it = payloads_.find(m.id); it != payloads_.end() && it->second.from == from)
        return env_.count("link_duplicates");
      env_.count("duplicates");
      if (move(from, eager_, lazy_)) env_.send(from, plumtree_msg::prune{});
      return;
    }
    accept(m, from);
  }

  void on_message(const address& from, const plumtree_msg::ihave& m) {
    if (!contains(neighbours_, from)) return env_.count("ihave_not_neighbour");
    if (seen_.contains(m.id)) return;
    if (auto it = missing_.find(m.id); it != missing_.end()) {
      auto& known = it->second.announcers;
      if (std::any_of(known.begin(), known.end(), [&](const announcement& a) { return a.from == from; }))
        return env_.count("ihave_repeated");
      known.push_back({from, m.round});
      return;
    }
    if (missing_.size() >= cfg_.max_missing) return env_.count("missing_refused_full");
    auto& entry = missing_[m.id];
    entry.announcers.push_back({from, m.round});
    const message_id id = m.id;
    entry.timer = env_.arm(cfg_.ihave_timeout, [this, id] { missing_timeout(id); });
  }

  void on_message(const address& from, const plumtree_msg::graft& m) {
    if (from == env_.self()) return env_.count("bad_graft");
    if (!contains(neighbours_, from)) return env_.count("graft_not_neighbour");
    make_eager(from);
    if (m.id == 0) return env_.count("tree_links_grafted");
    auto it = payloads_.find(m.id);
    if (it == payloads_.end()) return env_.count("graft_unanswerable");
    env_.send(from, plumtree_msg::gossip{m.id, it->second.round, it->second.payload});
  }

  void on_message(const address& from, const plumtree_msg::prune&) { move(from, eager_, lazy_); }

 private:
  struct announcement {
    address from;
    std::uint32_t round;
  };
  struct missing {
    std::vector<announcement> announcers;
    timer_id timer{};
  };
  struct cached {
    bytes payload;
    std::uint32_t round;
    address from;  ///< the peer it first came from (this node for its own)
  };

  void accept(const plumtree_msg::gossip& m, const address& from) {
    seen_.insert(m.id);
    std::vector<announcement> earlier;  // announced before the payload came
    if (auto it = missing_.find(m.id); it != missing_.end()) {
      env_.cancel(it->second.timer);
      earlier = std::move(it->second.announcers);
      missing_.erase(it);
    }
    remember(m.id, m.payload, m.round, from);
    if (from == env_.self()) {
      deliver_own(env_, deliver_, m.id, m.payload);  // after broadcast() returns
    } else {
      env_.count("delivered");
      if (deliver_) deliver_({m.id, from, m.round, m.payload});
    }
    const plumtree_msg::gossip out{m.id, m.round + 1, m.payload};
    for (auto& p : std::vector<address>(eager_))
      if (p != from) env_.send(p, out);
    for (auto& p : std::vector<address>(lazy_))
      if (p != from) env_.send(p, plumtree_msg::ihave{m.id, m.round + 1});
    if (from == env_.self()) return;
    make_eager(from);                  // the tree link it came on...
    optimize(earlier, m.round, from);  // ...unless an announcer had it much closer to the source
  }

  /// The paper's optimisation: `from` delivered a payload `round` hops from
  /// its source, but one of `announcers` had it `threshold` or more hops
  /// earlier and said so first. Rewire: graft the closest such announcer
  /// (asking for nothing) and prune `from`. After forwarding: the announcer
  /// has this message, and a copy would make it prune the new link again.
  void optimize(const std::vector<announcement>& announcers, std::uint32_t round, const address& from) {
    if (cfg_.optimization_threshold == 0) return;
    const announcement* best = nullptr;
    for (auto& a : announcers)
      if (a.from != from && contains(neighbours_, a.from) && (!best || a.round < best->round)) best = &a;
    if (!best || best->round >= round || round - best->round < cfg_.optimization_threshold) return;
    env_.count("tree_optimized");
    make_eager(best->from);
    env_.send(best->from, plumtree_msg::graft{0, best->round});
    move(from, eager_, lazy_);
    env_.send(from, plumtree_msg::prune{});
  }

  void remember(message_id id, const bytes& payload, std::uint32_t round, const address& from) {
    // Still cached (delivered again after the seen cache, if smaller than the
    // payload cache, forgot it): keep the first copy and its one place in the
    // eviction order, or the order outgrows the cache for ever.
    if (payloads_.contains(id)) return;
    if (payloads_.size() >= cfg_.payload_capacity) {
      payloads_.erase(order_.front());
      order_.pop_front();
    }
    payloads_.emplace(id, cached{payload, round, from});
    order_.push_back(id);
  }

  void missing_timeout(message_id id) {
    auto it = missing_.find(id);
    if (it == missing_.end()) return;
    auto& m = it->second;
    if (m.announcers.empty()) {
      env_.count("graft_exhausted");
      missing_.erase(it);
      return;
    }
    const announcement a = m.announcers.front();
    m.announcers.erase(m.announcers.begin());
    m.timer = env_.arm(cfg_.graft_timeout, [this, id] { missing_timeout(id); });
    env_.count("grafts");
    make_eager(a.from);
    env_.send(a.from, plumtree_msg::graft{id, a.round});
  }

  static bool contains(const std::vector<address>& v, const address& a) {
    return std::find(v.begin(), v.end(), a) != v.end();
  }
  /// Moves `p` from one set to the other; true if it was in `from_set`.
  static bool move(const address& p, std::vector<address>& from_set, std::vector<address>& to_set) {
    if (std::erase(from_set, p) == 0) return false;
    if (!contains(to_set, p)) to_set.push_back(p);
    return true;
  }
  /// Only a current neighbour becomes a tree link: a stale graft from a peer
  /// the membership dropped must not bring it back.
  void make_eager(const address& p) {
    if (!contains(neighbours_, p)) return;
    std::erase(lazy_, p);
    if (!contains(eager_, p)) eager_.push_back(p);
  }
  void neighbour_up(const address& p) {
    if (!contains(neighbours_, p)) neighbours_.push_back(p);
    make_eager(p);
  }
  void neighbour_down(const address& p) {
    std::erase(neighbours_, p);
    std::erase(eager_, p);
    std::erase(lazy_, p);
    for (auto& [id, m] : missing_) std::erase_if(m.announcers, [&](const announcement& a) { return a.from == p; });
  }

  E env_;
  Membership& membership_;
  plumtree_config cfg_;
  detail::seen_cache seen_;
  std::unordered_map<message_id, cached> payloads_;
  std::deque<message_id> order_;
  std::unordered_map<message_id, missing> missing_;
  std::vector<address> neighbours_, eager_, lazy_;
  deliver_callback deliver_;
};

}  // namespace dcp::gossip
