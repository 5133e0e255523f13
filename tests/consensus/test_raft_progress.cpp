// raft_parts::progress, the leader's view of one follower, on its own: its
// transitions keep their invariants under any order of replies (stale,
// duplicated, forged), and a follower at any point of the log is brought
// to the leader's last index.
#include <doctest/doctest.h>

#include <memory>
#include <vector>

#include "../seeds.hpp"  // fewer seeds under sanitizers
#include "dcp/consensus/raft/progress.hpp"
#include "dcp/core/rng.hpp"

namespace test_raft_progress {

using namespace dcp;
using dcp::consensus::raft_parts::progress;

namespace {

/// A reply the follower sent: a success through `index`, or a rejection of
/// prev index `index` with its last index `last`.
struct reply {
  bool success;
  std::uint64_t index, last;
};

/// A follower whose log agrees with the leader's through `agree` and ends at
/// `last` (>= agree), answering AppendEntries the way raft.hpp's follower does.
struct follower {
  std::uint64_t agree, last;
  reply on_append(std::uint64_t prev, std::uint64_t entries) {
    if (prev > agree) return {false, prev, last};
    const auto upto = prev + entries;
    if (upto > agree) agree = last = upto;  // entries past agree: a conflicting suffix is cut, the leader's appended
    return {true, upto, last};
  }
};

/// A seed's set-up: the leader's last index, its batch size, and a follower
/// whose log agrees anywhere from none of it to all of it.
struct setup {
  std::uint64_t leader_last, batch;
  follower f;
};
setup draw(rng& r) {
  const std::uint64_t leader_last = 1 + r.between(0, 200), batch = 1 + r.between(0, 16);
  const auto agree = static_cast<std::uint64_t>(r.between(0, static_cast<std::int64_t>(leader_last)));
  return {leader_last, batch, follower{agree, agree + r.between(0, 50)}};
}

/// What the leader does for a send: entries from next, at most `batch`, synced through `leader_last`.
std::uint64_t send(progress& p, std::uint64_t leader_last, std::uint64_t batch) {
  const auto n = std::min(leader_last, p.next() - 1 + batch) - (p.next() - 1);
  p.entries_sent(p.next() - 1 + n);
  return n;
}

}  // namespace

TEST_CASE("raft progress: a new follower is probed from the leader's last index + 1, heard until the first check") {
  progress p(41);
  CHECK(p.in<progress::probing>());
  CHECK(p.next() == 42);
  CHECK(p.match() == 0);
  CHECK(p.sent() == 0);
  CHECK(p.take_heard());
  CHECK_FALSE(p.take_heard());
  p.heard(7);
  p.heard(3);
  CHECK(p.acked_round() == 7);  // rounds acknowledged never go back
  CHECK(p.take_heard());
}

TEST_CASE(
    "raft progress: under any order of stale, duplicated and forged replies, match never decreases, "
    "match < next, match <= sent, and the follower catches up") {
  std::uint64_t converged = 0, runs = 0;
  for (std::uint64_t seed = 1; seed <= dcp::test::last_seed(1, 300); ++seed) {
    CAPTURE(seed);
    rng r(seed);
    const auto drawn = draw(r);  // (no structured binding: the lambdas below capture these)
    const std::uint64_t leader_last = drawn.leader_last, batch = drawn.batch;
    follower f = drawn.f;
    progress p(leader_last);
    std::vector<reply> in_flight;
    std::uint64_t steps = 0;
    for (; steps < 20000 && !(p.match() == leader_last && in_flight.empty()); ++steps) {
      const auto before = p;
      const auto op = r.between(0, 9);
      if (op <= 3 || in_flight.empty()) {  // a send (heartbeat, flush or answer to a rejection)
        const auto next = p.next();
        const auto n = send(p, leader_last, batch);
        CHECK(p.next() == next);  // go-back-N: sending does not move next, acknowledgements do
        if (!r.chance(0.2)) in_flight.push_back(f.on_append(next - 1, n));  // else lost
      } else if (op == 4) {                                                 // forged: acknowledges what was never sent
        const auto forged = p.sent() + 1 + r.between(0, 10);
        CHECK_FALSE(p.acknowledge(forged));
        CHECK(p.match() == before.match());
        CHECK(p.next() == before.next());
        CHECK(p.current().index() == before.current().index());
      } else {  // a reply, in any order, maybe duplicated
        const auto k = static_cast<std::size_t>(r.between(0, static_cast<std::int64_t>(in_flight.size()) - 1));
        const auto m = in_flight[k];
        if (!r.chance(0.2)) in_flight.erase(in_flight.begin() + static_cast<std::ptrdiff_t>(k));
        if (m.success) {
          REQUIRE(p.acknowledge(m.index));  // the follower acknowledges only what it was sent
          CHECK(p.in<progress::replicating>());
          CHECK(p.match() >= m.index);
        } else if (p.reject(m.index, m.last)) {
          CHECK(p.next() >= p.match() + 1);
          // Steps back while above match + 1: by one at least, to the hint at most.
          if (before.next() > before.match() + 1) CHECK(p.next() < before.next());
          CHECK(p.next() >= std::min(before.next() - 1, std::min(m.index, m.last + 1)));
          if (before.in<progress::replicating>()) CHECK(p.in<progress::probing>() == (m.index > before.match()));
        } else {
          CHECK(m.index < p.match());  // only a rejection below match is ignored
          CHECK(p.next() == before.next());
        }
      }
      CHECK(p.match() >= before.match());
      CHECK(p.match() < p.next());
      CHECK(p.match() <= p.sent());
      CHECK(p.match() <= f.agree);  // what it acknowledged agrees with the leader
      CHECK(p.next() <= leader_last + 1);
      p.check_invariants();
    }
    ++runs;
    converged += p.match() == leader_last;
    CHECK(p.match() == leader_last);
    CHECK(p.next() == leader_last + 1);
    CHECK(p.in<progress::replicating>());
  }
  CHECK(converged == runs);
}

TEST_CASE(
    "raft progress: answers alone bring a follower at any point to the leader's last index, and an answer brings "
    "a send only with entries beyond the latest send") {
  for (std::uint64_t seed = 1; seed <= dcp::test::last_seed(1, 300); ++seed) {
    CAPTURE(seed);
    rng r(seed);
    const auto drawn = draw(r);  // (no structured binding: the lambdas below capture these)
    const std::uint64_t leader_last = drawn.leader_last, batch = drawn.batch;
    follower f = drawn.f;
    progress p(leader_last);
    std::vector<reply> in_flight;
    std::uint64_t latest = 0;  // how far the latest send reached
    auto send_one = [&] {
      const auto next = p.next();
      const auto n = send(p, leader_last, batch);
      latest = next - 1 + n;
      in_flight.push_back(f.on_append(next - 1, n));
    };
    send_one();  // the first heartbeat, and at times a second send before any answer (a flush)
    for (auto extra = r.between(0, 2); extra > 0; --extra) send_one();
    std::uint64_t answers = 0;
    while (!in_flight.empty() && answers < 10000) {
      ++answers;
      const auto m = in_flight.front();  // in order: TCP
      in_flight.erase(in_flight.begin());
      if (m.success) {
        REQUIRE(p.acknowledge(m.index));
        if (p.next() <= leader_last && !p.newer_in_flight(m.index)) {  // raft.hpp's rule
          const auto before = latest;
          send_one();
          CHECK(latest > before);  // it carries entries no unanswered send carries
        }
      } else if (p.reject(m.index, m.last)) {
        send_one();
      }
      p.check_invariants();
    }
    CHECK(p.match() == leader_last);  // no heartbeat was needed
    CHECK(p.next() == leader_last + 1);
  }
}

TEST_CASE(
    "raft progress: a snapshot transfer sends one chunk at a time, resends at most once per interval, "
    "and ends only when the follower acknowledges the snapshot's index") {
  for (std::uint64_t seed = 1; seed <= dcp::test::last_seed(1, 100); ++seed) {
    CAPTURE(seed);
    rng r(seed);
    const std::uint64_t snap_index = 10 + r.between(0, 100), size = 1 + r.between(0, 5000),
                        chunk = 1 + r.between(0, 700);
    auto snap = std::make_shared<const storage::snapshot>(storage::snapshot{snap_index, 3, bytes(size, 7)});
    progress p(snap_index + r.between(0, 20));
    REQUIRE(p.reject(p.next() - 1, 0));  // the follower holds nothing: next falls to 1
    CHECK(p.next() == 1);
    CHECK(p.needs_snapshot(snap_index));
    p.begin_snapshot(snap);
    REQUIRE(p.in<progress::snapshotting>());
    const duration interval = 50ms;
    time_point now{};
    std::uint64_t follower_holds = 0, sends = 0;
    while (true) {
      const auto& tx = *p.transfer();
      REQUIRE(p.chunk_due(now, interval));
      const auto offset = tx.offset, len = std::min(chunk, size - offset);
      const bool done = offset + len == size;
      p.chunk_sent(now, offset + len, done);
      ++sends;
      CHECK_FALSE(p.chunk_due(now + interval / 2, interval));  // one in flight: not again within the interval
      if (r.chance(0.3)) {                                     // lost: resent after the interval, from the same offset
        now += interval;
        CHECK(p.chunk_due(now, interval));
        CHECK(p.transfer()->offset == offset);
        continue;
      }
      CHECK(p.snapshot_received(snap_index + 1, offset + len) == progress::chunk_ack::ignored);  // another snapshot
      CHECK(p.snapshot_received(snap_index, p.transfer()->sent_upto + 1) == progress::chunk_ack::forged);
      CHECK(p.transfer()->offset == offset);
      if (!done) {
        follower_holds = offset + len;
        REQUIRE(p.snapshot_received(snap_index, follower_holds) == progress::chunk_ack::accepted);
        CHECK(p.chunk_due(now, interval));  // the follower moved on: the next chunk goes at once
        CHECK(p.match() == 0);
        CHECK(p.sent() < snap_index);  // the snapshot's index counts as sent with its last chunk only
        continue;
      }
      CHECK(p.sent() == snap_index);
      // An acknowledgement below the snapshot's index (an older append's) leaves it snapshotting.
      REQUIRE(p.acknowledge(0));
      CHECK(p.in<progress::snapshotting>());
      REQUIRE(p.acknowledge(snap_index));
      CHECK(p.in<progress::replicating>());
      CHECK(p.match() == snap_index);
      CHECK(p.next() == snap_index + 1);
      CHECK_FALSE(p.needs_snapshot(snap_index));
      break;
    }
    CHECK(sends >= (size + chunk - 1) / chunk);
    p.check_invariants();
  }
}

TEST_CASE(
    "raft progress: a newer snapshot replaces a transfer only before its first byte is held; "
    "a follower that lost its buffer is resent from where it is") {
  auto old_snap = std::make_shared<const storage::snapshot>(storage::snapshot{10, 2, bytes(100, 1)});
  auto new_snap = std::make_shared<const storage::snapshot>(storage::snapshot{20, 3, bytes(100, 2)});
  progress p(30);
  REQUIRE(p.reject(29, 0));
  p.begin_snapshot(old_snap);
  time_point now{};
  p.chunk_sent(now, 40, false);
  p.begin_snapshot(new_snap);  // nothing held yet: the newer one replaces it
  CHECK(p.transfer()->snap == new_snap);
  CHECK(p.transfer()->sent_upto == 0);
  p.chunk_sent(now, 40, false);
  REQUIRE(p.snapshot_received(20, 40) == progress::chunk_ack::accepted);
  auto newer = std::make_shared<const storage::snapshot>(storage::snapshot{25, 3, bytes(100, 3)});
  p.begin_snapshot(newer);  // under way: kept, or a transfer could never finish under steady writes
  CHECK(p.transfer()->snap == new_snap);
  p.chunk_sent(now, 80, false);
  CHECK_FALSE(p.chunk_due(now, 50ms));
  REQUIRE(p.snapshot_received(20, 0) == progress::chunk_ack::accepted);  // it restarted: back to 0, at once
  CHECK(p.transfer()->offset == 0);
  CHECK(p.chunk_due(now, 50ms));
  p.check_invariants();
}

}  // namespace test_raft_progress
