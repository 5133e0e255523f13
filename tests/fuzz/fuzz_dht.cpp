// libFuzzer target: the DHT chapter's message sets. Byte 0 picks Chord,
// Kademlia, Pastry, CAN, Tapestry, or the replicated store (dht/store.hpp
// over Kademlia);
// four nodes join through node 0, then the steps of fuzz_support.hpp forge
// routing messages (lookups, replies, joins, leaf sets, rows, probes, state
// exchanges) or store messages (puts with absurd TTLs and versions, gets,
// sync offers and wants) from members and strangers, with node ids that are
// the members', a bit away from them, or arbitrary, interleaved with time in
// which the overlay stabilizes, looks up and routes, and the store syncs.
//
// Checked after every step: every table within its stated bound (Chord's
// successor list and fingers, Kademlia's buckets of k, Pastry's leaf set and
// routing table, CAN's neighbours and zones, Tapestry's table, pointers and
// backpointers, the store's max_items), and memory: the heap may rise by
// at most 8 MiB + 64 bytes per input byte while an input runs.
#include <cstddef>
#include <cstdint>

#include "dcp/dht.hpp"
#include "dcp/sim.hpp"
#include "fuzz_support.hpp"

namespace {
using namespace dcp;
using E = sim::env;
constexpr std::uint32_t n = 4;

template <class R, class Config, class Store = void>
void run(fuzz::input& in, Config cfg, dht::store_config scfg = {}) {
  sim::config sc;
  sc.network.delay = sim::latency::uniform(std::chrono::milliseconds(1), std::chrono::milliseconds(10));
  sim::simulator w(1, sc);
  w.add_nodes(n, [&](sim::node_context& c) {
    auto& r = c.add<R>(R::default_id, cfg);
    if constexpr (!std::is_void_v<Store>) c.add<Store>(Store::default_id, r, scfg);
    if (c.index() == 0)
      r.bootstrap({});
    else
      r.bootstrap({{node_id{}, address::sim(0)}});
  });
  w.run_for(std::chrono::milliseconds(1500));
  auto router = [&](std::uint32_t i) { return w.find<R>(i, R::default_id); };
  using P = std::conditional_t<std::is_void_v<Store>, R, Store>;
  if constexpr (!std::is_void_v<Store>) {
    // a few honest items, so that syncs and gets have something to answer
    for (std::uint32_t i = 0; i < n; ++i)
      w.find<Store>(i, Store::default_id)
          ->put("k" + std::to_string(i), bytes(8, 1), [](const dcp::result<std::uint64_t>&) {});
  }
  fuzz::cluster_shape shape;
  shape.members = shape.receivers = n;
  fuzz::drive<P>(
      in, w, P::default_id, shape,
      [&](fuzz::hints& h) {
        for (std::uint32_t i = 0; i < n; ++i) h.ids.push_back(router(i)->self().id);
        h.numbers = {1, 2, 3, 20, 160};
        if constexpr (!std::is_void_v<Store>) {
          const auto ns =
              std::chrono::duration_cast<std::chrono::nanoseconds>(w.local_wall_now(0).time_since_epoch()).count();
          h.numbers.push_back(static_cast<std::uint64_t>(ns));
          h.numbers.push_back(600'000'000'000ull);  // 10 min in ns
        }
      },
      [&](std::uint8_t b) {
        const node_id key = node_id::random(w.rng());
        if constexpr (!std::is_void_v<Store>) {
          auto& s = *w.find<Store>(b % n, Store::default_id);
          if (b & 0x10)
            s.get("k" + std::to_string(b / 32 % n), [](auto&&...) {});
          else
            s.put("k" + std::to_string(b / 32 % n), bytes(b % 16, b), [](const dcp::result<std::uint64_t>&) {});
        } else if (b & 0x10) {
          router(b % n)->lookup(key, 1 + b / 32 % 3, [](const dcp::result<dht::lookup_result>&) {});
        } else {
          router(b % n)->route(key, bytes(b % 16, b));
        }
      },
      [&](bool) {
        for (std::uint32_t i = 0; i < n; ++i) {
          const R& r = *router(i);
          if constexpr (std::is_same_v<R, dht::chord<E>>) {
            if (r.successors().size() > r.config().max_successors + 1)
              fuzz::fail("chord: successor list past its bound");
            if (r.distinct_fingers() > r.config().bits) fuzz::fail("chord: more fingers than bits");
          } else if constexpr (std::is_same_v<R, dht::kademlia<E>>) {
            for (int b = 0; b < static_cast<int>(node_id::bits); ++b)
              if (r.bucket(b).size() > cfg.k) fuzz::fail("kademlia: a bucket holds more than k contacts");
          } else if constexpr (std::is_same_v<R, dht::can<E>>) {
            if (r.neighbours().size() > cfg.max_neighbours) fuzz::fail("can: neighbours past max_neighbours");
            if (r.zones().size() > cfg.max_zones) fuzz::fail("can: zones past max_zones");
          } else if constexpr (std::is_same_v<R, dht::tapestry<E>>) {
            if (r.table_entries() > R::levels * R::base * cfg.entries_per_slot)
              fuzz::fail("tapestry: table past its size");
            if (r.pointer_count() > cfg.max_pointers) fuzz::fail("tapestry: pointers past max_pointers");
            if (r.backpointers().size() > cfg.max_backpointers)
              fuzz::fail("tapestry: backpointers past max_backpointers");
          } else {
            if (r.leaves().size() > 2 * cfg.max_leaf_side) fuzz::fail("pastry: leaf set past 2 x max_leaf_side");
            if (r.table_entries() > node_id::bits / cfg.b * (std::size_t{1} << cfg.b))
              fuzz::fail("pastry: routing table past its size");
          }
          if constexpr (!std::is_void_v<Store>)
            if (w.find<Store>(i, Store::default_id)->size() > scfg.max_items)
              fuzz::fail("store: more items than max_items");
        }
      });
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  fuzz::memory_bound bound(8u << 20, 64, size);
  fuzz::input in(data, size);
  switch (in.byte() % 6) {
    case 0:
      run<dht::chord<E>>(in, dht::chord_config{});
      break;
    case 1:
      run<dht::kademlia<E>>(in, dht::kademlia_config{});
      break;
    case 2:
      run<dht::pastry<E>>(in, dht::pastry_config{});
      break;
    case 3:
      run<dht::can<E>>(in, dht::can_config{});
      break;
    case 4:
      run<dht::tapestry<E>>(in, dht::tapestry_config{});
      break;
    default: {
      dht::store_config scfg;
      scfg.max_items = 32;
      run<dht::kademlia<E>, dht::kademlia_config, dht::store<E, dht::kademlia<E>>>(in, dht::kademlia_config{}, scfg);
    }
  }
  return 0;
}
