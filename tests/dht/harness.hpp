#pragma once
// A simulated overlay of any Router, with the global truth to check it against.
#include <algorithm>
#include <cstdint>
#include <functional>
#include <optional>
#include <set>
#include <span>
#include <vector>

#include "dcp/dht.hpp"
#include "dcp/sim.hpp"

namespace dht_test {

using namespace dcp;
using dcp::dht::contact;

template <class R, class Config> struct overlay {
  static constexpr protocol_id pid = R::default_id;
  sim::simulator world;
  Config cfg;
  std::optional<sim::node_index> founder;             // the node that founds the overlay (bootstrap({}))
  std::function<void(sim::node_context&, R&)> extra;  // more protocols on each node (a store)
  /// Bootstrap contacts carry only an address (id unknown), as an operator's seed list does.
  bool address_only = false;

  static sim::config lossy(double loss = 0.0) {
    sim::config sc;
    sc.network.delay = sim::latency::uniform(1ms, 20ms);
    sc.network.loss = loss;
    return sc;
  }

  // (after lossy(): clang 14 refuses a default argument calling a member declared later)
  overlay(std::uint64_t seed, Config c, sim::config sc = lossy()) : world(seed, sc), cfg(std::move(c)) {}

  /// Adds n nodes; each (and each restart) joins through a random live joined node.
  void add(std::size_t n) {
    world.add_nodes(n, [this](sim::node_context& ctx) {
      auto& r = ctx.add<R>(pid, cfg);
      if (extra) extra(ctx, r);
      if (!founder) {
        founder = ctx.index();
        r.bootstrap({});
        return;
      }
      std::vector<contact> seeds;
      for (int tries = 0; tries < 3; ++tries) {
        auto s = random_joined(ctx.index());
        if (s) seeds.push_back(address_only ? contact{node_id{}, router(*s).self().addr} : router(*s).self());
      }
      if (seeds.empty()) seeds.push_back({node_id{}, address::sim(*founder)});
      r.bootstrap(seeds);
    });
  }

  /// Adds n nodes one at a time, `every` apart (a steady join rate), each joining as add() does.
  void grow(std::size_t n, duration every) {
    for (std::size_t k = 0; k < n; ++k) {
      add(1);
      world.run_for(every);
    }
  }

  /// Adds n nodes one at a time, `gap` apart, each joining as add() does; the world
  /// does not run after the last (the test runs it on as it needs).
  void add_spaced(std::size_t n, duration gap) {
    add(1);
    for (std::size_t i = 1; i < n; ++i) {
      world.run_for(gap);
      add(1);
    }
  }

  /// Churn, `rounds` times: a random live node crashes and a new node joins, then
  /// the world runs `gap`.
  void churn(int rounds, duration gap) {
    for (int round = 0; round < rounds; ++round) {
      auto l = live();
      world.crash(l[world.rng().below(l.size())]);
      add(1);
      world.run_for(gap);
    }
  }

  /// Links of 10-60 ms: a wide-area spread, slower than the lossy() default.
  static sim::config wide_area() {
    sim::config sc;
    sc.network.delay = sim::latency::uniform(10ms, 60ms);
    return sc;
  }

  R& router(sim::node_index i) { return world.get<R>(i, pid); }
  R* find(sim::node_index i) { return world.find<R>(i, pid); }

  std::optional<sim::node_index> random_joined(sim::node_index not_me) {
    const auto n = world.size();
    for (int t = 0; t < 64 && n > 0; ++t) {
      auto i = static_cast<sim::node_index>(world.rng().below(n));
      if (i == not_me) continue;
      if (R* r = find(i); r && r->joined()) return i;
    }
    return std::nullopt;
  }

  std::vector<sim::node_index> live() {
    std::vector<sim::node_index> out;
    for (sim::node_index i = 0; i < world.size(); ++i)
      if (R* r = find(i); r && r->joined()) out.push_back(i);
    return out;
  }

  /// The live nodes sorted by the overlay's distance to `key`: the truth.
  std::vector<contact> truth(const node_id& key, std::size_t n) {
    std::vector<contact> all;
    for (auto i : live()) all.push_back(router(i).self());
    std::sort(all.begin(), all.end(),
              [&](const contact& a, const contact& b) { return R::distance(key, a.id) < R::distance(key, b.id); });
    if (all.size() > n) all.resize(n);
    return all;
  }

  struct lookup_stats {
    std::size_t issued = 0, correct = 0, wrong = 0, failed = 0;
    std::vector<unsigned> hops;
  };
  /// Issues `count` lookups of random keys from random live nodes and runs
  /// until they finish; each result is checked against the truth at issue time
  /// (the overlay must not change meanwhile for the check to mean anything).
  lookup_stats lookups(std::size_t count, std::size_t n = 1, duration limit = 60s) {
    lookup_stats st;
    auto nodes = live();
    if (nodes.empty()) return st;
    std::size_t done = 0;
    for (std::size_t q = 0; q < count; ++q) {
      const node_id key = node_id::random(world.rng());
      const auto from = nodes[world.rng().below(nodes.size())];
      auto expect = truth(key, n);
      ++st.issued;
      router(from).lookup(key, n, [&st, &done, expect](dcp::result<dht::lookup_result> r) {
        ++done;
        if (!r) {
          ++st.failed;
          return;
        }
        st.hops.push_back(r->hops);
        bool ok = !r->owners.empty() && r->owners.front().addr == expect.front().addr;
        ok ? ++st.correct : ++st.wrong;
      });
    }
    world.run_until([&] { return done == count; }, world.now() + limit);
    REQUIRE(done == count);  // every lookup answers, one way or the other, in bounded time
    return st;
  }

  /// Half the overlay crashing at once: 256 nodes join 60 ms apart through
  /// address-only seeds and maintain for 30 s; half of them, chosen at random,
  /// crash together; 20 s later (the repair time stated in docs/dht.md), `count`
  /// lookups from the survivors.
  lookup_stats lookups_after_half_crash(std::size_t count = 300) {
    address_only = true;
    grow(256, 60ms);
    world.run_for(30s);
    auto nodes = live();
    REQUIRE(nodes.size() == 256);
    world.rng().shuffle(std::span(nodes));
    for (std::size_t k = 0; k < nodes.size() / 2; ++k) world.crash(nodes[k]);
    world.run_for(20s);
    return lookups(count);
  }
};

/// A lookup by `r` of a key it owns itself: answered, with no hops, after the
/// call has returned (never inside it: the completion rule).
template <class R> void check_own_lookup_after_call(sim::simulator& world, R& r, const node_id& key) {
  bool called = false;
  r.lookup(key, 1, [&](dcp::result<dht::lookup_result> res) {
    called = true;
    CHECK_FALSE(res.error());
    if (res) CHECK(res->hops == 0);
  });
  CHECK(!called);
  world.run_for(1ms);
  CHECK(called);
}

}  // namespace dht_test
