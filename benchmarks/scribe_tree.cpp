// Scribe trees over Pastry against the Scribe paper (Castro et al., IEEE JSAC
// 2002, §4), in the simulator.
//
//   scribe_tree [--quick] [--groups G] [--capacity C]
//
// --capacity C turns on the bottleneck remover (§3.3): no node keeps more
// than C children over all groups (scribe_config::capacity).
//
// N Pastry nodes (b = 4, l = 16) whose routing state is filled from a global
// view (tests/dht/global_view.hpp: a converged overlay without the minutes of
// joins; the Scribe trees themselves are built by real JOINs through
// dht::scribe). G groups with the paper's sizes, size(r) = ⌊N·r^-1.25 + 0.5⌋
// for rank r (its Zipf-like distribution, here over G groups instead of
// 1,500), members drawn uniformly. Each group's creator and each multicast
// source is a random node. Every member must receive its group's multicast
// exactly once (checked; a miss aborts the run).
//
// The simulator has no physical network, so the benchmark lays one under the
// overlay, after the paper's transit-stub model: 50 transit routers (a ring
// plus 2 random links each, 20 ms links), 10 stub routers on each (5 ms), each
// node on a random stub router (1 ms access link). Messages follow shortest
// delay paths. Pastry here picks table entries with no proximity metric (the
// paper's Pastry prefers the closest candidate), so every overlay hop crosses
// the core at random: the delay penalty is higher than the paper's for that
// reason alone.
//
// Figures, per N:
//   depth      overlay hops from the root to a member (mean, max over groups)
//   children   node stress: children per node that has any (mean, max)
//   RMD, RAD   relative max / average delay: Scribe's delay from the source
//              (route to the root, then down the tree) over the direct unicast
//              delay, the max (RMD) and the mean (RAD) over the group's
//              members, averaged over groups (the paper's §4.1 definitions,
//              with unicast as its IP-multicast delay: IP multicast follows
//              the same shortest paths)
//   link stress   messages per physical link for one multicast to each group,
//              summed over the groups as in the paper's Figure 9: mean over
//              the links that carry any, and the max; beside IP multicast
//              (each link of each group's shortest-path tree once) and
//              unicast (the source sends one copy per member)
// Prints a table, writes scribe_tree.csv.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <limits>
#include <map>
#include <queue>
#include <set>
#include <string>
#include <vector>

#include "dcp/dht.hpp"
#include "dcp/dht/scribe.hpp"
#include "dcp/sim.hpp"
#include "../tests/dht/global_view.hpp"

using namespace dcp;
using pastry = dht::pastry<sim::env>;
using scribe = dht::scribe<sim::env, pastry>;

namespace {

/// The physical network: routers with weighted links, nodes on stub routers.
struct physical {
  struct edge {
    std::size_t to;
    double ms;
  };
  std::vector<std::vector<edge>> adj;
  std::vector<std::size_t> router_of;  // per overlay node
  std::vector<std::vector<double>> dist;
  std::vector<std::vector<std::size_t>> prev;  // shortest-path tree per source router
  static constexpr double access_ms = 1.0;

