// Tapestry (dcp/dht/tapestry.hpp) in the simulator: insertion, surrogate
// routing, object location, repair after crashes, departures and hostile
// input, over many seeds with message loss, duplication and reordering.
//
// The properties, checked once the overlay has settled:
//   - consistency (the paper's Property 1): a node's slot (l, d) is empty
//     exactly when no live node has the prefix (its first l digits, then d);
//   - root uniqueness: lookups of a key from every node reach the same node,
//     the live node at the smallest surrogate distance (computed globally);
//   - surrogate routing terminates: every lookup answers, within 40 + detours hops;
//   - object location: a published object is located from every node, and,
//     after unpublish and pointer expiry, no longer;
//   - after crashes and repair, the above still hold over the survivors;
//   - malformed messages are counted and change nothing.
//
// Other seeds: TAPESTRY_SEED0=N TAPESTRY_SEEDS=K test_tapestry.
#include <doctest/doctest.h>

#include <cstdlib>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "../seeds.hpp"  // fewer seeds under sanitizers
#include "../dht/harness.hpp"

using namespace dcp;
using tap = dht::tapestry<sim::env>;
using dht_test::overlay;

static_assert(dht::Router<tap>, "dht::tapestry must model the Router concept");

namespace {

dht::tapestry_config fast() {
  dht::tapestry_config c;
  c.rpc_timeout = 150ms;
  c.maintain_interval = 300ms;
  c.lookup_timeout = 4s;
  c.republish_interval = 2s;
  c.pointer_ttl = 5s;
  c.failed_memory = 10s;
  // 5 silent rounds: at 2% loss each way a live neighbour misses 6 probes in a row with
  // probability 4e-9, so the sweeps see no false failure (3 gives about one per run)
  c.failure_threshold = 5;
  return c;
}

sim::config faulty(double loss, double duplicate = 0.0, double reorder = 0.0) {
  sim::config sc;
  sc.network.delay = sim::latency::uniform(1ms, 20ms);
  sc.network.loss = loss;
  sc.network.duplicate = duplicate;
  sc.network.reorder = reorder;
  return sc;
}

std::vector<std::uint64_t> seeds(std::uint64_t first, std::uint64_t last) {
  std::vector<std::uint64_t> out;
  if (const char* n = std::getenv("TAPESTRY_SEEDS")) {
    const std::uint64_t base =
        std::getenv("TAPESTRY_SEED0") ? std::strtoull(std::getenv("TAPESTRY_SEED0"), nullptr, 10) : first;
    for (std::uint64_t k = 0; k < std::strtoull(n, nullptr, 10); ++k) out.push_back(base + k);
    return out;
  }
  for (std::uint64_t s = first; s <= dcp::test::last_seed(first, last); ++s) out.push_back(s);
  return out;
}

using world_t = overlay<tap, dht::tapestry_config>;

std::int64_t counter(world_t& w, std::string_view name) { return w.world.metrics().counter(tap::default_id, name); }

/// Property 1: every live node's slot (l, d) is filled exactly when a live node has
/// that prefix, and holds only live nodes with it. `why` says what is wrong.
bool consistent(world_t& w, std::string* why = nullptr) {
  auto nodes = w.live();
  std::set<address> up;
  for (auto i : nodes) up.insert(address::sim(i));
  for (sim::node_index i = 0; i < w.world.size(); ++i)
    if (tap* r = w.find(i); r && !r->joined()) {
      if (why) *why = "node " + std::to_string(i) + " is up but not joined";
      return false;
    }
  for (auto i : nodes) {
    auto& r = w.router(i);
    const node_id me = r.self().id;
    // the prefixes that exist, from this node's point of view: (level, digit) of every other node
    std::set<std::pair<std::size_t, unsigned>> exist;
    for (auto j : nodes)
      if (j != i) {
        const node_id other = w.router(j).self().id;
        const std::size_t l = tap::shared_digits(me, other);
        exist.insert({l, tap::digit(other, l)});
      }
    for (std::size_t l = 0; l < tap::levels; ++l)
      for (unsigned d = 0; d < tap::base; ++d) {
        if (d == tap::digit(me, l)) continue;
        const auto s = r.slot(l, d);
        for (auto& c : s)
          if (!up.contains(c.addr) || tap::shared_digits(me, c.id) != l || tap::digit(c.id, l) != d) {
            if (why)
              *why = "node " + std::to_string(i) + " slot (" + std::to_string(l) + "," + std::to_string(d) +
                  ") holds a dead or misplaced node";
            return false;
          }
        if (s.empty() == exist.contains({l, d})) {
          if (why)
            *why = "node " + std::to_string(i) + " slot (" + std::to_string(l) + "," + std::to_string(d) + ") is " +
                (s.empty() ? "empty but a node has its prefix" : "filled but no node has its prefix");
          return false;
        }
      }
  }
  return true;
}

bool settle(world_t& w, duration limit = 60s) {
  // checked every 250 ms of simulated time: the check walks every table
  std::string why;
  const time_point deadline = w.world.now() + limit;
  while (w.world.now() < deadline) {
    w.world.run_for(250ms);
    if (consistent(w, &why)) return true;
  }
  MESSAGE("not consistent: " << why);
  if (std::getenv("TAPESTRY_DEBUG")) {
    for (auto i : w.live()) {
      std::string line = "node " + std::to_string(i) + " " + w.router(i).self().id.to_string().substr(0, 4) + ":";
      for (auto& c : w.router(i).neighbours())
        line += " " + std::to_string(c.addr.sim_index()) + "/" + c.id.to_string().substr(0, 3);
      MESSAGE(line);
    }
    std::ostringstream os;
    os << w.world.metrics();
    MESSAGE(os.str());
  }
  return false;
}

/// Lookups of `keys` random keys from every live node; each must answer the one
/// root the global view names. Returns the mean hops.
double every_node_agrees(world_t& w, std::size_t keys) {
  auto nodes = w.live();
  std::size_t done = 0, wrong = 0, failed = 0, total = 0, hops = 0;
  unsigned max_hops = 0;
  for (std::size_t k = 0; k < keys; ++k) {
    const node_id key = node_id::random(w.world.rng());
    const address root = w.truth(key, 1).front().addr;
    for (auto from : nodes) {
      ++total;
      w.router(from).lookup(key, 3, [&, root](dcp::result<dht::lookup_result> res) {
        ++done;
        if (!res) return (void)++failed;
        hops += res->hops;
        max_hops = std::max(max_hops, res->hops);
        if (res->owners.empty() || res->owners.front().addr != root) ++wrong;
      });
    }
  }
  w.world.run_until([&] { return done == total; }, w.world.now() + 60s);
  REQUIRE(done == total);  // surrogate routing terminates: every lookup answers
  CHECK(failed == 0);
  CHECK(wrong == 0);
  CHECK(max_hops <= tap::levels);
  return total ? static_cast<double>(hops) / static_cast<double>(total) : 0;
}

struct located {
  std::error_code ec;
  std::vector<dht::contact> servers;
};
/// Locates `guid` from each of `from`; runs until all answered.
std::vector<located> locate_all(world_t& w, const node_id& guid, const std::vector<sim::node_index>& from) {
  std::vector<located> out(from.size());
  std::size_t done = 0;
  for (std::size_t k = 0; k < from.size(); ++k)
    w.router(from[k]).locate(guid, [&, k](dcp::result<dht::locate_result> r) {
      out[k] = {r.error(), r ? std::move(r->servers) : std::vector<dht::contact>{}};
      ++done;
    });
  w.world.run_until([&] { return done == from.size(); }, w.world.now() + 30s);
  REQUIRE(done == from.size());
  return out;
}

}  // namespace

