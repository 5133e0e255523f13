#include <doctest/doctest.h>

#include <memory>
#include <set>

#include "../seeds.hpp"  // fewer seeds under sanitizers
#include "dcp/membership.hpp"
#include "dcp/search.hpp"
#include "dcp/sim.hpp"

using namespace dcp;
using sim::simulator;
using hpv = membership::hyparview<sim::env>;
using finder = search::unstructured<sim::env, hpv>;
constexpr protocol_id sid = finder::default_id;

namespace {
void build(simulator& w, std::uint32_t n, search::unstructured_config k = {}) {
  for (std::uint32_t i = 0; i < n; ++i) {
    w.add_node([i, k](sim::node_context& c) {
      membership::hyparview_config hk;
      if (i) hk.contact = address::sim(0);
      auto& m = c.add<hpv>(hpv::default_id, hk);
      c.add<finder>(sid, m, k);
    });
    w.run_for(5ms);
  }
  w.run_for(10s);
}
struct outcome {
  int calls = 0;
  std::error_code ec;
  search::search_result r;
};
}  // namespace

TEST_CASE("search: walks and floods find a key held by r nodes; the answer names a real holder; callback once") {
  for (std::uint64_t seed = 1; seed <= dcp::test::last_seed(1, 4); ++seed) {
    CAPTURE(seed);
    sim::config c;
    c.network.delay = sim::latency::uniform(1ms, 20ms);
    c.network.duplicate = 0.05;
    c.network.reorder = 0.1;
    simulator w(seed, c);
    constexpr std::uint32_t n = 300;
    build(w, n);
    std::set<std::uint32_t> holders;
    while (holders.size() < 10) holders.insert(1 + static_cast<std::uint32_t>(w.rng().below(n - 1)));
    for (auto h : holders) w.get<finder>(h, sid).store("k");
    for (auto how : {search::method::random_walk, search::method::flooding}) {
      auto out = std::make_shared<outcome>();
      w.get<finder>(0, sid).find("k", how, [out](dcp::result<search::search_result> r) {
        ++out->calls;
        out->ec = r.error();
        if (r) out->r = *r;
      });
      w.run_for(40s);
      CHECK(out->calls == 1);
      CHECK_FALSE(out->ec);
      CHECK(holders.contains(out->r.holder.sim_index()));
      CHECK(out->r.hops >= 1);
    }
    CHECK(w.get<finder>(0, sid).pending() == 0);
  }
}

TEST_CASE("search: a key nobody holds times out, once; a flood's TTL bounds how far it goes") {
  simulator w(9);
  search::unstructured_config k;
  k.flood_ttl = 2;
  k.walk_ttl = 50;
  k.query_timeout = 5s;
  build(w, 200, k);
  for (auto how : {search::method::random_walk, search::method::flooding}) {
    auto out = std::make_shared<outcome>();
    const auto probes_before = w.metrics().counter(sid, "probes");
    w.get<finder>(0, sid).find("nothing", how, [out](const dcp::result<search::search_result>& r) {
      ++out->calls;
      out->ec = r.error();
    });
    w.run_for(10s);
    CHECK(out->calls == 1);
    CHECK(out->ec == make_error_code(errc::timed_out));
    const auto probes = w.metrics().counter(sid, "probes") - probes_before;
    if (how == search::method::random_walk)
      CHECK(probes == 50);
    else
      CHECK(probes <= 5 + 5 * 4);  // d + d(d-1) with HyParView's d = 5
  }
  CHECK_THROWS_AS(w.get<finder>(0, sid).find(std::string(5000, 'x'), search::method::flooding, {}), dcp::error);
}

// Issue 11: a walk or flood carries its TTL, and a receiver used to take it
// as given: one injected walk with TTL 2^32 - 1 walked (almost) for ever,
// one flood with a large TTL reached everyone. Each node now caps the TTL
// at its own configured maximum ("ttl_capped"), and takes queries only from
// peers the membership admits ("query_not_member"): a process outside the
// overlay cannot make members probe, or send hits to an origin of its choice.
TEST_CASE("search: a walk's or flood's TTL is capped at the receiver's maximum; strangers' queries are refused") {
  simulator w(7);
  search::unstructured_config k;
  k.walk_ttl = 20;
  k.flood_ttl = 2;
  build(w, 60, k);
  auto& f = w.get<finder>(0, sid);
  const auto neighbour = w.get<hpv>(0, hpv::default_id).neighbours().front();
  w.metrics().reset();
  f.on_message(neighbour, search::search_msg::walk{99, 0, address::sim(0), "nobody", ~std::uint32_t{0}, 1});
  w.run_for(5s);
  // At most walk_ttl + 1 probes: the first node caps, every later one counts down.
  CHECK(w.metrics().counter(sid, "probes") <= 21);
  CHECK(w.metrics().counter(sid, "walks_expired") == 1);
  CHECK(w.metrics().counter(sid, "ttl_capped") >= 1);

  w.metrics().reset();
  f.on_message(neighbour, search::search_msg::flood{77, address::sim(0), "nobody", ~std::uint32_t{0}, 1});
  w.run_for(5s);
  // A TTL of 2 reaches at most 1 + 5 + 5*4 nodes (active views of 5, the sender excluded).
  CHECK(w.metrics().counter(sid, "probes") <= 1 + 5 + 20);
  CHECK(w.metrics().counter(sid, "ttl_capped") >= 1);

  w.metrics().reset();
  const auto stranger = address::sim(500);
  f.store("mine");
  f.on_message(stranger, search::search_msg::walk{5, 0, stranger, "mine", 3, 1});
  f.on_message(stranger, search::search_msg::flood{6, stranger, "mine", 3, 1});
  w.run_for(1s);
  CHECK(w.metrics().counter(sid, "probes") == 0);
  CHECK(w.metrics().counter(sid, "query_not_member") == 2);
  CHECK(w.metrics().of(sid, 3).sent == 0);  // no hit went to the stranger
}

// DESIGN §10: a completion runs after the call that asked, never inside it,
// even when the answer is known at once (the node holds the key itself).
TEST_CASE("search: a node that holds the key answers after find returns, once") {
  simulator w(3);
  build(w, 4);
  auto& f = w.get<finder>(0, sid);
  f.store("mine");
  outcome o;
  bool returned = false;
  bool inside = false;
  f.find("mine", search::method::flooding, [&](result<search::search_result> r) {
    inside = !returned;
    ++o.calls;
    if (r) o.r = *r;
  });
  returned = true;
  CHECK(o.calls == 0);
  w.run_for(1ms);
  CHECK(o.calls == 1);
  CHECK_FALSE(inside);
  CHECK(o.r.holder == address::sim(0));
  CHECK(o.r.hops == 0);
}
