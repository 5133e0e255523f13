#pragma once
// Kademlia (Maymounkov, Mazières, IPTPS 2002).
//
// 160-bit ids; the distance between two ids is their XOR, so the owner of a
// key is the node whose id is XOR-closest to it. A node keeps, for each
// i < 160, a k-bucket of up to k contacts at distance [2^i, 2^(i+1)),
// least recently seen first. Every message a node receives updates the
// sender's bucket; when the bucket is full the least recently seen contact
// is pinged and kept if it answers — old live contacts are preferred, since
// a node that has been up long is likely to stay up (§2.2) — and replaced by
// the newcomer only if it is silent.
//
// Lookups are iterative and parallel: the origin keeps a shortlist of the
// closest ids seen, asks α of them at a time for their k closest to the
// target, and stops once the k closest it has seen have all answered. A
// silent contact costs one rpc_timeout on one of the α lanes, not the lookup.
// Buckets not touched by a lookup for refresh_interval are refreshed by a
// lookup of a random id in their range; a joining node looks itself up and
// refreshes every bucket beyond its closest neighbour.
//
// Buckets are kept only down to the deepest non-empty one: with N nodes,
// about log2 N + log2 k buckets, not 160.
//
// Ids bound to addresses (id_binding.hpp, BEP 42): by default over dcp::net
// (id_binding::automatic) a node's id derives from its address, and a sender
// whose id does not derive from the address the transport attributes its
// message to is neither stored, answered nor believed ("unbound_id"), nor is a
// contact another node reports with such an id ("unbound_contact"): a node
// cannot place itself next to a key at will. The simulator keeps free ids
// unless a test asks for id_binding::bep42 (sim:i is bound as an IPv4 address).
//
// A routed payload (deliver) goes from the origin straight to the owner its
// lookup found: it is believed only from the origin it names, heard like any
// sender ("spoofed_sender", "unbound_id").
//
// Fault model: tolerates loss, duplication and reordering (replies are
// matched by nonce), any crash pattern that leaves each key's neighbourhood
// reachable, and partitions (each side keeps working; contacts across the
// cut are evicted only when a newcomer needs their slot). Kademlia has no
// leave message: leave() stops this node, and the others notice through
// failed requests.
#include <algorithm>
#include <cstdint>
#include <functional>
#include <limits>
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
#include "dcp/dht/detail/join_attempts.hpp"
#include "dcp/dht/detail/lookup_refusal.hpp"
#include "dcp/dht/detail/payload_delivery.hpp"
#include "dcp/dht/detail/peer_requests.hpp"
#include "dcp/dht/detail/random_phase.hpp"
#include "dcp/dht/error.hpp"
#include "dcp/dht/id_binding.hpp"
#include "dcp/dht/router.hpp"
#include "dcp/wire/message.hpp"

namespace dcp::dht {

struct kademlia_config {
  /// Bucket size and replication parameter k (BitTorrent's mainline DHT uses 8).
  std::size_t k = 20;
  /// Parallel requests per lookup.
  std::size_t alpha = 3;
  duration rpc_timeout = 500ms;
  /// A bucket with no lookup in its range for this long is refreshed (the paper: 1 hour).
  duration refresh_interval = 1h;
  /// Consecutive unanswered requests after which a contact is dropped from its
  /// bucket, and after which a lookup stops asking it. With message loss p a
  /// live contact is given up with probability about (2p)^threshold.
  unsigned failure_threshold = 3;
  /// How often this node pings, if not heard from since, its k closest contacts
  /// and the least recently seen contact of every bucket; one silent
  /// failure_threshold times in a row (pinged again after each rpc_timeout) is
  /// dropped. Kademlia learns liveness only from traffic otherwise, and under
  /// churn the neighbourhood, where this node's stored keys live, would fill
  /// with dead contacts that re-replication then writes to.
  duration check_interval = 5s;
  duration bootstrap_retry = 500ms;
  duration bootstrap_retry_max = 30s;
  /// This node's id; random (from the Env's rng) when unset, bound to the node's
  /// address when ids are (then a given id must derive from it: invalid_config).
  std::optional<node_id> id;
  /// Whether ids must derive from addresses (BEP 42; see dcp/dht/id_binding.hpp):
  /// automatic is on over dcp::net, off in the simulator.
  id_binding bind_ids = id_binding::automatic;

