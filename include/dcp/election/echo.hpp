#pragma once
// An echo (wave) election with extinction, on any connected topology: the
// node with the best capability score wins (ties broken by the higher address).
//
// Each initiator starts a wave: WAVE(candidate) floods its neighbourhood and
// builds a spanning tree (a node's parent is the neighbour the wave first came
// from); when a node has heard the wave from every neighbour it ECHOes to its
// parent. A node always follows the best wave it has seen and ignores worse
// ones (extinction); a node that sees a worse wave than itself before it has
// taken part starts its own, so the best node always runs a wave. Only the
// best wave completes: its initiator, having heard every neighbour's echo, is
// the leader, and floods LEADER. 2E messages per completed wave (E edges) plus
// the extinguished parts of the others, plus about 2E for the announcement.
//
// Each election has a round; start_election() after one completed starts a
// new round (with fresh scores, say) that supersedes the older everywhere.
//
// Needs reliable channels (no loss) and no crashes during the election: a
// lost message or a crashed node on the tree stalls the wave. Tolerates any
// delay and reordering. Not tolerated, hence not claimed: loss, crashes,
// partitions (the election does not complete; call start_election() again).
#include <compare>
#include <cstdint>
#include <optional>
#include <set>
#include <string_view>
#include <vector>

#include "dcp/core/assert.hpp"
#include "dcp/core/env.hpp"
#include "dcp/core/protocol.hpp"
#include "dcp/election/api.hpp"

