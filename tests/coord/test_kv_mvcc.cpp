// Reads at a past revision and compaction (etcd's MVCC Range with a revision,
// and Compact), checked against a reference model that keeps the whole store
// at every revision: over random sequences of puts, removes of keys and
// ranges, transactions, ephemeral keys and the sessions that end them,
// explicit compactions (some refused) and snapshots restored midway, every
// read at every revision answers exactly what the model says: the state at
// that revision, or "compacted" exactly below the compact revision (explicit
// compactions and the history's bound, max_history_events, both modelled),
// or "future revision" above the current one. A replica that restores a
// snapshot taken midway and applies the rest of the log ends with the same
// snapshot bytes as the one that applied everything.
#include <doctest/doctest.h>

#include <deque>
#include <map>
#include <set>

#include "dcp/coord.hpp"
#include "dcp/core/rng.hpp"
#include "dcp/storage.hpp"

namespace test_kv_mvcc {

using namespace dcp;
using namespace dcp::coord;

namespace {

bytes encode(const request& r) {
  bytes b;
  storage::detail::encode_value(r, b);
  return b;
}
reply apply_entry(machine& m, const bytes& in) {
  reply out;
  REQUIRE_FALSE(storage::detail::decode_value(m.apply(in), out));
  m.check_invariants();
  return out;
}

/// The store at every revision, and what the history keeps.
struct model {
  using state = std::map<std::string, key_value>;
  std::vector<state> states{state{}};                      // states[r]: the store at revision r
  std::uint64_t compacted = 0;                             // revisions up to this one have left the history
  std::deque<std::pair<std::uint64_t, std::size_t>> kept;  // (revision, events) still in the history
  std::size_t events = 0;
  std::map<session_id, std::set<std::string>> sessions;  // live sessions and their ephemeral keys

  std::uint64_t rev() const { return states.size() - 1; }
  std::uint64_t compact_revision() const { return std::min(compacted + 1, std::max<std::uint64_t>(rev(), 1)); }

