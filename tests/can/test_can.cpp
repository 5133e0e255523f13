// CAN (dcp/dht/can.hpp) in the simulator: joins, greedy routing, takeover of
// crashed zones, departures and hostile input, over many seeds with message loss.
//
// The properties, checked in a quiesced state (no takeover, offer or handover
// in flight): the zones of the live nodes partition the space exactly (each a
// valid dyadic box, no two overlapping, volumes summing to exactly 1); every
// key has exactly one owner; lookups from random nodes reach that owner; the
// mean path length stays within a loose multiple of the paper's (d/4)·n^(1/d).
//
// Other seeds: CAN_SEED0=N CAN_SEEDS=K test_can; another loss rate for the join
// case: CAN_LOSS=0.08; CAN_DEBUG=1 prints the counters when a world does not settle.
#include <doctest/doctest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <map>
#include <cstdlib>
#include <set>
#include <sstream>
#include <vector>

#include "../dht/harness.hpp"
#include "../seeds.hpp"  // fewer seeds under sanitizers

#include "dcp/dht.hpp"
#include "dcp/sim.hpp"

using namespace dcp;
using can = dht::can<sim::env>;
using dht::can_zone;

static_assert(dht::Router<can>, "dht::can must model the Router concept");

namespace {

constexpr protocol_id pid = can::default_id;

dht::can_config fast(unsigned d = 2) {
  dht::can_config c;
  c.dimensions = d;
  c.update_interval = 300ms;
  c.rpc_timeout = 150ms;
  c.takeover_delay = 300ms;
  c.lookup_timeout = 4s;
  return c;
}

sim::config lossy(double loss) {
  sim::config sc;
  sc.network.delay = sim::latency::uniform(1ms, 20ms);
  sc.network.loss = loss;
  return sc;
}

struct world_t {
  sim::simulator world;
  dht::can_config cfg;
  std::optional<sim::node_index> founder;

  world_t(std::uint64_t seed, dht::can_config c, sim::config sc) : world(seed, sc), cfg(c) {}

  can* find(sim::node_index i) { return world.find<can>(i, pid); }
  can& router(sim::node_index i) { return world.get<can>(i, pid); }

  std::vector<sim::node_index> live() {
    std::vector<sim::node_index> out;
    for (sim::node_index i = 0; i < world.size(); ++i)
      if (can* r = find(i); r && r->joined()) out.push_back(i);
    return out;
  }

  /// Adds one node that joins through a random joined node (the first founds the space).
  void add() {
    world.add_node([this](sim::node_context& ctx) {
      auto& r = ctx.add<can>(pid, cfg);
      if (!founder) {
        founder = ctx.index();
        r.bootstrap({});
        return;
      }
      std::vector<dht::contact> seeds;
      auto nodes = live();
      for (int k = 0; k < 2 && !nodes.empty(); ++k)
        seeds.push_back(router(nodes[world.rng().below(nodes.size())]).self());
      if (seeds.empty()) seeds.push_back({node_id{}, address::sim(*founder)});
      r.bootstrap(seeds);
    });
  }
  void grow(std::size_t n, duration every = 20ms) {
    for (std::size_t k = 0; k < n; ++k) {
      add();
      world.run_for(every);
    }
  }

  std::int64_t counter(std::string_view name) { return world.metrics().counter(pid, name); }

  /// Every node that is up has joined, nothing is in flight, and the zones of the live
  /// nodes partition the space exactly. `why` says what is wrong.
  bool partitioned(std::string* why = nullptr) {
    auto fail = [&](std::string s) {
      if (why) *why = std::move(s);
      return false;
    };
    std::vector<can_zone> all;
    for (sim::node_index i = 0; i < world.size(); ++i) {
      can* r = find(i);
      if (!r) continue;
      if (!r->joined()) return fail("node " + std::to_string(i) + " is up but not joined");
      if (r->takeovers_in_progress() || r->pending_joins()) return fail("node " + std::to_string(i) + " busy");
      if (r->zones().empty()) return fail("node " + std::to_string(i) + " holds no zone");
      for (auto& z : r->zones()) {
        if (!z.valid(cfg.dimensions)) return fail("invalid zone");
        all.push_back(z);
      }
    }
    for (std::size_t a = 0; a < all.size(); ++a)
      for (std::size_t b = a + 1; b < all.size(); ++b)
        if (all[a].overlaps(all[b])) return fail("two zones overlap");
    // exact sum of 2^-depth: a binary counter with carries
    std::array<std::uint64_t, 8 * 32 + 2> count{};
    for (auto& z : all) ++count[z.total_depth()];
    for (std::size_t k = count.size() - 1; k > 0; --k) {
      if (count[k] % 2) return fail("volumes do not sum to 1 (odd count at depth " + std::to_string(k) + ")");
      count[k - 1] += count[k] / 2;
      count[k] = 0;
    }
    if (count[0] != 1) return fail("volumes sum to " + std::to_string(count[0]) + ", not 1");
    return true;
  }

