#pragma once
// SWIM with Lifeguard: a full-membership failure detector and dissemination
// protocol, the one hashicorp/memberlist (Consul, Nomad, Serf) runs.
//
// SWIM (Das, Gupta, Motivala, DSN 2002):
//   probe          once per protocol period a member pings the next member of
//                  a shuffled round-robin list (new members enter it at a
//                  random place; the list is reshuffled after each pass), so
//                  every member is probed within 2N-1 periods (§4.3).
//   indirect       no ack within `probe_timeout`: PING-REQ to k other members,
//                  who ping the target and relay its ack (§3.1).
//   suspicion      no ack (direct or relayed) by the end of the period: the
//                  target is *suspected*, not removed. A suspected member that
//                  hears of it refutes with a higher incarnation number; a
//                  suspicion not refuted within the suspicion timeout becomes
//                  *dead* (confirm). Ordering (§4.2): Alive(i) overrides
//                  Suspect(j) and Alive(j) iff i > j; Suspect(i) overrides
//                  Alive(j) iff i >= j; Dead(i) overrides both iff i >= j.
//   dissemination  updates ride on pings, acks, nacks and ping-reqs; each is
//                  sent λ·log10(N+1) times (`retransmit_mult`), the
//                  least-sent first (§4.1, memberlist's TransmitLimitedQueue);
//                  a newer update about a member replaces the older one.
//   join / leave   a joiner pushes its state to a seed and merges the seed's
//                  full table (push-pull, memberlist's TCP state sync); the
//                  same exchange runs with a random member, live or held
//                  dead, every `push_pull_interval` (anti-entropy; it also
//                  rejoins the two sides of a healed partition). leave() disseminates
//                  Dead(self, from = self), seen by others as *left*.
//
// Lifeguard (Dadgar, Phillips, Currey 2018, arXiv:1707.00788), each part on
// its own switch so the benchmark can compare:
//   local health   a score in [0, awareness_max - 1] (memberlist's awareness):
//                  +1 per nack missed on a failed probe (+1 for a failed probe
//                  when no helper could nack), +1 for refuting a suspicion
//                  about oneself, -1 per successful probe. Probe interval and
//                  timeout are multiplied by (score + 1): a node that is slow
//                  itself probes less, waits longer, and stops accusing
//                  healthy members of its own slowness.
//   nacks          a PING-REQ helper that gets no ack within 80% of its probe
//                  timeout answers NACK, so the prober can tell "the target is
//                  silent" (nacks arrive) from "I am not hearing anyone" (they
//                  do not).
//   dynamic        a suspicion starts at max = suspicion_max_mult * min and
//   suspicion      falls with each independent confirmation (a suspect update
//                  from another member) as log(c+1)/log(k+1) toward min, k =
//                  suspicion_mult - 2 (memberlist's suspicion.go). One slow
//                  accuser alone gives the accused the whole max to refute.
//   buddy system   a ping to a suspected member carries the suspicion first,
//                  so the member refutes at once in its ack.
//
// Failure model: crash-stop members (a restarted member rejoins and refutes
// its old death with a higher incarnation), lossy, duplicating, reordering
// links, slow members. A member partitioned away is declared dead on the
// other side (SWIM cannot tell a partition from a crash); when the partition
// heals, periodic push-pull makes it hear of it, refute and rejoin. Updates
// are not authenticated: a member that lies (forges Dead about others, or
// Alive about fictitious members) can disturb views; the transport must keep
// strangers out (docs/security.md), and what a liar can make us hold is
// bounded: `max_members` entries, `max_metadata` bytes each, incarnations
// that jump by at most `max_incarnation_jump`, push-pull answers at most
// `max_push_pull_replies` per probe interval. Every refused claim is counted.
//
// Events (join, leave, failed, updated) and the Membership up/down callbacks
// run after the event that caused them, never inside a call (DESIGN §10; an
// outbox, dcp/core/outbox.hpp), in the order raised; none once this node has
// gone silent. Going silent after a leave is also queued there, so that the
// send under way still carries our departure.
//
// Thread safety: none of its own; call it only from its Env's executor, like
// every dcp protocol core.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "dcp/core/address.hpp"
#include "dcp/core/bytes.hpp"
#include "dcp/core/env.hpp"
#include "dcp/core/error.hpp"
#include "dcp/core/metrics.hpp"
#include "dcp/core/outbox.hpp"
#include "dcp/membership/membership.hpp"
#include "dcp/wire/message.hpp"

namespace dcp::membership {

enum class member_state : std::uint8_t { alive = 0, suspect = 1, dead = 2, left = 3 };

struct swim_config {
  duration probe_interval = 1s;     ///< one protocol period (memberlist LAN: 1 s)
  duration probe_timeout = 500ms;   ///< direct ack wait before PING-REQ (memberlist LAN: 500 ms)
  std::size_t indirect_checks = 3;  ///< k: helpers of a PING-REQ
  std::size_t retransmit_mult = 4;  ///< λ: each update is sent λ·ceil(log10(N+1)) times
  /// Suspicion timeout min = suspicion_mult · max(1, log10 N) · probe_interval.
  std::size_t suspicion_mult = 4;
  // ---- Lifeguard ----
  bool local_health = true;            ///< LHM scaling and nacks
  bool dynamic_suspicion = true;       ///< start at max, fall with confirmations
  bool buddy_system = true;            ///< a ping to a suspect carries the suspicion
  std::size_t suspicion_max_mult = 6;  ///< max = suspicion_max_mult · min
  std::uint32_t awareness_max = 8;     ///< LHM saturates at awareness_max - 1
  // ---- joining, anti-entropy, leaving ----
  std::vector<address> seeds;         ///< joined through on start(); empty (or only self) for the first member
  duration push_pull_interval = 30s;  ///< full-state exchange with a random member; zero: off
  duration dead_retention = 30s;      ///< dead and left members are forgotten after this
  duration leave_timeout = 5s;        ///< leave(): the longest this node keeps gossiping its departure
  bytes metadata;                     ///< this member's metadata, disseminated with it
  // ---- bounds on what the network can make us hold ----
  std::size_t max_metadata = 512;  ///< bytes (memberlist's MetaMaxSize)
  std::size_t max_members = 4096;  ///< members table, this node excluded
  std::size_t max_piggyback = 8;   ///< updates per message
  /// Bytes of one message's payload; zero: no bound (a stream transport).
  /// Over UDP, set it to the transport's frame bound (1,400-byte datagram
  /// less the frame header and, sealed, the seal: 1,332 bytes), so that every
  /// message fits one datagram: a ping, ack, nack or ping-req carries the
  /// piggybacked updates that fit (the others wait for the next message), and
  /// a push-pull carries this member and as many records as fit, from a
  /// random place in the table (the rest reaches the peer by gossip and by
  /// later exchanges). At least max_metadata + 256, so that the buddy
  /// system's suspicion and one update, or this member's own record, always fit.
  std::size_t max_message_size = 0;
  std::size_t max_pending_indirect = 64;          ///< PING-REQs being served at once
  std::uint64_t max_incarnation_jump = 1u << 16;  ///< a known member's incarnation rises by at most this per update
  std::size_t max_push_pull_replies = 16;         ///< push-pull answers per probe interval

