// Messages to build a minimum spanning tree with GHS (Gallager, Humblet and
// Spira 1983), beside the paper's bound 5 N log2 N + 2 E.
//
// Random connected graphs: a random spanning tree plus `extra` random edges
// (sparse: N/4 extra, E ~ 1.25 N; dense: 8 N extra, E ~ 9 N), distinct random
// weights. Two wake-up patterns: every node wakes at once, or one node wakes
// and the others are woken by its messages. One-way delays uniform in
// [1, 20] ms, 30% of messages held back up to 30 ms (reordered; the per-link
// sequence numbers restore each link's order). Counted: the GHS messages
// (CONNECT, INITIATE, TEST, ACCEPT, REJECT, REPORT, CHANGEROOT); the DONE wave
// that tells every node the tree is final (N-2 messages, not in GHS83) is
// shown apart. Every run's tree is checked against Kruskal's.
//
// The bound's two parts: each edge is rejected at most once, by a TEST and a
// REJECT (or two crossing TESTs): <= 2E; per level, each node receives at most
// one INITIATE and one ACCEPT and sends at most one successful TEST, one
// REPORT and one CHANGEROOT or CONNECT, with at most log2 N levels: 5 N log2 N.
//
// Usage: ghs_messages [--quick] [--csv FILE]
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <numeric>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "dcp/sim.hpp"
#include "dcp/spanning.hpp"

using namespace dcp;
using ghs = spanning::ghs<sim::env>;
namespace msg = spanning::ghs_msg;

