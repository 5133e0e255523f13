#include <doctest/doctest.h>

#include "../seeds.hpp"  // fewer seeds under sanitizers

#include "harness.hpp"

namespace test_kademlia {

using namespace dcp;
using dht_test::overlay;
using kad = dht::kademlia<sim::env>;
using world_t = overlay<kad, dht::kademlia_config>;

namespace {

dht::kademlia_config small(std::size_t k = 4) {
  dht::kademlia_config c;
  c.k = k;  // small buckets: routing tables far from a full view, so lookups take real hops
  c.alpha = 3;
  c.rpc_timeout = 150ms;
  c.refresh_interval = 10s;
  return c;
}

void grow(world_t& w, std::size_t n) { w.add_spaced(n, 10ms); }

/// The k-bucket invariants: every contact lies in its bucket's distance range,
/// appears once, and no bucket holds more than k.
void check_buckets(world_t& w) {
  for (auto i : w.live()) {
    auto& r = w.router(i);
    std::set<address> seen;
    for (int b = 0; b < 160; ++b) {
      auto contacts = r.bucket(b);
      CHECK(contacts.size() <= r.config().k);
      for (auto& c : contacts) {
        CHECK((c.id ^ r.self().id).log2() == b);
        CHECK(seen.insert(c.addr).second);
        CHECK(c.addr != r.self().addr);
      }
    }
  }
}

}  // namespace

TEST_CASE("kademlia: joins build valid k-buckets, and lookups find the XOR-closest node (many seeds)") {
  for (std::uint64_t seed = 1; seed <= dcp::test::last_seed(1, 6); ++seed) {
    CAPTURE(seed);
    world_t w(seed, small(), world_t::lossy(0.01));
    grow(w, 80);
    w.world.run_for(20s);
    REQUIRE(w.live().size() == 80);
    check_buckets(w);
    auto st = w.lookups(200, 4);
    CHECK(st.failed == 0);
    CHECK(st.correct == 200);
  }
}

TEST_CASE("kademlia: the n owners returned are the n closest, and lookups survive 30% crashes at once") {
  for (std::uint64_t seed = 11; seed <= dcp::test::last_seed(11, 15); ++seed) {
    CAPTURE(seed);
    world_t w(seed, small(6));
    grow(w, 100);
    w.world.run_for(20s);
    // all of the 6 closest, in order
    std::size_t done = 0, exact = 0;
    auto nodes = w.live();
    for (int q = 0; q < 50; ++q) {
      auto key = node_id::random(w.world.rng());
      auto expect = w.truth(key, 6);
      w.router(nodes[q]).lookup(key, 6, [&, expect](dcp::result<dht::lookup_result> r) {
        ++done;
        if (r && r->owners == expect) ++exact;
      });
    }
    w.world.run_until([&] { return done == 50; }, w.world.now() + 30s);
    CHECK(exact == 50);
    w.world.rng().shuffle(std::span(nodes));
    for (std::size_t k = 0; k < 30; ++k) w.world.crash(nodes[k]);
    auto st = w.lookups(200);  // at once: silent contacts cost a timeout on one lane only
    CHECK(st.failed == 0);
    CHECK(st.correct == 200);
    check_buckets(w);
  }
}

TEST_CASE("kademlia: a full bucket keeps its old live contacts and evicts only silent ones") {
  auto cfg = small(2);
  world_t w(21, cfg);
  grow(w, 40);
  w.world.run_for(5s);
  auto& r = w.router(0);
  // find a full bucket
  int full = -1;
  for (int b = 159; b >= 150 && full < 0; --b)
    if (r.bucket(b).size() == 2) full = b;
  REQUIRE(full >= 0);
  auto old = r.bucket(full);
  // a live newcomer in that range (any live node not in the bucket) talks to us
  std::optional<sim::node_index> newcomer;
  for (auto i : w.live()) {
    auto c = w.router(i).self();
    if ((c.id ^ r.self().id).log2() == full && c != old[0] && c != old[1]) newcomer = i;
  }
  if (newcomer) {
    w.router(*newcomer).lookup(r.self().id, 1, [](const dcp::result<dht::lookup_result>&) {});
    w.world.run_for(2s);
    auto now = r.bucket(full);
    CHECK(std::find(now.begin(), now.end(), old[0]) != now.end());  // old live contacts stay
    CHECK(std::find(now.begin(), now.end(), old[1]) != now.end());
  }
  // the least recently seen contact dies silently: the next newcomer replaces it after the ping
  auto lrs = r.bucket(full);
  w.world.crash(lrs[0].addr.sim_index());
  for (auto i : w.live()) {
    if (i == 0) continue;
    w.router(i).lookup(r.self().id, 1, [](const dcp::result<dht::lookup_result>&) {});
  }
  w.world.run_for(3s);
  auto after = r.bucket(full);
  CHECK(std::find(after.begin(), after.end(), lrs[0]) == after.end());
  CHECK(std::find(after.begin(), after.end(), lrs[1]) != after.end());
  CHECK(after.size() == 2);
  CHECK(w.world.metrics().counter(kad::default_id, "evictions") >= 1);
}

TEST_CASE("kademlia: bootstrap retries while the seeds are down; bad senders are dropped") {
  world_t w(31, small());
  grow(w, 5);
  w.world.run_for(2s);
  w.world.crash(2);
  auto i = w.world.add_node([&](sim::node_context& ctx) {
    ctx.add<kad>(kad::default_id, small()).bootstrap({{node_id{}, address::sim(2)}, {node_id{}, address::sim(999)}});
  });
  w.world.run_for(5s);
  CHECK_FALSE(w.router(i).joined());
  w.world.restart(2);
  w.world.run_for(40s);
  CHECK(w.router(i).joined());
  CHECK(w.router(i).contacts() >= 3);
  // a message whose sender contact is not the transport's address is counted and ignored
  auto before = w.router(0).contacts();
  w.router(0).on_message(address::sim(1), dht::kademlia_msg::ping{1, {node_id::from_u64(7), address::sim(3)}});
  CHECK(w.world.metrics().counter(kad::default_id, "spoofed_sender") == 1);
  CHECK(w.router(0).contacts() == before);
  static_assert(dht::Router<kad>);
}

}  // namespace test_kademlia
