#pragma once
// Scribe (Castro, Druschel, Kermarrec, Rowstron, "SCRIBE: A large-scale and
// decentralized application-level multicast infrastructure", IEEE JSAC 20(8),
// 2002): group multicast over Pastry.
//
//   dcp::dht::scribe<Env, dcp::dht::pastry<Env>> s(env, router, cfg);
//   s.create(group, cb);  s.join(group, cb);  s.leave(group);
//   s.multicast(group, bytes, cb);  s.anycast(group, bytes, cb);
//   s.on_multicast([](const node_id& group, const bytes& payload) {...});
//
// A group is a 160-bit id; its root is the node whose id is numerically
// closest to it (Pastry's owner of the key). The tree is the union of the
// Pastry routes from the members to the root, reversed (§3.1): a joining node
// sends JOIN to its Pastry next hop toward the group id; a node that is not
// yet in the tree makes the sender its child and sends its own JOIN one hop
// further (it becomes a forwarder); a node already in the tree only adds the
// child. Each step is Pastry's own next hop (pastry::next_hop_toward, the common
// API's local_lookup), so the tree is the paper's and its depth is Pastry's
// route length, < ⌈log_{2^b} N⌉.
//
//   create(g)      routes CREATE to g's root, which records the group. A JOIN
//                  that reaches a root that does not know its group is refused
//                  (errc::unknown_group), as is a multicast to it.
//   multicast(g)   routes the message to the root (§3.1), which sends it down
//                  the tree; completes when the root has accepted it.
//   leave(g)       a node that is no longer a member and has no children
//                  sends LEAVE to its parent, which removes it and, left with
//                  no children and no member, leaves in turn (§3.1).
//   anycast(g)     (Castro et al., "Scalable application-level anycast for
//                  highly dynamic groups", NGC 2003) routes toward g until the
//                  first node in the tree, then walks the tree depth first
//                  (children, then parent) until a member accepts; completes
//                  with that member, or errc::no_member when the walk ran out.
//
// Repair under churn (§3.2). Every heartbeat_interval a parent sends each
// child a HEARTBEAT naming the child's groups with the parent's path to the
// root; multicast data counts as one too. A child that hears nothing from its
// parent for parent_timeout_beats intervals asks it with a JOIN (answered by
// an accept from a live parent), once an interval, parent_probes times; a
// parent silent through those is presumed failed, and the child re-joins
// through Pastry, which finds it a new parent. (Re-joining at the first
// silence would lose the multicasts of a needless repair on every burst of
// loss.) A heartbeat that leaves a group out means the parent dropped the
// child there: the child asks to be taken back. Children send REFRESH every
// interval; a child silent for child_timeout_beats, or that acknowledges no
// copy of a multicast after max_retries sends, is dropped (the paper's
// "refreshed by an explicit message from the child"). A root failure needs
// nothing more: its children's re-joins route to the node now numerically
// closest to the group id, which becomes the root. A root that finds a node closer than itself (a newcomer)
// joins it, so the root is always Pastry's owner of the group id; until it
// has, the newcomer waits join_wait before refusing JOINs for a group it does
// not know, and passes a publish or anycast on once to the next-closest node
// (the old root, which still takes publishes).
//   Group existence survives the root: the paper replicates the root's state
// on its k closest nodes; here a JOIN says whether its sender knows the group
// exists (it was in the tree), and a root accepts a JOIN for a group it does
// not know only if the JOIN says so. A re-joining child always knows. This
// carries the one bit of root state Scribe keeps without a replication
// protocol; a hostile node can create groups this way, but only up to
// max_groups (counted).
//
// Delivery: best effort, as in the paper, whose TCP links Scribe's data hops
// replace here by per-hop acknowledgements and retransmission (a child that
// acknowledges nothing after max_retries is dropped). While the tree is whole,
// every member receives every multicast exactly once: a node passes each
// message (a random 64-bit id) on once, and remembers the last dedupe_window
// ids of each group. A multicast sent while the tree is being repaired can
// miss the members below the break (the paper's §3.3 leaves stronger
// guarantees to the application: root sequence numbers and buffering).
//
// Loops. Pastry routes only approach the group id, but under inconsistent
// routing state a join route can come back on itself. Each node keeps its
// path to the root (a path vector carried in accepts and heartbeats); a JOIN
// from an ancestor is refused, and a node that sees itself in its parent's
// path (a loop formed by a race) leaves that parent and re-joins. So a loop
// lives at most one heartbeat.
//
// The bottleneck remover (§3.3), with capacity > 0: a node that holds more
// children than its capacity (over all its groups) drops one from the group
// with the most, and sends it SHED with the others, its siblings; the child
// joins one of them directly, a level deeper. The paper drops the child
// farthest away and the child picks the sibling with the least delay through
// it; without a proximity metric here, the newest child goes, to a random
// sibling. A group with a single child is left alone (its child would re-join
// through Pastry, back to this node). Shedding moves load down the tree at
// the cost of depth: scribe_tree --capacity measures both. A multicast sent
// while a shed child re-joins can miss it and its subtree, as during repair.
//
// Hostile input (counted, no state change): a sender contact that is not the
// transport's address ("spoofed_sender"); messages about groups this node has
// no state for ("unknown_group"); data or heartbeats from a node that is not
// the group's parent here ("not_from_parent"); LEAVE or REFRESH from a node
// that is not a child ("not_a_child"); payloads above max_payload, paths
// longer than max_depth, lists longer than max_groups, DFS walks longer than
// max_anycast_visits, SHED with no siblings or more than 16 ("bad_message");
// replies that match no request ("stale_reply"), SHED from a node that is
// neither our parent nor the node we are joining ("stale_shed"). Tables: at
// most max_groups groups and max_children children
// per group ("groups_full", "children_full": the JOIN is refused and the
// joiner routes around this node), max_pending unacknowledged sends
// ("pending_full": the copy is dropped).
//
// Completions (create, join, multicast, anycast) and deliveries run after
// the event that produced them, in order, never inside a call (DESIGN §10;
// an outbox, dcp/core/outbox.hpp, dropped with the node).
// Thread safety: none; drive it from one executor.
#include <algorithm>
#include <cstdint>
#include <deque>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "dcp/core/assert.hpp"
#include "dcp/core/bytes.hpp"
#include "dcp/core/env.hpp"
#include "dcp/core/error.hpp"
#include "dcp/core/node_id.hpp"
#include "dcp/core/outbox.hpp"
#include "dcp/core/protocol.hpp"
#include "dcp/core/result.hpp"
#include "dcp/dht/contact.hpp"
#include "dcp/dht/router.hpp"
#include "dcp/dht/scribe_error.hpp"
#include "dcp/wire/message.hpp"

