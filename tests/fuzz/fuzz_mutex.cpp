// libFuzzer target: the mutex chapter's message sets. Byte 0 picks the
// centralized lock, Ricart-Agrawala, Lamport, Suzuki-Kasami, Raymond,
// Maekawa or the token ring, on a static group of four; the steps of
// fuzz_support.hpp forge requests (absurd clocks and sequence numbers),
// replies, grants, releases, tokens (long queues, absurd counters), locked
// and failed notices from members and strangers, interleaved with time and
// with honest lock and unlock calls.
//
// Checked after every step, while no forged message claimed a member's
// address (no algorithm tolerates a lying member: docs/security.md): at most
// one node holds the lock. Always: memory, the heap may rise by at most
// 4 MiB + 64 bytes per input byte while an input runs.
#include <cstddef>
#include <cstdint>

#include "dcp/group.hpp"
#include "dcp/mutex.hpp"
#include "dcp/sim.hpp"
#include "fuzz_support.hpp"

namespace {
using namespace dcp;
using E = sim::env;
constexpr std::uint32_t n = 4;

template <class M> void run(fuzz::input& in) {
  sim::config sc;
  sc.network.delay = sim::latency::uniform(std::chrono::milliseconds(1), std::chrono::milliseconds(10));
  sim::simulator w(1, sc);
  w.add_nodes(n, [](sim::node_context& c) { c.add<M>(M::default_id, group::static_group::sim(n)); });
  w.run_for(std::chrono::milliseconds(50));
  auto node = [&](std::uint32_t i) { return w.find<M>(i, M::default_id); };
  fuzz::cluster_shape shape;
  shape.members = shape.receivers = n;
  fuzz::drive<M>(
      in, w, M::default_id, shape, [&](fuzz::hints& h) { h.numbers = {1, 2, 3, 4, 5, 8, 16}; },
      [&](std::uint8_t b) {
        auto* m = node(b % n);
        if (m->holding())
          m->unlock();
        else
          m->lock([](std::error_code) {});
      },
      [&](bool forged_member) {
        if (forged_member) return;
        int holders = 0;
        for (std::uint32_t i = 0; i < n; ++i) holders += node(i)->holding();
        if (holders > 1) fuzz::fail("mutex: two nodes hold the lock");
      });
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  fuzz::memory_bound bound(4u << 20, 64, size);
  fuzz::input in(data, size);
  switch (in.byte() % 7) {
    case 0:
      run<mutex::centralized<E>>(in);
      break;
    case 1:
      run<mutex::ricart_agrawala<E>>(in);
      break;
    case 2:
      run<mutex::lamport<E>>(in);
      break;
    case 3:
      run<mutex::suzuki_kasami<E>>(in);
      break;
    case 4:
      run<mutex::raymond<E>>(in);
      break;
    case 5:
      run<mutex::maekawa<E>>(in);
      break;
    default:
      run<mutex::token_ring<E>>(in);
  }
  return 0;
}
