#pragma once
// Test and benchmark helper, not part of the library: a synthetic Internet
// for network coordinates, installed as the simulator's per-link delays.
//
// Nodes sit in `regions` clusters (continents) whose centres are spread over
// a plane `span_ms` wide; each node lies around its centre (Gaussian, sd
// `spread_ms`) and has an access link (exponential, mean `access_ms`) that
// every packet crosses: RTT(i, j) = (|p_i - p_j| + a_i + a_j) * noise_ij,
// where noise_ij is symmetric and log-normal (sd `noise`): routes that are
// not straight lines, so the triangle inequality is sometimes violated and no
// coordinate space embeds the matrix exactly (as with the King data the
// Vivaldi paper used). Each message's one-way delay is RTT/2 with a uniform
// +-`jitter` part (queueing).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "dcp/core/rng.hpp"
#include "dcp/sim.hpp"

namespace coordinates_test {

using namespace dcp;

struct internet_model {
  std::size_t regions = 5;
  double span_ms = 160;
  double spread_ms = 12;
  double access_ms = 4;
  double noise = 0.15;
  double jitter = 0.05;
};

/// The true RTT matrix (ms), row-major n*n, with its one-way delays set on every link of `w`.
class internet {
 public:
  internet(std::size_t n, std::uint64_t seed, internet_model m = {}) : n_(n), rtt_(n * n, 0.0) {
    dcp::rng r(seed ^ 0x1f2e3d4c5b6a7988ull);
    auto gauss = [&r] {
      const double u1 = 1.0 - r.uniform(), u2 = r.uniform();
      return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
    };
    std::vector<double> cx(m.regions), cy(m.regions);
    for (std::size_t k = 0; k < m.regions; ++k) cx[k] = r.uniform() * m.span_ms, cy[k] = r.uniform() * m.span_ms;
    std::vector<double> x(n), y(n), a(n);
    region_.resize(n);
    for (std::size_t i = 0; i < n; ++i) {
      region_[i] = r.below(m.regions);
      x[i] = cx[region_[i]] + gauss() * m.spread_ms;
      y[i] = cy[region_[i]] + gauss() * m.spread_ms;
      a[i] = r.exponential(m.access_ms) + 0.5;
    }
    for (std::size_t i = 0; i < n; ++i)
      for (std::size_t j = i + 1; j < n; ++j) {
        const double base = std::hypot(x[i] - x[j], y[i] - y[j]) + a[i] + a[j];
        const double v = base * std::exp(gauss() * m.noise);
        rtt_[i * n + j] = rtt_[j * n + i] = std::max(v, 1.0);
      }
    jitter_ = m.jitter;
  }

  /// Sets the one-way delay of every ordered pair of `w`'s first n nodes.
  void install(sim::simulator& w, const sim::link& faults = {}) const {
    for (std::size_t i = 0; i < n_; ++i)
      for (std::size_t j = 0; j < n_; ++j) {
        if (i == j) continue;
        sim::link l = faults;
        const double ow = rtt_[i * n_ + j] / 2;
        l.delay = sim::latency::uniform(ns(ow * (1 - jitter_)), ns(ow * (1 + jitter_)));
        w.set_link(static_cast<sim::node_index>(i), static_cast<sim::node_index>(j), l);
      }
  }

  double rtt(std::size_t i, std::size_t j) const { return rtt_[i * n_ + j]; }
  std::size_t size() const { return n_; }
  std::size_t region(std::size_t i) const { return region_[i]; }

 private:
  static duration ns(double ms) { return duration(static_cast<std::int64_t>(ms * 1e6)); }
  std::size_t n_;
  std::vector<double> rtt_;
  std::vector<std::size_t> region_;
  double jitter_ = 0;
};

/// The median of `v` (which it sorts); 0 when empty.
inline double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}
/// The q-quantile of `v` (0 <= q <= 1); 0 when empty.
inline double quantile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<std::size_t>(q * static_cast<double>(v.size())))];
}

}  // namespace coordinates_test
