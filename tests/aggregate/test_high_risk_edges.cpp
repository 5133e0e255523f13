// High-risk edges (the testbed thesis' chapter 5): Barabási–Albert graphs,
// random-walk traffic, Push-Sum iterations through epochs, T = mu + k sigma,
// neighbour queries. Property tests over seeds with loss, duplication,
// reordering and crashes; hostile input counted and ignored.
#include <doctest/doctest.h>

#include "../seeds.hpp"  // fewer seeds under sanitizers

#include <algorithm>
#include <cmath>
#include <memory>
#include <set>

#include "dcp/aggregate.hpp"
#include "dcp/membership.hpp"
#include "dcp/sim.hpp"

namespace test_high_risk_edges {

using namespace dcp;
using sim::simulator;
using overlay = membership::static_group<sim::env>;
using ps_t = aggregate::push_sum<sim::env, overlay>;
using walk_t = aggregate::random_walk_traffic<sim::env, overlay>;
using hre_t = aggregate::high_risk_edges<sim::env, overlay>;
constexpr protocol_id mid = 10, pid = 30, wid = 34, hid = 32, pid2 = 33;

namespace {

sim::config network(double loss = 0, double dup = 0) {
  sim::config c;
  c.network.delay = sim::latency::uniform(1ms, 20ms);
  c.network.loss = loss;
  c.network.duplicate = dup;
  c.network.reorder = 0.1;
  return c;
}

struct setup {
  aggregate::threshold_rule rule = aggregate::threshold_rule::traffic_distribution;
  std::uint32_t iterations = 4;
  int stable_rounds = 40;  // 3 (the thesis) declares on ping-pong between two nodes: see the docs
  std::uint32_t ttl = 100;
  std::uint32_t seed_walk_hops = 4;
};

/// Hosts membership (the node's neighbours in g), traffic, Push-Sum (two
/// for the traffic_distribution rule) and the detector on every node.
void build(simulator& w, std::shared_ptr<const sim::topology> g, setup s) {
  aggregate::high_risk_edges_config hc;
  hc.iterations = s.iterations;
  hc.rule = s.rule;
  hc.seed_walk_hops = s.seed_walk_hops;
  aggregate::push_sum_config pc;
  pc.stable_rounds = s.stable_rounds;
  aggregate::random_walk_traffic_config wc;
  wc.walker_ttl = s.ttl;
  w.add_nodes(g->size(), [g, hc, pc, wc](sim::node_context& c) {
    auto& mem = c.add<overlay>(mid, membership::static_group_config::of(g->neighbours_of(c.index())));
    auto& walk = c.add<walk_t>(wid, mem, wc);
    auto& ps = c.add<ps_t>(pid, mem, pc);
    ps_t* ps2 = hc.rule == aggregate::threshold_rule::traffic_distribution ? &c.add<ps_t>(pid2, mem, pc) : nullptr;
    c.add<hre_t>(hid, mem, ps, walk, hc, ps2);
  });
}

/// Lets every walker retire (hop_delay 100 ms, links under 31 ms).
void run_traffic(simulator& w, std::uint32_t ttl) { w.run_for(std::chrono::milliseconds(140) * ttl + 2s); }

std::vector<double> traffic(simulator& w) {
  std::vector<double> x(w.size());
  for (std::uint32_t i = 0; i < w.size(); ++i) x[i] = static_cast<double>(w.get<walk_t>(i, wid).total());
  return x;
}

void check_all(simulator& w) {
  for (std::uint32_t i = 0; i < w.size(); ++i) {
    if (!w.is_up(i)) continue;
    w.get<hre_t>(i, hid).check_invariants();
    w.get<walk_t>(i, wid).check_invariants();
  }
}

/// Runs until every live node decided, or `limit` passed, checking every node's invariants every 5 s.
void run_detection(simulator& w, duration limit) {
  const auto end = w.now() + limit;
  while (w.now() < end) {
    w.run_for(5s);
    check_all(w);
    bool all = true;
    for (std::uint32_t i = 0; i < w.size() && all; ++i) all = !w.is_up(i) || w.get<hre_t>(i, hid).decided();
    if (all) break;
  }
  w.run_for(30s);  // the last queries answered
  check_all(w);
}

std::set<std::pair<std::uint32_t, std::uint32_t>> detected_edges(simulator& w) {
  std::set<std::pair<std::uint32_t, std::uint32_t>> out;
  for (std::uint32_t i = 0; i < w.size(); ++i) {
    if (!w.is_up(i)) continue;
    for (auto& p : w.get<hre_t>(i, hid).high_risk_neighbours())
      out.emplace(std::min(i, p.sim_index()), std::max(i, p.sim_index()));
  }
  return out;
}

}  // namespace

TEST_CASE("topology: Barabási–Albert graphs are simple, connected, have the expected edges, and grow hubs") {
  for (std::uint64_t seed = 1; seed <= 20; ++seed) {
    CAPTURE(seed);
    rng r(seed);
    const std::uint32_t n = 500, m = 1 + static_cast<std::uint32_t>(seed % 3);
    const auto g = sim::barabasi_albert(r, n, m);
    CHECK(g.edge_count() == m * (m + 1) / 2 + (n - m - 1) * m);
    std::size_t degrees = 0, max_degree = 0;
    for (std::uint32_t i = 0; i < n; ++i) {
      std::set<std::uint32_t> distinct(g.adjacent(i).begin(), g.adjacent(i).end());
      CHECK(distinct.size() == g.degree(i));  // no multi-edges
      CHECK_FALSE(distinct.contains(i));      // no self-loops
      CHECK(g.degree(i) >= m);
      for (auto j : g.adjacent(i)) CHECK(g.connected(j, i));  // undirected
      degrees += g.degree(i);
      max_degree = std::max(max_degree, g.degree(i));
    }
    CHECK(degrees == 2 * g.edge_count());
    std::vector<bool> seen(n);
    std::vector<std::uint32_t> stack{0};
    seen[0] = true;
    while (!stack.empty()) {
      auto v = stack.back();
      stack.pop_back();
      for (auto j : g.adjacent(v))
        if (!seen[j]) seen[j] = true, stack.push_back(j);
    }
    CHECK(std::count(seen.begin(), seen.end(), true) == n);
    CHECK(max_degree >=
          5 * m);  // preferential attachment: hubs far above the mean degree 2m (a uniform pick gives ~ log n)
  }
  rng r(1);
  CHECK_THROWS_AS(sim::barabasi_albert(r, 5, 0), dcp::error);
  CHECK_THROWS_AS(sim::barabasi_albert(r, 5, 5), dcp::error);
}

TEST_CASE(
    "random_walk_traffic: every hop is counted once at each end of its edge, duplicates never become walkers, traffic follows degree") {
  for (std::uint64_t seed = 1; seed <= dcp::test::last_seed(1, 9); ++seed) {
    CAPTURE(seed);
    const double dup = seed % 3 == 0 ? 0.1 : 0, loss = seed % 3 == 1 ? 0.05 : 0;
    simulator w(seed, network(loss, dup));
    auto g = std::make_shared<const sim::topology>(sim::barabasi_albert(w.rng(), 300, 2));
    setup s;
    s.ttl = 200;
    build(w, g, s);
    run_traffic(w, s.ttl);
    REQUIRE(w.in_flight() == 0);
    std::uint64_t sent = 0, received = 0;
    for (std::uint32_t i = 0; i < g->size(); ++i) {
      auto& t = w.get<walk_t>(i, wid);
      CHECK(t.held() == 0);
      sent += t.sent();
      received += t.received();
      std::uint64_t per_edge = 0;
      for (auto& [peer, e] : t.edges()) {
        CHECK(g->connected(i, peer.sim_index()));  // counted on real edges only
        per_edge += e.total();
        // What i sent on an edge, its neighbour received on it, unless lost.
        if (loss == 0) CHECK(e.sent == w.get<walk_t>(peer.sim_index(), wid).edge(address::sim(i)).received);
      }
      CHECK(per_edge == t.total());
    }
    if (loss == 0) {
      CHECK(sent == std::uint64_t{300} * s.ttl);  // every walker made its ttl hops, no copy made more
      CHECK(received == sent);
    } else {
      CHECK(received < sent);
    }
    if (dup > 0) CHECK(w.metrics().counter(wid, "walker_duplicates") > 0);
    // The random-walk model: visits proportional to degree (thesis eq. V_i = K_i / 2E).
    const auto x = traffic(w);
    double mx = 0, mk = 0;
    for (std::uint32_t i = 0; i < g->size(); ++i) mx += x[i] / 300, mk += double(g->degree(i)) / 300;
    double sxy = 0, sxx = 0, syy = 0;
    for (std::uint32_t i = 0; i < g->size(); ++i) {
      sxy += (x[i] - mx) * (double(g->degree(i)) - mk);
      sxx += (x[i] - mx) * (x[i] - mx);
      syy += (double(g->degree(i)) - mk) * (double(g->degree(i)) - mk);
    }
    CHECK(sxy / std::sqrt(sxx * syy) > 0.95);
  }
}

TEST_CASE(
    "high_risk_edges: every iteration's Push-Sum estimates converge to the true mean (1e-6 without loss), inside the inputs' range under faults") {
  for (std::uint64_t seed = 1; seed <= dcp::test::last_seed(1, 6); ++seed) {
    CAPTURE(seed);
    const double loss = seed % 2 ? 0.0 : 0.02, dup = seed % 3 == 0 ? 0.02 : 0;
    simulator w(seed, network(loss, dup));
    auto g = std::make_shared<const sim::topology>(sim::barabasi_albert(w.rng(), 150, 2));
    setup s;
    build(w, g, s);
    run_traffic(w, s.ttl);
    const auto x = traffic(w);
    double mu = 0;
    for (double v : x) mu += v / double(x.size());
    const double lo = *std::min_element(x.begin(), x.end()), hi = *std::max_element(x.begin(), x.end());
    w.get<hre_t>(static_cast<std::uint32_t>(w.rng().below(150)), hid).begin();
    run_detection(w, 3000s);
    for (std::uint32_t i = 0; i < 150; ++i) {
      auto& h = w.get<hre_t>(i, hid);
      REQUIRE(h.decided());
      CHECK(h.decision()->samples == s.iterations);  // every iteration reached every node
      for (std::uint32_t e = 1; e <= s.iterations; ++e) {
        auto v = h.sample_of(e);
        REQUIRE(v);
        // Loss and duplication move s and w together: a convex combination of the inputs.
        CHECK(*v >= lo);
        CHECK(*v <= hi);
        if (loss == 0 && dup == 0)
          CHECK(std::abs(*v - mu) / mu < 1e-6);
        else
          CHECK(std::abs(*v - mu) / mu < 0.1);  // biased: worst 4.7% measured at 2% loss and/or duplication
      }
    }
    CHECK(w.metrics().counter(pid, "stale_epoch") > 0);  // the barrier: released nodes' old shares dropped
  }
}

TEST_CASE(
    "high_risk_edges: a detected edge joins two nodes that both exceed their own threshold; loss, duplication, crashes") {
  for (std::uint64_t seed = 1; seed <= dcp::test::last_seed(1, 12); ++seed) {
    CAPTURE(seed);
    simulator w(seed, network(seed % 2 ? 0.03 : 0.0, seed % 3 ? 0.02 : 0.0));
    auto g = std::make_shared<const sim::topology>(
        sim::barabasi_albert(w.rng(), 120, 1 + static_cast<std::uint32_t>(seed % 2)));
    setup s;
    s.iterations = 3;
    if (seed % 4 == 0) s.rule = aggregate::threshold_rule::iteration_estimates;
    if (seed % 5 == 0) s.stable_rounds = 3;     // the thesis' criterion
    const bool traffic_during = seed % 3 == 0;  // walkers still walking: each epoch starts from a newer snapshot
    if (traffic_during) s.ttl = 800;
    build(w, g, s);
    if (traffic_during)
      w.run_for(10s);
    else
      run_traffic(w, s.ttl);
    w.get<hre_t>(0, hid).begin();
    w.run_for(std::chrono::seconds(20 + w.rng().below(60)));
    std::set<std::uint32_t> crashed;
    for (int c = 0; c < 5; ++c) {  // mid-detection, anywhere
      const auto v = static_cast<std::uint32_t>(1 + w.rng().below(119));
      w.crash(v);
      crashed.insert(v);
    }
    run_detection(w, 3000s);
    const auto edges = detected_edges(w);
    for (const auto& edge : edges) {
      const auto a = edge.first, b = edge.second;  // named: clang 15 cannot capture structured bindings
      CAPTURE(a);
      CAPTURE(b);
      CHECK(g->connected(a, b));
      for (auto v : {a, b}) {
        if (crashed.contains(v)) continue;  // a crashed node answered before it crashed
        auto d = w.get<hre_t>(v, hid).decision();
        REQUIRE(d);
        CHECK(d->high);
        CHECK(d->traffic > d->threshold);
      }
    }
    // The survivors fall into components of the graph without the crashed
    // nodes. In a component of two or more that an iteration reached, every
    // node that took part in one, or that a high neighbour queried, decides;
    // a lone survivor, or a component cut off before iteration 1 reached it,
    // hears nothing and cannot (the header says so).
    std::vector<int> component(120, -1);
    for (std::uint32_t root = 0; root < 120; ++root) {
      if (!w.is_up(root) || component[root] >= 0) continue;
      std::vector<std::uint32_t> members{root}, stack{root};
      component[root] = static_cast<int>(root);
      while (!stack.empty()) {
        auto v = stack.back();
        stack.pop_back();
        for (auto j : g->adjacent(v))
          if (w.is_up(j) && component[j] < 0)
            component[j] = static_cast<int>(root), stack.push_back(j), members.push_back(j);
      }
      bool reached = false;
      for (auto v : members) reached = reached || w.get<hre_t>(v, hid).epoch() >= 1;
      if (members.size() >= 2 && reached)
        for (auto v : members) {
          bool queried = false;
          for (auto j : g->adjacent(v)) {
            if (!w.is_up(j)) continue;
            auto d = w.get<hre_t>(j, hid).decision();
            queried = queried || (d && d->high);
          }
          if (w.get<hre_t>(v, hid).epoch() >= 1 || queried) CHECK(w.get<hre_t>(v, hid).decided());
        }
    }
    for (std::uint32_t i = 0; i < 120; ++i) {
      if (!w.is_up(i)) continue;
      auto& h = w.get<hre_t>(i, hid);
      if (!h.decided()) continue;
      // An undecided neighbour is never reported, a low node reports nothing.
      if (!h.decision()->high) CHECK(h.high_risk_neighbours().empty());
      for (auto& p : h.high_risk_neighbours()) CHECK(g->connected(i, p.sim_index()));
    }
  }
}

TEST_CASE("high_risk_edges: planted hubs on a Barabási–Albert graph: every hub-hub edge found, no edge at a leaf") {
  for (std::uint64_t seed = 1; seed <= dcp::test::last_seed(1, 6); ++seed) {
    CAPTURE(seed);
    simulator w(seed, network(seed % 2 ? 0.02 : 0.0));
    const std::uint32_t n = 200, hubs = 4;
    auto base = sim::barabasi_albert(w.rng(), n, 1);
    // Star-plus-BA: hubs 0..3 get 40 spokes each to random nodes, and are joined to each other.
    for (std::uint32_t h = 0; h < hubs; ++h) {
      for (std::uint32_t k = h + 1; k < hubs; ++k) base.connect(h, k);
      for (std::uint32_t spokes = 0; spokes < 40;)
        spokes += base.connect(h, static_cast<std::uint32_t>(hubs + w.rng().below(n - hubs)));
    }
    auto g = std::make_shared<const sim::topology>(std::move(base));
    setup s;
    s.ttl = 150;
    build(w, g, s);
    run_traffic(w, s.ttl);
    const auto x = traffic(w);
    double mu = 0, var = 0;
    for (double v : x) mu += v / n;
    for (double v : x) var += (v - mu) * (v - mu) / n;
    w.get<hre_t>(static_cast<std::uint32_t>(w.rng().below(n)), hid).begin();
    run_detection(w, 3000s);
    const auto edges = detected_edges(w);
    for (std::uint32_t h = 0; h < hubs; ++h)
      for (std::uint32_t k = h + 1; k < hubs; ++k) CHECK(edges.contains({h, k}));  // recall
    for (const auto& edge : edges) {
      const auto a = edge.first, b = edge.second;  // named: clang 15 cannot capture structured bindings
      CAPTURE(a);
      CAPTURE(b);
      for (auto v : {a, b}) {
        CHECK(g->degree(v) > 2);            // never a leaf's edge
        CHECK(x[v] > mu + std::sqrt(var));  // precision: both ends clearly above the rest
      }
    }
  }
}

TEST_CASE("high_risk_edges: stale, malformed and foreign messages are counted and change nothing") {
  simulator w(1);
  sim::topology t(4);  // a path 0-1-2, node 3 outside it
  t.connect(0, 1);
  t.connect(1, 2);
  t.connect(2, 3);
  auto g = std::make_shared<const sim::topology>(std::move(t));
  setup s;
  s.iterations = 3;
  build(w, g, s);
  w.run_for(1s);
  auto& h = w.get<hre_t>(1, hid);
  auto& ps = w.get<ps_t>(1, pid);
  auto& walk = w.get<walk_t>(1, wid);
  const auto stranger = address::sim(3);  // not node 1's neighbour

  // Push-Sum's shares: NaN, infinite, negative weight, foreign, stale.
  const auto before_s = ps.mass_s(), before_w = ps.mass_w();
  ps.on_message(address::sim(0), aggregate::push_sum_msg::share{0, NAN, 1});
  ps.on_message(address::sim(0), aggregate::push_sum_msg::share{0, 1, INFINITY});
  ps.on_message(address::sim(0), aggregate::push_sum_msg::share{0, INFINITY, 1});
  ps.on_message(address::sim(0), aggregate::push_sum_msg::share{0, 1, -1});
  CHECK(w.metrics().counter(pid, "bad_share") == 4);
  ps.on_message(stranger, aggregate::push_sum_msg::share{2, 1e300, 1});
  CHECK(w.metrics().counter(pid, "share_not_member") == 1);
  CHECK(ps.mass_s() == before_s);
  CHECK(ps.mass_w() == before_w);
  CHECK(ps.epoch() == 0);
  // Each finite, but the second would make the sum infinite, and every estimate it reached NaN.
  ps.on_message(address::sim(0), aggregate::push_sum_msg::share{0, 1.7e308, 1});
  const auto after_one = ps.mass_s();
  ps.on_message(address::sim(0), aggregate::push_sum_msg::share{0, 1.7e308, 1});
  CHECK(w.metrics().counter(pid, "bad_share") == 5);
  CHECK(ps.mass_s() == after_one);
  REQUIRE(ps.estimate());
  CHECK(std::isfinite(*ps.estimate()));
  for (int r = 0; r < 3; ++r) ps.round();  // w: 2 -> 0.25, s: 1.7e308 -> 2.1e307
  const auto halved_s = ps.mass_s();
  ps.on_message(address::sim(0), aggregate::push_sum_msg::share{0, 1.5e308, 0});  // s finite, s / w is not
  CHECK(w.metrics().counter(pid, "bad_share") == 6);
  CHECK(ps.mass_s() == halved_s);
  REQUIRE(ps.estimate());
  CHECK(std::isfinite(*ps.estimate()));

  // Seeds: foreign, past the last iteration, epoch 0, hops capped.
  h.on_message(stranger, aggregate::high_risk_msg::seed{1, 0});
  CHECK(w.metrics().counter(hid, "seed_not_member") == 1);
  h.on_message(address::sim(0), aggregate::high_risk_msg::seed{4, 0});
  h.on_message(address::sim(0), aggregate::high_risk_msg::seed{0, 0});
  h.on_message(address::sim(0), aggregate::high_risk_msg::seed{~std::uint64_t{0}, 0});
  CHECK(w.metrics().counter(hid, "bad_seed") == 3);
  CHECK(h.epoch() == 0);
  h.on_message(address::sim(0),
               aggregate::high_risk_msg::seed{1, ~std::uint32_t{0}});  // walks on, at most seed_walk_hops
  CHECK(w.metrics().counter(hid, "seed_hops_capped") == 1);
  w.run_for(30s);
  CHECK(h.epoch() >= 1);
  const auto e = h.epoch();
  h.on_message(address::sim(0), aggregate::high_risk_msg::seed{e, 0});  // that iteration has begun
  CHECK(w.metrics().counter(hid, "seed_late") >= 1);
  CHECK(h.epoch() == e);
  const auto stale_before = w.metrics().counter(pid, "stale_epoch");
  const auto mass = ps.mass_w();
  ps.on_message(address::sim(0), aggregate::push_sum_msg::share{e - 1, 5, 1});  // released: dropped
  CHECK(w.metrics().counter(pid, "stale_epoch") == stale_before + 1);
  CHECK(ps.mass_w() == mass);

  // Queries and answers: foreign, unsolicited.
  h.on_message(stranger, aggregate::high_risk_msg::query{});
  CHECK(w.metrics().counter(hid, "query_not_member") == 1);
  h.on_message(stranger, aggregate::high_risk_msg::answer{true});
  CHECK(w.metrics().counter(hid, "answer_not_member") == 1);
  h.on_message(address::sim(0), aggregate::high_risk_msg::answer{true});
  CHECK(w.metrics().counter(hid, "unsolicited_answer") == 1);
  CHECK(h.answered() == 0);

  // Walkers: foreign, an endless TTL, a replayed visit.
  const auto total = walk.total();
  walk.on_message(stranger, aggregate::random_walk_msg::walker{7, 0, 5});
  CHECK(w.metrics().counter(wid, "walker_not_member") == 1);
  CHECK(walk.total() == total);
  walk.on_message(address::sim(0), aggregate::random_walk_msg::walker{7, 3, ~std::uint32_t{0}});
  CHECK(w.metrics().counter(wid, "ttl_capped") == 1);
  walk.on_message(address::sim(0), aggregate::random_walk_msg::walker{7, 3, 5});
  CHECK(w.metrics().counter(wid, "walker_duplicates") == 1);
  CHECK(walk.total() == total + 1);

  // Configurations that cannot work are refused.
  aggregate::high_risk_edges_config bad;
  bad.k = NAN;
  CHECK_THROWS_AS(bad.validate(), dcp::error);
  bad = {};
  bad.iterations = 0;
  CHECK_THROWS_AS(bad.validate(), dcp::error);
  aggregate::random_walk_traffic_config bad_walk;
  bad_walk.walker_ttl = 0;
  CHECK_THROWS_AS(bad_walk.validate(), dcp::error);
}

TEST_CASE("high_risk_edges: a walker flood from a neighbour is bounded by max_held") {
  simulator w(2);
  sim::topology t(2);
  t.connect(0, 1);
  auto g = std::make_shared<const sim::topology>(std::move(t));
  build(w, g, setup{});
  auto& walk = w.get<walk_t>(1, wid);
  for (std::uint64_t id = 100; id < 100 + 3000; ++id)
    walk.on_message(address::sim(0), aggregate::random_walk_msg::walker{id, 0, 5});
  CHECK(walk.held() <= 1024);
  CHECK(w.metrics().counter(wid, "walker_overflow") >= 3000 - 1024);
}

TEST_CASE(
    "high_risk_edges: at 50% loss seed tokens die, a converged node restarts the stalled iteration, every node decides") {
  // A token walks 12 hops: it survives 50% loss with probability 2^-13, so
  // iterations advance only through stall_rounds.
  for (std::uint64_t seed = 1; seed <= dcp::test::last_seed(1, 4); ++seed) {
    CAPTURE(seed);
    simulator w(seed, network(0.5));
    auto g = std::make_shared<const sim::topology>(sim::barabasi_albert(w.rng(), 40, 2));
    setup s;
    s.stable_rounds = 10;
    s.seed_walk_hops = 12;
    build(w, g, s);
    run_traffic(w, s.ttl);
    w.get<hre_t>(0, hid).begin();
    run_detection(w, 3000s);
    for (std::uint32_t i = 0; i < 40; ++i) {
      auto& h = w.get<hre_t>(i, hid);
      REQUIRE(h.decided());
      CHECK(h.epoch() == s.iterations);  // every iteration ran, none skipped for good
    }
    CHECK(w.metrics().counter(hid, "stall_restart") > 0);
  }
}

}  // namespace test_high_risk_edges
