#pragma once
// Set checks over a few addresses, for the check_invariants of membership
// views and of the protocols over them, which run after every simulated
// event. A handful of addresses is compared pairwise; more are compared by
// their sorted hashes (sorting addresses, each comparison a memcmp, costs
// several times more), and only equal hashes in full.
#include <algorithm>
#include <cstddef>
#include <span>
#include <utility>
#include <vector>

#include "dcp/core/address.hpp"

namespace dcp::membership::detail {

inline constexpr std::size_t pairwise_up_to = 12;

/// Whether the addresses are pairwise distinct.
inline bool distinct(std::span<const address> peers) {
  if (peers.size() <= pairwise_up_to) {
    for (std::size_t i = 0; i < peers.size(); ++i)
      for (std::size_t j = i + 1; j < peers.size(); ++j)
        if (peers[i] == peers[j]) return false;
    return true;
  }
  std::vector<std::pair<std::size_t, const address*>> h;
  h.reserve(peers.size());
  for (auto& a : peers) h.emplace_back(a.hash(), &a);
  std::sort(h.begin(), h.end(), [](const auto& x, const auto& y) { return x.first < y.first; });
  for (std::size_t i = 0; i < h.size(); ++i)
    for (std::size_t j = i + 1; j < h.size() && h[j].first == h[i].first; ++j)
      if (*h[j].second == *h[i].second) return false;
  return true;
}

/// Whether `a` and `b`, each of distinct addresses, hold the same ones (by
/// hashes when large: a collision could hide a difference, never invent one).
inline bool same_set(std::span<const address> a, std::span<const address> b) {
  if (a.size() != b.size()) return false;
  if (a.size() <= pairwise_up_to)
    return std::all_of(a.begin(), a.end(),
                       [&](const address& x) { return std::find(b.begin(), b.end(), x) != b.end(); });
  const auto hashes = [](std::span<const address> v) {
    std::vector<std::size_t> h;
    h.reserve(v.size());
    for (auto& x : v) h.push_back(x.hash());
    std::sort(h.begin(), h.end());
    return h;
  };
  return hashes(a) == hashes(b);
}

}  // namespace dcp::membership::detail
