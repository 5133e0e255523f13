#pragma once
// The overlay the delegation examples' nodes join: HyParView for membership,
// Kademlia for finding a shard's coordinators, fed by HyParView
// (dht::take_contacts_from), so a client needs one address, the origin's,
// to join both. delegation_origin --entry founds it; delegation_clients join.
#include <chrono>
#include <optional>

#include "dcp/core/address.hpp"
#include "dcp/dht/kademlia.hpp"
#include "dcp/dht/membership_contacts.hpp"
#include "dcp/membership/hyparview.hpp"

namespace overlay {

template <class E> struct parts {
  dcp::membership::hyparview<E>* membership = nullptr;
  dcp::dht::kademlia<E>* router = nullptr;
};

/// Adds both to `node` (membership first: it outlives the router's
/// subscriptions). Without a contact the node founds the overlay: its router
/// must then be bootstrapped alone, after the node starts (found()).
template <class E, class Node> parts<E> add(Node& node, std::optional<dcp::address> contact) {
  using namespace std::chrono_literals;
  dcp::membership::hyparview_config hc;
  if (contact) hc.contact = *contact;
  // k = 8 (BitTorrent's): joins and bucket refreshes reach a few dozen of
  // 200 nodes, not all of them (each contact is a TCP connection here).
  dcp::dht::kademlia_config kc;
  kc.k = 8;
  kc.rpc_timeout = 1s;
  kc.refresh_interval = 30s;
  parts<E> p;
  p.membership = &node.template add<dcp::membership::hyparview<E>>(dcp::membership::hyparview<E>::default_id, hc);
  p.router = &node.template add<dcp::dht::kademlia<E>>(dcp::dht::kademlia<E>::default_id, kc);
  dcp::dht::take_contacts_from(*p.membership, *p.router);
  return p;
}

/// The founder's router starts the DHT alone (its membership has no contact).
template <class E> void found(const parts<E>& p) { p.router->bootstrap({}); }

}  // namespace overlay
