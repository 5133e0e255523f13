// raft_parts::read_queue on its own: over random streams of reads, commits,
// applies, acknowledged rounds, expiries and step-downs, every read is
// answered exactly once, in order, and never before its read index is known
// and applied and a quorum acknowledged a round sent after it came.
#include <doctest/doctest.h>

#include <functional>
#include <map>
#include <vector>

#include "../seeds.hpp"  // fewer seeds under sanitizers
#include "dcp/consensus/raft/read_queue.hpp"
#include "dcp/core/rng.hpp"

namespace test_raft_read_queue {

using namespace dcp;

namespace {

enum class outcome { pending, read, timed_out, stepped_down };

struct read_state {
  std::uint64_t round = 0, commit_when_came = 0;
  bool committed_in_term_when_came = false;
  time_point came{};
  outcome how = outcome::pending;
  std::uint64_t index = 0;
  int answers = 0;
};

}  // namespace

TEST_CASE(
    "raft read queue: each read answered once, in order, only once its index is applied and its round confirmed") {
  for (std::uint64_t seed = 1; seed <= dcp::test::last_seed(1, 300); ++seed) {
    CAPTURE(seed);
    rng r(seed);
    using callback = std::function<void(outcome, std::uint64_t)>;
    dcp::consensus::raft_parts::read_queue<callback> q;
    std::vector<read_state> reads;
    std::uint64_t commit = 0, applied = 0, round = 0, confirmed_round = 0;
    bool committed_in_term = false;
    time_point now{};
    const duration timeout = 300ms;
    std::uint64_t last_answered_read = 0;
    auto answer = [&](std::size_t k) {
      return [&, k](outcome how, std::uint64_t index) {
        auto& s = reads[k];
        CHECK(s.answers == 0);  // once
        ++s.answers;
        s.how = how;
        s.index = index;
        // Each answer is deserved when it is given.
        if (how == outcome::read) {
          CHECK(k + 1 > last_answered_read);  // in order
          last_answered_read = k + 1;
          CHECK(s.round <= confirmed_round);
          CHECK(index <= applied);
          CHECK(index > 0);
          if (s.committed_in_term_when_came)
            CHECK(index == s.commit_when_came);  // the commit index when it came
          else
            CHECK(index >= s.commit_when_came);
        }
        if (how == outcome::timed_out) CHECK(now - s.came > timeout);
      };
    };
    for (int step = 0; step < 400; ++step) {
      switch (r.between(0, 7)) {
        case 0:
        case 1: {  // a read comes, with a heartbeat round of its own
          reads.push_back({++round, commit, committed_in_term, now});
          q.push(committed_in_term ? commit : 0, round, now, answer(reads.size() - 1));
          break;
        }
        case 2:  // the leader commits (its first commit of the term makes the read index known)
          commit += 1 + r.between(0, 3);
          committed_in_term = true;
          q.commit_known(commit);
          break;
        case 3:
          applied = std::min(commit, applied + r.between(0, 3));
          break;
        case 4:  // a quorum acknowledges rounds up to some round sent
          confirmed_round = std::max<std::uint64_t>(confirmed_round, r.between(0, static_cast<std::int64_t>(round)));
          break;
        case 5:
          now += r.between(0, 100) * 1ms;
          break;
        case 6:  // check-quorum: expired reads fail; a callback may retry at once
          for (auto& done : q.take_expired(now, timeout)) {
            done(outcome::timed_out, 0);
            if (r.chance(0.3)) {
              reads.push_back({++round, commit, committed_in_term, now});
              q.push(committed_in_term ? commit : 0, round, now, answer(reads.size() - 1));
            }
          }
          break;
        case 7:
          if (r.chance(0.05)) {  // the leader steps down: every waiting read fails
            for (auto& done : q.take_all()) done(outcome::stepped_down, 0);
            committed_in_term = false;
            CHECK(q.empty());
          }
          break;
      }
      while (auto ready = q.pop_ready(applied, [&](std::uint64_t rd) { return rd <= confirmed_round; }))
        ready->done(outcome::read, ready->index);
    }
    // Every read still pending is in the queue, and only those.
    std::size_t pending = 0;
    for (const auto& s : reads) pending += s.how == outcome::pending;
    CHECK(q.size() == pending);
    for (auto& done : q.take_all()) done(outcome::stepped_down, 0);
    for (const auto& s : reads) CHECK(s.answers == 1);
  }
}

TEST_CASE("raft read queue: the oldest read holds back the younger ones") {
  using callback = std::function<void(std::uint64_t)>;
  dcp::consensus::raft_parts::read_queue<callback> q;
  std::vector<std::uint64_t> answered;
  q.push(0, 1, time_point{}, [&](std::uint64_t i) { answered.push_back(i); });  // before the term's first commit
  q.push(5, 2, time_point{}, [&](std::uint64_t i) { answered.push_back(i); });
  auto all = [](std::uint64_t) { return true; };
  CHECK_FALSE(q.pop_ready(100, all));  // its index is unknown yet: the younger read waits too
  q.commit_known(7);
  CHECK_FALSE(q.pop_ready(6, all));  // not applied through 7
  auto first = q.pop_ready(7, [](std::uint64_t rd) { return rd == 1; });
  REQUIRE(first);
  CHECK(first->index == 7);
  CHECK_FALSE(q.pop_ready(7, [](std::uint64_t rd) { return rd == 1; }));  // round 2 not confirmed
  auto second = q.pop_ready(7, all);
  REQUIRE(second);
  CHECK(second->index == 5);  // its index was known when it came: commit_known left it
  CHECK(q.empty());
}

}  // namespace test_raft_read_queue
