#pragma once
// HyParView (Leitão, Pereira, Rodrigues, DSN 2007): a partial-view membership
// with a small symmetric *active* view (the overlay other protocols gossip
// on) and a larger *passive* view of backups kept fresh by shuffles.
//
//   join           JOIN to a contact; the contact adds the newcomer and sends
//                  FORWARD_JOIN(newcomer, ARWL) to its other active peers. Each
//                  walk adds the newcomer to one passive view when TTL = PRWL and
//                  ends (TTL 0, or a node with one neighbour) in an active view.
//   symmetry       whoever adds a peer to its active view without being asked
//                  tells it (JOIN_ACCEPT); a peer that receives a keep-alive
//                  from a node that does not count it as a neighbour answers
//                  DISCONNECT, so a link known to one side only is undone.
//   full view      adding to a full active view drops a random member, which
//                  is told (DISCONNECT) and moves to the passive view.
//   repair         when an active peer fails (the transport gave up on it, or
//                  it was silent for `suspect_after`) it is forgotten and a
//                  passive peer is asked to become a neighbour: NEIGHBOR with
//                  high priority if the active view is empty (always accepted),
//                  else low (accepted only with room). A refusal or time-out
//                  tries the next passive peer; an unreachable one is dropped.
//   shuffle        every `shuffle_period` (one membership round) a node sends
//                  itself, ka active and kp passive peers on a random walk of
//                  `shuffle_ttl`; the node where it ends answers with as many
//                  of its passive peers, and both merge what they got into
//                  their passive views, evicting first what they sent.
//
// Failure model: crash-stop peers, lossy links (every exchange is retried by
// the periodic rounds), partitions (silent: detected by keep-alive silence).
// Defaults are the paper's: active 5, passive 30, ARWL 6, PRWL 3, ka 3, kp 4.
//
// Hostile input. A NEIGHBOR with high priority claims that its sender has no
// neighbour left, and the paper accepts it even into a full active view,
// evicting a member; anyone can claim that. Such evictions are budgeted:
// `priority_evictions_per_round` per shuffle period ("priority_evictions");
// beyond the budget a high-priority request into a full view is refused like
// a low-priority one ("priority_evictions_refused"). A stranger can thus
// displace at most that many neighbours per round. A shuffle
// carries a random nonce and its reply is merged only if it echoes the nonce
// of this node's outstanding shuffle, once ("shuffle_reply_unsolicited"
// otherwise): the walk ends at a node the origin cannot name in advance, so
// the nonce, not the sender, identifies the answer.
//
// Joins from strangers. The paper (§4.2) has a JOIN, the end of a
// FORWARD_JOIN walk (TTL 0, or a node with one neighbour) and so the
// JOIN_ACCEPT that closes the link add the joiner to the active view "even
// if it has to drop a random node from it": the newcomer must get links, and
// the overlay repairs the evicted. Anyone can send all three, so a flood of
// them from many addresses would replace every live neighbour of a node.
// Here they evict at most `join_evictions_per_round` neighbours per shuffle
// period ("join_evictions"; beyond, "join_evictions_refused"), and nothing is
// lost for an honest joiner, because where the walk ends is already random
// in the paper: a walk that ends at a full node without budget goes on with
// TTL 0 to a random neighbour (at most `arwl` extra hops, "join_walks_detoured")
// and ends at the first node with room or budget; past the detour the joiner
// stays in the last node's passive view. A JOIN over budget at a full contact
// puts the joiner in the passive view and still starts the walks, which give
// it its links. A JOIN_ACCEPT into a full view over budget is refused with
// DISCONNECT, like any one-sided link. So a flood evicts at most the budget
// per node per round, never every live neighbour; what it costs is the walks
// it starts (ARWL plus the detour hops each).
#include <algorithm>
#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

#include "dcp/core/address.hpp"
#include "dcp/core/assert.hpp"
#include "dcp/core/env.hpp"
#include "dcp/core/error.hpp"
#include "dcp/core/metrics.hpp"
#include "dcp/membership/detail/distinct.hpp"
#include "dcp/membership/membership.hpp"
#include "dcp/wire/message.hpp"

