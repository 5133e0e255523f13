#pragma once
// random_walk_traffic: the traffic model of the testbed thesis' chapter 5
// (background 004, §5.1). Each node launches `walkers` messages; a node
// that receives one forwards it to a neighbour chosen uniformly at random
// (P_ij = A_ij / K_i), and every node counts, per adjacent edge, the
// messages it sent and received on it. By the random-walk model (Noh and
// Rieger's random-walk centrality) the share of visits a node gets tends to
// K_i / 2E: traffic is proportional to degree, a ground truth one can compute.
//
// The thesis' walkers hop "indefinitely"; here a walker retires after
// `walker_ttl` hops, so that a simulation ends (a large TTL is the same
// model), and a node holds each walker `hop_delay` before forwarding it, the
// rate of the traffic.
//
// Faults. A lost message is a walker gone: the traffic declines, the
// proportions stay (every walker is equally likely to be lost anywhere). A
// duplicated message would become a second walker, and copies multiply by
// (1 + p) per hop: each visit is remembered by (walker id, hop number) in a
// bounded cache and a copy is dropped ("walker_duplicates"), so duplication
// changes nothing as long as the copy arrives before `seen_capacity` newer
// visits. A crashed node takes the walkers it holds with it, and walkers
// sent to it are lost; its neighbours keep sending walkers its way until
// the membership marks it down.
//
// Hostile input: walkers are taken only from peers the membership admits
// ("walker_not_member"); a walker's TTL is capped at this node's own
// ("ttl_capped"); at most `max_held` walkers wait here at once, more are
// dropped ("walker_overflow"); the per-edge table holds at most `max_edges`
// entries (a neighbour beyond counts in the total only: "edge_table_full").
#include <algorithm>
#include <cstdint>
#include <string_view>
#include <unordered_map>

#include "dcp/core/assert.hpp"
#include "dcp/core/detail/sha1.hpp"
#include "dcp/core/env.hpp"
#include "dcp/core/error.hpp"
#include "dcp/gossip/detail/seen_cache.hpp"
#include "dcp/membership/membership.hpp"
#include "dcp/wire/message.hpp"

namespace dcp::aggregate {

struct random_walk_traffic_config {
  std::uint32_t walkers = 1;         ///< walkers this node launches (the thesis: one)
  std::uint32_t walker_ttl = 1000;   ///< hops before a walker retires
  duration hop_delay = 100ms;        ///< how long a node holds a walker before forwarding it
  std::size_t max_held = 1024;       ///< walkers waiting here at once
  std::size_t max_edges = 4096;      ///< entries in the per-edge table
  std::size_t seen_capacity = 4096;  ///< visits remembered to drop duplicated walkers

