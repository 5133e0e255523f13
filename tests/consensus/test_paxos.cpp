#include <doctest/doctest.h>

#include <map>
#include <set>

#include "../seeds.hpp"  // fewer seeds under sanitizers
#include "dcp/consensus.hpp"
#include "dcp/sim.hpp"

namespace test_paxos {

using namespace dcp;
using namespace dcp::consensus;

namespace {
using node_t = paxos<sim::env>;
constexpr protocol_id pid = node_t::default_id;

/// The acceptor's file as paxos.hpp writes it (its durable_state).
struct acceptor_file {
  ballot promised;
  std::optional<ballot> accepted_ballot;
  bytes accepted_value;
  std::uint64_t max_round = 0;
  template <class A> void serialize(A& ar) { ar(promised, accepted_ballot, accepted_value, max_round); }
};
}  // namespace

// Agreement, checked after every event from the acceptors' durable state:
// a value is chosen once a quorum has accepted it in one ballot, and every
// value chosen in any ballot, and every value any node learns, is the same.
TEST_CASE(
    "paxos: at most one value is chosen, under loss, duplication, reordering, crashes and restarts, over 1000 seeds") {
  std::uint64_t decided_runs = 0, preemptions = 0;
  const std::uint64_t runs = dcp::test::last_seed(1, 1000);
  for (std::uint64_t seed = 1; seed <= runs; ++seed) {
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
      if (w.rng().chance(0.5))
        w.crash(victim);
      else
        w.restart(victim);
      propose_all();
    }
    for (std::uint32_t i = 0; i < n; ++i) w.restart(i);
    propose_all();
    w.run_until(
        [&] {
          for (std::uint32_t i = 0; i < n; ++i)
            if (!w.get<node_t>(i, pid).chosen()) return false;
          return true;
        },
        w.now() + 20s);
    bool all = true;
    for (std::uint32_t i = 0; i < n; ++i) all = all && w.get<node_t>(i, pid).chosen().has_value();
    decided_runs += all;
    preemptions += static_cast<std::uint64_t>(w.metrics().counter(pid, "preempted"));
    w.after_event({});
  }
  MESSAGE("runs where every node learned the value: " << decided_runs << "/" << runs << "; preemptions "
                                                      << preemptions);
  CHECK(decided_runs == runs);
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

// Issue 11: a Paxos node believes only the acceptors of its configuration.
// A stranger's prepare, promise, accepted or decided changes nothing; a
// ballot must name its sender; a round so far ahead that it would exhaust
// the round space (2^64 - 1, after which the next round wrapped to 0 and no
// proposal could win again) is refused even from an acceptor.
TEST_CASE("paxos: strangers, borrowed ballots and absurd rounds change nothing, and the group still decides") {
  sim::config sc;
  sc.network.delay = sim::latency::uniform(1ms, 3ms);
  sim::simulator w(21, sc);
  paxos_config pc;
  for (std::uint32_t i = 0; i < 3; ++i) pc.acceptors.push_back(address::sim(i));
  w.add_nodes(3, [pc](sim::node_context& c) { c.add<node_t>(pid, pc); });
  auto& n0 = w.get<node_t>(0, pid);
  auto& n1 = w.get<node_t>(1, pid);
  const auto stranger = address::sim(9);
  const auto top = ~std::uint64_t{0};

  // A stranger's prepare at the last round, and an acceptor's.
  n0.on_message(stranger, paxos_msg::prepare{ballot{top, stranger}});
  n0.on_message(address::sim(1), paxos_msg::prepare{ballot{top, address::sim(1)}});
  n0.on_message(stranger, paxos_msg::accept{ballot{top, stranger}, to_bytes("evil")});
  CHECK(n0.promised() == ballot{});
  CHECK_FALSE(n0.accepted_ballot());
  // An acceptor may not use another proposer's ballot.
  n0.on_message(address::sim(1), paxos_msg::prepare{ballot{5, address::sim(2)}});
  CHECK(n0.promised() == ballot{});
  // A stranger's decided is not learned.
  n1.on_message(stranger, paxos_msg::decided{to_bytes("evil")});
  CHECK_FALSE(n1.chosen());

  // Node 0 proposes alone (cut off), strangers answer its prepare: no quorum,
  // no table growth, nothing chosen.
  w.partition({{0}});
  std::optional<result<bytes>> got;
  n0.propose(to_bytes("x"), [&](result<bytes> r) { got = std::move(r); });
  w.run_for(1ms);
  for (std::uint32_t s = 10; s < 20; ++s) {
    const ballot b{1, address::sim(0)};
    n0.on_message(address::sim(s), paxos_msg::promise{b, true, b, std::nullopt, {}});
    n0.on_message(address::sim(s), paxos_msg::accepted{b, true, b});
    // A refusal carrying an absurd round from a stranger moves no round.
    n0.on_message(address::sim(s), paxos_msg::promise{b, false, ballot{top, address::sim(s)}, std::nullopt, {}});
  }
  CHECK_FALSE(n0.chosen());
  w.heal();
  w.run_for(2s);
  REQUIRE(got);
  REQUIRE(got->has_value());
  CHECK(**got == to_bytes("x"));
  CHECK(n0.promised().round < (std::uint64_t{1} << 32));
  for (std::uint32_t i = 0; i < 3; ++i) CHECK(w.get<node_t>(i, pid).chosen() == std::optional<bytes>(to_bytes("x")));
  CHECK(w.metrics().counter(pid, "not_an_acceptor") >= 30);
  CHECK(w.metrics().counter(pid, "not_a_proposer") >= 3);
  CHECK(w.metrics().counter(pid, "absurd_round") >= 1);
  CHECK(w.metrics().counter(pid, "ballot_not_senders") >= 1);
}

// The round space cannot run out in practice (a round more than 2^32 ahead
// is refused, honest rounds grow by one), but a node whose acceptors did
// promise the last round (an older version, a damaged disk) must fail its
// proposal loudly rather than wrap to round 0 and be preempted for ever.
TEST_CASE("paxos: a used-up round space fails the proposal at once instead of wrapping to round 0") {
  sim::simulator w(5);
  paxos_config pc;
  for (std::uint32_t i = 0; i < 3; ++i) pc.acceptors.push_back(address::sim(i));
  w.add_nodes(3, [pc](sim::node_context& c) {
    acceptor_file st;
    st.promised = ballot{~std::uint64_t{0}, address::sim(1)};
    bytes payload, rec;
    storage::detail::encode_value(st, payload);
    storage::detail::frame_record(payload, rec);
    auto& d = c.world().disk_of(c.index());
    REQUIRE_FALSE(d.write("paxos.acceptor", rec));
    REQUIRE_FALSE(d.sync("paxos.acceptor"));
    c.add<node_t>(pid, pc);
  });
  std::optional<result<bytes>> got;
  w.get<node_t>(0, pid).propose(to_bytes("x"), [&](result<bytes> r) { got = std::move(r); });
  w.run_for(100ms);
  REQUIRE(got);
  REQUIRE_FALSE(got->has_value());
  CHECK(got->error() == dcp::make_error_code(dcp::errc::invalid_argument));
  CHECK(w.metrics().counter(pid, "rounds_exhausted") == 1);
  CHECK(w.get<node_t>(0, pid).promised().round == ~std::uint64_t{0});
}

}  // namespace test_paxos
