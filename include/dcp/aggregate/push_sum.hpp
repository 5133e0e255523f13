#pragma once
// Push-Sum (Kempe, Dobra, Gehrke, FOCS 2003): every node holds a pair
// (s, w); each round it keeps half of both and pushes the other half to one
// random peer. Mass is conserved, so s/w at every node tends to
//   sum of s_0 / sum of w_0
// with relative error below eps in O(log N + log 1/eps) rounds when peers are
// drawn uniformly. What is computed depends on the initial weights:
//
//   average   s0 = x_i, w0 = 1 everywhere               -> mean of x
//   sum       s0 = x_i, w0 = 1 at one node, 0 elsewhere  -> sum of x
//   count     s0 = 1,   w0 = 1 at one node, 0 elsewhere  -> N (network size)
//
// Convergence: a node declares it when its estimate moved by less than
// `tolerance` (relative) in `stable_rounds` rounds in a row (the testbed
// thesis uses 1e-9 three times) and calls on_converged once per epoch. Only
// rounds in which the node received some mass count: halving (s, w) leaves
// s/w unchanged, so a node that nobody picked for three rounds (about 5% of
// nodes at any time with uniform targets) would otherwise declare at once.
// Over a sparse graph three rounds are still too few: a node and a degree-2
// neighbour it has just fed hold the same ratio and push it back and forth
// unchanged, so a node declares long before the network has mixed (on a
// 1,000-node Barabási–Albert graph, after 21 rounds with estimates between
// 0.4 and 4 times the mean: docs/high-risk-edges.md); tens of rounds there.
//
// Epochs: restart() begins epoch e+1 from the node's current input; a node
// that hears of a newer epoch joins it, restarting from its own input, and
// mass from older epochs is dropped. So inputs may change and the whole
// computation restarts cleanly; `epoch_rounds` > 0 restarts it periodically.
//
// Loss: a lost message takes its mass with it. The estimate of an average
// stays a convex combination of the inputs (both s and w are lost together)
// but is biased towards the nodes whose mass survived; sums and counts
// drift down (benchmarks/push_sum measures both). Duplicated messages add
// mass: run it over a transport that does not duplicate, or expect the bias.
//
// Whom it believes: a share is mass, so one from outside the overlay would
// move every estimate where its sender likes. Shares are taken only from
// peers the membership admits (membership::admits: a static group's members,
// HyParView's active and passive views, SWIM's live members; Cyclon cannot
// tell), others dropped and counted ("share_not_member"), epoch included.
#include <cmath>
#include <cstdint>
#include <functional>
#include <optional>
#include <string_view>

#include "dcp/core/env.hpp"
#include "dcp/core/error.hpp"
#include "dcp/membership/membership.hpp"
#include "dcp/wire/message.hpp"

namespace dcp::aggregate {

/// A node's input: its value and its weight (see the table above).
struct push_sum_input {
  double value = 0;
  double weight = 1;
  static push_sum_input average(double x) { return {x, 1}; }
  static push_sum_input sum(double x, bool root) { return {x, root ? 1.0 : 0.0}; }
  static push_sum_input count(bool root) { return {1, root ? 1.0 : 0.0}; }
};

struct push_sum_config {
  duration period = 1s;  ///< one gossip round
  push_sum_input input{};
  double tolerance = 1e-9;
  int stable_rounds = 3;
  /// Start a new epoch after this many rounds in one (0: only on restart()).
  std::uint32_t epoch_rounds = 0;

