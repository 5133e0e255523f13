#include <doctest/doctest.h>

#include <map>
#include <set>

#include "dcp/consensus.hpp"
#include "dcp/sim.hpp"

using namespace dcp;
using namespace dcp::consensus;

namespace {
using node_t = paxos<sim::env>;
constexpr protocol_id pid = node_t::default_id;
}  // namespace

// Agreement, checked after every event from the acceptors' durable state:
// a value is chosen once a quorum has accepted it in one ballot, and every
// value chosen in any ballot, and every value any node learns, is the same.
TEST_CASE("paxos: at most one value is chosen, under loss, duplication, reordering, crashes and restarts, over 1000 seeds") {
  std::uint64_t decided_runs = 0, preemptions = 0;
  for (std::uint64_t seed = 1; seed <= 1000; ++seed) {
    CAPTURE(seed);
    sim::config sc;
    sc.network.delay = sim::latency::uniform(1ms, 10ms);
    sc.network.loss = 0.1;
    sc.network.duplicate = 0.05;
    sc.network.reorder = 0.2;
    sim::simulator w(seed, sc);
    const std::uint32_t n = seed % 2 ? 3 : 5;
    paxos_config pc;
    for (std::uint32_t i = 0; i < n; ++i) pc.acceptors.push_back(address::sim(i));
    pc.retry_after = 30ms;
    w.add_nodes(n, [pc](sim::node_context& c) { c.add<node_t>(pid, pc); });

    std::map<ballot, std::set<std::uint32_t>> accepted_by;  // ballot -> acceptors that accepted in it
    std::map<ballot, bytes> value_of;
    std::optional<bytes> chosen;
    auto check = [&] {
      for (std::uint32_t i = 0; i < n; ++i) {
        auto* p = w.find<node_t>(i, pid);
        if (!p) continue;
        p->check_invariants();  // the node's own state (aborts on a violation)
        if (auto b = p->accepted_ballot()) {
          auto [it, fresh] = value_of.try_emplace(*b, p->accepted_value());
          REQUIRE(it->second == p->accepted_value());  // one value per ballot
          auto& who = accepted_by[*b];
          who.insert(i);
          if (2 * who.size() > n) {
            if (!chosen) chosen = it->second;
            INFO("two values chosen");
            REQUIRE(*chosen == it->second);
          }
        }
        if (auto learned = p->chosen()) {
          REQUIRE(chosen.has_value());  // nothing is learned before it is chosen
          REQUIRE(*learned == *chosen);
        }
      }
    };
    w.after_event(check);

    // Every node proposes its own value, at nearly the same time: they duel.
    auto propose_all = [&] {
      for (std::uint32_t i = 0; i < n; ++i)
        if (auto* p = w.find<node_t>(i, pid)) p->propose(to_bytes("v" + std::to_string(i)), [](result<bytes>) {});
    };
    propose_all();
    for (int f = 0; f < 8; ++f) {
      w.run_for(duration(w.rng().between(5'000'000, 60'000'000)));
      const auto victim = static_cast<std::uint32_t>(w.rng().below(n));
      if (w.rng().chance(0.5)) w.crash(victim);
      else w.restart(victim);
      propose_all();
    }
    for (std::uint32_t i = 0; i < n; ++i) w.restart(i);
    propose_all();
    w.run_until([&] {
      for (std::uint32_t i = 0; i < n; ++i)
        if (!w.get<node_t>(i, pid).chosen()) return false;
      return true;
    }, w.now() + 20s);
    bool all = true;
    for (std::uint32_t i = 0; i < n; ++i) all = all && w.get<node_t>(i, pid).chosen().has_value();
    decided_runs += all;
    preemptions += static_cast<std::uint64_t>(w.metrics().counter(pid, "preempted"));
    w.after_event({});
  }
  MESSAGE("runs where every node learned the value: " << decided_runs << "/1000; preemptions " << preemptions);
  CHECK(decided_runs == 1000);
  CHECK(preemptions > 0);  // proposers did duel
}

TEST_CASE("paxos: a proposer adopts an accepted value, and a learner answers at once") {
  sim::simulator w(9);
  paxos_config pc;
  for (std::uint32_t i = 0; i < 3; ++i) pc.acceptors.push_back(address::sim(i));
  w.add_nodes(3, [pc](sim::node_context& c) { c.add<node_t>(pid, pc); });
  std::optional<bytes> first, second;
  w.get<node_t>(0, pid).propose(to_bytes("x"), [&](result<bytes> r) { first = *r; });
  w.run_for(1s);
  REQUIRE(first);
  CHECK(*first == to_bytes("x"));
  w.get<node_t>(2, pid).propose(to_bytes("y"), [&](result<bytes> r) { second = *r; });
  w.run_for(1s);
  REQUIRE(second);
  CHECK(*second == to_bytes("x"));
  // And after every node restarts, a new proposal still returns x (acceptor state is durable).
  for (std::uint32_t i = 0; i < 3; ++i) {
    w.crash(i);
    w.restart(i);
  }
  std::optional<bytes> third;
  w.get<node_t>(1, pid).propose(to_bytes("z"), [&](result<bytes> r) { third = *r; });
  w.run_for(1s);
  REQUIRE(third);
  CHECK(*third == to_bytes("x"));
  CHECK_THROWS_AS(paxos_config{}.validate(), dcp::error);
}
