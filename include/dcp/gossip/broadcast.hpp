#pragma once
// The one API every gossip broadcast offers, and the Broadcast concept.
//
//   auto id = b.broadcast(payload);   // sent on now; delivered here once the call has returned
//   b.on_deliver([](const dcp::gossip::delivery& d) { ... d.payload ... });
//
// Each message is delivered at most once per node (a message id is 64 random
// bits from the Env's rng; duplicates are suppressed by a bounded cache of
// seen ids). Whether it reaches every correct node depends on the protocol and
// the overlay: see each header.
#include <concepts>
#include <cstdint>
#include <functional>

#include "dcp/core/address.hpp"
#include "dcp/core/bytes.hpp"
#include "dcp/core/env.hpp"

namespace dcp::gossip {

using message_id = std::uint64_t;

/// One delivery, as the deliver callback sees it (valid during the call).
struct delivery {
  message_id id = 0;
  address from;            ///< the peer it came from (this node for its own broadcasts)
  std::uint32_t hops = 0;  ///< overlay hops from the origin (0 at the origin)
  byte_view payload;
};

using deliver_callback = std::function<void(const delivery&)>;

/// What deliver_own counts, under its caller's id (each broadcast protocol joins it).
inline constexpr counter_set deliver_own_counters{{"delivered"}};

/// Delivers a node's own broadcast to it once broadcast() has returned,
/// never inside the call (DESIGN §10: the caller may hold a lock or walk a
/// table the callback touches). `env` and `callback` are the protocol's own
/// members (the callback is read when the delivery runs), and the delivery
/// lives as long as the protocol's timers do.
template <Env E> void deliver_own(E& env, const deliver_callback& callback, message_id id, bytes payload) {
  env.count("delivered");
  defer(env, [&env, &callback, id, p = std::move(payload)] {
    if (callback) callback({id, env.self(), 0, p});
  });
}

template <class B>
concept Broadcast = requires(B& b, byte_view payload, deliver_callback f) {
  { b.broadcast(payload) } -> std::same_as<message_id>;
  b.on_deliver(f);
};

}  // namespace dcp::gossip
