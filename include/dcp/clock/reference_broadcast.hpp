#pragma once
// Reference broadcast synchronization (Elson, Girod & Estrin, "Fine-grained
// network time synchronization using reference broadcasts", OSDI 2002;
// Tanenbaum & van Steen ch. 6, fig. 6-8).
//
// A beacon node sends BEACON(seq) to every receiver each beacon_interval.
// The beacon carries no timestamp: the sender's send time and medium access
// time, the largest and least predictable parts of the critical path, are
// common to all receivers and drop out. Each receiver notes its local
// reception time and tells every other receiver (RECEIPT(seq, time)). For
// each peer a receiver keeps the last `window` beacons both received and fits
// by least squares
//
//     peer time - my time = a + b · (my time - x0)
//
// which gives the relative offset (a) and the relative drift (b) at once, as
// the paper does. to_peer() converts a local time into any peer's clock;
// the disciplined clock follows the `reference` receiver's clock (internal
// synchronization: no receiver is special except as the common scale).
//
// The bound. RBS rests on one assumption, stated in the config: two
// receivers' reception delays of one beacon differ by at most
// receive_jitter (J). Then every point is within J' = J(1 + 2ρ) + 2·resolution
// of the true line, and as the least-squares value at x is Σ w_k(x) y_k with
// Σ w_k = 1 and Σ w_k x_k = x, its error is at most J'·Σ|w_k(x)|, where
// w_k(x) = 1/n + (x - x̄)(x_k - x̄)/Sxx. That is the bound reported; it grows
// away from the fitted points by J'·Σ|x_k - x̄|/Sxx per second. A point
// further from the fit than J'(1 + Σ|w_j(x_k)|) cannot satisfy the assumption:
// it is counted ("inconsistent_receipt") and left out of the fit.
//
// Faults tolerated: loss (fewer common beacons; no fit below min_points),
// delay, duplication and reordering (a beacon is recorded once; receipts are
// matched by sequence number), a crashed receiver (its peers keep their fits
// to the others; with the reference gone the clock keeps its last rate and
// its bound grows). The model is two oscillators of constant rate over the
// window; real ones wander slowly, which a short window absorbs (the paper
// uses about 30 beacons). Hostile input: beacons not from the beacon,
// receipts from non-receivers or with absurd times, rates beyond
// max_frequency are counted and not applied. Not tolerated: a beacon whose
// deliveries differ by more than J (a bound that is then wrong, though
// inconsistent points are flagged), a receiver lying within J.
//
// Not thread-safe: call from one thread or strand, like the rest of dcp.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <map>
#include <optional>
#include <string_view>
#include <vector>

#include "dcp/clock/disciplined_clock.hpp"
#include "dcp/core/env.hpp"
#include "dcp/core/protocol.hpp"
#include "dcp/group/static_group.hpp"

namespace dcp::clock {

struct reference_broadcast_config {
  address beacon;                    ///< the node that sends beacons; not a receiver
  std::optional<address> reference;  ///< the receiver whose clock the others follow; default the lowest-ranked
  duration beacon_interval = 1s;
  std::size_t window = 32;        ///< beacons kept per peer (at most 128: a fit costs O(window²))
  std::size_t min_points = 4;     ///< no fit on fewer common beacons
  duration receive_jitter = 1ms;  ///< J: bound on the difference of two receivers' delays for one beacon
  duration max_offset = 24h;      ///< a receipt further off is a bogus timestamp
  duration resolution = 1us;      ///< timestamp resolution
  double drift_bound = 100e-6;    ///< ρ: each clock's drift rate bound
  disciplined_clock_config clock{};

