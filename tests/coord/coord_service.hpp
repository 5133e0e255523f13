// A coordination service in the simulator, for the coord suites that drive
// it through its clients: `replicas` replicas (Raft on the simulated disk,
// snapshots every 16 entries, so restores happen within a seed) at nodes
// 0..replicas-1, then `clients` clients; loss, duplication and twice as much
// reordering at `loss`; every replica's state machine checked after every
// event.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <vector>

#include "dcp/coord.hpp"
#include "dcp/sim.hpp"
#include "dcp/storage.hpp"

namespace dcp::test {

struct coord_service {
  using raft_t = consensus::raft<sim::env, coord::machine, storage::durable_storage>;
  using server_t = coord::server<sim::env, raft_t>;
  using client_t = coord::client<sim::env>;
  static constexpr protocol_id raft_id = raft_t::default_id, coord_id = coord::default_protocol_id;

  struct options {
    std::uint32_t replicas = 3, clients = 1;
    double loss = 0;
    coord::server_config server{};
    std::size_t max_snapshot_bytes = 0;  ///< 0: raft's default
    duration give_up_after = std::chrono::seconds(2);
    std::uint64_t entropy_salt = 0xE7;  ///< the servers' session ids and secrets: seed ^ salt
  };

  sim::simulator w;
  std::vector<address> servers;
  std::uint32_t replicas;

  coord_service(std::uint64_t seed, options o) : w(seed, config(o.loss)), replicas(o.replicas) {
    using namespace std::chrono_literals;
    for (std::uint32_t i = 0; i < replicas; ++i) servers.push_back(address::sim(i));
    consensus::raft_config rc;
    rc.members = servers;
    rc.election_timeout_min = 100ms;
    rc.election_timeout_max = 200ms;
    rc.heartbeat_interval = 30ms;
    rc.snapshot_every = 16;
    if (o.max_snapshot_bytes) rc.max_snapshot_bytes = o.max_snapshot_bytes;
    auto gen = std::make_shared<dcp::rng>(seed ^ o.entropy_salt);
    auto sc = o.server;
    sc.entropy = [gen] { return (*gen)(); };
    w.add_nodes(replicas, [rc, sc](sim::node_context& n) {
      auto& raft = n.add<raft_t>(raft_id, rc, storage::durable_storage(n.world().disk_of(n.index())), coord::machine{});
      n.add<server_t>(coord_id, raft, sc);
    });
    coord::client_config cc;
    cc.servers = servers;
    cc.ttl = 1s;
    cc.keepalive_every = 200ms;
    cc.request_timeout = 100ms;
    cc.give_up_after = o.give_up_after;
    w.add_nodes(o.clients, [cc](sim::node_context& n) { n.add<client_t>(coord_id, cc); });
    w.after_event([this] {
      for (std::uint32_t i = 0; i < replicas; ++i)
        if (auto* x = replica(i)) x->state_machine().check_invariants();
    });
  }
  static sim::config config(double loss) {
    using namespace std::chrono_literals;
    sim::config c;
    c.network.delay = sim::latency::uniform(1ms, 6ms);
    c.network.loss = loss;
    c.network.duplicate = loss;
    c.network.reorder = 2 * loss;
    return c;
  }
  client_t* client(std::uint32_t c) { return w.find<client_t>(replicas + c, coord_id); }
  address client_address(std::uint32_t c) const { return address::sim(replicas + c); }
  raft_t* replica(std::uint32_t i) { return w.find<raft_t>(i, raft_id); }
  raft_t* leader() {
    for (std::uint32_t i = 0; i < replicas; ++i)
      if (auto* r = replica(i); r && r->is_leader()) return r;
    return nullptr;
  }
};

}  // namespace dcp::test
