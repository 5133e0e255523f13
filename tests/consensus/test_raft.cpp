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
  // A session that was never opened cannot start at sequence 5: it may be a retry of an evicted one.
  bool done = false;
  leader->propose(42, 5, encode_id(2), [&](result<bytes> r) { got = r.error(); done = true; });
  c.world().run_until([&] { return done; }, c.world().now() + 1s);
  CHECK(got == consensus::errc::session_expired);
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
