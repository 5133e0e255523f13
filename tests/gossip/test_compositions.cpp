#include <doctest/doctest.h>

#include <map>
#include <memory>

#include "dcp/aggregate.hpp"
#include "dcp/gossip.hpp"
#include "dcp/membership.hpp"
#include "dcp/search.hpp"
#include "dcp/sim.hpp"
#include "../touched.hpp"

namespace test_compositions {

using namespace dcp;
using sim::simulator;

// Every user of a Membership composes with every Membership.
template <class M> constexpr bool composes =
    gossip::Broadcast<gossip::eager_push<sim::env, M>>&& gossip::Broadcast<gossip::plumtree<sim::env, M>>&&
        gossip::Broadcast<gossip::anti_entropy<sim::env, M>>&& Protocol<aggregate::push_sum<sim::env, M>>&&
            Protocol<aggregate::pairwise_average<sim::env, M>>&& Protocol<search::unstructured<sim::env, M>>;
static_assert(composes<membership::static_group<sim::env>>);
static_assert(composes<membership::hyparview<sim::env>>);
static_assert(composes<membership::cyclon<sim::env>>);

TEST_CASE("plumtree over Cyclon and over a static group: exactly once everywhere, with duplication and reordering") {
  using cyc = membership::cyclon<sim::env>;
  using fixed_group = membership::static_group<sim::env>;
  for (int which = 0; which < 2; ++which) {
    CAPTURE(which);
    sim::config c;
    c.network.delay = sim::latency::uniform(1ms, 20ms);
    c.network.duplicate = 0.05;
    c.network.reorder = 0.1;
    simulator w(3 + which, c);
    constexpr std::uint32_t n = 100;
    auto count = std::make_shared<std::vector<std::map<std::uint64_t, int>>>(n);
    std::vector<address> all;
    for (std::uint32_t i = 0; i < n; ++i) all.push_back(address::sim(i));
    auto members = membership::static_group_config::of(all);
    dcp::test::after_every_event(w, [&w, which](std::uint32_t i) {  // plumtree's invariants, after every event
      if (which == 0) {
        if (auto* p = w.find<gossip::plumtree<sim::env, cyc>>(i, 21)) p->check_invariants();
      } else if (auto* p = w.find<gossip::plumtree<sim::env, fixed_group>>(i, 21)) {
        p->check_invariants();
      }
    });
    for (std::uint32_t i = 0; i < n; ++i) {
      w.add_node([=](sim::node_context& x) {
        auto record = [count, i](const gossip::delivery& d) { ++(*count)[i][d.id]; };
        if (which == 0) {
          membership::cyclon_config k;
          if (i) k.contact = address::sim(0);
          auto& m = x.add<cyc>(12, k);
          x.add<gossip::plumtree<sim::env, cyc>>(21, m).on_deliver(record);
        } else {
          auto& m = x.add<fixed_group>(10, members);
          x.add<gossip::plumtree<sim::env, fixed_group>>(21, m).on_deliver(record);
        }
      });
      w.run_for(5ms);
    }
    w.run_for(20s);
    for (int k = 0; k < 5; ++k) {
      std::uint64_t id = 0;
      if (which == 0)
        id = w.get<gossip::plumtree<sim::env, cyc>>(k, 21).broadcast(as_bytes("c"));
      else
        id = w.get<gossip::plumtree<sim::env, fixed_group>>(k, 21).broadcast(as_bytes("s"));
      w.run_for(5s);
      for (std::uint32_t i = 0; i < n; ++i) CHECK((*count)[i][id] == 1);
    }
  }
}

}  // namespace test_compositions
