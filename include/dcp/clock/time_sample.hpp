#pragma once
// time_sample: offset and delay from the four timestamps of one request and
// reply (Cristian 1989; NTP, Mills, RFC 5905 §8), and NTP's clock filter.
//
//     client  t1 ----request---->  t2  server
//             t4 <----reply------  t3
//
//     offset θ = ((t2 - t1) + (t3 - t4)) / 2     server clock - client clock
//     delay  δ = (t4 - t1) - (t3 - t2)           the round trip minus the server's turn-around
//
// Whatever the split of δ between the two directions, the true offset lies
// in θ ± δ/2 (both one-way delays are >= 0). Clocks drift while the request
// is out, so the bound this code reports is
//
//     δ/2 + (ρ + σ)·(t4 - t1) + server error + resolution
//
// with ρ the client's drift bound, σ how fast the served clock may slew
// (a server that is itself synchronized), and "server error" the bound the
// server reported on its clock (zero for a reference clock). Cristian's
// algorithm is the case t2 = t3 (the server reads its clock once).
//
// Timestamps come from the network: check() refuses a sample whose times
// run backwards, whose delay or turn-around is above a limit, or whose offset
// is absurd, and says which (the caller counts it and does not apply it).
//
// clock_filter keeps the last `window` samples and picks the one with the
// least error bound once aged by ρ per second since it was taken: the sample
// with the least delay, unless it has grown old (RFC 5905 §10's clock filter,
// whose "distance" is δ/2 plus the dispersion that grows with age).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <deque>
#include <optional>

#include "dcp/core/error.hpp"
#include "dcp/core/time.hpp"

namespace dcp::clock {

namespace detail {
__extension__ using wide_int = __int128;  // differences of any two 64-bit timestamps fit
}

struct time_sample {
  time_point t1, t2, t3, t4;
  duration offset() const noexcept { return ((t2 - t1) + (t3 - t4)) / 2; }
  duration delay() const noexcept { return (t4 - t1) - (t3 - t2); }
};

struct sample_limits {
  duration max_delay = 1s;          ///< slower exchanges say little and are refused
  duration max_turnaround = 1s;     ///< t3 - t2 above this is not a time server's answer
  duration max_offset = 24h;        ///< an offset above this is a bogus timestamp, not a clock
  duration max_server_error = 10s;  ///< a server error bound above this is refused
  duration resolution = 1us;        ///< timestamp resolution, added to every bound
  double drift_bound = 100e-6;      ///< ρ: drift rate bound of the client's clock against the server's (100 ppm)
  /// How fast the server's clock, as served, may run off the true rate while
  /// a request is out: a server that is itself disciplined slews (adjtime's
  /// 500 ppm) and corrects its frequency (500 ppm). Only the exchange is
  /// affected; afterwards the estimate ages at drift_bound.
  double server_rate_bound = 1e-3;

  void validate() const {
    if (max_delay <= duration::zero() || max_turnaround < duration::zero() || max_offset <= duration::zero() ||
        max_server_error < duration::zero() || resolution < duration::zero())
      throw error(errc::invalid_config, "time_sample: limits must be positive");
    if (!(drift_bound >= 0 && drift_bound < 0.01) || !(server_rate_bound >= 0 && server_rate_bound <= 0.1))
      throw error(errc::invalid_config, "time_sample: drift_bound must be in [0, 0.01), server_rate_bound in [0, 0.1]");
  }
};

enum class sample_fault {
  none,
  time_runs_backwards,
  delay_too_large,
  turnaround_too_large,
  offset_absurd,
  server_error_absurd
};

constexpr const char* to_string(sample_fault f) noexcept {
  switch (f) {
    case sample_fault::none:
      return "none";
    case sample_fault::time_runs_backwards:
      return "time_runs_backwards";
    case sample_fault::delay_too_large:
      return "delay_too_large";
    case sample_fault::turnaround_too_large:
      return "turnaround_too_large";
    case sample_fault::offset_absurd:
      return "offset_absurd";
    case sample_fault::server_error_absurd:
      return "server_error_absurd";
  }
  return "?";
}

/// Whether a sample can be used at all; computed without overflow on any input.
inline sample_fault check(const time_sample& s, duration server_error, const sample_limits& l) noexcept {
  const auto a = [](time_point t) { return t.time_since_epoch().count(); };
  // Differences of arbitrary 64-bit values overflow: compare in 128 bits.
  const detail::wide_int rtt = static_cast<detail::wide_int>(a(s.t4)) - a(s.t1);
  const detail::wide_int turn = static_cast<detail::wide_int>(a(s.t3)) - a(s.t2);
  if (rtt < 0 || turn < 0) return sample_fault::time_runs_backwards;
  if (turn > l.max_turnaround.count()) return sample_fault::turnaround_too_large;
  if (rtt - turn < 0) return sample_fault::time_runs_backwards;
  if (rtt - turn > l.max_delay.count()) return sample_fault::delay_too_large;
  const detail::wide_int off2 =
      (static_cast<detail::wide_int>(a(s.t2)) - a(s.t1)) + (static_cast<detail::wide_int>(a(s.t3)) - a(s.t4));
  if (off2 > 2 * static_cast<detail::wide_int>(l.max_offset.count()) ||
      off2 < -2 * static_cast<detail::wide_int>(l.max_offset.count()))
    return sample_fault::offset_absurd;
  if (server_error < duration::zero() || server_error > l.max_server_error) return sample_fault::server_error_absurd;
  return sample_fault::none;
}

/// One usable sample: the offset of the server's clock from the local one, and its error bound.
struct offset_estimate {
  duration offset{};
  duration delay{};
  duration error{};    ///< |true offset - offset| <= error, at local time `taken`
  time_point taken{};  ///< t4, in the local clock
};

/// The estimate of a checked sample (call check() first).
inline offset_estimate estimate(const time_sample& s, duration server_error, const sample_limits& l) noexcept {
  const duration d = s.delay();
  const double drift = (l.drift_bound + l.server_rate_bound) * static_cast<double>((s.t4 - s.t1).count());
  // delay/2 rounded up, plus one nanosecond for the halving of the offset.
  const duration e =
      (d + 1ns) / 2 + 1ns + duration(static_cast<std::int64_t>(std::ceil(drift))) + server_error + l.resolution;
  return {s.offset(), d, e, s.t4};
}

/// NTP's clock filter: the best of the last `window` samples.
class clock_filter {
 public:
  explicit clock_filter(std::size_t window = 8, double drift_bound = 100e-6) : window_(window), drift_(drift_bound) {
    if (window_ == 0 || window_ > 64) throw error(errc::invalid_config, "clock_filter: window must be in [1, 64]");
  }
  void add(const offset_estimate& e) {
    samples_.push_back(e);
    if (samples_.size() > window_) samples_.pop_front();
  }
  /// The sample whose bound, aged to `now`, is least.
  std::optional<offset_estimate> best(time_point now) const noexcept {
    std::optional<offset_estimate> out;
    double least = 0;
    for (const auto& s : samples_) {
      const double aged = static_cast<double>(s.error.count()) +
          drift_ * static_cast<double>(std::max<std::int64_t>(0, (now - s.taken).count()));
      if (!out || aged < least) out = s, least = aged;
    }
    return out;
  }
  std::size_t size() const noexcept { return samples_.size(); }
  void clear() noexcept { samples_.clear(); }

 private:
  std::size_t window_;
  double drift_;
  std::deque<offset_estimate> samples_;
};

}  // namespace dcp::clock