  /// Every live node's neighbour table holds exactly the nodes whose zones abut its own.
  bool tables_exact(std::string* why = nullptr) {
    auto nodes = live();
    for (auto i : nodes) {
      auto& r = router(i);
      std::set<address> expect, got;
      for (auto j : nodes) {
        if (j == i) continue;
        bool abut = false;
        for (auto& a : r.zones())
          for (auto& b : router(j).zones()) abut = abut || a.abuts(b);
        if (abut) expect.insert(address::sim(j));
      }
      for (auto& c : r.neighbours()) got.insert(c.addr);
      if (got != expect) {
        if (why) {
          *why = "node " + std::to_string(i) + "'s neighbour table is not exact:";
          for (auto& a : expect)
            if (!got.contains(a)) {
              auto on = router(a.sim_index()).neighbours();
              const bool has_us =
                  std::any_of(on.begin(), on.end(), [&](const dht::contact& c) { return c.addr == address::sim(i); });
              *why += " misses " + a.to_string() + (has_us ? " (which has it)" : " (which lacks it too)");
              auto zs = [](const std::vector<can_zone>& v) {
                std::string o;
                for (auto& z : v)
                  o += "[" + std::to_string(z.lo[0] >> 24) + "+" + std::to_string(z.width(0) >> 24) + "," +
                      std::to_string(z.lo[1] >> 24) + "+" + std::to_string(z.width(1) >> 24) + "]";
                return o;
              };
              *why += " mine " + zs(r.zones()) + " its " + zs(router(a.sim_index()).zones()) + "\n";
              for (auto& c : r.neighbours())
                *why += "   my nb " + c.addr.to_string() + " " + zs(router(c.addr.sim_index()).zones()) + "\n";
              for (auto& c : on)
                *why += "   its nb " + c.addr.to_string() + " " + zs(router(c.addr.sim_index()).zones()) + "\n";
            }
          for (auto& a : got)
            if (!expect.contains(a)) *why += " has " + a.to_string();
        }
        return false;
      }
    }
    if (why) why->clear();
    return true;
  }

  bool settle(duration limit = 60s) {
    std::string why;
    auto r = world.run_until([&] { return partitioned(&why); }, world.now() + limit);
    if (r.reason != sim::stop_reason::predicate) {
      MESSAGE("not settled: " << why);
      if (std::getenv("CAN_DEBUG")) {
        std::ostringstream os;
        os << world.metrics();
        MESSAGE(os.str());
      }
      return false;
    }
    return true;
  }

  /// The one live node whose zones hold the key's point; checks that there is exactly one.
  std::optional<sim::node_index> owner(const node_id& key) {
    std::optional<sim::node_index> found;
    int owners = 0;
    for (auto i : live())
      if (router(i).owns(key)) found = i, ++owners;
    CHECK(owners == 1);
    return found;
  }

