#pragma once
// Tapestry (Zhao, Huang, Stribling, Rhea, Joseph, Kubiatowicz, "Tapestry: A
// Resilient Global-Scale Overlay for Service Deployment", IEEE JSAC 22(1), 2004).
//
// Ids are 160-bit node_ids read as 40 hexadecimal digits (base β = 16, as in
// the paper). Each node keeps a neighbour map of 40 levels × 16 digits: slot
// (l, d) holds up to c nodes (c = 3) that share this node's first l digits and
// have d as digit l, the closest first (§3.1). "Closest" is the round-trip time
// this node measures itself with its probes (a moving average; the simulator's
// link latency, the network's over TCP); a node not yet measured sorts last, and
// a full slot takes a newcomer only when it is 25% closer than its farthest
// entry (round trips are noisy: a flapping slot churns backpointers for
// nothing). Slot (l, own digit) is this node itself.
//
//   - Routing (§3.2) is digit by digit: a message resolved to level l looks up
//     slot (l, key digit l). Surrogate routing: when that slot is empty, the next
//     filled digit of the same level is taken, wrapping around (digit+1 mod 16,
//     ...); when the slot chosen is this node's own digit, it goes on to level
//     l+1 here. The message carries its level. In a consistent network (a slot
//     is empty only when no node has its prefix: the paper's Property 1) every
//     route for a key, from any node, ends at the same node, the key's root:
//     the node whose digit-wise difference (id_l - key_l mod 16, most
//     significant first) is smallest. That difference is distance() here, so
//     the Router's "owner" is the surrogate root, and a route takes about
//     log_16 N hops. Each hop is acknowledged; a silent hop is sent once more,
//     then routed around to the slot's next entry (or, when none, the next
//     filled digit: the same root as if the node had left).
//   - Object location (DOLR, §3.3): publish(guid) routes a publish message from
//     the server toward the guid's root, and every node on the way, the root
//     included, keeps an object pointer (guid → server). locate(guid) routes
//     toward the same root and turns to the server at the first node holding a
//     pointer (the reply names the servers; its hop count includes the hop to
//     the server). Pointers are soft state: they expire after pointer_ttl and
//     servers republish every republish_interval (§3.3); unpublish(guid) routes
//     toward the root removing the server's pointers, and stops republishing.
//   - Backpointers (§3.1): a node that puts B in its table tells B (and tells it
//     again when it drops B), so B knows who routes through it; a leaving node
//     tells them. They are soft state: every heartbeat probe refreshes one, and a
//     sequence number makes a reordered add or remove count for nothing.
//   - Insertion (§4.1): new node N routes a join to its own id through any
//     member; each node on the path sends N its rows up to the prefix they
//     share, and the root S (N's surrogate) sends all its rows. S then starts
//     an acknowledged multicast to every node sharing α, the prefix of S and N:
//     a node reached at level L passes it, acknowledged per hop (resent, then to
//     the slot's next entry), to one entry of each slot of its levels >= L, and
//     each node reached puts N in its table (the hole that N fills is exactly at
//     level |α| of those nodes) and says hello to N, which fills its table from
//     them. N keeps, of every candidate, the c closest per slot, probing each
//     first. S hands N the object pointers for which N is now the root.
//   - Repair: every maintain_interval each node probes its table (heartbeats,
//     and the round trip that orders a slot); a neighbour silent for
//     failure_threshold rounds, or for failure_threshold hops (a hop's timeout
//     counts only when nothing came from the node since it was sent), is removed, its
//     slot's backups take over at once, and an emptied slot is asked of the
//     other nodes of its level (§4.2's repair from the same level). Each round a
//     node also asks one neighbour for the rows they share: holes left by
//     concurrent insertions (which the paper handles with a more elaborate
//     multicast) fill from it, so tables converge to Property 1. A joined node
//     that probes us or asks for rows is learned: one every other node dropped
//     comes back that way.
//   - Departure (§4.3): a leaving node tells its table and its backpointers,
//     giving its table as replacements; they drop it at once and probe the
//     replacements.
//
// Fault model: message loss, duplication and reordering (every request is
// matched by nonce, resent, and idempotent); crashes of any set of nodes as long
// as, after repair, the survivors' tables are consistent: routes reach the same
// root once every slot naming a dead node was emptied or refilled.
//
// Not handled (say so, and counted):
//   - Until repair, nodes that do not yet know of a crash may route a key to a
//     different root than those that do: a lookup in that window can answer a
//     stale root. Concurrent joins sharing a prefix may miss each other in the
//     multicast; the row exchange fills the holes within a few rounds.
//   - The pointers a crashed or departed node held are gone until servers
//     republish (soft state, as in the paper); a locate in between may answer
//     errc::not_found. A departing node does not hand its pointers on.
//   - The paper's nearest-neighbour search by levels during insertion is
//     approximated: candidates are the join path's rows, the root's table and
//     the multicast's nodes, each probed, the c closest kept.
//   - Ids are bound to addresses over dcp::net (tapestry_config::bind_ids,
//     BEP 42), so a node cannot make itself a key's surrogate at will; in the
//     simulator they are the node's own word unless a test asks for binding.
//
// Hostile input: a sender contact must carry the transport's address
// ("spoofed_sender"); levels beyond 40, hop counts beyond max_hops, TTLs beyond
// max_pointer_ttl and lists beyond their bounds are refused ("bad_message");
// replies that match no request in flight ("stale_reply"), and lookup replies
// that do not come from the root they name first ("spoofed_reply"), change
// nothing.
// Every table is bounded: the neighbour map (40 × 16 × c), backpointers
// (max_backpointers), object pointers (max_pointers, max_servers_per_object),
// published objects (max_published), probes in flight, multicasts remembered.
#include <algorithm>
#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "dcp/core/env.hpp"
#include "dcp/core/error.hpp"
#include "dcp/core/log.hpp"
#include "dcp/core/node_id.hpp"
#include "dcp/core/protocol.hpp"
#include "dcp/dht/contact.hpp"
#include "dcp/dht/detail/failed_peers.hpp"
#include "dcp/dht/detail/heartbeat_round.hpp"
#include "dcp/dht/detail/hop_forwarder.hpp"
#include "dcp/dht/detail/join_attempts.hpp"
#include "dcp/dht/detail/join_settling.hpp"
#include "dcp/dht/detail/payload_delivery.hpp"
#include "dcp/dht/detail/pending_requests.hpp"
#include "dcp/dht/detail/random_phase.hpp"
#include "dcp/dht/detail/route_messages.hpp"
#include "dcp/dht/detail/routed_lookups.hpp"
#include "dcp/dht/detail/unguessable_nonce.hpp"
#include "dcp/dht/error.hpp"
#include "dcp/dht/id_binding.hpp"
#include "dcp/dht/router.hpp"
#include "dcp/wire/message.hpp"

