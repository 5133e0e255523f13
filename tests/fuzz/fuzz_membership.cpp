// libFuzzer target: the membership chapter's message sets. Byte 0 picks
// HyParView, Cyclon or SWIM; four nodes join through node 0, then the steps
// of fuzz_support.hpp forge joins, forward joins (absurd TTLs), neighbour
// requests of either priority, disconnects, shuffles and shuffle replies
// (solicited or not, long lists of members and strangers), pings, acks and
// gossip from members and strangers, interleaved with time in which the
// overlay repairs itself and shuffles.
//
// Checked after every step: every view within its stated bound, without the
// node itself and without duplicates (HyParView: active <= active_size,
// passive <= passive_size, the two disjoint; Cyclon: view <= view_size;
// SWIM: members <= max_members), and memory: the heap may rise by at most
// 4 MiB + 64 bytes per input byte while an input runs.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <set>

#include "dcp/membership.hpp"
#include "dcp/sim.hpp"
#include "fuzz_support.hpp"

namespace {
using namespace dcp;
using E = sim::env;
constexpr std::uint32_t n = 4;

void distinct_without_self(const std::vector<address>& v, const address& self, const char* what) {
  std::set<address> seen(v.begin(), v.end());
  if (seen.size() != v.size() || seen.contains(self)) fuzz::fail(what);
}

template <class P, class Config, class Check> void run(fuzz::input& in, Config cfg, Check&& check) {
  sim::config sc;
  sc.network.delay = sim::latency::uniform(std::chrono::milliseconds(1), std::chrono::milliseconds(10));
  sim::simulator w(1, sc);
  w.add_nodes(n, [&](sim::node_context& c) {
    auto k = cfg;
    if constexpr (requires { k.contact; }) {
      if (c.index() != 0) k.contact = address::sim(0);
    } else {
      if (c.index() != 0) k.seeds = {address::sim(0)};
    }
    c.add<P>(P::default_id, k);
  });
  w.run_for(std::chrono::milliseconds(1500));
  fuzz::cluster_shape shape;
  shape.members = shape.receivers = n;
  fuzz::drive<P>(
      in, w, P::default_id, shape,
      [&](fuzz::hints& h) {
        h.numbers = {1, 2, 3, 4, 5, 6, 30, 35};
        if constexpr (requires(P & p) { p.incarnation(); })
          for (std::uint32_t i = 0; i < n; ++i)
            if (const P* p = w.find<P>(i, P::default_id)) h.numbers.push_back(p->incarnation());
      },
      [&](std::uint8_t b) {
        if (b % 8 == 0)
          w.crash(1 + b / 8 % (n - 1));
        else
          for (std::uint32_t i = 1; i < n; ++i)
            if (!w.is_up(i)) w.restart(i);
      },
      [&](bool) {
        for (std::uint32_t i = 0; i < n; ++i)
          if (const P* p = w.find<P>(i, P::default_id)) check(*p, address::sim(i));
      });
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  fuzz::memory_bound bound(4u << 20, 64, size);
  fuzz::input in(data, size);
  switch (in.byte() % 3) {
    case 0: {
      membership::hyparview_config cfg;
      cfg.active_size = 3;
      cfg.passive_size = 6;
      cfg.shuffle_active = 2;
      cfg.shuffle_passive = 2;
      run<membership::hyparview<E>>(in, cfg, [&](const membership::hyparview<E>& p, const address& self) {
        const auto active = p.neighbours();
        const auto& passive = p.passive_view();
        if (active.size() > cfg.active_size) fuzz::fail("hyparview: active view past active_size");
        if (passive.size() > cfg.passive_size) fuzz::fail("hyparview: passive view past passive_size");
        distinct_without_self(active, self, "hyparview: the active view repeats a peer or holds the node itself");
        distinct_without_self(passive, self, "hyparview: the passive view repeats a peer or holds the node itself");
        for (const auto& a : active)
          if (p.is_passive(a)) fuzz::fail("hyparview: a peer in both views");
      });
      break;
    }
    case 1: {
      membership::cyclon_config cfg;
      cfg.view_size = 6;
      cfg.shuffle_length = 3;
      run<membership::cyclon<E>>(in, cfg, [&](const membership::cyclon<E>& p, const address& self) {
        const auto view = p.neighbours();
        if (view.size() > cfg.view_size) fuzz::fail("cyclon: view past view_size");
        distinct_without_self(view, self, "cyclon: the view repeats a peer or holds the node itself");
      });
      break;
    }
    default: {
      membership::swim_config cfg;
      cfg.max_members = 8;
      run<membership::swim<E>>(in, cfg, [&](const membership::swim<E>& p, const address&) {
        if (p.members().size() > cfg.max_members + 1) fuzz::fail("swim: members table past max_members");
      });
    }
  }
  return 0;
}
