#pragma once
// Chord (Stoica, Morris, Karger, Kaashoek, Balakrishnan, SIGCOMM 2001).
//
// Nodes and keys sit on a ring of 2^m ids; a key belongs to its successor,
// the first node clockwise from it. Each node keeps
//   - a successor list of r nodes (survives r-1 adjacent failures; r grows to
//     2·log2 N, estimated from the list's span, so that half the nodes may fail),
//   - its predecessor,
//   - a finger table: finger i is successor(self + 2^i), so that every hop
//     at least halves the distance left and a lookup takes ~½·log2 N hops.
// Periodic maintenance repairs all three as nodes join, leave and crash:
// stabilize (ask the successor for its predecessor, adopt it if closer, then
// notify), fix-fingers (one finger per round, by a lookup), and
// check-predecessor (ping; forget it on silence).
//
// Lookups are iterative (§4.2 allows both): the origin asks a node for the
// key's successor; the node answers with its successor list when it is the
// key's predecessor, or with the fingers closest before the key. A node that
// does not answer within rpc_timeout is dropped from the origin's tables and
// the next candidate is tried, so lookups route around crashed nodes.
//
// Answers are confirmed, never taken on trust (issue 16): the last step asks
// the owner found whether the key falls in its range (predecessor, self]. A
// node that joined since the key's predecessor last stabilized is the owner's
// predecessor, so the lookup walks back to it; an owner that does not know its
// predecessor (it just lost it) cannot vouch for the answer, and the lookup
// asks again until confirm_patience() and then fails with errc::lookup_failed
// rather than return an owner that may be stale. For the range to be right,
// a node counts as joined only once its successor has taken it as predecessor
// (join_request), and learns its own predecessor from that successor: so no
// joined node ever lies between a node and its predecessor.
//
// Fingers are stored top-down and only as far as they differ from the
// successor: with N nodes among 2^160 ids, finger i for i below
// ~160 - log2 N is the successor anyway, so a node holds O(log N) fingers,
// not m.
//
// Hostile input: replies only from the peer asked, for a request in flight
// ("stale_reply"); a routed payload only from the origin it names
// ("spoofed_sender"). Ids are bound to addresses over dcp::net
// (chord_config::bind_ids, BEP 42): a node whose id does not derive from its
// address is no successor, predecessor, finger or lookup candidate
// ("unbound_id", "unbound_contact").
//
// Fault model: tolerates message loss, duplication and reordering (every
// reply is matched by nonce, duplicates are ignored), crashes of up to r-1
// consecutive nodes between stabilizations, and joins/leaves at any time.
// A partition splits the ring into rings that do not merge back by
// themselves; bootstrap() again through a node of the other side to merge.
#include <algorithm>
#include <bit>
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <optional>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <variant>
#include <vector>

#include "dcp/core/env.hpp"
#include "dcp/core/error.hpp"
#include "dcp/core/log.hpp"
#include "dcp/core/node_id.hpp"
#include "dcp/core/protocol.hpp"
#include "dcp/dht/contact.hpp"
#include "dcp/dht/detail/failed_peers.hpp"
#include "dcp/dht/detail/join_attempts.hpp"
#include "dcp/dht/detail/lookup_refusal.hpp"
#include "dcp/dht/detail/payload_delivery.hpp"
#include "dcp/dht/detail/peer_requests.hpp"
#include "dcp/dht/error.hpp"
#include "dcp/dht/id_binding.hpp"
#include "dcp/dht/router.hpp"
#include "dcp/wire/message.hpp"

namespace dcp::dht {

struct chord_config {
  /// Identifier bits m (1..160). Ids and keys keep their top m bits.
  unsigned bits = 160;
  /// Successor list length r, at least. The list grows to 2·log2 N (N estimated from
  /// the span of the list) up to max_successors: the paper's guarantee under the
  /// failure of half the nodes needs r = Ω(log N) (Theorem IV.5).
  std::size_t successors = 8;
  std::size_t max_successors = 48;
  duration stabilize_interval = 1s;
  duration fix_fingers_interval = 1s;
  duration check_predecessor_interval = 2s;
  /// A peer that has not answered within this is treated as failed for the request.
  duration rpc_timeout = 500ms;
  /// Consecutive unanswered probes after which the successor or predecessor is
  /// declared failed: with message loss p a live neighbour is unlinked with
  /// probability about (2p)^threshold per probe.
  unsigned failure_threshold = 3;
  /// How long a failed neighbour is not adopted back from others' stale lists.
  duration failed_memory = 5s;
  /// Peers asked one after the other before a lookup gives up.
  std::size_t max_lookup_queries = 64;
  /// First and longest pause between two bootstrap attempts (doubling).
  duration bootstrap_retry = 500ms;
  duration bootstrap_retry_max = 30s;
  /// This node's id; random (from the Env's rng) when unset, bound to the node's
  /// address when ids are (then a given id must derive from it: invalid_config).
  std::optional<node_id> id;
  /// Whether ids must derive from addresses (BEP 42; see dcp/dht/id_binding.hpp):
  /// automatic is on over dcp::net when bits = 160, off in the simulator. A
  /// bound id needs all 160 bits (the mask would clear the bits BEP 42 binds).
  id_binding bind_ids = id_binding::automatic;

