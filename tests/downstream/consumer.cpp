// A user's program, built three ways (find_package, add_subdirectory,
// FetchContent) with -Wall -Wextra -Wshadow -Werror: dcp's headers must not
// warn in a strict user build, and must not change what the user's own code
// may use.
#include <dcp/failure.hpp>
#include <dcp/net.hpp>
#include <dcp/sim.hpp>
#include <dcp/version.hpp>

#include <asio/io_context.hpp>
#include <asio/io_service.hpp>

#ifdef ASIO_NO_DEPRECATED
#error "linking dcp must not put ASIO_NO_DEPRECATED on the user's code"
#endif

int main() {
  static_assert(dcp::version.major == DCP_VERSION_MAJOR);

  // The user's own Asio code may use the deprecated names.
  asio::io_service legacy;
  bool ran = false;
  legacy.post([&] { ran = true; });
  legacy.run();
  if (!ran) return 1;

  // A simulated cluster: a crashed node is suspected.
  using sim_detector = dcp::failure::heartbeat<dcp::sim::env>;
  dcp::sim::simulator world(42);
  world.add_nodes(3, [](dcp::sim::node_context& n) {
    auto& d = n.add<sim_detector>(1);
    for (std::uint32_t j = 0; j < 3; ++j) d.monitor(dcp::address::sim(j));
  });
  world.run_for(std::chrono::seconds(5));
  world.crash(2);
  world.run_for(std::chrono::seconds(5));
  if (!world.get<sim_detector>(0, 1).suspects(dcp::address::sim(2))) return 2;

  // A real node over TCP (instantiates the Asio runtime's templates).
  asio::io_context io;
  dcp::net::node n(io, dcp::net::config{});
  n.add<dcp::failure::heartbeat<dcp::net::env>>(1);
  n.start();
  io.run_for(std::chrono::milliseconds(10));
  n.stop();
  return 0;
}