  /// A new revision with `n` events: the history drops its oldest whole revisions beyond max_history_events.
  void commit(state next, std::size_t n) {
    states.push_back(std::move(next));
    kept.emplace_back(rev(), n);
    events += n;
    while (events > max_history_events && kept.front().first != rev()) drop_front();
  }
  void drop_front() {
    events -= kept.front().second;
    compacted = std::max(compacted, kept.front().first);
    kept.pop_front();
  }
  void write(state& s, const std::string& k, const std::string& v, session_id session) {
    const auto r = rev() + 1;
    auto it = s.find(k);
    key_value kv = it == s.end() ? key_value{k, {}, r, r, 0, false} : it->second;
    kv.value = to_bytes(v);
    kv.mod_revision = r;
    ++kv.version;
    for (auto& [id, keys] : sessions) keys.erase(k);
    if (session) sessions[session].insert(k);
    kv.ephemeral = session != 0;
    s[k] = kv;
  }
  void erase(state& s, const std::string& k) {
    s.erase(k);
    for (auto& [id, keys] : sessions) keys.erase(k);
  }
  static bool in(const std::string& k, const std::string& key, const std::string& end) {
    return end.empty() ? k == key : k >= key && k < end;
  }
  std::vector<std::string> keys_in(const std::string& key, const std::string& end) const {
    std::vector<std::string> out;
    for (auto& [k, kv] : states.back())
      if (in(k, key, end)) out.push_back(k);
    return out;
  }
};

std::string key_of(rng& g) { return "k" + std::to_string(10 + g.below(30)); }

/// What a read at revision `at` must answer, as the model sees it.
void check_read(const machine& m, const model& md, const std::string& key, const std::string& end, std::uint64_t at) {
  CAPTURE(at);
  CAPTURE(key);
  CAPTURE(end);
  const auto r = m.range_at(key, end, 0, at);
  CHECK(r.current_revision == md.rev());
  CHECK(r.compact_revision == md.compact_revision());
  if (at > md.rev()) {
    CHECK(r.code == status::future_revision);
    return;
  }
  if (at != 0 && at != md.rev() && at < md.compact_revision()) {
    CHECK(r.code == status::compacted);
    return;
  }
  REQUIRE(r.code == status::ok);
  const auto want_at = at == 0 ? md.rev() : at;
  CHECK(r.result.revision == want_at);
  CHECK_FALSE(r.result.more);
  std::vector<key_value> want;
  for (auto& [k, kv] : md.states[want_at])
    if (model::in(k, key, end)) want.push_back(kv);
  CHECK(r.result.kvs == want);
}

/// Every revision (a read at an old one undoes the history after it: a
/// long store is sampled, and its last few thousand revisions read).
void sweep(const machine& m, const model& md) {
  const std::uint64_t step = md.rev() > 1500 ? 7 : 1;
  for (std::uint64_t at = 0; at <= md.rev() + 1; at += (at + 300 > md.rev() ? 1 : step))
    check_read(m, md, "k", prefix_end("k"), at);
}
/// `n` revisions drawn at random, and the ones around the compact revision.
void sample(const machine& m, const model& md, rng& g, int n) {
  for (int i = 0; i < n; ++i) check_read(m, md, "k", prefix_end("k"), g.below(md.rev() + 2));
  const auto c = md.compact_revision();
  for (auto at : {c - 1, c, c + 1}) check_read(m, md, "k", prefix_end("k"), at);
}

struct run_stats {
  std::size_t reads = 0, compactions = 0, refused = 0, restores = 0, bound_compacted = 0;
  std::uint64_t revisions = 0;
};

void run_seed(std::uint64_t seed, std::size_t ops, run_stats& st) {
  rng g(seed);
  machine m;
  model md;
  std::vector<bytes> log;
  std::size_t snapshot_at = ops / 2 + g.below(ops / 4);  // the catching-up replica's snapshot
  bytes midway;
  std::size_t midway_log = 0;              // the log entries the midway snapshot holds
  const bool compactions = seed % 3 != 0;  // a third of the seeds: only the history's bound compacts
  std::uint64_t next_secret = 1;
  std::map<session_id, std::uint64_t> secrets;
  for (std::size_t i = 0; i < ops; ++i) {
    CAPTURE(i);
    if (i == snapshot_at) {
      midway = m.snapshot();
      midway_log = log.size();
    }
    const auto roll = g.below(100);
    request req;
    if (roll < 55) {  // put, plain or ephemeral
      req = request{op::put, 0, key_of(g), 1, true, 0, 0, to_bytes(std::to_string(g.below(1000)))};
      if (!md.sessions.empty() && g.below(4) == 0) {
        auto it = std::next(md.sessions.begin(), static_cast<std::ptrdiff_t>(g.below(md.sessions.size())));
        req.session = it->first;
        req.secret = secrets[it->first];
      }
      log.push_back(encode(req));
      auto out = apply_entry(m, log.back());
      REQUIRE(out.code == status::ok);
      auto next = md.states.back();
      md.write(next, req.name, std::string(as_string(req.value)), req.session);
      md.commit(std::move(next), 1);
    } else if (roll < 67) {  // remove one key, or a range
      std::string key = key_of(g), end;
      if (g.below(2)) end = "k" + std::to_string(10 + g.below(31));
      if (!end.empty() && end <= key) std::swap(key, end);
      if (end == key) end.clear();
      req = request{op::remove, 0, key};
      req.expected = to_bytes(end);
      log.push_back(encode(req));
      auto out = apply_entry(m, log.back());
      REQUIRE(out.code == status::ok);
      const auto keys = md.keys_in(key, end);
      CHECK(out.fencing == keys.size());
      if (!keys.empty()) {
        auto next = md.states.back();
        for (auto& k : keys) md.erase(next, k);
        md.commit(std::move(next), keys.size());
      }
    } else if (roll < 77) {  // a transaction: compare a version, put two keys, else remove one
      txn_request t;
      const auto a = key_of(g);
      auto it = md.states.back().find(a);
      const std::uint64_t version = it == md.states.back().end() ? 0 : it->second.version;
      t.compares.push_back(
          {a, txn_compare::target::version, txn_compare::result::equal, {}, g.below(2) ? version : version + 1});
      auto b = key_of(g), c = key_of(g);
      if (b == a) b = "k40";
      t.success = {{txn_op::kind_t::put, a, to_bytes("t" + std::to_string(i)), {}, false},
                   {txn_op::kind_t::put, b, to_bytes("u" + std::to_string(i)), {}, false}};
      t.failure = {{txn_op::kind_t::remove, c, {}, {}, false}};
      req = request{op::txn};
      storage::detail::encode_value(t, req.value);
      log.push_back(encode(req));
      auto out = apply_entry(m, log.back());
      const bool ok = t.compares[0].number == version;
      CHECK(out.code == (ok ? status::ok : status::mismatch));
      auto next = md.states.back();
      if (ok) {
        md.write(next, a, "t" + std::to_string(i), 0);
        md.write(next, b, "u" + std::to_string(i), 0);
        md.commit(std::move(next), 2);
      } else if (next.contains(c)) {
        md.erase(next, c);
        md.commit(std::move(next), 1);
      }
    } else if (roll < 82) {  // open a session
      req = request{op::open_session, 1000 + i, {}, 1, true, 0, 1000};
      req.secret = next_secret++;
      log.push_back(encode(req));
      auto out = apply_entry(m, log.back());
      REQUIRE(out.code == status::ok);
      REQUIRE(out.session == 1000 + i);
      secrets[out.session] = req.secret;
      md.sessions[out.session];
    } else if (roll < 86) {  // end one (closed or expired): its keys go at one revision
      if (md.sessions.empty()) continue;
      auto it = std::next(md.sessions.begin(), static_cast<std::ptrdiff_t>(g.below(md.sessions.size())));
      const auto id = it->first;
      req = request{g.below(2) ? op::close_session : op::expire_session, id};
      req.secret = secrets[id];
      log.push_back(encode(req));
      REQUIRE(apply_entry(m, log.back()).code == status::ok);
      const auto keys = it->second;
      md.sessions.erase(it);
      if (!keys.empty()) {
        auto next = md.states.back();
        for (auto& k : keys) next.erase(k);
        md.commit(std::move(next), keys.size());
      }
    } else if (roll < 90) {  // compact: mostly within the history, sometimes below it or ahead of the revision
      if (!compactions) continue;
      const auto span = md.rev() + 3;
      const auto rev =
          g.below(4) == 0 ? g.below(span) : md.compact_revision() + g.below(span - md.compact_revision() + 1);
      req = request{op::compact};
      req.fencing = rev;
      log.push_back(encode(req));
      auto out = apply_entry(m, log.back());
      CAPTURE(rev);
      if (rev > md.rev()) {
        CHECK(out.code == status::future_revision);
        CHECK(out.generation == md.rev());
        ++st.refused;
      } else if (rev < md.compact_revision()) {
        CHECK(out.code == status::compacted);
        CHECK(out.fencing == md.compact_revision());
        ++st.refused;
      } else {
        CHECK(out.code == status::ok);
        while (!md.kept.empty() && md.kept.front().first < rev) md.drop_front();
        md.compacted = std::max(md.compacted, rev - 1);
        CHECK(out.fencing == md.compact_revision());
        ++st.compactions;
      }
    } else if (roll < 92) {  // this replica restarts from its snapshot
      machine r;
      REQUIRE_FALSE(r.restore(m.snapshot()));
      r.check_invariants();
      CHECK(r.snapshot() == m.snapshot());
      m = std::move(r);
      ++st.restores;
      sample(m, md, g, 20);
      continue;
    } else {  // reads: the whole store, one key, a range, at random revisions
      for (int k = 0; k < 3; ++k) {
        const auto at = g.below(md.rev() + 3);
        if (k == 0)
          check_read(m, md, "k", prefix_end("k"), at);
        else if (k == 1)
          check_read(m, md, key_of(g), {}, at);
        else
          check_read(m, md, "k15", "k27", at);
        ++st.reads;
      }
      continue;
    }
    CHECK(m.revision() == md.rev());
    CHECK(m.compact_revision() == md.compact_revision());
  }
  sweep(m, md);
  st.reads += md.rev() + 2;
  st.revisions += md.rev();
  if (!compactions && md.compacted > 0) ++st.bound_compacted;  // the history's bound alone compacted
  // A replica that caught up from the midway snapshot and applied the rest of the log.
  machine late;
  REQUIRE_FALSE(late.restore(midway));
  for (std::size_t i = midway_log; i < log.size(); ++i) (void)apply_entry(late, log[i]);
  CHECK(late.snapshot() == m.snapshot());
  sample(late, md, g, 100);
}

// A snapshot as format 2 wrote it (no previous values in its history).
struct v2 {
  std::uint64_t tag = machine::snapshot_format_2, fencing = 0, next = 0;
  std::map<session_id, int> sessions;
  std::map<std::string, int> sems, barriers;
  std::map<std::string, int> kv;  // empty
  std::uint64_t revision = 5;
  std::map<std::uint64_t, int> clients;
  std::deque<watch_event> history;
  std::uint64_t compacted = 0;
  template <class A> void serialize(A& ar) {
    ar(tag, fencing, next, sessions, sems, barriers, kv, revision, clients, history, compacted);
  }
};

}  // namespace

TEST_CASE(
    "kv mvcc: reads at every revision equal a reference model's, across compactions, the history's bound and restores, over 30 seeds") {
  run_stats st;
  for (std::uint64_t seed = 1; seed <= 30; ++seed) {
    CAPTURE(seed);
    run_seed(seed, seed == 18 ? 5000 : 600,
             st);  // seed 18: long enough for max_history_events to bite (no explicit compactions)
  }
  MESSAGE(st.revisions << " revisions, " << st.reads << " reads checked, " << st.compactions << " compactions ("
                       << st.refused << " refused), " << st.restores << " restores; the history's bound compacted in "
                       << st.bound_compacted << " seeds");
  CHECK(st.compactions > 100);
  CHECK(st.refused > 20);
  CHECK(st.restores > 100);
  CHECK(st.bound_compacted == 1);
}

TEST_CASE("kv mvcc: the history's bound alone compacts, and reads below it say so") {
  machine m;
  model md;
  for (std::size_t i = 0; i < max_history_events + 500; ++i) {
    auto in =
        encode(request{op::put, 0, "k" + std::to_string(10 + i % 30), 1, true, 0, 0, to_bytes(std::to_string(i))});
    REQUIRE(apply_entry(m, in).code == status::ok);
    auto next = md.states.back();
    md.write(next, "k" + std::to_string(10 + i % 30), std::to_string(i), 0);
    md.commit(std::move(next), 1);
  }
  CHECK(m.history_size() == max_history_events);
  CHECK(m.compact_revision() == 501);
  CHECK(md.compact_revision() == 501);
  CHECK(m.range_at("k", prefix_end("k"), 0, 500).code == status::compacted);
  sweep(m, md);
}

TEST_CASE("kv mvcc: a format-2 snapshot's history serves watches, and reads at a revision start at its revision") {
  // Format 2 had no previous values in its history: write one by hand.
  v2 old;
  for (std::uint64_t r = 1; r <= 5; ++r)
    old.history.push_back({watch_event::kind_t::put, key_value{"a", to_bytes("x"), 1, r, r, false}});
  // (the store itself is empty here: only the history and the revision matter to this test)
  bytes b;
  storage::detail::encode_value(old, b);
  machine r;
  REQUIRE_FALSE(r.restore(b));
  std::uint64_t through = 0;
  auto ev = r.events(1, "a", {}, max_range_bytes, through);
  REQUIRE(ev);
  CHECK(ev->size() == 5);
  CHECK(r.compact_revision() == 5);
  CHECK(r.range_at("a", {}, 0, 4).code == status::compacted);
  CHECK(r.range_at("a", {}, 0, 5).code == status::ok);
  // Later writes carry previous values: reads from the snapshot's revision on work.
  apply_entry(r, encode(request{op::put, 0, "b", 1, true, 0, 0, to_bytes("1")}));
  auto at5 = r.range_at("b", {}, 0, 5);
  CHECK(at5.code == status::ok);
  CHECK(at5.result.kvs.empty());
  CHECK(r.range_at("b", {}, 0, 6).result.kvs.size() == 1);
  r.check_invariants();
}

}  // namespace test_kv_mvcc