  void validate() const {
    if (bits < 1 || bits > node_id::bits) throw error(dcp::errc::invalid_config, "chord: bits must be in 1..160");
    if (bind_ids == id_binding::bep42 && bits != node_id::bits)
      throw error(dcp::errc::invalid_config,
                  "chord: bind_ids = bep42 needs bits = 160 (a masked id loses the bits BEP 42 binds)");
    if (successors < 1) throw error(dcp::errc::invalid_config, "chord: the successor list needs at least 1 entry");
    if (max_successors < successors || max_successors > 256)
      throw error(dcp::errc::invalid_config, "chord: need successors <= max_successors <= 256");
    if (stabilize_interval <= duration::zero() || fix_fingers_interval <= duration::zero() ||
        check_predecessor_interval <= duration::zero() || rpc_timeout <= duration::zero())
      throw error(dcp::errc::invalid_config, "chord: intervals and timeouts must be > 0");
    if (bootstrap_retry <= duration::zero() || bootstrap_retry_max < bootstrap_retry)
      throw error(dcp::errc::invalid_config, "chord: need 0 < bootstrap_retry <= bootstrap_retry_max");
    if (failure_threshold < 1) throw error(dcp::errc::invalid_config, "chord: failure_threshold must be >= 1");
    if (max_lookup_queries < 1) throw error(dcp::errc::invalid_config, "chord: max_lookup_queries must be >= 1");
  }
};

namespace chord_msg {
struct find_successor {  // "who is the successor of key?"
  static constexpr message_type wire_id = 1;
  static constexpr std::string_view wire_name = "find_successor";
  std::uint64_t nonce = 0;
  node_id key;
  template <class A> void serialize(A& ar) { ar(nonce, key); }
};
struct found {  // "it is the first of these (my successor list)"
  static constexpr message_type wire_id = 2;
  static constexpr std::string_view wire_name = "found";
  std::uint64_t nonce = 0;
  std::vector<contact> successors;
  template <class A> void serialize(A& ar) { ar(nonce, successors); }
};
struct closer {  // "ask one of these, closest first; my successors, should they all be gone"
  static constexpr message_type wire_id = 3;
  static constexpr std::string_view wire_name = "closer";
  std::uint64_t nonce = 0;
  std::vector<contact> candidates;
  std::vector<contact> successors;
  template <class A> void serialize(A& ar) { ar(nonce, candidates, successors); }
};
struct get_state {  // stabilize: "your predecessor and successors?"
  static constexpr message_type wire_id = 4;
  static constexpr std::string_view wire_name = "get_state";
  std::uint64_t nonce = 0;
  template <class A> void serialize(A& ar) { ar(nonce); }
};
struct state {
  static constexpr message_type wire_id = 5;
  static constexpr std::string_view wire_name = "state";
  std::uint64_t nonce = 0;
  contact predecessor;  // empty when unknown
  std::vector<contact> successors;
  template <class A> void serialize(A& ar) { ar(nonce, predecessor, successors); }
};
struct notify {  // "I may be your predecessor"
  static constexpr message_type wire_id = 6;
  static constexpr std::string_view wire_name = "notify";
  contact self;
  template <class A> void serialize(A& ar) { ar(self); }
};
struct ping {
  static constexpr message_type wire_id = 7;
  static constexpr std::string_view wire_name = "ping";
  std::uint64_t nonce = 0;
  template <class A> void serialize(A& ar) { ar(nonce); }
};
struct pong {
  static constexpr message_type wire_id = 8;
  static constexpr std::string_view wire_name = "pong";
  std::uint64_t nonce = 0;
  template <class A> void serialize(A& ar) { ar(nonce); }
};
struct leaving {  // graceful leave: the leaver's neighbours, so both sides can splice it out
  static constexpr message_type wire_id = 9;
  static constexpr std::string_view wire_name = "leaving";
  contact self, predecessor;
  std::vector<contact> successors;
  template <class A> void serialize(A& ar) { ar(self, predecessor, successors); }
};
struct deliver {  // a routed payload, sent to the owner found by lookup
  static constexpr message_type wire_id = 10;
  static constexpr std::string_view wire_name = "deliver";
  node_id key;
  contact origin;
  bytes payload;
  template <class A> void serialize(A& ar) { ar(key, origin, payload); }
};
struct owner_query {  // a lookup's last step: "is key yours, after your predecessor?"
  static constexpr message_type wire_id = 11;
  static constexpr std::string_view wire_name = "owner_query";
  std::uint64_t nonce = 0;
  node_id key;
  template <class A> void serialize(A& ar) { ar(nonce, key); }
};
struct owner_reply {  // owns: key in (predecessor, self]; else the predecessor is closer (or unknown: empty)
  static constexpr message_type wire_id = 12;
  static constexpr std::string_view wire_name = "owner_reply";
  std::uint64_t nonce = 0;
  bool owns = false;
  contact self, predecessor;
  std::vector<contact> successors;
  template <class A> void serialize(A& ar) { ar(nonce, owns, self, predecessor, successors); }
};
struct join_request {  // "take me as your predecessor"
  static constexpr message_type wire_id = 13;
  static constexpr std::string_view wire_name = "join_request";
  std::uint64_t nonce = 0;
  contact self;
  template <class A> void serialize(A& ar) { ar(nonce, self); }
};
struct join_reply {  // accepted: your predecessor is my old one; else ask `predecessor`, closer to you
  static constexpr message_type wire_id = 14;
  static constexpr std::string_view wire_name = "join_reply";
  std::uint64_t nonce = 0;
  bool accepted = false;
  contact self, predecessor;
  std::vector<contact> successors;
  template <class A> void serialize(A& ar) { ar(nonce, accepted, self, predecessor, successors); }
};
}  // namespace chord_msg

template <Env E> class chord {
  friend struct testing::global_view;  // tests/dht/global_view.hpp: converged state for tests

 public:
  using messages = wire::message_set<chord_msg::find_successor, chord_msg::found, chord_msg::closer,
                                     chord_msg::get_state, chord_msg::state, chord_msg::notify, chord_msg::ping,
                                     chord_msg::pong, chord_msg::leaving, chord_msg::deliver, chord_msg::owner_query,
                                     chord_msg::owner_reply, chord_msg::join_request, chord_msg::join_reply>;
  /// What it counts (env.count), declared: dcp/core/counter_set.hpp.
  static constexpr auto counters =
      dcp::join(detail::failed_peers_counters, detail::payload_delivery_counters, detail::join_attempts_counters,
                dcp::counter_set{{"route_failed",
                                  "stale_reply",
                                  "bad_closer",
                                  "unbound_contact",
                                  "successor_walks",
                                  "bad_notify",
                                  "stale_notify",
                                  "unbound_id",
                                  "bad_leaving",
                                  "bad_owner_reply",
                                  "bad_join_request",
                                  "bad_join_reply",
                                  "id_collisions",
                                  "spoofed_sender",
                                  "delivered",
                                  "successor_fallbacks",
                                  "bad_found",
                                  "owner_timeouts",
                                  "lookup_timeouts",
                                  "owner_redirects",
                                  "owner_unconfirmed",
                                  "lookup_failed",
                                  "successor_list_exhausted",
                                  "rejoins",
                                  "predecessor_timeouts",
                                  "successor_timeouts"}});
  static constexpr std::string_view name = "chord";
  static constexpr protocol_id default_id = 80;

  chord(E env, chord_config cfg = {})
      : env_(std::move(env)),
        cfg_((cfg.validate(), std::move(cfg))),  // checked before the members below take its timeouts
        join_(
            env_, std::nullopt, cfg_.bootstrap_retry, cfg_.bootstrap_retry_max, [this] { return joined_; },
            [this](const contact&) { join_lookup(); }),
        joins_(env_, cfg_.rpc_timeout),
        stabilize_(env_, cfg_.rpc_timeout, "successor_timeouts"),
        pings_(env_, cfg_.rpc_timeout),
        queries_(env_, cfg_.rpc_timeout),
        failed_(env_, cfg_.failed_memory) {
    bound_ = cfg_.bits == node_id::bits && dht::binds_ids(cfg_.bind_ids, env_.self());
    self_ = {mask(own_id("chord", bound_, cfg_.id, env_.self(), env_.rng())), env_.self()};
    joins_.on_timeout([this](std::uint64_t, typename join_table::request r) { join_request_timed_out(r.note); });
    stabilize_.on_timeout([this](std::uint64_t, typename request_table::request r) { successor_timed_out(r.peer); });
    pings_.on_timeout([this](std::uint64_t, typename request_table::request r) { predecessor_timed_out(r.peer); });
    queries_.on_timeout(
        [this](std::uint64_t nonce, typename request_table::request r) { query_timed_out(nonce, r.peer); });
  }
  chord(const chord&) = delete;
  chord& operator=(const chord&) = delete;
  ~chord() {
    stop_timers();
    for (auto& [n, op] : lookups_) end_lookup(n, op);  // their callbacks die with us, unanswered
  }

  // ---- Router ----

  const contact& self() const noexcept { return self_; }
  bool joined() const noexcept { return joined_; }

  /// Joins through any of `seeds` (retrying with backoff while none answers), or
  /// founds a ring alone when `seeds` is empty.
  void bootstrap(const std::vector<contact>& seeds) {
    if (!join_.set_seeds(seeds, self_.addr)) {
      successors_.clear();
      predecessor_ = {};
      become_joined();
      return;
    }
    join_.start();
  }

  void lookup(const node_id& key, std::size_t n, lookup_callback cb) {
    if (detail::refuse_lookup(env_, joined_, n, std::numeric_limits<std::size_t>::max(), cb)) return;
    after_return done(env_);  // a lone node knows the owner at once: still answer after the call
    start_lookup(mask(key), n, {}, done.wrap(std::move(cb)));
    done.returned();
  }

  void route(const node_id& key, bytes payload) {
    detail::route_to_owner<chord_msg::deliver>(*this, env_, delivery_, key, std::move(payload));
  }

  /// The n known nodes that follow `key` on the ring (self included): the key's
  /// owner and replicas as far as this node knows.
  std::vector<contact> closest(const node_id& key, std::size_t n) const {
    std::vector<contact> known = known_nodes();
    const node_id k = mask(key);
    // clockwise distance from the key to the node; the owner has the smallest
    std::sort(known.begin(), known.end(), [&](const contact& a, const contact& b) { return (a.id - k) < (b.id - k); });
    if (known.size() > n) known.resize(n);
    return known;
  }

  void on_deliver(deliver_callback f) { delivery_.on_deliver(std::move(f)); }

  /// Chord's metric: the clockwise distance from the key to the node, so the
  /// key's successor is the closest.
  static node_id distance(const node_id& key, const node_id& id) noexcept { return id - key; }

  /// Leaves gracefully: tells the predecessor and successor so they splice this
  /// node out at once, then stops all maintenance.
  void leave() {
    if (!joined_) return;
    const contact succ = successor();
    chord_msg::leaving m{self_, predecessor_, successors_};
    if (succ && succ.addr != self_.addr) env_.send(succ.addr, m);
    if (predecessor_ && predecessor_.addr != self_.addr && predecessor_.addr != succ.addr)
      env_.send(predecessor_.addr, m);
    joined_ = false;
    stop_timers();
    fail_all_lookups();
    successors_.clear();
    fingers_.clear();
    predecessor_ = {};
  }

  // ---- inspection ----

  contact successor() const { return successors_.empty() ? self_ : successors_.front(); }
  const std::vector<contact>& successors() const noexcept { return successors_; }
  const contact& predecessor() const noexcept { return predecessor_; }
  /// Finger i (0 <= i < bits): successor(self + 2^i) as far as this node knows.
  contact finger(unsigned i) const {
    const std::size_t j = cfg_.bits - 1 - i;
    return j < fingers_.size() && fingers_[j] ? fingers_[j] : successor();
  }
  std::size_t distinct_fingers() const noexcept { return fingers_.size(); }
  const chord_config& config() const noexcept { return cfg_; }
  /// Whether this node holds others' ids to their addresses (BEP 42).
  bool binds_ids() const noexcept { return bound_; }
  /// Masks an id to the ring's m bits.
  node_id mask(const node_id& x) const noexcept {
    if (cfg_.bits == node_id::bits) return x;
    auto v = x.bytes();
    for (std::size_t b = cfg_.bits; b < node_id::bits; ++b) v[b / 8] &= static_cast<std::uint8_t>(~(0x80u >> (b % 8)));
    return node_id(v);
  }

  // ---- messages ----

  void on_message(const address& from, const chord_msg::find_successor& m) {
    if (!joined_) return;  // not part of a ring: the asker times out and tries another node
    const node_id key = mask(m.key);
    const contact succ = successor();
    if (node_id::in_half_open(key, self_.id, succ.id)) {
      env_.send(from, chord_msg::found{m.nonce, successor_list_with_self_fallback()});
    } else {
      env_.send(from, chord_msg::closer{m.nonce, closest_preceding(key, 4), successors_});
    }
  }
  void on_message(const address& from, const chord_msg::found& m) {
    lookup_op* op = routing_answer(from, m.nonce);
    if (!op) return env_.count("stale_reply");
    found_successors(m.nonce, *op, m.successors);
  }
  void on_message(const address& from, const chord_msg::closer& m) {
    if (m.successors.size() > 4 * cfg_.max_successors + 8) return env_.count("bad_closer");
    lookup_op* op = routing_answer(from, m.nonce);
    if (!op) return env_.count("stale_reply");
    if (op->asking_id != node_id{}) {  // (a join seed's id may be unknown)
      // the answering nodes precede the key, each closer than the last: the successor list
      // of the closest is the fallback if every node between it and the key has failed
      op->fallback_id = op->asking_id;
      op->fallback.clear();
      for (auto& c : m.successors)
        if (!c.addr.empty() && admit(c, "unbound_contact")) op->fallback.push_back({mask(c.id), c.addr});
    }
    closer_candidates(m.nonce, *op, m.candidates);
  }

  void on_message(const address& from, const chord_msg::get_state& m) {
    if (!joined_) return;
    env_.send(from, chord_msg::state{m.nonce, predecessor_, successors_});
  }
  void on_message(const address& from, const chord_msg::state& m) {
    if (!stabilize_.answer(from, m.nonce)) return env_.count("stale_reply");
    successor_silences_ = 0;
    if (!joined_ || successors_.empty() || successors_.front().addr != from) return;
    const contact succ = successors_.front();
    std::vector<contact> next;
    if (m.predecessor && m.predecessor.addr != self_.addr && !failed_.recent(m.predecessor.addr) &&
        node_id::in_open(mask(m.predecessor.id), self_.id, succ.id) && admit(m.predecessor, "unbound_contact"))
      next.push_back(m.predecessor);  // a node joined between us and our successor
    next.push_back(succ);
    for (auto& c : m.successors)
      if (!failed_.recent(c.addr)) next.push_back(c);
    set_successors(std::move(next));
    env_.send(successor().addr, chord_msg::notify{self_});
    // a closer successor: ask it at once rather than a round later, so that a node far from its
    // place (after its successors failed, or behind a run of joins) walks back at the speed of
    // round trips, not one node per stabilize_interval
    if (successor().addr != succ.addr) {
      env_.count("successor_walks");
      stabilize();
    }
  }

  void on_message(const address& from, const chord_msg::notify& m) {
    if (!joined_ || m.self.addr != from || from == self_.addr) return env_.count("bad_notify");
    if (failed_.recent(from)) return env_.count("stale_notify");  // left or failed: delayed in flight
    if (!admit(m.self, "unbound_id")) return;
    const contact c{mask(m.self.id), m.self.addr};
    if (!predecessor_ || node_id::in_open(c.id, predecessor_.id, self_.id)) predecessor_ = c;
    if (successors_.empty()) set_successors({c});  // the second node of a ring: our only peer
  }

  void on_message(const address& from, const chord_msg::ping& m) {
    if (joined_) env_.send(from, chord_msg::pong{m.nonce});
  }
  void on_message(const address& from, const chord_msg::pong& m) {
    if (predecessor_.addr == from && pings_.answer(from, m.nonce)) predecessor_silences_ = 0;
  }

  void on_message(const address& from, const chord_msg::leaving& m) {
    if (m.self.addr != from) return env_.count("bad_leaving");
    if (!joined_) return;
    const bool was_successor = !successors_.empty() && successors_.front().addr == from;
    const bool was_predecessor = predecessor_.addr == from;
    failed_.mark(from);  // a notify it sent before leaving may still arrive: not adopted back
    forget(from);
    if (was_predecessor)
      predecessor_ =
          m.predecessor.addr == self_.addr || !admit(m.predecessor, "unbound_contact") ? contact{} : m.predecessor;
    if (was_successor) {
      std::vector<contact> next = m.successors;
      for (auto& c : successors_) next.push_back(c);
      set_successors(std::move(next));
    }
  }

  void on_message(const address& from, const chord_msg::owner_query& m) {
    if (!joined_) return;  // not serving: the asker times out and moves on
    chord_msg::owner_reply r{m.nonce, false, self_, predecessor_, successors_};
    r.owns = owns(mask(m.key));
    env_.send(from, r);
  }
  void on_message(const address& from, const chord_msg::owner_reply& m) {
    auto it = lookups_.find(m.nonce);
    if (it == lookups_.end() || !std::holds_alternative<confirming>(it->second.phase) ||
        !queries_.expects(from, m.nonce) || m.self.addr != from)
      return env_.count("stale_reply");
    if (m.successors.size() > 4 * cfg_.max_successors + 8) return env_.count("bad_owner_reply");
    queries_.answer(from, m.nonce);
    if (!admit(m.self, "unbound_id")) {  // not an owner anyone may be sent to: the next of the list
      it->second.dead.push_back(from);
      return confirm_next(m.nonce);
    }
    owner_answer(m.nonce, {mask(m.self.id), from}, m.owns, m.predecessor, m.successors);
  }

  void on_message(const address& from, const chord_msg::join_request& m) {
    if (!joined_ || m.self.addr != from || from == self_.addr) return env_.count("bad_join_request");
    if (!admit(m.self, "unbound_id")) return;  // unanswered: it is never our predecessor
    const contact c{mask(m.self.id), from};
    chord_msg::join_reply r{m.nonce, false, self_, predecessor_, successors_};
    if (c.id == self_.id) {
      env_.send(from, r);
      return;
    }  // id taken: refused (the newcomer picks another)
    // the newcomer becomes our predecessor only if no node we know of lies between them and us:
    // then its own predecessor is our old one, and every key it will claim was ours
    failed_.erase(from);  // back after a restart, if it had failed: it asks itself
    if (predecessor_.addr == from && last_joiner_.addr == from) {  // our answer was lost: the same again
      r.accepted = true;
      r.predecessor = last_joiner_pred_;
    } else if (!predecessor_ || node_id::in_open(c.id, predecessor_.id, self_.id)) {
      r.accepted = true;
      last_joiner_ = c;
      last_joiner_pred_ = predecessor_;
      predecessor_ = c;
      predecessor_silences_ = 0;
      if (successors_.empty()) set_successors({c});  // the second node of a ring
    }
    env_.send(from, r);
  }
  void on_message(const address& from, const chord_msg::join_reply& m) {
    if (joined_ || m.self.addr != from || !joins_.expects(from, m.nonce)) return env_.count("stale_reply");
    if (m.successors.size() > 4 * cfg_.max_successors + 8) return env_.count("bad_join_reply");
    if (!admit(m.self, "unbound_id")) return;  // the join attempt times out and starts again
    joins_.answer(from, m.nonce);
    join_.stop();  // (a late answer, after the attempt gave up: it counts)
    if (m.accepted) {
      std::vector<contact> list{{mask(m.self.id), from}};
      for (auto& c : m.successors) list.push_back(c);
      set_successors(std::move(list));
      predecessor_ = m.predecessor.addr == self_.addr || !admit(m.predecessor, "unbound_contact")
          ? contact{}
          : contact{mask(m.predecessor.id), m.predecessor.addr};
      become_joined();
      return stabilize();
    }
    if (m.self.id == self_.id) {  // two nodes cannot share an id on one ring (small m makes it likely)
      dcp::log(env_, log_level::warn, "chord: id ", self_.id, " is taken by ", from);
      env_.count("id_collisions");
      if (!cfg_.id) self_.id = mask(node_id::random(env_.rng()));
      return join_.retry(false);
    }
    // a node joined between us and the successor our lookup found: walk back to it
    if (m.predecessor && m.predecessor.addr != self_.addr && admit(m.predecessor, "unbound_contact") &&
        ++join_redirects_ <= 4 * max_successors())
      return request_join({mask(m.predecessor.id), m.predecessor.addr});
    join_.retry();
  }

  void on_message(const address& from, const chord_msg::deliver& m) {
    // the origin sends it straight to the owner its lookup found: it must be the sender
    if (m.origin.addr != from) return env_.count("spoofed_sender");
    if (!admit(m.origin, "unbound_id")) return;
    delivery_.deliver(m.key, m.origin, m.payload);
  }

  /// The transport gave up on `peer`: it is gone, so no lookup waits for or retries it.
  void on_unreachable(const address& peer) {
    failed_.mark(peer);
    forget(peer);
    for (auto& [n, op] : lookups_) {
      std::erase_if(op.candidates, [&](const contact& c) { return c.addr == peer; });
      op.dead.push_back(peer);
    }
  }

 private:
  // A lookup is in one phase at a time; the request it has in flight, if any, waits in
  // queries_ under the lookup's nonce (find_successor and owner_query carry it).
  struct routing {};              // asking the closest preceding node it knows for the key's successor
  struct confirming {             // asking owners.front() whether the key is in its range (predecessor, self]
    std::vector<contact> owners;  // the owner found, then its successors should it be silent
    unsigned attempts = 0;        // owner_queries to owners.front() so far
  };
  struct waiting {  // no owner could vouch for the answer: routing again after a while
    timer_id timer{};
  };
  struct lookup_op {
    node_id key;
    std::size_t n = 1;
    lookup_callback cb;
    time_point started{};
    std::variant<routing, confirming, waiting> phase;
    bool through_seeds = false;  // a join's: the candidates are the seeds, in order, until one answers "closer"
    // what routing has learnt, kept across phases
    std::vector<contact> candidates;  // untried, best first after sort
    std::vector<address> tried, answered, dead;
    std::vector<contact> fallback;   // successor list of the closest node that answered "closer"
    node_id fallback_id, asking_id;  // that node's id; the id of the node asked last
    unsigned hops = 0;               // answers on the way
    unsigned redirects = 0;          // owners that pointed back to their predecessor
    unsigned restarts = 0;           // routings started again from our own tables
    std::size_t queries = 0;         // find_successors sent
  };
  struct join_note {  // a join request: to the successor found, the attempt-th send
    contact successor;
    unsigned attempt = 1;
  };
  using join_table = detail::peer_requests<E, join_note>;
  using request_table = detail::peer_requests<E>;

  node_id ring_pow2(unsigned i) const noexcept { return node_id::pow2(node_id::bits - cfg_.bits + i); }

  void stop_timers() {
    stabilize_timer_.stop();
    fingers_timer_.stop();
    predecessor_timer_.stop();
    join_.stop();
    joins_.clear();
    pings_.clear();
    stabilize_.clear();
  }
  void fail_all_lookups() {
    auto ops = std::move(lookups_);
    lookups_.clear();
    for (auto& [n, op] : ops) {
      end_lookup(n, op);
      if (op.cb) op.cb(make_error_code(errc::not_joined));
    }
  }

  void become_joined() {
    joined_ = true;
    join_.stop();
    joins_.clear();
    const duration jitter = duration(env_.rng().below(static_cast<std::uint64_t>(cfg_.stabilize_interval.count())));
    stabilize_timer_.start(
        env_, cfg_.stabilize_interval, [this] { stabilize(); }, jitter + 1ns);
    fingers_timer_.start(
        env_, cfg_.fix_fingers_interval, [this] { fix_fingers(); }, jitter + 2ns);
    predecessor_timer_.start(
        env_, cfg_.check_predecessor_interval, [this] { check_predecessor(); }, jitter + 3ns);
  }

  /// One join attempt (join_attempts.hpp): a lookup of our own id through the seeds, then
  /// the join request to the successor it finds; a failed one is tried again after a backoff.
  void join_lookup() {
    start_lookup(self_.id, cfg_.successors, join_.seeds(), [this](result<lookup_result> r) {
      if (joined_) return;
      if (!r || r->owners.empty()) return join_.retry();
      if (r->owners.front().addr == self_.addr)
        return join_.retry(false);  // the answer named only ourselves: stale, ask again
      // joined once our successor takes us as its predecessor: until then no lookup may end
      // at us, and after it the keys we claim, (old predecessor, us], are exactly ours
      join_redirects_ = 0;
      request_join(r->owners.front());
    });
  }
  void request_join(const contact& successor, unsigned attempt = 1) {
    if (attempt == 1) {  // a new request: the answer to an older one no longer counts
      joins_.clear();
      join_nonce_ = ++nonce_;
    }
    env_.send(successor.addr, chord_msg::join_request{join_nonce_, self_});
    joins_.await(join_nonce_, successor.addr, join_note{successor, attempt});
  }
  /// The request or its answer may be lost: asked again (the successor answers the same);
  /// failure_threshold silences and we look for our successor anew (its answer, should it
  /// come late, still counts until then).
  void join_request_timed_out(const join_note& j) {
    if (j.attempt < cfg_.failure_threshold) return request_join(j.successor, j.attempt + 1);
    joins_.await_untimed(join_nonce_, j.successor.addr, j);
    join_.retry_now();
  }

  // ---- lookups ----

  void start_lookup(const node_id& key, std::size_t n, std::vector<contact> seeds, lookup_callback cb) {
    const std::uint64_t nonce = ++nonce_;
    lookup_op& op = lookups_[nonce];
    op.started = env_.now();
    op.key = key;
    op.n = n;
    op.cb = std::move(cb);
    op.through_seeds = !seeds.empty();
    if (op.through_seeds) {
      op.candidates = std::move(seeds);
      return query_next(nonce);
    }
    op.candidates = closest_preceding(key, cfg_.successors + 8);
    if (node_id::in_half_open(key, self_.id, successor().id))  // we are the key's predecessor: no query needed
      return confirm(nonce, op,
                     successor_list_with_self_fallback());  // one step, to our successor (unless we are alone)
    query_next(nonce);
  }

  /// Routing: asks the best candidate left; falls back along a successor list, or starts
  /// again from our own tables, when none is left; fails when that too is spent.
  void query_next(std::uint64_t nonce) {
    auto it = lookups_.find(nonce);
    if (it == lookups_.end()) return;
    lookup_op& op = it->second;
    op.phase = routing{};
    if (!op.through_seeds) order_candidates(op);
    auto& c = op.candidates;
    while (!c.empty() && (c.front().addr == self_.addr || spent(op, c.front().addr))) c.erase(c.begin());
    if (c.empty() && !op.through_seeds) {
      if (auto owners = fallback_owners(op); !owners.empty()) {
        env_.count("successor_fallbacks");
        return confirm(nonce, op, std::move(owners));
      }
      if (op.restarts < 2 && op.queries < cfg_.max_lookup_queries) return restart_routing(nonce, op);
    }
    if (c.empty() || op.queries >= cfg_.max_lookup_queries) {
      dcp::log(env_, log_level::debug, "chord: lookup of ", op.key, " failed after ", op.queries, " queries, ",
               op.restarts, " restarts, ", op.dead.size(), " dead");
      return finish(nonce, make_error_code(errc::lookup_failed), {});
    }
    const contact asked = c.front();
    c.erase(c.begin());
    op.asking_id = asked.id;
    op.tried.push_back(asked.addr);
    op.candidates.push_back(asked);  // asked again if it stays silent, up to failure_threshold times
    ++op.queries;
    env_.send(asked.addr, chord_msg::find_successor{nonce, op.key});
    queries_.await(nonce, asked.addr);
  }
  /// Closest preceding first (the smallest clockwise distance to the key), but a node that
  /// has already been silent goes after every untried one: the lookup proceeds with the next
  /// best node at once, as in the paper, and asks a silent one again only when nothing
  /// better is left (its answer may just have been lost).
  void order_candidates(lookup_op& op) const {
    auto silences = [&](const contact& x) { return std::count(op.tried.begin(), op.tried.end(), x.addr); };
    std::stable_sort(op.candidates.begin(), op.candidates.end(), [&](const contact& a, const contact& b) {
      const auto sa = silences(a), sb = silences(b);
      return sa != sb ? sa < sb : (op.key - a.id) < (op.key - b.id);
    });
  }
  /// A node that answered is not asked again (no loops); one that timed out is asked
  /// again, up to failure_threshold times, since its answer or our question may just
  /// have been lost.
  bool spent(const lookup_op& op, const address& a) const {
    return std::count(op.tried.begin(), op.tried.end(), a) >= static_cast<long>(cfg_.failure_threshold) ||
        std::find(op.answered.begin(), op.answered.end(), a) != op.answered.end() ||
        std::find(op.dead.begin(), op.dead.end(), a) != op.dead.end();
  }
  /// Nobody closer to the key answers: the key's predecessor failed and the node before it
  /// has not noticed yet. The owner is then the first live node of that node's successor
  /// list at or past the key (Chord's successor-list fallback; confirm skips the dead ones).
  /// Taken once.
  std::vector<contact> fallback_owners(lookup_op& op) const {
    std::vector<contact> beyond;
    for (auto& x : op.fallback)
      if (!node_id::in_open(x.id, op.fallback_id, op.key) && x.addr != self_.addr) beyond.push_back(x);
    op.fallback.clear();
    return beyond;
  }
  /// Every lead ran out: starts again from our own tables, which the timeouts have pruned.
  void restart_routing(std::uint64_t nonce, lookup_op& op) {
    ++op.restarts;
    op.answered.clear();
    op.candidates = closest_preceding(op.key, cfg_.successors + 8);
    // our first live successors may already own the key when the nodes before them died
    std::vector<contact> live;
    for (auto& x : successors_)
      if (!spent(op, x.addr)) live.push_back(x);
    if (live.empty() || node_id::in_half_open(op.key, self_.id, live.front().id))
      return confirm(nonce, op, live.empty() ? std::vector<contact>{self_} : std::move(live));
    query_next(nonce);
  }

  /// The lookup `nonce` when `from` answers the find_successor it has in flight to it.
  lookup_op* routing_answer(const address& from, std::uint64_t nonce) {
    auto it = lookups_.find(nonce);
    if (it == lookups_.end() || !std::holds_alternative<routing>(it->second.phase) || !queries_.answer(from, nonce))
      return nullptr;
    ++it->second.hops;
    it->second.answered.push_back(from);
    return &it->second;
  }
  /// "found": the asked node is the key's predecessor, and these its successors.
  void found_successors(std::uint64_t nonce, lookup_op& op, const std::vector<contact>& successors) {
    std::vector<contact> owners;
    for (auto& s : successors) {
      if (owners.size() == std::max(op.n, cfg_.successors)) break;  // the rest of the list: fallbacks
      if (s.addr.empty() || dead_for(op, s.addr) || !admit(s, "unbound_contact")) continue;
      if (std::none_of(owners.begin(), owners.end(), [&](const contact& o) { return o.addr == s.addr; }))
        owners.push_back({mask(s.id), s.addr});
    }
    if (owners.empty()) {
      env_.count("bad_found");
      return query_next(nonce);
    }
    confirm(nonce, op, std::move(owners));
  }
  /// "closer": nodes nearer the key to ask.
  void closer_candidates(std::uint64_t nonce, lookup_op& op, const std::vector<contact>& candidates) {
    if (op.through_seeds) {  // a seed answered: from now on the candidates are ordinary ones
      op.through_seeds = false;
      op.candidates.clear();
    }
    // only candidates that make progress: strictly between the responder... and the key
    for (auto& c : candidates)
      if (!c.addr.empty() && node_id::in_open(mask(c.id), self_.id, op.key) && admit(c, "unbound_contact"))
        op.candidates.push_back({mask(c.id), c.addr});
    query_next(nonce);
  }

  /// The last step goes to the owner itself, which confirms the key falls in its range
  /// (predecessor, self]: a node that joined since the key's predecessor last stabilized
  /// sits between the two, and the owner names it as its predecessor, so the lookup walks
  /// back to it instead of answering a displaced owner (issue 16). An owner that does not
  /// know its predecessor cannot confirm: the lookup starts again a little later, and fails
  /// (errc::lookup_failed) rather than answer unconfirmed. A silent owner is skipped for the
  /// next node of the successor list, as Chord's lookups fall back along it.
  void confirm(std::uint64_t nonce, lookup_op& op, std::vector<contact> owners) {
    op.phase = confirming{std::move(owners), 0};
    confirm_next(nonce);
  }
  /// Asks the first owner not known dead (again, after a silence), or routes again when none is left.
  void confirm_next(std::uint64_t nonce) {
    auto it = lookups_.find(nonce);
    if (it == lookups_.end()) return;
    lookup_op& op = it->second;
    auto& c = std::get<confirming>(op.phase);
    if (!c.owners.empty() && dead_for(op, c.owners.front().addr)) {
      c.attempts = 0;  // the next owner
      while (!c.owners.empty() && dead_for(op, c.owners.front().addr)) c.owners.erase(c.owners.begin());
    }
    if (c.owners.empty()) return query_next(nonce);  // the whole list is gone: route again
    const contact owner = c.owners.front();
    if (owner.addr == self_.addr) return owner_answer(nonce, self_, owns(op.key), predecessor_, successors_);
    ++c.attempts;
    env_.send(owner.addr, chord_msg::owner_query{nonce, op.key});
    queries_.await(nonce, owner.addr);
  }
  /// The request in flight was not answered in time.
  void query_timed_out(std::uint64_t nonce, const address& peer) {
    auto it = lookups_.find(nonce);
    if (it == lookups_.end()) return;
    lookup_op& op = it->second;
    if (auto* c = std::get_if<confirming>(&op.phase)) {
      env_.count("owner_timeouts");
      // a lost query or reply must not skip a live owner: failure_threshold silences in a row
      if (c->attempts >= cfg_.failure_threshold) op.dead.push_back(peer);
      return confirm_next(nonce);
    }
    env_.count("lookup_timeouts");
    // a second silence in a row from a finger: drop the finger (fix-fingers refills it).
    // Successors and predecessor are judged by stabilize and check-predecessor only, which
    // ask failure_threshold times: a lookup's lost messages must not unlink a live neighbour.
    if (std::count(op.tried.begin(), op.tried.end(), peer) >= 2) forget_finger(peer);
    query_next(nonce);
  }
  /// The owner candidate's answer (or our own, when we are the candidate).
  void owner_answer(std::uint64_t nonce, const contact& owner, bool owns_key, const contact& pred,
                    const std::vector<contact>& succs) {
    auto it = lookups_.find(nonce);
    if (it == lookups_.end()) return;
    lookup_op& op = it->second;
    if (owns_key) return owner_confirmed(nonce, op, owner, succs);
    if (pred && pred.addr != owner.addr && !dead_for(op, pred.addr) && op.redirects < cfg_.max_lookup_queries &&
        admit(pred, "unbound_contact")) {
      env_.count("owner_redirects");  // a newer node between the key and this one: ask it
      ++op.redirects;
      return confirm(nonce, op, {{mask(pred.id), pred.addr}, owner});
    }
    // the candidate does not know its predecessor (it just joined, or lost it), or names one
    // that is dead: no one can vouch for the answer now. Stabilization settles it within a
    // round or two; until then we ask again, and in the end say we could not.
    env_.count("owner_unconfirmed");
    if (env_.now() - op.started > confirm_patience()) {
      dcp::log(env_, log_level::debug, "chord: lookup of ", op.key, " found no owner to confirm it");
      return finish(nonce, make_error_code(errc::lookup_failed), {});
    }
    op.phase = waiting{env_.arm(cfg_.stabilize_interval / 2, [this, nonce] { route_again(nonce); })};
  }
  void owner_confirmed(std::uint64_t nonce, const lookup_op& op, const contact& owner,
                       const std::vector<contact>& succs) {
    lookup_result r{{owner}, op.hops + op.redirects};
    for (auto& c : succs) {
      if (r.owners.size() >= op.n) break;
      if (c.addr.empty() || dead_for(op, c.addr) || !admit(c, "unbound_contact")) continue;
      if (std::none_of(r.owners.begin(), r.owners.end(), [&](const contact& o) { return o.addr == c.addr; }))
        r.owners.push_back({mask(c.id), c.addr});
    }
    finish(nonce, {}, std::move(r));
  }
  /// Waited for an owner that could not confirm: routes afresh (what failed and was tried
  /// is still known).
  void route_again(std::uint64_t nonce) {
    auto it = lookups_.find(nonce);
    if (it == lookups_.end()) return;
    lookup_op& op = it->second;
    op.phase = routing{};
    op.answered.clear();
    op.fallback.clear();
    op.redirects = 0;
    op.restarts = 0;
    op.queries = 0;
    if (node_id::in_half_open(op.key, self_.id, successor().id))
      return confirm(nonce, op, successor_list_with_self_fallback());
    op.candidates = closest_preceding(op.key, max_successors() + 8);
    query_next(nonce);
  }
  /// Is `key` ours: in (predecessor, self]? Unknown (false) without a predecessor, unless we
  /// are alone on the ring.
  bool owns(const node_id& key) const {
    if (!predecessor_) return successors_.empty();
    return node_id::in_half_open(key, predecessor_.id, self_.id);
  }
  /// The successor list's length: r, or 2·log2 N when larger (up to max_successors). N is
  /// estimated from the list itself: k successors spanning a fraction f of the ring make N ≈ k/f.
  std::size_t max_successors() const noexcept {
    const std::size_t base = cfg_.successors;
    if (successors_.empty()) return base;
    const std::size_t k = successors_.size();
    const node_id span = successors_.back().id - self_.id;
    const int log2_n = static_cast<int>(std::bit_width(k)) - 1 + (static_cast<int>(node_id::bits) - 1 - span.log2());
    const std::size_t want = log2_n > 0 ? 2 * static_cast<std::size_t>(log2_n) : base;
    return std::clamp(want, base, cfg_.max_successors);
  }
  /// How long a lookup waits for an owner that cannot confirm: long enough for a crashed
  /// predecessor to be detected (failure_threshold silent pings) and its own predecessor to
  /// notify the owner after stabilizing past it.
  duration confirm_patience() const noexcept {
    return cfg_.failure_threshold * (cfg_.check_predecessor_interval + cfg_.rpc_timeout) + 2 * cfg_.stabilize_interval;
  }
  bool dead_for(const lookup_op& op, const address& a) {
    return std::find(op.dead.begin(), op.dead.end(), a) != op.dead.end() || failed_.recent(a);
  }

  void finish(std::uint64_t nonce, std::error_code ec, lookup_result r) {
    auto it = lookups_.find(nonce);
    if (it == lookups_.end()) return;
    if (!ec && !r.owners.empty() && r.owners.front().addr != self_.addr) ++r.hops;  // the last step, to the owner
    auto cb = std::move(it->second.cb);
    end_lookup(nonce, it->second);
    lookups_.erase(it);
    if (ec) env_.count("lookup_failed");
    if (ec)
      cb(ec);
    else
      cb(std::move(r));
  }
  /// Stops what the lookup waits for: its request in flight, or its wait.
  void end_lookup(std::uint64_t nonce, lookup_op& op) {
    queries_.erase(nonce);
    if (auto* w = std::get_if<waiting>(&op.phase)) env_.cancel(w->timer);
  }

  /// Up to `count` known nodes strictly between self and key, closest to the key first.
  std::vector<contact> closest_preceding(const node_id& key, std::size_t count) const {
    std::vector<contact> out;
    for (auto& c : known_nodes())
      if (c.addr != self_.addr && node_id::in_open(c.id, self_.id, key)) out.push_back(c);
    std::sort(out.begin(), out.end(), [&](const contact& a, const contact& b) { return (key - a.id) < (key - b.id); });
    if (out.size() > count) out.resize(count);
    return out;
  }

  /// Self, predecessor, successors and fingers, without duplicates.
  std::vector<contact> known_nodes() const {
    std::vector<contact> out{self_};
    auto add = [&](const contact& c) {
      if (c && std::none_of(out.begin(), out.end(), [&](const contact& o) { return o.addr == c.addr; }))
        out.push_back(c);
    };
    add(predecessor_);
    for (auto& c : successors_) add(c);
    for (auto& c : fingers_) add(c);
    return out;
  }

  std::vector<contact> successor_list_with_self_fallback() const {
    return successors_.empty() ? std::vector<contact>{self_} : successors_;
  }

  /// Dedups, drops self and empties, masks, and keeps the first r.
  void set_successors(std::vector<contact> list) {
    const std::size_t cap = max_successors();  // from the list we had: the new one may grow past it by one
    successors_.clear();
    for (auto& c : list) {
      if (successors_.size() > cap) break;
      if (c.addr.empty() || c.addr == self_.addr || !admit(c, "unbound_contact")) continue;
      if (std::any_of(successors_.begin(), successors_.end(), [&](const contact& o) { return o.addr == c.addr; }))
        continue;
      successors_.push_back({mask(c.id), c.addr});
    }
  }

  /// Whether `c` may enter our state or a lookup: with bound ids, only if its id
  /// derives from its address (else counted under `counter`: "unbound_id" for a
  /// sender speaking for itself, "unbound_contact" for one another node names).
  bool admit(const contact& c, std::string_view counter) {
    if (c.addr.empty() || admissible(bound_, c)) return true;  // (no contact: no claim)
    env_.count(counter);
    return false;
  }

  void forget_finger(const address& peer) {
    for (auto& f : fingers_)
      if (f.addr == peer) f = {};
    while (!fingers_.empty() && !fingers_.back()) fingers_.pop_back();
  }

  /// A peer found dead: drop it everywhere, falling back along the successor list.
  void forget(const address& peer) {
    if (peer == self_.addr) return;
    auto gone = [&](const contact& c) { return c.addr == peer; };
    successors_.erase(std::remove_if(successors_.begin(), successors_.end(), gone), successors_.end());
    for (auto& f : fingers_)
      if (f.addr == peer) f = {};  // refilled by fix-fingers; the successor stands in meanwhile
    while (!fingers_.empty() && !fingers_.back()) fingers_.pop_back();
    if (predecessor_.addr == peer) predecessor_ = {};
    if (successors_.empty() && joined_) {
      // every successor failed at once (more than r-1 adjacent crashes): recover through
      // the closest live finger, or the predecessor, so the ring can heal by stabilization
      std::vector<contact> known = known_nodes();
      std::erase_if(known, [&](const contact& c) { return c.addr == self_.addr; });
      env_.count("successor_list_exhausted");
      if (!known.empty()) {
        std::sort(known.begin(), known.end(),
                  [&](const contact& a, const contact& b) { return (a.id - self_.id) < (b.id - self_.id); });
        set_successors({known.front()});
      } else {
        rejoin();
      }
    }
  }

  /// We know nobody any more: a ring of one would answer every lookup with
  /// itself, so a node that joined through seeds joins again through them.
  void rejoin() {
    if (join_.seeds().empty()) return;  // the founder stays; others find it again through it
    env_.count("rejoins");
    joined_ = false;
    stop_timers();
    fail_all_lookups();
    join_.start_later();
  }

  // ---- maintenance ----

  void stabilize() {
    if (!joined_) return;
    if (successors_.empty()) {
      if (predecessor_)
        set_successors({predecessor_});
      else
        return rejoin();  // alone: the founder of a ring, or a node that lost everyone
    }
    const address succ = successors_.front().addr;
    if (stabilize_.awaits(succ)) return;  // one probe in flight at a time
    failed_.expire();                     // (bounded: only the marks within failed_memory are kept)
    const std::uint64_t nonce = ++nonce_;
    env_.send(succ, chord_msg::get_state{nonce});
    stabilize_.await(nonce, succ);
  }
  void successor_timed_out(const address& succ) {
    // one silence may be a lost message: ask again at once; failure_threshold in a row, it is gone
    if (++successor_silences_ >= cfg_.failure_threshold) {
      successor_silences_ = 0;
      failed_.mark(succ);
      forget(succ);
    }
    stabilize();
  }

  void fix_fingers() {
    if (!joined_ || successors_.empty()) return;
    // cycle over the stored fingers and one more below them, which may have become distinct
    if (next_finger_ > fingers_.size()) next_finger_ = 0;
    const std::size_t j = next_finger_;
    next_finger_ = (j + 1) % (fingers_.size() + 1);
    const unsigned i = cfg_.bits - 1 - static_cast<unsigned>(j);
    if (j >= cfg_.bits) return;
    lookup(self_.id + ring_pow2(i), 1, [this, j](result<lookup_result> r) {
      if (!r || r->owners.empty() || !joined_) return;
      const contact f = r->owners.front();
      if (f.addr == self_.addr || f.addr == successor().addr) {
        // this finger and every lower one are the successor: store none of them
        if (j < fingers_.size()) fingers_.resize(j);
        return;
      }
      if (j < fingers_.size())
        fingers_[j] = f;
      else if (j == fingers_.size())
        fingers_.push_back(f);
    });
  }

  void check_predecessor() {
    if (!joined_ || !predecessor_ || !pings_.empty()) return;
    const std::uint64_t nonce = ++nonce_;
    env_.send(predecessor_.addr, chord_msg::ping{nonce});
    pings_.await(nonce, predecessor_.addr);
  }
  void predecessor_timed_out(const address& p) {
    if (predecessor_.addr != p) return;
    env_.count("predecessor_timeouts");
    if (++predecessor_silences_ >= cfg_.failure_threshold) {  // not just a lost message
      predecessor_silences_ = 0;
      predecessor_ = {};
    } else {
      check_predecessor();
    }
  }

  E env_;
  chord_config cfg_;
  contact self_;
  bool bound_ = false;  // ids bound to addresses (BEP 42)
  contact predecessor_;
  std::vector<contact> successors_;
  std::vector<contact> fingers_;  // fingers_[j] is finger (bits-1-j); lower fingers are the successor
  std::size_t next_finger_ = 0;
  unsigned successor_silences_ = 0, predecessor_silences_ = 0;
  bool joined_ = false;
  std::uint64_t nonce_ = 0, join_nonce_ = 0;
  contact last_joiner_, last_joiner_pred_;  // the last newcomer we took, and the predecessor we gave it
  unsigned join_redirects_ = 0;
  std::unordered_map<std::uint64_t, lookup_op> lookups_;
  detail::join_attempts<E> join_;
  join_table joins_;         // the join request to our successor-to-be
  request_table stabilize_;  // stabilize's get_state to the successor
  request_table pings_;      // check-predecessor's ping
  request_table queries_;    // each lookup's find_successor or owner_query, by the lookup's nonce
  // declared failed (or departed) within failed_memory: neighbours that have not noticed
  // yet still name it, and stabilize must not adopt it back from them
  detail::failed_peers<E> failed_;
  detail::payload_delivery<E> delivery_{env_};
  periodic<E> stabilize_timer_, fingers_timer_, predecessor_timer_;
};

}  // namespace dcp::dht
