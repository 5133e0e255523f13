#include "harness.hpp"

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
