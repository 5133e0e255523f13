#pragma once
// Helpers shared by the membership tests: graph checks over the active views.
#include <algorithm>
#include <cstdint>
#include <queue>
#include <set>
#include <vector>

#include "dcp/sim.hpp"

namespace overlay {

/// Neighbour lists of the up nodes (down nodes get an empty list).
template <class P> std::vector<std::vector<std::uint32_t>> views(dcp::sim::simulator& w, dcp::protocol_id id) {
  std::vector<std::vector<std::uint32_t>> g(w.size());
  for (std::uint32_t i = 0; i < w.size(); ++i)
    if (auto* p = w.find<P>(i, id))
      for (auto& a : p->neighbours()) g[i].push_back(a.sim_index());
  return g;
}

/// Links i->j without j->i among up nodes.
inline std::size_t one_sided(dcp::sim::simulator& w, const std::vector<std::vector<std::uint32_t>>& g) {
  std::size_t n = 0;
  for (std::uint32_t i = 0; i < g.size(); ++i)
    for (auto j : g[i])
      if (!w.is_up(j) || std::find(g[j].begin(), g[j].end(), i) == g[j].end()) ++n;
  return n;
}

/// Number of connected components among up nodes (links taken as undirected).
inline std::size_t components(dcp::sim::simulator& w, const std::vector<std::vector<std::uint32_t>>& g) {
  std::vector<std::vector<std::uint32_t>> u(g.size());
  for (std::uint32_t i = 0; i < g.size(); ++i)
    for (auto j : g[i])
      if (w.is_up(i) && w.is_up(j)) {
        u[i].push_back(j);
        u[j].push_back(i);
      }
  std::vector<bool> seen(g.size());
  std::size_t c = 0;
  for (std::uint32_t s = 0; s < g.size(); ++s) {
    if (!w.is_up(s) || seen[s]) continue;
    ++c;
    std::queue<std::uint32_t> q;
    q.push(s);
    seen[s] = true;
    while (!q.empty()) {
      auto x = q.front();
      q.pop();
      for (auto y : u[x])
        if (!seen[y]) {
          seen[y] = true;
          q.push(y);
        }
    }
  }
  return c;
}

/// k distinct victims among nodes [0, n), never node `keep`.
inline std::set<std::uint32_t> victims(dcp::sim::simulator& w, std::uint32_t n, std::uint32_t k,
                                       std::uint32_t keep = 0) {
  std::set<std::uint32_t> v;
  while (v.size() < k) {
    auto i = static_cast<std::uint32_t>(w.rng().below(n));
    if (i != keep) v.insert(i);
  }
  return v;
}

}  // namespace overlay
