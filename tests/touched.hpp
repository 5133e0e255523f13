#pragma once
// A check after every simulated event on the node the event ran on: the
// shape tests/consensus/raft_harness.hpp uses for raft::check_invariants.
// Only that node's state can have changed (a message delivered to it, or
// reported unreachable to it, or its timer); a test's own action, or a
// restart, may touch any node, so then every node is checked. O(one node's
// state) per event, not O(the world's).
//
//   dcp::test::after_every_event(w, [&w](std::uint32_t i) {
//     if (auto* p = w.find<P>(i, id)) p->check_invariants();
//   });
//
// A check that wants fewer calls takes the protocol too: the one whose
// message the event delivered (or whose peer it reported unreachable), 0 when
// any of the node's protocols may have run (a timer, an action, a restart).
// A protocol whose state only its own messages and timers change can skip
// the others' messages (most of a gossip test's events are the broadcast's).
//
// It takes the simulator's on_trace and after_event hooks (a test that sets
// its own afterwards replaces it).
#include <cstdint>
#include <functional>
#include <memory>
#include <utility>

#include "dcp/sim.hpp"

namespace dcp::test {

/// Calls `check(i, protocol)` after every event for each node i the event
/// may have changed (protocol: see the header), then `every()` if given.
inline void after_every_event(sim::simulator& w, std::function<void(std::uint32_t, protocol_id)> check,
                              std::function<void()> every = {}) {
  constexpr std::uint32_t none = sim::trace_event::npos - 1, everyone = sim::trace_event::npos;
  struct touched_t {
    std::uint32_t node = none;
    protocol_id protocol = 0;
  };
  auto touched = std::make_shared<touched_t>();
  w.on_trace([touched](const sim::trace_event& e) {
    using k = sim::trace_event::kind;
    auto& t = *touched;
    auto note = [&](std::uint32_t i, protocol_id p) {
      t.protocol = t.node == none || t.protocol == p ? p : 0;
      t.node = t.node == none || t.node == i ? i : everyone;
    };
    switch (e.what) {
      case k::deliver:
      case k::unreachable:  // (no protocol: any of the node's may have sent to that peer)
        note(e.to, e.protocol);
        break;
      case k::timer:
        note(e.from, 0);
        break;
      case k::action:
      case k::restart:
        t = {everyone, 0};
        break;
      default:  // a send or a drop changes no node; a crash removes one
        break;
    }
  });
  w.after_event([&w, touched, check = std::move(check), every = std::move(every)] {
    const auto t = std::exchange(*touched, touched_t{});
    if (t.node == everyone) {
      for (std::uint32_t i = 0; i < w.size(); ++i) check(i, 0);
    } else if (t.node < w.size()) {
      check(t.node, t.protocol);
    }
    if (every) every();
  });
}

/// The same for a check of the whole node, whatever protocol ran.
inline void after_every_event(sim::simulator& w, std::function<void(std::uint32_t)> check,
                              std::function<void()> every = {}) {
  after_every_event(
      w, [check = std::move(check)](std::uint32_t i, protocol_id) { check(i); }, std::move(every));
}

}  // namespace dcp::test
