#pragma once
// payload_delivery: a routed payload's last step, at the key's owner (every
// router: dht::chord, dht::pastry, dht::kademlia, dht::can, dht::tapestry).
//
// The Router's route(key, payload) ends at the node that owns the key, whose
// on_deliver handler gets (key, origin, payload), each delivery counted
// ("delivered"). The recursive routers deliver where the route message ends;
// the iterative ones (Chord, Kademlia) look the owner up first and send it
// the payload directly (route_to_owner), or deliver here when this node owns
// the key.
#include <utility>

#include "dcp/core/bytes.hpp"
#include "dcp/core/counter_set.hpp"
#include "dcp/core/env.hpp"
#include "dcp/core/node_id.hpp"
#include "dcp/dht/contact.hpp"
#include "dcp/dht/router.hpp"

namespace dcp::dht::detail {

/// What it counts under its router's id (each router joins it).
inline constexpr counter_set payload_delivery_counters{{{"delivered", "a routed payload reached its owner, this node"},
                                                        {"route_failed", "a payload found no owner to go to"}}};

template <Env E> class payload_delivery {
 public:
  explicit payload_delivery(E env) : env_(std::move(env)) {}

  /// The handler of the payloads delivered here (Router::on_deliver).
  void on_deliver(deliver_callback f) { on_deliver_ = std::move(f); }

  /// A payload that reached its key's owner, this node.
  void deliver(const node_id& key, const contact& origin, bytes payload) {
    env_.count("delivered");
    if (on_deliver_) on_deliver_(key, origin, std::move(payload));
  }

 private:
  E env_;
  deliver_callback on_deliver_;
};

/// An iterative router's route(): a lookup of the key's owner (`r.lookup`),
/// then the payload straight to it as a `Deliver{key, origin, payload}`
/// message, or to `here` when this node owns the key; "route_failed" when the
/// lookup fails. The router must outlive its lookups (it fails them when it
/// stops).
template <class Deliver, class Router, Env E>
void route_to_owner(Router& r, E& env, payload_delivery<E>& here, const node_id& key, bytes payload) {
  r.lookup(key, 1, [&r, &env, &here, key, p = std::move(payload)](result<lookup_result> found) mutable {
    if (!found || found->owners.empty()) return env.count("route_failed");
    const contact& owner = found->owners.front();
    if (owner.addr == r.self().addr) return here.deliver(key, r.self(), std::move(p));
    env.send(owner.addr, Deliver{key, r.self(), std::move(p)});
  });
}

}  // namespace dcp::dht::detail