TEST_CASE("tapestry: digits and the surrogate metric") {
  const node_id key = *node_id::from_hex("4378000000000000000000000000000000000000");
  const node_id a = *node_id::from_hex("4377000000000000000000000000000000000000");
  const node_id b = *node_id::from_hex("4228000000000000000000000000000000000000");
  const node_id c = *node_id::from_hex("4379000000000000000000000000000000000000");
  CHECK(tap::digit(key, 0) == 4);
  CHECK(tap::digit(key, 3) == 8);
  CHECK(tap::shared_digits(key, a) == 3);
  CHECK(tap::distance(key, key) == node_id{});
  // 4379 is one digit up from 4378 at level 3: the surrogate when 4378 is missing;
  // 4377 is fifteen up (wrapping), 4228 differs at level 1
  CHECK(tap::distance(key, c) < tap::distance(key, a));
  CHECK(tap::distance(key, a) < tap::distance(key, b));
  CHECK(tap::digit(tap::distance(key, a), 3) == 15);
  CHECK_THROWS(dht::tapestry_config{.entries_per_slot = 0}.validate());
  CHECK_THROWS(dht::tapestry_config{.republish_interval = 10s, .pointer_ttl = 5s}.validate());
}

TEST_CASE(
    "tapestry: insertions keep tables consistent; every node routes a key to the same root (many seeds, loss, duplication)") {
  for (std::uint64_t seed : seeds(1, 8)) {
    CAPTURE(seed);
    world_t w(seed, fast(), faulty(0.02, 0.02, 0.05));
    w.grow(80, 30ms);
    REQUIRE(settle(w));
    CHECK(every_node_agrees(w, 8) <= 4.0);  // log_16 80 ≈ 1.6: a sanity bound, not a speed assertion
    // backpointers: every table entry knows it is one. They are soft state (an add, then
    // every heartbeat), so a link learned in the last round may still be in flight: what
    // must not exist is a link missing its backpointer in two samples a second apart
    auto missing = [&] {
      std::set<std::pair<sim::node_index, address>> out;
      for (auto i : w.live())
        for (auto& c : w.router(i).neighbours()) {
          auto bp = w.router(c.addr.sim_index()).backpointers();
          if (std::find(bp.begin(), bp.end(), address::sim(i)) == bp.end()) out.insert({i, c.addr});
        }
      return out;
    };
    const auto first = missing();
    w.world.run_for(1s);
    for (auto& m : missing()) CHECK(!first.contains(m));
    // c entries per slot at most, the closest first (by this node's own measurements)
    for (auto i : w.live())
      for (std::size_t l = 0; l < w.router(i).table_levels(); ++l)
        for (unsigned d = 0; d < tap::base; ++d) CHECK(w.router(i).slot(l, d).size() <= w.cfg.entries_per_slot);
  }
}

