#pragma once
// high_risk_edges: the testbed thesis' method for finding high-risk links in
// a peer-to-peer overlay (background 004, ch. 5), each node deciding alone
// from what it can learn from its neighbours.
//
//   1. Traffic (random_walk_traffic): walkers hop to uniformly random
//      neighbours; x_i = messages sent + received over node i's edges.
//   2. Aggregation (push_sum, average): `iterations` Push-Sum rounds over
//      x_i, each a fresh epoch in which every node starts again from
//      (x_i, 1). The thesis synchronises iterations with an etcd barrier:
//      the first node to converge deletes the key and so releases everyone
//      into the next iteration, whose seed node is chosen at random. Here the
//      barrier is Push-Sum's epoch number: a node that converges in epoch e
//      sends a seed token for e + 1 on a random walk of `seed_walk_hops`
//      hops; where it stops, the node restarts Push-Sum in epoch e + 1 (the
//      new iteration's seed), and the epoch spreads with its shares: a node
//      hearing of e + 1 leaves e (it is "released"), and shares of older
//      epochs are dropped and counted by push_sum ("stale_epoch"). Many
//      nodes converge at about the same time, so several tokens race; the
//      first starts the epoch, later ones find it begun ("seed_late").
//   3. Samples: node i's sample of iteration e is its estimate when it
//      converged in e or, released before that, its last estimate in e. A
//      node no share of epoch e reached has no sample of e (the thesis:
//      low-degree nodes may miss an iteration; they are not the ones sought).
//   4. Threshold T = mu + k sigma (the thesis: k = 2). Under the thesis' rule
//      (threshold_rule::iteration_estimates) mu and sigma are the mean and
//      standard deviation of node i's samples: sigma then measures how much
//      the iterations disagree (the dependence on the seed node), not how
//      spread the traffic is, and T is close to the network's mean traffic.
//      Under threshold_rule::traffic_distribution a second Push-Sum runs
//      over x_i^2 alongside, and sigma^2 = E[x^2] - E[x]^2 is the spread of
//      the traffic itself, so T = mu + k sigma means "k standard deviations
//      above the mean traffic", the definition of an important node this
//      library's tests and benchmark use as ground truth.
//   5. Node i labels itself high-traffic if x_i > T, then queries its
//      neighbours (query, answered with the neighbour's label once it has
//      one). An edge between two high-traffic nodes is high-risk.
//
// Ground truth (tests, benchmarks/high_risk_edges): the important nodes are
// those whose traffic exceeds mean + k * standard deviation of all nodes'
// traffic (population statistics, computed centrally from the same x_i);
// the true high-risk edges are the edges between two important nodes.
//
// Faults tolerated, and not.
//   - Loss: a lost share takes mass (s and w together) with it, so every
//     estimate stays a convex combination of inputs but is biased towards
//     the nodes whose mass survived (push_sum.hpp); a lost seed token is
//     covered by the other nodes' tokens and, failing all, by `stall_rounds`
//     (a node converged in e that still sees no e + 1 starts it itself:
//     "stall_restart"); a lost query is sent again (`query_attempts`).
//   - Duplication: a duplicated share adds mass that was never there and
//     biases the average (push_sum.hpp: run over a transport that does not
//     duplicate, e.g. TCP); tokens, queries and answers are idempotent.
//   - Crashes: a crashed node's mass leaves with it, and half of each push to
//     it is lost until the membership marks it down: the current iteration is
//     biased as under loss, the next ones are over the survivors. A node whose
//     neighbours all crashed hears nothing and never decides (decided() stays
//     false). A node no iteration reached (the thesis: low-degree nodes may
//     miss them all) decides, with no samples "not high", `final_rounds`
//     after a neighbour first queries it; unqueried, it stays undecided,
//     which changes no edge (only high nodes query, and they ask everyone).
//   - Hostile or malformed input: only peers the membership admits are heard
//     ("seed_not_member", "query_not_member", "answer_not_member"); a seed
//     for an epoch past `iterations` is refused ("bad_seed"), its hop count
//     capped ("seed_hops_capped"); an answer nobody asked for is dropped
//     ("unsolicited_answer"); tables are bounded by `max_neighbours`
//     ("table_full"). Non-finite shares are refused by push_sum ("bad_share").
//     A member that lies (a seed or share for a far epoch) can cut the
//     iterations short: members are trusted with epochs, as in push_sum.
//
// Composition: hosted on the node beside its membership, the push_sum
// instance(s) and the random_walk_traffic, all by reference (they must
// outlive it: add them first). It takes push_sum's on_converged callback.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <optional>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "dcp/aggregate/push_sum.hpp"
#include "dcp/aggregate/random_walk_traffic.hpp"
#include "dcp/core/assert.hpp"
#include "dcp/core/env.hpp"
#include "dcp/core/error.hpp"
#include "dcp/membership/membership.hpp"
#include "dcp/wire/message.hpp"

