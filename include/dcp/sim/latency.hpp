#pragma once
// How a simulated link behaves: its delay model and its faults.
#include <algorithm>
#include <cmath>
#include <cstdint>

#include "dcp/core/error.hpp"
#include "dcp/core/rng.hpp"
#include "dcp/core/time.hpp"

namespace dcp::sim {

/// A one-way delay model.
class latency {
 public:
  /// Always `d`.
  static latency constant(duration d) { return latency(kind::constant, d, d, 0); }
  /// Uniform in [lo, hi].
  static latency uniform(duration lo, duration hi) {
    if (hi < lo) throw error(errc::invalid_config, "sim::latency::uniform: hi < lo");
    return latency(kind::uniform, lo, hi, 0);
  }
  /// floor + a log-normal part with the given median and shape sigma: most
  /// messages near floor + median, a long tail of slow ones (sigma 1 puts the
  /// 99th percentile near 10x the median).
  static latency long_tailed(duration floor, duration median, double sigma = 1.0) {
    if (sigma < 0 || median < duration::zero())
      throw error(errc::invalid_config, "sim::latency::long_tailed: bad shape");
    return latency(kind::long_tailed, floor, median, sigma);
  }

  duration sample(rng& r) const noexcept {
    switch (kind_) {
      case kind::constant:
        return a_;
      case kind::uniform:
        return duration(r.between(a_.count(), b_.count()));
      case kind::long_tailed: {
        // Box–Muller from two uniforms: reproducible on every platform.
        const double u1 = 1.0 - r.uniform(), u2 = r.uniform();
        const double z = std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
        const double extra = static_cast<double>(b_.count()) * std::exp(sigma_ * z);
        return a_ + duration(static_cast<std::int64_t>(std::min(extra, 1e15)));
      }
    }
    return a_;
  }
  /// A delay no sample goes below.
  duration minimum() const noexcept { return a_; }

 private:
  enum class kind : std::uint8_t { constant, uniform, long_tailed };
  latency(kind k, duration a, duration b, double s) : kind_(k), a_(a), b_(b), sigma_(s) {}
  kind kind_;
  duration a_, b_;
  double sigma_;
};

/// The faults of a link (or of every link, as the network's default).
struct link {
  latency delay = latency::constant(1ms);
  double loss = 0;       ///< probability that a message is lost
  double duplicate = 0;  ///< probability that a message is delivered twice
  double reorder = 0;    ///< probability that a message is held back by an extra uniform [0, reorder_delay]
  duration reorder_delay = 10ms;

  void validate() const {
    auto prob = [](double p) { return p >= 0 && p <= 1; };
    if (!prob(loss) || !prob(duplicate) || !prob(reorder))
      throw error(errc::invalid_config, "sim::link: loss, duplicate and reorder are probabilities in [0, 1]");
    if (reorder_delay < duration::zero()) throw error(errc::invalid_config, "sim::link: negative reorder_delay");
  }
};

}  // namespace dcp::sim
