#include <doctest/doctest.h>

#include <algorithm>
#include <set>

#include "dcp/election.hpp"
#include "dcp/group.hpp"
#include "dcp/sim.hpp"

namespace test_election {

using namespace dcp;
using sim::simulator;
using bully = election::bully<sim::env>;
using ring = election::chang_roberts<sim::env>;
using wave = election::echo<sim::env>;

static_assert(election::Election<bully> && election::Election<ring> && election::Election<wave>);

namespace {
constexpr std::uint64_t seeds = 1000;

sim::config network(std::uint64_t seed) {
  sim::config c;
  c.network.delay = sim::latency::uniform(1ms, 10ms);
  c.network.reorder = 0.2;
  c.network.reorder_delay = 10ms;
  (void)seed;
  return c;
}

/// Every node's check_invariants (which aborts on a violation) after every
/// event: a handful of small nodes, so all of them.
template <class P> void check_invariants_always(simulator& w) {
  w.after_event([&w] {
    for (std::uint32_t i = 0; i < w.size(); ++i)
      if (auto* p = w.find<P>(i, P::default_id)) p->check_invariants();
  });
}

/// Every live node knows the same leader, and it is `expected`.
template <class P> void require_agreement(simulator& w, std::uint32_t n, address expected) {
  for (std::uint32_t i = 0; i < n; ++i) {
    auto* p = w.find<P>(i, P::default_id);
    if (!p) continue;
    INFO("node " << i);
    REQUIRE(p->leader() == expected);
    REQUIRE_FALSE(p->electing());
  }
}
}  // namespace

TEST_CASE("bully: after crashes and restarts, every live node agrees on the highest live node; 1000 seeds") {
  for (std::uint64_t seed = 1; seed <= seeds; ++seed) {
    simulator w(seed, network(seed));
    const auto n = static_cast<std::uint32_t>(3 + seed % 6);
    election::bully_config cfg{
        .answer_timeout = 50ms, .coordinator_timeout = 150ms, .probe_interval = 100ms, .probe_timeout = 300ms};
    w.add_nodes(n, [=](sim::node_context& c) { c.add<bully>(bully::default_id, group::static_group::sim(n), cfg); });
    check_invariants_always<bully>(w);
    w.run_for(1s);
    INFO("seed " << seed << " n " << n);
    require_agreement<bully>(w, n, address::sim(n - 1));
    // Crash one or two members (often the leader), maybe restart one, then quiet.
    std::set<std::uint32_t> dead;
    dead.insert(seed % 3 ? n - 1 : static_cast<std::uint32_t>(w.rng().below(n)));
    if (seed % 4 == 0) dead.insert(static_cast<std::uint32_t>(w.rng().below(n)));
    if (dead.size() == n) dead.erase(dead.begin());
    for (auto d : dead) {
      w.after(duration(w.rng().between(0, 200'000'000)), [&w, d] { w.crash(d); });
    }
    if (seed % 5 == 0) w.after(600ms, [&w, d = *dead.begin()] { w.restart(d); });
    w.run_for(3s);
    std::uint32_t best = 0;
    for (std::uint32_t i = 0; i < n; ++i)
      if (w.is_up(i)) best = i;
    require_agreement<bully>(w, n, address::sim(best));
  }
}

TEST_CASE("bully: best case costs N-2 messages") {
  for (std::uint32_t n : {4u, 8u, 16u}) {
    simulator w(1);
    election::bully_config cfg;
    w.add_nodes(n, [=](sim::node_context& c) { c.add<bully>(bully::default_id, group::static_group::sim(n), cfg); });
    w.run_for(5s);
    w.crash(n - 1);
    w.metrics().reset();
    // The second-highest learns of the crash from its transport and takes over.
    w.get<bully>(n - 2, bully::default_id).on_unreachable(address::sim(n - 1));
    w.run_until_quiet(w.now() + 1s);
    const auto m = w.metrics();
    CHECK(m.of(bully::default_id, election::bully_msg::coordinator::wire_id).sent == n - 2);
    CHECK(m.of(bully::default_id, election::bully_msg::election::wire_id).sent == 0);
  }
}

TEST_CASE("chang_roberts: random rings, random initiators, crashed members skipped; highest live wins; 1000 seeds") {
  for (std::uint64_t seed = 1; seed <= seeds; ++seed) {
    simulator w(seed, network(seed));
    const auto n = static_cast<std::uint32_t>(3 + seed % 6);
    election::chang_roberts_config cfg;
    for (std::uint32_t i = 0; i < n; ++i) cfg.ring.push_back(address::sim(i));
    w.rng().shuffle(std::span(cfg.ring));
    w.add_nodes(n, [=](sim::node_context& c) { c.add<ring>(ring::default_id, group::static_group::sim(n), cfg); });
    check_invariants_always<ring>(w);
    std::set<std::uint32_t> dead;
    if (seed % 3 == 0) {  // crash-stop before the election (the transport reports it)
      dead.insert(static_cast<std::uint32_t>(w.rng().below(n)));
      w.crash(*dead.begin());
    }
    bool any = false;
    for (std::uint32_t i = 0; i < n; ++i)
      if (!dead.contains(i) &&
          (w.rng().chance(0.4) || (!any && i == n - 1) || (!any && i == n - 2 && dead.contains(n - 1)))) {
        any = true;
        w.after(duration(w.rng().between(0, 20'000'000)),
                [&w, i] { w.get<ring>(i, ring::default_id).start_election(); });
      }
    w.run_for(2s);
    std::uint32_t best = 0;
    for (std::uint32_t i = 0; i < n; ++i)
      if (w.is_up(i)) best = i;
    INFO("seed " << seed << " n " << n);
    require_agreement<ring>(w, n, address::sim(best));
  }
}

TEST_CASE("chang_roberts: best 2N-1, worst N(N+1)/2 + N-1 messages") {
  for (std::uint32_t n : {4u, 8u, 16u}) {
    {  // best: the highest alone initiates
      simulator w(1);
      w.add_nodes(n, [=](sim::node_context& c) { c.add<ring>(ring::default_id, group::static_group::sim(n)); });
      w.get<ring>(n - 1, ring::default_id).start_election();
      w.run_for(1s);
      CHECK(w.metrics().of(ring::default_id).sent == 2 * n - 1);
      require_agreement<ring>(w, n, address::sim(n - 1));
    }
    {  // worst: ids decrease along the ring and everyone initiates at once
      election::chang_roberts_config cfg;
      for (std::uint32_t i = n; i-- > 0;) cfg.ring.push_back(address::sim(i));
      simulator w(1, [] {
        sim::config c;
        c.fifo = true;
        return c;
      }());
      w.add_nodes(n, [=](sim::node_context& c) { c.add<ring>(ring::default_id, group::static_group::sim(n), cfg); });
      for (std::uint32_t i = 0; i < n; ++i) w.get<ring>(i, ring::default_id).start_election();
      w.run_for(1s);
      CHECK(w.metrics().of(ring::default_id, election::chang_roberts_msg::election::wire_id).sent == n * (n + 1) / 2);
      CHECK(w.metrics().of(ring::default_id, election::chang_roberts_msg::elected::wire_id).sent == n - 1);
      require_agreement<ring>(w, n, address::sim(n - 1));
    }
  }
}

TEST_CASE("chang_roberts: a message for a member skipped as crashed stops instead of circling the ring for ever") {
  // Found by tests/fuzz/fuzz_election. Node 2 learns that 3 is down (its
  // send bounces) and skips it from then on. An ELECTION for candidate 3, or
  // an ELECTED naming 3, then passes every live node without reaching 3 or
  // 3's predecessor (2 never sends to 3 again): it circled 0 -> 1 -> 2 -> 0
  // for ever, and each lap grew every node's re-send list (`sent_`).
  constexpr std::uint32_t n = 4;
  for (int kind = 0; kind < 2; ++kind) {
    simulator w(1);
    w.add_nodes(n, [](sim::node_context& c) { c.add<ring>(ring::default_id, group::static_group::sim(n)); });
    w.crash(3);
    w.get<ring>(2, ring::default_id).start_election();  // 2 -> 3 bounces: 2 skips 3 from now on
    w.run_for(1s);
    require_agreement<ring>(w, n, address::sim(2));
    const auto before = w.metrics().of(ring::default_id).sent;
    if (kind == 0) {
      // 3 restarts and stands: 0, decided for 2, starts a new round for it, where 2 tries 3 again.
      w.restart(3);
      w.get<ring>(3, ring::default_id).start_election();
    } else {
      // An ELECTED naming 3 (a member's, of the current round) reaches 0.
      auto* p = w.find<ring>(0, ring::default_id);
      p->on_message(address::sim(1), election::chang_roberts_msg::elected{1, 3});
    }
    w.run_for(2s);
    INFO("kind " << kind);
    CHECK(w.metrics().of(ring::default_id).sent - before <= 4 * n);
  }
}

TEST_CASE(
    "chang_roberts: a member that restarts and stands is elected, and skipped members are tried again in a new round") {
  // A restarted member used to start its candidacy in round 0, which every
  // other node dropped as stale, and its predecessor skipped it for ever:
  // the highest live member could never lead again.
  constexpr std::uint32_t n = 4;
  for (std::uint32_t initiator = 0; initiator < 3; ++initiator) {
    simulator w(initiator + 1, network(initiator));
    w.add_nodes(n, [](sim::node_context& c) { c.add<ring>(ring::default_id, group::static_group::sim(n)); });
    check_invariants_always<ring>(w);
    w.crash(3);
    w.get<ring>(initiator, ring::default_id).start_election();  // 2 -> 3 bounces: 2 skips 3 in this round
    w.run_for(1s);
    INFO("initiator " << initiator);
    require_agreement<ring>(w, n, address::sim(2));
    w.restart(3);
    w.get<ring>(3, ring::default_id).start_election();
    w.run_for(1s);
    require_agreement<ring>(w, n, address::sim(3));
    w.crash(3);  // and down again: the next round skips it again
    w.get<ring>(initiator, ring::default_id).start_election();
    w.run_for(1s);
    require_agreement<ring>(w, n, address::sim(2));
  }
}

namespace {
/// A random connected graph: a random spanning tree plus `extra` random edges.
std::vector<std::set<std::uint32_t>> random_graph(rng& r, std::uint32_t n, std::uint32_t extra) {
  std::vector<std::set<std::uint32_t>> adj(n);
  for (std::uint32_t i = 1; i < n; ++i) {
    const auto j = static_cast<std::uint32_t>(r.below(i));
    adj[i].insert(j);
    adj[j].insert(i);
  }
  for (std::uint32_t k = 0; k < extra; ++k) {
    const auto a = static_cast<std::uint32_t>(r.below(n)), b = static_cast<std::uint32_t>(r.below(n));
    if (a != b) adj[a].insert(b), adj[b].insert(a);
  }
  return adj;
}
}  // namespace

TEST_CASE("echo: on random connected graphs the best score wins everywhere; 1000 seeds, then a new round") {
  for (std::uint64_t seed = 1; seed <= seeds; ++seed) {
    simulator w(seed, network(seed));
    const auto n = static_cast<std::uint32_t>(3 + seed % 6);
    auto adj = random_graph(w.rng(), n, static_cast<std::uint32_t>(w.rng().below(n)));
    std::vector<std::uint64_t> score(n);
    for (auto& s : score) s = w.rng().below(4);  // ties are common: the address breaks them
    w.add_nodes(n, [&](sim::node_context& c) {
      election::echo_config cfg;
      for (auto j : adj[c.index()]) cfg.neighbours.push_back(address::sim(j));
      cfg.score = score[c.index()];
      c.add<wave>(wave::default_id, cfg);
    });
    check_invariants_always<wave>(w);
    bool any = false;
    for (std::uint32_t i = 0; i < n; ++i)
      if (w.rng().chance(0.3) || (!any && i == n - 1)) {
        any = true;
        w.after(duration(w.rng().between(0, 20'000'000)),
                [&w, i] { w.get<wave>(i, wave::default_id).start_election(); });
      }
    w.run_for(2s);
    auto winner = [&] {
      std::uint32_t b = 0;
      for (std::uint32_t i = 1; i < n; ++i)
        if (std::pair(score[i], i) > std::pair(score[b], b)) b = i;
      return b;
    };
    INFO("seed " << seed << " n " << n);
    require_agreement<wave>(w, n, address::sim(winner()));
    // New scores, a new round started by one node: the new best wins.
    for (std::uint32_t i = 0; i < n; ++i) {
      score[i] = w.rng().below(100);
      w.get<wave>(i, wave::default_id).set_score(score[i]);
    }
    w.get<wave>(static_cast<std::uint32_t>(w.rng().below(n)), wave::default_id).start_election();
    w.run_for(2s);
    require_agreement<wave>(w, n, address::sim(winner()));
  }
}

TEST_CASE("election: bad configuration is refused with a clear error") {
  simulator w(1);
  CHECK_THROWS_AS(w.add_node([](sim::node_context& c) {
    c.add<bully>(bully::default_id, group::static_group{address::sim(5)}, election::bully_config{});
  }),
                  dcp::error);
  CHECK_THROWS_AS(w.add_node([](sim::node_context& c) {
    election::bully_config cfg;
    cfg.probe_timeout = cfg.probe_interval;
    c.add<bully>(bully::default_id, group::static_group::sim(3), cfg);
  }),
                  dcp::error);
  CHECK_THROWS_AS(w.add_node([](sim::node_context& c) {
    c.add<ring>(ring::default_id, group::static_group::sim(3),
                election::chang_roberts_config{{address::sim(0), address::sim(0), address::sim(1)}});
  }),
                  dcp::error);
}

}  // namespace test_election
