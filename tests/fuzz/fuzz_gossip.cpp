// libFuzzer target: the gossip chapter's message sets. Byte 0 picks Plumtree,
// eager push or anti-entropy, each over HyParView on four nodes; the steps
// of fuzz_support.hpp forge gossip (absurd rounds and hop counts, ids near
// the ones broadcast), IHAVE announcements, GRAFTs and PRUNEs, digests (with
// long and repeated `wanted` lists, death certificates) and updates, from
// neighbours and from strangers, interleaved with time and with honest
// broadcasts.
//
// Checked after every step: Plumtree's eager and lazy peers disjoint and
// without the node itself; while no forged message claimed a member's
// address, every message broadcast by an honest node is delivered at most
// once per node (a stranger's copy must not deliver it again);
// and memory, the bound on every table (seen caches, missing sets, items,
// death certificates, answer budgets): the heap may rise by at most 4 MiB +
// 64 bytes per input byte while an input runs.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <map>
#include <set>

#include "dcp/gossip.hpp"
#include "dcp/membership.hpp"
#include "dcp/sim.hpp"
#include "fuzz_support.hpp"

namespace {
using namespace dcp;
using E = sim::env;
using hpv = membership::hyparview<E>;
constexpr std::uint32_t n = 4;

template <class B, class Config> void run(fuzz::input& in, Config cfg) {
  sim::config sc;
  sc.network.delay = sim::latency::uniform(std::chrono::milliseconds(1), std::chrono::milliseconds(10));
  sim::simulator w(1, sc);
  std::vector<std::map<std::uint64_t, int>> delivered(n);
  std::set<std::uint64_t> honest;
  w.add_nodes(n, [&](sim::node_context& c) {
    membership::hyparview_config k;
    k.active_size = 3;
    k.passive_size = 6;
    if (c.index() != 0) k.contact = address::sim(0);
    auto& m = c.add<hpv>(hpv::default_id, k);
    auto& b = c.add<B>(B::default_id, m, cfg);
    if constexpr (requires { b.on_deliver([](const gossip::delivery&) {}); })
      b.on_deliver([&delivered, i = c.index()](const gossip::delivery& d) { ++delivered[i][d.id]; });
  });
  w.run_for(std::chrono::milliseconds(1000));
  auto node = [&](std::uint32_t i) { return w.find<B>(i, B::default_id); };
  fuzz::cluster_shape shape;
  shape.members = shape.receivers = n;
  fuzz::drive<B>(
      in, w, B::default_id, shape,
      [&](fuzz::hints& h) {
        h.numbers.assign(honest.begin(), honest.end());
        h.numbers.insert(h.numbers.end(), {1, 2, 3, 4});
      },
      [&](std::uint8_t b) {
        if (auto* p = node(b % n)) honest.insert(p->broadcast(bytes(1 + b % 32, b)));
      },
      [&](bool forged_member) {
        for (std::uint32_t i = 0; i < n; ++i) {
          if constexpr (requires(B & p) { p.eager_peers(); }) {
            const B& p = *node(i);
            for (const auto& a : p.eager_peers()) {
              if (a == address::sim(i)) fuzz::fail("plumtree: the node is its own eager peer");
              if (std::count(p.lazy_peers().begin(), p.lazy_peers().end(), a))
                fuzz::fail("plumtree: a peer both eager and lazy");
            }
          }
          if (forged_member)
            continue;  // a member's forged copy after its id left a bounded seen cache may deliver again
          for (auto id : honest)
            if (auto it = delivered[i].find(id); it != delivered[i].end() && it->second > 1)
              fuzz::fail("gossip: an honest broadcast delivered twice at one node");
        }
      });
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  fuzz::memory_bound bound(4u << 20, 64, size);
  fuzz::input in(data, size);
  switch (in.byte() % 3) {
    case 0: {
      gossip::plumtree_config cfg;
      cfg.seen_capacity = 256;
      cfg.payload_capacity = 64;
      cfg.max_missing = 64;
      run<gossip::plumtree<E, hpv>>(in, cfg);
      break;
    }
    case 1: {
      gossip::eager_push_config cfg;
      cfg.seen_capacity = 256;
      run<gossip::eager_push<E, hpv>>(in, cfg);
      break;
    }
    default: {
      gossip::anti_entropy_config cfg;
      cfg.max_items = 64;
      run<gossip::anti_entropy<E, hpv>>(in, cfg);
    }
  }
  return 0;
}
