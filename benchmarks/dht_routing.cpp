// DHT routing and storage against the papers, in the simulator.
//
//   dht_routing [--quick] [--global-view] [--only hops|fail|churn]
//
// 1. hops: mean and 99th-percentile lookup hops against N = 2^8 .. 2^16 and
//    10^5 for Chord, Pastry and Kademlia, beside ½·log2 N (Chord, §6.2),
//    log16 N and its ceiling (Pastry's bound) and log_2k N (Kademlia: the
//    bucket holding the target covers a subtree in which k random contacts
//    put the closest about log2 k bits deeper, so each request gains
//    1 + log2 k bits of the log2 N that separate a random node from the
//    owner). Hops are counted to reach the owner (see lookup_result::hops).
//    Routing state comes from real joins (one at a time through bootstrap()
//    with address-only contacts, then 60 s of maintenance), as a deployment
//    builds it. --global-view fills it from global knowledge instead (the
//    test helper tests/dht/global_view.hpp), a reference for 10^5 nodes, not
//    the figure to quote: it gave Kademlia 16-19% fewer hops (issue 16).
// 2. fail: lookup success right after 10%, 25%, 50% of nodes crash at once
//    (silently: no transport error, only timeouts), and again after 60 s of
//    the protocols' own repair. Success = the owner returned is the live node
//    that truly owns the key.
// 3. churn: nodes with exponential session times (median 1 h, 10 min,
//    1.4 min) leave by crashing and are replaced by fresh nodes (new id, new
//    address, empty store) joining through the protocol; a workload of puts,
//    gets and lookups runs over the store. Reports lookup success (the owner
//    returned is the live owner when the lookup was issued or when it
//    completed), the share of gets that return the latest acknowledged put,
//    and maintenance traffic per node per second. Operations issued by a node
//    that crashes before the answer are not counted.
//
// Prints tables, writes dht_hops.csv, dht_fail.csv, dht_churn.csv in the
// working directory (plot: gnuplot benchmarks/dht_hops.gp).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "dcp/dht.hpp"
#include "dcp/sim.hpp"
#include "../tests/dht/global_view.hpp"  // --global-view only: converged state without joins

using namespace dcp;
using chord = dht::chord<sim::env>;
using pastry = dht::pastry<sim::env>;
using kademlia = dht::kademlia<sim::env>;

