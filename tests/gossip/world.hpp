#pragma once
// A simulated overlay for the gossip tests: HyParView on every node, a
// broadcast protocol over it, and a record of every delivery.
#include <cstdint>
#include <memory>
#include <unordered_map>
#include <vector>

#include "dcp/gossip.hpp"
#include "dcp/membership.hpp"
#include "dcp/sim.hpp"
#include "../touched.hpp"

namespace gworld {

using hpv = dcp::membership::hyparview<dcp::sim::env>;
constexpr dcp::protocol_id hid = hpv::default_id, bid = 20;

/// deliveries[node][message id] = times delivered (this incarnation and before).
struct record {
  std::vector<std::unordered_map<std::uint64_t, int>> deliveries;
  std::uint64_t twice = 0;  ///< deliveries beyond the first, anywhere
  std::uint32_t max_hops = 0;
  void saw(std::uint32_t node, const dcp::gossip::delivery& d) {
    if (++deliveries[node][d.id] > 1) ++twice;
    max_hops = std::max(max_hops, d.hops);
  }
  /// Up nodes that have not delivered `id`.
  std::size_t missing(dcp::sim::simulator& w, std::uint64_t id) const {
    std::size_t m = 0;
    for (std::uint32_t i = 0; i < w.size(); ++i)
      if (w.is_up(i) && !deliveries[i].contains(id)) ++m;
    return m;
  }
};

/// After every event, on the node it ran on: the broadcast's
/// check_invariants (which aborts on a violation). HyParView's own are the
/// membership suite's (tests/membership): checked here too, they would
/// triple these tests' time (its views are most of a node's state).
template <class B> void check_invariants(dcp::sim::simulator& w) {
  dcp::test::after_every_event(w, [&w](std::uint32_t i) {
    if (auto* b = w.find<B>(i, bid)) b->check_invariants();
  });
}

/// n nodes, joined one every 5 ms through node 0, each hosting B<env, hpv> as
/// protocol bid; the invariants checked after every event (check_invariants).
template <class B, class... Args> std::shared_ptr<record> build(dcp::sim::simulator& w, std::uint32_t n, Args... args) {
  check_invariants<B>(w);
  auto rec = std::make_shared<record>();
  rec->deliveries.resize(n);
  for (std::uint32_t i = 0; i < n; ++i) {
    w.add_node([rec, i, args...](dcp::sim::node_context& c) {
      dcp::membership::hyparview_config k;
      if (i) k.contact = dcp::address::sim(0);
      auto& m = c.add<hpv>(hid, k);
      auto& b = c.add<B>(bid, m, args...);
      b.on_deliver([rec, i](const dcp::gossip::delivery& d) { rec->saw(i, d); });
    });
    w.run_for(std::chrono::milliseconds(5));
  }
  return rec;
}

inline std::uint32_t random_up(dcp::sim::simulator& w) {
  while (true) {
    auto i = static_cast<std::uint32_t>(w.rng().below(w.size()));
    if (w.is_up(i)) return i;
  }
}

}  // namespace gworld
