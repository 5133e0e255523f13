#pragma once
// hop_forwarder: acknowledged hop-by-hop forwarding, the transport of the
// recursive routers dht::pastry, dht::can and dht::tapestry.
//
// Each node on a route passes the message to its next hop and waits for that
// hop's acknowledgement: Pastry's per-hop timeouts (Rowstron, Druschel 2001,
// §2.4), CAN's routing around failed neighbours (§2.1), Tapestry's resend then
// detour (§3.2). The forwarder keeps the hops in flight in a peer_requests
// table (peer_requests.hpp, where every router keeps what it awaits), keyed by
// a fresh hop nonce the route message carries (Route::hop, echoed by the
// route_ack), and stamps the message with this node as its sender. An acknowledgement counts
// only from the node the hop was sent to. A hop not acknowledged within
// `ack_timeout` goes to the router's timeout handler (counted as
// `timeout_counter`, "hop_timeouts" unless the router names another), which
// decides what the router's paper says: send it again to the same node
// (send() with attempts + 1), mark the node suspect or failed, or route around
// it (its address added to `excluded`, which next-hop selection skips).
//
// Every message a node forwards costs one entry until acked or timed out, so
// the table is bounded (max_pending): beyond it a message is dropped and
// counted ("hops_full"), and the origin's resend (pending_requests.hpp) or
// the routed payload's own retry carries on.
//
// `Note` is what a router remembers of a hop beyond the message (Tapestry: the
// level the message had at this node, from which a detour resumes; for its
// insertion multicast, the slot's entries still to try). Any message with the
// fields `hop` and `sender` can travel this way: Tapestry's multicast does.
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "dcp/core/env.hpp"
#include "dcp/dht/contact.hpp"
#include "dcp/dht/detail/peer_requests.hpp"

namespace dcp::dht::detail {

/// What hop_forwarder counts, under its host protocol's id (each router joins
/// it): "hop_timeouts" unless the router names its own, which it declares.
inline constexpr counter_set hop_forwarder_counters{{"hops_full", "hop_timeouts"}};

template <Env E, class Route, class Note = std::monostate> class hop_forwarder {
 public:
  struct pending {
    Route msg;
    contact next;
    std::vector<address> excluded;  // nodes this message is routed around from here
    unsigned attempts = 1;          // sends to `next` so far
    Note note{};
    time_point sent{};
  };
  using timeout_handler = std::function<void(pending)>;
  using nonce_source = std::function<std::uint64_t()>;

  /// `self` is this node's contact, read at each send (the router sets it after
  /// constructing the forwarder); `fresh_nonce` draws hop nonces unique among
  /// all the router's nonces in flight.
  hop_forwarder(E env, const contact& self, duration ack_timeout, std::size_t max_pending, nonce_source fresh_nonce,
                std::string_view timeout_counter = "hop_timeouts")
      : env_(std::move(env)),
        self_(&self),
        max_pending_(max_pending),
        fresh_nonce_(std::move(fresh_nonce)),
        hops_(env_, ack_timeout, timeout_counter) {
    hops_.on_timeout([this](std::uint64_t, typename table::request r) {
      if (on_timeout_) on_timeout_(std::move(r.note));
    });
  }
  hop_forwarder(const hop_forwarder&) = delete;
  hop_forwarder& operator=(const hop_forwarder&) = delete;

  /// What to do with a hop not acknowledged in time; it has left the table.
  void on_timeout(timeout_handler h) { on_timeout_ = std::move(h); }

  bool contains(std::uint64_t hop) const { return hops_.contains(hop); }
  std::size_t size() const noexcept { return hops_.size(); }

  /// Sends `m` to `next` as a new hop and waits for its acknowledgement.
  void send(Route m, const contact& next, std::vector<address> excluded, unsigned attempts = 1, Note note = {}) {
    if (hops_.size() >= max_pending_) return env_.count("hops_full");
    m.hop = fresh_nonce_();
    m.sender = *self_;
    const std::uint64_t hop = m.hop;
    env_.send(next.addr, m);
    hops_.await(hop, next.addr,
                pending{std::move(m), next, std::move(excluded), attempts, std::move(note), env_.now()});
  }

  /// A route_ack from `from` for `hop`: true when it ends a hop in flight to that node.
  bool acknowledge(const address& from, std::uint64_t hop) { return hops_.answer(from, hop).has_value(); }

  /// Takes out every hop waiting for `peer` (the transport gave up on it) and
  /// hands each, one at a time, to `f` without waiting for its timeout.
  template <class F> void abandon(const address& peer, F&& f) {
    hops_.abandon(peer, [&](std::uint64_t, typename table::request r) { f(std::move(r.note)); });
  }

  /// Forgets every hop in flight (the node stopped).
  void clear() { hops_.clear(); }

 private:
  using table = peer_requests<E, pending>;

  E env_;
  const contact* self_;
  std::size_t max_pending_;
  nonce_source fresh_nonce_;
  timeout_handler on_timeout_;
  table hops_;
};

}  // namespace dcp::dht::detail
