#include "raft_harness.hpp"

using namespace raft_test;

TEST_CASE("raft: a quiet cluster elects one leader and commits") {
  options o;
  o.loss = o.duplicate = o.reorder = 0;
  o.drift = 0;
  o.fault_every = 1h;  // no faults
  cluster c(1, o);
  auto out = c.run();
  CHECK(out.live);
  CHECK(out.acked > 100);
  CHECK(out.reads_ok > 0);
}

TEST_CASE("raft: safety and liveness under crashes, partitions, loss, duplication, reordering and drift") {
  std::uint64_t acked = 0, reads = 0, elections = 0, installs = 0, live = 0;
  const std::uint64_t seeds = 1000;
  for (std::uint64_t seed = 1; seed <= seeds; ++seed) {
    options o;
    o.nodes = seed % 3 == 0 ? 5 : 3;
    CAPTURE(seed);
    cluster c(seed, o);
    auto out = c.run();
    acked += out.acked;
    reads += out.reads_ok;
    elections += out.elections;
    installs += out.snapshots_installed;
    live += out.live;
  }
  MESSAGE("acked " << acked << ", reads " << reads << ", elections " << elections << ", snapshot installs "
                   << installs << ", live " << live << "/" << seeds);
  CHECK(live == seeds);  // after healing, every seed made progress
  CHECK(installs > 0);   // lagging replicas were brought up by InstallSnapshot
}

TEST_CASE("raft: membership changes one server at a time, under faults, over 200 seeds") {
  std::uint64_t live = 0, changes = 0;
  for (std::uint64_t seed = 1; seed <= 200; ++seed) {
    options o;
    o.nodes = 5;
    o.membership = true;
    o.fault_every = 150ms;
    CAPTURE(seed);
    cluster c(seed, o);
    auto out = c.run();
    live += out.live;
    for (std::uint32_t i = 0; i < 5; ++i)
      if (auto* r = c.world().find<node_t>(i, pid); r && r->members().size() != 5) ++changes;
  }
  CHECK(live == 200);
  CHECK(changes > 0);  // configurations did change
}

TEST_CASE("raft: the user's mistakes and a follower's refusals are clear errors") {
  raft_config bad;
  bad.heartbeat_interval = 200ms;  // not under half the election timeout
  CHECK_THROWS_AS(bad.validate(), dcp::error);
  bad = {};
  bad.election_timeout_max = 1ms;
  CHECK_THROWS_AS(bad.validate(), dcp::error);

  options o;
  o.loss = o.duplicate = o.reorder = 0;
  cluster c(3, o);
  c.world().run_for(1s);
  node_t* follower = nullptr;
  node_t* leader = nullptr;
  for (std::uint32_t i = 0; i < 3; ++i) {
    auto& r = c.world().get<node_t>(i, pid);
    (r.is_leader() ? leader : follower) = &r;
  }
  REQUIRE(leader);
  REQUIRE(follower);
  std::error_code got;
  follower->propose(encode_id(1), [&](result<bytes> r) { got = r.error(); });
  CHECK(got == dcp::errc::not_leader);
  follower->read_index([&](result<std::uint64_t> r) { got = r.error(); });
  CHECK(got == dcp::errc::not_leader);
  leader->propose(7, 0, encode_id(1), [&](result<bytes> r) { got = r.error(); });  // sequence numbers start at 1
  CHECK(got == dcp::errc::invalid_argument);
  leader->add_member(address::sim(0), [&](result<bytes> r) { got = r.error(); });  // already a member
  CHECK((got == dcp::errc::invalid_argument || got == consensus::errc::config_change_pending));
  // A session that was never registered applies nothing, at any sequence number.
  for (std::uint64_t seq : {1, 5}) {
    bool done = false;
    leader->propose(42, seq, encode_id(2), [&](result<bytes> r) { got = r.error(); done = true; });
    c.world().run_until([&] { return done; }, c.world().now() + 1s);
    CHECK(got == consensus::errc::unknown_session);
  }
}

