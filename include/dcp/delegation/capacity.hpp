#pragma once
// What an origin delegates: a resource's capacity, of one of three kinds,
// split into shards, and the max-min fair division of it.
//
//   concurrency  permits held at once (a token holds `permits` of them)
//   rate         requests per second (a token allows `permits` per second)
//   stock        units consumed for good, such as seats in a lab class
//                (allocations are committed to the origin in batches)
//
// A shard is the unit of delegation: one coordinator (or one group) per
// shard, found at the DHT owner of shard_key(resource, shard).
#include <algorithm>
#include <cstdint>
#include <numeric>
#include <string>
#include <string_view>
#include <vector>

#include "dcp/core/error.hpp"

namespace dcp::delegation {

enum class capacity_kind : std::uint8_t { concurrency = 1, rate = 2, stock = 3 };

constexpr std::string_view to_string(capacity_kind k) noexcept {
  switch (k) {
    case capacity_kind::concurrency:
      return "concurrency";
    case capacity_kind::rate:
      return "rate";
    case capacity_kind::stock:
      return "stock";
  }
  return "unknown";
}

/// Longest resource name (it travels in every token).
inline constexpr std::size_t max_resource_name = 256;
/// Most shards a resource may have (each costs the origin a table entry).
inline constexpr std::uint32_t max_shards = 1u << 16;

/// A resource the origin protects.
struct resource_spec {
  std::string name;
  capacity_kind kind = capacity_kind::concurrency;
  std::uint64_t capacity = 0;  ///< C: permits, requests per second, or units
  std::uint32_t shards = 1;    ///< split into this many shards, each delegated on its own
  /// Groups coordinating a shard issue tokens signed by a quorum of their
  /// members (token.hpp), so that lying members cannot over-grant even
  /// where no counter like the origin's stands behind the tokens.
  /// Concurrency only, capacity at most 2^20.
  bool quorum_signed = false;

  /// Refuses what cannot work, in words a person can act on.
  void validate() const {
    if (name.empty() || name.size() > max_resource_name || name.find('#') != std::string::npos)
      throw error(dcp::errc::invalid_config,
                  "delegation: a resource name must be 1..256 characters without '#': '" + name + "'");
    if (shards == 0 || shards > max_shards)
      throw error(dcp::errc::invalid_config, "delegation: resource '" + name + "' needs 1..65536 shards");
    if (capacity < shards)
      throw error(dcp::errc::invalid_config,
                  "delegation: resource '" + name + "' has capacity " + std::to_string(capacity) + " for " +
                      std::to_string(shards) + " shards: every shard needs a share of at least 1 (use fewer shards)");
    if (quorum_signed && (kind != capacity_kind::concurrency || capacity > (1u << 20)))
      throw error(dcp::errc::invalid_config,
                  "delegation: resource '" + name +
                      "': quorum-signed tokens need a concurrency capacity of at most 2^20 permits");
    if (capacity > (1ull << 32))
      throw error(dcp::errc::invalid_config,
                  "delegation: resource '" + name + "': capacity above 2^32 is not supported");
  }
};

/// The name a shard is known by: in tokens, and as the DHT key of its coordinators.
inline std::string shard_key(std::string_view resource, std::uint32_t shard) {
  return std::string(resource) + "#" + std::to_string(shard);
}

/// Max-min fair division of `capacity` among `wants` (progressive filling,
/// in whole units): nobody gets more than it wants, and nobody's share can
/// grow without shrinking a smaller one. What nobody wants stays unassigned.
/// Doorman's FairShare example: 120 among {1000, 50, 10} -> {60, 50, 10}.
/// `now` (optional, one per want): what each holds today. The remainder's
/// single units stay with those that hold one (unless another wants a
/// quarter more), so that a division redone after every report does not
/// move them needlessly.
inline std::vector<std::uint64_t> max_min_fair(std::uint64_t capacity, const std::vector<std::uint64_t>& wants,
                                               const std::vector<std::uint64_t>& now = {}) {
  std::vector<std::size_t> order(wants.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](auto a, auto b) { return wants[a] < wants[b]; });
  std::vector<std::uint64_t> out(wants.size(), 0);
  std::uint64_t left = capacity;
  // Progressive filling: the smallest wants are met in full while they fit
  // under an even split of what is left ...
  std::size_t k = 0;
  for (; k < order.size() && wants[order[k]] <= left / (order.size() - k); ++k) {
    out[order[k]] = wants[order[k]];
    left -= wants[order[k]];
  }
  if (k == order.size()) return out;
  // ... and the rest, each wanting more than that split, share it evenly. In
  // whole units the split leaves a remainder smaller than their number: one
  // unit each, to the largest holdings now, then the largest wants.
  const std::uint64_t unmet = order.size() - k, level = left / unmet;
  std::vector<std::size_t> rest(order.begin() + static_cast<std::ptrdiff_t>(k), order.end());
  std::reverse(rest.begin(), rest.end());
  if (now.size() == wants.size()) {
    // One holding a unit above the level keeps it unless another wants a
    // quarter more: reports that wobble move nothing, a real shift in demand
    // still does.
    const auto claim = [&](std::size_t i) { return wants[i] + (now[i] > level ? wants[i] / 4 : 0); };
    std::stable_sort(rest.begin(), rest.end(), [&](auto a, auto b) { return claim(a) > claim(b); });
  }
  std::uint64_t extra = left % unmet;
  for (auto i : rest) {
    out[i] = level + (extra > 0 ? 1 : 0);
    if (extra > 0) --extra;
  }
  return out;
}

/// Jain's fairness index of `x`: 1 when all equal, 1/n when one has everything.
inline double jain_index(const std::vector<double>& x) {
  double sum = 0, squares = 0;
  for (double v : x) {
    sum += v;
    squares += v * v;
  }
  return squares == 0 ? 1.0 : sum * sum / (static_cast<double>(x.size()) * squares);
}

}  // namespace dcp::delegation
