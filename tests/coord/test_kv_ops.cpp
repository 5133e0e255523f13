// The key-value store's etcd-like operations (issue 12): revisions, remove,
// range and prefix reads, multi-key transactions, keys bound to a session.
// First each operation's semantics on coord::machine directly, then the same
// operations through coord::client under faults, over seeds.
#include <doctest/doctest.h>

#include <map>
#include <memory>
#include <set>

#include "dcp/coord.hpp"
#include "dcp/sim.hpp"
#include "dcp/storage.hpp"
#include "coord_service.hpp"

namespace test_kv_ops {

using namespace dcp;
using namespace dcp::coord;

namespace {

reply run(machine& m, const request& r) {
  bytes in;
  storage::detail::encode_value(r, in);
  reply out;
  REQUIRE_FALSE(storage::detail::decode_value(m.apply(in), out));
  m.check_invariants();
  return out;
}
request put(std::string k, std::string v, session_id s = 0, std::uint64_t secret = 0) {
  request r{op::put, s, std::move(k), 1, true, 0, 0, to_bytes(v)};
  r.secret = secret;
  return r;
}
request del(std::string k, std::string end = {}) {
  request r{op::remove, 0, std::move(k)};
  r.expected = to_bytes(end);
  return r;
}
request txn(const txn_request& t, session_id s = 0, std::uint64_t secret = 0) {
  request r{op::txn, s};
  r.secret = secret;
  storage::detail::encode_value(t, r.value);
  return r;
}
session_id open(machine& m, std::uint64_t secret, session_id proposed = 0) {
  request r{op::open_session, proposed, {}, 1, true, 0, 1000};
  r.secret = secret;
  auto out = run(m, r);
  REQUIRE(out.code == status::ok);
  return out.session;
}
std::vector<std::string> keys_of(const range_result& r) {
  std::vector<std::string> out;
  for (auto& kv : r.kvs) out.push_back(kv.key);
  return out;
}
txn_compare cmp(std::string key, txn_compare::target what, txn_compare::result c, std::uint64_t n, std::string v = {}) {
  return {std::move(key), what, c, to_bytes(v), n};
}
txn_op put_op(std::string k, std::string v, bool ephemeral = false) {
  return {txn_op::kind_t::put, std::move(k), to_bytes(v), {}, ephemeral};
}
txn_op remove_op(std::string k, std::string end = {}) {
  return {txn_op::kind_t::remove, std::move(k), {}, std::move(end), false};
}

// A snapshot as format 1 (before revisions) wrote it.
struct session_v1 {
  std::uint64_t ttl_ms = 1000, secret = 9;
  std::map<std::string, fencing_token> holds;
  std::map<std::string, std::uint64_t> passed;
  address owner;
  template <class A> void serialize(A& ar) { ar(ttl_ms, secret, holds, passed, owner); }
};
struct v1 {
  std::uint64_t fencing = 4, next = 2;
  std::map<session_id, session_v1> sessions{{2, {}}};
  std::map<std::string, int> sems, barriers;  // empty: encoded as their element type does not matter
  std::map<std::string, bytes> kv{{"x", to_bytes("1")}, {"y", to_bytes("2")}};
  template <class A> void serialize(A& ar) { ar(fencing, next, sessions, sems, barriers, kv); }
};

}  // namespace

TEST_CASE("kv: every write takes the next revision; keys carry create_revision, mod_revision and version as in etcd") {
  machine m;
  CHECK(run(m, put("a", "1")).generation == 1);
  CHECK(run(m, put("b", "1")).generation == 2);
  CHECK(run(m, put("a", "2")).generation == 3);
  auto a = m.entry("a");
  REQUIRE(a);
  CHECK(a->create_revision == 1);
  CHECK(a->mod_revision == 3);
  CHECK(a->version == 2);
  CHECK(as_string(a->value) == "2");
  // A failed compare-and-set writes nothing and takes no revision.
  request cas{op::compare_and_set, 0, "a", 1, true, 0, 0, to_bytes("x")};
  cas.expected = to_bytes("nope");
  CHECK(run(m, cas).code == status::mismatch);
  CHECK(m.revision() == 3);
  // Append is a write.
  request app{op::append, 0, "a", 1, true, 0, 0, to_bytes("+")};
  CHECK(run(m, app).generation == 4);
  CHECK(m.entry("a")->version == 3);
  // Removed and put again: created anew.
  CHECK(run(m, del("a")).fencing == 1);
  CHECK(m.revision() == 5);
  CHECK_FALSE(m.entry("a"));
  run(m, put("a", "3"));
  CHECK(m.entry("a")->create_revision == 6);
  CHECK(m.entry("a")->version == 1);
  CHECK(m.entry("b")->mod_revision == 2);  // untouched
}

TEST_CASE("kv: remove a key, a range or a prefix; removing nothing takes no revision") {
  machine m;
  for (auto k : {"app/a", "app/b", "app/c", "apq", "b", "z"}) run(m, put(k, "v"));
  CHECK(m.revision() == 6);
  auto r = run(m, del("missing"));
  CHECK(r.code == status::ok);
  CHECK(r.fencing == 0);
  CHECK(m.revision() == 6);
  r = run(m, del("app/", prefix_end("app/")));
  CHECK(r.fencing == 3);
  CHECK(m.revision() == 7);
  CHECK(keys_of(m.range("a", std::string(1, '\0'))) == std::vector<std::string>{"apq", "b", "z"});
  r = run(m, del("b", "z"));  // [b, z)
  CHECK(r.fencing == 1);
  CHECK(keys_of(m.range("a", std::string(1, '\0'))) == std::vector<std::string>{"apq", "z"});
  CHECK(run(m, del("")).code == status::bad_request);
  CHECK(run(m, del(std::string(max_key_bytes + 1, 'k'))).code == status::bad_request);
}

TEST_CASE("kv: range reads return keys in order with their revisions, within the limit, saying when more were left") {
  machine m;
  for (int i = 0; i < 10; ++i) run(m, put("k" + std::to_string(i), std::to_string(i)));
  run(m, put("l", "x"));
  auto all = m.range("k", prefix_end("k"));
  CHECK(all.kvs.size() == 10);
  CHECK_FALSE(all.more);
  CHECK(all.revision == 11);
  for (std::size_t i = 0; i < all.kvs.size(); ++i) {
    CHECK(all.kvs[i].key == "k" + std::to_string(i));
    CHECK(all.kvs[i].mod_revision == i + 1);
  }
  auto some = m.range("k", prefix_end("k"), 3);
  CHECK(keys_of(some) == std::vector<std::string>{"k0", "k1", "k2"});
  CHECK(some.more);
  // Read on from the last key + '\0'.
  auto next = m.range(some.kvs.back().key + '\0', prefix_end("k"), 3);
  CHECK(keys_of(next) == std::vector<std::string>{"k3", "k4", "k5"});
  CHECK(keys_of(m.range("k3", {})) == std::vector<std::string>{"k3"});
  CHECK(m.range("k30", {}).kvs.empty());
  CHECK(prefix_end("a\xff") == "b");
  CHECK(prefix_end("\xff\xff") == std::string(1, '\0'));
  // A reply stays within max_range_bytes.
  machine big;
  for (int i = 0; i < 40; ++i) {
    request p{op::put, 0, "big" + std::to_string(100 + i), 1, true, 0, 0, bytes(max_value_bytes, 'v')};
    run(big, p);
  }
  auto cut = big.range("big", prefix_end("big"));
  CHECK(cut.more);
  CHECK(cut.kvs.size() * max_value_bytes <= max_range_bytes);
  CHECK(cut.kvs.size() >= max_range_bytes / (max_value_bytes + 1024));
}

TEST_CASE("kv: a transaction compares several keys, then applies one branch whole, at one revision") {
  machine m;
  run(m, put("x", "1"));  // rev 1
  run(m, put("y", "1"));  // rev 2
  run(m, put("y", "2"));  // rev 3
  txn_request t;
  t.compares = {cmp("x", txn_compare::target::value, txn_compare::result::equal, 0, "1"),
                cmp("y", txn_compare::target::version, txn_compare::result::equal, 2),
                cmp("y", txn_compare::target::mod_revision, txn_compare::result::equal, 3),
                cmp("x", txn_compare::target::create_revision, txn_compare::result::less, 2),
                cmp("none", txn_compare::target::version, txn_compare::result::equal, 0)};
  t.success = {put_op("x", "2"), put_op("z", "new"), remove_op("y")};
  t.failure = {put_op("failed", "1")};
  auto r = run(m, txn(t));
  CHECK(r.code == status::ok);
  CHECK(r.generation == 4);
  CHECK(m.revision() == 4);  // three writes, one revision
  CHECK(m.entry("x")->mod_revision == 4);
  CHECK(m.entry("z")->create_revision == 4);
  CHECK_FALSE(m.entry("y"));
  CHECK_FALSE(m.entry("failed"));
  // The same again: the compares fail now, so the failure branch applies.
  r = run(m, txn(t));
  CHECK(r.code == status::mismatch);
  CHECK(r.generation == 5);
  CHECK(m.entry("failed"));
  CHECK(as_string(m.entry("x")->value) == "2");
  // A value compare on a missing key is false (etcd); not_equal and greater on values.
  txn_request u;
  u.compares = {cmp("missing", txn_compare::target::value, txn_compare::result::not_equal, 0, "v")};
  u.success = {put_op("s", "1")};
  CHECK(run(m, txn(u)).code == status::mismatch);
  CHECK(m.revision() == 5);  // an empty failure branch writes nothing: no revision
  u.compares = {cmp("x", txn_compare::target::value, txn_compare::result::greater, 0, "1")};
  CHECK(run(m, txn(u)).code == status::ok);
  // Refused whole, nothing changed: a key put twice, put and removed, too many ops, bad keys, garbage.
  const auto before = m.revision();
  txn_request bad;
  bad.success = {put_op("a", "1"), put_op("a", "2")};
  CHECK(run(m, txn(bad)).code == status::bad_request);
  bad.success = {put_op("a/1", "1"), remove_op("a/", prefix_end("a/"))};
  CHECK(run(m, txn(bad)).code == status::bad_request);
  bad.success.assign(max_txn_ops + 1, remove_op("q"));
  CHECK(run(m, txn(bad)).code == status::bad_request);
  bad.success = {put_op("", "1")};
  CHECK(run(m, txn(bad)).code == status::bad_request);
  bad.success = {put_op("e", "1", true)};  // ephemeral without a session
  CHECK(run(m, txn(bad)).code == status::bad_request);
  request garbage{op::txn};
  garbage.value = to_bytes("not a transaction");
  CHECK(run(m, garbage).code == status::bad_request);
  CHECK(m.revision() == before);
}

TEST_CASE(
    "kv: a key bound to a session goes when the session ends or expires, at one revision; a plain put unbinds it") {
  machine m;
  const auto s = open(m, 7), t = open(m, 8);
  CHECK(run(m, put("e1", "a", s, 7)).code == status::ok);
  CHECK(run(m, put("e2", "a", s, 7)).code == status::ok);
  CHECK(run(m, put("e3", "a", s, 7)).code == status::ok);
  CHECK(run(m, put("f", "a", t, 8)).code == status::ok);
  CHECK(m.entry("e1")->ephemeral);
  // The wrong secret: no session, nothing written.
  CHECK(run(m, put("e4", "a", s, 99)).code == status::no_session);
  CHECK_FALSE(m.entry("e4"));
  run(m, put("e2", "b"));  // unbound: survives the session
  CHECK_FALSE(m.entry("e2")->ephemeral);
  // A transaction binds too.
  txn_request tx;
  tx.success = {put_op("e5", "a", true)};
  CHECK(run(m, txn(tx, s, 7)).code == status::ok);
  CHECK(m.entry("e5")->ephemeral);
  run(m, del("e3"));  // removed by hand: the session forgets it
  const auto rev = m.revision();
  request close{op::close_session, s};
  close.secret = 7;
  CHECK(run(m, close).code == status::ok);
  CHECK(m.revision() == rev + 1);
  CHECK_FALSE(m.entry("e1"));
  CHECK_FALSE(m.entry("e5"));
  CHECK(m.entry("e2"));
  CHECK(m.entry("f"));
  // Expiry (the leader's) removes them the same way.
  CHECK(run(m, request{op::expire_session, t}).code == status::ok);
  CHECK_FALSE(m.entry("f"));
  CHECK(m.revision() == rev + 2);
  // A session owns at most max_session_keys keys.
  const auto u = open(m, 9);
  for (std::size_t i = 0; i < max_session_keys; ++i)
    REQUIRE(run(m, put("q" + std::to_string(i), "", u, 9)).code == status::ok);
  CHECK(run(m, put("one-more", "", u, 9)).code == status::quota_exceeded);
  CHECK(run(m, put("q0", "again", u, 9)).code == status::ok);  // rebinding its own key is no new one
}

TEST_CASE("kv: session ids are the leader's proposal when free, else the next free one along a fixed sequence") {
  machine a, b;
  const auto s1 = open(a, 1, 0xABCDEF);
  CHECK(s1 == 0xABCDEF);
  const auto s2 = open(a, 2, 0xABCDEF);  // taken (a replayed proposal)
  CHECK(s2 != s1);
  CHECK(open(b, 1, 0xABCDEF) == s1);  // deterministic on every replica
  CHECK(open(b, 2, 0xABCDEF) == s2);
  CHECK(open(a, 3) != 0);  // a command from an older log: the counter
}

TEST_CASE("kv: the snapshot keeps keys, revisions and bindings; a format-1 snapshot still restores") {
  machine m;
  const auto s = open(m, 5);
  run(m, put("a", "1"));
  run(m, put("b", "2", s, 5));
  run(m, put("a", "3"));
  m.note_registered(10, 4);
  m.note_command(10, 1, 11, true);
  machine r;
  REQUIRE_FALSE(r.restore(m.snapshot()));
  r.check_invariants();
  CHECK(r.entry("a") == m.entry("a"));
  CHECK(r.entry("b") == m.entry("b"));
  CHECK(r.revision() == 3);
  CHECK(r.has_command_client(10));
  CHECK(r.snapshot() == m.snapshot());
  // The mirror of raft's client table evicts as raft does: the least recently used beyond max_sessions.
  for (std::uint64_t i = 20; i < 24; ++i) m.note_registered(i, 4);
  CHECK_FALSE(m.has_command_client(10));
  CHECK(m.command_clients() == 4);

  // Format 1: fencing, next session, sessions {ttl, secret, holds, passed, owner}, semaphores, barriers, kv.
  bytes old;
  storage::detail::encode_value(v1{}, old);
  machine o;
  REQUIRE_FALSE(o.restore(old));
  o.check_invariants();
  CHECK(o.last_fencing() == 4);
  CHECK(o.has_session(2));
  CHECK(o.revision() == 2);
  CHECK(o.entry("y")->mod_revision == 2);
  CHECK(as_string(*o.value("x")) == "1");
  CHECK(o.restore(to_bytes("garbage")));  // refused, loudly
}

// ---- through the client, under faults ----

namespace {

using raft_t = consensus::raft<sim::env, machine, storage::durable_storage>;
using server_t = server<sim::env, raft_t>;
using client_t = client<sim::env>;
constexpr protocol_id raft_id = raft_t::default_id, coord_id = default_protocol_id;

/// R replicas, C clients (coord_service.hpp).
struct kv_service : test::coord_service {
  kv_service(std::uint64_t seed, std::uint32_t r, std::uint32_t clients, double loss, server_config sc = {})
      : coord_service(seed, {r, clients, loss, std::move(sc)}) {}
};

}  // namespace

TEST_CASE("kv client: remove, ranges, prefixes, entries, transactions and ephemeral keys end to end") {
  kv_service s(3, 3, 2, 0);
  auto& a = *s.client(0);
  auto& b = *s.client(1);
  int done = 0;
  auto wait = [&](int n) {
    s.w.run_until([&] { return done == n; }, s.w.now() + 5s);
    REQUIRE(done == n);
  };
  for (auto k : {"svc/1", "svc/2", "svc/3", "other"})
    a.put(k, to_bytes(k), [&](result<done_t> r) {
      CHECK(r);
      ++done;
    });
  wait(4);
  std::optional<range_result> got;
  b.get_prefix("svc/", [&](result<range_result> r) {
    REQUIRE(r);
    got = *r;
    ++done;
  });
  wait(5);
  CHECK(keys_of(*got) == std::vector<std::string>{"svc/1", "svc/2", "svc/3"});
  CHECK(got->revision == 4);
  std::optional<std::optional<key_value>> e;
  b.get_entry("svc/2", [&](result<std::optional<key_value>> r) {
    REQUIRE(r);
    e = *r;
    ++done;
  });
  wait(6);
  REQUIRE(*e);
  CHECK((*e)->mod_revision == 2);
  std::uint64_t removed = 0;
  b.remove_prefix("svc/", [&](result<std::uint64_t> r) {
    REQUIRE(r);
    removed = *r;
    ++done;
  });
  wait(7);
  CHECK(removed == 3);
  b.remove("other", [&](result<std::uint64_t> r) {
    REQUIRE(r);
    removed = *r;
    ++done;
  });
  wait(8);
  CHECK(removed == 1);
  // Without a session: refused before anything is sent.
  std::error_code ec;
  a.put_ephemeral("x", {}, [&](result<std::uint64_t> r) { ec = r.error(); });
  CHECK(ec == dcp::errc::cancelled);
  // A transaction: create "leader" only if it does not exist (version 0), bound to a's session.
  int opened = 0;
  a.open_session([&](result<session_id> r) { opened += r.has_value(); });
  b.open_session([&](result<session_id> r) { opened += r.has_value(); });
  s.w.run_until([&] { return opened == 2; }, s.w.now() + 5s);
  REQUIRE(opened == 2);
  txn_request t;
  t.compares = {cmp("leader", txn_compare::target::version, txn_compare::result::equal, 0)};
  t.success = {put_op("leader", "a", true)};
  std::vector<bool> won;
  a.txn(t, [&](result<client_t::txn_result> r) {
    REQUIRE(r);
    won.push_back(r->succeeded);
    ++done;
  });
  wait(9);
  t.success = {put_op("leader", "b", true)};
  b.txn(t, [&](result<client_t::txn_result> r) {
    REQUIRE(r);
    won.push_back(r->succeeded);
    ++done;
  });
  wait(10);
  CHECK(won == std::vector<bool>{true, false});
  std::uint64_t rev = 0;
  b.put_ephemeral("member/b", to_bytes("b"), [&](result<std::uint64_t> r) {
    REQUIRE(r);
    rev = *r;
    ++done;
  });
  wait(11);
  CHECK(rev > 0);
  // a's node crashes: its session expires after its TTL and takes "leader" with it; b's key stays.
  s.w.crash(3);
  s.w.run_for(3s);
  e.reset();
  b.get_entry("leader", [&](result<std::optional<key_value>> r) {
    REQUIRE(r);
    e = *r;
    ++done;
  });
  wait(12);
  CHECK_FALSE(*e);
  b.get_entry("member/b", [&](result<std::optional<key_value>> r) {
    REQUIRE(r);
    e = *r;
    ++done;
  });
  wait(13);
  REQUIRE(*e);
  CHECK((*e)->ephemeral);
}

// dcpctl status: every replica answers with its own view. Over seeds, once
// settled: exactly one says it leads, all in one term, naming it, with the
// configured members and the store's revision; a crashed replica is reported
// unreachable at once (not after give_up_after), a cut-off one times out, and
// after a failover the new leader's term is higher.
TEST_CASE(
    "status: each replica tells its role, term, leader, indexes and revision; a dead one is reported unreachable") {
  for (std::uint64_t seed = 1; seed <= 10; ++seed) {
    CAPTURE(seed);
    kv_service s(seed, 3, 1, 0);
    auto& c = *s.client(0);
    int done = 0;
    c.put("k", to_bytes("v"), [&](result<done_t> r) {
      CHECK(r);
      ++done;
    });
    s.w.run_until([&] { return done == 1; }, s.w.now() + 5s);
    REQUIRE(done == 1);
    s.w.run_for(200ms);  // followers apply the put
    std::map<address, result<client_t::replica_status>> got;
    auto ask_all = [&] {
      got.clear();
      for (auto& a : s.servers)
        c.status(a, [&got, a](result<client_t::replica_status> r) { got.insert_or_assign(a, r); });
      s.w.run_until([&] { return got.size() == s.servers.size(); }, s.w.now() + 5s);
      REQUIRE(got.size() == s.servers.size());
    };
    ask_all();
    std::optional<address> leader;
    std::uint64_t term = 0;
    for (auto& [a, r] : got) {
      REQUIRE(r);
      CHECK(r->replica == a);
      CHECK(r->members == s.servers);
      CHECK(r->revision == 1);
      CHECK(r->applied <= r->commit);
      if (r->role == "leader") {
        CHECK_FALSE(leader);
        leader = a;
        term = r->term;
      }
    }
    REQUIRE(leader);
    for (auto& [a, r] : got) {
      CHECK(r->term == term);
      CHECK(r->leader == leader);
      if (a != *leader) CHECK(r->role == "follower");
    }
    // The leader crashes: a status to it fails as unreachable, within a request timeout.
    s.w.crash(static_cast<sim::node_index>(leader->sim_index()));
    s.w.run_for(1s);  // a new leader
    const auto asked = s.w.now();
    ask_all();
    CHECK(s.w.now() - asked < 100ms);
    std::uint64_t leaders = 0;
    for (auto& [a, r] : got) {
      if (a == *leader) {
        REQUIRE_FALSE(r);
        CHECK(r.error() == dcp::errc::peer_unreachable);
        CHECK(r.message().find("unreachable: " + a.to_string()) != std::string::npos);
        continue;
      }
      REQUIRE(r);
      CHECK(r->term > term);
      leaders += r->role == "leader";
    }
    CHECK(leaders == 1);
    // A replica cut off from the client (alive, not crashed): timed out after give_up_after, in words.
    const auto cut = static_cast<sim::node_index>(leader->sim_index() == 0 ? 1 : 0);
    std::vector<sim::node_index> rest{3};
    for (sim::node_index i = 0; i < 3; ++i)
      if (i != cut) rest.push_back(i);
    s.w.partition({{cut}, rest});
    std::optional<result<client_t::replica_status>> silent;
    c.status(s.servers[cut], [&](result<client_t::replica_status> r) { silent = r; });
    s.w.run_until([&] { return silent.has_value(); }, s.w.now() + 5s);
    REQUIRE(silent);
    REQUIRE_FALSE(*silent);
    CHECK(silent->error() == dcp::errc::timed_out);
    CHECK(silent->message().find("no status from " + s.servers[cut].to_string()) != std::string::npos);
  }
}

// Lost updates are what transactions exist to prevent: three clients each
// read a counter with its mod_revision and write counter + 1 only if the
// mod_revision is unchanged, under loss, duplication, reordering, leader
// crashes and restarts. Each success is one increment, applied once: the
// final counter lies between the successes and the successes plus the
// transactions whose outcome is unknown (timed out), over seeds. Every
// replica's invariants (revisions, bindings, bounds) hold after every event.
TEST_CASE(
    "kv client: compare-on-mod_revision increments lose no update and apply none twice, under faults, over 30 seeds") {
  std::size_t total_ok = 0, total_conflicts = 0, total_unknown = 0, crashes = 0;
  for (std::uint64_t seed = 1; seed <= 30; ++seed) {
    CAPTURE(seed);
    kv_service s(seed, 3, 3, 0.03);
    std::size_t ok = 0, conflicts = 0, unknown = 0;
    std::vector<int> left(3, 12);
    std::function<void(std::uint32_t)> step = [&](std::uint32_t c) {
      if (left[c]-- <= 0) return;
      auto* cl = s.client(c);
      cl->get_entry("counter", [&, c, cl](result<std::optional<key_value>> r) {
        if (!r) return step(c);
        const std::uint64_t n = *r ? std::stoull(std::string(as_string((*r)->value))) : 0;
        txn_request t;
        t.compares = {
            cmp("counter", txn_compare::target::mod_revision, txn_compare::result::equal, *r ? (*r)->mod_revision : 0)};
        t.success = {put_op("counter", std::to_string(n + 1))};
        cl->txn(t, [&, c](result<client_t::txn_result> tr) {
          if (!tr)
            ++unknown;
          else
            ++(tr->succeeded ? ok : conflicts);
          step(c);
        });
      });
    };
    for (std::uint32_t c = 0; c < 3; ++c) step(c);
    for (int f = 0; f < 4; ++f) {  // crash the leader, bring it back
      s.w.run_for(400ms);
      for (std::uint32_t i = 0; i < 3; ++i)
        if (auto* r = s.replica(i); r && r->is_leader()) {
          s.w.crash(i);
          ++crashes;
          s.w.after(300ms, [&s, i] { s.w.restart(i); });
          break;
        }
    }
    s.w.run_until([&] { return left == std::vector<int>(3, -1); }, s.w.now() + 30s);
    REQUIRE(left == std::vector<int>(3, -1));
    std::optional<std::optional<key_value>> final_value;
    s.client(0)->get_entry("counter", [&](result<std::optional<key_value>> r) {
      REQUIRE(r);
      final_value = *r;
    });
    s.w.run_until([&] { return final_value.has_value(); }, s.w.now() + 5s);
    REQUIRE(final_value);
    const std::uint64_t n = *final_value ? std::stoull(std::string(as_string((**final_value).value))) : 0;
    CHECK(n >= ok);
    CHECK(n <= ok + unknown);
    if (*final_value) CHECK((**final_value).version == n);  // one write per increment
    total_ok += ok;
    total_conflicts += conflicts;
    total_unknown += unknown;
  }
  MESSAGE(total_ok << " increments, " << total_conflicts << " conflicts, " << total_unknown << " unknown outcomes, "
                   << crashes << " leader crashes");
  CHECK(total_conflicts > 0);  // the clients did contend
  CHECK(total_ok > 30 * 3);
}

TEST_CASE(
    "kv: the history keeps the latest changes for watches, whole revisions, and says when it has been compacted") {
  machine m;
  run(m, put("a", "1"));
  run(m, put("b", "1"));
  run(m, del("a"));
  std::uint64_t through = 0;
  auto ev = m.events(1, "a", {}, max_range_bytes, through);
  REQUIRE(ev);
  CHECK(through == 3);
  REQUIRE(ev->size() == 2);
  CHECK((*ev)[0].kind == watch_event::kind_t::put);
  CHECK((*ev)[0].kv.mod_revision == 1);
  CHECK((*ev)[1].kind == watch_event::kind_t::remove);
  CHECK((*ev)[1].kv.key == "a");
  CHECK((*ev)[1].kv.mod_revision == 3);
  ev = m.events(4, "a", {}, max_range_bytes, through);  // nothing yet: through the current revision
  REQUIRE(ev);
  CHECK(ev->empty());
  CHECK(through == 3);
  // A transaction's writes travel together (one revision).
  txn_request t;
  for (int i = 0; i < 100; ++i) t.success.push_back(put_op("t/" + std::to_string(i), std::string(1000, 'v')));
  run(m, txn(t));
  ev = m.events(4, "t/", prefix_end("t/"), 10'000, through);  // a budget far below one revision: still whole
  REQUIRE(ev);
  CHECK(ev->size() == 100);
  // Beyond max_history_events the oldest revisions go.
  for (std::size_t i = 0; i < max_history_events / 100 + 1; ++i) run(m, txn(t));
  CHECK(m.history_size() <= max_history_events);
  CHECK(m.compacted() > 0);
  CHECK_FALSE(m.events(1, "a", {}, max_range_bytes, through));
  CHECK(m.events(m.compacted() + 1, "t/", prefix_end("t/"), max_range_bytes, through));
  // The snapshot keeps the history.
  machine r;
  REQUIRE_FALSE(r.restore(m.snapshot()));
  CHECK(r.compacted() == m.compacted());
  CHECK(r.history_size() == m.history_size());
  r.check_invariants();
}

// Watches under faults: a writer puts and removes keys under "w/" while a
// watcher follows the prefix from revision 1; leaders crash and restart,
// messages are lost, duplicated and reordered, and the watcher's node itself
// crashes and comes back as a new client that resumes from the revision
// after the last it delivered. What the watcher delivered, across both
// lives, must be exactly the store's changes on "w/": each once, in revision
// order (compared with the leader's history), over seeds.
TEST_CASE(
    "kv client: a watch delivers every change once, in revision order, across lost pushes, failover and a reconnect, over 20 seeds") {
  std::size_t delivered_total = 0, gaps = 0;
  for (std::uint64_t seed = 1; seed <= 20; ++seed) {
    CAPTURE(seed);
    kv_service s(seed, 3, 2, 0.05);
    std::vector<watch_event> seen;
    bool failed = false;
    auto on_events = [&](result<std::vector<watch_event>> r) {
      if (!r) {
        failed = true;
        return;
      }
      for (auto& e : *r) seen.push_back(e);
    };
    auto id = s.client(1)->watch_prefix("w/", 1, on_events);
    int writes = 0;
    std::function<void()> write = [&] {
      if (++writes > 60) return;
      auto* cl = s.client(0);
      const auto key = "w/" + std::to_string(writes % 7);
      if (writes % 5 == 0)
        cl->remove(key, [&](result<std::uint64_t>) { write(); });
      else
        cl->put(key, to_bytes(std::to_string(writes)), [&](result<done_t>) { write(); });
    };
    write();
    s.client(0)->put("other", to_bytes("x"), [](result<done_t>) {});  // not watched
    for (int f = 0; f < 3; ++f) {
      s.w.run_for(300ms);
      if (auto* l = s.leader()) {
        for (std::uint32_t i = 0; i < 3; ++i)
          if (s.replica(i) == l) {
            s.w.crash(i);
            s.w.after(250ms, [&s, i] { s.w.restart(i); });
          }
      }
    }
    // The watcher's node crashes; it comes back as a new client and resumes.
    const auto resume = s.client(1)->watch_next(id);
    s.w.crash(4);
    s.w.run_for(200ms);
    s.w.restart(4);
    id = s.client(1)->watch_prefix("w/", resume, on_events);
    s.w.run_until([&] { return writes > 60; }, s.w.now() + 30s);
    REQUIRE(writes > 60);
    s.w.run_for(1s);  // a keepalive period or two: any lost push is asked for again
    CHECK_FALSE(failed);
    auto* l = s.leader();
    REQUIRE(l);
    std::uint64_t through = 0;
    auto all = l->state_machine().events(1, "w/", prefix_end("w/"), std::size_t(1) << 30, through);
    REQUIRE(all);
    CHECK(seen == *all);
    for (std::size_t i = 1; i < seen.size(); ++i) CHECK(seen[i - 1].kv.mod_revision <= seen[i].kv.mod_revision);
    delivered_total += seen.size();
    gaps += static_cast<std::size_t>(s.w.metrics().counter(coord_id, "watch_gap"));
  }
  MESSAGE(delivered_total << " events delivered; " << gaps << " gaps noticed and filled");
  CHECK(delivered_total > 20 * 40);
}

TEST_CASE("kv client: a watch from a revision that has left the history ends with compacted, in words") {
  kv_service s(5, 3, 1, 0);
  auto& c = *s.client(0);
  txn_request t;
  for (int i = 0; i < 128; ++i) t.success.push_back(put_op("t/" + std::to_string(i), "v"));
  int done = 0;
  for (std::size_t i = 0; i < max_history_events / 128 + 2; ++i)
    c.txn(t, [&](result<client_t::txn_result> r) {
      CHECK(r);
      ++done;
    });
  s.w.run_until([&] { return done == static_cast<int>(max_history_events / 128 + 2); }, s.w.now() + 20s);
  std::optional<result<std::vector<watch_event>>> got;
  c.watch("t/1", {}, 1, [&](result<std::vector<watch_event>> r) { got = std::move(r); });
  s.w.run_until([&] { return got.has_value(); }, s.w.now() + 5s);
  REQUIRE(got);
  REQUIRE_FALSE(*got);
  CHECK(got->error() == dcp::coord::errc::compacted);
  CHECK(got->message().find("compacted") != std::string::npos);
}

TEST_CASE("kv client: reads at a past revision, compaction through the log, compacted and future revisions, in words") {
  kv_service s(7, 3, 1, 0);
  auto& c = *s.client(0);
  int done = 0;
  auto wait = [&](int n) {
    s.w.run_until([&] { return done == n; }, s.w.now() + 5s);
    REQUIRE(done == n);
  };
  c.put("a", to_bytes("1"), [&](result<done_t> r) {
    CHECK(r);
    ++done;
  });  // revision 1
  c.put("a", to_bytes("2"), [&](result<done_t> r) {
    CHECK(r);
    ++done;
  });  // 2
  c.put("b", to_bytes("1"), [&](result<done_t> r) {
    CHECK(r);
    ++done;
  });  // 3
  c.remove("a", [&](result<std::uint64_t> r) {
    CHECK(r);
    ++done;
  });  // 4
  wait(4);
  std::map<std::uint64_t, std::optional<key_value>> a_at;
  for (std::uint64_t rev = 1; rev <= 4; ++rev)
    c.get_at("a", rev, [&, rev](result<std::optional<key_value>> r) {
      REQUIRE(r);
      a_at[rev] = *r;
      ++done;
    });
  std::optional<range_result> both;
  c.range_at("a", "c", 0, 3, [&](result<range_result> r) {
    REQUIRE(r);
    both = *r;
    ++done;
  });
  std::optional<result<range_result>> future;
  c.range_at("a", "c", 0, 9, [&](result<range_result> r) {
    future = r;
    ++done;
  });
  wait(10);
  REQUIRE(a_at[1]);
  CHECK(as_string(a_at[1]->value) == "1");
  CHECK(a_at[1]->version == 1);
  REQUIRE(a_at[2]);
  CHECK(as_string(a_at[2]->value) == "2");
  CHECK(a_at[2]->mod_revision == 2);
  CHECK(a_at[3]);
  CHECK_FALSE(a_at[4]);
  CHECK(keys_of(*both) == std::vector<std::string>{"a", "b"});
  CHECK(both->revision == 3);
  REQUIRE_FALSE(*future);
  CHECK(future->error() == coord::errc::future_revision);
  CHECK(future->message() == "future revision: 9 is above the store's current revision 4");
  // Compact at 3: revision 3 still reads, 2 does not.
  std::optional<result<std::uint64_t>> compacted_to, again, ahead;
  c.compact(3, [&](result<std::uint64_t> r) {
    compacted_to = r;
    ++done;
  });
  c.compact(2, [&](result<std::uint64_t> r) {
    again = r;
    ++done;
  });
  c.compact(50, [&](result<std::uint64_t> r) {
    ahead = r;
    ++done;
  });
  wait(13);
  REQUIRE(*compacted_to);
  CHECK(**compacted_to == 3);
  REQUIRE_FALSE(*again);
  CHECK(again->error() == coord::errc::compacted);
  REQUIRE_FALSE(*ahead);
  CHECK(ahead->error() == coord::errc::future_revision);
  std::optional<result<std::optional<key_value>>> old, kept;
  c.get_at("a", 2, [&](result<std::optional<key_value>> r) {
    old = r;
    ++done;
  });
  c.get_at("a", 3, [&](result<std::optional<key_value>> r) {
    kept = r;
    ++done;
  });
  wait(15);
  REQUIRE_FALSE(*old);
  CHECK(old->error() == coord::errc::compacted);
  CHECK(old->message() ==
        "compacted: revision 2 is below the compact revision 3 (the oldest the service still reads at)");
  CHECK(c.last_compact_revision() == 3);
  REQUIRE(*kept);
  REQUIRE(**kept);
  CHECK(as_string((**kept)->value) == "2");
  // A watch from below the compact revision ends with compacted; from it, it delivers.
  std::optional<result<std::vector<watch_event>>> w2, w3;
  c.watch("a", {}, 2, [&](result<std::vector<watch_event>> r) {
    if (!w2) w2 = r;
  });
  c.watch("a", {}, 3, [&](result<std::vector<watch_event>> r) {
    if (!w3) w3 = r;
  });
  s.w.run_until([&] { return w2 && w3; }, s.w.now() + 5s);
  REQUIRE(w2);
  REQUIRE_FALSE(*w2);
  CHECK(w2->error() == coord::errc::compacted);
  REQUIRE(w3);
  REQUIRE(*w3);
  REQUIRE((*w3)->size() == 1);
  CHECK((**w3)[0].kind == watch_event::kind_t::remove);
  // Every replica compacted at the same point of the log.
  s.w.run_for(300ms);
  for (std::uint32_t i = 0; i < 3; ++i) {
    CHECK(s.replica(i)->state_machine().compact_revision() == 3);
    CHECK(s.replica(i)->state_machine().snapshot() == s.leader()->state_machine().snapshot());
  }
  CHECK(s.w.metrics().counter(coord_id, "compactions") == 1);
  CHECK(s.w.metrics().counter(coord_id, "compactions_refused") == 2);
}

// Under faults, with automatic compaction: a writer's transactions give it
// the revision of each write; a reader asks for the value at those
// revisions. Every answer is the value that write made (never a later one),
// or "compacted" for a revision below the compact revision the service
// reported; leaders crash and restart (snapshots carry the history); in the
// end every replica holds the same state, history and compact revision, and
// the history stays within the automatic retention.
TEST_CASE(
    "kv client: reads at the revisions of acknowledged writes see those writes, with automatic compaction, crashes and loss, over 10 seeds") {
  std::size_t answered = 0, compacted = 0, auto_compactions = 0;
  for (std::uint64_t seed = 1; seed <= 10; ++seed) {
    CAPTURE(seed);
    server_config sc;
    sc.auto_compaction_retention = 30;
    sc.auto_compaction_every = 200ms;
    kv_service s(seed, 3, 2, 0.03, sc);
    std::map<std::uint64_t, int> written;  // revision -> value written there
    int writes = 0, reads_pending = 0;
    std::function<void()> write = [&] {
      if (++writes > 120) return;
      txn_request t;
      t.success = {put_op("x", std::to_string(writes))};
      const int v = writes;
      s.client(0)->txn(t, [&, v](result<client_t::txn_result> r) {
        if (r) written[r->revision] = v;
        write();
      });
    };
    write();
    std::function<void()> read = [&] {
      if (writes > 120 && reads_pending == 0) return;
      if (written.empty()) return void(s.w.after(20ms, read));
      auto it = std::next(written.begin(), static_cast<std::ptrdiff_t>(s.w.rng().below(written.size())));
      const auto rev = it->first;
      const int v = it->second;
      ++reads_pending;
      s.client(1)->get_at("x", rev, [&, rev, v](result<std::optional<key_value>> r) {
        --reads_pending;
        CAPTURE(rev);
        if (r) {
          REQUIRE(*r);
          CHECK(as_string((*r)->value) == std::to_string(v));
          CHECK((*r)->mod_revision == rev);
          ++answered;
        } else if (r.error() == coord::errc::compacted) {
          CHECK(s.client(1)->last_compact_revision() > rev);
          ++compacted;
        } else {
          CHECK(r.error() == dcp::errc::timed_out);
        }
        read();
      });
    };
    read();
    for (int f = 0; f < 3; ++f) {
      s.w.run_for(400ms);
      if (auto* l = s.leader())
        for (std::uint32_t i = 0; i < 3; ++i)
          if (s.replica(i) == l) {
            s.w.crash(i);
            s.w.after(300ms, [&s, i] { s.w.restart(i); });
          }
    }
    s.w.run_until([&] { return writes > 120 && reads_pending == 0; }, s.w.now() + 60s);
    REQUIRE(writes > 120);
    s.w.run_for(1s);
    auto* l = s.leader();
    REQUIRE(l);
    const auto& sm = l->state_machine();
    CHECK(sm.revision() - sm.compact_revision() == 30);  // the retention, exactly, once the leader has caught up
    for (std::uint32_t i = 0; i < 3; ++i) {
      REQUIRE(s.replica(i));
      CHECK(s.replica(i)->applied_index() == l->applied_index());
      CHECK(s.replica(i)->state_machine().snapshot() == sm.snapshot());
    }
    auto_compactions += static_cast<std::size_t>(s.w.metrics().counter(coord_id, "auto_compactions"));
  }
  MESSAGE(answered << " reads at a revision answered, " << compacted << " compacted, " << auto_compactions
                   << " automatic compactions");
  CHECK(answered > 300);
  CHECK(compacted > 20);
  CHECK(auto_compactions > 20);
}

// Membership through the client (dcpctl member add/remove): a fourth
// replica, started knowing the group, is added, catches up (by snapshot:
// the state and its history) and answers as the others; one of the first
// three is removed and crashed; writes go on throughout. Over 5 seeds with
// loss, every replica's invariants checked after every event.
TEST_CASE(
    "kv client: add a replica, it catches up with the state and history; remove one; writes go on, over 5 seeds") {
  for (std::uint64_t seed = 1; seed <= 5; ++seed) {
    CAPTURE(seed);
    sim::simulator w(seed, kv_service::config(0.02));
    std::vector<address> first{address::sim(0), address::sim(1), address::sim(2)}, all = first;
    all.push_back(address::sim(3));
    consensus::raft_config rc;
    rc.election_timeout_min = 100ms;
    rc.election_timeout_max = 200ms;
    rc.heartbeat_interval = 30ms;
    rc.snapshot_every = 16;
    server_config sc;
    auto gen = std::make_shared<dcp::rng>(seed);
    sc.entropy = [gen] { return (*gen)(); };
    for (std::uint32_t i = 0; i < 4; ++i) {
      rc.members = i < 3 ? first : all;  // the new one knows the group it joins
      w.add_node([rc, sc](sim::node_context& n) {
        auto& raft = n.add<raft_t>(raft_id, rc, storage::durable_storage(n.world().disk_of(n.index())), machine{});
        n.add<server_t>(coord_id, raft, sc);
      });
    }
    client_config cc;
    cc.servers = all;
    cc.ttl = 1s;
    cc.keepalive_every = 200ms;
    cc.request_timeout = 100ms;
    cc.give_up_after = 5s;
    w.add_node([cc](sim::node_context& n) { n.add<client_t>(coord_id, cc); });
    auto replica = [&](std::uint32_t i) { return w.find<raft_t>(i, raft_id); };
    w.after_event([&] {
      for (std::uint32_t i = 0; i < 4; ++i)
        if (auto* x = replica(i)) {
          x->check_invariants();
          x->state_machine().check_invariants();
        }
    });
    auto& c = *w.find<client_t>(4, coord_id);
    int puts = 0;
    std::function<void()> put = [&] {
      if (++puts > 60) return;
      c.put("k" + std::to_string(puts % 20), to_bytes(std::to_string(puts)), [&](result<done_t>) { put(); });
    };
    put();
    w.run_until([&] { return puts > 30; }, w.now() + 10s);
    CHECK(replica(3)->applied_index() == 0);  // not a member yet: nobody replicates to it
    std::optional<result<std::vector<address>>> added, again, removed;
    c.add_member(address::sim(3), [&](result<std::vector<address>> r) { added = r; });
    w.run_until([&] { return added.has_value(); }, w.now() + 10s);
    REQUIRE(added);
    REQUIRE(*added);
    CHECK(**added == all);
    // Asked again, it is already a member. Over lossless links: a first send
    // lost and resent may have made the change itself, and the client then
    // rightly takes "already" for done (seed 2 loses the first send).
    const auto lossy = kv_service::config(0.02).network;
    auto lossless = lossy;
    lossless.loss = lossless.duplicate = 0;
    for (std::uint32_t i = 0; i < 4; ++i) w.set_link(4, i, lossless), w.set_link(i, 4, lossless);
    c.add_member(address::sim(3), [&](result<std::vector<address>> r) { again = r; });
    w.run_until([&] { return again.has_value(); }, w.now() + 10s);
    for (std::uint32_t i = 0; i < 4; ++i) w.set_link(4, i, lossy), w.set_link(i, 4, lossy);
    REQUIRE(again);
    REQUIRE_FALSE(*again);
    CHECK(again->error() == dcp::errc::invalid_argument);
    CHECK(again->message().find("is already a member") != std::string::npos);
    // Remove one of the first three that does not lead, then crash it.
    auto leader = [&]() -> raft_t* {
      for (std::uint32_t i = 0; i < 4; ++i)
        if (auto* x = replica(i); x && x->is_leader()) return x;
      return nullptr;
    };
    w.run_until([&] { return leader() != nullptr; }, w.now() + 5s);
    raft_t* l = leader();
    REQUIRE(l);
    std::uint32_t gone = 0;
    while (replica(gone) == l || gone == 3) ++gone;
    c.remove_member(address::sim(gone), [&](result<std::vector<address>> r) { removed = r; });
    w.run_until([&] { return removed.has_value(); }, w.now() + 10s);
    REQUIRE(removed);
    REQUIRE(*removed);
    CHECK((**removed).size() == 3);
    CHECK(std::find((**removed).begin(), (**removed).end(), address::sim(gone)) == (**removed).end());
    w.crash(gone);
    w.run_until([&] { return puts > 60; }, w.now() + 20s);
    REQUIRE(puts > 60);
    w.run_for(1s);
    l = leader();
    REQUIRE(l);
    for (std::uint32_t i = 0; i < 4; ++i) {
      if (i == gone) continue;
      CHECK(replica(i)->members() == **removed);
      CHECK(replica(i)->applied_index() == l->applied_index());
      CHECK(replica(i)->state_machine().snapshot() ==
            l->state_machine().snapshot());  // the new one too: state and history
    }
    CHECK(w.metrics().counter(coord_id, "member_changes") == 2);
  }
}

// Learners and leadership transfer through the client protocol (dcpctl
// member add --learner, member promote, move-leader): a fourth replica joins
// as a learner, catches up, is promoted, and takes the leadership; writes go
// on throughout and none fails (a write refused during the transfer is
// resent to the new leader). Over 5 seeds with loss, every replica's
// invariants checked after every event.
TEST_CASE("kv client: add a learner, promote it, move the leadership to it; writes never fail, over 5 seeds") {
  for (std::uint64_t seed = 1; seed <= 5; ++seed) {
    CAPTURE(seed);
    sim::simulator w(seed, kv_service::config(0.02));
    std::vector<address> first{address::sim(0), address::sim(1), address::sim(2)}, all = first;
    all.push_back(address::sim(3));
    consensus::raft_config rc;
    rc.election_timeout_min = 100ms;
    rc.election_timeout_max = 200ms;
    rc.heartbeat_interval = 30ms;
    rc.snapshot_every = 16;
    server_config sc;
    auto gen = std::make_shared<dcp::rng>(seed);
    sc.entropy = [gen] { return (*gen)(); };
    rc.members = first;
    for (std::uint32_t i = 0; i < 4; ++i)
      w.add_node([rc, sc](sim::node_context& n) {
        auto& raft = n.add<raft_t>(raft_id, rc, storage::durable_storage(n.world().disk_of(n.index())), machine{});
        n.add<server_t>(coord_id, raft, sc);
      });
    client_config cc;
    cc.servers = all;
    cc.ttl = 1s;
    cc.keepalive_every = 200ms;
    cc.request_timeout = 100ms;
    cc.give_up_after = 5s;
    w.add_node([cc](sim::node_context& n) { n.add<client_t>(coord_id, cc); });
    auto replica = [&](std::uint32_t i) { return w.find<raft_t>(i, raft_id); };
    std::uint64_t learner_campaigns = 0;
    w.after_event([&] {
      for (std::uint32_t i = 0; i < 4; ++i)
        if (auto* x = replica(i)) {
          x->check_invariants();
          x->state_machine().check_invariants();
          if (x->is_learner(address::sim(i)) && x->role() != consensus::raft_role::follower) ++learner_campaigns;
        }
    });
    auto& c = *w.find<client_t>(4, coord_id);
    int puts = 0, failed = 0;
    std::string why;
    std::function<void()> put = [&] {
      if (++puts > 80) return;
      c.put("k" + std::to_string(puts % 20), to_bytes(std::to_string(puts)), [&](result<done_t> r) {
        if (!r) ++failed, why = r.message();
        put();
      });
    };
    put();
    w.run_until([&] { return puts > 20; }, w.now() + 10s);
    using membership = client_t::membership;
    auto call = [&](auto op) {
      std::optional<result<membership>> out;
      op([&](result<membership> r) { out = r; });
      w.run_until([&] { return out.has_value(); }, w.now() + 10s);
      REQUIRE(out);
      return *out;
    };
    // A learner: in the configuration, not among the voters.
    auto added = call([&](auto done) { c.add_learner(address::sim(3), done); });
    REQUIRE(added);
    CHECK(added->voters == first);
    CHECK(added->learners == std::vector<address>{address::sim(3)});
    // Leadership cannot go to a learner: the words say what to do.
    std::optional<result<address>> moved;
    c.move_leader(address::sim(3), [&](result<address> r) { moved = r; });
    w.run_until([&] { return moved.has_value(); }, w.now() + 10s);
    REQUIRE(moved);
    REQUIRE_FALSE(*moved);
    CHECK(moved->error() == dcp::errc::invalid_argument);
    CHECK(moved->message().find("promote a learner first") != std::string::npos);
    w.run_until([&] { return puts > 40; }, w.now() + 10s);
    w.run_for(300ms);  // it catches up
    auto promoted = call([&](auto done) { c.promote_member(address::sim(3), done); });
    REQUIRE(promoted);
    CHECK(promoted->voters == all);
    CHECK(promoted->learners.empty());
    moved.reset();
    c.move_leader(address::sim(3), [&](result<address> r) { moved = r; });
    w.run_until([&] { return moved.has_value(); }, w.now() + 10s);
    REQUIRE(moved);
    INFO(moved->message());
    REQUIRE(*moved);
    CHECK(**moved == address::sim(3));
    w.run_until([&] { return puts > 80; }, w.now() + 20s);
    REQUIRE(puts > 80);
    w.run_for(500ms);
    CHECK(replica(3)->is_leader());  // nothing deposed it since
    INFO(why);
    CHECK(failed == 0);
    CHECK(learner_campaigns == 0);
    for (std::uint32_t i = 0; i < 4; ++i)
      CHECK(replica(i)->state_machine().snapshot() == replica(3)->state_machine().snapshot());
    // (The old leader may hear of the new one from a third replica first, and
    // the client's resend then hears "it leads already" from the new one.)
    CHECK(w.metrics().counter(coord_id, "leadership_moved") <= 1);
    CHECK(w.metrics().counter(raft_id, "leadership_transfers") >= 1);
  }
}

}  // namespace test_kv_ops
