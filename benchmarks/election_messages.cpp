// Messages per election of every dcp election, best / worst / average case,
// beside the textbook figures (Coulouris ch. 15, Kshemkalyani & Singhal).
//
//   bully          the leader (highest) crashes; one member learns it from its
//                  transport and starts the election: best = the second
//                  highest (N−2 COORDINATOR messages), worst = the lowest,
//                  average = a random live member. Counted: ELECTION, ANSWER,
//                  COORDINATOR (leader probes are off). Worst, exactly: the
//                  lowest asks N−2 live members, member k asks the N−1−k above
//                  it (the dead leader included), every live one answers, and
//                  N−2 COORDINATORs: (N−2)(N+1).
//   chang_roberts  best = the highest alone initiates (2N−1); worst = ids
//                  decrease along the ring and everyone initiates
//                  (N(N+1)/2 ELECTION + N−1 ELECTED); average = random ring
//                  order, everyone initiates (≈ N·H_N ELECTION + N−1 ELECTED).
//   echo           random connected graph (spanning tree + N extra edges);
//                  best = only the best node initiates (a wave costs 2E, the
//                  announcement 2E−(N−1)); all = every node initiates.
// Simulation, one-way delays uniform in [1, 10] ms.
//
// Usage: election_messages [--quick] [--csv FILE]
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include "dcp/election.hpp"
#include "dcp/group.hpp"
#include "dcp/sim.hpp"

using namespace dcp;

namespace {
struct row {
  std::string algorithm, scenario;
  std::uint32_t n;
  double measured;
  std::string theory;
  bool leader_ok;
};

sim::config network() {
  sim::config c;
  c.network.delay = sim::latency::uniform(1ms, 10ms);
  return c;
}
std::string num(double v) {
  char b[32];
  std::snprintf(b, sizeof b, "%.0f", v);
  return b;
}

template <class P> bool all_agree(sim::simulator& w, std::uint32_t n, address expected) {
  for (std::uint32_t i = 0; i < n; ++i)
    if (auto* p = w.find<P>(i, P::default_id); p && p->leader() != expected) return false;
  return true;
}

/// Bully: the leader crashes; `detector` learns it from the transport.
std::pair<double, bool> bully_run(std::uint32_t n, std::uint32_t detector, std::uint64_t seed) {
  using B = election::bully<sim::env>;
  election::bully_config cfg;
  cfg.probe_interval = 3600s;  // failures reported by the transport only
  cfg.probe_timeout = 7200s;
  sim::simulator w(seed, network());
  w.add_nodes(n, [=](sim::node_context& c) { c.add<B>(B::default_id, group::static_group::sim(n), cfg); });
  w.run_for(60s);
  w.crash(n - 1);
  w.metrics().reset();
  w.get<B>(detector, B::default_id).on_unreachable(address::sim(n - 1));
  w.run_for(60s);
  const auto& m = w.metrics();
  namespace bm = election::bully_msg;
  const double msgs = static_cast<double>(m.of(B::default_id, bm::election::wire_id).sent +
                                          m.of(B::default_id, bm::answer::wire_id).sent +
                                          m.of(B::default_id, bm::coordinator::wire_id).sent);
  return {msgs, all_agree<B>(w, n, address::sim(n - 2))};
}

/// Chang–Roberts with the given ring order and initiators.
std::pair<double, bool> ring_run(std::uint32_t n, std::vector<address> ring,
                                 const std::vector<std::uint32_t>& initiators, std::uint64_t seed) {
  using R = election::chang_roberts<sim::env>;
  election::chang_roberts_config cfg;
  cfg.ring = std::move(ring);
  sim::simulator w(seed, network());
  w.add_nodes(n, [=](sim::node_context& c) { c.add<R>(R::default_id, group::static_group::sim(n), cfg); });
  for (auto i : initiators) w.get<R>(i, R::default_id).start_election();
  w.run_for(600s);
  return {static_cast<double>(w.metrics().of(R::default_id).sent), all_agree<R>(w, n, address::sim(n - 1))};
}

/// Echo on a random connected graph; returns (messages, agreed, edges).
std::tuple<double, bool, std::size_t> echo_run(std::uint32_t n, bool everyone, std::uint64_t seed) {
  using W = election::echo<sim::env>;
  sim::simulator w(seed, network());
  std::vector<std::set<std::uint32_t>> adj(n);
  for (std::uint32_t i = 1; i < n; ++i) {
    auto j = static_cast<std::uint32_t>(w.rng().below(i));
    adj[i].insert(j), adj[j].insert(i);
  }
  for (std::uint32_t k = 0; k < n; ++k) {
    auto a = static_cast<std::uint32_t>(w.rng().below(n)), b = static_cast<std::uint32_t>(w.rng().below(n));
    if (a != b) adj[a].insert(b), adj[b].insert(a);
  }
  std::size_t edges = 0;
  for (auto& s : adj) edges += s.size();
  edges /= 2;
  std::vector<std::uint64_t> score(n);
  std::uint32_t best = 0;
  for (std::uint32_t i = 0; i < n; ++i) {
    score[i] = w.rng().below(1000);
    if (std::pair(score[i], i) > std::pair(score[best], best)) best = i;
  }
  w.add_nodes(n, [&](sim::node_context& c) {
    election::echo_config cfg;
    for (auto j : adj[c.index()]) cfg.neighbours.push_back(address::sim(j));
    cfg.score = score[c.index()];
    c.add<W>(W::default_id, cfg);
  });
  if (everyone)
    for (std::uint32_t i = 0; i < n; ++i) w.get<W>(i, W::default_id).start_election();
  else
    w.get<W>(best, W::default_id).start_election();
  w.run_for(600s);
  return {static_cast<double>(w.metrics().of(W::default_id).sent), all_agree<W>(w, n, address::sim(best)), edges};
}
}  // namespace

