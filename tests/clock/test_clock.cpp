#include <doctest/doctest.h>

#include <vector>

#include "dcp/clock.hpp"
#include "dcp/core/rng.hpp"
#include "dcp/wire/message.hpp"

namespace test_clock {

using namespace dcp;
using namespace dcp::clock;

TEST_CASE("lamport_clock: ticks, receives jump past the sender") {
  lamport_clock a, b;
  CHECK(a.tick() == 1);
  CHECK(a.tick() == 2);
  CHECK(b.observe(a.now()) == 3);
  CHECK(b.observe(1) == 4);  // an old stamp never moves the clock back
  b.witness(10);
  CHECK(b.now() == 10);
  CHECK(lamport_stamp{3, 1} < lamport_stamp{3, 2});
  CHECK(lamport_stamp{2, 9} < lamport_stamp{3, 0});
}

TEST_CASE("vector_clock: before, after, concurrent, equal, merge") {
  vector_clock a, b;
  CHECK(a.compare(b) == causality::equal);
  a.tick(0);  // a: [1, 0]
  CHECK(b.compare(a) == causality::before);
  CHECK(a.compare(b) == causality::after);
  b.tick(1);  // b: [0, 1]
  CHECK(a.compare(b) == causality::concurrent);
  CHECK(a.concurrent_with(b));
  vector_clock c = b;
  c.observe(1, a);  // a receive at node 1: [1, 2]
  CHECK(a.happened_before(c));
  CHECK(b.happened_before(c));
  CHECK(c[0] == 1);
  CHECK(c[1] == 2);
  a.merge(b);
  CHECK(a[0] == 1);
  CHECK(a[1] == 1);
  vector_clock z;
  z.merge(vector_clock{});  // zero entries are absent entries
  CHECK(z == vector_clock{});
}

TEST_CASE("vector_clock: compare agrees with happened-before on random message histories") {
  // Three processes exchange messages at random; for every pair of recorded
  // events, the clocks are ordered exactly when a causal path links them.
  for (std::uint64_t seed = 1; seed <= 200; ++seed) {
    rng r(seed);
    constexpr int n = 3;
    std::vector<vector_clock> now(n);
    struct event {
      int proc;
      vector_clock vc;
      std::vector<int> preds;
    };
    std::vector<event> events;
    std::vector<int> last(n, -1);
    std::vector<std::pair<int, int>> in_flight;  // (to, event index of the send)
    for (int step = 0; step < 30; ++step) {
      const int p = static_cast<int>(r.below(n));
      std::vector<int> preds;
      if (last[p] >= 0) preds.push_back(last[p]);
      if (!in_flight.empty() && r.chance(0.5)) {
        auto k = r.below(in_flight.size());
        auto [to, send] = in_flight[k];
        in_flight.erase(in_flight.begin() + static_cast<long>(k));
        now[to].observe(static_cast<std::uint64_t>(to), events[send].vc);
        if (last[to] >= 0)
          preds = {last[to]};
        else
          preds.clear();
        preds.push_back(send);
        events.push_back({to, now[to], preds});
        last[to] = static_cast<int>(events.size()) - 1;
        continue;
      }
      now[p].tick(static_cast<std::uint64_t>(p));
      events.push_back({p, now[p], preds});
      last[p] = static_cast<int>(events.size()) - 1;
      if (r.chance(0.5)) in_flight.push_back({static_cast<int>(r.below(n)), last[p]});
    }
    auto reaches = [&](int from, int to) {  // a causal path from -> to
      std::vector<int> stack{to};
      std::vector<bool> seen(events.size());
      while (!stack.empty()) {
        int e = stack.back();
        stack.pop_back();
        if (e == from) return true;
        for (int q : events[e].preds)
          if (!seen[q]) seen[q] = true, stack.push_back(q);
      }
      return false;
    };
    for (std::size_t i = 0; i < events.size(); ++i)
      for (std::size_t j = 0; j < events.size(); ++j) {
        if (i == j) continue;
        const bool hb = reaches(static_cast<int>(i), static_cast<int>(j));
        INFO("seed " << seed << " events " << i << " " << j);
        REQUIRE(events[i].vc.happened_before(events[j].vc) == hb);
      }
  }
}

TEST_CASE("hybrid_logical_clock: monotone, close to physical time, causal") {
  hybrid_logical_clock a, b;
  const time_point t0{std::chrono::seconds(100)};
  auto s1 = a.tick(t0);
  CHECK(s1 == hlc_timestamp{t0.time_since_epoch().count(), 0});
  auto s2 = a.tick(t0);  // the physical clock did not move: the logical part does
  CHECK(s2 > s1);
  auto s3 = a.tick(t0 - 5s);  // the physical clock went back: the HLC does not
  CHECK(s3 > s2);
  // b's physical clock is behind: a receive still lands after the send.
  auto r = b.observe(s3, t0 - 1s);
  CHECK(r > s3);
  CHECK(r.wall == s3.wall);
  auto later = b.tick(t0 + 1s);  // physical time catches up: logical resets
  CHECK(later.logical == 0);
  CHECK(later.wall == (t0 + 1s).time_since_epoch().count());
}

namespace {
struct stamped_message {
  static constexpr message_type wire_id = 1;
  vector_clock vc;
  hlc_timestamp h;
  lamport_stamp l;
  template <class A> void serialize(A& ar) { ar(vc, h, l); }
};
}  // namespace

TEST_CASE("clocks serialize through the wire codec") {
  using msg = stamped_message;
  msg m;
  m.vc.tick(3);
  m.vc.tick(3);
  m.vc.tick(7);
  m.h = {42, 7};
  m.l = {9, 2};
  bytes buf;
  wire::encode(m, buf);
  msg back;
  REQUIRE(!wire::decode(buf, back));
  CHECK(back.vc == m.vc);
  CHECK(back.h == m.h);
  CHECK(back.l == m.l);
}

}  // namespace test_clock