  void validate() const {
    if (k < 1) throw error(dcp::errc::invalid_config, "kademlia: k must be >= 1");
    if (alpha < 1) throw error(dcp::errc::invalid_config, "kademlia: alpha must be >= 1");
    if (rpc_timeout <= duration::zero() || refresh_interval <= duration::zero() || check_interval <= duration::zero())
      throw error(dcp::errc::invalid_config, "kademlia: rpc_timeout, refresh_interval and check_interval must be > 0");
    if (failure_threshold < 1) throw error(dcp::errc::invalid_config, "kademlia: failure_threshold must be >= 1");
    if (bootstrap_retry <= duration::zero() || bootstrap_retry_max < bootstrap_retry)
      throw error(dcp::errc::invalid_config, "kademlia: need 0 < bootstrap_retry <= bootstrap_retry_max");
  }
};

namespace kademlia_msg {
struct ping {
  static constexpr message_type wire_id = 1;
  static constexpr std::string_view wire_name = "ping";
  std::uint64_t nonce = 0;
  contact sender;
  template <class A> void serialize(A& ar) { ar(nonce, sender); }
};
struct pong {
  static constexpr message_type wire_id = 2;
  static constexpr std::string_view wire_name = "pong";
  std::uint64_t nonce = 0;
  contact sender;
  template <class A> void serialize(A& ar) { ar(nonce, sender); }
};
struct find_node {
  static constexpr message_type wire_id = 3;
  static constexpr std::string_view wire_name = "find_node";
  std::uint64_t nonce = 0;
  contact sender;
  node_id target;
  template <class A> void serialize(A& ar) { ar(nonce, sender, target); }
};
struct nodes {  // the responder's k closest to the target
  static constexpr message_type wire_id = 4;
  static constexpr std::string_view wire_name = "nodes";
  std::uint64_t nonce = 0;
  contact sender;
  std::vector<contact> closest;
  /// The responder has joined. A join ends only on a joined node's answer: a
  /// node still joining knows a few nodes at most (Kademlia §2.3 asks the
  /// newcomer to know "an already participating node").
  bool joined = true;
  template <class A> void serialize(A& ar) { ar(nonce, sender, closest, joined); }
};
struct deliver {
  static constexpr message_type wire_id = 5;
  static constexpr std::string_view wire_name = "deliver";
  node_id key;
  contact origin;
  bytes payload;
  template <class A> void serialize(A& ar) { ar(key, origin, payload); }
};
}  // namespace kademlia_msg

template <Env E> class kademlia {
  friend struct testing::global_view;  // tests/dht/global_view.hpp: converged state for tests

 public:
  using messages = wire::message_set<kademlia_msg::ping, kademlia_msg::pong, kademlia_msg::find_node,
                                     kademlia_msg::nodes, kademlia_msg::deliver>;
  /// What it counts (env.count), declared: dcp/core/counter_set.hpp.
  static constexpr auto counters =
      dcp::join(detail::payload_delivery_counters, detail::join_attempts_counters,
                dcp::counter_set{{"route_failed", "delivered", "bad_nodes", "stale_reply", "spoofed_sender",
                                  "unbound_id", "evictions", "refreshes", "lookup_failed", "contact_id_mismatch",
                                  "unbound_contact", "lookup_timeouts", "introduced", "join_without_participant"}});
  static constexpr std::string_view name = "kademlia";
  static constexpr protocol_id default_id = 82;

  kademlia(E env, kademlia_config cfg = {})
      : env_(std::move(env)),
        cfg_((cfg.validate(), std::move(cfg))),  // checked before the members below take its timeouts
        rpcs_(env_, cfg_.rpc_timeout, "lookup_timeouts"),
        pings_(env_, cfg_.rpc_timeout),
        join_(
            env_, std::nullopt, cfg_.bootstrap_retry, cfg_.bootstrap_retry_max, [this] { return joined_; },
            [this](const contact&) { join_lookup(); }) {
    bound_ = dht::binds_ids(cfg_.bind_ids, env_.self());
    self_ = {own_id("kademlia", bound_, cfg_.id, env_.self(), env_.rng()), env_.self()};
    rpcs_.on_timeout([this](std::uint64_t rpc, typename rpc_table::request r) { rpc_timed_out(rpc, std::move(r)); });
    pings_.on_timeout([](std::uint64_t, typename ping_table::request p) {
      if (p.note.on_silence) p.note.on_silence();
    });
  }
  kademlia(const kademlia&) = delete;
  kademlia& operator=(const kademlia&) = delete;
  ~kademlia() { stop(); }

  // ---- Router ----

  const contact& self() const noexcept { return self_; }
  bool joined() const noexcept { return joined_; }

  /// Joins through any of `seeds` (their ids may be unknown: zero), retrying with
  /// backoff while none answers; an empty list founds a new network.
  void bootstrap(const std::vector<contact>& seeds) {
    if (!join_.set_seeds(seeds, self_.addr)) return become_joined();
    join_.start();
  }

  void lookup(const node_id& key, std::size_t n, lookup_callback cb) {
    if (detail::refuse_lookup(env_, joined_, n, std::numeric_limits<std::size_t>::max(), cb)) return;
    after_return done(env_);  // a lone node knows the closest at once: still answer after the call
    start_lookup(key, n, done.wrap(std::move(cb)));
    done.returned();
  }

  void route(const node_id& key, bytes payload) {
    detail::route_to_owner<kademlia_msg::deliver>(*this, env_, delivery_, key, std::move(payload));
  }

  /// The n known contacts XOR-closest to `key`, self included.
  std::vector<contact> closest(const node_id& key, std::size_t n) const {
    std::vector<contact> out{self_};
    for (auto& b : buckets_)
      for (auto& e : b.entries) out.push_back(e.who);
    const auto by_distance = [&](const contact& a, const contact& b) { return (a.id ^ key) < (b.id ^ key); };
    if (out.size() > n) {
      std::partial_sort(out.begin(), out.begin() + static_cast<std::ptrdiff_t>(n), out.end(), by_distance);
      out.resize(n);
    } else {
      std::sort(out.begin(), out.end(), by_distance);
    }
    return out;
  }

  void on_deliver(deliver_callback f) { delivery_.on_deliver(std::move(f)); }

  // ---- contacts learnt from another layer (dht/membership_contacts.hpp) ----

  /// A node another layer knows of, such as a membership's new neighbour.
  /// Before this node has joined, it is one more seed to join through (the
  /// first one starts the attempts). After, it is pinged, and enters its
  /// bucket when it answers, as any sender does: its id comes from its own
  /// answer (bound to its address where ids are), never from the caller.
  void introduce(const address& peer) {
    if (peer.empty() || peer == self_.addr) return;
    if (!joined_) {
      auto seeds = join_.seeds();
      if (seeds.size() >= cfg_.k) return;  // enough ways in; a flood of neighbours adds nothing
      const bool first = seeds.empty();
      seeds.push_back({node_id{}, peer});
      if (join_.set_seeds(seeds, self_.addr) && first) join_.start();
      return;
    }
    if (knows(peer) || pings_.awaits(peer)) return;
    env_.count("introduced");
    ping(
        peer, [] {}, [] {});
  }
  /// Another layer saw a sign that `peer` failed (a membership's neighbour
  /// went down): it is probed now, not at the next check_interval, and
  /// dropped after failure_threshold silences, as check_contacts() would.
  /// A live peer answers and stays.
  void suspect(const address& peer) {
    if (find_entry(peer)) probe(peer);
  }

  /// Stops this node (Kademlia has no leave message; peers notice by silence).
  void leave() {
    stop();
    joined_ = false;
    auto ops = std::move(lookups_);
    lookups_.clear();
    for (auto& [nonce, op] : ops)
      if (op.cb) op.cb(make_error_code(errc::not_joined));
  }

  /// The XOR metric.
  static node_id distance(const node_id& key, const node_id& id) noexcept { return key ^ id; }

  // ---- inspection ----

  const kademlia_config& config() const noexcept { return cfg_; }
  /// Whether this node holds others' ids to their addresses (BEP 42).
  bool binds_ids() const noexcept { return bound_; }
  /// Contacts in bucket i (distance in [2^i, 2^(i+1))), least recently seen first.
  std::vector<contact> bucket(int i) const {
    std::vector<contact> out;
    const std::size_t j = static_cast<std::size_t>(node_id::bits - 1 - i);
    if (j < buckets_.size())
      for (auto& e : buckets_[j].entries) out.push_back(e.who);
    return out;
  }
  std::size_t contacts() const noexcept {
    std::size_t n = 0;
    for (auto& b : buckets_) n += b.entries.size();
    return n;
  }
  bool knows(const address& a) const noexcept {
    for (auto& b : buckets_)
      for (auto& e : b.entries)
        if (e.who.addr == a) return true;
    return false;
  }

  // ---- messages ----

  void on_message(const address& from, const kademlia_msg::ping& m) {
    if (!heard(from, m.sender)) return;
    env_.send(from, kademlia_msg::pong{m.nonce, self_});
  }
  void on_message(const address& from, const kademlia_msg::pong& m) {
    if (!heard(from, m.sender)) return;
    if (auto p = pings_.answer(from, m.nonce); p && p->note.on_answer) p->note.on_answer();
  }
  void on_message(const address& from, const kademlia_msg::find_node& m) {
    if (!heard(from, m.sender)) return;
    auto out = closest(m.target, cfg_.k + 1);
    std::erase_if(out, [&](const contact& c) { return c.addr == from; });  // it knows itself
    if (out.size() > cfg_.k) out.resize(cfg_.k);
    env_.send(from, kademlia_msg::nodes{m.nonce, self_, std::move(out), joined_});
  }
  void on_message(const address& from, const kademlia_msg::nodes& m) {
    if (!heard(from, m.sender)) return;
    if (m.closest.size() > 2 * cfg_.k) return env_.count("bad_nodes");  // a peer flooding us with contacts
    const auto rpc = rpcs_.answer(from, m.nonce);
    if (!rpc) return env_.count("stale_reply");
    if (auto op = lookups_.find(rpc->note.lookup); op != lookups_.end() && m.joined)
      op->second.participant_answered = true;
    on_reply(rpc->note.lookup, m.sender, m.closest, !rpc->note.retry && !rpc->note.late);
  }
  void on_message(const address& from, const kademlia_msg::deliver& m) {
    // the origin sends it straight to the owner its lookup found: the origin it names
    // must be the sender, and is then heard like any sender (bound id, bucket)
    if (!heard(from, m.origin)) return;
    delivery_.deliver(m.key, m.origin, m.payload);
  }
  void on_unreachable(const address& peer) { drop_contact(peer); }

 private:
  struct entry {
    contact who;
    time_point last_seen;
    unsigned failures = 0;
  };
  struct bucket_state {
    std::vector<entry> entries;  // least recently seen first
    time_point last_lookup{};
    std::uint64_t evict_ping = 0;  // nonce of the ping to the head, 0 when none
    contact candidate;             // the newcomer waiting on that ping
  };
  struct ping_note {
    std::function<void()> on_answer, on_silence;
  };
  struct candidate {
    contact who;
    // retrying: silent once, asked again; the lookup waits for it without holding an alpha lane
    enum class state : std::uint8_t { fresh, asked, retrying, answered, failed } st = state::fresh;
    unsigned depth = 0;  // requests on the causal path that revealed it
    unsigned timeouts = 0;
  };
  struct lookup_op {
    node_id target;
    std::size_t n = 1;
    lookup_callback cb;
    std::vector<candidate> shortlist;  // sorted by distance to target
    std::size_t in_flight = 0;
    bool join = false;
    bool participant_answered = false;  // a joined node answered: what ends a join
  };
  struct rpc_note {            // a find_node request
    std::uint64_t lookup = 0;  // the lookup it serves
    bool retry = false;        // the repeated request after a first silence
    bool late = false;         // a first request that timed out: its answer still counts
  };
  using rpc_table = detail::peer_requests<E, rpc_note>;
  using ping_table = detail::peer_requests<E, ping_note>;

  void stop() {
    refresh_timer_.stop();
    check_timer_.stop();
    join_.stop();
    rpcs_.clear();
    pings_.clear();
    for (auto& b : buckets_) b.evict_ping = 0;
  }

  node_id range_low(int i) const noexcept {
    // self with bit i (from the least significant end) flipped and every lower bit cleared
    const std::size_t from_top = node_id::bits - 1 - static_cast<std::size_t>(i);
    auto v = self_.id.bytes();
    v[from_top / 8] ^= static_cast<std::uint8_t>(0x80u >> (from_top % 8));
    for (std::size_t b = from_top + 1; b < node_id::bits; ++b)
      v[b / 8] &= static_cast<std::uint8_t>(~(0x80u >> (b % 8)));
    return node_id(v);
  }
  node_id random_in_bucket(int i) {
    const node_id r = node_id::random(env_.rng());
    const node_id span = node_id::pow2(static_cast<std::size_t>(i)) - node_id::pow2(0);  // low i bits set
    node_id low;
    auto rv = r.bytes(), sv = span.bytes();
    for (std::size_t b = 0; b < node_id::size; ++b) rv[b] &= sv[b];
    low = node_id(rv);
    return range_low(i) + low;
  }

  bucket_state& bucket_at(int i) {
    const std::size_t j = static_cast<std::size_t>(node_id::bits - 1 - i);
    if (j >= buckets_.size()) buckets_.resize(j + 1);
    return buckets_[j];
  }
  int bucket_index(const node_id& id) const noexcept { return (id ^ self_.id).log2(); }

  /// Every message updates the sender's bucket. False (and counted) when the
  /// sender contact does not match the transport's address.
  bool heard(const address& from, const contact& sender) {
    if (sender.addr != from) {
      env_.count("spoofed_sender");
      return false;
    }
    if (bound_ && !bep42_valid(sender.id, from)) {  // an id it chose, not its address's
      env_.count("unbound_id");
      return false;
    }
    if (sender.id == self_.id) return from != self_.addr;  // another node with our id: answer, never store
    const int i = bucket_index(sender.id);
    auto& b = bucket_at(i);
    auto it = std::find_if(b.entries.begin(), b.entries.end(), [&](const entry& e) { return e.who.addr == from; });
    if (it != b.entries.end()) {
      entry e = *it;
      e.who = sender;
      e.last_seen = env_.now();
      e.failures = 0;
      b.entries.erase(it);
      b.entries.push_back(e);
      return true;
    }
    if (b.entries.size() < cfg_.k) {
      b.entries.push_back({sender, env_.now(), 0});
      return true;
    }
    // full: ping the least recently seen; the newcomer gets its slot only if it is silent
    b.candidate = sender;
    if (b.evict_ping) return true;
    const address head = b.entries.front().who.addr;
    b.evict_ping = ping(
        head,
        [this, i, head] {  // answered: keep the old contact (heard() moved it to the tail)
          auto& bb = bucket_at(i);
          bb.evict_ping = 0;
          bb.candidate = {};
          (void)head;
        },
        [this, i, head] {
          auto& bb = bucket_at(i);
          bb.evict_ping = 0;
          env_.count("evictions");
          std::erase_if(bb.entries, [&](const entry& e) { return e.who.addr == head; });
          if (bb.candidate && bb.entries.size() < cfg_.k) bb.entries.push_back({bb.candidate, env_.now(), 0});
          bb.candidate = {};
        });
    return true;
  }

  std::uint64_t ping(const address& peer, std::function<void()> on_answer, std::function<void()> on_silence) {
    const std::uint64_t nonce = ++nonce_;
    env_.send(peer, kademlia_msg::ping{nonce, self_});
    pings_.await(nonce, peer, ping_note{std::move(on_answer), std::move(on_silence)});
    return nonce;
  }

  void drop_contact(const address& peer) {
    for (auto& b : buckets_) {
      auto before = b.entries.size();
      std::erase_if(b.entries, [&](const entry& e) { return e.who.addr == peer; });
      if (b.entries.size() != before && b.candidate && b.candidate.addr != peer && b.entries.size() < cfg_.k) {
        b.entries.push_back({b.candidate, env_.now(), 0});
        b.candidate = {};
      }
    }
  }
  void failed(const address& peer) {
    for (auto& b : buckets_)
      for (auto& e : b.entries)
        if (e.who.addr == peer && ++e.failures >= cfg_.failure_threshold) return drop_contact(peer);
  }

  // ---- joining and refresh ----

  void become_joined() {
    joined_ = true;
    join_.stop();
    const duration period = std::max<duration>(cfg_.refresh_interval / 8, 1ms);
    refresh_timer_.start(
        env_, period, [this] { refresh(false); }, detail::random_phase(env_, period));
    check_timer_.start(
        env_, cfg_.check_interval, [this] { check_contacts(); }, detail::random_phase(env_, cfg_.check_interval));
  }

  /// Pings the k closest contacts and every bucket's least recently seen one, when
  /// not heard from within check_interval (see kademlia_config::check_interval).
  void check_contacts() {
    if (!joined_) return;
    const time_point now = env_.now();
    std::vector<address> stale;
    auto consider = [&](const entry& e) {
      if (now - e.last_seen >= cfg_.check_interval && std::find(stale.begin(), stale.end(), e.who.addr) == stale.end())
        stale.push_back(e.who.addr);
    };
    for (auto& b : buckets_)
      if (!b.entries.empty()) consider(b.entries.front());
    for (auto& c : closest(self_.id, cfg_.k + 1))
      if (const entry* e = find_entry(c.addr)) consider(*e);
    for (auto& a : stale) probe(a);
  }
  void probe(const address& peer) {
    if (pings_.awaits(peer)) return;  // one at a time
    ping(
        peer, [] {},
        [this, peer] {
          failed(peer);                       // dropped at failure_threshold
          if (find_entry(peer)) probe(peer);  // still known: ask again at once
        });
  }
  const entry* find_entry(const address& a) const {
    for (auto& b : buckets_)
      for (auto& e : b.entries)
        if (e.who.addr == a) return &e;
    return nullptr;
  }

  /// One join attempt (join_attempts.hpp): a lookup of our own id through every seed,
  /// which ends by itself; when it finds no one, the next attempt follows a backoff.
  void join_lookup() {
    // the seeds' ids may be unknown: ask them for our own id first, which also makes them know us
    const std::uint64_t nonce = ++nonce_;
    lookup_op op;
    op.target = self_.id;
    op.n = cfg_.k;
    op.join = true;
    for (auto& s : join_.seeds()) op.shortlist.push_back({s, candidate::state::fresh, 0, 0});
    op.cb = [this](const result<lookup_result>& r) {
      if (joined_) return;
      if (!r) return join_.retry();  // silence, or only nodes joining themselves answered
      become_joined();
      refresh(true);  // every bucket beyond the closest neighbour (§2.3)
    };
    lookups_.emplace(nonce, std::move(op));
    pump(nonce);
  }

  void refresh(bool all) {
    if (!joined_) return;
    const time_point now = env_.now();
    // the closest neighbour's bucket: every bucket above it is refreshed on join
    int nearest = -1;
    for (std::size_t j = buckets_.size(); j-- > 0;)
      if (!buckets_[j].entries.empty()) {
        nearest = static_cast<int>(node_id::bits - 1 - j);
        break;
      }
    for (int i = static_cast<int>(node_id::bits) - 1; i >= std::max(nearest, 0); --i) {
      auto& b = bucket_at(i);
      if (!all && now - b.last_lookup < cfg_.refresh_interval) continue;
      b.last_lookup = now;
      env_.count("refreshes");
      start_lookup(random_in_bucket(i), cfg_.k, [](const result<lookup_result>&) {});
    }
  }

  // ---- lookups ----

  void start_lookup(const node_id& target, std::size_t n, lookup_callback cb) {
    if (!joined_) return cb(make_error_code(errc::not_joined));
    lookup_op op;
    op.target = target;
    op.n = n;
    op.cb = std::move(cb);
    for (auto& c : closest(target, cfg_.k))
      op.shortlist.push_back({c, c.addr == self_.addr ? candidate::state::answered : candidate::state::fresh, 0, 0});
    if (const int i = bucket_index(target); i >= 0) bucket_at(i).last_lookup = env_.now();
    const std::uint64_t nonce = ++nonce_;
    lookups_.emplace(nonce, std::move(op));
    pump(nonce);
  }

  /// Sends requests while fewer than alpha are out, then checks for the end.
  void pump(std::uint64_t nonce) {
    auto it = lookups_.find(nonce);
    if (it == lookups_.end()) return;
    lookup_op& op = it->second;
    // among the k closest not known to have failed: ask fresh ones; done when all answered
    std::size_t seen = 0;
    bool waiting = false;
    for (auto& c : op.shortlist) {
      if (seen == cfg_.k) break;
      if (c.st == candidate::state::failed) continue;
      ++seen;
      if (c.st == candidate::state::answered) continue;
      waiting = true;
      if (c.st == candidate::state::fresh && op.in_flight < cfg_.alpha) {
        c.st = candidate::state::asked;
        ++op.in_flight;
        const std::uint64_t rpc = ++nonce_;
        env_.send(c.who.addr, kademlia_msg::find_node{rpc, self_, op.target});
        rpcs_.await(rpc, c.who.addr, rpc_note{nonce});
      }
    }
    if (waiting || op.in_flight > 0) return;
    rpcs_.drop_if(
        [&](const typename rpc_table::request& r) { return r.note.lookup == nonce; });  // late answers no longer matter
    lookup_result res;
    for (auto& c : op.shortlist) {
      if (res.owners.size() == op.n) break;
      if (c.st == candidate::state::answered) {
        if (res.owners.empty()) res.hops = c.depth + (c.who.addr == self_.addr ? 0 : 1);  // + the request to it
        res.owners.push_back(c.who);
      }
    }
    auto cb = std::move(op.cb);
    const bool joined_nowhere = op.join && !op.participant_answered;
    lookups_.erase(it);
    if (joined_nowhere) {
      env_.count("join_without_participant");
      return cb(make_error_code(errc::lookup_failed));
    }
    if (res.owners.empty()) {
      env_.count("lookup_failed");
      return cb(make_error_code(errc::lookup_failed));
    }
    cb(std::move(res));
  }

  /// The timeout of request `rpc`. A first silence costs the lookup its alpha lane
  /// but not the contact: it is asked once more at once (the request or the answer
  /// may have been lost), and the lookup waits for that second answer in parallel.
  /// A second silence takes it out of consideration (§2.3: "nodes that fail to
  /// respond quickly are removed from consideration until and unless they do
  /// respond"). So one dead contact delays a lookup by at most two rpc_timeouts in
  /// all, however many there are, and never blocks a lane for more than one.
  void rpc_timed_out(std::uint64_t rpc, typename rpc_table::request r) {
    failed(r.peer);
    const std::uint64_t lookup = r.note.lookup;
    if (r.note.retry) return on_silence(lookup, r.peer, true);
    rpcs_.await_untimed(rpc, r.peer, rpc_note{lookup, false, true});  // its answer still counts if it comes
    if (auto lt = lookups_.find(lookup); lt != lookups_.end()) {
      const std::uint64_t again = ++nonce_;
      env_.send(r.peer, kademlia_msg::find_node{again, self_, lt->second.target});
      rpcs_.await(again, r.peer, rpc_note{lookup, true, false});
    }
    on_silence(lookup, r.peer, false);
  }

  void on_silence(std::uint64_t nonce, const address& peer, bool second) {
    auto it = lookups_.find(nonce);
    if (it == lookups_.end()) return;
    lookup_op& op = it->second;
    const auto from_state = second ? candidate::state::retrying : candidate::state::asked;
    auto c = std::find_if(op.shortlist.begin(), op.shortlist.end(),
                          [&](const candidate& x) { return x.who.addr == peer && x.st == from_state; });
    if (c != op.shortlist.end()) {
      if (!second) --op.in_flight;
      c->st = second ? candidate::state::failed : candidate::state::retrying;
      ++c->timeouts;
    }
    pump(nonce);
  }

  /// An answer from `from`: to a first request still within its timeout
  /// (`holds_lane`: it frees its alpha lane), to one that timed out, or to the
  /// repeated one. A contact given up on is taken back into consideration.
  void on_reply(std::uint64_t nonce, const contact& sender, const std::vector<contact>& found, bool holds_lane) {
    const address& from = sender.addr;
    auto it = lookups_.find(nonce);
    if (it == lookups_.end()) return;
    lookup_op& op = it->second;
    auto c = std::find_if(op.shortlist.begin(), op.shortlist.end(), [&](const candidate& x) {
      return x.who.addr == from &&
          (x.st == candidate::state::asked || x.st == candidate::state::retrying || x.st == candidate::state::failed);
    });
    if (c == op.shortlist.end()) return pump(nonce);
    if (holds_lane && c->st == candidate::state::asked) --op.in_flight;
    c->st = candidate::state::answered;
    const unsigned depth = c->depth + 1;
    // now we know its id from itself: a seed's was unknown, and whoever reported it may have lied
    if (c->who.id != sender.id && !op.join) env_.count("contact_id_mismatch");
    c->who = sender;
    for (auto& x : found) {
      if (x.addr.empty() || x.addr == self_.addr) continue;
      if (bound_ && !bep42_valid(x.id, x.addr)) {
        env_.count("unbound_contact");
        continue;
      }
      if (std::any_of(op.shortlist.begin(), op.shortlist.end(),
                      [&](const candidate& y) { return y.who.addr == x.addr; }))
        continue;
      op.shortlist.push_back({x, candidate::state::fresh, depth, 0});
    }
    const node_id t = op.target;
    std::stable_sort(op.shortlist.begin(), op.shortlist.end(),
                     [&](const candidate& a, const candidate& b) { return (a.who.id ^ t) < (b.who.id ^ t); });
    if (op.shortlist.size() > 4 * cfg_.k) {  // far ones never matter again, unless a request to them is out
      std::size_t idx = 0;
      std::erase_if(op.shortlist, [&](const candidate& x) {
        return idx++ >= 4 * cfg_.k && x.st != candidate::state::asked && x.st != candidate::state::retrying;
      });
    }
    pump(nonce);
  }

  E env_;
  kademlia_config cfg_;
  contact self_;
  bool bound_ = false;                 // ids bound to addresses (BEP 42)
  std::vector<bucket_state> buckets_;  // buckets_[j] is bucket 159 - j
  bool joined_ = false;
  std::uint64_t nonce_ = 0;
  std::unordered_map<std::uint64_t, lookup_op> lookups_;
  rpc_table rpcs_;    // find_node requests in flight, for the lookups
  ping_table pings_;  // liveness checks and eviction pings
  detail::join_attempts<E> join_;
  detail::payload_delivery<E> delivery_{env_};
  periodic<E> refresh_timer_, check_timer_;
};

}  // namespace dcp::dht
