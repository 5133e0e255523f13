#include <doctest/doctest.h>

#include <unistd.h>

#include <vector>

#include "dcp/net.hpp"
#include "echo.hpp"

namespace test_due_timers {

using namespace dcp;
using dcp::test::run_until;
using echo = dcp::test::echo<net::env>;

// Timers already due when armed (arm(0), Raft's group-commit flush) run from a
// posted handler rather than by re-arming the node's steady_timer: the same
// order and cancel rules as every other timer must hold.
TEST_CASE("net::env: timers due at once keep deadline order, arm order on ties, and exact cancel") {
  asio::io_context io;
  net::node a(io, {});
  auto& env = a.add<echo>(7).environment();
  std::vector<int> fired;

  // A timer armed earlier with an earlier deadline, due by now, runs first.
  env.arm(1ms, [&] { fired.push_back(1); });
  ::usleep(3000);
  env.arm(duration::zero(), [&] { fired.push_back(2); });
  const timer_id gone = env.arm(duration::zero(), [&] { fired.push_back(99); });
  env.arm(duration::zero(), [&] {
    fired.push_back(3);
    env.arm(duration::zero(), [&] { fired.push_back(5); });  // armed from a callback: runs after
  });
  env.arm(duration::zero(), [&] { fired.push_back(4); });
  env.arm(20ms, [&] { fired.push_back(6); });  // a later deadline still wakes the node
  CHECK(env.cancel(gone));
  CHECK(!env.cancel(gone));
  const time_point t0 = env.now();
  REQUIRE(run_until(io, [&] { return fired.size() == 6; }));
  CHECK(fired == std::vector<int>{1, 2, 3, 4, 5, 6});
  CHECK(env.now() - t0 >= 15ms);

  // Cancelled between arm and the posted drain: never runs; stopped: nothing runs.
  const timer_id late = env.arm(duration::zero(), [&] { fired.push_back(98); });
  CHECK(env.cancel(late));
  a.stop();
  env.arm(duration::zero(), [&] { fired.push_back(97); });
  io.restart();
  io.run_for(10ms);
  CHECK(fired.size() == 6);
}

}  // namespace test_due_timers
