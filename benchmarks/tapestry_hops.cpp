// Tapestry's path length against N, beside the paper's log_16 N (Zhao et al.,
// JSAC 2004, §3.2: a route resolves one hexadecimal digit a hop), and the
// object-location figures of its DOLR layer, in the simulator.
//
//   tapestry_hops [--quick] [--lookups L]
//
// For N = 64 ... 4096, N nodes join one by one through real insertions
// (dht::tapestry: a join routed to the new id, the surrogate's acknowledged
// multicast), the overlay runs a few maintenance rounds, and L lookups of random
// keys from random nodes are routed by surrogate routing. Each answer is checked
// against the global root (the live node at the smallest surrogate distance; a
// wrong root is counted). Then L/4 objects are published from random servers and
// located from random nodes. Figures per N:
//   hops         mean overlay hops origin → root (the root's own keys count 0)
//   log16 N      the paper's expected number of digits to resolve
//   p99, max     of the hops
//   table        mean neighbour-map entries per node (c = 3 per slot)
//   wrong        lookups answered by a node other than the global root
//   loc hops     mean hops of a locate: to the first node holding a pointer, plus
//                the hop to the server
//   to root      mean hops from the same origins to the object's root: what
//                locate would cost without the pointers left along publish paths
//   stretch      loc hops over the hops of a route from the origin to the
//                server's own id (the overlay distance to the server): the
//                paper's location stretch measured in overlay hops (the simulator's
//                links are i.i.d., so there is no network distance to compare)
// Prints a table, writes tapestry_hops.csv.
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
using tap = dht::tapestry<sim::env>;

