#pragma once
// The Membership concept: what a gossip, aggregation or search protocol needs
// to know about the overlay it runs on.
//
//   m.neighbours()          the current neighbours (HyParView: the active view;
//                           Cyclon: the partial view; a static group: its members)
//   m.sample(k)             up to k distinct neighbours chosen uniformly at random
//   m.on_neighbour_up(f)    subscribe: f(peer) when a peer becomes a neighbour
//   m.on_neighbour_down(f)  subscribe: f(peer) when a peer stops being one
//                           (it failed, or the overlay dropped the link)
//   m.admits(peer)          optional: whether a message from `peer` comes from
//                           a member of the overlay as far as this node can
//                           tell. Protocols that must believe only members
//                           (Push-Sum's mass, a broadcast's payload: issue 11)
//                           ask it through membership::admits(m, peer), which
//                           falls back to "among neighbours()" when M has none.
//                           A static group: its members; HyParView: its active
//                           and passive views; SWIM: members alive or suspect;
//                           Cyclon: anyone (its views are directed, so a node
//                           is pushed to by peers it cannot know).
//
// Several protocols on one node may subscribe to the same membership: every
// subscriber sees every event, in subscription order. Events are raised from
// inside the membership's handlers, after its own state is consistent, so a
// subscriber may call neighbours() or sample() from its callback.
//
// A composition holds the membership by reference: both are hosted on the
// same node and the membership must outlive its users (add it first: a host
// destroys protocols last added first).
#include <algorithm>
#include <concepts>
#include <cstddef>
#include <functional>
#include <vector>

#include "dcp/core/address.hpp"

namespace dcp::membership {

using neighbour_callback = std::function<void(const address&)>;

template <class M>
concept Membership = requires(M& m, const M& cm, std::size_t k, neighbour_callback f) {
  { cm.neighbours() } -> std::convertible_to<std::vector<address>>;
  { m.sample(k) } -> std::convertible_to<std::vector<address>>;
  m.on_neighbour_up(f);
  m.on_neighbour_down(f);
};

/// Whether a message from `peer` comes from a member, by M's own rule
/// (m.admits) or, without one, because `peer` is among its neighbours.
template <class M> bool admits(const M& m, const address& peer) {
  if constexpr (requires {
                  { m.admits(peer) } -> std::convertible_to<bool>;
                }) {
    return m.admits(peer);
  } else {
    const auto n = m.neighbours();
    return std::find(n.begin(), n.end(), peer) != n.end();
  }
}

/// The subscriber lists behind on_neighbour_up / on_neighbour_down.
class neighbour_events {
 public:
  void on_up(neighbour_callback f) { up_.push_back(std::move(f)); }
  void on_down(neighbour_callback f) { down_.push_back(std::move(f)); }
  void up(const address& peer) const { raise(up_, peer); }
  void down(const address& peer) const { raise(down_, peer); }

 private:
  static void raise(const std::vector<neighbour_callback>& subs, const address& peer) {
    // By index: a subscriber may subscribe another one from inside its callback.
    for (std::size_t i = 0; i < subs.size(); ++i) subs[i](peer);
  }
  std::vector<neighbour_callback> up_, down_;
};

}  // namespace dcp::membership
