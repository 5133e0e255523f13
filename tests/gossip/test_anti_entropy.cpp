#include <doctest/doctest.h>

#include "../seeds.hpp"  // fewer seeds under sanitizers

#include "world.hpp"

namespace test_anti_entropy {

using namespace dcp;
using gworld::bid;
using gworld::hpv;
using sim::simulator;
using ae = gossip::anti_entropy<sim::env, hpv>;

static_assert(gossip::Broadcast<ae>);

TEST_CASE("anti-entropy: every node converges under 20% loss and a partition; death certificates spread, then expire") {
  for (std::uint64_t seed = 1; seed <= dcp::test::last_seed(1, 4); ++seed) {
    CAPTURE(seed);
    sim::config c;
    c.network.delay = sim::latency::uniform(1ms, 20ms);
    c.network.loss = 0.2;
    c.network.duplicate = 0.05;
    c.network.reorder = 0.1;
    simulator w(seed, c);
    constexpr std::uint32_t n = 60;
    gossip::anti_entropy_config k;
    k.certificate_ttl = 30s;
    auto rec = gworld::build<ae>(w, n, k);
    w.run_for(5s);
    // Half the network is cut off while messages are sent on both sides.
    std::vector<sim::node_index> left;
    for (std::uint32_t i = 0; i < n / 2; ++i) left.push_back(i);
    w.partition({left});
    std::vector<std::uint64_t> ids;
    for (int m = 0; m < 6; ++m) ids.push_back(w.get<ae>(m % 2 ? 1 : n - 1, bid).broadcast(as_bytes("item")));
    w.run_for(10s);
    w.heal();
    w.run_for(40s);  // HyParView repairs the cut links; digests fill the gaps
    for (auto id : ids) CHECK(rec->missing(w, id) == 0);
    CHECK(rec->twice == 0);

    w.get<ae>(5, bid).retire(ids[0]);
    w.run_for(20s);
    std::size_t holding = 0, certified = 0;
    for (std::uint32_t i = 0; i < n; ++i) {
      holding += w.get<ae>(i, bid).holds(ids[0]);
      certified += w.get<ae>(i, bid).retired(ids[0]);
    }
    CHECK(holding == 0);
    CHECK(certified == n);
    w.run_for(30s);  // past the ttl everywhere: the certificates are gone
    std::size_t left_over = 0;
    for (std::uint32_t i = 0; i < n; ++i) left_over += w.get<ae>(i, bid).size();
    CHECK(left_over == n * (ids.size() - 1));
    CHECK(rec->twice == 0);
  }
}

TEST_CASE("anti-entropy: hostile input cannot make a certificate immortal or overflow the store") {
  simulator w(2);
  gossip::anti_entropy_config k;
  k.max_items = 4;
  k.certificate_ttl = 5s;
  auto rec = gworld::build<ae>(w, 2, k);
  auto& a = w.get<ae>(0, bid);
  gossip::anti_entropy_msg::update u;
  u.items.push_back({77, true, std::int64_t{1} << 62, {}});
  u.items.push_back({0, false, 0, bytes{1}});
  u.items.push_back({78, false, -5, bytes{1}});
  a.on_message(address::sim(1), u);
  CHECK(w.metrics().counter(bid, "bad_item") == 2);
  CHECK(a.retired(77));
  w.run_for(7s);
  CHECK_FALSE(a.retired(77));
  for (int i = 0; i < 4; ++i) a.broadcast(as_bytes("x"));
  CHECK_THROWS_AS(a.broadcast(as_bytes("y")), dcp::error);
}

TEST_CASE("anti-entropy: a wanted list that repeats one id is answered once; replies and certificates are bounded") {
  simulator w(3);
  gossip::anti_entropy_config k;
  k.max_items = 8;
  k.max_reply_bytes = 4 * k.max_payload;
  auto rec = gworld::build<ae>(w, 2, k);
  w.run_for(1s);
  auto& a = w.get<ae>(0, bid);
  const bytes big(k.max_payload, 7);
  const auto id = a.broadcast(big);
  w.metrics().reset();

  // One update naming the same id 2 * max_items times: the answer carries it once.
  gossip::anti_entropy_msg::update u;
  u.wanted.assign(2 * k.max_items, id);
  a.on_message(address::sim(1), u);
  const auto sent = w.metrics().of(bid, gossip::anti_entropy_msg::update::wire_id);
  CHECK(sent.sent == 1);
  CHECK(sent.sent_bytes < 2 * k.max_payload);
  CHECK(w.metrics().drops() == 0);
  CHECK(w.metrics().counter(bid, "wanted_duplicates") == static_cast<std::int64_t>(2 * k.max_items - 1));

  // Everything asked for at once: the reply stops at max_reply_bytes (the rest comes in later rounds).
  for (std::size_t i = 1; i < k.max_items; ++i) a.broadcast(big);
  w.metrics().reset();
  gossip::anti_entropy_msg::digest empty;  // "I hold nothing"
  a.on_message(address::sim(1), empty);
  const auto replied = w.metrics().of(bid, gossip::anti_entropy_msg::update::wire_id);
  CHECK(replied.sent == 1);
  CHECK(replied.sent_bytes <= k.max_reply_bytes + k.max_payload + 1024);
  CHECK(w.metrics().counter(bid, "reply_truncated") == 1);

  // Death certificates for ids never seen count against max_items like live items.
  gossip::anti_entropy_msg::update certs;
  for (std::uint64_t i = 0; i < 2 * k.max_items; ++i) certs.items.push_back({1000 + i, true, 1'000'000'000, {}});
  auto& b = w.get<ae>(1, bid);
  b.on_message(address::sim(0), certs);
  CHECK(b.size() <= k.max_items);
  CHECK(w.metrics().counter(bid, "certificates_refused_full") > 0);
}

// Issue 11: a digest of a few bytes is answered with up to max_reply_bytes
// (the requester lacks everything), so digests were an amplifier: a flood
// of empty digests drew 1 MiB each. Answers (to digests and to wanted lists)
// now draw on a byte budget per period, max_answer_bytes_per_period, and
// digests and updates are taken only from peers the membership admits.
TEST_CASE(
    "anti-entropy: a flood of empty digests draws at most the answer budget per period; a stranger's draws nothing") {
  simulator w(8);
  gossip::anti_entropy_config k;
  k.max_items = 64;
  auto rec = gworld::build<ae>(w, 2, k);
  w.run_for(1s);
  auto& a = w.get<ae>(0, bid);
  const bytes big(k.max_payload, 7);
  for (int i = 0; i < 60; ++i) a.broadcast(big);  // 3.75 MiB held
  w.metrics().reset();
  gossip::anti_entropy_msg::digest empty;
  for (int i = 0; i < 100; ++i) a.on_message(address::sim(1), empty);
  auto replied = w.metrics().of(bid, gossip::anti_entropy_msg::update::wire_id);
  CHECK(replied.sent_bytes <= k.max_answer_bytes_per_period + 1024 * replied.sent);
  CHECK(replied.sent_bytes >= k.max_reply_bytes);  // the first is answered in full
  CHECK(w.metrics().counter(bid, "answer_budget_exhausted") > 0);
  // The budget comes back with the next period.
  w.run_for(k.period);
  const auto before = replied.sent_bytes;
  a.on_message(address::sim(1), empty);
  replied = w.metrics().of(bid, gossip::anti_entropy_msg::update::wire_id);
  CHECK(replied.sent_bytes >= before + k.max_reply_bytes);

  // A process outside the overlay gets nothing, and plants nothing.
  w.metrics().reset();
  a.on_message(address::sim(7), empty);
  gossip::anti_entropy_msg::update push;
  push.items.push_back({4242, false, 0, to_bytes("planted")});
  push.wanted.push_back(4243);
  a.on_message(address::sim(7), push);
  CHECK(w.metrics().of(bid).sent == 0);
  CHECK(w.metrics().drops() == 0);  // nothing was even tried towards it
  CHECK_FALSE(a.holds(4242));
  CHECK(w.metrics().counter(bid, "not_member") == 2);
}

}  // namespace test_anti_entropy
