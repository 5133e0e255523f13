#include <doctest/doctest.h>

#include "../seeds.hpp"  // fewer seeds under sanitizers
#include "../touched.hpp"

#include "dcp/membership.hpp"
#include "dcp/sim.hpp"
#include "overlay.hpp"

namespace test_hyparview {

using namespace dcp;
using sim::simulator;
using hpv = membership::hyparview<sim::env>;
constexpr protocol_id hid = hpv::default_id;

static_assert(membership::Membership<hpv>);

namespace {

sim::config faulty_network() {
  sim::config c;
  c.network.delay = sim::latency::uniform(1ms, 20ms);
  c.network.loss = 0.02;
  c.network.duplicate = 0.02;
  c.network.reorder = 0.05;
  return c;
}

// The checks that hold after every single event, on the node it touched:
// hyparview::check_invariants (views bounded, free of self and duplicates,
// disjoint; it aborts on a violation), and the bounds as the public
// observers report them.
void check_views(simulator& w, std::uint32_t i, std::size_t& violations) {
  auto* p = w.find<hpv>(i, hid);
  if (!p) return;
  p->check_invariants();
  if (p->active_count() > p->config().active_size || p->passive_view().size() > p->config().passive_size) ++violations;
}

// Adds n nodes one every 10 ms, each joining through node 0; watches every event.
void build(simulator& w, std::uint32_t n, std::size_t& violations, membership::hyparview_config cfg = {}) {
  dcp::test::after_every_event(w, [&w, &violations](std::uint32_t i) { check_views(w, i, violations); });
  for (std::uint32_t i = 0; i < n; ++i) {
    w.add_node([cfg, i](sim::node_context& c) {
      auto k = cfg;
      if (i != 0) k.contact = address::sim(0);
      c.add<hpv>(hid, k);
    });
    w.run_for(10ms);
  }
}

void quiet_down(simulator& w, duration settle) {
  w.set_network(sim::link{sim::latency::uniform(1ms, 20ms)});
  w.run_for(settle);
  w.run_until_quiet(w.now() + 10s);
}

}  // namespace

TEST_CASE("hyparview: views bounded and disjoint always; symmetric and connected once quiet (many seeds, faults)") {
  for (std::uint64_t seed = 1; seed <= dcp::test::last_seed(1, 8); ++seed) {
    CAPTURE(seed);
    simulator w(seed, faulty_network());
    std::size_t violations = 0;
    build(w, 150, violations);
    w.run_for(20s);  // shuffles and repairs under loss, duplication, reordering
    quiet_down(w, 8s);
    w.after_event(nullptr);
    CHECK(violations == 0);
    const auto g = overlay::views<hpv>(w, hid);
    CHECK(overlay::one_sided(w, g) == 0);
    CHECK(overlay::components(w, g) == 1);
    std::size_t full = 0, passive = 0;
    for (std::uint32_t i = 0; i < w.size(); ++i) {
      CHECK(!g[i].empty());
      full += g[i].size() == 5;
      passive += w.get<hpv>(i, hid).passive_view().size();
    }
    // Random walks and shuffles fill the views: most nodes end with full views.
    CHECK(full >= w.size() * 8 / 10);
    CHECK(passive >= w.size() * 25);
  }
}

TEST_CASE("hyparview: repair after a mass failure (half the nodes at once), by transport errors and by silence") {
  for (bool transport : {true, false}) {
    for (std::uint64_t seed = 11; seed <= dcp::test::last_seed(11, 14); ++seed) {
      CAPTURE(seed);
      CAPTURE(transport);
      auto c = faulty_network();
      c.report_unreachable = transport;
      simulator w(seed, c);
      std::size_t violations = 0;
      build(w, 200, violations);
      w.run_for(10s);
      for (auto v : overlay::victims(w, 200, 100)) w.crash(v);
      w.run_for(15s);
      quiet_down(w, 8s);
      w.after_event(nullptr);
      CHECK(violations == 0);
      const auto g = overlay::views<hpv>(w, hid);
      std::size_t dead_links = 0, isolated = 0;
      for (std::uint32_t i = 0; i < w.size(); ++i) {
        if (!w.is_up(i)) continue;
        isolated += g[i].empty();
        for (auto j : g[i]) dead_links += !w.is_up(j);
      }
      CHECK(dead_links == 0);
      CHECK(isolated == 0);
      CHECK(overlay::one_sided(w, g) == 0);
      CHECK(overlay::components(w, g) == 1);
    }
  }
}

TEST_CASE("hyparview: a crashed node restarts and rejoins; same seed, same trace") {
  auto run = [](std::uint64_t seed) {
    simulator w(seed, faulty_network());
    std::size_t violations = 0;
    build(w, 60, violations);
    w.run_for(5s);
    w.crash(7);
    w.run_for(5s);
    w.restart(7);
    quiet_down(w, 10s);
    const auto g = overlay::views<hpv>(w, hid);
    CHECK(!g[7].empty());
    CHECK(overlay::components(w, g) == 1);
    CHECK(overlay::one_sided(w, g) == 0);
    CHECK(violations == 0);
    return w.trace_hash();
  };
  CHECK(run(21) == run(21));
  CHECK(run(21) != run(22));
}

TEST_CASE("hyparview: neighbour events match the active view") {
  simulator w(5, faulty_network());
  std::size_t violations = 0;
  std::vector<std::set<address>> seen(40);
  for (std::uint32_t i = 0; i < 40; ++i) {
    w.add_node([i, &seen](sim::node_context& c) {
      membership::hyparview_config k;
      if (i) k.contact = address::sim(0);
      auto& p = c.add<hpv>(hid, k);
      p.on_neighbour_up([&seen, i](const address& a) { CHECK(seen[i].insert(a).second); });
      p.on_neighbour_down([&seen, i](const address& a) { CHECK(seen[i].erase(a) == 1); });
    });
    w.run_for(10ms);
  }
  (void)violations;
  w.run_for(10s);
  w.crash(3);
  seen[3].clear();
  w.run_for(10s);
  for (std::uint32_t i = 0; i < 40; ++i) {
    if (!w.is_up(i)) continue;
    auto n = w.get<hpv>(i, hid).neighbours();
    CHECK(std::set<address>(n.begin(), n.end()) == seen[i]);
  }
}

TEST_CASE("hyparview: malformed input is dropped and counted; bad configuration refused") {
  simulator w(3);
  w.add_node([](sim::node_context& c) { c.add<hpv>(hid); });
  auto& p = w.get<hpv>(0, hid);
  p.on_message(address::sim(5), membership::hyparview_msg::forward_join{address{}, 3});
  p.on_message(address::sim(5),
               membership::hyparview_msg::shuffle{address::sim(5), 2, std::vector<address>(500, address::sim(9))});
  p.on_message(address::sim(0), membership::hyparview_msg::join{});
  CHECK(w.metrics().counter(hid, "bad_forward_join") == 1);
  CHECK(w.metrics().counter(hid, "bad_shuffle") == 1);
  CHECK(w.metrics().counter(hid, "bad_join") == 1);
  CHECK(p.neighbours().empty());
  CHECK(p.passive_view().empty());
  p.check_invariants();
  membership::hyparview_config bad;
  bad.prwl = 7;
  CHECK_THROWS_AS(bad.validate(), dcp::error);
  bad = {};
  bad.suspect_after = 500ms;
  CHECK_THROWS_AS(bad.validate(), dcp::error);
  CHECK_THROWS_AS(p.join(address{}), dcp::error);
}

TEST_CASE("hyparview: a node whose JOIN was lost keeps retrying, even after a later joiner linked to it") {
  simulator w(17, faulty_network());
  std::size_t violations = 0;
  build(w, 20, violations);
  w.run_for(3s);
  w.block(20, 0);  // node 20's JOIN to its contact is lost...
  w.add_node([](sim::node_context& c) {
    membership::hyparview_config k;
    k.contact = address::sim(0);
    c.add<hpv>(hid, k);
  });
  w.run_for(100ms);
  w.add_node([](sim::node_context& c) {  // ...while node 21 joins through node 20
    membership::hyparview_config k;
    k.contact = address::sim(20);
    c.add<hpv>(hid, k);
  });
  w.run_for(3s);
  CHECK_FALSE(w.get<hpv>(20, hid).joined());
  CHECK(w.get<hpv>(20, hid).is_active(address::sim(21)));  // an island of two
  w.heal();
  quiet_down(w, 10s);
  const auto g = overlay::views<hpv>(w, hid);
  CHECK(w.get<hpv>(20, hid).joined());
  CHECK(overlay::components(w, g) == 1);
  CHECK(overlay::one_sided(w, g) == 0);
  CHECK(violations == 0);
}

TEST_CASE(
    "hyparview: strangers evict at most the budgeted neighbours per round and cannot plant peers by unsolicited shuffle replies") {
  simulator w(5);
  std::size_t violations = 0;
  build(w, 16, violations);
  w.run_for(5s);
  auto& p = w.get<hpv>(0, hid);
  REQUIRE(p.active_count() == p.config().active_size);
  const auto counter = [&](std::string_view n) { return w.metrics().counter(hid, n); };
  w.metrics().reset();
  // Twenty processes outside the overlay each claim to have no neighbour at all (high priority).
  for (std::uint32_t s = 0; s < 20; ++s) {
    p.on_message(address::sim(100 + s), membership::hyparview_msg::neighbor{true});
    p.check_invariants();
  }
  std::size_t strangers = 0;
  for (auto& a : p.neighbours()) strangers += a.sim_index() >= 100;
  CHECK(strangers <= 1);
  CHECK(counter("priority_evictions") <= 1);
  CHECK(counter("priority_evictions_refused") >= 19);

  // A shuffle reply nobody asked for is not merged.
  std::vector<address> planted;
  for (std::uint32_t s = 300; s < 308; ++s) planted.push_back(address::sim(s));
  p.on_message(address::sim(200), membership::hyparview_msg::shuffle_reply{planted});
  for (auto& a : planted) CHECK_FALSE(p.is_passive(a));
  p.check_invariants();
  CHECK(counter("shuffle_reply_unsolicited") == 1);

  // The overlay's own shuffles still get merged, and the view checks held throughout.
  w.run_for(5s);
  CHECK(counter("shuffle_replies_merged") > 0);
  CHECK(violations == 0);
}

// Issue 11: in the paper a JOIN, the end of a FORWARD_JOIN walk and a
// JOIN_ACCEPT all add their node to the active view, evicting a neighbour
// when it is full; anyone can send them. A flood of them from fifty
// processes outside the overlay now evicts at most the budgeted
// join_evictions_per_round neighbours of a node per round; past it, a walk
// ends at a node that has room or budget (a detour of at most arwl hops) and
// a JOIN_ACCEPT into a full view is refused.
TEST_CASE(
    "hyparview: a flood of JOIN, FORWARD_JOIN and JOIN_ACCEPT from strangers evicts at most the budgeted neighbours per round") {
  simulator w(6);
  std::size_t violations = 0;
  build(w, 16, violations);
  w.run_for(5s);
  auto& p = w.get<hpv>(0, hid);
  REQUIRE(p.active_count() == p.config().active_size);
  const auto counter = [&](std::string_view n) { return w.metrics().counter(hid, n); };
  const auto before = p.neighbours();
  const auto first = p.neighbours().front();
  w.metrics().reset();
  for (std::uint32_t s = 0; s < 50; ++s) {
    p.on_message(address::sim(100 + s), membership::hyparview_msg::join{});
    p.on_message(first, membership::hyparview_msg::forward_join{address::sim(200 + s), 0});
    p.on_message(address::sim(300 + s), membership::hyparview_msg::join_accept{});
    p.check_invariants();
  }
  std::size_t kept = 0;
  for (auto& a : p.neighbours()) kept += std::find(before.begin(), before.end(), a) != before.end();
  CHECK(kept + p.config().join_evictions_per_round >= p.config().active_size);
  CHECK(counter("join_evictions_refused") > 0);
  // Over the whole overlay, while the flood's walks go on from node 0 for
  // half a round: each node's budgets (joins and high-priority NEIGHBORs)
  // refill at most once in that time.
  w.run_for(500ms);
  const auto budget = p.config().join_evictions_per_round + p.config().priority_evictions_per_round;
  CHECK(counter("dropped_for_room") <= static_cast<std::int64_t>(16 * 2 * budget));
  w.run_for(5s);
  CHECK(violations == 0);
}

}  // namespace test_hyparview
