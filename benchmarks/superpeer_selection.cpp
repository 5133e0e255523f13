// Superpeer selection against the notes' four requirements (van Steen &
// Tanenbaum, "Elections in large-scale systems"), and the Vivaldi
// coordinates it runs on against their paper (Dabek et al., SIGCOMM 2004:
// median relative error ~11% on the King data, 2-D + height).
//
//   random     the baseline: N/ratio nodes drawn at random (the repulsion
//              tokens' starting places), each normal node assigned to its
//              nearest superpeer with room by true RTT (greedy, random order)
//   repulsion  election::superpeer_repulsion over coordinates::vivaldi, a
//              static group as the overlay; normal nodes attach by predicted
//              RTT, in the protocol, with the cap
//   prefix     election::superpeer_prefix over dht::chord (converged ring),
//              k = round(log2(N/ratio)); normal nodes attach to the owner of
//              their prefix key, in the protocol, with the cap
//
// Requirements measured: (1) RTT from each normal node to its nearest
// superpeer and to the one serving it (median, p99); (2) spread: the mean
// RTT from a superpeer to its nearest other superpeer (higher is more even),
// and the worst RTT any node has to its nearest superpeer (coverage);
// (3) superpeers / N against 1/ratio; (4) the load per superpeer (max, mean)
// against the cap, and the nodes left unserved.
//
// Latency model: tests/coordinates/internet_model.hpp (5 regions over a
// 160 ms plane, access links of mean 4 ms, 15% log-normal route noise per
// pair, 5% per-message jitter), set as each link's one-way delay = RTT/2.
//
// Usage: superpeer_selection [--quick] [--csv FILE]
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <numeric>
#include <set>
#include <string>
#include <vector>

#include "dcp/coordinates.hpp"
#include "dcp/dht.hpp"
#include "dcp/election.hpp"
#include "dcp/membership/static_group.hpp"
#include "dcp/sim.hpp"
#include "../tests/coordinates/internet_model.hpp"
#include "../tests/dht/global_view.hpp"

using namespace dcp;
using coordinates_test::internet;
using group_t = membership::static_group<sim::env>;
using viv = coordinates::vivaldi<sim::env, group_t>;
using repulsion = election::superpeer_repulsion<sim::env, group_t>;
using chord = dht::chord<sim::env>;
using prefix = election::superpeer_prefix<sim::env, chord>;

