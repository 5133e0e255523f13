#pragma once
// Random register histories that are linearizable by construction, for
// testing checkers and for benchmarking them.
//
// Each operation gets an interval on its client's timeline (a client waits
// for one operation to return before calling the next) and a linearization
// point inside the interval; outputs come from running the operations in the
// order of their points through register_model. Some operations are then
// recorded as never having returned: reads and half of the writes and cas
// after taking effect, the other half without taking effect at all. Both are
// linearizable under the checker's convention for pending operations.
#include <algorithm>
#include <cstdint>
#include <numeric>
#include <vector>

#include "dcp/check/linearizability.hpp"
#include "dcp/check/models.hpp"
#include "dcp/core/rng.hpp"

namespace dcp::check {

struct random_history_config {
  std::size_t operations = 100;
  std::size_t clients = 4;
  double pending = 0.0;      ///< fraction of operations that never return
  std::int64_t spread = 20;  ///< max gap, in ticks, before call, point and return
};

inline history<register_model> random_register_history(rng& r, const random_history_config& cfg) {
  using reg = register_model;
  struct planned {
    operation<reg::input, reg::output> op;
    std::int64_t point;
    bool effect = true;
  };
  auto at = [](std::int64_t t) { return time_point(duration(t)); };
  std::vector<planned> plan;
  plan.reserve(cfg.operations);
  std::vector<std::int64_t> free_at(std::max<std::size_t>(cfg.clients, 1), 0);
  std::int64_t next_value = 1;
  for (std::size_t i = 0; i < cfg.operations; ++i) {
    const std::size_t c = r.below(free_at.size());
    const std::int64_t call = free_at[c] + r.between(0, cfg.spread);
    const std::int64_t point = call + r.between(0, cfg.spread);
    const std::int64_t ret = point + r.between(0, cfg.spread);
    free_at[c] = ret + 1;
    reg::input in;
    switch (r.below(3)) {
      case 0:
        in = reg::read();
        break;
      case 1:
        in = reg::write(next_value++);
        break;
      default: {
        const std::int64_t expected = r.between(0, next_value);
        in = reg::cas(expected, next_value++);
        break;
      }
    }
    planned p{{c, at(call), at(ret), in, reg::output{}}, point};
    if (r.chance(cfg.pending)) {
      p.op.output.reset();
      p.effect = in.kind == reg::op::read || r.chance(0.5);
    }
    plan.push_back(p);
  }
  std::vector<std::size_t> by_point(plan.size());
  std::iota(by_point.begin(), by_point.end(), std::size_t{0});
  std::stable_sort(by_point.begin(), by_point.end(), [&](auto a, auto b) { return plan[a].point < plan[b].point; });
  reg::state s = reg::init();
  for (auto i : by_point) {
    auto& p = plan[i];
    if (!p.effect) continue;
    const auto& in = p.op.input;
    if (p.op.output) {
      p.op.output->value = s;
      p.op.output->ok = in.kind != reg::op::cas || s == in.value;
    }
    s = *reg::step(s, in, std::nullopt);
  }
  history<reg> h;
  h.reserve(plan.size());
  for (auto& p : plan) h.push_back(std::move(p.op));
  return h;
}

}  // namespace dcp::check
