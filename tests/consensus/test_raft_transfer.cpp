// Leadership transfer (dissertation 3.10) and learners (non-voting members):
// what each promises, on a simulated cluster whose safety (one leader per
// term, committed entries never change, each replica's own invariants) is
// checked after every event, over seeds, with loss and crashes where the
// property must hold under them. The sweep with every fault is in
// "raft: safety with leadership transfers and learners ..." (raft_harness.hpp).
#include "raft_harness.hpp"

namespace test_raft_transfer {

using namespace raft_test;

namespace {

/// A rule that trusts its caller to pass voters only: it counts every acker.
/// Raft must never hand it a learner (has_quorum filters), or a learner
/// would count towards commit and check-quorum.
struct counts_every_acker {
  bool is_quorum(std::span<const address> members, std::span<const address> ackers) const {
    return 2 * ackers.size() > members.size();
  }
};

template <class Quorum = simple_majority> class group {
 public:
  using node = raft<sim::env, id_log, storage::durable_storage, Quorum>;

  /// Nodes [0, voters) form the first configuration; the others start
  /// outside it (to be added as learners).
  group(std::uint64_t seed, std::uint32_t nodes, std::uint32_t voters, double loss = 0,
        std::uint64_t snapshot_every = 100'000)
      : w_(seed, make_config(loss)), nodes_(nodes) {
    for (std::uint32_t i = 0; i < voters; ++i) rc_.members.push_back(address::sim(i));
    rc_.election_timeout_min = 100ms;
    rc_.election_timeout_max = 200ms;
    rc_.heartbeat_interval = 30ms;
    rc_.snapshot_every = snapshot_every;
    w_.add_nodes(nodes, [this](sim::node_context& n) {
      n.add<node>(pid, rc_, storage::durable_storage(n.world().disk_of(n.index())), id_log{});
    });
    w_.after_event([this] { after_event(); });
  }

  sim::simulator& world() { return w_; }
  const raft_config& config() const { return rc_; }
  node* at(std::uint32_t i) { return w_.find<node>(i, pid); }
  std::optional<std::uint32_t> leader() {
    std::optional<std::uint32_t> best;
    for (std::uint32_t i = 0; i < nodes_; ++i)
      if (auto* r = at(i); r && r->is_leader() && (!best || r->current_term() > at(*best)->current_term())) best = i;
    return best;
  }
  std::uint32_t wait_leader() {
    w_.run_until([&] { return leader().has_value(); }, w_.now() + 5s);
    REQUIRE(leader().has_value());
    return *leader();
  }
  /// Proposes `n` commands at node i (results ignored).
  void propose(std::uint32_t i, int n) {
    for (int k = 0; k < n; ++k) at(i)->propose(encode_id(++next_id_), [](result<bytes>) {});
  }
  /// Runs a change at the leader to completion (retrying while refused as pending).
  void change(std::function<void(node&, typename node::propose_callback)> op) {
    for (int attempt = 0; attempt < 50; ++attempt) {
      std::optional<std::error_code> out;
      op(*at(wait_leader()), [&](result<bytes> r) { out = r ? std::error_code{} : r.error(); });
      w_.run_until([&] { return out.has_value(); }, w_.now() + 2s);
      if (out && !*out) return;
      w_.run_for(50ms);
    }
    FAIL("a membership change never completed");
  }
  std::uint64_t max_commit() {
    std::uint64_t c = 0;
    for (std::uint32_t i = 0; i < nodes_; ++i)
      if (auto* r = at(i)) c = std::max(c, r->commit_index());
    return c;
  }
  /// Nodes that must never campaign (learners, strangers).
  std::set<std::uint32_t> never_campaign;
  std::uint64_t campaigns_by_non_voters = 0;

 private:
  static sim::config make_config(double loss) {
    sim::config c;
    c.network.delay = sim::latency::uniform(1ms, 5ms);
    c.network.loss = loss;
    c.network.duplicate = loss / 2;
    c.network.reorder = loss;
    c.network.reorder_delay = 10ms;
    return c;
  }
  void after_event() {
    for (std::uint32_t i = 0; i < nodes_; ++i) {
      auto* r = at(i);
      if (!r) continue;
      r->check_invariants();
      if (r->role() != raft_role::follower && never_campaign.contains(i)) ++campaigns_by_non_voters;
      if (r->is_leader()) {
        const auto it = leader_of_term_.try_emplace(r->current_term(), i).first;
        INFO("term " << r->current_term() << " has leaders " << it->second << " and " << i);
        REQUIRE(it->second == i);
      }
      const auto& s = r->store();
      for (auto k = s.first_index(); k <= r->commit_index(); ++k) {
        const auto it = committed_.try_emplace(k, *s.term_at(k)).first;
        INFO("index " << k << " committed with two terms");
        REQUIRE(it->second == *s.term_at(k));
      }
    }
  }

  sim::simulator w_;
  std::uint32_t nodes_;
  raft_config rc_;
  std::uint64_t next_id_ = 0;
  std::map<std::uint64_t, std::uint32_t> leader_of_term_;
  std::map<std::uint64_t, std::uint64_t> committed_;
};

struct old_vote_request {  // before leadership transfer
  std::uint64_t term = 0, last_index = 0, last_term = 0;
  bool pre_vote = false;
  template <class A> void serialize(A& ar) { ar(term, last_index, last_term, pre_vote); }
};

}  // namespace

TEST_CASE("raft: a leadership transfer to a lagging voter completes, and it leads within an election timeout") {
  duration worst{}, total{};
  const auto run = raft_test::seeds(1, 60);
  for (auto seed : run) {
    CAPTURE(seed);
    const std::uint32_t n = seed % 2 ? 3 : 5;
    group<> g(seed, n, n);
    const auto old = g.wait_leader();
    g.propose(old, 10);
    g.world().run_for(100ms);
    // The target misses the last entries: the leader must bring it up to date first.
    const auto target = (old + 1 + static_cast<std::uint32_t>(seed % (n - 1))) % n;
    g.world().block(old, target);
    g.propose(old, 20);
    g.world().run_for(20ms);
    g.world().heal();
    const auto started = g.world().now();
    std::optional<std::error_code> out;
    g.at(old)->transfer_leadership(address::sim(target), [&](std::error_code ec) { out = ec; });
    REQUIRE(g.at(old)->transferring());
    // Proposals wait for the new leader: refused with an error saying so.
    std::optional<std::error_code> refused;
    g.at(old)->propose(encode_id(999'999), [&](result<bytes> r) { refused = r ? std::error_code{} : r.error(); });
    g.world().run_posted();  // after the call
    REQUIRE(refused == make_error_code(consensus::errc::leadership_transfer_in_progress));
    g.world().run_until([&] { return g.at(target)->is_leader(); }, started + g.config().election_timeout_max);
    REQUIRE(g.at(target)->is_leader());
    worst = std::max(worst, g.world().now() - started);
    total += g.world().now() - started;
    // The old leader hears of it (the target's vote request, or its first append).
    g.world().run_until([&] { return out.has_value(); }, g.world().now() + 100ms);
    REQUIRE(out == std::error_code{});
    REQUIRE_FALSE(g.at(old)->transferring());
    // The new leader has every entry the old one had, and commits new ones.
    const auto before = g.at(target)->commit_index();
    g.propose(target, 3);
    g.world().run_for(100ms);
    REQUIRE(g.at(target)->commit_index() >= before + 3);
  }
  MESSAGE("leadership moved in " << std::chrono::duration_cast<std::chrono::microseconds>(total).count() / run.size()
                                 << " us on average, "
                                 << std::chrono::duration_cast<std::chrono::microseconds>(worst).count()
                                 << " us at worst (election timeout 100-200 ms)");
}

TEST_CASE("raft: leadership transfer refuses what cannot work, and aborts after an election timeout") {
  group<> g(7, 4, 3);
  const auto l = g.wait_leader();
  auto call = [&](std::uint32_t i, address target) {
    std::optional<std::error_code> out;
    g.at(i)->transfer_leadership(target, [&](std::error_code ec) { out = ec; });
    REQUIRE_FALSE(out.has_value());  // not inside the call
    g.world().run_posted();
    REQUIRE(out.has_value());  // but right after it
    return *out;
  };
  const auto other = (l + 1) % 3;
  CHECK(call(l, address::sim(l)) == make_error_code(consensus::errc::already_leader));
  CHECK(call(other, address::sim(l)) == dcp::make_error_code(dcp::errc::not_leader));
  CHECK(call(l, address::sim(3)) == make_error_code(consensus::errc::not_a_voter));  // a stranger
  g.change([](auto& r, auto done) { r.add_learner(address::sim(3), std::move(done)); });
  const auto l2 = g.wait_leader();
  CHECK(call(l2, address::sim(3)) == make_error_code(consensus::errc::not_a_voter));  // a learner
  // An unreachable target: the transfer aborts after an election timeout,
  // the leader still leads and takes proposals again.
  const auto target = (l2 + 1) % 3;
  g.world().isolate(target);
  std::optional<std::error_code> out;
  g.at(l2)->transfer_leadership(address::sim(target), [&](std::error_code ec) { out = ec; });
  CHECK(call(l2, address::sim((l2 + 2) % 3)) == make_error_code(consensus::errc::leadership_transfer_in_progress));
  std::optional<std::error_code> change_refused;
  g.at(l2)->remove_member(address::sim(3),
                          [&](result<bytes> r) { change_refused = r ? std::error_code{} : r.error(); });
  g.world().run_posted();
  CHECK(change_refused == make_error_code(consensus::errc::leadership_transfer_in_progress));
  const auto started = g.world().now();
  g.world().run_until([&] { return out.has_value(); }, started + 1s);
  REQUIRE(out == make_error_code(consensus::errc::leadership_transfer_failed));
  CHECK(g.world().now() - started <= g.config().election_timeout_max);
  REQUIRE(g.at(l2)->is_leader());
  REQUIRE_FALSE(g.at(l2)->transferring());
  std::optional<bool> ok;
  g.at(l2)->propose(encode_id(1), [&](result<bytes> r) { ok = r.has_value(); });
  g.world().run_until([&] { return ok.has_value(); }, g.world().now() + 1s);
  CHECK(ok == true);
}

// Learners never count: with both learners up and the voters' majority
// down, nothing commits and the leader steps down (check-quorum), whatever
// the quorum rule does with the ackers it is given; learners never campaign.
TEST_CASE_TEMPLATE("raft: learners never count towards commit or check-quorum, and never campaign", Quorum,
                   simple_majority, counts_every_acker) {
  const auto run = raft_test::seeds(1, 12);
  for (auto seed : run) {
    CAPTURE(seed);
    group<Quorum> g(seed, 5, 3, seed % 2 ? 0.05 : 0.0);
    g.never_campaign = {3, 4};
    g.change([](auto& r, auto done) { r.add_learner(address::sim(3), std::move(done)); });
    g.change([](auto& r, auto done) { r.add_learner(address::sim(4), std::move(done)); });
    const auto l = g.wait_leader();
    g.propose(l, 5);
    g.world().run_for(300ms);
    REQUIRE(g.at(3)->applied_index() == g.at(l)->commit_index());  // learners receive the log
    REQUIRE(g.at(3)->is_learner(address::sim(3)));
    // The two other voters go down: the leader and the learners remain, a majority of the five.
    for (std::uint32_t i = 0; i < 3; ++i)
      if (i != l) g.world().crash(i);
    const auto commit = g.max_commit();
    g.propose(l, 5);
    g.world().run_for(1s);
    CHECK(g.max_commit() == commit);
    CHECK_FALSE(g.at(l)->is_leader());  // check-quorum: learners do not keep it in power
    // Learners keep the role, and with the voters back the group goes on.
    for (std::uint32_t i = 0; i < 3; ++i) g.world().restart(i);
    const auto l2 = g.wait_leader();
    CHECK(l2 < 3);
    g.propose(l2, 1);
    g.world().run_for(500ms);
    CHECK(g.max_commit() > commit);
    CHECK(g.campaigns_by_non_voters == 0);
  }
}

TEST_CASE("raft: a restarted learner keeps its role, from the log and from a snapshot; promotion waits for it") {
  for (std::uint64_t snapshot_every : {std::uint64_t{100'000}, std::uint64_t{8}}) {
    CAPTURE(snapshot_every);
    group<> g(11, 4, 3, 0, snapshot_every);
    g.never_campaign = {3};
    g.change([](auto& r, auto done) { r.add_learner(address::sim(3), std::move(done)); });
    auto l = g.wait_leader();
    g.propose(l, 20);  // past snapshot_every: the configuration moves into the snapshot
    g.world().run_for(300ms);
    if (snapshot_every < 20) REQUIRE(g.at(3)->store().snapshot().index > 0);
    // The learner restarts alone, then everyone does: it is still a learner.
    g.world().crash(3);
    g.world().restart(3);
    CHECK(g.at(3)->is_learner(address::sim(3)));
    for (std::uint32_t i = 0; i < 4; ++i) g.world().crash(i);
    for (std::uint32_t i = 0; i < 4; ++i) g.world().restart(i);
    l = g.wait_leader();
    CHECK(l < 3);
    CHECK(g.at(3)->is_learner(address::sim(3)));
    CHECK(g.at(l)->is_learner(address::sim(3)));
    CHECK(g.at(l)->members().size() == 3);
    // Promotion: refused while the learner lags, with an error that says so.
    g.world().isolate(3);
    g.propose(l, 80);
    g.world().run_for(200ms);
    std::optional<std::error_code> out;
    g.at(l)->promote_learner(address::sim(3), [&](result<bytes> r) { out = r ? std::error_code{} : r.error(); });
    g.world().run_posted();
    CHECK(out == make_error_code(consensus::errc::learner_not_caught_up));
    out.reset();
    g.at(l)->promote_learner(address::sim(0 == l ? 1 : 0),
                             [&](result<bytes> r) { out = r ? std::error_code{} : r.error(); });
    g.world().run_posted();
    CHECK(out == make_error_code(consensus::errc::not_a_learner));
    g.world().heal();
    g.world().run_for(300ms);
    g.change([](auto& r, auto done) { r.promote_learner(address::sim(3), std::move(done)); });
    l = g.wait_leader();
    CHECK(g.at(l)->members().size() == 4);
    CHECK_FALSE(g.at(l)->is_learner(address::sim(3)));
    // Now a voter, it may lead.
    g.never_campaign.clear();
    if (l != 3) {
      std::optional<std::error_code> moved;
      g.at(l)->transfer_leadership(address::sim(3), [&](std::error_code ec) { moved = ec; });
      g.world().run_until([&] { return g.at(3)->is_leader(); }, g.world().now() + 1s);
      CHECK(g.at(3)->is_leader());
      CHECK(moved == std::error_code{});
    }
  }
}

TEST_CASE("raft: a configuration entry and a snapshot written before learners existed still load") {
  dcp::memory_disk disk;
  {
    storage::durable_storage s(disk);
    std::vector<address> old_config{address::sim(0), address::sim(1)};  // the layout before learners: voters only
    bytes data;
    storage::detail::encode_value(old_config, data);
    REQUIRE_FALSE(s.append(log_entry{1, 1, entry_kind::config, data}));
    REQUIRE_FALSE(s.sync());
  }
  sim::simulator w(1, sim::config{});
  raft_config rc;
  rc.members = {address::sim(0), address::sim(1), address::sim(2)};
  w.add_nodes(1, [&](sim::node_context& n) { n.add<node_t>(pid, rc, storage::durable_storage(disk), id_log{}); });
  auto* r = w.find<node_t>(0, pid);
  REQUIRE(r != nullptr);
  CHECK(r->members() == std::vector<address>{address::sim(0), address::sim(1)});
  CHECK(r->learners().empty());
  CHECK(w.metrics().counter(pid, "malformed_config_entry") == 0);
}

// Mixed builds in a rolling upgrade: without learners and outside a
// transfer, the bytes are the layouts of before (wire::trailing), so an
// older replica reads them, and this one reads an older one's.
TEST_CASE("raft: without learners or a transfer, configuration entries and vote requests keep their older layouts") {
  auto encode = [](auto v) {
    bytes b;
    storage::detail::encode_value(v, b);
    return b;
  };
  const std::vector<address> voters{address::sim(0), address::sim(1)};
  CHECK(encode(raft_membership{voters, {}}) == encode(voters));
  CHECK(encode(raft_msg::vote_request{5, 7, 4, true, false}) == encode(old_vote_request{5, 7, 4, true}));
  raft_msg::vote_request v;
  REQUIRE_FALSE(storage::detail::decode_value(encode(old_vote_request{5, 7, 4, false}), v));
  CHECK((v.term == 5 && v.last_index == 7 && v.last_term == 4 && !v.pre_vote && !v.transfer));
  REQUIRE_FALSE(storage::detail::decode_value(encode(raft_msg::vote_request{6, 7, 4, false, true}), v));
  CHECK((v.term == 6 && v.transfer));
  raft_membership m;
  REQUIRE_FALSE(storage::detail::decode_value(encode(raft_membership{voters, {address::sim(2)}}), m));
  CHECK((m.voters == voters && m.learners == std::vector<address>{address::sim(2)}));
}

TEST_CASE("raft: safety with leadership transfers and learners under crashes, partitions, loss and reordering") {
  std::uint64_t live = 0, transfers = 0, learner_seeds = 0;
  const auto run = raft_test::seeds(1, 120);
  for (auto seed : run) {
    options o;
    o.nodes = 5;
    o.voters = 3;
    o.operations = true;
    o = swarm(seed, o);
    o.fault_every = 150ms;
    CAPTURE(seed);
    cluster c(seed, o);
    auto out = c.run();
    live += out.live;
    transfers += out.transfers_ok;
    for (std::uint32_t i = 0; i < 5; ++i)
      if (auto* r = c.world().find<node_t>(i, pid); r && !r->learners().empty()) {
        ++learner_seeds;
        break;
      }
  }
  MESSAGE("live " << live << "/" << run.size() << ", transfers completed " << transfers
                  << ", seeds ending with learners " << learner_seeds);
  CHECK(live == run.size());
  if (run.size() > 1) {
    CHECK(transfers > 0);
    CHECK(learner_seeds > 0);
  }
}

}  // namespace test_raft_transfer
