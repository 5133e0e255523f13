#pragma once
// unguessable_nonce: the request ids of the recursive routers (dht::pastry,
// dht::can, dht::tapestry), which a stranger cannot guess.
//
// A lookup's reply comes from a root the origin cannot name in advance, so the
// nonce alone matches it (pending_requests.hpp): a sequential one would let
// anyone answer every lookup in flight by counting. Hop and join nonces are
// drawn the same way. Drawn from the Env's generator: unpredictable to a
// blind attacker, not to one that reads the traffic (see docs/security.md).
#include <cstdint>

#include "dcp/core/env.hpp"

namespace dcp::dht::detail {

/// A nonzero random nonce for which `in_use(nonce)` is false (the router's
/// nonces in flight).
template <Env E, class InUse> std::uint64_t unguessable_nonce(E& env, InUse&& in_use) {
  std::uint64_t n = 0;
  while (n == 0 || in_use(n)) n = env.rng()();
  return n;
}

}  // namespace dcp::dht::detail
