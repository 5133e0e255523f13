// dcp demo: a simulated cluster running what dcp has, printing what happened.
//
// Twelve nodes watch each other with heartbeat failure detectors over a
// lossy, jittery simulated network. The demo crashes a node, splits the
// cluster in two, heals it and restarts the crashed node, and prints every
// suspicion and recovery as the nodes saw them, then the message counters.
// Same seed, same story: run it twice and compare the trace hash.
//
// Usage: demo [seed]
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <vector>

#include "dcp/failure.hpp"
#include "dcp/sim.hpp"

using namespace dcp;
using detector = failure::heartbeat<sim::env>;

int main(int argc, char** argv) {
  const std::uint64_t seed = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 1;
  constexpr std::uint32_t n = 12;

  sim::config cfg;
  cfg.network.delay = sim::latency::long_tailed(2ms, 3ms, 0.8);
  cfg.network.loss = 0.02;
  cfg.report_unreachable = false;  // detect by silence, as across a partition
  sim::simulator world(seed, cfg);

  // Each node monitors every other one and counts what it notices.
  std::size_t downs = 0, ups = 0;
  time_point first_down{}, last_down{};
  world.add_nodes(n, [&](sim::node_context& node) {
    auto& d = node.add<detector>(detector::default_id, failure::heartbeat_config{200ms, 1s});
    d.on_down([&](const address&) {
      if (downs++ == 0) first_down = world.now();
      last_down = world.now();
    });
    d.on_up([&](const address&) { ++ups; });
    for (std::uint32_t j = 0; j < n; ++j) d.monitor(address::sim(j));
  });

  auto secs = [](time_point t) { return to_seconds(t.time_since_epoch()); };
  // What the cluster believes: nodes grouped by the set of peers they suspect.
  auto report = [&](const char* what, duration run) {
    downs = ups = 0;
    const time_point began = world.now();
    world.run_for(run);
    std::printf("\n%6.2fs  %s\n", secs(began), what);
    if (downs)
      std::printf("         %zu suspicions raised between +%.2fs and +%.2fs\n", downs, secs(first_down) - secs(began),
                  secs(last_down) - secs(began));
    if (ups) std::printf("         %zu peers trusted again\n", ups);
    std::map<std::vector<address>, std::vector<sim::node_index>> views;
    for (sim::node_index i = 0; i < n; ++i)
      if (auto* d = world.find<detector>(i, detector::default_id)) views[d->suspected()].push_back(i);
    for (auto& [suspected, nodes] : views) {
      std::string who, whom;
      for (auto i : nodes) who += std::to_string(i) + " ";
      for (auto& a : suspected) whom += a.to_string() + " ";
      std::printf("         nodes %-26s suspect: %s\n", who.c_str(), whom.empty() ? "nobody" : whom.c_str());
    }
  };

  std::printf("12 nodes, each monitoring the 11 others: 200 ms heartbeats, 1 s timeout, 2%% loss, long-tailed delays\n");
  report("start", 3s);
  world.crash(3);
  report("crash node 3", 3s);
  std::vector<sim::node_index> left, right;
  for (sim::node_index i = 0; i < n; ++i) (i < 6 ? left : right).push_back(i);
  world.partition({left, right});
  report("partition {0..5} | {6..11}", 3s);
  world.heal();
  world.restart(3);
  report("heal the partition, restart node 3", 3s);

  std::size_t wrong = 0;
  for (sim::node_index i = 0; i < n; ++i) wrong += world.get<detector>(i, detector::default_id).suspected().size();
  std::printf("\n%s\n", wrong == 0 ? "every node trusts every other node again" : "some suspicions remain");

  const auto c = world.metrics().of(detector::default_id);
  std::printf("\nheartbeat traffic: %llu messages sent (%llu bytes), %llu received; %llu simulated events\n",
              static_cast<unsigned long long>(c.sent), static_cast<unsigned long long>(c.sent_bytes),
              static_cast<unsigned long long>(c.received), static_cast<unsigned long long>(world.events()));
  std::printf("trace hash %016llx (seed %llu)\n", static_cast<unsigned long long>(world.trace_hash()),
              static_cast<unsigned long long>(seed));
  return wrong == 0 ? 0 : 1;
}
