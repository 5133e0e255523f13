#pragma once
// CAN, the Content-Addressable Network (Ratnasamy, Francis, Handley, Karp,
// Shenker, SIGCOMM 2001).
//
// The key space is a d-dimensional torus [0,1)^d (d = 2 by default, up to 8),
// here on a grid of 2^32 cells per dimension. A key (a node_id) is hashed to a
// point; each node owns a zone, a hyper-rectangle, and answers for the keys
// whose points fall in it. Zones are dyadic boxes: every one is the result of
// halving the whole space, so two zones either nest or are disjoint, and a
// zone's volume is 2^-(the number of halvings).
//
//   - Routing (§2.1) is greedy and recursive: a node forwards a message to the
//     neighbour whose zone is closest to the destination point (torus
//     distance, point to zone), so a route takes (d/4)·n^(1/d) hops on average
//     with equal zones. Each hop is acknowledged; a silent hop is sent once
//     more and then routed around to the next-best neighbour that still makes
//     progress (§2.1's "routing around failures"). When none does, the message
//     is dropped and the origin asks again (lookups retry every
//     lookup_timeout / 4 until lookup_timeout).
//   - Neighbours (§2.1) are zones that abut along one dimension and overlap
//     along the other d-1. Each node sends every neighbour its zones and its
//     neighbour list every update_interval (§2.3's soft state). A node enters
//     a neighbour table only by its own update: nodes named in others' lists are
//     asked for theirs (an update that wants a reply, again for a few rounds) and
//     enter on answering. Updates carry a version (the sender's zone changes), so a
//     reordered older one is ignored. Not in the paper: two splits side by side at
//     once can leave two abutting nodes with no neighbour in common to introduce
//     them, so each round a node checks that its neighbours' zones cover every face
//     of its own and sends a find across a hole to its nearest neighbours, on
//     greedily from each; the owner of the point there introduces itself.
//   - Join (§2.2): a new node picks a random point P (its id's point), routes a
//     JOIN to P through any member, and P's owner splits its zone in half along
//     the next dimension in order (the longest side, the lowest dimension among
//     equals, which is the paper's cyclic order for zones made by splits) and
//     offers the half that holds P, with its neighbour list. An owner holding
//     more than one zone (after a takeover) hands over the whole zone holding
//     P instead: the paper's background reassignment in its cheapest form. The
//     owner commits the split at once, keeps the newcomer as a neighbour,
//     re-sends the offer until confirmed, and tells its neighbours; the
//     newcomer probes the neighbours it was given. A newcomer that crashes
//     before it confirms is taken over like any failed node; one that joined
//     elsewhere declines, and the zone goes back. Keys move with the zone when
//     dht::store runs over CAN: its re-replication offers each item to the
//     nodes now closest to its point.
//   - Departure (§2.3): a leaving node hands its zones to a neighbour whose
//     zone merges with one of them into a valid (dyadic) box, else to the
//     neighbour with the smallest volume, which then holds several zones; it
//     waits for the acknowledgement, then tells its neighbours.
//   - Failure (§2.3): a neighbour silent for failure_threshold update
//     intervals (plus rpc_timeout) is suspected. Each neighbour of the failed
//     node F starts a takeover timer proportional to its own zone volume
//     (relative to F's, with a little jitter); the first to fire sends
//     TAKEOVER, naming its volume, to F's neighbours (from F's last update,
//     and its own neighbours that abut F's zones) and to F itself. A node
//     answers accept, or refuses: when its own claim is better (smaller
//     volume, then lower address: it claims at once, the paper's "replies with
//     its own TAKEOVER"), when it holds part of F's zone, or when F is alive
//     (F answers itself, or the node heard F within the failure timeout). The
//     claimant takes F's zones once every asked node accepted or stayed silent
//     for takeover_attempts rounds, so the takeover is decided among F's live
//     neighbours, not by timers alone. Nodes that accepted a claim refuse worse
//     ones for a while.
//
// Fault model: message loss, duplication and reordering (every request is
// matched by nonce, resent, and idempotent); crashes of nodes whose
// neighbours survive them, one or many at once; joins and leaves at any time.
//
// Not handled (counted, and logged at error where state may be wrong):
//   - Simultaneous failure of adjacent nodes works when each failed zone keeps
//     one live neighbour; a zone all of whose neighbours fail together has no
//     one to notice, and stays unowned (lookups into it fail with
//     lookup_failed). The paper's background zone-reassignment algorithm (its
//     appendix), which also defragments, is not built: a node may hold up to
//     max_zones zones; beyond that it does not claim ("takeover_zones_full").
//   - Two claimants that never hear each other (every message between them
//     lost for takeover_attempts rounds, or neither in the other's view of F's
//     neighbours) both take F's zone: an overlap, detected from updates and
//     counted ("zone_overlaps"), not repaired. A node whose zone was taken
//     over while it was alive (all its answers lost) is told so by its
//     neighbours ("evicted") and joins again.
//   - A partition longer than the failure timeout makes each side take over
//     the other's zones; after the partition heals the overlaps are counted
//     and the nodes taken over are evicted and rejoin, but the zones taken
//     over meanwhile stay with their takers.
//   - Realities (replication by several coordinate spaces), several hash
//     functions, RTT-weighted routing, overloaded zones, topologically-
//     sensitive construction and uniform partitioning (§3 of the paper) are not
//     built.
//
// Hostile input: a sender contact must carry the transport's address
// ("spoofed_sender"); zones must be dyadic boxes of this dimension
// ("bad_zone"); lists are bounded (max_zones, max_neighbours: "bad_message");
// a TAKEOVER about a node we do not know, or that we heard from lately, is
// refused and changes nothing ("takeover_unknown", "takeover_refused_alive");
// a handover from a non-neighbour is refused ("bad_handover"); an update whose
// zones overlap ours is not adopted ("zone_overlaps"); a lookup reply that
// does not name its sender among the owners is refused ("spoofed_reply").
// Over dcp::net ids are bound to addresses (can_config::bind_ids, BEP 42), and
// a joiner's point derives from its bound id (join_key()): a node cannot
// choose the zone it splits; in the simulator the id a node names (its join
// point) is its own word unless a test asks for binding.
//
// Router: dht::can models dht::Router (router.hpp). Its distance(key, id) is
// the torus distance between the key's point and the node's join point, which
// lies in the zone the node was given when it joined; the owner of a key is
// the zone holder, which lookup() finds and owns() tells, and which need not
// be the node at the smallest distance(key, id) once zones have been taken
// over or handed on. closest(key, n) and lookup(key, n) return the owner,
// then its neighbours by zone distance to the key's point: the nodes that
// take the zone over if the owner fails, so a store's replicas follow it.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <optional>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "dcp/core/detail/sha1.hpp"
#include "dcp/core/env.hpp"
#include "dcp/core/error.hpp"
#include "dcp/core/log.hpp"
#include "dcp/core/node_id.hpp"
#include "dcp/core/protocol.hpp"
#include "dcp/dht/contact.hpp"
#include "dcp/dht/detail/failed_peers.hpp"
#include "dcp/dht/detail/hop_forwarder.hpp"
#include "dcp/dht/detail/join_attempts.hpp"
#include "dcp/dht/detail/payload_delivery.hpp"
#include "dcp/dht/detail/random_phase.hpp"
#include "dcp/dht/detail/route_messages.hpp"
#include "dcp/dht/detail/routed_lookups.hpp"
#include "dcp/dht/detail/unguessable_nonce.hpp"
#include "dcp/dht/error.hpp"
#include "dcp/dht/id_binding.hpp"
#include "dcp/dht/router.hpp"
#include "dcp/wire/message.hpp"

namespace dcp::dht {

inline constexpr unsigned can_max_dimensions = 8;
/// A point of the torus: one 32-bit coordinate per dimension (unused dimensions are 0).
using can_point = std::array<std::uint32_t, can_max_dimensions>;

/// A zone: a dyadic box, [lo_i, lo_i + 2^(32 - depth_i)) in each dimension i, on a
/// torus of 2^32 cells per dimension. Unused dimensions have lo 0 and depth 0 (the
/// whole axis), so every relation below can run over all 8 dimensions.
struct can_zone {
  static constexpr std::uint64_t space = std::uint64_t{1} << 32;
  std::array<std::uint32_t, can_max_dimensions> lo{};
  std::array<std::uint8_t, can_max_dimensions> depth{};

  std::uint64_t width(unsigned i) const noexcept { return space >> depth[i]; }
  /// The number of halvings that made the zone: its volume is 2^-total_depth().
  unsigned total_depth() const noexcept {
    unsigned s = 0;
    for (auto x : depth) s += x;
    return s;
  }
  double volume() const noexcept { return std::ldexp(1.0, -static_cast<int>(total_depth())); }

