// Physical clock synchronization: the disciplined clock, Cristian / NTP
// samples, Berkeley, reference broadcasts. Property tests over many seeds
// with per-node skew and drift, delay jitter, loss, duplication and a daemon
// crash: after every simulator event, every synchronized clock is within the
// bound its algorithm reports, and no synchronized clock ever runs backwards
// or jumps by more than its slew allows.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "dcp/clock.hpp"
#include "dcp/election.hpp"
#include "dcp/group.hpp"
#include "dcp/sim.hpp"

namespace test_clock_sync {

using namespace dcp;
using namespace dcp::clock;
using sim::simulator;

namespace {
using ntp = cristian<sim::env>;
using bully = election::bully<sim::env>;
using berk = berkeley<sim::env, bully>;
using rbs = reference_broadcast<sim::env>;

constexpr double max_drift = 50e-6;  // every simulated clock drifts by at most 50 ppm
const disciplined_clock_config test_clock{.max_slew_rate =
                                              5e-3};  // 5000 ppm: corrections of tens of ms settle in seconds

/// Watches one node's synchronized clock: it never runs backwards, and
/// between two readings it moves like the local clock within the slew and
/// frequency corrections allowed.
struct monotone_watch {
  bool seen = false;
  time_point local{}, sync{};
  void check(time_point l, time_point s, const disciplined_clock& c) {
    if (seen) {
      REQUIRE(s >= sync);
      const double dl = static_cast<double>((l - local).count()), ds = static_cast<double>((s - sync).count());
      const double allowed = (c.config().max_slew_rate + c.config().max_frequency) * dl + 2;
      REQUIRE(std::abs(ds - dl) <= allowed);
    }
    seen = true, local = l, sync = s;
  }
};

duration uniform_skew(rng& r, duration max) { return duration(r.between(-max.count(), max.count())); }
double uniform_drift(rng& r) { return (r.uniform() * 2 - 1) * max_drift; }
}  // namespace

// ---------------------------------------------------------------- disciplined clock

TEST_CASE("disciplined_clock: a backward correction is slewed, never stepped; a forward one may step") {
  disciplined_clock c({.max_slew_rate = 1e-3, .step_forward_threshold = 100ms});
  time_point local(1s);
  CHECK(c.now(local) == local);
  CHECK(c.error_bound(local) == duration::max());
  c.adjust_by(local, -10ms, {1ms, local, 0});
  CHECK(c.now(local) == local);  // nothing applied at once
  CHECK(c.error_bound(local) >= 11ms);
  time_point prev = c.now(local);
  for (int i = 1; i <= 100; ++i) {  // 1 ms of correction per second of local time
    const time_point s = c.now(local + i * 100ms);
    CHECK(s > prev);
    CHECK((s - prev) == 100ms - 100us);
    prev = s;
  }
  // After 10 s, 10 ms applied: it now runs at the local rate.
  const auto after = c.now(local + 11s);
  CHECK(after - prev == 1s);
  CHECK(c.pending() == 0);
  CHECK(c.error_bound(local + 11s) == 1ms + 2ns);
  // Forward beyond the threshold: stepped.
  c.adjust_by(local + 11s, 1s, {0ns, local + 11s, 0});
  CHECK(c.now(local + 11s) == after + 1s);
  CHECK(c.steps_forward() == 1);
  // The local clock stepped back: the synchronized one waits, it does not follow.
  CHECK(c.now(local + 5s) == after + 1s);
  CHECK(c.local_steps_back() == 1);
  CHECK(c.now(local + 12s) == after + 2s);
  // Frequency: clamped, and reported.
  CHECK_FALSE(c.set_frequency(local + 12s, 0.5));
  CHECK(c.frequency() == c.config().max_frequency);
  CHECK_FALSE(c.set_frequency(local + 12s, std::numeric_limits<double>::quiet_NaN()));
  CHECK(c.frequency() == 0);
  CHECK(c.monotonic_guard_hits() == 0);
  CHECK_THROWS_AS(disciplined_clock({.max_slew_rate = 0}), dcp::error);
}

TEST_CASE("disciplined_clock: random corrections, random readings: monotone, rate within slew, bound honest") {
  for (std::uint64_t seed = 1; seed <= 200; ++seed) {
    rng r(seed);
    disciplined_clock c({.max_slew_rate = 1e-3, .max_frequency = 1e-4});
    monotone_watch w;
    time_point local(duration(r.between(0, 1'000'000'000'000)));
    double target = static_cast<double>(local.time_since_epoch().count());  // what the clock should converge to
    double freq = 0;
    for (int i = 0; i < 300; ++i) {
      const duration step(r.between(0, 50'000'000));
      local += step;
      target += static_cast<double>(step.count()) * (1 + freq);
      switch (r.below(4)) {
        case 0: {
          const duration d(r.between(-20'000'000, 20'000'000));
          c.adjust_by(local, d, {0ns, local, 0});
          target += static_cast<double>(d.count());
          break;
        }
        case 1:
          freq = (r.uniform() * 2 - 1) * 1e-4;
          c.set_frequency(local, freq);
          break;
        default:
          break;
      }
      const time_point s = c.now(local);
      w.check(local, s, c);
      if (c.synchronized())
        CHECK(std::abs(static_cast<double>(s.time_since_epoch().count()) - target) <=
              static_cast<double>(c.error_bound(local).count()) + 1e3);
    }
    CHECK(c.monotonic_guard_hits() == 0);
  }
}

// ---------------------------------------------------------------- four timestamps

TEST_CASE("time_sample: offset, delay and bound from four timestamps; absurd samples refused without overflow") {
  // Server 5 ms ahead; 2 ms out, 4 ms back; 1 ms turn-around.
  const time_point t1(100ms);
  const time_sample s{t1, t1 + 2ms + 5ms, t1 + 3ms + 5ms, t1 + 7ms};
  CHECK(s.delay() == 6ms);
  CHECK(s.offset() == 4ms);  // true 5 ms: within delay/2 = 3 ms
  sample_limits l;
  CHECK(check(s, 0ns, l) == sample_fault::none);
  const auto e = estimate(s, 0ns, l);
  CHECK(std::abs((e.offset - 5ms).count()) <= e.error.count());
  CHECK(e.error < 3ms + 10us);
  constexpr std::int64_t big = std::numeric_limits<std::int64_t>::max(),
                         small = std::numeric_limits<std::int64_t>::min();
  auto tp = [](std::int64_t v) { return time_point(duration(v)); };
  CHECK(check({tp(small), tp(0), tp(0), tp(big)}, 0ns, l) == sample_fault::delay_too_large);
  CHECK(check({tp(big), tp(0), tp(0), tp(small)}, 0ns, l) == sample_fault::time_runs_backwards);
  CHECK(check({tp(0), tp(big), tp(big), tp(1000)}, 0ns, l) == sample_fault::offset_absurd);
  CHECK(check({tp(0), tp(small), tp(small), tp(1000)}, 0ns, l) == sample_fault::offset_absurd);
  CHECK(check({tp(0), tp(10), tp(5), tp(1000)}, 0ns, l) == sample_fault::time_runs_backwards);
  CHECK(check({tp(0), tp(0), tp(big), tp(1000)}, 0ns, l) == sample_fault::turnaround_too_large);
  CHECK(check({tp(0), tp(10), tp(900), tp(1000)}, -1ns, l) == sample_fault::server_error_absurd);
  CHECK(check({tp(0), tp(10), tp(900), tp(1000)}, 1h, l) == sample_fault::server_error_absurd);
  clock_filter f(4, 1e-4);
  f.add({1ms, 10ms, 5ms, time_point(1s)});
  f.add({2ms, 2ms, 1ms, time_point(2s)});
  f.add({3ms, 30ms, 15ms, time_point(300s)});
  CHECK(f.best(time_point(2s))->offset == 2ms);    // the fastest exchange
  CHECK(f.best(time_point(300s))->offset == 3ms);  // ... until it is too old to be the best
}

// ---------------------------------------------------------------- Cristian / NTP

namespace {
/// One server, k clients, skew, drift, jitter, loss, duplication, reordering.
void run_cristian(std::uint64_t seed, duration jitter) {
  sim::config net;
  net.network.delay = sim::latency::uniform(500us, 500us + jitter);
  net.network.loss = 0.05;
  net.network.duplicate = 0.02;
  net.network.reorder = 0.05;
  net.network.reorder_delay = jitter;
  simulator w(seed, net);
  const std::uint32_t clients = 2 + static_cast<std::uint32_t>(seed % 4);
  w.add_node([](sim::node_context& c) { c.add<ntp>(ntp::default_id, cristian_config{}); });
  cristian_config cfg{.server = address::sim(0), .poll_interval = 500ms};
  cfg.limits.drift_bound = 2 * max_drift;  // relative to a free-running server
  cfg.clock = test_clock;
  w.add_nodes(clients - 1, [cfg](sim::node_context& c) { c.add<ntp>(ntp::default_id, cfg); });
  // The last client follows client 1 (stratum 2): its bound adds client 1's.
  w.add_node([cfg](sim::node_context& c) {
    auto second = cfg;
    second.server = address::sim(1);
    second.limits.server_rate_bound = test_clock.max_slew_rate + test_clock.max_frequency + max_drift;
    c.add<ntp>(ntp::default_id, second);
  });
  for (std::uint32_t i = 0; i <= clients; ++i) w.set_clock(i, uniform_skew(w.rng(), 20ms), uniform_drift(w.rng()));
  std::vector<monotone_watch> watch(clients + 1);
  w.after_event([&] {
    for (std::uint32_t i = 1; i <= clients; ++i) {
      auto& p = w.get<ntp>(i, ntp::default_id);
      const time_point s = p.synchronized_now();
      watch[i].check(w.local_now(i), s, p.clock());
      if (!p.synchronized()) continue;
      const auto err = (s - w.local_now(0)).count();
      INFO("client " << i << " error " << err << " bound " << p.error_bound().count());
      REQUIRE(std::abs(err) <= p.error_bound().count());
    }
  });
  w.run_for(20s);
  for (std::uint32_t i = 1; i <= clients; ++i) {
    auto& p = w.get<ntp>(i, ntp::default_id);
    REQUIRE(p.synchronized());
    CHECK(p.clock().monotonic_guard_hits() == 0);
    // Useful, not only honest: the filter keeps the bound near the fastest exchange.
    CHECK(p.error_bound() < (i == clients ? 2 : 1) * (1ms + jitter));
  }
}
}  // namespace

TEST_CASE(
    "cristian: every client, and a client of a client, within its reported bound of the server after every event; 300 seeds") {
  const duration jitters[] = {10us, 200us, 2ms, 10ms};
  for (std::uint64_t seed = 1; seed <= 300; ++seed) {
    INFO("seed " << seed);
    run_cristian(seed, jitters[seed % 4]);
  }
}

namespace {
/// A "server" whose replies are absurd in one way or another.
template <Env E> class lying_server {
 public:
  using messages = ntp::messages;
  lying_server(E env, std::uint64_t mode) : env_(std::move(env)), mode_(mode) {}
  void on_message(const address& from, const cristian_msg::request& m) {
    constexpr std::int64_t big = std::numeric_limits<std::int64_t>::max(),
                           small = std::numeric_limits<std::int64_t>::min();
    const std::int64_t now = env_.now().time_since_epoch().count();
    cristian_msg::reply r{m.id, m.t1, now, now, 0};
    switch (mode_ % 6) {
      case 0:
        r.t2 = r.t3 = big;
        break;  // the end of time
      case 1:
        r.t2 = r.t3 = small;
        break;  // before it began
      case 2:
        r.t2 = now + 10;
        r.t3 = now;
        break;  // replies before it received
      case 3:
        r.t3 = now + 10'000'000'000;
        break;  // ten seconds to answer
      case 4:
        r.server_error = -5;
        break;  // a negative error
      case 5:
        r.t2 = r.t3 = m.t1 + 48 * 3'600'000'000'000;
        break;  // two days ahead
    }
    env_.send(from, r);
    ++answered;
  }
  void on_message(const address&, const cristian_msg::reply&) {}
  std::uint64_t answered = 0;

 private:
  E env_;
  std::uint64_t mode_;
};
}  // namespace

TEST_CASE("cristian: absurd timestamps are refused, counted, never applied") {
  for (std::uint64_t mode = 0; mode < 6; ++mode) {
    simulator w(mode + 1);
    w.add_node([mode](sim::node_context& c) { c.add<lying_server<sim::env>>(ntp::default_id, mode); });
    w.add_node([](sim::node_context& c) {
      c.add<ntp>(ntp::default_id, cristian_config{.server = address::sim(0), .poll_interval = 100ms});
    });
    monotone_watch watch;
    w.after_event([&] {
      auto& p = w.get<ntp>(1, ntp::default_id);
      watch.check(w.local_now(1), p.synchronized_now(), p.clock());
    });
    w.run_for(5s);
    auto& p = w.get<ntp>(1, ntp::default_id);
    const auto answered = w.get<lying_server<sim::env>>(0, ntp::default_id).answered;
    INFO("mode " << mode);
    CHECK(answered > 40);
    CHECK_FALSE(p.synchronized());
    CHECK(p.samples_accepted() == 0);
    CHECK(p.synchronized_now() == w.local_now(1));
    CHECK(w.metrics().counter(ntp::default_id, "sample_refused") == static_cast<std::int64_t>(answered));
  }
  // A reply from someone else, or to no request, is not even looked at.
  simulator w(9);
  w.add_node([](sim::node_context& c) { c.add<ntp>(ntp::default_id, cristian_config{}); });
  w.add_node([](sim::node_context& c) { c.add<ntp>(ntp::default_id, cristian_config{.server = address::sim(0)}); });
  auto& p = w.get<ntp>(1, ntp::default_id);
  p.on_message(address::sim(7), cristian_msg::reply{1, 0, 0, 0, 0});
  p.on_message(address::sim(0), cristian_msg::reply{12345, 0, 0, 0, 0});
  CHECK(w.metrics().counter(ntp::default_id, "reply_not_from_server") == 1);
  CHECK(w.metrics().counter(ntp::default_id, "unexpected_reply") == 1);
  CHECK_FALSE(p.synchronized());
}

// ---------------------------------------------------------------- Berkeley

namespace {
struct berkeley_world {
  simulator w;
  std::uint32_t n;
  std::vector<monotone_watch> watch;
  std::int64_t checks = 0, max_diff = 0;
  std::optional<std::uint32_t> wild;  ///< a node whose clock breaks the drift bound: its own bound is void