namespace dcp::dht {

struct tapestry_config {
  /// Entries kept per slot (the paper's c: one primary and c-1 backups).
  std::size_t entries_per_slot = 3;
  duration rpc_timeout = 500ms;
  /// Heartbeat probes of the whole table and one row exchange, every this.
  duration maintain_interval = 1s;
  /// Silent rounds (or unacknowledged hops) after which a neighbour is removed.
  unsigned failure_threshold = 3;
  /// How long a removed node is not learned again from others' (possibly stale) tables.
  duration failed_memory = 60s;
  /// A lookup or locate not answered within this fails with errc::lookup_failed.
  duration lookup_timeout = 5s;
  /// Hops after which a message is dropped: 40 levels, plus room for detours.
  unsigned max_hops = 64;
  /// Messages (routed, or insertion multicasts) this node has forwarded and not yet
  /// seen acknowledged, per kind; beyond it one more is dropped ("hops_full").
  std::size_t max_hops_in_flight = 1 << 16;
  /// Servers republish their objects this often; pointers live pointer_ttl.
  duration republish_interval = 30s;
  duration pointer_ttl = 90s;
  /// The longest pointer lifetime accepted from the network.
  duration max_pointer_ttl = std::chrono::minutes(10);
  std::size_t max_pointers = 1 << 16;
  std::size_t max_servers_per_object = 8;
  std::size_t max_published = 1 << 16;
  std::size_t max_backpointers = 4096;
  duration bootstrap_retry = 500ms;
  duration bootstrap_retry_max = 30s;
  std::optional<node_id> id;
  /// Whether ids must derive from addresses (BEP 42; see dcp/dht/id_binding.hpp):
  /// automatic is on over dcp::net, off in the simulator. A node whose id does
  /// not derive from its address enters no table ("unbound_id" when it speaks
  /// for itself, "unbound_contact" when named), so it is nobody's surrogate.
  id_binding bind_ids = id_binding::automatic;