namespace {

bool quick = false;
bool global_view = false;   // fill state from global knowledge instead of real joins (a reference, not the figure)
std::string router_filter;  // empty: every router
bool wanted(const char* router) { return router_filter.empty() || router_filter == router; }

template <class R> struct traits;
template <> struct traits<chord> {
  static constexpr const char* name = "chord";
  static dht::chord_config config() {
    dht::chord_config c;
    return c;
  }
};
template <> struct traits<pastry> {
  static constexpr const char* name = "pastry";
  static dht::pastry_config config() {
    dht::pastry_config c;
    return c;
  }
};
template <> struct traits<kademlia> {
  static constexpr const char* name = "kademlia";
  static dht::kademlia_config config() {
    dht::kademlia_config c;
    c.refresh_interval = std::chrono::minutes(5);  // under churn; the paper's hour suits long sessions
    return c;
  }
};

sim::config network() {
  sim::config c;
  c.network.delay = sim::latency::uniform(5ms, 50ms);
  c.report_unreachable = false;  // crashed nodes are silent: found by timeouts
  return c;
}

/// A world of n nodes running R, built by real joins: one node every join_gap, each
/// through bootstrap() with the address (not the id) of a random node that has joined,
/// then `settle` of the protocols' own maintenance. With --global-view, state is filled
/// from global knowledge instead (tests/dht/global_view.hpp), for comparison only.
template <class R> struct converged {
  sim::simulator world;
  std::vector<dht::contact> sorted;
  explicit converged(std::uint64_t seed, std::size_t n) : world(seed, network()) {
    auto cfg = traits<R>::config();
    if (global_view) {
      world.add_nodes(n, [cfg](sim::node_context& ctx) { ctx.add<R>(R::default_id, cfg); });
      install();
      return;
    }
    std::vector<sim::node_index> joined;
    for (std::size_t k = 0; k < n; ++k) {
      world.add_node([&, cfg](sim::node_context& ctx) {
        auto& r = ctx.add<R>(R::default_id, cfg);
        if (k == 0) return r.bootstrap({});
        std::vector<dht::contact> seeds;
        for (int t = 0; t < 8 && seeds.empty(); ++t) {
          auto i = joined[world.rng().below(joined.size())];
          if (R* s = at(i); s && s->joined()) seeds.push_back({node_id{}, s->self().addr});
        }
        if (seeds.empty()) seeds.push_back({node_id{}, address::sim(0)});
        r.bootstrap(seeds);
      });
      joined.push_back(static_cast<sim::node_index>(k));
      world.run_for(join_gap(n));
    }
    world.run_for(60s);  // fix-fingers, leaf-set exchanges and bucket refreshes settle
    sorted.clear();
    for (sim::node_index i = 0; i < world.size(); ++i)
      if (R* r = at(i); r && r->joined()) sorted.push_back(r->self());
    std::sort(sorted.begin(), sorted.end());
  }
  static duration join_gap(std::size_t n) { return n <= 1024 ? 50ms : n <= 4096 ? 20ms : 5ms; }
  R* at(sim::node_index i) { return world.find<R>(i, R::default_id); }
  void install() {
    sorted.clear();
    for (sim::node_index i = 0; i < world.size(); ++i)
      if (R* r = at(i)) sorted.push_back(r->self());
    std::sort(sorted.begin(), sorted.end());
    for (sim::node_index i = 0; i < world.size(); ++i)
      if (R* r = at(i)) dht::testing::global_view::install(*r, sorted);
  }
  dht::contact owner(const node_id& key) const {
    return *std::min_element(sorted.begin(), sorted.end(), [&](const dht::contact& a, const dht::contact& b) {
      return R::distance(key, a.id) < R::distance(key, b.id);
    });
  }
  struct result {
    std::vector<unsigned> hops;
    std::size_t ok = 0, issued = 0;
  };
  result lookups(std::size_t count) {
    result res;
    std::vector<sim::node_index> up;
    for (sim::node_index i = 0; i < world.size(); ++i)
      if (at(i)) up.push_back(i);
    std::size_t done = 0;
    for (std::size_t q = 0; q < count; ++q) {
      const node_id key = node_id::random(world.rng());
      const auto expect = owner(key).addr;
      ++res.issued;
      at(up[world.rng().below(up.size())])->lookup(key, 1, [&, expect](dcp::result<dht::lookup_result> r) {
        ++done;
        if (!r || r->owners.empty()) return;
        res.hops.push_back(r->hops);
        if (r->owners.front().addr == expect) ++res.ok;
      });
      world.run_for(2ms);  // spread them out a little
    }
    world.run_until([&] { return done == count; }, world.now() + 120s);
    return res;
  }
};

double mean(const std::vector<unsigned>& v) {
  double s = 0;
  for (auto x : v) s += x;
  return v.empty() ? 0 : s / static_cast<double>(v.size());
}
unsigned p99(std::vector<unsigned> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<std::size_t>(std::ceil(0.99 * static_cast<double>(v.size()))) - 1)];
}

double theory(const std::string& router, double n) {
  if (router == "chord") return 0.5 * std::log2(n);
  if (router == "pastry") return std::log(n) / std::log(16.0);
  return std::log(n) / std::log(40.0);  // kademlia, k = 20: log_{2k} N
}

