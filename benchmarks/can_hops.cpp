// CAN's path length against N and d, beside the paper's (d/4)·n^(1/d)
// (Ratnasamy et al., SIGCOMM 2001, §2.1 and Figure 4), in the simulator.
//
//   can_hops [--quick] [--lookups L]
//
// For d = 2, 3, 4 and N = 256 ... 16,384, N nodes join one by one through real
// JOINs (dht::can: each routed to a random point, whose owner splits its zone),
// the overlay runs a few update rounds, and L lookups of random keys from random
// nodes are routed greedily. Each lookup's answer is checked against the zone
// holder (a wrong owner aborts the run). Figures per (d, N):
//   hops        mean overlay hops from the origin to the owner (the origin's own
//               keys count 0 hops, as in the paper's path length)
//   paper       (d/4)·n^(1/d): the mean with n equal zones
//   p99, max    of the hops
//   neighbours  mean neighbour-table size (the paper: 2d with equal zones)
//   zones/max   the largest zone over the smallest, a measure of imbalance
// Joins split the zone that holds a random point, so zones are unequal (the
// paper's §3.7 uniform partitioning is not built): paths run a little longer
// than with equal zones.
// Prints a table, writes can_hops.csv.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <optional>
#include <vector>

#include "dcp/dht.hpp"
#include "dcp/sim.hpp"

using namespace dcp;
using can = dht::can<sim::env>;

