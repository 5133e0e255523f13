#include <doctest/doctest.h>

#include <unistd.h>

#include <algorithm>
#include <functional>
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

// A frame handler that arms a zero-delay timer (Raft's group commit does, for
// every proposal) has it run at the end of the turn that delivered the
// frame, before anything else the event loop holds (a handler posted before
// the arm, here): what the timer sends leaves with the turn's answers, and
// no poll of the reactor comes between. Timers armed in that timer are due
// at once too, but run from a posted handler, so that a callback re-arming
// itself at zero delay cannot keep the loop from everything else. A callback
// that throws there surfaces from io_context::run, as from a timer firing,
// and the connection it ran on goes on working.
TEST_CASE_TEMPLATE("net: a zero-delay timer armed while frames are delivered runs at the end of that turn", Node,
                   net::plaintext_node, any_plaintext_node) {
  asio::io_context io;
  Node a(io, loopback()), b(io, loopback());
  auto& ea = a.template add<echo>(7);
  auto& eb = b.template add<echo>(7);
  auto& env = eb.environment();
  a.start();
  b.start();
  std::vector<std::string> order;
  int chain = 0;
  bool posted_ran_before_chain_end = false;
  std::function<void()> link = [&] {
    if (++chain == 200) {
      posted_ran_before_chain_end = std::find(order.begin(), order.end(), "posted before the chain") != order.end();
      return;
    }
    env.arm(duration::zero(), link);
  };
  eb.on_note = [&](const address& from, const std::string& body) {
    if (body == "arm") {
      asio::post(io, [&] { order.push_back("posted"); });
      eb.tell(from, "answer");
      env.arm(duration::zero(), [&, from] {
        order.push_back("timer");
        eb.tell(from, "from the timer");
        env.arm(duration::zero(), [&] { order.push_back("timer armed by the timer"); });
      });
    } else if (body == "chain") {
      asio::post(io, [&] { order.push_back("posted before the chain"); });
      env.arm(duration::zero(), link);
    } else if (body == "throw") {
      env.arm(duration::zero(), [] { throw std::runtime_error("a timer callback's bug"); });
    }
  };

  ea.tell(b.self(), "arm");
  REQUIRE(run_until(io, [&] { return ea.notes.size() == 2 && order.size() == 3; }));
  CHECK(order == std::vector<std::string>{"timer", "posted", "timer armed by the timer"});
  CHECK(ea.notes[0].body == "answer");
  CHECK(ea.notes[1].body == "from the timer");

  ea.tell(b.self(), "chain");
  REQUIRE(run_until(io, [&] { return chain == 200; }));
  CHECK(posted_ran_before_chain_end);

  ea.tell(b.self(), "throw");
  bool thrown = false;
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (!thrown && std::chrono::steady_clock::now() < deadline) {
    try {
      io.restart();
      io.run_for(5ms);
    } catch (const std::runtime_error& e) {
      thrown = std::string(e.what()) == "a timer callback's bug";
    }
  }
  CHECK(thrown);
  order.clear();
  ea.tell(b.self(), "arm");
  REQUIRE(run_until(io, [&] { return ea.notes.size() == 4 && order.size() == 3; }));
  CHECK(order == std::vector<std::string>{"timer", "posted", "timer armed by the timer"});
  a.stop();
  b.stop();
  io.restart();
  io.run();
}

}  // namespace test_due_timers
