// Totally ordered multicast: over many seeds with loss, duplication and
// reordering, several members multicasting at once (and in reaction to what
// they deliver), every member delivers the same sequence, each message once.
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

namespace test_total_order {

using namespace dcp;
using sim::simulator;
using to = multicast::total_order<sim::env>;

namespace {
constexpr protocol_id pid = to::default_id;

sim::config faulty(double loss, double dup, double reorder) {
  sim::config c;
  c.network.delay = sim::latency::uniform(1ms, 10ms);
  c.network.loss = loss;
  c.network.duplicate = dup;
  c.network.reorder = reorder;
  c.network.reorder_delay = 20ms;
  return c;
}

/// A message's identity in the payload: (sender node, its k-th multicast).
using msg_id = std::pair<std::uint32_t, std::uint32_t>;
bytes encode(msg_id m) {
  bytes b(8);
  std::memcpy(b.data(), &m.first, 4);
  std::memcpy(b.data() + 4, &m.second, 4);
  return b;
}
msg_id decode(byte_view b) {
  msg_id m{};
  REQUIRE(b.size() == 8);
  std::memcpy(&m.first, b.data(), 4);
  std::memcpy(&m.second, b.data() + 4, 4);
  return m;
}

struct outcome {
  std::vector<std::vector<msg_id>> delivered;  ///< per node, in delivery order
  std::set<msg_id> sent;
  bool invariants_held = true;
  bool inside_call = false;       ///< a delivery ran inside multicast()
  std::int64_t backpressure = 0;  ///< frames a full queue refused
};

/// n members; each multicasts `per_node` messages at random times and, with
/// probability 1/4, reacts to a delivery from another with one more (at most
/// `reactions` in all). Runs until every member delivered every message.
outcome run(std::uint64_t seed, std::uint32_t n, sim::config net, int per_node, int reactions,
            std::size_t max_queue = 1 << 14) {
  simulator w(seed, net);
  multicast::total_order_config cfg;
  cfg.max_outstanding = 4;  // small, so that busy is exercised
  cfg.max_queue = max_queue;
  w.add_nodes(n, [=](sim::node_context& c) { c.add<to>(pid, group::static_group::sim(n), cfg); });
  auto out = std::make_shared<outcome>();
  out->delivered.resize(n);
  auto next_index = std::make_shared<std::vector<std::uint32_t>>(n, 0);
  auto reactions_left = std::make_shared<int>(reactions);
  auto in_call = std::make_shared<bool>(false);
  // A multicast that retries later while the member has too many in flight.
  auto send = std::make_shared<std::function<void(std::uint32_t)>>();
  *send = [&w, out, next_index, in_call, send](std::uint32_t i) {
    auto& p = w.get<to>(i, pid);
    const msg_id m{i, (*next_index)[i]};
    *in_call = true;
    auto r = p.multicast(encode(m));
    *in_call = false;
    if (!r) {
      CHECK(r.error() == make_error_code(errc::busy));
      w.after(5ms, [send, i] { (*send)(i); });
      return;
    }
    ++(*next_index)[i];
    out->sent.insert(m);
  };
  for (std::uint32_t i = 0; i < n; ++i) {
    w.get<to>(i, pid).on_deliver([&w, out, i, reactions_left, in_call, send](const multicast::total_order_delivery& d) {
      if (*in_call) out->inside_call = true;
      const auto m = decode(d.payload);
      CHECK(d.origin == address::sim(m.first));
      out->delivered[i].push_back(m);
      if (m.first != i && *reactions_left > 0 && w.rng().below(4) == 0) {
        --*reactions_left;
        (*send)(i);  // a multicast caused by this delivery
      }
    });
    for (int k = 0; k < per_node; ++k)
      w.after(duration(w.rng().between(0, duration(200ms).count())), [send, i] { (*send)(i); });
  }
  w.after_event([&w, out, n] {
    for (std::uint32_t i = 0; i < n; ++i)
      if (!w.get<to>(i, pid).check_invariants()) out->invariants_held = false;
  });
  const std::size_t total = static_cast<std::size_t>(n) * per_node + reactions;
  auto done = [&] {
    if (out->sent.size() < static_cast<std::size_t>(n) * per_node) return false;
    for (auto& d : out->delivered)
      if (d.size() < out->sent.size()) return false;
    return out->sent.size() == total || *reactions_left > 0;  // reactions may end short of `reactions`
  };
  w.run_until(done, w.now() + 120s);
  w.run_for(1s);  // anything delivered twice, or late, shows up here
  w.after_event({});
  out->backpressure = w.metrics().counter(pid, "backpressure");
  *send = nullptr;
  return *out;
}

void check_total_order(const outcome& o) {
  CHECK(o.invariants_held);
  CHECK_FALSE(o.inside_call);
  REQUIRE(!o.sent.empty());
  const auto& first = o.delivered[0];
  INFO("sent ", o.sent.size(), ", delivered at member 0: ", first.size());
  std::set<msg_id> once(first.begin(), first.end());
  CHECK(once.size() == first.size());  // no message twice
  CHECK(once == o.sent);               // every message sent, and nothing else
  for (std::size_t i = 1; i < o.delivered.size(); ++i) {
    CAPTURE(i);
    INFO("delivered at member i: ", o.delivered[i].size());
    CHECK(o.delivered[i] == first);  // the same sequence everywhere
  }
}
}  // namespace

TEST_CASE(
    "total_order: every member delivers the same sequence, each message once; 200 seeds, loss, duplication, reordering") {
  for (std::uint64_t seed = 1; seed <= 200; ++seed) {
    CAPTURE(seed);
    const auto n = static_cast<std::uint32_t>(3 + seed % 4);
    check_total_order(run(seed, n, faulty(0.1, 0.1, 0.3), 8, 16));
  }
}

TEST_CASE(
    "total_order: a hold-back queue of 4 (flow control through the links) keeps the order and never deadlocks; 50 seeds") {
  std::int64_t refused = 0;
  for (std::uint64_t seed = 1; seed <= 50; ++seed) {
    CAPTURE(seed);
    auto o = run(seed, 5, faulty(0.1, 0.1, 0.3), 8, 16, 4);
    check_total_order(o);
    refused += o.backpressure;
  }
  CHECK(refused > 0);  // the queue did fill
}

TEST_CASE("total_order: heavy loss (30%) and a group of 8: still one order") {
  for (std::uint64_t seed = 1; seed <= 10; ++seed) {
    CAPTURE(seed);
    check_total_order(run(seed, 8, faulty(0.3, 0.2, 0.5), 4, 8));
  }
}

TEST_CASE("total_order: a group of one delivers its own messages after the call, in order") {
  simulator w(1);
  w.add_node([](sim::node_context& c) { c.add<to>(pid, group::static_group::sim(1)); });
  std::vector<clock::lamport_stamp> got;
  auto& p = w.get<to>(0, pid);
  p.on_deliver([&](const multicast::total_order_delivery& d) { got.push_back(d.stamp); });
  auto a = p.multicast(encode({0, 0}));
  auto b = p.multicast(encode({0, 1}));
  REQUIRE((a && b));
  CHECK(got.empty());
  w.run_posted();  // the end of the event the test played: delivered then, before any other event
  CHECK(got == std::vector<clock::lamport_stamp>{*a, *b});
}

TEST_CASE("total_order: a delivery whose callback destroys the member ends the deliveries still queued") {
  simulator w(1);
  w.add_node([](sim::node_context& c) { c.add<to>(pid, group::static_group::sim(1)); });
  int got = 0;
  auto& p = w.get<to>(0, pid);
  p.on_deliver([&](const multicast::total_order_delivery&) {
    ++got;
    w.crash(0);  // the member is gone: what it still owed is dropped with it, not run on a dead core
  });
  for (std::uint32_t k = 0; k < 3; ++k) REQUIRE(p.multicast(encode({0, k})));
  w.run_posted();
  CHECK(got == 1);
  w.run_for(1s);
  CHECK(got == 1);
}

TEST_CASE("total_order: a crashed member blocks delivery, and that is reported, not silent") {
  simulator w(3, faulty(0.05, 0.05, 0.2));
  multicast::total_order_config cfg;
  cfg.stall_timeout = 1s;
  w.add_nodes(4, [=](sim::node_context& c) { c.add<to>(pid, group::static_group::sim(4), cfg); });
  std::vector<address> stalled_on, failed;
  int delivered = 0;
  auto& p0 = w.get<to>(0, pid);
  p0.on_deliver([&](const multicast::total_order_delivery&) { ++delivered; });
  p0.on_stall([&](const std::vector<address>& m) { stalled_on = m; });
  p0.on_member_failed([&](const address& a) { failed.push_back(a); });
  REQUIRE(p0.multicast(encode({0, 0})));
  w.run_for(2s);
  CHECK(delivered == 1);
  w.crash(3);
  REQUIRE(p0.multicast(encode({0, 1})));
  w.run_for(5s);
  CHECK(delivered == 1);  // never delivered without member 3's acknowledgement
  CHECK(p0.blocked_on() == std::vector<address>{address::sim(3)});
  CHECK(stalled_on == std::vector<address>{address::sim(3)});
  CHECK(failed == std::vector<address>{address::sim(3)});  // the transport said so
  CHECK(w.metrics().counter(pid, "stalled") >= 1);
}

TEST_CASE("total_order: hostile frames are counted and change nothing") {
  simulator w(5);
  w.add_nodes(3, [](sim::node_context& c) { c.add<to>(pid, group::static_group::sim(3)); });
  auto& p = w.get<to>(0, pid);
  int delivered = 0;
  p.on_deliver([&](const multicast::total_order_delivery&) { ++delivered; });
  using frame = multicast::link_msg::frame<to::body>;
  const auto clock_before = p.clock();
  auto count = [&](const char* name) { return w.metrics().counter(pid, name); };
  // a stranger
  p.on_message(address::sim(9), frame{1, 0, 0, {to::body::data, 1, 0, 0, encode({9, 0})}});
  CHECK(count("not_a_member") == 1);
  // a sequence number far beyond the window
  p.on_message(address::sim(1), frame{std::uint64_t(1) << 50, 0, 0, {to::body::data, 1, 0, 0, {}}});
  CHECK(count("bad_sequence") == 1);
  // an acknowledgement of a frame never sent
  p.on_message(address::sim(1), frame{1, 77, 0, {to::body::data, 1, 0, 0, {}}});
  p.on_message(address::sim(1), multicast::link_msg::ack{5, 0});
  p.on_message(address::sim(1), multicast::link_msg::ack{0, 1});  // a selective one
  CHECK(count("bad_ack") == 3);
  // an absurd clock, an acknowledgement naming a non-member, an unknown kind
  p.on_message(address::sim(1), frame{1, 0, 0, {to::body::data, ~std::uint64_t(0), 0, 0, {}}});
  p.on_message(address::sim(1), frame{1, 0, 0, {to::body::ack, 3, 1, 42, {}}});
  p.on_message(address::sim(1), frame{1, 0, 0, {7, 3, 0, 0, {}}});
  CHECK(count("bad_frame") == 3);
  CHECK(p.clock() == clock_before);
  CHECK(p.queued() == 0);
  // the group still works afterwards
  REQUIRE(p.multicast(encode({0, 0})));
  w.run_for(1s);
  CHECK(delivered == 1);
}

TEST_CASE("total_order: random hostile frame streams (50 seeds x 2,000) never break an invariant or a bound") {
  using frame = multicast::link_msg::frame<to::body>;
  std::map<std::string, std::int64_t> reached{{"bad_frame", 0},    {"bad_sequence", 0}, {"bad_ack", 0},
                                              {"not_a_member", 0}, {"duplicates", 0},   {"bad_clock", 0}};
  for (std::uint64_t seed = 1; seed <= 50; ++seed) {
    CAPTURE(seed);
    simulator w(seed, faulty(0.05, 0.05, 0.2));
    multicast::total_order_config cfg;
    cfg.max_queue = 64;
    cfg.max_outstanding = 8;
    cfg.link.window = 32;
    cfg.link.max_backlog = 64;
    cfg.max_clock_lead = 1000;
    w.add_nodes(4, [=](sim::node_context& c) { c.add<to>(pid, group::static_group::sim(4), cfg); });
    auto& r = w.rng();
    bool ok = true;
    for (int k = 0; k < 2000; ++k) {
      auto& p = w.get<to>(static_cast<std::uint32_t>(r.below(4)), pid);
      const auto from = address::sim(static_cast<std::uint32_t>(r.below(6)));  // members 0-3, strangers 4-5
      if (r.below(8) == 0) {
        p.on_message(from, multicast::link_msg::ack{r.below(40), r.below(4) == 0 ? r() : 0});
      } else {
        to::body b{static_cast<std::uint8_t>(r.below(3)), r.below(2000), r.below(2000),
                   static_cast<std::uint32_t>(r.below(6)), bytes(r.below(16))};
        p.on_message(from, frame{r.below(64), r.below(40), r.below(4) == 0 ? r() : 0, std::move(b)});
      }
      if (r.below(50) == 0) (void)p.multicast(encode({0, 0}));
      if (r.below(20) == 0) w.run_for(duration(r.between(0, duration(5ms).count())));
      ok = ok && p.check_invariants() && p.queued() <= cfg.max_queue;
    }
    w.run_for(2s);
    for (std::uint32_t i = 0; i < 4; ++i) ok = ok && w.get<to>(i, pid).check_invariants();
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

}  // namespace test_total_order
