#include "../seeds.hpp"  // fewer seeds under sanitizers
#include "harness.hpp"

namespace test_centralized {

using namespace dcp;
using harness::simulator;
using central = mutex::centralized<sim::env>;

namespace {
void build(simulator& w, std::uint32_t n, mutex::centralized_config cfg = {}) {
  w.add_nodes(n, [=](sim::node_context& c) { c.add<central>(central::default_id, group::static_group::sim(n), cfg); });
}
}  // namespace

TEST_CASE("centralized: safety and liveness over 1000 seeds with delays, reordering, duplicates") {
  for (std::uint64_t seed = 1; seed <= harness::seeds; ++seed) {
    auto cfg = harness::random_network();
    cfg.network.duplicate = 0.1;
    simulator w(seed, cfg);
    const auto n = static_cast<std::uint32_t>(3 + seed % 6);
    build(w, n);
    auto out = harness::run<central>(w, central::default_id, {.nodes = n});
    INFO("seed " << seed);
    REQUIRE(out.max_holders <= 1);
    REQUIRE(out.errors == 0);
    REQUIRE(out.granted == static_cast<int>(n) * 3);
  }
}

TEST_CASE("centralized: the harness sees two holders when the algorithm is misconfigured") {
  // Each half of the group believes in its own coordinator: two locks. The
  // property checks must notice, or they could not fail.
  int worst = 0;
  for (std::uint64_t seed = 1; seed <= dcp::test::last_seed(1, 20); ++seed) {
    simulator w(seed, harness::random_network());
    w.add_nodes(4, [](sim::node_context& c) {
      mutex::centralized_config cfg;
      cfg.coordinator = address::sim(c.index() < 2 ? 0 : 2);
      c.add<central>(central::default_id, group::static_group::sim(4), cfg);
    });
    auto out = harness::run<central>(w, central::default_id, {.nodes = 4, .rounds = 5, .hold_max = 20ms});
    worst = std::max(worst, out.max_holders);
  }
  CHECK(worst == 2);
}

TEST_CASE("centralized: a crashed coordinator fails waiters with member_failed; a crashed holder is released") {
  harness::crash_property<central>(mutex::centralized_config{.request_timeout = 2s}, false);
  simulator w(7, harness::random_network());
  build(w, 4);
  auto& c1 = w.get<central>(1, central::default_id);
  auto& c2 = w.get<central>(2, central::default_id);
  std::error_code got1 = errc::busy, got2 = errc::busy;
  c1.lock([&](std::error_code ec) { got1 = ec; });
  w.run_for(100ms);
  REQUIRE(!got1);
  c2.lock([&](std::error_code ec) { got2 = ec; });
  w.run_for(100ms);
  CHECK(got2 == errc::busy);  // still waiting
  w.crash(1);                 // the holder dies; the coordinator's probe finds out
  w.run_for(3s);
  CHECK(!got2);
  CHECK(w.get<central>(0, central::default_id).holder() == address::sim(2));
  w.crash(0);
  c2.unlock();
  std::error_code got3 = errc::busy;
  c2.lock([&](std::error_code ec) { got3 = ec; });
  w.run_for(3s);
  CHECK(got3 == errc::member_failed);
  CHECK(c2.state() == mutex::lock_state::idle);
}

TEST_CASE("mutex api: guard, busy, unlock misuse, cancel") {
  simulator w(3, harness::random_network());
  build(w, 3);
  auto& m = w.get<central>(1, central::default_id);
  CHECK_THROWS_AS(m.unlock(), dcp::error);
  std::vector<std::error_code> results;
  m.lock([&](std::error_code ec) { results.push_back(ec); });
  m.lock([&](std::error_code ec) { results.push_back(ec); });  // already waiting: busy
  w.run_for(1s);
  REQUIRE(results.size() == 2);
  CHECK(results[0] == errc::busy);
  CHECK(!results[1]);
  {
    mutex::guard g(m);
    CHECK(g.owns_lock());
  }
  CHECK(m.state() == mutex::lock_state::idle);
  w.run_for(100ms);  // the release reaches the coordinator
  CHECK_THROWS_AS(mutex::guard<central>{m}, dcp::error);
  auto& m2 = w.get<central>(2, central::default_id);
  auto& m0 = w.get<central>(0, central::default_id);
  REQUIRE(m0.try_lock());  // the coordinator itself, lock free: no message needed
  CHECK_FALSE(m2.try_lock());
  m2.lock([&](std::error_code ec) { results.push_back(ec); });
  w.run_for(100ms);
  m2.cancel();
  CHECK(results.size() == 2);  // its handler never runs inside cancel()
  w.run_posted();              // but once the event the test played is over
  REQUIRE(results.size() == 3);
  CHECK(results[2] == errc::cancelled);
  m0.unlock();
  w.run_for(100ms);
  CHECK(m2.state() == mutex::lock_state::idle);
  CHECK(m0.holder() == std::nullopt);  // the withdrawn request was not granted to anyone
}

TEST_CASE("centralized: grants in the order requests reach the coordinator (FIFO); 1000 seeds") {
  for (std::uint64_t seed = 1; seed <= harness::seeds; ++seed) {
    simulator w(seed, harness::random_network());
    const auto n = static_cast<std::uint32_t>(3 + seed % 6);
    build(w, n);
    std::vector<std::uint32_t> arrivals;  // remote requests as the coordinator (node 0) receives them
    w.on_trace([&](const sim::trace_event& e) {
      if (e.what == sim::trace_event::kind::deliver && e.to == 0 && e.protocol == central::default_id &&
          e.type == mutex::centralized_msg::request::wire_id)
        arrivals.push_back(e.from);
    });
    auto out = harness::run<central>(w, central::default_id, {.nodes = n});
    w.on_trace({});
    std::vector<std::uint32_t> granted;  // the coordinator's own requests skip the network: leave them out
    for (auto& e : out.entries)
      if (e.node != 0) granted.push_back(e.node);
    INFO("seed " << seed);
    REQUIRE(out.granted == static_cast<int>(n) * 3);
    REQUIRE(granted == arrivals);
  }
}

TEST_CASE("centralized: under message loss, still one holder; waiters time out instead of hanging") {
  harness::loss_property<central>(mutex::centralized_config{.request_timeout = 1s}, false);
  // Found by a 20,000-seed soak: a PROBE overtaking the GRANT it asks about
  // made the waiting client return the grant, then take it when it arrived.
  harness::loss_property<central>(mutex::centralized_config{.request_timeout = 1s}, false, 1, 12986);
}

TEST_CASE("centralized: a lost RELEASE is recovered by the coordinator's probe") {
  simulator w(11, harness::random_network());
  build(w, 3, {.request_timeout = 10s, .probe_interval = 200ms});
  auto& c1 = w.get<central>(1, central::default_id);
  auto& c2 = w.get<central>(2, central::default_id);
  bool got1 = false, got2 = false;
  c1.lock([&](std::error_code ec) { got1 = !ec; });
  w.run_for(100ms);
  REQUIRE(got1);
  w.block(1, 0);  // the RELEASE is lost
  c1.unlock();
  w.run_for(50ms);
  w.heal();
  c2.lock([&](std::error_code ec) { got2 = !ec; });
  w.run_for(1s);
  CHECK(got2);
  CHECK(w.metrics().counter(central::default_id, "released_on_probe") >= 1);
}

static_assert(mutex::Mutex<mutex::centralized<sim::env>> && mutex::Mutex<mutex::ricart_agrawala<sim::env>> &&
                  mutex::Mutex<mutex::lamport<sim::env>> && mutex::Mutex<mutex::suzuki_kasami<sim::env>> &&
                  mutex::Mutex<mutex::raymond<sim::env>> && mutex::Mutex<mutex::maekawa<sim::env>> &&
                  mutex::Mutex<mutex::token_ring<sim::env>>,
              "every algorithm offers the one mutex API");

TEST_CASE("mutex: a node outside its group, or a bad configuration, is refused with a clear error") {
  simulator w(1);
  CHECK_THROWS_WITH_AS(w.add_node([](sim::node_context& c) {
    c.add<mutex::ricart_agrawala<sim::env>>(51, group::static_group{address::sim(7)});
  }),
                       doctest::Contains("not a member of its group"), dcp::error);
  CHECK_THROWS_AS(w.add_node([](sim::node_context& c) {
    c.add<mutex::token_ring<sim::env>>(56, group::static_group::sim(1), mutex::token_ring_config{.token_timeout = 0s});
  }),
                  dcp::error);
  CHECK_THROWS_AS(w.add_node([](sim::node_context& c) {
    c.add<central>(50, group::static_group::sim(1), mutex::centralized_config{.coordinator = address::sim(9)});
  }),
                  dcp::error);
  CHECK_THROWS_AS(group::static_group(std::vector<address>{}), dcp::error);
}

TEST_CASE("mutex: malformed or foreign messages are dropped and counted, state untouched") {
  simulator w(2, harness::random_network());
  harness::build<mutex::suzuki_kasami<sim::env>>(w, 3, mutex::suzuki_kasami_config{});
  auto& m1 = w.get<mutex::suzuki_kasami<sim::env>>(1, 53);
  // A token with the wrong shape, and one claiming a queue member that does not exist.
  m1.on_message(address::sim(0), mutex::suzuki_kasami_msg::token{{0, 0}, {}});
  m1.on_message(address::sim(0), mutex::suzuki_kasami_msg::token{{0, 0, 0}, {7}});
  m1.on_message(address::sim(9), mutex::suzuki_kasami_msg::request{1});
  CHECK_FALSE(m1.has_token());
  CHECK(w.metrics().counter(53, "malformed_token") == 2);
  CHECK(w.metrics().counter(53, "not_a_member") == 1);
}

}  // namespace test_centralized
