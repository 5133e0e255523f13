// Physical clock synchronization: the error achieved against the bound each
// algorithm reports, as the delay jitter grows.
//
//   cristian  one reference server, 7 clients polling every 1 s (NTP's
//             four timestamps, clock filter of 8). Error: |client clock -
//             server clock|; bound: the client's error_bound().
//   berkeley  8 members, Bully-elected daemon polling every 1 s, fault-
//             tolerant average (γ = 10 ms). Internal synchronization: the
//             error is |clock_i - clock_j| for two members of the same round,
//             the bound the sum of their error_bound()s.
//   rbs       1 beacon every 1 s, 8 receivers, regression over 32 beacons,
//             followed to receiver 0. Error: |receiver clock - receiver 0's
//             clock|; bound: error_bound(), from the stated receive jitter J.
//
// Every link: one-way delay uniform in [500 µs, 500 µs + J], 1% loss. Every
// clock: skew uniform in ±20 ms, drift uniform in ±50 ppm. Slew 500 ppm
// (adjtime's), so a first correction of up to 40 ms takes up to 80 s: errors
// are sampled every 50 ms from 100 s on, for 60 s, 10 seeds (--quick: 2
// seeds, 20 s + 10 s, still slewing: a smoke run).
// "violations" counts samples whose error exceeded the bound: it must be 0.
//
// Usage: clock_sync [--quick] [--csv FILE]
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "dcp/clock.hpp"
#include "dcp/election.hpp"
#include "dcp/group.hpp"
#include "dcp/sim.hpp"

using namespace dcp;
using namespace dcp::clock;

namespace {
constexpr double max_drift = 50e-6;
constexpr std::uint32_t nodes = 8;

struct samples {
  std::vector<double> error_us, bound_us;
  std::uint64_t violations = 0;
  void add(std::int64_t err_ns, std::int64_t bound_ns) {
    error_us.push_back(std::abs(static_cast<double>(err_ns)) / 1e3);
    bound_us.push_back(static_cast<double>(bound_ns) / 1e3);
    if (std::abs(err_ns) > bound_ns) ++violations;
  }
};

struct run_shape {
  duration warmup, measure;
};

sim::config network(duration jitter) {
  sim::config c;
  c.network.delay = sim::latency::uniform(500us, 500us + jitter);
  c.network.loss = 0.01;
  return c;
}

void skew_all(sim::simulator& w, std::uint32_t n) {
  for (std::uint32_t i = 0; i < n; ++i)
    w.set_clock(i, duration(w.rng().between(-20'000'000, 20'000'000)), (w.rng().uniform() * 2 - 1) * max_drift);
}

/// Samples `probe` every 50 ms during the measuring window.
void measure(sim::simulator& w, run_shape s, const std::function<void()>& probe) {
  w.run_for(s.warmup);
  const time_point end = w.now() + s.measure;
  while (w.now() < end) {
    w.run_for(50ms);
    probe();
  }
}

void cristian_run(std::uint64_t seed, duration jitter, run_shape shape, samples& out) {
  using P = cristian<sim::env>;
  sim::simulator w(seed, network(jitter));
  w.add_node([](sim::node_context& c) { c.add<P>(P::default_id, cristian_config{}); });
  cristian_config cfg{.server = address::sim(0), .poll_interval = 1s};
  cfg.limits.drift_bound = 2 * max_drift;
  w.add_nodes(nodes - 1, [cfg](sim::node_context& c) { c.add<P>(P::default_id, cfg); });
  skew_all(w, nodes);
  measure(w, shape, [&] {
    for (std::uint32_t i = 1; i < nodes; ++i) {
      auto& p = w.get<P>(i, P::default_id);
      if (!p.synchronized()) continue;
      out.add((p.synchronized_now() - w.local_now(0)).count(), p.error_bound().count());
    }
  });
}

void berkeley_run(std::uint64_t seed, duration jitter, run_shape shape, samples& out) {
  using E = election::bully<sim::env>;
  using P = berkeley<sim::env, E>;
  sim::simulator w(seed, network(jitter));
  election::bully_config ecfg{
      .answer_timeout = 100ms, .coordinator_timeout = 300ms, .probe_interval = 200ms, .probe_timeout = 600ms};
  berkeley_config bcfg{
      .poll_interval = 1s, .reply_window = 200ms, .max_round_trip = 200ms, .fta_width = 10ms, .drift_bound = max_drift};
  w.add_nodes(nodes, [=](sim::node_context& c) {
    auto& e = c.add<E>(E::default_id, group::static_group::sim(nodes), ecfg);
    c.add<P>(P::default_id, e, group::static_group::sim(nodes), bcfg);
  });
  skew_all(w, nodes);
  measure(w, shape, [&] {
    std::vector<P*> p(nodes);
    std::vector<time_point> t(nodes);
    for (std::uint32_t i = 0; i < nodes; ++i) p[i] = &w.get<P>(i, P::default_id), t[i] = p[i]->synchronized_now();
    for (std::uint32_t i = 0; i < nodes; ++i)
      for (std::uint32_t j = i + 1; j < nodes; ++j)
        if (p[i]->applied_round() && p[i]->applied_round() == p[j]->applied_round())
          out.add((t[i] - t[j]).count(), p[i]->error_bound().count() + p[j]->error_bound().count());
  });
}

void rbs_run(std::uint64_t seed, duration jitter, run_shape shape, samples& out) {
  using P = reference_broadcast<sim::env>;
  sim::simulator w(seed, network(jitter));
  reference_broadcast_config cfg{.beacon = address::sim(nodes),
                                 .beacon_interval = 1s,
                                 .window = 32,
                                 .receive_jitter = jitter,
                                 .drift_bound = max_drift};
  w.add_nodes(nodes + 1, [=](sim::node_context& c) { c.add<P>(P::default_id, group::static_group::sim(nodes), cfg); });
  skew_all(w, nodes + 1);
  measure(w, shape, [&] {
    for (std::uint32_t i = 1; i < nodes; ++i) {
      auto& p = w.get<P>(i, P::default_id);
      if (!p.clock().synchronized()) continue;
      out.add((p.synchronized_now() - w.local_now(0)).count(), p.error_bound().count());
    }
  });
}

double mean(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return v.empty() ? 0 : s / static_cast<double>(v.size());
}
double quantile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<std::size_t>(q * static_cast<double>(v.size())))];
}