template <class R> void hops(std::ofstream& csv, const std::vector<std::size_t>& sizes, std::size_t count) {
  for (auto n : sizes) {
    const auto t0 = std::chrono::steady_clock::now();
    converged<R> w(n * 7 + 1, n);
    auto res = w.lookups(count);
    const double m = mean(res.hops), th = theory(traits<R>::name, static_cast<double>(n));
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("%-9s %7zu %8.2f %5u %8.2f %8.2f %7.1f%% %8.4f %6.1fs\n", traits<R>::name, n, m, p99(res.hops), th,
                std::log(static_cast<double>(n)) / std::log(16.0), 100.0 * (m - th) / th,
                static_cast<double>(res.ok) / static_cast<double>(res.issued), secs);
    std::fflush(stdout);
    csv << traits<R>::name << ',' << n << ',' << m << ',' << p99(res.hops) << ',' << th << ','
        << static_cast<double>(res.ok) / static_cast<double>(res.issued) << '\n';
  }
}

template <class R> void failures(std::ofstream& csv, std::size_t n, std::size_t count) {
  for (double frac : {0.10, 0.25, 0.50}) {
    converged<R> w(static_cast<std::uint64_t>(frac * 1000) + 5, n);
    w.world.run_for(5s);
    std::vector<sim::node_index> all(n);
    for (sim::node_index i = 0; i < n; ++i) all[i] = i;
    w.world.rng().shuffle(std::span(all));
    for (std::size_t k = 0; k < static_cast<std::size_t>(frac * static_cast<double>(n)); ++k) w.world.crash(all[k]);
    // the truth: owners among the survivors
    w.sorted.clear();
    for (sim::node_index i = 0; i < n; ++i)
      if (auto* r = w.at(i)) w.sorted.push_back(r->self());
    std::sort(w.sorted.begin(), w.sorted.end());
    auto now = w.lookups(count);
    w.world.run_for(60s);
    auto later = w.lookups(count);
    const double s0 = static_cast<double>(now.ok) / static_cast<double>(now.issued);
    const double s1 = static_cast<double>(later.ok) / static_cast<double>(later.issued);
    std::printf("%-9s %6zu %5.0f%% %10.4f %10.4f %8.2f\n", traits<R>::name, n, 100 * frac, s0, s1, mean(now.hops));
    std::fflush(stdout);
    csv << traits<R>::name << ',' << n << ',' << frac << ',' << s0 << ',' << s1 << '\n';
  }
}

