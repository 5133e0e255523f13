// Scripted Raft schedules: the paper's Figures 7 and 8 and the single-server
// membership change bug (Ongaro, raft-dev, 2015), each driven step by step
// with the simulator's fault controls. Each fails when the rule it is about
// is taken out of raft.hpp:
//   - Figure 7: AppendEntries' consistency check (prev_index, prev_term);
//   - Figure 8: a leader commits by counting replicas only entries of its
//     own term;
//   - membership: a leader changes the configuration only once it has
//     committed an entry of its term.
#include "raft_harness.hpp"
#include "../seeds.hpp"

namespace test_raft_scripted {

using namespace raft_test;

namespace {

/// A faultless cluster whose schedule the test writes, with Raft's safety
/// properties checked after every event: one leader per term, and an index
/// committed anywhere holds the same entry everywhere, for ever.
class scripted {
 public:
  /// Nodes [0, members) form the first configuration; the others start
  /// empty (to be added). `tweak` adjusts one node's configuration, `preload`
  /// writes a node's disk before its first start.
  scripted(std::uint64_t seed, std::uint32_t nodes, std::uint32_t members,
           std::function<void(std::uint32_t, raft_config&)> tweak = {},
           std::function<void(std::uint32_t, storage::durable_storage&)> preload = {},
           sim::latency delay = sim::latency::uniform(1ms, 5ms))
      : w_(seed, make_config(delay)), preload_(std::move(preload)) {
    raft_config rc;
    for (std::uint32_t i = 0; i < members; ++i) rc.members.push_back(address::sim(i));
    rc.election_timeout_min = 100ms;
    rc.election_timeout_max = 200ms;
    rc.heartbeat_interval = 30ms;
    rc.snapshot_every = 100'000;  // the schedules are about logs, not snapshots
    for (std::uint32_t i = 0; i < nodes; ++i) {
      configs_.push_back(rc);
      if (i >= members) configs_.back().members.clear();
      if (tweak) tweak(i, configs_.back());
    }
    preloaded_.assign(nodes, false);
    w_.add_nodes(nodes, [this](sim::node_context& n) {
      const auto i = n.index();
      if (preload_ && !preloaded_[i]) {
        preloaded_[i] = true;
        storage::durable_storage s(n.world().disk_of(i));
        preload_(i, s);
        REQUIRE_FALSE(s.sync());
      }
      n.add<node_t>(pid, configs_[i], storage::durable_storage(n.world().disk_of(i)), id_log{});
    });
    w_.after_event([this] { after_event(); });
    w_.on_trace([this](const sim::trace_event& e) {
      if (e.what != sim::trace_event::kind::send || e.protocol != pid) return;
      for (auto& f : send_hooks_) f(e);
    });
  }

  sim::simulator& world() { return w_; }
  node_t* node(std::uint32_t i) { return w_.find<node_t>(i, pid); }
  std::optional<std::uint32_t> leader_among(const std::vector<std::uint32_t>& who) {
    for (auto i : who)
      if (auto* r = node(i); r && r->is_leader()) return i;
    return std::nullopt;
  }
  /// Runs `action` once, right after the first event after which `when` holds.
  void on(std::function<bool()> when, std::function<void()> action) {
    triggers_.push_back({std::move(when), std::move(action)});
  }
  /// Calls `hook` with every Raft message as it is sent, before the network
  /// takes it: a link blocked there drops that very message, where `on`
  /// acts only after the event that sent it (a new leader's first
  /// AppendEntries, which the schedules must cut precisely).
  void on_send(std::function<void(const sim::trace_event&)> hook) { send_hooks_.push_back(std::move(hook)); }
  const std::vector<std::string>& violations() const { return violations_; }
  std::int64_t counter(std::string_view name) { return w_.metrics().counter(pid, name); }

 private:
  static sim::config make_config(sim::latency delay) {
    sim::config c;
    c.network.delay = delay;
    c.network.loss = 0;
    c.network.duplicate = 0;
    c.network.reorder = 0;
    return c;
  }