namespace {

struct graph {
  std::uint32_t n = 0;
  std::vector<std::tuple<std::uint32_t, std::uint32_t, std::uint64_t>> edges;
};

graph random_graph(rng& r, std::uint32_t n, std::uint32_t extra) {
  graph g{n, {}};
  std::set<std::pair<std::uint32_t, std::uint32_t>> seen;
  auto add = [&](std::uint32_t a, std::uint32_t b) {
    if (a == b || !seen.insert(std::minmax(a, b)).second) return;
    g.edges.emplace_back(a, b, r.below(1ull << 40));
  };
  for (std::uint32_t i = 1; i < n; ++i) add(i, static_cast<std::uint32_t>(r.below(i)));
  for (std::uint32_t k = 0; k < extra; ++k)
    add(static_cast<std::uint32_t>(r.below(n)), static_cast<std::uint32_t>(r.below(n)));
  return g;
}

std::set<spanning::edge_key> kruskal(const graph& g) {
  std::vector<spanning::edge_key> keys;
  for (auto& [a, b, w] : g.edges) keys.push_back(spanning::edge_key::of(address::sim(a), address::sim(b), w));
  std::sort(keys.begin(), keys.end());
  std::vector<std::uint32_t> parent(g.n);
  std::iota(parent.begin(), parent.end(), 0u);
  auto find = [&](std::uint32_t x) {
    while (parent[x] != x) x = parent[x] = parent[parent[x]];
    return x;
  };
  std::set<spanning::edge_key> tree;
  for (auto& k : keys) {
    const auto a = find(k.low.sim_index()), b = find(k.high.sim_index());
    if (a != b) parent[a] = b, tree.insert(k);
  }
  return tree;
}

struct run_result {
  double e = 0, total = 0, test = 0, reject = 0, done = 0, level = 0;
  bool mst_ok = false;
};

run_result run(std::uint32_t n, std::uint32_t extra, bool all_wake, std::uint64_t seed) {
  sim::config c;
  c.network.delay = sim::latency::uniform(1ms, 20ms);
  c.network.reorder = 0.3;
  c.network.reorder_delay = 30ms;
  sim::simulator w(seed, c);
  const auto g = random_graph(w.rng(), n, extra);
  std::vector<spanning::ghs_config> cfg(n);
  for (auto& x : cfg) x.wake_on_start = false;
  for (auto& [a, b, wt] : g.edges) {
    cfg[a].edges.push_back({address::sim(b), wt});
    cfg[b].edges.push_back({address::sim(a), wt});
  }
  w.add_nodes(n, [&](sim::node_context& ctx) { ctx.add<ghs>(ghs::default_id, cfg[ctx.index()]); });
  if (all_wake)
    for (std::uint32_t i = 0; i < n; ++i) w.after(0ms, [&w, i] { w.get<ghs>(i, ghs::default_id).wake_up(); });
  else
    w.after(0ms, [&w, n] { w.get<ghs>(static_cast<std::uint32_t>(w.rng().below(n)), ghs::default_id).wake_up(); });
  w.run_until_quiet(w.now() + 3600s);

  run_result r;
  r.e = static_cast<double>(g.edges.size());
  const auto& m = w.metrics();
  r.done = static_cast<double>(m.of(ghs::default_id, msg::done::wire_id).sent);
  r.total = static_cast<double>(m.of(ghs::default_id).sent) - r.done;
  r.test = static_cast<double>(m.of(ghs::default_id, msg::test::wire_id).sent);
  r.reject = static_cast<double>(m.of(ghs::default_id, msg::reject::wire_id).sent);
  std::map<std::pair<std::uint32_t, std::uint32_t>, std::uint64_t> weight;
  for (auto& [a, b, wt] : g.edges) weight[std::minmax(a, b)] = wt;
  std::set<spanning::edge_key> tree;
  bool all_done = true;
  for (std::uint32_t i = 0; i < n; ++i) {
    const auto& p = w.get<ghs>(i, ghs::default_id);
    if (!p.done()) {
      all_done = false;
      continue;
    }
    r.level = std::max(r.level, static_cast<double>(p.result()->level));
    for (auto& b : p.result()->branches)
      tree.insert(spanning::edge_key::of(address::sim(i), b, weight.at(std::minmax(i, b.sim_index()))));
  }
  r.mst_ok = all_done && tree == kruskal(g);
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  bool quick = false;
  std::string csv = "ghs_messages.csv";
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
  const std::vector<std::uint32_t> sizes =
      quick ? std::vector<std::uint32_t>{16, 64, 256} : std::vector<std::uint32_t>{16, 64, 256, 1024, 4096};
  const int trials = quick ? 2 : 10;
  struct row {
    std::uint32_t n;
    std::string density, wake;
    double e, mean, max, test, reject, done, level, bound;
    bool ok;
  };
  std::vector<row> rows;
  bool all_ok = true;
  for (auto n : sizes) {
    for (const bool dense : {false, true}) {
      for (const bool all_wake : {true, false}) {
        const std::uint32_t extra = dense ? 8 * n : n / 4;
        row r{n, dense ? "dense" : "sparse", all_wake ? "all" : "one", 0, 0, 0, 0, 0, 0, 0, 0, true};
        double bound_sum = 0;
        for (int t = 0; t < trials; ++t) {
          const auto x = run(n, extra, all_wake, 1000 * n + 10 * t + (dense ? 1 : 0) + (all_wake ? 0 : 5));
          r.e += x.e / trials;
          r.mean += x.total / trials;
          r.max = std::max(r.max, x.total / (5.0 * n * std::log2(double(n)) + 2 * x.e));
          r.test += x.test / trials;
          r.reject += x.reject / trials;
          r.done += x.done / trials;
          r.level = std::max(r.level, x.level);
          bound_sum += 5.0 * n * std::log2(double(n)) + 2 * x.e;
          r.ok = r.ok && x.mst_ok;
        }
        r.bound = bound_sum / trials;
        all_ok = all_ok && r.ok && r.max <= 1.0;
        rows.push_back(r);
      }
    }
    std::fprintf(stderr, "  N=%u done\n", n);
  }
  std::printf("%6s %-6s %-4s %8s | %10s %9s %9s | %10s %10s | %8s %6s %5s\n", "N", "graph", "wake", "E", "messages",
              "TEST", "REJECT", "5NlgN+2E", "max ratio", "DONE", "level", "MST");
  for (auto& r : rows)
    std::printf("%6u %-6s %-4s %8.0f | %10.0f %9.0f %9.0f | %10.0f %10.3f | %8.0f %6.0f %5s\n", r.n, r.density.c_str(),
                r.wake.c_str(), r.e, r.mean, r.test, r.reject, r.bound, r.max, r.done, r.level, r.ok ? "yes" : "NO");
  std::ofstream f(csv);
  f << "n,graph,wake,edges,messages,test,reject,bound,max_ratio,done_messages,max_level,mst_ok\n";
  for (auto& r : rows)
    f << r.n << ',' << r.density << ',' << r.wake << ',' << r.e << ',' << r.mean << ',' << r.test << ',' << r.reject
      << ',' << r.bound << ',' << r.max << ',' << r.done << ',' << r.level << ',' << (r.ok ? 1 : 0) << '\n';
  std::fprintf(stderr, "wrote %s\n", csv.c_str());
  return all_ok ? 0 : 1;
}