namespace dcp::dht {

/// What Scribe needs of its overlay: a Router that also names the next hop of a
/// route (pastry::next_hop_toward), because a tree is built one hop at a time.
template <class R>
concept StepRouter = Router<R> && requires(const R& r, const node_id& key, const std::vector<address>& excluded) {
  { r.next_hop_toward(key, excluded) } -> std::same_as<contact>;
};

struct scribe_config {
  /// Parent-to-child heartbeats and child-to-parent refreshes (§3.2).
  duration heartbeat_interval = 1s;
  /// A parent silent this many intervals is asked (a JOIN) once per interval,
  /// parent_probes times; still silent, it is presumed failed: the child re-joins.
  unsigned parent_timeout_beats = 3;
  unsigned parent_probes = 3;
  /// A child silent this many intervals is dropped (a dead child that is sent data is
  /// dropped sooner, after max_retries unacknowledged copies).
  unsigned child_timeout_beats = 8;
  /// Per-hop acknowledgement timeout (JOIN, data, routed messages).
  duration rpc_timeout = 500ms;
  /// A JOIN answered "wait" (the parent is joining itself) is sent elsewhere after this.
  duration join_wait = 4s;
  /// create / multicast / anycast fail with errc::timeout after this.
  duration op_timeout = 10s;
  /// Retransmissions of one data message to one child before the child is dropped.
  unsigned max_retries = 6;
  std::size_t max_groups = 1024;
  std::size_t max_children = 1024;  ///< per group
  /// The bottleneck remover (§3.3): the most children this node takes over
  /// all its groups before it sheds one (0: no limit). See the header.
  std::size_t capacity = 0;
  static constexpr std::size_t max_shed_siblings = 16;  ///< siblings offered to a shed child
  std::size_t max_depth = 64;                           ///< path-vector length; deeper paths are refused
  std::size_t max_payload = 64 * 1024;
  std::size_t max_pending = 16384;   ///< unacknowledged sends in flight
  std::size_t dedupe_window = 1024;  ///< multicast ids remembered per group
  std::size_t max_anycast_visits = 512;
  unsigned max_hops = 64;

