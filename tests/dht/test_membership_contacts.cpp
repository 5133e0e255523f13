#include <doctest/doctest.h>

#include <set>

#include "dcp/dht/kademlia.hpp"
#include "dcp/dht/membership_contacts.hpp"
#include "dcp/membership/hyparview.hpp"
#include "dcp/sim.hpp"
#include "../seeds.hpp"

namespace test_membership_contacts {

using namespace dcp;
using namespace std::chrono_literals;
using kad = dht::kademlia<sim::env>;
using hpv = membership::hyparview<sim::env>;
constexpr protocol_id hid = 40, kid = kad::default_id;

namespace {

/// n nodes, each HyParView + Kademlia bridged; they know one address, node 0's,
/// and only HyParView is told it. Node 0 founds both overlays.
void build(sim::simulator& w, std::uint32_t n, bool bridged = true) {
  for (std::uint32_t i = 0; i < n; ++i) {
    w.add_node([i, bridged](sim::node_context& c) {
      membership::hyparview_config hc;
      hc.keepalive_period = 500ms;
      hc.suspect_after = 1500ms;
      if (i != 0) hc.contact = address::sim(0);
      auto& m = c.add<hpv>(hid, hc);
      dht::kademlia_config kc;
      kc.k = 4;
      kc.rpc_timeout = 150ms;
      kc.refresh_interval = 1h;
      kc.check_interval = 1h;  // liveness from the membership alone (and from lookups)
      auto& r = c.add<kad>(kid, kc);
      if (bridged) dht::take_contacts_from(m, r);
      if (i == 0) r.bootstrap({});
    });
    w.run_for(10ms);
  }
}

/// The live node XOR-closest to `key`: the truth a lookup must find.
address owner_of(sim::simulator& w, std::uint32_t n, const node_id& key) {
  std::optional<address> best;
  node_id best_d;
  for (sim::node_index i = 0; i < n; ++i)
    if (auto* r = w.find<kad>(i, kid)) {
      const auto d = kad::distance(key, r->self().id);
      if (!best || d < best_d) best = r->self().addr, best_d = d;
    }
  return *best;
}

}  // namespace

// A node that knows one address, told to its membership alone, joins the DHT
// too, and the DHT it joins routes correctly.
TEST_CASE("membership contacts: nodes that join HyParView through one address join Kademlia, whose lookups are right") {
  constexpr std::uint32_t n = 40;
  for (std::uint64_t seed = 1; seed <= dcp::test::last_seed(1, 6); ++seed) {
    CAPTURE(seed);
    sim::config sc;
    sc.network.delay = sim::latency::uniform(1ms, 10ms);
    sc.network.loss = 0.01;
    sim::simulator w(seed, sc);
    build(w, n);
    w.run_for(5s);
    for (sim::node_index i = 0; i < n; ++i) {
      CAPTURE(i);
      REQUIRE(w.get<kad>(i, kid).joined());
      CHECK(w.get<kad>(i, kid).contacts() >= 4);
    }
    CHECK(w.metrics().counter(kid, "introduced") > 0);  // neighbours after the join were introduced too
    int right = 0, asked = 0;
    for (int q = 0; q < 40; ++q) {
      const auto key = node_id::hash("key" + std::to_string(q));
      const auto truth = owner_of(w, n, key);
      ++asked;
      w.get<kad>(static_cast<sim::node_index>(w.rng().below(n)), kid)
          .lookup(key, 1, [&, truth](dcp::result<dht::lookup_result> r) {
            if (r && !r->owners.empty() && r->owners.front().addr == truth) ++right;
          });
    }
    w.run_for(3s);
    // Every lookup right. A join through a neighbour that was itself still
    // joining ended with the nodes closest to the newcomer never hearing of it
    // (3 of 40 wrong on seed 4), until a join needed a joined node's answer.
    CHECK(right == asked);
  }
}

// A neighbour the membership declares down is probed by the router at once,
// and dropped when it stays silent: with Kademlia's own periodic check off,
// crashed nodes leave the routing tables of their HyParView neighbours within
// the membership's detection time, and only through the bridge.
TEST_CASE("membership contacts: a crashed neighbour leaves the router's table within the membership's detection time") {
  constexpr std::uint32_t n = 30;
  for (bool bridged : {true, false}) {
    CAPTURE(bridged);
    std::size_t stale = 0, watched = 0;
    for (std::uint64_t seed = 1; seed <= dcp::test::last_seed(1, 4); ++seed) {
      CAPTURE(seed);
      sim::config sc;
      sc.network.delay = sim::latency::uniform(1ms, 10ms);
      sc.report_unreachable = false;  // silent crashes (a paused host, a cut link): only silence tells
      sim::simulator w(seed, sc);
      build(w, n, bridged);
      if (!bridged)  // joined the plain way, through node 0
        for (sim::node_index i = 1; i < n; ++i) w.get<kad>(i, kid).bootstrap({{node_id{}, address::sim(0)}});
      w.run_for(5s);
      std::set<sim::node_index> victims;
      while (victims.size() < 5) victims.insert(static_cast<sim::node_index>(1 + w.rng().below(n - 1)));
      // who, among the survivors, has a victim as an active neighbour and a contact
      std::vector<std::pair<sim::node_index, address>> pairs;
      for (sim::node_index i = 0; i < n; ++i) {
        if (victims.count(i)) continue;
        for (auto v : victims)
          if (w.get<hpv>(i, hid).is_active(address::sim(v)) && w.get<kad>(i, kid).knows(address::sim(v)))
            pairs.push_back({i, address::sim(v)});
      }
      for (auto v : victims) w.crash(v);
      w.run_for(4s);  // suspect_after 1.5 s, then failure_threshold pings of 150 ms
      for (auto& [i, v] : pairs) {
        ++watched;
        stale += w.get<kad>(i, kid).knows(v);
      }
    }
    CHECK(watched > 0);
    if (bridged)
      CHECK(stale == 0);
    else
      CHECK(stale > 0);  // the same crashes, without the bridge, linger: what the bridge is for
  }
}

// Hostile or careless membership events: a flood of neighbours before the
// router has joined adds at most k seeds, and a node never introduces itself.
TEST_CASE("membership contacts: introductions are bounded and ignore the node itself") {
  sim::simulator w(3);
  constexpr std::uint32_t silent = 12;
  for (std::uint32_t i = 0; i <= silent; ++i)
    w.add_node([](sim::node_context& c) {
      dht::kademlia_config kc;
      kc.k = 4;
      c.add<kad>(kid, kc);
    });
  for (sim::node_index i = 1; i <= silent; ++i) w.crash(i);  // every seed is silent: attempts go on
  std::set<sim::node_index> asked;
  w.on_trace([&](const sim::trace_event& e) {
    if (e.what == sim::trace_event::kind::send && e.from == 0 && e.protocol == kid) asked.insert(e.to);
  });
  auto& r = w.get<kad>(0, kid);
  r.introduce(address::sim(0));
  for (sim::node_index i = 1; i <= silent; ++i) r.introduce(address::sim(i));
  w.run_for(10s);
  w.on_trace({});
  CHECK_FALSE(r.joined());
  CHECK(r.contacts() == 0);
  CHECK(w.metrics().counter(kid, "join_attempts") > 1);
  CHECK(asked.size() == 4);  // k seeds kept, the rest ignored
  CHECK(asked.count(0) == 0);
}

}  // namespace test_membership_contacts