namespace dcp::membership {

struct hyparview_config {
  std::size_t active_size = 5;      ///< log10(N) + c in the paper; 5 at N = 10^4
  std::size_t passive_size = 30;    ///< k * (log10(N) + c)
  std::uint8_t arwl = 6;            ///< active random walk length of FORWARD_JOIN
  std::uint8_t prwl = 3;            ///< the walk step at which the joiner enters a passive view
  std::uint8_t shuffle_ttl = 6;     ///< random walk length of a SHUFFLE
  std::size_t shuffle_active = 3;   ///< ka: active peers in a SHUFFLE
  std::size_t shuffle_passive = 4;  ///< kp: passive peers in a SHUFFLE
  duration shuffle_period = 1s;     ///< one membership round
  /// Keep-alives to every active peer; they detect silent failures and undo
  /// one-sided links. Zero turns them off (then only transport errors detect).
  duration keepalive_period = 1s;
  /// An active peer silent this long is taken as failed (zero: never).
  duration suspect_after = 5s;
  /// A NEIGHBOR request unanswered this long counts as refused.
  duration neighbor_timeout = 1s;
  /// Active peers that high-priority NEIGHBOR requests may evict per shuffle_period (see the header).
  std::size_t priority_evictions_per_round = 1;
  /// Active peers that JOIN, the end of a FORWARD_JOIN walk and JOIN_ACCEPT may evict per shuffle_period (see the header).
  std::size_t join_evictions_per_round = 2;
  /// Where to join on start(); empty for the first node.
  address contact{};