  struct stats {
    std::size_t correct = 0, wrong = 0, failed = 0;
    double mean_hops = 0;
  };
  stats lookups(std::size_t count) {
    stats st;
    auto nodes = live();
    std::size_t done = 0, hops = 0;
    for (std::size_t q = 0; q < count; ++q) {
      const node_id key = node_id::random(world.rng());
      const auto expect = owner(key);
      REQUIRE(expect);
      const auto from = nodes[world.rng().below(nodes.size())];
      router(from).lookup(key, 3, [&, want = *expect](dcp::result<dht::lookup_result> r) {
        ++done;
        if (!r) return (void)++st.failed;
        hops += r->hops;
        (!r->owners.empty() && r->owners.front().addr == address::sim(want)) ? ++st.correct : ++st.wrong;
      });
    }
    world.run_until([&] { return done == count; }, world.now() + 60s);
    REQUIRE(done == count);
    st.mean_hops = st.correct + st.wrong ? static_cast<double>(hops) / static_cast<double>(st.correct + st.wrong) : 0;
    return st;
  }
};

/// The seeds a sweep runs: first..last (a third under sanitizers), or CAN_SEEDS seeds from
/// CAN_SEED0 on (e.g. CAN_SEED0=1000 CAN_SEEDS=200 test_can, to look further).
std::vector<std::uint64_t> seeds(std::uint64_t first, std::uint64_t last) {
  std::vector<std::uint64_t> out;
  if (const char* n = std::getenv("CAN_SEEDS")) {
    const std::uint64_t base = std::getenv("CAN_SEED0") ? std::strtoull(std::getenv("CAN_SEED0"), nullptr, 10) : first;
    for (std::uint64_t k = 0; k < std::strtoull(n, nullptr, 10); ++k) out.push_back(base + k);
    return out;
  }
  for (std::uint64_t s = first; s <= dcp::test::last_seed(first, last); ++s) out.push_back(s);
  return out;
}

/// The paper's mean path length with n equal zones, (d/4)·n^(1/d), times a loose factor:
/// a sanity property (zones are not equal), not a speed assertion.
double hop_bound(unsigned d, std::size_t n) { return 2.0 * (d / 4.0) * std::pow(static_cast<double>(n), 1.0 / d) + 2; }

}  // namespace

TEST_CASE("can: zone geometry (split, merge, neighbours, distance, validity)") {
  can_zone whole;
  CHECK(whole.valid(2));
  CHECK(whole.volume() == 1.0);
  CHECK(whole.split_dimension(2) == 0);
  auto [left, right] = whole.halves(0);
  CHECK(left.volume() == 0.5);
  CHECK(left.abuts(right));  // along x, at 1/2 and (torus) at 0
  CHECK(!left.overlaps(right));
  CHECK(can_zone::merge(left, right) == whole);
  CHECK(left.split_dimension(2) == 1);  // cyclic: y next
  auto [ll, lr] = left.halves(1);
  auto [rl, rr] = right.halves(1);
  CHECK(ll.abuts(lr));
  CHECK(ll.abuts(rl));
  CHECK(!ll.abuts(rr));                // diagonal: they meet at a corner only
  CHECK(!can_zone::merge(ll, rr));     // diagonal: not one box
  CHECK(!can_zone::merge(ll, right));  // different sizes
  CHECK(can_zone::merge(ll, lr) == left);
  // distance: inside is 0; across the wrap-around is short
  dht::can_point p{};
  p[0] = 10;
  p[1] = 10;
  CHECK(ll.distance2(p) == 0);
  CHECK(rr.distance2(p) > 0);
  dht::can_point q{};
  q[0] = 0xFFFFFFF0u;
  q[1] = 5;
  CHECK(ll.distance2(q) == 16u * 16u);  // 16 cells away through the wrap
  // absurd zones are invalid
  can_zone bad = ll;
  bad.depth[0] = 33;
  CHECK(!bad.valid(2));
  bad = ll;
  bad.lo[1] = 3;  // not aligned to its width
  CHECK(!bad.valid(2));
  bad = ll;
  bad.depth[2] = 1;  // a third dimension in a 2-d space
  CHECK(!bad.valid(2));
}

TEST_CASE("can: joins partition the space exactly; lookups reach the owner within the paper's hop bound (many seeds)") {
  for (unsigned d : {2u, 3u}) {
    for (std::uint64_t seed : seeds(1, 6)) {
      CAPTURE(d);
      CAPTURE(seed);
      world_t w(seed, fast(d), lossy(std::getenv("CAN_LOSS") ? std::atof(std::getenv("CAN_LOSS")) : 0.02));
      w.grow(120);
      REQUIRE(w.settle());
      // and every node's neighbour table becomes exactly the set of nodes whose zones abut its own
      std::string why;
      CHECK(w.world.run_until([&] { return w.tables_exact(&why); }, w.world.now() + 30s).reason ==
            sim::stop_reason::predicate);
      if (!why.empty()) MESSAGE(why);
      auto st = w.lookups(200);
      CHECK(st.failed == 0);
      CHECK(st.wrong == 0);
      CHECK(st.mean_hops <= hop_bound(d, 120));
      CHECK(w.counter("zone_overlaps") == 0);
    }
  }
}

