// High-risk edges (the testbed thesis' chapter 5, background 004): detected
// edges against the ground truth as N grows, Push-Sum messages per node per
// iteration (the thesis' Figure 27), and the thesis' observation that an
// iteration's estimate depends on its seed node.
//
// Topology: Barabási–Albert, m = 2 (sim::barabasi_albert). Traffic: one
// random walker per node (the thesis), `ttl` hops, 100 ms per hop; detection
// begins when the walkers have retired, so the ground truth and the inputs
// are the same numbers. Ground truth: important nodes have traffic above
// mean + k sigma of all nodes' traffic (k = 2); true high-risk edges join
// two important nodes. Each N runs twice, once per threshold rule:
//   thesis   T = mu + 2 sigma over the node's own iteration estimates
//   traffic  T = mu + 2 sigma of the traffic (a second Push-Sum over x^2)
// Columns:
//   imp/E*      important nodes / true high-risk edges
//   high/det    nodes labelled high / edges detected (both ends high)
//   prec, rec   precision and recall of the detected edges
//   msgs/n/it   Push-Sum shares (the mean's) per node per iteration, from
//               begin() until every node decided
//   rounds/it   periods (1 s) per iteration
//   seed corr   across iterations: correlation of the iteration's mean
//               error (nodes' samples against the true mean) with its seed
//               nodes' traffic (relative to the mean)
//   |err|       mean over iterations of that error, relative
//   spread      mean over nodes of sigma/mu of the node's own samples
//
// A second table seeds iteration 1 on purpose at the busiest or the quietest
// node (CSV: FILE with _seed before .csv).
//
// Usage: high_risk_edges [--quick] [--csv FILE] [--seed N]
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "dcp/aggregate.hpp"
#include "dcp/membership.hpp"
#include "dcp/sim.hpp"
#include "gossip_common.hpp"

using namespace dcp;
using sim::simulator;
using overlay = membership::static_group<sim::env>;
using ps_t = aggregate::push_sum<sim::env, overlay>;
using walk_t = aggregate::random_walk_traffic<sim::env, overlay>;
using hre_t = aggregate::high_risk_edges<sim::env, overlay>;
constexpr protocol_id mid = 10, pid = 30, wid = 34, hid = 32, pid2 = 33;

namespace {

struct outcome {
  std::size_t important = 0, truth_edges = 0, high = 0, detected = 0, correct = 0, decided = 0;
  double precision = 0, recall = 0, msgs_per_node_iter = 0, rounds_per_iter = 0;
  double seed_corr = 0, mean_abs_err = 0, spread = 0, wall = 0;
  double first_err = 0;  ///< signed relative error of iteration 1's mean sample
};

enum class seed_choice { random, top, bottom };

double correlation(const std::vector<double>& a, const std::vector<double>& b) {
  const double n = static_cast<double>(a.size());
  if (a.size() < 3) return NAN;
  double ma = 0, mb = 0;
  for (std::size_t i = 0; i < a.size(); ++i) ma += a[i] / n, mb += b[i] / n;
  double sab = 0, saa = 0, sbb = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    sab += (a[i] - ma) * (b[i] - mb);
    saa += (a[i] - ma) * (a[i] - ma);
    sbb += (b[i] - mb) * (b[i] - mb);
  }
  return saa > 0 && sbb > 0 ? sab / std::sqrt(saa * sbb) : NAN;
}