namespace {

struct row {
  unsigned d = 0;
  std::size_t n = 0, lookups = 0, failed = 0;
  double hops = 0, paper = 0, p99 = 0, max = 0, neighbours = 0, imbalance = 0, secs = 0;
};

row run(unsigned d, std::size_t n, std::size_t lookups, std::uint64_t seed) {
  const auto t0 = std::chrono::steady_clock::now();
  sim::config sc;
  sc.network.delay = sim::latency::uniform(1ms, 20ms);
  sim::simulator world(seed, sc);
  dht::can_config cfg;
  cfg.dimensions = d;
  cfg.update_interval = 5s;  // soft state: long rounds keep the growth phase cheap
  cfg.lookup_timeout = 10s;
  cfg.max_hops = 4096;
  std::optional<sim::node_index> founder;
  auto find = [&](sim::node_index i) { return world.find<can>(i, can::default_id); };
  // one join per millisecond, each through a random node that has joined
  for (std::size_t k = 0; k < n; ++k) {
    world.add_node([&](sim::node_context& ctx) {
      auto& r = ctx.add<can>(can::default_id, cfg);
      if (!founder) {
        founder = ctx.index();
        return r.bootstrap({});
      }
      sim::node_index seed_node = *founder;
      for (int t = 0; t < 8; ++t) {
        const auto i = static_cast<sim::node_index>(world.rng().below(ctx.index()));
        if (find(i)->joined()) {
          seed_node = i;
          break;
        }
      }
      r.bootstrap({{node_id{}, address::sim(seed_node)}});
    });
    world.run_for(1ms);
    if (k % 4096 == 4095) std::fprintf(stderr, "  d=%u N=%zu: %zu added\n", d, n, k + 1);
  }
  for (int round = 0; round < 120; ++round) {  // until every node has joined
    std::size_t joined = 0;
    for (sim::node_index i = 0; i < n; ++i) joined += find(i)->joined();
    if (joined == n) break;
    world.run_for(1s);
  }
  world.run_for(3 * cfg.update_interval);  // neighbour tables settle

  row r;
  r.d = d;
  r.n = n;
  r.paper = d / 4.0 * std::pow(static_cast<double>(n), 1.0 / d);
  double smallest = 1, largest = 0, nb = 0;
  for (sim::node_index i = 0; i < n; ++i) {
    auto* c = find(i);
    smallest = std::min(smallest, c->volume());
    largest = std::max(largest, c->volume());
    nb += static_cast<double>(c->neighbours().size());
  }
  r.neighbours = nb / static_cast<double>(n);
  r.imbalance = largest / smallest;

  std::vector<unsigned> hops;
  std::size_t done = 0;
  for (std::size_t q = 0; q < lookups; ++q) {
    const node_id key = node_id::random(world.rng());
    sim::node_index owner = 0;
    int owners = 0;
    for (sim::node_index i = 0; i < n; ++i)
      if (find(i)->owns(key)) owner = i, ++owners;
    if (owners != 1) {
      std::fprintf(stderr, "key with %d owners: the zones do not partition the space\n", owners);
      std::exit(1);
    }
    const auto from = static_cast<sim::node_index>(world.rng().below(n));
    find(from)->lookup(key, 1, [&, owner](dcp::result<dht::lookup_result> res) {
      ++done;
      if (!res) return (void)++r.failed;
      if (res->owners.empty() || res->owners.front().addr != address::sim(owner)) {
        std::fprintf(stderr, "lookup answered a wrong owner\n");
        std::exit(1);
      }
      hops.push_back(res->hops);
    });
  }
  world.run_until([&] { return done == lookups; }, world.now() + 120s);
  r.lookups = lookups;
  std::sort(hops.begin(), hops.end());
  double sum = 0;
  for (auto h : hops) sum += h;
  if (!hops.empty()) {
    r.hops = sum / static_cast<double>(hops.size());
    r.p99 = hops[hops.size() * 99 / 100];
    r.max = hops.back();
  }
  r.secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  bool quick = false;
  std::size_t lookups = 0;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--quick"))
      quick = true;
    else if (!std::strcmp(argv[i], "--lookups") && i + 1 < argc)
      lookups = static_cast<std::size_t>(std::atol(argv[++i]));
    else {
      std::fprintf(stderr, "usage: %s [--quick] [--lookups L]\n", argv[0]);
      return 2;
    }
  }
  if (!lookups) lookups = quick ? 300 : 2000;
  const std::vector<std::size_t> sizes =
      quick ? std::vector<std::size_t>{256} : std::vector<std::size_t>{256, 1024, 4096, 16384};
  const std::vector<unsigned> dims = quick ? std::vector<unsigned>{2, 3} : std::vector<unsigned>{2, 3, 4};
  std::ofstream csv("can_hops.csv");
  csv << "d,n,lookups,failed,hops_mean,paper_d4_n1d,hops_p99,hops_max,neighbours_mean,paper_2d,zone_imbalance\n";
  std::printf("CAN path length (real joins, %zu lookups per point) beside the paper's (d/4)·n^(1/d)\n", lookups);
  std::printf("%2s %6s %8s %8s %7s %5s %5s %11s %5s %9s %7s %7s\n", "d", "N", "hops", "paper", "ratio", "p99", "max",
              "neighbours", "2d", "max/min", "failed", "time");
  for (unsigned d : dims)
    for (auto n : sizes) {
      const row r = run(d, n, lookups, n * 31 + d);
      std::printf("%2u %6zu %8.2f %8.2f %7.2f %5.0f %5.0f %11.2f %5u %9.0f %7zu %6.1fs\n", r.d, r.n, r.hops, r.paper,
                  r.paper > 0 ? r.hops / r.paper : 0, r.p99, r.max, r.neighbours, 2 * r.d, r.imbalance, r.failed,
                  r.secs);
      std::fflush(stdout);
      csv << r.d << ',' << r.n << ',' << r.lookups << ',' << r.failed << ',' << r.hops << ',' << r.paper << ',' << r.p99
          << ',' << r.max << ',' << r.neighbours << ',' << 2 * r.d << ',' << r.imbalance << '\n';
    }
  std::printf(
      "hops: mean overlay hops origin→owner; paper: (d/4)·N^(1/d) with equal zones; neighbours: mean table size\n"
      "(paper: 2d with equal zones); max/min: largest zone volume over the smallest\n");
}