  void after_event() {
    for (std::uint32_t i = 0; i < configs_.size(); ++i) {
      auto* r = node(i);
      if (!r) continue;
      if (r->is_leader()) {
        auto [it, fresh] = leader_of_term_.try_emplace(r->current_term(), i);
        if (it->second != i && reported_terms_.insert(r->current_term()).second)
          violations_.push_back("term " + std::to_string(r->current_term()) + " has two leaders");
      }
      const auto& s = r->store();
      for (auto k = s.first_index(); k <= r->commit_index(); ++k) {
        const auto term = *s.term_at(k);
        auto [it, fresh] = committed_.try_emplace(k, term);
        if (it->second != term && reported_.insert(k).second)
          violations_.push_back("index " + std::to_string(k) + " committed with term " + std::to_string(it->second) +
                                ", and on node " + std::to_string(i) + " with term " + std::to_string(term));
      }
    }
    for (std::size_t t = 0; t < triggers_.size(); ++t) {
      if (triggers_[t].done || !triggers_[t].when()) continue;
      triggers_[t].done = true;
      triggers_[t].action();
    }
  }

  struct trigger {
    std::function<bool()> when;
    std::function<void()> action;
    bool done = false;
  };
  sim::simulator w_;
  std::vector<raft_config> configs_;
  std::function<void(std::uint32_t, storage::durable_storage&)> preload_;
  std::vector<bool> preloaded_;
  std::vector<trigger> triggers_;
  std::vector<std::function<void(const sim::trace_event&)>> send_hooks_;
  std::map<std::uint64_t, std::uint64_t> committed_;
  std::map<std::uint64_t, std::uint32_t> leader_of_term_;
  std::vector<std::string> violations_;
  std::set<std::uint64_t> reported_, reported_terms_;
};

bytes command_bytes(std::uint64_t id) {
  bytes out;
  storage::detail::encode_value(command{0, 0, encode_id(id), command_kind::apply}, out);
  return out;
}

std::vector<std::uint64_t> terms_of(const node_t& r) {
  std::vector<std::uint64_t> t;
  for (auto k = r.store().first_index(); k <= r.store().last_index(); ++k) t.push_back(*r.store().term_at(k));
  return t;
}

}  // namespace

// A leader answers a follower's acknowledgement with more entries only when
// it has synced entries to send (send_append sends nothing else). An
// acknowledgement that arrives between a proposal and its group-commit flush
// gets no AppendEntries: the flush, already armed, sends the new entry to
// every follower. Sent anyway, that AppendEntries carried no entry and cost a
// message and its answer per proposal with one client (over TCP, one in
// seven of the leader's frames). Constant delays put the second proposal at
// the instant the first one's acknowledgements arrive, just before them.
TEST_CASE("raft: an acknowledgement arriving between a proposal and its flush gets no empty AppendEntries") {
  for (std::uint64_t seed = 1; seed <= dcp::test::last_seed(1, 6); ++seed) {
    scripted s(
        seed, 3, 3,
        [](std::uint32_t, raft_config& c) {
          c.heartbeat_interval = 5s;
          c.election_timeout_min = 10s;
          c.election_timeout_max = 20s;
        },
        {}, sim::latency::constant(2ms));
    auto& w = s.world();
    const std::vector<std::uint32_t> all{0, 1, 2};
    w.run_until([&] { return s.leader_among(all) && s.node(*s.leader_among(all))->commit_index() >= 1; },
                w.now() + 60s);
    const auto L = s.leader_among(all);
    REQUIRE(L);
    w.run_for(20ms);  // the no-op's acknowledgements are in
    std::size_t appends = 0, answers = 0;
    s.on_send([&](const sim::trace_event& e) {
      if (e.from == *L && e.type == raft_msg::append::wire_id) ++appends;
      if (e.to == *L && e.type == raft_msg::append_reply::wire_id) ++answers;
    });
    int applied = 0;
    s.node(*L)->propose(encode_id(1), [&](result<bytes> r) { applied += r.has_value(); });
    w.at(w.now() + 4ms, [&] { s.node(*L)->propose(encode_id(2), [&](result<bytes> r) { applied += r.has_value(); }); });
    w.run_for(30ms);
    CHECK(applied == 2);
    CHECK(appends == 4);  // one per follower per proposal
    CHECK(answers == 4);
    CHECK(s.violations().empty());
  }
}

// Figure 7 of the Raft paper: when the leader of term 8 comes to power, its
// followers' logs differ from its own in every way the figure shows: (a) and
// (b) miss entries, (c) and (d) hold extra uncommitted ones, (e) and (f)
// both miss some and hold others of terms the leader never saw. The leader
// finds, for each, the last index where they agree (the consistency check,
// backing off next_index) and overwrites everything after it.
TEST_CASE("raft: Figure 7, the leader brings every diverging follower's log to its own") {
  const std::vector<std::vector<std::uint64_t>> logs = {
      {1, 1, 1, 4, 4, 5, 5, 6, 6, 6},        // the leader, term 8
      {1, 1, 1, 4, 4, 5, 5, 6, 6},           // (a)
      {1, 1, 1, 4},                          // (b)
      {1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6},     // (c)
      {1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7},  // (d)
      {1, 1, 1, 4, 4, 4, 4},                 // (e)
      {1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3},     // (f)
  };
  auto tweak = [](std::uint32_t i, raft_config& c) {
    if (i != 0) {  // the others wait long enough for node 0 to campaign first
      c.election_timeout_min = 400ms;
      c.election_timeout_max = 800ms;
    } else {
      c.election_timeout_min = 50ms;
      c.election_timeout_max = 60ms;
      c.heartbeat_interval = 20ms;
    }
  };
  auto preload = [&](std::uint32_t i, storage::durable_storage& s) {
    const auto& terms = logs[i];
    for (std::uint64_t k = 1; k <= terms.size(); ++k)  // the entry names its index and term (Log Matching)
      REQUIRE_FALSE(s.append({k, terms[k - 1], entry_kind::command, command_bytes(k * 100 + terms[k - 1])}));
    REQUIRE_FALSE(s.save_state({7, std::nullopt}));
  };
  scripted s(7, 7, 7, tweak, preload);
  s.world().run_for(2s);
  auto* leader = s.node(0);
  REQUIRE(leader != nullptr);
  REQUIRE(leader->is_leader());
  CHECK(leader->current_term() == 8);
  // The leader's log: its ten entries, then its no-op of term 8.
  auto expected = logs[0];
  expected.push_back(8);
  CHECK(terms_of(*leader) == expected);
  CHECK(leader->commit_index() == 11);
  for (std::uint32_t i = 1; i < 7; ++i) {
    CAPTURE(i);
    auto* r = s.node(i);
    REQUIRE(r != nullptr);
    CHECK(terms_of(*r) == expected);
    for (std::uint64_t k = 1; k <= expected.size(); ++k) CHECK(r->store().entry(k) == leader->store().entry(k));
    CHECK(r->state_machine().ids == leader->state_machine().ids);
  }
  CHECK(leader->state_machine().ids.size() == 10);
  CHECK(s.violations().empty());
  CHECK(s.counter("append_rejected") > 0);  // the consistency check did the work
}

// Figure 8 of the Raft paper, with a leader elected in each step:
//  (a) A leads, replicates an entry at index 2 to B only, and crashes;
//  (b) G is elected by the others, appends its own entry at index 2 (a later
//      term) that reaches no one, and crashes;
//  (c) A (or B) is elected again and replicates its index 2 to a third
//      server P: it is now on a majority, but of an earlier term;
//  (d) G comes back, is elected by B and Q (its last term is higher), and
//      overwrites index 2 everywhere.
// So the leader in (c) must not count replicas of the entry of an earlier
// term; it commits it only with an entry of its own term. One entry per
// message makes the replica count reach the old entry before the new one.
TEST_CASE("raft: Figure 8, a leader never commits an entry of an earlier term by counting replicas") {
  scripted s(8, 5, 5, [](std::uint32_t, raft_config& c) { c.max_entries_per_message = 1; });
  auto& w = s.world();
  const std::vector<std::uint32_t> all{0, 1, 2, 3, 4};
  w.run_for(1s);
  const auto a_opt = s.leader_among(all);
  REQUIRE(a_opt);
  const std::uint32_t A = *a_opt;
  REQUIRE(s.node(A)->commit_index() == 1);  // its no-op
  std::vector<std::uint32_t> others;
  for (auto i : all)
    if (i != A) others.push_back(i);
  const std::uint32_t B = others[0];
  const std::vector<std::uint32_t> group{others[1], others[2], others[3]};
  const auto term_a = s.node(A)->current_term();

  // (a) and (b): A reaches B only; the other three elect G, which reaches no one.
  std::optional<std::uint32_t> G;
  auto in_group = [&](std::uint32_t i) { return std::find(group.begin(), group.end(), i) != group.end(); };
  s.on_send([&](const sim::trace_event& e) {  // G's first AppendEntries: G leads, and reaches no one from now on
    if (G || e.type != raft_msg::append::wire_id || !in_group(e.from)) return;
    G = e.from;
    for (auto i : group)
      if (i != *G) w.block(*G, i);
  });
  w.partition({{A, B}});
  s.node(A)->propose(encode_id(1), [](result<bytes>) {});
  w.run_until([&] { return s.node(B)->store().last_index() == 2; }, w.now() + 1s);
  REQUIRE(s.node(B)->store().term_at(2) == term_a);
  w.crash(A);
  w.run_until([&] { return G && s.node(*G)->store().last_index() == 2; }, w.now() + 2s);
  REQUIRE(G);
  w.run_for(1ms);  // G's group commit has synced the entry (a crash keeps only what is synced)
  const auto term_g = s.node(*G)->current_term();
  REQUIRE(s.node(*G)->store().term_at(2) == term_g);
  REQUIRE(term_g > term_a);
  w.crash(*G);
  std::vector<std::uint32_t> pq;
  for (auto i : group)
    if (i != *G) pq.push_back(i);
  const std::uint32_t P = pq.at(0), Q = pq.at(1);

  // (c): A restarts; A or B leads (their logs are alike), reaching P only.
  // The other of A/B gets W's first AppendEntries only (the election's
  // heartbeat, which carries no entry: it acknowledges index 2, and so
  // counts towards it), not the no-op of W's term that follows.
  std::optional<std::uint32_t> W;
  std::size_t to_other = 0;
  s.on_send([&](const sim::trace_event& e) {
    if (e.type != raft_msg::append::wire_id || (e.from != A && e.from != B)) return;
    W = e.from;
    if (e.to == (*W == A ? B : A) && ++to_other == 2) w.block(*W, e.to);
  });
  w.heal();
  w.partition({{A, B, P}});
  w.restart(A);
  // ... and crashes once it has counted index 2 on a majority, or once P
  // holds its entry of the new term (then the count did not commit index 2).
  s.on(
      [&] {
        if (!W) return false;
        auto* p = s.node(P);
        auto* leader = s.node(*W);
        return (leader && leader->commit_index() >= 2) || (p && p->store().last_index() >= 3);
      },
      [&] { w.crash(*W); });
  w.run_until([&] { return W && !w.is_up(*W); }, w.now() + 3s);
  REQUIRE(W);
  REQUIRE(!w.is_up(*W));
  CHECK(s.node(P)->store().term_at(2) == term_a);  // index 2 of term_a is on W, the other of A/B, and P

  // (d): G comes back and is elected by the other of A/B and Q.
  const std::uint32_t other = *W == A ? B : A;
  w.heal();
  w.partition({{*G, other, Q}});
  w.restart(*G);
  w.run_until([&] { return s.node(*G) && s.node(*G)->is_leader() && s.node(*G)->commit_index() >= 3; }, w.now() + 3s);
  CHECK(s.node(*G)->is_leader());
  // Everyone back: the logs converge, and no committed entry ever changed.
  w.heal();
  for (auto i : all) w.restart(i);
  w.run_for(2s);
  for (const auto& v : s.violations()) MESSAGE(v);
  CHECK(s.violations().empty());
  CHECK(s.counter("conflict_below_commit") == 0);
  const auto reference = terms_of(*s.node(0));
  for (auto i : all) CHECK(terms_of(*s.node(i)) == reference);
}

// The single-server membership change bug (Ongaro, raft-dev, "bug in
// single-server membership changes", July 2015), with C0 = {S1..S4}:
//   S1 leads, appends C1 = C0 + D, which reaches D only, and crashes;
//   S2 is elected by S2, S3, S4 and at once appends C2 = C0 + E (its no-op
//   not yet committed); C2 commits on S2, S3 and E, a majority of C2;
//   S1 comes back on the other side of a partition with S4 and D, a majority
//   of C1, and is elected (S4 never got an entry of S2's term): it commits
//   C1 over the committed C2.
// The fix: a leader changes the configuration only after it has committed an
// entry of its own term (its no-op), which needs a majority of C0 and so
// reaches S4 (or never commits while S4 is cut off).
TEST_CASE("raft: a leader changes membership only after committing an entry of its term (Ongaro 2015)") {
  scripted s(9, 6, 4);  // nodes 4 (D) and 5 (E) start outside the configuration
  auto& w = s.world();
  const std::uint32_t D = 4, E = 5;
  w.run_for(1s);
  const auto s1_opt = s.leader_among({0, 1, 2, 3});
  REQUIRE(s1_opt);
  const std::uint32_t S1 = *s1_opt;
  std::vector<std::uint32_t> rest;
  for (std::uint32_t i = 0; i < 4; ++i)
    if (i != S1) rest.push_back(i);

  // S1 adds D, reaching D only, and crashes.
  w.partition({{S1, D}});
  s.node(S1)->add_member(address::sim(D), [](result<bytes>) {});
  const auto c1_index = s.node(S1)->store().last_index();
  REQUIRE(s.node(S1)->members().size() == 5);
  w.run_until([&] { return s.node(D)->store().last_index() >= c1_index; }, w.now() + 1s);
  REQUIRE(s.node(D)->store().last_index() == c1_index);
  w.crash(S1);

  // The next leader proposes adding E the moment it is elected; the one of
  // the others that is to side with S1 (S4) hears nothing from it after the
  // first heartbeat.
  std::optional<std::uint32_t> S2;
  std::uint32_t S4 = 0;
  std::optional<std::error_code> add_e;
  std::uint64_t c2_index = 0;
  std::size_t to_s4 = 0;
  s.on_send([&](const sim::trace_event& e) {  // S2's AppendEntries: S4 gets the first (the election's heartbeat) only
    if (e.type != raft_msg::append::wire_id || std::find(rest.begin(), rest.end(), e.from) == rest.end()) return;
    const auto s4 = rest[0] == e.from ? rest[1] : rest[0];
    if (e.to == s4 && ++to_s4 == 2) w.block(e.from, s4);
  });
  s.on([&] { return s.leader_among(rest).has_value(); },
       [&] {
         S2 = s.leader_among(rest);
         S4 = rest[0] == *S2 ? rest[1] : rest[0];
         s.node(*S2)->add_member(address::sim(E), [&](result<bytes> r) { add_e = r ? std::error_code{} : r.error(); });
         if (s.node(*S2)->members().size() == 5) c2_index = s.node(*S2)->store().last_index();
       });
  w.run_until([&] { return S2.has_value(); }, w.now() + 2s);
  REQUIRE(S2);
  w.run_for(150ms);  // under check-quorum's period: S2 still leads
  if (c2_index != 0) MESSAGE("C2 appended at " << c2_index << "; S2 commit " << s.node(*S2)->commit_index());
  // With the rule, the change is refused while the no-op is uncommitted.
  CHECK(c2_index == 0);
  CHECK((add_e && *add_e == consensus::errc::config_change_pending));

  // The old side: S1 back with S4 and D, a majority of C1.
  w.partition({{S1, S4, D}});
  w.restart(S1);
  w.run_until([&] { return s.node(S1)->is_leader() && s.node(S1)->commit_index() > c1_index; }, w.now() + 3s);
  CHECK(s.node(S1)->is_leader());                // the old side did win ...
  CHECK(s.node(S1)->commit_index() > c1_index);  // ... and committed C1
  w.heal();
  w.run_for(2s);
  for (const auto& v : s.violations()) MESSAGE(v);
  CHECK(s.violations().empty());  // ... over nothing committed
  CHECK(s.counter("conflict_below_commit") == 0);
}

// A new leader counts every peer as heard at its first check-quorum (as etcd
// marks a new peer recently active: the check may fire before a peer had a
// chance to answer), so a follower silent for one check period does not
// depose it; a quorum silent for two periods still does. (sync_peers once
// set the peer's `sent` index instead of `heard_since_check`.)
TEST_CASE("raft: a new leader's first check-quorum counts its peers as heard; a quorum silent for longer deposes it") {
  for (bool answers_again : {true, false}) {
    CAPTURE(answers_again);
    scripted s(11, 3, 3);
    auto& w = s.world();
    w.run_for(1s);
    const auto first = s.leader_among({0, 1, 2});
    REQUIRE(first);
    std::vector<std::uint32_t> rest;
    for (std::uint32_t i = 0; i < 3; ++i)
      if (i != *first) rest.push_back(i);
    const auto step_downs = s.counter("check_quorum_step_down");
    // The next leader needs both survivors; the moment it is elected, the
    // other one's answers stop reaching it, for 250 ms (longer than one
    // check period, 200 ms) or for good.
    std::optional<std::uint32_t> next;
    time_point elected{};
    s.on([&] { return s.leader_among(rest).has_value(); },
         [&] {
           next = s.leader_among(rest);
           elected = w.now();
           w.block(*next == rest[0] ? rest[1] : rest[0], *next);
         });
    w.crash(*first);
    w.run_until([&] { return next.has_value(); }, w.now() + 3s);
    REQUIRE(next);
    const auto term = s.node(*next)->current_term();
    w.run_until(elected + 250ms);
    if (answers_again) w.heal();
    w.run_until(elected + 650ms);
    if (answers_again) {
      CHECK(s.node(*next)->is_leader());
      CHECK(s.node(*next)->current_term() == term);
      CHECK(s.counter("check_quorum_step_down") == step_downs);
    } else {
      CHECK_FALSE(s.node(*next)->is_leader());
      CHECK(s.counter("check_quorum_step_down") > step_downs);
    }
    CHECK(s.violations().empty());
  }
}

// The other side of "a member follows only members": a member cut off while
// the leader added D, and back once D leads, knows nothing of D. It must
// still follow D (the dissertation, 4.1): its election timer fires, the
// pre-vote answers of the members it knows carry D's term, it steps up to
// that term, and then takes D's AppendEntries (one leader per term), whose
// log soon names D. The seeds are tried until D is the one elected.
TEST_CASE("raft: a member that missed the entry adding the new leader still follows it") {
  bool seen = false;
  for (std::uint64_t seed = 1; seed <= 60 && !seen; ++seed) {
    CAPTURE(seed);
    scripted s(seed, 6, 5);  // node 5 (D) starts outside the configuration
    auto& w = s.world();
    const std::uint32_t D = 5;
    w.run_for(1s);
    const auto l = s.leader_among({0, 1, 2, 3, 4});
    REQUIRE(l);
    const std::uint32_t L = *l, M = (L + 1) % 5;
    w.partition({{M}});
    s.node(L)->add_member(address::sim(D), [](result<bytes>) {});
    const auto config_index = s.node(L)->store().last_index();
    w.run_until([&] { return s.node(L)->commit_index() >= config_index; }, w.now() + 2s);
    REQUIRE(s.node(L)->commit_index() >= config_index);
    w.crash(L);
    std::vector<std::uint32_t> rest;
    for (std::uint32_t i = 0; i < 6; ++i)
      if (i != L && i != M) rest.push_back(i);
    w.run_until([&] { return s.leader_among(rest).has_value(); }, w.now() + 5s);
    REQUIRE(s.leader_among(rest));
    if (*s.leader_among(rest) != D) continue;  // the case is about D leading
    seen = true;
    const auto& known = s.node(M)->members();
    REQUIRE(std::find(known.begin(), known.end(), address::sim(D)) == known.end());  // M has never heard of D
    std::optional<result<bytes>> done;
    s.node(D)->propose(command_bytes(7), [&](result<bytes> r) { done = std::move(r); });
    w.heal();
    w.run_until(
        [&] {
          return done && s.node(M)->leader() == std::optional<address>(address::sim(D)) &&
              s.node(M)->commit_index() >= s.node(D)->commit_index();
        },
        w.now() + 5s);
    CHECK(done);
    CHECK(s.node(M)->leader() == std::optional<address>(address::sim(D)));
    CHECK(s.node(M)->commit_index() >= s.node(D)->commit_index());
    CHECK(s.node(M)->members().size() == 6);
    CHECK(s.counter("not_a_member") > 0);  // D's first AppendEntries, of a term M had not reached, were refused
    CHECK(s.violations().empty());
  }
  CHECK(seen);
}

// A read that no quorum confirms within an election timeout fails with
// timed_out, and its callback may issue reads at once (a retry, here two).
// Before raft/read_queue.hpp, check-quorum ran those callbacks while
// iterating the vector of reads, and reads issued from them were pushed onto
// it under the iterator: once it reallocated, the loop read freed memory
// (AddressSanitizer: heap-use-after-free). The followers' answers are slowed
// step by step (so the leader never misses a check period) to 500 ms one
// way: a read's round is acknowledged only after the check that times it
// out. Then the answers speed up again, and every read is answered once.
TEST_CASE("raft: a read that times out may issue reads from its callback; every read is answered exactly once") {
  scripted s(5, 3, 3);
  auto& w = s.world();
  w.run_for(1s);
  const auto l = s.leader_among({0, 1, 2});
  REQUIRE(l);
  auto* leader = s.node(*l);
  const auto term = leader->current_term();
  auto slow_answers = [&](std::int64_t ms) {
    for (std::uint32_t f = 0; f < 3; ++f)
      if (f != *l) w.set_link(f, *l, sim::link{sim::latency::constant(std::chrono::milliseconds(ms))});
  };
  for (std::int64_t ms = 15; ms <= 500; ms += 15) {
    slow_answers(ms);
    w.run_for(20ms);
  }
  REQUIRE(leader->is_leader());
  std::size_t issued = 0, answered = 0, ok = 0, timed_out = 0;
  std::function<void(int)> read = [&](int generation) {
    ++issued;
    leader->read_index([&, generation](result<std::uint64_t> r) {
      ++answered;
      if (r) return void(++ok);
      REQUIRE(r.error() == dcp::make_error_code(dcp::errc::timed_out));
      ++timed_out;
      if (generation == 0) {  // the first generation asks again, twice
        read(1);
        read(1);
      }
    });
  };
  for (int i = 0; i < 20; ++i) read(0);
  w.run_for(1s);
  for (std::int64_t ms = 500; ms >= 1; ms -= 15) {
    slow_answers(ms);
    w.run_for(20ms);
  }
  slow_answers(1);
  w.run_for(1s);
  CHECK(leader->is_leader());
  CHECK(leader->current_term() == term);
  CHECK(timed_out >= 20);  // the path under test ran
  CHECK(issued == 60);
  CHECK(answered == issued);
  CHECK(s.violations().empty());
}

}  // namespace test_raft_scripted