  void validate() const {
    if (period <= duration::zero()) throw error(errc::invalid_config, "push_sum: period must be > 0");
    if (!std::isfinite(input.value) || !std::isfinite(input.weight) || input.weight < 0)
      throw error(errc::invalid_config, "push_sum: input value must be finite and weight finite and >= 0");
    if (tolerance < 0 || stable_rounds < 1)
      throw error(errc::invalid_config, "push_sum: tolerance >= 0, stable_rounds >= 1");
  }
};

namespace push_sum_msg {
struct share {
  static constexpr message_type wire_id = 1;
  static constexpr std::string_view wire_name = "share";
  std::uint64_t epoch = 0;
  double s = 0, w = 0;
  template <class A> void serialize(A& ar) { ar(epoch, s, w); }
};
}  // namespace push_sum_msg

template <Env E, class Membership> class push_sum {
  static_assert(membership::Membership<Membership>,
                "dcp: push_sum<Env, M> needs M to model dcp::membership::Membership (neighbours(), sample(k), "
                "on_neighbour_up(f), on_neighbour_down(f)), e.g. dcp::membership::static_group<Env>");

 public:
  using messages = wire::message_set<push_sum_msg::share>;
  /// What it counts (env.count), declared: dcp/core/counter_set.hpp.
  static constexpr dcp::counter_set counters{{"share_not_member", "bad_share", "stale_epoch", "converged"}};
  static constexpr std::string_view name = "push_sum";
  static constexpr protocol_id default_id = 30;
  using converged_callback = std::function<void(double estimate, std::uint64_t epoch)>;

  push_sum(E env, Membership& m, push_sum_config cfg = {}) : env_(std::move(env)), membership_(m), cfg_(cfg) {
    cfg_.validate();
    input_ = cfg_.input;
    reset(0);
  }

  void start() {
    timer_.start(env_, cfg_.period, [this] { round(); });
  }
  /// Stops gossiping (no more rounds); shares still arrive and are added, so
  /// a stopped node holds the mass its peers push to it. A composition that
  /// runs Push-Sum in bursts (high_risk_edges: one burst per detection)
  /// stops it between them and start()s it again.
  void stop() { timer_.stop(); }
  bool running() const noexcept { return timer_.running(); }

  /// Changes this node's input; it counts from the next epoch on.
  void set_input(push_sum_input in) {
    if (!std::isfinite(in.value) || !std::isfinite(in.weight) || in.weight < 0)
      throw error(errc::invalid_argument, "push_sum::set_input: value must be finite, weight finite and >= 0");
    input_ = in;
  }
  /// Begins a new epoch from the current inputs, here and, as it spreads, everywhere.
  void restart() { reset(epoch_ + 1); }

  /// s / w, or nothing while this node holds no weight (or too little to divide by).
  std::optional<double> estimate() const {
    if (w_ <= 0) return std::nullopt;
    const double e = s_ / w_;
    if (!std::isfinite(e)) return std::nullopt;  // w halved to a denormal (cut off ~1000 rounds): no estimate
    return e;
  }
  bool converged() const noexcept { return converged_; }
  std::uint64_t epoch() const noexcept { return epoch_; }
  std::uint32_t rounds() const noexcept { return rounds_; }
  double mass_s() const noexcept { return s_; }
  double mass_w() const noexcept { return w_; }
  void on_converged(converged_callback f) { on_converged_ = std::move(f); }

  void on_message(const address& from, const push_sum_msg::share& m) {
    if (!membership::admits(membership_, from)) return env_.count("share_not_member");
    if (!std::isfinite(m.s) || !std::isfinite(m.w) || m.w < 0) return env_.count("bad_share");
    if (m.epoch < epoch_) return env_.count("stale_epoch");
    // Each share is finite, but two near the largest double sum to infinity,
    // and a share with a huge s and a tiny w has an infinite ratio: either
    // makes every estimate it reaches infinite or NaN. Refused.
    const bool newer = m.epoch > epoch_;
    const double s = (newer ? input_.value : s_) + m.s, w = (newer ? input_.weight : w_) + m.w;
    if (!std::isfinite(s) || !std::isfinite(w) || (w > 0 && !std::isfinite(s / w))) return env_.count("bad_share");
    if (newer) reset(m.epoch);
    s_ = s;
    w_ = w;
    received_ = true;
  }

  /// One round now (the timer calls it; a synchronous driver may too).
  void round() {
    ++rounds_;
    if (cfg_.epoch_rounds && rounds_ >= cfg_.epoch_rounds) return restart();
    auto target = membership_.sample(1);
    if (!target.empty() && (s_ != 0 || w_ != 0)) {
      s_ /= 2;
      w_ /= 2;
      env_.send(target.front(), push_sum_msg::share{epoch_, s_, w_});
    }
    watch();
  }

 private:
  void reset(std::uint64_t epoch) {
    epoch_ = epoch;
    s_ = input_.value;
    w_ = input_.weight;
    rounds_ = 0;
    streak_ = 0;
    received_ = false;
    converged_ = false;
    last_.reset();
  }

  void watch() {
    auto e = estimate();
    if (!e) return;
    const bool moved_little = last_ && std::abs(*e - *last_) <= cfg_.tolerance * std::abs(*e);
    if (!moved_little)
      streak_ = 0;
    else if (received_)
      ++streak_;
    received_ = false;
    last_ = e;
    if (!converged_ && streak_ >= cfg_.stable_rounds) {
      converged_ = true;
      env_.count("converged");
      if (on_converged_) on_converged_(*e, epoch_);
    }
  }

  E env_;
  Membership& membership_;
  push_sum_config cfg_;
  push_sum_input input_;
  std::uint64_t epoch_ = 0;
  double s_ = 0, w_ = 0;
  std::uint32_t rounds_ = 0;
  int streak_ = 0;
  bool received_ = false;  ///< some mass arrived since the last round
  bool converged_ = false;
  std::optional<double> last_;
  converged_callback on_converged_;
  periodic<E> timer_;
};

}  // namespace dcp::aggregate