  berkeley_world(std::uint64_t seed, std::uint32_t nodes, duration jitter, double loss)
      : w(seed,
          [&] {
            sim::config c;
            c.network.delay = sim::latency::uniform(500us, 500us + jitter);
            c.network.loss = loss;
            c.network.duplicate = 0.02;
            c.network.reorder = 0.05;
            c.network.reorder_delay = jitter;
            return c;
          }()),
        n(nodes),
        watch(nodes) {
    election::bully_config ecfg{
        .answer_timeout = 50ms, .coordinator_timeout = 150ms, .probe_interval = 100ms, .probe_timeout = 300ms};
    berkeley_config bcfg{.poll_interval = 500ms,
                         .reply_window = 100ms,
                         .max_round_trip = 100ms,
                         .fta_width = 10ms,
                         .drift_bound = max_drift,
                         .clock = test_clock};
    w.add_nodes(n, [n = n, ecfg, bcfg](sim::node_context& c) {
      auto& e = c.add<bully>(bully::default_id, group::static_group::sim(n), ecfg);
      c.add<berk>(berk::default_id, e, group::static_group::sim(n), bcfg);
    });
    w.after_event([this] { check(); });
  }
  /// Monotone everywhere; members of one round within the sum of their bounds.
  void check() {
    std::vector<berk*> up(n, nullptr);
    std::vector<time_point> now(n);
    for (std::uint32_t i = 0; i < n; ++i) {
      if (!(up[i] = w.find<berk>(i, berk::default_id))) {
        watch[i].seen = false;  // a restarted node starts a new clock
        continue;
      }
      now[i] = up[i]->synchronized_now();
      watch[i].check(w.local_now(i), now[i], up[i]->clock());
    }
    for (std::uint32_t i = 0; i < n; ++i)
      for (std::uint32_t j = i + 1; j < n; ++j) {
        if (i == wild || j == wild) continue;
        if (!up[i] || !up[j] || !up[i]->applied_round() || up[i]->applied_round() != up[j]->applied_round()) continue;
        ++checks;
        const auto diff = std::abs((now[i] - now[j]).count());
        max_diff = std::max(max_diff, diff);
        INFO("nodes " << i << ", " << j << " differ by " << diff);
        REQUIRE(diff <= up[i]->error_bound().count() + up[j]->error_bound().count());
      }
  }
};
}  // namespace

TEST_CASE(
    "berkeley: members of a round within their bounds after every event; the daemon crashes and a new one takes over; 100 seeds") {
  const duration jitters[] = {50us, 1ms, 5ms, 20ms};
  for (std::uint64_t seed = 1; seed <= 100; ++seed) {
    const auto n = static_cast<std::uint32_t>(4 + seed % 4);
    berkeley_world bw(seed, n, jitters[seed % 4], 0.03);
    for (std::uint32_t i = 0; i < n; ++i) bw.w.set_clock(i, uniform_skew(bw.w.rng(), 20ms), uniform_drift(bw.w.rng()));
    INFO("seed " << seed << " n " << n);
    bw.w.run_for(8s);
    CHECK(bw.w.get<berk>(n - 1, berk::default_id).rounds_completed() >= 10);
    bw.w.crash(n - 1);  // the daemon
    bw.w.run_for(8s);
    // Bully made n-2 the daemon; it has been polling, and everyone follows it.
    auto& d = bw.w.get<berk>(n - 2, berk::default_id);
    CHECK(d.is_daemon());
    CHECK(d.rounds_completed() >= 8);
    std::uint32_t following = 0;
    for (std::uint32_t i = 0; i + 1 < n; ++i)
      if (auto& r = bw.w.get<berk>(i, berk::default_id).applied_round(); r && r->daemon == address::sim(n - 2))
        ++following;
    if (following != n - 1)
      for (std::uint32_t i = 0; i + 1 < n; ++i) {
        auto& b = bw.w.get<berk>(i, berk::default_id);
        auto& e = bw.w.get<bully>(i, bully::default_id);
        MESSAGE("node " << i << " leader " << (e.leader() ? std::to_string(e.leader()->sim_index()) : "-")
                        << " electing " << e.electing() << " round daemon "
                        << (b.applied_round() ? std::to_string(b.applied_round()->daemon.sim_index()) : "-"));
      }
    CHECK(following == n - 1);
    // The old daemon comes back with its clock unsynchronized (a new skew):
    // Bully makes it daemon again, and the fault-tolerant average keeps its
    // clock from dragging the others.
    bw.w.restart(n - 1);
    bw.w.set_clock(n - 1, uniform_skew(bw.w.rng(), 20ms), uniform_drift(bw.w.rng()));
    bw.w.run_for(6s);
    following = 0;
    for (std::uint32_t i = 0; i < n; ++i)
      if (auto& r = bw.w.get<berk>(i, berk::default_id).applied_round(); r && r->daemon == address::sim(n - 1))
        ++following;
    CHECK(following == n);
    CHECK(bw.checks > 1000);
    for (std::uint32_t i = 0; i + 1 < n; ++i)
      CHECK(bw.w.get<berk>(i, berk::default_id).clock().monotonic_guard_hits() == 0);
  }
}

TEST_CASE("berkeley: a partition makes two daemons; once healed, one daemon again and everyone follows it; 30 seeds") {
  for (std::uint64_t seed = 1; seed <= 30; ++seed) {
    const std::uint32_t n = 6;
    berkeley_world bw(seed, n, 1ms, 0.01);
    for (std::uint32_t i = 0; i < n; ++i) bw.w.set_clock(i, uniform_skew(bw.w.rng(), 20ms), uniform_drift(bw.w.rng()));
    INFO("seed " << seed);
    bw.w.run_for(3s);
    bw.w.partition({{0, 1, 2}, {3, 4, 5}});
    bw.w.run_for(5s);
    CHECK(bw.w.get<berk>(2, berk::default_id).is_daemon());  // each side has its own
    CHECK(bw.w.get<berk>(5, berk::default_id).is_daemon());
    CHECK(bw.w.get<berk>(0, berk::default_id).applied_round()->daemon == address::sim(2));
    bw.w.heal();
    bw.w.run_for(5s);
    for (std::uint32_t i = 0; i < n; ++i) {
      auto& b = bw.w.get<berk>(i, berk::default_id);
      CHECK(b.is_daemon() == (i == n - 1));
      CHECK(b.applied_round()->daemon == address::sim(n - 1));
    }
  }
}

TEST_CASE("berkeley: the fault-tolerant average leaves a wild clock out") {
  for (std::uint64_t seed = 1; seed <= 20; ++seed) {
    const std::uint32_t n = 5;
    berkeley_world bw(seed, n, 1ms, 0);
    for (std::uint32_t i = 0; i < n; ++i) bw.w.set_clock(i, uniform_skew(bw.w.rng(), 5ms), uniform_drift(bw.w.rng()));
    const std::uint32_t wild = static_cast<std::uint32_t>(seed % n);
    bw.wild = wild;
    bw.w.set_clock(wild, 10s, 0.1);  // ten seconds ahead, and 10% fast: every round it is 50 ms (> fta_width) off again
    bw.w.run_for(10s);
    INFO("seed " << seed << " wild " << wild);
    // With a plain average the others would have moved seconds; with the
    // fault-tolerant one they stay near where they were (5 ms skew, drift).
    for (std::uint32_t i = 0; i < n; ++i) {
      if (i == wild) continue;
      auto& b = bw.w.get<berk>(i, berk::default_id);
      CHECK(std::abs((b.synchronized_now() - bw.w.now()).count()) < 10'000'000);
    }
    CHECK(bw.w.metrics().counter(berk::default_id, "outliers_discarded") >= 15);
  }
}

TEST_CASE("berkeley: adjustments not asked for, or absurd, are counted and not applied") {
  berkeley_world bw(3, 4, 1ms, 0);
  bw.w.run_for(2s);
  auto& b = bw.w.get<berk>(0, berk::default_id);
  const auto before = b.clock().pending();
  const auto round = b.applied_round();
  b.on_message(address::sim(3), berkeley_msg::adjust{12345, 1'000'000, 10});  // no such poll
  b.on_message(address::sim(9), berkeley_msg::adjust{1, 1, 1});               // not a member
  b.on_message(address::sim(3), berkeley_msg::poll{77});                      // the leader polls...
  b.on_message(address::sim(3),
               berkeley_msg::adjust{77, std::numeric_limits<std::int64_t>::max(), 10});  // ... and lies
  b.on_message(address::sim(3), berkeley_msg::adjust{77, 1000, -1});
  b.on_message(address::sim(1), berkeley_msg::poll{78});  // not the leader
  CHECK(bw.w.metrics().counter(berk::default_id, "unexpected_adjust") == 1);
  CHECK(bw.w.metrics().counter(berk::default_id, "not_a_member") == 1);
  CHECK(bw.w.metrics().counter(berk::default_id, "absurd_adjustment") == 2);
  CHECK(bw.w.metrics().counter(berk::default_id, "poll_not_from_leader") == 1);
  CHECK(bw.w.get<bully>(0, bully::default_id).electing());  // and it asked for an election
  CHECK(b.clock().pending() == before);
  CHECK(b.applied_round() == round);
  auto& d = bw.w.get<berk>(3, berk::default_id);
  d.on_message(address::sim(1), berkeley_msg::reading{999, std::numeric_limits<std::int64_t>::min()});
  CHECK(bw.w.metrics().counter(berk::default_id, "unexpected_reading") == 1);
}

// ---------------------------------------------------------------- reference broadcast

namespace {
void run_rbs(std::uint64_t seed, duration jitter) {
  sim::config net;
  // Each beacon reaches the receivers after 500 µs + [0, J]: two receivers'
  // delays differ by at most J, RBS's assumption. No reordering: it would add
  // delay beyond J.
  net.network.delay = sim::latency::uniform(500us, 500us + jitter);
  net.network.loss = 0.05;
  net.network.duplicate = 0.02;
  simulator w(seed, net);
  const auto receivers = static_cast<std::uint32_t>(3 + seed % 4);
  reference_broadcast_config cfg{.beacon = address::sim(receivers),
                                 .beacon_interval = 200ms,
                                 .window = 32,
                                 .receive_jitter = jitter,
                                 .drift_bound = max_drift,
                                 .clock = test_clock};
  w.add_nodes(receivers + 1,
              [=](sim::node_context& c) { c.add<rbs>(rbs::default_id, group::static_group::sim(receivers), cfg); });
  for (std::uint32_t i = 0; i <= receivers; ++i) w.set_clock(i, uniform_skew(w.rng(), 20ms), uniform_drift(w.rng()));
  std::vector<monotone_watch> watch(receivers);
  std::int64_t checks = 0;
  w.after_event([&] {
    for (std::uint32_t i = 1; i < receivers; ++i) {
      auto& p = w.get<rbs>(i, rbs::default_id);
      const time_point s = p.synchronized_now();
      watch[i].check(w.local_now(i), s, p.clock());
      if (!p.clock().synchronized()) continue;
      ++checks;
      const auto err = (s - w.local_now(0)).count();
      INFO("receiver " << i << " error " << err << " bound " << p.error_bound().count());
      REQUIRE(std::abs(err) <= p.error_bound().count());
    }
  });
  w.run_for(12s);
  CHECK(checks > 100);
  // Pairwise conversion, any receiver to any other.
  for (std::uint32_t i = 0; i < receivers; ++i)
    for (std::uint32_t j = 0; j < receivers; ++j) {
      if (i == j) continue;
      auto t = w.get<rbs>(i, rbs::default_id).to_peer(address::sim(j), w.local_now(i));
      REQUIRE(t);
      REQUIRE(std::abs((t->time - w.local_now(j)).count()) <= t->error.count());
      CHECK(t->error < 3 * jitter + 10us);  // useful: the fit is about as good as one beacon's jitter
    }
  for (std::uint32_t i = 1; i < receivers; ++i)
    CHECK(w.get<rbs>(i, rbs::default_id).clock().monotonic_guard_hits() == 0);
  CHECK(w.metrics().counter(rbs::default_id, "inconsistent_receipt") == 0);
}
}  // namespace

TEST_CASE(
    "reference_broadcast: offset and drift by least squares; receivers within their bound of the reference after every event; 200 seeds") {
  const duration jitters[] = {5us, 100us, 1ms, 5ms};
  for (std::uint64_t seed = 1; seed <= 200; ++seed) {
    INFO("seed " << seed);
    run_rbs(seed, jitters[seed % 4]);
  }
}

TEST_CASE("reference_broadcast: drift is estimated, not only offset") {
  simulator w(5, [] {
    sim::config c;
    c.network.delay = sim::latency::uniform(500us, 520us);
    return c;
  }());
  reference_broadcast_config cfg{.beacon = address::sim(2), .beacon_interval = 100ms, .receive_jitter = 20us};
  w.add_nodes(3, [=](sim::node_context& c) { c.add<rbs>(rbs::default_id, group::static_group::sim(2), cfg); });
  w.set_clock(0, 3ms, 80e-6);
  w.set_clock(1, -4ms, -30e-6);
  w.run_for(10s);
  auto t = w.get<rbs>(1, rbs::default_id).to_peer(address::sim(0), w.local_now(1));
  REQUIRE(t);
  // Receiver 0 runs (1 + 80e-6) / (1 - 30e-6) as fast as receiver 1.
  CHECK(t->relative_drift == doctest::Approx((1 + 80e-6) / (1 - 30e-6) - 1).epsilon(0.05));
  CHECK(w.get<rbs>(1, rbs::default_id).clock().frequency() == doctest::Approx(t->relative_drift));
}

TEST_CASE("reference_broadcast: receipts and beacons from the wrong party, or absurd, are counted and left out") {
  simulator w(2);
  reference_broadcast_config cfg{.beacon = address::sim(3), .beacon_interval = 100ms};
  w.add_nodes(4, [=](sim::node_context& c) { c.add<rbs>(rbs::default_id, group::static_group::sim(3), cfg); });
  w.run_for(2s);
  auto& p = w.get<rbs>(1, rbs::default_id);
  REQUIRE(p.clock().synchronized());
  const auto bound = p.error_bound();
  p.on_message(address::sim(0), rbs_msg::beacon{std::numeric_limits<std::uint64_t>::max()});
  p.on_message(address::sim(7), rbs_msg::receipt{1, 0});
  // A beacon arrives (sequence numbers far ahead), then receipts for it from
  // the reference: one days off, one 5 ms off (beyond what J = 1 ms allows).
  const std::uint64_t seq = std::numeric_limits<std::uint64_t>::max() - 1;
  const std::int64_t mine = w.local_now(1).time_since_epoch().count();
  p.on_message(address::sim(3), rbs_msg::beacon{seq});
  p.on_message(address::sim(0), rbs_msg::receipt{seq, std::numeric_limits<std::int64_t>::min()});
  CHECK(w.metrics().counter(rbs::default_id, "absurd_receipt") == 1);
  const auto offset = (w.local_now(0) - w.local_now(1)).count();
  p.on_message(address::sim(0), rbs_msg::receipt{seq, mine + offset + 5'000'000});
  CHECK(w.metrics().counter(rbs::default_id, "inconsistent_receipt") >= 1);
  CHECK(w.metrics().counter(rbs::default_id, "beacon_not_from_beacon") == 1);
  CHECK(w.metrics().counter(rbs::default_id, "not_a_receiver") == 1);
  CHECK(std::abs((p.synchronized_now() - w.local_now(0)).count()) <= p.error_bound().count());
  CHECK(p.error_bound() <= bound);  // nothing hostile widened it (no time passed)
  CHECK(p.error_bound() < 2ms);
  CHECK_THROWS_AS(w.add_node([](sim::node_context& c) {
    c.add<rbs>(rbs::default_id, group::static_group::sim(3), reference_broadcast_config{.beacon = address::sim(1)});
  }),
                  dcp::error);
}

// ---------------------------------------------------------------- hostile input, at random

namespace {
std::int64_t hostile_number(rng& r, std::int64_t near) {
  switch (r.below(6)) {
    case 0:
      return std::numeric_limits<std::int64_t>::max();
    case 1:
      return std::numeric_limits<std::int64_t>::min();
    case 2:
      return 0;
    case 3:
      return near + r.between(-50'000'000, 50'000'000);
    case 4:
      return -near;
    default:
      return static_cast<std::int64_t>(r());
  }
}
}  // namespace

TEST_CASE("random hostile messages to all three: no crash, tables bounded, clocks monotone; 20 seeds") {
  for (std::uint64_t seed = 1; seed <= 20; ++seed) {
    INFO("seed " << seed);
    const std::uint32_t n = 4;
    simulator w(seed, [] {
      sim::config c;
      c.network.delay = sim::latency::uniform(500us, 1500us);
      return c;
    }());
    // Nodes 0..3: Cristian (0 the server), Bully + Berkeley, RBS receivers; node 4: the RBS beacon.
    reference_broadcast_config rcfg{.beacon = address::sim(n), .beacon_interval = 100ms, .window = 16};
    w.add_nodes(n + 1, [=](sim::node_context& c) {
      if (c.index() < n) {
        c.add<ntp>(
            ntp::default_id,
            c.index() == 0 ? cristian_config{} : cristian_config{.server = address::sim(0), .poll_interval = 100ms});
        auto& e = c.add<bully>(bully::default_id, group::static_group::sim(n));
        c.add<berk>(berk::default_id, e, group::static_group::sim(n),
                    berkeley_config{.poll_interval = 300ms, .reply_window = 100ms});
      }
      c.add<rbs>(rbs::default_id, group::static_group::sim(n), rcfg);
    });
    for (std::uint32_t i = 0; i <= n; ++i) w.set_clock(i, uniform_skew(w.rng(), 20ms), uniform_drift(w.rng()));
    std::vector<monotone_watch> a(n), b(n), c(n);
    auto watch_all = [&] {
      for (std::uint32_t i = 0; i < n; ++i) {
        auto& p = w.get<ntp>(i, ntp::default_id);
        a[i].check(w.local_now(i), p.synchronized_now(), p.clock());
        auto& q = w.get<berk>(i, berk::default_id);
        b[i].check(w.local_now(i), q.synchronized_now(), q.clock());
        auto& r = w.get<rbs>(i, rbs::default_id);
        c[i].check(w.local_now(i), r.synchronized_now(), r.clock());
        REQUIRE(r.receipts_held() <= rcfg.window * n);
      }
    };
    w.after_event(watch_all);
    rng& r = w.rng();
    for (int k = 0; k < 3000; ++k) {
      w.run_for(duration(r.between(0, 2'000'000)));
      const auto to = static_cast<std::uint32_t>(r.below(n));
      const address from = address::sim(static_cast<std::uint32_t>(r.below(n + 3)));  // members, the beacon, strangers
      const std::int64_t near = w.local_now(to).time_since_epoch().count();
      const auto u = static_cast<std::uint64_t>(hostile_number(r, near));
      switch (r.below(7)) {
        case 0:
          w.get<ntp>(to, ntp::default_id).on_message(from, cristian_msg::request{u, hostile_number(r, near)});
          break;
        case 1:
          w.get<ntp>(to, ntp::default_id)
              .on_message(from,
                          cristian_msg::reply{u, hostile_number(r, near), hostile_number(r, near),
                                              hostile_number(r, near), hostile_number(r, 0)});
          break;
        case 2:
          w.get<berk>(to, berk::default_id).on_message(from, berkeley_msg::poll{u});
          break;
        case 3:
          w.get<berk>(to, berk::default_id).on_message(from, berkeley_msg::reading{u, hostile_number(r, near)});
          break;
        case 4:
          w.get<berk>(to, berk::default_id)
              .on_message(from, berkeley_msg::adjust{u, hostile_number(r, 0), hostile_number(r, 0)});
          break;
        case 5:
          w.get<rbs>(to, rbs::default_id).on_message(from, rbs_msg::beacon{u});
          break;
        default:
          w.get<rbs>(to, rbs::default_id).on_message(from, rbs_msg::receipt{u, hostile_number(r, near)});
          break;
      }
      watch_all();
    }
    const auto& m = w.metrics();
    CHECK(m.counter(ntp::default_id, "unexpected_reply") + m.counter(ntp::default_id, "reply_not_from_server") > 100);
    CHECK(m.counter(berk::default_id, "unexpected_adjust") + m.counter(berk::default_id, "absurd_adjustment") > 100);
    CHECK(m.counter(berk::default_id, "unexpected_reading") + m.counter(berk::default_id, "not_a_member") > 100);
    CHECK(m.counter(rbs::default_id, "not_a_receiver") + m.counter(rbs::default_id, "beacon_not_from_beacon") > 100);
    CHECK(m.counter(rbs::default_id, "absurd_receipt") + m.counter(rbs::default_id, "stale_receipt") > 10);
    for (std::uint32_t i = 0; i < n; ++i) {
      CHECK(w.get<ntp>(i, ntp::default_id).clock().monotonic_guard_hits() == 0);
      CHECK(w.get<berk>(i, berk::default_id).clock().monotonic_guard_hits() == 0);
      CHECK(w.get<rbs>(i, rbs::default_id).clock().monotonic_guard_hits() == 0);
    }
  }
}

}  // namespace test_clock_sync
