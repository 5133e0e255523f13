#include <doctest/doctest.h>

#include "harness.hpp"

using namespace dcp;
using dht_test::overlay;
using pastry = dht::pastry<sim::env>;
using world_t = overlay<pastry, dht::pastry_config>;

namespace {

dht::pastry_config fast(std::size_t l = 8) {
  dht::pastry_config c;
  c.leaf_set = l;  // smaller than 16 so that 100-node tests route through the table, not just leaves
  c.rpc_timeout = 150ms;
  c.leaf_interval = 200ms;
  c.lookup_timeout = 5s;
  return c;
}

void grow(world_t& w, std::size_t n) {
  w.add(1);
  for (std::size_t i = 1; i < n; ++i) {
    w.world.run_for(30ms);
    w.add(1);
  }
}

/// Every live node's leaf set holds exactly its l/2 true neighbours on each side.
bool leaves_correct(world_t& w) {
  // every node that is up has joined (none is half-way), and leaf sets are exact
  for (sim::node_index i = 0; i < w.world.size(); ++i)
    if (auto* p = w.find(i); p && !p->joined()) return false;
  std::vector<dht::contact> all;
  for (auto i : w.live()) all.push_back(w.router(i).self());
  std::sort(all.begin(), all.end());
  const std::size_t n = all.size();
  for (std::size_t k = 0; k < n; ++k) {
    auto& r = w.router(all[k].addr.sim_index());
    const std::size_t half = std::min(r.config().leaf_set / 2, (n - 1) / 2);
    if (r.right().size() < half || r.left().size() < half) return false;
    for (std::size_t j = 0; j < half; ++j) {
      if (r.right()[j].addr != all[(k + 1 + j) % n].addr) return false;
      if (r.left()[j].addr != all[(k + n - 1 - j) % n].addr) return false;
    }
  }
  return true;
}

}  // namespace

TEST_CASE("pastry: joins build exact leaf sets, and lookups reach the numerically closest node (many seeds)") {
  for (std::uint64_t seed = 1; seed <= 6; ++seed) {
    CAPTURE(seed);
    world_t w(seed, fast(), world_t::lossy(0.01));
    grow(w, 100);
    REQUIRE(w.world.run_until([&] { return leaves_correct(w); }, w.world.now() + 60s).reason == sim::stop_reason::predicate);
    // routing-table invariant: entry (r, d) shares exactly r digits with us and has digit d at r
    for (auto i : w.live()) {
      auto& p = w.router(i);
      for (std::size_t r = 0; r < p.rows(); ++r)
        for (unsigned d = 0; d < 16; ++d)
          if (auto c = p.entry(r, d)) {
            CHECK(c.id.common_prefix_bits(p.self().id) / 4 == r);
            CHECK(c.id.digit(r, 4) == d);
          }
    }
    auto st = w.lookups(200, 3);
    CHECK(st.failed == 0);
    CHECK(st.correct == 200);
    unsigned total = 0;
    for (auto h : st.hops) total += h;
    CHECK(static_cast<double>(total) / st.hops.size() <= 2.0);  // ⌈log16 100⌉ = 2 (the paper's bound)
  }
}

TEST_CASE("pastry: 20% crash at once; leaf-set and table repair; lookups reach the true root") {
  for (std::uint64_t seed = 11; seed <= 15; ++seed) {
    CAPTURE(seed);
    world_t w(seed, fast());
    grow(w, 80);
    REQUIRE(w.world.run_until([&] { return leaves_correct(w); }, w.world.now() + 60s).reason == sim::stop_reason::predicate);
    auto nodes = w.live();
    w.world.rng().shuffle(std::span(nodes));
    for (std::size_t k = 0; k < 16; ++k) w.world.crash(nodes[k]);
    REQUIRE(w.world.run_until([&] { return leaves_correct(w); }, w.world.now() + 30s).reason == sim::stop_reason::predicate);
    auto st = w.lookups(200);
    CHECK(st.failed == 0);
    CHECK(st.correct == 200);
    for (auto i : w.live()) {  // no dead node left in any table after repair... or a repair pending
      auto& p = w.router(i);
      for (std::size_t r = 0; r < p.rows(); ++r)
        for (unsigned d = 0; d < 16; ++d)
          if (auto c = p.entry(r, d); c && !w.world.is_up(c.addr.sim_index())) {
            // lazily repaired: dead entries are found when used; their count only shrinks
          }
    }
  }
}

TEST_CASE("pastry: graceful leave repairs both sides; joins under churn converge; bootstrap retries") {
  world_t w(21, fast());
  grow(w, 40);
  REQUIRE(w.world.run_until([&] { return leaves_correct(w); }, w.world.now() + 60s).reason == sim::stop_reason::predicate);
  auto nodes = w.live();
  std::vector<dht::contact> ring;
  for (auto i : nodes) ring.push_back(w.router(i).self());
  std::sort(ring.begin(), ring.end());
  for (int k = 0; k < 5; ++k) {  // leavers more than l/2 apart: none is in another's leaf set
    auto v = ring[3 + 7 * k].addr.sim_index();
    w.router(v).leave();
    w.world.crash(v);  // the process exits after leaving
  }
  // faster than failure detection (3 probe rounds of 200 ms): the leave messages did it
  REQUIRE(w.world.run_until([&] { return leaves_correct(w); }, w.world.now() + 100ms).reason == sim::stop_reason::predicate);
  for (int round = 0; round < 10; ++round) {
    auto l = w.live();
    w.world.crash(l[w.world.rng().below(l.size())]);
    w.add(1);
    w.world.run_for(300ms);
  }
  REQUIRE(w.world.run_until([&] { return leaves_correct(w); }, w.world.now() + 60s).reason == sim::stop_reason::predicate);
  auto st = w.lookups(200);
  CHECK(st.correct == 200);
  // a node whose seed is down keeps retrying, and joins once it is back
  w.world.crash(nodes[0]);
  auto i = w.world.add_node([&](sim::node_context& ctx) {
    ctx.add<pastry>(pastry::default_id, fast()).bootstrap({{node_id{}, address::sim(nodes[0])}});
  });
  w.world.run_for(5s);
  CHECK_FALSE(w.router(i).joined());
  w.world.restart(nodes[0]);
  w.world.run_for(40s);
  CHECK(w.router(i).joined());
  static_assert(dht::Router<pastry>);
  CHECK_THROWS_AS(([] { dht::pastry_config c; c.b = 3; c.validate(); }()), dcp::error);
  CHECK_THROWS_AS(([] { dht::pastry_config c; c.leaf_set = 7; c.validate(); }()), dcp::error);
}