int main(int argc, char** argv) {
  bool quick = false;
  std::string csv = "election_messages.csv";
  for (int a = 1; a < argc; ++a) {
    if (!std::strcmp(argv[a], "--quick"))
      quick = true;
    else if (!std::strcmp(argv[a], "--csv") && a + 1 < argc)
      csv = argv[++a];
    else {
      std::fprintf(stderr, "usage: %s [--quick] [--csv FILE]\n", argv[0]);
      return 2;
    }
  }
  const std::vector<std::uint32_t> sizes =
      quick ? std::vector<std::uint32_t>{4, 16} : std::vector<std::uint32_t>{4, 16, 64, 256};
  const int trials = quick ? 5 : 30;
  std::vector<row> rows;
  for (auto n : sizes) {
    const double N = n;
    double h = 0;  // harmonic number H_N
    for (std::uint32_t k = 1; k <= n; ++k) h += 1.0 / k;
    {
      auto [best, ok1] = bully_run(n, n - 2, 1);
      rows.push_back({"bully", "best", n, best, "N-2 = " + num(N - 2), ok1});
      auto [worst, ok2] = bully_run(n, 0, 2);
      rows.push_back({"bully", "worst", n, worst, "O(N^2); here (N-2)(N+1) = " + num((N - 2) * (N + 1)), ok2});
      double sum = 0;
      bool ok = true;
      for (int t = 0; t < trials; ++t) {
        sim::simulator pick(100 + t);
        auto [m, okt] = bully_run(n, static_cast<std::uint32_t>(pick.rng().below(n - 1)), 100 + t);
        sum += m;
        ok = ok && okt;
      }
      rows.push_back({"bully", "average", n, sum / trials, "between best and worst", ok});
    }
    {
      std::vector<address> up, down;
      for (std::uint32_t i = 0; i < n; ++i) up.push_back(address::sim(i));
      down.assign(up.rbegin(), up.rend());
      std::vector<std::uint32_t> everyone;
      for (std::uint32_t i = 0; i < n; ++i) everyone.push_back(i);
      auto [best, ok1] = ring_run(n, up, {n - 1}, 1);
      rows.push_back({"chang_roberts", "best", n, best, "2N-1 = " + num(2 * N - 1), ok1});
      auto [worst, ok2] = ring_run(n, down, everyone, 2);
      rows.push_back({"chang_roberts", "worst", n, worst, "N(N+1)/2 + N-1 = " + num(N * (N + 1) / 2 + N - 1), ok2});
      double sum = 0;
      bool ok = true;
      for (int t = 0; t < trials; ++t) {
        sim::simulator shuffler(200 + t);
        auto ring = up;
        shuffler.rng().shuffle(std::span(ring));
        auto [m, okt] = ring_run(n, ring, everyone, 200 + t);
        sum += m;
        ok = ok && okt;
      }
      rows.push_back({"chang_roberts", "average", n, sum / trials,
                      "N*H_N + N-1 = " + num(N * h + N - 1) + " (N ln N = " + num(N * std::log(N)) + ")", ok});
    }
    {
      double best = 0, all = 0, e = 0;
      bool ok = true;
      for (int t = 0; t < trials; ++t) {
        auto [m1, ok1, edges] = echo_run(n, false, 300 + t);
        auto [m2, ok2, edges2] = echo_run(n, true, 300 + t);
        best += m1, all += m2, e += static_cast<double>(edges);
        ok = ok && ok1 && ok2;
        (void)edges2;
      }
      best /= trials, all /= trials, e /= trials;
      rows.push_back(
          {"echo", "best", n, best, "2E + 2E-(N-1) = " + num(4 * e - (N - 1)) + " (E = " + num(e) + ")", ok});
      rows.push_back({"echo", "all initiate", n, all, ">= best, <= N*2E", ok});
    }
    std::fprintf(stderr, "  N=%u done\n", n);
  }
  std::printf("%-14s %-13s %5s | %12s | %-44s %s\n", "algorithm", "case", "N", "messages", "theory", "leader ok");
  for (auto& r : rows)
    std::printf("%-14s %-13s %5u | %12.1f | %-44s %s\n", r.algorithm.c_str(), r.scenario.c_str(), r.n, r.measured,
                r.theory.c_str(), r.leader_ok ? "yes" : "NO");
  std::ofstream f(csv);
  f << "algorithm,case,n,messages,theory,leader_ok\n";
  for (auto& r : rows)
    f << r.algorithm << ',' << r.scenario << ',' << r.n << ',' << r.measured << ",\"" << r.theory << "\","
      << (r.leader_ok ? 1 : 0) << '\n';
  std::fprintf(stderr, "wrote %s\n", csv.c_str());
  for (auto& r : rows)
    if (!r.leader_ok) return 1;
  return 0;
}
