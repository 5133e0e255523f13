// SWIM with and without Lifeguard: failure detection time and false
// positives, under message loss and with one slow member.
//
// For each network (loss 0, 1%, 5%, 10%; then 5% loss with one slow member
// whose every message in or out takes 0.2-2.2 s, a member short of CPU) and
// each configuration (plain SWIM: memberlist's defaults without Lifeguard;
// Lifeguard: local health + nacks, dynamic suspicion, buddy system), over many
// seeds:
//   false positives  N members run for `observe` seconds; every `failed`
//                    event about a member that is up counts, in any member's
//                    view ("all views") and in views of healthy members only
//                    (the slow member's own view excluded), about healthy
//                    members only (the slow one excluded: it is truly slow).
//                    Reported per member-hour, and as episodes (distinct
//                    member and incarnation declared dead: one wrong Dead
//                    that spreads to every view is one episode).
//   detection        then a random healthy member crashes: the time until
//                    the first member, and until every live member, holds it
//                    dead (median and p99 over seeds).
//   messages         SWIM messages sent per member per second.
// Lifeguard's paper (Dadgar, Phillips, Currey 2018) reports > 50x fewer false
// positives in its synthetic slow-processing benchmarks, with detection
// latency modestly up (v1) or down (v2). probe 1 s, timeout 500 ms, k = 3,
// suspicion_mult 4 (min = 4 log10 N s), max = 6 min; one-way delay 1-10 ms.
//
// Usage: swim_detection [--quick] [--csv FILE]
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "dcp/membership.hpp"
#include "dcp/sim.hpp"

using namespace dcp;
using swim_t = membership::swim<sim::env>;
using membership::member_event;
using membership::member_state;
constexpr protocol_id sid = swim_t::default_id;

namespace {

struct scenario {
  std::string name;
  double loss;
  bool slow;
};

struct outcome {
  std::size_t fp_all = 0, fp_healthy = 0, fp_episodes = 0;
  double member_hours = 0;
  std::vector<double> first, all;  // detection times, seconds
  std::size_t undetected = 0;
  double msgs_per_member_s = 0;
};

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return NAN;
  std::sort(v.begin(), v.end());
  const auto i = static_cast<std::size_t>(std::ceil(p * static_cast<double>(v.size()))) - 1;
  return v[std::min(i, v.size() - 1)];
}

void run_one(const scenario& sc, bool lifeguard, std::uint32_t n, duration observe, std::uint64_t seed, outcome& out) {
  sim::config net;
  net.network.delay = sim::latency::uniform(1ms, 10ms);
  net.network.loss = sc.loss;
  sim::simulator w(seed, net);
  struct seen {
    std::uint32_t observer;
    member_event e;
  };
  auto log = std::make_shared<std::vector<seen>>();
  auto cfg = lifeguard ? membership::swim_config{} : membership::swim_config::without_lifeguard();
  cfg.seeds = {address::sim(0)};
  for (std::uint32_t i = 0; i < n; ++i) {
    w.add_node([cfg, i, log](sim::node_context& c) {
      c.add<swim_t>(sid, cfg).on_event([log, i](const member_event& e) { log->push_back({i, e}); });
    });
    w.run_for(10ms);
  }
  auto converged = [&] {
    for (std::uint32_t i = 0; i < n; ++i)
      if (w.find<swim_t>(i, sid)->num_members() != n) return false;
    return true;
  };
  w.run_until(converged, w.now() + 120s);
  w.run_for(5s);
  const std::uint32_t slow = sc.slow ? n - 1 : n;  // n: nobody
  if (sc.slow) {
    sim::link l;
    l.delay = sim::latency::uniform(200ms, 2200ms);
    l.loss = sc.loss;
    for (std::uint32_t i = 0; i + 1 < n; ++i) {
      w.set_link(slow, i, l);
      w.set_link(i, slow, l);
    }
  }
  log->clear();
  const auto sent_before = w.metrics().of(sid).sent;
  const time_point t0 = w.now();
  w.run_for(observe);
  out.msgs_per_member_s += static_cast<double>(w.metrics().of(sid).sent - sent_before) / n / to_seconds(w.now() - t0);
  std::vector<std::pair<std::uint32_t, std::uint64_t>> episodes;  // (member, incarnation) declared dead
  for (auto& s : *log) {
    if (s.e.what != member_event::kind::failed) continue;
    const auto about = s.e.member.node.sim_index();
    if (about == slow) continue;  // the slow member is truly slow: not a false positive
    ++out.fp_all;
    if (s.observer != slow) ++out.fp_healthy;
    episodes.emplace_back(about, s.e.member.incarnation);
  }
  std::sort(episodes.begin(), episodes.end());
  out.fp_episodes += static_cast<std::size_t>(std::unique(episodes.begin(), episodes.end()) - episodes.begin());
  out.member_hours += n * to_seconds(observe) / 3600;

  // Detection: crash a healthy member other than the seed and the slow one.
  const auto victim = 1 + static_cast<std::uint32_t>(w.rng().below(n - 2));
  const time_point crash = w.now();
  w.crash(victim);
  std::optional<time_point> first;
  auto done = [&] {
    bool all = true;
    for (std::uint32_t i = 0; i < n; ++i) {
      if (i == victim) continue;
      auto m = w.find<swim_t>(i, sid)->member(address::sim(victim));
      const bool dead = !m || m->state == member_state::dead;
      if (dead && !first) first = w.now();
      all = all && dead;
    }
    return all;
  };
  w.run_until(done, crash + 600s);
  if (first) out.first.push_back(to_seconds(*first - crash));
  if (done())
    out.all.push_back(to_seconds(w.now() - crash));
  else
    ++out.undetected;
}

}  // namespace

