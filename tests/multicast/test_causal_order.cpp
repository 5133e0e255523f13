// Causally ordered multicast: over many seeds with loss, duplication and
// reordering, with causal chains (members multicast in reaction to what they
// deliver), every member delivers every message once and never before a
// message that happened before it. Happened-before is judged by the test's
// own vector clocks, recorded at each send, not by the protocol's stamps.
#include <doctest/doctest.h>

#include <cstring>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "dcp/group.hpp"
#include "dcp/multicast.hpp"
#include "dcp/sim.hpp"

namespace test_causal_order {

using namespace dcp;
using sim::simulator;
using co = multicast::causal_order<sim::env>;

namespace {
constexpr protocol_id pid = co::default_id;

sim::config faulty(double loss, double dup, double reorder) {
  sim::config c;
  c.network.delay = sim::latency::uniform(1ms, 10ms);
  c.network.loss = loss;
  c.network.duplicate = dup;
  c.network.reorder = reorder;
  c.network.reorder_delay = 30ms;
  return c;
}

/// The payload is the message's id: an index into the test's send log.
bytes encode(std::uint32_t id) {
  bytes b(4);
  std::memcpy(b.data(), &id, 4);
  return b;
}
std::uint32_t decode(byte_view b) {
  std::uint32_t id = 0;
  REQUIRE(b.size() == 4);
  std::memcpy(&id, b.data(), 4);
  return id;
}

struct sent_message {
  std::uint32_t sender;
  clock::vector_clock happened;  ///< the test's clock at the send: sends of each member seen, counted
};

struct outcome {
  std::vector<sent_message> log;
  std::vector<std::vector<std::uint32_t>> delivered;  ///< per node, message ids in delivery order
  int violations = 0, duplicates = 0;
  bool invariants_held = true, inside_call = false;
  std::int64_t backpressure = 0;
  std::size_t chained = 0;  ///< messages that causally follow another member's message
};

outcome run(std::uint64_t seed, std::uint32_t n, sim::config net, int per_node, int reactions,
            std::size_t max_held_per_sender = 1 << 12) {
  simulator w(seed, net);
  multicast::causal_order_config cfg;
  cfg.max_held_per_sender = max_held_per_sender;
  w.add_nodes(n, [=](sim::node_context& c) { c.add<co>(pid, group::static_group::sim(n), cfg); });
  auto out = std::make_shared<outcome>();
  out->delivered.resize(n);
  // The test's own happened-before: each member's clock ticks at its sends
  // and merges the send-time clock of every message it delivers.
  auto known = std::make_shared<std::vector<clock::vector_clock>>(n);
  auto seen = std::make_shared<std::vector<std::set<std::uint32_t>>>(n);
  auto reactions_left = std::make_shared<int>(reactions);
  auto in_call = std::make_shared<bool>(false);
  auto send = [&w, out, known, in_call](std::uint32_t i) {
    (*known)[i].tick(i);
    const auto id = static_cast<std::uint32_t>(out->log.size());
    out->log.push_back({i, (*known)[i]});
    for (auto& [k, c] : (*known)[i].entries())
      if (k != i && c > 0) {
        ++out->chained;
        break;
      }
    *in_call = true;
    w.get<co>(i, pid).multicast(encode(id));
    *in_call = false;
  };
  for (std::uint32_t i = 0; i < n; ++i) {
    w.get<co>(i, pid).on_deliver(
        [&w, out, known, seen, reactions_left, in_call, send, i](const multicast::causal_order_delivery& d) {
          if (*in_call) out->inside_call = true;
          const auto id = decode(d.payload);
          REQUIRE(id < out->log.size());
          const auto& m = out->log[id];
          CHECK(d.origin == address::sim(m.sender));
          if (!(*seen)[i].insert(id).second) ++out->duplicates;
          // Every message that happened before this one is delivered here already.
          for (std::uint32_t e = 0; e < out->log.size(); ++e)
            if (out->log[e].happened.happened_before(m.happened) && !(*seen)[i].contains(e)) ++out->violations;
          out->delivered[i].push_back(id);
          if (m.sender != i) (*known)[i].merge(m.happened);
          if (m.sender != i && *reactions_left > 0 && w.rng().below(3) == 0) {
            --*reactions_left;
            send(i);  // caused by this delivery
          }
        });
    for (int k = 0; k < per_node; ++k)
      w.after(duration(w.rng().between(0, duration(100ms).count())), [send, i] { send(i); });
  }
  w.after_event([&w, out, n] {
    for (std::uint32_t i = 0; i < n; ++i)
      if (!w.get<co>(i, pid).check_invariants()) out->invariants_held = false;
  });
  auto done = [&] {
    if (out->log.size() < static_cast<std::size_t>(n) * per_node) return false;
    for (auto& d : out->delivered)
      if (d.size() < out->log.size()) return false;
    return true;
  };
  w.run_until(done, w.now() + 120s);
  w.run_for(1s);
  w.after_event({});
  out->backpressure = w.metrics().counter(pid, "backpressure");
  return *out;
}

void check_causal(const outcome& o, std::uint32_t n) {
  CHECK(o.invariants_held);
  CHECK_FALSE(o.inside_call);
  CHECK(o.violations == 0);
  CHECK(o.duplicates == 0);
  for (std::uint32_t i = 0; i < n; ++i) {
    CAPTURE(i);
    CHECK(o.delivered[i].size() == o.log.size());  // everything, and (no duplicates) each once
  }
}
}  // namespace

TEST_CASE(
    "causal_order: every delivery respects happened-before, each message once; 200 seeds, loss, duplication, reordering") {
  std::size_t chained = 0;
  for (std::uint64_t seed = 1; seed <= 200; ++seed) {
    CAPTURE(seed);
    const auto n = static_cast<std::uint32_t>(3 + seed % 4);
    auto o = run(seed, n, faulty(0.1, 0.1, 0.4), 6, 30);
    check_causal(o, n);
    chained += o.chained;
  }
  CHECK(chained > 1000);  // the property was tested on causal chains, not only on concurrent messages
}

TEST_CASE(
    "causal_order: a hold-back queue of 1 per sender (flow control through the links) never deadlocks; 50 seeds") {
  std::int64_t refused = 0;
  for (std::uint64_t seed = 1; seed <= 50; ++seed) {
    CAPTURE(seed);
    const auto n = static_cast<std::uint32_t>(3 + seed % 4);
    auto o = run(seed, n, faulty(0.1, 0.1, 0.4), 6, 30, 1);
    check_causal(o, n);
    refused += o.backpressure;
  }
  CHECK(refused > 0);  // the queue did fill
}

TEST_CASE("causal_order: heavy loss (30%) and a group of 8") {
  for (std::uint64_t seed = 1; seed <= 10; ++seed) {
    CAPTURE(seed);
    check_causal(run(seed, 8, faulty(0.3, 0.2, 0.5), 3, 30), 8);
  }
}

TEST_CASE("causal_order: a group of one delivers its own messages after the call, in order") {
  simulator w(1);
  w.add_node([](sim::node_context& c) { c.add<co>(pid, group::static_group::sim(1)); });
  std::vector<std::uint32_t> got;
  auto& p = w.get<co>(0, pid);
  p.on_deliver([&](const multicast::causal_order_delivery& d) {
    got.push_back(decode(d.payload));
    if (got.size() == 1) p.multicast(encode(2));  // from a callback: delivered after those already owed
  });
  p.multicast(encode(0));
  p.multicast(encode(1));
  CHECK(got.empty());  // never inside multicast()
  w.run_posted();      // the end of the event the test played: delivered then, before any other event
  CHECK(got == std::vector<std::uint32_t>{0, 1, 2});
}

TEST_CASE("causal_order: a missing dependency holds messages back, and the stall is reported") {
  // Member 0's message m reaches member 1 (who reacts with m'), never member 2
  // (its link is cut and then 0 crashes): m' can never be delivered at 2.
  simulator w(11, faulty(0, 0, 0));
  multicast::causal_order_config cfg;
  cfg.stall_timeout = 1s;
  w.add_nodes(3, [=](sim::node_context& c) { c.add<co>(pid, group::static_group::sim(3), cfg); });
  std::vector<address> stalled_on;
  std::vector<std::uint32_t> at2;
  auto& p2 = w.get<co>(2, pid);
  p2.on_deliver([&](const multicast::causal_order_delivery& d) { at2.push_back(decode(d.payload)); });
  p2.on_stall([&](const std::vector<address>& m) { stalled_on = m; });
  w.get<co>(1, pid).on_deliver([&](const multicast::causal_order_delivery& d) {
    if (decode(d.payload) == 0) w.get<co>(1, pid).multicast(encode(1));
  });
  w.block(0, 2);
  w.get<co>(0, pid).multicast(encode(0));
  w.run_for(500ms);
  w.crash(0);
  w.run_for(3s);
  CHECK(at2.empty());
  CHECK(p2.held() == 1);
  CHECK(p2.blocked_on() == std::vector<address>{address::sim(0)});
  CHECK(stalled_on == std::vector<address>{address::sim(0)});
}

TEST_CASE("causal_order: hostile frames are counted and change nothing") {
  simulator w(5);
  multicast::causal_order_config cfg;
  cfg.max_clock_lead = 100;
  w.add_nodes(3, [=](sim::node_context& c) { c.add<co>(pid, group::static_group::sim(3), cfg); });
  auto& p = w.get<co>(0, pid);
  using frame = multicast::link_msg::frame<co::body>;
  auto count = [&](const char* name) { return w.metrics().counter(pid, name); };
  auto stamp = [](std::initializer_list<std::pair<std::uint64_t, std::uint64_t>> e) {
    clock::vector_clock v;
    for (auto [k, c] : e)
      for (std::uint64_t t = 0; t < c; ++t) v.tick(k);
    return v;
  };
  p.on_message(address::sim(7), frame{1, 0, 0, {stamp({{7, 1}}), {}}});
  CHECK(count("not_a_member") == 1);
  p.on_message(address::sim(1), frame{std::uint64_t(1) << 40, 0, 0, {stamp({{1, 1}}), {}}});
  CHECK(count("bad_sequence") == 1);
  p.on_message(address::sim(1), frame{1, 0, 0, {stamp({{1, 1}, {5, 1}}), {}}});  // an entry for a non-member
  p.on_message(address::sim(1),
               frame{1, 0, 0, {stamp({{0, 1}, {1, 1}, {2, 1}, {3, 1}}), {}}});  // more entries than members
  p.on_message(address::sim(1), frame{1, 0, 0, {stamp({{2, 1}}), {}}});         // no entry for its sender
  CHECK(count("bad_frame") == 3);
  // an entry far beyond what this member has delivered (the lead allowed is 100 here), an oversized payload
  p.on_message(address::sim(1), frame{1, 0, 0, {stamp({{1, 1}, {2, 500}}), {}}});
  p.on_message(address::sim(1), frame{1, 0, 0, {stamp({{1, 1}}), bytes(2 << 20)}});
  CHECK(count("bad_frame") == 5);
  CHECK(p.held() == 0);
  CHECK(p.delivered_clock() == clock::vector_clock{});
  int delivered = 0;
  p.on_deliver([&](const multicast::causal_order_delivery&) { ++delivered; });
  p.multicast(encode(0));
  w.run_for(1s);
  CHECK(delivered == 1);
}

TEST_CASE("causal_order: random hostile frame streams (50 seeds x 2,000) never break an invariant or a bound") {
  using frame = multicast::link_msg::frame<co::body>;
  std::map<std::string, std::int64_t> reached{{"bad_frame", 0},    {"bad_sequence", 0}, {"bad_ack", 0},
                                              {"not_a_member", 0}, {"duplicates", 0},   {"bad_clock", 0}};
  for (std::uint64_t seed = 1; seed <= 50; ++seed) {
    CAPTURE(seed);
    simulator w(seed, faulty(0.05, 0.05, 0.2));
    multicast::causal_order_config cfg;
    cfg.max_held_per_sender = 16;
    cfg.link.window = 32;
    cfg.link.max_backlog = 64;
    cfg.max_clock_lead = 1000;
    w.add_nodes(4, [=](sim::node_context& c) { c.add<co>(pid, group::static_group::sim(4), cfg); });
    auto& r = w.rng();
    bool ok = true;
    for (int k = 0; k < 2000; ++k) {
      auto& p = w.get<co>(static_cast<std::uint32_t>(r.below(4)), pid);
      const auto from = address::sim(static_cast<std::uint32_t>(r.below(6)));
      if (r.below(8) == 0) {
        p.on_message(from, multicast::link_msg::ack{r.below(40), r.below(4) == 0 ? r() : 0});
      } else {
        clock::vector_clock v;
        for (auto e = r.below(7); e > 0; --e)
          for (auto t = r.below(4); t > 0; --t) v.tick(r.below(5));
        p.on_message(from, frame{r.below(64), r.below(40), r.below(4) == 0 ? r() : 0, {v, bytes(r.below(16))}});
      }
      if (r.below(50) == 0) p.multicast(encode(0));
      if (r.below(20) == 0) w.run_for(duration(r.between(0, duration(5ms).count())));
      ok = ok && p.check_invariants() && p.held() <= 4 * cfg.max_held_per_sender;
    }
    w.run_for(2s);
    for (std::uint32_t i = 0; i < 4; ++i) ok = ok && w.get<co>(i, pid).check_invariants();
    CHECK(ok);
    for (auto& [c, n] : reached) n += w.metrics().counter(pid, c);
  }
  // the streams reach past every filter: frames refused, buffered, accepted, then found wanting
  for (auto& [counter, n] : reached) {
    const auto& c = counter;  // CAPTURE takes a reference in a lambda: not a structured binding (clang 15)
    CAPTURE(c);
    CHECK(n > 0);
  }
}

}  // namespace test_causal_order
