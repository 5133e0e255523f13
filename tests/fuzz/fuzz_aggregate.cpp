// libFuzzer target: the aggregation chapter's message sets. Four nodes on a
// small graph (a ring 0-1-2-3-0 with the chord 0-2) each host a static
// membership of their neighbours, random_walk_traffic, two Push-Sums and
// high_risk_edges; byte 0 picks which protocol receives the forged
// messages: Push-Sum shares (NaN, infinite, DBL_MAX, negative weights,
// epochs far ahead), walkers (endless TTLs, replayed visits) or
// high_risk_edges' seeds, queries and answers, from neighbours and
// strangers, interleaved with time, crashes, restarts and begin().
//
// Checked after every step: every Push-Sum's mass s and w is finite, w is
// never negative, and an estimate, when there is one, is finite; every
// sample of high_risk_edges is finite; both cores' own invariants
// (check_invariants: bounded tables, a node is high exactly when its traffic
// exceeds its own threshold). Always: memory, the heap may rise by at most
// 4 MiB + 64 bytes per input byte while an input runs.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <memory>

#include "dcp/aggregate.hpp"
#include "dcp/membership.hpp"
#include "dcp/sim.hpp"
#include "fuzz_support.hpp"

namespace {
using namespace dcp;
using E = sim::env;
using overlay = membership::static_group<E>;
using ps_t = aggregate::push_sum<E, overlay>;
using walk_t = aggregate::random_walk_traffic<E, overlay>;
using hre_t = aggregate::high_risk_edges<E, overlay>;
constexpr std::uint32_t n = 4;
constexpr protocol_id mid = 10, pid = ps_t::default_id, wid = walk_t::default_id, hid = hre_t::default_id, pid2 = 33;

template <class P> void run(fuzz::input& in, protocol_id target) {
  sim::config sc;
  sc.network.delay = sim::latency::uniform(std::chrono::milliseconds(1), std::chrono::milliseconds(10));
  sim::simulator w(1, sc);
  auto g = std::make_shared<sim::topology>(n);
  for (std::uint32_t i = 0; i < n; ++i) g->connect(i, (i + 1) % n);
  g->connect(0, 2);
  w.add_nodes(n, [g](sim::node_context& c) {
    auto& m = c.add<overlay>(mid, membership::static_group_config::of(g->neighbours_of(c.index())));
    aggregate::random_walk_traffic_config wc;
    wc.walker_ttl = 50;
    wc.hop_delay = std::chrono::milliseconds(20);
    wc.max_held = 64;
    wc.seen_capacity = 256;
    auto& walk = c.add<walk_t>(wid, m, wc);
    aggregate::push_sum_config pc;
    pc.period = std::chrono::milliseconds(100);
    pc.stable_rounds = 2;
    auto& mean = c.add<ps_t>(pid, m, pc);
    auto& square = c.add<ps_t>(pid2, m, pc);
    aggregate::high_risk_edges_config hc;
    hc.iterations = 3;
    hc.period = pc.period;
    hc.rule = c.index() % 2 ? aggregate::threshold_rule::traffic_distribution
                            : aggregate::threshold_rule::iteration_estimates;
    hc.stall_rounds = 10;
    hc.final_rounds = 20;
    hc.linger_rounds = 5;
    c.add<hre_t>(hid, m, mean, walk, hc, &square);
  });
  w.run_for(std::chrono::milliseconds(300));
  fuzz::cluster_shape shape;
  shape.members = shape.receivers = n;
  fuzz::drive<P>(
      in, w, target, shape,
      [&](fuzz::hints& h) {
        h.numbers = {0, 1, 2, 3};
        if (auto* p = w.find<hre_t>(0, hid)) h.numbers.push_back(p->epoch());
      },
      [&](std::uint8_t b) {
        const std::uint32_t i = b % n;
        if (b & 0x40) {
          if (w.is_up(i))
            w.crash(i);
          else
            w.restart(i);
        } else if (auto* p = w.find<hre_t>(i, hid)) {
          p->begin();
        }
      },
      [&](bool) {
        for (std::uint32_t i = 0; i < n; ++i) {
          if (!w.is_up(i)) continue;
          for (auto id : {pid, pid2}) {
            const auto& p = *w.find<ps_t>(i, id);
            if (!std::isfinite(p.mass_s()) || !std::isfinite(p.mass_w()) || p.mass_w() < 0)
              fuzz::fail("push_sum: mass not finite, or a negative weight");
            if (auto e = p.estimate(); e && !std::isfinite(*e)) fuzz::fail("push_sum: an estimate that is not finite");
          }
          const auto& h = *w.find<hre_t>(i, hid);
          for (double s : h.samples())
            if (!std::isfinite(s)) fuzz::fail("high_risk_edges: a sample that is not finite");
          h.check_invariants();
          w.find<walk_t>(i, wid)->check_invariants();
        }
      });
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  fuzz::memory_bound bound(4u << 20, 64, size);
  fuzz::input in(data, size);
  switch (in.byte() % 3) {
    case 0:
      run<ps_t>(in, pid);
      break;
    case 1:
      run<walk_t>(in, wid);
      break;
    default:
      run<hre_t>(in, hid);
  }
  return 0;
}
