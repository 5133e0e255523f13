#include <doctest/doctest.h>

#include "../seeds.hpp"  // fewer seeds under sanitizers

#include <algorithm>
#include <cmath>
#include <memory>
#include <vector>

#include "dcp/membership.hpp"
#include "dcp/sim.hpp"
#include "dcp/wire/message.hpp"

namespace test_swim {

using namespace dcp;
using membership::member_event;
using membership::member_state;
using sim::simulator;
using swim_t = membership::swim<sim::env>;
constexpr protocol_id sid = swim_t::default_id;

static_assert(membership::Membership<swim_t>);

namespace {

struct seen {
  std::uint32_t observer;
  member_event event;
  time_point at;
};

/// N members joining through member 0, every event recorded, invariants
/// checked after every event on the member it touched.
struct cluster {
  simulator w;
  std::shared_ptr<std::vector<seen>> log = std::make_shared<std::vector<seen>>();
  std::shared_ptr<std::size_t> violations = std::make_shared<std::size_t>(0);

  cluster(std::uint64_t seed, sim::config net, std::uint32_t n, membership::swim_config cfg) : w(seed, net) {
    auto touched = std::make_shared<std::uint32_t>(0);
    w.on_trace([touched](const sim::trace_event& e) {
      if (e.what == sim::trace_event::kind::deliver)
        *touched = e.to;
      else if (e.what == sim::trace_event::kind::timer)
        *touched = e.from;
    });
    w.after_event([this, touched] {
      if (*touched >= w.size()) return;
      if (auto* p = w.find<swim_t>(*touched, sid); p && !p->check_invariants()) ++*violations;
    });
    for (std::uint32_t i = 0; i < n; ++i) {
      w.add_node([cfg, i, log = log](sim::node_context& c) {
        auto k = cfg;
        k.seeds = {address::sim(0)};
        auto& p = c.add<swim_t>(sid, k);
        simulator* world = &c.world();
        p.on_event([log, i, world](const member_event& e) { log->push_back({i, e, world->now()}); });
      });
      w.run_for(20ms);
    }
  }
  swim_t* at(std::uint32_t i) { return w.find<swim_t>(i, sid); }
  /// Every live member sees exactly the live set as members.
  bool converged(const std::vector<std::uint32_t>& live) {
    for (auto i : live) {
      auto* p = at(i);
      if (!p || p->num_members() != live.size()) return false;
      for (auto j : live) {
        auto m = p->member(address::sim(j));
        if (!m || m->state != member_state::alive) return false;
      }
    }
    return true;
  }
  /// failed events about members in `healthy`, seen by members in `observers`.
  std::size_t false_positives(const std::vector<std::uint32_t>& healthy,
                              const std::vector<std::uint32_t>& observers) const {
    std::size_t n = 0;
    for (auto& s : *log) {
      if (s.event.what != member_event::kind::failed) continue;
      const auto about = s.event.member.node.sim_index();
      if (std::count(healthy.begin(), healthy.end(), about) &&
          std::count(observers.begin(), observers.end(), s.observer))
        ++n;
    }
    return n;
  }
  std::int64_t counter(std::string_view name) { return w.metrics().counter(sid, name); }
};

sim::config lossy(double loss) {
  sim::config c;
  c.network.delay = sim::latency::uniform(1ms, 10ms);
  c.network.loss = loss;
  c.network.duplicate = loss / 2;
  c.network.reorder = loss;
  return c;
}

std::vector<std::uint32_t> range(std::uint32_t n, std::uint32_t except = ~0u) {
  std::vector<std::uint32_t> v;
  for (std::uint32_t i = 0; i < n; ++i)
    if (i != except) v.push_back(i);
  return v;
}

membership::swim_config fast_push_pull(membership::swim_config c) {
  c.push_pull_interval = 10s;
  return c;
}

}  // namespace

TEST_CASE("swim: without faults, everyone joins, nobody is ever suspected (many seeds, with and without Lifeguard)") {
  for (std::uint64_t seed = 1; seed <= dcp::test::last_seed(1, 6); ++seed) {
    for (bool lifeguard : {true, false}) {
      CAPTURE(seed);
      CAPTURE(lifeguard);
      const std::uint32_t n = 24;
      auto cfg = lifeguard ? membership::swim_config{} : membership::swim_config::without_lifeguard();
      cluster c(seed, lossy(0), n, cfg);
      c.w.run_for(60s);
      CHECK(c.converged(range(n)));
      CHECK(c.counter("suspicions") == 0);
      CHECK(c.false_positives(range(n), range(n)) == 0);
      CHECK(*c.violations == 0);
      for (std::uint32_t i = 0; i < n; ++i) {
        CHECK(c.at(i)->joined());
        CHECK(c.at(i)->health_score() == 0);
        CHECK(c.at(i)->incarnation() == 0);
      }
      // every member saw every other join exactly once
      std::size_t joins = 0;
      for (auto& s : *c.log) joins += s.event.what == member_event::kind::join;
      CHECK(joins == n * (n - 1));
    }
  }
}

TEST_CASE("swim: a crashed member is declared dead by every live member within a bound (loss, many seeds)") {
  for (double loss : {0.0, 0.05}) {
    for (std::uint64_t seed = 1; seed <= dcp::test::last_seed(1, 6); ++seed) {
      for (bool lifeguard : {true, false}) {
        CAPTURE(loss);
        CAPTURE(seed);
        CAPTURE(lifeguard);
        const std::uint32_t n = 20;
        auto cfg = fast_push_pull(lifeguard ? membership::swim_config{} : membership::swim_config::without_lifeguard());
        cluster c(seed, lossy(loss), n, cfg);
        c.w.run_for(20s);
        REQUIRE(c.converged(range(n)));
        const std::uint32_t victim = 1 + static_cast<std::uint32_t>(c.w.rng().below(n - 1));
        const time_point crash_at = c.w.now();
        c.w.crash(victim);
        const auto live = range(n, victim);
        // The bound: the victim is probed within one pass over the round-robin
        // list (≤ 2N−1 periods, SWIM §4.3, stretched by local health), then the
        // longest suspicion (max = 6·min with Lifeguard), then the Dead update
        // spreads in O(log N) periods (10 s is generous).
        std::uint32_t worst_health = 0;
        auto all_know = [&] {
          for (auto i : live) {
            worst_health = std::max(worst_health, c.at(i)->health_score());
            auto m = c.at(i)->member(address::sim(victim));
            if (m && m->state != member_state::dead) return false;
          }
          return true;
        };
        const double min_suspicion = 4 * std::log10(double(n));
        const double suspicion = lifeguard ? 6 * min_suspicion : min_suspicion;
        const auto bound = duration(std::chrono::seconds(2 * n - 1)) +
            std::chrono::duration_cast<duration>(std::chrono::duration<double>(suspicion)) + 10s;
        c.w.run_until(all_know, crash_at + bound);
        CHECK(all_know());
        CAPTURE(worst_health);
        CAPTURE(to_seconds(c.w.now() - crash_at));
        // nobody alive was declared dead in the meantime
        c.w.run_for(5s);
        CHECK(c.false_positives(live, live) == 0);
        CHECK(*c.violations == 0);
        // and the dead member is forgotten after dead_retention
        c.w.run_for(cfg.dead_retention + 2 * cfg.probe_interval * cfg.awareness_max);
        for (auto i : live) CHECK(!c.at(i)->member(address::sim(victim)).has_value());
      }
    }
  }
}

namespace {
/// Makes member `at` believe `accuser` suspects `x` (a ping from the accuser
/// carrying Suspect(x)), as if the accuser's probe of x had failed.
void inject_suspicion(cluster& c, std::uint32_t at, std::uint32_t accuser, std::uint32_t x) {
  membership::swim_msg::update u{1, address::sim(x), c.at(x)->incarnation(), address::sim(accuser), {}};
  c.at(at)->on_message(address::sim(accuser), membership::swim_msg::ping{0, address::sim(at), {u}});
}
}  // namespace

TEST_CASE("swim: a suspected member that is alive refutes with a higher incarnation and is never declared dead") {
  for (std::uint64_t seed = 1; seed <= dcp::test::last_seed(1, 8); ++seed) {
    for (bool lifeguard : {true, false}) {
      CAPTURE(seed);
      CAPTURE(lifeguard);
      const std::uint32_t n = 16, x = 5;
      cluster c(seed, lossy(0.01), n,
                lifeguard ? membership::swim_config{} : membership::swim_config::without_lifeguard());
      c.w.run_until([&] { return c.converged(range(n)); }, c.w.now() + 60s);
      REQUIRE(c.converged(range(n)));
      inject_suspicion(c, 2, 11, x);
      REQUIRE(c.at(2)->member(address::sim(x))->state == member_state::suspect);
      c.w.run_for(30s);
      CHECK(c.at(x)->incarnation() > 0);  // x outbid the suspicion
      CHECK(c.false_positives({x}, range(n)) == 0);
      // An accuser that missed the refutation gets it again, without a new incarnation.
      const auto inc = c.at(x)->incarnation();
      const auto repeated = c.counter("refutation_repeated");
      c.at(x)->on_message(
          address::sim(2),
          membership::swim_msg::ping{0, address::sim(x), {{1, address::sim(x), inc - 1, address::sim(2), {}}}});
      CHECK(c.counter("refutation_repeated") == repeated + 1);
      CHECK(c.at(x)->incarnation() == inc);
      c.w.run_for(5s);
      CHECK(c.converged(range(n)));
      for (std::uint32_t i = 0; i < n; ++i)
        if (i != x) CHECK(c.at(i)->member(address::sim(x))->incarnation == c.at(x)->incarnation());
      CHECK(*c.violations == 0);
    }
  }
}

TEST_CASE("swim: with the buddy system, a suspect hears the suspicion in the ping itself") {
  // Plain SWIM leaves it to dissemination; with the buddy system the
  // suspicion rides first on every ping to the suspect.
  for (bool buddy : {true, false}) {
    CAPTURE(buddy);
    std::int64_t sent = 0;
    for (std::uint64_t seed = 1; seed <= dcp::test::last_seed(1, 6); ++seed) {
      CAPTURE(seed);
      auto cfg = membership::swim_config{};
      cfg.buddy_system = buddy;
      cluster c(seed, lossy(0), 24, cfg);
      c.w.run_for(15s);
      inject_suspicion(c, 2, 7, 3);
      c.w.run_for(10s);
      sent += c.counter("buddy_suspicions_sent");
      CHECK(c.at(3)->incarnation() > 0);
      CHECK(c.false_positives({3}, range(24)) == 0);
    }
    CHECK((sent > 0) == buddy);  // some member pinged the suspect before dissemination reached it
  }
}

namespace {
/// Member `slow` answers late and hears late: every message to or from it
/// takes 0.2-2.2 s (a member short of CPU, or in long GC pauses).
void make_slow(simulator& w, std::uint32_t slow, std::uint32_t n, double loss) {
  sim::link l;
  l.delay = sim::latency::uniform(200ms, 2200ms);
  l.loss = loss;
  for (std::uint32_t i = 0; i < n; ++i) {
    if (i == slow) continue;
    w.set_link(slow, i, l);
    w.set_link(i, slow, l);
  }
}
}  // namespace

TEST_CASE("swim: Lifeguard cuts false positives about healthy members caused by one slow member") {
  const std::uint32_t n = 24, slow = 7;
  const double loss = 0.05;
  std::size_t fp[2] = {0, 0}, fp_healthy_views[2] = {0, 0};
  std::uint32_t slow_health = 0;
  for (std::uint64_t seed = 1; seed <= dcp::test::last_seed(1, 4); ++seed) {
    for (int lifeguard = 0; lifeguard < 2; ++lifeguard) {
      CAPTURE(seed);
      auto cfg = lifeguard ? membership::swim_config{} : membership::swim_config::without_lifeguard();
      cluster c(seed, lossy(loss), n, cfg);
      c.w.run_until([&] { return c.converged(range(n)); }, c.w.now() + 60s);
      REQUIRE(c.converged(range(n)));
      const auto start = c.log->size();
      make_slow(c.w, slow, n, loss);
      c.w.run_for(120s);
      c.log->erase(c.log->begin(), c.log->begin() + static_cast<std::ptrdiff_t>(start));
      const auto healthy = range(n, slow);
      fp[lifeguard] += c.false_positives(healthy, range(n));
      fp_healthy_views[lifeguard] += c.false_positives(healthy, healthy);
      if (lifeguard) slow_health = std::max(slow_health, c.at(slow)->health_score());
      CHECK(*c.violations == 0);
    }
  }
  MESSAGE("false positives about healthy members, SWIM: " << fp[0] << " (in healthy views " << fp_healthy_views[0]
                                                          << "), Lifeguard: " << fp[1] << " (" << fp_healthy_views[1]
                                                          << ")");
  CHECK(fp[0] > 0);           // the scenario does hurt plain SWIM
  CHECK(fp[1] * 4 <= fp[0]);  // and Lifeguard removes most of it
  CHECK(slow_health > 0);     // the slow member noticed it is the slow one
}

TEST_CASE("swim: a graceful leave is seen by every member as left, not failed") {
  for (std::uint64_t seed = 1; seed <= dcp::test::last_seed(1, 6); ++seed) {
    CAPTURE(seed);
    const std::uint32_t n = 16, goer = 9;
    cluster c(seed, lossy(0.02), n, membership::swim_config{});
    c.w.run_for(20s);
    REQUIRE(c.converged(range(n)));
    c.at(goer)->leave();
    c.w.run_for(15s);
    CHECK(c.at(goer)->has_left());
    const auto rest = range(n, goer);
    for (auto i : rest) {
      auto m = c.at(i)->member(address::sim(goer));
      CHECK((!m || m->state == member_state::left));
    }
    std::size_t leaves = 0, fails = 0;
    for (auto& s : *c.log) {
      if (s.event.member.node != address::sim(goer)) continue;
      leaves += s.event.what == member_event::kind::leave;
      fails += s.event.what == member_event::kind::failed;
    }
    CHECK(leaves == rest.size());
    CHECK(fails == 0);
    CHECK(c.converged(rest));
  }
}

TEST_CASE("swim: a crashed member that restarts rejoins with a higher incarnation") {
  const std::uint32_t n = 12, x = 4;
  cluster c(3, lossy(0.01), n, fast_push_pull(membership::swim_config{}));
  c.w.run_for(20s);
  c.w.crash(x);
  c.w.run_until([&] { return c.at(0)->member(address::sim(x))->state == member_state::dead; }, c.w.now() + 120s);
  REQUIRE(c.at(0)->member(address::sim(x))->state == member_state::dead);
  c.w.restart(x);
  c.w.run_for(30s);
  CHECK(c.converged(range(n)));
  CHECK(c.at(x)->incarnation() > 0);
}

TEST_CASE("swim: after a partition, each side holds the other dead; once healed, push-pull rejoins them") {
  for (std::uint64_t seed = 1; seed <= dcp::test::last_seed(1, 4); ++seed) {
    for (bool lifeguard : {true, false}) {
      CAPTURE(seed);
      CAPTURE(lifeguard);
      const std::uint32_t n = 16;
      auto cfg = lifeguard ? membership::swim_config{} : membership::swim_config::without_lifeguard();
      cfg.push_pull_interval = 5s;
      cfg.dead_retention = 120s;
      cluster c(seed, lossy(0.01), n, cfg);
      c.w.run_until([&] { return c.converged(range(n)); }, c.w.now() + 60s);
      REQUIRE(c.converged(range(n)));
      std::vector<std::uint32_t> a, b;
      for (std::uint32_t i = 0; i < n; ++i) (i % 2 ? a : b).push_back(i);
      c.w.partition({a, b});
      c.w.run_until([&] { return c.converged(a) && c.converged(b); }, c.w.now() + 100s);
      CHECK(c.converged(a));  // each side sees only itself, the other side dead
      CHECK(c.converged(b));
      c.w.heal();
      c.w.run_until([&] { return c.converged(range(n)); }, c.w.now() + 100s);
      CHECK(c.converged(range(n)));
      CHECK(*c.violations == 0);
    }
  }
}

TEST_CASE("swim: metadata reaches every member, and an update raises `updated` events") {
  const std::uint32_t n = 10;
  membership::swim_config cfg;
  cfg.metadata = to_bytes("role=db");
  cluster c(1, lossy(0.02), n, cfg);
  c.w.run_for(20s);
  REQUIRE(c.converged(range(n)));
  for (std::uint32_t i = 1; i < n; ++i) CHECK(c.at(i)->member(address::sim(0))->meta == to_bytes("role=db"));
  c.at(2)->set_metadata(to_bytes("role=cache"));
  c.w.run_for(10s);
  std::size_t updated = 0;
  for (auto& s : *c.log)
    updated += s.event.what == member_event::kind::updated && s.event.member.node == address::sim(2);
  CHECK(updated == n - 1);
  for (std::uint32_t i = 0; i < n; ++i)
    if (i != 2) CHECK(c.at(i)->member(address::sim(2))->meta == to_bytes("role=cache"));
  CHECK_THROWS_AS(c.at(2)->set_metadata(bytes(cfg.max_metadata + 1, 'x')), dcp::error);
}

TEST_CASE(
    "swim: with max_message_size, every message fits a sealed datagram; the cluster still converges and detects a crash (loss, many seeds)") {
  // 1,400-byte datagram less the 12-byte frame header and the keyring seal
  // (40-byte prefix, 16-byte tag): the frame bound of udp:keyring. The
  // simulated wire refuses any larger frame, as the UDP transport does.
  const std::size_t sealed_frame = 1400 - 12 - 40 - 16;
  for (std::uint64_t seed = 1; seed <= dcp::test::last_seed(1, 4); ++seed) {
    CAPTURE(seed);
    const std::uint32_t n = 12;
    auto net = lossy(0.02);
    net.limits.max_frame_size = sealed_frame;
    auto cfg = fast_push_pull({});
    cfg.max_message_size = sealed_frame;
    cfg.metadata = bytes(400, std::uint8_t{'m'});  // eight updates of this size are 3.5 KB: most wait
    cluster c(seed, net, n, cfg);
    c.w.run_for(40s);
    CHECK(c.converged(range(n)));
    CHECK(c.w.metrics().drops(sid, errc::frame_too_large) == 0);
    CHECK(c.counter("piggyback_deferred") > 0);  // the bound was reached, and held
    CHECK(c.counter("push_pull_truncated") > 0);
    c.w.crash(n - 1);
    c.w.run_for(30s);
    CHECK(c.converged(range(n, n - 1)));
    for (std::uint32_t i = 0; i + 1 < n; ++i) {
      auto m = c.at(i)->member(address::sim(n - 1));
      CHECK((m && m->state == member_state::dead));
    }
    CHECK(c.w.metrics().drops(sid, errc::frame_too_large) == 0);
    CHECK(*c.violations == 0);
  }
  membership::swim_config small;
  small.max_message_size = small.max_metadata + 255;  // no room for the buddy suspicion and a full update
  CHECK_THROWS_AS(small.validate(), dcp::error);
}

TEST_CASE("swim: events run after the call, never inside it") {
  simulator w(1, lossy(0));
  bool inside = false;
  std::size_t events = 0;
  w.add_node([&](sim::node_context& c) {
    auto& p = c.add<swim_t>(sid, membership::swim_config{});
    p.on_event([&](const member_event&) {
      CHECK(!inside);
      ++events;
    });
  });
  w.add_node([](sim::node_context& c) { c.add<swim_t>(sid, membership::swim_config{}); });
  w.run_for(1s);
  auto* p0 = w.find<swim_t>(0, sid);
  inside = true;  // a push-pull delivered by hand: its join is raised after this event
  membership::swim_msg::push_pull pp{true, false, {{address::sim(1), 0, 0, {}}}};
  p0->on_message(address::sim(1), pp);
  inside = false;
  CHECK(events == 0);
  w.run_posted();  // the end of the event the test played: the join, before any other event
  CHECK(events == 1);
}

TEST_CASE("swim: hostile input is refused, counted and bounded; no crash, no corrupted state") {
  membership::swim_config cfg;
  cfg.max_members = 32;
  simulator w(7, lossy(0));
  for (std::uint32_t i = 0; i < 4; ++i)
    w.add_node([cfg](sim::node_context& c) {
      auto k = cfg;
      k.seeds = {address::sim(0)};
      c.add<swim_t>(sid, k);
    });
  w.run_for(10s);
  auto* p = w.find<swim_t>(0, sid);
  REQUIRE(p->num_members() == 4);
  const address evil = address::sim(3);
  auto count = [&](std::string_view n) { return w.metrics().counter(sid, n); };
  using membership::swim_msg::update;
  auto send = [&](std::vector<update> ups) {
    p->on_message(evil, membership::swim_msg::ping{1, address::sim(0), std::move(ups)});
  };

  // A flood of Alive claims for fictitious members: the table stops at max_members.
  for (std::uint32_t k = 0; k < 40; ++k) {
    std::vector<update> ups;
    for (std::uint32_t j = 0; j < cfg.max_piggyback; ++j)
      ups.push_back({0, address::sim(1000 + k * 8 + j), 0, evil, {}});
    send(ups);
  }
  CHECK(p->num_members() == cfg.max_members + 1);
  CHECK(count("members_table_full") > 0);
  CHECK(p->check_invariants());

  // Too many updates in one message.
  send(std::vector<update>(cfg.max_piggyback + 2, update{0, address::sim(2), 1, evil, {}}));
  CHECK(count("oversized_piggyback") == 1);

  // Absurd incarnations: beyond the absolute cap, and a jump of a known member.
  send({{0, address::sim(1), swim_t::max_incarnation + 1, evil, {}}});
  send({{1, address::sim(1), cfg.max_incarnation_jump + 5, evil, {}}});
  CHECK(count("absurd_incarnation") == 2);
  CHECK(p->member(address::sim(1))->state == member_state::alive);
  CHECK(p->member(address::sim(1))->incarnation == 0);

  // Oversized metadata, a bad kind, an empty address, claims about unknown members.
  send({{0, address::sim(1), 1, evil, bytes(cfg.max_metadata + 1, 1)}});
  CHECK(count("oversized_metadata") == 1);
  send({{9, address::sim(1), 1, evil, {}}, {0, address{}, 1, evil, {}}});
  CHECK(count("bad_update") == 2);
  send({{2, address::sim(5000), 0, evil, {}}});
  CHECK(count("claim_about_unknown_member") == 1);

  // Unsolicited and oversized push-pull answers; a flood of push-pull requests.
  p->on_message(evil, membership::swim_msg::push_pull{false, true, {{address::sim(6000), 0, 0, {}}}});
  CHECK(count("unsolicited_push_pull") == 1);
  CHECK(!p->member(address::sim(6000)));
  p->on_message(evil,
                membership::swim_msg::push_pull{false, false,
                                                std::vector<membership::swim_msg::member_record>(cfg.max_members + 2)});
  CHECK(count("oversized_push_pull") == 1);
  for (int k = 0; k < 40; ++k) p->on_message(evil, membership::swim_msg::push_pull{false, false, {}});
  CHECK(count("push_pull_refused_rate") > 0);

  // Acks and nacks nobody asked for; ping-reqs beyond the table; pings for someone else.
  p->on_message(evil, membership::swim_msg::ack{987654, {}});
  p->on_message(evil, membership::swim_msg::nack{987654, {}});
  CHECK(count("late_or_unexpected_ack") >= 1);
  CHECK(count("late_or_unexpected_nack") >= 1);
  for (std::uint64_t k = 0; k < cfg.max_pending_indirect + 10; ++k)
    p->on_message(evil, membership::swim_msg::ping_req{k, address::sim(2), true, {}});
  CHECK(count("ping_req_refused_full") == 10);
  p->on_message(evil, membership::swim_msg::ping{5, address::sim(77), {}});
  CHECK(count("misdirected_ping") == 1);
  CHECK(p->check_invariants());

  // A forged Dead about this member is refuted, not believed.
  send({{2, address::sim(0), 0, evil, {}}});
  CHECK(p->incarnation() == 1);

  // Garbage bytes never decode into a message.
  bytes junk(64, 0xFF);
  membership::swim_msg::ping decoded;
  CHECK(wire::decode(junk, decoded));

  // The fictitious members are probed, suspected, declared dead and forgotten;
  // the real ones stay.
  w.run_for(200s);
  CHECK(p->num_members() == 4);
  CHECK(p->check_invariants());
  for (std::uint32_t i = 1; i < 4; ++i) CHECK(p->member(address::sim(i))->state == member_state::alive);
}

}  // namespace test_swim
