#pragma once
// Pairwise (push-pull) averaging, the anti-entropy form of aggregation
// (Jelasity, Montresor, Babaoglu, ACM TOCS 2005): each round a node offers its
// value x_i to one random peer j; j answers with its own value and both move
// to the midpoint, x_i, x_j <- (x_i + x_j) / 2.
//
// The update is applied as two opposite deltas, j += (x_i - x_j)/2 when the
// offer arrives and i += (x_j - x_i)/2 when the answer does, computed from the
// values in the messages: so the sum is conserved exactly even when exchanges
// of one node overlap. Duplicated offers are answered once (a small memory of
// recent offers per sender). A lost answer leaves j updated and i not: the
// sum drifts by (x_i - x_j)/2; the benchmark measures it.
//
// Network size: start one node at 1 and every other at 0; the average tends
// to 1/N, so size_estimate() = 1/x.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <deque>
#include <optional>
#include <string_view>

#include "dcp/core/env.hpp"
#include "dcp/core/error.hpp"
#include "dcp/membership/membership.hpp"
#include "dcp/wire/message.hpp"

namespace dcp::aggregate {

struct pairwise_average_config {
  duration period = 1s;
  double value = 0;
  /// Offers remembered per node to answer a duplicate without applying it twice.
  std::size_t remembered_offers = 64;

  void validate() const {
    if (period <= duration::zero()) throw error(errc::invalid_config, "pairwise_average: period must be > 0");
    if (!std::isfinite(value)) throw error(errc::invalid_config, "pairwise_average: value must be finite");
  }
};

namespace pairwise_msg {
struct offer {
  static constexpr message_type wire_id = 1;
  static constexpr std::string_view wire_name = "offer";
  std::uint64_t seq = 0;
  double x = 0;
  template <class A> void serialize(A& ar) { ar(seq, x); }
};
struct answer {
  static constexpr message_type wire_id = 2;
  static constexpr std::string_view wire_name = "answer";
  std::uint64_t seq = 0;
  double x = 0;  ///< the answerer's value before it applied the offer
  template <class A> void serialize(A& ar) { ar(seq, x); }
};
}  // namespace pairwise_msg

template <Env E, class Membership> class pairwise_average {
  static_assert(membership::Membership<Membership>,
                "dcp: pairwise_average<Env, M> needs M to model dcp::membership::Membership (neighbours(), "
                "sample(k), on_neighbour_up(f), on_neighbour_down(f)), e.g. dcp::membership::static_group<Env>");

 public:
  using messages = wire::message_set<pairwise_msg::offer, pairwise_msg::answer>;
  /// What it counts (env.count), declared: dcp/core/counter_set.hpp.
  static constexpr dcp::counter_set counters{
      {"bad_offer", "duplicate_offer", "bad_answer", "stale_answer", "answer_lost"}};
  static constexpr std::string_view name = "pairwise_average";
  static constexpr protocol_id default_id = 31;

  pairwise_average(E env, Membership& m, pairwise_average_config cfg = {})
      : env_(std::move(env)), membership_(m), cfg_(cfg), x_(cfg.value) {
    cfg_.validate();
  }
  void start() {
    timer_.start(env_, cfg_.period, [this] { round(); });
  }

  double value() const noexcept { return x_; }
  /// 1/x: the network size when one node started at 1 and the others at 0.
  std::optional<double> size_estimate() const {
    if (x_ <= 0) return std::nullopt;
    return 1 / x_;
  }

  void on_message(const address& from, const pairwise_msg::offer& m) {
    if (!std::isfinite(m.x)) return env_.count("bad_offer");
    auto seen = std::find_if(recent_.begin(), recent_.end(), [&](auto& r) { return r.from == from && r.seq == m.seq; });
    if (seen != recent_.end()) {
      env_.count("duplicate_offer");
      env_.send(from, pairwise_msg::answer{m.seq, seen->answered});
      return;
    }
    const double mine = x_, next = mine + (m.x - mine) / 2;
    // Finite values far apart (DBL_MAX and -DBL_MAX) differ by infinity:
    // refused unanswered (the offerer counts its exchange lost), x unchanged.
    if (!std::isfinite(next)) return env_.count("bad_offer");
    x_ = next;
    recent_.push_back({from, m.seq, mine});
    if (recent_.size() > cfg_.remembered_offers) recent_.pop_front();
    env_.send(from, pairwise_msg::answer{m.seq, mine});
  }
  void on_message(const address& from, const pairwise_msg::answer& m) {
    if (!std::isfinite(m.x)) return env_.count("bad_answer");
    if (!outstanding_ || outstanding_->seq != m.seq || outstanding_->to != from) return env_.count("stale_answer");
    const double next = x_ + (m.x - outstanding_->sent) / 2;
    if (!std::isfinite(next)) return env_.count("bad_answer");  // as for an offer: never an infinite x
    x_ = next;
    outstanding_.reset();
  }

  void round() {
    if (outstanding_) env_.count("answer_lost");  // an exchange never answered: lost one way or the other
    outstanding_.reset();
    auto t = membership_.sample(1);
    if (t.empty()) return;
    outstanding_ = pending{t.front(), ++seq_, x_};
    env_.send(t.front(), pairwise_msg::offer{seq_, x_});
  }

 private:
  struct pending {
    address to;
    std::uint64_t seq;
    double sent;
  };
  struct remembered {
    address from;
    std::uint64_t seq;
    double answered;
  };

  E env_;
  Membership& membership_;
  pairwise_average_config cfg_;
  double x_;
  std::uint64_t seq_ = 0;
  std::optional<pending> outstanding_;
  std::deque<remembered> recent_;
  periodic<E> timer_;
};

}  // namespace dcp::aggregate