namespace {

struct figures {
  std::string method;
  std::size_t n = 0, superpeers = 0, ratio = 0, cap = 0, unserved = 0;
  double nearest_med = 0, nearest_p99 = 0, served_med = 0, served_p99 = 0, nearest_max = 0;
  double central_med = 0, central_p99 = 0;
  double spread = 0, load_max = 0, load_mean = 0;
  double superpeers_d = 0, unserved_d = 0;  // averaged over seeds
};

/// The mean of each figure over the seeds of one (method, N).
std::vector<figures> averaged(const std::vector<figures>& rows) {
  std::vector<figures> out;
  std::vector<std::size_t> count;
  for (const auto& r : rows) {
    auto it =
        std::find_if(out.begin(), out.end(), [&](const figures& f) { return f.method == r.method && f.n == r.n; });
    if (it == out.end()) {
      out.push_back(figures{r.method, r.n, 0, r.ratio, r.cap});
      count.push_back(0);
      it = out.end() - 1;
    }
    auto& a = *it;
    ++count[static_cast<std::size_t>(it - out.begin())];
    a.superpeers_d += static_cast<double>(r.superpeers), a.unserved_d += static_cast<double>(r.unserved);
    a.nearest_med += r.nearest_med, a.nearest_p99 += r.nearest_p99, a.served_med += r.served_med,
        a.served_p99 += r.served_p99;
    a.nearest_max += r.nearest_max, a.central_med += r.central_med, a.central_p99 += r.central_p99;
    a.spread += r.spread, a.load_max += r.load_max, a.load_mean += r.load_mean;
  }
  for (std::size_t k = 0; k < out.size(); ++k) {
    const double c = static_cast<double>(count[k]);
    auto& a = out[k];
    for (double* v : {&a.superpeers_d, &a.unserved_d, &a.nearest_med, &a.nearest_p99, &a.served_med, &a.served_p99,
                      &a.nearest_max, &a.central_med, &a.central_p99, &a.spread, &a.load_max, &a.load_mean})
      *v /= c;
  }
  return out;
}

/// The figures of a selection: `sp` the superpeers, `serves[i]` the superpeer of normal node i (npos: none).
figures measure(const std::string& method, const internet& net, const std::vector<std::uint32_t>& sp,
                const std::vector<std::size_t>& serves, const std::vector<std::size_t>& central, std::size_t ratio,
                std::size_t cap) {
  figures f;
  f.method = method, f.n = net.size(), f.superpeers = sp.size(), f.ratio = ratio, f.cap = cap;
  const std::set<std::uint32_t> is_sp(sp.begin(), sp.end());
  std::vector<double> nearest, served;
  std::map<std::size_t, std::size_t> load;
  for (std::uint32_t i = 0; i < net.size(); ++i) {
    if (is_sp.contains(i) || sp.empty()) continue;
    double best = 1e300;
    for (auto s : sp) best = std::min(best, net.rtt(i, s));
    nearest.push_back(best);
    if (serves[i] == SIZE_MAX) {
      ++f.unserved;
      continue;
    }
    served.push_back(net.rtt(i, serves[i]));
    ++load[serves[i]];
  }
  f.nearest_med = coordinates_test::median(nearest);
  f.nearest_p99 = coordinates_test::quantile(nearest, 0.99);
  f.nearest_max = nearest.empty() ? 0 : *std::max_element(nearest.begin(), nearest.end());
  std::vector<double> ideal;
  for (std::uint32_t i = 0; i < net.size(); ++i)
    if (!is_sp.contains(i) && central[i] != SIZE_MAX) ideal.push_back(net.rtt(i, central[i]));
  f.central_med = coordinates_test::median(ideal);
  f.central_p99 = coordinates_test::quantile(ideal, 0.99);
  f.served_med = coordinates_test::median(served);
  f.served_p99 = coordinates_test::quantile(served, 0.99);
  double spread = 0;
  for (auto a : sp) {
    double best = 1e300;
    for (auto b : sp)
      if (a != b) best = std::min(best, net.rtt(a, b));
    if (sp.size() > 1) spread += best;
  }
  f.spread = sp.size() > 1 ? spread / static_cast<double>(sp.size()) : 0;
  std::size_t total = 0;
  for (auto s : sp) {
    const auto l = load.contains(s) ? load[s] : 0;
    f.load_max = std::max(f.load_max, static_cast<double>(l));
    total += l;
  }
  f.load_mean = sp.empty() ? 0 : static_cast<double>(total) / static_cast<double>(sp.size());
  return f;
}

/// Each normal node, in a random order, to its nearest superpeer (true RTT) with room: what a node that knew every RTT would do.
std::vector<std::size_t> central_assignment(const internet& net, const std::vector<std::uint32_t>& sp, std::size_t cap,
                                            dcp::rng& r) {
  std::vector<std::size_t> serves(net.size(), SIZE_MAX);
  std::map<std::uint32_t, std::size_t> load;
  std::vector<std::uint32_t> order(net.size());
  std::iota(order.begin(), order.end(), 0u);
  r.shuffle(std::span(order));
  for (auto i : order) {
    if (std::find(sp.begin(), sp.end(), i) != sp.end()) continue;
    std::vector<std::pair<double, std::uint32_t>> ranked;
    for (auto s : sp) ranked.emplace_back(net.rtt(i, s), s);
    std::sort(ranked.begin(), ranked.end());
    for (const auto& [d, s] : ranked)
      if (load[s] < cap) {
        ++load[s];
        serves[i] = s;
        break;
      }
  }
  return serves;
}

membership::static_group_config everyone(std::size_t n) {
  std::vector<address> all;
  for (std::size_t i = 0; i < n; ++i) all.push_back(address::sim(static_cast<std::uint32_t>(i)));
  return membership::static_group_config::of(std::move(all));
}

double vivaldi_error(sim::simulator& w, const internet& net, double q) {
  std::vector<double> errs;
  for (std::uint32_t i = 0; i < net.size(); ++i)
    for (std::uint32_t j = i + 1; j < net.size(); ++j) {
      const auto& a = w.get<viv>(i, viv::default_id).position();
      const auto& b = w.get<viv>(j, viv::default_id).position();
      errs.push_back(std::fabs(distance(a, b) - net.rtt(i, j)) / net.rtt(i, j));
    }
  return coordinates_test::quantile(errs, q);
}

struct vivaldi_row {
  std::size_t n;
  double seconds, median, p90;
};

/// Random and repulsion selections on one world; Vivaldi's error over time.
void coordinates_world(std::size_t n, std::size_t ratio, std::size_t cap, std::uint64_t seed, std::vector<figures>& out,
                       std::vector<vivaldi_row>& viv_rows, double radius_ms, bool with_random) {
  sim::simulator w(seed);
  internet net(n, seed);
  net.install(w);
  election::superpeer_repulsion_config rc;
  for (std::size_t t = 0; t < n / ratio; ++t) {
    address a;
    do a = address::sim(static_cast<std::uint32_t>(w.rng().below(n)));
    while (std::find(rc.initial_holders.begin(), rc.initial_holders.end(), a) != rc.initial_holders.end());
    rc.initial_holders.push_back(a);
  }
  rc.cap = cap;
  rc.round = 1s;
  rc.radius_ms = radius_ms;
  rc.warmup_rounds = 60;  // the coordinates first settle (60 s: see the Vivaldi table)
  rc.move_rounds = 160;
  rc.candidates = 8;
  coordinates::vivaldi_config vc;
  vc.period = 500ms;
  const auto members = everyone(n);
  w.add_nodes(n, [&](sim::node_context& c) {
    auto& g = c.add<group_t>(group_t::default_id, members);
    auto& v = c.add<viv>(viv::default_id, g, vc);
    c.add<repulsion>(repulsion::default_id, g, v, rc);
  });
  // The baseline: the random initial holders, each normal node to the nearest with room (true RTT).
  if (with_random) {
    std::vector<std::uint32_t> sp;
    for (const auto& a : rc.initial_holders) sp.push_back(a.sim_index());
    auto serves = central_assignment(net, sp, cap, w.rng());
    out.push_back(measure("random", net, sp, serves, serves, ratio, cap));
  }
  for (double t : {5.0, 10.0, 20.0, 40.0, 60.0, 100.0, 200.0}) {
    w.run_for(std::chrono::duration_cast<duration>(std::chrono::duration<double>(t) - (w.now() - time_point{})));
    viv_rows.push_back({n, t, vivaldi_error(w, net, 0.5), vivaldi_error(w, net, 0.9)});
  }
  std::vector<std::uint32_t> sp;
  std::vector<std::size_t> serves(n, SIZE_MAX);
  for (std::uint32_t i = 0; i < n; ++i) {
    auto& p = w.get<repulsion>(i, repulsion::default_id);
    if (p.is_superpeer())
      sp.push_back(i);
    else if (p.superpeer())
      serves[i] = p.superpeer()->sim_index();
  }
  out.push_back(
      measure(radius_ms > 0 ? "repulsion r=" + std::to_string(static_cast<int>(radius_ms)) + "ms" : "repulsion r=all",
              net, sp, serves, central_assignment(net, sp, cap, w.rng()), ratio, cap));
}

void prefix_world(std::size_t n, std::size_t ratio, std::size_t cap, std::uint64_t seed, std::vector<figures>& out) {
  sim::simulator w(seed);
  internet net(n, seed);
  net.install(w);
  election::superpeer_prefix_config pc;
  pc.prefix_bits = election::superpeer_prefix_config::bits_for(n, ratio);
  pc.cap = cap;
  pc.max_overflow = 8;
  w.add_nodes(n, [&](sim::node_context& c) {
    auto& r = c.add<chord>(chord::default_id, dht::chord_config{});
    c.add<prefix>(prefix::default_id, r, pc);
  });
  std::vector<dht::contact> sorted;
  for (std::uint32_t i = 0; i < n; ++i) sorted.push_back(w.get<chord>(i, chord::default_id).self());
  std::sort(sorted.begin(), sorted.end());
  for (std::uint32_t i = 0; i < n; ++i) dht::testing::global_view::install(w.get<chord>(i, chord::default_id), sorted);
  w.run_for(20s);
  std::vector<std::uint32_t> sp;
  std::vector<std::size_t> serves(n, SIZE_MAX);
  for (std::uint32_t i = 0; i < n; ++i) {
    auto& p = w.get<prefix>(i, prefix::default_id);
    if (p.is_superpeer())
      sp.push_back(i);
    else if (p.superpeer())
      serves[i] = p.superpeer()->sim_index();
  }
  out.push_back(measure("prefix k=" + std::to_string(pc.prefix_bits), net, sp, serves,
                        central_assignment(net, sp, cap, w.rng()), ratio, cap));
}

}  // namespace

