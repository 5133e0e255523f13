#include <doctest/doctest.h>

#include <map>

#include "dcp/sim.hpp"

namespace test_simulator {

using namespace dcp;
using sim::simulator;

namespace {
struct note {
  static constexpr message_type wire_id = 1;
  std::uint64_t seq = 0;
  template <class A> void serialize(A& ar) { ar(seq); }
};

// Sends `count` numbered notes to a peer, one every `gap`; records what it gets.
template <Env E> struct chatter {
  using messages = wire::message_set<note>;
  struct config {
    address peer;
    int count = 0;
    duration gap = 1ms;
  };
  chatter(E env, config c) : env(env), cfg(c) {}
  void start() {
    if (cfg.count > 0) env.arm(cfg.gap, [this] { tick(); });
    // durable: how many times this node has started
    auto d = env.disk().read("boots");
    boots = d ? (*d)[0] + 1 : 1;
    (void)env.disk().write("boots", bytes{static_cast<std::uint8_t>(boots)});
    if (sync_boots) (void)env.disk().sync("boots");
  }
  void tick() {
    env.send(cfg.peer, note{++sent});
    if (static_cast<int>(sent) < cfg.count) env.arm(cfg.gap, [this] { tick(); });
  }
  void on_message(const address& from, const note& n) { got.push_back({from, n.seq}); }
  void on_unreachable(const address& peer) { unreachable.push_back(peer); }

  E env;
  config cfg;
  std::uint64_t sent = 0;
  int boots = 0;
  static inline bool sync_boots = true;
  std::vector<std::pair<address, std::uint64_t>> got;
  std::vector<address> unreachable;
};
using chat = chatter<sim::env>;

// Two nodes: 0 sends `count` notes to 1.
void pair_of(simulator& w, int count, duration gap = 1ms) {
  w.add_node([=](sim::node_context& n) { n.add<chat>(1, chat::config{address::sim(1), count, gap}); });
  w.add_node([](sim::node_context& n) { n.add<chat>(1, chat::config{address::sim(0), 0}); });
}

std::uint64_t run_world(std::uint64_t seed) {
  sim::config c;
  c.network.delay = sim::latency::uniform(1ms, 20ms);
  c.network.loss = 0.1;
  c.network.duplicate = 0.05;
  simulator w(seed, c);
  pair_of(w, 500);
  w.run_for(10s);
  return w.trace_hash();
}
}  // namespace

TEST_CASE("one seed, one trace: the hash replays and differs across seeds") {
  const auto a = run_world(11), b = run_world(11), c = run_world(12);
  CHECK(a == b);
  CHECK(a != c);
}

TEST_CASE("trace hash does not depend on whether a trace hook is watching") {
  sim::config c;
  c.network.delay = sim::latency::uniform(1ms, 5ms);
  simulator w1(5, c), w2(5, c);
  pair_of(w1, 50);
  pair_of(w2, 50);
  int seen = 0;
  w2.on_trace([&](const sim::trace_event&) { ++seen; });
  w1.at(time_point(20ms), [&] { w1.crash(1); });
  w2.at(time_point(20ms), [&] { w2.crash(1); });
  w1.run_for(1s);
  w2.run_for(1s);
  CHECK(seen > 0);
  CHECK_FALSE(w1.is_up(1));  // the scheduled crash happened
  CHECK(w1.trace_hash() == w2.trace_hash());
}

TEST_CASE("loss, duplication and reordering happen at the configured rates") {
  sim::config c;
  c.network.delay = sim::latency::constant(5ms);
  c.network.loss = 0.2;
  c.network.duplicate = 0.1;
  c.network.reorder = 0.3;
  c.network.reorder_delay = 20ms;
  simulator w(3, c);
  pair_of(w, 5000, 1ms);
  w.run_for(20s);
  const auto& got = w.get<chat>(1, 1).got;
  std::map<std::uint64_t, int> copies;
  int inversions = 0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    ++copies[got[i].second];
    if (i && got[i].second < got[i - 1].second) ++inversions;
  }
  const double delivered = static_cast<double>(copies.size()) / 5000;
  CHECK(delivered == doctest::Approx(0.8).epsilon(0.05));
  int dup = 0;
  for (auto& [s, n] : copies) dup += n > 1;
  CHECK(static_cast<double>(dup) / static_cast<double>(copies.size()) == doctest::Approx(0.1).epsilon(0.3));
  CHECK(inversions > 100);
}

TEST_CASE("fifo links keep send order even with random delays") {
  sim::config c;
  c.network.delay = sim::latency::long_tailed(1ms, 5ms, 1.5);
  c.fifo = true;
  simulator w(4, c);
  pair_of(w, 2000, 100us);
  w.run_for(60s);
  const auto& got = w.get<chat>(1, 1).got;
  REQUIRE(got.size() == 2000);
  for (std::size_t i = 0; i < got.size(); ++i) CHECK(got[i].second == i + 1);
}