  void validate() const {
    if (heartbeat_interval <= duration::zero() || rpc_timeout <= duration::zero() || join_wait <= rpc_timeout ||
        op_timeout <= rpc_timeout)
      throw error(dcp::errc::invalid_config,
                  "scribe: need heartbeat_interval > 0, rpc_timeout > 0, join_wait and op_timeout > rpc_timeout");
    if (parent_timeout_beats < 2 || child_timeout_beats < 2)
      throw error(dcp::errc::invalid_config, "scribe: parent_timeout_beats and child_timeout_beats must be >= 2");
    if (max_retries < 1 || max_groups < 1 || max_children < 1 || max_depth < 2 || max_pending < 1 ||
        dedupe_window < 1 || max_anycast_visits < 1 || max_hops < 1)
      throw error(dcp::errc::invalid_config, "scribe: bounds must be >= 1 (max_depth >= 2)");
  }
};

namespace scribe_msg {
enum class join_status : std::uint8_t { accept = 0, wait = 1, unknown_group = 2, full = 3, loop = 4 };
enum class kind : std::uint8_t { create = 0, publish = 1, anycast = 2 };
enum class op_status : std::uint8_t { ok = 0, unknown_group = 1, no_member = 2 };

struct join {  // child -> prospective parent
  static constexpr message_type wire_id = 1;
  static constexpr std::string_view wire_name = "join";
  node_id group;
  contact sender;
  bool known = false;  // the sender knows the group exists (it was in the tree)
  template <class A> void serialize(A& ar) { ar(group, sender, known); }
};
struct join_reply {
  static constexpr message_type wire_id = 2;
  static constexpr std::string_view wire_name = "join_reply";
  node_id group;
  contact sender;
  std::uint8_t status = 0;    // join_status
  std::vector<address> path;  // accept: root .. sender
  template <class A> void serialize(A& ar) { ar(group, sender, status, path); }
};
struct leave {  // child -> parent: remove me
  static constexpr message_type wire_id = 3;
  static constexpr std::string_view wire_name = "leave";
  node_id group;
  template <class A> void serialize(A& ar) { ar(group); }
};
struct beat_entry {
  node_id group;
  std::vector<address> path;  // root .. parent
  template <class A> void serialize(A& ar) { ar(group, path); }
};
struct heartbeat {  // parent -> child: the child's groups here
  static constexpr message_type wire_id = 4;
  static constexpr std::string_view wire_name = "heartbeat";
  std::vector<beat_entry> entries;
  template <class A> void serialize(A& ar) { ar(entries); }
};
struct refresh {  // child -> parent: the groups I am still your child in
  static constexpr message_type wire_id = 5;
  static constexpr std::string_view wire_name = "refresh";
  std::vector<node_id> groups;
  template <class A> void serialize(A& ar) { ar(groups); }
};
struct routed {  // create / publish / anycast, one acknowledged hop at a time
  static constexpr message_type wire_id = 6;
  static constexpr std::string_view wire_name = "routed";
  std::uint64_t hop = 0;  // acknowledged by hop_ack
  std::uint64_t id = 0;   // the origin's operation (and, for publish, the message id)
  std::uint8_t what = 0;  // kind
  bool in_tree = false;   // publish: going up the tree; anycast: the depth-first walk
  bool detour = false;    // passed on once by a root without the group (see handle_routed)
  node_id group;
  contact origin, sender;
  std::uint16_t hops = 0;
  bytes payload;
  std::vector<address> visited;  // anycast walk
  template <class A> void serialize(A& ar) {
    ar(hop, id, what, in_tree, detour, group, origin, sender, hops, payload, visited);
  }
};
struct hop_ack {
  static constexpr message_type wire_id = 7;
  static constexpr std::string_view wire_name = "hop_ack";
  std::uint64_t hop = 0;
  template <class A> void serialize(A& ar) { ar(hop); }
};
struct op_reply {  // to the origin of a create / publish / anycast
  static constexpr message_type wire_id = 8;
  static constexpr std::string_view wire_name = "op_reply";
  std::uint64_t id = 0;
  std::uint8_t status = 0;  // op_status
  contact member;           // anycast: who accepted
  template <class A> void serialize(A& ar) { ar(id, status, member); }
};
struct data {  // parent -> child
  static constexpr message_type wire_id = 9;
  static constexpr std::string_view wire_name = "data";
  node_id group;
  std::uint64_t id = 0;
  bytes payload;
  template <class A> void serialize(A& ar) { ar(group, id, payload); }
};
struct data_ack {
  static constexpr message_type wire_id = 10;
  static constexpr std::string_view wire_name = "data_ack";
  node_id group;
  std::uint64_t id = 0;
  template <class A> void serialize(A& ar) { ar(group, id); }
};
struct shed {  // parent -> child it drops (bottleneck remover): join one of these instead
  static constexpr message_type wire_id = 11;
  static constexpr std::string_view wire_name = "shed";
  node_id group;
  std::vector<contact> siblings;
  template <class A> void serialize(A& ar) { ar(group, siblings); }
};
}  // namespace scribe_msg

template <Env E, class R> class scribe {
  static_assert(StepRouter<R>,
                "dcp::dht::scribe<Env, R>: R must model dcp::dht::Router and offer "
                "contact next_hop_toward(const node_id& key, const std::vector<address>& excluded) const "
                "(see dcp/dht/pastry.hpp)");

 public:
  using messages = wire::message_set<scribe_msg::join, scribe_msg::join_reply, scribe_msg::leave, scribe_msg::heartbeat,
                                     scribe_msg::refresh, scribe_msg::routed, scribe_msg::hop_ack, scribe_msg::op_reply,
                                     scribe_msg::data, scribe_msg::data_ack, scribe_msg::shed>;
  /// What it counts (env.count), declared: dcp/core/counter_set.hpp.
  static constexpr dcp::counter_set counters{{"groups_full",
                                              "spoofed_sender",
                                              "forwarders_created",
                                              "children_full",
                                              "join_loop",
                                              "bad_message",
                                              "stale_shed",
                                              "shed",
                                              "loop_broken",
                                              "stale_reply",
                                              "unknown_group",
                                              "not_a_child",
                                              "not_from_parent",
                                              "dropped_by_parent",
                                              "hop_limit",
                                              "not_tree_neighbour",
                                              "parent_failed",
                                              "children_shed",
                                              "join_wait_expired",
                                              "join_timeouts",
                                              "rejoins",
                                              "became_root",
                                              "pruned",
                                              "parent_probes",
                                              "children_expired",
                                              "root_moved",
                                              "duplicates",
                                              "pending_full",
                                              "data_sent",
                                              "child_unresponsive",
                                              "data_resent",
                                              "op_timeouts",
                                              "op_resent",
                                              "root_detours",
                                              "anycast_budget",
                                              "anycast_accepted",
                                              "hop_timeouts"}};
  static constexpr std::string_view name = "scribe";
  static constexpr protocol_id default_id = 95;
  using done_callback = std::function<void(result<void>)>;        ///< a callback taking std::error_code fits too
  using anycast_callback = std::function<void(result<contact>)>;  ///< the member that accepted, or the error
  using deliver_fn = std::function<void(const node_id& group, const bytes& payload)>;
  /// A member's answer to an anycast: true accepts it (and ends the walk here).
  using anycast_fn = std::function<bool(const node_id& group, const contact& origin, const bytes& payload)>;

  enum class tree_state { joining, attached, root };

  scribe(E env, R& router, scribe_config cfg = {})
      : env_(std::move(env)), out_(env_), router_(router), cfg_(std::move(cfg)) {
    cfg_.validate();
    beat_.start(
        env_, cfg_.heartbeat_interval, [this] { tick(); },
        duration(1 + env_.rng().below(static_cast<std::uint64_t>(cfg_.heartbeat_interval.count()))));
  }
  scribe(const scribe&) = delete;
  scribe& operator=(const scribe&) = delete;
  ~scribe() {
    beat_.stop();
    for (auto& [g, s] : groups_) env_.cancel(s.join_timer);
    for (auto& [k, p] : pending_data_) env_.cancel(p.timer);
    for (auto& [h, p] : hops_) env_.cancel(p.timer);
    for (auto& [i, o] : ops_) env_.cancel(o.timer), env_.cancel(o.retry);
  }

  void on_multicast(deliver_fn f) { on_multicast_ = std::move(f); }
  void on_anycast(anycast_fn f) { on_anycast_ = std::move(f); }

  // ---- operations ----

  /// Records the group at its root; cb({}) once the root has.
  void create(const node_id& group, done_callback cb) {
    if (!router_.joined()) return later([cb = std::move(cb)] { cb(make_error_code(scribe_errc::not_joined)); });
    start_op(scribe_msg::kind::create, group, {}, std::move(cb), {});
  }

  /// Becomes a member; cb({}) once attached to the tree (or the root), or
  /// errc::unknown_group when the root does not know the group.
  void join(const node_id& group, done_callback cb) {
    if (!router_.joined()) return later([cb = std::move(cb)] { cb(make_error_code(scribe_errc::not_joined)); });
    auto it = groups_.find(group);
    if (it == groups_.end()) {
      if (groups_.size() >= cfg_.max_groups) {
        env_.count("groups_full");
        return later([cb = std::move(cb)] { cb(make_error_code(scribe_errc::table_full)); });
      }
      it = groups_.emplace(group, group_state{}).first;
      it->second.member = true;
      it->second.join_cbs.push_back(std::move(cb));
      start_join(group);
      return;
    }
    it->second.member = true;
    if (it->second.state == tree_state::joining) return it->second.join_cbs.push_back(std::move(cb));
    later([cb = std::move(cb)] { cb({}); });
  }

  /// Stops being a member; prunes this node from the tree when it forwards for no one.
  /// A join still in flight completes with std::errc::operation_canceled.
  void leave(const node_id& group) {
    auto it = groups_.find(group);
    if (it == groups_.end() || !it->second.member) return;
    it->second.member = false;
    fail_join_cbs(it->second,
                  make_error_code(std::errc::operation_canceled));  // a join in flight ends: the caller left
    maybe_prune(group);
  }

  /// Sends `payload` to every member of the group through its root. cb({}) when
  /// the root has accepted it (and started it down the tree).
  void multicast(const node_id& group, bytes payload, done_callback cb) {
    if (!router_.joined()) return later([cb = std::move(cb)] { cb(make_error_code(scribe_errc::not_joined)); });
    if (payload.size() > cfg_.max_payload)
      return later([cb = std::move(cb)] { cb(make_error_code(scribe_errc::bad_argument)); });
    start_op(scribe_msg::kind::publish, group, std::move(payload), std::move(cb), {});
  }

  /// Delivers `payload` to one member that accepts it (on_anycast), found by a
  /// depth-first walk of the tree from where the route toward the group meets it.
  void anycast(const node_id& group, bytes payload, anycast_callback cb) {
    if (!router_.joined()) return later([cb = std::move(cb)] { cb(make_error_code(scribe_errc::not_joined)); });
    if (payload.size() > cfg_.max_payload)
      return later([cb = std::move(cb)] { cb(make_error_code(scribe_errc::bad_argument)); });
    start_op(scribe_msg::kind::anycast, group, std::move(payload), {}, std::move(cb));
  }

  // ---- inspection ----

  const scribe_config& config() const noexcept { return cfg_; }
  std::size_t group_count() const noexcept { return groups_.size(); }
  bool has_group(const node_id& g) const { return groups_.contains(g); }
  bool is_member(const node_id& g) const {
    auto* s = find(g);
    return s && s->member;
  }
  bool is_root(const node_id& g) const {
    auto* s = find(g);
    return s && s->state == tree_state::root;
  }
  bool attached(const node_id& g) const {
    auto* s = find(g);
    return s && s->state != tree_state::joining;
  }
  /// The parent's address; empty at the root, while joining, or without the group.
  address parent(const node_id& g) const {
    auto* s = find(g);
    return s && s->state == tree_state::attached ? s->parent.addr : address{};
  }
  /// Children that have been accepted (not those waiting for this node to attach).
  std::vector<address> children(const node_id& g) const {
    std::vector<address> out;
    if (auto* s = find(g))
      for (auto& c : s->children)
        if (c.accepted) out.push_back(c.who.addr);
    return out;
  }
  /// Root .. self, as this node last heard it; empty while joining.
  const std::vector<address>& path(const node_id& g) const {
    static const std::vector<address> none;
    auto* s = find(g);
    return s && s->state != tree_state::joining ? s->path : none;
  }

  /// Local invariants, for the simulator to call after every event.
  void check_invariants() const {
    DCP_ASSERT(groups_.size() <= cfg_.max_groups, "scribe: group table over its bound");
    DCP_ASSERT(pending_data_.size() <= cfg_.max_pending && hops_.size() <= cfg_.max_pending,
               "scribe: pending over its bound");
    for (auto& [g, s] : groups_) {
      DCP_ASSERT(s.children.size() <= cfg_.max_children, "scribe: children over their bound");
      DCP_ASSERT(s.seen_order.size() <= cfg_.dedupe_window && s.seen.size() == s.seen_order.size(),
                 "scribe: dedupe window");
      if (s.state != tree_state::joining) {
        DCP_ASSERT(!s.path.empty() && s.path.back() == router_.self().addr && s.path.size() <= cfg_.max_depth,
                   "scribe: an attached node's path ends at itself");
        DCP_ASSERT(std::count(s.path.begin(), s.path.end(), router_.self().addr) == 1,
                   "scribe: self twice in its own path");
        DCP_ASSERT(s.known, "scribe: in a tree without knowing the group");
      }
      if (s.state == tree_state::attached)
        DCP_ASSERT(s.path.size() >= 2 && s.path[s.path.size() - 2] == s.parent.addr, "scribe: path through the parent");
      for (auto& c : s.children) {
        DCP_ASSERT(c.who.addr != router_.self().addr, "scribe: own child");
        if (s.state == tree_state::attached) DCP_ASSERT(c.who.addr != s.parent.addr, "scribe: parent is a child");
      }
    }
  }

  // ---- messages ----

  void on_message(const address& from, const scribe_msg::join& m) {
    if (m.sender.addr != from) return env_.count("spoofed_sender");
    if (!router_.joined() || from == router_.self().addr) return;  // silence: the joiner routes around us
    using scribe_msg::join_status;
    auto it = groups_.find(m.group);
    if (it == groups_.end()) {
      if (groups_.size() >= cfg_.max_groups) {
        env_.count("groups_full");
        return reply_join(m.group, from, join_status::full);
      }
      // not in the tree: a forwarder from now on, joining on the child's behalf (§3.1)
      group_state s;
      s.known = m.known;
      s.children.push_back(child{m.sender, env_.now(), false});
      groups_.emplace(m.group, std::move(s));
      env_.count("forwarders_created");
      start_join(m.group);
      // attached at once (we are the root) answered the child already; else it waits for us
      if (auto g = groups_.find(m.group); g != groups_.end() && g->second.state == tree_state::joining)
        reply_join(m.group, from, join_status::wait);
      return;
    }
    group_state& s = it->second;
    // a JOIN that knows the group settles a root that did not: the old root migrating
    // here, or a child of a crashed root
    const bool promote = m.known && s.root_pending;
    if (m.known) s.known = true;
    if (auto* c = find_child(s, from)) {  // a repeated JOIN (our answer was lost)
      c->last_heard = env_.now();
      if (promote) return start_join(m.group);
      reply_join(m.group, from, c->accepted ? join_status::accept : join_status::wait);
      return;
    }
    if (s.children.size() >= cfg_.max_children) {
      env_.count("children_full");
      return reply_join(m.group, from, join_status::full);
    }
    const bool ancestor =
        s.state != tree_state::joining && std::find(s.path.begin(), s.path.end(), from) != s.path.end();
    if (ancestor || (s.state == tree_state::joining && s.target.addr == from)) {
      env_.count("join_loop");
      return reply_join(m.group, from, join_status::loop);
    }
    const bool accepted = s.state != tree_state::joining;
    s.children.push_back(child{m.sender, env_.now(), accepted});
    reply_join(m.group, from, accepted ? join_status::accept : join_status::wait);
    if (promote) start_join(m.group);
    if (accepted) shed_load();
  }

  /// Our parent sheds us (bottleneck remover): we join one of our siblings.
  void on_message(const address& from, const scribe_msg::shed& m) {
    if (m.siblings.empty() || m.siblings.size() > scribe_config::max_shed_siblings) return env_.count("bad_message");
    auto it = groups_.find(m.group);
    // From our parent, or from the node we are joining (its accept may come
    // after the shed: reordered), which holds us no more either way.
    const bool ours = it != groups_.end() &&
        ((it->second.state == tree_state::attached && it->second.parent.addr == from) ||
         (it->second.state == tree_state::joining && it->second.target.addr == from));
    if (!ours) return env_.count("stale_shed");
    std::vector<contact> candidates;
    for (auto& c : m.siblings)
      if (c.addr != router_.self().addr && c.addr != from) candidates.push_back(c);
    env_.count("shed");
    if (candidates.empty()) return retry_join(m.group, false);
    // The paper picks the sibling with the least delay through it; without a
    // proximity metric, any one.
    join_via(m.group, candidates[env_.rng().below(candidates.size())]);
  }

  void on_message(const address& from, const scribe_msg::join_reply& m) {
    if (m.sender.addr != from) return env_.count("spoofed_sender");
    using scribe_msg::join_status;
    const auto status = static_cast<join_status>(m.status);
    auto it = groups_.find(m.group);
    if (it != groups_.end() && it->second.state == tree_state::attached && it->second.parent.addr == from &&
        status == join_status::accept) {
      // our parent re-attached elsewhere and accepts its children again: a new path
      if (!valid_parent_path(m.path, from)) {
        env_.count("loop_broken");
        env_.send(from, scribe_msg::leave{m.group});
        retry_join(m.group, true);
        return;
      }
      it->second.parent_heard = env_.now(), it->second.probes = 0;
      it->second.path = m.path;
      it->second.path.push_back(router_.self().addr);
      return;
    }
    if (it == groups_.end() || it->second.state != tree_state::joining || it->second.target.addr != from) {
      env_.count("stale_reply");
      // an accept we no longer want: tell the sender, or it keeps us as a child
      if (status == join_status::accept) env_.send(from, scribe_msg::leave{m.group});
      return;
    }
    group_state& s = it->second;
    switch (status) {
      case join_status::accept:
        if (!valid_parent_path(m.path, from)) {
          env_.count("bad_message");
          env_.send(from, scribe_msg::leave{m.group});
          return retry_join(m.group, true);
        }
        attach(m.group, m.sender, m.path);
        break;
      case join_status::wait:
        if (s.waits_since == time_point{}) s.waits_since = env_.now();
        s.silent = 0;
        break;
      case join_status::unknown_group:
        drop_group(m.group, scribe_errc::unknown_group);
        break;
      case join_status::full:
      case join_status::loop:
        retry_join(m.group, true);
        break;
      default:
        env_.count("bad_message");
        return;
    }
  }

  void on_message(const address& from, const scribe_msg::leave& m) {
    auto it = groups_.find(m.group);
    if (it == groups_.end()) return env_.count("unknown_group");
    auto& ch = it->second.children;
    auto c = std::find_if(ch.begin(), ch.end(), [&](const child& x) { return x.who.addr == from; });
    if (c == ch.end()) return env_.count("not_a_child");
    ch.erase(c);
    drop_pending_to(from, m.group);
    maybe_prune(m.group);
  }

  void on_message(const address& from, const scribe_msg::heartbeat& m) {
    if (m.entries.size() > cfg_.max_groups) return env_.count("bad_message");
    std::vector<node_id> named;
    for (auto& e : m.entries) {
      named.push_back(e.group);
      auto it = groups_.find(e.group);
      if (it == groups_.end()) {
        env_.count("unknown_group");
        env_.send(from, scribe_msg::leave{e.group});  // it holds us as a child: we are not
        continue;
      }
      group_state& s = it->second;
      if (s.state == tree_state::joining && s.target.addr == from) {
        // the heartbeat of the node we are joining: its accept was lost; this says as much
        if (valid_parent_path(e.path, from)) attach(e.group, s.target, e.path);
        continue;
      }
      if (s.state != tree_state::attached || s.parent.addr != from) {
        env_.count("not_from_parent");
        env_.send(from, scribe_msg::leave{e.group});
        continue;
      }
      if (!valid_parent_path(e.path, from)) {
        // we are in our parent's path (a loop formed by a race), or it is absurd: leave it
        env_.count("loop_broken");
        env_.send(from, scribe_msg::leave{e.group});
        retry_join(e.group, true);
        continue;
      }
      s.parent_heard = env_.now(), s.probes = 0;
      s.path = e.path;
      s.path.push_back(router_.self().addr);
    }
    // a parent whose heartbeat leaves out one of our groups has dropped us there
    if (!m.entries.empty()) {
      std::vector<node_id> dropped;
      for (auto& [g, s] : groups_)
        if (s.state == tree_state::attached && s.parent.addr == from &&
            std::find(named.begin(), named.end(), g) == named.end())
          dropped.push_back(g);
      for (auto& g : dropped) {  // ask to be taken back: its accept re-attaches us in place
        env_.count("dropped_by_parent");
        env_.send(from, scribe_msg::join{g, router_.self(), true});
      }
    }
  }

  void on_message(const address& from, const scribe_msg::refresh& m) {
    if (m.groups.size() > cfg_.max_groups) return env_.count("bad_message");
    for (auto& g : m.groups) {
      auto it = groups_.find(g);
      if (it == groups_.end()) {
        env_.count("unknown_group");
        continue;
      }
      if (auto* c = find_child(it->second, from))
        c->last_heard = env_.now();
      else
        env_.count("not_a_child");
    }
  }

  void on_message(const address& from, const scribe_msg::routed& m) {
    if (m.sender.addr != from) return env_.count("spoofed_sender");
    if (!router_.joined()) return;  // no ack: the sender routes around us
    env_.send(from, scribe_msg::hop_ack{m.hop});
    if (m.payload.size() > cfg_.max_payload || m.visited.size() > cfg_.max_anycast_visits ||
        m.what > static_cast<std::uint8_t>(scribe_msg::kind::anycast))
      return env_.count("bad_message");
    // a walk takes up to two steps per tree node it visits
    if (m.hops >= cfg_.max_hops + (m.in_tree ? 2 * cfg_.max_anycast_visits : 0)) return env_.count("hop_limit");
    scribe_msg::routed next = m;
    const auto what = static_cast<scribe_msg::kind>(m.what);
    if (m.in_tree) {
      auto it = groups_.find(m.group);
      group_state* s = it == groups_.end() ? nullptr : &it->second;
      const bool from_child = s && find_child(*s, from) != nullptr;
      const bool from_parent = s && s->state == tree_state::attached && s->parent.addr == from;
      if (what == scribe_msg::kind::anycast && !from_child && !from_parent) {
        env_.count("not_tree_neighbour");  // a walk step from outside our part of the tree
        answer(m, scribe_msg::op_status::no_member);
        return;
      }
      if (what == scribe_msg::kind::publish && !from_child) {
        env_.count("not_a_child");  // up the tree only from a child; else route it as any publish
        next.in_tree = false;
      }
    }
    ++next.hops;
    handle_routed(std::move(next), {});
  }

  void on_message(const address& from, const scribe_msg::hop_ack& m) {
    auto it = hops_.find(m.hop);
    if (it == hops_.end() || it->second.next != from) return;
    env_.cancel(it->second.timer);
    hops_.erase(it);
  }

  void on_message(const address& from, const scribe_msg::op_reply& m) {
    (void)from;
    auto it = ops_.find(m.id);
    if (it == ops_.end()) return env_.count("stale_reply");
    const auto st = static_cast<scribe_msg::op_status>(m.status);
    std::error_code ec;
    if (st == scribe_msg::op_status::unknown_group)
      ec = make_error_code(scribe_errc::unknown_group);
    else if (st == scribe_msg::op_status::no_member)
      ec = make_error_code(scribe_errc::no_member);
    else if (st != scribe_msg::op_status::ok)
      return env_.count("bad_message");
    finish_op(m.id, ec, m.member);
  }

  void on_message(const address& from, const scribe_msg::data& m) {
    env_.send(from, scribe_msg::data_ack{m.group, m.id});  // it arrived: stop resending, whatever we make of it
    if (m.payload.size() > cfg_.max_payload) return env_.count("bad_message");
    auto it = groups_.find(m.group);
    if (it == groups_.end()) {
      env_.count("unknown_group");
      env_.send(from, scribe_msg::leave{m.group});
      return;
    }
    group_state& s = it->second;
    if (s.state != tree_state::attached || s.parent.addr != from) {
      env_.count("not_from_parent");
      if (!(s.state == tree_state::joining && s.target.addr == from)) env_.send(from, scribe_msg::leave{m.group});
      return;
    }
    s.parent_heard = env_.now(), s.probes = 0;  // multicast data serve as heartbeats (§3.2)
    disseminate(m.group, m.id, m.payload);
  }

  void on_message(const address& from, const scribe_msg::data_ack& m) {
    auto it = pending_data_.find(data_key{from, m.group, m.id});
    if (it == pending_data_.end()) return;
    env_.cancel(it->second.timer);
    pending_data_.erase(it);
  }

  /// The transport says `peer` cannot be reached: as a parent, re-join; as a child, drop it.
  void on_unreachable(const address& peer) {
    std::vector<node_id> rejoin, prune;
    for (auto& [g, s] : groups_) {
      if (s.state == tree_state::attached && s.parent.addr == peer) rejoin.push_back(g);
      if (std::erase_if(s.children, [&](const child& c) { return c.who.addr == peer; })) prune.push_back(g);
    }
    for (auto& g : rejoin) env_.count("parent_failed"), retry_join(g, true);
    for (auto& g : prune) drop_pending_to(peer, g), maybe_prune(g);
  }

 private:
  struct child {
    contact who;
    time_point last_heard{};
    bool accepted = false;  // false: waits for this node to attach
  };
  struct group_state {
    tree_state state = tree_state::joining;
    bool member = false;
    bool known = false;         // the group exists (created, or this node was in its tree)
    bool root_pending = false;  // the group id's root, not knowing the group (yet)
    contact parent;             // attached only
    std::vector<address> path;  // root .. self, attached or root
    std::vector<child> children;
    time_point parent_heard{};
    unsigned probes = 0;  // JOINs re-sent to a silent parent before it is given up
    // joining
    contact target;
    unsigned silent = 0;       // unanswered JOINs to target
    time_point waits_since{};  // first "wait" from target
    std::vector<address> excluded;
    timer_id join_timer{};
    std::vector<done_callback> join_cbs;
    // multicast ids seen (dedupe window)
    std::unordered_set<std::uint64_t> seen;
    std::deque<std::uint64_t> seen_order;
  };
  struct data_key {
    address to;
    node_id group;
    std::uint64_t id = 0;
    bool operator==(const data_key&) const = default;
  };
  struct data_key_hash {
    std::size_t operator()(const data_key& k) const noexcept {
      return std::hash<address>{}(k.to) ^ (std::hash<node_id>{}(k.group) * 31) ^
          (std::hash<std::uint64_t>{}(k.id) * 131);
    }
  };
  struct pending_copy {
    timer_id timer{};
    unsigned tries = 1;
    bytes payload;
  };
  struct pending_hop {
    scribe_msg::routed msg;
    address next;
    std::vector<address> excluded;
    timer_id timer{};
    unsigned attempts = 1;
  };
  struct op {
    scribe_msg::kind what{};
    node_id group;
    bytes payload;
    done_callback done;
    anycast_callback any;
    timer_id timer{}, retry{};
  };

  const group_state* find(const node_id& g) const {
    auto it = groups_.find(g);
    return it == groups_.end() ? nullptr : &it->second;
  }
  static child* find_child(group_state& s, const address& a) {
    auto it = std::find_if(s.children.begin(), s.children.end(), [&](const child& c) { return c.who.addr == a; });
    return it == s.children.end() ? nullptr : &*it;
  }

  // ---- completions, after the event (DESIGN §10) ----

  void later(std::function<void()> fn) { out_.push(std::move(fn)); }

  // ---- the tree ----

  void reply_join(const node_id& g, const address& to, scribe_msg::join_status st) {
    scribe_msg::join_reply r{g, router_.self(), static_cast<std::uint8_t>(st), {}};
    if (st == scribe_msg::join_status::accept) r.path = groups_.at(g).path;
    env_.send(to, std::move(r));
  }

  /// A path offered by a would-be parent: non-empty, ends at it, short enough, without us.
  bool valid_parent_path(const std::vector<address>& p, const address& parent) const {
    return !p.empty() && p.size() < cfg_.max_depth && p.back() == parent &&
        std::find(p.begin(), p.end(), router_.self().addr) == p.end();
  }

  /// One step of the join route: to Pastry's next hop toward the group, or root here.
  void start_join(const node_id& g) {
    group_state& s = groups_.at(g);
    if (s.join_timer) env_.cancel(s.join_timer), s.join_timer = {};
    s.state = tree_state::joining;
    s.root_pending = false;
    s.path.clear();
    // accepted children stay: they learn our new path from the next heartbeat, and their
    // paths (which name us) make them refuse our JOIN if Pastry routes it into our subtree
    if (s.excluded.size() > 16) s.excluded.clear();  // bounded; stale exclusions must not strand us
    const contact next = router_.next_hop_toward(g, s.excluded);
    if (next.addr == router_.self().addr) return become_root(g);
    join_via(g, next);
  }
  /// Joins g through `next` (Pastry's next hop, or a sibling a shedding parent named).
  void join_via(const node_id& g, const contact& next) {
    group_state& s = groups_.at(g);
    if (s.join_timer) env_.cancel(s.join_timer), s.join_timer = {};
    s.state = tree_state::joining;
    s.root_pending = false;
    s.path.clear();
    s.target = next;
    s.silent = 0;
    s.waits_since = {};
    send_join(g);
  }
  /// The bottleneck remover (§3.3): while this node holds more children than
  /// its capacity, it drops one from the group with the most, and hands it
  /// the others (its siblings) to join instead, so the tree grows deeper and
  /// the load spreads. The paper drops the child farthest away; there is no
  /// proximity metric here, so it drops the newest. A group with one child
  /// is left alone: its child would re-join through Pastry, back here.
  void shed_load() {
    if (cfg_.capacity == 0) return;
    auto load = [](const group_state& s) {
      return static_cast<std::size_t>(
          std::count_if(s.children.begin(), s.children.end(), [](const child& c) { return c.accepted; }));
    };
    std::size_t total = 0;
    for (auto& [g, s] : groups_) total += load(s);
    while (total > cfg_.capacity) {
      auto most = groups_.end();
      for (auto it = groups_.begin(); it != groups_.end(); ++it)
        if (most == groups_.end() || load(it->second) > load(most->second)) most = it;
      if (most == groups_.end() || load(most->second) < 2) return;
      auto& ch = most->second.children;
      auto victim = std::find_if(ch.rbegin(), ch.rend(), [](const child& c) { return c.accepted; });
      scribe_msg::shed out{most->first, {}};
      for (auto& c : ch)
        if (c.accepted && c.who.addr != victim->who.addr && out.siblings.size() < scribe_config::max_shed_siblings)
          out.siblings.push_back(c.who);
      const address to = victim->who.addr;
      ch.erase(std::next(victim).base());
      drop_pending_to(to, most->first);
      env_.send(to, std::move(out));
      env_.count("children_shed");
      --total;
    }
  }
  void send_join(const node_id& g) {
    group_state& s = groups_.at(g);
    env_.send(s.target.addr, scribe_msg::join{g, router_.self(), s.known});
    s.join_timer = env_.arm(cfg_.rpc_timeout, [this, g] {
      auto it = groups_.find(g);
      if (it == groups_.end() || it->second.state != tree_state::joining) return;
      group_state& s = it->second;
      s.join_timer = {};
      const bool waited_too_long = s.waits_since != time_point{} && env_.now() - s.waits_since > cfg_.join_wait;
      if (waited_too_long || ++s.silent >= 3) {
        env_.count(waited_too_long ? "join_wait_expired" : "join_timeouts");
        s.excluded.push_back(s.target.addr);
        start_join(g);
      } else {
        send_join(g);
      }
    });
  }
  /// Leaves the current parent (or join target) and joins again; `exclude` skips it.
  void retry_join(const node_id& g, bool exclude) {
    auto it = groups_.find(g);
    if (it == groups_.end()) return;
    group_state& s = it->second;
    const address old = s.state == tree_state::attached ? s.parent.addr
        : s.state == tree_state::joining                ? s.target.addr
                                                        : address{};
    if (exclude && !old.empty()) s.excluded.push_back(old);
    env_.count("rejoins");
    start_join(g);
  }

  void become_root(const node_id& g) {
    group_state& s = groups_.at(g);
    if (!s.known) {
      // the group id's root, and we do not know the group. Either no one created it, or we
      // joined the overlay next to its id a moment ago and the old root has not yet moved
      // its tree here (it does within a heartbeat): wait join_wait for a JOIN that knows
      // the group, then refuse the joins waiting on us
      s.root_pending = true;
      s.target = {};
      s.join_timer = env_.arm(cfg_.join_wait, [this, g] {
        auto it = groups_.find(g);
        if (it == groups_.end() || !it->second.root_pending) return;
        it->second.join_timer = {};
        env_.count("unknown_group");
        drop_group(g, scribe_errc::unknown_group);
      });
      return;
    }
    s.root_pending = false;
    const bool was_root = s.state == tree_state::root;
    s.state = tree_state::root;
    s.parent = {};
    s.path = {router_.self().addr};
    s.excluded.clear();
    if (!was_root) env_.count("became_root");
    accept_waiting(g);
    fail_join_cbs(s, {});
  }

  void attach(const node_id& g, const contact& parent, const std::vector<address>& ppath) {
    group_state& s = groups_.at(g);
    if (s.join_timer) env_.cancel(s.join_timer), s.join_timer = {};
    s.state = tree_state::attached;
    s.known = true;
    s.parent = parent;
    s.parent_heard = env_.now(), s.probes = 0;
    s.path = ppath;
    s.path.push_back(router_.self().addr);
    s.excluded.clear();
    // a child that is now our parent, or an ancestor, cannot stay our child
    std::erase_if(s.children,
                  [&](const child& c) { return std::find(s.path.begin(), s.path.end(), c.who.addr) != s.path.end(); });
    accept_waiting(g);
    fail_join_cbs(s, {});
    maybe_prune(g);
  }

  void accept_waiting(const node_id& g) {
    group_state& s = groups_.at(g);
    for (auto& c : s.children)
      if (!c.accepted) {
        c.accepted = true;
        c.last_heard = env_.now();
        reply_join(g, c.who.addr, scribe_msg::join_status::accept);
      }
    shed_load();
  }

  void fail_join_cbs(group_state& s, std::error_code ec) {
    for (auto& cb : s.join_cbs) later([cb = std::move(cb), ec] { cb(ec); });
    s.join_cbs.clear();
  }

  /// Drops the group here (unknown at its root): the waiting children and joins fail too.
  void drop_group(const node_id& g, scribe_errc why) {
    group_state& s = groups_.at(g);
    for (auto& c : s.children)
      env_.send(c.who.addr,
                scribe_msg::join_reply{
                    g, router_.self(), static_cast<std::uint8_t>(scribe_msg::join_status::unknown_group), {}});
    fail_join_cbs(s, make_error_code(why));
    erase_group(g);
  }
  void erase_group(const node_id& g) {
    auto it = groups_.find(g);
    if (it == groups_.end()) return;
    if (it->second.join_timer) env_.cancel(it->second.join_timer);
    for (auto& c : it->second.children) drop_pending_to(c.who.addr, g);
    groups_.erase(it);
  }

  /// A node that is neither a member nor anyone's parent leaves the tree (§3.1). The
  /// root stays: it is the group's record.
  void maybe_prune(const node_id& g) {
    auto it = groups_.find(g);
    if (it == groups_.end()) return;
    group_state& s = it->second;
    if (s.member || !s.children.empty() || s.state == tree_state::root) return;
    if (s.state == tree_state::attached)
      env_.send(s.parent.addr, scribe_msg::leave{g});
    else if (s.target)
      env_.send(s.target.addr, scribe_msg::leave{g});
    env_.count("pruned");
    erase_group(g);
  }

  void drop_pending_to(const address& to, const node_id& g) {
    std::erase_if(pending_data_, [&](auto& kv) {
      if (kv.first.to != to || kv.first.group != g) return false;
      env_.cancel(kv.second.timer);
      return true;
    });
  }

  // ---- maintenance ----

  void tick() {
    if (!router_.joined()) return;
    const time_point now = env_.now();
    const duration parent_timeout = cfg_.heartbeat_interval * cfg_.parent_timeout_beats;
    const duration child_timeout = cfg_.heartbeat_interval * cfg_.child_timeout_beats;
    std::vector<node_id> rejoin, migrate, prune;
    std::unordered_map<address, scribe_msg::heartbeat> beats;
    std::unordered_map<address, scribe_msg::refresh> refreshes;
    for (auto& [g, s] : groups_) {
      if (s.state == tree_state::attached && now - s.parent_heard > parent_timeout) {
        // silent: heartbeats lost, or the parent failed. Ask it first (a JOIN from a child it
        // holds is answered with an accept); only a parent silent to parent_probes of those is
        // given up. Re-joining at once would lose the multicasts of the repair on every burst
        // of loss, and move the child off its Pastry route.
        if (s.probes < cfg_.parent_probes) {
          ++s.probes;
          env_.count("parent_probes");
          env_.send(s.parent.addr, scribe_msg::join{g, router_.self(), true});
        } else {
          rejoin.push_back(g);
          continue;
        }
      }
      if (s.state == tree_state::root && router_.next_hop_toward(g, {}).addr != router_.self().addr) {
        migrate.push_back(g);  // a node closer to the group id has joined the overlay: it is the root
        continue;
      }
      const std::size_t before = s.children.size();
      std::erase_if(s.children, [&](const child& c) { return c.accepted && now - c.last_heard > child_timeout; });
      if (s.children.size() != before) {
        env_.count("children_expired", static_cast<std::int64_t>(before - s.children.size()));
        prune.push_back(g);
      }
      if (s.state == tree_state::joining) continue;
      for (auto& c : s.children)
        if (c.accepted) beats[c.who.addr].entries.push_back({g, s.path});
      if (s.state == tree_state::attached) refreshes[s.parent.addr].groups.push_back(g);
    }
    for (auto& g : rejoin) env_.count("parent_failed"), retry_join(g, true);
    for (auto& g : migrate) env_.count("root_moved"), start_join(g);
    for (auto& g : prune) maybe_prune(g);
    for (auto& [to, b] : beats) env_.send(to, std::move(b));
    for (auto& [to, r] : refreshes) env_.send(to, std::move(r));
  }

  // ---- data down the tree ----

  /// A multicast arriving here (at the root, or from the parent): deliver once, pass on once.
  void disseminate(const node_id& g, std::uint64_t id, const bytes& payload) {
    group_state& s = groups_.at(g);
    if (s.seen.contains(id)) return env_.count("duplicates");
    s.seen.insert(id);
    s.seen_order.push_back(id);
    if (s.seen_order.size() > cfg_.dedupe_window) {
      s.seen.erase(s.seen_order.front());
      s.seen_order.pop_front();
    }
    if (s.member && on_multicast_)
      later([this, g, payload] {
        if (on_multicast_) on_multicast_(g, payload);
      });
    for (auto& c : s.children)
      if (c.accepted) send_copy(c.who.addr, g, id, payload, 1);
  }

  void send_copy(const address& to, const node_id& g, std::uint64_t id, const bytes& payload, unsigned tries) {
    const data_key key{to, g, id};
    if (tries == 1 && (pending_data_.size() >= cfg_.max_pending || pending_data_.contains(key))) {
      if (!pending_data_.contains(key)) env_.count("pending_full");
      return;
    }
    env_.count("data_sent");
    env_.send(to, scribe_msg::data{g, id, payload});
    auto& p = pending_data_[key];
    p.tries = tries;
    if (tries == 1) p.payload = payload;
    p.timer = env_.arm(cfg_.rpc_timeout, [this, key] {
      auto it = pending_data_.find(key);
      if (it == pending_data_.end()) return;
      pending_copy copy = std::move(it->second);
      pending_data_.erase(it);
      auto git = groups_.find(key.group);
      if (git == groups_.end() || !find_child(git->second, key.to)) return;
      if (copy.tries >= cfg_.max_retries) {
        env_.count("child_unresponsive");
        std::erase_if(git->second.children, [&](const child& c) { return c.who.addr == key.to; });
        drop_pending_to(key.to, key.group);
        maybe_prune(key.group);
        return;
      }
      env_.count("data_resent");
      auto& np = pending_data_[key];
      np.payload = std::move(copy.payload);
      send_copy(key.to, key.group, key.id, np.payload, copy.tries + 1);
    });
  }

  // ---- routed operations ----

  std::uint64_t fresh_id() {
    std::uint64_t n = 0;
    while (n == 0 || ops_.contains(n) || hops_.contains(n)) n = env_.rng()();
    return n;
  }

  void start_op(scribe_msg::kind what, const node_id& g, bytes payload, done_callback done, anycast_callback any) {
    const std::uint64_t id = fresh_id();
    op o{what, g, std::move(payload), std::move(done), std::move(any), {}, {}};
    o.timer = env_.arm(cfg_.op_timeout, [this, id] {
      env_.count("op_timeouts");
      finish_op(id, make_error_code(scribe_errc::timeout), {});
    });
    ops_.emplace(id, std::move(o));
    send_op(id, 0);
  }
  /// Sends (and, for create and multicast, sends again every op_timeout / 4 until
  /// answered: the root accepts each id once, so a repeat is harmless). An anycast
  /// is not repeated: a second walk could give it to a second member.
  void send_op(std::uint64_t id, unsigned attempt) {
    auto it = ops_.find(id);
    if (it == ops_.end()) return;
    op& o = it->second;
    if (attempt > 0) env_.count("op_resent");
    if (o.what != scribe_msg::kind::anycast)
      o.retry = env_.arm(cfg_.op_timeout / 4, [this, id, attempt] { send_op(id, attempt + 1); });
    scribe_msg::routed m;
    m.id = id;
    m.what = static_cast<std::uint8_t>(o.what);
    m.group = o.group;
    m.origin = router_.self();
    m.payload = o.payload;
    handle_routed(std::move(m), {});
  }
  void finish_op(std::uint64_t id, std::error_code ec, contact member) {
    auto it = ops_.find(id);
    if (it == ops_.end()) return;
    op o = std::move(it->second);
    ops_.erase(it);
    env_.cancel(o.timer);
    env_.cancel(o.retry);
    if (o.any)
      later([cb = std::move(o.any), ec, member] { ec ? cb(ec) : cb(member); });
    else if (o.done)
      later([cb = std::move(o.done), ec] { cb(ec); });
  }
  void answer(const scribe_msg::routed& m, scribe_msg::op_status st, contact member = {}) {
    if (m.origin.addr == router_.self().addr) {
      std::error_code ec;
      if (st == scribe_msg::op_status::unknown_group) ec = make_error_code(scribe_errc::unknown_group);
      if (st == scribe_msg::op_status::no_member) ec = make_error_code(scribe_errc::no_member);
      return finish_op(m.id, ec, member);
    }
    env_.send(m.origin.addr, scribe_msg::op_reply{m.id, static_cast<std::uint8_t>(st), member});
  }

  /// One step of a create, publish or anycast at this node.
  void handle_routed(scribe_msg::routed m, std::vector<address> excluded) {
    using scribe_msg::kind;
    const auto what = static_cast<kind>(m.what);
    auto it = groups_.find(m.group);
    group_state* s = it == groups_.end() ? nullptr : &it->second;
    if (m.in_tree) {
      if (what == kind::anycast) return walk(std::move(m), std::move(excluded));
      // a publish going up the tree to the root
      if (!s || s->state == tree_state::joining) {
        env_.count("unknown_group");
        return answer(m, scribe_msg::op_status::unknown_group);
      }
      if (s->state == tree_state::root) return publish_at_root(m);
      return forward(std::move(m), s->parent.addr, {});
    }
    if (what == kind::anycast && s && s->state != tree_state::joining) {
      m.in_tree = true;  // the route meets the tree here: walk it depth first
      return walk(std::move(m), std::move(excluded));
    }
    // the tree's root takes a publish wherever Pastry would route it on: a root moving
    // to a newcomer still holds the tree until it has joined the newcomer
    if (what == kind::publish && s && s->state == tree_state::root) return publish_at_root(m);
    const contact next = router_.next_hop_toward(m.group, excluded);
    if (next.addr != router_.self().addr) return forward(std::move(m), next.addr, std::move(excluded));
    // this node is the group id's root. Without the group it passes a publish or an
    // anycast on once to the next-closest node it knows: a node that joined the overlay
    // next to the group id is its root before the old root has moved the tree to it
    if ((!s || s->state == tree_state::joining) && what != kind::create && !m.detour) {
      for (auto& c : router_.closest(m.group, 3))
        if (c.addr != router_.self().addr && std::find(excluded.begin(), excluded.end(), c.addr) == excluded.end()) {
          env_.count("root_detours");
          m.detour = true;
          return forward(std::move(m), c.addr, std::move(excluded));
        }
    }
    switch (what) {
      case kind::create: {
        if (!s) {
          if (groups_.size() >= cfg_.max_groups) {
            env_.count("groups_full");
            return;  // no answer: the creator's op times out, as it would at a full root anywhere
          }
          s = &groups_.emplace(m.group, group_state{}).first->second;
        }
        s->known = true;
        if (s->state == tree_state::joining) become_root(m.group);
        return answer(m, scribe_msg::op_status::ok);
      }
      case kind::publish:
        if (!s || s->state == tree_state::joining) {
          env_.count("unknown_group");
          return answer(m, scribe_msg::op_status::unknown_group);
        }
        if (s->state == tree_state::root) return publish_at_root(m);
        m.in_tree = true;  // the tree's root has not moved here yet: up the tree to where it is
        return forward(std::move(m), s->parent.addr, {});
      case kind::anycast:
        env_.count("unknown_group");
        return answer(m, scribe_msg::op_status::no_member);
    }
  }

  void publish_at_root(const scribe_msg::routed& m) {
    disseminate(m.group, m.id, m.payload);  // a repeated publish (same id) goes down once
    answer(m, scribe_msg::op_status::ok);
  }

  /// Anycast's depth-first walk (NGC 2003): this node if a member accepts, else an
  /// unvisited child, else back to the parent; at the root with nothing left, no member.
  void walk(scribe_msg::routed m, std::vector<address> dead) {
    const address self = router_.self().addr;
    auto it = groups_.find(m.group);
    if (it == groups_.end() || it->second.state == tree_state::joining) {
      env_.count("unknown_group");
      return answer(m, scribe_msg::op_status::no_member);
    }
    group_state& s = it->second;
    const bool here_first = std::find(m.visited.begin(), m.visited.end(), self) == m.visited.end();
    if (here_first) {
      if (m.visited.size() >= cfg_.max_anycast_visits) {
        env_.count("anycast_budget");
        return answer(m, scribe_msg::op_status::no_member);
      }
      m.visited.push_back(self);
      if (s.member && (!on_anycast_ || on_anycast_(m.group, m.origin, m.payload))) {
        env_.count("anycast_accepted");
        return answer(m, scribe_msg::op_status::ok, router_.self());
      }
    }
    const auto seen = [&](const address& a) {
      return std::find(m.visited.begin(), m.visited.end(), a) != m.visited.end() ||
          std::find(dead.begin(), dead.end(), a) != dead.end();
    };
    for (auto& c : s.children)
      if (c.accepted && !seen(c.who.addr)) return forward(std::move(m), c.who.addr, std::move(dead));
    if (s.state == tree_state::attached && std::find(dead.begin(), dead.end(), s.parent.addr) == dead.end())
      return forward(std::move(m), s.parent.addr, std::move(dead));
    answer(m, scribe_msg::op_status::no_member);
  }

  /// Sends one routed step and waits for its hop_ack: a silent hop is tried once
  /// more, then skipped (routing continues from here without it).
  void forward(scribe_msg::routed m, const address& next, std::vector<address> excluded, unsigned attempts = 1) {
    if (hops_.size() >= cfg_.max_pending) return env_.count("pending_full");
    m.hop = fresh_id();
    m.sender = router_.self();
    const std::uint64_t hop = m.hop;
    env_.send(next, m);
    const timer_id t = env_.arm(cfg_.rpc_timeout, [this, hop] {
      auto it = hops_.find(hop);
      if (it == hops_.end()) return;
      pending_hop p = std::move(it->second);
      hops_.erase(it);
      env_.count("hop_timeouts");
      if (p.attempts < 2) {
        auto again = std::move(p.msg);
        forward(std::move(again), p.next, std::move(p.excluded), p.attempts + 1);
        return;
      }
      p.excluded.push_back(p.next);
      if (p.excluded.size() > 32) return env_.count("hop_limit");
      const bool up = p.msg.in_tree && static_cast<scribe_msg::kind>(p.msg.what) == scribe_msg::kind::publish;
      if (up) p.msg.in_tree = false;  // the parent is silent: route toward the group id instead
      handle_routed(std::move(p.msg), std::move(p.excluded));
    });
    hops_.emplace(hop, pending_hop{std::move(m), next, std::move(excluded), t, attempts});
  }

  E env_;
  outbox<E> out_;  ///< completions and deliveries owed, run after the event (later())
  R& router_;
  scribe_config cfg_;
  std::unordered_map<node_id, group_state> groups_;
  std::unordered_map<data_key, pending_copy, data_key_hash> pending_data_;
  std::unordered_map<std::uint64_t, pending_hop> hops_;
  std::unordered_map<std::uint64_t, op> ops_;
  deliver_fn on_multicast_;
  anycast_fn on_anycast_;
  periodic<E> beat_;
};

}  // namespace dcp::dht
