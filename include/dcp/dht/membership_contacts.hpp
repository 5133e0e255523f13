#pragma once
// A DHT router that takes its contacts from a membership overlay: how a node
// joins both through one address (HyParView + Kademlia, the origin as the
// entry point in dcp::delegation).
//
//   dht::take_contacts_from(hyparview, kademlia);
//   hyparview.join(origin);   // the router joins through the first neighbour
//
// The membership (HyParView, Cyclon, SWIM, a static group) finds and keeps
// neighbours; the router asks them for its place in the DHT. Each neighbour
// that comes up is introduced to the router: before it has joined, a seed to
// join through; after, a contact it pings and keeps as it keeps any sender
// (HyParView's shuffles bring random peers, so far buckets fill without a
// lookup). Each neighbour that goes down is suspected: the router probes it
// at once and drops it if it stays silent, rather than at its next periodic
// check (a neighbour also goes down when the overlay merely drops a link, so
// it is probed, never dropped on the membership's word).
//
// The membership and the router are hosted on the same node, the membership
// added first (a node destroys its protocols last added first), so the
// router's subscriptions never outlive it.
#include <concepts>

#include "dcp/core/address.hpp"
#include "dcp/membership/membership.hpp"

namespace dcp::dht {

/// A router that accepts contacts learnt outside the DHT (dht::kademlia).
template <class R>
concept takes_contacts = requires(R& r, const address& a) {
  r.introduce(a);
  r.suspect(a);
};

template <membership::Membership M, takes_contacts R> void take_contacts_from(M& membership, R& router) {
  membership.on_neighbour_up([&router](const address& a) { router.introduce(a); });
  membership.on_neighbour_down([&router](const address& a) { router.suspect(a); });
}

}  // namespace dcp::dht