TEST_CASE("partitions cut groups apart; heal joins them") {
  simulator w(5);
  pair_of(w, 1000, 1ms);
  w.run_until(time_point(100ms));
  const auto before = w.get<chat>(1, 1).got.size();
  w.partition({{0}, {1}});
  w.run_until(time_point(500ms));
  CHECK(w.get<chat>(1, 1).got.size() <= before + 1);  // at most one already in flight
  w.heal();
  w.run_until(time_point(2s));
  CHECK(w.get<chat>(1, 1).got.size() > before + 400);
  // one-way block
  simulator v(6);
  pair_of(v, 100, 1ms);
  v.block(0, 1);
  v.run_for(1s);
  CHECK(v.get<chat>(1, 1).got.empty());
}

TEST_CASE("crash loses volatile state and unsynced writes; restart reruns setup over the disk") {
  simulator w(7);
  pair_of(w, 1000, 1ms);
  w.run_until(time_point(100ms));
  CHECK(w.get<chat>(1, 1).boots == 1);
  w.crash(1);
  CHECK_FALSE(w.is_up(1));
  CHECK(w.find<chat>(1, 1) == nullptr);
  w.run_until(time_point(300ms));
  // sends to a crashed node are reported unreachable to the sender (like a refused connection)
  CHECK_FALSE(w.get<chat>(0, 1).unreachable.empty());
  CHECK(w.get<chat>(0, 1).unreachable.front() == address::sim(1));
  w.restart(1);
  CHECK(w.get<chat>(1, 1).boots == 2);   // synced state survived
  CHECK(w.get<chat>(1, 1).got.empty());  // volatile state did not
  w.run_until(time_point(2s));
  CHECK(w.get<chat>(1, 1).got.size() > 500);

  chat::sync_boots = false;  // now boots are written but never synced
  simulator v(8);
  pair_of(v, 0);
  v.crash(0);
  v.restart(0);
  CHECK(v.get<chat>(0, 1).boots == 1);
  chat::sync_boots = true;
}

TEST_CASE("timers of a crashed node never fire; cancel works") {
  simulator w(9);
  int fired = 0, cancelled_fired = 0;
  w.add_node([&](sim::node_context& n) {
    sim::env e(n.world(), n.index(), 0);
    e.arm(10ms, [&] { ++fired; });
    auto id = e.arm(5ms, [&] { ++cancelled_fired; });
    CHECK(e.cancel(id));
    CHECK_FALSE(e.cancel(id));
  });
  w.run_for(1s);
  CHECK(fired == 1);
  CHECK(cancelled_fired == 0);
  simulator v(9);
  int dead = 0;
  v.add_node([&](sim::node_context& n) { sim::env(n.world(), n.index(), 0).arm(10ms, [&] { ++dead; }); });
  v.crash(0);
  v.run_for(1s);
  CHECK(dead == 0);
}

TEST_CASE("a wakeup fires once, at the earliest time asked of it, and not after stop") {
  simulator w(11);
  w.add_node([](sim::node_context&) {});
  sim::env e(w, 0, 0);
  std::vector<time_point> rang;
  wakeup<sim::env> a;
  a.wake_by(time_point(1ms));  // not started: nothing to fire
  CHECK_FALSE(a.armed());
  a.start(e, [&] { rang.push_back(w.now()); });
  a.wake_by(time_point(50ms));
  a.wake_by(time_point(80ms));  // later: changes nothing
  a.wake_by(time_point(20ms));  // earlier: moves it
  CHECK(a.armed());
  w.run_for(100ms);
  CHECK(rang == std::vector<time_point>{time_point(20ms)});  // once: the earlier times replace, not add
  CHECK_FALSE(a.armed());
  a.wake_by(w.now() - 5ms);  // a time past: at once
  w.run_for(1ms);
  CHECK(rang.size() == 2);
  CHECK(rang.back() == time_point(100ms));
  a.wake_by(w.now() + 10ms);
  a.stop();
  w.run_for(1s);
  CHECK(rang.size() == 2);
}