  /// A dyadic box of `dimensions` dimensions: what every zone from the network must be.
  bool valid(unsigned dimensions) const noexcept {
    for (unsigned i = 0; i < can_max_dimensions; ++i) {
      if (i >= dimensions) {
        if (lo[i] != 0 || depth[i] != 0) return false;
        continue;
      }
      if (depth[i] > 32) return false;
      if (std::uint64_t{lo[i]} % width(i) != 0) return false;
    }
    return true;
  }
  bool contains(const can_point& p) const noexcept {
    for (unsigned i = 0; i < can_max_dimensions; ++i)
      if (std::uint64_t{static_cast<std::uint32_t>(p[i] - lo[i])} >= width(i)) return false;
    return true;
  }
  static bool overlap_1d(const can_zone& a, const can_zone& b, unsigned i) noexcept {
    const std::uint64_t al = a.lo[i], bl = b.lo[i];
    return al < bl + b.width(i) && bl < al + a.width(i);
  }
  static bool abut_1d(const can_zone& a, const can_zone& b, unsigned i) noexcept {
    return (a.lo[i] + a.width(i)) % space == b.lo[i] || (b.lo[i] + b.width(i)) % space == a.lo[i];
  }
  bool overlaps(const can_zone& o) const noexcept {
    for (unsigned i = 0; i < can_max_dimensions; ++i)
      if (!overlap_1d(*this, o, i)) return false;
    return true;
  }
  /// CAN's neighbour relation: the spans overlap along d-1 dimensions and abut along one.
  bool abuts(const can_zone& o) const noexcept {
    unsigned apart = 0;
    for (unsigned i = 0; i < can_max_dimensions; ++i) {
      if (overlap_1d(*this, o, i)) continue;
      if (!abut_1d(*this, o, i) || ++apart > 1) return false;
    }
    return apart == 1;
  }
  /// The dimension the next split halves: the longest side, the lowest among equals
  /// (for zones made by splits, the paper's cyclic order). `dimensions` when no side
  /// can be halved any more.
  unsigned split_dimension(unsigned dimensions) const noexcept {
    unsigned best = dimensions;
    for (unsigned i = 0; i < dimensions; ++i)
      if (depth[i] < 32 && (best == dimensions || depth[i] < depth[best])) best = i;
    return best;
  }
  std::pair<can_zone, can_zone> halves(unsigned i) const noexcept {
    can_zone a = *this, b = *this;
    ++a.depth[i];
    ++b.depth[i];
    b.lo[i] = static_cast<std::uint32_t>(lo[i] + a.width(i));
    return {a, b};
  }
  /// The box a ∪ b when it is one dyadic box (the two halves of one zone), else nullopt.
  static std::optional<can_zone> merge(const can_zone& a, const can_zone& b) noexcept {
    unsigned differ = can_max_dimensions;
    for (unsigned i = 0; i < can_max_dimensions; ++i) {
      if (a.lo[i] == b.lo[i] && a.depth[i] == b.depth[i]) continue;
      if (differ != can_max_dimensions) return std::nullopt;
      differ = i;
    }
    if (differ == can_max_dimensions) return std::nullopt;  // the same zone
    const unsigned i = differ;
    if (a.depth[i] != b.depth[i] || a.depth[i] == 0) return std::nullopt;
    const std::uint64_t w = a.width(i);
    const std::uint64_t low = std::min(a.lo[i], b.lo[i]), high = std::max(a.lo[i], b.lo[i]);
    if (high - low != w || low % (2 * w) != 0) return std::nullopt;
    can_zone m = a;
    m.lo[i] = static_cast<std::uint32_t>(low);
    --m.depth[i];
    return m;
  }
  /// Squared torus distance from p to the nearest cell of the zone (0 inside).
  __uint128_t distance2(const can_point& p) const noexcept {
    __uint128_t s = 0;
    for (unsigned i = 0; i < can_max_dimensions; ++i) {
      const std::uint64_t off = static_cast<std::uint32_t>(p[i] - lo[i]);  // forward from lo to p
      const std::uint64_t w = width(i);
      if (off < w) continue;
      const std::uint64_t delta = std::min(off - (w - 1), space - off);
      s += static_cast<__uint128_t>(delta) * delta;
    }
    return s;
  }

  bool operator==(const can_zone&) const noexcept = default;
  template <class A> void serialize(A& ar) { ar(lo, depth); }
};

struct can_config {
  /// d, the dimensions of the coordinate space (1..8).
  unsigned dimensions = 2;
  /// How often a node sends its zones and neighbour list to its neighbours (§2.3).
  duration update_interval = 1s;
  /// Update intervals without word from a neighbour before it is suspected failed.
  unsigned failure_threshold = 3;
  /// A hop, an offer, a handover or a TAKEOVER not answered within this is sent again.
  duration rpc_timeout = 500ms;
  /// The takeover timer: takeover_delay × (own volume / failed node's volume, clamped
  /// to [1/16, 8]), plus up to an eighth of it at random.
  duration takeover_delay = 1s;
  /// Rounds of TAKEOVER (and of handover and offer resends) before silence counts as
  /// death (or as an answer lost for good).
  unsigned takeover_attempts = 3;
  /// A lookup not answered within this fails with errc::lookup_failed.
  duration lookup_timeout = 5s;
  /// Hops after which a routed message is dropped (a loop from inconsistent state).
  unsigned max_hops = 4096;
  /// Neighbour table bound, and the longest list accepted from the network.
  std::size_t max_neighbours = 256;
  /// Zones one node may hold (after takeovers and handovers).
  std::size_t max_zones = 16;
  /// Joins one owner has offered and not yet seen confirmed.
  std::size_t max_pending_joins = 16;
  /// How long a departed or taken-over node is not adopted back from stale updates.
  duration failed_memory = 60s;
  duration bootstrap_retry = 500ms;
  duration bootstrap_retry_max = 30s;
  /// This node's id; its point is where it joins. Random (from the Env's rng) when unset,
  /// bound to the node's address when ids are (then a given id must derive from it).
  std::optional<node_id> id;
  /// Whether ids, and so join points, must derive from addresses (BEP 42; see
  /// dcp/dht/id_binding.hpp): automatic is on over dcp::net, off in the simulator.
  /// Bound, a node joins at the point of join_key(id), whose coordinates' top bits
  /// are the id's bound bits interleaved: its address decides the cell of 2^-21
  /// of the space it lands in (up to 5 dimensions; see join_key()). A JOIN for any other point, or from a node whose id does
  /// not derive from its address, is refused ("unbound_join_point", "unbound_id"),
  /// and such a node enters no neighbour table.
  id_binding bind_ids = id_binding::automatic;

  duration failure_timeout() const noexcept { return failure_threshold * update_interval + rpc_timeout; }

