#pragma once
// A workload and the safety / liveness checks every mutex property test shares.
//
// Each node loops `rounds` times: think for a random while, lock(), hold the
// lock for a random while, unlock(). After every simulator event the harness
// counts the nodes inside the critical section: more than one is a failure
// at the exact event that caused it.
#include <doctest/doctest.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "dcp/group.hpp"
#include "dcp/mutex.hpp"
#include "dcp/sim.hpp"

namespace harness {

using namespace dcp;
using sim::simulator;

/// How many seeds each property runs: the issue asks for at least 1,000.
inline constexpr std::uint64_t seeds = 1000;

struct workload {
  std::uint32_t nodes = 4;
  int rounds = 3;
  duration think_max = 20ms, hold_max = 5ms;
  duration run_limit = 60s;
};

struct entry {
  std::uint32_t node;
  time_point at;
};

struct outcome {
  int granted = 0, errors = 0, requests = 0;
  int max_holders = 0;
  std::vector<entry> entries;  ///< critical-section entries in order
  std::vector<std::error_code> error_codes;
};

/// Runs the workload on `w` (whose nodes already host M as protocol `id`).
/// `on_enter(node)` runs at each entry (order checks read the mutex there).
template <class M>
outcome run(simulator& w, protocol_id id, const workload& load, std::function<void(std::uint32_t)> on_enter = {}) {
  auto out = std::make_shared<outcome>();
  auto left = std::make_shared<std::vector<int>>(load.nodes, load.rounds);
  auto holders = [&w, id, n = load.nodes] {
    int h = 0;
    for (std::uint32_t i = 0; i < n; ++i)
      if (auto* m = w.find<M>(i, id); m && m->holding()) ++h;
    return h;
  };
  w.after_event([out, holders] {
    const int h = holders();
    if (h > out->max_holders) out->max_holders = h;
  });
  // The loop refers to itself through a shared pointer, cleared at the end so
  // that actions still queued in the world find an empty loop, not a dangling one.
  auto next = std::make_shared<std::function<void(std::uint32_t)>>();
  auto again = [next](std::uint32_t i) {
    if (*next) (*next)(i);
  };
  *next = [&w, id, load, out, left, on_enter, again](std::uint32_t i) {
    if ((*left)[i]-- <= 0) return;
    w.after(duration(w.rng().between(0, load.think_max.count())), [&w, id, load, out, on_enter, again, i] {
      auto* m = w.find<M>(i, id);
      if (!m) return;  // crashed: this node's loop ends
      ++out->requests;
      m->lock([&w, id, load, out, on_enter, again, i](std::error_code ec) {
        if (ec) {
          ++out->errors;
          out->error_codes.push_back(ec);
          again(i);
          return;
        }
        ++out->granted;
        out->entries.push_back({i, w.now()});
        if (on_enter) on_enter(i);
        w.after(duration(w.rng().between(0, load.hold_max.count())), [&w, id, again, i] {
          if (auto* m2 = w.find<M>(i, id); m2 && m2->holding()) m2->unlock();
          again(i);
        });
      });
    });
  };
  for (std::uint32_t i = 0; i < load.nodes; ++i) again(i);
  const auto total = static_cast<int>(load.nodes) * load.rounds;
  w.run_until([&] { return out->granted + out->errors >= total; }, w.now() + load.run_limit);
  w.after_event({});
  *next = nullptr;
  return *out;
}

/// A network with random delays and reordering (and optional loss).
inline sim::config random_network(simulator* = nullptr, double loss = 0, bool fifo = false) {
  sim::config c;
  c.network.delay = sim::latency::uniform(1ms, 10ms);
  c.network.reorder = fifo ? 0 : 0.2;
  c.network.reorder_delay = 10ms;
  c.network.loss = loss;
  c.fifo = fifo;
  return c;
}

}  // namespace harness
