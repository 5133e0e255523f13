#pragma once
// The Bully election (Garcia-Molina 1982), with time-outs.
//
// Priorities are ranks in the group (the highest address wins). A node that
// starts an election sends ELECTION to every higher member it does not know
// to be down; any live higher member ANSWERs and runs its own election. With
// no answer within answer_timeout the node is the leader and tells every
// other member (COORDINATOR). With an answer but no COORDINATOR within
// coordinator_timeout, it starts again. A COORDINATOR from a lower member is
// bullied: the receiver starts an election of its own.
//
// Followers probe their leader every probe_interval; no PROBE_ACK within
// probe_timeout (or a transport report that it is unreachable) makes the
// leader suspected and starts an election. Best case N−2 messages (the
// second-highest notices the leader's crash), worst O(N²) (the lowest does).
//
// Faults tolerated: crash-stop and crash-recovery of any member (a restarted
// member runs an election; the highest live one ends up leader everywhere),
// delay and reordering. Under message loss or partitions members may
// disagree for a while (a lost COORDINATOR), and within a partition each side
// elects its own leader: Bully gives no single-leader guarantee without
// synchrony, which is why it needs its time-outs.
#include <cstdint>
#include <optional>
#include <set>
#include <string_view>

#include "dcp/core/assert.hpp"
#include "dcp/core/env.hpp"
#include "dcp/core/protocol.hpp"
#include "dcp/election/api.hpp"
#include "dcp/group/static_group.hpp"

