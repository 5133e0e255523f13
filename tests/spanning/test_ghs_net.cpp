// GHS unchanged over real TCP (dcp::net, loopback): the same core as in the
// simulator, one net::node per graph node, all in one process.
#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <memory>
#include <numeric>
#include <set>
#include <vector>

#include "dcp/net.hpp"
#include "dcp/spanning.hpp"

namespace test_ghs_net {

using namespace dcp;
using ghs_net = spanning::ghs<net::env>;

TEST_CASE("ghs over TCP on loopback: 16 nodes, a random connected graph, the tree is Kruskal's") {
  constexpr std::uint32_t n = 16;
  asio::io_context io;
  std::vector<std::unique_ptr<net::node>> nodes;
  for (std::uint32_t i = 0; i < n; ++i) {
    net::config c;
    c.listen = address::loopback(0);
    c.seed = i + 1;
    nodes.push_back(std::make_unique<net::node>(io, c));
  }
  rng r(7);
  struct edge {
    std::uint32_t a, b;
    std::uint64_t w;
  };
  std::vector<edge> edges;
  std::set<std::pair<std::uint32_t, std::uint32_t>> seen;
  auto add = [&](std::uint32_t a, std::uint32_t b) {
    if (a != b && seen.insert(std::minmax(a, b)).second) edges.push_back({a, b, 1 + r.below(50)});
  };
  for (std::uint32_t i = 1; i < n; ++i) add(i, static_cast<std::uint32_t>(r.below(i)));
  for (std::uint32_t k = 0; k < 2 * n; ++k)
    add(static_cast<std::uint32_t>(r.below(n)), static_cast<std::uint32_t>(r.below(n)));

  std::vector<spanning::ghs_config> cfg(n);
  for (auto& c : cfg) c.wake_on_start = false;  // woken once every node listens and has its protocol
  for (auto& e : edges) {
    cfg[e.a].edges.push_back({nodes[e.b]->self(), e.w});
    cfg[e.b].edges.push_back({nodes[e.a]->self(), e.w});
  }
  std::vector<ghs_net*> g(n);
  int done_calls = 0;
  for (std::uint32_t i = 0; i < n; ++i) {
    g[i] = &nodes[i]->add<ghs_net>(ghs_net::default_id, cfg[i]);
    g[i]->on_done([&](const spanning::ghs_result&) { ++done_calls; });
  }
  for (auto& nd : nodes) nd->start();
  for (std::uint32_t i = 0; i < n; i += 3) asio::post(io, [p = g[i]] { p->wake_up(); });

  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(15);
  while (done_calls < static_cast<int>(n) && std::chrono::steady_clock::now() < deadline) {
    io.restart();
    io.run_for(std::chrono::milliseconds(5));
  }
  REQUIRE(done_calls == static_cast<int>(n));

  // Kruskal over the same ranking (addresses are IP:port here).
  std::vector<spanning::edge_key> keys;
  std::map<spanning::edge_key, std::pair<std::uint32_t, std::uint32_t>> ends;
  for (auto& e : edges) {
    auto k = spanning::edge_key::of(nodes[e.a]->self(), nodes[e.b]->self(), e.w);
    keys.push_back(k);
    ends[k] = {e.a, e.b};
  }
  std::sort(keys.begin(), keys.end());
  std::vector<std::uint32_t> parent(n);
  std::iota(parent.begin(), parent.end(), 0u);
  auto find = [&](std::uint32_t x) {
    while (parent[x] != x) x = parent[x] = parent[parent[x]];
    return x;
  };
  std::set<std::pair<address, address>> mst, tree;
  for (auto& k : keys) {
    const auto [a, b] = ends[k];
    if (find(a) == find(b)) continue;
    parent[find(a)] = find(b);
    mst.insert({k.low, k.high});
  }
  const auto root = g[0]->result()->root;
  for (std::uint32_t i = 0; i < n; ++i) {
    REQUIRE(g[i]->done());
    CHECK(g[i]->result()->root == root);
    for (auto& b : g[i]->result()->branches) tree.insert(std::minmax(nodes[i]->self(), b));
  }
  CHECK(tree == mst);
  for (auto& nd : nodes) CHECK(nd->metrics().drops() == 0);
}

}  // namespace test_ghs_net
