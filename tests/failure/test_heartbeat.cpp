#include <doctest/doctest.h>

#include <set>

#include "dcp/failure.hpp"
#include "dcp/sim.hpp"

using namespace dcp;
using sim::simulator;
using detector = failure::heartbeat<sim::env>;

namespace {
// n nodes on a ring, each monitoring its k successors.
void ring(simulator& w, std::uint32_t n, std::uint32_t k, failure::heartbeat_config cfg = {}) {
  w.add_nodes(n, [=](sim::node_context& c) {
    auto& d = c.add<detector>(detector::default_id, cfg);
    for (std::uint32_t j = 1; j <= k; ++j) d.monitor(address::sim((c.index() + j) % n));
  });
}
}  // namespace

TEST_CASE("heartbeat: completeness and accuracy at 10^4 nodes with loss, over seeds") {
  for (std::uint64_t seed : {1, 2, 3}) {
    sim::config c;
    c.network.delay = sim::latency::uniform(1ms, 30ms);
    c.network.loss = 0.05;
    c.report_unreachable = false;  // detect by silence alone
    simulator w(seed, c);
    constexpr std::uint32_t n = 10000, k = 3;
    ring(w, n, k, {1s, 5s});
    w.run_for(10s);
    // crash 5% of the nodes
    std::set<std::uint32_t> dead;
    while (dead.size() < n / 20) dead.insert(static_cast<std::uint32_t>(w.rng().below(n)));
    for (auto i : dead) w.crash(i);
    w.run_for(10s);
    std::size_t missed = 0, wrong = 0;
    for (std::uint32_t i = 0; i < n; ++i) {
      if (dead.contains(i)) continue;
      auto& d = w.get<detector>(i, detector::default_id);
      for (std::uint32_t j = 1; j <= k; ++j) {
        const std::uint32_t peer = (i + j) % n;
        if (dead.contains(peer) && !d.suspects(address::sim(peer))) ++missed;  // completeness
        if (!dead.contains(peer) && d.suspects(address::sim(peer))) ++wrong;   // accuracy
      }
    }
    CHECK(missed == 0);
    CHECK(wrong == 0);
  }
}

TEST_CASE("heartbeat: a partitioned peer is suspected, then restored after heal") {
  simulator w(4);
  ring(w, 4, 3, {100ms, 350ms});
  std::vector<std::string> events;
  auto& d0 = w.get<detector>(0, detector::default_id);
  d0.on_down([&](const address& p) { events.push_back("down " + p.to_string()); });
  d0.on_up([&](const address& p) { events.push_back("up " + p.to_string()); });
  w.run_for(1s);
  CHECK(events.empty());
  w.partition({{0, 1}, {2, 3}});
  w.run_for(1s);
  CHECK(d0.suspected() == std::vector<address>{address::sim(2), address::sim(3)});
  w.heal();
  w.run_for(1s);
  CHECK(d0.suspected().empty());
  REQUIRE(events.size() == 4);
  std::sort(events.begin(), events.begin() + 2);
  std::sort(events.begin() + 2, events.end());
  CHECK(events == std::vector<std::string>{"down sim:2", "down sim:3", "up sim:2", "up sim:3"});
}

TEST_CASE("heartbeat: a transport error suspects at once when trusted") {
  simulator w(5);
  ring(w, 3, 2, {1s, 10s});
  w.crash(1);
  w.run_for(1500ms);  // far less than the 10 s timeout
  CHECK(w.get<detector>(0, detector::default_id).suspects(address::sim(1)));
  CHECK_FALSE(w.get<detector>(0, detector::default_id).suspects(address::sim(2)));
}

TEST_CASE("heartbeat: configuration that cannot work is refused") {
  CHECK_THROWS_AS((failure::heartbeat_config{1s, 1s}.validate()), dcp::error);
  CHECK_THROWS_AS((failure::heartbeat_config{0s, 1s}.validate()), dcp::error);
}
