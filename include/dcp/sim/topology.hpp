#pragma once
// topology: an undirected simple graph over simulator nodes 0..n-1, and the
// Barabási–Albert generator of scale-free graphs (Barabási and Albert,
// "Emergence of scaling in random networks", Science 1999), the test
// topologies of the testbed thesis' chapter 5 (background 004, §5.4).
//
// Preferential attachment: start from a clique of m + 1 nodes; each new node
// links to m distinct existing nodes, each chosen with probability
// proportional to its degree. The degree distribution follows a power law
// (P(k) ~ k^-3): a few hubs, most nodes of degree m. The graph is connected
// and has m(m+1)/2 + (n - m - 1) m edges. Drawing "proportional to degree"
// uses the list of edge endpoints (a node appears once per incident edge),
// so generation is O(n m) expected.
//
// A test or benchmark builds the graph once, then gives each node its
// neighbour list (neighbours_of) as a static membership.
#include <algorithm>
#include <cstdint>
#include <vector>

#include "dcp/core/address.hpp"
#include "dcp/core/error.hpp"
#include "dcp/core/rng.hpp"

namespace dcp::sim {

class topology {
 public:
  explicit topology(std::uint32_t n = 0) : adjacent_(n) {}

  std::uint32_t size() const noexcept { return static_cast<std::uint32_t>(adjacent_.size()); }
  std::size_t edge_count() const noexcept { return edges_; }
  std::size_t degree(std::uint32_t i) const { return adjacent_.at(i).size(); }
  const std::vector<std::uint32_t>& adjacent(std::uint32_t i) const { return adjacent_.at(i); }
  bool connected(std::uint32_t a, std::uint32_t b) const {
    const auto& v = adjacent_.at(a);
    return std::find(v.begin(), v.end(), b) != v.end();
  }
  /// Adds the edge a-b; false (and nothing changes) for a self-loop or an edge already there.
  bool connect(std::uint32_t a, std::uint32_t b) {
    if (a >= size() || b >= size()) throw error(errc::invalid_argument, "topology: node out of range");
    if (a == b || connected(a, b)) return false;
    adjacent_[a].push_back(b);
    adjacent_[b].push_back(a);
    ++edges_;
    return true;
  }
  /// Node i's neighbours as simulator addresses.
  std::vector<address> neighbours_of(std::uint32_t i) const {
    std::vector<address> out;
    for (auto j : adjacent(i)) out.push_back(address::sim(j));
    return out;
  }
  /// Every edge once, as (a, b) with a < b.
  std::vector<std::pair<std::uint32_t, std::uint32_t>> edges() const {
    std::vector<std::pair<std::uint32_t, std::uint32_t>> out;
    for (std::uint32_t a = 0; a < size(); ++a)
      for (auto b : adjacent_[a])
        if (a < b) out.emplace_back(a, b);
    return out;
  }

 private:
  std::vector<std::vector<std::uint32_t>> adjacent_;
  std::size_t edges_ = 0;
};

/// A Barabási–Albert graph of n nodes, each new node bringing m edges.
/// Throws dcp::error(invalid_argument) unless 1 <= m < n.
inline topology barabasi_albert(rng& r, std::uint32_t n, std::uint32_t m) {
  if (m < 1 || m >= n) throw error(errc::invalid_argument, "barabasi_albert: needs 1 <= m < n");
  topology g(n);
  std::vector<std::uint32_t> endpoints;  // node i appears degree(i) times
  endpoints.reserve(2 * (static_cast<std::size_t>(n) * m));
  for (std::uint32_t a = 0; a <= m; ++a)
    for (std::uint32_t b = a + 1; b <= m; ++b) {
      g.connect(a, b);
      endpoints.push_back(a);
      endpoints.push_back(b);
    }
  std::vector<std::uint32_t> targets;
  for (std::uint32_t v = m + 1; v < n; ++v) {
    targets.clear();
    while (targets.size() < m) {  // m distinct, each proportional to degree
      const auto t = endpoints[r.below(endpoints.size())];
      if (std::find(targets.begin(), targets.end(), t) == targets.end()) targets.push_back(t);
    }
    for (auto t : targets) {
      g.connect(v, t);
      endpoints.push_back(v);
      endpoints.push_back(t);
    }
  }
  return g;
}

}  // namespace dcp::sim