namespace dcp::election {

struct bully_config {
  duration answer_timeout = 200ms;       ///< above a round trip to any higher member
  duration coordinator_timeout = 600ms;  ///< above the time a higher member needs to win
  duration probe_interval = 500ms;
  duration probe_timeout = 1500ms;
  bool elect_on_start = true;
  void validate() const {
    if (answer_timeout <= duration::zero() || coordinator_timeout <= duration::zero() ||
        probe_interval <= duration::zero())
      throw error(errc::invalid_config, "bully: time-outs and probe_interval must be > 0");
    if (probe_timeout <= probe_interval)
      throw error(errc::invalid_config, "bully: probe_timeout must exceed probe_interval, or every leader looks dead");
  }
};

namespace bully_msg {
#define DCP_BULLY_MESSAGE(type, id)                      \
  struct type {                                          \
    static constexpr message_type wire_id = id;          \
    static constexpr std::string_view wire_name = #type; \
    template <class A> void serialize(A&) {}             \
  };
DCP_BULLY_MESSAGE(election, 1)
DCP_BULLY_MESSAGE(answer, 2)
DCP_BULLY_MESSAGE(coordinator, 3)
DCP_BULLY_MESSAGE(probe, 4)
DCP_BULLY_MESSAGE(probe_ack, 5)
#undef DCP_BULLY_MESSAGE
}  // namespace bully_msg

template <Env E, group::Group G = group::static_group> class bully {
 public:
  using messages = wire::message_set<bully_msg::election, bully_msg::answer, bully_msg::coordinator, bully_msg::probe,
                                     bully_msg::probe_ack>;
  /// What it counts (env.count), declared: dcp/core/counter_set.hpp.
  static constexpr dcp::counter_set counters{
      {"elections_started", "not_a_member", "became_leader", "leader_suspected"}};
  static constexpr std::string_view name = "election.bully";
  static constexpr protocol_id default_id = 70;

  bully(E env, G group, bully_config cfg = {}) : env_(std::move(env)), group_(std::move(group)), cfg_(cfg) {
    cfg_.validate();
    rank_ = group::rank_of_self(group_, env_.self(), "bully");
  }
  ~bully() { cancel_timer(); }

  void start() {
    probes_.start(env_, cfg_.probe_interval, [this] { probe_leader(); });
    if (cfg_.elect_on_start) start_election();
  }

  void start_election() {
    if (electing_) return;
    electing_ = true;
    env_.count("elections_started");
    bool asked = false;
    for (std::size_t r = rank_ + 1; r < group_.size(); ++r)
      if (!down_.contains(r)) {
        env_.send(group_.member(r), bully_msg::election{});
        asked = true;
      }
    if (!asked) return become_leader();
    arm(cfg_.answer_timeout, [this] { become_leader(); });  // nobody higher answered
  }
  std::optional<address> leader() const { return leader_.get(); }
  bool electing() const noexcept { return electing_; }
  void on_leader_changed(leader_handler h) { leader_.on_change(std::move(h)); }

  /// Asserts (DCP_ASSERT) what holds between events, whatever peers sent:
  /// an election runs exactly while its time-out (for ANSWERs, then for the
  /// COORDINATOR) is armed; the leader it knows is a member not below itself
  /// (a lower one is bullied, never followed); it never takes itself as down.
  /// O(log N); for tests and the simulator (dcp/core/assert.hpp).
  void check_invariants() const {
    DCP_ASSERT(electing_ == static_cast<bool>(timer_), "bully: an election without its time-out, or the reverse");
    if (const auto& l = leader_.get()) {
      const auto r = group_.rank_of(*l);
      DCP_ASSERT(r && *r >= rank_, "bully: following a leader below itself, or a non-member");
    }
    DCP_ASSERT(!down_.contains(rank_) && (down_.empty() || *down_.rbegin() < group_.size()),
               "bully: itself, or a non-member, taken as down");
  }

  void on_message(const address& from, const bully_msg::election&) {
    auto r = heard(from);
    if (!r) return;
    if (*r < rank_) {
      env_.send(from, bully_msg::answer{});
      start_election();
    }
  }
  void on_message(const address& from, const bully_msg::answer&) {
    auto r = heard(from);
    if (!r || *r < rank_ || !electing_) return;
    // Someone higher is alive and takes over; wait for its COORDINATOR.
    arm(cfg_.coordinator_timeout, [this] {
      electing_ = false;
      start_election();
    });
  }
  void on_message(const address& from, const bully_msg::coordinator&) {
    auto r = heard(from);
    if (!r) return;
    if (*r < rank_) {  // a lower member claims to lead: bully it
      leader_.set(std::nullopt);
      start_election();
      return;
    }
    cancel_timer();
    electing_ = false;
    last_ack_ = env_.now();
    leader_.set(from);
  }
  void on_message(const address& from, const bully_msg::probe&) {
    if (!heard(from)) return;
    env_.send(from, bully_msg::probe_ack{});
  }
  void on_message(const address& from, const bully_msg::probe_ack&) {
    if (heard(from) && leader_.get() == from) last_ack_ = env_.now();
  }
  void on_unreachable(const address& peer) {
    auto r = group_.rank_of(peer);
    if (!r || *r == rank_) return;
    down_.insert(*r);
    if (leader_.get() == peer) suspect_leader();
  }

 private:
  std::optional<std::size_t> heard(const address& from) {
    auto r = group_.rank_of(from);
    if (!r || *r == rank_) {
      env_.count("not_a_member");
      return std::nullopt;
    }
    down_.erase(*r);
    return r;
  }
  void become_leader() {
    cancel_timer();
    electing_ = false;
    env_.count("became_leader");
    for (std::size_t r = 0; r < group_.size(); ++r)
      if (r != rank_ && !down_.contains(r)) env_.send(group_.member(r), bully_msg::coordinator{});
    leader_.set(env_.self());
  }
  void probe_leader() {
    const auto& l = leader_.get();
    if (!l || *l == env_.self()) return;
    if (env_.now() - last_ack_ > cfg_.probe_timeout) {
      if (auto r = group_.rank_of(*l)) down_.insert(*r);
      return suspect_leader();
    }
    env_.send(*l, bully_msg::probe{});
  }
  void suspect_leader() {
    env_.count("leader_suspected");
    leader_.set(std::nullopt);
    start_election();  // an election already running here ends by its own time-outs
  }
  void arm(duration d, timer_callback fn) {
    cancel_timer();
    timer_ = env_.arm(d, [this, fn = std::move(fn)] {
      timer_ = {};
      fn();
    });
  }
  void cancel_timer() {
    if (timer_) env_.cancel(std::exchange(timer_, {}));
  }

  E env_;
  G group_;
  bully_config cfg_;
  std::size_t rank_ = 0;
  bool electing_ = false;
  detail::leader_slot leader_;
  std::set<std::size_t> down_;
  time_point last_ack_{};
  timer_id timer_{};
  periodic<E> probes_;
};

}  // namespace dcp::election