TEST_CASE(
    "tapestry: publish leaves pointers on the path; locate finds the server; unpublish and expiry remove them (many seeds, loss)") {
  for (std::uint64_t seed : seeds(21, 26)) {
    CAPTURE(seed);
    world_t w(seed, fast(), faulty(0.02, 0.01));
    w.grow(60, 30ms);
    REQUIRE(settle(w));
    auto nodes = w.live();
    std::vector<std::pair<node_id, sim::node_index>> objects;
    for (int k = 0; k < 6; ++k) {
      const node_id guid = node_id::hash("object " + std::to_string(k));
      const auto server = nodes[w.world.rng().below(nodes.size())];
      w.router(server).publish(guid);
      objects.push_back({guid, server});
    }
    w.world.run_for(3s);  // a republish round covers a lost publish
    for (auto& [guid, server] : objects) {
      // the root holds a pointer to the server
      const auto root = w.truth(guid, 1).front().addr.sim_index();
      auto at_root = w.router(root).pointers_for(guid);
      const address want = address::sim(server);
      CHECK(std::any_of(at_root.begin(), at_root.end(), [&](const dht::contact& c) { return c.addr == want; }));
      for (auto& r : locate_all(w, guid, nodes)) {
        if (r.ec)
          MESSAGE("locate: " << r.ec.message() << " hop_detours " << counter(w, "hop_detours") << " failures "
                             << counter(w, "neighbour_failures"));
        CHECK(!r.ec);
        CHECK(std::any_of(r.servers.begin(), r.servers.end(), [&](const dht::contact& c) { return c.addr == want; }));
      }
    }
    // a second server of the same object: both are found at the root
    const auto [g0, s0] = objects.front();
    const auto second = nodes[(std::find(nodes.begin(), nodes.end(), s0) - nodes.begin() + 1) % nodes.size()];
    w.router(second).publish(g0);
    w.world.run_for(3s);
    CHECK(w.router(w.truth(g0, 1).front().addr.sim_index()).pointers_for(g0).size() == 2);
    // unpublish everything; after the pointers' lifetime no node finds any
    for (auto& o : objects) w.router(o.second).unpublish(o.first);
    w.router(second).unpublish(g0);
    w.world.run_for(w.cfg.pointer_ttl + 1s);
    for (auto& o : objects) {
      for (auto i : nodes) CHECK(w.router(i).pointers_for(o.first).empty());
      for (auto& r : locate_all(w, o.first, {nodes[0], nodes[nodes.size() / 2]})) CHECK(r.ec == dht::errc::not_found);
    }
  }
}

