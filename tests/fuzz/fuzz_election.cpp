// libFuzzer target: the election chapter's message sets. Byte 0 picks the
// bully algorithm, Chang-Roberts on a ring or the echo (wave) election on a
// small graph, over four nodes; the steps of fuzz_support.hpp forge
// elections, answers, coordinator announcements, probes, ring messages and
// waves (absurd rounds and scores, candidates that are strangers) from
// members and strangers, interleaved with time, crashes, restarts and new
// elections.
//
// Checked after every step, while no forged message claimed a member's
// address (docs/security.md: a lying member can win any election): every
// node's leader, if it knows one, is a member, never a stranger. Always:
// memory, the heap may rise by at most 4 MiB + 64 bytes per input byte
// while an input runs.
#include <cstddef>
#include <cstdint>

#include "dcp/election.hpp"
#include "dcp/group.hpp"
#include "dcp/sim.hpp"
#include "fuzz_support.hpp"

namespace {
using namespace dcp;
using E = sim::env;
constexpr std::uint32_t n = 4;

template <class P, class Setup>
void run(fuzz::input& in, Setup&& setup) {
  sim::config sc;
  sc.network.delay = sim::latency::uniform(std::chrono::milliseconds(1), std::chrono::milliseconds(10));
  sim::simulator w(1, sc);
  w.add_nodes(n, setup);
  w.run_for(std::chrono::milliseconds(200));
  fuzz::cluster_shape shape;
  shape.members = shape.receivers = n;
  fuzz::drive<P>(
      in, w, P::default_id, shape, [&](fuzz::hints& h) { h.numbers = {1, 2, 3, 4}; },
      [&](std::uint8_t b) {
        const std::uint32_t i = b % n;
        if (b & 0x40) {
          if (w.is_up(i) && i != 0) w.crash(i);
          else if (!w.is_up(i)) w.restart(i);
        } else if (auto* p = w.find<P>(i, P::default_id)) {
          p->start_election();
        }
      },
      [&](bool forged_member) {
        if (forged_member) return;
        for (std::uint32_t i = 0; i < n; ++i)
          if (auto* p = w.find<P>(i, P::default_id))
            if (auto l = p->leader(); l && !(l->is_sim() && l->sim_index() < n)) fuzz::fail("election: a stranger leads");
      });
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  fuzz::memory_bound bound(4u << 20, 64, size);
  fuzz::input in(data, size);
  switch (in.byte() % 3) {
    case 0: {
      using P = election::bully<E>;
      run<P>(in, [](sim::node_context& c) { c.add<P>(P::default_id, group::static_group::sim(n)); });
      break;
    }
    case 1: {
      using P = election::chang_roberts<E>;
      run<P>(in, [](sim::node_context& c) { c.add<P>(P::default_id, group::static_group::sim(n)); });
      break;
    }
    default: {
      using P = election::echo<E>;
      run<P>(in, [](sim::node_context& c) {  // a ring with one chord: 0-1-2-3-0, 0-2
        election::echo_config cfg;
        const auto i = c.index();
        cfg.neighbours = {address::sim((i + 1) % n), address::sim((i + n - 1) % n)};
        if (i % 2 == 0) cfg.neighbours.push_back(address::sim((i + 2) % n));
        cfg.score = i % 3;
        c.add<P>(P::default_id, cfg);
      });
    }
  }
  return 0;
}
