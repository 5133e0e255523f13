// coord lock+unlock in the simulator: 3 replicas (Raft + coord::server with
// durable storage on the simulated disk), clients on their own nodes, every
// link a constant one-way delay D. Reports the latency of lock+unlock in
// units of D (how many one-way delays it needs: the floor named by the issue
// for the real-network comparison is 4 round trips, 8 D) and the messages
// per lock+unlock, for 1 client and for 64 clients on 64 locks.
//
//   coord_lock [--quick]     prints a table, writes coord_lock.csv
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
  double p50_d, p99_d, ops_per_s, msgs_per_op;
  std::size_t ops;
};

outcome run(std::uint32_t clients, int ops_per_client) {
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
  w.add_nodes(clients, [cc](sim::node_context& n) { n.add<client_t>(default_protocol_id, cc); });
  w.run_for(2s);  // elect
  std::uint32_t opened = 0;
  for (std::uint32_t c = 0; c < clients; ++c)
    w.get<client_t>(3 + c, default_protocol_id).open_session([&](result<session_id> r) { opened += r.has_value(); });
  w.run_until([&] { return opened == clients; }, w.now() + 10s);
  // Point every client at the leader, as a warmed-up client would be.
  std::vector<double> lat;
  std::size_t done_clients = 0;
  const auto sent0 = w.metrics().total().sent;
  const auto t0 = w.now();
  std::function<void(std::uint32_t, int)> loop = [&](std::uint32_t c, int left) {
    if (left == 0) {
      ++done_clients;
      return;
    }
    auto& cl = w.get<client_t>(3 + c, default_protocol_id);
    const auto start = w.now();
    cl.lock("lock-" + std::to_string(c), [&, c, left, start](result<grant> g) {
      if (!g) return loop(c, left);
      w.get<client_t>(3 + c, default_protocol_id).unlock(*g, [&, c, left, start](result<void>) {
        lat.push_back(to_millis(w.now() - start) / to_millis(D));
        loop(c, left - 1);
      });
    });
  };
  for (std::uint32_t c = 0; c < clients; ++c) loop(c, ops_per_client);
  w.run_until([&] { return done_clients == clients; }, w.now() + 600s);
  const double secs = to_seconds(w.now() - t0);
  const auto msgs = w.metrics().total().sent - sent0;
  std::sort(lat.begin(), lat.end());
  auto pct = [&](double p) { return lat[std::min(lat.size() - 1, static_cast<std::size_t>(p * lat.size()))]; };
  return {pct(0.5), pct(0.99), lat.size() / secs, static_cast<double>(msgs) / lat.size(), lat.size()};
}
}  // namespace

int main(int argc, char** argv) {
  const bool quick = argc > 1 && std::strcmp(argv[1], "--quick") == 0;
  std::ofstream csv("coord_lock.csv");
  csv << "clients,ops,p50_delays,p99_delays,ops_per_sim_s,messages_per_op\n";
  std::printf("coord lock+unlock in the simulator: 3 replicas, constant one-way delay D = 1 ms\n");
  std::printf("%8s %8s %12s %12s %14s %10s\n", "clients", "ops", "p50 (D)", "p99 (D)", "ops/sim-s", "msgs/op");
  for (std::uint32_t clients : {1u, 64u}) {
    const auto o = run(clients, quick ? 5 : (clients == 1 ? 2000 : 100));
    std::printf("%8u %8zu %12.1f %12.1f %14.0f %10.1f\n", clients, o.ops, o.p50_d, o.p99_d, o.ops_per_s, o.msgs_per_op);
    csv << clients << ',' << o.ops << ',' << o.p50_d << ',' << o.p99_d << ',' << o.ops_per_s << ',' << o.msgs_per_op
        << '\n';
  }
  std::printf(
      "(each of lock and unlock: client -> leader -> quorum -> leader -> client = 4 D; the issue's\n"
      " floor for lock+unlock is 4 round trips = 8 D)\n");
}
