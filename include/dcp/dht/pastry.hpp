#pragma once
// Pastry (Rowstron, Druschel, Middleware 2001).
//
// Ids are read as digits of b bits (b = 4: hexadecimal). A key belongs to the
// node whose id is numerically closest to it on the ring. Each node keeps
//   - a leaf set: the l/2 closest smaller and l/2 closest larger ids (l = 16),
//   - a routing table: row r holds, for each digit d, a node that shares the
//     first r digits with us and has d as digit r.
// A message for key k is delivered to the numerically closest leaf when k
// falls within the leaf set; otherwise it goes to the table entry sharing one
// more digit with k; failing that (rare), to any known node that shares as
// many digits and is numerically closer. Each hop fixes a digit, so a route
// takes fewer than ⌈log_{2^b} N⌉ hops.
//
// Routing is recursive, as in the paper, with a per-hop acknowledgement: a
// node that does not acknowledge within rpc_timeout is removed from the
// forwarder's state and the message goes to the next-best hop (leaf-set
// repair and lazy routing-table repair, §2.4). The root answers a lookup
// directly to its origin with its closest leaves.
//
// Joining node X asks a contact A (assumed nearby: the simulator has no
// proximity metric, so "nearby" is the caller's choice of A) to route a join
// message to key X. Every node on the path sends X its routing-table rows;
// the root Z, numerically closest to X, also sends its leaf set. X then
// announces itself to every node in its new state.
//
// Leaf sets are kept alive by periodic probes: a leaf silent for
// failure_threshold rounds is removed, and the farthest live leaf on that
// side is asked for its leaf set to refill it. Delivery is guaranteed unless
// l/2 nodes with adjacent ids fail together (§2.4); then the ring splits and
// lookups near the hole fail (with errc::lookup_failed after lookup_timeout)
// or reach a wrong root, until the survivors rejoin.
//
// Hostile input: a sender contact must carry the transport's address
// ("spoofed_sender"); a hop's ack is taken only from the hop it was sent to,
// and a lookup's reply, whose root the origin cannot name in advance, only
// with the random 64-bit nonce of a lookup in flight ("stale_reply"); join
// and hop nonces are random too, and a reply must name its sender among the
// owners, as a root's does ("spoofed_reply"). Node ids are bound to addresses
// over dcp::net (pastry_config::bind_ids, BEP 42): a node cannot place itself
// next to a key at will; in the simulator they are the sender's word unless a
// test asks for binding.
#include <algorithm>
#include <bit>
#include <cstdint>
#include <functional>
#include <optional>
#include <string_view>
#include <unordered_map>
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
#include "dcp/dht/detail/random_phase.hpp"
#include "dcp/dht/detail/route_messages.hpp"
#include "dcp/dht/detail/routed_lookups.hpp"
#include "dcp/dht/detail/unguessable_nonce.hpp"
#include "dcp/dht/error.hpp"
#include "dcp/dht/id_binding.hpp"
#include "dcp/dht/router.hpp"
#include "dcp/wire/message.hpp"

namespace dcp::dht {

struct pastry_config {
  /// Bits per digit (1, 2 or 4; the routing table has 2^b columns).
  unsigned b = 4;
  /// Leaf set size l (even): at least l/2 on each side. Each side grows to 2·log2 N
  /// (N estimated from the leaf set's span) up to max_leaf_side, so that the ring
  /// survives the crash of half its nodes at once: l/2 adjacent failures split it
  /// (§2.4), and at 50% a run of h adjacent crashes has probability N·2^-h.
  std::size_t leaf_set = 16;
  std::size_t max_leaf_side = 32;
  duration rpc_timeout = 500ms;
  /// How often leaves are probed and neighbours' leaf sets exchanged.
  duration leaf_interval = 1s;
  /// Consecutive silent probes after which a leaf is declared failed.
  unsigned failure_threshold = 3;
  /// How long a failed node is not probed again when others still name it. Only
  /// an economy: a node enters the leaf set only on evidence that it is alive (a
  /// message from it, or its answer to a probe), however old the table naming it.
  duration failed_memory = 60s;
  /// A lookup not answered within this fails with errc::lookup_failed.
  duration lookup_timeout = 5s;
  /// Hops after which a message is dropped (a loop from inconsistent state).
  unsigned max_hops = 64;
  /// Messages this node has forwarded and not yet seen acknowledged; beyond it one
  /// more is dropped ("hops_full") and its origin's resend carries on.
  std::size_t max_hops_in_flight = 1 << 16;
  duration bootstrap_retry = 500ms;
  duration bootstrap_retry_max = 30s;
  std::optional<node_id> id;
  /// Whether ids must derive from addresses (BEP 42; see dcp/dht/id_binding.hpp):
  /// automatic is on over dcp::net, off in the simulator. A node whose id does
  /// not derive from its address enters no leaf set or routing table
  /// ("unbound_id" when it speaks for itself, "unbound_contact" when named).
  id_binding bind_ids = id_binding::automatic;

