#include <doctest/doctest.h>

#include <unistd.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "dcp/net.hpp"
#include "dcp/net/any_transport.hpp"
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

// env.post: the completions of a call run after it, as one turn, in the
// order posted (what they post too), ahead of the timers then due; a stopped
// node runs none.
TEST_CASE("net::env: posted work runs after the call, in order, and never once the node stopped") {
  asio::io_context io;
  net::node a(io, {});
  auto& env = a.add<echo>(7).environment();
  std::vector<int> ran;
  env.arm(duration::zero(), [&] { ran.push_back(4); });
  env.post([&] {
    ran.push_back(1);
    env.post([&] { ran.push_back(3); });  // posted by posted work: same pass
  });
  env.post([&] { ran.push_back(2); });
  CHECK(ran.empty());  // not inside the call
  REQUIRE(run_until(io, [&] { return ran.size() == 4; }));
  CHECK(ran == std::vector<int>{1, 2, 3, 4});

  env.post([&] { ran.push_back(98); });
  a.stop();
  env.post([&] { ran.push_back(99); });
  io.restart();
  io.run_for(10ms);
  CHECK(ran.size() == 4);
}

/// any_node over plaintext TCP, built as the plain nodes are: Node(io, cfg).
/// coord_replica runs on one: the turns must reach through the type erasure.
struct any_plaintext_node : net::any_node {
  any_plaintext_node(asio::io_context& io, net::config c)
      : net::any_node(io, std::move(c), net::any_transport::options::plaintext()) {}
};

net::config loopback() {
  net::config c;
  c.listen = address::loopback(0);
  c.seed = 11;
  return c;
}

// Timers fire as transport turns (timer_queue::run_in): what a callback
// sends is held and written when the firing ends, one write per connection.
// A callback that throws ends the turn too: what it sent before the throw
// still leaves, the exception surfaces from io_context::run as before, and
// the node goes on: later timers fire, later sends leave.
TEST_CASE_TEMPLATE("net: timers fire as turns; what a throwing callback sent still leaves, and the node goes on", Node,
                   net::plaintext_node, any_plaintext_node) {
  asio::io_context io;
  Node a(io, loopback()), b(io, loopback());
  auto& ea = a.template add<echo>(7);
  auto& eb = b.template add<echo>(7);
  auto& env = eb.environment();
  a.start();
  b.start();
  ea.tell(b.self(), "hello");  // so that B's way back to A is up: its sends then go through the turn's writes
  REQUIRE(run_until(io, [&] { return eb.notes.size() == 1; }));

  env.arm(duration::zero(), [&] {
    for (int i = 0; i < 50; ++i) eb.tell(a.self(), "one-" + std::to_string(i));
  });
  env.arm(duration::zero(), [&] {
    eb.tell(a.self(), "before the throw");
    throw std::runtime_error("a timer callback's bug");
  });
  bool thrown = false;
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (!thrown && std::chrono::steady_clock::now() < deadline) {
    try {
      io.restart();
      io.run_for(5ms);
    } catch (const std::runtime_error& e) { thrown = std::string(e.what()) == "a timer callback's bug"; }
  }
  REQUIRE(thrown);
  REQUIRE(run_until(io, [&] { return ea.notes.size() == 51; }));
  for (int i = 0; i < 50; ++i) CHECK(ea.notes[static_cast<std::size_t>(i)].body == "one-" + std::to_string(i));
  CHECK(ea.notes[50].body == "before the throw");

  bool later = false;
  env.arm(2ms, [&] {
    later = true;
    eb.tell(a.self(), "after");
  });
  REQUIRE(run_until(io, [&] { return later && ea.notes.size() == 52; }));
  CHECK(ea.notes[51].body == "after");
  a.stop();
  b.stop();
  io.restart();
  io.run();
}

}  // namespace test_due_timers
