// The simulator's event queue (a ladder queue) against a reference heap:
// whatever is pushed, in whatever order, pops come out by (time, order)
// exactly as from std::priority_queue, and ahead(k) names the k-th next.
#include <doctest/doctest.h>

#include <cstdint>
#include <limits>
#include <queue>
#include <vector>

#include "dcp/core/rng.hpp"
#include "dcp/sim.hpp"

namespace test_event_queue {

using namespace dcp;
using dcp::sim::detail::event_queue;
using dcp::sim::detail::queued_event;

namespace {

struct later {
  bool operator()(const queued_event& a, const queued_event& b) const noexcept {
    return a.time != b.time ? a.time > b.time : a.order > b.order;
  }
};
using reference = std::priority_queue<queued_event, std::vector<queued_event>, later>;

bool same(const queued_event& a, const queued_event& b) {
  return a.time == b.time && a.order == b.order && a.slot == b.slot && a.gen == b.gen;
}

// Drives a queue and the reference with the same operations and checks
// every pop, every top(), and the events ahead(k) claims to know.
struct harness {
  event_queue q;
  reference ref;
  std::uint64_t seq = 0;
  std::int64_t now = 0;  // the time of the last pop
  std::size_t max_rungs_seen = 0;

  void push(std::int64_t t) {
    const queued_event e{t, seq << 2 | (seq & 3), static_cast<std::uint32_t>(seq), static_cast<std::uint32_t>(seq * 7)};
    ++seq;
    q.push(e);
    ref.push(e);
    check_front();
  }
  void pop() {
    REQUIRE(!q.empty());
    const queued_event want = ref.top();
    ref.pop();
    const queued_event got = q.pop();
    REQUIRE(same(got, want));
    now = got.time;
    check_front();
  }
  void check_front() {
    REQUIRE(q.size() == ref.size());
    REQUIRE(q.empty() == ref.empty());
    if (q.empty()) return;
    REQUIRE(same(q.top(), ref.top()));
    max_rungs_seen = std::max(max_rungs_seen, q.rungs());
  }
  // ahead(k), where known, must be exactly the k-th next event.
  void check_ahead() {
    reference copy = ref;
    for (std::size_t k = 0; k < 6 && !copy.empty(); ++k) {
      if (const queued_event* a = q.ahead(k)) REQUIRE(same(*a, copy.top()));
      copy.pop();
    }
  }
  void drain() {
    while (!q.empty()) pop();
    REQUIRE(ref.empty());
  }
};

// A time for the next push, drawn from a mix that stresses every path of the
// ladder: near future, exact ties, zero delay, past due, far future, extremes.
// now + d, saturated: after an extreme event pops, `now` is near a limit.
std::int64_t plus(std::int64_t now, std::int64_t d) {
  std::int64_t out;
  if (!__builtin_add_overflow(now, d, &out)) return out;
  return d > 0 ? std::numeric_limits<std::int64_t>::max() : std::numeric_limits<std::int64_t>::min();
}

std::int64_t draw_time(dcp::rng& r, std::int64_t now, int mix) {
  const auto span = [&](std::int64_t lo, std::int64_t hi) {
    return lo + static_cast<std::int64_t>(r.below(static_cast<std::uint64_t>(hi - lo + 1)));
  };
  switch (mix) {
    case 0:
      return plus(now, span(1'000'000, 10'000'000));  // message delays of 1-10 ms
    case 1:
      return plus(now, span(0, 3) * 1'000'000);  // few distinct times: many ties
    case 2:
      return now;  // zero delay
    case 3:
      return plus(now, -span(0, 5'000'000));  // past due (behind the last pop)
    case 4:
      return plus(now, span(0, 3'600'000'000'000));  // up to an hour ahead
    case 5:
      return r.chance(0.5) ? std::numeric_limits<std::int64_t>::max() - span(0, 3)
                           : std::numeric_limits<std::int64_t>::min() + span(0, 3);
    default: {  // geometric: far outliers behind a dense front (deep rungs)
      std::int64_t d = 1;
      while (d < (std::int64_t{1} << 50) && r.chance(0.6)) d *= 4;
      return plus(now, span(0, d));
    }
  }
}

}  // namespace

TEST_CASE("event queue: random pushes and pops match a reference heap over many seeds") {
  for (std::uint64_t seed = 1; seed <= 100; ++seed) {
    CAPTURE(seed);
    dcp::rng r(seed);
    harness h;
    const int mixes = static_cast<int>(r.below(7)) + 1;  // each seed uses a few kinds of time
    std::vector<int> use;
    for (int i = 0; i < mixes; ++i) use.push_back(static_cast<int>(r.below(7)));
    for (int round = 0; round < 4; ++round) {
      // A burst (grows the queue past the ladder's thresholds), then a mix
      // of pops and pushes, then part of a drain.
      const int burst = static_cast<int>(r.below(round == 0 ? 3000 : 600));
      for (int i = 0; i < burst; ++i) h.push(draw_time(r, h.now, use[r.below(use.size())]));
      for (int i = 0; i < 2000; ++i) {
        if (!h.q.empty() && r.chance(0.5))
          h.pop();
        else
          h.push(draw_time(r, h.now, use[r.below(use.size())]));
        if (i % 97 == 0) h.check_ahead();
      }
      const auto keep = r.below(h.q.size() + 1);
      while (h.q.size() > keep) h.pop();
    }
    h.drain();
    // The queue is reusable once empty.
    h.push(5);
    h.push(5);
    h.push(-5);
    h.drain();
  }
}

TEST_CASE("event queue: a simulation-like hold model keeps order at scale and uses the ladder") {
  // 20,000 events in flight, each pop pushing one 1-10 ms later, as the
  // simulator's token benchmark does: the queue spreads them over rungs.
  dcp::rng r(42);
  harness h;
  for (int i = 0; i < 20000; ++i) h.push(draw_time(r, 0, 0));
  for (int i = 0; i < 200000; ++i) {
    h.pop();
    h.push(draw_time(r, h.now, r.chance(0.9) ? 0 : static_cast<int>(r.below(7))));
    if (i % 5000 == 0) h.check_ahead();
  }
  CHECK(h.max_rungs_seen >= 1);
  h.drain();
}

TEST_CASE("event queue: dense fronts behind far outliers spread over finer rungs") {
  // Geometric spreads put most events in the first bucket of every rung, so
  // the ladder grows rungs (up to its limit) and still pops in order.
  dcp::rng r(7);
  harness h;
  for (int i = 0; i < 50000; ++i) h.push(draw_time(r, 0, 6));
  for (int i = 0; i < 50000; ++i) {
    h.pop();
    if (r.chance(0.5)) h.push(draw_time(r, h.now, 6));
  }
  CHECK(h.max_rungs_seen >= 2);
  h.drain();
}

TEST_CASE("event queue: ties pop in push order, however many") {
  harness h;
  for (int i = 0; i < 5000; ++i) h.push(1000);
  for (int i = 0; i < 2500; ++i) {
    h.pop();
    h.push(1000);                  // same time as the front: after every earlier push
    if (i % 50 == 0) h.push(999);  // behind the front (past due): first
  }
  h.check_ahead();
  h.drain();
}

TEST_CASE("event queue: pushes into an empty queue, then earlier ones, stay cheap and ordered") {
  // The first push becomes the bottom; thousands of earlier events would
  // each be inserted into it, so the bottom is spread over a rung instead.
  harness h;
  for (std::int64_t t = 100000; t > 0; --t) h.push(t);
  CHECK(h.q.rungs() >= 1);
  h.drain();
}

namespace {
struct nothing {
  static constexpr message_type wire_id = 1;
  template <class A> void serialize(A&) {}
};
struct timers {
  using messages = wire::message_set<nothing>;
  explicit timers(sim::env e) : env(e) {}
  void on_message(const address&, const nothing&) {}
  sim::env env;
};
}  // namespace

TEST_CASE("simulator timers over the queue: cancelled ones never fire, the rest fire by time then arming order") {
  for (std::uint64_t seed = 1; seed <= 20; ++seed) {
    CAPTURE(seed);
    sim::simulator w(seed);
    w.add_nodes(3, [](sim::node_context& n) { n.add<timers>(1); });
    dcp::rng r(seed);
    struct armed {
      std::int64_t at;
      int n;
      bool cancelled;
    };
    std::vector<armed> all;
    std::vector<int> fired;
    std::vector<std::pair<std::int64_t, int>> fired_at;
    std::vector<timer_id> ids;
    for (int i = 0; i < 3000; ++i) {
      auto& t = w.get<timers>(static_cast<sim::node_index>(i % 3), 1);
      // few distinct delays: many ties; some zero.
      const duration d = duration(static_cast<std::int64_t>(r.below(50)) * 1'000'000);
      ids.push_back(t.env.arm(d, [&, i] {
        fired.push_back(i);
        fired_at.push_back({w.now().time_since_epoch().count(), i});
      }));
      all.push_back({d.count(), i % 3, false});
    }
    for (int i = 0; i < 3000; ++i)
      if (r.chance(0.3)) {
        auto& t = w.get<timers>(static_cast<sim::node_index>(i % 3), 1);
        CHECK(t.env.cancel(ids[static_cast<std::size_t>(i)]));
        CHECK_FALSE(t.env.cancel(ids[static_cast<std::size_t>(i)]));  // once only
        all[static_cast<std::size_t>(i)].cancelled = true;
      }
    w.run_for(1s);
    std::vector<int> want;
    for (int i = 0; i < 3000; ++i)
      if (!all[static_cast<std::size_t>(i)].cancelled) want.push_back(i);
    std::stable_sort(want.begin(), want.end(), [&](int a, int b) {
      return all[static_cast<std::size_t>(a)].at < all[static_cast<std::size_t>(b)].at;
    });
    CHECK(fired == want);
    for (auto [at, i] : fired_at) CHECK(at == all[static_cast<std::size_t>(i)].at);
  }
}

}  // namespace test_event_queue
