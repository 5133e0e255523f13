#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "../seeds.hpp"  // fewer seeds under sanitizers
#include "dcp/coordinates.hpp"
#include "dcp/membership/static_group.hpp"
#include "dcp/sim.hpp"
#include "internet_model.hpp"

using namespace dcp;
using coordinates_test::internet;
using group_t = membership::static_group<sim::env>;
using viv = coordinates::vivaldi<sim::env, group_t>;

namespace {

membership::static_group_config everyone(std::size_t n) {
  std::vector<address> all;
  for (std::size_t i = 0; i < n; ++i) all.push_back(address::sim(static_cast<std::uint32_t>(i)));
  return membership::static_group_config::of(std::move(all));
}

/// Median over live pairs of |predicted - true| / true.
double median_error(sim::simulator& w, const internet& net) {
  std::vector<double> errs;
  for (std::size_t i = 0; i < net.size(); ++i)
    for (std::size_t j = i + 1; j < net.size(); ++j) {
      auto* a = w.find<viv>(static_cast<sim::node_index>(i), viv::default_id);
      auto* b = w.find<viv>(static_cast<sim::node_index>(j), viv::default_id);
      if (!a || !b) continue;
      errs.push_back(std::fabs(distance(a->position(), b->position()) - net.rtt(i, j)) / net.rtt(i, j));
    }
  return coordinates_test::median(errs);
}

}  // namespace

TEST_CASE("vivaldi: the update rule moves a node to the measured distance, and refuses what is not a number") {
  coordinates::vivaldi_state a;
  coordinates::coordinate far{100, 0, 0.1};
  for (int k = 0; k < 200; ++k) CHECK(a.observe(far, 0.01, 50, 0.3));  // the remote is sure of itself
  CHECK(std::fabs(distance(a.position(), far) - 50) < 0.5);
  CHECK(a.error() < 0.05);
  const auto before = a.position();
  const double nan = std::numeric_limits<double>::quiet_NaN(), inf = std::numeric_limits<double>::infinity();
  CHECK_FALSE(a.observe({nan, 0, 1}, 0.1, 50, 0.3));
  CHECK_FALSE(a.observe({0, inf, 1}, 0.1, 50, 0.3));
  CHECK_FALSE(a.observe({0, 0, -1}, 0.1, 50, 0.3));
  CHECK_FALSE(a.observe({1e300, 0, 1}, 0.1, 50, 0.3));
  CHECK_FALSE(a.observe(far, nan, 50, 0.3));
  CHECK_FALSE(a.observe(far, 1e9, 50, 0.3));
  CHECK_FALSE(a.observe(far, 0.1, 0, 0.3));
  CHECK_FALSE(a.observe(far, 0.1, -5, 0.3));
  CHECK_FALSE(a.observe(far, 0.1, inf, 0.3));
  CHECK(a.position() == before);
  a.check_invariants();
  CHECK_THROWS_AS(coordinates::vivaldi_state(coordinates::vivaldi_params{.cc = 0}), dcp::error);
}

TEST_CASE("vivaldi: over loss, duplication, reordering and crashes, the median error falls and converges under 25%") {
  const std::uint64_t n_seeds = dcp::test::last_seed(1, 12);
  for (std::uint64_t seed = 1; seed <= n_seeds; ++seed) {
    INFO("seed " << seed);
    const std::size_t n = 48;
    sim::config sc;
    sim::simulator w(seed, sc);
    internet net(n, seed);
    sim::link faults;
    faults.loss = 0.05 + 0.05 * static_cast<double>(seed % 3);
    faults.duplicate = 0.05;
    faults.reorder = 0.1;
    faults.reorder_delay = 20ms;
    net.install(w, faults);
    coordinates::vivaldi_config cfg;
    cfg.period = 250ms;
    cfg.rpc_timeout = 1s;
    const auto members = everyone(n);
    w.add_nodes(n, [&](sim::node_context& c) {
      auto& g = c.add<group_t>(group_t::default_id, members);
      c.add<viv>(viv::default_id, g, cfg);
    });
    const double start = median_error(w, net);
    w.run_for(3s);
    const double early = median_error(w, net);
    // Crash a few nodes for a while; their restarts begin again from the origin.
    for (std::uint32_t k = 0; k < 4; ++k) {
      const auto victim = static_cast<sim::node_index>(w.rng().below(n));
      if (w.is_up(victim)) w.crash(victim);
    }
    w.run_for(5s);
    for (std::uint32_t i = 0; i < n; ++i)
      if (!w.is_up(i)) w.restart(i);
    w.run_for(30s);
    const double late = median_error(w, net);
    for (std::uint32_t i = 0; i < n; ++i) w.get<viv>(i, viv::default_id).check_invariants();
    CHECK(start > 0.5);  // everyone at the origin: every prediction is the two heights alone
    CHECK(late < early);
    CHECK(late < 0.25);
  }
}

TEST_CASE("vivaldi: hostile messages are dropped and counted, and leave the coordinate alone") {
  sim::simulator w(7);
  internet net(3, 7);
  net.install(w);
  const auto members = everyone(2);  // node 2 is a stranger
  w.add_nodes(3, [&](sim::node_context& c) {
    auto& g = c.add<group_t>(group_t::default_id, members);
    c.add<viv>(viv::default_id, g, coordinates::vivaldi_config{});
  });
  auto& v = w.get<viv>(0, viv::default_id);
  const auto before = v.position();
  const double nan = std::numeric_limits<double>::quiet_NaN(), inf = std::numeric_limits<double>::infinity();
  v.on_message(address::sim(1), coordinates::vivaldi_msg::ping{1, {nan, 0, 1}, 0.5});
  v.on_message(address::sim(1), coordinates::vivaldi_msg::ping{2, {0, 0, inf}, 0.5});
  v.on_message(address::sim(1), coordinates::vivaldi_msg::ping{3, {1e12, 0, 1}, 0.5});
  v.on_message(address::sim(1), coordinates::vivaldi_msg::ping{4, {1, 1, 1}, -1});
  v.on_message(address::sim(2), coordinates::vivaldi_msg::ping{5, {1, 1, 1}, 0.5});   // not a member
  v.on_message(address::sim(1), coordinates::vivaldi_msg::pong{99, {1, 1, 1}, 0.5});  // no such ping
  const auto& m = w.metrics();
  CHECK(m.counter(viv::default_id, "vivaldi_bad_coordinate") == 4);
  CHECK(m.counter(viv::default_id, "vivaldi_not_member") == 1);
  CHECK(m.counter(viv::default_id, "vivaldi_unexpected_pong") == 1);
  CHECK(v.position() == before);
  CHECK_FALSE(v.known(address::sim(2)));
  CHECK_FALSE(v.observe(address::sim(1), {1, 1, 1}, 0.5, -1ms));
  CHECK(m.counter(viv::default_id, "vivaldi_bad_rtt") == 1);
  v.check_invariants();
}