int main(int argc, char** argv) {
  bool quick = false;
  std::string csv = "superpeer_selection.csv";
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
  const std::size_t ratio = 8, cap = 2 * ratio;
  const std::vector<std::size_t> sizes = quick ? std::vector<std::size_t>{64} : std::vector<std::size_t>{128, 256, 512};
  const std::uint64_t seeds = quick ? 1 : 3;
  std::vector<figures> rows;
  std::vector<vivaldi_row> viv_rows;
  for (auto n : sizes) {
    for (std::uint64_t seed = 1; seed <= seeds; ++seed) {
      std::vector<vivaldi_row> vr;
      coordinates_world(n, ratio, cap, seed, rows, seed == 1 ? viv_rows : vr, 60, true);
      if (!quick) coordinates_world(n, ratio, cap, seed, rows, vr, 0, false);
      prefix_world(n, ratio, cap, seed, rows);
      std::fprintf(stderr, "  N=%zu seed %llu done\n", n, static_cast<unsigned long long>(seed));
    }
  }
  std::printf(
      "Vivaldi (2-D + height, cc = ce = 0.25, one ping per 500 ms): relative error |predicted - true| / true over all pairs\n");
  std::printf("%6s %8s | %8s %8s | paper (King, 1740 nodes): median ~0.11\n", "N", "time s", "median", "p90");
  for (const auto& r : viv_rows) std::printf("%6zu %8.0f | %8.3f %8.3f |\n", r.n, r.seconds, r.median, r.p90);
  std::printf("\nSuperpeer selection, ratio 1/%zu, cap %zu normal nodes per superpeer (%llu seed%s each; RTTs in ms)\n",
              ratio, cap, static_cast<unsigned long long>(seeds), seeds > 1 ? "s" : "");
  std::printf("%-18s %5s | %5s %6s | %8s %8s | %8s %8s | %8s %8s | %8s %8s | %8s %6s | %s\n", "method", "N", "SPs",
              "frac", "near med", "near p99", "srv med", "srv p99", "ideal med", "ideal p99", "spread", "worst",
              "load max", "mean", "unserved");
  for (const auto& f : averaged(rows))
    std::printf(
        "%-18s %5zu | %5.1f %6.3f | %8.1f %8.1f | %8.1f %8.1f | %8.1f %8.1f | %8.1f %8.1f | %8.1f %6.1f | %.1f\n",
        f.method.c_str(), f.n, f.superpeers_d, f.superpeers_d / static_cast<double>(f.n), f.nearest_med, f.nearest_p99,
        f.served_med, f.served_p99, f.central_med, f.central_p99, f.spread, f.nearest_max, f.load_max, f.load_mean,
        f.unserved_d);
  std::printf(
      "(means over the seeds; frac target %.3f; near = RTT to the nearest superpeer; srv = to the one serving the node, as\n"
      " the protocol assigned it (random: ideal); ideal = the same superpeers, each node to the nearest with room by true RTT;\n"
      " spread = mean RTT from a superpeer to the nearest other; worst = the largest RTT any node has to its nearest superpeer)\n",
      1.0 / static_cast<double>(ratio));
  std::ofstream f(csv);
  f << "table,method,n,superpeers,fraction,nearest_median_ms,nearest_p99_ms,served_median_ms,served_p99_ms,ideal_median_ms,ideal_p99_ms,spread_ms,worst_ms,load_max,load_mean,cap,unserved\n";
  for (const auto& r : rows)
    f << "selection," << r.method << ',' << r.n << ',' << r.superpeers << ','
      << static_cast<double>(r.superpeers) / static_cast<double>(r.n) << ',' << r.nearest_med << ',' << r.nearest_p99
      << ',' << r.served_med << ',' << r.served_p99 << ',' << r.central_med << ',' << r.central_p99 << ',' << r.spread
      << ',' << r.nearest_max << ',' << r.load_max << ',' << r.load_mean << ',' << r.cap << ',' << r.unserved << '\n';
  f << "table,n,seconds,median_error,p90_error\n";
  for (const auto& r : viv_rows) f << "vivaldi," << r.n << ',' << r.seconds << ',' << r.median << ',' << r.p90 << '\n';
  std::fprintf(stderr, "wrote %s\n", csv.c_str());
}
