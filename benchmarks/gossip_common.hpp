#pragma once
// Shared by the membership, gossip, aggregation and search benchmarks:
// arguments, timing, heap size, and overlays built in the simulator.
#include <malloc.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>

#include "dcp/aggregate.hpp"
#include "dcp/gossip.hpp"
#include "dcp/membership.hpp"
#include "dcp/search.hpp"
#include "dcp/sim.hpp"

namespace bench {

struct args {
  bool quick = false;
  std::string csv;
  std::uint64_t seed = 1;
  static args parse(int argc, char** argv, const char* default_csv) {
    args a;
    a.csv = default_csv;
    for (int i = 1; i < argc; ++i) {
      if (!std::strcmp(argv[i], "--quick"))
        a.quick = true;
      else if (!std::strcmp(argv[i], "--csv") && i + 1 < argc)
        a.csv = argv[++i];
      else if (!std::strcmp(argv[i], "--seed") && i + 1 < argc)
        a.seed = std::stoull(argv[++i]);
      else {
        std::fprintf(stderr, "usage: %s [--quick] [--csv FILE] [--seed N]\n", argv[0]);
        std::exit(2);
      }
    }
    return a;
  }
};

inline double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}
inline std::size_t heap_bytes() { return mallinfo2().uordblks; }

/// The network of every benchmark: 1-20 ms links, no faults unless asked.
inline dcp::sim::config network(double loss = 0) {
  dcp::sim::config c;
  c.network.delay = dcp::sim::latency::uniform(std::chrono::milliseconds(1), std::chrono::milliseconds(20));
  c.network.loss = loss;
  return c;
}

/// Adds n nodes, node i joining at i * gap through a random earlier node;
/// `host(ctx, contact)` adds the node's protocols.
template <class Host> void join_all(dcp::sim::simulator& w, std::uint32_t n, dcp::duration gap, Host host) {
  for (std::uint32_t i = 0; i < n; ++i) {
    const dcp::address contact = i ? dcp::address::sim(static_cast<std::uint32_t>(w.rng().below(i))) : dcp::address{};
    w.add_node([host, contact](dcp::sim::node_context& c) { host(c, contact); });
    w.run_for(gap);
    if (n >= 10000 && i % 2000 == 1999) std::fprintf(stderr, "  joined %u/%u\r", i + 1, n);
  }
}

}  // namespace bench
