#pragma once
// A simulated Raft cluster with a workload, faults, and the checkers of
// Raft's safety properties, run after every event.
//
// Swarm testing (Groce et al., ISSTA 2012; TigerBeetle's VOPR): swarm(seed)
// draws the fault rates and the mix of faults from the seed itself, so that
// different seeds explore different corners (no loss but many crashes; heavy
// reordering and no partitions ...) instead of one average mix.
//
// Replaying one seed: DCP_SEED=N runs only seed N of each multi-seed test
// (seeds() below), DCP_TRACE=1 prints every event of every simulated run
// (time, what, nodes, message):
//     DCP_SEED=417 DCP_TRACE=1 ./test_consensus -tc='raft: safety*'
#ifndef RAFT_NO_DOCTEST
#include <doctest/doctest.h>
#endif

#include "../seeds.hpp"  // fewer seeds under sanitizers

#include <array>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "dcp/consensus.hpp"
#include "dcp/sim.hpp"
#include "dcp/storage.hpp"

namespace raft_test {

using namespace dcp;
using namespace dcp::consensus;

/// The state machine under test: the sequence of command ids it applied.
/// apply() returns how many it has applied (so results are checkable).
struct id_log {
  std::vector<std::uint64_t> ids;

  bytes apply(byte_view cmd) {
    std::uint64_t id = 0;
    if (storage::detail::decode_value(cmd, id)) return {};
    ids.push_back(id);
    bytes out;
    storage::detail::encode_value(std::uint64_t{ids.size()}, out);
    return out;
  }
  bytes snapshot() const {
    bytes out;
    storage::detail::encode_value(ids, out);
    return out;
  }
  void restore(byte_view s) {
    ids.clear();
    (void)storage::detail::decode_value(s, ids);
  }
};

using node_t = raft<sim::env, id_log, storage::durable_storage>;
constexpr protocol_id pid = node_t::default_id;

inline bytes encode_id(std::uint64_t id) {
  bytes b;
  storage::detail::encode_value(id, b);
  return b;
}

struct options {
  std::uint32_t nodes = 3;
  duration run = 3s;     // with faults
  duration settle = 3s;  // healed, every node up
  double loss = 0.05, duplicate = 0.02, reorder = 0.1;
  double drift = 1e-3;  // up to +-0.1% clock rate
  duration fault_every = 250ms;
  /// The longest an fsync takes (each draws from 0 to it): appends, answers,
  /// truncations and crashes then happen while a sync runs. 0: right after
  /// the event that asked for it.
  duration sync_latency = duration::zero();
  std::uint64_t snapshot_every = 16;
  std::size_t max_sessions = 4096;
  std::uint32_t clients = 3;
  bool reads = true;
  bool membership = false;  // remove and re-add members during the run
  /// Leadership transfers and learners during the run, besides the faults:
  /// transfer to a random node, add a stranger as a learner, promote a
  /// learner, remove a learner or a voter (operations() below).
  bool operations = false;
  std::uint32_t voters = 0;  // the first configuration's voters: nodes [0, voters) (0: every node)
  /// How often each fault is picked: crash, restart all, partition, heal,
  /// isolate, membership change (the last only with `membership`).
  std::array<std::uint32_t, 6> fault_weights{2, 1, 1, 1, 1, 1};
};

/// The seeds a multi-seed test runs: [first, last], or only DCP_SEED when set.
inline std::vector<std::uint64_t> seeds(std::uint64_t first, std::uint64_t last) {
  std::vector<std::uint64_t> out;
  if (const char* only = std::getenv("DCP_SEED")) {
    out.push_back(std::strtoull(only, nullptr, 10));
    return out;
  }
  for (auto s = first; s <= dcp::test::last_seed(first, last); ++s) out.push_back(s);
  return out;
}

/// Swarm testing: `base` with fault rates and a fault mix drawn from the
/// seed. Each kind of network fault is absent from a quarter of the seeds,
/// each other kind of fault (crashes are in every seed) from a fifth. The
/// means stay near the fixed mix the tests used before (loss 5%,
/// duplication 2%, reordering 10%), and a fault comes every 80-360 ms (it
/// was 250 ms: seeds without some kinds of fault make more progress to
/// check), so a run costs about the same on average.
inline options swarm(std::uint64_t seed, options base) {
  dcp::rng r(seed * 0x9E3779B97F4A7C15ull ^ 0x5EED);
  auto rate = [&](double max) { return r.chance(0.25) ? 0.0 : r.uniform() * max; };
  base.loss = rate(0.12);
  base.duplicate = rate(0.06);
  base.reorder = rate(0.25);
  base.drift = r.uniform() * 2e-3;
  base.fault_every = duration(r.between(80'000'000, 360'000'000));
  // Crashes in every seed (they are what the most bugs need), the rest in most.
  base.fault_weights[0] = static_cast<std::uint32_t>(r.between(1, 4));
  for (std::size_t k = 1; k + 1 < base.fault_weights.size(); ++k)
    base.fault_weights[k] = r.chance(0.2) ? 0 : static_cast<std::uint32_t>(r.between(1, 3));
  // Drawn last, so the draws above stay what they were for each seed.
  base.sync_latency = r.chance(0.5) ? duration::zero() : duration(r.between(100'000, 10'000'000));
  return base;
}

/// What a test learns from one seed.
struct outcome {
  std::uint64_t acked = 0, reads_ok = 0, elections = 0, snapshots_installed = 0, max_term = 0, events = 0;
  std::uint64_t transfers_ok = 0;  // leadership transfers that completed (operations)
  bool live = false;               // every client finished its commands after the network healed
};

/// The seed being run, for the message of a failed DCP_ASSERT (it aborts
/// before doctest could print CAPTURE(seed)).
inline std::uint64_t running_seed = 0;
inline void print_running_seed() noexcept {
  std::fprintf(stderr, "raft harness: seed %llu (replay: DCP_SEED=%llu DCP_TRACE=1)\n",
               static_cast<unsigned long long>(running_seed), static_cast<unsigned long long>(running_seed));
}

class cluster {
 public:
  cluster(std::uint64_t seed, options opt) : opt_(opt), w_(seed, make_config(opt)), rng_(seed ^ 0xC0FFEE) {
    running_seed = seed;
    dcp::on_assertion_failure = print_running_seed;
    raft_config rc;
    for (std::uint32_t i = 0; i < (opt.voters ? opt.voters : opt.nodes); ++i) rc.members.push_back(address::sim(i));
    rc.election_timeout_min = 100ms;
    rc.election_timeout_max = 200ms;
    rc.heartbeat_interval = 30ms;
    rc.snapshot_every = opt.snapshot_every;
    rc.max_sessions = opt.max_sessions;
    rc_ = rc;
    applied_.resize(opt.nodes);
    seen_commit_.resize(opt.nodes);
    w_.add_nodes(opt.nodes, [this](sim::node_context& n) {
      auto& r = n.add<node_t>(pid, rc_, storage::durable_storage(n.world().disk_of(n.index())), id_log{});
      const auto i = n.index();
      applied_[i] = r.applied_index();
      seen_commit_[i] = r.commit_index();
      r.on_apply([this, i](const log_entry& e, const command*, const bytes*) { check_apply(i, e); });
    });
    for (std::uint32_t i = 0; i < opt.nodes; ++i)
      w_.set_clock(i, duration(rng_.between(-50'000'000, 50'000'000)), (rng_.uniform() * 2 - 1) * opt.drift);
    // Each replica's own invariants (raft::check_invariants, which aborts on
    // a violation), after every event, on the node the event ran on: only
    // its state can have changed (a harness action may touch any).
    static const bool trace = std::getenv("DCP_TRACE") != nullptr;
    if (trace) {
      std::cout << "seed " << seed << ": " << opt.nodes << " nodes, loss " << opt.loss << ", duplicate "
                << opt.duplicate << ", reorder " << opt.reorder << ", a fault every "
                << std::chrono::duration_cast<std::chrono::milliseconds>(opt.fault_every).count() << " ms, fsync up to "
                << std::chrono::duration_cast<std::chrono::microseconds>(opt.sync_latency).count() << " us, weights";
      for (auto k : opt.fault_weights) std::cout << " " << k;
      std::cout << "\n";
      w_.on_trace([this](const sim::trace_event& e) {
        note_touched(e);
        std::cout << sim::to_string(e, e.protocol == pid ? node_t::messages::name_of(e.type) : std::string()) << "\n";
      });
    } else {
      w_.on_trace([this](const sim::trace_event& e) { note_touched(e); });
    }
    w_.after_event([this] {
      check_touched();
      check_after_event();
    });
    for (std::uint32_t c = 0; c < opt.clients; ++c)
      clients_.push_back(client{c + 1});  // index; ids come from registration
  }

  outcome run() {
    const auto faults_end = w_.now() + opt_.run;
    schedule_faults(faults_end);
    if (opt_.operations)
      for (auto t = w_.now() + opt_.fault_every / 2; t < faults_end; t += opt_.fault_every)
        w_.at(t, [this] { operate(); });
    for (std::uint32_t c = 0; c < opt_.clients; ++c) schedule_client(c, 10ms * (c + 1));
    w_.run_until(faults_end);
    // Heal, restart everything, and let it settle: it must make progress.
    w_.heal();
    for (std::uint32_t i = 0; i < opt_.nodes; ++i) w_.restart(i);
    faults_over_ = true;
    w_.run_until([&] { return all_clients_done(); }, w_.now() + opt_.settle);
    outcome o;
    o.live = all_clients_done();
    // Let followers catch up on the last commit: until every member of the
    // final configuration has applied it, at most 1 s (swarm's heavier loss
    // may take longer than the 300 ms this used to wait, and most seeds far less).
    w_.run_until([&] { return caught_up(); }, w_.now() + 1s);
    final_checks();
    o.acked = acked_.size();
    o.reads_ok = reads_ok_;
    o.events = w_.events();
    o.elections = static_cast<std::uint64_t>(w_.metrics().counter(pid, "elections"));
    o.snapshots_installed = static_cast<std::uint64_t>(w_.metrics().counter(pid, "snapshot_installed"));
    o.transfers_ok = transfers_ok_;
    o.max_term = leader_of_term_.empty() ? 0 : leader_of_term_.rbegin()->first;
    return o;
  }

  sim::simulator& world() { return w_; }

 private:
  struct client {
    std::uint64_t index;
    std::uint64_t id = 0;   // the session the log gave it (0: registering)
    std::uint64_t seq = 0;  // the command outstanding (or last done)
    bool outstanding = false;
    std::uint64_t done_count = 0;
    time_point sent{};
  };

  static sim::config make_config(const options& o) {
    sim::config c;
    c.network.delay = sim::latency::uniform(1ms, 8ms);
    c.network.loss = o.loss;
    c.network.duplicate = o.duplicate;
    c.network.reorder = o.reorder;
    c.network.reorder_delay = 20ms;
    if (o.sync_latency > duration::zero()) c.sync_latency = sim::latency::uniform(duration::zero(), o.sync_latency);
    return c;
  }

  node_t* find(std::uint32_t i) { return w_.find<node_t>(i, pid); }
  node_t* some_leader() {
    std::vector<std::uint32_t> order;
    for (std::uint32_t i = 0; i < opt_.nodes; ++i) order.push_back(i);
    rng_.shuffle(std::span(order));
    for (auto i : order)
      if (auto* r = find(i); r && r->is_leader()) return r;
    return nullptr;
  }

  // ---- the workload: clients with sessions, retrying until acknowledged ----

  void schedule_client(std::uint32_t c, duration after) {
    w_.after(after, [this, c] { client_step(c); });
  }
  void client_step(std::uint32_t c) {
    auto& cl = clients_[c];
    if (!cl.outstanding) {
      if (faults_over_) return;  // after the faults, clients only finish what they started
      ++cl.seq;
      cl.outstanding = true;
    }
    // (Re)send the outstanding command to whoever leads now; a retry reuses
    // the sequence number. First, register a session (again, until one answer arrives).
    if (auto* r = some_leader(); r && cl.id == 0) {
      r->register_client([this, c](result<std::uint64_t> id) {
        if (id && clients_[c].id == 0) clients_[c].id = *id;
      });
    } else if (r) {
      const auto id = cl.index * 1000 + cl.seq, seq = cl.seq;
      r->propose(cl.id, seq, encode_id(id), [this, c, seq, id](result<bytes> res) {
        auto& cl = clients_[c];
        if (!res) return;                              // not_leader, outcome_unknown ...: the retry timer resends
        if (!cl.outstanding || cl.seq != seq) return;  // an answer to an earlier send of a finished command
        cl.outstanding = false;
        ++cl.done_count;
        acked_.insert(id);
      });
    }
    if (opt_.reads && rng_.chance(0.3)) issue_read();
    schedule_client(c, duration(rng_.between(20'000'000, 60'000'000)));
  }
  bool all_clients_done() const {
    for (auto& c : clients_)
      if (c.outstanding) return false;
    return true;
  }

  // A linearizable read must see every write acknowledged before it started.
  void issue_read() {
    auto* r = some_leader();
    if (!r) return;
    std::uint32_t who = 0;
    for (std::uint32_t k = 0; k < opt_.nodes; ++k)
      if (find(k) == r) who = k;
    const auto must_see = acked_;
    const auto incarnation = restarts_[who];
    r->read_index([this, who, must_see, incarnation](result<std::uint64_t> idx) {
      if (!idx) return;
      auto* r = find(who);
      REQUIRE(r != nullptr);
      REQUIRE(restarts_[who] == incarnation);
      REQUIRE(r->applied_index() >= *idx);
      const auto& ids = r->state_machine().ids;
      const std::set<std::uint64_t> seen(ids.begin(), ids.end());
      for (auto id : must_see) {
        INFO("read at index " << *idx << " on node " << who << " misses acknowledged write " << id);
        REQUIRE(seen.contains(id));
      }
      ++reads_ok_;
    });
  }

  // ---- faults ----

  void schedule_faults(time_point until) {
    for (auto t = w_.now() + opt_.fault_every; t < until; t += opt_.fault_every) w_.at(t, [this] { inject_fault(); });
  }
  void inject_fault() {
    const auto n = opt_.nodes;
    const auto pick = static_cast<std::uint32_t>(rng_.below(n));
    // The fault, by weight (the default weights draw as below(6), or
    // below(7) with membership, mapping 0-1 to a crash, 2 to a restart ...).
    const auto& w = opt_.fault_weights;
    std::uint64_t total = 0;
    for (std::size_t k = 0; k < w.size(); ++k) total += (k + 1 < w.size() || opt_.membership) ? w[k] : 0;
    if (total == 0) return;
    auto draw = rng_.below(total);
    int fault = 0;
    while (draw >= w[fault]) draw -= w[fault++];
    switch (fault) {
      case 0:  // crash one (the leader, half of the time)
        if (rng_.chance(0.5))
          for (std::uint32_t i = 0; i < n; ++i)
            if (auto* r = find(i); r && r->is_leader()) {
              crash(i);
              return;
            }
        crash(pick);
        break;
      case 1:  // restart every crashed node
        for (std::uint32_t i = 0; i < n; ++i) w_.restart(i);
        break;
      case 2: {  // a random partition into two sides
        std::vector<sim::node_index> side;
        for (std::uint32_t i = 0; i < n; ++i)
          if (rng_.chance(0.5)) side.push_back(i);
        w_.partition({side});
        break;
      }
      case 3:
        w_.heal();
        break;
      case 4:  // isolate one node
        w_.isolate(pick);
        break;
      case 5:  // a membership change at the leader: remove a member, or add a removed one back
        if (auto* r = some_leader()) {
          const auto& m = r->members();
          const address a = address::sim(pick);
          const bool present = std::find(m.begin(), m.end(), a) != m.end();
          if (present && m.size() > 3)
            r->remove_member(a, [](result<bytes>) {});
          else if (!present)
            r->add_member(a, [](result<bytes>) {});
        }
        break;
    }
  }
  /// An operator's call at the leader, whatever it answers (refusals are
  /// part of the test: they must leave every invariant intact).
  void operate() {
    auto* r = some_leader();
    if (!r) return;
    const address a = address::sim(static_cast<std::uint32_t>(rng_.below(opt_.nodes)));
    const auto& voters = r->members();
    const bool voter = std::find(voters.begin(), voters.end(), a) != voters.end();
    switch (rng_.below(4)) {
      case 0:
        r->transfer_leadership(a, [this](std::error_code ec) { transfers_ok_ += !ec; });
        break;
      case 1:
        if (!voter && !r->is_learner(a)) r->add_learner(a, [](result<bytes>) {});
        break;
      case 2:
        if (r->is_learner(a)) r->promote_learner(a, [](result<bytes>) {});
        break;
      case 3:
        if (r->is_learner(a) || (voter && voters.size() > 3)) r->remove_member(a, [](result<bytes>) {});
        break;
    }
  }

  void crash(std::uint32_t i) {
    if (!w_.is_up(i)) return;
    w_.crash(i);
    ++restarts_[i];
  }

  // ---- the safety checks, after every event ----

  void check_apply(std::uint32_t i, const log_entry& e) {
    auto* r = find(i);
    const auto snapshot_index = r ? r->store().snapshot().index : 0;
    INFO("node " << i << " applies index " << e.index << " after " << applied_[i] << "; snapshot " << snapshot_index
                 << " commit " << (r ? r->commit_index() : 0) << " found " << (r != nullptr));
    // In order, no gaps (a restart or a snapshot install moves the start forward).
    REQUIRE((e.index == applied_[i] + 1 || (applied_[i] < snapshot_index && e.index == snapshot_index + 1)));
    applied_[i] = e.index;
    // (no structured bindings in INFO: clang before 16 cannot capture them)
    const auto it = applied_log_.try_emplace(e.index, e).first;
    INFO("state machine safety: index " << e.index << " applied as term " << e.term << ", elsewhere as term "
                                        << it->second.term);
    REQUIRE(it->second == e);
  }

  static constexpr std::uint32_t none = sim::trace_event::npos - 1, everyone = sim::trace_event::npos;
  void note_touched(const sim::trace_event& e) {
    using k = sim::trace_event::kind;
    switch (e.what) {
      case k::deliver:
      case k::unreachable:
        touched_ = touched_ == none || touched_ == e.to ? e.to : everyone;
        break;
      case k::timer:
        touched_ = touched_ == none || touched_ == e.from ? e.from : everyone;
        break;
      case k::action:
      case k::restart:
        touched_ = everyone;
        break;
      default:  // a send or a drop changes no replica; a crash removes one
        break;
    }
  }
  void check_touched() {
    for (std::uint32_t i = 0; i < opt_.nodes; ++i)
      if (touched_ == everyone || touched_ == i)
        if (auto* r = find(i)) r->check_invariants();
    touched_ = none;
  }

  void check_after_event() {
    for (std::uint32_t i = 0; i < opt_.nodes; ++i) {
      auto* r = find(i);
      if (!r) continue;
      // Election safety: at most one leader per term.
      if (r->is_leader()) {
        const auto emplaced = leader_of_term_.try_emplace(r->current_term(), i);
        const auto it = emplaced.first;
        INFO("term " << r->current_term() << " has leaders " << it->second << " and " << i);
        REQUIRE(it->second == i);
        if (emplaced.second) check_leader_completeness(i, *r);
      }
      // Committed entries never change, on any replica.
      const auto& s = r->store();
      if (r->commit_index() < seen_commit_[i]) seen_commit_[i] = r->commit_index();  // restarted
      for (auto k = std::max(seen_commit_[i] + 1, s.first_index()); k <= r->commit_index(); ++k) {
        const auto term = *s.term_at(k);
        const auto it = committed_.try_emplace(k, committed_entry{term, r->current_term()}).first;
        INFO("committed index " << k << " has term " << it->second.term << " and, on node " << i << ", " << term);
        REQUIRE(it->second.term == term);
      }
      seen_commit_[i] = r->commit_index();
      max_commit_ = std::max(max_commit_, r->commit_index());
    }
  }

  // Leader completeness: a leader of term T holds every entry committed in a
  // term before T. (A commit first seen by a replica in term u happened in a
  // term <= u; a late leader of an older term need not hold newer commits.)
  void check_leader_completeness(std::uint32_t i, node_t& r) {
    const auto& s = r.store();
    for (const auto& kc : committed_) {
      const auto k = kc.first;
      const auto& c = kc.second;
      if (c.seen_in_term >= r.current_term() || k <= s.snapshot().index) continue;
      INFO("new leader " << i << " of term " << r.current_term() << " lacks index " << k << " (term " << c.term
                         << ") committed by term " << c.seen_in_term << "; its log ends at " << s.last_index());
      REQUIRE(s.term_at(k) == c.term);
    }
  }

  /// Every member of the final configuration has applied every index any
  /// replica ever committed.
  bool caught_up() {
    const std::uint64_t commit = max_commit_;
    for (std::uint32_t k = 0; k < opt_.nodes; ++k) {
      auto* r = find(k);
      if (!r || (r->applied_index() < commit && in_final_config(k))) return false;
    }
    return true;
  }

  bool in_final_config(std::uint32_t i) {
    node_t* most = nullptr;
    for (std::uint32_t k = 0; k < opt_.nodes; ++k)
      if (auto* r = find(k); r && (!most || r->commit_index() > most->commit_index())) most = r;
    const auto& m = most->members();
    return std::find(m.begin(), m.end(), address::sim(i)) != m.end() || most->is_learner(address::sim(i));
  }

  void final_checks() {
    // Every acknowledged command is in the committed history exactly once.
    std::map<std::uint64_t, int> times;
    for (auto& [idx, e] : applied_log_) {
      if (e.kind != entry_kind::command) continue;
      command c;
      REQUIRE_FALSE(storage::detail::decode_value(e.data, c));
      if (c.kind != consensus::command_kind::apply) continue;  // a session registration
      std::uint64_t id = 0;
      REQUIRE_FALSE(storage::detail::decode_value(c.payload, id));
      ++times[id];
    }
    // Duplicates may sit in the log (a retry); the state machine must apply each id once.
    for (std::uint32_t i = 0; i < opt_.nodes; ++i) {
      auto* r = find(i);
      REQUIRE(r != nullptr);
      std::map<std::uint64_t, int> applied_times;
      for (auto id : r->state_machine().ids) ++applied_times[id];
      for (const auto& id_n : applied_times) {
        const auto id = id_n.first;
        const int n = id_n.second;
        INFO("node " << i << " applied command " << id << " " << n << " times");
        REQUIRE(n == 1);
      }
      if (!in_final_config(i)) continue;  // removed: it holds a prefix of the history
      for (auto id : acked_) {
        INFO("acknowledged command " << id << " missing on node " << i);
        REQUIRE(applied_times.contains(id));
      }
    }
    for (auto id : acked_) REQUIRE(times.contains(id));
    // No leader ever heard from a second leader of its own term (checked
    // globally after every event above; this is the leaders' own view).
    REQUIRE(w_.metrics().counter(pid, "two_leaders_in_term") == 0);
  }

  options opt_;
  raft_config rc_;
  sim::simulator w_;
  dcp::rng rng_;
  std::vector<client> clients_;
  std::set<std::uint64_t> acked_;
  std::map<std::uint64_t, std::uint32_t> leader_of_term_;
  struct committed_entry {
    std::uint64_t term, seen_in_term;
  };
  std::map<std::uint64_t, committed_entry> committed_;
  std::map<std::uint64_t, log_entry> applied_log_;
  std::vector<std::uint64_t> applied_, seen_commit_;
  std::map<std::uint32_t, std::uint32_t> restarts_;
  std::uint64_t reads_ok_ = 0, max_commit_ = 0, transfers_ok_ = 0;  // the highest commit index any replica reached
  bool faults_over_ = false;
  std::uint32_t touched_ = everyone;  // the node(s) whose state the current event may have changed
};

}  // namespace raft_test
