#include <doctest/doctest.h>

#include <map>
#include <set>

#include "dcp/delegation.hpp"
#include "dcp/dht.hpp"
#include "dcp/membership.hpp"
#include "dcp/sim.hpp"
#include "../seeds.hpp"

namespace test_delegation {

using namespace dcp;
using namespace dcp::delegation;

namespace {

using origin_t = origin<sim::env>;
using peer_t = peer<sim::env>;
constexpr protocol_id pid = default_protocol_id;

lease::ed25519_private_key origin_private_key(std::uint8_t fill = 7) {
  return lease::ed25519_private_key::from_seed(bytes(32, fill)).value();
}

/// Node 0 is the origin; nodes 1..n are peers (clients, and coordinators of
/// the shards `locate` names them for). `owner[shard]` plays the DHT: the
/// node that coordinates each shard now.
struct world {
  sim::simulator w;
  std::vector<sim::node_index> owner;
  origin_config ocfg;

  world(std::uint64_t seed, resource_spec spec, std::uint32_t peers, double loss = 0,
        std::function<void(origin_config&)> configure = {})
      : w(seed, net(loss)) {
    ocfg.resources = {spec};
    ocfg.certificate_validity = 3s;
    ocfg.max_drift = 50ms;
    if (configure) configure(ocfg);
    for (std::uint32_t s = 0; s < spec.shards; ++s) owner.push_back(1 + s);
    auto key = origin_private_key();
    const auto pub = key.public_key().raw();
    w.add_node([this, key](sim::node_context& n) { n.add<origin_t>(pid, lease::signing_key(key), ocfg); });
    peer_config pc;
    pc.origin = address::sim(0);
    pc.origin_public_key = pub;
    pc.token_ttl = 1s;
    pc.request_timeout = 100ms;
    pc.give_up_after = 8s;
    pc.locate = fixed_locator([this](const std::string& key) -> std::optional<address> {
      return address::sim(owner[std::stoul(key.substr(key.find('#') + 1))]);
    });
    w.add_nodes(peers, [pc](sim::node_context& n) { n.add<peer_t>(pid, pc); });
    for (sim::node_index i = 0; i <= peers; ++i)
      w.set_clock(i, duration(w.rng().between(-20'000'000, 20'000'000)), (w.rng().uniform() * 2 - 1) * 1e-4);
  }
  static sim::config net(double loss) {
    sim::config c;
    c.network.delay = sim::latency::uniform(1ms, 5ms);
    c.network.loss = loss;
    return c;
  }
  origin_t& org() { return w.get<origin_t>(0, pid); }
  peer_t* peer(sim::node_index i) { return w.find<peer_t>(i, pid); }
  wall_time origin_now() const { return w.local_wall_now(0); }
};

}  // namespace

TEST_CASE("delegation: max-min fair shares (Doorman's FairShare example and its properties)") {
  CHECK(max_min_fair(120, {1000, 50, 10}) == std::vector<std::uint64_t>{60, 50, 10});
  CHECK(max_min_fair(10, {}).empty());
  dcp::rng r(3);
  for (int trial = 0; trial < 2000; ++trial) {
    const auto C = r.below(1000);
    std::vector<std::uint64_t> wants(1 + r.below(8));
    for (auto& x : wants) x = r.below(400);
    std::vector<std::uint64_t> now(trial % 2 ? wants.size() : 0);  // with and without today's holdings
    for (auto& x : now) x = r.below(200);
    const auto got = max_min_fair(C, wants, now);
    std::uint64_t sum = 0, want_sum = 0;
    for (std::size_t i = 0; i < wants.size(); ++i) {
      REQUIRE(got[i] <= wants[i]);
      sum += got[i];
      want_sum += wants[i];
    }
    REQUIRE(sum == std::min<std::uint64_t>(C, want_sum));  // all of C is given while anyone wants more
    for (std::size_t i = 0; i < wants.size(); ++i)
      if (got[i] < wants[i])  // i is held back: nobody gets more than one unit above it
        for (auto g : got) REQUIRE(g <= got[i] + 1);
  }
  // A division redone after every report keeps the remainder's units where
  // they are: 100 among 16 shards that all want more than 7 is 6 each and 4
  // shards with 7. When the wants then wobble (by less than a quarter), the
  // same 4 keep their 7 (before, the 4 largest wants took them, and the units
  // moved each report). A real shift moves them: 4 others wanting twice as
  // much take them.
  std::vector<std::uint64_t> wants(16, 60);
  auto shares = max_min_fair(100, wants);
  for (int report = 0; report < 50; ++report) {
    for (auto& x : wants) x = 56 + r.below(12);
    const auto next = max_min_fair(100, wants, shares);
    CHECK(next == shares);
  }
  std::vector<std::size_t> seven, six;
  for (std::size_t i = 0; i < shares.size(); ++i) (shares[i] == 7 ? seven : six).push_back(i);
  REQUIRE(seven.size() == 4);
  for (std::size_t j = 0; j < 4; ++j) wants[six[j]] = 120;
  const auto shifted = max_min_fair(100, wants, shares);
  for (std::size_t j = 0; j < 4; ++j) CHECK(shifted[six[j]] == 7);
  CHECK(jain_index({1, 1, 1}) == doctest::Approx(1.0));
  CHECK(jain_index({3, 0, 0}) == doctest::Approx(1.0 / 3));
}

TEST_CASE("delegation: misconfiguration is refused where it is made, in words") {
  origin_config c;
  CHECK_THROWS_WITH_AS(c.validate(), doctest::Contains("no resources"), dcp::error);
  c.resources = {{"db", capacity_kind::concurrency, 2, 4}};
  CHECK_THROWS_WITH_AS(c.validate(), doctest::Contains("share of at least 1"), dcp::error);
  c.resources = {{"db", capacity_kind::concurrency, 8, 2}, {"db", capacity_kind::rate, 8, 2}};
  CHECK_THROWS_WITH_AS(c.validate(), doctest::Contains("listed twice"), dcp::error);
  c.resources = {{"a#b", capacity_kind::concurrency, 8, 2}};
  CHECK_THROWS_AS(c.validate(), dcp::error);
  c.resources = {{"db", capacity_kind::concurrency, 8, 2}};
  c.certificate_validity = 100ms;
  c.max_drift = 50ms;
  CHECK_THROWS_WITH_AS(c.validate(), doctest::Contains("4 x max_drift"), dcp::error);

  certificate cert{"db", 0, capacity_kind::concurrency, 4, 1, wall_time(1s), wall_time(2s), {}, 1};
  CHECK(cert.problem() == "needs 1..16 coordinators");  // an empty group
  cert.coordinators = {{address::sim(1), bytes(32, 1)},
                       {address::sim(2), bytes(32, 2)},
                       {address::sim(3), bytes(32, 3)},
                       {address::sim(4), bytes(32, 4)}};
  cert.quorum = 2;  // 2 of 4: two quorums may not intersect
  CHECK(cert.problem().find("does not intersect") != std::string::npos);
  cert.quorum = 3;
  CHECK(cert.problem().empty());
  const auto key = lease::signing_key(origin_private_key(), 0);
  CHECK_FALSE(seal_certificate(certificate{}, key));
}

TEST_CASE("delegation: certificates are signed by the origin; anything else is refused") {
  const auto key = lease::signing_key(origin_private_key(), 0);
  const auto vk = key.to_verification_key();
  certificate c{"db", 3, capacity_kind::rate, 40, 2, wall_time(10s), wall_time(20s), {{address::sim(5), bytes(32, 9)}},
                1};
  auto sealed = seal_certificate(c, key).value();
  auto back = open_certificate(sealed, vk);
  REQUIRE(back);
  CHECK(*back == c);
  for (std::size_t i = 0; i < sealed.size(); ++i) {  // every altered byte is refused
    auto bad = sealed;
    bad[i] ^= 0x40;
    CHECK(open_certificate(bad, vk).error() == delegation::errc::bad_certificate);
  }
  const auto other = lease::signing_key(origin_private_key(8), 0).to_verification_key();
  CHECK(open_certificate(sealed, other).error() == delegation::errc::bad_certificate);
  // A lease token is not a certificate, even under the same key.
  auto token = lease::seal({"db#3", address::sim(1), 1, 1, wall_time(15s)}, key).value();
  CHECK(open_certificate(token, vk).error() == delegation::errc::bad_certificate);
  CHECK(open_certificate(bytes{}, vk).error() == delegation::errc::bad_certificate);
}

// A coordinator that lies: it signs more than its share. The origin, checking
// offline, honours at most the share, and across shards at most C.
namespace {
struct liar {
  using messages = msg::all;
  static constexpr std::string_view name = "liar";
  sim::env env;
  lease::ed25519_private_key key;
  std::optional<certificate> cert;
  liar(sim::env e)
      : env(e),
        key(lease::ed25519_private_key::from_seed(bytes(32, static_cast<std::uint8_t>(40 + e.index()))).value()) {}
  void ask(std::string resource, std::uint32_t shard, std::uint64_t demand = 1000) {
    env.send(address::sim(0), request(resource, shard, demand));
  }
  msg::delegate_request request(std::string resource, std::uint32_t shard, std::uint64_t demand = 1000) {
    msg::delegate_request m{std::move(resource), shard, key.public_key().raw(), demand};
    REQUIRE_FALSE(delegation::sign(m, env.self(), key, env.wall_now()));
    return m;
  }
  void on_message(const address&, const msg::delegate_reply& m) {
    if (m.code == status::ok)
      cert = open_certificate(m.certificate, lease::signing_key(origin_private_key(), 0).to_verification_key()).value();
  }
  template <class M> void on_message(const address&, const M&) {}
  bytes sign(std::uint32_t epoch, std::string res, address holder, std::uint32_t permits, std::uint64_t fencing,
             wall_time expiry) {
    return lease::seal({std::move(res), holder, permits, fencing, expiry}, lease::signing_key(key, epoch)).value();
  }
};
}  // namespace

TEST_CASE(
    "delegation: a lying coordinator wastes its own share, never more; forged and stale tokens get their own errors") {
  sim::simulator w(5);
  origin_config oc;
  oc.resources = {{"db", capacity_kind::concurrency, 10, 2}};
  oc.max_drift = 50ms;
  w.add_node([oc](sim::node_context& n) { n.add<origin_t>(pid, lease::signing_key(origin_private_key(), 0), oc); });
  w.add_nodes(2, [](sim::node_context& n) { n.add<liar>(pid); });
  auto& org = w.get<origin_t>(0, pid);
  auto& a = w.get<liar>(1, pid);
  auto& b = w.get<liar>(2, pid);
  a.ask("db", 0);
  b.ask("db", 1);
  w.run_for(100ms);
  REQUIRE(a.cert);
  REQUIRE(b.cert);
  // Both asked for all of it: the first got what the other did not hold,
  // the second what was left; each certificate states its share exactly.
  const auto share_a = org.share("db", 0), share_b = org.share("db", 1);
  CHECK(share_a + share_b == 10);
  CHECK(share_a == a.cert->share);
  CHECK(share_b == b.cert->share);
  const auto now = w.local_wall_now(0);
  const auto exp = now + 2s;
  // a grants 20 single permits: only its share is honoured.
  std::uint32_t admitted = 0;
  for (std::uint64_t i = 1; i <= 20; ++i)
    admitted += org.admit(a.sign(a.cert->epoch, "db#0", address::sim(100 + i), 1, i, exp), now).has_value();
  CHECK(admitted == share_a);
  CHECK(org.stats().over_capacity == 20 - share_a);
  for (std::uint64_t i = 1; i <= 20; ++i)
    (void)org.admit(b.sign(b.cert->epoch, "db#1", address::sim(200 + i), 1, i, exp), now);
  CHECK(org.in_use("db", now) == 10);  // never above C

  // Each bad token is refused with its own error, and changes nothing.
  auto good = a.sign(a.cert->epoch, "db#0", address::sim(300), 1, 999, exp);
  auto forged = good;
  forged[forged.size() / 2] ^= 1;
  CHECK(org.admit(forged, now).error() == lease::errc::bad_signature);
  CHECK(org.admit(a.sign(a.cert->epoch + 3, "db#0", address::sim(300), 1, 1, exp), now).error() ==
        delegation::errc::wrong_epoch);
  CHECK(org.admit(a.sign(a.cert->epoch, "db#7", address::sim(300), 1, 1, exp), now).error() ==
        delegation::errc::unknown_shard);
  CHECK(org.admit(a.sign(a.cert->epoch, "disk#0", address::sim(300), 1, 1, exp), now).error() ==
        delegation::errc::unknown_shard);
  CHECK(org.admit(a.sign(a.cert->epoch, "db#0", address::sim(300), 1, 1, now - 1s), now).error() ==
        lease::errc::expired);
  CHECK(org.admit(b.sign(a.cert->epoch, "db#0", address::sim(300), 1, 1, exp), now).error() ==
        lease::errc::bad_signature);
  // A token is honoured only from its holder, and a refusal counts nothing.
  const auto before = org.in_use("db", now);
  CHECK(org.admit(good, now, address::sim(301)).error() == delegation::errc::wrong_holder);
  CHECK(org.in_use("db", now) == before);
  // Replayed after release: refused.
  auto first = a.sign(a.cert->epoch, "db#0", address::sim(101), 1, 1, exp);
  CHECK(org.release(lease::token{"db#0", address::sim(101), 1, 1, exp}));
  CHECK(org.admit(first, now).error() == lease::errc::released);
  CHECK(org.in_use("db", now) == 9);
  // A token that claims to outlive its delegation is honoured only until the delegation ends.
  auto too_long = a.sign(a.cert->epoch, "db#0", address::sim(400), 1, 77, now + 1h);
  auto t = org.admit(too_long, now);
  REQUIRE(t);
  CHECK(t->expiry == a.cert->not_after);
  // After the delegation ends, its tokens are refused as such.
  const auto after = a.cert->not_after + 1s;
  CHECK(org.admit(a.sign(a.cert->epoch, "db#0", address::sim(500), 1, 500, after + 1s), after).error() ==
        delegation::errc::delegation_ended);
  CHECK(org.stats().admitted == share_a + share_b + 1);
}

// Whom the origin believes: a request or commit signed by the coordinator's
// own key, fresh and not replayed. An impostor that can claim the
// coordinator's address (or record its traffic) can neither keep a dead
// coordinator's shard alive, nor name a key it does not hold, nor spend stock.
TEST_CASE("delegation: the origin believes only signed, fresh delegate requests and stock commits") {
  sim::simulator w(11);
  origin_config oc;
  oc.resources = {{"db", capacity_kind::concurrency, 10, 1}, {"seats", capacity_kind::stock, 5, 1}};
  oc.certificate_validity = 3s;
  oc.max_drift = 50ms;
  oc.request_max_age = 2s;
  w.add_node([oc](sim::node_context& n) { n.add<origin_t>(pid, lease::signing_key(origin_private_key(), 0), oc); });
  w.add_nodes(2, [](sim::node_context& n) { n.add<liar>(pid); });
  auto& org = w.get<origin_t>(0, pid);
  auto& a = w.get<liar>(1, pid);
  auto& b = w.get<liar>(2, pid);
  a.ask("db", 0);
  w.run_for(50ms);
  REQUIRE(a.cert);
  const auto epoch = org.epoch("db", 0);
  const auto stats0 = org.stats();

  // a falls silent. An impostor claiming a's address re-sends a's request,
  // unsigned, or signed by another key, or a's own signed request again.
  auto recorded = a.request("db", 0);
  org.on_message(address::sim(1), recorded);
  CHECK(org.stats().renewals == stats0.renewals + 1);  // the genuine one, once
  for (int i = 0; i < 6; ++i) {
    w.run_for(1s);
    auto unsigned_request = msg::delegate_request{"db", 0, a.key.public_key().raw(), 1000};
    org.on_message(address::sim(1), unsigned_request);
    auto wrong_key = recorded;  // names a's key, signed with b's
    REQUIRE_FALSE(sign(wrong_key, address::sim(1), b.key, w.local_wall_now(0)));
    org.on_message(address::sim(1), wrong_key);
    org.on_message(address::sim(1), recorded);  // replayed
  }
  CHECK(org.stats().renewals == stats0.renewals + 1);
  CHECK(org.stats().unauthenticated == 12);
  CHECK(org.stats().stale_requests == 6);
  // So a's delegation ended, and b gets the shard in a new epoch.
  b.ask("db", 0);
  w.run_for(50ms);
  REQUIRE(b.cert);
  CHECK(b.cert->epoch == epoch + 1);
  CHECK(b.cert->coordinators.front().addr == address::sim(2));

  // A request from the future, or one signed for another address, is refused too.
  auto future = b.request("db", 0);
  REQUIRE_FALSE(sign(future, address::sim(2), b.key, w.local_wall_now(2) + 1s));
  const auto renewals = org.stats().renewals;
  org.on_message(address::sim(2), future);
  org.on_message(address::sim(1), b.request("db", 0));  // b's signature, a's address
  CHECK(org.stats().renewals == renewals);

  // Stock: only the coordinator's signed commit spends it.
  a.ask("seats", 0);
  w.run_for(50ms);
  REQUIRE(a.cert);
  REQUIRE(a.cert->resource == "seats");
  msg::stock_commit forged{"seats", 0, a.cert->epoch, 1, {{address::sim(9), 1, 5}}};
  org.on_message(address::sim(1), forged);
  CHECK(org.allocations("seats").empty());
  REQUIRE_FALSE(sign(forged, address::sim(1), b.key));  // signed, by the wrong key
  org.on_message(address::sim(1), forged);
  CHECK(org.allocations("seats").empty());
  msg::stock_commit genuine{"seats", 0, a.cert->epoch, 2, {{address::sim(9), 1, 2}}};
  REQUIRE_FALSE(sign(genuine, address::sim(1), a.key));
  org.on_message(address::sim(1), genuine);
  CHECK(org.allocations("seats").size() == 1);
  org.on_message(address::sim(1), genuine);  // a replay spends nothing twice
  CHECK(org.allocations("seats").size() == 1);
  CHECK(org.stats().allocations == 1);
}

// An acquire can be withdrawn: its callback says cancelled, once, and the
// permit it would have had goes to the next client, not to nobody.
TEST_CASE("delegation: a cancelled acquire completes once as cancelled and leaves no permit behind") {
  world s(3, {"db", capacity_kind::concurrency, 1, 1}, 4);
  std::optional<grant> a;
  s.peer(2)->acquire("db", 0, 1, [&](result<grant> g) {
    REQUIRE(g);
    a = *g;
  });
  s.w.run_for(500ms);
  REQUIRE(a);
  int b_calls = 0;
  std::error_code b_error;
  const auto handle = s.peer(3)->acquire("db", 0, 1, [&](result<grant> g) {
    ++b_calls;
    b_error = g ? std::error_code{} : g.error();
  });
  s.w.run_for(300ms);  // b waits in line behind a
  CHECK(b_calls == 0);
  CHECK(s.peer(3)->cancel(handle));
  CHECK_FALSE(s.peer(3)->cancel(handle));  // once
  CHECK(b_calls == 0);                     // completes after the call, not inside it
  s.w.run_posted();                        // but once the event the test played is over
  CHECK(b_calls == 1);
  CHECK(b_error == dcp::errc::cancelled);
  s.peer(2)->release(*a);
  std::optional<grant> c;
  s.peer(4)->acquire("db", 0, 1, [&](result<grant> g) {
    if (g) c = *g;
  });
  s.w.run_for(3s);
  CHECK(b_calls == 1);
  CHECK(s.peer(3)->holds().empty());
  REQUIRE(c);                            // the permit b withdrew from went to the next client
  const auto held = s.peer(4)->holds();  // c renewed: present its latest token
  REQUIRE(held.size() == 1);
  CHECK(s.org().admit(held.front().sealed, s.origin_now()));
}

// DESIGN §10: an answer's completion runs after the event that brought it,
// never inside the peer's message handler.
TEST_CASE("delegation: a refusal completes after the reply's event, not inside its handler") {
  world s(5, {"db", capacity_kind::concurrency, 1, 1}, 3);
  int calls = 0;
  std::error_code got;
  const auto handle = s.peer(2)->acquire("db", 0, 1, [&](result<grant> g) {
    ++calls;
    got = g ? std::error_code{} : g.error();
  });
  REQUIRE(handle != 0);
  msg::token_reply refusal{handle, status::refused, static_cast<std::uint32_t>(delegation::errc::unknown_shard), {}, {},
                           0};
  s.peer(2)->on_message(address::sim(1), refusal);  // the test plays the reply's event
  CHECK(calls == 0);
  s.w.run_posted();
  CHECK(calls == 1);
  CHECK(got == delegation::errc::unknown_shard);
  s.w.run_for(1s);
  CHECK(calls == 1);  // once
}

// Shares follow demand through real coordinators: when every client moves
// to shard 0, shard 1 falls idle and shard 0's line grows; within a few
// renewals shard 0 holds all of C but shard 1's floor of one unit.
TEST_CASE("delegation: a shift in demand moves the capacity to where the clients wait") {
  for (std::uint64_t seed = 1; seed <= 4; ++seed) {
    CAPTURE(seed);
    const std::uint32_t C = 10, clients = 30;
    world s(seed, {"db", capacity_kind::concurrency, C, 2}, clients);
    std::vector<std::uint32_t> shard_of(clients + 1, 0);
    for (sim::node_index i = 3; i <= clients; ++i) shard_of[i] = i % 2;
    std::function<void(sim::node_index)> loop = [&](sim::node_index i) {
      s.peer(i)->acquire("db", shard_of[i], 1, [&, i](result<grant> g) {
        if (!g) return s.w.after(50ms, [&, i] { loop(i); });
        s.w.after(duration(s.w.rng().between(100'000'000, 300'000'000)), [&, i, gr = *g] {
          s.peer(i)->release(gr);
          loop(i);
        });
      });
    };
    for (sim::node_index i = 3; i <= clients; ++i)
      s.w.after(duration(s.w.rng().between(0, 100'000'000)), [&, i] { loop(i); });
    s.w.run_for(6s);
    CHECK(s.org().share("db", 0) + s.org().share("db", 1) == C);
    for (sim::node_index i = 3; i <= clients; ++i) shard_of[i] = 0;  // from their next token on
    s.w.run_for(8s);
    CHECK(s.org().share("db", 0) == C - 1);
    CHECK(s.org().share("db", 1) == 1);
  }
}

// The flagship property: a surge of clients, coordinators crashing and being
// replaced, lossy links and skewed clocks, and the origin never honours more
// than C at any instant; grants resume after a crash; old epochs end.
TEST_CASE("delegation: never above capacity at the origin through a surge and coordinator crashes, over seeds") {
  std::uint64_t total_admitted = 0, refused_over = 0, crashes = 0, reissued = 0;
  for (std::uint64_t seed = 1; seed <= 30; ++seed) {
    CAPTURE(seed);
    const std::uint32_t C = 12, shards = 3, clients = 40;
    world s(seed, {"db", capacity_kind::concurrency, C, shards}, clients, seed % 3 == 0 ? 0.02 : 0);
    std::vector<int> life(clients + 1, 0);
    std::uint64_t admitted_after_crash = 0;
    bool crashed = false;
    // A client loop: get a token, present it (the origin admits), hold, release both places, again.
    std::function<void(sim::node_index, int)> loop = [&](sim::node_index i, int l) {
      auto* p = s.peer(i);
      if (!p || life[i] != l) return;
      const auto shard = static_cast<std::uint32_t>(s.w.rng().below(shards));
      p->acquire("db", shard, 1, [&, i, l](result<grant> g) {
        if (!s.peer(i) || life[i] != l) return;
        if (!g) return s.w.after(duration(s.w.rng().between(10'000'000, 100'000'000)), [&, i, l] { loop(i, l); });
        auto admitted = s.org().admit(g->sealed, s.origin_now());
        if (admitted) {
          ++total_admitted;
          if (crashed) ++admitted_after_crash;
        } else if (admitted.error() == lease::errc::over_capacity) {
          ++refused_over;
        }
        s.w.after(duration(s.w.rng().between(20'000'000, 400'000'000)), [&, i, l, gr = *g, ok = admitted.has_value()] {
          if (auto* p = s.peer(i); p && life[i] == l) {
            if (ok) s.org().release(gr.token);
            p->release(gr);
            loop(i, l);
          }
        });
      });
    };
    // The surge: every client within 100 ms.
    for (sim::node_index i = 1; i <= clients; ++i)
      s.w.after(duration(s.w.rng().between(0, 100'000'000)), [&, i] { loop(i, 0); });
    s.w.after_event([&] { REQUIRE(s.org().in_use("db", s.origin_now()) <= C); });
    s.w.run_for(2s);
    // Crash a coordinator; the DHT names a new owner; its shard comes back after the old certificate ends.
    const auto victim = s.owner[seed % shards];
    s.w.crash(victim);
    ++life[victim];
    ++crashes;
    crashed = true;
    s.owner[seed % shards] = clients;  // the next owner of the key
    const auto old_epoch = s.org().epoch("db", seed % shards);
    s.w.run_for(8s);
    CHECK(s.org().epoch("db", seed % shards) > old_epoch);
    reissued += s.org().epoch("db", seed % shards) > old_epoch;
    CHECK(admitted_after_crash > 0);
    s.w.after_event({});
  }
  MESSAGE("admitted " << total_admitted << " tokens at the origin, " << refused_over << " refused over capacity, "
                      << crashes << " coordinator crashes, " << reissued << " shards re-delegated");
  CHECK(reissued == crashes);
}

TEST_CASE("delegation: a crashed coordinator's shard is re-delegated only after its certificate ends") {
  world s(9, {"db", capacity_kind::concurrency, 4, 1}, 6);
  std::optional<grant> g;
  s.peer(3)->acquire("db", 0, 1, [&](result<grant> r) {
    if (r) g = *r;
  });
  s.w.run_until([&] { return g.has_value(); }, s.w.now() + 3s);
  REQUIRE(g);
  REQUIRE(s.org().admit(g->sealed, s.origin_now()));
  const auto cert_end = g->cert.not_after;
  s.w.crash(1);
  s.owner[0] = 2;
  std::optional<grant> g2;
  wall_time got_at{};
  s.peer(4)->acquire("db", 0, 1, [&](result<grant> r) {
    if (r) {
      g2 = *r;
      got_at = s.origin_now();
    }
  });
  s.w.run_until([&] { return g2.has_value(); }, s.w.now() + 8s);
  REQUIRE(g2);
  CHECK(g2->cert.epoch == g->cert.epoch + 1);
  CHECK(g2->cert.not_before >= cert_end);  // epochs never overlap
  CHECK(got_at - cert_end < 1s);           // the outage is bounded by the certificate's end (+ retries)
  // The old epoch's token is now refused as ended.
  CHECK(s.org().admit(g->sealed, s.origin_now()).error() == delegation::errc::delegation_ended);
  CHECK(s.org().admit(g2->sealed, s.origin_now()));
}

TEST_CASE("delegation: an origin that lets only registered keys coordinate refuses the others, in words") {
  std::set<bytes> registered;  // the keys of the clients the origin knows (filled once the peers exist)
  world t(12, {"db", capacity_kind::concurrency, 4, 1}, 4, 0, [&](origin_config& oc) {
    oc.may_coordinate = [&](const std::vector<coordinator_entry>& who) {
      return std::all_of(who.begin(), who.end(), [&](auto& c) { return registered.contains(c.public_key); });
    };
  });
  registered = {t.peer(2)->public_key()};
  std::optional<result<grant>> r;
  t.peer(3)->acquire("db", 0, 1, [&](result<grant> g) { r = std::move(g); });  // node 1 owns the key: not registered
  t.w.run_until([&] { return r.has_value(); }, t.w.now() + 3s);
  REQUIRE(r);
  REQUIRE_FALSE(*r);
  CHECK(r->error() == delegation::errc::not_allowed);
  CHECK(t.org().stats().certificates == 0);
  t.owner[0] = 2;  // a registered node owns the key now
  std::optional<result<grant>> r2;
  t.peer(4)->acquire("db", 0, 1, [&](result<grant> g) { r2 = std::move(g); });
  t.w.run_until([&] { return r2.has_value(); }, t.w.now() + 3s);
  REQUIRE(r2);
  REQUIRE(*r2);
  CHECK((*r2)->cert.coordinator(address::sim(2)));
}

TEST_CASE("delegation: a client holds tokens of two shards whose fencing tokens are equal, and keeps both") {
  // Fencing tokens are unique per shard (epoch << 32 | sequence), not across
  // shards: the first grant of every shard's first epoch is 2^32 + 1.
  world s(13, {"db", capacity_kind::concurrency, 4, 2}, 4);
  std::vector<grant> got;
  std::uint32_t lost = 0;
  s.peer(3)->on_lost([&](const grant&) { ++lost; });
  for (std::uint32_t shard : {0u, 1u})
    s.peer(3)->acquire("db", shard, 1, [&](result<grant> g) {
      if (g) got.push_back(*g);
    });
  s.w.run_until([&] { return got.size() == 2; }, s.w.now() + 3s);
  REQUIRE(got.size() == 2);
  REQUIRE(got[0].token.fencing == got[1].token.fencing);
  s.w.run_for(3s);  // three token lives: both renewed
  CHECK(s.peer(3)->holds().size() == 2);
  CHECK(lost == 0);
  s.peer(3)->release(got[0]);
  const auto left = s.peer(3)->holds();
  REQUIRE(left.size() == 1);
  CHECK(left[0].shard == got[1].shard);
}

TEST_CASE("delegation: a released token stays released when a renewal answered late comes back") {
  // A renewal in flight when the holder releases: its answer must not bring
  // the token back to life (held again, renewed for ever, then reported lost).
  world s(11, {"db", capacity_kind::concurrency, 4, 1}, 4);
  std::optional<grant> g;
  s.peer(3)->acquire("db", 0, 1, [&](result<grant> r) {
    if (r) g = *r;
  });
  s.w.run_until([&] { return g.has_value(); }, s.w.now() + 3s);
  REQUIRE(g);
  std::uint32_t lost = 0;
  s.peer(3)->on_lost([&](const grant&) { ++lost; });
  s.w.run_for(450ms);
  s.w.isolate(3);  // its renewals (sent from half the token's life) go unanswered for now
  s.w.run_for(350ms);
  REQUIRE(s.peer(3)->holds().size() == 1);
  s.peer(3)->release(*g);
  CHECK(s.peer(3)->holds().empty());
  s.w.heal();
  s.w.run_for(2s);
  CHECK(s.peer(3)->holds().empty());
  CHECK(lost == 0);
}

TEST_CASE("delegation: a node the DHT names wrongly sends clients to the coordinator the origin knows") {
  // Views of the DHT differ for a while after joins and crashes: a client
  // may reach a node that is not the shard's coordinator. That node learns
  // from the origin who is, and says so; the client goes there at once
  // instead of asking the wrong node until it gives up.
  for (std::uint64_t seed = 1; seed <= 5; ++seed) {
    CAPTURE(seed);
    world s(seed, {"db", capacity_kind::concurrency, 4, 1}, 6);
    std::optional<grant> g;
    s.peer(3)->acquire("db", 0, 1, [&](result<grant> r) {
      if (r) g = *r;
    });
    s.w.run_until([&] { return g.has_value(); }, s.w.now() + 3s);
    REQUIRE(g);
    s.owner[0] = 2;  // the view moves to node 2; node 1 still holds the delegation, and renews it
    std::optional<result<grant>> g2;
    const auto asked = s.w.now();
    s.peer(4)->acquire("db", 0, 1, [&](result<grant> r) { g2 = std::move(r); });
    s.w.run_until([&] { return g2.has_value(); }, s.w.now() + 9s);
    REQUIRE(g2);
    REQUIRE(g2->has_value());
    CHECK((*g2)->cert.coordinator(address::sim(1)));  // granted by the coordinator the origin knows
    CHECK((*g2)->cert.epoch == g->cert.epoch);
    CHECK(s.w.now() - asked < 1s);  // a few round trips, not give_up_after
  }
}

TEST_CASE("delegation: a coordinator keeps its delegation, renewed, for as long as it lives") {
  // Renewals come every third of what is left of the certificate; counted
  // from the epoch's start instead, they drift apart until the certificate
  // lapses and the shard goes dark for a new epoch.
  world s(3, {"db", capacity_kind::concurrency, 4, 1}, 3);
  std::optional<grant> g;
  s.peer(2)->acquire("db", 0, 1, [&](result<grant> r) {
    if (r) g = *r;
  });
  s.w.run_until([&] { return g.has_value(); }, s.w.now() + 3s);
  REQUIRE(g);
  for (int i = 0; i < 30; ++i) {  // ten certificate lives
    s.w.run_for(1s);
    REQUIRE(s.peer(1)->coordinates("db", 0));
  }
  CHECK(s.org().epoch("db", 0) == 1);
  CHECK(s.org().stats().certificates == 1);
  CHECK(s.org().stats().renewals >= 25);
}

TEST_CASE("delegation: shares follow demand, max-min fair (the FairShare example through the origin)") {
  sim::simulator w(2);
  origin_config oc;
  oc.resources = {{"api", capacity_kind::rate, 120, 3}};
  w.add_node([oc](sim::node_context& n) { n.add<origin_t>(pid, lease::signing_key(origin_private_key(), 0), oc); });
  w.add_nodes(3, [](sim::node_context& n) { n.add<liar>(pid); });
  auto& org = w.get<origin_t>(0, pid);
  CHECK(org.share("api", 0) + org.share("api", 1) + org.share("api", 2) == 120);  // 40 each before any demand
  const std::uint64_t demand[] = {1000, 50, 10};
  for (int round = 0; round < 3; ++round) {
    for (std::uint32_t s = 0; s < 3; ++s) {
      auto& l = w.get<liar>(1 + s, pid);
      l.ask("api", s, demand[s]);
    }
    w.run_for(50ms);
  }
  CHECK(org.share("api", 0) == 60);
  CHECK(org.share("api", 1) == 50);
  CHECK(org.share("api", 2) == 10);
  // Rate: at most the share per wall-clock second, whatever the tokens say.
  auto& l = w.get<liar>(3, pid);
  REQUIRE(l.cert);
  const auto epoch = l.cert->epoch;
  const auto sec = std::chrono::ceil<std::chrono::seconds>(w.local_wall_now(0).time_since_epoch());
  const wall_time t0(sec);
  auto tok = l.sign(epoch, "api#2", address::sim(9), 1000, 5, t0 + 2s);
  int ok = 0;
  for (int i = 0; i < 30; ++i) ok += org.admit(tok, t0 + std::chrono::milliseconds(i)).has_value();
  CHECK(ok == 10);
  ok = 0;
  for (int i = 0; i < 30; ++i) ok += org.admit(tok, t0 + 1s + std::chrono::milliseconds(i)).has_value();
  CHECK(ok == 10);
}

// Stock: seats in a lab class. Allocations are committed to the origin in
// batches; the class is never over-allocated, each student's request counts
// once across retries and coordinator crashes, every confirmed seat is in the
// origin's record, and the origin sees one message per batch.
TEST_CASE("delegation: stock allocations, batched and idempotent, survive a coordinator crash") {
  for (std::uint64_t seed = 1; seed <= 10; ++seed) {
    CAPTURE(seed);
    const std::uint32_t seats = 30, students = 45;
    world s(seed, {"lab", capacity_kind::stock, seats, 2}, students, 0.02);
    std::map<sim::node_index, std::uint64_t> confirmed;  // student -> request id (fencing low bits)
    std::set<sim::node_index> refused;
    for (sim::node_index i = 3; i <= students; ++i)
      s.w.after(duration(s.w.rng().between(0, 200'000'000)), [&, i] {
        s.peer(i)->acquire("lab", i % 2, 1, [&, i](result<grant> g) {
          if (g)
            confirmed[i] = g->token.fencing;
          else
            refused.insert(i);
        });
      });
    s.w.run_for(150ms);
    s.w.crash(1);  // shard 0's coordinator, with reservations in flight
    s.owner[0] = 2;
    s.w.run_for(12s);
    const auto allocs = s.org().allocations("lab");
    CHECK(s.org().allocated("lab") <= seats);
    std::map<address, int> per_student;
    for (auto& [k, units] : allocs) per_student[k.first] += units;
    for (auto& [who, n] : per_student) CHECK(n == 1);  // once per student, across retries and coordinators
    for (auto& [i, f] : confirmed) CHECK(per_student.contains(address::sim(i)));  // no confirmed seat lost
    CHECK(confirmed.size() + refused.size() == students - 2);                     // every student heard back
    CHECK(s.org().stats().batches < s.org().stats().allocations);                 // batched, not one message per seat
  }
}

// Stock split over shards: the origin gives each shard a share of the seats
// by demand, so one shard can sell out while another still has seats. A
// student who asks any shard (acquire_stock) is told "sold out" only when
// the whole class is: whenever anyone hears stock_exhausted, every seat is
// allocated, and with more students than seats every seat is sold.
TEST_CASE("delegation: acquire_stock says sold out only when every shard is, over seeds") {
  int sold_out_heard = 0;
  for (std::uint64_t seed = 1; seed <= dcp::test::last_seed(1, 18); ++seed) {
    CAPTURE(seed);
    const std::uint32_t seats = 40, students = 52, shards = 4;
    world s(seed, {"lab", capacity_kind::stock, seats, shards}, students + shards, 0.02);
    std::size_t sold = 0, sold_out = 0, other = 0;
    for (sim::node_index i = shards + 1; i <= students + shards; ++i)
      // Most arrive at once (some shards sell their share, and report the
      // demand they could not meet); the rest across the renewals after it.
      s.w.after(i <= shards + 36 ? duration(s.w.rng().between(0, 300'000'000))
                                 : duration(s.w.rng().between(1'000'000'000, 3'000'000'000)),
                [&, i] {
                  s.peer(i)->acquire_stock("lab", shards, 1, [&](result<grant> g) {
                    if (g)
                      ++sold;
                    else if (g.error() == delegation::errc::stock_exhausted)
                      ++sold_out;
                    else
                      ++other;
                  });
                });
    s.w.run_for(16s);
    CHECK(sold + sold_out + other == students);  // everyone heard back
    CHECK(s.org().allocated("lab") <= seats);
    CHECK(s.org().allocated("lab") == sold);  // each sale confirmed, none lost
    if (sold_out > 0) CHECK(sold == seats);   // "sold out" was true
    CHECK(other == 0);
    sold_out_heard += sold_out > 0;
  }
  CHECK(sold_out_heard > 0);  // the property was exercised
}

// cancel() follows a stock walk to the shard it asks now: withdrawn while it
// asks its second shard, the walk completes once, as cancelled, and never
// asks a third.
TEST_CASE("delegation: a cancelled acquire_stock walk stops where it is") {
  int exercised = 0;
  for (std::uint64_t seed = 1; seed <= dcp::test::last_seed(1, 12); ++seed) {
    CAPTURE(seed);
    const std::uint32_t shards = 3;
    world s(seed, {"lab", capacity_kind::stock, shards, shards}, shards + 3);  // one seat a shard; buyers 4, 5, 6
    const sim::node_index buyer = shards + 3;
    for (sim::node_index i = shards + 1; i < buyer; ++i) {  // two seats go first: two shards sell out
      bool sold = false;
      s.peer(i)->acquire_stock("lab", shards, 1, [&](result<grant> g) { sold = g.has_value(); });
      s.w.run_for(2s);
      REQUIRE(sold);
    }
    std::set<sim::node_index> asked;  // the coordinators the buyer's walk asked, in order of first asking
    std::vector<sim::node_index> order;
    std::optional<std::uint64_t> walk;
    bool cancelled_at_second = false;
    s.w.on_trace([&](const sim::trace_event& e) {
      if (e.what != sim::trace_event::kind::send || e.from != buyer || e.protocol != pid ||
          e.type != msg::token_request::wire_id)
        return;
      if (asked.insert(e.to).second) order.push_back(e.to);
      if (order.size() == 2 && !cancelled_at_second) {
        cancelled_at_second = true;
        s.w.after(duration::zero(), [&] { CHECK(s.peer(buyer)->cancel(*walk)); });
      }
    });
    int calls = 0;
    std::optional<std::error_code> outcome;
    walk = s.peer(buyer)->acquire_stock("lab", shards, 1, [&](result<grant> g) {
      ++calls;
      outcome = g ? std::error_code{} : g.error();
    });
    s.w.run_for(3s);
    s.w.on_trace({});
    CHECK(calls == 1);
    if (!cancelled_at_second) continue;  // its first shard had the seat left
    ++exercised;
    CHECK(*outcome == dcp::make_error_code(dcp::errc::cancelled));
    CHECK(order.size() == 2);  // it never went on to a third shard
  }
  CHECK(exercised > 0);
}

// The system as the mission draws it: clients form a Kademlia overlay,
// locate a shard's coordinator as the DHT owner of its key, and the owner
// takes the shard on from the origin. When the owner crashes, the overlay
// names the next closest node, which is delegated the shard once the old
// certificate has ended; the origin never honours more than C meanwhile.
TEST_CASE("delegation over a Kademlia overlay: coordinators are the DHT owners, and a crashed owner's shard moves on") {
  using router_t = dht::kademlia<sim::env>;
  constexpr protocol_id rid = router_t::default_id;
  constexpr std::uint32_t C = 8, shards = 2, peers = 24;
  for (std::uint64_t seed = 1; seed <= 5; ++seed) {
    CAPTURE(seed);
    sim::config sc;
    sc.network.delay = sim::latency::uniform(1ms, 5ms);
    sim::simulator w(seed, sc);
    origin_config oc;
    oc.resources = {{"db", capacity_kind::concurrency, C, shards}};
    oc.certificate_validity = 3s;
    oc.max_drift = 50ms;
    auto okey = origin_private_key();
    w.add_node([&](sim::node_context& n) { n.add<origin_t>(pid, lease::signing_key(okey, 0), oc); });
    dht::kademlia_config kc;
    kc.k = 8;
    w.add_nodes(peers, [&](sim::node_context& n) {
      auto& r = n.add<router_t>(rid, kc);
      peer_config pc;
      pc.origin = address::sim(0);
      pc.origin_public_key = okey.public_key().raw();
      pc.token_ttl = 1s;
      pc.request_timeout = 100ms;
      pc.give_up_after = 8s;
      pc.locate = dht_locator(r);
      n.add<peer_t>(pid, pc);
      if (n.index() == 1)
        r.bootstrap({});
      else
        r.bootstrap({{node_id{}, address::sim(1)}});
    });
    w.run_for(3s);
    auto owner = [&](std::uint32_t shard) {  // the truth: the live node closest to the key
      const auto key = node_id::hash(shard_key("db", shard));
      std::optional<sim::node_index> best;
      for (sim::node_index i = 1; i <= peers; ++i)
        if (auto* r = w.find<router_t>(i, rid); r && r->joined() &&
            (!best ||
             router_t::distance(key, r->self().id) < router_t::distance(key, w.get<router_t>(*best, rid).self().id)))
          best = i;
      return *best;
    };
    auto& org = w.get<origin_t>(0, pid);
    std::vector<int> life(peers + 1, 0);
    std::uint64_t admitted = 0, after_crash = 0;
    bool crashed = false;
    std::function<void(sim::node_index, int)> loop = [&](sim::node_index i, int l) {
      auto* p = w.find<peer_t>(i, pid);
      if (!p || life[i] != l) return;
      const auto shard = static_cast<std::uint32_t>(w.rng().below(shards));
      p->acquire("db", shard, 1, [&, i, l](result<grant> g) {
        if (!w.find<peer_t>(i, pid) || life[i] != l) return;
        if (!g) return w.after(50ms, [&, i, l] { loop(i, l); });
        const bool ok = org.admit(g->sealed, w.local_wall_now(0)).has_value();
        admitted += ok;
        after_crash += ok && crashed;
        w.after(duration(w.rng().between(20'000'000, 200'000'000)), [&, i, l, gr = *g, ok] {
          if (auto* p = w.find<peer_t>(i, pid); p && life[i] == l) {
            if (ok) org.release(gr.token);
            p->release(gr);
            loop(i, l);
          }
        });
      });
    };
    for (sim::node_index i = 1; i <= peers; ++i)
      w.after(duration(w.rng().between(0, 200'000'000)), [&, i] { loop(i, 0); });
    w.after_event([&] { REQUIRE(org.in_use("db", w.local_wall_now(0)) <= C); });
    w.run_for(3s);
    for (std::uint32_t s = 0; s < shards; ++s) {
      CAPTURE(s);
      CHECK(w.get<peer_t>(owner(s), pid).coordinates("db", s));  // the DHT owner coordinates the shard
    }
    const auto victim = owner(0);
    const auto epoch = org.epoch("db", 0);
    w.crash(victim);
    ++life[victim];
    crashed = true;
    w.run_for(8s);
    const auto heir = owner(0);
    CHECK(heir != victim);
    CHECK(org.epoch("db", 0) > epoch);
    CHECK(w.get<peer_t>(heir, pid).coordinates("db", 0));
    CHECK(after_crash > 0);
    CHECK(admitted > 20);
    w.after_event({});
  }
}

// The origin as the overlay's entry point: its node runs the overlay too
// (HyParView, and Kademlia fed by it), so clients need no other address, and
// it may well be the node closest to a shard's key (here by construction).
// Clients tell their membership the origin's address and nothing else.
// Clients' locators skip it: it routes, never coordinates, and the shard is
// served by the next closest node.
TEST_CASE("delegation: an origin that is the overlay's entry point is never named a coordinator") {
  using router_t = dht::kademlia<sim::env>;
  using membership_t = membership::hyparview<sim::env>;
  constexpr protocol_id rid = router_t::default_id, mid = membership_t::default_id;
  for (std::uint64_t seed = 1; seed <= dcp::test::last_seed(1, 3); ++seed) {
    CAPTURE(seed);
    sim::simulator w(seed, world::net(0));
    origin_config oc;
    oc.resources = {{"db", capacity_kind::concurrency, 4, 1}};
    oc.certificate_validity = 3s;
    oc.max_drift = 50ms;
    auto okey = origin_private_key();
    dht::kademlia_config kc;
    kc.k = 8;
    w.add_node([&](sim::node_context& n) {
      n.add<origin_t>(pid, lease::signing_key(okey, 0), oc);
      auto okc = kc;
      okc.id = node_id::hash(shard_key("db", 0));  // the origin owns the shard's key
      auto& m = n.add<membership_t>(mid);
      auto& r = n.add<router_t>(rid, okc);
      dht::take_contacts_from(m, r);
      r.bootstrap({});  // it founds the overlay
    });
    w.add_nodes(8, [&](sim::node_context& n) {
      membership::hyparview_config hc;
      hc.contact = address::sim(0);
      auto& m = n.add<membership_t>(mid, hc);
      auto& r = n.add<router_t>(rid, kc);
      dht::take_contacts_from(m, r);
      peer_config pc;
      pc.origin = address::sim(0);
      pc.origin_public_key = okey.public_key().raw();
      pc.token_ttl = 1s;
      pc.request_timeout = 100ms;
      pc.locate = dht_locator(r, address::sim(0));
      n.add<peer_t>(pid, pc);
    });
    w.run_for(2s);
    for (sim::node_index i = 1; i <= 8; ++i) REQUIRE(w.get<router_t>(i, rid).joined());
    int granted = 0;
    for (sim::node_index i = 1; i <= 8; ++i)
      w.get<peer_t>(i, pid).acquire("db", 0, 1, [&](result<grant> g) {
        if (g && g->cert.coordinators.front().addr != address::sim(0)) ++granted;
      });
    w.run_for(3s);
    CHECK(granted >= 4);
    CHECK(w.metrics().counter(pid, "unexpected_message") == 0);  // no token request ever reached the origin
  }
}

// Hostile input: any client may name any shard; a coordinator keeps state for
// at most max_shards of them, refusing (and counting) the rest.
TEST_CASE("delegation: a coordinator's shard table is bounded") {
  sim::simulator w(6);
  origin_config oc;
  oc.resources = {{"db", capacity_kind::concurrency, 8, 8}};
  auto okey = origin_private_key();
  w.add_node([&](sim::node_context& n) { n.add<origin_t>(pid, lease::signing_key(okey, 0), oc); });
  peer_config pc;
  pc.origin = address::sim(0);
  pc.origin_public_key = okey.public_key().raw();
  pc.locate = fixed_locator([](const std::string&) { return std::optional<address>(address::sim(1)); });
  pc.max_shards = 2;
  w.add_nodes(2, [&](sim::node_context& n) { n.add<peer_t>(pid, pc); });
  auto& client = w.get<peer_t>(2, pid);
  std::vector<std::error_code> errors;
  for (std::uint32_t shard : {0u, 1u, 2u, 3u})
    client.acquire("db", shard, 1, [&](result<grant> g) { errors.push_back(g ? std::error_code{} : g.error()); });
  w.run_for(3s);
  REQUIRE(errors.size() == 4);
  CHECK(std::count(errors.begin(), errors.end(), std::error_code{}) == 2);
  CHECK(std::count(errors.begin(), errors.end(), make_error_code(delegation::errc::unknown_shard)) == 2);
  CHECK(w.metrics().counter(pid, "too_many_shards") >= 2);
}

}  // namespace test_delegation
