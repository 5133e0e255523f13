#pragma once
// Locating a shard's coordinator: who coordinates shard_key(resource, shard)
// now. In a deployment it is the DHT owner of the key (dht_locator, over any
// dcp::dht::Router); a static deployment or a test may name it directly
// (fixed_locator). delegation::peer caches the answer per shard and asks
// again when the coordinator it knows stops answering.
#include <functional>
#include <optional>
#include <string>
#include <system_error>
#include <vector>

#include "dcp/core/address.hpp"
#include "dcp/core/node_id.hpp"
#include "dcp/dht/router.hpp"

namespace dcp::delegation {

/// Calls back (now or later) with the address that coordinates the shard
/// whose key is given, or nullopt when it cannot tell.
using locate_function = std::function<void(const std::string& key, std::function<void(std::optional<address>)>)>;

/// A locate_function from a synchronous rule.
inline locate_function fixed_locator(std::function<std::optional<address>(const std::string& key)> rule) {
  return [rule = std::move(rule)](const std::string& key, std::function<void(std::optional<address>)> done) {
    done(rule(key));
  };
}

/// Calls back with up to n nodes closest to the key, closest first (the
/// candidates for a shard's group, group_host.hpp); empty when it cannot tell.
using group_locate_function =
    std::function<void(const std::string& key, std::size_t n, std::function<void(std::vector<address>)>)>;

/// The n nodes responsible for the key in the overlay, owner first: one
/// lookup of hash(key). `router` must outlive the peer that uses it.
/// `never`: a node of the overlay that never coordinates (the origin, when
/// it is the overlay's entry point): skipped, the next closest counts.
template <dht::Router R>
group_locate_function dht_group_locator(R& router, std::optional<address> never = std::nullopt) {
  return [&router, never](const std::string& key, std::size_t n, std::function<void(std::vector<address>)> done) {
    router.lookup(node_id::hash(key), never ? n + 1 : n,
                  [done = std::move(done), never, n](result<dht::lookup_result> r) {
                    std::vector<address> nodes;
                    if (r)
                      for (auto& c : r->owners)
                        if (c.addr != never && nodes.size() < n) nodes.push_back(c.addr);
                    done(std::move(nodes));
                  });
  };
}

/// The DHT owner of the key: one overlay lookup of hash(key) per (re)location.
/// `router` must outlive the peer that uses it (both live on one node).
/// `never`: a node of the overlay that never coordinates (the origin, when
/// it is the overlay's entry point): the next closest is named instead.
template <dht::Router R> locate_function dht_locator(R& router, std::optional<address> never = std::nullopt) {
  return [closest = dht_group_locator(router, std::move(never))](const std::string& key,
                                                                 std::function<void(std::optional<address>)> done) {
    closest(key, 1, [done = std::move(done)](std::vector<address> nodes) {
      done(nodes.empty() ? std::nullopt : std::optional<address>(nodes.front()));
    });
  };
}

}  // namespace dcp::delegation
