#pragma once
// The Berkeley algorithm (Gusella & Zatti, "The accuracy of the clock
// synchronization achieved by TEMPO in Berkeley UNIX 4.3BSD", IEEE TSE 1989;
// Tanenbaum & van Steen ch. 6, fig. 6-7): internal synchronization with no
// reference clock. The members agree on each other's average time.
//
// A time daemon, the group's elected leader, polls every member each
// poll_interval: POLL(round). Each member answers READING(round, its clock).
// The daemon estimates every member's offset from its own clock as Cristian
// does (reading + rtt/2 - receive time, error rtt/2), discards readings whose
// round trip exceeds max_round_trip (they say too little), and takes the
// fault-tolerant average: the mean over the largest subset of clocks (its own
// included) that lie within fta_width of each other, so that a clock gone
// wild does not drag the others. It then tells every member that answered how
// much to adjust (ADJUST(round, avg - offset, error)), faulty clocks too, and
// adjusts itself by avg. Members slew the adjustment in, never stepping back.
//
// The daemon is replaced by an election (any dcp::election::Election; the
// Bully algorithm, which detects a crashed leader by probing, is the usual
// choice): this class polls only while the election says this node leads and
// answers only the leader's polls; a poll from anyone else means the
// election has not settled (two daemons, or a lost COORDINATOR), and the
// member starts a new election. A daemon that crashes mid-round leaves
// nothing behind: its members keep their clocks, and the next leader's first
// round synchronizes them again.
//
// The bound. Let V be the virtual clock that reads the daemon's clock plus
// the average at the round's poll, running at the true rate. After a round a
// member's clock is within
//     rtt/2 + 2ρ·rtt + ρ·reply_window + ρ·(time since its reading) + |not yet slewed|
// of V (the daemon's: ρ·(time since the poll)); error_bound() reports it, so
// two members synchronized in the same round differ by at most the sum of
// their bounds. Internal only: V itself drifts from real time at up to ρ.
//
// Faults tolerated: loss (a member whose reading or adjustment is lost sits
// the round out), delay, reordering and duplication (one reading and one
// adjustment per member and round, matched by round id), a member's clock
// running wild (outside the fault-tolerant average), daemon crashes (a new
// election). Hostile input: readings from non-members or for another round,
// absurd offsets, adjustments not from the daemon polled or over
// max_adjustment are counted and never applied. Not tolerated: a daemon that
// lies about adjustments within max_adjustment (members trust their leader),
// and partitions while they last (each side elects a daemon and agrees on
// its own average; once healed, polls across the old split start elections
// until one daemon is left). A round during which another daemon's
// adjustment moved the daemon's clock is dropped ("round_disturbed").
//
// Not thread-safe: call from one thread or strand, like the rest of dcp.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

#include "dcp/clock/disciplined_clock.hpp"
#include "dcp/core/env.hpp"
#include "dcp/core/protocol.hpp"
#include "dcp/election/api.hpp"
#include "dcp/group/static_group.hpp"

namespace dcp::clock {

struct berkeley_config {
  duration poll_interval = 1s;
  duration reply_window = 200ms;    ///< how long the daemon collects readings before averaging
  duration max_round_trip = 100ms;  ///< readings slower than this are discarded
  duration fta_width = 20ms;        ///< γ: the widest spread of clocks averaged together
  duration max_offset = 24h;        ///< a reading further off is a bogus timestamp
  duration max_adjustment = 24h;    ///< an ADJUST above this is refused
  duration resolution = 1us;        ///< timestamp resolution, added to every bound
  double drift_bound = 100e-6;      ///< ρ: each clock's drift rate bound against real time
  disciplined_clock_config clock{};