  physical(std::size_t nodes, rng& r) {
    const std::size_t transit = 50, stubs_per = 10;
    adj.resize(transit + transit * stubs_per);
    auto link = [&](std::size_t a, std::size_t b, double ms) {
      if (a == b) return;
      for (auto& e : adj[a])
        if (e.to == b) return;
      adj[a].push_back({b, ms});
      adj[b].push_back({a, ms});
    };
    for (std::size_t t = 0; t < transit; ++t) {
      link(t, (t + 1) % transit, 20);
      for (int k = 0; k < 2; ++k) link(t, r.below(transit), 20);
      for (std::size_t s = 0; s < stubs_per; ++s) link(t, transit + t * stubs_per + s, 5);
    }
    router_of.resize(nodes);
    for (auto& x : router_of) x = transit + r.below(transit * stubs_per);
    dist.assign(adj.size(), {});
    prev.assign(adj.size(), {});
    for (std::size_t src = transit; src < adj.size(); ++src) dijkstra(src);
  }
  void dijkstra(std::size_t src) {
    auto& d = dist[src];
    auto& p = prev[src];
    d.assign(adj.size(), std::numeric_limits<double>::infinity());
    p.assign(adj.size(), std::size_t(-1));
    using item = std::pair<double, std::size_t>;
    std::priority_queue<item, std::vector<item>, std::greater<>> q;
    d[src] = 0;
    q.push({0, src});
    while (!q.empty()) {
      auto [du, u] = q.top();
      q.pop();
      if (du > d[u]) continue;
      for (auto& e : adj[u])
        if (du + e.ms < d[e.to]) d[e.to] = du + e.ms, p[e.to] = u, q.push({d[e.to], e.to});
    }
  }
  double delay(std::size_t a, std::size_t b) const {
    if (a == b) return 0;
    return 2 * access_ms + dist[router_of[a]][router_of[b]];
  }
  /// Adds one message from overlay node a to b onto `stress` (links named by their ends;
  /// access links by (node + offset, router)).
  void carry(std::size_t a, std::size_t b, std::map<std::pair<std::size_t, std::size_t>, int>& stress) const {
    if (a == b) return;
    const std::size_t off = adj.size();
    ++stress[{off + a, router_of[a]}];
    ++stress[{off + b, router_of[b]}];
    const std::size_t ra = router_of[a];
    for (std::size_t v = router_of[b]; v != ra; v = prev[ra][v])
      ++stress[{std::min(v, prev[ra][v]), std::max(v, prev[ra][v])}];
  }
};

struct stress_stats {
  double mean = 0;
  int max = 0;
};
stress_stats summarize(const std::map<std::pair<std::size_t, std::size_t>, int>& s) {
  stress_stats out;
  for (auto& [l, n] : s) out.mean += n, out.max = std::max(out.max, n);
  if (!s.empty()) out.mean /= static_cast<double>(s.size());
  return out;
}

struct row {
  std::size_t n = 0, groups = 0, members = 0;
  double depth_mean = 0;
  std::size_t depth_max = 0;
  double children_mean = 0;
  std::size_t children_max = 0;
  double rmd = 0, rad = 0;
  stress_stats scribe_s, ip_s, unicast_s;
  double msgs_per_member = 0;
  double secs = 0;
};

row run(std::size_t n, std::size_t groups, std::uint64_t seed, std::size_t capacity) {
  const auto t0 = std::chrono::steady_clock::now();
  row out;
  out.n = n;
  out.groups = groups;
  sim::config sc;
  sc.network.delay = sim::latency::uniform(1ms, 20ms);
  sim::simulator world(seed, sc);
  std::map<sim::node_index, std::map<std::string, int>> got;
  dht::pastry_config pc;  // the paper's b = 4, l = 16
  pc.leaf_interval = 5s;  // a converged overlay: maintenance at a slow pace keeps 10^4 nodes cheap
  world.add_nodes(n, [&](sim::node_context& ctx) {
    auto& r = ctx.add<pastry>(pastry::default_id, pc);
    dht::scribe_config scfg;
    scfg.capacity = capacity;
    auto& s = ctx.add<scribe>(scribe::default_id, r, scfg);
    const auto me = ctx.index();
    s.on_multicast([&got, me](const node_id&, const bytes& p) { ++got[me][std::string(p.begin(), p.end())]; });
  });
  std::vector<dht::contact> sorted;
  for (sim::node_index i = 0; i < n; ++i) sorted.push_back(world.get<pastry>(i, pastry::default_id).self());
  std::sort(sorted.begin(), sorted.end());
  for (sim::node_index i = 0; i < n; ++i)
    dht::testing::global_view::install(world.get<pastry>(i, pastry::default_id), sorted);
  auto S = [&](sim::node_index i) -> scribe& { return world.get<scribe>(i, scribe::default_id); };
  auto P = [&](sim::node_index i) -> pastry& { return world.get<pastry>(i, pastry::default_id); };
  physical net(n, world.rng());

  // groups, created, then joined
  std::vector<node_id> ids;
  std::vector<std::vector<sim::node_index>> members(groups);
  int pending = 0;
  for (std::size_t k = 0; k < groups; ++k) {
    ids.push_back(node_id::hash("scribe-bench-" + std::to_string(k)));
    ++pending;
    S(static_cast<sim::node_index>(world.rng().below(n))).create(ids[k], [&](std::error_code ec) {
      if (ec) std::fprintf(stderr, "create failed: %s\n", ec.message().c_str()), std::exit(1);
      --pending;
    });
  }
  world.run_until([&] { return pending == 0; }, world.now() + 30s);
  for (std::size_t k = 0; k < groups; ++k) {
    const std::size_t size = std::clamp<std::size_t>(
        static_cast<std::size_t>(
            std::floor(static_cast<double>(n) * std::pow(static_cast<double>(k + 1), -1.25) + 0.5)),
        1, n);
    std::vector<sim::node_index> all(n);
    for (sim::node_index i = 0; i < n; ++i) all[i] = i;
    world.rng().shuffle(std::span(all));
    all.resize(size);
    members[k] = all;
    out.members += size;
    for (auto i : all) {
      ++pending;
      S(i).join(ids[k], [&](std::error_code ec) {
        if (ec) std::fprintf(stderr, "join failed: %s\n", ec.message().c_str()), std::exit(1);
        --pending;
      });
    }
    world.run_for(50ms);
  }
  world.run_until([&] { return pending == 0; }, world.now() + 120s);
  if (pending) std::fprintf(stderr, "%d joins unfinished\n", pending), std::exit(1);
  world.run_for(3s);
  // Shed children (the bottleneck remover) re-join: the trees are measured
  // once every member is attached again.
  auto all_attached = [&] {
    for (std::size_t k = 0; k < groups; ++k)
      for (auto m : members[k])
        if (!S(m).attached(ids[k]) && !S(m).is_root(ids[k])) return false;
    return true;
  };
  world.run_until(all_attached, world.now() + 60s);
  if (!all_attached()) std::fprintf(stderr, "trees unsettled after 60 s\n"), std::exit(1);

  // the trees: depth, node stress
  std::size_t depth_sum = 0, depth_count = 0, child_sum = 0, child_nodes = 0;
  std::map<sim::node_index, std::size_t> children_per_node;  // over all groups
  for (std::size_t k = 0; k < groups; ++k) {
    for (auto m : members[k]) {
      const std::size_t d = S(m).path(ids[k]).size() - 1;
      depth_sum += d, ++depth_count, out.depth_max = std::max(out.depth_max, d);
    }
    for (sim::node_index i = 0; i < n; ++i)
      if (auto c = S(i).children(ids[k]).size()) children_per_node[i] += c;
  }
  for (auto& [i, c] : children_per_node)
    child_sum += c, ++child_nodes, out.children_max = std::max(out.children_max, c);
  out.depth_mean = static_cast<double>(depth_sum) / static_cast<double>(depth_count);
  out.children_mean = child_nodes ? static_cast<double>(child_sum) / static_cast<double>(child_nodes) : 0;

  // one multicast per group from a random node, checked, with its delays and link stress
  std::map<std::pair<std::size_t, std::size_t>, int> st_scribe, st_ip, st_unicast;
  const auto sent_before = world.metrics().counter(scribe::default_id, "data_sent");
  int accepted = 0;
  for (std::size_t k = 0; k < groups; ++k) {
    const auto src = static_cast<sim::node_index>(world.rng().below(n));
    // the route to the root, one Pastry step at a time (what the publish takes)
    std::vector<sim::node_index> route{src};
    for (int guard = 0; guard < 64; ++guard) {
      const auto next = P(route.back()).next_hop_toward(ids[k], {});
      if (next.addr == P(route.back()).self().addr) break;
      route.push_back(next.addr.sim_index());
    }
    const auto root = route.back();
    if (!S(root).is_root(ids[k])) std::fprintf(stderr, "group %zu: route ends off the root\n", k), std::exit(1);
    double to_root = 0;
    for (std::size_t h = 1; h < route.size(); ++h)
      to_root += net.delay(route[h - 1], route[h]), net.carry(route[h - 1], route[h], st_scribe);
    // down the tree: every tree edge carries one copy
    double max_s = 0, max_u = 0, sum_s = 0, sum_u = 0;
    std::set<std::pair<std::size_t, std::size_t>> ip_links;
    for (auto m : members[k]) {
      const auto& p = S(m).path(ids[k]);
      double down = 0;
      for (std::size_t h = 1; h < p.size(); ++h) down += net.delay(p[h - 1].sim_index(), p[h].sim_index());
      const double scribe_delay = to_root + down, unicast = net.delay(src, m);
      if (m == src) continue;  // zero either way
      max_s = std::max(max_s, scribe_delay), max_u = std::max(max_u, unicast);
      sum_s += scribe_delay, sum_u += unicast;
      net.carry(src, m, st_unicast);
      std::map<std::pair<std::size_t, std::size_t>, int> one;
      net.carry(src, m, one);
      for (auto& [l, c] : one) ip_links.insert(l);
    }
    for (auto& l : ip_links) ++st_ip[l];
    for (sim::node_index i = 0; i < n; ++i)
      if (S(i).has_group(ids[k]))
        for (auto& c : S(i).children(ids[k])) net.carry(i, c.sim_index(), st_scribe);
    if (max_u > 0) out.rmd += max_s / max_u, out.rad += sum_s / sum_u;
    const std::string payload = "m" + std::to_string(k);
    S(src).multicast(ids[k], bytes(payload.begin(), payload.end()),
                     [&accepted](std::error_code ec) { accepted += !ec; });
  }
  world.run_for(5s);  // all groups' multicasts at once
  if (accepted != static_cast<int>(groups))
    std::fprintf(stderr, "%d of %zu multicasts accepted\n", accepted, groups), std::exit(1);
  for (std::size_t k = 0; k < groups; ++k)
    for (auto m : members[k]) {
      const int times = got[m]["m" + std::to_string(k)];
      if (times != 1) std::fprintf(stderr, "group %zu: member %u got it %d times\n", k, m, times), std::exit(1);
    }
  out.rmd /= static_cast<double>(groups);
  out.rad /= static_cast<double>(groups);
  out.scribe_s = summarize(st_scribe);
  out.ip_s = summarize(st_ip);
  out.unicast_s = summarize(st_unicast);
  out.msgs_per_member = static_cast<double>(world.metrics().counter(scribe::default_id, "data_sent") - sent_before) /
      static_cast<double>(out.members);
  out.secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  bool quick = false;
  std::size_t groups = 0, capacity = 0;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--quick"))
      quick = true;
    else if (!std::strcmp(argv[i], "--groups") && i + 1 < argc)
      groups = static_cast<std::size_t>(std::atol(argv[++i]));
    else if (!std::strcmp(argv[i], "--capacity") && i + 1 < argc)
      capacity = static_cast<std::size_t>(std::atol(argv[++i]));
    else {
      std::fprintf(stderr, "usage: %s [--quick] [--groups G] [--capacity C]\n", argv[0]);
      return 2;
    }
  }
  const std::vector<std::size_t> sizes =
      quick ? std::vector<std::size_t>{300} : std::vector<std::size_t>{1000, 2000, 5000, 10000};
  if (!groups) groups = quick ? 5 : 20;
  std::ofstream csv("scribe_tree.csv");
  csv << "n,groups,members,depth_mean,depth_max,children_mean,children_max,rmd,rad,stress_scribe_mean,stress_scribe_max,"
         "stress_ip_mean,stress_ip_max,stress_unicast_mean,stress_unicast_max,data_msgs_per_member\n";
  std::printf("Scribe over Pastry (b = 4, l = 16), %zu groups of sizes N·r^-1.25, one multicast per group", groups);
  if (capacity) std::printf("; bottleneck remover, capacity %zu children", capacity);
  std::printf("\n");
  std::printf("%6s %8s %6s %5s %7s %5s %6s %6s %17s %17s %17s %8s %7s\n", "N", "members", "depth", "max", "child",
              "max", "RMD", "RAD", "stress scribe", "stress IP mcast", "stress unicast", "msg/mbr", "time");
  for (auto n : sizes) {
    const row r = run(n, groups, n * 13 + 7, capacity);
    std::printf("%6zu %8zu %6.2f %5zu %7.2f %5zu %6.2f %6.2f %8.2f / %6d %8.2f / %6d %8.2f / %6d %8.3f %6.1fs\n", r.n,
                r.members, r.depth_mean, r.depth_max, r.children_mean, r.children_max, r.rmd, r.rad, r.scribe_s.mean,
                r.scribe_s.max, r.ip_s.mean, r.ip_s.max, r.unicast_s.mean, r.unicast_s.max, r.msgs_per_member, r.secs);
    std::fflush(stdout);
    csv << r.n << ',' << r.groups << ',' << r.members << ',' << r.depth_mean << ',' << r.depth_max << ','
        << r.children_mean << ',' << r.children_max << ',' << r.rmd << ',' << r.rad << ',' << r.scribe_s.mean << ','
        << r.scribe_s.max << ',' << r.ip_s.mean << ',' << r.ip_s.max << ',' << r.unicast_s.mean << ','
        << r.unicast_s.max << ',' << r.msgs_per_member << '\n';
  }
  std::printf(
      "depth: overlay hops root→member; child: children per node with any (all groups); RMD/RAD: Scribe delay over\n"
      "unicast delay, max/mean over members, mean over groups; stress: messages per physical link (mean over used\n"
      "links / max), one multicast per group; msg/mbr: data messages sent per member (tree edges, forwarders included)\n");
}
