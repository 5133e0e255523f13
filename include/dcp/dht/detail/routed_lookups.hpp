#pragma once
// routed_lookups: what the origin of a route starts, and the answer that comes
// back to it, in a recursively routing DHT (dht::pastry, dht::can,
// dht::tapestry): the Router's lookup() and route() there.
//
// The origin builds a route message toward the key (origin_route,
// route_messages.hpp) and hands it to the router's own routing step (its
// handle_route: the next hop by the router's metric, or delivery when this
// node is the key's root), from which hop_forwarder.hpp carries it hop by
// hop. A lookup waits at its origin in a pending_requests table
// (pending_requests.hpp), routed again every deadline / 4 until the root's
// answer or the deadline (errc::lookup_failed); the root answers it straight
// to the origin (answer(): lookup_reply), or completes it in place when it is
// the origin itself. A routed payload (route()) is not awaited: each hop's
// acknowledgement is all the delivery it gets, as in the papers.
//
// Refused lookups (not joined, n outside 1..max_owners) fail after the call,
// as every lookup answers (lookup_refusal.hpp). Each router keeps its own
// checks of a lookup_reply (who may answer, how many owners it may name)
// and completes the lookup with complete().
//
// The route message kinds routed here have the same codes in every router:
// route_kind (route_messages.hpp), which each router's own kind enum starts
// with.
//
// Bounded by its owner: a lookup is opened only by a local call, and lives
// at most its deadline.
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "dcp/core/bytes.hpp"
#include "dcp/core/counter_set.hpp"
#include "dcp/core/env.hpp"
#include "dcp/core/node_id.hpp"
#include "dcp/dht/contact.hpp"
#include "dcp/dht/detail/lookup_refusal.hpp"
#include "dcp/dht/detail/pending_requests.hpp"
#include "dcp/dht/detail/route_messages.hpp"
#include "dcp/dht/router.hpp"

namespace dcp::dht::detail {

/// What it counts under its router's id (each router joins it).
inline constexpr counter_set routed_lookups_counters{{{"route_failed", "a payload found no owner to go to"}}};

template <Env E, class Route> class routed_lookups {
 public:
  /// The router's routing step for a message starting here (its handle_route).
  using router = std::function<void(Route)>;
  using nonce_source = std::function<std::uint64_t()>;

  /// `self` is this node's contact, read at each start (the router sets it after
  /// constructing this); `fresh_nonce` draws lookup nonces a stranger cannot
  /// guess, unique among the router's nonces in flight. `retry_counter` counts
  /// the resends of a lookup, "lookup_failed" its deadline.
  routed_lookups(E env, const contact& self, duration deadline, std::string_view retry_counter, std::size_t max_owners,
                 nonce_source fresh_nonce, router route_here)
      : env_(env),
        self_(&self),
        max_owners_(max_owners),
        fresh_nonce_(std::move(fresh_nonce)),
        route_here_(std::move(route_here)),
        pending_(std::move(env), deadline, deadline / 4, "lookup_failed", retry_counter) {}
  routed_lookups(const routed_lookups&) = delete;
  routed_lookups& operator=(const routed_lookups&) = delete;

  /// The Router's lookup(), for a node `joined` or not: cb gets the root's
  /// owners (at most n), or the error, always after this call has returned.
  void lookup(bool joined, const node_id& key, std::size_t n, lookup_callback cb) {
    if (refuse_lookup(env_, joined, n, max_owners_, cb)) return;
    // the root itself (a lone node) knows the answer at once: pending_requests still
    // answers after the call. Hops are acknowledged, the root's reply is not: it resends.
    pending_.open(fresh_nonce_(), std::move(cb),
                  [this, key, wanted = static_cast<std::uint16_t>(n)](std::uint64_t nonce) {
                    auto m = origin_route<Route>(static_cast<std::uint8_t>(route_kind::lookup), key, *self_, nonce);
                    m.n = wanted;
                    route_here_(std::move(m));
                  });
  }

  /// The Router's route(): `payload` toward the key's root, whose on_deliver gets
  /// it; counted "route_failed" when this node is not joined.
  void route(bool joined, const node_id& key, bytes payload) {
    if (!joined) return env_.count("route_failed");
    auto m = origin_route<Route>(static_cast<std::uint8_t>(route_kind::app), key, *self_);
    m.payload = std::move(payload);
    route_here_(std::move(m));
  }

  /// The root's answer to lookup `m`: its `owners`, completed here when this
  /// node is the lookup's origin, else sent straight to the origin.
  void answer(const Route& m, std::vector<contact> owners) {
    if (m.origin.addr == self_->addr) return (void)complete(m.nonce, lookup_result{std::move(owners), m.hops});
    env_.send(m.origin.addr, lookup_reply{m.nonce, m.hops, std::move(owners)});
  }

  bool contains(std::uint64_t nonce) const { return pending_.contains(nonce); }
  /// Completes lookup `nonce` with `r`: false when none is in flight.
  bool complete(std::uint64_t nonce, lookup_result r) { return pending_.complete(nonce, {}, std::move(r)); }
  /// Fails every lookup in flight with `ec` (the node left, or lost the overlay).
  void fail_all(std::error_code ec) { pending_.fail_all(ec); }
  /// Stops every lookup's deadline and resends, leaving them in flight.
  void cancel_timers() { pending_.cancel_timers(); }

 private:
  E env_;
  const contact* self_;
  std::size_t max_owners_;
  nonce_source fresh_nonce_;
  router route_here_;
  pending_requests<E, lookup_result> pending_;
};

}  // namespace dcp::dht::detail