int main(int argc, char** argv) {
  bool quick = false;
  std::string csv = "swim_detection.csv";
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
  const std::uint32_t n = quick ? 16 : 32;
  const int seeds = quick ? 2 : 30;
  const duration observe = quick ? 60s : 600s;
  const std::vector<scenario> scenarios = {{"loss 0%", 0.0, false},
                                           {"loss 1%", 0.01, false},
                                           {"loss 5%", 0.05, false},
                                           {"loss 10%", 0.10, false},
                                           {"5% + slow member", 0.05, true}};

  struct row {
    std::string scenario;
    bool lifeguard;
    outcome o;
  };
  std::vector<row> rows;
  for (auto& sc : scenarios) {
    for (bool lg : {false, true}) {
      row r{sc.name, lg, {}};
      for (int s = 0; s < seeds; ++s) run_one(sc, lg, n, observe, 1000 + s, r.o);
      r.o.msgs_per_member_s /= seeds;
      rows.push_back(std::move(r));
      std::fprintf(stderr, "  %s, %s done\n", sc.name.c_str(), lg ? "lifeguard" : "swim");
    }
  }

  std::printf("SWIM vs Lifeguard, N = %u, %d seeds x %.0f s observed each\n\n", n, seeds, to_seconds(observe));
  std::printf("%-18s %-9s | %7s %7s %8s %11s | %8s %8s %8s %5s | %8s\n", "network", "config", "FP all", "healthy",
              "episodes", "FP/member-h", "first50", "all50", "all99", "miss", "msg/m/s");
  for (auto& r : rows) {
    auto& o = r.o;
    std::printf("%-18s %-9s | %7zu %7zu %8zu %11.3f | %7.1fs %7.1fs %7.1fs %5zu | %8.2f\n", r.scenario.c_str(),
                r.lifeguard ? "lifeguard" : "swim", o.fp_all, o.fp_healthy, o.fp_episodes,
                static_cast<double>(o.fp_all) / o.member_hours, percentile(o.first, 0.5), percentile(o.all, 0.5),
                percentile(o.all, 0.99), o.undetected, o.msgs_per_member_s);
  }
  std::printf("\nfalse positives, SWIM / Lifeguard (paper: > 50x):\n");
  for (std::size_t i = 0; i + 1 < rows.size(); i += 2) {
    const double a = static_cast<double>(rows[i].o.fp_all), b = static_cast<double>(rows[i + 1].o.fp_all);
    if (a == 0 && b == 0)
      std::printf("  %-18s none in either\n", rows[i].scenario.c_str());
    else if (b == 0)
      std::printf("  %-18s %.0f vs 0 (> %.0fx)\n", rows[i].scenario.c_str(), a, a);
    else
      std::printf("  %-18s %.1fx\n", rows[i].scenario.c_str(), a / b);
  }

  std::ofstream f(csv);
  f << "network,loss,slow,config,n,seeds,observed_s,fp_all,fp_healthy_views,fp_episodes,fp_per_member_hour,detect_first_median_s,"
       "detect_all_median_s,detect_all_p99_s,undetected,messages_per_member_s\n";
  for (std::size_t i = 0; i < rows.size(); ++i) {
    auto& r = rows[i];
    auto& o = r.o;
    const auto& sc = scenarios[i / 2];
    f << '"' << r.scenario << "\"," << sc.loss << ',' << (sc.slow ? 1 : 0) << ','
      << (r.lifeguard ? "lifeguard" : "swim") << ',' << n << ',' << seeds << ',' << to_seconds(observe) << ','
      << o.fp_all << ',' << o.fp_healthy << ',' << o.fp_episodes << ','
      << static_cast<double>(o.fp_all) / o.member_hours << ',' << percentile(o.first, 0.5) << ','
      << percentile(o.all, 0.5) << ',' << percentile(o.all, 0.99) << ',' << o.undetected << ',' << o.msgs_per_member_s
      << '\n';
  }
  std::fprintf(stderr, "wrote %s\n", csv.c_str());
  return 0;
}