  void validate() const {
    if (b != 1 && b != 2 && b != 4) throw error(dcp::errc::invalid_config, "pastry: b must be 1, 2 or 4");
    if (leaf_set < 2 || leaf_set % 2) throw error(dcp::errc::invalid_config, "pastry: leaf_set must be even and >= 2");
    if (max_leaf_side < leaf_set / 2 || max_leaf_side > 256)
      throw error(dcp::errc::invalid_config, "pastry: need leaf_set/2 <= max_leaf_side <= 256");
    if (rpc_timeout <= duration::zero() || leaf_interval <= duration::zero() || lookup_timeout <= rpc_timeout)
      throw error(dcp::errc::invalid_config,
                  "pastry: need rpc_timeout > 0, leaf_interval > 0, lookup_timeout > rpc_timeout");
    if (failed_memory <= duration::zero()) throw error(dcp::errc::invalid_config, "pastry: failed_memory must be > 0");
    if (failure_threshold < 1 || max_hops < 1 || max_hops_in_flight < 1)
      throw error(dcp::errc::invalid_config, "pastry: failure_threshold, max_hops and max_hops_in_flight must be >= 1");
    if (bootstrap_retry <= duration::zero() || bootstrap_retry_max < bootstrap_retry)
      throw error(dcp::errc::invalid_config, "pastry: need 0 < bootstrap_retry <= bootstrap_retry_max");
  }
};

namespace pastry_msg {
enum class kind : std::uint8_t { lookup = 0, join = 1, app = 2 };  // detail::route_kind's codes
struct route {
  static constexpr message_type wire_id = 1;
  static constexpr std::string_view wire_name = "route";
  std::uint64_t hop = 0;    // this hop's id, acknowledged by route_ack
  std::uint64_t nonce = 0;  // the origin's request id
  std::uint8_t what = 0;    // kind
  node_id key;
  contact origin, sender;
  std::uint16_t hops = 0;
  std::uint16_t n = 1;
  bytes payload;
  template <class A> void serialize(A& ar) { ar(hop, nonce, what, key, origin, sender, hops, n, payload); }
};
using route_ack = detail::route_ack;        // wire id 2
using lookup_reply = detail::lookup_reply;  // wire id 3
struct join_state {                         // to a joining node: routing rows, and the leaf set from the root
  static constexpr message_type wire_id = 4;
  static constexpr std::string_view wire_name = "join_state";
  std::uint64_t nonce = 0;
  contact sender;
  bool root = false;
  std::vector<contact> entries;  // table rows and, from the root, its leaf set
  template <class A> void serialize(A& ar) { ar(nonce, sender, root, entries); }
};
struct announce {  // "I have joined; here I am"
  static constexpr message_type wire_id = 5;
  static constexpr std::string_view wire_name = "announce";
  contact sender;
  template <class A> void serialize(A& ar) { ar(sender); }
};
struct leaf_exchange {  // a leaf set, sent to neighbours; reply asks for theirs back
  static constexpr message_type wire_id = 6;
  static constexpr std::string_view wire_name = "leaf_exchange";
  contact sender;
  bool want_reply = false;
  std::vector<contact> leaves;
  template <class A> void serialize(A& ar) { ar(sender, want_reply, leaves); }
};
struct probe {  // liveness: of a leaf, or of a node named by someone else before it enters our state
  static constexpr message_type wire_id = 7;
  static constexpr std::string_view wire_name = "probe";
  contact sender;
  bool reply = false;
  bool joined = false;  // a joining node probes too; it is not learned before it has joined
  template <class A> void serialize(A& ar) { ar(sender, reply, joined); }
};
struct row_request {  // lazy table repair: "your entry (row, digit)?"
  static constexpr message_type wire_id = 8;
  static constexpr std::string_view wire_name = "row_request";
  contact sender;
  std::uint16_t row = 0;
  std::uint8_t digit = 0;
  template <class A> void serialize(A& ar) { ar(sender, row, digit); }
};
struct row_reply {
  static constexpr message_type wire_id = 9;
  static constexpr std::string_view wire_name = "row_reply";
  contact sender;
  contact entry;
  template <class A> void serialize(A& ar) { ar(sender, entry); }
};
}  // namespace pastry_msg

template <Env E> class pastry {
  friend struct testing::global_view;  // tests/dht/global_view.hpp: converged state for tests

 public:
  using messages = wire::message_set<pastry_msg::route, pastry_msg::route_ack, pastry_msg::lookup_reply,
                                     pastry_msg::join_state, pastry_msg::announce, pastry_msg::leaf_exchange,
                                     pastry_msg::probe, pastry_msg::row_request, pastry_msg::row_reply>;
  /// What it counts (env.count), declared: dcp/core/counter_set.hpp.
  static constexpr auto counters =
      dcp::join(detail::failed_peers_counters, detail::payload_delivery_counters, detail::routed_lookups_counters,
                detail::hop_forwarder_counters, detail::join_attempts_counters,
                dcp::counter_set{{"route_failed", "spoofed_sender", "stale_reply", "spoofed_reply", "unbound_contact",
                                  "bad_join_state", "bad_leaf_exchange", "bad_row_request", "unbound_id",
                                  "probe_budget_exhausted", "verify_probes", "table_repairs", "hop_limit", "delivered",
                                  "bad_route_kind", "leaf_failures", "rejoins", "lookup_failed", "lookup_retries"}});
  static constexpr std::string_view name = "pastry";
  static constexpr protocol_id default_id = 81;

  pastry(E env, pastry_config cfg = {})
      : env_(std::move(env)),
        cfg_(std::move(cfg)),
        lookups_(
            env_, self_, cfg_.lookup_timeout, "lookup_retries", 0xFFFF, [this] { return fresh_nonce(); },
            [this](pastry_msg::route m) { handle_route(std::move(m)); }),
        hops_(env_, self_, cfg_.rpc_timeout, cfg_.max_hops_in_flight, [this] { return fresh_nonce(); }),
        join_(
            env_, cfg_.lookup_timeout / 2, cfg_.bootstrap_retry, cfg_.bootstrap_retry_max, [this] { return joined_; },
            [this](const contact& seed) { send_join(seed); }),
        joining_(env_, cfg_.rpc_timeout, [this] { finish_join(); }),
        failed_(env_, cfg_.failed_memory),
        delivery_(env_) {
    cfg_.validate();
    bound_ = dht::binds_ids(cfg_.bind_ids, env_.self());
    self_ = {own_id("pastry", bound_, cfg_.id, env_.self(), env_.rng()), env_.self()};
    hops_.on_timeout([this](hop p) { hop_timed_out(std::move(p)); });
  }
  pastry(const pastry&) = delete;
  pastry& operator=(const pastry&) = delete;
  ~pastry() { stop(); }

  // ---- Router ----

  const contact& self() const noexcept { return self_; }
  bool joined() const noexcept { return joined_; }
  /// Whether this node holds others' ids to their addresses (BEP 42).
  bool binds_ids() const noexcept { return bound_; }

  void bootstrap(const std::vector<contact>& seeds) {
    if (!join_.set_seeds(seeds, self_.addr)) return become_joined();
    join_.start();
  }

  void lookup(const node_id& key, std::size_t n, lookup_callback cb) {
    lookups_.lookup(joined_, key, n, std::move(cb));
  }
  void route(const node_id& key, bytes payload) { lookups_.route(joined_, key, std::move(payload)); }

  /// The n known nodes numerically closest to `key`: from the leaf set and self
  /// when the key falls within the leaf set (the leaf set is probed; table
  /// entries are repaired only lazily and may be dead), else from all we know.
  std::vector<contact> closest(const node_id& key, std::size_t n) const {
    std::vector<contact> all;
    if (in_leaf_range(key)) {
      all = leaves();
      all.push_back(self_);
    } else {
      all = known();
    }
    sort_by_distance(all, key);
    if (all.size() > n) all.resize(n);
    return all;
  }

  void on_deliver(deliver_callback f) { delivery_.on_deliver(std::move(f)); }

  /// The node a message for `key` goes to next from here, skipping `excluded`; self
  /// when this node is the key's root. The common API's local_lookup (Dabek et al.,
  /// IPTPS 2003): a layer that acts at every hop of a route (Scribe builds its trees
  /// from join routes) walks the route one step at a time with it.
  contact next_hop_toward(const node_id& key, const std::vector<address>& excluded = {}) const {
    return next_hop(key, excluded);
  }

  /// Leaves: tells the leaf set (so each side repairs at once) and stops.
  void leave() {
    if (!joined_) return;
    for (auto& c : leaves())
      env_.send(c.addr, pastry_msg::leaf_exchange{contact{self_.id, address{}}, false, leaves()});
    joined_ = false;
    stop();
    lookups_.fail_all(make_error_code(errc::not_joined));
  }

  /// Numerical distance on the ring: the shorter way round.
  static node_id distance(const node_id& key, const node_id& id) noexcept {
    const node_id a = id - key, b = key - id;
    return std::min(a, b);
  }

  // ---- inspection ----

  const pastry_config& config() const noexcept { return cfg_; }
  const std::vector<contact>& left() const noexcept { return left_; }    // smaller ids, closest first
  const std::vector<contact>& right() const noexcept { return right_; }  // larger ids, closest first
  std::vector<contact> leaves() const {
    std::vector<contact> out(left_);
    out.insert(out.end(), right_.begin(), right_.end());
    return out;
  }
  /// Routing-table entry (row, digit); empty when unknown.
  contact entry(std::size_t row, unsigned digit) const { return row < table_.size() ? table_[row][digit] : contact{}; }
  std::size_t rows() const noexcept { return table_.size(); }
  std::size_t table_entries() const noexcept {
    std::size_t n = 0;
    for (auto& r : table_)
      for (auto& c : r) n += !c.empty();
    return n;
  }

  // ---- messages ----

  void on_message(const address& from, const pastry_msg::route& m) {
    if (m.sender.addr != from) return env_.count("spoofed_sender");
    if (!joined_) return;  // not part of the overlay: no ack, so the sender routes around us
    env_.send(from, pastry_msg::route_ack{m.hop});
    // a joining node is learned from its announce once it has joined, never from its join request
    const bool join = m.what == static_cast<std::uint8_t>(pastry_msg::kind::join);
    if (!join || m.sender.addr != m.origin.addr) heard_from(m.sender);
    if (!join && m.origin.addr != from) consider(m.origin);
    pastry_msg::route next = m;
    ++next.hops;
    handle_route(std::move(next));
  }
  void on_message(const address& from, const pastry_msg::route_ack& m) {
    if (hops_.acknowledge(from, m.hop)) silences_.erase(from);
  }
  void on_message(const address& from, const pastry_msg::lookup_reply& m) {
    if (!lookups_.contains(m.nonce)) return env_.count("stale_reply");
    // the root answers with its closest nodes, itself among them: a reply that does not
    // name its sender is not a root's (a relay that saw the nonce, or a forger)
    // (never empty: a root names itself at least)
    if (std::none_of(m.owners.begin(), m.owners.end(), [&](const contact& c) { return c.addr == from; }))
      return env_.count("spoofed_reply");
    if (bound_ && std::any_of(m.owners.begin(), m.owners.end(), [&](const contact& c) { return !admissible(true, c); }))
      return env_.count("unbound_contact");
    lookups_.complete(m.nonce, lookup_result{m.owners, m.hops});
  }
  void on_message(const address& from, const pastry_msg::join_state& m) {
    if (m.sender.addr != from) return env_.count("spoofed_sender");
    if (m.entries.size() > 4096) return env_.count("bad_join_state");
    heard_from(m.sender);
    // the entries are others' tables and leaf sets, possibly naming nodes that crashed since:
    // each one we would use is probed first, and enters our state when it answers
    for (auto& c : m.entries) consider(c);
    // joined once the root's leaves have answered (or rpc_timeout passed): a leaf set of
    // the root alone would make us claim keys that belong to its neighbours
    if (m.root && !joined_ && m.nonce == join_nonce_) joining_.root_answered(verifying_.empty());
  }
  void on_message(const address& from, const pastry_msg::announce& m) {
    if (m.sender.addr != from) return env_.count("spoofed_sender");
    if (joined_) heard_from(m.sender);
  }
  void on_message(const address& from, const pastry_msg::leaf_exchange& m) {
    if (m.leaves.size() > 4 * std::max(cfg_.leaf_set, 2 * cfg_.max_leaf_side)) return env_.count("bad_leaf_exchange");
    if (m.sender.addr.empty()) {  // a leaver: drop it, and take its leaves in its place
      forget(from);
      failed_.mark(from);
    } else if (m.sender.addr != from) {
      return env_.count("spoofed_sender");
    } else {
      heard_from(m.sender);
      silences_.erase(from);
    }
    for (auto& c : m.leaves) consider(c);
    if (m.want_reply && joined_) env_.send(from, pastry_msg::leaf_exchange{self_, false, leaves()});
  }
  void on_message(const address& from, const pastry_msg::probe& m) {
    if (m.sender.addr != from) return env_.count("spoofed_sender");
    silences_.erase(from);
    if (m.reply) {  // only joined nodes answer: it is alive and serving
      auto v = verifying_.find(from);
      const auto f = failed_.since(from);
      // the answer to a probe sent after we declared it failed: it is back (restarted, or
      // was only slow). Any other answer may have been in flight since before it failed.
      const bool fresh = v != verifying_.end() && (!f || v->second > *f);
      if (v != verifying_.end()) verifying_.erase(v);
      if (fresh)
        failed_.erase(from), learn(m.sender);
      else
        heard_from(m.sender);
      if (!joined_) joining_.probe_answered(verifying_.empty());
    } else if (joined_) {
      if (m.joined) heard_from(m.sender);
      env_.send(from, pastry_msg::probe{self_, true, true});
    }
  }
  void on_message(const address& from, const pastry_msg::row_request& m) {
    if (m.sender.addr != from) return env_.count("spoofed_sender");
    if (m.digit >= (1u << cfg_.b)) return env_.count("bad_row_request");
    env_.send(from, pastry_msg::row_reply{self_, entry(m.row, m.digit)});
  }
  void on_message(const address& from, const pastry_msg::row_reply& m) {
    if (m.sender.addr != from) return env_.count("spoofed_sender");
    // the entry comes from the replier's table, which may be stale: probed before use
    if (m.entry) consider(m.entry);
  }
  void on_unreachable(const address& peer) {
    failed_.mark(peer);
    forget(peer);
  }

 private:
  using row_t = std::vector<contact>;
  using hop = typename detail::hop_forwarder<E, pastry_msg::route>::pending;

  void stop() {
    leaf_timer_.stop();
    join_.stop();
    joining_.cancel();
    verifying_.clear();
    hops_.clear();
    lookups_.cancel_timers();
  }

  row_t& row_at(std::size_t row) {
    while (table_.size() <= row) table_.emplace_back(std::size_t{1} << cfg_.b);
    return table_[row];
  }
  node_id prefix_low(std::size_t row, unsigned digit) const {
    // our first `row` digits, then `digit`, then zeros
    auto v = self_.id.bytes();
    const std::size_t start = row * cfg_.b;
    for (std::size_t bit = start; bit < node_id::bits; ++bit)
      v[bit / 8] &= static_cast<std::uint8_t>(~(0x80u >> (bit % 8)));
    for (unsigned k = 0; k < cfg_.b; ++k)
      if (digit >> (cfg_.b - 1 - k) & 1) v[(start + k) / 8] |= static_cast<std::uint8_t>(0x80u >> ((start + k) % 8));
    return node_id(v);
  }
  std::size_t shared_digits(const node_id& a, const node_id& b) const noexcept {
    return a.common_prefix_bits(b) / cfg_.b;
  }

  static void sort_by_distance(std::vector<contact>& v, const node_id& key) {
    std::sort(v.begin(), v.end(), [&](const contact& a, const contact& b) {
      const node_id da = distance(key, a.id), db = distance(key, b.id);
      return da != db ? da < db : a.id < b.id;
    });
  }

  std::vector<contact> known() const {
    std::vector<contact> out{self_};
    auto add = [&](const contact& c) {
      if (c && std::none_of(out.begin(), out.end(), [&](const contact& o) { return o.addr == c.addr; }))
        out.push_back(c);
    };
    for (auto& c : left_) add(c);
    for (auto& c : right_) add(c);
    for (auto& r : table_)
      for (auto& c : r) add(c);
    return out;
  }

  /// A node named by someone else (a leaf set, a table row, a route's origin): it
  /// may have crashed since, so one we would use is probed, and learned only from
  /// its own answer. Dead nodes never come back into a leaf set this way, however
  /// stale the table that names them (issue 16).
  void consider(const contact& c) {
    if (c.addr.empty() || c.addr == self_.addr || c.id == self_.id) return;
    if (!admissible(bound_, c)) return env_.count("unbound_contact");
    if (!would_use(c) || failed_.recent(c.addr)) return;
    verify(c);
  }
  /// A message from the node itself: evidence it is alive, unless we declared it failed
  /// (or saw it leave) since, when the message may have been in flight from before: then
  /// only the answer to a new probe brings it back.
  void heard_from(const contact& c) {
    const auto reprobe = [&] {
      if (would_use(c)) verify(c);
    };
    if (failed_.heard_alive(c, self_, bound_, reprobe)) learn(c);
  }
  void verify(const contact& c) {
    if (auto v = verifying_.find(c.addr); v != verifying_.end()) {
      const auto f = failed_.since(c.addr);
      if (!f || v->second > *f) return;  // a probe since the failure is out
    }
    if (verifying_.size() >= max_verifying()) return env_.count("probe_budget_exhausted");
    verifying_[c.addr] = env_.now();
    env_.count("verify_probes");
    env_.send(c.addr, pastry_msg::probe{self_, false, joined_});
  }
  std::size_t max_verifying() const noexcept {
    return 8 * cfg_.leaf_set + (node_id::bits / cfg_.b) * (std::size_t{1} << cfg_.b);
  }
  /// Would learn(c) change our state: an empty table slot, or a place in the leaf set?
  bool would_use(const contact& c) const {
    const std::size_t row = shared_digits(self_.id, c.id);
    if (row < node_id::bits / cfg_.b && (row >= table_.size() || table_[row][c.id.digit(row, cfg_.b)].empty()))
      return true;
    const bool clockwise = (c.id - self_.id) < (self_.id - c.id);
    const auto& side = clockwise ? right_ : left_;
    if (std::any_of(side.begin(), side.end(), [&](const contact& o) { return o.addr == c.addr; })) return false;
    if (side.size() < leaf_side()) return true;
    const auto dist = [&](const contact& x) { return clockwise ? x.id - self_.id : self_.id - x.id; };
    return dist(c) < dist(side.back());
  }
  void finish_join() {
    if (joined_) return;
    become_joined();
    for (auto& c : known()) env_.send(c.addr, pastry_msg::announce{self_});
  }

  /// Adds a contact to the leaf set and the routing table where it fits. Only for
  /// nodes we have evidence are alive: the sender of a message, or a probe's answer.
  void learn(const contact& c) {
    if (c.addr.empty() || c.addr == self_.addr || c.id == self_.id) return;
    if (!admissible(bound_, c)) return env_.count("unbound_id");  // (a probe's answer)
    // routing table: keep the first node found for a slot (no proximity metric to prefer another)
    const std::size_t row = shared_digits(self_.id, c.id);
    if (row < node_id::bits / cfg_.b) {
      auto& slot = row_at(row)[c.id.digit(row, cfg_.b)];
      if (slot.addr == c.addr)
        slot = c;
      else if (slot.empty())
        slot = c;
    }
    // leaf set: among the l/2 closest on its side
    const bool clockwise = (c.id - self_.id) < (self_.id - c.id);
    auto& side = clockwise ? right_ : left_;
    if (std::any_of(side.begin(), side.end(), [&](const contact& o) { return o.addr == c.addr; })) return;
    const auto dist = [&](const contact& x) { return clockwise ? x.id - self_.id : self_.id - x.id; };
    auto pos = std::find_if(side.begin(), side.end(), [&](const contact& o) { return dist(c) < dist(o); });
    const std::size_t cap = leaf_side();
    if (pos == side.end() && side.size() >= cap) return;
    side.insert(pos, c);
    while (side.size() > cap) side.pop_back();
    dedupe_leaves();
  }
  void dedupe_leaves() {
    // in a network smaller than l a node may sit on both sides; keep it on its shorter one
    for (auto& c : right_)
      std::erase_if(left_, [&](const contact& o) { return o.addr == c.addr && (c.id - self_.id) < (self_.id - c.id); });
    for (auto& c : left_)
      std::erase_if(right_,
                    [&](const contact& o) { return o.addr == c.addr && !((c.id - self_.id) < (self_.id - c.id)); });
  }

  /// Drops a failed node everywhere; refills the leaf set from the farthest leaf on that side.
  void forget(const address& peer) {
    const auto gone = [&](const contact& c) { return c.addr == peer; };
    const bool was_left = std::any_of(left_.begin(), left_.end(), gone);
    const bool was_right = std::any_of(right_.begin(), right_.end(), gone);
    std::erase_if(left_, gone);
    std::erase_if(right_, gone);
    for (std::size_t row = 0; row < table_.size(); ++row)
      for (unsigned d = 0; d < table_[row].size(); ++d)
        if (table_[row][d].addr == peer) {
          table_[row][d] = {};
          repair_entry(row, d);
        }
    silences_.erase(peer);
    if (!joined_) return;
    if (was_left && !left_.empty()) env_.send(left_.back().addr, pastry_msg::leaf_exchange{self_, true, leaves()});
    if (was_right && !right_.empty()) env_.send(right_.back().addr, pastry_msg::leaf_exchange{self_, true, leaves()});
  }
  /// Lazy routing-table repair (§2.4): ask the other nodes of the row for their entry.
  void repair_entry(std::size_t row, unsigned digit) {
    env_.count("table_repairs");
    for (auto& c : table_[row])
      if (c)
        env_.send(c.addr,
                  pastry_msg::row_request{self_, static_cast<std::uint16_t>(row), static_cast<std::uint8_t>(digit)});
  }

  /// Leaves kept on each side: l/2, or 2·log2 N when larger (up to max_leaf_side). N is
  /// estimated from the leaf set: k leaves spanning a fraction f of the ring make N ≈ k/f.
  std::size_t leaf_side() const noexcept {
    const std::size_t base = cfg_.leaf_set / 2;
    if (left_.empty() || right_.empty()) return base;
    const std::size_t k = left_.size() + right_.size();
    const node_id span = right_.back().id - left_.back().id;
    const int log2_n = static_cast<int>(std::bit_width(k)) - 1 + (static_cast<int>(node_id::bits) - 1 - span.log2());
    const std::size_t want = log2_n > 0 ? 2 * static_cast<std::size_t>(log2_n) : base;
    return std::clamp(want, base, std::max(base, cfg_.max_leaf_side));
  }

  bool in_leaf_range(const node_id& key) const {
    const std::size_t half = cfg_.leaf_set / 2;
    // both sides short: fewer than l+1 nodes in all, and we know every one of them. One side
    // short only means it lost members not yet replaced: the range ends at what we have.
    if (left_.size() < half && right_.size() < half) return true;
    const node_id lo = left_.empty() ? self_.id : left_.back().id;
    const node_id hi = right_.empty() ? self_.id : right_.back().id;
    return (key - lo) <= (hi - lo);
  }

  /// The next hop for `key`, or self when this node is the root. Skips `excluded`.
  contact next_hop(const node_id& key, const std::vector<address>& excluded) const {
    const auto ok = [&](const contact& c) {
      return c && std::find(excluded.begin(), excluded.end(), c.addr) == excluded.end();
    };
    if (in_leaf_range(key)) {
      contact best = self_;
      for (auto* side : {&left_, &right_})
        for (auto& c : *side)
          if (ok(c) && distance(key, c.id) < distance(key, best.id)) best = c;
      return best;
    }
    const std::size_t l = shared_digits(key, self_.id);
    if (l < table_.size()) {
      const contact& c = table_[l][key.digit(l, cfg_.b)];
      if (ok(c)) return c;
    }
    // rare case: any known node sharing as long a prefix and numerically closer
    contact best = self_;
    node_id best_d = distance(key, self_.id);
    for (auto& c : known()) {
      if (!ok(c) || c.addr == self_.addr) continue;
      const node_id d = distance(key, c.id);
      if (shared_digits(key, c.id) >= l && d < best_d) best = c, best_d = d;
    }
    return best;
  }

  void handle_route(pastry_msg::route m, std::vector<address> excluded = {}) {
    if (m.hops >= cfg_.max_hops) return env_.count("hop_limit");
    const auto what = static_cast<pastry_msg::kind>(m.what);
    if (what == pastry_msg::kind::join && m.origin.addr != self_.addr) {
      // every node on the join path gives the newcomer its rows up to the shared prefix
      const std::size_t l = std::min(shared_digits(m.key, self_.id) + 1, table_.size());
      std::vector<contact> rows;
      for (std::size_t r = 0; r < l; ++r)
        for (auto& c : table_[r])
          if (c) rows.push_back(c);
      env_.send(m.origin.addr, pastry_msg::join_state{m.nonce, self_, false, std::move(rows)});
    }
    std::vector<address> ex = excluded;
    if (what == pastry_msg::kind::join) ex.push_back(m.origin.addr);  // the newcomer is not a candidate root
    const contact next = next_hop(m.key, ex);
    if (next.addr == self_.addr) return deliver_here(m);
    hops_.send(std::move(m), next, std::move(excluded));
  }

  void hop_timed_out(hop p) {
    // a hop out of the routing table is routed around at once (any other entry or leaf
    // makes progress too), as the paper's per-hop timeouts do; only a delivery inside
    // the leaf set, where skipping the root would reach a wrong one, is repeated once first
    const bool table_hop = !in_leaf_range(p.msg.key);
    if (++silences_[p.next.addr] >= cfg_.failure_threshold) {
      failed_.mark(p.next.addr);
      forget(p.next.addr);
    } else if (!table_hop && p.attempts < 2) {
      // the message or its ack may just have been lost: the same hop once more, as the best
      // next hop (excluding it could deliver at a wrong root). Duplicates are harmless: the
      // origin matches replies by nonce, and routed payloads are at-least-once.
      return hops_.send(std::move(p.msg), p.next, std::move(p.excluded), p.attempts + 1);
    }
    p.excluded.push_back(p.next.addr);
    if (!joined_ && p.msg.origin.addr == self_.addr) return;  // a join attempt: join_ tries again
    handle_route(std::move(p.msg), std::move(p.excluded));
  }

  void deliver_here(const pastry_msg::route& m) {
    switch (static_cast<pastry_msg::kind>(m.what)) {
      case pastry_msg::kind::lookup:
        return lookups_.answer(m, closest(m.key, m.n));
      case pastry_msg::kind::join: {
        // an id that does not derive from its address would enter no one's state: no join
        if (!admissible(bound_, m.origin)) return env_.count("unbound_id");
        std::vector<contact> state = leaves();
        state.push_back(self_);
        for (auto& r : table_)
          for (auto& c : r)
            if (c) state.push_back(c);
        // the newcomer enters our state when it announces itself, once it has joined: were it
        // learned now, a lost join_state would leave a node that is not serving in our leaf set
        env_.send(m.origin.addr, pastry_msg::join_state{m.nonce, self_, true, std::move(state)});
        return;
      }
      case pastry_msg::kind::app:
        return delivery_.deliver(m.key, m.origin, m.payload);
    }
    env_.count("bad_route_kind");
  }

  // ---- join and maintenance ----

  std::uint64_t fresh_nonce() {
    return detail::unguessable_nonce(
        env_, [this](std::uint64_t n) { return n == join_nonce_ || lookups_.contains(n) || hops_.contains(n); });
  }

  void become_joined() {
    joined_ = true;
    join_.stop();
    leaf_timer_.start(
        env_, cfg_.leaf_interval, [this] { maintain_leaves(); }, detail::random_phase(env_, cfg_.leaf_interval));
  }

  /// A join request routed to our own id: the root's join_state ends the attempts;
  /// silence means the seed or the path failed, and join_ tries the next seed.
  void send_join(const contact& seed) {
    join_nonce_ = fresh_nonce();
    const auto what = static_cast<std::uint8_t>(pastry_msg::kind::join);
    env_.send(seed.addr, detail::join_request<pastry_msg::route>(what, self_, join_nonce_, fresh_nonce()));
  }

  void maintain_leaves() {
    if (!joined_) return;
    // probe every leaf; one silent for failure_threshold rounds has failed
    detail::heartbeat_round(
        leaves(), silences_, cfg_.failure_threshold, [](const contact&) { return false; },
        [&](const contact& c) {
          env_.send(c.addr, pastry_msg::probe{self_, false, true});
        },
        [&](const address& a) {
          env_.count("leaf_failures");
          failed_.mark(a);
          forget(a);
        });
    // bounded memory: unanswered verification probes and expired failures are dropped
    std::erase_if(verifying_, [&](const auto& v) { return env_.now() - v.second > 2 * cfg_.rpc_timeout; });
    failed_.expire();
    // exchange whole leaf sets with the two adjacent nodes: how newcomers and repairs spread
    if (!left_.empty()) env_.send(left_.front().addr, pastry_msg::leaf_exchange{self_, true, leaves()});
    if (!right_.empty() && (left_.empty() || right_.front().addr != left_.front().addr))
      env_.send(right_.front().addr, pastry_msg::leaf_exchange{self_, true, leaves()});
    if (left_.empty() && right_.empty() && !join_.seeds().empty()) {  // we lost everyone: join again
      env_.count("rejoins");
      joined_ = false;
      stop();
      // stop() cancelled their deadlines: fail them now, or their callers wait forever
      lookups_.fail_all(make_error_code(errc::not_joined));
      join_.start();
    }
  }

  E env_;
  pastry_config cfg_;
  contact self_;
  detail::routed_lookups<E, pastry_msg::route> lookups_;
  detail::hop_forwarder<E, pastry_msg::route> hops_;
  detail::join_attempts<E> join_;
  detail::join_settling<E> joining_;
  detail::failed_peers<E> failed_;
  detail::payload_delivery<E> delivery_;
  std::vector<contact> left_, right_;  // closest first
  std::vector<row_t> table_;
  bool joined_ = false;
  bool bound_ = false;  // ids bound to addresses (BEP 42)
  std::uint64_t join_nonce_ = 0;
  std::unordered_map<address, unsigned> silences_;
  std::unordered_map<address, time_point> verifying_;  // probed before they enter our state
  periodic<E> leaf_timer_;
};

}  // namespace dcp::dht