TEST_CASE(
    "can: crashes of non-adjacent nodes are taken over by a neighbour; the partition stays exact (many seeds, loss)") {
  for (std::uint64_t seed : seeds(11, 18)) {
    CAPTURE(seed);
    world_t w(seed, fast(2), lossy(0.03));
    w.grow(100);
    REQUIRE(w.settle());
    // crash up to 10 nodes at once, no two of them neighbours: each zone keeps a live neighbour
    auto nodes = w.live();
    std::vector<sim::node_index> victims;
    std::set<address> shielded;
    for (int t = 0; t < 200 && victims.size() < 10; ++t) {
      const auto v = nodes[w.world.rng().below(nodes.size())];
      if (v == *w.founder && victims.empty()) continue;
      if (shielded.contains(address::sim(v))) continue;
      victims.push_back(v);
      shielded.insert(address::sim(v));
      for (auto& c : w.router(v).neighbours()) shielded.insert(c.addr);
    }
    for (auto v : victims) w.world.crash(v);
    REQUIRE(w.settle());
    CHECK(w.counter("takeovers") >= static_cast<std::int64_t>(victims.size()));
    CHECK(w.counter("zone_overlaps") == 0);
    auto st = w.lookups(150);
    CHECK(st.failed == 0);
    CHECK(st.wrong == 0);
    // then a second round, with joins meanwhile: crash 3 more one at a time, 5 new nodes
    for (int k = 0; k < 3; ++k) {
      auto now_live = w.live();
      w.world.crash(now_live[w.world.rng().below(now_live.size())]);
      w.grow(2, 200ms);
    }
    REQUIRE(w.settle());
    auto st2 = w.lookups(100);
    CHECK(st2.failed == 0);
    CHECK(st2.wrong == 0);
    CHECK(w.counter("zone_overlaps") == 0);
  }
}

TEST_CASE("can: departures hand zones to a neighbour (merged when they form one box); lookups still reach the owner") {
  for (std::uint64_t seed : seeds(21, 26)) {
    CAPTURE(seed);
    world_t w(seed, fast(2), lossy(0.02));
    w.grow(80);
    REQUIRE(w.settle());
    std::size_t left = 0;
    for (int k = 0; k < 20; ++k) {
      auto nodes = w.live();
      const auto v = nodes[w.world.rng().below(nodes.size())];
      w.router(v).leave();
      w.world.run_until([&] { return !w.router(v).leaving_in_progress(); }, w.world.now() + 5s);
      w.world.crash(v);  // a process that left exits (after its handover)
      ++left;
    }
    REQUIRE(w.settle());
    CHECK(w.counter("left") + w.counter("leave_unacknowledged") == static_cast<std::int64_t>(left));
    CHECK(w.counter("handovers_taken") >= 15);
    if (std::getenv("CAN_DEBUG")) {
      std::ostringstream os;
      os << w.world.metrics();
      MESSAGE(os.str());
    }
    auto st = w.lookups(150);
    if (std::getenv("CAN_DEBUG")) {
      std::ostringstream os;
      os << w.world.metrics();
      MESSAGE(os.str());
    }
    CHECK(st.failed == 0);
    CHECK(st.wrong == 0);
    CHECK(w.counter("zone_overlaps") == 0);
    // a node holding several zones hands the whole one to a newcomer landing in it
    w.grow(20);
    REQUIRE(w.settle());
    auto st2 = w.lookups(100);
    CHECK(st2.wrong == 0);
    CHECK(st2.failed == 0);
  }
}

TEST_CASE("can: routed payloads reach the owner; lookup answers after the call; the store runs over CAN") {
  world_t w(5, fast(2), lossy(0.0));
  w.grow(40);
  REQUIRE(w.settle());
  // a lone answer is deferred: the callback does not run inside lookup()
  auto nodes = w.live();
  const node_id own_key = [&] {
    for (;;) {
      auto k = node_id::random(w.world.rng());
      if (w.router(nodes[0]).owns(k)) return k;
    }
  }();
  dht_test::check_own_lookup_after_call(w.world, w.router(nodes[0]), own_key);
  // route(): delivered once, at the owner
  std::map<sim::node_index, int> got;
  for (auto i : nodes) w.router(i).on_deliver([&, i](const node_id&, const dht::contact&, bytes) { ++got[i]; });
  const node_id key = node_id::hash("payload");
  const auto owner = w.owner(key);
  w.router(nodes[3]).route(key, bytes{1, 2, 3});
  w.world.run_for(2s);
  CHECK(got.size() == 1);
  CHECK(got[*owner] == 1);
}

