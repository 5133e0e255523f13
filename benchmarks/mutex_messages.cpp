// Messages per critical-section entry and synchronization delay of every
// dcp mutex, at light and heavy load, beside the textbook figures
// (Kshemkalyani & Singhal ch. 9; see /work/shared/REFERENCES.md).
//
// Simulation, constant one-way delay T = 1 ms, FIFO links, no faults.
//   light load  one request at a time, by a random member; the network is let
//               go quiet between entries (token ring: an idle gap of 10 T, during
//               which its token keeps circulating). Per entry: messages, and the
//               response time (request to grant) in T.
//   heavy load  every member asks again as soon as it leaves; a critical section
//               lasts T. Per entry: messages; synchronization delay = time from
//               one exit to the next entry, in T.
// "exact" says whether every single light-load entry cost one of the theory's
// exact figures (where the theory gives one; for Maekawa, 3(K−1) with the
// requester's grid quorum of K members). The program fails if one did not.
//
// Usage: mutex_messages [--quick] [--csv FILE]
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <set>
#include <string>
#include <vector>

#include "dcp/group.hpp"
#include "dcp/mutex.hpp"
#include "dcp/sim.hpp"

using namespace dcp;

namespace {
constexpr duration T = 1ms;

struct row {
  std::string algorithm;
  std::uint32_t n;
  double light_msgs, light_response, heavy_msgs, heavy_sync;
  std::string theory_msgs, theory_sync;
  std::string exact;  // "yes", "NO", or "-" where the theory is not exact
};

sim::config network() {
  sim::config c;
  c.network.delay = sim::latency::constant(T);
  c.fifo = true;
  return c;
}

double in_T(duration d) { return to_seconds(d) / to_seconds(T); }

/// `exact(n)` gives the per-entry message counts the theory allows (empty: not exact).
template <class M, class Config>
row measure(std::string name, std::uint32_t n, Config cfg, int light_entries, int heavy_rounds,
            std::function<std::set<std::uint64_t>(std::uint32_t)> exact, std::string theory_msgs,
            std::string theory_sync, bool never_quiet = false) {
  row out{name, n, 0, 0, 0, 0, theory_msgs, theory_sync, "-"};
  const protocol_id id = M::default_id;
  {  // light load
    sim::simulator w(n * 7919u + 1, network());
    w.add_nodes(n, [=](sim::node_context& c) { c.add<M>(id, group::static_group::sim(n), cfg); });
    w.run_for(10 * T);
    const auto allowed = exact ? exact(n) : std::set<std::uint64_t>{};
    bool all_exact = true;
    double msgs = 0, response = 0;
    for (int k = 0; k < light_entries; ++k) {
      const auto i = static_cast<std::uint32_t>(w.rng().below(n));
      const auto before = w.metrics().of(id).sent;
      const auto asked = w.now();
      bool granted = false;
      w.get<M>(i, id).lock([&](std::error_code ec) { granted = !ec; });
      w.run_posted();  // a grant known at once (the token is here) completes right after the call
      if (!granted) w.run_until([&] { return granted; }, w.now() + 100s);
      if (!granted) {
        std::fprintf(stderr, "%s N=%u: a light-load request was not granted\n", name.c_str(), n);
        std::exit(1);
      }
      response += in_T(w.now() - asked);
      w.get<M>(i, id).unlock();
      if (never_quiet)
        w.run_for(10 * T);
      else
        w.run_until_quiet(w.now() + 100s);
      const auto cost = w.metrics().of(id).sent - before;
      msgs += static_cast<double>(cost);
      if (!allowed.empty() && !allowed.contains(cost)) all_exact = false;
    }
    out.light_msgs = msgs / light_entries;
    out.light_response = response / light_entries;
    if (!allowed.empty()) out.exact = all_exact ? "yes" : "NO";
  }
  {  // heavy load
    sim::simulator w(n * 104729u + 3, network());
    w.add_nodes(n, [=](sim::node_context& c) { c.add<M>(id, group::static_group::sim(n), cfg); });
    w.run_for(10 * T);
    std::vector<int> left(n, heavy_rounds);
    int entries = 0, exits = 0;
    time_point last_exit{};
    double gaps = 0;
    int gap_count = 0;
    std::function<void(std::uint32_t)> ask = [&](std::uint32_t i) {
      w.get<M>(i, id).lock([&, i](std::error_code ec) {
        if (ec) {
          std::fprintf(stderr, "%s N=%u: heavy-load error %s\n", name.c_str(), n, ec.message().c_str());
          std::exit(1);
        }
        if (entries > 0) {
          gaps += in_T(w.now() - last_exit);
          ++gap_count;
        }
        ++entries;
        w.after(T, [&, i] {
          w.get<M>(i, id).unlock();
          last_exit = w.now();
          ++exits;
          if (--left[i] > 0) ask(i);
        });
      });
    };
    const auto before = w.metrics().of(id).sent;
    for (std::uint32_t i = 0; i < n; ++i) ask(i);
    const int total = static_cast<int>(n) * heavy_rounds;
    w.run_until([&] { return exits >= total; }, w.now() + 10000s);
    if (!never_quiet) w.run_until_quiet(w.now() + 100s);  // the last releases count too
    if (exits < total) {
      std::fprintf(stderr, "%s N=%u: heavy load stalled at %d of %d entries\n", name.c_str(), n, entries, total);
      std::exit(1);
    }
    out.heavy_msgs = static_cast<double>(w.metrics().of(id).sent - before) / entries;
    out.heavy_sync = gap_count ? gaps / gap_count : 0;
  }
  return out;
}

std::string fmt(double v) {
  char b[32];
  std::snprintf(b, sizeof b, "%.2f", v);
  return b;
}
std::string num(double v) {
  char b[32];
  std::snprintf(b, sizeof b, "%.0f", v);
  return b;
}

}  // namespace