namespace dcp::aggregate {

enum class threshold_rule : std::uint8_t {
  iteration_estimates,   ///< the thesis: mu, sigma of the node's iteration estimates of the mean
  traffic_distribution,  ///< mu, sigma of the traffic itself (second Push-Sum over x^2)
};

struct high_risk_edges_config {
  std::uint32_t iterations = 30;  ///< Push-Sum iterations (the thesis: 30)
  double k = 2.0;                 ///< T = mu + k sigma (the thesis: 2)
  threshold_rule rule = threshold_rule::iteration_estimates;
  duration period = 1s;               ///< how often the node looks at its Push-Sum (use push_sum's period)
  std::uint32_t seed_walk_hops = 4;   ///< hops of the token that picks the next iteration's seed node
  std::uint32_t stall_rounds = 60;    ///< converged, and no next epoch after this many periods: start it here
  std::uint32_t final_rounds = 400;   ///< in the last epoch, decide after this many periods even unconverged
  std::uint32_t query_period = 2;     ///< periods between queries to a neighbour that has not answered
  std::uint32_t query_attempts = 10;  ///< queries to one neighbour before giving up on it
  std::uint32_t linger_rounds = 30;   ///< periods Push-Sum keeps gossiping after the decision (others still need it)
  std::size_t max_neighbours = 4096;  ///< bound of the label and pending-query tables

