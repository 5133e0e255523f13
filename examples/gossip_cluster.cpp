// A simulated cluster of 1,000 nodes composing three dcp protocols on each
// node: HyParView (membership), Plumtree (broadcast) over it, and Push-Sum
// (the average of one value per node) over the same membership. A third of
// the nodes crash; the overlay and the broadcast tree heal; a second
// broadcast reaches every live node, and a new Push-Sum epoch averages the
// survivors' values.
#include <cstdio>
#include <memory>
#include <vector>

#include "dcp/aggregate.hpp"
#include "dcp/gossip.hpp"
#include "dcp/membership.hpp"
#include "dcp/sim.hpp"

using namespace dcp;
using membership_t = membership::hyparview<sim::env>;
using broadcast_t = gossip::plumtree<sim::env, membership_t>;
using average_t = aggregate::push_sum<sim::env, membership_t>;

int main() {
  constexpr std::uint32_t n = 1000;
  sim::config net;
  net.network.delay = sim::latency::uniform(1ms, 20ms);
  sim::simulator world(42, net);
  auto delivered = std::make_shared<std::vector<int>>(n, 0);

  for (std::uint32_t i = 0; i < n; ++i) {
    world.add_node([i, delivered](sim::node_context& node) {
      membership::hyparview_config mc;
      if (i > 0) mc.contact = address::sim(0);  // everyone joins through node 0
      auto& overlay = node.add<membership_t>(membership_t::default_id, mc);
      auto& tree = node.add<broadcast_t>(broadcast_t::default_id, overlay);  // composed by reference
      tree.on_deliver([i, delivered](const gossip::delivery&) { ++(*delivered)[i]; });
      aggregate::push_sum_config ac;
      ac.input = aggregate::push_sum_input::average(i);  // node i's value is i
      node.add<average_t>(average_t::default_id, overlay, ac);
    });
    world.run_for(2ms);
  }
  world.run_for(10s);

  auto live_delivered = [&](int count) {
    std::uint32_t ok = 0, live = 0;
    for (std::uint32_t i = 0; i < n; ++i)
      if (world.is_up(i)) {
        ++live;
        ok += (*delivered)[i] == count;
      }
    std::printf("  %u of %u live nodes delivered %d broadcast(s)\n", ok, live, count);
  };

  world.get<broadcast_t>(5, broadcast_t::default_id).broadcast(as_bytes("hello"));
  world.run_for(2s);
  live_delivered(1);

  double sum = 0;
  std::uint32_t live = 0;
  for (std::uint32_t i = 0; i < n; ++i) {
    if (i % 3 == 1)
      world.crash(i);  // a third of the cluster
    else {
      sum += i;
      ++live;
    }
  }
  world.run_for(5s);  // HyParView repairs, Plumtree grafts around the holes
  world.get<broadcast_t>(6, broadcast_t::default_id).broadcast(as_bytes("still here"));
  world.run_for(5s);
  live_delivered(2);

  world.get<average_t>(0, average_t::default_id).restart();  // a new epoch: the survivors only
  world.run_for(300s);
  const double truth = sum / live;
  double worst = 0;
  for (std::uint32_t i = 0; i < n; ++i)
    if (auto* p = world.find<average_t>(i, average_t::default_id))
      worst = std::max(worst, std::abs(p->estimate().value_or(0) - truth) / truth);
  std::printf("  push-sum average of the survivors: true %.6f, worst relative error %.2e\n", truth, worst);
  return worst < 1e-6 ? 0 : 1;
}