TEST_CASE("can: dht::store over CAN: a put is read back from another node, and after its owner crashed") {
  using store_t = dht::store<sim::env, can>;
  sim::simulator world(9, lossy(0.01));
  std::optional<sim::node_index> founder;
  auto cfg = fast(2);
  dht::store_config sc;
  sc.replicas = 3;
  sc.sync_interval = 1s;
  sc.request_timeout = 1s;
  for (int k = 0; k < 30; ++k) {
    world.add_node([&](sim::node_context& ctx) {
      auto& r = ctx.add<can>(pid, cfg);
      ctx.add<store_t>(store_t::default_id, r, sc);
      if (!founder) {
        founder = ctx.index();
        r.bootstrap({});
      } else {
        r.bootstrap({{node_id{}, address::sim(*founder)}});
      }
    });
    world.run_for(50ms);
  }
  world.run_for(10s);
  auto kv = [&](sim::node_index i) -> store_t& { return world.get<store_t>(i, store_t::default_id); };
  std::error_code put_ec = make_error_code(dht::errc::no_replica);
  kv(3).put("k", to_bytes("v"), [&](const dcp::result<std::uint64_t>& r) { put_ec = r.error(); });
  world.run_for(5s);
  REQUIRE(!put_ec);
  std::string got;
  kv(17).get("k", [&](dcp::result<dht::stored_value> v) {
    if (v) got.assign(v->value.begin(), v->value.end());
  });
  world.run_for(5s);
  CHECK(got == "v");
  // the owner crashes: a neighbour takes its zone over, and the store's replicas (the owner's
  // nearest neighbours) give the value to it
  std::optional<sim::node_index> owner;
  for (sim::node_index i = 0; i < world.size(); ++i)
    if (auto* r = world.find<can>(i, pid); r && r->owns(node_id::hash("k"))) owner = i;
  REQUIRE(owner);
  world.crash(*owner);
  world.run_for(20s);
  got.clear();
  const sim::node_index reader = *owner == 17 ? 18 : 17;
  kv(reader).get("k", [&](dcp::result<dht::stored_value> v) {
    if (v) got.assign(v->value.begin(), v->value.end());
  });
  world.run_for(5s);
  CHECK(got == "v");
}