struct row {
  std::string algorithm;
  double jitter_us, err_mean, err_p99, err_max, bound_mean, bound_p50, ratio_max;
  std::size_t n;
  std::uint64_t violations;
};
}  // namespace

int main(int argc, char** argv) {
  bool quick = false;
  std::string csv = "clock_sync.csv";
  for (int a = 1; a < argc; ++a) {
    if (!std::strcmp(argv[a], "--quick"))
      quick = true;
    else if (!std::strcmp(argv[a], "--csv") && a + 1 < argc)
      csv = argv[++a];
    else {
      std::fprintf(stderr, "usage: %s [--quick] [--csv FILE]\n", argv[0]);
      return 2;
    }
  }
  const run_shape shape = quick ? run_shape{20s, 10s} : run_shape{100s, 60s};
  const int seeds = quick ? 2 : 10;
  const std::vector<duration> jitters =
      quick ? std::vector<duration>{10us, 1ms, 20ms} : std::vector<duration>{10us, 100us, 1ms, 5ms, 20ms};
  using runner = void (*)(std::uint64_t, duration, run_shape, samples&);
  const std::pair<const char*, runner> algorithms[] = {
      {"cristian", cristian_run}, {"berkeley", berkeley_run}, {"rbs", rbs_run}};
  std::vector<row> rows;
  for (auto [name, run] : algorithms) {
    for (duration j : jitters) {
      samples s;
      for (int seed = 1; seed <= seeds; ++seed) run(static_cast<std::uint64_t>(seed), j, shape, s);
      double ratio = 0;
      for (std::size_t k = 0; k < s.error_us.size(); ++k) ratio = std::max(ratio, s.error_us[k] / s.bound_us[k]);
      rows.push_back({name, to_millis(j) * 1e3, mean(s.error_us), quantile(s.error_us, 0.99), quantile(s.error_us, 1.0),
                      mean(s.bound_us), quantile(s.bound_us, 0.5), ratio, s.error_us.size(), s.violations});
      std::fprintf(stderr, "  %s J=%.0f us done\n", name, to_millis(j) * 1e3);
    }
  }
  std::printf("%-9s %9s | %10s %10s %10s | %11s %10s | %9s %8s %10s\n", "algorithm", "jitter us", "err mean", "err p99",
              "err max", "bound mean", "bound p50", "max e/b", "samples", "violations");
  for (auto& r : rows)
    std::printf("%-9s %9.0f | %10.1f %10.1f %10.1f | %11.1f %10.1f | %9.3f %8zu %10llu\n", r.algorithm.c_str(),
                r.jitter_us, r.err_mean, r.err_p99, r.err_max, r.bound_mean, r.bound_p50, r.ratio_max, r.n,
                static_cast<unsigned long long>(r.violations));
  std::printf("(microseconds; berkeley: pairs of members of one round, bound = sum of the two bounds)\n");
  std::ofstream f(csv);
  f << "algorithm,jitter_us,err_mean_us,err_p99_us,err_max_us,bound_mean_us,bound_p50_us,max_err_over_bound,samples,violations\n";
  for (auto& r : rows)
    f << r.algorithm << ',' << r.jitter_us << ',' << r.err_mean << ',' << r.err_p99 << ',' << r.err_max << ','
      << r.bound_mean << ',' << r.bound_p50 << ',' << r.ratio_max << ',' << r.n << ',' << r.violations << '\n';
  std::fprintf(stderr, "wrote %s\n", csv.c_str());
  for (auto& r : rows)
    if (r.violations) return 1;
  return 0;
}