// Issue 12, bug 2: with sessions created by their first command and evicted
// by LRU, a retry of a first command after its session was evicted applied
// again, and a retry of a later one was reported "not applied" although it
// had been. Sessions are now registered explicitly (the id is the entry's
// index, never reused), and an unknown session means "outcome unknown".
TEST_CASE("raft: a retried command is never applied twice, nor called not-applied, when its session is evicted") {
  options o;
  o.loss = o.duplicate = o.reorder = 0;
  o.max_sessions = 3;
  cluster c(11, o);
  c.world().run_for(1s);
  node_t* leader = nullptr;
  for (std::uint32_t i = 0; i < 3; ++i)
    if (auto& r = c.world().get<node_t>(i, pid); r.is_leader()) leader = &r;
  REQUIRE(leader);
  auto run = [&](auto&& start) {
    std::optional<result<bytes>> out;
    start([&](result<bytes> r) { out = std::move(r); });
    c.world().run_until([&] { return out.has_value(); }, c.world().now() + 1s);
    REQUIRE(out);
    return std::move(*out);
  };
  auto register_one = [&] {
    std::uint64_t id = 0;
    leader->register_client([&](result<std::uint64_t> r) { REQUIRE(r); id = *r; });
    c.world().run_until([&] { return id != 0; }, c.world().now() + 1s);
    REQUIRE(id != 0);
    return id;
  };
  const auto a = register_one();
  REQUIRE(run([&](auto done) { leader->propose(a, 1, encode_id(101), done); }));  // applied once
  REQUIRE(run([&](auto done) { leader->propose(a, 2, encode_id(102), done); }));
  // Three more clients register: a is the least recently used, and is evicted.
  for (int i = 0; i < 3; ++i) register_one();
  CHECK_FALSE(leader->has_client(a));
  // Its retries (a reply was lost, say) apply nothing and say the outcome is unknown.
  for (std::uint64_t seq : {1, 2}) {
    auto r = run([&](auto done) { leader->propose(a, seq, encode_id(100 + seq), done); });
    REQUIRE_FALSE(r);
    CHECK(r.error() == consensus::errc::unknown_session);
  }
  const auto& ids = leader->state_machine().ids;
  CHECK(std::count(ids.begin(), ids.end(), 101) == 1);
  CHECK(std::count(ids.begin(), ids.end(), 102) == 1);
  // A fresh registration never gets an old id back.
  const auto b = register_one();
  CHECK(b != a);
  CHECK(b > a);
}

TEST_CASE("raft: malformed replication messages are dropped and counted, state unchanged") {
  options o;
  o.loss = o.duplicate = o.reorder = 0;
  cluster c(5, o);
  c.world().run_for(1s);
  node_t* follower = nullptr;
  for (std::uint32_t i = 0; i < 3; ++i)
    if (auto& r = c.world().get<node_t>(i, pid); !r.is_leader()) follower = &r;
  REQUIRE(follower);
  const auto last = follower->store().last_index();
  const auto term = follower->current_term();
  raft_msg::append gap{term, last, *follower->store().term_at(last), 0, 0, {}};
  gap.entries.push_back({last + 2, term, entry_kind::command, {}});  // not consecutive
  follower->on_message(address::sim(9), gap);
  raft_msg::append future{term, last, *follower->store().term_at(last), 0, 0, {}};
  future.entries.push_back({last + 1, term + 5, entry_kind::command, {}});  // a term above the sender's
  follower->on_message(address::sim(9), future);
  raft_msg::install_snapshot empty{term, 0, {}};
  follower->on_message(address::sim(9), empty);
  CHECK(follower->store().last_index() == last);
  CHECK(c.world().metrics().counter(pid, "malformed_append") == 2);
  CHECK(c.world().metrics().counter(pid, "malformed_snapshot") == 1);
}
