#pragma once
// The surge, four ways: one simulated world per mode, the same workload
// (issue 10's evaluation). Shared by benchmarks/delegation_surge (figures)
// and the demo's first scene (a table to read at a glance).
//
//   client-server  every client asks the origin; the origin runs C requests
//                  at once, queues up to C more and rejects the rest; clients
//                  retry with exponential back-off and jitter (10 ms .. 2 s)
//   central        the origin hands out lease tokens itself (dcp::delegation
//                  with one shard whose coordinator is the origin's node)
//   single         dcp::delegation: S shards, each coordinated by the client
//                  that owns its key (a DHT stand-in: the first live node
//                  after hash(shard)); work#0's coordinator crashes mid-run
//                  and its key passes to the next node
//   multi          dcp::delegation with S groups of 3 coordinators, each
//                  acting as one by quorum (delegation::group over Raft);
//                  group work#0's leader crashes mid-run. The members are
//                  nodes of their own (a node runs one protocol per id: a
//                  group member is not also a work client here)
//   overlay        (benchmark only) multi-delegation as deployed: every client
//                  runs Kademlia, joining through the origin as the crowd
//                  arrives, and a shard's group is the 3 clients closest to
//                  its key, formed on the first request
//                  (delegation::group_host); work#0's leader crashes
//                  mid-run, and with faults churn takes members too
//
// Workload: N clients arrive within one second (a flash crowd); each wants
// to run work units of W ms back to back at the origin, whose capacity is C
// units at once (demand = N, C << N: a surge of N/C x capacity). With a
// token (1 permit), a client runs work units while it holds the token,
// renewing it, and releases it after H units to let others in.
// Measured, per mode:
//   peak load / C     requests in the origin at once (running + queued) / C
//   episodes > C      how often that count went above C, and for how long
//   util              work done / (C x duration): admitted / min(C, demand)
//   held              permits the origin honoured, averaged over time, / C
//                     (Doorman's "capacity handed out"; with tokens a holder's
//                     permit idles for a round trip between its units, so
//                     util < held)
//   msgs/adm          messages the origin received per admitted work unit
//   token p50/p99     time from a client's arrival to its first admitted unit
//   jain              Jain's index over the work units each client completed
//   lost              tokens that expired while held, unrenewed (their
//                     coordinator crashed, or could not renew in time)
//   realloc           with params::shift_at: at that instant every client
//                     moves to the first half of the shards (their old ones
//                     fall idle); the time until 95% of the capacity that
//                     must move has moved: the first half's shares, from
//                     what they held at the shift to their max-min target
//                     (C less one unit for each idle shard, the floor a
//                     shard keeps). Sampled every 10 ms at the origin
//                     (Doorman: up to 2 minutes; CockroachDB's token
//                     bucket: 10-30 s)
#include <algorithm>
#include <cstdio>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "dcp/consensus.hpp"
#include "dcp/delegation.hpp"
#include "dcp/dht/kademlia.hpp"
#include "dcp/lease.hpp"
#include "dcp/sim.hpp"
#include "dcp/storage.hpp"

