#pragma once
// heartbeat_round: one round of a DHT router's liveness probes of its
// neighbours (dht::pastry's leaf set, dht::tapestry's neighbour map).
//
// Every round each neighbour is probed and its silence counted; any message
// from it (the router clears its count) shows it alive. One that has stayed
// silent more than `threshold` rounds in a row has failed: the router marks
// it (failed_peers.hpp) and forgets it. The failures are handed over after
// the round, so that forgetting one (which may refill the router's tables)
// does not change the set being probed.
#include <unordered_map>
#include <vector>

#include "dcp/core/address.hpp"
#include "dcp/dht/contact.hpp"

namespace dcp::dht::detail {

/// Probes each of `peers` (`probe(c)`), unless `skip(c)` (its last probe has not
/// had its time yet); one silent more than `threshold` rounds goes to `failed(a)`
/// instead, after the round. `silences`: the router's count of silent rounds.
template <class Skip, class Probe, class Failed>
void heartbeat_round(const std::vector<contact>& peers, std::unordered_map<address, unsigned>& silences,
                     unsigned threshold, Skip&& skip, Probe&& probe, Failed&& failed) {
  std::vector<address> dead;
  for (auto& c : peers) {
    if (skip(c)) continue;
    if (++silences[c.addr] > threshold)
      dead.push_back(c.addr);
    else
      probe(c);
  }
  for (auto& a : dead) failed(a);
}

}  // namespace dcp::dht::detail