TEST_CASE("can: hostile input (forged TAKEOVER, absurd zones, huge lists, strangers) is counted and changes nothing") {
  world_t w(31, fast(2), lossy(0.0));
  w.grow(30);
  REQUIRE(w.settle());
  auto nodes = w.live();
  auto& r = w.router(nodes[4]);
  const auto zones_before = r.zones();
  const auto neighbours_before = r.neighbours();
  REQUIRE(!neighbours_before.empty());
  const dht::contact victim = neighbours_before.front();  // a live neighbour of r
  // a stranger: a node that is not r's neighbour
  std::optional<sim::node_index> s;
  for (auto i : nodes)
    if (i != nodes[4] && std::none_of(neighbours_before.begin(), neighbours_before.end(), [&](const dht::contact& c) {
          return c.addr == address::sim(i);
        }))
      s = i;
  REQUIRE(s);
  const dht::contact stranger = w.router(*s).self();
  const std::int64_t bad0 = w.counter("bad_message"), alive0 = w.counter("takeover_refused_alive"),
                     spoof0 = w.counter("spoofed_sender"), handover0 = w.counter("bad_handover"),
                     evicted0 = w.counter("bad_evicted"), overlaps0 = w.counter("zone_overlaps");

  // a forged TAKEOVER of a live neighbour: refused, nothing changes
  r.on_message(stranger.addr, dht::can_msg::takeover{7, stranger, victim, r.neighbour_zones(victim.addr), 1e-9});
  CHECK(w.counter("takeover_refused_alive") == alive0 + 1);
  // ... and of r itself
  r.on_message(stranger.addr, dht::can_msg::takeover{8, stranger, r.self(), r.zones(), 1e-9});
  CHECK(w.counter("takeover_refused_alive") == alive0 + 2);
  // a sender naming another address
  r.on_message(stranger.addr, dht::can_msg::takeover{9, victim, victim, r.neighbour_zones(victim.addr), 1e-9});
  CHECK(w.counter("spoofed_sender") == spoof0 + 1);
  // absurd zones: depth beyond the grid, misaligned, a dimension too many, volume out of range
  can_zone absurd;
  absurd.depth[0] = 200;
  r.on_message(stranger.addr, dht::can_msg::takeover{10, stranger, victim, {absurd}, 0.5});
  can_zone misaligned;
  misaligned.depth[0] = 3;
  misaligned.lo[0] = 12345;
  r.on_message(stranger.addr, dht::can_msg::update{stranger, 0, {misaligned}, {}, true});
  can_zone extra_dim;
  extra_dim.depth[5] = 1;
  r.on_message(stranger.addr, dht::can_msg::update{stranger, 0, {extra_dim}, {}, false});
  r.on_message(stranger.addr, dht::can_msg::takeover{11, stranger, victim, r.neighbour_zones(victim.addr), -1.0});
  r.on_message(stranger.addr,
               dht::can_msg::takeover{12, stranger, victim, r.neighbour_zones(victim.addr), std::nan("")});
  // huge lists: too many zones, too many neighbours
  std::vector<can_zone> many(w.cfg.max_zones + 1, r.zones().front());
  r.on_message(stranger.addr, dht::can_msg::update{stranger, 0, many, {}, false});
  std::vector<dht::can_msg::holder> crowd(w.cfg.max_neighbours + 1,
                                          dht::can_msg::holder{stranger, {r.zones().front()}});
  r.on_message(stranger.addr, dht::can_msg::update{stranger, 0, w.router(*s).zones(), crowd, false});
  r.on_message(stranger.addr, dht::can_msg::handover{1, stranger, many, {}});
  CHECK(w.counter("bad_message") == bad0 + 8);
  // an update claiming r's own zone: not adopted
  r.on_message(stranger.addr, dht::can_msg::update{stranger, 0, r.zones(), {}, false});
  CHECK(w.counter("zone_overlaps") == overlaps0 + 1);
  // a handover from a non-neighbour is refused; an eviction from a non-neighbour is ignored
  r.on_message(stranger.addr, dht::can_msg::handover{2, stranger, w.router(*s).zones(), {}});
  CHECK(w.counter("bad_handover") == handover0 + 1);
  r.on_message(stranger.addr, dht::can_msg::evicted{stranger});
  CHECK(w.counter("bad_evicted") == evicted0 + 1);
  // replies that match nothing
  r.on_message(stranger.addr, dht::can_msg::lookup_reply{424242, 1, {stranger}});
  r.on_message(stranger.addr, dht::can_msg::join_confirm{1, false});
  r.on_message(stranger.addr, dht::can_msg::handover_ack{1, true});
  r.on_message(stranger.addr, dht::can_msg::takeover_reply{1, stranger, victim, 0, 0, {}});
  CHECK(w.counter("stale_reply") >= 4);
  // nothing changed
  CHECK(r.zones() == zones_before);
  CHECK(r.neighbours() == neighbours_before);
  CHECK(r.joined());
  CHECK(r.takeovers_in_progress() == 0);
  w.world.run_for(3s);
  CHECK(w.partitioned());
  CHECK(w.router(nodes[4]).zones() == zones_before);
  auto st = w.lookups(50);
  CHECK(st.wrong == 0);
  CHECK(st.failed == 0);
}

TEST_CASE("can: bad arguments and a node not joined answer after the call") {
  world_t w(3, fast(2), lossy(0.0));
  w.grow(1);
  w.world.add_node([](sim::node_context& ctx) { ctx.add<can>(pid, fast(2)); });  // never bootstrapped
  std::vector<std::error_code> got;
  auto cb = [&](const dcp::result<dht::lookup_result>& r) { got.push_back(r.error()); };
  w.router(1).lookup(node_id::hash("x"), 1, cb);
  w.router(0).lookup(node_id::hash("x"), 0, cb);
  CHECK(got.empty());
  w.world.run_for(1ms);
  REQUIRE(got.size() == 2);
  CHECK(got[0] == dht::errc::not_joined);
  CHECK(got[1] == dht::errc::bad_argument);
  CHECK_THROWS(dht::can_config{.dimensions = 9}.validate());
  CHECK_THROWS(dht::can_config{.dimensions = 0}.validate());
}