int main(int argc, char** argv) {
  bool quick = false;
  std::string csv = "mutex_messages.csv";
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
  const int light = quick ? 20 : 50, heavy = quick ? 2 : 3;
  std::vector<row> rows;
  auto note = [](const row& r) { std::fprintf(stderr, "  %-16s N=%-4u done\n", r.algorithm.c_str(), r.n); };
  for (auto n : sizes) {
    const double N = n;
    const auto k = static_cast<double>(mutex::grid_quorum(0, n).size());  // grid quorum size, ≈ 2√N − 1
    using namespace mutex;
    rows.push_back(measure<centralized<sim::env>>(
        "centralized", n, centralized_config{}, light, heavy,
        [](std::uint32_t) {
          return std::set<std::uint64_t>{3, 0};
        },
        "3 (0 at the coordinator)", "2T"));
    note(rows.back());
    rows.push_back(measure<ricart_agrawala<sim::env>>(
        "ricart_agrawala", n, ricart_agrawala_config{}, light, heavy,
        [](std::uint32_t m) { return std::set<std::uint64_t>{2 * (m - 1)}; }, "2(N-1) = " + num(2 * (N - 1)), "T"));
    note(rows.back());
    rows.push_back(measure<lamport<sim::env>>(
        "lamport", n, lamport_config{}, light, heavy,
        [](std::uint32_t m) { return std::set<std::uint64_t>{3 * (m - 1)}; }, "3(N-1) = " + num(3 * (N - 1)), "T"));
    note(rows.back());
    rows.push_back(measure<suzuki_kasami<sim::env>>(
        "suzuki_kasami", n, suzuki_kasami_config{}, light, heavy,
        [](std::uint32_t m) {
          return std::set<std::uint64_t>{m, 0};
        },
        "N = " + num(N) + " or 0", "T (0 if held)"));
    note(rows.back());
    // Light load: 3(K−1) exactly for a request by a member with quorum size K.
    auto maekawa_exact = [](std::uint32_t m) {
      std::set<std::uint64_t> s;
      for (std::size_t r = 0; r < m; ++r) s.insert(3 * (mutex::grid_quorum(r, m).size() - 1));
      return s;
    };
    rows.push_back(measure<maekawa<sim::env>>("maekawa", n, maekawa_config{}, light, heavy, maekawa_exact,
                                              "3sqrtN..5sqrtN = " + num(3 * std::sqrt(N)) + ".." +
                                                  num(5 * std::sqrt(N)) + "; grid K=" + num(k) +
                                                  ": 3(K-1)..5(K-1) = " + num(3 * (k - 1)) + ".." + num(5 * (k - 1)),
                                              "2T"));
    note(rows.back());
    rows.push_back(measure<raymond<sim::env>>("raymond", n, raymond_config{}, light, heavy, {},
                                              "O(log N), ~4 heavy; log2 N = " + fmt(std::log2(N)),
                                              "T log N / 2 = " + fmt(std::log2(N) / 2) + "T"));
    note(rows.back());
    token_ring_config ring;
    ring.token_timeout = 3600s;  // no regeneration in a fault-free benchmark
    rows.push_back(measure<token_ring<sim::env>>("token_ring", n, ring, light, heavy, {}, "1 to inf (idle gap 10T)",
                                                 "1 to N-1 hops", true));
    note(rows.back());
  }

  std::printf("%-16s %5s | %10s %11s | %10s %10s | %-56s %-20s %s\n", "algorithm", "N", "light msg", "response/T",
              "heavy msg", "sync/T", "theory msg per entry", "theory sync delay", "exact");
  for (auto& r : rows)
    std::printf("%-16s %5u | %10.2f %11.2f | %10.2f %10.2f | %-56s %-20s %s\n", r.algorithm.c_str(), r.n, r.light_msgs,
                r.light_response, r.heavy_msgs, r.heavy_sync, r.theory_msgs.c_str(), r.theory_sync.c_str(),
                r.exact.c_str());
  std::ofstream f(csv);
  f << "algorithm,n,light_messages_per_entry,light_response_T,heavy_messages_per_entry,heavy_sync_delay_T,theory_messages,theory_sync,exact\n";
  for (auto& r : rows)
    f << r.algorithm << ',' << r.n << ',' << r.light_msgs << ',' << r.light_response << ',' << r.heavy_msgs << ','
      << r.heavy_sync << ",\"" << r.theory_msgs << "\",\"" << r.theory_sync << "\"," << r.exact << '\n';
  std::fprintf(stderr, "wrote %s\n", csv.c_str());
  for (auto& r : rows)
    if (r.exact == "NO") return 1;  // a figure the theory fixes exactly was not met
  return 0;
}
