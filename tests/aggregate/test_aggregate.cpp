#include <doctest/doctest.h>

#include "../seeds.hpp"  // fewer seeds under sanitizers

#include <cmath>
#include <memory>

#include "dcp/aggregate.hpp"
#include "dcp/membership.hpp"
#include "dcp/sim.hpp"

namespace test_aggregate {

using namespace dcp;
using sim::simulator;
using fixed_group = membership::static_group<sim::env>;
using hpv = membership::hyparview<sim::env>;
using ps_uniform = aggregate::push_sum<sim::env, fixed_group>;
using ps_overlay = aggregate::push_sum<sim::env, hpv>;
using pw = aggregate::pairwise_average<sim::env, fixed_group>;
constexpr protocol_id mid = 10, aid = 30;

namespace {
sim::config network(double loss = 0, double dup = 0) {
  sim::config c;
  c.network.delay = sim::latency::uniform(1ms, 20ms);
  c.network.loss = loss;
  c.network.duplicate = dup;
  c.network.reorder = 0.1;
  return c;
}
std::shared_ptr<const dcp::group::static_group> everyone(std::uint32_t n) {
  return std::make_shared<const dcp::group::static_group>(dcp::group::static_group::sim(n));
}
double input_of(std::uint32_t i) { return 10.0 + static_cast<double>((i * 7919) % 1000) / 10.0; }

template <class P> double worst_error(simulator& w, double truth) {
  double worst = 0;
  for (std::uint32_t i = 0; i < w.size(); ++i) {
    if (!w.is_up(i)) continue;
    auto e = w.get<P>(i, aid).estimate();
    worst = std::max(worst, e ? std::abs(*e - truth) / std::abs(truth) : INFINITY);
  }
  return worst;
}
}  // namespace

TEST_CASE("push_sum: every node reaches the average within 1e-6, mass is conserved, convergence is declared") {
  for (std::uint64_t seed = 1; seed <= dcp::test::last_seed(1, 4); ++seed) {
    CAPTURE(seed);
    simulator w(seed, network());
    constexpr std::uint32_t n = 500;
    auto members = everyone(n);
    auto converged = std::make_shared<int>(0);
    auto worst_declared = std::make_shared<double>(0);
    double truth = 0;
    for (std::uint32_t i = 0; i < n; ++i) truth += input_of(i) / n;
    w.add_nodes(n, [&](sim::node_context& c) {
      auto& g = c.add<fixed_group>(mid, membership::static_group_config{members});
      aggregate::push_sum_config k;
      k.input = aggregate::push_sum_input::average(input_of(c.index()));
      k.tolerance = 1e-8;
      auto& p = c.add<ps_uniform>(aid, g, k);
      p.on_converged([converged, worst_declared, truth](double e, std::uint64_t) {
        ++*converged;
        *worst_declared = std::max(*worst_declared, std::abs(e - truth) / truth);
      });
    });
    for (int r = 1; r <= 80; ++r) {
      w.run_until(time_point{} + r * 1s + 500ms);  // rounds fire on whole seconds; links take < 31 ms
      REQUIRE(w.in_flight() == 0);
      double s = 0, wt = 0;
      for (std::uint32_t i = 0; i < n; ++i) {
        s += w.get<ps_uniform>(i, aid).mass_s();
        wt += w.get<ps_uniform>(i, aid).mass_w();
      }
      CHECK(s == doctest::Approx(truth * n).epsilon(1e-12));
      CHECK(wt == doctest::Approx(n).epsilon(1e-12));
    }
    CHECK(worst_error<ps_uniform>(w, truth) < 1e-6);
    CHECK(*converged == static_cast<int>(n));
    CHECK(*worst_declared < 1e-6);  // no node declared before it was there
  }
}

TEST_CASE("push_sum: sum and network size over HyParView's active view") {
  simulator w(5, network());
  constexpr std::uint32_t n = 300;
  for (bool count : {false, true}) {
    simulator w2(count ? 6 : 5, network());
    double truth = 0;
    for (std::uint32_t i = 0; i < n; ++i) truth += count ? 1 : input_of(i);
    for (std::uint32_t i = 0; i < n; ++i) {
      w2.add_node([i, count](sim::node_context& c) {
        membership::hyparview_config hk;
        if (i) hk.contact = address::sim(0);
        auto& m = c.add<hpv>(hpv::default_id, hk);
        aggregate::push_sum_config k;
        k.input =
            count ? aggregate::push_sum_input::count(i == 0) : aggregate::push_sum_input::sum(input_of(i), i == 0);
        c.add<ps_overlay>(aid, m, k);
      });
      w2.run_for(5ms);
    }
    w2.run_for(10s);                       // the overlay settles
    w2.get<ps_overlay>(0, aid).restart();  // start counting on the settled overlay
    w2.run_for(300s);                      // a 5-regular overlay mixes slower than uniform picks: ~0.93 per round here
    CHECK(worst_error<ps_overlay>(w2, truth) < 1e-6);
  }
}

TEST_CASE("push_sum: a new epoch restarts cleanly from changed inputs") {
  simulator w(7, network());
  constexpr std::uint32_t n = 200;
  auto members = everyone(n);
  w.add_nodes(n, [&](sim::node_context& c) {
    auto& g = c.add<fixed_group>(mid, membership::static_group_config{members});
    aggregate::push_sum_config k;
    k.input = aggregate::push_sum_input::average(1.0);
    c.add<ps_uniform>(aid, g, k);
  });
  w.run_for(40s);
  CHECK(worst_error<ps_uniform>(w, 1.0) < 1e-9);
  for (std::uint32_t i = 0; i < n; ++i)
    w.get<ps_uniform>(i, aid).set_input(aggregate::push_sum_input::average(i < n / 2 ? 0.0 : 4.0));
  w.get<ps_uniform>(17, aid).restart();
  w.run_for(60s);
  CHECK(worst_error<ps_uniform>(w, 2.0) < 1e-6);
  for (std::uint32_t i = 0; i < n; ++i) CHECK(w.get<ps_uniform>(i, aid).epoch() == 1);
  CHECK(w.metrics().counter(aid, "stale_epoch") >= 0);
}

TEST_CASE("push_sum: under 10% loss the estimate stays inside the inputs' range and near the average") {
  simulator w(8, network(0.1));
  constexpr std::uint32_t n = 400;
  auto members = everyone(n);
  double truth = 0, lo = 1e9, hi = -1e9;
  for (std::uint32_t i = 0; i < n; ++i) {
    truth += input_of(i) / n;
    lo = std::min(lo, input_of(i));
    hi = std::max(hi, input_of(i));
  }
  w.add_nodes(n, [&](sim::node_context& c) {
    auto& g = c.add<fixed_group>(mid, membership::static_group_config{members});
    aggregate::push_sum_config k;
    k.input = aggregate::push_sum_input::average(input_of(c.index()));
    c.add<ps_uniform>(aid, g, k);
  });
  w.run_for(80s);
  double spread_lo = 1e9, spread_hi = -1e9;
  for (std::uint32_t i = 0; i < n; ++i) {
    auto e = w.get<ps_uniform>(i, aid).estimate();
    REQUIRE(e);
    CHECK(*e >= lo);
    CHECK(*e <= hi);
    spread_lo = std::min(spread_lo, *e);
    spread_hi = std::max(spread_hi, *e);
  }
  CHECK((spread_hi - spread_lo) / truth < 1e-6);      // the nodes agree with each other...
  CHECK(std::abs(spread_lo - truth) / truth < 0.05);  // ...on a value the loss biased a little
}

TEST_CASE("pairwise averaging: the sum is conserved exactly under duplication and reordering; size = 1/x") {
  for (std::uint64_t seed = 1; seed <= dcp::test::last_seed(1, 3); ++seed) {
    CAPTURE(seed);
    simulator w(seed, network(0, 0.05));
    constexpr std::uint32_t n = 256;
    auto members = everyone(n);
    w.add_nodes(n, [&](sim::node_context& c) {
      auto& g = c.add<fixed_group>(mid, membership::static_group_config{members});
      aggregate::pairwise_average_config k;
      k.value = c.index() == 0 ? 1.0 : 0.0;
      c.add<pw>(aid, g, k);
    });
    for (int r = 1; r <= 60; ++r) {
      w.run_until(time_point{} + r * 1s + 500ms);  // between rounds: nothing in flight
      REQUIRE(w.in_flight() == 0);
      double sum = 0;
      for (std::uint32_t i = 0; i < n; ++i) sum += w.get<pw>(i, aid).value();
      CHECK(sum == doctest::Approx(1.0).epsilon(1e-12));
    }
    for (std::uint32_t i = 0; i < n; ++i) {
      auto est = w.get<pw>(i, aid).size_estimate();
      REQUIRE(est);
      CHECK(*est == doctest::Approx(n).epsilon(1e-6));
    }
    CHECK(w.metrics().counter(aid, "duplicate_offer") > 0);
  }
}

TEST_CASE("aggregation: bad input is refused or dropped and counted") {
  simulator w(1);
  auto members = everyone(2);
  w.add_nodes(2, [&](sim::node_context& c) {
    auto& g = c.add<fixed_group>(mid, membership::static_group_config{members});
    c.add<ps_uniform>(aid, g, aggregate::push_sum_config{});
  });
  auto& p = w.get<ps_uniform>(0, aid);
  p.on_message(address::sim(1), aggregate::push_sum_msg::share{0, NAN, 1});
  p.on_message(address::sim(1), aggregate::push_sum_msg::share{0, 1, -1});
  CHECK(w.metrics().counter(aid, "bad_share") == 2);
  CHECK(p.mass_w() == 1);
  CHECK_THROWS_AS(p.set_input({INFINITY, 1}), dcp::error);
  aggregate::push_sum_config bad;
  bad.input.weight = -1;
  CHECK_THROWS_AS(bad.validate(), dcp::error);

  // Pairwise averaging: finite values whose difference is infinite.
  simulator v(2);
  v.add_nodes(2, [&](sim::node_context& c) {
    auto& g = c.add<fixed_group>(mid, membership::static_group_config{members});
    aggregate::pairwise_average_config k;
    k.value = c.index() == 0 ? -1.7e308 : 0.0;
    c.add<pw>(aid, g, k);
  });
  auto& q = v.get<pw>(0, aid);
  q.on_message(address::sim(1), aggregate::pairwise_msg::offer{1, 1.7e308});
  CHECK(v.metrics().counter(aid, "bad_offer") == 1);
  CHECK(q.value() == -1.7e308);
  q.on_message(address::sim(1), aggregate::pairwise_msg::offer{2, NAN});
  CHECK(v.metrics().counter(aid, "bad_offer") == 2);
  CHECK(std::isfinite(q.value()));
}

TEST_CASE(
    "push_sum over HyParView: after a third crash the old epoch keeps the old average; a new one gives the survivors'") {
  for (std::uint64_t seed = 40; seed <= dcp::test::last_seed(40, 42); ++seed) {
    CAPTURE(seed);
    simulator w(seed, network());
    constexpr std::uint32_t n = 150;
    for (std::uint32_t i = 0; i < n; ++i) {
      w.add_node([i](sim::node_context& c) {
        membership::hyparview_config hk;
        if (i) hk.contact = address::sim(0);
        auto& m = c.add<hpv>(hpv::default_id, hk);
        aggregate::push_sum_config k;
        k.input = aggregate::push_sum_input::average(input_of(i));
        c.add<ps_overlay>(aid, m, k);
      });
      w.run_for(5ms);
    }
    w.run_for(10s);
    w.get<ps_overlay>(1, aid).restart();  // epoch 1 on the settled overlay
    w.run_for(250s);
    double all = 0, survivors = 0;
    for (std::uint32_t i = 0; i < n; ++i) {
      all += input_of(i) / n;
      if (i % 3 != 0) survivors += input_of(i) / (n - n / 3);
    }
    REQUIRE(worst_error<ps_overlay>(w, all) < 1e-6);
    for (std::uint32_t i = 0; i < n; i += 3) w.crash(i);  // node 0, the contact, among them
    w.run_for(15s);
    // Every survivor's view has dropped the dead (keep-alive silence) ...
    for (std::uint32_t i = 0; i < n; ++i)
      if (w.is_up(i))
        for (auto& p : w.get<hpv>(i, hpv::default_id).neighbours()) CHECK(p.sim_index() % 3 != 0);
    // ... but epoch 1's mass left with the dead in proportion: the survivors
    // still hold the average of everyone, not theirs.
    CHECK(worst_error<ps_overlay>(w, all) < 1e-6);
    CHECK(worst_error<ps_overlay>(w, survivors) > 1e-3);
    w.get<ps_overlay>(2, aid).restart();  // epoch 2, from the survivors' own values
    w.run_for(250s);
    CHECK(worst_error<ps_overlay>(w, survivors) < 1e-6);
    for (std::uint32_t i = 0; i < n; ++i)
      if (w.is_up(i)) CHECK(w.get<ps_overlay>(i, aid).epoch() == 2);
  }
}

// Issue 11: a share is mass, so a share from outside the membership would
// move every estimate wherever its sender likes. Push-Sum takes shares only
// from peers its membership admits (a static group's members; HyParView's
// active and passive views), counts the others and leaves its mass alone.
TEST_CASE("push_sum: shares from outside the membership are refused and counted, the mass unchanged") {
  simulator w(1);
  auto members = everyone(2);
  w.add_nodes(2, [&](sim::node_context& c) {
    auto& g = c.add<fixed_group>(mid, membership::static_group_config{members});
    c.add<ps_uniform>(aid, g, aggregate::push_sum_config{});
  });
  auto& p = w.get<ps_uniform>(0, aid);
  const auto stranger = address::sim(9);
  p.on_message(stranger, aggregate::push_sum_msg::share{0, 1e12, 1});
  p.on_message(stranger, aggregate::push_sum_msg::share{5, 1e12, 1});  // nor may it start an epoch
  CHECK(p.mass_w() == 1);
  CHECK(p.epoch() == 0);
  CHECK(w.metrics().counter(aid, "share_not_member") == 2);
  p.on_message(address::sim(1), aggregate::push_sum_msg::share{0, 3, 1});  // a member's is taken
  CHECK(p.mass_w() == 2);

  // Over HyParView: a process that never joined is refused; a neighbour is not.
  simulator h(2, network());
  for (std::uint32_t i = 0; i < 3; ++i) {
    h.add_node([i](sim::node_context& c) {
      membership::hyparview_config hk;
      if (i) hk.contact = address::sim(0);
      auto& m = c.add<hpv>(hpv::default_id, hk);
      c.add<ps_overlay>(aid, m, aggregate::push_sum_config{});
    });
    h.run_for(5ms);
  }
  h.run_for(1s);
  auto& q = h.get<ps_overlay>(0, aid);
  const auto before = q.mass_w();
  q.on_message(address::sim(7), aggregate::push_sum_msg::share{q.epoch(), 1e12, 1});
  CHECK(q.mass_w() == before);
  CHECK(h.metrics().counter(aid, "share_not_member") == 1);
  REQUIRE_FALSE(h.get<hpv>(0, hpv::default_id).neighbours().empty());
  q.on_message(h.get<hpv>(0, hpv::default_id).neighbours().front(), aggregate::push_sum_msg::share{q.epoch(), 0, 1});
  CHECK(q.mass_w() == before + 1);
}

}  // namespace test_aggregate
