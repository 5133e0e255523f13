#pragma once
// random_phase: when a DHT node's periodic maintenance first runs (dht::pastry,
// dht::kademlia, dht::can, dht::tapestry).
//
// Nodes that join together (a bootstrap wave, a test's whole network) would
// otherwise probe, exchange and refresh in lockstep, every period at the same
// instant: the first round falls at a random point of the first period, and
// the rounds keep that phase.
#include <cstdint>

#include "dcp/core/env.hpp"

namespace dcp::dht::detail {

/// The first round's delay, uniform in (0, period].
template <Env E> duration random_phase(E& env, duration period) {
  return duration(1 + env.rng().below(static_cast<std::uint64_t>(period.count())));
}

}  // namespace dcp::dht::detail
