#include <doctest/doctest.h>

#include "../seeds.hpp"  // fewer seeds under sanitizers
#include "../touched.hpp"

#include <map>
#include <set>

#include "dcp/membership.hpp"
#include "dcp/sim.hpp"
#include "overlay.hpp"

namespace test_cyclon_static {

using namespace dcp;
using sim::simulator;
using cyc = membership::cyclon<sim::env>;
using fixed_group = membership::static_group<sim::env>;
constexpr protocol_id cid = cyc::default_id;

static_assert(membership::Membership<cyc> && membership::Membership<fixed_group>);

TEST_CASE(
    "cyclon: views bounded and free of self and duplicates; connected; in-degrees balanced; dead entries age out") {
  for (std::uint64_t seed = 1; seed <= dcp::test::last_seed(1, 5); ++seed) {
    CAPTURE(seed);
    sim::config c;
    c.network.delay = sim::latency::uniform(1ms, 20ms);
    c.network.loss = 0.01;
    c.network.reorder = 0.05;
    c.report_unreachable = false;  // Cyclon needs no failure detector: aging removes the dead
    simulator w(seed, c);
    constexpr std::uint32_t n = 300;
    std::size_t violations = 0;
    // After every event, on the node it ran on: cyclon::check_invariants
    // (the view bounded, free of self and duplicates; it aborts on a
    // violation), and the bound as view() reports it.
    dcp::test::after_every_event(w, [&](std::uint32_t i) {
      auto* p = w.find<cyc>(i, cid);
      if (!p) return;
      p->check_invariants();
      if (p->view().size() > p->config().view_size) ++violations;
    });
    for (std::uint32_t i = 0; i < n; ++i) {
      w.add_node([i](sim::node_context& x) {
        membership::cyclon_config k;
        if (i) k.contact = address::sim(0);
        x.add<cyc>(cid, k);
      });
      w.run_for(5ms);
    }
    w.run_for(60s);
    auto g = overlay::views<cyc>(w, cid);
    CHECK(violations == 0);
    CHECK(overlay::components(w, g) == 1);
    std::vector<int> indeg(n);
    std::size_t full = 0;
    for (auto& v : g) {
      full += v.size() == 35;
      for (auto j : v) ++indeg[j];
    }
    CHECK(full >= n * 9 / 10);
    const auto [lo, hi] = std::minmax_element(indeg.begin(), indeg.end());
    CHECK(*lo >= 10);  // mean 35: shuffles keep every node well known
    CHECK(*hi <= 70);
    // Half the nodes crash; without any failure detector their entries age out.
    for (auto v : overlay::victims(w, n, n / 2)) w.crash(v);
    w.run_for(120s);
    g = overlay::views<cyc>(w, cid);
    std::size_t dead = 0, total = 0;
    for (std::uint32_t i = 0; i < n; ++i)
      for (auto j : g[i]) {
        ++total;
        dead += !w.is_up(j);
      }
    CHECK(dead * 20 < total);  // under 5% of the entries still point at the dead
    CHECK(overlay::components(w, g) == 1);
  }
}

TEST_CASE("static_group: neighbours, uniform distinct samples, down and up events") {
  simulator w(1);
  auto cfg = membership::static_group_config::of({address::sim(0), address::sim(1), address::sim(2), address::sim(3)});
  w.add_nodes(4, [cfg](sim::node_context& c) { c.add<fixed_group>(fixed_group::default_id, cfg); });
  auto& g = w.get<fixed_group>(0, fixed_group::default_id);
  CHECK(g.neighbours() == std::vector<address>{address::sim(1), address::sim(2), address::sim(3)});
  std::map<address, int> hits;
  for (int i = 0; i < 3000; ++i) {
    auto s = g.sample(2);
    REQUIRE(s.size() == 2);
    CHECK(s[0] != s[1]);
    for (auto& a : s) ++hits[a];
  }
  CHECK(hits.size() == 3);
  for (auto& [a, h] : hits) CHECK(std::abs(h - 2000) < 200);
  std::vector<std::string> ev;
  g.on_neighbour_down([&](const address& a) { ev.push_back("down " + a.to_string()); });
  g.on_neighbour_up([&](const address& a) { ev.push_back("up " + a.to_string()); });
  g.mark_down(address::sim(2));
  g.mark_down(address::sim(2));  // idempotent
  g.mark_down(address::sim(9));  // not a member: ignored
  CHECK(g.sample(5).size() == 2);
  g.mark_up(address::sim(2));
  CHECK(ev == std::vector<std::string>{"down sim:2", "up sim:2"});
  // A large group samples without copying it.
  std::vector<address> many;
  for (std::uint32_t i = 0; i < 100000; ++i) many.push_back(address::sim(i));
  simulator big(2);
  auto bc = membership::static_group_config::of(std::move(many));
  big.add_node([bc](sim::node_context& c) { c.add<fixed_group>(fixed_group::default_id, bc); });
  auto s = big.get<fixed_group>(0, fixed_group::default_id).sample(4);
  CHECK(std::set<address>(s.begin(), s.end()).size() == 4);
  CHECK_FALSE(std::set<address>(s.begin(), s.end()).contains(address::sim(0)));
  CHECK_THROWS_AS(membership::static_group_config{}.validate(), dcp::error);
}

TEST_CASE("cyclon: join swaps are taken only while joining; shuffle replies only from the peer shuffled with") {
  simulator w(6);
  for (std::uint32_t i = 0; i < 20; ++i) {
    w.add_node([i](sim::node_context& x) {
      membership::cyclon_config k;
      if (i) k.contact = address::sim(0);
      x.add<cyc>(cid, k);
    });
    w.run_for(10ms);
  }
  w.run_for(20s);  // every join long over
  auto& p = w.get<cyc>(3, cid);
  REQUIRE_FALSE(p.neighbours().empty());
  const auto counter = [&](std::string_view n) { return w.metrics().counter(cid, n); };
  w.metrics().reset();
  for (std::uint32_t s = 100; s < 140; ++s)
    p.on_message(address::sim(s), membership::cyclon_msg::join_swap{{address::sim(s + 100), 0}});
  for (auto& a : p.neighbours()) CHECK(a.sim_index() < 100);
  CHECK(counter("join_swap_unsolicited") == 40);
  std::vector<membership::cyclon_msg::entry> planted;
  for (std::uint32_t s = 300; s < 305; ++s) planted.push_back({address::sim(s), 0});
  p.on_message(address::sim(299), membership::cyclon_msg::shuffle_reply{planted});
  for (auto& a : p.neighbours()) CHECK(a.sim_index() < 100);
  p.check_invariants();
}

// Two ways a view outgrew view_size: a join walk ending at a full node whose
// only entry is the walk's sender (view_size 1) added the joiner without
// swapping; and join() called on a full view added the contact.
TEST_CASE("cyclon: the view never exceeds view_size, with view_size 1 and when join() is called on a full view") {
  for (std::uint64_t seed = 1; seed <= dcp::test::last_seed(1, 20); ++seed) {
    CAPTURE(seed);
    simulator w(seed);
    std::size_t over = 0;
    dcp::test::after_every_event(w, [&](std::uint32_t i) {
      if (auto* p = w.find<cyc>(i, cid)) {
        over += p->neighbours().size() > p->config().view_size;
        p->check_invariants();
      }
    });
    for (std::uint32_t i = 0; i < 6; ++i) {
      w.add_node([i](sim::node_context& x) {
        membership::cyclon_config k;
        k.view_size = 1;
        k.shuffle_length = 1;
        if (i) k.contact = address::sim(0);
        x.add<cyc>(cid, k);
      });
      w.run_for(10ms);
    }
    w.run_for(5s);
    std::size_t full = 0;
    for (std::uint32_t i = 0; i < 6; ++i) {
      auto& p = w.get<cyc>(i, cid);
      if (p.neighbours().size() != 1) continue;  // its one entry is out in a shuffle
      ++full;
      std::uint32_t contact = 0;  // another member than itself and its entry
      while (contact == i || address::sim(contact) == p.neighbours().front()) ++contact;
      p.join(address::sim(contact));
      over += p.neighbours().size() > 1;
      p.check_invariants();
    }
    CHECK(full > 0);
    w.run_for(2s);
    CHECK(over == 0);
  }
}

}  // namespace test_cyclon_static