  void validate() const {
    if (dimensions < 1 || dimensions > can_max_dimensions)
      throw error(dcp::errc::invalid_config, "can: dimensions must be in 1..8");
    if (update_interval <= duration::zero() || rpc_timeout <= duration::zero() || takeover_delay <= duration::zero() ||
        lookup_timeout <= rpc_timeout)
      throw error(dcp::errc::invalid_config,
                  "can: need update_interval, rpc_timeout, takeover_delay > 0 and lookup_timeout > rpc_timeout");
    if (failure_threshold < 1 || takeover_attempts < 1 || max_hops < 1 || max_hops > 0xFFFF)
      throw error(dcp::errc::invalid_config,
                  "can: failure_threshold, takeover_attempts >= 1 and 1 <= max_hops <= 65535");
    if (max_neighbours < 2 || max_neighbours > 65535 || max_zones < 1 || max_zones > 1024 || max_pending_joins < 1)
      throw error(dcp::errc::invalid_config,
                  "can: need 2 <= max_neighbours <= 65535, 1 <= max_zones <= 1024, max_pending_joins >= 1");
    if (failed_memory <= duration::zero()) throw error(dcp::errc::invalid_config, "can: failed_memory must be > 0");
    if (bootstrap_retry <= duration::zero() || bootstrap_retry_max < bootstrap_retry)
      throw error(dcp::errc::invalid_config, "can: need 0 < bootstrap_retry <= bootstrap_retry_max");
  }
};

namespace can_msg {
// (lookup, join, app: detail::route_kind's codes)
enum class kind : std::uint8_t { lookup = 0, join = 1, app = 2, find = 3 };
/// A node and its zones, as neighbour lists carry them.
struct holder {
  contact who;
  std::vector<can_zone> zones;
  template <class A> void serialize(A& ar) { ar(who, zones); }
};
struct route {  // greedy, hop by hop, toward the key's point
  static constexpr message_type wire_id = 1;
  static constexpr std::string_view wire_name = "route";
  std::uint64_t hop = 0;    // this hop's id, acknowledged by route_ack
  std::uint64_t nonce = 0;  // the origin's request id
  std::uint8_t what = 0;    // kind
  node_id key;
  contact origin, sender;
  std::uint16_t hops = 0;
  std::uint16_t n = 1;
  can_point point{};  // kind find: the point itself (other kinds route to the key's point)
  bytes payload;
  template <class A> void serialize(A& ar) { ar(hop, nonce, what, key, origin, sender, hops, n, point, payload); }
};
using route_ack = detail::route_ack;        // wire id 2
using lookup_reply = detail::lookup_reply;  // wire id 3
struct join_offer {  // the owner of the newcomer's point: "this zone is yours; here are its neighbours"
  static constexpr message_type wire_id = 4;
  static constexpr std::string_view wire_name = "join_offer";
  std::uint64_t nonce = 0;
  contact sender;
  can_zone given;
  std::vector<can_zone> zones;     // the owner's own, after the split
  std::vector<holder> neighbours;  // the owner's neighbours that abut the given zone
  template <class A> void serialize(A& ar) { ar(nonce, sender, given, zones, neighbours); }
};
struct join_confirm {  // taken, or declined (the newcomer joined through another offer)
  static constexpr message_type wire_id = 5;
  static constexpr std::string_view wire_name = "join_confirm";
  std::uint64_t nonce = 0;
  bool accepted = false;
  template <class A> void serialize(A& ar) { ar(nonce, accepted); }
};
struct update {  // §2.3's periodic soft state: my zones and my neighbours
  static constexpr message_type wire_id = 6;
  static constexpr std::string_view wire_name = "update";
  contact sender;
  std::uint64_t version = 0;  // the sender's zones change count: an older update, reordered, is ignored
  std::vector<can_zone> zones;
  std::vector<holder> neighbours;
  bool want_reply = false;
  template <class A> void serialize(A& ar) { ar(sender, version, zones, neighbours, want_reply); }
};
struct takeover {  // "failed looks dead; I claim its zones with this volume"
  static constexpr message_type wire_id = 7;
  static constexpr std::string_view wire_name = "takeover";
  std::uint64_t nonce = 0;
  contact sender, failed;
  std::vector<can_zone> failed_zones;
  double volume = 0;
  template <class A> void serialize(A& ar) { ar(nonce, sender, failed, failed_zones, volume); }
};
enum class verdict : std::uint8_t { accept = 0, better_claim = 1, held = 2, alive = 3 };
struct takeover_reply {
  static constexpr message_type wire_id = 8;
  static constexpr std::string_view wire_name = "takeover_reply";
  std::uint64_t nonce = 0;
  contact sender, failed;
  std::uint8_t answer = 0;  // verdict
  std::uint64_t version = 0;
  std::vector<can_zone> zones;  // the sender's
  template <class A> void serialize(A& ar) { ar(nonce, sender, failed, answer, version, zones); }
};
struct handover {  // a leaving node's zones, to one neighbour
  static constexpr message_type wire_id = 9;
  static constexpr std::string_view wire_name = "handover";
  std::uint64_t nonce = 0;
  contact sender;
  std::vector<can_zone> zones;
  std::vector<holder> neighbours;
  template <class A> void serialize(A& ar) { ar(nonce, sender, zones, neighbours); }
};
struct handover_ack {
  static constexpr message_type wire_id = 10;
  static constexpr std::string_view wire_name = "handover_ack";
  std::uint64_t nonce = 0;
  bool accepted = false;
  template <class A> void serialize(A& ar) { ar(nonce, accepted); }
};
struct leaving {  // "I am gone; heir holds my zones now"
  static constexpr message_type wire_id = 11;
  static constexpr std::string_view wire_name = "leaving";
  contact sender, heir;
  template <class A> void serialize(A& ar) { ar(sender, heir); }
};
struct evicted {  // "your zones were taken over: join again"
  static constexpr message_type wire_id = 12;
  static constexpr std::string_view wire_name = "evicted";
  contact sender;
  template <class A> void serialize(A& ar) { ar(sender); }
};
}  // namespace can_msg

template <Env E> class can {
 public:
  using messages = wire::message_set<can_msg::route, can_msg::route_ack, can_msg::lookup_reply, can_msg::join_offer,
                                     can_msg::join_confirm, can_msg::update, can_msg::takeover, can_msg::takeover_reply,
                                     can_msg::handover, can_msg::handover_ack, can_msg::leaving, can_msg::evicted>;
  /// What it counts (env.count), declared: dcp/core/counter_set.hpp.
  static constexpr auto counters =
      dcp::join(detail::failed_peers_counters, detail::payload_delivery_counters, detail::routed_lookups_counters,
                detail::hop_forwarder_counters, detail::join_attempts_counters,
                dcp::counter_set{{"route_failed",
                                  "spoofed_sender",
                                  "bad_message",
                                  "stale_reply",
                                  "spoofed_reply",
                                  "join_offer_declined",
                                  "joined",
                                  "join_declined",
                                  "stale_update",
                                  "zone_overlaps",
                                  "takeover_refused_alive",
                                  "takeover_unknown",
                                  "takeover_cancelled",
                                  "takeover_aborted_alive",
                                  "takeover_lost",
                                  "bad_handover",
                                  "handovers_taken",
                                  "left",
                                  "stale_leaving",
                                  "bad_evicted",
                                  "evicted",
                                  "evicted_without_seeds",
                                  "unbound_id",
                                  "neighbours_full",
                                  "neighbour_superseded",
                                  "neighbour_moved_away",
                                  "neighbour_finds",
                                  "probe_budget_exhausted",
                                  "probe_unanswered",
                                  "unbound_join_point",
                                  "join_duplicate",
                                  "joins_busy",
                                  "zone_too_small",
                                  "zone_splits",
                                  "join_offer_unconfirmed",
                                  "suspected",
                                  "takeover_zones_full",
                                  "takeover_claims",
                                  "takeover_overlap",
                                  "takeovers",
                                  "leave_unacknowledged",
                                  "hop_limit",
                                  "no_route",
                                  "delivered",
                                  "lookup_failed",
                                  "lookup_retries"}});
  static constexpr std::string_view name = "can";
  static constexpr protocol_id default_id = 84;

  can(E env, can_config cfg = {})
      : env_(std::move(env)),
        cfg_(std::move(cfg)),
        lookups_(
            env_, self_, cfg_.lookup_timeout, "lookup_retries", cfg_.max_neighbours + 1,
            [this] { return fresh_nonce(); }, [this](can_msg::route m) { handle_route(std::move(m)); }),
        hops_(env_, self_, cfg_.rpc_timeout, 64 * cfg_.max_neighbours, [this] { return fresh_nonce(); }),
        join_(
            env_, cfg_.lookup_timeout, cfg_.bootstrap_retry, cfg_.bootstrap_retry_max, [this] { return joined_; },
            [this](const contact& seed) { send_join(seed); }),
        failed_(env_, cfg_.failed_memory),
        delivery_(env_) {
    cfg_.validate();
    bound_ = dht::binds_ids(cfg_.bind_ids, env_.self());
    self_ = {own_id("can", bound_, cfg_.id, env_.self(), env_.rng()), env_.self()};
    hops_.on_timeout([this](hop p) { hop_timed_out(std::move(p)); });
  }
  can(const can&) = delete;
  can& operator=(const can&) = delete;
  ~can() { stop(); }

  // ---- the point of a key ----

  /// The key's point in a d-dimensional space: coordinate i is the key's 32-bit word i
  /// (SHA-1 ids are uniform), mixed further for i >= 5, where the 160 bits run out.
  static can_point point_of(const node_id& key, unsigned dimensions) noexcept {
    can_point p{};
    const auto& b = key.bytes();
    for (unsigned i = 0; i < dimensions && i < can_max_dimensions; ++i) {
      if (i < 5) {
        p[i] = std::uint32_t{b[4 * i]} << 24 | std::uint32_t{b[4 * i + 1]} << 16 | std::uint32_t{b[4 * i + 2]} << 8 |
            b[4 * i + 3];
      } else {
        p[i] = static_cast<std::uint32_t>(dcp::detail::mix64(key.top64() ^ (0x9E3779B97F4A7C15ull * i)) >> 32);
      }
    }
    return p;
  }
  can_point point_of(const node_id& key) const noexcept { return point_of(key, cfg_.dimensions); }

  /// The key a node of id `id` joins at: the id itself when ids are free; when they are
  /// bound, the id's bits interleaved over the d coordinates (bit j of the id becomes bit
  /// j / d of coordinate j % d), so that the 21 bits BEP 42 binds are the top bits of every
  /// coordinate. Read as words, as point_of() does, the bound bits would fix only the top
  /// of the first coordinate and leave the others, hence the point, to the node's choice.
  static node_id join_key(const node_id& id, unsigned dimensions, bool bound) noexcept {
    if (!bound) return id;
    // point_of() reads words 0..4 and mixes coordinates 5..7 from the first 64 bits, which
    // hold free bits too: beyond 5 dimensions those coordinates are not bound
    const unsigned d = std::min(dimensions, 5u);
    node_id::value_type out{};
    const auto& in = id.bytes();
    auto bit = [&](std::size_t j) { return in[j / 8] >> (7 - j % 8) & 1; };
    std::size_t j = 0;
    for (std::size_t k = 0; k < 32; ++k)
      for (unsigned c = 0; c < d; ++c, ++j) {
        const std::size_t to = 32 * c + k;  // bit k (from the top) of coordinate c
        if (bit(j)) out[to / 8] = static_cast<std::uint8_t>(out[to / 8] | 0x80u >> (to % 8));
      }
    for (; j < node_id::bits; ++j)  // (fewer than 5 dimensions) the rest, in order, after them
      if (bit(j)) out[j / 8] = static_cast<std::uint8_t>(out[j / 8] | 0x80u >> (j % 8));
    return node_id(out);
  }
  /// The key this node joins at (join_key of its id).
  node_id join_key() const noexcept { return join_key(self_.id, cfg_.dimensions, bound_); }

  // ---- Router ----

  const contact& self() const noexcept { return self_; }
  bool joined() const noexcept { return joined_; }
  /// Whether this node holds others' ids and join points to their addresses (BEP 42).
  bool binds_ids() const noexcept { return bound_; }

  /// Joins through any of `seeds` (retrying with backoff while none answers), or
  /// founds the space alone, owning all of it, when `seeds` is empty.
  void bootstrap(const std::vector<contact>& seeds) {
    if (!join_.set_seeds(seeds, self_.addr)) {
      zones_ = {can_zone{}};
      ++version_;
      return become_joined();
    }
    join_.start();
  }

  void lookup(const node_id& key, std::size_t n, lookup_callback cb) {
    lookups_.lookup(joined_, key, n, std::move(cb));
  }
  void route(const node_id& key, bytes payload) { lookups_.route(joined_, key, std::move(payload)); }

  /// This node and its neighbours, nearest zone to the key's point first (the owner,
  /// when it is among them, at distance 0).
  std::vector<contact> closest(const node_id& key, std::size_t n) const {
    const can_point p = point_of(key);
    std::vector<std::pair<__uint128_t, contact>> all;
    all.emplace_back(zones_.empty() ? max_distance() : zones_distance(zones_, p), self_);
    for (auto& [a, nb] : neighbours_) all.emplace_back(zones_distance(nb.zones, p), nb.who);
    std::sort(all.begin(), all.end(), [](const auto& x, const auto& y) {
      return x.first != y.first ? x.first < y.first : x.second.addr < y.second.addr;
    });
    std::vector<contact> out;
    for (auto& [d, c] : all) {
      if (out.size() >= n) break;
      out.push_back(c);
    }
    return out;
  }

  void on_deliver(deliver_callback f) { delivery_.on_deliver(std::move(f)); }

  /// Torus distance between the points of `key` and of `id` (squared, in the low 128
  /// bits), in 2 dimensions: the static metric the Router concept asks for. A node's id
  /// is its join point, inside the zone it was given; the owner of a key is the zone
  /// holder (owns(), lookup()), which after takeovers need not be the nearest id.
  static node_id distance(const node_id& key, const node_id& id) noexcept {
    const can_point a = point_of(key, 2), b = point_of(id, 2);
    __uint128_t s = 0;
    for (unsigned i = 0; i < 2; ++i) {
      const std::uint32_t f = a[i] - b[i], r = b[i] - a[i];
      const std::uint64_t delta = std::min(f, r);
      s += static_cast<__uint128_t>(delta) * delta;
    }
    node_id::value_type v{};
    for (int i = 0; i < 16; ++i) v[19 - i] = static_cast<std::uint8_t>(s >> (8 * i));
    return node_id(v);
  }

  /// Leaves: hands every zone to one neighbour (one it merges with, else the smallest),
  /// waits for its acknowledgement, then tells the neighbours. Lookups in flight fail
  /// with not_joined; routing stops at once.
  void leave() {
    if (!joined_) return;
    joined_ = false;
    leaving_ = true;  // updates go on until the heir has the zones: no one suspects us meanwhile
    lookups_.fail_all(make_error_code(errc::not_joined));
    heirs_ = heir_order();
    next_heir();
  }

  // ---- inspection ----

  const can_config& config() const noexcept { return cfg_; }
  const std::vector<can_zone>& zones() const noexcept { return zones_; }
  /// The volume this node owns (a fraction of the space).
  double volume() const noexcept {
    double v = 0;
    for (auto& z : zones_) v += z.volume();
    return v;
  }
  bool owns(const node_id& key) const noexcept { return owns_point(point_of(key)); }
  bool owns_point(const can_point& p) const noexcept {
    return std::any_of(zones_.begin(), zones_.end(), [&](const can_zone& z) { return z.contains(p); });
  }
  std::vector<contact> neighbours() const {
    std::vector<contact> out;
    for (auto& [a, nb] : neighbours_) out.push_back(nb.who);
    std::sort(out.begin(), out.end());
    return out;
  }
  /// A neighbour's zones as this node last heard them; empty if not a neighbour.
  std::vector<can_zone> neighbour_zones(const address& a) const {
    auto it = neighbours_.find(a);
    return it == neighbours_.end() ? std::vector<can_zone>{} : it->second.zones;
  }
  std::size_t takeovers_in_progress() const noexcept { return takeovers_.size(); }
  std::size_t pending_joins() const noexcept { return offers_.size(); }
  bool leaving_in_progress() const noexcept { return leaving_; }

  // ---- messages ----

  void on_message(const address& from, const can_msg::route& m) {
    if (m.sender.addr != from) return env_.count("spoofed_sender");
    if (!joined_) return;  // not part of the overlay: no ack, so the sender routes around us
    env_.send(from, can_msg::route_ack{m.hop});
    if (m.what > static_cast<std::uint8_t>(can_msg::kind::find) || m.n == 0 || m.n > cfg_.max_neighbours + 1 ||
        m.origin.addr.empty() ||
        std::any_of(m.point.begin() + cfg_.dimensions, m.point.end(), [](auto x) { return x != 0; }))
      return env_.count("bad_message");
    can_msg::route next = m;
    ++next.hops;
    handle_route(std::move(next));
  }
  void on_message(const address& from, const can_msg::route_ack& m) { hops_.acknowledge(from, m.hop); }
  void on_message(const address& from, const can_msg::lookup_reply& m) {
    if (!lookups_.contains(m.nonce)) return env_.count("stale_reply");
    if (m.owners.empty() || m.owners.size() > cfg_.max_neighbours + 1) return env_.count("bad_message");
    // the owner of the point answers with itself and its neighbours: a reply that does not
    // name its sender is not the owner's (a relay that saw the nonce, or a forger)
    if (std::none_of(m.owners.begin(), m.owners.end(), [&](const contact& c) { return c.addr == from; }))
      return env_.count("spoofed_reply");
    lookups_.complete(m.nonce, lookup_result{m.owners, m.hops});
  }

  void on_message(const address& from, const can_msg::join_offer& m) {
    if (m.sender.addr != from) return env_.count("spoofed_sender");
    // our confirm was lost, or a JOIN of ours that was still in flight reached the same owner,
    // which re-sent its offer under that JOIN's nonce: either way, we took its zone
    if (!accepted_offer_.first.empty() && accepted_offer_.first == from)
      return (void)env_.send(from, can_msg::join_confirm{m.nonce, true});
    if (joined_ || std::find(join_nonces_.begin(), join_nonces_.end(), m.nonce) == join_nonces_.end()) {
      env_.count("join_offer_declined");
      return (void)env_.send(from, can_msg::join_confirm{m.nonce, false});
    }
    if (!valid_zones(m.zones) || !m.given.valid(cfg_.dimensions) || m.neighbours.size() > cfg_.max_neighbours ||
        !m.given.contains(point_of(join_key())))
      return env_.count("bad_message");
    accepted_offer_ = {from, m.nonce};
    join_.stop();
    zones_ = {m.given};
    ++version_;
    neighbours_.clear();
    adopt(m.sender, 0, m.zones, {});
    env_.send(from, can_msg::join_confirm{m.nonce, true});
    become_joined();
    env_.count("joined");
    // the neighbours the owner named enter our table when they answer our update
    probe_listed(m.neighbours);
  }
  void on_message(const address& from, const can_msg::join_confirm& m) {
    auto it = offers_.find(from);
    if (it == offers_.end() || it->second.msg.nonce != m.nonce) return env_.count("stale_reply");
    offer o = std::move(it->second);
    offers_.erase(it);
    env_.cancel(o.timer);
    if (m.accepted) return;
    // joined through another offer: it never held the zone, which comes back to us (unless we
    // took it back already, by a takeover of the silent newcomer). Its table entry goes if it
    // still names that zone; one from its own updates (it may be our neighbour anyway) stays.
    env_.count("join_declined");
    if (auto nb = neighbours_.find(from);
        nb != neighbours_.end() && nb->second.zones == std::vector<can_zone>{o.msg.given})
      neighbours_.erase(nb);
    if (overlaps(zones_, {o.msg.given})) return;
    add_zones({o.msg.given});
    zones_changed();
  }

  void on_message(const address& from, const can_msg::update& m) {
    if (m.sender.addr != from) return env_.count("spoofed_sender");
    if (!joined_) return;
    if (!valid_zones(m.zones) || m.neighbours.size() > cfg_.max_neighbours) return env_.count("bad_message");
    if (failed_.recent(from)) {  // taken over or departed: a stale update, or a node evicted unawares
      env_.count("stale_update");
      env_.send(from, can_msg::evicted{self_});
      return;
    }
    if (older_than_known(m.sender, m.version)) return env_.count("stale_update");
    if (overlaps(zones_, m.zones)) {  // two owners of one point: the case the header names
      env_.count("zone_overlaps");
      dcp::log(env_, log_level::error, "can: ", from, " claims zones that overlap ours");
      return;
    }
    if (auto o = offers_.find(from);
        o != offers_.end() && std::find(m.zones.begin(), m.zones.end(), o->second.msg.given) != m.zones.end()) {
      env_.cancel(o->second.timer);  // the confirm was lost, but the newcomer took the zone
      offers_.erase(o);
    }
    std::vector<contact> listed;
    for (auto& h : m.neighbours) listed.push_back(h.who);
    const bool lists_us = std::any_of(m.neighbours.begin(), m.neighbours.end(),
                                      [&](const can_msg::holder& h) { return h.who.addr == self_.addr; });
    if (touches(zones_, m.zones)) {
      adopt(m.sender, m.version, m.zones, std::move(listed));
    } else {
      drop_moved(m.sender, m.version);
    }
    probe_listed(m.neighbours);
    // a node that takes us for a neighbour and is not one hears our zones, so it drops us
    if (m.want_reply || (lists_us && !touches(zones_, m.zones))) env_.send(from, make_update(false));
  }

  void on_message(const address& from, const can_msg::takeover& m) {
    if (m.sender.addr != from) return env_.count("spoofed_sender");
    if (leaving_ && m.failed.addr == self_.addr)  // still here, handing our zones over
      return (void)env_.send(
          from,
          can_msg::takeover_reply{m.nonce, self_, m.failed, static_cast<std::uint8_t>(can_msg::verdict::alive),
                                  version_, zones_});
    if (!joined_) return;
    if (!valid_zones(m.failed_zones) || !std::isfinite(m.volume) || m.volume <= 0 || m.volume > 1)
      return env_.count("bad_message");
    const address failed = m.failed.addr;
    auto reply = [&](can_msg::verdict v) {
      env_.send(from,
                can_msg::takeover_reply{m.nonce, self_, m.failed, static_cast<std::uint8_t>(v), version_, zones_});
    };
    if (failed == self_.addr) {  // we are alive: the claimant lost our updates
      env_.count("takeover_refused_alive");
      return reply(can_msg::verdict::alive);
    }
    // we hold part of it (it left to us, or we took it over already): first, whatever else we know
    if (overlaps(zones_, m.failed_zones)) return reply(can_msg::verdict::held);
    auto nb = neighbours_.find(failed);
    auto op = takeovers_.find(failed);
    const bool known = nb != neighbours_.end() || op != takeovers_.end() || best_claim_.contains(failed);
    if (!known) {  // about a node we never had as neighbour: nothing of ours to decide
      env_.count("takeover_unknown");
      return reply(can_msg::verdict::accept);
    }
    if (nb != neighbours_.end() && op == takeovers_.end() && env_.now() - nb->second.heard < cfg_.failure_timeout()) {
      env_.count("takeover_refused_alive");
      return reply(can_msg::verdict::alive);
    }
    const claim theirs{m.volume, from, env_.now()};
    if (op != takeovers_.end()) {
      const claim mine{claim_volume(), self_.addr, env_.now()};
      if (better(theirs, mine)) {
        env_.count("takeover_cancelled");
        cancel_takeover(failed);
        best_claim_[failed] = theirs;
        return reply(can_msg::verdict::accept);
      }
      reply(can_msg::verdict::better_claim);
      if (!op->second.claiming) {  // we know better: claim now (the paper's own TAKEOVER in reply)
        env_.cancel(op->second.timer);
        claim_zones(failed);
      }
      return;
    }
    if (auto b = best_claim_.find(failed);
        b != best_claim_.end() && fresh(b->second) && b->second.who != from && better(b->second, theirs))
      return reply(can_msg::verdict::better_claim);
    best_claim_[failed] = theirs;
    reply(can_msg::verdict::accept);
  }
  void on_message(const address& from, const can_msg::takeover_reply& m) {
    if (m.sender.addr != from) return env_.count("spoofed_sender");
    auto it = takeovers_.find(m.failed.addr);
    if (it == takeovers_.end() || !it->second.claiming || it->second.nonce != m.nonce) return env_.count("stale_reply");
    takeover_op& op = it->second;
    auto w = std::find(op.waiting.begin(), op.waiting.end(), from);
    if (w == op.waiting.end()) return env_.count("stale_reply");
    if (m.answer > static_cast<std::uint8_t>(can_msg::verdict::alive) || !valid_zones(m.zones, true))
      return env_.count("bad_message");
    switch (static_cast<can_msg::verdict>(m.answer)) {
      case can_msg::verdict::accept:
        op.waiting.erase(w);
        if (op.waiting.empty()) complete_takeover(m.failed.addr);
        return;
      case can_msg::verdict::alive:
        env_.count("takeover_aborted_alive");
        if (from == m.failed.addr && !m.zones.empty() && !overlaps(zones_, m.zones) &&
            !older_than_known(m.sender, m.version)) {
          if (touches(zones_, m.zones))
            adopt(m.sender, m.version, m.zones,
                  neighbours_.count(from) ? neighbours_.at(from).listed : std::vector<contact>{});
          else
            drop_moved(m.sender, m.version);
        } else if (auto nb = neighbours_.find(m.failed.addr); nb != neighbours_.end() && from != m.failed.addr)
          nb->second.heard = env_.now() - cfg_.failure_timeout() / 2;  // another look later
        cancel_takeover(m.failed.addr);
        return;
      case can_msg::verdict::better_claim:
      case can_msg::verdict::held:
        env_.count("takeover_lost");
        cancel_takeover(m.failed.addr);
        return;
    }
  }

  void on_message(const address& from, const can_msg::handover& m) {
    if (m.sender.addr != from) return env_.count("spoofed_sender");
    if (!valid_zones(m.zones) || m.neighbours.size() > cfg_.max_neighbours) return env_.count("bad_message");
    auto held_all = [&] {
      return std::all_of(m.zones.begin(), m.zones.end(), [&](const can_zone& z) {
        return std::any_of(zones_.begin(), zones_.end(), [&](const can_zone& o) { return o.overlaps(z); });
      });
    };
    if (joined_ && failed_.recent(from) && held_all())  // a duplicate: our ack was lost
      return (void)env_.send(from, can_msg::handover_ack{m.nonce, true});
    auto nb = neighbours_.find(from);
    if (!joined_ || nb == neighbours_.end() || overlaps(zones_, m.zones) ||
        zones_.size() + m.zones.size() > cfg_.max_zones) {
      env_.count("bad_handover");
      return (void)env_.send(from, can_msg::handover_ack{m.nonce, false});
    }
    neighbours_.erase(nb);
    cancel_takeover(from);
    failed_.mark(from);
    add_zones(m.zones);
    env_.count("handovers_taken");
    env_.send(from, can_msg::handover_ack{m.nonce, true});
    zones_changed();
    probe_listed(m.neighbours);
  }
  void on_message(const address& from, const can_msg::handover_ack& m) {
    if (m.nonce != heir_nonce_ || heirs_.empty() || heirs_.front().addr != from) return env_.count("stale_reply");
    if (heir_timer_) env_.cancel(heir_timer_), heir_timer_ = {};
    if (!m.accepted) {
      heirs_.erase(heirs_.begin());
      return next_heir();
    }
    const contact heir = heirs_.front();
    for (auto& [a, nb] : neighbours_) env_.send(a, can_msg::leaving{self_, heir});
    env_.count("left");
    finish_leave();
  }
  void on_message(const address& from, const can_msg::leaving& m) {
    if (m.sender.addr != from) return env_.count("spoofed_sender");
    if (!neighbours_.erase(from)) return env_.count("stale_leaving");
    cancel_takeover(from);
    failed_.mark(from);
    if (joined_ && m.heir && m.heir.addr != self_.addr && !neighbours_.contains(m.heir.addr))
      env_.send(m.heir.addr, make_update(true));
  }
  void on_message(const address& from, const can_msg::evicted& m) {
    if (m.sender.addr != from) return env_.count("spoofed_sender");
    if (!joined_ || !neighbours_.contains(from)) return env_.count("bad_evicted");
    // a neighbour holds our zones (it took them over while our answers were lost): start again
    env_.count("evicted");
    dcp::log(env_, log_level::warn, "can: ", from, " says our zones were taken over; joining again");
    std::vector<contact> seeds = join_.seeds();
    for (auto& [a, nb] : neighbours_) seeds.push_back(nb.who);
    joined_ = false;
    leaving_ = false;
    stop();
    lookups_.fail_all(make_error_code(errc::not_joined));
    zones_.clear();
    neighbours_.clear();
    if (seeds.empty()) return env_.count("evicted_without_seeds");
    bootstrap(seeds);
  }

  /// The transport gave up on `peer`: a hop waiting for it is routed around now, and a
  /// neighbour is suspected at the next update round (the takeover still asks it).
  void on_unreachable(const address& peer) {
    if (auto nb = neighbours_.find(peer); nb != neighbours_.end())
      nb->second.heard = std::min(nb->second.heard, env_.now() - cfg_.failure_timeout());
    hops_.abandon(peer, [&](hop p) {
      p.excluded.push_back(peer);
      if (joined_) handle_route(std::move(p.msg), std::move(p.excluded));
    });
  }

 private:
  struct moved_entry {
    node_id id;
    std::uint64_t version = 0;
    time_point at{};
  };
  struct neighbour {
    contact who;
    std::uint64_t version = 0;
    std::vector<can_zone> zones;
    std::vector<contact> listed;  // its neighbours, from its last update: whom a TAKEOVER asks
    time_point heard{};
  };
  using hop = typename detail::hop_forwarder<E, can_msg::route>::pending;
  struct claim {
    double volume = 0;
    address who;
    time_point at{};
  };
  struct takeover_op {
    contact failed;
    std::vector<can_zone> zones;
    std::vector<address> waiting;
    timer_id timer{};
    bool claiming = false;
    std::uint64_t nonce = 0;
    unsigned round = 0;
  };
  struct candidate {
    std::vector<can_zone> zones;  // as the list that named it had them
    unsigned attempts = 0;
  };
  struct offer {
    can_msg::join_offer msg;
    timer_id timer{};
    unsigned attempts = 0;
  };

  static bool better(const claim& a, const claim& b) noexcept {
    return a.volume != b.volume ? a.volume < b.volume : a.who < b.who;
  }
  bool fresh(const claim& c) const noexcept { return env_.now() - c.at < 2 * cfg_.failure_timeout(); }
  /// The volume a claim names: ours, or "never" once we hold max_zones zones.
  double claim_volume() const noexcept { return zones_.size() >= cfg_.max_zones ? 1.0 : volume(); }

  static __uint128_t max_distance() noexcept { return ~static_cast<__uint128_t>(0); }
  static __uint128_t zones_distance(const std::vector<can_zone>& zs, const can_point& p) noexcept {
    __uint128_t best = max_distance();
    for (auto& z : zs) best = std::min(best, z.distance2(p));
    return best;
  }
  static bool overlaps(const std::vector<can_zone>& a, const std::vector<can_zone>& b) noexcept {
    for (auto& x : a)
      for (auto& y : b)
        if (x.overlaps(y)) return true;
    return false;
  }
  static bool touches(const std::vector<can_zone>& a, const std::vector<can_zone>& b) noexcept {
    for (auto& x : a)
      for (auto& y : b)
        if (x.abuts(y)) return true;
    return false;
  }
  bool valid_zones(const std::vector<can_zone>& zs, bool may_be_empty = false) const noexcept {
    if (zs.size() > cfg_.max_zones || (zs.empty() && !may_be_empty)) return false;
    for (auto& z : zs)
      if (!z.valid(cfg_.dimensions)) return false;
    return true;
  }

  std::uint64_t fresh_nonce() {
    return detail::unguessable_nonce(env_,
                                     [this](std::uint64_t n) { return lookups_.contains(n) || hops_.contains(n); });
  }

  // ---- neighbours and zones ----

  /// A node heard from directly: into the table (or its entry refreshed). Entries of
  /// others whose zones it now covers are stale (it took them over, or split them).
  void adopt(const contact& who, std::uint64_t version, const std::vector<can_zone>& zones,
             std::vector<contact> listed) {
    if (who.addr == self_.addr) return;
    if (!admissible(bound_, who)) return env_.count("unbound_id");
    moved_.erase(who.addr);
    auto it = neighbours_.find(who.addr);
    if (it == neighbours_.end()) {
      if (neighbours_.size() >= cfg_.max_neighbours) return env_.count("neighbours_full");
      it = neighbours_.emplace(who.addr, neighbour{who, 0, {}, {}, {}}).first;
    }
    it->second.who = who;
    it->second.version = version;
    it->second.zones = zones;
    if (listed.size() > cfg_.max_neighbours) listed.resize(cfg_.max_neighbours);
    it->second.listed = std::move(listed);
    it->second.heard = env_.now();
    candidates_.erase(who.addr);
    cancel_takeover(who.addr);
    std::vector<address> stale;
    for (auto& [a, nb] : neighbours_)
      if (a != who.addr && overlaps(nb.zones, zones)) stale.push_back(a);
    for (auto& a : stale) {
      env_.count("neighbour_superseded");
      neighbours_.erase(a);
      cancel_takeover(a);
    }
  }

  /// An update older than one we have from the same node (same id): messages are reordered,
  /// and a stale zone would resurrect or supersede what is true now.
  bool older_than_known(const contact& who, std::uint64_t version) const {
    if (auto it = neighbours_.find(who.addr); it != neighbours_.end() && it->second.who.id == who.id)
      return version < it->second.version;
    if (auto it = moved_.find(who.addr); it != moved_.end() && it->second.id == who.id)
      return version < it->second.version;
    return false;
  }
  /// A node whose zones no longer abut ours: out of the table; its version remembered a while,
  /// so that an older update still in flight does not bring it back.
  void drop_moved(const contact& who, std::uint64_t version) {
    if (neighbours_.erase(who.addr)) env_.count("neighbour_moved_away");
    cancel_takeover(who.addr);
    if (moved_.size() < 4 * cfg_.max_neighbours) moved_[who.addr] = moved_entry{who.id, version, env_.now()};
  }

  /// The paper's neighbour sets are built at splits and kept by updates, but two splits at
  /// once next to each other can leave two abutting nodes without a neighbour in common to
  /// introduce them. So each round a node checks that its neighbours' zones cover every face
  /// of its own; on finding a hole it routes a find to a point just across it, and the
  /// owner of that point introduces itself. The faces' coverage is exact (zones abutting one
  /// face from one side are disjoint on it); the point in the hole is drawn at random.
  void find_missing_neighbour() {
    if (neighbours_.size() >= cfg_.max_neighbours) return;
    const unsigned d = cfg_.dimensions;
    for (std::size_t attempt = 0; attempt < 4; ++attempt) {
      const can_zone& z = zones_[env_.rng().below(zones_.size())];
      const unsigned i = static_cast<unsigned>(env_.rng().below(d));
      if (z.depth[i] == 0) continue;  // the whole axis: no face
      const bool high = env_.rng().below(2) == 1;
      const std::uint32_t across =
          high ? static_cast<std::uint32_t>(z.lo[i] + z.width(i)) : static_cast<std::uint32_t>(z.lo[i] - 1);
      auto on_face = [&](const can_zone& n) {  // the part of n's zone that touches this face, as a fraction of it
        if (!(high ? n.lo[i] == across : static_cast<std::uint32_t>(n.lo[i] + n.width(i) - 1) == across)) return 0.0;
        double f = 1;
        for (unsigned j = 0; j < d; ++j) {
          if (j == i) continue;
          if (!can_zone::overlap_1d(z, n, j)) return 0.0;
          f *= static_cast<double>(std::min(z.width(j), n.width(j))) / static_cast<double>(z.width(j));
        }
        return f;
      };
      double covered = 0;
      for (auto& o : zones_) covered += on_face(o);
      for (auto& [a, nb] : neighbours_)
        for (auto& o : nb.zones) covered += on_face(o);
      if (covered >= 1.0) continue;
      // a hole: find a point in it
      for (int t = 0; t < 16; ++t) {
        can_point p{};
        for (unsigned j = 0; j < d; ++j)
          p[j] = j == i ? across : static_cast<std::uint32_t>(z.lo[j] + env_.rng().below(z.width(j)));
        bool known = std::any_of(zones_.begin(), zones_.end(), [&](const can_zone& o) { return o.contains(p); });
        for (auto& [a, nb] : neighbours_)
          known =
              known || std::any_of(nb.zones.begin(), nb.zones.end(), [&](const can_zone& o) { return o.contains(p); });
        if (known) continue;
        // we are the nearest node we know to the hole, so greedy routing would stop here. The
        // find goes to our nearest neighbours (one of them may know the owner: a neighbour of
        // its own) and on greedily from each, never back through us
        std::vector<std::pair<__uint128_t, contact>> near;
        for (auto& [a, nb] : neighbours_) near.emplace_back(zones_distance(nb.zones, p), nb.who);
        std::sort(near.begin(), near.end(), [](const auto& x, const auto& y) {
          return x.first != y.first ? x.first < y.first : x.second.addr < y.second.addr;
        });
        if (near.size() > 2 * d + 2) near.resize(2 * d + 2);
        env_.count("neighbour_finds");
        for (auto& [dist, c] : near) {
          can_msg::route m;
          m.what = static_cast<std::uint8_t>(can_msg::kind::find);
          m.origin = self_;
          m.point = p;
          hops_.send(std::move(m), c, {});
        }
        return;
      }
    }
  }

  /// Nodes named in a list that would be our neighbours and that we do not know: sent our
  /// update, asking for theirs. They enter the table only by answering. A candidate is
  /// asked again every update round for a while: it may not have joined yet (a newcomer
  /// ignores updates until its offer arrives), or the probe or its answer was lost, and
  /// two nodes with no neighbour in common may have no other way to meet.
  void probe_listed(const std::vector<can_msg::holder>& list) {
    if (!joined_) return;
    for (auto& h : list) {
      if (h.who.addr.empty() || h.who.addr == self_.addr || neighbours_.contains(h.who.addr)) continue;
      if (!valid_zones(h.zones) || !touches(zones_, h.zones) || failed_.recent(h.who.addr)) continue;
      if (auto c = candidates_.find(h.who.addr); c != candidates_.end()) {
        c->second.zones = h.zones;  // fresher news of it; asked again at the next round
        continue;
      }
      if (candidates_.size() >= cfg_.max_neighbours) return env_.count("probe_budget_exhausted");
      candidates_.emplace(h.who.addr, candidate{h.zones, 1});
      env_.send(h.who.addr, make_update(true));
    }
  }
  void probe_candidates() {
    std::vector<address> done;
    for (auto& [a, c] : candidates_) {
      if (neighbours_.contains(a) || !touches(zones_, c.zones) || failed_.recent(a)) {
        done.push_back(a);
      } else if (c.attempts >= 2 * cfg_.failure_threshold + 2) {
        env_.count("probe_unanswered");
        done.push_back(a);
      } else {
        ++c.attempts;
        env_.send(a, make_update(true));
      }
    }
    for (auto& a : done) candidates_.erase(a);
  }

  can_msg::update make_update(bool want_reply) const {
    can_msg::update u;
    u.sender = self_;
    u.version = version_;
    u.zones = zones_;
    u.want_reply = want_reply;
    for (auto& [a, nb] : neighbours_) u.neighbours.push_back({nb.who, nb.zones});
    std::sort(u.neighbours.begin(), u.neighbours.end(),
              [](const auto& x, const auto& y) { return x.who.addr < y.who.addr; });
    return u;
  }

  /// Adds zones and merges every pair that forms one dyadic box.
  void add_zones(const std::vector<can_zone>& zs) {
    for (auto& z : zs)
      if (std::find(zones_.begin(), zones_.end(), z) == zones_.end()) zones_.push_back(z);
    for (bool merged = true; merged;) {
      merged = false;
      for (std::size_t i = 0; i < zones_.size() && !merged; ++i)
        for (std::size_t j = i + 1; j < zones_.size() && !merged; ++j)
          if (auto m = can_zone::merge(zones_[i], zones_[j])) {
            zones_[i] = *m;
            zones_.erase(zones_.begin() + static_cast<std::ptrdiff_t>(j));
            merged = true;
          }
    }
  }

  /// Our zones changed: every neighbour, old and new, hears it now (old ones drop us),
  /// and neighbours that no longer abut us leave the table.
  void zones_changed() {
    ++version_;
    if (!joined_) return;
    const auto u = make_update(true);
    for (auto& [a, nb] : neighbours_) env_.send(a, u);
    std::vector<address> gone;
    for (auto& [a, nb] : neighbours_)
      if (!touches(zones_, nb.zones)) gone.push_back(a);
    for (auto& a : gone) {
      neighbours_.erase(a);
      cancel_takeover(a);
    }
  }

  // ---- join ----

  void become_joined() {
    joined_ = true;
    join_.stop();
    update_timer_.start(
        env_, cfg_.update_interval, [this] { tick(); }, detail::random_phase(env_, cfg_.update_interval));
    const auto u = make_update(true);
    for (auto& [a, nb] : neighbours_) env_.send(a, u);
  }

  /// A JOIN routed to our own point: the owner's offer ends the attempts; silence means
  /// the seed or the path failed, and join_ tries the next seed.
  void send_join(const contact& seed) {
    const std::uint64_t nonce = fresh_nonce();
    if (join_nonces_.size() >= 8) join_nonces_.erase(join_nonces_.begin());
    join_nonces_.push_back(nonce);
    const auto what = static_cast<std::uint8_t>(can_msg::kind::join);
    auto m = detail::join_request<can_msg::route>(what, self_, nonce, fresh_nonce());
    m.key = join_key();
    env_.send(seed.addr, m);
  }

  /// A JOIN reached the owner of the newcomer's point: split, offer, tell the neighbours.
  void accept_join(const can_msg::route& m) {
    const address joiner = m.origin.addr;
    if (joiner == self_.addr) return;
    // bound: only a node whose id derives from its address, and only at the point its id gives
    if (!admissible(bound_, m.origin)) return env_.count("unbound_id");
    if (bound_ && m.key != join_key(m.origin.id, cfg_.dimensions, true)) return env_.count("unbound_join_point");
    if (auto o = offers_.find(joiner); o != offers_.end()) {  // asked again: the same offer
      o->second.msg.nonce = m.nonce;
      env_.send(joiner, o->second.msg);
      return;
    }
    if (neighbours_.contains(joiner)) return env_.count("join_duplicate");
    // a copy of a JOIN we served already (a hop resent after its ack was lost), arriving
    // after the newcomer confirmed, or left again: splitting once more would give a zone to
    // a node that does not want it
    if (auto j = served_joins_.find(joiner); j != served_joins_.end() && j->second.first == m.nonce)
      return env_.count("join_duplicate");
    if (offers_.size() >= cfg_.max_pending_joins) return env_.count("joins_busy");
    if (neighbours_.size() >= cfg_.max_neighbours) return env_.count("neighbours_full");
    const can_point p = point_of(m.key);
    auto z = std::find_if(zones_.begin(), zones_.end(), [&](const can_zone& x) { return x.contains(p); });
    if (z == zones_.end()) return;
    can_zone given;
    if (zones_.size() > 1) {  // we hold several zones: the newcomer takes the whole one
      given = *z;
      zones_.erase(z);
    } else {
      const unsigned dim = z->split_dimension(cfg_.dimensions);
      if (dim == cfg_.dimensions) return env_.count("zone_too_small");
      auto [a, b] = z->halves(dim);
      given = a.contains(p) ? a : b;
      *z = a.contains(p) ? b : a;
    }
    env_.count("zone_splits");
    if (served_joins_.size() < 4 * cfg_.max_neighbours) served_joins_[joiner] = {m.nonce, env_.now()};
    offer o;
    o.msg.nonce = m.nonce;
    o.msg.sender = self_;
    o.msg.given = given;
    o.msg.zones = zones_;
    for (auto& [a, nb] : neighbours_)
      if (touches(nb.zones, {given})) o.msg.neighbours.push_back({nb.who, nb.zones});
    std::sort(o.msg.neighbours.begin(), o.msg.neighbours.end(),
              [](const auto& x, const auto& y) { return x.who.addr < y.who.addr; });
    // committed now: the newcomer is our neighbour; if it never confirms, it is taken
    // over like any failed node
    neighbours_[joiner] = neighbour{m.origin, 0, {given}, {self_}, env_.now()};
    env_.send(joiner, o.msg);
    auto& slot = offers_[joiner] = std::move(o);
    slot.timer = env_.arm(cfg_.rpc_timeout, [this, joiner] { resend_offer(joiner); });
    zones_changed();
  }
  void resend_offer(const address& joiner) {
    auto it = offers_.find(joiner);
    if (it == offers_.end()) return;
    it->second.timer = {};
    if (++it->second.attempts >= 2 * cfg_.takeover_attempts) {
      offers_.erase(it);  // dead, or confirmed unheard: its updates (or their absence) decide
      return env_.count("join_offer_unconfirmed");
    }
    env_.send(joiner, it->second.msg);
    it->second.timer = env_.arm(cfg_.rpc_timeout, [this, joiner] { resend_offer(joiner); });
  }

  // ---- soft state and takeover ----

  void tick() {
    if (!joined_ && !leaving_) return;
    const auto u = make_update(false);
    for (auto& [a, nb] : neighbours_) env_.send(a, u);
    if (leaving_) return;
    std::vector<address> silent;
    for (auto& [a, nb] : neighbours_)
      if (env_.now() - nb.heard > cfg_.failure_timeout() && !takeovers_.contains(a)) silent.push_back(a);
    std::sort(silent.begin(), silent.end());
    for (auto& a : silent) start_takeover(a);
    probe_candidates();
    find_missing_neighbour();
    std::erase_if(best_claim_, [&](const auto& c) { return !fresh(c.second); });
    failed_.expire();
    std::erase_if(moved_, [&](const auto& f) { return env_.now() - f.second.at >= cfg_.failed_memory; });
    std::erase_if(served_joins_, [&](const auto& f) { return env_.now() - f.second.second >= cfg_.failed_memory; });
  }

  void start_takeover(const address& failed) {
    auto nb = neighbours_.find(failed);
    if (nb == neighbours_.end()) return;
    env_.count("suspected");
    if (zones_.size() + nb->second.zones.size() > cfg_.max_zones) {
      env_.count("takeover_zones_full");
      dcp::log(env_, log_level::warn, "can: holding ", zones_.size(), " zones: not claiming ", failed);
      return;
    }
    if (auto b = best_claim_.find(failed);
        b != best_claim_.end() && fresh(b->second) && better(b->second, claim{claim_volume(), self_.addr, env_.now()}))
      return;  // a better claimant is at work
    double failed_volume = 0;
    for (auto& z : nb->second.zones) failed_volume += z.volume();
    const double ratio = std::clamp(volume() / std::max(failed_volume, 1e-300), 1.0 / 16, 8.0);
    const auto base = std::chrono::duration_cast<duration>(cfg_.takeover_delay * ratio);
    const auto jitter =
        duration(env_.rng().below(static_cast<std::uint64_t>(std::max<std::int64_t>(1, base.count() / 8))));
    takeover_op op;
    op.failed = nb->second.who;
    op.zones = nb->second.zones;
    op.timer = env_.arm(base + jitter, [this, failed] {
      if (auto it = takeovers_.find(failed); it != takeovers_.end()) it->second.timer = {};
      claim_zones(failed);
    });
    takeovers_[failed] = std::move(op);
  }

  /// Our timer fired first (or we learned ours is the best claim): ask F's neighbours and F.
  void claim_zones(const address& failed) {
    auto it = takeovers_.find(failed);
    if (it == takeovers_.end()) return;
    takeover_op& op = it->second;
    if (auto b = best_claim_.find(failed); b != best_claim_.end() && fresh(b->second) &&
        better(b->second, claim{claim_volume(), self_.addr, env_.now()})) {
      cancel_takeover(failed);
      return;
    }
    op.claiming = true;
    op.nonce = fresh_nonce();
    op.round = 0;
    op.waiting = {failed};
    auto ask = [&](const address& a) {
      if (a.empty() || a == self_.addr || std::find(op.waiting.begin(), op.waiting.end(), a) != op.waiting.end())
        return;
      if (op.waiting.size() > cfg_.max_neighbours) return;
      op.waiting.push_back(a);
    };
    if (auto nb = neighbours_.find(failed); nb != neighbours_.end())
      for (auto& c : nb->second.listed) ask(c.addr);
    for (auto& [a, nb] : neighbours_)
      if (a != failed && touches(nb.zones, op.zones)) ask(a);
    best_claim_[failed] = claim{claim_volume(), self_.addr, env_.now()};
    env_.count("takeover_claims");
    send_takeover_round(failed);
  }
  void send_takeover_round(const address& failed) {
    auto it = takeovers_.find(failed);
    if (it == takeovers_.end()) return;
    takeover_op& op = it->second;
    if (op.round >= cfg_.takeover_attempts) return complete_takeover(failed);  // the rest are silent: dead
    ++op.round;
    const can_msg::takeover m{op.nonce, self_, op.failed, op.zones, claim_volume()};
    for (auto& a : op.waiting) env_.send(a, m);
    op.timer = env_.arm(cfg_.rpc_timeout, [this, failed] {
      if (auto jt = takeovers_.find(failed); jt != takeovers_.end()) jt->second.timer = {};
      send_takeover_round(failed);
    });
  }
  void complete_takeover(const address& failed) {
    auto it = takeovers_.find(failed);
    if (it == takeovers_.end()) return;
    takeover_op op = std::move(it->second);
    if (op.timer) env_.cancel(op.timer);
    takeovers_.erase(it);
    best_claim_.erase(failed);
    if (overlaps(zones_, op.zones)) return env_.count("takeover_overlap");
    auto nb = neighbours_.find(failed);
    std::vector<contact> listed;
    if (nb != neighbours_.end()) listed = nb->second.listed;
    neighbours_.erase(failed);
    failed_.mark(failed);
    add_zones(op.zones);
    env_.count("takeovers");
    dcp::log(env_, log_level::info, "can: took over the zones of ", failed);
    // F's neighbours are ours now: they hear our new zones and answer with theirs
    const auto u = make_update(true);
    for (auto& c : listed)
      if (c.addr != self_.addr && c.addr != failed && !neighbours_.contains(c.addr)) env_.send(c.addr, u);
    zones_changed();
  }
  void cancel_takeover(const address& failed) {
    auto it = takeovers_.find(failed);
    if (it == takeovers_.end()) return;
    if (it->second.timer) env_.cancel(it->second.timer);
    if (it->second.claiming) {
      auto b = best_claim_.find(failed);
      if (b != best_claim_.end() && b->second.who == self_.addr) best_claim_.erase(b);
    }
    takeovers_.erase(it);
  }

  // ---- leave ----

  /// Heirs in order: a neighbour whose zone merges with one of ours into one box, then
  /// the others by volume, smallest first (§2.3).
  std::vector<contact> heir_order() const {
    std::vector<std::pair<std::pair<int, double>, contact>> c;
    for (auto& [a, nb] : neighbours_) {
      bool merges = false;
      double v = 0;
      for (auto& z : nb.zones) {
        v += z.volume();
        for (auto& mine : zones_) merges = merges || can_zone::merge(z, mine).has_value();
      }
      c.push_back({{merges ? 0 : 1, v}, nb.who});
    }
    std::sort(c.begin(), c.end(), [](const auto& x, const auto& y) {
      return x.first != y.first ? x.first < y.first : x.second.addr < y.second.addr;
    });
    std::vector<contact> out;
    for (auto& [k, who] : c) out.push_back(who);
    return out;
  }
  void next_heir(unsigned attempt = 1) {
    if (heirs_.empty()) {  // no neighbour, or every one refused: leave; the takeover repairs
      if (!neighbours_.empty()) env_.count("leave_unacknowledged");
      return finish_leave();
    }
    if (attempt == 1) heir_nonce_ = fresh_nonce();
    can_msg::handover h{heir_nonce_, self_, zones_, {}};
    for (auto& [a, nb] : neighbours_) h.neighbours.push_back({nb.who, nb.zones});
    env_.send(heirs_.front().addr, h);
    heir_timer_ = env_.arm(cfg_.rpc_timeout, [this, attempt] {
      heir_timer_ = {};
      if (attempt < cfg_.takeover_attempts) return next_heir(attempt + 1);
      // silent: it may hold our zones (its acks lost) or be dead. Handing them to another
      // could make two owners, so we go, and the takeover (or its updates) settles it
      env_.count("leave_unacknowledged");
      finish_leave();
    });
  }
  void finish_leave() {
    leaving_ = false;
    heirs_.clear();
    if (heir_timer_) env_.cancel(heir_timer_), heir_timer_ = {};
    stop();
    zones_.clear();
    neighbours_.clear();
  }

  // ---- routing ----

  /// Greedy: the neighbour whose zone is nearest the point, if nearer than ours. Nodes
  /// suspected failed (a takeover running) go last. Empty when no one makes progress.
  contact next_hop(const can_point& p, const std::vector<address>& excluded) const {
    const __uint128_t mine = zones_distance(zones_, p);
    contact best;
    __uint128_t best_d = mine;
    bool best_suspect = true;
    for (auto& [a, nb] : neighbours_) {
      if (std::find(excluded.begin(), excluded.end(), a) != excluded.end()) continue;
      const __uint128_t d = zones_distance(nb.zones, p);
      if (d >= mine) continue;
      const bool suspect = takeovers_.contains(a);
      if (!best || (best_suspect && !suspect) ||
          (suspect == best_suspect && (d < best_d || (d == best_d && a < best.addr)))) {
        best = nb.who;
        best_d = d;
        best_suspect = suspect;
      }
    }
    return best;
  }

  void handle_route(can_msg::route m, std::vector<address> excluded = {}) {
    if (m.hops >= cfg_.max_hops) return env_.count("hop_limit");
    const bool find = m.what == static_cast<std::uint8_t>(can_msg::kind::find);
    const can_point p = find ? m.point : point_of(m.key);
    if (find && m.origin.addr != self_.addr) excluded.push_back(m.origin.addr);
    if (owns_point(p)) return deliver_here(m);
    const contact next = next_hop(p, excluded);
    if (!next) return env_.count("no_route");  // every way forward failed: the origin asks again
    hops_.send(std::move(m), next, std::move(excluded));
  }

  void hop_timed_out(hop p) {
    if (!joined_) return;
    if (p.attempts < 2)  // the message or its ack may just have been lost: once more
      return hops_.send(std::move(p.msg), p.next, std::move(p.excluded), p.attempts + 1);
    p.excluded.push_back(p.next.addr);  // then around it, to the next-best neighbour
    handle_route(std::move(p.msg), std::move(p.excluded));
  }

  void deliver_here(const can_msg::route& m) {
    switch (static_cast<can_msg::kind>(m.what)) {
      case can_msg::kind::lookup:
        return lookups_.answer(m, closest(m.key, m.n));
      case can_msg::kind::join:
        return accept_join(m);
      case can_msg::kind::app:
        return delivery_.deliver(m.key, m.origin, m.payload);
      case can_msg::kind::find:  // a node missing a neighbour here: we introduce ourselves
        if (m.origin.addr != self_.addr && !failed_.recent(m.origin.addr)) env_.send(m.origin.addr, make_update(true));
        return;
    }
  }

  void stop() {
    update_timer_.stop();
    join_.stop();
    if (heir_timer_) env_.cancel(heir_timer_), heir_timer_ = {};
    hops_.clear();
    for (auto& [a, op] : takeovers_) env_.cancel(op.timer);
    takeovers_.clear();
    for (auto& [a, o] : offers_) env_.cancel(o.timer);
    offers_.clear();
    candidates_.clear();
  }

  E env_;
  can_config cfg_;
  contact self_;
  detail::routed_lookups<E, can_msg::route> lookups_;
  detail::hop_forwarder<E, can_msg::route> hops_;
  detail::join_attempts<E> join_;
  detail::failed_peers<E> failed_;  // taken over or departed
  detail::payload_delivery<E> delivery_;
  std::vector<can_zone> zones_;
  std::unordered_map<address, neighbour> neighbours_;
  std::unordered_map<address, takeover_op> takeovers_;
  std::unordered_map<address, claim> best_claim_;      // per failed node: the best claim we accepted or made
  std::unordered_map<address, offer> offers_;          // joins offered, not yet confirmed
  std::unordered_map<address, candidate> candidates_;  // named by others, asked for their update
  std::unordered_map<address, moved_entry> moved_;     // former neighbours, by the version that moved them
  std::uint64_t version_ = 0;                          // how often our zones changed (updates carry it)
  std::unordered_map<address, std::pair<std::uint64_t, time_point>>
      served_joins_;  // the JOIN nonce each split answered
  bool joined_ = false;
  bool bound_ = false;                      // ids and join points bound to addresses (BEP 42)
  bool leaving_ = false;                    // leave() called, handover not yet acknowledged
  std::vector<std::uint64_t> join_nonces_;  // our last join attempts: an offer must answer one
  std::pair<address, std::uint64_t> accepted_offer_{};
  std::vector<contact> heirs_;
  std::uint64_t heir_nonce_ = 0;
  timer_id heir_timer_{};
  periodic<E> update_timer_;
};

}  // namespace dcp::dht
