// raft_parts::session_table on its own: over random streams of
// registrations, commands (new, retried, stale, of unknown sessions) and
// unregistrations, each (client, seq) applies at most once, a retry gets the
// first result, the table stays bounded and evicts the least recently used
// session, and two replicas applying the same entries (one restored from
// the other's snapshot midway) decide the same.
#include <doctest/doctest.h>

#include <algorithm>
#include <map>
#include <optional>
#include <set>
#include <vector>

#include "../seeds.hpp"  // fewer seeds under sanitizers
#include "dcp/consensus/raft/session_table.hpp"
#include "dcp/core/rng.hpp"

namespace test_raft_session_table {

using namespace dcp;
using dcp::consensus::raft_parts::session_table;
using verdict = session_table::verdict;

namespace {

/// One committed entry as the table sees it.
struct entry {
  enum kind_t { open, close, command } kind;
  std::uint64_t client = 0, seq = 0;
};

bytes result_for(std::uint64_t client, std::uint64_t seq) {
  return {static_cast<std::uint8_t>(client), static_cast<std::uint8_t>(seq), static_cast<std::uint8_t>(client ^ seq)};
}

/// Applies entries to a table the way raft's apply_command does; records
/// what was applied and answered.
struct replica {
  session_table table;
  std::multiset<std::pair<std::uint64_t, std::uint64_t>> applied;  // (client, seq) applied to the machine
  std::vector<verdict> verdicts;
  std::size_t evictions = 0;

  explicit replica(std::size_t max) : table(max) {}
  void apply(const entry& e, std::uint64_t index) {
    switch (e.kind) {
      case entry::open:
        evictions += table.open(index);
        return;
      case entry::close:
        table.close(e.client);
        return;
      case entry::command: {
        const auto v = table.admit(e.client, e.seq, index);
        verdicts.push_back(v);
        if (v == verdict::apply) {
          applied.insert({e.client, e.seq});
          table.record(e.client, e.seq, index, result_for(e.client, e.seq));
        } else if (v == verdict::duplicate) {
          CHECK(table.result_of(e.client) == result_for(e.client, e.seq));  // a retry gets the first result
        }
        return;
      }
    }
  }
};

}  // namespace

TEST_CASE("raft session table: at most once, bounded, least recently used evicted, the same on every replica") {
  for (std::uint64_t seed = 1; seed <= dcp::test::last_seed(1, 200); ++seed) {
    CAPTURE(seed);
    rng r(seed);
    const std::size_t max = 1 + r.between(0, 8);
    replica a(max), b(max);
    std::vector<std::uint64_t> opened;                 // every id ever opened
    std::map<std::uint64_t, std::uint64_t> next_seq;   // per client: the next seq it sends
    std::map<std::uint64_t, std::uint64_t> last_used;  // model: id -> index of its last use
    const auto n = 200 + r.between(0, 400);
    const auto restore_at = r.between(1, n);
    for (std::uint64_t index = 1; index <= static_cast<std::uint64_t>(n); ++index) {
      entry e{entry::command};
      const auto op = r.between(0, 9);
      if (op == 0 || opened.empty()) {
        e.kind = entry::open;
      } else if (op == 1) {
        e.kind = entry::close;
        e.client = opened[r.between(0, static_cast<std::int64_t>(opened.size()) - 1)];
      } else {
        e.client = opened[r.between(0, static_cast<std::int64_t>(opened.size()) - 1)];
        if (r.chance(0.05)) e.client = 1000 + index;  // never registered
        auto& s = next_seq[e.client];
        // A new command, or a retry of the last, or an older one.
        e.seq =
            s == 0 || r.chance(0.6) ? ++s : std::max<std::int64_t>(1, static_cast<std::int64_t>(s) - r.between(0, 2));
      }
      // The model of what the table must do.
      const bool known_before = last_used.contains(e.client);
      std::optional<std::uint64_t> lru;
      if (e.kind == entry::open) {
        last_used[index] = index;
        if (last_used.size() > max) {
          auto victim = std::min_element(last_used.begin(), last_used.end(),
                                         [](auto& x, auto& y) { return x.second < y.second; });
          lru = victim->first;
          last_used.erase(victim);
        }
        opened.push_back(index);
      } else if (e.kind == entry::close) {
        last_used.erase(e.client);
      }
      a.apply(e, index);
      b.apply(e, index);
      if (e.kind == entry::command) {
        const auto v = a.verdicts.back();
        CHECK((v == verdict::unknown_session) == !known_before);  // only registration creates a session
        if (v == verdict::apply || v == verdict::duplicate) last_used[e.client] = index;
      }
      if (lru) CHECK_FALSE(a.table.contains(*lru));  // the least recently used went
      CHECK(a.table.size() == last_used.size());
      for (const auto& [id, used] : last_used) CHECK(a.table.contains(id));
      CHECK(a.table.size() <= max);
      a.table.check_invariants();
      if (static_cast<std::int64_t>(index) == restore_at) {  // b installs a's snapshot: it decides the same after
        session_table copy(max);
        copy.restore(a.table.sessions());
        b.table = copy;
      }
      CHECK(a.verdicts == b.verdicts);
    }
    // At most once: no (client, seq) reached the machine twice.
    for (const auto& cs : a.applied) CHECK(a.applied.count(cs) == 1);
  }
}

TEST_CASE(
    "raft session table: a command's verdict follows its sequence number, and a session's id is its registration's index") {
  session_table t(2);
  CHECK(t.admit(7, 1, 8) == verdict::unknown_session);
  CHECK_FALSE(t.open(7));
  CHECK(t.contains(7));
  CHECK(t.admit(7, 1, 8) == verdict::apply);
  t.record(7, 1, 8, bytes{1});
  CHECK(t.admit(7, 1, 9) == verdict::duplicate);
  CHECK(t.result_of(7) == bytes{1});
  CHECK(t.admit(7, 3, 10) == verdict::apply);  // sequence numbers may skip: only order matters
  t.record(7, 3, 10, bytes{3});
  CHECK(t.admit(7, 2, 11) == verdict::stale);
  CHECK_FALSE(t.open(12));
  CHECK(t.open(13));  // a third session: the least recently used goes (7, last used at 10, over 12)
  CHECK_FALSE(t.contains(7));
  CHECK(t.contains(12));
  CHECK(t.contains(13));
  t.close(12);
  CHECK(t.admit(12, 1, 14) == verdict::unknown_session);
}

}  // namespace test_raft_session_table