template <class R> void churn(std::ofstream& csv, std::size_t n, duration median, duration length, int rate) {
  using S = dht::store<sim::env, R>;
  sim::simulator world(static_cast<std::uint64_t>(median.count() % 1000003) + 17, network());
  std::optional<sim::node_index> founder;
  auto rcfg = traits<R>::config();
  dht::store_config scfg;
  scfg.replicas = 3;
  scfg.sync_interval = 10s;
  std::vector<sim::node_index> live;  // nodes up now, joined or joining
  auto joined_node = [&](sim::node_index not_me) -> std::optional<sim::node_index> {
    for (int t = 0; t < 64 && !live.empty(); ++t) {
      auto i = live[world.rng().below(live.size())];
      if (i == not_me) continue;
      if (auto* r = world.find<R>(i, R::default_id); r && r->joined()) return i;
    }
    return std::nullopt;
  };
  sim::setup_function setup = [&](sim::node_context& ctx) {
    auto& r = ctx.add<R>(R::default_id, rcfg);
    ctx.add<S>(S::default_id, r, scfg);
    live.push_back(ctx.index());
    if (!founder) {
      founder = ctx.index();
      r.bootstrap({});
      return;
    }
    std::vector<dht::contact> seeds;
    for (int k = 0; k < 3; ++k)
      if (auto s = joined_node(ctx.index())) seeds.push_back(world.get<R>(*s, R::default_id).self());
    if (seeds.empty()) seeds.push_back({node_id{}, address::sim(*founder)});
    r.bootstrap(seeds);
  };
  // warm-up: everyone joins through the protocol (no global view here), one node every
  // 150 ms through random members that have joined. (Chord's stabilization converges
  // slowly when hundreds of nodes join through one founder in the same instant: 139 of
  // 300 successors were still wrong 90 s later; Pastry and Kademlia do not mind.)
  for (std::size_t k = 0; k < n; ++k) {
    world.add_node(setup);
    world.run_for(150ms);
  }
  world.run_for(60s);
  // churn: exponential sessions; a node that ends its session crashes for good and is
  // replaced at once by a fresh node (new id, new address, empty store) joining through
  // live members, as in the churn studies (Rhea et al. 2004), so N stays constant
  const double mean_s = to_seconds(median) / std::log(2.0);
  std::function<void(sim::node_index)> schedule = [&](sim::node_index i) {
    world.after(duration(static_cast<std::int64_t>(world.rng().exponential(mean_s) * 1e9)), [&, i] {
      world.crash(i);
      std::erase(live, i);
      schedule(world.add_node(setup));
    });
  };
  for (sim::node_index i = 0; i < n; ++i) schedule(i);
  world.run_for(30s);
  {
    std::size_t j = 0;
    for (auto i : live)
      if (auto* r = world.find<R>(i, R::default_id); r && r->joined()) ++j;
    // how many joined nodes have a wrong first replica for their own id + 1 (Chord: a wrong successor)
    std::vector<dht::contact> all;
    for (auto i : live)
      if (auto* r = world.find<R>(i, R::default_id); r && r->joined()) all.push_back(r->self());
    std::size_t wrong = 0;
    for (auto& c : all) {
      const node_id k = c.id + node_id::pow2(0);
      auto best = *std::min_element(all.begin(), all.end(), [&](const dht::contact& a, const dht::contact& b) {
        return R::distance(k, a.id) < R::distance(k, b.id);
      });
      auto mine = world.find<R>(c.addr.sim_index(), R::default_id)->closest(k, 1);
      wrong += mine.empty() || mine.front().addr != best.addr;
    }
    std::fprintf(stderr, "%s: %zu of %zu joined after warm-up, %zu with a wrong view of their next node\n",
                 traits<R>::name, j, live.size(), wrong);
  }
  world.metrics().reset();
  const time_point start = world.now();
  // workload: `rate` times a second a put, a get of a key already written, and a lookup
  struct latest_t {
    std::string value;
    std::uint64_t version = 0;
  };
  std::map<std::string, latest_t> latest;  // per key: the newest acknowledged put
  struct pending_op {
    sim::node_index origin;
    bool done;
  };
  std::vector<pending_op> pending, get_pending;  // issued: one whose origin crashed never completes
  std::size_t lookups = 0, lookups_ok = 0, lookups_error = 0, gets = 0, gets_latest = 0, gets_error = 0, puts = 0,
              puts_ok = 0;
  std::uint64_t counter = 0;
  std::function<void()> tick = [&] {
    auto a = joined_node(sim::node_index(-1)), b = joined_node(sim::node_index(-1)),
         c = joined_node(sim::node_index(-1));
    if (a) {
      const std::string key = "k" + std::to_string(world.rng().below(100));
      const std::string value = std::to_string(++counter);
      ++puts;
      world.get<S>(*a, S::default_id).put(key, to_bytes(value), [&, key, value](dcp::result<std::uint64_t> v) {
        if (!v) return;
        ++puts_ok;
        auto& l = latest[key];
        if (*v > l.version) l = {value, *v};
      });
    }
    if (b && !latest.empty()) {
      auto it = latest.begin();
      std::advance(it, static_cast<long>(world.rng().below(latest.size())));
      const std::string key = it->first, want = it->second.value;
      const std::uint64_t want_v = it->second.version;
      ++gets;
      get_pending.push_back({*b, false});
      const std::size_t slot = get_pending.size() - 1;
      world.get<S>(*b, S::default_id).get(key, [&, key, want, want_v, slot](dcp::result<dht::stored_value> v) {
        get_pending[slot].done = true;
        // the latest acknowledged at issue time, or a newer one written since
        if (!v)
          ++gets_error;
        else if (as_string(v->value) == want || v->version > want_v)
          ++gets_latest;
      });
    }
    if (c) {
      const node_id key = node_id::random(world.rng());
      ++lookups;
      // correct if the owner returned is the live node closest to the key when the lookup
      // was issued or when it completed: responsibility that moves while a lookup runs
      // (a join, a crash) can be reported either way
      auto owner_now = [&, key]() -> address {
        std::optional<dht::contact> best;
        for (auto i : live)
          if (auto* x = world.find<R>(i, R::default_id); x && x->joined())
            if (!best || R::distance(key, x->self().id) < R::distance(key, best->id)) best = x->self();
        return best ? best->addr : address{};
      };
      const address at_issue = owner_now();
      const sim::node_index origin = *c;
      pending.push_back({origin, false});
      const std::size_t slot = pending.size() - 1;
      world.get<R>(*c, R::default_id)
          .lookup(key, 1, [&, key, at_issue, slot, owner_now](dcp::result<dht::lookup_result> r) {
            pending[slot].done = true;
            if (!r || r->owners.empty()) return void(++lookups_error);
            const address got = r->owners.front().addr, now = owner_now();
            if (got == at_issue || got == now) ++lookups_ok;
          });
    }
    if (world.now() - start < length) world.after(duration(1s) / rate, tick);
  };
  world.after(0s, tick);
  world.run_for(length);
  const double secs = to_seconds(world.now() - start);
  const auto router = world.metrics().of(R::default_id), kv = world.metrics().of(S::default_id);
  // operations still running finish (or fail) within their own timeouts; one never answered counts as failed
  world.run_for(60s);
  std::size_t orphaned = 0;  // issued by a node that crashed before the answer: not the overlay's failure
  for (auto& p : pending)
    if (!p.done && !world.find<R>(p.origin, R::default_id)) ++orphaned;
  lookups -= orphaned;
  for (auto& p : get_pending)
    if (!p.done && !world.find<R>(p.origin, R::default_id)) --gets;
  const double msgs = static_cast<double>(router.sent) / secs / static_cast<double>(n);
  const double bytes = static_cast<double>(router.sent_bytes) / secs / static_cast<double>(n);
  const double kv_bytes = static_cast<double>(kv.sent_bytes) / secs / static_cast<double>(n);
  const double ls = lookups ? static_cast<double>(lookups_ok) / static_cast<double>(lookups) : 0;
  const double gs = gets ? static_cast<double>(gets_latest) / static_cast<double>(gets) : 0;
  const double ps = puts ? static_cast<double>(puts_ok) / static_cast<double>(puts) : 0;
  std::printf(
      "%-9s %5zu %8.1fmin %9.4f %9.4f %7.4f %9.2f %9.1f %9.1f   (%zu lookups: %zu errors, %zu wrong; %zu gets: %zu errors)\n",
      traits<R>::name, n, to_seconds(median) / 60, ls, gs, ps, msgs, bytes, kv_bytes, lookups, lookups_error,
      lookups - lookups_ok - lookups_error, gets, gets_error);
  std::fflush(stdout);
  csv << traits<R>::name << ',' << n << ',' << to_seconds(median) << ',' << ls << ',' << gs << ',' << ps << ',' << msgs
      << ',' << bytes << ',' << kv_bytes << '\n';
}

}  // namespace