namespace surge {

using namespace dcp;

constexpr protocol_id work_id = 150;

struct params {
  std::uint32_t clients = 1000, capacity = 100, shards = 16, hold_units = 20;
  duration work = 50ms, run = 30s;
  std::uint64_t seed = 1;
  bool crash = true;                     ///< single, multi: crash a coordinator (leader) at run / 2
  duration shift_at = duration::zero();  ///< >0: demand moves to the first half of the shards then
  /// The faults of a real deployment, besides the crash above: every clock
  /// skewed within the drift bound; churn (a client leaves, silently, after
  /// an exponential session of mean `session`, and another arrives in its
  /// place a second later); at run / 4, for 3 s, shard 1's coordinator
  /// (single) or its group's leader (multi) cut off from every other node.
  bool faults = false;
  duration session = 20s;
};

/// The modes, in the order a table shows them.
inline constexpr const char* modes[] = {"client-server", "central", "single", "multi"};
/// Modes the benchmark adds to the table (the demo shows the four above).
inline constexpr const char* more_modes[] = {"overlay"};
/// Members of each coordinator group in multi mode.
inline constexpr std::uint32_t group_size = 3;
using group_raft = consensus::raft<sim::env, delegation::ledger, storage::durable_storage>;
using group_member = delegation::group<sim::env, group_raft>;
inline constexpr protocol_id group_raft_id = 100;
/// The clients' DHT in overlay mode.
using router_t = dht::kademlia<sim::env>;
inline dht::kademlia_config overlay_config() {
  dht::kademlia_config kc;
  kc.k = 8;
  return kc;
}

namespace wire_msg {
struct work {
  static constexpr message_type wire_id = 1;
  static constexpr std::string_view wire_name = "work";
  std::uint64_t id = 0;
  bytes token;        ///< empty in client-server mode
  bool last = false;  ///< the token's last unit: the origin releases it after
  template <class A> void serialize(A& ar) { ar(id, token, last); }
};
struct work_done {
  static constexpr message_type wire_id = 2;
  static constexpr std::string_view wire_name = "work_done";
  std::uint64_t id = 0;
  bool ok = false;
  template <class A> void serialize(A& ar) { ar(id, ok); }
};
using all = wire::message_set<work, work_done>;
}  // namespace wire_msg

/// What the origin measures.
struct origin_record {
  std::uint32_t C = 0;
  std::uint64_t load = 0, peak = 0, admitted = 0, messages = 0;
  std::uint64_t episodes = 0;
  time_point above_since{};
  duration above_total{};
  void change(std::int64_t d, time_point now) {
    const bool was = load > C;
    load = static_cast<std::uint64_t>(static_cast<std::int64_t>(load) + d);
    peak = std::max(peak, load);
    if (!was && load > C) ++episodes, above_since = now;
    if (was && load <= C) above_total += now - above_since;
  }
};

/// The origin's work front end: runs C at once; in client-server mode queues
/// up to C more and rejects the rest; in token modes admits a unit only with
/// a token the delegation origin accepts (then it never needs a queue).
struct work_server {
  using messages = wire_msg::all;
  static constexpr std::string_view name = "work_server";
  sim::env env;
  origin_record* rec;
  std::function<std::optional<lease::token>(const bytes&)> admit;  // null: client-server
  std::function<void(const lease::token&)> release;
  std::uint32_t running = 0;
  std::vector<std::pair<address, std::uint64_t>> queue;
  duration work;
  work_server(sim::env e, origin_record* r, std::function<std::optional<lease::token>(const bytes&)> a,
              std::function<void(const lease::token&)> rel, duration w)
      : env(e), rec(r), admit(std::move(a)), release(std::move(rel)), work(w) {}
  void on_message(const address& from, const wire_msg::work& m) {
    ++rec->messages;
    if (admit) {
      auto t = admit(m.token);
      if (!t) return void(env.send(from, wire_msg::work_done{m.id, false}));
      return start(from, m.id, m.last ? t : std::nullopt);
    }
    if (running < rec->C) return start(from, m.id);
    if (queue.size() < rec->C) {
      queue.emplace_back(from, m.id);
      rec->change(+1, env.world().now());
      return;
    }
    env.send(from, wire_msg::work_done{m.id, false});  // rejected: it still cost the origin a message
  }
  void on_message(const address&, const wire_msg::work_done&) {}
  void start(const address& to, std::uint64_t id, std::optional<lease::token> last = std::nullopt) {
    ++running;
    ++rec->admitted;
    rec->change(+1, env.world().now());
    env.arm(work, [this, to, id, last] {
      if (last) release(*last);
      --running;
      rec->change(-1, env.world().now());
      env.send(to, wire_msg::work_done{id, true});
      if (!queue.empty() && running < rec->C) {
        auto [who, qid] = queue.front();
        queue.erase(queue.begin());
        rec->change(-1, env.world().now());
        start(who, qid);
      }
    });
  }
};

struct client_record {
  time_point arrived{}, first_admitted{};
  std::uint64_t done = 0, lost = 0;
};

/// A client: runs work units back to back. Client-server: retries a
/// rejected unit with exponential back-off. Token modes: holds a token from
/// its delegation::peer for hold_units units, then releases it.
struct work_client {
  using messages = wire_msg::all;
  static constexpr std::string_view name = "work_client";
  sim::env env;
  client_record* rec;
  delegation::peer<sim::env>* peer;  // null: client-server
  params p;
  std::uint32_t shard = 0;
  std::uint64_t next_id = 0, units_on_token = 0;
  std::uint64_t pending = 0;  // the acquire waiting for a token (peer::cancel's handle)
  duration backoff = 10ms;
  std::optional<delegation::grant> token;
  timer_id timeout{};
  work_client(sim::env e, client_record* r, delegation::peer<sim::env>* pe, params pa)
      : env(e), rec(r), peer(pe), p(pa) {
    if (peer) peer->on_lost([this](const delegation::grant&) { ++rec->lost; });
  }
  void begin() {
    if (rec->first_admitted == time_point{})
      rec->arrived = env.world().now();  // time to a token: the first served session's
    shard = static_cast<std::uint32_t>(env.rng().below(p.shards));
    next();
  }
  /// From the next token on, one of the first half of the shards; a request
  /// still waiting for a token of the old shard is withdrawn and made anew.
  void shift() {
    const auto old = shard;
    shard = static_cast<std::uint32_t>(env.rng().below(std::max<std::uint32_t>(p.shards / 2, 1)));
    if (pending && old != shard) peer->cancel(pending);
  }
  void next() {
    if (!peer) return send_unit({}, false);
    if (token && units_on_token < p.hold_units) return send_unit(token->sealed, units_on_token + 1 == p.hold_units);
    if (token) {
      peer->release(*token);
      token.reset();
    }
    units_on_token = 0;
    pending = peer->acquire("work", shard, 1, [this](result<delegation::grant> g) {
      pending = 0;
      if (!g) return void(env.arm(backoff_next(), [this] { next(); }));
      backoff = 10ms;
      token = std::move(*g);
      send_unit(token->sealed, p.hold_units == 1);
    });
  }
  void send_unit(bytes tok, bool last) {
    env.send(address::sim(0), wire_msg::work{++next_id, std::move(tok), last});
    if (timeout) env.cancel(timeout);
    timeout = env.arm(2s, [this] {
      timeout = {};
      next();
    });  // lost: try again
  }
  duration backoff_next() {
    const auto d =
        backoff + duration(static_cast<std::int64_t>(env.rng().uniform() * static_cast<double>(backoff.count())));
    backoff = std::min<duration>(backoff * 2, 2s);
    return d;
  }
  void on_message(const address&, const wire_msg::work_done& m) {
    if (m.id != next_id) return;
    if (timeout) env.cancel(timeout), timeout = {};
    if (!m.ok) {
      if (token) token.reset();  // refused by the origin: get another
      return void(env.arm(backoff_next(), [this] { next(); }));
    }
    backoff = 10ms;
    if (rec->first_admitted == time_point{}) rec->first_admitted = env.world().now();
    ++rec->done;
    ++units_on_token;
    next();
  }
  void on_message(const address&, const wire_msg::work&) {}
};

struct result_row {
  std::string mode;
  std::uint32_t n, C;
  double peak_over_c, above_ms, util, held, msgs_per_admitted, token_p50_ms, token_p99_ms, jain;
  std::uint64_t episodes, admitted, lost;
  double realloc_ms = -1;  ///< with shift_at: until 95% of C moved (-1: never, or no shift)
  bool faults = false;
};

inline double pct(std::vector<double> v, double q) {
  if (v.empty()) return -1;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<std::size_t>(q * static_cast<double>(v.size())))];
}