namespace {

/// A node that answers every lookup reaching it in another node's name (`victim` as
/// the owner): a relay, or a forger that claimed a zone in an update.
struct can_forger {
  using messages = can::messages;
  static constexpr std::string_view name = "forger";
  can_forger(sim::env env, dht::contact victim)
      : env_(std::move(env)), self_{node_id::random(env_.rng()), env_.self()}, victim_(victim) {}
  void on_message(const address& from, const dht::can_msg::route& m) {
    env_.send(from, dht::can_msg::route_ack{m.hop});
    ++routes;
    env_.send(m.origin.addr, dht::can_msg::lookup_reply{m.nonce, 1, {victim_}});
  }
  template <class M> void on_message(const address&, const M&) {}
  sim::env env_;
  dht::contact self_;
  dht::contact victim_;
  std::size_t routes = 0;
};

/// A JOIN for `key` from `joiner`, as the owner of the key's point receives it.
dht::can_msg::route join_for(const node_id& key, const dht::contact& joiner) {
  auto m =
      dht::detail::join_request<dht::can_msg::route>(static_cast<std::uint8_t>(dht::can_msg::kind::join), joiner, 7, 8);
  m.key = key;
  return m;
}

}  // namespace

TEST_CASE("can: a lookup reply that does not name its sender among the owners is refused") {
  for (auto seed : seeds(71, 73)) {
    CAPTURE(seed);
    world_t w(seed, fast(), lossy(0));
    w.grow(16);
    REQUIRE(w.settle());
    const node_id key = node_id::random(w.world.rng());
    const auto owner = *w.owner(key);
    auto& o = w.router(owner);
    REQUIRE_FALSE(o.neighbours().empty());
    const auto origin = o.neighbours().front().addr.sim_index();  // a neighbour of the key's owner
    dht::contact victim;
    for (auto i : w.live())
      if (i != owner && i != origin) victim = w.router(i).self();
    const auto f = w.world.add_node([&](sim::node_context& ctx) { ctx.add<can_forger>(pid, victim); });
    auto& fg = w.world.get<can_forger>(f, pid);
    // the forger claims the owner's zone in an update: the origin now routes the key to it
    w.router(origin).on_message(fg.self_.addr, dht::can_msg::update{fg.self_, 1, o.zones(), {}, false});
    w.world.metrics().reset();
    bool done = false, to_victim = false;
    w.router(origin).lookup(key, 1, [&](dcp::result<dht::lookup_result> r) {
      done = true;
      to_victim = r && !r->owners.empty() && r->owners.front().addr == victim.addr;
    });
    w.world.run_until([&] { return done; }, w.world.now() + 10s);
    REQUIRE(done);
    REQUIRE(fg.routes > 0);  // the forger was asked: the check means something
    CHECK_FALSE(to_victim);
    CHECK(w.counter("spoofed_reply") > 0);
  }
}

TEST_CASE(
    "can: with bound ids a node joins only at the point its address gives; without, it splits the zone it chooses") {
  for (auto seed : seeds(81, 83)) {
    CAPTURE(seed);
    for (auto b : {dht::id_binding::none, dht::id_binding::bep42}) {
      // a JOIN at a target key's point from a node with a bound id (which gives another
      // point), or from one whose id is the target itself (not bound to its address)
      for (bool bound_joiner : {true, false}) {
        CAPTURE(bound_joiner);
        auto cfg = fast();
        cfg.bind_ids = b;
        world_t w(seed, cfg, lossy(0));
        w.grow(16);
        REQUIRE(w.settle());
        for (auto i : w.live()) CHECK(w.router(i).binds_ids() == (b == dht::id_binding::bep42));
        const node_id target = node_id::random(w.world.rng());
        const auto owner = *w.owner(target);
        auto& o = w.router(owner);
        const auto zones = o.zones();
        const address at = address::sim(900);
        const dht::contact joiner{bound_joiner ? dht::bep42_id(at, w.world.rng()) : target, at};
        o.on_message(joiner.addr, join_for(target, joiner));
        if (b == dht::id_binding::none) {
          CHECK(o.pending_joins() == 1);  // the hijack: whoever names a point splits its zone and takes half
          continue;
        }
        CHECK(o.pending_joins() == 0);
        CHECK(o.zones() == zones);
        CHECK(w.counter(bound_joiner ? "unbound_join_point" : "unbound_id") == 1);
        // and honest nodes with bound ids still partition the space and find owners
        auto st = w.lookups(60);
        CHECK(st.failed == 0);
        CHECK(st.wrong == 0);
      }
    }
  }
}