TEST_CASE(
    "tapestry: after crashes, tables are repaired from backups and routing still reaches the one root (many seeds, loss)") {
  for (std::uint64_t seed : seeds(41, 46)) {
    CAPTURE(seed);
    sim::config sc = faulty(0.02);
    sc.report_unreachable = false;  // crashes are found by timeouts only
    world_t w(seed, fast(), sc);
    w.grow(80, 30ms);
    REQUIRE(settle(w));
    auto nodes = w.live();
    // objects served by nodes that survive
    std::vector<std::pair<node_id, sim::node_index>> objects;
    for (int k = 0; k < 4; ++k)
      objects.push_back({node_id::hash("obj" + std::to_string(k)), nodes[static_cast<std::size_t>(k)]});
    for (auto& o : objects) w.router(o.second).publish(o.first);
    w.world.run_for(2s);
    // crash 12 nodes at once (not the servers)
    std::set<sim::node_index> victims;
    while (victims.size() < 12) {
      const auto v = nodes[4 + w.world.rng().below(nodes.size() - 4)];
      victims.insert(v);
    }
    for (auto v : victims) w.world.crash(v);
    // right away, routes go around the dead: every lookup answers (the root may be stale until repair)
    auto early = w.lookups(40);
    CHECK(early.failed == 0);
    REQUIRE(settle(w));
    CHECK(counter(w, "neighbour_failures") + counter(w, "hop_timeouts") > 0);
    every_node_agrees(w, 5);
    // pointers lost with the dead come back with the servers' republish
    w.world.run_for(w.cfg.republish_interval + 1s);
    auto live = w.live();
    for (auto& o : objects)
      for (auto& r : locate_all(w, o.first, live)) {
        CHECK(!r.ec);
        CHECK(!r.servers.empty());
      }
  }
}

TEST_CASE("tapestry: departures tell the table and backpointers; joins continue; routing reaches the one root") {
  for (std::uint64_t seed : seeds(61, 64)) {
    CAPTURE(seed);
    world_t w(seed, fast(), faulty(0.01));
    w.grow(60, 30ms);
    REQUIRE(settle(w));
    for (int k = 0; k < 10; ++k) {
      auto nodes = w.live();
      const auto v = nodes[1 + w.world.rng().below(nodes.size() - 1)];
      w.router(v).leave();
      w.world.run_for(50ms);
      w.world.crash(v);  // a process that left exits
    }
    w.grow(10, 100ms);
    REQUIRE(settle(w));
    CHECK(counter(w, "neighbour_left") > 0);
    every_node_agrees(w, 5);
  }
}

TEST_CASE("tapestry: routed payloads reach the root once; completions run after the call") {
  world_t w(5, fast(), faulty(0.0));
  w.grow(30, 30ms);
  REQUIRE(settle(w));
  auto nodes = w.live();
  std::map<sim::node_index, int> got;
  for (auto i : nodes) w.router(i).on_deliver([&, i](const node_id&, const dht::contact&, bytes) { ++got[i]; });
  const node_id key = node_id::hash("payload");
  const auto root = w.truth(key, 1).front().addr.sim_index();
  w.router(nodes[3]).route(key, bytes{1, 2, 3});
  w.world.run_for(2s);
  CHECK(got.size() == 1);
  CHECK(got[root] == 1);
  // the root's own lookup, a locate at a server, bad arguments, a node not joined: all after the call
  dht_test::check_own_lookup_after_call(w.world, w.router(root), key);
  std::vector<std::error_code> errs;
  w.router(root).lookup(key, 0, [&](const dcp::result<dht::lookup_result>& r) { errs.push_back(r.error()); });
  w.world.add_node([](sim::node_context& ctx) { ctx.add<tap>(tap::default_id, fast()); });  // never bootstrapped
  const auto idle = static_cast<sim::node_index>(w.world.size() - 1);
  w.world.get<tap>(idle, tap::default_id).lookup(key, 1, [&](const dcp::result<dht::lookup_result>& r) {
    errs.push_back(r.error());
  });
  w.world.get<tap>(idle, tap::default_id).locate(key, [&](const dcp::result<dht::locate_result>& r) {
    errs.push_back(r.error());
  });
  CHECK(errs.empty());
  w.world.run_for(1ms);
  REQUIRE(errs.size() == 3);
  CHECK(errs[0] == dht::errc::bad_argument);
  CHECK(errs[1] == dht::errc::not_joined);
  CHECK(errs[2] == dht::errc::not_joined);
}