  void validate() const {
    if (walker_ttl == 0) throw error(errc::invalid_config, "random_walk_traffic: walker_ttl must be >= 1");
    if (hop_delay < duration::zero()) throw error(errc::invalid_config, "random_walk_traffic: hop_delay must be >= 0");
    if (max_held == 0 || max_edges == 0 || seen_capacity == 0)
      throw error(errc::invalid_config, "random_walk_traffic: max_held, max_edges and seen_capacity must be >= 1");
  }
};

namespace random_walk_msg {
struct walker {
  static constexpr message_type wire_id = 1;
  static constexpr std::string_view wire_name = "walker";
  std::uint64_t id = 0;    ///< chosen at random by the node that launched it
  std::uint32_t hops = 0;  ///< hops taken so far
  std::uint32_t ttl = 0;   ///< hops left
  template <class A> void serialize(A& ar) { ar(id, hops, ttl); }
};
}  // namespace random_walk_msg

/// Messages sent and received over one adjacent edge.
struct edge_traffic {
  std::uint64_t sent = 0, received = 0;
  std::uint64_t total() const noexcept { return sent + received; }
};

template <Env E, class Membership> class random_walk_traffic {
  static_assert(membership::Membership<Membership>,
                "dcp: random_walk_traffic<Env, M> needs M to model dcp::membership::Membership");

 public:
  using messages = wire::message_set<random_walk_msg::walker>;
  /// What it counts (env.count), declared: dcp/core/counter_set.hpp.
  static constexpr dcp::counter_set counters{{"walker_not_member", "ttl_capped", "walker_duplicates", "walker_retired",
                                              "walker_overflow", "walker_stuck", "edge_table_full"}};
  static constexpr std::string_view name = "random_walk_traffic";
  static constexpr protocol_id default_id = 34;  // 33: by convention high_risk_edges' second push_sum (docs)

  random_walk_traffic(E env, Membership& m, random_walk_traffic_config cfg = {})
      : env_(std::move(env)), membership_(m), cfg_(cfg), seen_(cfg.seen_capacity) {
    cfg_.validate();
  }

  /// Launches this node's walkers, each after one hop_delay.
  void start() {
    for (std::uint32_t i = 0; i < cfg_.walkers; ++i) hold(random_walk_msg::walker{env_.rng()(), 0, cfg_.walker_ttl});
  }
  /// Stops forwarding: the walkers held here and those that arrive retire.
  void stop() { stopped_ = true; }

  /// Messages sent plus received on every adjacent edge: x_i of the thesis.
  std::uint64_t total() const noexcept { return sent_ + received_; }
  std::uint64_t sent() const noexcept { return sent_; }
  std::uint64_t received() const noexcept { return received_; }
  /// The counts on the edge to `peer` (zero if none passed).
  edge_traffic edge(const address& peer) const {
    auto it = edges_.find(peer);
    return it == edges_.end() ? edge_traffic{} : it->second;
  }
  const std::unordered_map<address, edge_traffic>& edges() const noexcept { return edges_; }
  std::size_t held() const noexcept { return held_; }

  /// Asserts (DCP_ASSERT) what must hold between events. A no-op when assertions are off.
  void check_invariants() const {
    DCP_ASSERT(held_ <= cfg_.max_held && edges_.size() <= cfg_.max_edges,
               "the walker queue and edge table are bounded");
    std::uint64_t s = 0, r = 0;
    for (auto& [peer, e] : edges_) s += e.sent, r += e.received;
    DCP_ASSERT(s <= sent_ && r <= received_, "every per-edge count is in the node's totals");
  }

  void on_message(const address& from, random_walk_msg::walker m) {
    if (!membership::admits(membership_, from)) return env_.count("walker_not_member");
    if (m.ttl > cfg_.walker_ttl) {
      m.ttl = cfg_.walker_ttl;
      env_.count("ttl_capped");
    }
    // Each visit of a walker has its own (id, hops): a copy of this visit
    // must not become a second walker.
    if (!seen_.insert(dcp::detail::mix64(m.id ^ dcp::detail::mix64(m.hops)))) return env_.count("walker_duplicates");
    ++received_;
    if (auto* e = entry(from)) ++e->received;
    if (m.ttl == 0 || stopped_) return env_.count("walker_retired");
    hold(m);
  }

 private:
  void hold(random_walk_msg::walker m) {
    if (held_ >= cfg_.max_held) return env_.count("walker_overflow");
    ++held_;
    env_.arm(cfg_.hop_delay, [this, m] {
      --held_;
      forward(m);
    });
  }

  void forward(random_walk_msg::walker m) {
    if (stopped_) return env_.count("walker_retired");
    auto next = membership_.sample(1);  // uniform over the adjacent edges: P_ij = A_ij / K_i
    if (next.empty()) return env_.count("walker_stuck");
    ++sent_;
    if (auto* e = entry(next.front())) ++e->sent;
    env_.send(next.front(), random_walk_msg::walker{m.id, m.hops + 1, m.ttl - 1});
  }

  edge_traffic* entry(const address& peer) {
    auto it = edges_.find(peer);
    if (it != edges_.end()) return &it->second;
    if (edges_.size() >= cfg_.max_edges) {
      env_.count("edge_table_full");
      return nullptr;
    }
    return &edges_[peer];
  }

  E env_;
  Membership& membership_;
  random_walk_traffic_config cfg_;
  gossip::detail::seen_cache seen_;
  std::unordered_map<address, edge_traffic> edges_;
  std::uint64_t sent_ = 0, received_ = 0;
  std::size_t held_ = 0;
  bool stopped_ = false;
};

}  // namespace dcp::aggregate