int main(int argc, char** argv) {
  std::string only;
  long median_s = 0;
  std::size_t n_override = 0;  // churn: N
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--quick"))
      quick = true;
    else if (!std::strcmp(argv[i], "--global-view"))
      global_view = true;
    else if (!std::strcmp(argv[i], "--only") && i + 1 < argc)
      only = argv[++i];
    else if (!std::strcmp(argv[i], "--router") && i + 1 < argc)
      router_filter = argv[++i];
    else if (!std::strcmp(argv[i], "--median") && i + 1 < argc)
      median_s = std::atol(argv[++i]);
    else if (!std::strcmp(argv[i], "--n") && i + 1 < argc)
      n_override = static_cast<std::size_t>(std::atol(argv[++i]));
    else {
      std::fprintf(
          stderr,
          "usage: %s [--quick] [--global-view] [--only hops|fail|churn] [--router chord|pastry|kademlia] [--median SECONDS]\n",
          argv[0]);
      return 2;
    }
  }
  if (only.empty() || only == "hops") {
    std::vector<std::size_t> sizes;
    if (quick)
      sizes = {256};  // a smoke run (CI): the figures come from full runs
    else if (global_view)
      sizes = {256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536, 100000};
    else
      sizes = {256, 1024, 4096, 16384};  // real joins: 16384 is minutes per router
    const std::size_t count = quick ? 300 : 2000;
    std::ofstream csv("dht_hops.csv");
    csv << "router,n,mean_hops,p99_hops,theory,success\n";
    std::printf("lookup hops (%s, %zu lookups per point)\n",
                global_view ? "state from a global view, NOT real joins" : "real joins, then 60 s of maintenance",
                count);
    std::printf("%-9s %7s %8s %5s %8s %8s %8s %8s %7s\n", "router", "N", "mean", "p99", "theory", "log16N", "vs.th",
                "correct", "time");
    if (wanted("chord")) hops<chord>(csv, sizes, count);
    if (wanted("pastry")) hops<pastry>(csv, sizes, count);
    if (wanted("kademlia")) hops<kademlia>(csv, sizes, count);
    std::printf("theory: chord ½·log2 N; pastry log16 N (bound ⌈log16 N⌉); kademlia log_2k N, k = 20\n\n");
  }
  if (only.empty() || only == "fail") {
    // state from real joins (or --global-view): 2,048 nodes join in about a minute per run
    const std::size_t n = global_view ? (quick ? 1024 : 4096) : quick ? 128 : 2048, count = quick ? 200 : 1000;
    std::ofstream csv("dht_fail.csv");
    csv << "router,n,failed_fraction,success_now,success_after_60s\n";
    std::printf("lookups after simultaneous crashes (N = %zu, silent crashes)\n", n);
    std::printf("%-9s %6s %6s %10s %10s %8s\n", "router", "N", "failed", "right away", "after 60s", "hops");
    if (wanted("chord")) failures<chord>(csv, n, count);
    if (wanted("pastry")) failures<pastry>(csv, n, count);
    if (wanted("kademlia")) failures<kademlia>(csv, n, count);
    std::printf("\n");
  }
  if (only.empty() || only == "churn") {
    const std::size_t n = n_override ? n_override : quick ? 64 : 300;
    const duration length =
        quick ? std::chrono::minutes(1) : std::chrono::minutes(15);  // quick: a smoke run, a few seconds
    const int rate = quick ? 1 : 4;                                  // operations of each kind per second
    std::ofstream csv("dht_churn.csv");
    csv << "router,n,median_session_s,lookup_success,get_latest,put_success,msgs_per_node_s,bytes_per_node_s,store_bytes_per_node_s\n";
    std::printf("churn (N = %zu, %g min measured, exponential sessions, %d puts, gets and lookups per second)\n", n,
                to_seconds(length) / 60, rate);
    std::printf("%-9s %5s %11s %9s %9s %7s %9s %9s %9s\n", "router", "N", "median", "lookups", "get-new", "puts",
                "msg/n/s", "B/n/s", "kvB/n/s");
    std::vector<duration> medians{std::chrono::hours(1), std::chrono::minutes(10), std::chrono::seconds(84)};
    if (quick) medians = {std::chrono::seconds(84)};  // the hardest of the three is the smoke test
    if (median_s > 0) medians = {duration(std::chrono::seconds(median_s))};
    for (auto median : medians) {
      if (wanted("chord")) churn<chord>(csv, n, median, length, rate);
      if (wanted("pastry")) churn<pastry>(csv, n, median, length, rate);
      if (wanted("kademlia")) churn<kademlia>(csv, n, median, length, rate);
    }
  }
  return 0;
}
