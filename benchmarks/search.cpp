// Random walk against flooding in an unstructured overlay (Lv et al., ICS
// 2002): messages and hops to find a key held by r of N nodes.
//
// The overlay is HyParView's (active views of 5: d = 5), built once and then
// frozen into static groups so that no membership traffic runs while queries
// do. Beside the figures:
//   random walk  S ~ N / r expected probes (one walker); k walkers share them
//   flooding     R(k) = d (d-1)^(k-1) new nodes at hop k on a tree-like
//                d-regular graph; cumulative reach sum_{i<=k} R(i) until it
//                saturates at N, while messages keep growing (duplicates)
//
// Usage: search [--quick] [--csv FILE] [--seed N]
#include <cmath>
#include <set>

#include "gossip_common.hpp"

using namespace dcp;
using sim::simulator;
using hpv = membership::hyparview<sim::env>;
using fixed_group = membership::static_group<sim::env>;
using finder = search::unstructured<sim::env, fixed_group>;
constexpr protocol_id mid = 10, sid = 40;

namespace {
std::vector<std::vector<address>> hyparview_graph(std::uint32_t n, std::uint64_t seed) {
  simulator w(seed, bench::network());
  bench::join_all(w, n, 1ms, [](sim::node_context& c, const address& contact) {
    membership::hyparview_config k;
    k.contact = contact;
    c.add<hpv>(11, k);
  });
  w.run_for(20s);
  std::vector<std::vector<address>> g(n);
  for (std::uint32_t i = 0; i < n; ++i) g[i] = w.get<hpv>(i, 11).neighbours();
  return g;
}

struct world {
  simulator w;
  world(const std::vector<std::vector<address>>& g, std::uint64_t seed, search::unstructured_config k)
      : w(seed, bench::network()) {
    w.add_nodes(g.size(), [&g, k](sim::node_context& c) {
      auto& m = c.add<fixed_group>(mid, membership::static_group_config::of(g[c.index()]));
      c.add<finder>(sid, m, k);
    });
  }
};
}  // namespace

int main(int argc, char** argv) {
  auto a = bench::args::parse(argc, argv, "search.csv");
  const std::uint32_t n = a.quick ? 1000 : 10000;
  const int queries = a.quick ? 40 : 200;
  std::ofstream csv(a.csv);
  csv << "method,nodes,replicas,walkers_or_ttl,queries,success,mean_messages,mean_hops,expected\n";
  const auto g = hyparview_graph(n, a.seed);
  double mean_degree = 0;
  for (auto& v : g) mean_degree += double(v.size()) / n;
  std::printf("unstructured search over a HyParView overlay, N=%u, mean degree %.2f\n\n", n, mean_degree);

  std::printf("random walks: messages and hops to the first holder (mean of %d queries)\n", queries);
  std::printf("%8s %8s %9s %12s %10s %10s\n", "replicas", "walkers", "success", "messages", "hops", "N/r");
  for (std::uint32_t r : {1u, 10u, 100u}) {
    for (std::uint32_t walkers : {1u, 16u}) {
      search::unstructured_config k;
      k.walkers = walkers;
      k.walk_ttl = 20 * n;
      k.query_timeout = 100000s;
      world x(g, a.seed + r, k);
      std::set<std::uint32_t> holders;
      while (holders.size() < r) holders.insert(static_cast<std::uint32_t>(x.w.rng().below(n)));
      for (auto h : holders) x.w.get<finder>(h, sid).store("key");
      int ok = 0;
      double messages = 0, hops = 0;
      for (int q = 0; q < queries; ++q) {
        std::uint32_t origin;
        do origin = static_cast<std::uint32_t>(x.w.rng().below(n));
        while (holders.contains(origin));
        const auto before = x.w.metrics().of(sid, 1).sent;
        bool done = false;
        x.w.get<finder>(origin, sid)
            .find("key", search::method::random_walk, [&](dcp::result<search::search_result> res) {
              done = true;
              if (res) {
                ++ok;
                hops += res->hops;
              }
            });
        x.w.run_until([&] { return done; }, x.w.now() + 100000s);
        // The other walkers do not know of the hit (no checking back): their
        // steps until they meet a holder themselves count too.
        x.w.run_until_quiet(x.w.now() + 100000s);
        messages += double(x.w.metrics().of(sid, 1).sent - before);
      }
      std::printf("%8u %8u %8.1f%% %12.1f %10.1f %10.1f\n", r, walkers, 100.0 * ok / queries, messages / queries,
                  ok ? hops / ok : 0, double(n) / r);
      csv << "random_walk," << n << ',' << r << ',' << walkers << ',' << queries << ',' << double(ok) / queries << ','
          << messages / queries << ',' << (ok ? hops / ok : 0) << ',' << double(n) / r << '\n';
    }
  }

  std::printf("\nflooding: nodes reached and messages by TTL (mean of %d floods), d = %.2f\n", queries / 4,
              mean_degree);
  std::printf("%4s %12s %14s %12s %14s\n", "TTL", "reached", "sum R(i<=k)", "messages", "hit r=10");
  const double d = mean_degree;
  double predicted = 0;
  for (std::uint32_t ttl = 1; ttl <= 9; ++ttl) {
    predicted += d * std::pow(d - 1, ttl - 1);
    search::unstructured_config k;
    k.flood_ttl = ttl;
    k.query_timeout = 10s;
    world x(g, a.seed + 1000 + ttl, k);
    std::set<std::uint32_t> holders;
    while (holders.size() < 10) holders.insert(static_cast<std::uint32_t>(x.w.rng().below(n)));
    for (auto h : holders) x.w.get<finder>(h, sid).store("key");
    const int floods = queries / 4;
    double reached = 0, messages = 0;
    int hits = 0;
    for (int q = 0; q < floods; ++q) {
      std::uint32_t origin;
      do origin = static_cast<std::uint32_t>(x.w.rng().below(n));
      while (holders.contains(origin));
      const auto probes0 = x.w.metrics().counter(sid, "probes");
      const auto sent0 = x.w.metrics().of(sid, 2).sent;
      bool found = false;
      x.w.get<finder>(origin, sid)
          .find("key", search::method::flooding,
                [&](const dcp::result<search::search_result>& r) { found = r.has_value(); });
      x.w.run_for(11s);
      reached += double(x.w.metrics().counter(sid, "probes") - probes0);
      messages += double(x.w.metrics().of(sid, 2).sent - sent0);
      hits += found;
    }
    std::printf("%4u %12.1f %14.1f %12.1f %13.1f%%\n", ttl, reached / floods, std::min(predicted, double(n - 1)),
                messages / floods, 100.0 * hits / floods);
    csv << "flooding," << n << ",10," << ttl << ',' << floods << ',' << double(hits) / floods << ','
        << messages / floods << ',' << reached / floods << ',' << std::min(predicted, double(n - 1)) << '\n';
  }
}
