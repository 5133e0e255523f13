// libFuzzer target: the election chapter's message sets. Byte 0 picks the
// bully algorithm, Chang-Roberts on a ring, the echo (wave) election on a
// small graph, superpeer selection by repulsion tokens, or the Vivaldi
// coordinates it runs on (dcp/coordinates), over four nodes; the steps of fuzz_support.hpp forge
// elections, answers, coordinator announcements, probes, ring messages and
// waves (absurd rounds and scores, candidates that are strangers) from
// members and strangers, interleaved with time, crashes, restarts and new
// elections.
//
// Checked after every step, while no forged message claimed a member's
// address (docs/security.md: a lying member can win any election): every
// node's leader, if it knows one, is a member, never a stranger; no
// superpeer token is active at two nodes. Always: each node's own
// invariants (check_invariants: bounded tables, the cap, finite coordinates);
// memory, the heap may rise by at most 4 MiB + 64 bytes per input byte
// while an input runs.
#include <cstddef>
#include <cstdint>

#include "dcp/coordinates.hpp"
#include "dcp/election.hpp"
#include "dcp/membership/static_group.hpp"
#include "dcp/group.hpp"
#include "dcp/sim.hpp"
#include "fuzz_support.hpp"

namespace {
using namespace dcp;
using E = sim::env;
constexpr std::uint32_t n = 4;

template <class P, class Setup> void run(fuzz::input& in, Setup&& setup) {
  sim::config sc;
  sc.network.delay = sim::latency::uniform(std::chrono::milliseconds(1), std::chrono::milliseconds(10));
  sim::simulator w(1, sc);
  w.add_nodes(n, setup);
  w.run_for(std::chrono::milliseconds(200));
  fuzz::cluster_shape shape;
  shape.members = shape.receivers = n;
  fuzz::drive<P>(
      in, w, P::default_id, shape,
      [&](fuzz::hints& h) {
        h.numbers = {1, 2, 3, 4};
      },
      [&](std::uint8_t b) {
        const std::uint32_t i = b % n;
        if (b & 0x40) {
          if (w.is_up(i) && i != 0)
            w.crash(i);
          else if (!w.is_up(i))
            w.restart(i);
        } else if (auto* p = w.find<P>(i, P::default_id)) {
          p->start_election();
        }
      },
      [&](bool forged_member) {
        if (forged_member) return;
        for (std::uint32_t i = 0; i < n; ++i)
          if (auto* p = w.find<P>(i, P::default_id))
            if (auto l = p->leader(); l && !(l->is_sim() && l->sim_index() < n))
              fuzz::fail("election: a stranger leads");
      });
}

using group_t = membership::static_group<E>;
using viv = coordinates::vivaldi<E, group_t>;
using repulsion = election::superpeer_repulsion<E, group_t>;

/// Superpeer tokens (P = repulsion) or the coordinates under them (P = viv), on four nodes in a static group.
template <class P> void run_superpeer(fuzz::input& in) {
  sim::config sc;
  sc.network.delay = sim::latency::uniform(std::chrono::milliseconds(1), std::chrono::milliseconds(30));
  sim::simulator w(1, sc);
  const auto members =
      membership::static_group_config::of({address::sim(0), address::sim(1), address::sim(2), address::sim(3)});
  election::superpeer_repulsion_config rc;
  rc.initial_holders = {address::sim(0), address::sim(2)};
  rc.round = std::chrono::milliseconds(100);
  rc.retry = std::chrono::milliseconds(50);
  rc.refresh = std::chrono::milliseconds(200);
  rc.lease = std::chrono::milliseconds(600);
  rc.attach_timeout = std::chrono::milliseconds(100);
  rc.holder_timeout = std::chrono::seconds(2);
  rc.warmup_rounds = 1;
  rc.cap = 2;
  coordinates::vivaldi_config vc;
  vc.period = std::chrono::milliseconds(50);
  w.add_nodes(n, [&](sim::node_context& c) {
    auto& g = c.add<group_t>(group_t::default_id, members);
    auto& v = c.add<viv>(viv::default_id, g, vc);
    c.add<repulsion>(repulsion::default_id, g, v, rc);
  });
  w.run_for(std::chrono::milliseconds(300));
  fuzz::cluster_shape shape;
  shape.members = shape.receivers = n;
  fuzz::drive<P>(
      in, w, P::default_id, shape,
      [&](fuzz::hints& h) {
        h.numbers = {0, 1, 2, 1ull << 32};
      },
      [&](std::uint8_t b) {
        const std::uint32_t i = b % n;
        if (w.is_up(i) && i != 0)
          w.crash(i);
        else if (!w.is_up(i))
          w.restart(i);
      },
      [&](bool forged_member) {
        int holders[2] = {0, 0};
        for (std::uint32_t i = 0; i < n; ++i) {
          if (auto* v = w.find<viv>(i, viv::default_id)) v->check_invariants();
          if (auto* p = w.find<repulsion>(i, repulsion::default_id)) {
            p->check_invariants();
            for (const auto& t : p->tokens())
              if (t.active && t.id < 2) ++holders[t.id];
          }
        }
        if (!forged_member && (holders[0] > 1 || holders[1] > 1)) fuzz::fail("superpeer: a token active at two nodes");
      });
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  fuzz::memory_bound bound(4u << 20, 64, size);
  fuzz::input in(data, size);
  switch (in.byte() % 5) {
    case 3:
      run_superpeer<repulsion>(in);
      break;
    case 4:
      run_superpeer<viv>(in);
      break;
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