outcome run(std::uint32_t n, aggregate::threshold_rule rule, int stable_rounds, std::uint32_t iterations,
            std::uint32_t ttl, std::uint64_t seed, seed_choice first = seed_choice::random) {
  const auto t0 = std::chrono::steady_clock::now();
  simulator w(seed, bench::network());
  auto g = std::make_shared<const sim::topology>(sim::barabasi_albert(w.rng(), n, 2));
  aggregate::high_risk_edges_config hc;
  hc.iterations = iterations;
  hc.rule = rule;
  aggregate::push_sum_config pc;
  pc.stable_rounds = stable_rounds;
  w.add_nodes(n, [g, hc, pc, ttl](sim::node_context& c) {
    auto& mem = c.add<overlay>(mid, membership::static_group_config::of(g->neighbours_of(c.index())));
    aggregate::random_walk_traffic_config wc;
    wc.walker_ttl = ttl;
    auto& walk = c.add<walk_t>(wid, mem, wc);
    auto& ps = c.add<ps_t>(pid, mem, pc);
    ps_t* ps2 = hc.rule == aggregate::threshold_rule::traffic_distribution ? &c.add<ps_t>(pid2, mem, pc) : nullptr;
    c.add<hre_t>(hid, mem, ps, walk, hc, ps2);
  });
  w.run_for(std::chrono::milliseconds(130) * ttl + 5s);  // every walker retired
  std::vector<double> x(n);
  double mu = 0, var = 0;
  for (std::uint32_t i = 0; i < n; ++i) x[i] = static_cast<double>(w.get<walk_t>(i, wid).total()), mu += x[i] / n;
  for (double v : x) var += (v - mu) * (v - mu) / n;
  const double truth_threshold = mu + hc.k * std::sqrt(var);
  std::vector<bool> important(n);
  outcome o;
  for (std::uint32_t i = 0; i < n; ++i) o.important += (important[i] = x[i] > truth_threshold);
  std::set<std::pair<std::uint32_t, std::uint32_t>> truth;
  for (auto [a, b] : g->edges())
    if (important[a] && important[b]) truth.emplace(a, b);
  o.truth_edges = truth.size();

  const auto sent0 = w.metrics().of(pid).sent;
  const auto begun = w.now();
  auto first_seed = static_cast<std::uint32_t>(w.rng().below(n));
  if (first == seed_choice::top)
    first_seed = static_cast<std::uint32_t>(std::max_element(x.begin(), x.end()) - x.begin());
  if (first == seed_choice::bottom)
    first_seed = static_cast<std::uint32_t>(std::min_element(x.begin(), x.end()) - x.begin());
  w.get<hre_t>(first_seed, hid).begin();
  const auto limit = begun + iterations * 600s;
  while (w.now() < limit) {
    w.run_for(1s);
    std::size_t decided = 0;
    for (std::uint32_t i = 0; i < n; ++i) decided += w.get<hre_t>(i, hid).decided();
    o.decided = decided;
    if (decided == n) break;
  }
  const double seconds = std::chrono::duration<double>(w.now() - begun).count();
  o.msgs_per_node_iter = double(w.metrics().of(pid).sent - sent0) / n / iterations;
  o.rounds_per_iter = seconds / iterations;
  w.run_for(60s);  // queries answered

  std::set<std::pair<std::uint32_t, std::uint32_t>> detected;
  for (std::uint32_t i = 0; i < n; ++i) {
    auto& h = w.get<hre_t>(i, hid);
    if (h.decision() && h.decision()->high) ++o.high;
    for (auto& peer : h.high_risk_neighbours())
      detected.emplace(std::min(i, peer.sim_index()), std::max(i, peer.sim_index()));
  }
  o.detected = detected.size();
  for (auto& e : detected) o.correct += truth.contains(e);
  o.precision = detected.empty() ? NAN : double(o.correct) / double(detected.size());
  o.recall = truth.empty() ? NAN : double(o.correct) / double(truth.size());

  // The seed node's influence, iteration by iteration.
  std::vector<double> seed_rel, err;
  for (std::uint32_t e = 1; e <= iterations; ++e) {
    double seed_x = 0, seeds = 0, sum = 0, count = 0;
    for (std::uint32_t i = 0; i < n; ++i) {
      auto& h = w.get<hre_t>(i, hid);
      if (h.seeded(e)) seed_x += x[i], ++seeds;
      if (auto s = h.sample_of(e)) sum += *s, ++count;
    }
    if (e == 1 && count) o.first_err = (sum / count - mu) / mu;
    if (!seeds || !count) continue;
    seed_rel.push_back((seed_x / seeds - mu) / mu);
    err.push_back((sum / count - mu) / mu);
    o.mean_abs_err += std::abs(err.back());
  }
  if (!err.empty()) o.mean_abs_err /= double(err.size());
  o.seed_corr = correlation(seed_rel, err);
  double spread = 0, nodes = 0;
  for (std::uint32_t i = 0; i < n; ++i) {
    auto s = w.get<hre_t>(i, hid).samples();
    if (s.size() < 2) continue;
    double m = 0, v = 0;
    for (double y : s) m += y / double(s.size());
    for (double y : s) v += (y - m) * (y - m) / double(s.size());
    spread += std::sqrt(v) / m, ++nodes;
  }
  o.spread = nodes ? spread / nodes : NAN;
  o.wall = bench::seconds_since(t0);
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  auto a = bench::args::parse(argc, argv, "high_risk_edges.csv");
  const std::vector<std::uint32_t> sizes =
      a.quick ? std::vector<std::uint32_t>{100} : std::vector<std::uint32_t>{100, 300, 1000, 3000};
  const std::uint32_t iterations = a.quick ? 5 : 30, ttl = 300;
  std::ofstream csv(a.csv);
  csv << "nodes,rule,stable_rounds,iterations,important,truth_edges,high,detected,correct,precision,recall,msgs_per_node_iter,"
         "rounds_per_iter,seed_corr,mean_abs_err,spread,decided,wall_s\n";
  std::printf("High-risk edges over Barabasi-Albert (m = 2), k = 2, %u iterations, walkers of %u hops\n", iterations,
              ttl);
  std::printf("%6s %-8s %6s %5s %5s | %5s %5s %5s %5s | %9s %9s | %9s %9s %9s | %7s %6s\n", "N", "rule", "stable",
              "imp", "E*", "high", "det", "prec", "rec", "msgs/n/it", "rounds/it", "seed corr", "|err|", "spread",
              "decided", "wall");
  for (auto n : sizes) {
    for (int stable : {3, 40}) {
      if (a.quick && stable != 3) continue;
      for (auto rule :
           {aggregate::threshold_rule::iteration_estimates, aggregate::threshold_rule::traffic_distribution}) {
        const char* name = rule == aggregate::threshold_rule::iteration_estimates ? "thesis" : "traffic";
        auto o = run(n, rule, stable, iterations, ttl, a.seed);
        std::printf("%6u %-8s %6d %5zu %5zu | %5zu %5zu %5.2f %5.2f | %9.1f %9.1f | %9.2f %9.1e %9.1e | %7zu %6.1f\n",
                    n, name, stable, o.important, o.truth_edges, o.high, o.detected, o.precision, o.recall,
                    o.msgs_per_node_iter, o.rounds_per_iter, o.seed_corr, o.mean_abs_err, o.spread, o.decided, o.wall);
        std::fflush(stdout);
        csv << n << ',' << name << ',' << stable << ',' << iterations << ',' << o.important << ',' << o.truth_edges
            << ',' << o.high << ',' << o.detected << ',' << o.correct << ',' << o.precision << ',' << o.recall << ','
            << o.msgs_per_node_iter << ',' << o.rounds_per_iter << ',' << o.seed_corr << ',' << o.mean_abs_err << ','
            << o.spread << ',' << o.decided << ',' << o.wall << '\n';
      }
    }
  }

  // The thesis (§5.3): "If the seed node has its value lower or higher than
  // the true average, then the estimation will reflect that deviation."
  // Iteration 1 seeded on purpose at the busiest node or at the quietest,
  // released (as every iteration but the last) by the first convergence:
  // the signed error of the nodes' mean sample, over several graphs.
  const std::uint32_t n = a.quick ? 100 : 1000, trials = a.quick ? 3 : 10;
  std::printf("\nSeed node of iteration 1 (N = %u, %u graphs): signed error of the nodes' mean iteration-1 sample\n", n,
              trials);
  std::printf("%6s %-7s %12s %12s %12s\n", "stable", "seed", "mean err", "min err", "max err");
  std::string seeds_name = a.csv;  // high_risk_edges.csv -> high_risk_edges_seed.csv
  if (seeds_name.size() > 4 && seeds_name.ends_with(".csv")) seeds_name.resize(seeds_name.size() - 4);
  std::ofstream seeds_csv(seeds_name + "_seed.csv");
  seeds_csv << "nodes,stable_rounds,seed,trial,first_err\n";
  for (int stable : {3, 40}) {
    if (a.quick && stable != 3) continue;
    for (auto choice : {seed_choice::top, seed_choice::bottom}) {
      double sum = 0, lo = INFINITY, hi = -INFINITY;
      for (std::uint32_t t = 0; t < trials; ++t) {
        auto o = run(n, aggregate::threshold_rule::iteration_estimates, stable, 2, ttl, a.seed + 1000 + t, choice);
        sum += o.first_err / trials;
        lo = std::min(lo, o.first_err);
        hi = std::max(hi, o.first_err);
        seeds_csv << n << ',' << stable << ',' << (choice == seed_choice::top ? "top" : "bottom") << ',' << t << ','
                  << o.first_err << '\n';
      }
      std::printf("%6d %-7s %12.2e %12.2e %12.2e\n", stable, choice == seed_choice::top ? "busiest" : "quietest", sum,
                  lo, hi);
      std::fflush(stdout);
    }
  }
}