inline result_row run(const std::string& mode, const params& p) {
  sim::config sc;
  sc.network.delay = sim::latency::uniform(1ms, 10ms);
  sim::simulator w(p.seed, sc);
  origin_record orec;
  orec.C = p.capacity;
  const bool tokens = mode != "client-server";
  const bool multi = mode == "multi";
  const bool overlay = mode == "overlay";
  const std::uint32_t shards = mode == "single" || multi || overlay ? p.shards : 1;
  auto okey = lease::ed25519_private_key::from_seed(bytes(32, 1)).value();
  const auto opub = okey.public_key().raw();
  delegation::origin_config oc;
  oc.resources = {{"work", delegation::capacity_kind::concurrency, p.capacity, shards}};
  oc.certificate_validity = 6s;
  oc.max_drift = 50ms;
  // The DHT stand-in: shard s is owned by the first live client after hash(s).
  // Clients are nodes first..first+N-1; in central mode node 1 is the
  // origin's own token service (its messages count as the origin's); in
  // multi mode nodes 1..3S are the groups (group s: 1+3s..3+3s), and a
  // client asks a live member of its shard's group (the leader redirects).
  const sim::node_index first = mode == "central" ? 2 : multi ? 1 + group_size * shards : 1;
  std::vector<client_record> crec(first + p.clients);  // by node index
  auto locate = [&w, &p, mode, first, multi](const std::string& key) -> std::optional<address> {
    if (mode == "central") return address::sim(1);
    const std::uint32_t s = static_cast<std::uint32_t>(std::stoul(key.substr(key.find('#') + 1)));
    if (multi) {
      for (std::uint32_t k = 0; k < group_size; ++k) {
        const auto i = 1 + group_size * s + static_cast<sim::node_index>((w.rng().below(group_size) + k) % group_size);
        if (w.is_up(i)) return address::sim(i);
      }
      return std::nullopt;
    }
    for (std::uint32_t k = 0; k < p.clients; ++k) {
      const auto i = first + static_cast<sim::node_index>((detail::mix64(s + 1) + k) % p.clients);
      if (w.is_up(i)) return address::sim(i);
    }
    return std::nullopt;
  };
  delegation::peer_config pc;
  pc.origin = address::sim(0);
  pc.origin_public_key = opub;
  pc.locate = delegation::fixed_locator(locate);
  if (overlay) {  // groups formed from the overlay, as peer_config::groups does it
    delegation::group_hosting gh;
    gh.size = group_size;
    gh.max_drift = oc.max_drift;
    pc.groups = gh;
  }
  pc.token_ttl = 2s;
  pc.request_timeout = 200ms;
  pc.give_up_after = 30s;  // in a surge a client waits its turn in line
  params pp = p;
  pp.shards = shards;
  w.add_node([&](sim::node_context& n) {
    std::function<std::optional<lease::token>(const bytes&)> admit;
    std::function<void(const lease::token&)> release;
    if (tokens) {
      auto* o = &n.add<delegation::origin<sim::env>>(delegation::default_protocol_id, lease::signing_key(okey, 0), oc);
      admit = [o, &w](const bytes& t) -> std::optional<lease::token> {
        auto r = o->admit(t, w.local_wall_now(0));
        if (!r) return std::nullopt;
        return std::move(*r);
      };
      release = [o](const lease::token& t) { o->release(t); };
    }
    n.add<work_server>(work_id, &orec, admit, release, p.work);
    if (overlay) n.add<router_t>(router_t::default_id, overlay_config()).bootstrap({});  // the entry point
  });
  if (mode == "central")
    w.add_node([&](sim::node_context& n) { n.add<delegation::peer<sim::env>>(delegation::default_protocol_id, pc); });
  auto member_key = [](sim::node_index i) {
    bytes seed(32, 0);
    for (std::size_t b = 0; b < 4; ++b) seed[b] = static_cast<std::uint8_t>(i >> (8 * b));
    seed[31] = 0x5a;
    return lease::ed25519_private_key::from_seed(seed).value();
  };
  if (multi) {
    for (std::uint32_t s = 0; s < shards; ++s) {
      delegation::group_config gc;
      gc.origin = address::sim(0);
      gc.origin_public_key = opub;
      gc.shards = {{"work", s}};
      gc.token_ttl = pc.token_ttl;
      gc.request_timeout = pc.request_timeout;
      gc.max_drift = oc.max_drift;
      consensus::raft_config rc;
      for (std::uint32_t k = 0; k < group_size; ++k) {
        const auto i = 1 + group_size * s + k;
        rc.members.push_back(address::sim(i));
        gc.members.push_back({address::sim(i), member_key(i).public_key().raw()});
      }
      w.add_nodes(group_size, [gc, rc, member_key](sim::node_context& n) {
        auto& r = n.add<group_raft>(group_raft_id, rc, storage::durable_storage(n.world().disk_of(n.index())),
                                    delegation::ledger{});
        n.add<group_member>(delegation::default_protocol_id, r, gc, member_key(n.index()));
      });
    }
  }
  w.add_nodes(p.clients, [&](sim::node_context& n) {
    delegation::peer<sim::env>* pe = nullptr;
    auto cpc = pc;
    if (overlay) {  // joins through the origin, which routes but never coordinates
      auto& r = n.add<router_t>(router_t::default_id, overlay_config());
      cpc.locate = delegation::dht_locator(r, address::sim(0));
      cpc.groups->locate = delegation::dht_group_locator(r, address::sim(0));
      r.bootstrap({{node_id{}, address::sim(0)}});
    }
    if (tokens) pe = &n.add<delegation::peer<sim::env>>(delegation::default_protocol_id, cpc);
    n.add<work_client>(work_id, &crec[n.index()], pe, pp);
  });
  // Count every message the origin's node receives.
  auto origin_side = [mode](sim::node_index i) { return i == 0 || (mode == "central" && i == 1); };
  w.on_trace([&](const sim::trace_event& e) {
    if (e.what != sim::trace_event::kind::deliver || !origin_side(e.to) || origin_side(e.from)) return;
    if (e.to == 1 || e.protocol != work_id) ++orec.messages;  // (work units are counted by the server)
  });
  std::function<void(sim::node_index)> session;  // with faults, churn: leave after an exponential session
  for (sim::node_index i = first; i < first + p.clients; ++i)
    w.after(duration(w.rng().between(0, 1'000'000'000)), [&, i] {
      w.get<work_client>(i, work_id).begin();
      if (session) session(i);
    });
  if (mode == "single" && p.crash) {
    w.after(p.run / 2, [&] {
      if (auto a = locate(delegation::shard_key("work", 0))) w.crash(static_cast<sim::node_index>(a->sim_index()));
    });
  }
  if (multi && p.crash) {
    w.after(p.run / 2, [&] {
      for (sim::node_index i = 1; i <= group_size; ++i)
        if (w.get<group_member>(i, delegation::default_protocol_id).leads()) return w.crash(i);
    });
  }
  // overlay: the leader of the shard's group of the overlay, where one leads
  auto overlay_leader = [&](std::uint32_t s) -> std::optional<sim::node_index> {
    for (sim::node_index i = first; i < first + p.clients; ++i)
      if (auto* pe = w.find<delegation::peer<sim::env>>(i, delegation::default_protocol_id); pe && pe->groups())
        if (auto* g = pe->groups()->group_of("work", s); g && g->leads()) return i;
    return std::nullopt;
  };
  if (overlay && p.crash)
    w.after(p.run / 2, [&] {
      if (auto i = overlay_leader(0)) w.crash(*i);
    });
  if (p.shift_at > duration::zero())
    w.after(p.shift_at, [&] {
      for (sim::node_index i = first; i < first + p.clients; ++i)
        if (auto* c = w.find<work_client>(i, work_id)) c->shift();
    });
  if (p.faults) {
    // Any two clocks within the drift bound for the whole run: offsets of
    // +-(bound/2 - 1 ms), rates within +-10 ppm (0.6 ms apart after 30 s).
    const auto half = (oc.max_drift / 2 - 1ms).count();
    for (sim::node_index i = 0; i < w.size(); ++i)
      w.set_clock(i, duration(w.rng().between(-half, half)), (w.rng().uniform() - 0.5) * 2e-5);
    session = [&](sim::node_index i) {
      w.after(duration(static_cast<std::int64_t>(w.rng().exponential(to_seconds(p.session)) * 1e9)), [&, i] {
        w.crash(i);
        w.after(1s, [&, i] {
          w.restart(i);
          w.get<work_client>(i, work_id).begin();
          session(i);
        });
      });
    };
    w.after(p.run / 4, [&] {
      std::optional<sim::node_index> cut;
      if (mode == "single" && shards > 1)
        if (auto a = locate(delegation::shard_key("work", 1))) cut = static_cast<sim::node_index>(a->sim_index());
      if (multi && shards > 1)
        for (sim::node_index i = 1 + group_size; i <= 2 * group_size; ++i)
          if (w.is_up(i) && w.get<group_member>(i, delegation::default_protocol_id).leads()) cut = i;
      if (overlay && shards > 1) cut = overlay_leader(1);
      if (!cut) return;
      w.isolate(*cut);
      w.after(3s, [&] { w.heal(); });
    });
  }
  // Permits honoured, and the shares of the first half, sampled every 10 ms.
  double held_sum = 0;
  std::uint64_t samples = 0;
  double realloc_ms = -1, first_half_at_shift = -1;
  std::function<void()> sample = [&] {
    if (tokens) {
      auto& o = w.get<delegation::origin<sim::env>>(0, delegation::default_protocol_id);
      held_sum += static_cast<double>(o.in_use("work", w.local_wall_now(0)));
      if (p.shift_at > duration::zero() && realloc_ms < 0 && w.now() - time_point{} >= p.shift_at && shards > 1) {
        double first_half = 0;
        for (std::uint32_t s = 0; s < shards / 2; ++s) first_half += static_cast<double>(o.share("work", s));
        if (first_half_at_shift < 0) first_half_at_shift = first_half;
        const double target = p.capacity - (shards - shards / 2);
        if (first_half >= first_half_at_shift + 0.95 * (target - first_half_at_shift))
          realloc_ms = to_millis(w.now() - time_point{} - p.shift_at);
      }
    } else {
      held_sum += static_cast<double>(w.get<work_server>(0, work_id).running);
    }
    ++samples;
    w.after(10ms, sample);
  };
  w.after(10ms, sample);
  w.run_for(p.run);
  result_row r{mode, p.clients, p.capacity, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
  r.held = samples ? held_sum / static_cast<double>(samples) / p.capacity : 0;
  r.peak_over_c = static_cast<double>(orec.peak) / p.capacity;
  r.episodes = orec.episodes;
  r.above_ms = to_millis(orec.above_total);
  r.admitted = orec.admitted;
  r.util = static_cast<double>(orec.admitted) * to_seconds(p.work) / (p.capacity * to_seconds(p.run));
  r.msgs_per_admitted = orec.admitted ? static_cast<double>(orec.messages) / static_cast<double>(orec.admitted) : 0;
  std::vector<double> ttt, done;
  for (sim::node_index i = first; i < first + p.clients; ++i) {
    done.push_back(static_cast<double>(crec[i].done));
    r.lost += crec[i].lost;
    if (crec[i].first_admitted != time_point{}) ttt.push_back(to_millis(crec[i].first_admitted - crec[i].arrived));
  }
  r.token_p50_ms = pct(ttt, 0.5);
  r.token_p99_ms = pct(ttt, 0.99);
  r.jain = delegation::jain_index(done);
  r.realloc_ms = realloc_ms;
  r.faults = p.faults;
  return r;
}

/// The table, a row per mode.
inline void print_header() {
  std::printf("%-14s %8s %9s %10s %6s %6s %9s %10s %10s %6s %5s\n", "mode", "peak/C", "episodes", "above(ms)", "util",
              "held", "msgs/adm", "tok p50ms", "tok p99ms", "jain", "lost");
}
inline void print_row(const result_row& r) {
  std::printf("%-14s %8.2f %9llu %10.0f %6.3f %6.3f %9.2f %10.0f %10.0f %6.3f %5llu\n", r.mode.c_str(), r.peak_over_c,
              static_cast<unsigned long long>(r.episodes), r.above_ms, r.util, r.held, r.msgs_per_admitted,
              r.token_p50_ms, r.token_p99_ms, r.jain, static_cast<unsigned long long>(r.lost));
}

}  // namespace surge
