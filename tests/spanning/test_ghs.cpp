#include <doctest/doctest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <map>
#include <numeric>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "dcp/sim.hpp"
#include "dcp/spanning.hpp"

namespace test_ghs {

using namespace dcp;
using sim::simulator;
using ghs = spanning::ghs<sim::env>;
using spanning::edge_key;

static_assert(Protocol<ghs>);

namespace {

struct weighted_graph {
  std::uint32_t n = 0;
  std::vector<std::tuple<std::uint32_t, std::uint32_t, std::uint64_t>> edges;  // (a, b, weight), a != b, no multi-edges
};

/// A random connected graph: a random spanning tree plus about `extra` more
/// edges, weights uniform in [1, max_weight] (a small max_weight makes ties,
/// which edge_key breaks by the endpoints).
weighted_graph random_graph(rng& r, std::uint32_t n, std::uint32_t extra, std::uint64_t max_weight) {
  weighted_graph g{n, {}};
  std::set<std::pair<std::uint32_t, std::uint32_t>> seen;
  auto add = [&](std::uint32_t a, std::uint32_t b) {
    if (a == b || !seen.insert(std::minmax(a, b)).second) return;
    g.edges.emplace_back(a, b, 1 + r.below(max_weight));
  };
  for (std::uint32_t i = 1; i < n; ++i) add(i, static_cast<std::uint32_t>(r.below(i)));
  for (std::uint32_t k = 0; k < extra; ++k)
    add(static_cast<std::uint32_t>(r.below(n)), static_cast<std::uint32_t>(r.below(n)));
  return g;
}

edge_key key_of(std::uint32_t a, std::uint32_t b, std::uint64_t w) {
  return edge_key::of(address::sim(a), address::sim(b), w);
}

/// The reference: Kruskal over the same ranking.
std::set<edge_key> kruskal(const weighted_graph& g) {
  std::vector<edge_key> keys;
  for (auto& [a, b, w] : g.edges) keys.push_back(key_of(a, b, w));
  std::sort(keys.begin(), keys.end());
  std::vector<std::uint32_t> parent(g.n);
  std::iota(parent.begin(), parent.end(), 0u);
  auto find = [&](std::uint32_t x) {
    while (parent[x] != x) x = parent[x] = parent[parent[x]];
    return x;
  };
  std::set<edge_key> tree;
  for (auto& k : keys) {
    const auto a = find(k.low.sim_index()), b = find(k.high.sim_index());
    if (a == b) continue;
    parent[a] = b;
    tree.insert(k);
  }
  return tree;
}

/// The paper's bound: 5 N log2 N + 2 E.
double message_bound(std::uint32_t n, std::size_t e) {
  return n < 2 ? 0.0 : 5.0 * n * std::log2(static_cast<double>(n)) + 2.0 * static_cast<double>(e);
}

std::vector<spanning::ghs_config> configs_of(const weighted_graph& g) {
  std::vector<spanning::ghs_config> cfg(g.n);
  for (auto& c : cfg) c.wake_on_start = false;
  for (auto& [a, b, w] : g.edges) {
    cfg[a].edges.push_back({address::sim(b), w});
    cfg[b].edges.push_back({address::sim(a), w});
  }
  return cfg;
}

struct outcome {
  std::uint64_t ghs_messages = 0, done_messages = 0;
};

/// Builds the graph in a world, wakes a random set of nodes at random times,
/// runs to quiet, and checks every property: every node done, the union of
/// branches is Kruskal's tree, both ends agree on every branch, one root and
/// one core everywhere, parents lead to the root, the paper's message bound,
/// no error counter moved, the invariants held (after every event if asked).
outcome run_and_check(simulator& w, const weighted_graph& g, bool check_every_event) {
  const auto cfg = configs_of(g);
  std::vector<int> done_calls(g.n, 0);
  w.add_nodes(g.n, [&](sim::node_context& c) {
    auto& p = c.add<ghs>(ghs::default_id, cfg[c.index()]);
    p.on_done([&done_calls, i = c.index()](const spanning::ghs_result&) { ++done_calls[i]; });
  });
  auto& r = w.rng();
  const double p_wake = std::array{1.0, 0.3, 0.0}[r.below(3)];
  bool any = false;
  for (std::uint32_t i = 0; i < g.n; ++i)
    if (r.chance(p_wake) || (!any && i + 1 == g.n)) {
      any = true;
      w.after(duration(r.between(0, 30'000'000)), [&w, i] { w.get<ghs>(i, ghs::default_id).wake_up(); });
    }
  bool invariants = true;
  if (check_every_event)
    w.after_event([&] {
      for (std::uint32_t i = 0; i < g.n; ++i)
        invariants = invariants && w.get<ghs>(i, ghs::default_id).check_invariants();
    });
  w.run_until_quiet(w.now() + 600s);
  w.run_for(1ms);  // the last on_done runs from a zero-delay timer
  w.after_event({});
  REQUIRE(invariants);

  const auto mst = kruskal(g);
  std::set<edge_key> tree;
  std::vector<std::set<std::uint32_t>> adj(g.n);
  std::map<std::pair<std::uint32_t, std::uint32_t>, std::uint64_t> weight;
  for (auto& [a, b, wt] : g.edges) weight[std::minmax(a, b)] = wt;
  const auto& first = w.get<ghs>(0, ghs::default_id);
  REQUIRE(first.done());
  const auto root = first.result()->root;
  const auto core = first.result()->core;
  for (std::uint32_t i = 0; i < g.n; ++i) {
    const auto& p = w.get<ghs>(i, ghs::default_id);
    INFO("node " << i);
    REQUIRE(p.done());
    REQUIRE(p.check_invariants());
    CHECK(p.deferred() == 0);
    CHECK(done_calls[i] == 1);
    const auto& res = *p.result();
    CHECK(res.root == root);
    CHECK(res.core == core);
    CHECK(res.level <= std::log2(static_cast<double>(g.n)) + 1e-9);
    CHECK(res.parent.has_value() == (address::sim(i) != root));
    for (auto& b : res.branches) {
      const auto j = b.sim_index();
      adj[i].insert(j);
      tree.insert(key_of(i, j, weight.at(std::minmax(i, j))));
    }
    if (res.parent) CHECK(std::find(res.branches.begin(), res.branches.end(), *res.parent) != res.branches.end());
  }
  CHECK(tree == mst);
  for (std::uint32_t i = 0; i < g.n; ++i)
    for (auto j : adj[i]) CHECK(adj[j].contains(i));  // both ends agree
  // Following parents from anywhere reaches the root within N steps (no cycle).
  for (std::uint32_t i = 0; i < g.n; ++i) {
    address at = address::sim(i);
    std::uint32_t steps = 0;
    while (at != root && steps <= g.n) {
      at = *w.get<ghs>(at.sim_index(), ghs::default_id).result()->parent;
      ++steps;
    }
    CHECK(at == root);
  }
  // Nothing from an honest network may look like bad input.
  w.metrics().for_each_counter([](protocol_id pid, std::string_view name, std::int64_t v) {
    if (pid != ghs::default_id || name == "done" || name == "duplicate") return;
    INFO("counter " << name);
    CHECK(v == 0);
  });
  outcome o;
  o.done_messages = w.metrics().of(ghs::default_id, spanning::ghs_msg::done::wire_id).sent;
  o.ghs_messages = w.metrics().of(ghs::default_id).sent - o.done_messages;
  CHECK(o.done_messages == (g.n > 1 ? g.n - 2 : 0));  // every tree edge but the core
  CHECK(static_cast<double>(o.ghs_messages) <= message_bound(g.n, g.edges.size()));
  return o;
}

sim::config jittery(std::uint64_t seed) {
  sim::config c;
  c.network.delay = sim::latency::uniform(1ms, 20ms);
  if (seed % 3 == 0) {
    c.fifo = true;  // as TCP would give it
  } else {
    c.network.reorder = 0.3;  // the per-link sequence numbers restore the order
    c.network.reorder_delay = 30ms;
    c.network.duplicate = seed % 3 == 1 ? 0.05 : 0.0;
  }
  return c;
}

}  // namespace

TEST_CASE(
    "ghs: the tree is Kruskal's MST on random connected graphs; 1000 seeds, jitter, reordering, duplicates, random wake-ups") {
  for (std::uint64_t seed = 1; seed <= 1000; ++seed) {
    simulator w(seed, jittery(seed));
    const auto n = static_cast<std::uint32_t>(1 + w.rng().below(40));
    const auto g = random_graph(w.rng(), n, static_cast<std::uint32_t>(w.rng().below(3 * n + 1)),
                                seed % 2 ? 4 : 1'000'000);  // odd seeds: many equal weights
    INFO("seed " << seed << " n " << n << " e " << g.edges.size());
    run_and_check(w, g, true);
  }
}

TEST_CASE("ghs: hundreds of nodes, dense and sparse; the tree is the MST and messages stay under 5 N log2 N + 2 E") {
  for (std::uint64_t seed = 1; seed <= 12; ++seed) {
    simulator w(seed, jittery(seed));
    const std::uint32_t n = seed == 12 ? 2000 : seed % 2 ? 300 : 500;
    const std::uint32_t extra = seed % 4 == 1 ? n / 4 : 4 * n;
    const auto g = random_graph(w.rng(), n, extra, 1'000'000'000);
    INFO("seed " << seed << " n " << n << " e " << g.edges.size());
    const auto o = run_and_check(w, g, false);
    MESSAGE("n " << n << " e " << g.edges.size() << ": " << o.ghs_messages << " messages, bound "
                 << message_bound(n, g.edges.size()));
  }
}

TEST_CASE(
    "ghs: a CONNECT deferred at the receiver becomes a merge when the receiver chooses the same edge (the lazy-retry deadlock)") {
  // a1 = 0, a2 = 1, b1 = 2, b2 = 3: a path a1 - a2 - b1 - b2. {a1, a2} and
  // {b1, b2} merge at level 1; both then choose j = (a2, b1). The b link is
  // slow, so A's CONNECT(1) reaches b1 while B is still searching and is
  // deferred; b1 then sends its own CONNECT over j. Re-examined only when the
  // level rises, the deferred CONNECT would be read as an absorb after the
  // merge's INITIATE (see the header): the run stalls.
  sim::config c;
  c.fifo = true;
  c.network.delay = sim::latency::constant(1ms);
  simulator w(1, c);
  const weighted_graph g{4, {{0, 1, 1}, {2, 3, 2}, {1, 2, 10}}};
  w.set_link(2, 3, sim::link{.delay = sim::latency::constant(100ms)});
  w.set_link(3, 2, sim::link{.delay = sim::latency::constant(100ms)});
  // The schedule happens: A's CONNECT is delivered to b1 before b1 sends its own.
  std::vector<std::string> order;
  w.on_trace([&](const sim::trace_event& e) {
    if (e.protocol != ghs::default_id || e.type != spanning::ghs_msg::connect::wire_id) return;
    if (e.what == sim::trace_event::kind::deliver && e.from == 1 && e.to == 2) order.push_back("a2->b1 delivered");
    if (e.what == sim::trace_event::kind::send && e.from == 2 && e.to == 1) order.push_back("b1->a2 sent");
  });
  // Everyone wakes at time zero, once all four exist.
  const auto cfg = configs_of(g);
  w.add_nodes(4, [&](sim::node_context& n) { n.add<ghs>(ghs::default_id, cfg[n.index()]); });
  for (std::uint32_t i = 0; i < 4; ++i) w.after(0ms, [&w, i] { w.get<ghs>(i, ghs::default_id).wake_up(); });
  w.run_until_quiet(w.now() + 10s);
  REQUIRE(order == std::vector<std::string>{"a2->b1 delivered", "b1->a2 sent"});
  for (std::uint32_t i = 0; i < 4; ++i) {
    INFO("node " << i);
    REQUIRE(w.get<ghs>(i, ghs::default_id).done());
    CHECK(w.get<ghs>(i, ghs::default_id).result()->level == 2);
  }
  CHECK(w.get<ghs>(2, ghs::default_id).result()->core == key_of(1, 2, 10));
  CHECK(w.get<ghs>(0, ghs::default_id).result()->root == address::sim(2));
  CHECK(w.metrics().counter(ghs::default_id, "connect_on_used_edge") == 0);
}

TEST_CASE("ghs: on_done runs after the event, never inside the call; a lone node is its own tree") {
  simulator w(1);
  int calls = 0;
  w.add_node([&](sim::node_context& c) {
    auto& p = c.add<ghs>(ghs::default_id, spanning::ghs_config{.wake_on_start = false});
    p.on_done([&](const spanning::ghs_result& r) {
      ++calls;
      CHECK(r.branches.empty());
      CHECK(r.root == address::sim(0));
      CHECK_FALSE(r.parent);
    });
  });
  auto& p = w.get<ghs>(0, ghs::default_id);
  p.wake_up();
  CHECK(p.done());
  CHECK(calls == 0);  // not inside wake_up()
  w.run_posted();     // but once the event (the test's call) is over, before any other
  CHECK(calls == 1);
}

TEST_CASE("ghs: hostile input is counted and changes nothing") {
  // Node 0 with neighbours 1 (weight 5) and 2 (weight 7); nodes 1 and 2 are
  // not simulated: we speak for them.
  simulator w(1);
  spanning::ghs_config cfg{.edges = {{address::sim(1), 5}, {address::sim(2), 7}}, .wake_on_start = false};
  w.add_node([&](sim::node_context& c) { c.add<ghs>(ghs::default_id, cfg); });
  w.add_nodes(2, [](sim::node_context&) {});
  auto& p = w.get<ghs>(0, ghs::default_id);
  auto counter = [&](std::string_view n) { return w.metrics().counter(ghs::default_id, n); };
  namespace m = spanning::ghs_msg;

  p.on_message(address::sim(9), m::connect{.seq = 0, .level = 0});  // not a neighbour
  CHECK(counter("not_a_neighbour") == 1);
  CHECK(p.state() == spanning::ghs_state::sleeping);

  p.on_message(address::sim(1), m::test{.seq = 0, .level = 1000});  // absurd level (sequence 0 consumed)
  CHECK(counter("absurd_level") == 1);
  CHECK(p.state() == spanning::ghs_state::sleeping);

  p.on_message(address::sim(1), m::accept{.seq = 1});  // no TEST outstanding
  p.on_message(address::sim(1), m::reject{.seq = 2});
  p.on_message(address::sim(1), m::report{.seq = 3});
  p.on_message(address::sim(1), m::change_root{.seq = 4});
  p.on_message(address::sim(1), m::done{.seq = 5});
  p.on_message(address::sim(1), m::initiate{.seq = 6, .level = 1, .find = true});  // over a Basic edge
  CHECK(counter("unexpected_accept") == 1);
  CHECK(counter("unexpected_reject") == 1);
  CHECK(counter("unexpected_report") == 1);
  CHECK(counter("unexpected_change_root") == 1);
  CHECK(counter("unexpected_done") == 1);
  CHECK(counter("initiate_on_non_branch") == 1);
  CHECK(p.state() == spanning::ghs_state::sleeping);
  CHECK(p.level() == 0);
  CHECK(p.branches().empty());

  p.on_message(address::sim(1), m::accept{.seq = 6});  // a duplicate of a consumed sequence number
  CHECK(counter("duplicate") == 1);
  p.on_message(address::sim(1), m::accept{.seq = 4'000'000'000u});  // far outside the window
  CHECK(counter("sequence_out_of_window") == 1);

  // A message ahead of the sequence waits, bounded, and is not applied early.
  p.on_message(address::sim(2), m::connect{.seq = 1, .level = 0});
  CHECK(p.state() == spanning::ghs_state::sleeping);
  for (std::uint32_t s = 2; s < 300; ++s) p.on_message(address::sim(2), m::accept{.seq = s});
  CHECK(counter("sequence_out_of_window") > 1);
  CHECK(p.check_invariants());

  // An honest CONNECT(0) from the minimum edge wakes the node and merges.
  p.on_message(address::sim(1), m::connect{.seq = 7, .level = 0});
  CHECK(p.state() == spanning::ghs_state::found);
  CHECK(p.branches() == std::vector<address>{address::sim(1)});
  CHECK(p.check_invariants());
  // A CONNECT at a level above ours cannot come from an honest neighbour.
  p.on_message(address::sim(1), m::connect{.seq = 8, .level = 3});
  CHECK(counter("connect_from_higher_level") == 1);
  // A stale INITIATE is refused.
  p.on_message(address::sim(1), m::initiate{.seq = 9, .level = 1, .fragment = key_of(0, 1, 5), .find = false});
  CHECK(p.level() == 1);
  p.on_message(address::sim(1), m::initiate{.seq = 10, .level = 1, .fragment = key_of(0, 1, 5), .find = false});
  CHECK(counter("stale_initiate") == 1);
  CHECK(p.level() == 1);
  CHECK(p.check_invariants());
}

TEST_CASE("ghs: the deferred queue holds at most one message of each kind per edge") {
  simulator w(1);
  spanning::ghs_config cfg{.edges = {{address::sim(1), 5}, {address::sim(2), 7}}, .wake_on_start = false};
  w.add_node([&](sim::node_context& c) { c.add<ghs>(ghs::default_id, cfg); });
  w.add_nodes(2, [](sim::node_context&) {});
  auto& p = w.get<ghs>(0, ghs::default_id);
  namespace m = spanning::ghs_msg;
  p.wake_up();
  p.on_message(address::sim(2),
               m::test{.seq = 0, .level = 3, .fragment = key_of(1, 2, 9)});  // from a higher level: waits
  CHECK(p.deferred() == 1);
  p.on_message(address::sim(2), m::test{.seq = 1, .level = 4, .fragment = key_of(1, 2, 9)});
  CHECK(p.deferred() == 1);
  CHECK(w.metrics().counter(ghs::default_id, "deferred_twice") == 1);
  p.on_message(address::sim(2), m::connect{.seq = 2, .level = 0});  // same level, edge not chosen here: waits
  CHECK(p.deferred() == 2);
  for (std::uint32_t s = 3; s < 40; ++s) p.on_message(address::sim(2), m::connect{.seq = s, .level = 0});
  CHECK(p.deferred() == 2);
  CHECK(p.level() == 0);
  CHECK(p.check_invariants());
}

TEST_CASE("ghs: random hostile message streams never break an invariant; 200 seeds x 2,000 messages") {
  namespace m = spanning::ghs_msg;
  int searched = 0, deferred_some = 0;  // the streams do reach the deep states
  for (std::uint64_t seed = 1; seed <= 200; ++seed) {
    simulator w(seed);
    auto& r = w.rng();
    bool in_find = false, deferring = false;
    const auto degree = static_cast<std::uint32_t>(1 + r.below(6));
    spanning::ghs_config cfg{.wake_on_start = r.chance(0.5)};
    for (std::uint32_t j = 1; j <= degree; ++j) cfg.edges.push_back({address::sim(j), r.below(5)});
    w.add_node([&](sim::node_context& c) { c.add<ghs>(ghs::default_id, cfg); });
    w.add_nodes(degree + 1, [](sim::node_context&) {});  // the neighbours, and one stranger: we speak for them
    auto& p = w.get<ghs>(0, ghs::default_id);
    std::vector<std::uint32_t> next(degree + 2, 0);
    auto some_key = [&] {
      const auto a = static_cast<std::uint32_t>(r.below(degree + 2)),
                 b = static_cast<std::uint32_t>(r.below(degree + 2));
      return key_of(a, b, r.below(5));
    };
    INFO("seed " << seed);
    for (int k = 0; k < 2000; ++k) {
      const auto from = static_cast<std::uint32_t>(1 + r.below(degree + 1));
      // Mostly the next sequence number (so the message reaches the protocol), sometimes anything.
      const std::uint32_t seq = r.chance(0.9) ? next[from]++ : static_cast<std::uint32_t>(r.below(600));
      const auto level = static_cast<std::uint32_t>(r.chance(0.9) ? r.below(4) : r.below(100));
      const address a = address::sim(from);
      switch (r.below(8)) {
        case 0:
          p.on_message(a, m::connect{.seq = seq, .level = level});
          break;
        case 1:
          p.on_message(a, m::initiate{.seq = seq, .level = level, .fragment = some_key(), .find = r.chance(0.5)});
          break;
        case 2:
          p.on_message(a, m::test{.seq = seq, .level = level, .fragment = some_key()});
          break;
        case 3:
          p.on_message(a, m::accept{.seq = seq});
          break;
        case 4:
          p.on_message(a, m::reject{.seq = seq});
          break;
        case 5:
          p.on_message(a, m::report{.seq = seq, .infinite = r.chance(0.5), .best = some_key()});
          break;
        case 6:
          p.on_message(a, m::change_root{.seq = seq});
          break;
        default:
          p.on_message(a, m::done{.seq = seq, .core = some_key(), .level = level});
          break;
      }
      if (r.chance(0.01)) p.wake_up();
      REQUIRE(p.check_invariants());
      REQUIRE(p.level() <= cfg.max_level);
      REQUIRE(p.deferred() <= 3 * degree);
      in_find = in_find || p.state() == spanning::ghs_state::find;
      deferring = deferring || p.deferred() > 1;
    }
    searched += in_find;
    deferred_some += deferring;
    w.run_for(1s);  // whatever the node sent is delivered (to nobody) and nothing pending misbehaves
  }
  MESSAGE("hostile streams: " << searched << " of 200 reached Find, " << deferred_some << " deferred several messages");
  CHECK(searched > 20);
  CHECK(deferred_some > 20);
}

TEST_CASE("ghs: bad configuration is refused with a clear error") {
  simulator w(1);
  CHECK_THROWS_AS(w.add_node([](sim::node_context& c) {
    c.add<ghs>(ghs::default_id, spanning::ghs_config{.edges = {{address::sim(0), 1}}});  // itself
  }),
                  dcp::error);
  CHECK_THROWS_AS(w.add_node([](sim::node_context& c) {
    c.add<ghs>(ghs::default_id, spanning::ghs_config{.edges = {{address::sim(5), 1}, {address::sim(5), 2}}});
  }),
                  dcp::error);
  CHECK_THROWS_AS(
      w.add_node([](sim::node_context& c) { c.add<ghs>(ghs::default_id, spanning::ghs_config{.max_level = 0}); }),
      dcp::error);
}

}  // namespace test_ghs
