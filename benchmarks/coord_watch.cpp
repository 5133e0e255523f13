// coord watches in the simulator: 3 replicas (Raft + coord::server with
// durable storage on the simulated disk), one writer and W watchers on their
// own nodes, every link a constant one-way delay D. The writer puts keys
// under a prefix one after another; every watcher follows the prefix. Reports
// the put's latency and the latency from the put's call to each watcher's
// delivery, in units of D, and the messages per delivered event: the push
// costs one one-way delay after the leader applies (client -> leader ->
// quorum -> leader = 3 D, then the push, 4 D).
//
//   coord_watch [--quick]     prints a table, writes coord_watch.csv
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <vector>

#include "dcp/coord.hpp"
#include "dcp/sim.hpp"
#include "dcp/storage.hpp"

using namespace dcp;
using namespace dcp::coord;

namespace {
using raft_t = consensus::raft<sim::env, machine, storage::durable_storage>;
using server_t = server<sim::env, raft_t>;
using client_t = client<sim::env>;

struct outcome {
  double put_p50, put_p99, event_p50, event_p99, msgs_per_event;
  std::size_t puts, events;
};

outcome run(std::uint32_t watchers, int puts) {
  const duration D = 1ms;
  sim::config sc;
  sc.network.delay = sim::latency::constant(D);
  sim::simulator w(1, sc);
  std::vector<address> servers{address::sim(0), address::sim(1), address::sim(2)};
  consensus::raft_config rc;
  rc.members = servers;
  rc.snapshot_every = 4096;
  w.add_nodes(3, [rc](sim::node_context& n) {
    auto& r = n.add<raft_t>(raft_t::default_id, rc, storage::durable_storage(n.world().disk_of(n.index())), machine{});
    n.add<server_t>(default_protocol_id, r);
  });
  client_config cc;
  cc.servers = servers;
  cc.ttl = 10s;
  cc.keepalive_every = 3s;
  w.add_nodes(1 + watchers, [cc](sim::node_context& n) { n.add<client_t>(default_protocol_id, cc); });
  w.run_for(2s);  // elect
  auto& writer = w.get<client_t>(3, default_protocol_id);
  // Warm up: every client finds the leader (a get each).
  std::uint32_t warmed = 0;
  for (std::uint32_t c = 0; c <= watchers; ++c)
    w.get<client_t>(3 + c, default_protocol_id).get("warm", [&](result<std::optional<bytes>>) { ++warmed; });
  w.run_until([&] { return warmed == watchers + 1; }, w.now() + 10s);
  std::vector<time_point> put_at;  // revision r's put was called at put_at[r - 1] (nothing else writes)
  std::vector<double> put_lat, event_lat;
  std::size_t events = 0;
  for (std::uint32_t c = 1; c <= watchers; ++c)
    w.get<client_t>(3 + c, default_protocol_id).watch_prefix("bench/", 0, [&](result<std::vector<watch_event>> r) {
      if (!r) return;
      for (auto& e : *r) {
        ++events;
        if (e.kv.mod_revision >= 1 && e.kv.mod_revision <= put_at.size())
          event_lat.push_back(to_millis(w.now() - put_at[e.kv.mod_revision - 1]) / to_millis(D));
      }
    });
  w.run_for(100ms);
  const auto sent0 = w.metrics().total().sent;
  int left = puts;
  std::function<void()> next = [&] {
    if (left-- == 0) return;
    const auto start = w.now();
    put_at.push_back(start);
    writer.put("bench/" + std::to_string(left % 16), to_bytes("v"), [&, start](result<void> r) {
      if (r) put_lat.push_back(to_millis(w.now() - start) / to_millis(D));
      next();
    });
  };
  next();
  w.run_until([&] { return left < 0; }, w.now() + 600s);
  w.run_for(50ms);
  const auto msgs = w.metrics().total().sent - sent0;
  std::sort(put_lat.begin(), put_lat.end());
  std::sort(event_lat.begin(), event_lat.end());
  auto pct = [](const std::vector<double>& v, double p) {
    return v.empty() ? 0.0 : v[std::min(v.size() - 1, static_cast<std::size_t>(p * v.size()))];
  };
  return {pct(put_lat, 0.5),
          pct(put_lat, 0.99),
          pct(event_lat, 0.5),
          pct(event_lat, 0.99),
          events ? static_cast<double>(msgs) / events : 0.0,
          put_lat.size(),
          events};
}
}  // namespace

int main(int argc, char** argv) {
  const bool quick = argc > 1 && std::strcmp(argv[1], "--quick") == 0;
  std::ofstream csv("coord_watch.csv");
  csv << "watchers,puts,events,put_p50_delays,put_p99_delays,event_p50_delays,event_p99_delays,messages_per_event\n";
  std::printf("coord watch in the simulator: 3 replicas, 1 writer, W watchers on one prefix, one-way delay D = 1 ms\n");
  std::printf("%9s %6s %8s %10s %10s %12s %12s %10s\n", "watchers", "puts", "events", "put p50", "put p99", "event p50",
              "event p99", "msgs/ev");
  for (std::uint32_t watchers : {1u, 16u, 64u}) {
    const auto o = run(watchers, quick ? 20 : 1000);
    std::printf("%9u %6zu %8zu %9.1fD %9.1fD %11.1fD %11.1fD %10.2f\n", watchers, o.puts, o.events, o.put_p50,
                o.put_p99, o.event_p50, o.event_p99, o.msgs_per_event);
    csv << watchers << ',' << o.puts << ',' << o.events << ',' << o.put_p50 << ',' << o.put_p99 << ',' << o.event_p50
        << ',' << o.event_p99 << ',' << o.msgs_per_event << '\n';
  }
  std::printf(
      "(event latency counts from the put's call: client -> leader -> quorum -> leader = 3 D, then the push)\n");
}
