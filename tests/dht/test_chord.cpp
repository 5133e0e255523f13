#include <doctest/doctest.h>

#include "../seeds.hpp"  // fewer seeds under sanitizers

#include "harness.hpp"

namespace test_chord {

using namespace dcp;
using dht_test::overlay;
using chord = dht::chord<sim::env>;
using world_t = overlay<chord, dht::chord_config>;

namespace {

dht::chord_config fast() {
  dht::chord_config c;
  c.stabilize_interval = 200ms;
  c.fix_fingers_interval = 100ms;
  c.check_predecessor_interval = 300ms;
  c.rpc_timeout = 150ms;
  c.successors = 6;
  return c;
}

/// Every live node's successor and predecessor are the true ones.
bool ring_correct(world_t& w) {
  auto nodes = w.live();
  std::vector<dht::contact> all;
  for (auto i : nodes) all.push_back(w.router(i).self());
  std::sort(all.begin(), all.end());
  if (all.size() < 2) return true;
  for (std::size_t k = 0; k < all.size(); ++k) {
    auto& r = w.router(all[k].addr.sim_index());
    if (r.successor().addr != all[(k + 1) % all.size()].addr) return false;
    if (r.predecessor().addr != all[(k + all.size() - 1) % all.size()].addr) return false;
  }
  return true;
}

/// Grows a ring of n nodes by joining them one at a time through live members.
void grow(world_t& w, std::size_t n) { w.add_spaced(n, 20ms); }

}  // namespace

TEST_CASE("chord: a ring built by joins stabilizes, and lookups reach the true owner (many seeds)") {
  for (std::uint64_t seed = 1; seed <= dcp::test::last_seed(1, 8); ++seed) {
    CAPTURE(seed);
    world_t w(seed, fast(), world_t::lossy(0.01));
    grow(w, 48);
    auto r = w.world.run_until([&] { return ring_correct(w); }, w.world.now() + 60s);
    REQUIRE(r.reason == sim::stop_reason::predicate);
    w.world.run_for(5s);  // let fix-fingers converge
    CHECK(ring_correct(w));
    auto st = w.lookups(200);
    CHECK(st.wrong == 0);
    CHECK(st.failed == 0);
    CHECK(st.correct == 200);
    if (st.failed) MESSAGE(w.world.metrics());
    // the successor lists and closest() agree with the truth too
    for (auto i : w.live()) {
      auto& c = w.router(i);
      auto expect = w.truth(c.self().id + node_id::pow2(0), c.successors().size());
      // under loss an entry may be missing for a round (pruned after two silences), never wrong
      CHECK(c.successors().size() + 1 >= c.config().successors);
      for (std::size_t k = 0; k < c.successors().size(); ++k) CHECK(c.successors()[k].addr == expect[k].addr);
    }
  }
}

TEST_CASE("chord: crashes of 20% at once, repair, then every lookup reaches the true owner") {
  for (std::uint64_t seed = 11; seed <= dcp::test::last_seed(11, 16); ++seed) {
    CAPTURE(seed);
    world_t w(seed, fast());
    grow(w, 64);
    REQUIRE(w.world.run_until([&] { return ring_correct(w); }, w.world.now() + 60s).reason ==
            sim::stop_reason::predicate);
    w.world.run_for(5s);
    auto nodes = w.live();
    w.world.rng().shuffle(std::span(nodes));
    for (std::size_t k = 0; k < nodes.size() / 5; ++k) w.world.crash(nodes[k]);
    // right after the crashes lookups already route around the dead (timeouts, alternatives)
    auto during = w.lookups(100);
    CHECK(during.failed == 0);
    REQUIRE(w.world.run_until([&] { return ring_correct(w); }, w.world.now() + 30s).reason ==
            sim::stop_reason::predicate);
    w.world.run_for(5s);
    auto after = w.lookups(200);
    CHECK(after.correct == 200);
    for (auto i : w.live()) {  // no loss here: every successor list is whole and exact
      auto& c = w.router(i);
      auto expect = w.truth(c.self().id + node_id::pow2(0), c.successors().size());
      REQUIRE(c.successors().size() >= c.config().successors);  // r at least; longer as N grows
      for (std::size_t k = 0; k < expect.size(); ++k) CHECK(c.successors()[k].addr == expect[k].addr);
    }
  }
}

TEST_CASE("chord: graceful leaves splice the ring at once; joins under churn converge") {
  for (std::uint64_t seed = 21; seed <= dcp::test::last_seed(21, 24); ++seed) {
    CAPTURE(seed);
    world_t w(seed, fast());
    grow(w, 40);
    REQUIRE(w.world.run_until([&] { return ring_correct(w); }, w.world.now() + 60s).reason ==
            sim::stop_reason::predicate);
    // leavers that are not ring neighbours of each other: the two messages splice each out at once
    std::vector<dht::contact> ring;
    for (auto i : w.live()) ring.push_back(w.router(i).self());
    std::sort(ring.begin(), ring.end());
    for (std::size_t k = 0; k < 8; ++k) {
      auto v = ring[1 + k * 4].addr.sim_index();
      w.router(v).leave();
      CHECK_FALSE(w.router(v).joined());
    }
    w.world.run_for(50ms);  // one message delay (at most 20 ms) later
    CHECK(ring_correct(w));
    // adjacent leavers at the same instant cannot splice each other: stabilization does
    ring.clear();
    for (auto i : w.live()) ring.push_back(w.router(i).self());
    std::sort(ring.begin(), ring.end());
    for (std::size_t k = 0; k < 3; ++k) w.router(ring[5 + k].addr.sim_index()).leave();
    REQUIRE(w.world.run_until([&] { return ring_correct(w); }, w.world.now() + 10s).reason ==
            sim::stop_reason::predicate);
    // churn: crashes, restarts (a restarted node joins with a fresh id) and new joins interleaved
    w.churn(10, 300ms);
    REQUIRE(w.world.run_until([&] { return ring_correct(w); }, w.world.now() + 60s).reason ==
            sim::stop_reason::predicate);
    w.world.run_for(5s);
    auto st = w.lookups(200);
    CHECK(st.correct == 200);
  }
}

TEST_CASE("chord: bootstrap retries while the seed is unreachable, and joins once it is up") {
  world_t w(31, fast());
  w.add(3);
  w.world.run_for(3s);
  REQUIRE(ring_correct(w));
  w.world.crash(1);
  // a node whose only seed is down keeps trying with backoff
  auto i = w.world.add_node([&](sim::node_context& ctx) {
    ctx.add<chord>(chord::default_id, fast()).bootstrap({{node_id{}, address::sim(1)}});
  });
  w.world.run_for(5s);
  CHECK_FALSE(w.router(i).joined());
  CHECK(w.world.metrics().counter(chord::default_id, "join_attempts") >= 3);
  w.world.restart(1);    // node 1 comes back (a fresh node that joins through the others)
  w.world.run_for(40s);  // within the maximum backoff
  CHECK(w.router(i).joined());
  REQUIRE(w.world.run_until([&] { return ring_correct(w); }, w.world.now() + 30s).reason ==
          sim::stop_reason::predicate);
}

TEST_CASE(
    "chord: a lookup whose owners all crash while it confirms routes again, and discards no answer it asked for") {
  // One owner from a "found" (successors = 1): when it has crashed, the transport gives up on
  // it before the owner_query times out, and the lookup has no owner left to confirm. It
  // must route again as any lookup does; with no loss and no duplication, no answer to a
  // request it is waiting for may be thrown away as stale (issue #14: a lookup that routed
  // again still marked as confirming discarded every answer until a restart).
  for (std::uint64_t seed = 61; seed <= dcp::test::last_seed(61, 66); ++seed) {
    CAPTURE(seed);
    dht::chord_config cfg = fast();
    cfg.successors = 1;
    world_t w(seed, cfg, world_t::lossy(0.0));
    grow(w, 24);
    REQUIRE(w.world.run_until([&] { return ring_correct(w); }, w.world.now() + 60s).reason ==
            sim::stop_reason::predicate);
    w.world.run_for(5s);
    auto nodes = w.live();
    const auto victim = nodes[w.world.rng().below(nodes.size())];
    const node_id key = w.router(victim).self().id;  // the victim's own key: it owned it
    w.world.crash(victim);
    const auto stale_before = w.world.metrics().counter(chord::default_id, "stale_reply");
    const auto expect = w.truth(key, 1).front();  // the victim's successor
    std::size_t done = 0, wrong = 0;
    nodes = w.live();
    for (auto i : nodes)
      w.router(i).lookup(key, 1, [&](dcp::result<dht::lookup_result> r) {
        ++done;
        if (r && r->owners.front().addr != expect.addr) ++wrong;
      });
    w.world.run_until([&] { return done == nodes.size(); }, w.world.now() + 30s);
    REQUIRE(done == nodes.size());
    CHECK(wrong == 0);
    CHECK(w.world.metrics().counter(chord::default_id, "stale_reply") == stale_before);
  }
}

TEST_CASE("chord: duplicated and reordered delivery, and small m") {
  sim::config sc = world_t::lossy(0.02);
  sc.network.duplicate = 0.05;
  sc.network.reorder = 0.1;
  auto cfg = fast();
  cfg.bits = 12;  // 4096 ids: fingers, masking and wrap-around all exercised
  world_t w(41, cfg, sc);
  grow(w, 30);
  REQUIRE(w.world.run_until([&] { return ring_correct(w); }, w.world.now() + 60s).reason ==
          sim::stop_reason::predicate);
  w.world.run_for(5s);
  for (auto i : w.live()) {
    auto id = w.router(i).self().id;
    CHECK(id == w.router(i).mask(id));
  }
  // keys are masked the same way, so the truth must be computed on masked keys
  std::size_t ok = 0, done = 0;
  for (int q = 0; q < 100; ++q) {
    auto nodes = w.live();
    auto key = w.router(nodes[0]).mask(node_id::random(w.world.rng()));
    auto expect = w.truth(key, 1);
    w.router(nodes[q % nodes.size()]).lookup(key, 1, [&, expect](dcp::result<dht::lookup_result> r) {
      ++done;
      if (r && r->owners.front().addr == expect.front().addr) ++ok;
    });
  }
  w.world.run_until([&] { return done == 100; }, w.world.now() + 30s);
  CHECK(ok == 100);
}

TEST_CASE("chord: misuse gives clear errors") {
  CHECK_THROWS_AS(([] {
                    dht::chord_config c;
                    c.bits = 0;
                    c.validate();
                  }()),
                  dcp::error);
  CHECK_THROWS_AS(([] {
                    dht::chord_config c;
                    c.successors = 0;
                    c.validate();
                  }()),
                  dcp::error);
  sim::simulator w(1);
  w.add_node([](sim::node_context& ctx) { ctx.add<chord>(chord::default_id, dht::chord_config{}); });
  std::error_code got;
  w.get<chord>(0, chord::default_id).lookup(node_id{}, 1, [&](const dcp::result<dht::lookup_result>& r) {
    got = r.error();
  });
  w.run_for(1ms);  // the answer comes after the call
  CHECK(got == dht::errc::not_joined);
  CHECK(got.message().find("bootstrap") != std::string::npos);
  static_assert(dht::Router<chord>);
}

TEST_CASE("chord: while nodes join at a steady rate, no lookup returns a wrong owner as right (many seeds)") {
  // Issue 16: with one join every 150 ms a lookup answered a successor that a newer node had
  // displaced, without an error. Now the owner confirms the key falls in its range (after its
  // predecessor), or the lookup fails with an error the caller can retry. The truth is computed
  // here from the ids of the live joined nodes, at the lookup's start and at its answer (a join
  // in between may move the key): an answer that is neither is a wrong owner.
  std::size_t wrong = 0, right = 0, failed = 0;
  for (std::uint64_t seed = 41; seed <= dcp::test::last_seed(41, 46); ++seed) {
    CAPTURE(seed);
    world_t w(seed, dht::chord_config{}, world_t::wide_area());  // the defaults: stabilize every second
    w.address_only = true;
    std::size_t issued = 0, done = 0;
    auto one_lookup = [&] {
      auto live = w.live();
      const node_id key = node_id::random(w.world.rng());
      const auto before = w.truth(key, 1).front().addr;
      ++issued;
      w.router(live[w.world.rng().below(live.size())])
          .lookup(key, 1, [&, key, before](dcp::result<dht::lookup_result> r) {
            ++done;
            if (!r) return void(++failed);
            const auto after = w.truth(key, 1).front().addr;
            const bool ok = !r->owners.empty() && (r->owners.front().addr == before || r->owners.front().addr == after);
            ok ? ++right : ++wrong;
          });
    };
    w.add(1);
    w.world.run_for(1s);
    for (int k = 0; k < 120; ++k) {  // 120 joins, one every 150 ms, and 3 lookups meanwhile
      w.add(1);
      for (int q = 0; q < 3; ++q) {
        one_lookup();
        w.world.run_for(50ms);
      }
    }
    for (int q = 0; q < 100; ++q) {  // and after the last join, while the ring converges
      one_lookup();
      w.world.run_for(50ms);
    }
    w.world.run_until([&] { return done == issued; }, w.world.now() + 30s);
    REQUIRE(done == issued);
  }
  MESSAGE("steady joins: ", right, " right, ", wrong, " wrong owners, ", failed, " failed");
  CHECK(wrong == 0);
  CHECK(right > 20 * failed);  // the check does not just turn every answer into an error
}

TEST_CASE("chord: 50% of the nodes crash at once; 20 s later no lookup returns a wrong owner (many seeds)") {
  // Issue 16: a node whose r = 8 successors all died jumped to a finger far ahead and walked
  // back one node a second. Successor lists now grow to 2 log2 N (N estimated from their span),
  // and a node walks back to a closer successor at once, not a stabilize round later.
  std::size_t wrong = 0, failed = 0, right = 0;
  for (std::uint64_t seed = 51; seed <= dcp::test::last_seed(51, 54); ++seed) {
    CAPTURE(seed);
    world_t w(seed, dht::chord_config{}, world_t::wide_area());  // the defaults
    auto st = w.lookups_after_half_crash();
    wrong += st.wrong, failed += st.failed, right += st.correct;
  }
  MESSAGE("chord after a 50% crash: ", right, " right, ", wrong, " wrong owners, ", failed, " failed");
  CHECK(wrong == 0);
  CHECK(failed == 0);
}

}  // namespace test_chord