TEST_CASE("posted work runs right after its event, in order, before any later event; a crash drops it") {
  simulator w(15);
  w.add_node([](sim::node_context&) {});
  w.add_node([](sim::node_context&) {});
  sim::env a(w, 0, 0), b(w, 1, 0);
  std::vector<int> ran;
  w.at(time_point(10ms), [&] {
    a.post([&] {
      ran.push_back(2);
      a.post([&] { ran.push_back(4); });  // posted by posted work: still before the next event
    });
    a.post([&] { ran.push_back(3); });
    ran.push_back(1);  // the event itself finishes first
  });
  w.at(time_point(10ms), [&] { ran.push_back(5); });  // the next event, at the same instant
  std::size_t after_first = 0;
  w.after_event([&] {
    if (after_first == 0) after_first = ran.size();
  });
  w.run_for(20ms);
  CHECK(ran == std::vector<int>{1, 2, 3, 4, 5});
  CHECK(after_first == 4);  // invariant checks see the event with its completions

  // Posted outside any event (a test's direct call): runs before the next event.
  ran.clear();
  w.after(1ms, [&] { ran.push_back(7); });
  b.post([&] { ran.push_back(6); });
  CHECK(ran.empty());
  w.run_for(5ms);
  CHECK(ran == std::vector<int>{6, 7});

  // A wait on what posted work brings ends with it, not at the next event.
  bool flag = false;
  b.post([&] { flag = true; });
  w.after(50ms, [] {});
  const auto waited = w.run_until([&] { return flag; }, w.now() + 1s);
  CHECK(waited.reason == sim::stop_reason::predicate);
  CHECK(waited.events == 0);
  ran.clear();

  // Posted by a life of the node that then crashed: never runs, even after a restart.
  ran.clear();
  w.at(w.now() + 1ms, [&] {
    b.post([&] { ran.push_back(8); });
    w.crash(1);
    w.restart(1);
    b.post([&] { ran.push_back(9); });  // the new life's
  });
  w.run_for(5ms);
  CHECK(ran == std::vector<int>{9});
}

TEST_CASE("scheduled actions run at their time, in order") {
  simulator w(13);
  std::vector<std::pair<int, time_point>> ran;
  w.at(time_point(30ms), [&] { ran.push_back({3, w.now()}); });
  w.at(time_point(10ms), [&] { ran.push_back({1, w.now()}); });
  w.after(10ms, [&] { ran.push_back({2, w.now()}); });  // same time as the first: insertion order
  w.run_for(1s);
  CHECK(ran ==
        std::vector<std::pair<int, time_point>>{{1, time_point(10ms)}, {2, time_point(10ms)}, {3, time_point(30ms)}});
}

TEST_CASE("clock skew and drift: local time and timers in local time") {
  simulator w(10);
  time_point fired_at{};
  w.add_node([](sim::node_context&) {});
  w.set_clock(0, 5s, 0.5);  // 5 s ahead, running 1.5x fast
  sim::env e(w, 0, 0);
  CHECK(e.now() == time_point(5s));
  e.arm(3s, [&] { fired_at = w.now(); });  // 3 local seconds = 2 true seconds
  w.run_for(10s);
  CHECK(fired_at == time_point(2s));
  CHECK(e.now() == time_point(5s) + 15s);
}

TEST_CASE("run bounds: until a predicate, until quiet, by time and by event count") {
  simulator w(11);
  pair_of(w, 100, 1ms);
  auto r = w.run_until([&] { return w.get<chat>(1, 1).got.size() >= 10; }, time_point(10s));
  CHECK(r.reason == sim::stop_reason::predicate);
  CHECK(w.get<chat>(1, 1).got.size() == 10);
  r = w.run_for(1s, 5);
  CHECK(r.reason == sim::stop_reason::event_limit);
  CHECK(r.events == 5);
  r = w.run_until(time_point(10s));
  CHECK(r.reason == sim::stop_reason::no_events);
  CHECK(w.now() == time_point(10s));
  w.get<chat>(0, 1).cfg.count = 200;
  w.get<chat>(0, 1).tick();
  r = w.run_until_quiet(time_point(20s));
  CHECK(r.reason == sim::stop_reason::quiet);
  CHECK(w.in_flight() == 0);
}

TEST_CASE("bad configuration and misuse are refused with a clear error") {
  sim::config c;
  c.network.loss = 1.5;
  CHECK_THROWS_AS(simulator(1, c), dcp::error);
  CHECK_THROWS_AS(sim::latency::uniform(5ms, 1ms), dcp::error);
  simulator w(1);
  CHECK_THROWS_AS(w.crash(3), dcp::error);
  w.add_node([](sim::node_context& n) { n.add<chat>(1, chat::config{}); });
  CHECK_THROWS_AS(w.get<chat>(0, 2), dcp::error);
  // sending to an address outside the simulation is refused and counted
  CHECK_FALSE(w.get<chat>(0, 1).env.send(address::loopback(1), note{}));
  CHECK(w.metrics().drops(1, errc::bad_address) == 1);
}

TEST_CASE("10^5 nodes go through a round of messages") {
  simulator w(12);
  constexpr std::uint32_t n = 100000;
  w.add_nodes(n, [](sim::node_context& c) { c.add<chat>(1, chat::config{address::sim((c.index() + 1) % n), 1, 1ms}); });
  w.run_until_quiet(time_point(10s));
  std::size_t got = 0;
  for (std::uint32_t i = 0; i < n; i += 997) got += w.get<chat>(i, 1).got.size();
  CHECK(got == (n + 996) / 997);
  CHECK(w.metrics().of(1).received == n);
}

}  // namespace test_simulator
