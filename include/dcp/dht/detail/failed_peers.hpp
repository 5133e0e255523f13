#pragma once
// failed_peers: the nodes a DHT router declared failed (or saw leave), and
// when, for `memory` (the routers' failed_memory).
//
// Others' tables, leaf sets and neighbour lists go on naming a dead node for
// a while, and messages from before its failure may still arrive. A router
// does not take such a node back from hearsay while the memory lasts: Pastry
// and Tapestry only on the answer to a probe sent after the failure, CAN not
// from stale updates (it tells an evicted node so). A mark older than
// `memory` counts for nothing and is dropped; expire() drops them all at
// once, so the table holds at most the peers failed within one memory.
#include <optional>
#include <unordered_map>
#include <utility>

#include "dcp/core/address.hpp"
#include "dcp/core/counter_set.hpp"
#include "dcp/core/env.hpp"
#include "dcp/dht/contact.hpp"
#include "dcp/dht/id_binding.hpp"

namespace dcp::dht::detail {

/// What it counts under its router's id (each router joins it).
inline constexpr counter_set failed_peers_counters{{{"unbound_id", "a node whose id is not its address's, ignored"}}};

template <Env E> class failed_peers {
 public:
  failed_peers(E env, duration memory) : env_(std::move(env)), memory_(memory) {}

  /// Declared failed (or departed) now.
  void mark(const address& a) { at_[a] = env_.now(); }
  /// Back: its answer to a probe sent since the failure.
  void erase(const address& a) { at_.erase(a); }
  /// Declared failed within the memory (an older mark is dropped).
  bool recent(const address& a) {
    auto it = at_.find(a);
    if (it == at_.end()) return false;
    if (env_.now() - it->second < memory_) return true;
    at_.erase(it);
    return false;
  }
  /// When it was declared failed, however long ago, while the mark is kept.
  std::optional<time_point> since(const address& a) const {
    auto it = at_.find(a);
    if (it == at_.end()) return std::nullopt;
    return it->second;
  }
  /// A message from `c` itself, at node `self` (ids bound to addresses when
  /// `bound`): true when it is evidence that `c` is alive, to take into the
  /// router's state. Not from no node or from this one; not from an id that
  /// does not derive from its address ("unbound_id"); and not from a node
  /// declared failed within the memory, whose message may have been in flight
  /// from before: `reprobe()` runs then (the router probes it if it would use
  /// it), and only the answer to that probe brings it back (Pastry, Tapestry).
  template <class F> bool heard_alive(const contact& c, const contact& self, bool bound, F&& reprobe) {
    if (c.addr.empty() || c.addr == self.addr || c.id == self.id) return false;
    if (!admissible(bound, c)) {
      env_.count("unbound_id");
      return false;
    }
    if (!recent(c.addr)) return true;
    reprobe();
    return false;
  }
  /// Drops the marks older than the memory.
  void expire() {
    std::erase_if(at_, [&](const auto& f) { return env_.now() - f.second >= memory_; });
  }

 private:
  E env_;
  duration memory_;
  std::unordered_map<address, time_point> at_;
};

}  // namespace dcp::dht::detail
