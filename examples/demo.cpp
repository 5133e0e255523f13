// dcp demo: simulated clusters running what dcp has, printing what happened.
//
//  0. The surge, four ways: a server that runs C units of work at once meets
//     a flash crowd of 10 x C clients: plain client-server, tokens from the
//     server itself, and delegation to its clients (one coordinator per
//     shard, or a group of three per shard acting as one by quorum), a
//     coordinator crashing halfway (examples/surge_scenario.hpp).
//  1. Failure detection: twelve nodes watch each other with heartbeats over a
//     lossy, jittery network; a node crashes, the cluster splits in two,
//     heals, and the crashed node restarts.
//  2. An overlay that heals: 500 nodes join a HyParView overlay through one
//     contact, broadcast over a Plumtree, lose a third of their number at
//     once, broadcast again, and average a value per node with Push-Sum.
//  3. Who is responsible: 64 nodes form a Kademlia DHT with a replicated
//     store; a value put on one node is read from another, then read again
//     after every node that held it has crashed, one by one, the store
//     re-replicating in between.
//
// Same seed, same story: run it twice and compare the trace hashes.
//
// Usage: demo [seed]
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "dcp/aggregate.hpp"
#include "dcp/delegation.hpp"
#include "dcp/dht.hpp"
#include "dcp/failure.hpp"
#include "dcp/gossip.hpp"
#include "dcp/membership.hpp"
#include "dcp/sim.hpp"
#include "surge_scenario.hpp"

using namespace dcp;
using detector = failure::heartbeat<sim::env>;

