#pragma once
// The Router concept: what a DHT overlay offers the layers above it.
//
// dht::chord, dht::pastry and dht::kademlia all model it, so dht::store (and a
// user's own service) runs over any of them:
//
//   r.self()                   this node's contact (id, address)
//   r.bootstrap(contacts)      join through any of `contacts`, retrying with
//                              backoff while none answers; an empty list
//                              founds a new overlay
//   r.joined()                 true once the node is part of the overlay
//   r.lookup(key, n, cb)       finds the n nodes responsible for `key`, the
//                              owner first, by asking the overlay; cb gets a
//                              dcp::result<lookup_result>: the nodes, or the
//                              error (not_joined, bad_argument, lookup_failed),
//                              always after lookup() has returned
//   r.route(key, payload)      delivers `payload` at the key's owner, whose
//                              on_deliver callback receives it
//   r.closest(key, n)          the n nodes this node knows that are closest to
//                              `key` in the overlay's own metric (self included)
//   r.on_deliver(fn)           the handler for routed payloads
//   r.leave()                  departs gracefully, telling its neighbours
//   R::distance(key, id)       the overlay's metric: the owner of a key is the
//                              node at the smallest distance from it
//
// "Responsible" is each overlay's own notion: Chord's successors of the key,
// Pastry's numerically closest ids, Kademlia's closest ids by XOR. lookup()
// and closest() return nodes in that order, so the first r of either are the
// key's r replicas.
#include <concepts>
#include <cstddef>
#include <functional>
#include <system_error>
#include <vector>

#include "dcp/core/bytes.hpp"
#include "dcp/core/node_id.hpp"
#include "dcp/core/result.hpp"
#include "dcp/dht/contact.hpp"

namespace dcp::dht {

namespace testing {
struct global_view;  // tests/dht/global_view.hpp: fills routers' state from a global view, for tests only
}

struct lookup_result {
  std::vector<contact> owners;  ///< the responsible nodes, owner first
  /// Overlay hops a message takes from the origin to reach the owner: Pastry's
  /// forwards; Chord's queries plus the step from the key's predecessor to the
  /// owner; Kademlia's rounds until the owner was known plus the request to it.
  /// Zero when the origin owns the key.
  unsigned hops = 0;
};

using lookup_callback = std::function<void(result<lookup_result>)>;
/// A routed payload arriving at the key's owner: (key, origin, payload).
using deliver_callback = std::function<void(const node_id&, const contact&, bytes)>;

template <class R>
concept Router = requires(R& r, const R& cr, const node_id& key, std::size_t n, const std::vector<contact>& seeds,
                          lookup_callback cb, bytes payload, deliver_callback d) {
  { cr.self() } -> std::convertible_to<contact>;
  { cr.joined() } -> std::same_as<bool>;
  r.bootstrap(seeds);
  r.lookup(key, n, std::move(cb));
  r.route(key, std::move(payload));
  { cr.closest(key, n) } -> std::same_as<std::vector<contact>>;
  r.on_deliver(std::move(d));
  r.leave();
  { R::distance(key, key) } -> std::same_as<node_id>;
};

/// Checks R and says in one sentence what a Router must offer.
template <class R> constexpr void check_router() {
  static_assert(
      Router<R>,
      "dcp::dht: a Router needs self(), joined(), bootstrap(std::vector<contact>), "
      "lookup(node_id, size_t, lookup_callback), route(node_id, bytes), closest(node_id, size_t) -> "
      "std::vector<contact>, on_deliver(deliver_callback), leave() and static distance(node_id key, node_id id) -> node_id; see dcp/dht/router.hpp");
}

}  // namespace dcp::dht