  void validate() const {
    if (iterations == 0 || iterations > 10000)
      throw error(errc::invalid_config, "high_risk_edges: iterations in [1, 10^4]");
    if (!std::isfinite(k)) throw error(errc::invalid_config, "high_risk_edges: k must be finite");
    if (period <= duration::zero()) throw error(errc::invalid_config, "high_risk_edges: period must be > 0");
    if (stall_rounds == 0 || final_rounds == 0 || query_period == 0 || query_attempts == 0 || max_neighbours == 0)
      throw error(errc::invalid_config,
                  "high_risk_edges: stall_rounds, final_rounds, query_period, query_attempts, max_neighbours >= 1");
  }
};

namespace high_risk_msg {
/// "Start iteration `epoch` where this walk ends."
struct seed {
  static constexpr message_type wire_id = 1;
  static constexpr std::string_view wire_name = "seed";
  std::uint64_t epoch = 0;
  std::uint32_t hops = 0;  ///< hops left
  template <class A> void serialize(A& ar) { ar(epoch, hops); }
};
/// "Are you a high-traffic node?"
struct query {
  static constexpr message_type wire_id = 2;
  static constexpr std::string_view wire_name = "query";
  template <class A> void serialize(A&) {}
};
struct answer {
  static constexpr message_type wire_id = 3;
  static constexpr std::string_view wire_name = "answer";
  bool high = false;
  template <class A> void serialize(A& ar) { ar(high); }
};
}  // namespace high_risk_msg

/// What a node decided, and from what.
struct high_risk_decision {
  double traffic = 0;         ///< x_i: the traffic snapshot its last epoch started from
  double mean = 0;            ///< mu
  double sigma = 0;           ///< sigma
  double threshold = 0;       ///< T = mu + k sigma
  bool high = false;          ///< traffic > threshold
  std::uint32_t samples = 0;  ///< iterations that gave this node a sample
  bool timed_out = false;     ///< decided by final_rounds, not by convergence in the last epoch
};

template <Env E, class Membership> class high_risk_edges {
  static_assert(membership::Membership<Membership>,
                "dcp: high_risk_edges<Env, M> needs M to model dcp::membership::Membership");

 public:
  using push_sum_type = push_sum<E, Membership>;
  using traffic_type = random_walk_traffic<E, Membership>;
  using messages = wire::message_set<high_risk_msg::seed, high_risk_msg::query, high_risk_msg::answer>;
  /// What it counts (env.count), declared: dcp/core/counter_set.hpp.
  static constexpr dcp::counter_set counters{
      {"seed_not_member", "bad_seed", "seed_late", "seed_hops_capped", "query_not_member", "table_full",
       "answer_not_member", "unsolicited_answer", "stall_restart", "decided_by_timeout", "decided_on_query", "seeded",
       "no_samples", "decided_high", "decided_low", "query_unanswered"}};
  static constexpr std::string_view name = "high_risk_edges";
  static constexpr protocol_id default_id = 32;
  using decided_callback = std::function<void(const high_risk_decision&)>;

  /// `second_moment` (a push_sum over the same membership) is required by
  /// threshold_rule::traffic_distribution and ignored otherwise.
  high_risk_edges(E env, Membership& m, push_sum_type& mean, traffic_type& traffic, high_risk_edges_config cfg = {},
                  push_sum_type* second_moment = nullptr)
      : env_(std::move(env)), membership_(m), traffic_(traffic), cfg_(cfg) {
    cfg_.validate();
    if (cfg_.rule == threshold_rule::traffic_distribution && !second_moment)
      throw error(errc::invalid_config, "high_risk_edges: traffic_distribution needs a second push_sum (over x^2)");
    tracks_[0].ps = &mean;
    if (cfg_.rule == threshold_rule::traffic_distribution) tracks_[1].ps = second_moment;
    for (auto& t : tracks_) t.samples.resize(cfg_.iterations);
    seeded_.resize(cfg_.iterations);
    mean.on_converged([this](double e, std::uint64_t epoch) { converged(0, e, epoch); });
    if (tracks_[1].ps) tracks_[1].ps->on_converged([this](double e, std::uint64_t epoch) { converged(1, e, epoch); });
  }

  /// Push-Sum idles until the first iteration reaches this node (begin(), or
  /// a share of epoch 1 from a neighbour).
  void start() {
    for (auto& t : tracks_)
      if (t.ps && t.ps->epoch() == 0) t.ps->stop();
    timer_.start(env_, cfg_.period, [this] { tick(); });
  }

  /// Makes this node the seed of iteration 1 (any one node; the others join
  /// as its shares reach them).
  void begin() { seed_epoch(1); }

  std::optional<high_risk_decision> decision() const { return decision_; }
  bool decided() const noexcept { return decision_.has_value(); }
  /// The neighbours at the far end of a high-risk edge (both ends high), as far as answers came back.
  std::vector<address> high_risk_neighbours() const {
    std::vector<address> out;
    if (!decision_ || !decision_->high) return out;
    for (auto& [peer, high] : labels_)
      if (high) out.push_back(peer);
    std::sort(out.begin(), out.end());
    return out;
  }
  /// Neighbours that answered a query (high or not).
  std::size_t answered() const noexcept { return labels_.size(); }
  /// The samples of iteration estimates this node holds (rule's first track: the mean).
  std::vector<double> samples() const { return present(tracks_[0].samples); }
  std::uint64_t epoch() const noexcept { return tracks_[0].ps->epoch(); }
  /// Whether this node seeded iteration `epoch` (1-based): for measuring the seed's influence.
  bool seeded(std::uint64_t epoch) const { return epoch >= 1 && epoch <= seeded_.size() && seeded_[epoch - 1]; }
  /// This node's sample of iteration `epoch` (1-based) on track 0 (the mean), if it has one.
  std::optional<double> sample_of(std::uint64_t epoch) const {
    if (epoch < 1 || epoch > tracks_[0].samples.size()) return std::nullopt;
    return tracks_[0].samples[epoch - 1];
  }
  void on_decided(decided_callback f) { on_decided_ = std::move(f); }

  void on_message(const address& from, const high_risk_msg::seed& m) {
    if (!membership::admits(membership_, from)) return env_.count("seed_not_member");
    if (m.epoch == 0 || m.epoch > cfg_.iterations) return env_.count("bad_seed");
    if (m.epoch <= epoch()) return env_.count("seed_late");
    std::uint32_t hops = m.hops;
    if (hops > cfg_.seed_walk_hops) {
      hops = cfg_.seed_walk_hops;
      env_.count("seed_hops_capped");
    }
    if (hops > 0) return pass_seed(high_risk_msg::seed{m.epoch, hops - 1});
    seed_epoch(m.epoch);
  }

  void on_message(const address& from, const high_risk_msg::query&) {
    if (!membership::admits(membership_, from)) return env_.count("query_not_member");
    if (decision_) return (void)env_.send(from, high_risk_msg::answer{decision_->high});
    if (pending_.size() >= cfg_.max_neighbours && !pending_.contains(from)) return env_.count("table_full");
    pending_.insert(from);  // answered when this node decides
  }

  void on_message(const address& from, const high_risk_msg::answer& m) {
    if (!membership::admits(membership_, from)) return env_.count("answer_not_member");
    auto it = asked_.find(from);
    if (it == asked_.end()) return env_.count("unsolicited_answer");
    asked_.erase(it);
    labels_[from] = m.high;  // asked_ is bounded, so labels_ is
  }

  /// Asserts (DCP_ASSERT) what must hold between events; the tests call it
  /// on every node as the simulation runs. A no-op when assertions are off.
  void check_invariants() const {
    DCP_ASSERT(asked_.size() <= cfg_.max_neighbours && pending_.size() <= cfg_.max_neighbours,
               "the query tables are bounded");
    DCP_ASSERT(!decision_ || pending_.empty(), "a decided node has answered every query it held");
    DCP_ASSERT(labels_.empty() || (decision_ && decision_->high), "only a high node asks its neighbours");
    DCP_ASSERT(!decision_ || decision_->high == (decision_->samples > 0 && decision_->traffic > decision_->threshold),
               "a node is high exactly when its traffic exceeds its own threshold T = mu + k sigma");
    DCP_ASSERT(!decision_ || !decision_->high || decision_->sigma >= 0, "sigma is a standard deviation");
    DCP_ASSERT(present(tracks_[0].samples).size() <= cfg_.iterations, "one sample per iteration at most");
  }

  /// The samples so far of track 0 (for tests): at most `iterations` values.
  std::size_t sample_count() const { return present(tracks_[0].samples).size(); }

 private:
  struct track {
    push_sum_type* ps = nullptr;
    std::vector<std::optional<double>> samples;  ///< per iteration 1..iterations
    std::uint64_t epoch = 0;                     ///< the epoch `last` belongs to
    std::optional<double> last;                  ///< the last estimate seen in `epoch`
  };

  static std::vector<double> present(const std::vector<std::optional<double>>& v) {
    std::vector<double> out;
    for (auto& s : v)
      if (s) out.push_back(*s);
    return out;
  }

  void record(track& t, std::uint64_t epoch, double estimate) {
    if (epoch < 1 || epoch > cfg_.iterations || !std::isfinite(estimate)) return;
    auto& slot = t.samples[epoch - 1];
    if (!slot) slot = estimate;
  }

  /// Follows a track's Push-Sum: a change of epoch means this node was
  /// released from the old one (the barrier), whose last estimate is its sample.
  void follow(track& t) {
    if (!t.ps) return;
    const auto e = t.ps->epoch();
    if (e != t.epoch) {
      if (t.last) record(t, t.epoch, *t.last);
      t.epoch = e;
      t.last.reset();
    }
    if (auto est = t.ps->estimate(); est && e >= 1) t.last = *est;
  }

  /// Follows both tracks; on a change of epoch, starts counting the new one.
  void observe() {
    const auto before = tracks_[0].epoch;
    for (auto& t : tracks_) follow(t);
    if (tracks_[0].epoch == before) return;
    rounds_in_epoch_ = 0;
    converged_in_epoch_ = false;
    snapshot_ = input_;  // what push_sum restarted from when this node joined the epoch
  }

  /// The input each new epoch starts from: a snapshot of the traffic, taken
  /// at most one period before the node joins it (the thesis' "system
  /// snapshot" at the start of an iteration, so that the value used is
  /// consistent while the traffic keeps changing).
  void take_snapshot() {
    input_ = static_cast<double>(traffic_.total());
    tracks_[0].ps->set_input(push_sum_input::average(input_));
    if (tracks_[1].ps) tracks_[1].ps->set_input(push_sum_input::average(input_ * input_));
  }

  void tick() {
    observe();
    take_snapshot();
    ++rounds_in_epoch_;
    const auto e = epoch();
    if (!decision_) {
      for (auto& t : tracks_)  // joined an iteration through a neighbour's share
        if (t.ps && t.ps->epoch() >= 1 && !t.ps->running()) t.ps->start();
      if (e >= 1 && e < cfg_.iterations && converged_in_epoch_ &&
          rounds_in_epoch_ - converged_round_ >= cfg_.stall_rounds) {
        env_.count("stall_restart");  // every token for e + 1 was lost, or their holders crashed
        seed_epoch(e + 1);
      } else if (e == cfg_.iterations && rounds_in_epoch_ >= cfg_.final_rounds) {
        env_.count("decided_by_timeout");
        decide(true);
      } else if (!pending_.empty() && ++rounds_queried_ >= cfg_.final_rounds) {
        // A decided neighbour asks, and no iteration has reached this node
        // since (a hub pushes to each of its leaves rarely; once it stops,
        // a leaf may never hear of the iterations): decide from what it has,
        // no samples being "not high".
        env_.count("decided_on_query");
        decide(true);
      }
      return;
    }
    if (++rounds_since_decision_ == cfg_.linger_rounds)
      for (auto& t : tracks_)
        if (t.ps) t.ps->stop();
    if (!asked_.empty() && rounds_since_decision_ % cfg_.query_period == 0) ask();
    if (asked_.empty() && rounds_since_decision_ >= cfg_.linger_rounds) timer_.stop();  // answers need no timer
  }

  /// Push-Sum calls this inside its round: record now, act after the event.
  void converged(int which, double estimate, std::uint64_t epoch) {
    observe();  // in case this epoch began since the last tick
    auto& t = tracks_[which];
    record(t, epoch, estimate);
    if (which != 0 || epoch < 1 || epoch > cfg_.iterations || decision_) return;
    converged_in_epoch_ = true;
    converged_round_ = rounds_in_epoch_;
    defer(env_, [this, epoch] {
      if (decision_ || this->epoch() != epoch) return;
      if (epoch == cfg_.iterations) return decide(false);
      if (cfg_.seed_walk_hops == 0) return seed_epoch(epoch + 1);
      pass_seed(high_risk_msg::seed{epoch + 1, cfg_.seed_walk_hops - 1});
    });
  }

  void pass_seed(const high_risk_msg::seed& m) {
    auto next = membership_.sample(1);
    if (next.empty()) return seed_epoch(m.epoch);  // nobody to pass it to: begin here
    env_.send(next.front(), m);
  }

  /// This node seeds iteration `epoch`: a fresh Push-Sum from its current traffic.
  void seed_epoch(std::uint64_t epoch) {
    if (decision_ || epoch <= this->epoch() || epoch > cfg_.iterations) return;
    env_.count("seeded");
    seeded_[epoch - 1] = true;
    observe();  // the sample of the epoch it leaves
    take_snapshot();
    for (auto& t : tracks_) {
      if (!t.ps) continue;
      while (t.ps->epoch() < epoch) t.ps->restart();  // restart() is one epoch on; a token may skip some
      if (!t.ps->running()) t.ps->start();
    }
  }

  void decide(bool timed_out) {
    if (decision_) return;
    observe();
    for (auto& t : tracks_)  // the last epoch's sample, if it had none yet
      if (t.ps && t.last) record(t, t.epoch, *t.last);
    high_risk_decision d;
    d.timed_out = timed_out;
    // x_i as this node entered the Push-Sum it decides by (its traffic now if no iteration reached it).
    d.traffic = tracks_[0].epoch >= 1 ? snapshot_ : static_cast<double>(traffic_.total());
    const auto xs = present(tracks_[0].samples);
    d.samples = static_cast<std::uint32_t>(xs.size());
    if (xs.empty()) {
      env_.count("no_samples");  // no iteration reached this node with weight
    } else {
      for (double s : xs) d.mean += s / static_cast<double>(xs.size());
      if (cfg_.rule == threshold_rule::iteration_estimates) {
        double var = 0;
        for (double s : xs) var += (s - d.mean) * (s - d.mean) / static_cast<double>(xs.size());
        d.sigma = std::sqrt(var);
      } else {
        const auto x2 = present(tracks_[1].samples);
        double second = 0;
        for (double s : x2) second += s / static_cast<double>(x2.size());
        d.sigma = x2.empty() ? 0 : std::sqrt(std::max(0.0, second - d.mean * d.mean));
      }
      d.threshold = d.mean + cfg_.k * d.sigma;
      d.high = d.traffic > d.threshold;
    }
    decision_ = d;
    env_.count(d.high ? "decided_high" : "decided_low");
    for (auto& peer : pending_) env_.send(peer, high_risk_msg::answer{d.high});
    pending_.clear();
    if (d.high) {
      for (auto& peer : membership_.neighbours()) {
        if (asked_.size() >= cfg_.max_neighbours) {
          env_.count("table_full");
          break;
        }
        asked_.emplace(peer, 0);
      }
      ask();
    }
    if (on_decided_) defer(env_, [this] { on_decided_(*decision_); });
  }

  void ask() {
    for (auto it = asked_.begin(); it != asked_.end();) {
      if (it->second >= cfg_.query_attempts) {
        env_.count("query_unanswered");
        it = asked_.erase(it);
        continue;
      }
      ++it->second;
      env_.send(it->first, high_risk_msg::query{});
      ++it;
    }
  }

  E env_;
  Membership& membership_;
  traffic_type& traffic_;
  high_risk_edges_config cfg_;
  track tracks_[2];
  std::vector<bool> seeded_;  ///< per iteration: this node seeded it
  std::uint32_t rounds_in_epoch_ = 0, converged_round_ = 0, rounds_since_decision_ = 0, rounds_queried_ = 0;
  bool converged_in_epoch_ = false;
  double input_ = 0;     ///< the traffic push_sum restarts from when it enters an epoch
  double snapshot_ = 0;  ///< input_ as this node entered its current epoch
  std::optional<high_risk_decision> decision_;
  std::unordered_map<address, std::uint32_t> asked_;  ///< neighbour -> queries sent, until it answers
  std::unordered_map<address, bool> labels_;          ///< neighbour -> its label
  std::unordered_set<address> pending_;               ///< neighbours waiting for this node's label
  decided_callback on_decided_;
  periodic<E> timer_;
};

}  // namespace dcp::aggregate