  void validate() const {
    if (active_size < 1) throw error(errc::invalid_config, "hyparview: active_size must be >= 1");
    if (passive_size < 1) throw error(errc::invalid_config, "hyparview: passive_size must be >= 1");
    if (prwl > arwl)
      throw error(errc::invalid_config, "hyparview: prwl must not exceed arwl (the walk never reaches it)");
    if (shuffle_period <= duration::zero() || neighbor_timeout <= duration::zero())
      throw error(errc::invalid_config, "hyparview: shuffle_period and neighbor_timeout must be > 0");
    if (keepalive_period < duration::zero() || suspect_after < duration::zero())
      throw error(errc::invalid_config, "hyparview: keepalive_period and suspect_after must be >= 0");
    if (suspect_after > duration::zero() && keepalive_period > duration::zero() && suspect_after <= keepalive_period)
      throw error(errc::invalid_config,
                  "hyparview: suspect_after must exceed keepalive_period, or live peers are dropped");
  }
};

namespace hyparview_msg {
struct join {
  static constexpr message_type wire_id = 1;
  static constexpr std::string_view wire_name = "join";
  template <class A> void serialize(A&) {}
};
struct forward_join {
  static constexpr message_type wire_id = 2;
  static constexpr std::string_view wire_name = "forward_join";
  address joiner;
  std::uint8_t ttl = 0;
  std::uint8_t detour = 0;  ///< hops taken past TTL 0 looking for a node with room or budget (see the header)
  template <class A> void serialize(A& ar) { ar(joiner, ttl, detour); }
};
/// "You are in my active view now": the other half of a link made for a joiner.
struct join_accept {
  static constexpr message_type wire_id = 3;
  static constexpr std::string_view wire_name = "join_accept";
  template <class A> void serialize(A&) {}
};
struct neighbor {
  static constexpr message_type wire_id = 4;
  static constexpr std::string_view wire_name = "neighbor";
  bool high_priority = false;
  template <class A> void serialize(A& ar) { ar(high_priority); }
};
struct neighbor_reply {
  static constexpr message_type wire_id = 5;
  static constexpr std::string_view wire_name = "neighbor_reply";
  bool accepted = false;
  template <class A> void serialize(A& ar) { ar(accepted); }
};
struct disconnect {
  static constexpr message_type wire_id = 6;
  static constexpr std::string_view wire_name = "disconnect";
  template <class A> void serialize(A&) {}
};
struct shuffle {
  static constexpr message_type wire_id = 7;
  static constexpr std::string_view wire_name = "shuffle";
  address origin;
  std::uint8_t ttl = 0;
  std::vector<address> nodes;
  std::uint64_t nonce = 0;  ///< the origin's, echoed by the reply
  template <class A> void serialize(A& ar) { ar(origin, ttl, nodes, nonce); }
};
struct shuffle_reply {
  static constexpr message_type wire_id = 8;
  static constexpr std::string_view wire_name = "shuffle_reply";
  std::vector<address> nodes;
  std::uint64_t nonce = 0;  ///< the shuffle's
  template <class A> void serialize(A& ar) { ar(nodes, nonce); }
};
struct keepalive {
  static constexpr message_type wire_id = 9;
  static constexpr std::string_view wire_name = "keepalive";
  template <class A> void serialize(A&) {}
};
}  // namespace hyparview_msg

template <Env E> class hyparview {
 public:
  using messages = wire::message_set<hyparview_msg::join, hyparview_msg::forward_join, hyparview_msg::join_accept,
                                     hyparview_msg::neighbor, hyparview_msg::neighbor_reply, hyparview_msg::disconnect,
                                     hyparview_msg::shuffle, hyparview_msg::shuffle_reply, hyparview_msg::keepalive>;
  /// What it counts (env.count), declared: dcp/core/counter_set.hpp.
  static constexpr dcp::counter_set counters{{"bad_join",
                                              "joins_handled",
                                              "bad_forward_join",
                                              "bad_join_accept",
                                              "bad_neighbor",
                                              "priority_evictions",
                                              "priority_evictions_refused",
                                              "neighbor_refused",
                                              "disconnected",
                                              "bad_shuffle",
                                              "shuffles_answered",
                                              "bad_shuffle_reply",
                                              "shuffle_reply_unsolicited",
                                              "shuffle_replies_merged",
                                              "one_sided_links_undone",
                                              "join_evictions",
                                              "join_evictions_refused",
                                              "join_walks_detoured",
                                              "dropped_for_room",
                                              "neighbour_failed",
                                              "neighbor_requests",
                                              "neighbor_timeouts",
                                              "join_retries",
                                              "shuffles",
                                              "neighbour_silent"}};
  using config_type = hyparview_config;
  static constexpr std::string_view name = "hyparview";
  static constexpr protocol_id default_id = 11;

  explicit hyparview(E env, hyparview_config cfg = {}) : env_(std::move(env)), cfg_(cfg) { cfg_.validate(); }
  hyparview(const hyparview&) = delete;
  hyparview& operator=(const hyparview&) = delete;
  ~hyparview() { cancel_pending(); }

  void start() {
    // Rounds start at a random phase so that 10^4 nodes do not shuffle in lockstep.
    const auto phase = [&](duration p) { return duration(1 + static_cast<std::int64_t>(env_.rng().below(p.count()))); };
    rounds_.start(
        env_, cfg_.shuffle_period, [this] { round(); }, phase(cfg_.shuffle_period));
    if (cfg_.keepalive_period > duration::zero())
      keepalives_.start(
          env_, cfg_.keepalive_period, [this] { keepalive_round(); }, phase(cfg_.keepalive_period));
    if (cfg_.contact) join(cfg_.contact);
  }

  /// Joins the overlay through `contact` (retried every round while this node
  /// knows nobody). Joining through oneself is a no-op: the first node.
  void join(const address& contact) {
    if (contact.empty()) throw error(errc::invalid_argument, "hyparview::join: empty contact address");
    contact_ = contact;
    joined_ = contact == env_.self();
    if (!joined_) env_.send(contact, hyparview_msg::join{});
  }
  /// True once a JOIN_ACCEPT arrived (or this node is the first one).
  bool joined() const noexcept { return joined_; }

  // ---- Membership ----
  std::vector<address> neighbours() const {
    std::vector<address> out;
    out.reserve(active_.size());
    for (auto& p : active_) out.push_back(p.addr);
    return out;
  }
  std::vector<address> sample(std::size_t k) {
    auto out = neighbours();
    out.resize(env_.rng().sample(std::span<address>(out), k).size());
    return out;
  }
  void on_neighbour_up(neighbour_callback f) { events_.on_up(std::move(f)); }
  void on_neighbour_down(neighbour_callback f) { events_.on_down(std::move(f)); }

  // ---- observation ----
  const std::vector<address>& passive_view() const noexcept { return passive_; }
  bool is_active(const address& a) const noexcept { return find_active(a) != active_.end(); }
  bool is_passive(const address& a) const noexcept {
    return std::find(passive_.begin(), passive_.end(), a) != passive_.end();
  }
  /// Messages of the protocols above are believed from the active and the
  /// passive view: the active view is symmetric only between exchanges (a
  /// peer that just dropped this node, or was dropped, moves to the passive
  /// view and may still have a message under way), and a process that never
  /// joined is in neither.
  bool admits(const address& a) const noexcept { return is_active(a) || is_passive(a); }
  std::size_t active_count() const noexcept { return active_.size(); }
  /// Gauges for a node's metrics: the two view sizes.
  void gauges(const gauge_sink& emit) const {
    emit("active_view", static_cast<double>(active_.size()));
    emit("passive_view", static_cast<double>(passive_.size()));
  }
  const hyparview_config& config() const noexcept { return cfg_; }

  /// Asserts (DCP_ASSERT) what holds of this node's views between events,
  /// whatever its peers sent: both bounded by their configured sizes, free of
  /// this node, of empty addresses and of duplicates, and disjoint; one
  /// NEIGHBOR request outstanding at most, with its timer; eviction budgets
  /// within a round's; the outstanding shuffle's nonce and record together.
  /// O(v log v) for views of v peers in all; for tests and the simulator
  /// (dcp/core/assert.hpp).
  void check_invariants() const {
    DCP_ASSERT(active_.size() <= cfg_.active_size, "hyparview: the active view exceeds active_size");
    DCP_ASSERT(passive_.size() <= cfg_.passive_size, "hyparview: the passive view exceeds passive_size");
    std::vector<address> all;
    all.reserve(active_.size() + passive_.size());
    for (auto& p : active_) all.push_back(p.addr);
    all.insert(all.end(), passive_.begin(), passive_.end());
    for (auto& a : all) DCP_ASSERT(!a.empty() && a != env_.self(), "hyparview: a view holds this node or nobody");
    DCP_ASSERT(detail::distinct(all),
               "hyparview: a peer twice in the active view, twice in the passive view, or in both");
    DCP_ASSERT(pending_.has_value() == static_cast<bool>(pending_timer_),
               "hyparview: a NEIGHBOR request outstanding without its time-out, or a time-out without a request");
    DCP_ASSERT(!pending_ || (!pending_->empty() && *pending_ != env_.self()),
               "hyparview: a NEIGHBOR request outstanding to this node or nobody");
    DCP_ASSERT(priority_evictions_left_ <= cfg_.priority_evictions_per_round &&
                   join_evictions_left_ <= cfg_.join_evictions_per_round,
               "hyparview: more evictions left than a round allows");
    DCP_ASSERT((shuffle_nonce_ == 0) == last_shuffle_.empty(),
               "hyparview: an outstanding shuffle without its record of what was sent, or the reverse");
    DCP_ASSERT(last_shuffle_.size() <= 1 + cfg_.shuffle_active + cfg_.shuffle_passive,
               "hyparview: the outstanding shuffle sent more than 1 + ka + kp peers");
  }

  // ---- messages ----
  void on_message(const address& from, const hyparview_msg::join&) {
    if (from == env_.self()) return drop("bad_join");
    env_.count("joins_handled");
    if (room_for_joiner(from)) {
      add_active(from);
      env_.send(from, hyparview_msg::join_accept{});
    } else {
      add_passive(from);  // the walks below give it its links
    }
    for (auto& p : neighbours())
      if (p != from) env_.send(p, hyparview_msg::forward_join{from, cfg_.arwl});
  }

  void on_message(const address& from, const hyparview_msg::forward_join& m) {
    heard(from);
    if (m.joiner.empty() || m.joiner == env_.self()) return drop("bad_forward_join");
    if (is_active(m.joiner)) return;  // the walk reached a node already linked to it
    if (m.ttl == 0 || active_.size() <= 1) return end_join_walk(from, m);
    if (m.ttl == cfg_.prwl) add_passive(m.joiner);
    const auto next = random_active_except(from, m.joiner);
    if (!next) return end_join_walk(from, m);
    env_.send(*next, hyparview_msg::forward_join{m.joiner, static_cast<std::uint8_t>(m.ttl - 1), m.detour});
  }

  void on_message(const address& from, const hyparview_msg::join_accept&) {
    if (from == env_.self()) return drop("bad_join_accept");
    if (!room_for_joiner(from)) return (void)env_.send(from, hyparview_msg::disconnect{});
    joined_ = true;  // our JOIN reached the overlay (the contact or a walk it started accepted us)
    add_active(from);
  }

  void on_message(const address& from, const hyparview_msg::neighbor& m) {
    if (from == env_.self()) return drop("bad_neighbor");
    bool accept = active_.size() < cfg_.active_size || is_active(from);
    if (!accept && m.high_priority) {
      if (priority_evictions_left_ > 0) {
        --priority_evictions_left_;
        accept = true;
        env_.count("priority_evictions");
      } else {
        env_.count("priority_evictions_refused");
      }
    }
    if (accept)
      add_active(from);
    else {
      add_passive(from);
      env_.count("neighbor_refused");
    }
    env_.send(from, hyparview_msg::neighbor_reply{accept});
  }

  void on_message(const address& from, const hyparview_msg::neighbor_reply& m) {
    if (pending_ && *pending_ == from) {
      cancel_pending();
      if (m.accepted) {
        add_active(from);
        tried_.clear();
      }
      try_repair();  // refused: the next passive peer; accepted: more if still short
      return;
    }
    // A late answer to a request that timed out: the peer has linked us.
    if (!m.accepted) return;
    if (active_.size() < cfg_.active_size)
      add_active(from);
    else
      env_.send(from, hyparview_msg::disconnect{});
  }

  void on_message(const address& from, const hyparview_msg::disconnect&) {
    if (!is_active(from)) return;
    env_.count("disconnected");
    remove_active(from, /*to_passive=*/true);
    try_repair();
  }

  void on_message(const address& from, const hyparview_msg::shuffle& m) {
    heard(from);
    if (m.origin.empty() || m.nodes.size() > max_shuffle_nodes()) return drop("bad_shuffle");
    if (m.origin == env_.self()) return;  // our own walk came back: nothing to exchange
    if (m.ttl > 1 && active_.size() > 1) {
      if (auto next = random_active_except(from, m.origin)) {
        env_.send(*next, hyparview_msg::shuffle{m.origin, static_cast<std::uint8_t>(m.ttl - 1), m.nodes, m.nonce});
        return;
      }
    }
    std::vector<address> reply = passive_;
    reply.resize(env_.rng().sample(std::span<address>(reply), m.nodes.size()).size());
    env_.send(m.origin, hyparview_msg::shuffle_reply{reply, m.nonce});
    integrate(m.nodes, reply);
    env_.count("shuffles_answered");
  }

  void on_message(const address& from, const hyparview_msg::shuffle_reply& m) {
    if (m.nodes.size() > max_shuffle_nodes() || from == env_.self()) return drop("bad_shuffle_reply");
    if (m.nonce == 0 || m.nonce != shuffle_nonce_) return drop("shuffle_reply_unsolicited");
    shuffle_nonce_ = 0;  // one answer per shuffle
    integrate(m.nodes, last_shuffle_);
    last_shuffle_.clear();
    env_.count("shuffle_replies_merged");
  }

  void on_message(const address& from, const hyparview_msg::keepalive&) {
    if (is_active(from)) return heard(from);
    if (pending_ && *pending_ == from) return;  // its acceptance may be on the way
    env_.count("one_sided_links_undone");
    env_.send(from, hyparview_msg::disconnect{});
  }

  /// The transport gave up on `peer`: it has failed (for this node).
  void on_unreachable(const address& peer) {
    if (pending_ && *pending_ == peer) {
      cancel_pending();
      remove_passive(peer);
      try_repair();
    }
    remove_passive(peer);
    if (is_active(peer)) fail(peer);
  }

 private:
  struct peer {
    address addr;
    time_point last_heard;
  };

  std::size_t max_shuffle_nodes() const noexcept { return 1 + cfg_.shuffle_active + cfg_.shuffle_passive + 8; }

  void drop(std::string_view why) { env_.count(why); }

  typename std::vector<peer>::const_iterator find_active(const address& a) const noexcept {
    return std::find_if(active_.begin(), active_.end(), [&](const peer& p) { return p.addr == a; });
  }
  void heard(const address& from) {
    for (auto& p : active_)
      if (p.addr == from) p.last_heard = env_.now();
  }

  std::optional<address> random_active_except(const address& a, const address& b) {
    std::vector<address> c;
    for (auto& p : active_)
      if (p.addr != a && p.addr != b) c.push_back(p.addr);
    if (c.empty()) return std::nullopt;
    return c[env_.rng().below(c.size())];
  }

  void accept_joiner(const address& joiner) {
    add_active(joiner);
    env_.send(joiner, hyparview_msg::join_accept{});
  }

  /// Whether `n`, come by a JOIN, a join walk or a JOIN_ACCEPT, may enter
  /// the active view now: it has room, or an eviction is left in this
  /// round's budget (see the header).
  bool room_for_joiner(const address& n) {
    if (is_active(n) || active_.size() < cfg_.active_size) return true;
    if (join_evictions_left_ > 0) {
      --join_evictions_left_;
      env_.count("join_evictions");
      return true;
    }
    env_.count("join_evictions_refused");
    return false;
  }

  /// A join walk ends here: the joiner enters the active view if it may, or
  /// the walk goes on to a node that may take it, or (past the detour) the
  /// joiner stays a backup in the passive view.
  void end_join_walk(const address& from, const hyparview_msg::forward_join& m) {
    if (room_for_joiner(m.joiner)) return accept_joiner(m.joiner);
    if (m.detour < cfg_.arwl) {
      if (auto next = random_active_except(from, m.joiner)) {
        env_.count("join_walks_detoured");
        env_.send(*next, hyparview_msg::forward_join{m.joiner, 0, static_cast<std::uint8_t>(m.detour + 1)});
        return;
      }
    }
    add_passive(m.joiner);
  }

  void add_active(const address& n) {
    if (n == env_.self() || n.empty()) return;
    if (is_active(n)) return heard(n);
    if (active_.size() >= cfg_.active_size) {
      const address victim = active_[env_.rng().below(active_.size())].addr;
      env_.send(victim, hyparview_msg::disconnect{});
      env_.count("dropped_for_room");
      remove_active(victim, /*to_passive=*/true);
    }
    remove_passive(n);
    active_.push_back({n, env_.now()});
    if (active_.size() == cfg_.active_size) tried_.clear();
    events_.up(n);
  }

  void remove_active(const address& n, bool to_passive) {
    auto it = find_active(n);
    if (it == active_.end()) return;
    active_.erase(it);
    if (to_passive) add_passive(n);
    events_.down(n);
  }

  void add_passive(const address& n) {
    if (n == env_.self() || n.empty() || is_active(n) || is_passive(n)) return;
    if (passive_.size() >= cfg_.passive_size) passive_.erase(passive_.begin() + env_.rng().below(passive_.size()));
    passive_.push_back(n);
  }
  void remove_passive(const address& n) { std::erase(passive_, n); }

  /// Merges peers learnt from a shuffle, evicting first those in `sent` (they
  /// now live on in the other node's passive view).
  void integrate(const std::vector<address>& nodes, const std::vector<address>& sent) {
    std::vector<address> evictable;
    for (auto& s : sent)
      if (is_passive(s)) evictable.push_back(s);
    for (auto& n : nodes) {
      if (n.empty() || n == env_.self() || is_active(n) || is_passive(n)) continue;
      if (passive_.size() >= cfg_.passive_size) {
        if (!evictable.empty()) {
          remove_passive(evictable.back());
          evictable.pop_back();
        } else {
          passive_.erase(passive_.begin() + env_.rng().below(passive_.size()));
        }
      }
      passive_.push_back(n);
    }
  }

  void fail(const address& peer) {
    env_.count("neighbour_failed");
    remove_active(peer, /*to_passive=*/false);
    try_repair();
  }

  /// Asks one passive peer at a time until the active view is full or every
  /// passive peer of this episode has been tried (the next round starts over).
  void try_repair() {
    if (pending_ || active_.size() >= cfg_.active_size) return;
    std::vector<address> candidates;
    for (auto& p : passive_)
      if (std::find(tried_.begin(), tried_.end(), p) == tried_.end()) candidates.push_back(p);
    if (candidates.empty()) {
      tried_.clear();
      return;
    }
    const address c = candidates[env_.rng().below(candidates.size())];
    tried_.push_back(c);
    pending_ = c;
    env_.count("neighbor_requests");
    env_.send(c, hyparview_msg::neighbor{active_.empty()});
    pending_timer_ = env_.arm(cfg_.neighbor_timeout, [this] {
      pending_timer_ = {};
      pending_.reset();
      env_.count("neighbor_timeouts");
      try_repair();
    });
  }
  void cancel_pending() {
    if (pending_timer_) env_.cancel(pending_timer_);
    pending_timer_ = {};
    pending_.reset();
  }

  void round() {
    // Retried until accepted, not merely until someone links to us: a node
    // whose JOIN was lost may meanwhile be the contact of a later joiner, and
    // the two would form an island that low-priority NEIGHBOR requests (always
    // refused by full nodes) could never merge with the overlay.
    if (!joined_ && contact_) {
      env_.count("join_retries");
      env_.send(contact_, hyparview_msg::join{});
    }
    priority_evictions_left_ = cfg_.priority_evictions_per_round;
    join_evictions_left_ = cfg_.join_evictions_per_round;
    try_repair();
    if (active_.empty()) return;
    const address target = active_[env_.rng().below(active_.size())].addr;
    std::vector<address> nodes{env_.self()};
    std::vector<address> act;
    for (auto& p : active_)
      if (p.addr != target) act.push_back(p.addr);
    for (auto& a : env_.rng().sample(std::span<address>(act), cfg_.shuffle_active)) nodes.push_back(a);
    std::vector<address> pas = passive_;
    for (auto& a : env_.rng().sample(std::span<address>(pas), cfg_.shuffle_passive)) nodes.push_back(a);
    last_shuffle_ = nodes;
    shuffle_nonce_ = 0;
    while (shuffle_nonce_ == 0) shuffle_nonce_ = env_.rng()();
    env_.count("shuffles");
    env_.send(target, hyparview_msg::shuffle{env_.self(), cfg_.shuffle_ttl, std::move(nodes), shuffle_nonce_});
  }

  void keepalive_round() {
    const time_point now = env_.now();
    std::vector<address> silent;
    for (auto& p : active_) {
      if (cfg_.suspect_after > duration::zero() && now - p.last_heard > cfg_.suspect_after)
        silent.push_back(p.addr);
      else
        env_.send(p.addr, hyparview_msg::keepalive{});
    }
    for (auto& s : silent) {
      env_.count("neighbour_silent");
      fail(s);
    }
  }

  E env_;
  hyparview_config cfg_;
  std::vector<peer> active_;
  std::vector<address> passive_;
  std::vector<address> last_shuffle_;
  std::uint64_t shuffle_nonce_ = 0;  ///< of the outstanding shuffle; 0: none
  std::vector<address> tried_;
  std::optional<address> pending_;
  timer_id pending_timer_{};
  address contact_{};
  bool joined_ = false;
  std::size_t priority_evictions_left_ = cfg_.priority_evictions_per_round;
  std::size_t join_evictions_left_ = cfg_.join_evictions_per_round;
  neighbour_events events_;
  periodic<E> rounds_, keepalives_;
};

}  // namespace dcp::membership
