// Five simulated members share a lock (Ricart–Agrawala) and elect a leader
// (Bully). Swap the algorithm by changing one alias: every dcp mutex has the
// same API (lock with a completion, try_lock, unlock, holding, guard), every
// election too (start_election, leader, on_leader_changed).
#include <cstdio>

#include "dcp/election.hpp"
#include "dcp/group.hpp"
#include "dcp/mutex.hpp"
#include "dcp/sim.hpp"

using namespace dcp;
using lock_type = mutex::ricart_agrawala<sim::env>;  // or centralized, lamport, maekawa, token_ring, ...
using election_type = election::bully<sim::env>;

int main() {
  constexpr std::uint32_t n = 5;
  sim::config net;
  net.network.delay = sim::latency::uniform(1ms, 5ms);
  sim::simulator world(42, net);
  world.add_nodes(n, [](sim::node_context& node) {
    const auto members = group::static_group::sim(n);
    node.add<lock_type>(lock_type::default_id, members, mutex::ricart_agrawala_config{.request_timeout = 2s});
    node.add<election_type>(election_type::default_id, members);
  });

  int counter = 0;  // the shared resource
  for (std::uint32_t i = 0; i < n; ++i) {
    auto& m = world.get<lock_type>(i, lock_type::default_id);
    m.lock([&world, &m, &counter, i](std::error_code ec) {
      if (ec) {
        std::printf("node %u: no lock: %s\n", i, ec.message().c_str());
        return;
      }
      mutex::guard held(m);  // unlocks at the end of the scope
      ++counter;
      std::printf("%8.3f ms  node %u holds the lock, counter = %d\n", to_millis(world.now().time_since_epoch()), i,
                  counter);
    });
  }
  world.run_for(1s);

  auto& e0 = world.get<election_type>(0, election_type::default_id);
  e0.on_leader_changed([](const std::optional<address>& l) {
    std::printf("node 0: leader is now %s\n", l ? l->to_string().c_str() : "unknown");
  });
  std::printf("leader: %s; crashing it\n", e0.leader()->to_string().c_str());
  world.crash(n - 1);
  world.run_for(5s);
  std::printf("leader: %s, messages sent in all: %llu\n", e0.leader()->to_string().c_str(),
              static_cast<unsigned long long>(world.metrics().total().sent));
  return counter == static_cast<int>(n) && e0.leader() == address::sim(n - 2) ? 0 : 1;
}