  void validate() const {
    if (poll_interval <= duration::zero() || reply_window <= duration::zero() || reply_window >= poll_interval)
      throw error(errc::invalid_config, "berkeley: need 0 < reply_window < poll_interval");
    if (max_round_trip <= duration::zero() || max_round_trip > reply_window)
      throw error(errc::invalid_config, "berkeley: need 0 < max_round_trip <= reply_window");
    if (fta_width < duration::zero() || max_offset <= duration::zero() || max_adjustment <= duration::zero() ||
        resolution < duration::zero())
      throw error(errc::invalid_config, "berkeley: fta_width, max_offset, max_adjustment, resolution must be positive");
    if (!(drift_bound >= 0 && drift_bound < 0.01))
      throw error(errc::invalid_config, "berkeley: drift_bound must be in [0, 0.01)");
    clock.validate();
  }
};

namespace berkeley_msg {
struct poll {
  static constexpr message_type wire_id = 1;
  static constexpr std::string_view wire_name = "berkeley_poll";
  std::uint64_t round = 0;
  template <class A> void serialize(A& ar) { ar(round); }
};
struct reading {
  static constexpr message_type wire_id = 2;
  static constexpr std::string_view wire_name = "berkeley_reading";
  std::uint64_t round = 0;
  std::int64_t clock = 0;  ///< ns, the member's clock
  template <class A> void serialize(A& ar) { ar(round, clock); }
};
struct adjust {
  static constexpr message_type wire_id = 3;
  static constexpr std::string_view wire_name = "berkeley_adjust";
  std::uint64_t round = 0;
  std::int64_t delta = 0;  ///< ns to add to the member's clock
  std::int64_t error = 0;  ///< ns: the bound on the member's clock against V after it
  template <class A> void serialize(A& ar) { ar(round, delta, error); }
};
}  // namespace berkeley_msg

/// A round, as a member knows it: which daemon, which round.
struct berkeley_round {
  address daemon;
  std::uint64_t round = 0;
  bool operator==(const berkeley_round&) const = default;
};

template <Env E, election::Election L, group::Group G = group::static_group> class berkeley {
 public:
  using messages = wire::message_set<berkeley_msg::poll, berkeley_msg::reading, berkeley_msg::adjust>;
  /// What it counts (env.count), declared: dcp/core/counter_set.hpp.
  static constexpr dcp::counter_set counters{
      {"poll_not_from_leader", "unexpected_adjust", "absurd_adjustment", "unexpected_reading", "round_disturbed",
       "duplicate_reading", "slow_reading_discarded", "absurd_reading", "not_a_member", "round_overran",
       "round_abandoned", "readings_averaged", "outliers_discarded"}};
  static constexpr std::string_view name = "clock.berkeley";
  static constexpr protocol_id default_id = 111;

  /// `election` decides who is the daemon; it must outlive this object.
  berkeley(E env, L& election, G group, berkeley_config cfg = {})
      : env_(std::move(env)),
        election_(election),
        group_(std::move(group)),
        cfg_(cfg),
        clock_((cfg_.validate(), cfg_.clock)) {
    rank_ = group::rank_of_self(group_, env_.self(), "berkeley");
    next_round_ = env_.rng()() >> 1;  // rounds of a restarted daemon never match its past ones
  }
  ~berkeley() {
    if (window_timer_) env_.cancel(window_timer_);
  }

  void start() {
    polls_.start(env_, cfg_.poll_interval, [this] { tick(); });
  }

  /// The member's clock: the group's average time, to within error_bound().
  time_point synchronized_now() { return clock_.now(env_.now()); }
  /// Bound against the virtual clock V of the last round applied; max() before any.
  duration error_bound() const { return clock_.error_bound(env_.now()); }
  /// The last round whose adjustment this node applied.
  const std::optional<berkeley_round>& applied_round() const noexcept { return applied_; }
  bool is_daemon() const { return election_.leader() == env_.self(); }
  const disciplined_clock& clock() const noexcept { return clock_; }
  std::uint64_t rounds_completed() const noexcept { return rounds_completed_; }

  // ---- member side ----
  void on_message(const address& from, const berkeley_msg::poll& m) {
    if (!member(from)) return;
    if (election_.leader() != from) {
      // Two daemons, or a member that missed the last COORDINATOR: the
      // election is not settled (Bully under loss can leave it so), so ask
      // for a new one rather than follow either.
      env_.count("poll_not_from_leader");
      if (!election_.electing()) election_.start_election();
      return;
    }
    const time_point now = env_.now();
    polled_ = polled_state{{from, m.round}, now};
    env_.send(from, berkeley_msg::reading{m.round, clock_.target(now).time_since_epoch().count()});
  }
  void on_message(const address& from, const berkeley_msg::adjust& m) {
    if (!member(from)) return;
    if (!polled_ || polled_->round != berkeley_round{from, m.round}) return env_.count("unexpected_adjust");
    const auto limit = cfg_.max_adjustment.count();
    if (m.delta > limit || m.delta < -limit || m.error < 0 || m.error > limit) return env_.count("absurd_adjustment");
    clock_.adjust_by(env_.now(), duration(m.delta), {duration(m.error), polled_->at, cfg_.drift_bound});
    ++adjustments_;
    applied_ = polled_->round;
    polled_.reset();
  }

  // ---- daemon side ----
  void on_message(const address& from, const berkeley_msg::reading& m) {
    auto r = member(from);
    if (!r) return;
    if (!round_ || m.round != round_->id) return env_.count("unexpected_reading");
    if (round_->adjustments != adjustments_) return env_.count("round_disturbed");  // see finish_round
    auto& slot = round_->readings[*r];
    if (slot) return env_.count("duplicate_reading");
    const time_point t4 = clock_.target(env_.now());
    const std::int64_t rtt = (t4 - round_->t1).count();
    if (rtt > cfg_.max_round_trip.count()) return env_.count("slow_reading_discarded");
    // offset = reading + rtt/2 - t4, in 128 bits: the reading is any 64-bit number.
    __extension__ using wide = __int128;
    const wide offset = static_cast<wide>(m.clock) + rtt / 2 - t4.time_since_epoch().count();
    if (offset > cfg_.max_offset.count() || offset < -cfg_.max_offset.count()) return env_.count("absurd_reading");
    slot = estimate{static_cast<std::int64_t>(offset), rtt};
  }

 private:
  struct estimate {
    std::int64_t offset;  ///< ns, member clock - daemon clock
    std::int64_t rtt;
  };
  struct round_state {
    std::uint64_t id;
    std::uint64_t adjustments;                      ///< adjustments_ at the poll
    time_point t1;                                  ///< the poll, in the daemon's (target) clock
    time_point local;                               ///< the poll, in the daemon's local clock
    std::vector<std::optional<estimate>> readings;  ///< by rank: bounded by the group
  };
  struct polled_state {
    berkeley_round round;
    time_point at;  ///< local time of the reading sent
  };

  std::optional<std::size_t> member(const address& from) {
    auto r = group_.rank_of(from);
    if (!r || *r == rank_) env_.count("not_a_member");
    return r && *r != rank_ ? r : std::nullopt;
  }

  void tick() {
    if (!is_daemon()) {
      round_.reset();
      return;
    }
    if (round_) env_.count("round_overran");  // the window timer always ends a round first
    const time_point now = env_.now();
    round_ = round_state{++next_round_, adjustments_, clock_.target(now), now,
                         std::vector<std::optional<estimate>>(group_.size())};
    round_->readings[rank_] = estimate{0, 0};
    for (std::size_t r = 0; r < group_.size(); ++r)
      if (r != rank_) env_.send(group_.member(r), berkeley_msg::poll{round_->id});
    window_timer_ = env_.arm(cfg_.reply_window, [this] {
      window_timer_ = {};
      finish_round();
    });
  }

  void finish_round() {
    if (!round_) return;
    round_state done = std::move(*round_);
    round_.reset();
    if (!is_daemon()) return env_.count("round_abandoned");
    // An adjustment from another daemon (while the election settles) moved
    // this clock after the poll: the offsets measured no longer refer to it.
    if (done.adjustments != adjustments_) return env_.count("round_disturbed");
    // Fault-tolerant average: the largest set of offsets within fta_width of
    // each other; among sets of equal size, the one whose mean is nearest
    // the daemon's clock (the fewest and smallest corrections).
    std::vector<std::pair<std::int64_t, std::size_t>> sorted;
    for (std::size_t r = 0; r < done.readings.size(); ++r)
      if (done.readings[r]) sorted.emplace_back(done.readings[r]->offset, r);
    std::sort(sorted.begin(), sorted.end());
    std::size_t best_lo = 0, best_n = 0;
    double best_mean = 0;
    for (std::size_t lo = 0, hi = 0; lo < sorted.size(); ++lo) {
      hi = std::max(hi, lo);
      while (hi + 1 < sorted.size() && sorted[hi + 1].first - sorted[lo].first <= cfg_.fta_width.count()) ++hi;
      const std::size_t n = hi - lo + 1;
      double sum = 0;
      for (std::size_t k = lo; k <= hi; ++k) sum += static_cast<double>(sorted[k].first);
      const double mean = sum / static_cast<double>(n);
      if (n > best_n || (n == best_n && std::abs(mean) < std::abs(best_mean)))
        best_lo = lo, best_n = n, best_mean = mean;
    }
    const std::int64_t avg = std::llround(best_mean);
    env_.count("readings_averaged", static_cast<std::int64_t>(best_n));
    env_.count("outliers_discarded", static_cast<std::int64_t>(sorted.size() - best_n));
    (void)best_lo;
    const double rho = cfg_.drift_bound;
    const auto window_drift =
        static_cast<std::int64_t>(std::ceil(rho * static_cast<double>(cfg_.reply_window.count())));
    for (std::size_t r = 0; r < done.readings.size(); ++r) {
      if (r == rank_ || !done.readings[r]) continue;
      const auto& e = *done.readings[r];
      const std::int64_t error = (e.rtt + 1) / 2 +
          static_cast<std::int64_t>(std::ceil(2 * rho * static_cast<double>(e.rtt))) + window_drift +
          cfg_.resolution.count() + 2;
      env_.send(group_.member(r), berkeley_msg::adjust{done.id, avg - e.offset, error});
    }
    clock_.adjust_by(env_.now(), duration(avg), {cfg_.resolution, done.local, rho});
    ++adjustments_;
    applied_ = berkeley_round{env_.self(), done.id};
    polled_.reset();
    ++rounds_completed_;
  }

  E env_;
  L& election_;
  G group_;
  berkeley_config cfg_;
  disciplined_clock clock_;
  std::size_t rank_ = 0;
  std::uint64_t next_round_ = 0, rounds_completed_ = 0, adjustments_ = 0;
  std::optional<round_state> round_;
  std::optional<polled_state> polled_;
  std::optional<berkeley_round> applied_;
  timer_id window_timer_{};
  periodic<E> polls_;
};

}  // namespace dcp::clock