  void validate() const {
    if (entries_per_slot < 1 || entries_per_slot > 8)
      throw error(dcp::errc::invalid_config, "tapestry: entries_per_slot must be 1..8");
    if (rpc_timeout <= duration::zero() || maintain_interval <= duration::zero() || lookup_timeout <= rpc_timeout)
      throw error(dcp::errc::invalid_config,
                  "tapestry: need rpc_timeout > 0, maintain_interval > 0, lookup_timeout > rpc_timeout");
    if (failure_threshold < 1 || max_hops < 1 || max_hops > 1024)
      throw error(dcp::errc::invalid_config, "tapestry: need failure_threshold >= 1, 1 <= max_hops <= 1024");
    if (failed_memory <= duration::zero())
      throw error(dcp::errc::invalid_config, "tapestry: failed_memory must be > 0");
    if (republish_interval <= duration::zero() || pointer_ttl <= republish_interval || max_pointer_ttl < pointer_ttl)
      throw error(dcp::errc::invalid_config, "tapestry: need 0 < republish_interval < pointer_ttl <= max_pointer_ttl");
    if (max_pointers < 1 || max_servers_per_object < 1 || max_published < 1 || max_backpointers < 1 ||
        max_hops_in_flight < 1)
      throw error(dcp::errc::invalid_config, "tapestry: table bounds must be >= 1");
    if (bootstrap_retry <= duration::zero() || bootstrap_retry_max < bootstrap_retry)
      throw error(dcp::errc::invalid_config, "tapestry: need 0 < bootstrap_retry <= bootstrap_retry_max");
  }
};

/// What locate() finds: the servers a pointer named, and the hops the request
/// took to the first node holding a pointer, plus the hop to the server.
struct locate_result {
  std::vector<contact> servers;
  unsigned hops = 0;
  /// Hops to the first node with a pointer (the root when only the root had one).
  unsigned hops_to_pointer = 0;
};
using locate_callback = std::function<void(result<locate_result>)>;

namespace tapestry_msg {
// (lookup, join, app: detail::route_kind's codes)
enum class kind : std::uint8_t { lookup = 0, join = 1, app = 2, publish = 3, unpublish = 4, locate = 5 };
struct route {
  static constexpr message_type wire_id = 1;
  static constexpr std::string_view wire_name = "route";
  std::uint64_t hop = 0;    // this hop's id, acknowledged by route_ack
  std::uint64_t nonce = 0;  // the origin's request id
  std::uint8_t what = 0;    // kind
  std::uint8_t level = 0;   // digits resolved so far (surrogate routing's level)
  node_id key;
  contact origin, sender;
  contact server;            // publish / unpublish: the object's server
  std::uint32_t ttl_ms = 0;  // publish: the pointer's lifetime
  std::uint16_t hops = 0;
  std::uint16_t n = 1;
  bytes payload;
  template <class A> void serialize(A& ar) {
    ar(hop, nonce, what, level, key, origin, sender, server, ttl_ms, hops, n, payload);
  }
};
using route_ack = detail::route_ack;        // wire id 2: acknowledges a route hop or a multicast hop
using lookup_reply = detail::lookup_reply;  // wire id 3
struct locate_reply {  // from the first node holding a pointer, or the root (servers empty: not found)
  static constexpr message_type wire_id = 4;
  static constexpr std::string_view wire_name = "locate_reply";
  std::uint64_t nonce = 0;
  std::uint16_t hops = 0;
  std::vector<contact> servers;
  template <class A> void serialize(A& ar) { ar(nonce, hops, servers); }
};
struct join_state {  // to a joining node: rows from the path, the whole table from the root
  static constexpr message_type wire_id = 5;
  static constexpr std::string_view wire_name = "join_state";
  std::uint64_t nonce = 0;
  contact sender;
  bool root = false;
  std::vector<contact> entries;
  template <class A> void serialize(A& ar) { ar(nonce, sender, root, entries); }
};
struct multicast {  // insertion's acknowledged multicast to the nodes sharing a prefix
  static constexpr message_type wire_id = 6;
  static constexpr std::string_view wire_name = "multicast";
  std::uint64_t hop = 0;
  std::uint64_t nonce = 0;
  contact sender, newcomer;
  std::uint8_t level = 0;
  template <class A> void serialize(A& ar) { ar(hop, nonce, sender, newcomer, level); }
};
struct hello {  // a multicast's node to the newcomer: "here I am"
  static constexpr message_type wire_id = 7;
  static constexpr std::string_view wire_name = "hello";
  contact sender;
  template <class A> void serialize(A& ar) { ar(sender); }
};
struct backpointer {  // "you are in my table" (add) or "no longer" (remove)
  static constexpr message_type wire_id = 8;
  static constexpr std::string_view wire_name = "backpointer";
  contact sender;
  bool add = true;
  std::uint64_t seq = 0;  // the sender's counter: a reordered older add or remove is ignored
  template <class A> void serialize(A& ar) { ar(sender, add, seq); }
};
struct probe {  // heartbeat and round-trip measurement; the reply echoes the nonce
  static constexpr message_type wire_id = 9;
  static constexpr std::string_view wire_name = "probe";
  std::uint64_t nonce = 0;
  contact sender;
  bool reply = false;
  bool joined = false;
  bool neighbour = false;  // "you are in my table": refreshes the backpointer (soft state)
  std::uint64_t seq = 0;   // as backpointer's
  template <class A> void serialize(A& ar) { ar(nonce, sender, reply, joined, neighbour, seq); }
};
struct row_request {  // "your slot (level, digit)?", or digit 0xFF: "the rows we share"
  static constexpr message_type wire_id = 10;
  static constexpr std::string_view wire_name = "row_request";
  contact sender;
  std::uint8_t level = 0;
  std::uint8_t digit = 0;
  template <class A> void serialize(A& ar) { ar(sender, level, digit); }
};
struct row_reply {
  static constexpr message_type wire_id = 11;
  static constexpr std::string_view wire_name = "row_reply";
  contact sender;
  std::vector<contact> entries;
  template <class A> void serialize(A& ar) { ar(sender, entries); }
};
struct leaving {  // "I am leaving; these are my neighbours, to replace me"
  static constexpr message_type wire_id = 12;
  static constexpr std::string_view wire_name = "leaving";
  contact sender;
  std::vector<contact> replacements;
  template <class A> void serialize(A& ar) { ar(sender, replacements); }
};
struct pointer_record {
  node_id guid;
  contact server;
  std::uint32_t ttl_ms = 0;
  template <class A> void serialize(A& ar) { ar(guid, server, ttl_ms); }
};
struct pointers {  // an old root hands the pointers a newcomer is now the root of
  static constexpr message_type wire_id = 13;
  static constexpr std::string_view wire_name = "pointers";
  contact sender;
  std::vector<pointer_record> records;
  template <class A> void serialize(A& ar) { ar(sender, records); }
};
}  // namespace tapestry_msg

template <Env E> class tapestry {
 public:
  using messages =
      wire::message_set<tapestry_msg::route, tapestry_msg::route_ack, tapestry_msg::lookup_reply,
                        tapestry_msg::locate_reply, tapestry_msg::join_state, tapestry_msg::multicast,
                        tapestry_msg::hello, tapestry_msg::backpointer, tapestry_msg::probe, tapestry_msg::row_request,
                        tapestry_msg::row_reply, tapestry_msg::leaving, tapestry_msg::pointers>;
  /// What it counts (env.count), declared: dcp/core/counter_set.hpp.
  static constexpr auto counters =
      dcp::join(detail::failed_peers_counters, detail::payload_delivery_counters, detail::routed_lookups_counters,
                detail::hop_forwarder_counters, detail::join_attempts_counters,
                dcp::counter_set{{"route_failed",
                                  "publish_failed",
                                  "published_full",
                                  "spoofed_sender",
                                  "bad_message",
                                  "stale_reply",
                                  "spoofed_reply",
                                  "unbound_contact",
                                  "multicast_duplicates",
                                  "neighbour_left",
                                  "stale_backpointer",
                                  "backpointers_full",
                                  "unbound_id",
                                  "slot_evictions",
                                  "probe_budget_exhausted",
                                  "slot_repairs",
                                  "hop_limit",
                                  "located_by_pointer",
                                  "hop_detours",
                                  "insertions",
                                  "delivered",
                                  "published_at_root",
                                  "locate_not_found",
                                  "multicast_lost",
                                  "multicast_memory_full",
                                  "pointers_full",
                                  "neighbour_failures",
                                  "rejoins",
                                  "lookup_failed",
                                  "request_retries",
                                  "locate_failed",
                                  "multicast_timeouts"}});
  static constexpr std::string_view name = "tapestry";
  static constexpr protocol_id default_id = 85;
  /// Base 16: 4 bits a digit, 40 levels of a 160-bit id.
  static constexpr unsigned digit_bits = 4;
  static constexpr unsigned base = 1u << digit_bits;
  static constexpr std::size_t levels = node_id::bits / digit_bits;
  /// Most entries any message carries: a whole neighbour map.
  static constexpr std::size_t max_entries = levels * base * 8;
  static constexpr std::size_t max_owners = 64;

  tapestry(E env, tapestry_config cfg = {})
      : env_(std::move(env)),
        cfg_(std::move(cfg)),
        lookups_(
            env_, self_, cfg_.lookup_timeout, "request_retries", max_owners, [this] { return fresh_nonce(); },
            [this](tapestry_msg::route m) { handle_route(std::move(m)); }),
        locates_(env_, cfg_.lookup_timeout, cfg_.lookup_timeout / 4, "locate_failed", "request_retries"),
        hops_(env_, self_, cfg_.rpc_timeout, cfg_.max_hops_in_flight, [this] { return fresh_nonce(); }),
        mc_hops_(
            env_, self_, cfg_.rpc_timeout, cfg_.max_hops_in_flight, [this] { return fresh_nonce(); },
            "multicast_timeouts"),
        join_(
            env_, cfg_.lookup_timeout / 2, cfg_.bootstrap_retry, cfg_.bootstrap_retry_max, [this] { return joined_; },
            [this](const contact& seed) { send_join(seed); }),
        joining_(env_, cfg_.rpc_timeout, [this] { finish_join(); }),
        failed_(env_, cfg_.failed_memory),
        delivery_(env_) {
    cfg_.validate();
    bound_ = dht::binds_ids(cfg_.bind_ids, env_.self());
    self_ = {own_id("tapestry", bound_, cfg_.id, env_.self(), env_.rng()), env_.self()};
    hops_.on_timeout([this](hop p) { hop_timed_out(std::move(p)); });
    mc_hops_.on_timeout([this](multicast_hop p) { multicast_timed_out(std::move(p)); });
  }
  tapestry(const tapestry&) = delete;
  tapestry& operator=(const tapestry&) = delete;
  ~tapestry() { stop(); }

  // ---- digits and the metric ----

  /// Digit l (0 = most significant) of an id, in base 16.
  static unsigned digit(const node_id& id, std::size_t l) noexcept {
    const auto b = id.bytes()[l / 2];
    return l % 2 ? b & 0xFu : b >> 4;
  }
  /// Leading digits two ids share.
  static std::size_t shared_digits(const node_id& a, const node_id& b) noexcept {
    return a.common_prefix_bits(b) / digit_bits;
  }
  /// Surrogate routing's metric: digit l of the result is (id_l - key_l) mod 16.
  /// Surrogate routing takes, level by level, the smallest such digit that exists,
  /// so in a consistent network the root of a key is the node at the smallest
  /// distance (read most significant digit first).
  static node_id distance(const node_id& key, const node_id& id) noexcept {
    std::array<std::uint8_t, node_id::size> v{};
    const auto& k = key.bytes();
    const auto& i = id.bytes();
    for (std::size_t b = 0; b < node_id::size; ++b) {
      const unsigned hi = ((i[b] >> 4) - (k[b] >> 4)) & 0xFu;
      const unsigned lo = ((i[b] & 0xFu) - (k[b] & 0xFu)) & 0xFu;
      v[b] = static_cast<std::uint8_t>(hi << 4 | lo);
    }
    return node_id(v);
  }

  // ---- Router ----

  const contact& self() const noexcept { return self_; }
  bool joined() const noexcept { return joined_; }
  /// Whether this node holds others' ids to their addresses (BEP 42).
  bool binds_ids() const noexcept { return bound_; }

  /// Joins through any of `seeds` (retrying with backoff while none answers), or
  /// founds the overlay alone when `seeds` is empty.
  void bootstrap(const std::vector<contact>& seeds) {
    const bool has_seeds = join_.set_seeds(seeds, self_.addr);
    bootstrapped_ = true;
    if (!has_seeds) return become_joined();
    join_.start();
  }

  void lookup(const node_id& key, std::size_t n, lookup_callback cb) {
    lookups_.lookup(joined_, key, n, std::move(cb));
  }
  void route(const node_id& key, bytes payload) { lookups_.route(joined_, key, std::move(payload)); }

  /// The n known nodes (table and self) closest to `key` in surrogate order: the
  /// root first when this node is the root, then the nodes that become the root
  /// as the ones before them fail.
  std::vector<contact> closest(const node_id& key, std::size_t n) const {
    auto all = known();
    std::sort(all.begin(), all.end(),
              [&](const contact& a, const contact& b) { return distance(key, a.id) < distance(key, b.id); });
    if (all.size() > n) all.resize(n);
    return all;
  }

  void on_deliver(deliver_callback f) { delivery_.on_deliver(std::move(f)); }

  /// Leaves (§4.3): tells the table and the backpointers, with replacements, and stops.
  void leave() {
    if (!joined_) return;
    auto mine = known();
    std::erase_if(mine, [&](const contact& c) { return c.addr == self_.addr; });
    std::vector<address> told;
    const auto tell = [&](const address& a) {
      if (std::find(told.begin(), told.end(), a) != told.end()) return;
      told.push_back(a);
      env_.send(a, tapestry_msg::leaving{self_, mine});
    };
    for (auto& c : mine) tell(c.addr);
    for (auto& [a, b] : backpointers_)
      if (b.present) tell(a);
    joined_ = false;
    bootstrapped_ = false;
    stop();
    published_.clear();
    lookups_.fail_all(make_error_code(errc::not_joined));
    locates_.fail_all(make_error_code(errc::not_joined));
  }

  // ---- object location (DOLR) ----

  /// Publishes `guid` as served by this node: pointers toward its root, refreshed
  /// every republish_interval until unpublish(guid).
  void publish(const node_id& guid) {
    if (!joined_) return env_.count("publish_failed");
    if (!published_.contains(guid) && published_.size() >= cfg_.max_published) return env_.count("published_full");
    published_.insert(guid);
    send_publish(guid, tapestry_msg::kind::publish);
  }
  /// Stops serving `guid`: removes this server's pointers on the path to the root
  /// (any the message misses expire after pointer_ttl).
  void unpublish(const node_id& guid) {
    published_.erase(guid);
    if (joined_) send_publish(guid, tapestry_msg::kind::unpublish);
  }
  /// Finds servers of `guid`: routes toward its root and turns at the first
  /// pointer; cb gets the servers or the error, after the call has returned.
  /// errc::not_found when the root holds none.
  void locate(const node_id& guid, locate_callback cb) {
    if (!joined_) return defer(env_, [cb = std::move(cb)] { cb(make_error_code(errc::not_joined)); });
    locates_.open(fresh_nonce(), std::move(cb), [this, guid](std::uint64_t nonce) { route_locate(nonce, guid); });
  }

  // ---- inspection ----

  const tapestry_config& config() const noexcept { return cfg_; }
  /// Slot (level, digit), closest first; empty when unknown.
  std::vector<contact> slot(std::size_t level, unsigned digit) const {
    std::vector<contact> out;
    if (level < table_.size() && digit < base)
      for (auto& e : table_[level][digit]) out.push_back(e.who);
    return out;
  }
  std::size_t table_levels() const noexcept { return table_.size(); }
  std::size_t table_entries() const noexcept {
    std::size_t n = 0;
    for (auto& r : table_)
      for (auto& s : r) n += s.size();
    return n;
  }
  /// Every node in the table (self excluded).
  std::vector<contact> neighbours() const {
    auto k = known();
    k.erase(k.begin());
    return k;
  }
  std::vector<address> backpointers() const {
    std::vector<address> out;
    for (auto& [a, b] : backpointers_)
      if (b.present) out.push_back(a);
    return out;
  }
  /// The live pointers this node holds for `guid`.
  std::vector<contact> pointers_for(const node_id& guid) const {
    std::vector<contact> out;
    if (auto it = pointers_.find(guid); it != pointers_.end())
      for (auto& p : it->second)
        if (p.expires > env_.now()) out.push_back(p.server);
    return out;
  }
  std::size_t pointer_count() const noexcept { return pointer_total_; }
  bool publishes(const node_id& guid) const { return published_.contains(guid); }
  /// The first hop of a route for `key` from here (self when this node is the root).
  contact next_hop_toward(const node_id& key) const { return next_hop(key, 0, {}).first; }

  // ---- messages ----

  void on_message(const address& from, const tapestry_msg::route& m) {
    if (m.sender.addr != from) return env_.count("spoofed_sender");
    if (m.level > levels || m.hops > cfg_.max_hops || m.n == 0 || m.n > max_owners ||
        m.what > static_cast<std::uint8_t>(tapestry_msg::kind::locate) ||
        std::chrono::milliseconds(m.ttl_ms) > cfg_.max_pointer_ttl)
      return env_.count("bad_message");
    if (!joined_) return;  // not part of the overlay: no ack, so the sender routes around us
    env_.send(from, tapestry_msg::route_ack{m.hop});
    const bool join = m.what == static_cast<std::uint8_t>(tapestry_msg::kind::join);
    if (!join || m.sender.addr != m.origin.addr) heard_from(m.sender);
    tapestry_msg::route next = m;
    ++next.hops;
    handle_route(std::move(next));
  }
  void on_message(const address& from, const tapestry_msg::route_ack& m) {
    if (hops_.acknowledge(from, m.hop)) {
      silences_.erase(from);
      heard_at_[from] = env_.now();
      return;
    }
    if (mc_hops_.acknowledge(from, m.hop)) return (void)silences_.erase(from);
    env_.count("stale_reply");
  }
  void on_message(const address& from, const tapestry_msg::lookup_reply& m) {
    if (m.owners.size() > max_owners) return env_.count("bad_message");
    if (!lookups_.contains(m.nonce)) return env_.count("stale_reply");
    // the root answers with itself first: a reply from anyone else is not a root's (a
    // relay that saw the nonce, or a forger)
    if (m.owners.empty() || m.owners.front().addr != from) return env_.count("spoofed_reply");
    if (bound_ && std::any_of(m.owners.begin(), m.owners.end(), [&](const contact& c) { return !admissible(true, c); }))
      return env_.count("unbound_contact");
    lookups_.complete(m.nonce, lookup_result{m.owners, m.hops});
  }
  void on_message(const address& from, const tapestry_msg::locate_reply& m) {
    (void)from;
    if (m.servers.size() > cfg_.max_servers_per_object) return env_.count("bad_message");
    if (!locates_.contains(m.nonce)) return env_.count("stale_reply");
    complete_locate(m.nonce, m.servers, m.hops);
  }
  void on_message(const address& from, const tapestry_msg::join_state& m) {
    if (m.sender.addr != from) return env_.count("spoofed_sender");
    if (m.entries.size() > max_entries) return env_.count("bad_message");
    if (!bootstrapped_) return;
    heard_from(m.sender);
    // others' tables may name nodes that crashed since: each is probed, and enters on its answer
    for (auto& c : m.entries) consider(c);
    // joined once the probes have answered (or rpc_timeout passed): a table of the root
    // alone would route keys that belong to nodes near us to it
    if (m.root && !joined_ && m.nonce == join_nonce_) joining_.root_answered(verifying_.empty());
  }
  void on_message(const address& from, const tapestry_msg::multicast& m) {
    if (m.sender.addr != from || m.newcomer.addr.empty())
      return env_.count(m.sender.addr != from ? "spoofed_sender" : "bad_message");
    if (m.level > levels) return env_.count("bad_message");
    if (!joined_) return;
    env_.send(from, tapestry_msg::route_ack{m.hop});
    heard_from(m.sender);
    if (seen_multicasts_.contains(m.nonce)) return env_.count("multicast_duplicates");
    multicast_here(m.nonce, m.newcomer, m.level);
  }
  void on_message(const address& from, const tapestry_msg::hello& m) {
    if (m.sender.addr != from) return env_.count("spoofed_sender");
    if (!bootstrapped_) return;
    heard_from(m.sender);
    measure(m.sender);  // a candidate for our table: its round trip decides its place
  }
  void on_message(const address& from, const tapestry_msg::backpointer& m) {
    if (m.sender.addr != from) return env_.count("spoofed_sender");
    note_backpointer(from, m.seq, m.add);
  }
  void on_message(const address& from, const tapestry_msg::probe& m) {
    if (m.sender.addr != from) return env_.count("spoofed_sender");
    if (!m.reply) {
      if (!bootstrapped_) return;
      if (m.neighbour) note_backpointer(from, m.seq, true);
      // a joined node that probes us is alive: it may fill a slot of ours (a node every other
      // node dropped, after a spell of losses, comes back this way)
      if (m.joined && joined_) heard_from(m.sender);
      env_.send(from, tapestry_msg::probe{m.nonce, self_, true, joined_, false, 0});
      return;
    }
    auto v = verifying_.find(from);
    if (v == verifying_.end() || v->second.nonce != m.nonce) return env_.count("stale_reply");
    const duration rtt = env_.now() - v->second.sent;
    verifying_.erase(v);
    silences_.erase(from);
    heard_at_[from] = env_.now();
    // the answer to a probe sent after we declared it failed: it is back
    failed_.erase(from);
    // a node answering "joined", or one already in our table (a newcomer of a multicast)
    if (m.joined || in_table(from)) learn(m.sender, rtt);
    if (!joined_) joining_.probe_answered(verifying_.empty());
  }
  void on_message(const address& from, const tapestry_msg::row_request& m) {
    if (m.sender.addr != from) return env_.count("spoofed_sender");
    if (m.level >= levels || (m.digit >= base && m.digit != 0xFF)) return env_.count("bad_message");
    if (!joined_) return;
    heard_from(m.sender);
    std::vector<contact> out;
    if (m.digit == 0xFF) {
      // the rows we share with the asker, and the next: valid candidates for its table
      const std::size_t upto = std::min(shared_digits(self_.id, m.sender.id) + 1, table_.size());
      for (std::size_t l = m.level; l < upto; ++l)
        for (auto& s : table_[l])
          for (auto& e : s) out.push_back(e.who);
      out.push_back(self_);
    } else {
      out = slot(m.level, m.digit);
    }
    env_.send(from, tapestry_msg::row_reply{self_, std::move(out)});
  }
  void on_message(const address& from, const tapestry_msg::row_reply& m) {
    if (m.sender.addr != from) return env_.count("spoofed_sender");
    if (m.entries.size() > max_entries) return env_.count("bad_message");
    heard_from(m.sender);
    for (auto& c : m.entries) consider(c);
  }
  void on_message(const address& from, const tapestry_msg::leaving& m) {
    if (m.sender.addr != from) return env_.count("spoofed_sender");
    if (m.replacements.size() > max_entries) return env_.count("bad_message");
    env_.count("neighbour_left");
    failed_.mark(from);
    forget(from);
    backpointers_.erase(from);
    for (auto& c : m.replacements) consider(c);
  }
  void on_message(const address& from, const tapestry_msg::pointers& m) {
    if (m.sender.addr != from) return env_.count("spoofed_sender");
    if (m.records.size() > cfg_.max_pointers) return env_.count("bad_message");
    for (auto& r : m.records) {
      if (std::chrono::milliseconds(r.ttl_ms) > cfg_.max_pointer_ttl || r.server.addr.empty()) {
        env_.count("bad_message");
        continue;
      }
      add_pointer(r.guid, r.server, std::chrono::milliseconds(r.ttl_ms));
    }
  }
  void on_unreachable(const address& peer) {
    failed_.mark(peer);
    forget(peer);
  }

 private:
  struct entry {
    contact who;
    duration rtt = duration::max();  // unmeasured sorts last
  };
  using slot_t = std::vector<entry>;
  using row_t = std::vector<slot_t>;
  /// A routed hop remembers the message's level at this node: a detour resumes from it.
  using hop = typename detail::hop_forwarder<E, tapestry_msg::route, std::uint8_t>::pending;
  struct multicast_branch {
    std::vector<contact> candidates;  // the slot's entries, tried in order
    std::size_t index = 0;            // the one sent to
  };
  using multicast_hop = typename detail::hop_forwarder<E, tapestry_msg::multicast, multicast_branch>::pending;
  struct object_pointer {
    contact server;
    time_point expires;
  };
  struct probe_state {
    std::uint64_t nonce = 0;
    time_point sent;
  };

  // ---- requests ----

  /// Routes a locate (pending_requests sends it again every lookup_timeout / 4 until an
  /// answer or the deadline: the pointer holder's reply is not acknowledged).
  void route_locate(std::uint64_t nonce, const node_id& guid) {
    handle_route(detail::origin_route<tapestry_msg::route>(static_cast<std::uint8_t>(tapestry_msg::kind::locate), guid,
                                                           self_, nonce));
  }
  void send_publish(const node_id& guid, tapestry_msg::kind what) {
    auto m = detail::origin_route<tapestry_msg::route>(static_cast<std::uint8_t>(what), guid, self_);
    m.server = self_;
    m.ttl_ms =
        static_cast<std::uint32_t>(std::chrono::duration_cast<std::chrono::milliseconds>(cfg_.pointer_ttl).count());
    handle_route(std::move(m));
  }
  /// The servers a pointer named (plus the hop to one of them), or not_found.
  void complete_locate(std::uint64_t nonce, std::vector<contact> servers, unsigned hops) {
    if (servers.empty()) return (void)locates_.complete(nonce, make_error_code(errc::not_found));
    const unsigned to_pointer = hops;
    locates_.complete(nonce, {}, locate_result{std::move(servers), hops + 1, to_pointer});
  }

  void stop() {
    maintain_timer_.stop();
    republish_timer_.stop();
    join_.stop();
    joining_.cancel();
    verifying_.clear();
    hops_.clear();
    mc_hops_.clear();
  }

  // ---- the neighbour map ----

  /// Backpointers are soft state: the explicit add, then every heartbeat probe from
  /// the node, refresh one; one not refreshed for failure_threshold + 2 rounds expires.
  void note_backpointer(const address& from, std::uint64_t seq, bool present) {
    auto it = backpointers_.find(from);
    if (it != backpointers_.end() && seq < it->second.seq) return env_.count("stale_backpointer");
    if (it == backpointers_.end()) {
      if (!present) return;
      if (backpointers_.size() >= cfg_.max_backpointers) return env_.count("backpointers_full");
      it = backpointers_.emplace(from, backpointer_state{}).first;
    }
    it->second = backpointer_state{env_.now(), seq, present};
  }

  row_t& row_at(std::size_t level) {
    while (table_.size() <= level) table_.emplace_back(base);
    return table_[level];
  }

  std::vector<contact> known() const {
    std::vector<contact> out{self_};
    for (auto& r : table_)
      for (auto& s : r)
        for (auto& e : s)
          if (std::none_of(out.begin(), out.end(), [&](const contact& o) { return o.addr == e.who.addr; }))
            out.push_back(e.who);
    return out;
  }

  bool in_table(const address& a) const {
    for (auto& r : table_)
      for (auto& s : r)
        for (auto& e : s)
          if (e.who.addr == a) return true;
    return false;
  }

  /// Puts c in its slot (rtt: a fresh measurement, or none), keeping the c closest.
  void learn(const contact& c, std::optional<duration> rtt = std::nullopt) {
    if (c.addr.empty() || c.addr == self_.addr || c.id == self_.id) return;
    if (!admissible(bound_, c)) return env_.count("unbound_id");
    const std::size_t level = shared_digits(self_.id, c.id);
    if (level >= levels) return;
    auto& s = row_at(level)[digit(c.id, level)];
    auto it = std::find_if(s.begin(), s.end(), [&](const entry& e) { return e.who.addr == c.addr; });
    if (it != s.end()) {
      it->who = c;
      // a moving average: one slow answer does not reorder the slot
      if (rtt) it->rtt = it->rtt == duration::max() ? *rtt : (it->rtt * 3 + *rtt) / 4;
    } else {
      // the same id at another address (a restart): the old address is gone
      std::erase_if(s, [&](const entry& e) { return e.who.id == c.id; });
      // a full slot takes a newcomer only when it is clearly closer than its farthest entry:
      // round trips are noisy, and a slot that flaps churns backpointers for nothing
      if (s.size() >= cfg_.entries_per_slot &&
          (!rtt || s.back().rtt == duration::max() ? !rtt : *rtt * 4 >= s.back().rtt * 3))
        return note_tried(c.addr);
      s.push_back(entry{c, rtt ? *rtt : duration::max()});
      env_.send(c.addr, tapestry_msg::backpointer{self_, true, ++backpointer_seq_});
    }
    std::stable_sort(s.begin(), s.end(), [](const entry& a, const entry& b) { return a.rtt < b.rtt; });
    while (s.size() > cfg_.entries_per_slot) {
      const address dropped = s.back().who.addr;
      s.pop_back();
      note_tried(dropped);
      env_.count("slot_evictions");
      env_.send(dropped, tapestry_msg::backpointer{self_, false, ++backpointer_seq_});
    }
  }

  /// Would c enter the table (a free place, or a slot it might beat on closeness)?
  bool would_use(const contact& c) const {
    if (c.addr.empty() || c.addr == self_.addr || c.id == self_.id) return false;
    const std::size_t level = shared_digits(self_.id, c.id);
    if (level >= levels) return false;
    if (level >= table_.size()) return true;
    auto& s = table_[level][digit(c.id, level)];
    return std::none_of(s.begin(), s.end(), [&](const entry& e) { return e.who.addr == c.addr; });
  }

  /// A node measured and not kept (or evicted): not measured again for failed_memory,
  /// so that the row exchange does not re-probe the same candidates every round.
  void note_tried(const address& a) {
    if (tried_.size() >= 4 * max_verifying()) {
      const time_point now = env_.now();
      std::erase_if(tried_, [&](const auto& t) { return now - t.second >= cfg_.failed_memory; });
      if (tried_.size() >= 4 * max_verifying()) return;
    }
    tried_[a] = env_.now();
  }

  /// A node named by someone else: probed, and learned (with its round trip) when it answers.
  void consider(const contact& c) {
    if (!would_use(c) || failed_.recent(c.addr)) return;
    if (!admissible(bound_, c)) return env_.count("unbound_contact");
    if (auto t = tried_.find(c.addr); t != tried_.end() && env_.now() - t->second < cfg_.failed_memory) return;
    measure(c);
  }
  /// A message from the node itself: alive. It takes a free place at once; a full
  /// slot it could only enter by closeness, which a probe measures.
  void heard_from(const contact& c) {
    const auto reprobe = [&] {
      if (would_use(c)) measure(c);
    };
    if (!failed_.heard_alive(c, self_, bound_, reprobe)) return;
    const std::size_t level = shared_digits(self_.id, c.id);
    if (level >= levels) return;
    if (level < table_.size()) {
      auto& s = table_[level][digit(c.id, level)];
      if (std::any_of(s.begin(), s.end(), [&](const entry& e) { return e.who.addr == c.addr; })) return;
      if (s.size() >= cfg_.entries_per_slot) return;
    }
    learn(c);
    measure(c);
  }
  void measure(const contact& c) {
    if (c.addr.empty() || c.addr == self_.addr) return;
    if (auto v = verifying_.find(c.addr); v != verifying_.end() && env_.now() - v->second.sent < 2 * cfg_.rpc_timeout)
      return;
    if (!verifying_.contains(c.addr) && verifying_.size() >= max_verifying())
      return env_.count("probe_budget_exhausted");
    std::uint64_t nonce = 0;
    while (nonce == 0) nonce = env_.rng()();
    verifying_[c.addr] = probe_state{nonce, env_.now()};
    env_.send(c.addr, tapestry_msg::probe{nonce, self_, false, joined_, in_table(c.addr), ++backpointer_seq_});
  }
  std::size_t max_verifying() const noexcept { return 2 * levels * base + 256; }

  /// Drops a failed node everywhere; an emptied slot is asked of its level's other nodes.
  void forget(const address& peer) {
    for (std::size_t l = 0; l < table_.size(); ++l)
      for (unsigned d = 0; d < base; ++d) {
        auto& s = table_[l][d];
        const auto before = s.size();
        std::erase_if(s, [&](const entry& e) { return e.who.addr == peer; });
        if (s.size() != before && s.empty()) repair_slot(l, d);
      }
    silences_.erase(peer);
    heard_at_.erase(peer);
    verifying_.erase(peer);
  }
  /// Repair from the same level (§4.2): the other nodes of level l share our first l
  /// digits, so their slot (l, d) is ours too.
  void repair_slot(std::size_t l, unsigned d) {
    env_.count("slot_repairs");
    unsigned asked = 0;
    for (auto& s : table_[l])
      for (auto& e : s)
        if (asked < base) {
          ++asked;
          env_.send(e.who.addr,
                    tapestry_msg::row_request{self_, static_cast<std::uint8_t>(l), static_cast<std::uint8_t>(d)});
          break;  // one node per slot
        }
  }

  /// Surrogate routing (§3.2): from `level`, the slot of the key's digit, else the
  /// next filled digit of the level (wrapping); this node's own digit moves on to
  /// the next level here. Returns (next hop, level there), or (self, levels) at the root.
  std::pair<contact, std::size_t> next_hop(const node_id& key, std::size_t level,
                                           const std::vector<address>& excluded) const {
    const auto ok = [&](const entry& e) {
      return std::find(excluded.begin(), excluded.end(), e.who.addr) == excluded.end();
    };
    for (std::size_t l = level; l < levels; ++l) {
      const unsigned want = digit(key, l), mine = digit(self_.id, l);
      for (unsigned k = 0; k < base; ++k) {
        const unsigned d = (want + k) % base;
        if (d == mine) break;  // this node fills the slot: resolve the next level here
        if (l >= table_.size()) continue;
        for (auto& e : table_[l][d])
          if (ok(e)) return {e.who, l + 1};
      }
    }
    return {self_, levels};
  }

  void handle_route(tapestry_msg::route m, std::vector<address> excluded = {}) {
    if (m.hops >= cfg_.max_hops) return env_.count("hop_limit");
    const auto what = static_cast<tapestry_msg::kind>(m.what);
    // what every node on the path does, before passing the message on
    switch (what) {
      case tapestry_msg::kind::publish:
        if (excluded.empty()) add_pointer(m.key, m.server, std::chrono::milliseconds(m.ttl_ms));
        break;
      case tapestry_msg::kind::unpublish:
        remove_pointer(m.key, m.server.addr);
        break;
      case tapestry_msg::kind::locate:
        if (auto servers = pointers_for(m.key); !servers.empty()) {
          env_.count("located_by_pointer");
          return reply_locate(m, std::move(servers));
        }
        break;
      case tapestry_msg::kind::join:
        if (m.origin.addr != self_.addr && excluded.empty()) {
          // each node on the join path gives the newcomer its rows up to the prefix they share
          const std::size_t upto = std::min(shared_digits(m.key, self_.id) + 1, table_.size());
          std::vector<contact> rows;
          for (std::size_t l = 0; l < upto; ++l)
            for (auto& s : table_[l])
              for (auto& e : s) rows.push_back(e.who);
          env_.send(m.origin.addr, tapestry_msg::join_state{m.nonce, self_, false, std::move(rows)});
        }
        break;
      default:
        break;
    }
    std::vector<address> ex = excluded;
    if (what == tapestry_msg::kind::join) ex.push_back(m.origin.addr);  // the newcomer is not a candidate root
    const auto hop_to = next_hop(m.key, m.level, ex);
    if (hop_to.first.addr == self_.addr) return deliver_here(m);
    const std::uint8_t here = m.level;
    m.level = static_cast<std::uint8_t>(hop_to.second);
    hops_.send(std::move(m), hop_to.first, std::move(excluded), 1, here);
  }

  void hop_timed_out(hop p) {
    const std::uint8_t level_here = p.note;
    // a silence counts only when nothing came from the node since this hop was sent: with
    // many hops to one node in flight, timeouts of lost ones arrive after others' acks
    auto heard = heard_at_.find(p.next.addr);
    const bool silent = heard == heard_at_.end() || heard->second < p.sent;
    const bool failed = silent && ++silences_[p.next.addr] >= cfg_.failure_threshold;
    if (failed) {
      failed_.mark(p.next.addr);
      forget(p.next.addr);
    }
    if (!joined_) return;
    // the message or its ack may just have been lost. Another entry of the same slot
    // leads to the same root: go around at once. When the node is its slot's last, going
    // around changes the root (as if it had left): resend instead, until it is declared failed
    auto around = p.excluded;
    around.push_back(p.next.addr);
    const auto alt = next_hop(p.msg.key, level_here, around);
    const bool same_slot = alt.first.addr != self_.addr && alt.second == p.msg.level && p.msg.level > 0 &&
        digit(alt.first.id, p.msg.level - 1u) == digit(p.next.id, p.msg.level - 1u);
    if (!failed && !same_slot)
      return hops_.send(std::move(p.msg), p.next, std::move(p.excluded), p.attempts + 1, level_here);
    env_.count("hop_detours");
    p.msg.level = level_here;
    handle_route(std::move(p.msg), std::move(around));
  }

  void reply_locate(const tapestry_msg::route& m, std::vector<contact> servers) {
    if (servers.size() > cfg_.max_servers_per_object) servers.resize(cfg_.max_servers_per_object);
    if (m.origin.addr == self_.addr) return complete_locate(m.nonce, std::move(servers), m.hops);
    env_.send(m.origin.addr, tapestry_msg::locate_reply{m.nonce, m.hops, std::move(servers)});
  }

  void deliver_here(const tapestry_msg::route& m) {
    switch (static_cast<tapestry_msg::kind>(m.what)) {
      case tapestry_msg::kind::lookup: {
        // surrogate routing ended here, so this node is the root as far as the live nodes
        // it reached know: itself first, even when its table still names a closer node that
        // crashed (which the route went around), then the next roots in order
        auto owners = closest(m.key, std::size_t{m.n} + 1);
        std::erase_if(owners, [&](const contact& c) { return c.addr == self_.addr; });
        owners.insert(owners.begin(), self_);
        if (owners.size() > m.n) owners.resize(m.n);
        return lookups_.answer(m, std::move(owners));
      }
      case tapestry_msg::kind::join: {
        // an id that does not derive from its address would enter no one's table: no
        // join state, no multicast (nor the traffic it would cost)
        if (!admissible(bound_, m.origin)) return env_.count("unbound_id");
        // the newcomer's surrogate: our whole table, then the multicast to the nodes
        // sharing our common prefix, then the pointers it is now the root of
        std::vector<contact> state = known();
        env_.send(m.origin.addr, tapestry_msg::join_state{m.nonce, self_, true, std::move(state)});
        if (seen_multicasts_.contains(m.nonce)) return;  // a resent join: already multicast
        env_.count("insertions");
        multicast_here(m.nonce, m.origin, shared_digits(self_.id, m.origin.id));
        hand_pointers(m.origin);
        return;
      }
      case tapestry_msg::kind::app:
        return delivery_.deliver(m.key, m.origin, m.payload);
      case tapestry_msg::kind::publish:
        env_.count("published_at_root");
        return;
      case tapestry_msg::kind::unpublish:
        return;
      case tapestry_msg::kind::locate:
        env_.count("locate_not_found");
        return reply_locate(m, {});
    }
    env_.count("bad_message");
  }

  // ---- insertion ----

  /// The acknowledged multicast (§4.1): this node takes in the newcomer, says hello,
  /// and passes the multicast to one node of each slot of its levels >= level.
  void multicast_here(std::uint64_t nonce, const contact& newcomer, std::size_t level) {
    remember_multicast(nonce);
    if (newcomer.addr == self_.addr) return;
    learn(newcomer);  // it fills the hole at our level |α| (or backs up a slot)
    measure(newcomer);
    env_.send(newcomer.addr, tapestry_msg::hello{self_});
    for (std::size_t l = level; l < table_.size(); ++l)
      for (unsigned d = 0; d < base; ++d) {
        if (d == digit(self_.id, l)) continue;
        std::vector<contact> candidates;
        for (auto& e : table_[l][d])
          if (e.who.addr != newcomer.addr) candidates.push_back(e.who);
        if (candidates.empty()) continue;
        tapestry_msg::multicast m{0, nonce, self_, newcomer, static_cast<std::uint8_t>(l + 1)};
        send_multicast(m, multicast_branch{std::move(candidates), 0});
      }
  }
  /// A multicast branch is acknowledged hop by hop like a route: sent twice to an entry,
  /// then to the slot's next one.
  void send_multicast(tapestry_msg::multicast m, multicast_branch b, unsigned attempts = 1) {
    if (b.index >= b.candidates.size()) return env_.count("multicast_lost");
    const contact next = b.candidates[b.index];
    mc_hops_.send(std::move(m), next, {}, attempts, std::move(b));
  }
  void multicast_timed_out(multicast_hop p) {
    if (p.attempts < 2) return send_multicast(std::move(p.msg), std::move(p.note), p.attempts + 1);
    ++p.note.index;  // the slot's next entry takes the branch
    send_multicast(std::move(p.msg), std::move(p.note));
  }
  void remember_multicast(std::uint64_t nonce) {
    const time_point now = env_.now();
    std::erase_if(seen_multicasts_, [&](const auto& s) { return now - s.second > cfg_.failed_memory; });
    if (seen_multicasts_.size() >= 4096) return env_.count("multicast_memory_full");
    seen_multicasts_[nonce] = now;
  }
  /// The pointers whose root the newcomer now is (it is closer to their guid than we are).
  void hand_pointers(const contact& newcomer) {
    std::vector<tapestry_msg::pointer_record> out;
    const time_point now = env_.now();
    for (auto& [guid, list] : pointers_) {
      if (!(distance(guid, newcomer.id) < distance(guid, self_.id))) continue;
      for (auto& p : list)
        if (p.expires > now && out.size() < cfg_.max_pointers)
          out.push_back({guid, p.server,
                         static_cast<std::uint32_t>(
                             std::chrono::duration_cast<std::chrono::milliseconds>(p.expires - now).count())});
    }
    if (!out.empty()) env_.send(newcomer.addr, tapestry_msg::pointers{self_, std::move(out)});
  }

  // ---- object pointers ----

  void add_pointer(const node_id& guid, const contact& server, duration ttl) {
    if (server.addr.empty()) return env_.count("bad_message");
    const time_point expires = env_.now() + ttl;
    auto it = pointers_.find(guid);
    if (it == pointers_.end()) {
      if (pointer_total_ >= cfg_.max_pointers) expire_pointers();
      if (pointer_total_ >= cfg_.max_pointers) return env_.count("pointers_full");
      it = pointers_.emplace(guid, std::vector<object_pointer>{}).first;
    }
    auto& list = it->second;
    for (auto& p : list)
      if (p.server.addr == server.addr) {
        p.server = server;
        p.expires = std::max(p.expires, expires);
        return;
      }
    if (list.size() >= cfg_.max_servers_per_object || pointer_total_ >= cfg_.max_pointers)
      return env_.count("pointers_full");
    list.push_back({server, expires});
    ++pointer_total_;
  }
  void remove_pointer(const node_id& guid, const address& server) {
    auto it = pointers_.find(guid);
    if (it == pointers_.end()) return;
    const auto before = it->second.size();
    std::erase_if(it->second, [&](const object_pointer& p) { return p.server.addr == server; });
    pointer_total_ -= before - it->second.size();
    if (it->second.empty()) pointers_.erase(it);
  }
  void expire_pointers() {
    const time_point now = env_.now();
    for (auto it = pointers_.begin(); it != pointers_.end();) {
      const auto before = it->second.size();
      std::erase_if(it->second, [&](const object_pointer& p) { return p.expires <= now; });
      pointer_total_ -= before - it->second.size();
      it = it->second.empty() ? pointers_.erase(it) : std::next(it);
    }
  }

  // ---- join and maintenance ----

  std::uint64_t fresh_nonce() {
    return detail::unguessable_nonce(env_, [this](std::uint64_t n) {
      return n == join_nonce_ || lookups_.contains(n) || locates_.contains(n) || hops_.contains(n) ||
          mc_hops_.contains(n);
    });
  }

  void become_joined() {
    joined_ = true;
    join_.stop();
    maintain_timer_.start(
        env_, cfg_.maintain_interval, [this] { maintain(); }, detail::random_phase(env_, cfg_.maintain_interval));
    republish_timer_.start(env_, cfg_.republish_interval, [this] {
      for (auto& g : std::vector<node_id>(published_.begin(), published_.end()))
        send_publish(g, tapestry_msg::kind::publish);
    });
  }
  void finish_join() {
    if (joined_) return;
    become_joined();
  }

  /// A join request routed to our own id: the root's join_state ends the attempts.
  void send_join(const contact& seed) {
    join_nonce_ = fresh_nonce();
    const auto what = static_cast<std::uint8_t>(tapestry_msg::kind::join);
    env_.send(seed.addr, detail::join_request<tapestry_msg::route>(what, self_, join_nonce_, fresh_nonce()));
  }

  void maintain() {
    if (!joined_) return;
    // heartbeats: every neighbour is probed; one silent for failure_threshold rounds has failed.
    // A round counts as silent only once its probe has had its time (rpc_timeout may be
    // longer than the round): while one is in flight, wait
    const auto in_flight = [&](const contact& c) {
      auto v = verifying_.find(c.addr);
      return v != verifying_.end() && env_.now() - v->second.sent < 2 * cfg_.rpc_timeout;
    };
    detail::heartbeat_round(
        neighbours(), silences_, cfg_.failure_threshold, in_flight, [&](const contact& c) { measure(c); },
        [&](const address& a) {
          env_.count("neighbour_failures");
          failed_.mark(a);
          forget(a);
        });
    // bounded memory
    std::erase_if(verifying_, [&](const auto& v) { return env_.now() - v.second.sent > 2 * cfg_.rpc_timeout; });
    failed_.expire();
    std::erase_if(tried_, [&](const auto& f) { return env_.now() - f.second >= cfg_.failed_memory; });
    for (auto it = silences_.begin(); it != silences_.end();)
      it = in_table(it->first) ? std::next(it) : silences_.erase(it);
    for (auto it = heard_at_.begin(); it != heard_at_.end();)
      it = in_table(it->first) ? std::next(it) : heard_at_.erase(it);
    expire_pointers();
    const duration backpointer_life = (cfg_.failure_threshold + 2) * cfg_.maintain_interval;
    std::erase_if(backpointers_, [&](const auto& b) { return env_.now() - b.second.heard > backpointer_life; });
    // one row exchange: a random level, a random node of it, which shares that level's prefix
    // with us, so its rows up to that level are ours too. Fills the holes that lost probes and
    // concurrent insertions leave, level by level (deep levels have few nodes: picking a
    // level first, not a node, gives them their share)
    std::vector<std::size_t> filled;
    for (std::size_t l = 0; l < table_.size(); ++l)
      if (std::any_of(table_[l].begin(), table_[l].end(), [](const slot_t& s) { return !s.empty(); }))
        filled.push_back(l);
    if (!filled.empty()) {
      const std::size_t l = filled[env_.rng().below(filled.size())];
      std::vector<contact> at_level;
      for (auto& s : table_[l])
        for (auto& e : s) at_level.push_back(e.who);
      const contact& c = at_level[env_.rng().below(at_level.size())];
      env_.send(c.addr, tapestry_msg::row_request{self_, 0, 0xFF});
    } else if (!join_.seeds().empty()) {  // we lost everyone: join again
      env_.count("rejoins");
      joined_ = false;
      stop();
      join_.start();
    }
  }

  E env_;
  tapestry_config cfg_;
  contact self_;
  detail::routed_lookups<E, tapestry_msg::route> lookups_;
  detail::pending_requests<E, locate_result> locates_;
  detail::hop_forwarder<E, tapestry_msg::route, std::uint8_t> hops_;
  detail::hop_forwarder<E, tapestry_msg::multicast, multicast_branch> mc_hops_;
  detail::join_attempts<E> join_;
  detail::join_settling<E> joining_;
  detail::failed_peers<E> failed_;
  detail::payload_delivery<E> delivery_;
  std::vector<row_t> table_;
  struct backpointer_state {
    time_point heard;
    std::uint64_t seq = 0;
    bool present = false;  // false: a remove, kept until it expires so a late add cannot undo it
  };
  std::unordered_map<address, backpointer_state> backpointers_;
  std::uint64_t backpointer_seq_ = 0;
  bool joined_ = false, bootstrapped_ = false;
  bool bound_ = false;  // ids bound to addresses (BEP 42)
  std::uint64_t join_nonce_ = 0;
  std::unordered_map<std::uint64_t, time_point> seen_multicasts_;
  std::unordered_map<address, unsigned> silences_;
  std::unordered_map<address, time_point> heard_at_;  // last ack or probe answer: a table member's
  std::unordered_map<address, time_point> tried_;
  std::unordered_map<address, probe_state> verifying_;
  std::map<node_id, std::vector<object_pointer>> pointers_;
  std::size_t pointer_total_ = 0;
  std::set<node_id> published_;
  periodic<E> maintain_timer_, republish_timer_;
};

}  // namespace dcp::dht