  /// Plain SWIM with memberlist's defaults: no local health, no nacks, fixed
  /// suspicion timeout, no buddy system.
  static swim_config without_lifeguard() {
    swim_config c;
    c.local_health = c.dynamic_suspicion = c.buddy_system = false;
    return c;
  }

  void validate() const {
    if (probe_interval <= duration::zero() || probe_timeout <= duration::zero())
      throw error(errc::invalid_config, "swim: probe_interval and probe_timeout must be > 0");
    if (probe_timeout >= probe_interval)
      throw error(errc::invalid_config,
                  "swim: probe_timeout must be below probe_interval (PING-REQ needs the rest of the period)");
    if (suspicion_mult < 1 || suspicion_max_mult < 1)
      throw error(errc::invalid_config, "swim: suspicion_mult and suspicion_max_mult must be >= 1");
    if (retransmit_mult < 1) throw error(errc::invalid_config, "swim: retransmit_mult must be >= 1");
    if (awareness_max < 1) throw error(errc::invalid_config, "swim: awareness_max must be >= 1");
    if (max_members < 1 || max_piggyback < 1 || max_pending_indirect < 1 || max_incarnation_jump < 1)
      throw error(errc::invalid_config,
                  "swim: max_members, max_piggyback, max_pending_indirect, max_incarnation_jump must be >= 1");
    if (max_message_size != 0 && max_message_size < max_metadata + 256)
      throw error(errc::invalid_config,
                  "swim: max_message_size must be 0 (no bound) or at least max_metadata + 256 bytes");
    if (metadata.size() > max_metadata) throw error(errc::invalid_config, "swim: metadata larger than max_metadata");
    if (push_pull_interval < duration::zero() || dead_retention < duration::zero() || leave_timeout < duration::zero())
      throw error(errc::invalid_config, "swim: push_pull_interval, dead_retention and leave_timeout must be >= 0");
  }
};

namespace swim_msg {
enum class kind : std::uint8_t { alive = 0, suspect = 1, dead = 2 };
/// One piggybacked membership update: Alive(node, inc, meta), Suspect(node,
/// inc) or Dead(node, inc) as claimed by `from` (Dead from the node itself: it left).
struct update {
  std::uint8_t what = 0;  ///< a kind; checked on receipt
  address node;
  std::uint64_t incarnation = 0;
  address from;
  bytes meta;
  template <class A> void serialize(A& ar) { ar(what, node, incarnation, from, meta); }
};
struct ping {
  static constexpr message_type wire_id = 1;
  static constexpr std::string_view wire_name = "ping";
  std::uint64_t seq = 0;
  address target;  ///< who the sender meant: a ping to an address now used by another node is refused
  std::vector<update> updates;
  template <class A> void serialize(A& ar) { ar(seq, target, updates); }
};
struct ack {
  static constexpr message_type wire_id = 2;
  static constexpr std::string_view wire_name = "ack";
  std::uint64_t seq = 0;
  std::vector<update> updates;
  template <class A> void serialize(A& ar) { ar(seq, updates); }
};
struct nack {
  static constexpr message_type wire_id = 3;
  static constexpr std::string_view wire_name = "nack";
  std::uint64_t seq = 0;
  std::vector<update> updates;
  template <class A> void serialize(A& ar) { ar(seq, updates); }
};
struct ping_req {
  static constexpr message_type wire_id = 4;
  static constexpr std::string_view wire_name = "ping_req";
  std::uint64_t seq = 0;
  address target;
  bool want_nack = false;
  std::vector<update> updates;
  template <class A> void serialize(A& ar) { ar(seq, target, want_nack, updates); }
};
struct member_record {
  address node;
  std::uint8_t state = 0;  ///< a member_state; checked on receipt
  std::uint64_t incarnation = 0;
  bytes meta;
  template <class A> void serialize(A& ar) { ar(node, state, incarnation, meta); }
};
/// Full-state exchange: a join, or anti-entropy. `reply` marks the answer.
struct push_pull {
  static constexpr message_type wire_id = 5;
  static constexpr std::string_view wire_name = "push_pull";
  bool join = false;
  bool reply = false;
  std::vector<member_record> members;
  template <class A> void serialize(A& ar) { ar(join, reply, members); }
};
}  // namespace swim_msg

/// A member as this node sees it.
struct member_info {
  address node;
  member_state state = member_state::alive;
  std::uint64_t incarnation = 0;
  bytes meta;
};

struct member_event {
  enum class kind : std::uint8_t { join, leave, failed, updated };
  kind what;
  member_info member;  ///< as it was right after the event
};

template <Env E> class swim {
 public:
  using messages =
      wire::message_set<swim_msg::ping, swim_msg::ack, swim_msg::nack, swim_msg::ping_req, swim_msg::push_pull>;
  /// What it counts (env.count), declared: dcp/core/counter_set.hpp.
  static constexpr dcp::counter_set counters{{"leaving",
                                              "misdirected_ping",
                                              "probe_acked",
                                              "probe_acked_indirect",
                                              "late_or_unexpected_ack",
                                              "late_or_unexpected_nack",
                                              "bad_ping_req",
                                              "ping_req_refused_full",
                                              "nacks_sent",
                                              "oversized_push_pull",
                                              "unsolicited_push_pull",
                                              "push_pull_refused_rate",
                                              "joined",
                                              "joins_answered",
                                              "push_pulls_answered",
                                              "probes",
                                              "ping_reqs",
                                              "probes_failed",
                                              "join_attempts",
                                              "push_pull_truncated",
                                              "bad_member_state",
                                              "message_from_self",
                                              "oversized_piggyback",
                                              "bad_update",
                                              "absurd_incarnation",
                                              "oversized_metadata",
                                              "refuted",
                                              "refutation_repeated",
                                              "members_table_full",
                                              "members_joined",
                                              "members_rejoined",
                                              "claim_about_unknown_member",
                                              "suspicions",
                                              "members_left",
                                              "members_failed",
                                              "suspicion_confirmations",
                                              "suspicions_expired",
                                              "updates_dropped",
                                              "buddy_suspicions_sent",
                                              "updates_too_large",
                                              "piggyback_deferred"}};
  using config_type = swim_config;
  using event_callback = std::function<void(const member_event&)>;
  static constexpr std::string_view name = "swim";
  static constexpr protocol_id default_id = 13;
  /// No incarnation above this is believed: increments never overflow.
  static constexpr std::uint64_t max_incarnation = std::uint64_t{1} << 62;

  explicit swim(E env, swim_config cfg = {}) : env_(std::move(env)), out_(env_), cfg_(std::move(cfg)) {
    cfg_.validate();
  }
  swim(const swim&) = delete;
  swim& operator=(const swim&) = delete;
  ~swim() { stop(); }

  void start() {
    if (started_) return;
    started_ = true;
    enqueue({u8(swim_msg::kind::alive), env_.self(), incarnation_, env_.self(), cfg_.metadata});
    // A random phase, so that members started together do not probe in lockstep.
    arm_tick(duration(1 + static_cast<std::int64_t>(env_.rng().below(cfg_.probe_interval.count()))));
    if (cfg_.push_pull_interval > duration::zero()) arm_push_pull();
    if (!cfg_.seeds.empty())
      join(cfg_.seeds);
    else if (seeds_.empty())
      joined_ = true;
    else
      send_join();
  }

  /// Joins through `seeds` (tried in turn, one per probe period, until one
  /// answers). Seeds that are this node are skipped; none left: the first member.
  void join(const std::vector<address>& seeds) {
    seeds_.clear();
    for (auto& s : seeds)
      if (!s.empty() && s != env_.self()) seeds_.push_back(s);
    joined_ = seeds_.empty();
    if (!joined_ && started_) send_join();
  }
  /// True once a seed answered (or this node is the first member).
  bool joined() const noexcept { return joined_; }

  /// Leaves gracefully: Dead(self, from self) is disseminated, on pings sent
  /// at once and on the probes of the next periods, until it has been sent
  /// its λ·log N times or `leave_timeout` passed; then this node goes silent.
  void leave() {
    if (!started_ || leaving_) return;
    leaving_ = true;
    env_.count("leaving");
    enqueue({u8(swim_msg::kind::dead), env_.self(), incarnation_, env_.self(), {}});
    auto peers = live_members();
    for (auto& p : env_.rng().sample(std::span<address>(peers), std::max<std::size_t>(cfg_.indirect_checks, 1)))
      env_.send(p, swim_msg::ping{0, p, piggyback(nullptr)});
    leave_timer_ = env_.arm(cfg_.leave_timeout, [this] {
      leave_timer_ = {};
      stop();
    });
  }
  /// True once this node has left (or was stopped): it ignores everything.
  bool has_left() const noexcept { return stopped_; }

  /// Replaces this member's metadata (at most max_metadata bytes): a higher
  /// incarnation carries it to everyone, who see an `updated` event.
  void set_metadata(bytes meta) {
    if (meta.size() > cfg_.max_metadata)
      throw error(errc::invalid_argument, "swim::set_metadata: larger than max_metadata");
    cfg_.metadata = std::move(meta);
    ++incarnation_;
    enqueue({u8(swim_msg::kind::alive), env_.self(), incarnation_, env_.self(), cfg_.metadata});
  }
  const bytes& metadata() const noexcept { return cfg_.metadata; }

  /// Subscribes to membership events (run after the event, never inside a call).
  void on_event(event_callback f) { subscribers_.push_back(std::move(f)); }

  // ---- observation ----
  /// Members alive or suspected (suspects are still members, as in memberlist), this node included, sorted.
  std::vector<member_info> members() const {
    std::vector<member_info> out;
    if (!stopped_) out.push_back({env_.self(), member_state::alive, incarnation_, cfg_.metadata});
    for (auto& [a, m] : members_)
      if (is_live(m.state)) out.push_back(info(m));
    std::sort(out.begin(), out.end(), [](auto& x, auto& y) { return x.node < y.node; });
    return out;
  }
  /// What this node knows of `node` (dead and left ones until dead_retention passes).
  std::optional<member_info> member(const address& node) const {
    if (node == env_.self())
      return member_info{node, stopped_ ? member_state::left : member_state::alive, incarnation_, cfg_.metadata};
    auto it = members_.find(node);
    if (it == members_.end()) return std::nullopt;
    return info(it->second);
  }
  /// Members alive or suspected, this node included.
  std::size_t num_members() const noexcept { return live_count() + (stopped_ ? 0 : 1); }
  std::uint64_t incarnation() const noexcept { return incarnation_; }
  /// The Local Health Multiplier's score, 0 = healthy (Lifeguard §IV-A).
  std::uint32_t health_score() const noexcept { return awareness_; }
  /// The protocol period in force: probe_interval scaled by local health.
  duration current_probe_interval() const noexcept { return scaled(cfg_.probe_interval); }
  const swim_config& config() const noexcept { return cfg_; }
  void gauges(const gauge_sink& emit) const {
    std::size_t alive = 0, suspect = 0, down = 0;
    for (auto& [a, m] : members_)
      (m.state == member_state::alive ? alive : m.state == member_state::suspect ? suspect : down)++;
    emit("alive", static_cast<double>(alive));
    emit("suspect", static_cast<double>(suspect));
    emit("dead_or_left", static_cast<double>(down));
    emit("health_score", static_cast<double>(awareness_));
    emit("incarnation", static_cast<double>(incarnation_));
    emit("queued_updates", static_cast<double>(queue_.size()));
  }

  /// What must hold after every event (the simulator's tests call it).
  bool check_invariants() const {
    if (members_.size() > cfg_.max_members || members_.contains(env_.self())) return false;
    if (pending_indirect_.size() > cfg_.max_pending_indirect) return false;
    if (awareness_ >= cfg_.awareness_max) return false;
    if (queue_.size() > cfg_.max_members + 1) return false;
    for (auto& [a, m] : members_) {
      if (m.node != a || m.incarnation > max_incarnation || m.meta.size() > cfg_.max_metadata) return false;
      if (m.suspicion.has_value() != (m.state == member_state::suspect)) return false;
      if (m.suspicion && m.suspicion->confirmations > m.suspicion->k) return false;
    }
    return true;
  }

  // ---- Membership (so gossip can run over SWIM's full view) ----
  std::vector<address> neighbours() const { return live_members(); }
  /// Messages of the protocols above are believed from members alive or suspect.
  bool admits(const address& a) const {
    auto it = members_.find(a);
    return it != members_.end() && is_live(it->second.state);
  }
  std::vector<address> sample(std::size_t k) {
    auto out = live_members();
    out.resize(env_.rng().sample(std::span<address>(out), k).size());
    return out;
  }
  void on_neighbour_up(neighbour_callback f) { neighbour_events_.on_up(std::move(f)); }
  void on_neighbour_down(neighbour_callback f) { neighbour_events_.on_down(std::move(f)); }

  // ---- messages ----
  void on_message(const address& from, const swim_msg::ping& m) {
    if (stopped_) return;
    if (!accept_updates(from, m.updates)) return;
    if (m.target != env_.self()) return drop("misdirected_ping");
    env_.send(from, swim_msg::ack{m.seq, piggyback(nullptr)});
  }

  void on_message(const address& from, const swim_msg::ack& m) {
    if (stopped_) return;
    if (!accept_updates(from, m.updates)) return;
    if (m.seq == 0) return;  // the answer to a leave() ping
    if (probe_ && m.seq == probe_->seq && !probe_->acked &&
        (from == probe_->target ||
         std::find(probe_->helpers.begin(), probe_->helpers.end(), from) != probe_->helpers.end())) {
      probe_->acked = true;
      cancel(probe_->timeout_timer);
      env_.count(from == probe_->target ? "probe_acked" : "probe_acked_indirect");
      health(-1);
      return;
    }
    auto it = pending_indirect_.find(m.seq);
    if (it != pending_indirect_.end() && it->second.target == from) {
      env_.send(it->second.origin, swim_msg::ack{it->second.origin_seq, piggyback(nullptr)});
      cancel(it->second.timer);
      pending_indirect_.erase(it);
      return;
    }
    env_.count("late_or_unexpected_ack");
  }

  void on_message(const address& from, const swim_msg::nack& m) {
    if (stopped_) return;
    if (!accept_updates(from, m.updates)) return;
    if (!probe_ || m.seq != probe_->seq) return drop("late_or_unexpected_nack");
    auto h = std::find(probe_->helpers.begin(), probe_->helpers.end(), from);
    if (h == probe_->helpers.end()) return drop("late_or_unexpected_nack");
    const auto i = static_cast<std::size_t>(h - probe_->helpers.begin());
    if (!probe_->nacked[i]) {
      probe_->nacked[i] = true;
      ++probe_->nacks;
    }
  }

  void on_message(const address& from, const swim_msg::ping_req& m) {
    if (stopped_) return;
    if (!accept_updates(from, m.updates)) return;
    if (m.target.empty() || m.target == env_.self() || m.target == from) return drop("bad_ping_req");
    if (pending_indirect_.size() >= cfg_.max_pending_indirect) return drop("ping_req_refused_full");
    const std::uint64_t seq = ++seq_;
    env_.send(m.target, swim_msg::ping{seq, m.target, piggyback(&m.target)});
    // Nack at 80% of the probe timeout, so it reaches the prober before its
    // period ends (Lifeguard §IV-A); keep relaying a late ack until the timeout.
    const duration nack_after = cfg_.probe_timeout * 4 / 5;
    auto& p = pending_indirect_[seq];
    p = {from, m.seq, m.target, m.want_nack, {}};
    p.timer = env_.arm(nack_after, [this, seq, rest = cfg_.probe_timeout - nack_after] {
      auto it = pending_indirect_.find(seq);
      if (it == pending_indirect_.end()) return;
      it->second.timer = {};
      if (it->second.want_nack) {
        env_.count("nacks_sent");
        env_.send(it->second.origin, swim_msg::nack{it->second.origin_seq, piggyback(nullptr)});
      }
      it->second.timer = env_.arm(rest, [this, seq] { pending_indirect_.erase(seq); });
    });
  }

  void on_message(const address& from, const swim_msg::push_pull& m) {
    if (stopped_) return;
    if (m.members.size() > cfg_.max_members + 1) return drop("oversized_push_pull");
    if (m.reply) {
      auto it = std::find_if(asked_.begin(), asked_.end(), [&](auto& a) { return a.first == from; });
      if (it == asked_.end()) return drop("unsolicited_push_pull");
      asked_.erase(it);
    } else if (push_pull_replies_ >= cfg_.max_push_pull_replies) {
      return drop("push_pull_refused_rate");
    }
    for (auto& r : m.members) merge(from, r);
    if (m.reply) {
      if (!joined_) env_.count("joined");
      joined_ = true;
    } else {
      ++push_pull_replies_;
      env_.count(m.join ? "joins_answered" : "push_pulls_answered");
      env_.send(from, swim_msg::push_pull{false, true, local_state()});  // bounded by max_message_size
    }
  }

 private:
  struct suspicion_state {
    time_point start;
    duration min, max;
    std::size_t k = 0;              ///< independent confirmations expected
    std::size_t confirmations = 0;  ///< received so far
    std::vector<address> accusers;  ///< the first accuser and each confirmer (at most k + 1)
    timer_id timer{};
  };
  struct member_entry {
    address node;
    member_state state = member_state::alive;
    std::uint64_t incarnation = 0;
    bytes meta;
    time_point since;
    std::optional<suspicion_state> suspicion;
  };
  struct probe {
    std::uint64_t seq = 0;
    address target;
    bool acked = false;
    std::vector<address> helpers;
    std::vector<bool> nacked;
    std::size_t nacks = 0;
    timer_id timeout_timer{};
  };
  struct indirect {
    address origin;
    std::uint64_t origin_seq = 0;
    address target;
    bool want_nack = false;
    timer_id timer{};
  };
  struct queued {
    swim_msg::update update;
    std::size_t transmits = 0;
    std::uint64_t order = 0;  ///< newer first among equally sent ones
  };

  static constexpr std::uint8_t u8(swim_msg::kind k) noexcept { return static_cast<std::uint8_t>(k); }
  static constexpr bool is_live(member_state s) noexcept {
    return s == member_state::alive || s == member_state::suspect;
  }
  static member_info info(const member_entry& m) { return {m.node, m.state, m.incarnation, m.meta}; }

  void drop(std::string_view why) { env_.count(why); }
  void cancel(timer_id& t) {
    if (t) env_.cancel(t);
    t = {};
  }

  void stop() {
    stopped_ = true;
    cancel(tick_timer_);
    cancel(push_pull_timer_);
    cancel(leave_timer_);
    if (probe_) cancel(probe_->timeout_timer);
    probe_.reset();
    for (auto& [s, p] : pending_indirect_) cancel(p.timer);
    pending_indirect_.clear();
    for (auto& [a, m] : members_)
      if (m.suspicion) cancel(m.suspicion->timer);
  }

  std::size_t live_count() const noexcept {
    std::size_t n = 0;
    for (auto& [a, m] : members_) n += is_live(m.state);
    return n;
  }
  std::vector<address> live_members() const {
    std::vector<address> out;
    for (auto& [a, m] : members_)
      if (is_live(m.state)) out.push_back(a);
    std::sort(out.begin(), out.end());
    return out;
  }

  duration scaled(duration d) const noexcept { return cfg_.local_health ? d * (awareness_ + 1) : d; }
  void health(int delta) {
    if (!cfg_.local_health) return;
    const std::int64_t v = std::clamp<std::int64_t>(std::int64_t{awareness_} + delta, 0, cfg_.awareness_max - 1);
    awareness_ = static_cast<std::uint32_t>(v);
  }

  // ---- the protocol period ----

  void arm_tick(duration after) {
    tick_timer_ = env_.arm(after, [this] {
      tick_timer_ = {};
      tick();
    });
  }

  void tick() {
    end_probe();
    reap();
    push_pull_replies_ = 0;
    if (!joined_ && !seeds_.empty()) send_join();
    if (auto target = next_target()) start_probe(*target);
    arm_tick(scaled(cfg_.probe_interval));
  }

  /// The round-robin list of SWIM §4.3: one pass over a shuffled list, then a new shuffle.
  std::optional<address> next_target() {
    for (std::size_t tries = 0; tries <= probe_order_.size() + 1; ++tries) {
      if (probe_index_ >= probe_order_.size()) {
        probe_order_ = live_members();
        env_.rng().shuffle(std::span<address>(probe_order_));
        probe_index_ = 0;
        if (probe_order_.empty()) return std::nullopt;
      }
      const address a = probe_order_[probe_index_++];
      auto it = members_.find(a);
      if (it != members_.end() && is_live(it->second.state)) return a;
    }
    return std::nullopt;
  }

  void start_probe(const address& target) {
    probe_ = probe{++seq_, target};
    env_.count("probes");
    env_.send(target, swim_msg::ping{probe_->seq, target, piggyback(&target)});
    probe_->timeout_timer = env_.arm(scaled(cfg_.probe_timeout), [this] {
      probe_->timeout_timer = {};
      indirect_probe();
    });
  }

  void indirect_probe() {
    if (!probe_ || probe_->acked) return;
    std::vector<address> candidates;
    for (auto& [a, m] : members_)
      if (m.state == member_state::alive && a != probe_->target) candidates.push_back(a);
    std::sort(candidates.begin(), candidates.end());
    auto chosen = env_.rng().sample(std::span<address>(candidates), cfg_.indirect_checks);
    probe_->helpers.assign(chosen.begin(), chosen.end());
    probe_->nacked.assign(probe_->helpers.size(), false);
    env_.count("ping_reqs", static_cast<std::int64_t>(probe_->helpers.size()));
    for (auto& h : probe_->helpers)
      env_.send(h, swim_msg::ping_req{probe_->seq, probe_->target, cfg_.local_health, piggyback(&probe_->target)});
  }

  /// The period is over: a probe without an ack makes its target suspected.
  void end_probe() {
    if (!probe_) return;
    probe p = std::move(*probe_);
    probe_.reset();
    cancel(p.timeout_timer);
    if (p.acked) return;
    env_.count("probes_failed");
    // Lifeguard: missed nacks say the fault may be ours; with no helper to
    // nack, a failed probe counts against us (memberlist's probeNode).
    if (cfg_.local_health && !p.helpers.empty())
      health(static_cast<int>(p.helpers.size() - p.nacks));
    else
      health(1);
    auto it = members_.find(p.target);
    if (it == members_.end() || !is_live(it->second.state)) return;
    apply_suspect({u8(swim_msg::kind::suspect), p.target, it->second.incarnation, env_.self(), {}});
  }

  void reap() {
    const time_point now = env_.now();
    for (auto it = members_.begin(); it != members_.end();) {
      if (!is_live(it->second.state) && now - it->second.since >= cfg_.dead_retention)
        it = members_.erase(it);
      else
        ++it;
    }
    const auto lim = now - 3 * cfg_.probe_interval;  // an answer later than this is not awaited any more
    std::erase_if(asked_, [&](auto& a) { return a.second < lim; });
  }

  // ---- push-pull ----

  void send_join() {
    const address seed = seeds_[join_attempts_++ % seeds_.size()];
    env_.count("join_attempts");
    ask_push_pull(seed, true);
  }
  void ask_push_pull(const address& peer, bool join) {
    if (asked_.size() >= 16) return;  // bounded: answers are accepted only from those asked
    asked_.emplace_back(peer, env_.now());
    env_.send(peer, swim_msg::push_pull{join, false, local_state()});
  }
  void arm_push_pull() {
    const auto jitter = duration(static_cast<std::int64_t>(env_.rng().below(cfg_.push_pull_interval.count() / 4 + 1)));
    push_pull_timer_ = env_.arm(cfg_.push_pull_interval + jitter, [this] {
      push_pull_timer_ = {};
      // Members we hold dead (not left) are candidates too, until forgotten:
      // after a partition each side holds the other dead and nobody probes
      // the dead, so this is how the two sides hear of each other again (the
      // member told it is dead refutes; memberlist gossips to the dead).
      std::vector<address> peers;
      for (auto& [a, m] : members_)
        if (m.state != member_state::left) peers.push_back(a);
      std::sort(peers.begin(), peers.end());
      if (!peers.empty()) ask_push_pull(peers[env_.rng().below(peers.size())], false);
      arm_push_pull();
    });
  }
  std::vector<swim_msg::member_record> local_state() {
    std::vector<swim_msg::member_record> out;
    out.reserve(members_.size() + 1);
    out.push_back({env_.self(), static_cast<std::uint8_t>(leaving_ ? member_state::left : member_state::alive),
                   incarnation_, cfg_.metadata});
    if (cfg_.max_message_size == 0) {
      for (auto& [a, m] : members_) out.push_back({a, static_cast<std::uint8_t>(m.state), m.incarnation, m.meta});
      return out;
    }
    // Bounded (a datagram): this member, then records from a random place in
    // the table, wrapping around, while they fit; a later exchange starts elsewhere.
    std::size_t used = message_envelope + encoded_size(out.front());
    const std::size_t start = members_.empty() ? 0 : env_.rng().below(members_.size());
    auto it = members_.begin();
    std::advance(it, static_cast<std::ptrdiff_t>(start));
    for (std::size_t i = 0; i < members_.size(); ++i, ++it) {
      if (it == members_.end()) it = members_.begin();
      swim_msg::member_record r{it->first, static_cast<std::uint8_t>(it->second.state), it->second.incarnation,
                                it->second.meta};
      const std::size_t size = encoded_size(r);
      if (used + size > cfg_.max_message_size) {
        env_.count("push_pull_truncated");
        break;
      }
      used += size;
      out.push_back(std::move(r));
    }
    return out;
  }
  /// What a message holds besides its updates or records (seq, a target
  /// address, flags, the list's length), with room to spare, IP addresses.
  static constexpr std::size_t message_envelope = 64;
  template <class T> static std::size_t encoded_size(const T& v) {
    bytes b;
    wire::output_archive ar(b);
    ar(v);
    return b.size();
  }
  /// memberlist's mergeState: a remote Dead becomes our Suspect (we let the
  /// member refute rather than take one member's word for its death). A
  /// suspicion learnt from a table is held but neither passed on nor counted
  /// as a confirmation: a table does not say who accused, so it is no
  /// independent evidence (counting it shortened suspicions of live members
  /// to the minimum under 10% loss; the original accusation spreads anyway).
  void merge(const address& from, const swim_msg::member_record& r) {
    if (r.state > static_cast<std::uint8_t>(member_state::left)) return drop("bad_member_state");
    switch (static_cast<member_state>(r.state)) {
      case member_state::alive:
        return apply({u8(swim_msg::kind::alive), r.node, r.incarnation, from, r.meta});
      case member_state::suspect:
      case member_state::dead:
        return apply({u8(swim_msg::kind::suspect), r.node, r.incarnation, from, {}}, true);
      case member_state::left:
        return apply({u8(swim_msg::kind::dead), r.node, r.incarnation, r.node, {}});
    }
  }

  // ---- updates ----

  bool accept_updates(const address& from, const std::vector<swim_msg::update>& updates) {
    if (from == env_.self()) {
      drop("message_from_self");
      return false;
    }
    if (updates.size() > cfg_.max_piggyback + 1) {  // + 1: the buddy system's suspicion
      drop("oversized_piggyback");
      return false;
    }
    for (auto& u : updates) apply(u);
    return true;
  }

  /// `from_table`: learnt from a push-pull table, not from an accuser.
  void apply(const swim_msg::update& u, bool from_table = false) {
    if (u.node.empty() || u.from.empty() || u.what > u8(swim_msg::kind::dead)) return drop("bad_update");
    if (u.incarnation > max_incarnation) return drop("absurd_incarnation");
    if (u.meta.size() > cfg_.max_metadata) return drop("oversized_metadata");
    if (u.node != env_.self()) {
      auto it = members_.find(u.node);
      if (it != members_.end() && u.incarnation > it->second.incarnation &&
          u.incarnation - it->second.incarnation > cfg_.max_incarnation_jump)
        return drop("absurd_incarnation");
    }
    switch (static_cast<swim_msg::kind>(u.what)) {
      case swim_msg::kind::alive:
        return apply_alive(u);
      case swim_msg::kind::suspect:
        return apply_suspect(u, from_table);
      case swim_msg::kind::dead:
        return apply_dead(u);
    }
  }

  /// Someone says we are suspect or dead (or alive with a newer incarnation
  /// than ours, our previous life's): outbid it (SWIM §4.2).
  void refute(std::uint64_t claimed, bool accused) {
    incarnation_ = std::max(incarnation_, claimed) + 1;
    env_.count("refuted");
    if (accused) health(1);  // Lifeguard: being suspected hints that we are the slow one
    enqueue({u8(swim_msg::kind::alive), env_.self(), incarnation_, env_.self(), cfg_.metadata});
  }

  /// Suspect or Dead about ourselves. At our incarnation or above: refute.
  /// Below it: the accuser missed our refutation (dissemination reaches all
  /// but a few members with some probability, more so under loss), so it is
  /// sent again, first in whatever we send next: with the buddy system, the
  /// ack to the accuser's own ping.
  void accused(std::uint64_t claimed) {
    if (leaving_) return;
    if (claimed >= incarnation_) return refute(claimed, true);
    env_.count("refutation_repeated");
    enqueue({u8(swim_msg::kind::alive), env_.self(), incarnation_, env_.self(), cfg_.metadata});
  }

  void apply_alive(const swim_msg::update& u) {
    if (u.node == env_.self()) {
      if (leaving_) return;
      if (u.incarnation > incarnation_ || (u.incarnation == incarnation_ && u.meta != cfg_.metadata))
        refute(u.incarnation, false);
      return;
    }
    auto it = members_.find(u.node);
    if (it == members_.end()) {
      if (members_.size() >= cfg_.max_members) return drop("members_table_full");
      member_entry& m = members_[u.node];
      m = {u.node, member_state::alive, u.incarnation, u.meta, env_.now(), std::nullopt};
      probe_order_.insert(probe_order_.begin() + static_cast<std::ptrdiff_t>(env_.rng().below(probe_order_.size() + 1)),
                          u.node);
      env_.count("members_joined");
      raise(member_event::kind::join, m);
      enqueue(u);
      return;
    }
    member_entry& m = it->second;
    if (u.incarnation <= m.incarnation) return;  // stale, or known already
    const bool was_down = !is_live(m.state);
    const bool meta_changed = m.meta != u.meta;
    end_suspicion(m);
    m.state = member_state::alive;
    m.incarnation = u.incarnation;
    m.meta = u.meta;
    m.since = env_.now();
    if (was_down) {
      env_.count("members_rejoined");
      raise(member_event::kind::join, m);
    } else if (meta_changed) {
      raise(member_event::kind::updated, m);
    }
    enqueue(u);
  }

  void apply_suspect(const swim_msg::update& u, bool from_table = false) {
    if (u.node == env_.self()) return accused(u.incarnation);
    auto it = members_.find(u.node);
    if (it == members_.end()) return drop("claim_about_unknown_member");
    member_entry& m = it->second;
    if (u.incarnation < m.incarnation) return;  // refuted already
    if (m.state == member_state::suspect && u.incarnation == m.incarnation) {
      if (!from_table && confirm(m, u.from)) enqueue(u);  // an independent confirmation: pass it on (Lifeguard §IV-B)
      return;
    }
    if (m.state == member_state::suspect) end_suspicion(m);  // suspected again at a newer incarnation: start over
    if (!is_live(m.state)) return;
    m.state = member_state::suspect;
    m.incarnation = u.incarnation;
    m.since = env_.now();
    begin_suspicion(m, u.from);
    env_.count("suspicions");
    if (!from_table) enqueue(u);
  }

  void apply_dead(const swim_msg::update& u) {
    if (u.node == env_.self()) return accused(u.incarnation);
    auto it = members_.find(u.node);
    if (it == members_.end()) return drop("claim_about_unknown_member");
    member_entry& m = it->second;
    if (u.incarnation < m.incarnation || !is_live(m.state)) return;
    const bool left = u.from == u.node;
    end_suspicion(m);
    m.state = left ? member_state::left : member_state::dead;
    m.incarnation = u.incarnation;
    m.since = env_.now();
    env_.count(left ? "members_left" : "members_failed");
    raise(left ? member_event::kind::leave : member_event::kind::failed, m);
    enqueue(u);
  }

  // ---- suspicion (Lifeguard's dynamic timeout, memberlist's suspicion.go) ----

  void begin_suspicion(member_entry& m, const address& accuser) {
    const std::size_t n = live_count() + 1;
    const double scale = std::max(1.0, std::log10(static_cast<double>(n)));
    suspicion_state s;
    s.start = env_.now();
    s.min =
        std::chrono::duration_cast<duration>(cfg_.probe_interval * (static_cast<double>(cfg_.suspicion_mult) * scale));
    s.max = cfg_.dynamic_suspicion ? s.min * static_cast<std::int64_t>(cfg_.suspicion_max_mult) : s.min;
    // k independent confirmations take the timeout from max to min; with too
    // few members to give them, the timeout is min at once.
    s.k = cfg_.dynamic_suspicion && cfg_.suspicion_mult > 2 ? cfg_.suspicion_mult - 2 : 0;
    if (n < s.k + 2) s.k = 0;
    s.accusers.push_back(accuser);
    const address node = m.node;
    const std::uint64_t inc = m.incarnation;
    s.timer = env_.arm(s.k == 0 ? s.min : s.max, [this, node, inc] { suspicion_expired(node, inc); });
    m.suspicion = std::move(s);
  }
  duration suspicion_timeout(const suspicion_state& s) const {
    if (s.k == 0) return s.min;
    const double frac = std::log(static_cast<double>(s.confirmations) + 1) / std::log(static_cast<double>(s.k) + 1);
    const auto raw = s.max - std::chrono::duration_cast<duration>((s.max - s.min) * frac);
    return std::max(raw, s.min);
  }
  /// True if `from` is a new, independent accuser (then the timer shortens).
  bool confirm(member_entry& m, const address& from) {
    auto& s = *m.suspicion;
    if (s.confirmations >= s.k) return false;
    if (std::find(s.accusers.begin(), s.accusers.end(), from) != s.accusers.end()) return false;
    s.accusers.push_back(from);
    ++s.confirmations;
    env_.count("suspicion_confirmations");
    cancel(s.timer);
    const duration left = std::max(duration::zero(), suspicion_timeout(s) - (env_.now() - s.start));
    const address node = m.node;
    const std::uint64_t inc = m.incarnation;
    s.timer = env_.arm(left, [this, node, inc] { suspicion_expired(node, inc); });
    return true;
  }
  void suspicion_expired(const address& node, std::uint64_t inc) {
    auto it = members_.find(node);
    if (it == members_.end() || !it->second.suspicion) return;
    it->second.suspicion->timer = {};
    if (it->second.state != member_state::suspect || it->second.incarnation != inc) return;
    env_.count("suspicions_expired");
    apply_dead({u8(swim_msg::kind::dead), node, inc, env_.self(), {}});
  }
  void end_suspicion(member_entry& m) {
    if (m.suspicion) cancel(m.suspicion->timer);
    m.suspicion.reset();
  }

  // ---- dissemination ----

  std::size_t retransmit_limit() const noexcept {
    const double n = static_cast<double>(live_count() + 1);
    return cfg_.retransmit_mult * static_cast<std::size_t>(std::ceil(std::log10(n + 1)));
  }
  bool queued_about(const address& node) const noexcept {
    return std::any_of(queue_.begin(), queue_.end(), [&](auto& q) { return q.update.node == node; });
  }
  void enqueue(swim_msg::update u) {
    std::erase_if(queue_, [&](const queued& q) { return q.update.node == u.node; });  // the newer replaces the older
    if (queue_.size() > cfg_.max_members) {  // full of updates about forgotten members: drop the most sent
      auto worst =
          std::max_element(queue_.begin(), queue_.end(), [](auto& a, auto& b) { return a.transmits < b.transmits; });
      queue_.erase(worst);
      env_.count("updates_dropped");
    }
    queue_.push_back({std::move(u), 0, ++order_});
  }
  /// Up to max_piggyback updates, least sent first; with the buddy system, a
  /// suspicion about `to` goes first so it can refute at once.
  std::vector<swim_msg::update> piggyback(const address* to) {
    std::vector<swim_msg::update> out;
    if (to && cfg_.buddy_system) {
      auto it = members_.find(*to);
      if (it != members_.end() && it->second.state == member_state::suspect) {
        out.push_back({u8(swim_msg::kind::suspect), *to, it->second.incarnation, env_.self(), {}});
        env_.count("buddy_suspicions_sent");
      }
    }
    if (queue_.empty()) return out;
    const std::size_t take = std::min(cfg_.max_piggyback, queue_.size());
    std::partial_sort(queue_.begin(), queue_.begin() + static_cast<std::ptrdiff_t>(take), queue_.end(),
                      [](const queued& a, const queued& b) {
                        return a.transmits != b.transmits ? a.transmits < b.transmits : a.order > b.order;
                      });
    const std::size_t limit = retransmit_limit();
    // Bounded by max_message_size (a datagram): the updates that fit go, the
    // others wait, still least sent, for the next message.
    std::size_t used = message_envelope;
    if (cfg_.max_message_size != 0)
      for (auto& u : out) used += encoded_size(u);
    for (std::size_t i = 0; i < take; ++i) {
      if (cfg_.max_message_size != 0) {
        const std::size_t size = encoded_size(queue_[i].update);
        if (message_envelope + size + 128 > cfg_.max_message_size) {
          // Fits no message (a host-name address, say): never sendable, so dropped.
          env_.count("updates_too_large");
          queue_[i].transmits = limit;
          continue;
        }
        if (used + size > cfg_.max_message_size) {
          env_.count("piggyback_deferred");
          continue;
        }
        used += size;
      }
      out.push_back(queue_[i].update);
      ++queue_[i].transmits;
    }
    std::erase_if(queue_, [&](const queued& q) { return q.transmits >= limit; });
    if (leaving_ && !stopped_ && !silencing_ && !queued_about(env_.self())) {
      // Our departure has been sent its λ·log N times: go silent, after this send.
      silencing_ = true;
      cancel(leave_timer_);
      out_.push([this] { stop(); });
    }
    return out;
  }

  // ---- events, after the event ----

  void raise(member_event::kind what, const member_entry& m) {
    events_.push_back({what, info(m)});
    if (!flush_queued_) {
      flush_queued_ = true;
      out_.push([this] { flush(); });
    }
  }
  void flush() {
    flush_queued_ = false;
    if (stopped_) return;  // silent: nobody hears of what it learnt meanwhile
    auto due = std::exchange(events_, {});
    for (auto& e : due) {
      for (std::size_t i = 0; i < subscribers_.size(); ++i) subscribers_[i](e);  // by index: a callback may subscribe
      if (e.what == member_event::kind::join)
        neighbour_events_.up(e.member.node);
      else if (e.what != member_event::kind::updated)
        neighbour_events_.down(e.member.node);
    }
  }

  E env_;
  outbox<E> out_;  ///< events owed to subscribers, and going silent after a leave
  swim_config cfg_;
  bool started_ = false, joined_ = false, leaving_ = false, silencing_ = false, stopped_ = false;
  std::uint64_t incarnation_ = 0;
  std::uint32_t awareness_ = 0;
  std::uint64_t seq_ = 0, order_ = 0;
  std::unordered_map<address, member_entry> members_;
  std::vector<address> probe_order_;
  std::size_t probe_index_ = 0;
  std::optional<probe> probe_;
  std::unordered_map<std::uint64_t, indirect> pending_indirect_;
  std::vector<queued> queue_;
  std::vector<address> seeds_;
  std::size_t join_attempts_ = 0;
  std::vector<std::pair<address, time_point>> asked_;  ///< push-pull requests awaiting an answer
  std::size_t push_pull_replies_ = 0;
  std::vector<member_event> events_;  ///< raised in this event, for the flush queued in out_
  bool flush_queued_ = false;
  std::vector<event_callback> subscribers_;
  neighbour_events neighbour_events_;
  timer_id tick_timer_{}, push_pull_timer_{}, leave_timer_{};
};

}  // namespace dcp::membership
