// A user's program: includes dcp from an install, runs a simulated cluster.
#include <dcp/failure.hpp>
#include <dcp/sim.hpp>

int main() {
  using detector = dcp::failure::heartbeat<dcp::sim::env>;
  dcp::sim::simulator world(42);
  world.add_nodes(3, [](dcp::sim::node_context& n) {
    auto& d = n.add<detector>(1);
    for (std::uint32_t j = 0; j < 3; ++j) d.monitor(dcp::address::sim(j));
  });
  world.run_for(std::chrono::seconds(5));
  world.crash(2);
  world.run_for(std::chrono::seconds(5));
  return world.get<detector>(0, 1).suspects(dcp::address::sim(2)) ? 0 : 1;
}