TEST_CASE("tapestry: dht::store over Tapestry: a put is read back from another node, and after its root crashed") {
  using store_t = dht::store<sim::env, tap>;
  dht::store_config sc;
  sc.replicas = 3;
  sc.sync_interval = 1s;
  sc.request_timeout = 1s;
  world_t w(9, fast(), faulty(0.01));
  w.extra = [&](sim::node_context& ctx, tap& r) { ctx.add<store_t>(store_t::default_id, r, sc); };
  w.grow(30, 50ms);
  REQUIRE(settle(w));
  auto kv = [&](sim::node_index i) -> store_t& { return w.world.get<store_t>(i, store_t::default_id); };
  auto get = [&](sim::node_index i) {
    std::optional<std::string> got;
    kv(i).get("k", [&](dcp::result<dht::stored_value> v) {
      got = !v ? "error: " + v.message() : std::string(v->value.begin(), v->value.end());
    });
    w.world.run_until([&] { return got.has_value(); }, w.world.now() + 10s);
    return got.value_or("no answer");
  };
  std::optional<std::error_code> put_ec;
  kv(3).put("k", to_bytes("v"), [&](const dcp::result<std::uint64_t>& r) { put_ec = r.error(); });
  w.world.run_until([&] { return put_ec.has_value(); }, w.world.now() + 10s);
  REQUIRE(put_ec);
  REQUIRE(!*put_ec);
  CHECK(get(17) == "v");
  const auto root = w.truth(node_id::hash("k"), 1).front().addr.sim_index();
  w.world.crash(root);
  REQUIRE(settle(w));
  w.world.run_for(5s);  // the store's sync hands the value to the new root
  const sim::node_index reader = root == 17 ? 18 : 17;
  CHECK(get(reader) == "v");
}

TEST_CASE("tapestry: malformed and hostile messages are counted and change nothing") {
  world_t w(31, fast(), faulty(0.0));
  w.grow(30, 30ms);
  REQUIRE(settle(w));
  auto nodes = w.live();
  auto& r = w.router(nodes[4]);
  const dht::contact me = r.self();
  const dht::contact stranger = w.router(nodes[7]).self();
  const auto table_before = r.neighbours();
  const auto pointers_before = r.pointer_count();
  const std::int64_t bad0 = counter(w, "bad_message"), spoof0 = counter(w, "spoofed_sender"),
                     stale0 = counter(w, "stale_reply");
  namespace msg = dht::tapestry_msg;
  // levels beyond 40, hop counts beyond the limit, absurd owner counts, TTLs beyond the maximum
  msg::route bad_level;
  bad_level.sender = stranger;
  bad_level.origin = stranger;
  bad_level.level = 200;
  r.on_message(stranger.addr, bad_level);
  msg::route bad_hops = bad_level;
  bad_hops.level = 0;
  bad_hops.hops = 60000;
  r.on_message(stranger.addr, bad_hops);
  msg::route bad_n = bad_hops;
  bad_n.hops = 0;
  bad_n.n = 5000;
  r.on_message(stranger.addr, bad_n);
  msg::route bad_ttl = bad_n;
  bad_ttl.n = 1;
  bad_ttl.what = static_cast<std::uint8_t>(msg::kind::publish);
  bad_ttl.server = stranger;
  bad_ttl.ttl_ms = 0xFFFFFFFFu;
  r.on_message(stranger.addr, bad_ttl);
  msg::route bad_kind = bad_n;
  bad_kind.n = 1;
  bad_kind.what = 99;
  r.on_message(stranger.addr, bad_kind);
  // oversized lists
  std::vector<dht::contact> crowd(tap::max_entries + 1, stranger);
  r.on_message(stranger.addr, msg::join_state{1, stranger, true, crowd});
  r.on_message(stranger.addr, msg::row_reply{stranger, crowd});
  r.on_message(stranger.addr, msg::leaving{stranger, crowd});
  r.on_message(stranger.addr, msg::lookup_reply{1, 0, crowd});
  r.on_message(stranger.addr, msg::row_request{stranger, 77, 0});
  r.on_message(stranger.addr, msg::multicast{1, 2, stranger, stranger, 99});
  std::vector<msg::pointer_record> records{{node_id::hash("x"), stranger, 0xFFFFFFFFu}};
  r.on_message(stranger.addr, msg::pointers{stranger, records});
  CHECK(counter(w, "bad_message") == bad0 + 12);
  // a sender naming another address
  r.on_message(stranger.addr, msg::leaving{me, {}});
  r.on_message(stranger.addr, msg::backpointer{w.router(nodes[8]).self(), true});
  r.on_message(stranger.addr, msg::probe{1, me, true, true});
  CHECK(counter(w, "spoofed_sender") == spoof0 + 3);
  // replies and acks that match nothing
  r.on_message(stranger.addr, msg::lookup_reply{424242, 1, {stranger}});
  r.on_message(stranger.addr, msg::locate_reply{424242, 1, {stranger}});
  r.on_message(stranger.addr, msg::route_ack{424242});
  r.on_message(stranger.addr, msg::probe{424242, stranger, true, true});
  CHECK(counter(w, "stale_reply") == stale0 + 4);
  // nothing changed
  CHECK(r.neighbours() == table_before);
  CHECK(r.pointer_count() == pointers_before);
  CHECK(r.joined());
  CHECK(consistent(w));
  every_node_agrees(w, 3);
}