namespace {

struct row {
  std::size_t n = 0, lookups = 0, failed = 0, wrong = 0, located = 0, locates = 0;
  double hops = 0, paper = 0, p99 = 0, max = 0, table = 0, loc_hops = 0, to_root = 0, stretch = 0, secs = 0;
};

row run(std::size_t n, std::size_t lookups, std::uint64_t seed) {
  const auto t0 = std::chrono::steady_clock::now();
  sim::config sc;
  sc.network.delay = sim::latency::uniform(1ms, 20ms);
  sim::simulator world(seed, sc);
  dht::tapestry_config cfg;
  cfg.maintain_interval = 5s;  // heartbeats: long rounds keep the growth phase cheap
  cfg.lookup_timeout = 10s;
  cfg.republish_interval = 60s;
  cfg.pointer_ttl = 180s;
  std::optional<sim::node_index> founder;
  auto find = [&](sim::node_index i) { return world.find<tap>(i, tap::default_id); };
  for (std::size_t k = 0; k < n; ++k) {
    world.add_node([&](sim::node_context& ctx) {
      auto& r = ctx.add<tap>(tap::default_id, cfg);
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
    world.run_for(5ms);
    if (k % 1024 == 1023) std::fprintf(stderr, "  N=%zu: %zu added\n", n, k + 1);
  }
  for (int round = 0; round < 120; ++round) {  // until every node has joined
    std::size_t joined = 0;
    for (sim::node_index i = 0; i < n; ++i) joined += find(i)->joined();
    if (joined == n) break;
    world.run_for(1s);
  }
  world.run_for(4 * cfg.maintain_interval);  // row exchanges fill the holes of concurrent insertions

  row r;
  r.n = n;
  r.paper = std::log(static_cast<double>(n)) / std::log(16.0);
  double entries = 0;
  for (sim::node_index i = 0; i < n; ++i) entries += static_cast<double>(find(i)->table_entries());
  r.table = entries / static_cast<double>(n);
  auto root_of = [&](const node_id& key) {
    sim::node_index best = 0;
    for (sim::node_index i = 1; i < n; ++i)
      if (tap::distance(key, find(i)->self().id) < tap::distance(key, find(best)->self().id)) best = i;
    return best;
  };

  std::vector<unsigned> hops;
  std::size_t done = 0;
  for (std::size_t q = 0; q < lookups; ++q) {
    const node_id key = node_id::random(world.rng());
    const auto root = root_of(key);
    const auto from = static_cast<sim::node_index>(world.rng().below(n));
    find(from)->lookup(key, 1, [&, root](dcp::result<dht::lookup_result> res) {
      ++done;
      if (!res) return (void)++r.failed;
      if (res->owners.empty() || res->owners.front().addr != address::sim(root)) ++r.wrong;
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

  // object location: publish, then locate from random nodes; beside it, a lookup of the
  // object's root and of the server's id from the same origin
  const std::size_t objects = std::max<std::size_t>(lookups / 4, 8);
  std::vector<std::pair<node_id, sim::node_index>> published;
  for (std::size_t k = 0; k < objects; ++k) {
    const node_id guid = node_id::random(world.rng());
    const auto server = static_cast<sim::node_index>(world.rng().below(n));
    find(server)->publish(guid);
    published.push_back({guid, server});
  }
  world.run_for(2s);
  double loc = 0, root_hops = 0, server_hops = 0;
  std::size_t pairs = 0;
  done = 0;
  for (auto& [guid, server] : published) {
    const auto from = static_cast<sim::node_index>(world.rng().below(n));
    const node_id g = guid;
    const node_id server_id = find(server)->self().id;
    auto located = std::make_shared<std::optional<unsigned>>();
    auto rooted = std::make_shared<std::optional<unsigned>>();
    auto served = std::make_shared<std::optional<unsigned>>();
    auto finish = [&, located, rooted, served] {
      if (!*located || !*rooted || !*served) return;
      ++done;
      loc += **located;
      root_hops += **rooted;
      server_hops += std::max(1u, **served);
      ++pairs;
    };
    find(from)->locate(g, [&, located, finish](dcp::result<dht::locate_result> res) {
      ++r.locates;
      if (!res) return (void)++done;
      ++r.located;
      *located = res->hops;
      finish();
    });
    find(from)->lookup(g, 1, [rooted, finish](dcp::result<dht::lookup_result> res) {
      *rooted = res ? res->hops : 0;
      finish();
    });
    find(from)->lookup(server_id, 1, [served, finish](dcp::result<dht::lookup_result> res) {
      *served = res ? res->hops + 0 : 0;
      finish();
    });
  }
  world.run_until([&] { return done == objects; }, world.now() + 60s);
  if (pairs) {
    r.loc_hops = loc / static_cast<double>(pairs);
    r.to_root = root_hops / static_cast<double>(pairs);
    r.stretch = loc / server_hops;
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
      quick ? std::vector<std::size_t>{64, 256} : std::vector<std::size_t>{64, 256, 1024, 4096};
  std::ofstream csv("tapestry_hops.csv");
  csv << "n,lookups,failed,wrong,hops_mean,paper_log16_n,hops_p99,hops_max,table_mean,locates,located,locate_hops,"
         "root_hops,location_stretch\n";
  std::printf("Tapestry path length (real insertions, %zu lookups per point) beside the paper's log_16 N\n", lookups);
  std::printf("%6s %7s %8s %5s %5s %7s %6s %7s %9s %8s %8s %7s\n", "N", "hops", "log16N", "p99", "max", "table",
              "wrong", "failed", "loc hops", "to root", "stretch", "time");
  for (auto n : sizes) {
    const row r = run(n, lookups, n * 31 + 7);
    std::printf("%6zu %7.2f %8.2f %5.0f %5.0f %7.1f %6zu %7zu %9.2f %8.2f %8.2f %6.1fs\n", r.n, r.hops, r.paper, r.p99,
                r.max, r.table, r.wrong, r.failed, r.loc_hops, r.to_root, r.stretch, r.secs);
    std::fflush(stdout);
    csv << r.n << ',' << r.lookups << ',' << r.failed << ',' << r.wrong << ',' << r.hops << ',' << r.paper << ','
        << r.p99 << ',' << r.max << ',' << r.table << ',' << r.locates << ',' << r.located << ',' << r.loc_hops << ','
        << r.to_root << ',' << r.stretch << '\n';
  }
  std::printf(
      "hops: mean overlay hops origin→root; log16N: digits to resolve (the paper's bound); table: mean\n"
      "neighbour-map entries; loc hops: locate's hops to the first pointer + 1 to the server; to root: the\n"
      "same origins' hops to the object's root; stretch: loc hops over the hops to the server's own id\n");
}