namespace {

// Scene 0: the surge, four ways, in one table.
bool the_surge(std::uint64_t seed) {
  surge::params p;
  p.clients = 200;
  p.capacity = 20;
  p.shards = 4;
  p.run = 8s;
  p.seed = seed;
  std::printf(
      "200 clients arrive within one second at a server that runs C = 20 units of work (50 ms each) at\n"
      "once: a surge of 10x its capacity. Four ways to let them in, %.0f s each, a coordinator crashing halfway:\n\n",
      to_seconds(p.run));
  std::printf(
      "  client-server  everyone asks the server; it queues C more, rejects the rest; clients back off\n"
      "  central        the server hands out signed lease tokens itself, then checks them\n"
      "  single         delegation: each of 4 shards coordinated by one client (the DHT owner of its key)\n"
      "  multi          delegation: each shard coordinated by 3 nodes acting as one by quorum (Raft)\n\n");
  surge::print_header();
  std::map<std::string, surge::result_row> r;
  for (const char* mode : surge::modes) {
    r[mode] = surge::run(mode, p);
    surge::print_row(r[mode]);
  }
  std::printf(
      "\n  peak/C: the most requests inside the server at once, over what it can run. msgs/adm: messages\n"
      "  the server received per unit of work it ran. With delegation the server never holds more than C\n"
      "  and hears about one message per unit, however many clients crowd in: their coordination is\n"
      "  their own business, checked offline (one signature, one table look-up per unit).\n");
  bool ok = r["client-server"].peak_over_c > 1.0;          // the crowd overloads the plain server...
  for (const char* mode : {"central", "single", "multi"})  // ...and never a server that checks tokens
    ok = ok && r[mode].peak_over_c <= 1.0 && r[mode].episodes == 0 && r[mode].admitted > 0;
  ok = ok && r["single"].msgs_per_admitted < r["client-server"].msgs_per_admitted &&
      r["multi"].msgs_per_admitted < r["client-server"].msgs_per_admitted;
  return ok;
}

// Scene 1: twelve nodes watch each other with heartbeat failure detectors.
bool failure_detection(std::uint64_t seed) {
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

  std::printf(
      "12 nodes, each monitoring the 11 others: 200 ms heartbeats, 1 s timeout, 2%% loss, long-tailed delays\n");
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
  std::printf("trace hash %016llx\n", static_cast<unsigned long long>(world.trace_hash()));
  return wrong == 0;
}

// Scene 2: HyParView + Plumtree + Push-Sum on every node, composed by reference.
bool overlay_that_heals(std::uint64_t seed) {
  using overlay_t = membership::hyparview<sim::env>;
  using tree_t = gossip::plumtree<sim::env, overlay_t>;
  using average_t = aggregate::push_sum<sim::env, overlay_t>;
  constexpr std::uint32_t n = 500;
  sim::config net;
  net.network.delay = sim::latency::uniform(1ms, 20ms);  // lossless: a lost Push-Sum message loses mass (docs)
  sim::simulator world(seed, net);
  auto delivered = std::make_shared<std::vector<int>>(n, 0);
  for (std::uint32_t i = 0; i < n; ++i) {
    world.add_node([i, delivered](sim::node_context& node) {
      membership::hyparview_config mc;
      if (i > 0) mc.contact = address::sim(0);  // everyone joins through node 0
      auto& overlay = node.add<overlay_t>(overlay_t::default_id, mc);
      node.add<tree_t>(tree_t::default_id, overlay).on_deliver([i, delivered](const gossip::delivery&) {
        ++(*delivered)[i];
      });
      aggregate::push_sum_config ac;
      ac.input = aggregate::push_sum_input::average(static_cast<double>(i % 100));  // node i's load, say
      node.add<average_t>(average_t::default_id, overlay, ac);
    });
    world.run_for(2ms);
  }
  world.run_for(10s);
  auto reached = [&](int count) {
    std::uint32_t ok = 0, live = 0;
    for (std::uint32_t i = 0; i < n; ++i)
      if (world.is_up(i)) ++live, ok += (*delivered)[i] == count;
    std::printf("         %u of %u live nodes have delivered %d broadcast(s), each exactly once\n", ok, live, count);
    return ok == live;
  };
  auto tree_traffic = [&] { return world.metrics().of(tree_t::default_id).sent; };

  std::printf("500 nodes join one contact (HyParView: active view 5, passive 30), delays 1-20 ms\n");
  auto before = tree_traffic();
  world.get<tree_t>(5, tree_t::default_id).broadcast(as_bytes("first"));
  world.run_for(3s);
  std::printf("\n  first broadcast (floods once, then prunes the overlay to a tree): %llu messages\n",
              static_cast<unsigned long long>(tree_traffic() - before));
  bool ok = reached(1);

  double sum = 0;
  std::uint32_t live = 0;
  for (std::uint32_t i = 0; i < n; ++i) {
    if (i % 3 == 1)
      world.crash(i);  // a third of the cluster, at once
    else
      sum += i % 100, ++live;
  }
  world.run_for(5s);  // HyParView repairs from passive views; Plumtree grafts around the holes
  before = tree_traffic();
  world.get<tree_t>(6, tree_t::default_id).broadcast(as_bytes("still here"));
  world.run_for(5s);
  std::printf("\n  crash 167 nodes at once; 5 s later a second broadcast: %llu messages\n",
              static_cast<unsigned long long>(tree_traffic() - before));
  ok = reached(2) && ok;

  world.get<average_t>(0, average_t::default_id).restart();  // a new epoch: the survivors' mass only
  const double truth = sum / live;
  auto worst_error = [&] {
    double worst = 0;
    for (std::uint32_t i = 0; i < n; ++i)
      if (auto* p = world.find<average_t>(i, average_t::default_id))
        worst = std::max(worst, std::abs(p->estimate().value_or(0) - truth) / truth);
    return worst;
  };
  const time_point epoch = world.now();
  while (worst_error() >= 1e-6 && world.now() - epoch < 300s) world.run_for(1s);
  std::printf("\n  Push-Sum, new epoch among the survivors: true average %.6f, every node within %.1e after %.0f s\n",
              truth, worst_error(), to_seconds(world.now() - epoch));
  const double worst = worst_error();
  std::printf("  trace hash %016llx\n", static_cast<unsigned long long>(world.trace_hash()));
  return ok && worst < 1e-6;
}

// Scene 3: a replicated key-value store over Kademlia.
bool who_is_responsible(std::uint64_t seed) {
  using router_t = dht::kademlia<sim::env>;
  using store_t = dht::store<sim::env, router_t>;
  constexpr std::uint32_t n = 64;
  sim::config net;
  net.network.delay = sim::latency::uniform(1ms, 20ms);
  sim::simulator world(seed, net);
  dht::kademlia_config kc;
  kc.k = 8;
  kc.rpc_timeout = 150ms;
  dht::store_config sc;
  sc.replicas = 3;
  sc.sync_interval = 1s;  // re-replication period
  for (std::uint32_t i = 0; i < n; ++i) {
    world.add_node([&, i](sim::node_context& node) {
      auto& r = node.add<router_t>(router_t::default_id, kc);
      node.add<store_t>(store_t::default_id, r, sc);
      if (i == 0)
        r.bootstrap({});  // founds the overlay
      else
        r.bootstrap({{node_id{}, address::sim(0)}});  // joins through node 0 (id unknown)
    });
    world.run_for(30ms);
  }
  world.run_for(10s);
  auto store = [&](std::uint32_t i) -> store_t& { return world.get<store_t>(i, store_t::default_id); };
  auto get = [&](std::uint32_t from) {
    std::optional<std::string> got;
    bool done = false;
    store(from).get("config/leader", [&](dcp::result<dht::stored_value> v) {
      done = true;
      if (v)
        got = std::string(v->value.begin(), v->value.end());
      else
        got = "error: " + v.message();
    });
    world.run_until([&] { return done; }, world.now() + 30s);
    return got.value_or("no answer");
  };

  std::printf("64 nodes join a Kademlia overlay (k = 8, alpha = 3) with a store keeping 3 replicas per key\n");
  bool put_ok = false;
  store(5).put("config/leader", to_bytes("node-17"),
               [&](const dcp::result<std::uint64_t>& r) { put_ok = r.has_value(); });
  world.run_until([&] { return put_ok; }, world.now() + 30s);
  std::printf("\n  node 5 puts config/leader = node-17: %s\n",
              put_ok ? "acknowledged by a majority of replicas" : "failed");
  const std::string first = get(40);
  std::printf("  node 40 gets config/leader: %s\n", first.c_str());

  std::vector<std::uint32_t> holders;
  for (std::uint32_t i = 0; i < n; ++i)
    if (store(i).local("config/leader")) holders.push_back(i);
  std::string who;
  for (auto h : holders) who += " " + std::to_string(h);
  std::printf("\n  replicas holding it:%s; crash them one at a time, 5 s apart\n", who.c_str());
  for (auto h : holders) {
    world.crash(h);
    world.run_for(5s);  // the survivors notice, and the store re-replicates to the new closest nodes
  }
  std::uint32_t reader = 40;
  while (!world.is_up(reader)) ++reader;
  const std::string second = get(reader);
  std::printf("  after the crashes, a get returns: %s\n", second.c_str());
  std::printf("  trace hash %016llx\n", static_cast<unsigned long long>(world.trace_hash()));
  return first == "node-17" && second == "node-17";
}

}  // namespace

int main(int argc, char** argv) {
  const std::uint64_t seed = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 1;
  std::printf("== 0. the surge, four ways: why delegation ==\n\n");
  const bool surge_ok = the_surge(seed);
  std::printf("\n== 1. failure detection ==\n\n");
  const bool detection = failure_detection(seed);
  std::printf("\n== 2. an overlay that heals: membership, broadcast, aggregation ==\n\n");
  const bool overlay = overlay_that_heals(seed);
  std::printf("\n== 3. who is responsible: a DHT and its replicated store ==\n\n");
  const bool dht_ok = who_is_responsible(seed);
  const bool all = surge_ok && detection && overlay && dht_ok;
  std::printf("\n%s (seed %llu)\n", all ? "all scenes ended as expected" : "a scene went wrong",
              static_cast<unsigned long long>(seed));
  return all ? 0 : 1;
}
