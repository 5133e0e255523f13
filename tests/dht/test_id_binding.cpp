// Node ids bound to addresses (BEP 42) in Kademlia: a node cannot place itself
// next to a key at will, and honest nodes still form the DHT.
#include <doctest/doctest.h>

#include "../seeds.hpp"  // fewer seeds under sanitizers

#include <set>

#include "harness.hpp"

namespace test_id_binding {

using namespace dcp;
using dht_test::overlay;
using kad = dht::kademlia<sim::env>;
using world_t = overlay<kad, dht::kademlia_config>;

namespace {

dht::kademlia_config config(dht::id_binding b) {
  dht::kademlia_config c;
  c.k = 8;
  c.rpc_timeout = 150ms;
  c.refresh_interval = 10s;
  c.bind_ids = b;
  return c;
}

void grow(world_t& w, std::size_t n) { w.add_spaced(n, 10ms); }

struct capture {
  std::size_t lookups = 0, to_attacker = 0, knowing = 0;
};

/// 40 honest nodes with binding `b`; then an attacker (its own choice: free ids)
/// takes the id next to a target key and joins; every honest node looks the key up.
capture attack(std::uint64_t seed, dht::id_binding b) {
  world_t w(seed, config(b), world_t::lossy(0.0));
  grow(w, 40);
  w.world.run_for(10s);
  const node_id target = node_id::random(w.world.rng());
  auto evil = config(dht::id_binding::none);
  auto v = target.bytes();
  v[node_id::size - 1] ^= 1;  // the closest id there is, short of the key itself
  evil.id = node_id(v);
  const dht::contact seed_contact = w.router(w.live().front()).self();
  const auto attacker =
      w.world.add_node([&](sim::node_context& ctx) { ctx.add<kad>(kad::default_id, evil).bootstrap({seed_contact}); });
  w.world.run_for(10s);
  // and it keeps talking to the key's neighbourhood (lookups of the key, as an eclipse would)
  for (int i = 0; i < 5; ++i) {
    w.world.get<kad>(attacker, kad::default_id).lookup(target, 8, [](const dcp::result<dht::lookup_result>&) {});
    w.world.run_for(2s);
  }
  capture c;
  std::size_t done = 0;
  for (auto i : w.live()) {
    if (i == attacker) continue;
    if (w.router(i).knows(address::sim(attacker))) ++c.knowing;
    ++c.lookups;
    w.router(i).lookup(target, 1, [&, i](dcp::result<dht::lookup_result> r) {
      ++done;
      CAPTURE(i);
      CHECK_FALSE(r.error());
      if (r && r->owners.front().addr == address::sim(attacker)) ++c.to_attacker;
    });
  }
  w.world.run_until([&] { return done == c.lookups; }, w.world.now() + 60s);
  REQUIRE(done == c.lookups);
  if (b == dht::id_binding::bep42) CHECK(w.world.metrics().counter(kad::default_id, "unbound_id") > 0);
  return c;
}

/// A node with a bound id of its own that answers every find_node with contacts
/// right next to the target, at addresses that do not derive their ids.
struct liar {
  using messages = kad::messages;
  static constexpr std::string_view name = "liar";
  liar(sim::env env, std::vector<address> at)
      : env_(std::move(env)), self_{dht::bep42_id(env_.self(), env_.rng()), env_.self()}, at_(std::move(at)) {}
  void on_message(const address& from, const dht::kademlia_msg::ping& m) {
    env_.send(from, dht::kademlia_msg::pong{m.nonce, self_});
  }
  void on_message(const address&, const dht::kademlia_msg::pong&) {}
  void on_message(const address& from, const dht::kademlia_msg::find_node& m) {
    std::vector<dht::contact> lies;
    for (auto& a : at_) {
      auto v = m.target.bytes();
      v[node_id::size - 1] ^= static_cast<std::uint8_t>(1 + lies.size());
      lies.push_back({node_id(v), a});
    }
    env_.send(from, dht::kademlia_msg::nodes{m.nonce, self_, std::move(lies)});
  }
  void on_message(const address&, const dht::kademlia_msg::nodes&) {}
  void on_message(const address&, const dht::kademlia_msg::deliver&) {}
  sim::env env_;
  dht::contact self_;
  std::vector<address> at_;
};

/// Requests a joining node sends to the addresses a liar among its seeds reports next to its id.
std::size_t requests_to_lies(std::uint64_t seed, dht::id_binding b) {
  world_t w(seed, config(b), world_t::lossy(0.0));
  grow(w, 30);
  w.world.run_for(10s);
  auto nodes = w.live();
  // addresses no honest node has heard of (nodes that run no DHT), so a request to one follows a lie
  std::set<sim::node_index> dead;
  std::vector<address> dead_at;
  for (std::size_t k = 0; k < 4; ++k) {
    const auto d = w.world.add_node([](sim::node_context&) {});
    dead.insert(d);
    dead_at.push_back(address::sim(d));
  }
  const auto l = w.world.add_node([&](sim::node_context& ctx) { ctx.add<liar>(kad::default_id, dead_at); });
  const std::vector<dht::contact> seeds{w.world.get<liar>(l, kad::default_id).self_, w.router(nodes[10]).self()};
  std::size_t to_lies = 0;
  sim::node_index joiner = sim::trace_event::npos;
  w.world.on_trace([&](const sim::trace_event& e) {
    if (e.what == sim::trace_event::kind::send && e.from == joiner && dead.count(e.to) && e.protocol == kad::default_id)
      ++to_lies;
  });
  joiner = w.world.add_node([&](sim::node_context& ctx) { ctx.add<kad>(kad::default_id, config(b)).bootstrap(seeds); });
  w.world.run_for(10s);
  CHECK(w.router(joiner).joined());
  if (b == dht::id_binding::bep42) CHECK(w.world.metrics().counter(kad::default_id, "unbound_contact") >= 4);
  return to_lies;
}

}  // namespace

TEST_CASE("id binding: BEP 42's test vectors, and derived ids verify against their address only") {
  struct vec {
    std::array<std::uint8_t, 4> ip;
    const char* id;
  };
  // BEP 42's table: (IP, rand) and an id of that IP whose last byte is rand
  const vec vectors[] = {
      {{124, 31, 75, 21}, "5fbfbff10c5d6a4ec8a88e4c6ab4c28b95eee401"},
      {{21, 75, 31, 124}, "5a3ce9c14e7a08645677bbd1cfe7d8f956d53256"},
      {{65, 23, 51, 170}, "a5d43220bc8f112a3d426c84764f8c2a1150e616"},
      {{84, 124, 73, 14}, "1b0321dd1bb1fe518101ceef99462b947a01ff41"},
      {{43, 213, 53, 83}, "e56f6cbf5b7c4be0237986d5243b87aa6d51305a"},
  };
  for (auto& t : vectors) {
    CAPTURE(t.id);
    const auto id = *node_id::from_hex(t.id);
    CHECK(dht::bep42_valid(id, address::ipv4(t.ip, 6881)));
    CHECK(dht::bep42_valid(id, address::ipv4(t.ip, 7000)));  // the port is not bound: the address's host is
    auto v = id.bytes();
    v[2] ^= 0x08;  // the 21st bit
    CHECK_FALSE(dht::bep42_valid(node_id(v), address::ipv4(t.ip, 6881)));
    v = id.bytes();
    v[19] ^= 0x01;  // another r
    CHECK_FALSE(dht::bep42_valid(node_id(v), address::ipv4(t.ip, 6881)));
  }
  // derived ids, for every kind of address: valid for theirs, for (almost) no other
  dcp::rng r(7);
  const address kinds[] = {address::ipv4({10, 0, 0, 7}, 1), *address::parse("[2001:db8::1]:7000"),
                           *address::parse("[::ffff:10.0.0.7]:7000"), address::sim(12),
                           *address::parse("db-0.svc:7000")};
  for (auto& a : kinds) {
    CAPTURE(a);
    std::size_t others = 0;
    for (int i = 0; i < 200; ++i) {
      const node_id id = dht::bep42_id(a, r);
      CHECK(dht::bep42_valid(id, a));
      if (dht::bep42_valid(id, address::sim(static_cast<std::uint32_t>(1000 + i)))) ++others;
    }
    CHECK(others <= 2);  // 2^-21 each, give or take the 8 prefixes of one address
  }
  // the IPv4-mapped address binds as its IPv4 address
  const node_id m = dht::bep42_id(*address::parse("[::ffff:10.0.0.7]:7000"), r);
  CHECK(dht::bep42_valid(m, address::ipv4({10, 0, 0, 7}, 9)));
  CHECK_FALSE(dht::bep42_valid(m, address{}));
}

TEST_CASE(
    "id binding: a node that picks the id next to a key captures it without binding, and is refused with it (many seeds)") {
  std::size_t captured_free = 0, lookups_free = 0;
  for (std::uint64_t seed = 1; seed <= dcp::test::last_seed(1, 6); ++seed) {
    CAPTURE(seed);
    // the hijack, as Kademlia is published: the key's owner is whoever says it is closest
    const auto free = attack(seed, dht::id_binding::none);
    captured_free += free.to_attacker;
    lookups_free += free.lookups;
    // bound ids: the attacker is in nobody's table, and nobody's lookup ends at it
    const auto bound = attack(seed, dht::id_binding::bep42);
    CHECK(bound.knowing == 0);
    CHECK(bound.to_attacker == 0);
  }
  CHECK(captured_free == lookups_free);  // every lookup of the key went to the attacker
}

TEST_CASE(
    "id binding: honest nodes with bound ids form the DHT, and lookups find the XOR-closest node (many seeds, loss)") {
  for (std::uint64_t seed = 11; seed <= dcp::test::last_seed(11, 16); ++seed) {
    CAPTURE(seed);
    world_t w(seed, config(dht::id_binding::bep42), world_t::lossy(0.01));
    grow(w, 60);
    w.world.run_for(20s);
    REQUIRE(w.live().size() == 60);
    for (auto i : w.live()) {
      CHECK(w.router(i).binds_ids());
      CHECK(dht::bep42_valid(w.router(i).self().id, w.router(i).self().addr));
      CHECK(w.router(i).contacts() >= 8);
    }
    auto st = w.lookups(100, 3);
    CHECK(st.failed == 0);
    CHECK(st.correct == st.issued);
    CHECK(w.world.metrics().counter(kad::default_id, "unbound_id") == 0);
    CHECK(w.world.metrics().counter(kad::default_id, "unbound_contact") == 0);
  }
}

TEST_CASE(
    "id binding: contacts a liar reports next to a key, at addresses that do not derive their ids, are not followed") {
  for (std::uint64_t seed = 31; seed <= dcp::test::last_seed(31, 33); ++seed) {
    CAPTURE(seed);
    CHECK(requests_to_lies(seed, dht::id_binding::none) >= 4);  // the lookup chases every lie (and times out on it)
    CHECK(requests_to_lies(seed, dht::id_binding::bep42) == 0);
  }
}

TEST_CASE(
    "id binding: automatic binds over the network, not in the simulator; a given id must derive from the address") {
  world_t w(21, config(dht::id_binding::automatic));
  grow(w, 3);
  CHECK_FALSE(w.router(0).binds_ids());
  auto bad = config(dht::id_binding::bep42);
  bad.id = node_id::from_u64(42);
  CHECK_THROWS_AS(w.world.add_node([&](sim::node_context& ctx) { ctx.add<kad>(kad::default_id, bad); }), dcp::error);
}

}  // namespace test_id_binding
