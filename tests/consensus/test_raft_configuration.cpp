// raft_parts::config_history on its own, against a model (the log's
// configuration entries, the snapshot's configuration): over random streams
// of appended, truncated and compacted configurations, the configuration in
// effect at any index is the latest at or before it, the latest is the last
// appended, a truncation takes back exactly the cut ones, a compaction keeps
// what is in effect at its index, and malformed entries change nothing.
#include <doctest/doctest.h>

#include <map>
#include <vector>

#include "../seeds.hpp"  // fewer seeds under sanitizers
#include "dcp/consensus/raft/configuration.hpp"
#include "dcp/core/rng.hpp"

namespace test_raft_configuration {

using namespace dcp;
using dcp::consensus::raft_membership;
using dcp::consensus::raft_parts::config_history;

namespace {

bytes encode(const raft_membership& m) {
  bytes out;
  storage::detail::encode_value(m, out);
  return out;
}

raft_membership random_membership(rng& r) {
  raft_membership m;
  for (std::uint32_t i = 0; i < 7; ++i) {
    const auto pick = r.between(0, 2);
    if (pick == 1) m.voters.push_back(address::sim(i));
    if (pick == 2) m.learners.push_back(address::sim(i));
  }
  if (m.voters.empty()) m.voters.push_back(address::sim(7));
  return m;
}

bool same(const raft_membership& a, const raft_membership& b) {
  return a.voters == b.voters && a.learners == b.learners;
}

}  // namespace

TEST_CASE(
    "raft configuration history: in effect at an index is the latest at or before it, through appends, "
    "truncations, compactions and rebuilds") {
  for (std::uint64_t seed = 1; seed <= dcp::test::last_seed(1, 200); ++seed) {
    CAPTURE(seed);
    rng r(seed);
    const raft_membership bootstrap{{address::sim(0), address::sim(1), address::sim(2)}, {}};
    config_history h(bootstrap);
    // The model: the snapshot's index and configuration, and the log's configuration entries.
    std::uint64_t snap = 0, last = 0;
    raft_membership at_snap = bootstrap;
    std::map<std::uint64_t, raft_membership> entries;
    auto model_at = [&](std::uint64_t i) {
      raft_membership m = at_snap;
      for (const auto& [k, c] : entries)
        if (k <= i) m = c;
      return m;
    };
    for (int step = 0; step < 300; ++step) {
      switch (r.between(0, 9)) {
        case 0:
        case 1:
        case 2: {  // a configuration entry is appended
          const auto m = random_membership(r);
          REQUIRE(h.append(++last, encode(m)));
          entries[last] = m;
          break;
        }
        case 3: {  // a malformed one: undecodable, or a server both voter and learner
          raft_membership bad = random_membership(r);
          bad.learners.push_back(bad.voters.front());
          bytes garbage = encode(bad);
          if (r.chance(0.5)) garbage = bytes{0xff, 0xff, 0xff};
          const auto before = h.all().size();
          CHECK_FALSE(h.append(++last, garbage));
          CHECK(h.all().size() == before);
          break;
        }
        case 4:
          last += r.between(0, 5);  // other entries
          break;
        case 5: {  // the log is cut after the snapshot
          if (last == snap) break;
          const auto from = snap + 1 + r.between(0, static_cast<std::int64_t>(last - snap - 1));
          h.truncate_from(from);
          entries.erase(entries.lower_bound(from), entries.end());
          last = from - 1;
          break;
        }
        case 6: {  // a snapshot is taken at an index of the log
          const auto at = snap + r.between(0, static_cast<std::int64_t>(last - snap));
          const auto expected = model_at(at);
          h.compact(at);
          CHECK(same(h.at_snapshot(), expected));
          at_snap = expected;
          entries.erase(entries.begin(), entries.upper_bound(at));
          snap = at;
          break;
        }
        case 7: {  // a restart: rebuilt from the snapshot and the log's entries
          h.rebuild(snap);
          for (const auto& [k, c] : entries) REQUIRE(h.append(k, encode(c)));
          break;
        }
        default: {  // a snapshot installed from a leader, past the log
          if (!r.chance(0.2)) break;
          const auto m = random_membership(r);
          snap = last = last + 1 + r.between(0, 10);
          h.snapshot_recorded(m);
          h.rebuild(snap);
          at_snap = m;
          entries.clear();
          break;
        }
      }
      h.check_invariants(snap, last);
      CHECK(h.all().front().first == snap);
      CHECK(h.all().size() == entries.size() + 1);
      CHECK(same(h.latest(), model_at(last)));
      CHECK(h.latest_index() == (entries.empty() ? snap : entries.rbegin()->first));
      for (std::uint64_t i = snap; i <= last; i += 1 + last / 8) CHECK(same(h.at(i), model_at(i)));
      // Known: a member of any configuration held.
      for (std::uint32_t a = 0; a < 8; ++a) {
        bool in_any = at_snap.has(address::sim(a));
        for (const auto& [k, c] : entries) in_any = in_any || c.has(address::sim(a));
        CHECK(h.known(address::sim(a)) == in_any);
      }
    }
  }
}

TEST_CASE("raft configuration history: a replica without a snapshot starts from the bootstrap list") {
  const raft_membership bootstrap{{address::sim(0), address::sim(1)}, {}};
  config_history h(bootstrap);
  CHECK(same(h.latest(), bootstrap));
  CHECK(h.latest_index() == 0);
  REQUIRE(h.append(4, encode(raft_membership{{address::sim(1)}, {address::sim(0)}})));
  CHECK(h.latest().has_learner(address::sim(0)));
  CHECK(same(h.at(3), bootstrap));
  h.truncate_from(4);
  CHECK(same(h.latest(), bootstrap));
  h.rebuild(0);
  CHECK(same(h.latest(), bootstrap));
}

}  // namespace test_raft_configuration
