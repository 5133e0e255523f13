#include <doctest/doctest.h>

#include <algorithm>
#include <limits>
#include <map>
#include <set>
#include <vector>

#include "../coordinates/internet_model.hpp"
#include "../dht/global_view.hpp"
#include "../seeds.hpp"  // fewer seeds under sanitizers
#include "dcp/coordinates.hpp"
#include "dcp/dht.hpp"
#include "dcp/election.hpp"
#include "dcp/membership/static_group.hpp"
#include "dcp/sim.hpp"

namespace test_superpeer {

using namespace dcp;
using sim::simulator;
using chord = dht::chord<sim::env>;
using prefix = election::superpeer_prefix<sim::env, chord>;
using group_t = membership::static_group<sim::env>;
using viv = coordinates::vivaldi<sim::env, group_t>;
using repulsion = election::superpeer_repulsion<sim::env, group_t>;
namespace rmsg = election::superpeer_repulsion_msg;

namespace {

membership::static_group_config everyone(std::size_t n) {
  std::vector<address> all;
  for (std::size_t i = 0; i < n; ++i) all.push_back(address::sim(static_cast<std::uint32_t>(i)));
  return membership::static_group_config::of(std::move(all));
}

/// The owner of `key` in a Chord ring of `sorted` ids: the first id >= key, wrapping.
const dht::contact& owner(const std::vector<dht::contact>& sorted, const node_id& key) {
  auto it = std::lower_bound(sorted.begin(), sorted.end(), key,
                             [](const dht::contact& c, const node_id& v) { return c.id < v; });
  return it == sorted.end() ? sorted.front() : *it;
}

struct prefix_world {
  simulator w;
  std::size_t n;
  std::vector<dht::contact> sorted;
  prefix_world(std::uint64_t seed, std::size_t nodes, election::superpeer_prefix_config pc, sim::link faults)
      : w(seed,
          [&] {
            sim::config c;
            c.network.delay = faults.delay;  // the links' faults are set per link below, so quiet() can lift them
            return c;
          }()),
        n(nodes) {
    for (std::uint32_t i = 0; i < n; ++i)
      for (std::uint32_t j = 0; j < n; ++j)
        if (i != j) w.set_link(i, j, faults);
    dht::chord_config cc;
    cc.rpc_timeout = 200ms;
    w.add_nodes(n, [&](sim::node_context& c) {
      auto& r = c.add<chord>(chord::default_id, cc);
      c.add<prefix>(prefix::default_id, r, pc);
    });
    for (std::uint32_t i = 0; i < n; ++i) sorted.push_back(w.get<chord>(i, chord::default_id).self());
    std::sort(sorted.begin(), sorted.end());
    for (std::uint32_t i = 0; i < n; ++i)
      dht::testing::global_view::install(w.get<chord>(i, chord::default_id), sorted);
  }
  prefix& at(std::uint32_t i) { return w.get<prefix>(i, prefix::default_id); }
  void quiet() { w.clear_links(); }
};

}  // namespace

TEST_CASE("superpeer_prefix: the key masks the k leftmost bits, and overflow steps to the next prefix") {
  const auto id = *node_id::from_hex("f3a5000000000000000000000000000000000001");
  CHECK(election::superpeer_key(id, 3).top64() == 0xE000000000000000ull);
  CHECK(election::superpeer_key(id, 12).top64() == 0xF3A0000000000000ull);
  CHECK(election::superpeer_key(id, 0) == node_id{});
  CHECK(election::next_superpeer_key(election::superpeer_key(id, 3), 3, 1) == node_id{});  // 111 + 1 wraps to 000
  CHECK(election::next_superpeer_key(node_id{}, 3, 2).top64() == 0x4000000000000000ull);
  CHECK(election::superpeer_prefix_config::bits_for(1024, 8) == 7);
  CHECK(election::superpeer_prefix_config::bits_for(8, 8) == 0);
  CHECK_THROWS_AS(election::superpeer_prefix_config{.cap = 0}.validate(), dcp::error);
}

TEST_CASE(
    "superpeer_prefix: the superpeers are exactly the owners of the prefix keys, every node finds one, none above its cap; many seeds with loss and duplication") {
  const std::uint64_t last = dcp::test::last_seed(1, 24);
  for (std::uint64_t seed = 1; seed <= last; ++seed) {
    const std::size_t n = 24 + seed % 5 * 10;
    election::superpeer_prefix_config pc;
    pc.prefix_bits = election::superpeer_prefix_config::bits_for(n, 8);
    // odd seeds: room for all; even: twice the mean group, so full groups overflow to the next prefixes
    pc.cap = seed % 2 ? 64 : 2 * n / (std::size_t{1} << pc.prefix_bits);
    pc.max_overflow = 3;
    pc.refresh = 1s;
    pc.lease = 3s;
    pc.attach_timeout = 300ms;
    sim::link faults;
    faults.delay = sim::latency::uniform(1ms, 20ms);
    faults.loss = 0.02 * static_cast<double>(seed % 3);
    faults.duplicate = 0.05;
    faults.reorder = 0.1;
    prefix_world pw(seed, n, pc, faults);
    std::vector<prefix*> nodes;  // no crashes here: the protocols stay where they are
    for (std::uint32_t i = 0; i < n; ++i) nodes.push_back(&pw.at(i));
    pw.w.after_event([&] {
      for (auto* p : nodes) p->check_invariants();
    });
    pw.w.run_for(6s);
    pw.quiet();  // then a quiet spell: the checks below are of where it settles
    pw.w.run_for(4s);
    INFO("seed " << seed << " n " << n << " k " << pc.prefix_bits << " cap " << pc.cap);
    std::set<address> owners;
    for (std::size_t j = 0; j < (std::size_t{1} << pc.prefix_bits); ++j)
      owners.insert(owner(pw.sorted, election::next_superpeer_key(node_id{}, pc.prefix_bits, j)).addr);
    std::map<address, std::size_t> load;
    std::size_t attached = 0, overflowed = 0;
    for (std::uint32_t i = 0; i < n; ++i) {
      auto& p = pw.at(i);
      CHECK(p.is_superpeer() == owners.contains(address::sim(i)));
      if (p.is_superpeer()) continue;
      REQUIRE(p.superpeer().has_value());
      CHECK(owners.contains(*p.superpeer()));
      ++attached;
      ++load[*p.superpeer()];
      if (*p.superpeer() != owner(pw.sorted, p.key()).addr) ++overflowed;
    }
    CHECK(attached + owners.size() == n);
    for (const auto& [sp, l] : load) {
      CHECK(l <= pc.cap);
      CHECK(pw.at(sp.sim_index()).load() >= l);  // the superpeer holds every node that believes it is served
    }
    if (pc.cap >= n) CHECK(overflowed == 0);  // with room everywhere nobody leaves its own prefix
  }
}

TEST_CASE("superpeer_prefix: when a superpeer crashes, its nodes move to the key's next owner") {
  election::superpeer_prefix_config pc;
  pc.prefix_bits = 2;
  pc.refresh = 500ms;
  pc.lease = 2s;
  const std::size_t n = 32;
  prefix_world pw(3, n, pc, sim::link{});
  pw.w.run_for(3s);
  std::uint32_t victim = 0;
  for (std::uint32_t i = 0; i < n; ++i)
    if (pw.at(i).is_superpeer()) victim = i;
  pw.w.crash(victim);
  pw.w.run_for(15s);  // Chord repairs its ring; the refresh finds the new owner
  std::erase_if(pw.sorted, [&](const dht::contact& c) { return c.addr == address::sim(victim); });
  for (std::uint32_t i = 0; i < n; ++i) {
    if (i == victim) continue;
    INFO("node " << i);
    auto& p = pw.at(i);
    if (p.is_superpeer()) continue;
    REQUIRE(p.superpeer().has_value());
    CHECK(*p.superpeer() != address::sim(victim));
    CHECK(*p.superpeer() == owner(pw.sorted, p.key()).addr);
  }
}

namespace {

struct token_world {
  simulator w;
  std::size_t n, tokens;
  coordinates_test::internet net;
  token_world(std::uint64_t seed, std::size_t nodes, std::size_t ratio, sim::link faults,
              election::superpeer_repulsion_config rc)
      : w(seed), n(nodes), tokens(nodes / ratio), net(nodes, seed) {
    net.install(w, faults);
    rc.initial_holders.clear();
    for (std::size_t t = 0; t < tokens; ++t)
      rc.initial_holders.push_back(address::sim(static_cast<std::uint32_t>(w.rng().below(n))));
    coordinates::vivaldi_config vc;
    vc.period = 200ms;
    vc.rpc_timeout = 1s;
    const auto members = everyone(n);
    w.add_nodes(n, [=](sim::node_context& c) {
      auto& g = c.add<group_t>(group_t::default_id, members);
      auto& v = c.add<viv>(viv::default_id, g, vc);
      c.add<repulsion>(repulsion::default_id, g, v, rc);
    });
  }
  repulsion* at(std::uint32_t i) { return w.find<repulsion>(i, repulsion::default_id); }
  /// Runs quietly (no faults) until no token has moved for 8 s (at most
  /// 60 s), then 3 s more for the normal nodes to attach; false if tokens
  /// were still moving.
  bool settle() {
    net.install(w);
    std::int64_t moves = -1;
    int still = 0;
    for (int s = 0; s < 60 && still < 8; ++s) {
      const auto now_moves =
          w.metrics().counter(election::superpeer_repulsion<sim::env, group_t>::default_id, "token_moved");
      still = now_moves == moves ? still + 1 : 0;
      moves = now_moves;
      w.run_for(1s);
    }
    w.run_for(3s);
    return still >= 8;
  }
  /// token -> live nodes holding it actively.
  std::map<std::uint32_t, std::vector<std::uint32_t>> active() {
    std::map<std::uint32_t, std::vector<std::uint32_t>> out;
    for (std::uint32_t i = 0; i < n; ++i)
      if (auto* p = at(i))
        for (const auto& t : p->tokens())
          if (t.active) out[t.id].push_back(i);
    return out;
  }
  /// token -> live nodes holding it at all (active or handing over).
  std::set<std::uint32_t> present() {
    std::set<std::uint32_t> out;
    for (std::uint32_t i = 0; i < n; ++i)
      if (auto* p = at(i))
        for (const auto& t : p->tokens()) out.insert(t.id);
    return out;
  }
};

election::superpeer_repulsion_config fast_tokens() {
  election::superpeer_repulsion_config rc;
  rc.round = 400ms;
  rc.retry = 150ms;
  rc.refresh = 800ms;
  rc.lease = 3s;
  rc.attach_timeout = 1s;  // above the longest round trip of the model (~400 ms)
  rc.holder_timeout = 10s;
  rc.cap = 12;
  rc.radius_ms = 80;
  rc.move_rounds = 40;  // 16 s of selection, then the tokens stay: "settled" is a fact the test can wait for
  return rc;
}

}  // namespace

TEST_CASE(
    "superpeer_repulsion: under loss, duplication, reordering and a partition no token is ever active twice, none is lost, and every node is served within the cap; many seeds") {
  const std::uint64_t last = dcp::test::last_seed(1, 16);
  for (std::uint64_t seed = 1; seed <= last; ++seed) {
    sim::link faults;
    faults.loss = 0.05 + 0.05 * static_cast<double>(seed % 3);
    faults.duplicate = 0.1;
    faults.reorder = 0.2;
    faults.reorder_delay = 30ms;
    token_world tw(seed, 40 + seed % 3 * 8, 8, faults, fast_tokens());
    INFO("seed " << seed << " n " << tw.n);
    bool twice = false;
    std::vector<repulsion*> nodes;  // no crashes here: the protocols stay where they are
    for (std::uint32_t i = 0; i < tw.n; ++i) nodes.push_back(tw.at(i));
    std::vector<int> holders(tw.tokens);
    tw.w.after_event([&] {
      std::fill(holders.begin(), holders.end(), 0);
      for (auto* p : nodes) {
        p->check_invariants();
        for (const auto& t : p->tokens())
          if (t.active && ++holders.at(t.id) > 1) twice = true;
      }
    });
    tw.w.run_for(6s);
    std::vector<std::vector<sim::node_index>> halves(1);
    for (std::uint32_t i = 0; i < tw.n / 2; ++i) halves[0].push_back(i);
    tw.w.partition(halves);  // handoffs across the cut wait for the heal
    tw.w.run_for(3s);
    tw.w.heal();
    tw.w.run_for(10s);
    CHECK(tw.settle());  // the tokens stop moving
    CHECK_FALSE(twice);
    auto act = tw.active();
    CHECK(act.size() == tw.tokens);  // every token active somewhere: none lost, none stuck in a handoff
    CHECK(tw.w.metrics().counter(repulsion::default_id, "token_moved") >
          0);  // tokens did move: the test is not vacuous
    // Every normal node is served by a live superpeer, within its cap.
    std::map<address, std::size_t> load;
    for (std::uint32_t i = 0; i < tw.n; ++i) {
      auto* p = tw.at(i);
      if (p->is_superpeer()) continue;
      REQUIRE(p->superpeer().has_value());
      CHECK(tw.at(p->superpeer()->sim_index())->is_superpeer());
      ++load[*p->superpeer()];
    }
    for (const auto& [sp, l] : load) CHECK(l <= 12);
  }
}

TEST_CASE(
    "superpeer_repulsion: crashes lose only the tokens of the crashed, never duplicate one; with regeneration all come back; many seeds") {
  const std::uint64_t last = dcp::test::last_seed(1, 16);
  for (std::uint64_t seed = 1; seed <= last; ++seed) {
    const bool regenerate = seed % 2 == 0;
    auto rc = fast_tokens();
    if (regenerate) rc.regenerate_after = 2s;
    sim::link faults;
    faults.loss = 0.05;
    faults.duplicate = 0.05;
    token_world tw(seed, 48, 8, faults, rc);
    INFO("seed " << seed << " regenerate " << regenerate);
    bool twice = false;
    tw.w.after_event([&] {
      for (std::uint32_t i = 0; i < tw.n; ++i)
        if (auto* p = tw.at(i)) p->check_invariants();
      if (!regenerate)
        for (const auto& [t, holders] : tw.active())
          if (holders.size() > 1) twice = true;
    });
    tw.w.run_for(4s);
    // Crash holders (and others) while tokens move; a crashed holder's token goes with it.
    std::set<std::uint32_t> crashed;
    for (int k = 0; k < 6; ++k) {
      const auto v = static_cast<std::uint32_t>(tw.w.rng().below(tw.n));
      tw.w.after(duration(tw.w.rng().between(0, 2'000'000'000)), [&tw, v] {
        if (tw.w.is_up(v)) tw.w.crash(v);
      });
      crashed.insert(v);
    }
    tw.w.run_for(4s);
    for (auto v : crashed)
      if (!tw.w.is_up(v)) tw.w.restart(v);
    tw.w.run_for(20s);
    CHECK(tw.settle());
    auto act = tw.active();
    for (const auto& [t, h] : act) CHECK(h.size() == 1);  // at the end, even with regeneration
    CHECK_FALSE(twice);
    if (regenerate) {
      CHECK(act.size() == tw.tokens);
    } else {
      // Tokens go only with crashes: what is left is not more than there were,
      // and nothing is stuck in a handoff to a live node.
      CHECK(act.size() <= tw.tokens);
      CHECK(tw.present().size() == act.size() + 0);
      if (tw.w.metrics().counter(repulsion::default_id, "token_handoff_abandoned") == 0 && act.size() < tw.tokens)
        CHECK(crashed.size() > 0);
    }
  }
}

TEST_CASE("superpeer_repulsion: hostile and malformed messages are dropped and counted") {
  token_world tw(5, 16, 4, sim::link{}, fast_tokens());
  tw.w.run_for(2s);
  auto& p = *tw.at(0);
  const double nan = std::numeric_limits<double>::quiet_NaN(), inf = std::numeric_limits<double>::infinity();
  const auto before = p.tokens();
  auto& m = tw.w.metrics();
  // a stranger (not in the group)
  p.on_message(address::sim(999), rmsg::announce{0, 99, {1, 1, 1}, 0.5});
  p.on_message(address::sim(999), rmsg::offer{0, 99, 1, {}});
  CHECK(m.counter(repulsion::default_id, "superpeer_not_member") == 2);
  // absurd token ids, NaN and infinite coordinates
  p.on_message(address::sim(1), rmsg::announce{1u << 30, 1, {1, 1, 1}, 0.5});
  p.on_message(address::sim(1), rmsg::offer{4096, 1, 1, {}});
  CHECK(m.counter(repulsion::default_id, "superpeer_bad_token") == 2);
  p.on_message(address::sim(1), rmsg::announce{0, 1, {nan, 1, 1}, 0.5});
  p.on_message(address::sim(1), rmsg::announce{0, 1, {1, inf, 1}, 0.5});
  p.on_message(address::sim(1), rmsg::announce{0, 1, {1, 1, 1}, nan});
  CHECK(m.counter(viv::default_id, "vivaldi_bad_coordinate") == 3);
  // digests: too long, and entries with bad coordinates, ages or holders
  rmsg::holders big;
  big.entries.resize(1000);
  p.on_message(address::sim(1), big);
  CHECK(m.counter(repulsion::default_id, "superpeer_digest_too_long") == 1);
  rmsg::holders bad;
  bad.entries.push_back({0, 5, address::sim(2), {nan, 0, 1}, 0});
  bad.entries.push_back({0, 5, address::sim(2), {1, 0, 1}, std::numeric_limits<std::uint32_t>::max()});
  bad.entries.push_back({0, 5, address{}, {1, 0, 1}, 0});
  p.on_message(address::sim(1), bad);
  CHECK(m.counter(repulsion::default_id, "superpeer_bad_entry") == 3);
  p.on_message(address::sim(1), rmsg::offer{0, 5, 1u << 31, {}});
  CHECK(m.counter(repulsion::default_id, "superpeer_bad_offer") == 1);
  p.on_message(address::sim(1), rmsg::ack{3, 77});
  CHECK(m.counter(repulsion::default_id, "token_unexpected_ack") == 1);
  const auto after = p.tokens();
  CHECK(before.size() == after.size());
  p.check_invariants();
  auto bad_cfg = fast_tokens();
  bad_cfg.regenerate_after = bad_cfg.holder_timeout;
  CHECK_THROWS_AS(bad_cfg.validate(), dcp::error);
}

TEST_CASE(
    "superpeer_prefix: ATTACH to a node that is no superpeer is refused and counted; a stale DETACH ends nothing") {
  election::superpeer_prefix_config pc;
  pc.prefix_bits = 1;
  pc.cap = 2;
  prefix_world pw(9, 8, pc, sim::link{});
  pw.w.run_for(5s);
  std::uint32_t sp = 0, normal = 0;
  for (std::uint32_t i = 0; i < 8; ++i) (pw.at(i).is_superpeer() ? sp : normal) = i;
  REQUIRE(pw.at(sp).is_superpeer());
  REQUIRE_FALSE(pw.at(normal).is_superpeer());
  auto& m = pw.w.metrics();
  pw.at(normal).on_message(address::sim(sp), election::superpeer_msg::attach{42});
  CHECK(m.counter(prefix::default_id, "superpeer_attach_refused_not_superpeer") >= 1);
  pw.at(sp).on_message(address::sim(sp), election::superpeer_msg::attach{43});  // from itself
  CHECK(m.counter(prefix::default_id, "superpeer_bad_attach") == 1);
  // A DETACH whose nonce is not the client's current one (duplicated, late or forged) changes nothing.
  const auto served = pw.at(sp).served();
  REQUIRE_FALSE(served.empty());
  pw.at(sp).on_message(served.front(), election::superpeer_msg::detach{0xdeadbeef});
  CHECK(pw.at(sp).served() == served);
  // A reply that answers no ATTACH of ours is ignored and counted.
  pw.at(normal).on_message(address::sim(sp), election::superpeer_msg::attach_reply{7, true});
  CHECK(m.counter(prefix::default_id, "superpeer_unexpected_reply") >= 1);
  pw.at(sp).check_invariants();
  pw.at(normal).check_invariants();
}

}  // namespace test_superpeer
