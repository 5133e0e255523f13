// Per-client quotas of the coordination service (issues 11 and 12): one
// client cannot fill the store (max_keys, the state's byte quota) or hold
// every session and lock the others out. First coord::machine directly, then
// through servers and clients under faults, over seeds.
#include <doctest/doctest.h>

#include <map>
#include <memory>
#include <string>

#include "../seeds.hpp"
#include "dcp/coord.hpp"
#include "dcp/sim.hpp"
#include "dcp/storage.hpp"
#include "coord_service.hpp"

namespace test_quotas {

using namespace dcp;
using namespace dcp::coord;

namespace {

const address hostile = address::sim(100), honest = address::sim(101);

reply run(machine& m, request r, const address& from) {
  r.owner = from;  // what the leader stamps from the transport
  bytes in;
  storage::detail::encode_value(r, in);
  reply out;
  REQUIRE_FALSE(storage::detail::decode_value(m.apply(in), out));
  return out;
}
void set_quotas(machine& m, client_quotas q) {
  request r{op::set_quotas};
  storage::detail::encode_value(q, r.value);
  REQUIRE(run(m, r, {}).code == status::ok);
}
request put(std::string k, std::size_t value_bytes, session_id s = 0, std::uint64_t secret = 0) {
  request r{op::put, s, std::move(k), 1, true, 0, 0, bytes(value_bytes, std::uint8_t{'v'})};
  r.secret = secret;
  return r;
}
request open_req(std::uint64_t secret) {
  request r{op::open_session, 0, {}, 1, true, 0, 1000};
  r.secret = secret;
  return r;
}
request txn(const txn_request& t, session_id s = 0, std::uint64_t secret = 0) {
  request r{op::txn, s};
  r.secret = secret;
  storage::detail::encode_value(t, r.value);
  return r;
}

}  // namespace

TEST_CASE(
    "quotas: a client trying to fill the store stops at its own quotas; another still creates keys and sessions") {
  machine m;
  set_quotas(m, {4, 10'000, 0});
  // The hostile client tries to take every one of the store's max_keys keys,
  // 128 per transaction; it gets its quota, and is told so.
  std::size_t made = 0, refused = 0;
  reply last;
  for (std::size_t i = 0; i < max_keys; i += max_txn_ops) {
    txn_request t;
    for (std::size_t j = i; j < std::min(i + max_txn_ops, max_keys); ++j)
      t.success.push_back({txn_op::kind_t::put, "h/" + std::to_string(j), {}, {}, false});
    auto r = run(m, txn(t), hostile);
    if (r.code == status::ok)
      made += t.success.size();
    else {
      ++refused;
      last = r;
      CHECK(r.code == status::client_quota_exceeded);
    }
  }
  m.check_invariants();
  CHECK(made <= 10'000);
  CHECK(m.usage(hostile).keys == made);
  CHECK(refused > 0);
  CHECK(last.session == static_cast<std::uint64_t>(quota_resource::keys));
  CHECK(last.generation == 10'000);
  CHECK(quota_message(last, hostile.to_string())
            .starts_with("quota exceeded: client " + hostile.to_string() + " owns " + std::to_string(made) +
                         " of 10000 keys"));
  // One by one up to the quota exactly, then refused with nothing changed.
  for (std::size_t i = made; i < 10'000; ++i)
    REQUIRE(run(m, put("h1/" + std::to_string(i), 0), hostile).code == status::ok);
  const auto rev = m.revision();
  auto r = run(m, put("h2/x", 0), hostile);
  CHECK(r.code == status::client_quota_exceeded);
  CHECK(r.fencing == 10'000);
  CHECK(m.revision() == rev);
  CHECK_FALSE(m.entry("h2/x"));
  // The honest client is not locked out.
  for (int i = 0; i < 100; ++i) REQUIRE(run(m, put("ok/" + std::to_string(i), 10), honest).code == status::ok);
  // Sessions: the hostile one holds 4, the honest one still opens its own.
  std::vector<session_id> theirs;
  for (std::uint64_t s = 1; s <= 4; ++s) {
    auto o = run(m, open_req(s), hostile);
    REQUIRE(o.code == status::ok);
    theirs.push_back(o.session);
  }
  r = run(m, open_req(5), hostile);
  CHECK(r.code == status::client_quota_exceeded);
  CHECK(r.session == static_cast<std::uint64_t>(quota_resource::sessions));
  CHECK(quota_message(r, "h").starts_with("quota exceeded: client h has 4 of 4 sessions"));
  const auto mine = run(m, open_req(77), honest);
  REQUIRE(mine.code == status::ok);
  // Removing keys and closing sessions frees quota.
  request del{op::remove, 0, "h/0"};
  del.expected = to_bytes("h/2");                    // [h/0, h/2): h/0, h/1, h/10, ...: every key below "h/2"
  const auto removed = run(m, del, honest).fencing;  // anyone may remove: the owner's quota is freed
  CHECK(removed > 0);
  CHECK(m.usage(hostile).keys == 10'000 - removed);
  CHECK(run(m, put("h2/x", 0), hostile).code == status::ok);
  request close{op::close_session, theirs[0]};
  close.secret = 1;
  REQUIRE(run(m, close, hostile).code == status::ok);
  CHECK(m.usage(hostile).sessions == 3);
  CHECK(run(m, open_req(6), hostile).code == status::ok);
  m.check_invariants();
}

TEST_CASE("quotas: bytes are charged to a key's last writer; overwriting another's key moves it to the writer") {
  machine m;
  set_quotas(m, {0, 0, 100'000});
  for (int i = 0;; ++i) {  // 10 KiB values until refused
    auto r = run(m, put("h/" + std::to_string(i), 10'000), hostile);
    if (r.code != status::ok) {
      CHECK(r.code == status::client_quota_exceeded);
      CHECK(r.session == static_cast<std::uint64_t>(quota_resource::bytes));
      CHECK(r.fencing <= 100'000);
      CHECK(r.fencing + 10'000 + 4 > 100'000);
      break;
    }
    REQUIRE(i < 20);
  }
  CHECK(run(m, put("ok", 60'000), honest).code == status::ok);
  // The hostile client overwrites the honest one's key with a larger value:
  // charged to the hostile client, which is full, so refused; the honest
  // one's usage is untouched.
  const auto before = m.usage(honest);
  CHECK(run(m, put("ok", 64'000), hostile).code == status::client_quota_exceeded);
  CHECK(m.usage(honest) == before);
  // The honest client overwrites a hostile key: it becomes the honest one's (and frees the hostile's quota).
  const auto h = m.usage(hostile);
  CHECK(run(m, put("h/0", 1), honest).code == status::ok);
  CHECK(m.usage(hostile).keys == h.keys - 1);
  CHECK(m.usage(hostile).bytes == h.bytes - 10'003);
  // Shrinking its own value always passes, even above a lowered quota.
  set_quotas(m, {0, 0, 1'000});
  CHECK(run(m, put("h/1", 1'000), hostile).code == status::ok);
  CHECK(run(m, put("h/1", 2'000), hostile).code == status::client_quota_exceeded);
  // Append is charged the whole value's growth.
  request app{op::append, 0, "ok", 1, true, 0, 0, bytes(10, std::uint8_t{'x'})};
  set_quotas(m, {0, 0, 0});
  CHECK(run(m, app, honest).code == status::ok);
  CHECK(m.usage(honest).bytes == before.bytes + 4 + 10);  // "h/0" with 1 byte, then the appended 10
  m.check_invariants();
}

// A random workload of three clients (one writing big values), on one
// machine, restored from its own snapshot at random points: after every
// command the accounting invariant holds (check_invariants: each client's
// usage recounts from the state, and the sums over clients are the store's
// totals), no client is over a quota, and a restored machine is the same
// state (same snapshot bytes).
TEST_CASE(
    "quotas: per-client usage sums to the store's totals and stays within quotas, across snapshots, over 60 seeds") {
  std::size_t refusals = 0, restores = 0;
  for (std::uint64_t seed = 1; seed <= test::last_seed(1, 60); ++seed) {
    CAPTURE(seed);
    dcp::rng g(seed);
    auto pick = [&](std::uint64_t n) { return g() % n; };
    auto m = std::make_unique<machine>();
    const client_quotas q{3, 12, 3'000};
    set_quotas(*m, q);
    const address who[3] = {address::sim(10), address::sim(11), address::sim(12)};
    std::map<session_id, std::pair<address, std::uint64_t>> open;  // session -> (owner, secret)
    std::uint64_t next_secret = 1;
    for (int step = 0; step < 400; ++step) {
      const auto c = pick(3);
      const auto& from = who[c];
      auto key = [&] { return "k" + std::to_string(pick(30)); };
      const std::size_t size = c == 0 ? pick(1'500) : pick(200);
      session_id s = 0;
      std::uint64_t secret = 0;
      for (auto& [id, o] : open)
        if (o.first == from && pick(2)) {
          s = id;
          secret = o.second;
        }
      reply r;
      switch (pick(9)) {
        case 0: {
          r = run(*m, open_req(next_secret), from);
          if (r.code == status::ok) open[r.session] = {from, next_secret};
          ++next_secret;
          break;
        }
        case 1:
          if (!s) break;
          r = run(*m, request{pick(2) ? op::close_session : op::expire_session, s, {}, 1, true, 0, 0, {}, {}, secret},
                  from);
          open.erase(s);
          break;
        case 2:
        case 3:
          r = run(*m, put(key(), size, s, secret), from);
          break;
        case 4: {
          request a{op::append, 0, key(), 1, true, 0, 0, bytes(size / 4, std::uint8_t{'a'})};
          r = run(*m, a, from);
          break;
        }
        case 5: {
          request d{op::remove, 0, key()};
          if (pick(2)) d.expected = to_bytes("k" + std::to_string(pick(30)) + "~");
          r = run(*m, d, from);
          break;
        }
        default: {
          txn_request t;
          std::set<std::string> used;
          for (std::uint64_t i = 0, n = 1 + pick(4); i < n; ++i) {
            auto k = key();
            if (!used.insert(k).second) continue;
            if (pick(4) == 0)
              t.success.push_back({txn_op::kind_t::remove, k, {}, {}, false});
            else
              t.success.push_back({txn_op::kind_t::put, k, bytes(size / 2, std::uint8_t{'t'}), {}, s != 0 && pick(2)});
          }
          r = run(*m, txn(t, s, secret), from);
          break;
        }
      }
      refusals += r.code == status::client_quota_exceeded;
      m->check_invariants();
      for (auto& [client, u] : m->usage()) {
        CHECK(u.sessions <= q.sessions);
        CHECK(u.keys <= q.keys);
        CHECK(u.bytes <= q.bytes);
      }
      if (pick(40) == 0) {  // a replica restored from this one's snapshot carries on in its place
        auto restored = std::make_unique<machine>();
        REQUIRE_FALSE(restored->restore(m->snapshot()));
        restored->check_invariants();
        CHECK(restored->usage() == m->usage());
        CHECK(restored->quotas() == m->quotas());
        CHECK(restored->snapshot() == m->snapshot());
        m = std::move(restored);
        ++restores;
      }
    }
  }
  MESSAGE(refusals << " commands refused over quota, " << restores << " restores");
  CHECK(refusals > 0);
  CHECK(restores > 0);
}

namespace {

// A snapshot as format 3 (before quotas) wrote it: no quotas, keys without owners.
struct session_v3 {
  std::uint64_t ttl_ms = 1000, secret = 9;
  std::map<std::string, fencing_token> holds;
  std::map<std::string, std::uint64_t> passed;
  address owner = address::sim(7);
  std::set<std::string> keys{"e"};
  std::uint64_t command_client = 0;
  template <class A> void serialize(A& ar) { ar(ttl_ms, secret, holds, passed, owner, keys, command_client); }
};
struct kv_v3 {
  bytes value;
  std::uint64_t create_revision = 1, mod_revision = 1, version = 1;
  session_id session = 0;
  template <class A> void serialize(A& ar) { ar(value, create_revision, mod_revision, version, session); }
};
struct v3 {
  std::uint64_t tag = machine::snapshot_format_3, fencing = 0, next = 0;
  std::map<session_id, session_v3> sessions{{2, {}}};
  std::map<std::string, int> sems, barriers;  // empty
  std::map<std::string, kv_v3> kv{{"e", {to_bytes("12"), 1, 1, 1, 2}}, {"x", {to_bytes("123"), 2, 2, 1, 0}}};
  std::uint64_t revision = 2;
  std::map<std::uint64_t, int> clients;  // empty
  std::vector<int> history;              // empty
  std::uint64_t compacted = 2, floor = 0;
  template <class A> void serialize(A& ar) {
    ar(tag, fencing, next, sessions, sems, barriers, kv, revision, clients, history, compacted, floor);
  }
};

}  // namespace

TEST_CASE("quotas: a format-3 snapshot (before quotas) restores with no quotas in force and its usage recounted") {
  bytes old;
  storage::detail::encode_value(v3{}, old);
  machine m;
  REQUIRE_FALSE(m.restore(old));
  m.check_invariants();
  CHECK(m.quotas() == client_quotas{});
  CHECK(m.usage(address::sim(7)) == client_usage{1, 0, 0});        // the session's opener
  CHECK(m.usage(address{}) == client_usage{0, 2, 1 + 2 + 1 + 3});  // keys had no owner recorded
  // It carries on as format 4; a key rewritten is charged to its writer.
  CHECK(run(m, put("x", 1), honest).code == status::ok);
  CHECK(m.usage(honest) == client_usage{0, 1, 2});
  machine r;
  REQUIRE_FALSE(r.restore(m.snapshot()));
  CHECK(r.snapshot() == m.snapshot());
  CHECK(r.usage() == m.usage());
}

// ---- through servers and clients ----

namespace {

using raft_t = consensus::raft<sim::env, machine, storage::durable_storage>;
using server_t = server<sim::env, raft_t>;
using client_t = client<sim::env>;
constexpr protocol_id raft_id = raft_t::default_id, coord_id = default_protocol_id;

/// 3 replicas whose state is held to `max_snapshot_bytes`, C clients (coord_service.hpp).
struct service : test::coord_service {
  service(std::uint64_t seed, std::uint32_t clients, double loss, server_config sc, std::size_t max_snapshot_bytes)
      : coord_service(seed, {3, clients, loss, std::move(sc), max_snapshot_bytes, 3s, 0x51}) {}
};

}  // namespace

// The lock-out, end to end: the replicated state is held to 4 MiB (raft's
// max_snapshot_bytes). Without per-client quotas the hostile client's 16 KiB
// puts fill it, and from then on every command is refused, the honest
// client's too. With a byte quota of 512 KiB per client, the hostile client
// is stopped there, told so in words, and the honest client goes on.
TEST_CASE(
    "quotas: a hostile client filling the store cannot keep another from writing or opening a session (end to end)") {
  for (std::uint64_t seed = 1; seed <= test::last_seed(1, 3); ++seed) {
    CAPTURE(seed);
    server_config sc;
    sc.quotas = {8, 10'000, 512 * 1024};
    service s(seed, 2, 0, sc, 4 << 20);
    auto& bad = *s.client(0);
    auto& good = *s.client(1);
    std::size_t written = 0, refused = 0;
    std::string words;
    bool stop = false;
    std::function<void(int)> flood = [&](int i) {
      if (stop || i >= 400) return void(stop = true);
      bad.put("h/" + std::to_string(i), bytes(16 * 1024, std::uint8_t{'h'}), [&, i](result<done_t> r) {
        if (r) {
          ++written;
        } else {
          words = r.explained().what;
          if (++refused >= 5) stop = true;
        }
        flood(i + 1);
      });
    };
    flood(0);
    s.w.run_until([&] { return stop; }, s.w.now() + 60s);
    REQUIRE(stop);
    CHECK(written >= 28);  // 512 KiB of 16 KiB values (and their keys), less what refused commands cost nothing
    CHECK(written * 16 * 1024 <= 512 * 1024);
    CHECK(refused >= 1);
    CHECK(words.starts_with("quota exceeded: client " + s.client_address(0).to_string() + " owns "));
    CHECK(words.find("of 524288 bytes") != std::string::npos);
    CHECK(s.w.metrics().counter(coord_id, "client_quota_exceeded_bytes") >= 1);
    // The honest client opens a session and writes.
    int ok = 0, failed = 0;
    good.open_session([&](result<session_id> r) { ++(r ? ok : failed); });
    for (int i = 0; i < 10; ++i)
      good.put("ok/" + std::to_string(i), bytes(1024, std::uint8_t{'o'}),
               [&](result<done_t> r) { ++(r ? ok : failed); });
    s.w.run_until([&] { return ok + failed == 11; }, s.w.now() + 10s);
    CHECK(failed == 0);
    CHECK(ok == 11);
    // Every replica agrees on what each client holds.
    s.w.run_for(500ms);
    const auto usage = s.replica(0)->state_machine().usage();
    CHECK(usage.at(s.client_address(0)).keys == written);
    for (std::uint32_t i = 1; i < 3; ++i) CHECK(s.replica(i)->state_machine().usage() == usage);
  }
}

// Three clients write, rewrite, append and remove keys, and open and close
// sessions, while replicas crash and restart (restoring from snapshots taken
// every 16 entries) and the network loses, duplicates and reorders: on every
// replica after every event the accounting invariant holds
// (check_invariants, in the service), no client ever holds more than its
// quotas, and once settled every replica holds the same usage table.
TEST_CASE(
    "quotas: every replica agrees on per-client usage, within quotas, across crashes and snapshots, over 12 seeds") {
  std::size_t refusals = 0, crashes = 0;
  for (std::uint64_t seed = 1; seed <= test::last_seed(1, 12); ++seed) {
    CAPTURE(seed);
    server_config sc;
    sc.quotas = {2, 6, 4'000};
    service s(seed, 3, 0.03, sc, 64 << 20);
    dcp::rng g(seed * 7919);
    std::vector<int> left(3, 40);
    std::function<void(std::uint32_t)> step = [&](std::uint32_t c) {
      if (left[c]-- <= 0) return;
      auto* cl = s.client(c);
      auto next = [&, c](bool over) {
        refusals += over;
        step(c);
      };
      const auto key = "k" + std::to_string(g() % 12);
      const std::size_t size = c == 0 ? g() % 2'000 : g() % 300;
      switch (g() % 6) {
        case 0:
          cl->open_session(
              [next](result<session_id> r) { next(!r && r.explained().what.starts_with("quota exceeded")); });
          break;
        case 1:
          cl->close_session([next](result<done_t>) { next(false); });
          break;
        case 2:
          cl->remove(key, [next](result<std::uint64_t>) { next(false); });
          break;
        case 3:
          cl->append(key, bytes(size / 4, std::uint8_t{'a'}),
                     [next](result<done_t> r) { next(!r && r.explained().what.starts_with("quota exceeded")); });
          break;
        default:
          cl->put(key, bytes(size, std::uint8_t{'p'}),
                  [next](result<done_t> r) { next(!r && r.explained().what.starts_with("quota exceeded")); });
      }
    };
    for (std::uint32_t c = 0; c < 3; ++c) step(c);
    for (int f = 0; f < 3; ++f) {
      s.w.run_for(500ms);
      const auto i = static_cast<std::uint32_t>(g() % 3);
      s.w.crash(i);
      ++crashes;
      s.w.after(300ms, [&s, i] { s.w.restart(i); });
    }
    s.w.run_until([&] { return left == std::vector<int>(3, -1); }, s.w.now() + 60s);
    REQUIRE(left == std::vector<int>(3, -1));
    s.w.run_for(3s);  // settle: sessions of crashed-out clients expire too
    const auto& ref = s.replica(0)->state_machine();
    CHECK(ref.quotas() == sc.quotas);
    for (std::uint32_t i = 0; i < 3; ++i) {
      const auto& sm = s.replica(i)->state_machine();
      CHECK(sm.usage() == ref.usage());
      for (auto& [client, u] : sm.usage()) {
        CHECK(u.sessions <= sc.quotas.sessions);
        CHECK(u.keys <= sc.quotas.keys);
        CHECK(u.bytes <= sc.quotas.bytes);
      }
    }
  }
  MESSAGE(refusals << " commands refused over quota, " << crashes << " replica crashes");
  CHECK(refusals > 0);
}

}  // namespace test_quotas
