#pragma once
// lookup_refusal: the lookups every DHT router refuses (dht::chord,
// dht::pastry, dht::kademlia, dht::can, dht::tapestry).
//
// A node that has not joined knows no owner (errc::not_joined); a lookup for
// no owners, or for more than the router's answer can carry, is the caller's
// mistake (errc::bad_argument). Either fails as every lookup answers: after
// lookup() has returned (dcp::defer), never inside the call.
#include <cstddef>
#include <utility>

#include "dcp/core/env.hpp"
#include "dcp/dht/error.hpp"
#include "dcp/dht/router.hpp"

namespace dcp::dht::detail {

/// True when the lookup is refused: `cb` (moved from) then gets the error after
/// the call. `max_owners`: the most owners one answer carries.
template <Env E> bool refuse_lookup(E& env, bool joined, std::size_t n, std::size_t max_owners, lookup_callback& cb) {
  if (joined && n != 0 && n <= max_owners) return false;
  const auto ec = make_error_code(joined ? errc::bad_argument : errc::not_joined);
  defer(env, [cb = std::move(cb), ec] { cb(ec); });
  return true;
}

}  // namespace dcp::dht::detail