  void validate() const {
    if (beacon_interval <= duration::zero())
      throw error(errc::invalid_config, "reference_broadcast: beacon_interval must be > 0");
    if (window < 2 || window > 128 || min_points < 2 || min_points > window)
      throw error(errc::invalid_config, "reference_broadcast: need 2 <= min_points <= window <= 128");
    if (receive_jitter < duration::zero() || max_offset <= duration::zero() || resolution < duration::zero())
      throw error(errc::invalid_config, "reference_broadcast: receive_jitter, max_offset, resolution must be positive");
    if (!(drift_bound >= 0 && drift_bound < 0.01))
      throw error(errc::invalid_config, "reference_broadcast: drift_bound must be in [0, 0.01)");
    clock.validate();
  }
};

namespace rbs_msg {
struct beacon {
  static constexpr message_type wire_id = 1;
  static constexpr std::string_view wire_name = "rbs_beacon";
  std::uint64_t seq = 0;
  template <class A> void serialize(A& ar) { ar(seq); }
};
struct receipt {
  static constexpr message_type wire_id = 2;
  static constexpr std::string_view wire_name = "rbs_receipt";
  std::uint64_t seq = 0;
  std::int64_t time = 0;  ///< ns, the sender's local clock when the beacon arrived
  template <class A> void serialize(A& ar) { ar(seq, time); }
};
}  // namespace rbs_msg

/// A peer's clock at some local time, and the error of that conversion.
struct peer_time {
  time_point time;
  duration error;
  double relative_drift;  ///< b: peer clock rate / local clock rate - 1
  std::size_t points;
};

template <Env E, group::Group G = group::static_group> class reference_broadcast {
 public:
  using messages = wire::message_set<rbs_msg::beacon, rbs_msg::receipt>;
  /// What it counts (env.count), declared: dcp/core/counter_set.hpp.
  static constexpr dcp::counter_set counters{{"beacon_not_from_beacon", "duplicate_beacon", "stale_beacon",
                                              "absurd_receipt", "not_a_receiver", "stale_receipt", "fit_rate_absurd",
                                              "inconsistent_receipt", "frequency_out_of_range"}};
  static constexpr std::string_view name = "clock.reference_broadcast";
  static constexpr protocol_id default_id = 112;

  /// `receivers`: the group exchanging receipts (the beacon is not in it).
  reference_broadcast(E env, G receivers, reference_broadcast_config cfg)
      : env_(std::move(env)),
        group_(std::move(receivers)),
        cfg_(std::move(cfg)),
        clock_((cfg_.validate(), cfg_.clock)) {
    if (group_.rank_of(cfg_.beacon))
      throw error(errc::invalid_config, "reference_broadcast: the beacon cannot be a receiver");
    if (group_.size() == 0) throw error(errc::invalid_config, "reference_broadcast: no receivers");
    const address ref = cfg_.reference.value_or(group_.member(0));
    auto rr = group_.rank_of(ref);
    if (!rr) throw error(errc::invalid_config, "reference_broadcast: the reference must be a receiver");
    reference_rank_ = *rr;
    is_beacon_ = env_.self() == cfg_.beacon;
    if (!is_beacon_) {
      rank_ = group::rank_of_self(group_, env_.self(), "reference_broadcast");
      peers_.resize(group_.size());
    }
  }

  void start() {
    if (is_beacon_) beacons_.start(env_, cfg_.beacon_interval, [this] { send_beacon(); });
  }

  /// Time on the reference receiver's clock (the reference: its own clock).
  time_point synchronized_now() { return clock_.now(env_.now()); }
  /// |synchronized_now() - reference clock|; max() until a fit exists.
  duration error_bound() const {
    if (is_reference()) return duration::zero();
    return clock_.error_bound(env_.now());
  }
  bool is_reference() const noexcept { return !is_beacon_ && rank_ == reference_rank_; }
  /// `local` (this node's clock) converted to receiver `peer`'s clock.
  std::optional<peer_time> to_peer(const address& peer, time_point local) {
    auto r = group_.rank_of(peer);
    if (is_beacon_ || !r || *r == rank_) return std::nullopt;
    auto f = fit(*r, false);
    if (!f) return std::nullopt;
    const double x = static_cast<double>((local - f->x0).count());
    const double off = f->a + f->b * x;
    return peer_time{local + duration(std::llround(off)), f->bound_at(x), f->b, f->n};
  }
  const disciplined_clock& clock() const noexcept { return clock_; }
  /// Reception times held, own and peers': at most window × receivers.
  std::size_t receipts_held() const noexcept {
    std::size_t n = own_.size();
    for (const auto& p : peers_) n += p.size();
    return n;
  }

  void on_message(const address& from, const rbs_msg::beacon& m) {
    if (is_beacon_ || from != cfg_.beacon) return env_.count("beacon_not_from_beacon");
    const time_point now = env_.now();
    if (own_.contains(m.seq)) return env_.count("duplicate_beacon");
    if (own_.size() >= cfg_.window && m.seq < own_.begin()->first) return env_.count("stale_beacon");
    own_[m.seq] = now.time_since_epoch().count();
    if (own_.size() > cfg_.window) own_.erase(own_.begin());
    // Receipts that came before this beacon could not be checked then.
    for (auto& theirs : peers_)
      if (auto t = theirs.find(m.seq); t != theirs.end() && absurd(t->second, now.time_since_epoch().count())) {
        theirs.erase(t);
        env_.count("absurd_receipt");
      }
    for (std::size_t r = 0; r < group_.size(); ++r)
      if (r != rank_) env_.send(group_.member(r), rbs_msg::receipt{m.seq, now.time_since_epoch().count()});
    if (reference_rank_ != rank_) discipline();
  }

  void on_message(const address& from, const rbs_msg::receipt& m) {
    auto r = group_.rank_of(from);
    if (is_beacon_ || !r || *r == rank_) return env_.count("not_a_receiver");
    if (auto mine = own_.find(m.seq); mine != own_.end()) {
      if (absurd(m.time, mine->second)) return env_.count("absurd_receipt");
    } else if (!own_.empty() && m.seq < own_.begin()->first) {
      return env_.count("stale_receipt");
    }
    auto& theirs = peers_[*r];
    theirs[m.seq] = m.time;
    if (theirs.size() > cfg_.window) theirs.erase(theirs.begin());
    if (*r == reference_rank_) discipline();
  }

 private:
  struct line {
    time_point x0;
    double a, b;                 ///< peer - local = a + b (local - x0)
    double mean_x, sxx, jitter;  ///< for the bound
    std::vector<double> xs;
    std::size_t n;
    /// J' Σ|w_k(x)|
    duration bound_at(double x) const {
      double s = 0;
      for (double xk : xs) s += std::abs(1.0 / static_cast<double>(n) + (x - mean_x) * (xk - mean_x) / sxx);
      const double ns = std::ceil(jitter * s) + 2;
      return ns < 9e18 ? duration(static_cast<std::int64_t>(ns)) : duration::max();
    }
    /// J' Σ|x_k - x̄| / Sxx: how fast the bound grows per local nanosecond
    double growth() const {
      double s = 0;
      for (double xk : xs) s += std::abs(xk - mean_x);
      return jitter * s / sxx;
    }
  };

  /// A peer's reception time further than max_offset from ours (any 64-bit values).
  bool absurd(std::int64_t theirs, std::int64_t mine) const noexcept {
    __extension__ using wide = __int128;
    const wide d = static_cast<wide>(theirs) - mine;
    return d > cfg_.max_offset.count() || d < -cfg_.max_offset.count();
  }

  std::optional<line> fit(std::size_t peer, bool count = true) {
    struct point {
      double x, y;
    };
    std::vector<point> pts;
    const auto& theirs = peers_[peer];
    if (own_.empty()) return std::nullopt;
    const time_point x0(duration(own_.rbegin()->second));
    for (const auto& [seq, mine] : own_)
      if (auto t = theirs.find(seq); t != theirs.end() && !absurd(t->second, mine))
        pts.push_back(
            {static_cast<double>(mine - x0.time_since_epoch().count()), static_cast<double>(t->second - mine)});
    const double jitter = static_cast<double>(cfg_.receive_jitter.count()) * (1 + 2 * cfg_.drift_bound) +
        2 * static_cast<double>(cfg_.resolution.count()) + 2;
    while (pts.size() >= cfg_.min_points) {
      const double n = static_cast<double>(pts.size());
      double mx = 0, my = 0;
      for (auto& p : pts) mx += p.x, my += p.y;
      mx /= n, my /= n;
      double sxx = 0, sxy = 0;
      for (auto& p : pts) sxx += (p.x - mx) * (p.x - mx), sxy += (p.x - mx) * (p.y - my);
      if (!(sxx > 0)) return std::nullopt;
      const double b = sxy / sxx, a = my - b * mx;
      // The point furthest beyond what the jitter assumption allows, if any.
      std::size_t worst = pts.size();
      double worst_excess = 0;
      for (std::size_t k = 0; k < pts.size(); ++k) {
        double sw = 0;
        for (auto& q : pts) sw += std::abs(1 / n + (pts[k].x - mx) * (q.x - mx) / sxx);
        const double excess = std::abs(pts[k].y - (a + b * pts[k].x)) - jitter * (1 + sw);
        if (excess > worst_excess) worst = k, worst_excess = excess;
      }
      if (worst == pts.size()) {
        // Two real oscillators differ by parts per million; a fitted rate of
        // 1% is made of bad points (or hostile ones within max_offset).
        if (!(std::abs(b) <= 0.01)) {
          if (count) env_.count("fit_rate_absurd");
          return std::nullopt;
        }
        line l{x0, a, b, mx, sxx, jitter, {}, pts.size()};
        l.xs.reserve(pts.size());
        for (auto& p : pts) l.xs.push_back(p.x);
        return l;
      }
      if (count) env_.count("inconsistent_receipt");
      pts.erase(pts.begin() + static_cast<std::ptrdiff_t>(worst));
    }
    return std::nullopt;
  }

  void discipline() {
    auto f = fit(reference_rank_);
    if (!f) return;
    const time_point now = env_.now();
    const double x = static_cast<double>((now - f->x0).count());
    const double off = f->a + f->b * x;
    double growth = f->growth();
    if (!clock_.set_frequency(now, f->b)) {
      env_.count("frequency_out_of_range");
      growth += std::abs(f->b - clock_.frequency());
    }
    clock_.adjust_to(now, now + duration(std::llround(off)), {f->bound_at(x), now, growth});
  }

  void send_beacon() {
    // Sequence numbers from the beacon's clock: they grow across its restarts too.
    const auto t = static_cast<std::uint64_t>(std::max<std::int64_t>(0, env_.now().time_since_epoch().count()));
    const std::uint64_t seq = next_seq_ = std::max(next_seq_ + 1, t);
    for (std::size_t r = 0; r < group_.size(); ++r) env_.send(group_.member(r), rbs_msg::beacon{seq});
  }

  E env_;
  G group_;
  reference_broadcast_config cfg_;
  disciplined_clock clock_;
  bool is_beacon_ = false;
  std::size_t rank_ = 0, reference_rank_ = 0;
  std::uint64_t next_seq_ = 0;
  std::map<std::uint64_t, std::int64_t> own_;                 ///< seq -> my reception time, last `window`
  std::vector<std::map<std::uint64_t, std::int64_t>> peers_;  ///< by rank: seq -> their reception time
  periodic<E> beacons_;
};

}  // namespace dcp::clock