namespace dcp::election {

struct echo_config {
  std::vector<address> neighbours;  ///< this node's links; the graph must be connected and symmetric
  std::uint64_t score = 0;          ///< capability: higher is better
  bool elect_on_start = false;
  void validate(const address& self) const {
    for (auto& n : neighbours)
      if (n == self || n.empty()) throw error(errc::invalid_config, "echo: a neighbour is empty or this node itself");
  }
};

/// A wave's identity and rank: the later round, then the better score, then the higher address.
struct echo_candidate {
  std::uint64_t round = 0, score = 0;
  address node;
  auto operator<=>(const echo_candidate&) const = default;
  template <class A> void serialize(A& ar) { ar(round, score, node); }
};

namespace echo_msg {
struct wave {
  static constexpr message_type wire_id = 1;
  static constexpr std::string_view wire_name = "wave";
  echo_candidate candidate;
  template <class A> void serialize(A& ar) { ar(candidate); }
};
struct echo {
  static constexpr message_type wire_id = 2;
  static constexpr std::string_view wire_name = "echo";
  echo_candidate candidate;
  template <class A> void serialize(A& ar) { ar(candidate); }
};
struct leader {
  static constexpr message_type wire_id = 3;
  static constexpr std::string_view wire_name = "leader";
  echo_candidate candidate;
  template <class A> void serialize(A& ar) { ar(candidate); }
};
}  // namespace echo_msg

template <Env E> class echo {
 public:
  using messages = wire::message_set<echo_msg::wave, echo_msg::echo, echo_msg::leader>;
  /// What it counts (env.count), declared: dcp/core/counter_set.hpp.
  static constexpr dcp::counter_set counters{
      {"waves_started", "not_a_neighbour", "extinguished", "stale_echo", "stale_leader", "became_leader"}};
  static constexpr std::string_view name = "election.echo";
  static constexpr protocol_id default_id = 72;

  echo(E env, echo_config cfg) : env_(std::move(env)), cfg_(std::move(cfg)) {
    cfg_.validate(env_.self());
    neighbours_.insert(cfg_.neighbours.begin(), cfg_.neighbours.end());
  }

  void start() {
    if (cfg_.elect_on_start) start_election();
  }
  /// Starts a wave for this node, in the current round if it has not taken
  /// part in one yet, else in a new round.
  void start_election() {
    const std::uint64_t round = best_ && !electing_ ? best_->round + 1 : (best_ ? best_->round : 0);
    const echo_candidate me{round, cfg_.score, env_.self()};
    if (best_ && *best_ >= me) return;  // a better wave is already running here
    env_.count("waves_started");
    join(me, std::nullopt);
  }
  std::optional<address> leader() const { return leader_.get(); }
  bool electing() const noexcept { return electing_; }
  void on_leader_changed(leader_handler h) { leader_.on_change(std::move(h)); }
  /// The capability score this node runs with; takes effect at its next wave.
  void set_score(std::uint64_t s) noexcept { cfg_.score = s; }

  /// Asserts (DCP_ASSERT) what holds between events, whatever peers sent:
  /// a wave is followed only with a best candidate; the wave's parent and
  /// the neighbours it still waits for are neighbours, the parent not among
  /// them; the best candidate seen never falls below the leader announced,
  /// who is the leader it reports; its own wave, echoed from everywhere, has
  /// been announced. O(neighbours); for tests and the simulator.
  void check_invariants() const {
    DCP_ASSERT(!electing_ || best_, "echo: in a wave without a candidate");
    DCP_ASSERT(!neighbours_.contains(env_.self()), "echo: a neighbour of itself");
    DCP_ASSERT(!parent_ || (neighbours_.contains(*parent_) && !pending_.contains(*parent_)),
               "echo: a wave's parent that is no neighbour, or waited for as a child");
    for (const auto& p : pending_)
      DCP_ASSERT(neighbours_.contains(p), "echo: waiting for an echo from a non-neighbour");
    if (announced_) {
      DCP_ASSERT(best_ && *announced_ <= *best_, "echo: the best candidate fell below the one announced");
      DCP_ASSERT(leader_.get() == announced_->node, "echo: the leader reported is not the one announced");
    }
    DCP_ASSERT(!electing_ || best_->node != env_.self() || parent_ || !pending_.empty(),
               "echo: its own wave echoed from everywhere, yet not announced");
  }

  void on_message(const address& from, const echo_msg::wave& m) {
    if (!neighbours_.contains(from)) return env_.count("not_a_neighbour");
    const echo_candidate me{m.candidate.round, cfg_.score, env_.self()};
    if (best_ && m.candidate < *best_) return env_.count("extinguished");
    if (!best_ || m.candidate > *best_) {
      if (me > m.candidate) {  // we would beat it: run our own wave instead
        join(me, std::nullopt);
        return;
      }
      join(m.candidate, from);
      return;
    }
    heard(from);  // the same wave again, from a non-parent: counts as its echo
  }
  void on_message(const address& from, const echo_msg::echo& m) {
    if (!neighbours_.contains(from)) return env_.count("not_a_neighbour");
    if (!best_ || m.candidate != *best_) return env_.count("stale_echo");
    heard(from);
  }
  void on_message(const address& from, const echo_msg::leader& m) {
    if (!neighbours_.contains(from)) return env_.count("not_a_neighbour");
    if (announced_ && *announced_ >= m.candidate) return;
    if (best_ && m.candidate < *best_) return env_.count("stale_leader");
    best_ = m.candidate;
    electing_ = false;
    announce(m.candidate, from);
  }

 private:
  void join(const echo_candidate& c, std::optional<address> parent) {
    best_ = c;
    parent_ = parent;
    electing_ = true;
    pending_ = neighbours_;
    if (parent) pending_.erase(*parent);
    for (auto& n : pending_) env_.send(n, echo_msg::wave{c});
    maybe_done();
  }
  void heard(const address& from) {
    if (pending_.erase(from)) maybe_done();
  }
  void maybe_done() {
    if (!electing_ || !pending_.empty()) return;
    if (parent_) {
      env_.send(*parent_, echo_msg::echo{*best_});
      parent_.reset();
      return;  // we stay in this wave until its LEADER arrives
    }
    if (best_->node == env_.self()) {  // our wave came back from everywhere: we win
      electing_ = false;
      env_.count("became_leader");
      announce(*best_, std::nullopt);
    }
  }
  void announce(const echo_candidate& c, std::optional<address> from) {
    announced_ = c;
    for (auto& n : neighbours_)
      if (n != from) env_.send(n, echo_msg::leader{c});
    leader_.set(c.node);
  }

  E env_;
  echo_config cfg_;
  std::set<address> neighbours_;
  std::optional<echo_candidate> best_, announced_;
  std::optional<address> parent_;
  std::set<address> pending_;
  bool electing_ = false;
  detail::leader_slot leader_;
};

}  // namespace dcp::election
