#pragma once
// Raft (Ongaro & Ousterhout, USENIX ATC 2014; Ongaro's dissertation, 2014):
// a replicated log driving a user state machine.
//
// Why Raft rather than Multi-Paxos: the log is the leader's, entries flow one
// way, and the leader is the natural place for what dcp builds on top of it
// (linearizable reads by ReadIndex, session keepalives, lease grants). Its
// invariants are stated precisely enough to be checked after every event in
// the simulator, which the tests do.
//
// What is here, with the dissertation's section:
//   - leader election with randomized timeouts (3.4), pre-vote and leader
//     stickiness so a partitioned or removed server cannot depose a healthy
//     leader (9.6), and check-quorum: a leader that has not heard from a
//     quorum for an election timeout steps down (6.2);
//   - log replication, commit of current-term entries only, and a no-op entry
//     at the start of every term (3.5, 3.6, 6.4);
//   - durability: the vote is synced before it is granted, entries are
//     synced before they are acknowledged, the leader counts itself only for
//     synced entries. The log's fsync is not done on the event loop: Raft
//     asks the runtime to perform it (env.perform with the store's
//     sync_later(); etcd's Ready.MustSync), one at a time, and goes on
//     meanwhile; what was appended while one ran goes in the next (group
//     commit: one sync per batch of proposals). A follower's answer waits for
//     its entries' sync; a truncation while a sync runs takes the cut entries
//     out of what that sync covers. The vote and snapshots are synced in
//     place (rare, and a vote must be durable before it is sent);
//   - snapshots and log compaction, InstallSnapshot for lagging followers (5),
//     streamed in chunks of at most snapshot_chunk_bytes with (offset, done)
//     as in the paper's Figure 13: one chunk in flight per follower, the next
//     sent when it is acknowledged, the current one again at each heartbeat
//     while it is not. A follower buffers one transfer at a time, at most
//     max_snapshot_bytes, and accepts only the chunk at the offset it expects
//     from the leader of its term;
//   - a quota on the replicated state: max_snapshot_bytes bounds what every
//     replica must be able to send and receive, so a proposal that would take
//     the state past it (the last snapshot's size plus the log since, an
//     upper bound) fails with snapshot_too_large and the log is unchanged.
//     Getting back under it means raising max_snapshot_bytes on every replica
//     (a rolling restart): while over it, every command is refused, deletes
//     too, since Raft cannot tell which commands shrink the state;
//   - membership change, one server at a time (4.1): a configuration takes
//     effect when appended; the leader refuses a second change until the
//     first has committed and until it has committed an entry of its own term
//     (the fix in Ongaro's raft-dev post of 2015). add_member makes a
//     voter at once (no catch-up phase: add servers to a healthy cluster
//     one at a time); add_learner a learner, a non-voting member that
//     receives the log and snapshots but never votes, campaigns or counts
//     in a quorum (has_quorum keeps only voters, whatever the rule), and
//     promote_learner makes it a voter once it has caught up (4.2.1).
//     Learners are in configuration entries and snapshots: restarts keep
//     them;
//   - leadership transfer (3.10): the leader refuses proposals, brings the
//     target up to date, sends it timeout_now; the target campaigns at once
//     (no pre-vote; its vote requests waive leader stickiness); aborted
//     after an election timeout;
//   - linearizable reads by ReadIndex (6.4): the leader notes its commit
//     index, confirms it is still leader with a heartbeat round a quorum
//     acknowledges, and answers once it has applied that index. No clock
//     assumption is needed for safety;
//   - client sessions (6.3): a client registers first (register_client: a
//     log entry whose index becomes its client id, so an id is never reused,
//     not even by a restarted client with a fixed seed); its commands then
//     carry (client id, sequence number), and the replicated session table
//     applies each at most once and returns a retry the first result. A
//     client has one command outstanding at a time. Registrations beyond
//     max_sessions evict the least recently used session (by log index,
//     deterministic on every replica). A command from an unknown session
//     (evicted, or never registered) is never applied and fails with
//     unknown_session, whose meaning is "outcome unknown": an earlier send of
//     it may have applied before the eviction. Only registration creates a
//     session, so a late or duplicated copy can never apply twice.
//
// Whom it believes. Votes are asked of, and replies believed from, members
// of a configuration it knows only (a stranger's reply with a higher term no
// longer deposes a leader). A term more than 2^32 above its own is refused
// from anyone (it would exhaust the term space), and a follower's
// acknowledged match index is capped at what the leader sent it.
// AppendEntries and InstallSnapshot are followed from a member of a known
// configuration; from anyone else, by a member, only at the member's own
// term and while it follows no leader in it. The dissertation (4.1) has
// servers not consult their configuration for incoming AppendEntries,
// because a lagging member must follow a leader added by configuration
// entries it has not received yet; here it still does, in two steps: its
// election timer fires (it hears no leader it knows), and the pre-vote
// answers of the members it knows carry the current term, to which it steps
// up; the term's one leader is then followed, and its log soon names it. A
// stranger cannot raise a member's term, nor displace the leader it follows
// (a second leader in a term is refused from anyone: second_leader_in_term).
// A replica not a voter of its own latest configuration (joining, a
// learner, or removed and being re-added) follows any leader: it holds no
// election to learn the term from, and counts in no quorum of its own. What remains open without an
// authenticated transport: an impostor naming a member's address, and a
// stranger that guesses the exact term while a member follows no leader
// (between an election's start and its first AppendEntries).
// Refusals are counted (not_a_member, absurd_term, match_beyond_sent,
// second_leader_in_term).
//
// Faults it does not tolerate: more than a minority of the configuration
// crashed or cut off stops progress (proposals and reads then fail with
// not_leader / timed_out within a bounded time, never silently); storage that
// loses synced data breaks safety. Hostile snapshot chunks (a wrong offset,
// an absurd size, a stale term) are dropped and counted
// (snapshot_chunk_out_of_order, malformed_snapshot, snapshot_too_large,
// stale_snapshot_chunk).
//
// Completions (proposals, reads, membership changes, transfers, and their
// refusals) run after the event that decides them, never inside a call or
// half-way through a handler (DESIGN §10; dcp/core/outbox.hpp), so a
// callback that proposes again, or steps the replica down, finds it between
// transitions. The apply hook (on_apply) is the exception: it sees each
// entry as it is applied, inside the event, and must not call into the
// replica (asserted); what it wants done, it defers.
//
// Message ids: 1-7. Default protocol id: 100.
//
// Its wire is raft/messages.hpp. Its parts, each in its own header with its
// own unit tests: what the leader knows of each follower
// (raft/progress.hpp), the client sessions (raft/session_table.hpp), the
// ReadIndex reads waiting (raft/read_queue.hpp), a follower's snapshot being
// received (raft/snapshot_receiver.hpp) and the configurations
// (raft/configuration.hpp). The role is a std::variant of states carrying
// their data (below: follower_state ... leader_state, stopped_state once
// storage has failed).
#include <algorithm>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "dcp/consensus/errors.hpp"
#include "dcp/consensus/quorum_rule.hpp"
#include "dcp/consensus/raft/configuration.hpp"
#include "dcp/consensus/raft/messages.hpp"
#include "dcp/consensus/raft/progress.hpp"
#include "dcp/consensus/raft/read_queue.hpp"
#include "dcp/consensus/raft/session_table.hpp"
#include "dcp/consensus/raft/snapshot_receiver.hpp"
#include "dcp/consensus/state_machine.hpp"
#include "dcp/core/assert.hpp"
#include "dcp/core/env.hpp"
#include "dcp/core/error.hpp"
#include "dcp/core/log.hpp"
#include "dcp/core/outbox.hpp"
#include "dcp/core/result.hpp"
#include "dcp/storage/detail/codec.hpp"
#include "dcp/storage/storage.hpp"
#include "dcp/wire/message.hpp"

namespace dcp::consensus {

using storage::entry_kind;
using storage::log_entry;

struct raft_config {
  /// The initial configuration (every server of the first cluster gets the
  /// same list). A server that joins later starts with an empty list and
  /// learns its configuration from the leader.
  std::vector<address> members;
  duration election_timeout_min = 150ms;  ///< a follower waits uniform [min, max] before campaigning
  duration election_timeout_max = 300ms;
  duration heartbeat_interval = 50ms;  ///< leader's AppendEntries cadence; well under election_timeout_min
  std::size_t max_entries_per_message = 64;
  std::uint64_t snapshot_every = 1000;  ///< compact after this many applied entries past the last snapshot
  std::size_t max_sessions = 4096;      ///< client sessions kept; a registration beyond evicts the least recently used
  /// The quota on the replicated state: the largest snapshot a replica sends
  /// or accepts. A proposal that would exceed it fails (snapshot_too_large).
  /// The same on every replica.
  std::size_t max_snapshot_bytes = std::size_t{64} << 20;
  /// The most snapshot bytes in one InstallSnapshot message: well under the
  /// transport's frame limit (wire::limits::max_frame_size, 4 MiB by default).
  std::size_t snapshot_chunk_bytes = std::size_t{1} << 20;
  bool pre_vote = true;

  void validate() const {
    if (election_timeout_min <= duration::zero() || election_timeout_max < election_timeout_min)
      throw error(dcp::errc::invalid_config, "raft: need 0 < election_timeout_min <= election_timeout_max");
    if (heartbeat_interval <= duration::zero() || heartbeat_interval * 2 > election_timeout_min)
      throw error(dcp::errc::invalid_config,
                  "raft: heartbeat_interval must be > 0 and at most half of election_timeout_min, or followers "
                  "campaign against a live leader");
    if (max_entries_per_message == 0 || snapshot_every == 0 || max_sessions == 0)
      throw error(dcp::errc::invalid_config, "raft: max_entries_per_message, snapshot_every, max_sessions must be > 0");
    if (snapshot_chunk_bytes == 0 || snapshot_chunk_bytes > max_chunk_bytes || max_snapshot_bytes == 0)
      throw error(dcp::errc::invalid_config,
                  "raft: need 0 < snapshot_chunk_bytes <= 3 MiB (a chunk and its header must fit in a 4 MiB frame) "
                  "and max_snapshot_bytes > 0");
  }
  /// A chunk and its message header fit in the transport's 4 MiB frame.
  static constexpr std::size_t max_chunk_bytes = std::size_t{3} << 20;
};

// The command and the messages are in raft/messages.hpp, raft_membership (a
// configuration) in raft/configuration.hpp.

enum class raft_role : std::uint8_t { follower, pre_candidate, candidate, leader };

constexpr std::string_view to_string(raft_role r) noexcept {
  constexpr std::string_view n[] = {"follower", "pre_candidate", "candidate", "leader"};
  return n[static_cast<int>(r)];
}

template <Env E, StateMachine Machine, storage::Storage Store, QuorumRule Quorum = simple_majority> class raft {
 public:
  using messages =
      wire::message_set<raft_msg::vote_request, raft_msg::vote_reply, raft_msg::append, raft_msg::append_reply,
                        raft_msg::install_snapshot, raft_msg::snapshot_reply, raft_msg::timeout_now>;
  /// What it counts (env.count), declared: dcp/core/counter_set.hpp.
  static constexpr dcp::counter_set counters{{"leadership_transfers",
                                              "leadership_transfer_aborted",
                                              "vote_from_non_member",
                                              "absurd_term",
                                              "vote_while_leader_alive",
                                              "malformed_append",
                                              "append_rejected",
                                              "match_beyond_sent",
                                              "malformed_snapshot",
                                              "stale_snapshot_chunk",
                                              "snapshot_too_large",
                                              "snapshot_chunk_out_of_order",
                                              "snapshot_chunk_duplicate",
                                              "bad_snapshot",
                                              "snapshot_installed",
                                              "stale_timeout_now",
                                              "timeout_now_not_voter",
                                              "timeout_now_received",
                                              "malformed_config_entry",
                                              "storage_failed",
                                              "proposal_refused_transferring",
                                              "entry_too_large",
                                              "state_quota_exceeded",
                                              "conflict_below_commit",
                                              "undecodable_command",
                                              "duplicate_suppressed",
                                              "session_evicted",
                                              "snapshots_taken",
                                              "not_a_member",
                                              "second_leader_in_term",
                                              "two_leaders_in_term",
                                              "elections",
                                              "leaderships",
                                              "check_quorum_step_down",
                                              "timeout_now_sent",
                                              "snapshot_chunks_sent",
                                              "promotion_refused_lagging"}};
  static constexpr std::string_view name = "raft";
  static constexpr protocol_id default_id = 100;

  using propose_callback = std::function<void(result<bytes>)>;
  using read_callback = std::function<void(result<std::uint64_t>)>;
  using transfer_callback = std::function<void(result<void>)>;
  /// Every committed entry, in log order, as it is applied: the entry, its
  /// decoded command (null for no-op and configuration entries), and the
  /// state machine's result (null when the command was not applied: a
  /// duplicate, a stale or expired session).
  using apply_hook = std::function<void(const log_entry&, const command*, const bytes* result)>;

  raft(E env, raft_config cfg, Store store, Machine machine = Machine{})
      : env_(std::move(env)),
        cfg_(std::move(cfg)),
        store_(std::move(store)),
        sm_(std::move(machine)),
        configs_(raft_membership{cfg_.members, {}}),
        sessions_(std::max<std::size_t>(cfg_.max_sessions, 1)),  // 0 is refused by validate() below
        out_(env_) {
    cfg_.validate();
    restore_from_storage();
  }
  raft(const raft&) = delete;
  raft& operator=(const raft&) = delete;
  ~raft() {
    cancel_timer(election_timer_);
    cancel_timer(flush_timer_);
    cancel_timer(check_timer_);
    if (auto* l = lead(); l && l->transfer) cancel_timer(l->transfer->timer);
    heartbeat_.stop();
  }

  void start() { reset_election_timer(); }

  // ---- the user's side ----

  /// Appends a command (leader only). `done` gets the state machine's result
  /// once the entry is applied here, or an error: not_leader (ask leader()),
  /// outcome_unknown (leadership changed; retry with the same client/seq),
  /// unknown_session (outcome unknown; register again), stale_request,
  /// storage_failed, snapshot_too_large (the state's quota,
  /// max_snapshot_bytes), invalid_argument (a command over
  /// snapshot_chunk_bytes: it could not travel in one message). `client` 0
  /// applies without deduplication; any other client must have been
  /// registered (register_client).
  void propose(bytes payload, propose_callback done) { propose(0, 0, std::move(payload), std::move(done)); }
  void propose(std::uint64_t client, std::uint64_t seq, bytes payload, propose_callback done) {
    if (client != 0 && seq == 0) return refuse(done, dcp::make_error_code(dcp::errc::invalid_argument));
    propose_entry(command{client, seq, std::move(payload), command_kind::apply}, std::move(done));
  }

  /// Registers a client session (leader only): `done` gets its client id (the
  /// entry's log index), or an error as for propose. A lost answer costs only
  /// an unused session, evicted in time: register again.
  void register_client(std::function<void(result<std::uint64_t>)> done) {
    propose_entry(command{0, 0, {}, command_kind::register_client}, [done = std::move(done)](result<bytes> r) {
      if (!r) return done(r.error());
      std::uint64_t id = 0;
      if (storage::detail::decode_value(*r, id) || id == 0)
        return done(dcp::make_error_code(dcp::errc::malformed_payload));
      done(id);
    });
  }
  /// Forgets a client session (leader only), freeing its slot at once.
  void unregister_client(std::uint64_t client, propose_callback done) {
    propose_entry(command{client, 0, {}, command_kind::unregister_client}, std::move(done));
  }
  /// Is `client` a registered session in the applied state?
  bool has_client(std::uint64_t client) const { return sessions_.contains(client); }

  /// Confirms that this replica may serve a linearizable read, and calls
  /// `done(index)` once its state machine has applied through `index`; read
  /// the state machine then. Errors: not_leader, timed_out.
  void read_index(read_callback done) {
    auto* l = leading_or_refuse(done);
    if (!l) return;
    const auto round = ++round_;
    l->reads.push(committed_in_term() ? commit_ : 0, round, env_.now(), std::move(done));
    broadcast_append();
    advance_reads();
  }

  /// One-server membership change (leader only). `done` is called when the
  /// new configuration has committed. add_member adds a voter at once;
  /// add_learner a non-voting member (it receives the log, counts in no
  /// quorum), which promote_learner later makes a voter, refusing with
  /// learner_not_caught_up while its log lags (a new voter that cannot help
  /// commit yet weakens availability, 4.2.1). remove_member removes a voter
  /// or a learner. Errors: not_leader, config_change_pending,
  /// leadership_transfer_in_progress, invalid_argument (adding a member,
  /// removing a stranger or the last voter), not_a_learner,
  /// learner_not_caught_up, storage_failed.
  void add_member(const address& a, propose_callback done) { change_member(a, change::add_voter, std::move(done)); }
  void add_learner(const address& a, propose_callback done) { change_member(a, change::add_learner, std::move(done)); }
  void promote_learner(const address& a, propose_callback done) { change_member(a, change::promote, std::move(done)); }
  void remove_member(const address& a, propose_callback done) { change_member(a, change::remove, std::move(done)); }

  /// Leadership transfer (dissertation 3.10) to voter `target` (leader
  /// only): proposals and membership changes are refused
  /// (leadership_transfer_in_progress) while the leader brings the target's
  /// log up to date, then it sends timeout_now and the target campaigns at
  /// once. `done` gets success once the target's election deposes this
  /// leader (ask leader() for the outcome of the election),
  /// leadership_transfer_failed after an election timeout without it (this
  /// server still leads and accepts proposals again), not_leader if it lost
  /// leadership otherwise. Refused at once: already_leader (the target is
  /// this server), not_a_voter (a learner or a stranger),
  /// leadership_transfer_in_progress (one at a time), not_leader.
  void transfer_leadership(const address& target, transfer_callback done) {
    auto* l = leading_or_refuse(done);
    if (!l) return;
    if (target == env_.self()) return refuse(done, make_error_code(errc::already_leader));
    if (!is_member(target)) return refuse(done, make_error_code(errc::not_a_voter));
    if (l->transfer) return refuse(done, make_error_code(errc::leadership_transfer_in_progress));
    env_.count("leadership_transfers");
    auto& t = l->transfer.emplace(transfer_state{target, {}, std::move(done)});
    // The timer is cancelled when the transfer ends (end_transfer), and
    // with it the leader state: while it runs, this server leads.
    t.timer = env_.arm(cfg_.election_timeout_max, [this] {
      auto& t = *lead()->transfer;
      t.timer = {};
      env_.count("leadership_transfer_aborted");
      dcp::log(env_, log_level::info, "raft: leadership transfer to ", t.target.to_string(),
               " aborted: no election within an election timeout");
      end_transfer(make_error_code(errc::leadership_transfer_failed));
    });
    advance_transfer();
    // Bring the target up to date now rather than at the next heartbeat.
    if (auto* p = peer_of(target); p && transferring() && p->match() < store_.last_index()) send_append(target, *p);
  }
  /// A leadership transfer is under way (proposals are refused meanwhile).
  bool transferring() const noexcept {
    const auto* l = lead();
    return l && l->transfer;
  }

  void on_apply(apply_hook h) { apply_hook_ = std::move(h); }

  // ---- observation ----
  /// The role (a replica whose storage failed stays a follower for ever: failed()).
  raft_role role() const noexcept {
    return std::holds_alternative<stopped_state>(role_) ? raft_role::follower : static_cast<raft_role>(role_.index());
  }
  bool is_leader() const noexcept { return lead() != nullptr; }
  std::uint64_t current_term() const noexcept { return store_.state().term; }
  std::optional<address> leader() const noexcept { return leader_; }
  std::uint64_t commit_index() const noexcept { return commit_; }
  std::uint64_t applied_index() const noexcept { return applied_; }
  /// The voters of the latest configuration.
  const std::vector<address>& members() const noexcept { return configs_.latest().voters; }
  /// The learners (non-voting members) of the latest configuration.
  const std::vector<address>& learners() const noexcept { return configs_.latest().learners; }
  bool is_learner(const address& a) const { return configs_.latest().has_learner(a); }
  const Store& store() const noexcept { return store_; }
  Machine& state_machine() noexcept { return sm_; }
  const Machine& state_machine() const noexcept { return sm_; }
  bool failed() const noexcept { return std::holds_alternative<stopped_state>(role_); }
  const raft_config& config() const noexcept { return cfg_; }

  /// Asserts (DCP_ASSERT) what must hold of this replica's own state between
  /// events, whatever its peers send: the simulator's tests call it after
  /// every event. O(members + configurations + entries appended since the
  /// last call): the log is walked again only after a truncation or a
  /// snapshot. A no-op when assertions are off. What no single replica can
  /// see (one leader per term, committed entries never change) the tests
  /// check across replicas.
  void check_invariants() const {
#if DCP_ASSERTIONS
    const auto snap_index = store_.snapshot().index, last = store_.last_index();
    DCP_ASSERT(store_.first_index() == snap_index + 1, "the log starts right after the snapshot");
    DCP_ASSERT(snap_index <= applied_, "a snapshot holds applied entries only");
    DCP_ASSERT(applied_ <= commit_, "only committed entries are applied (3.5)");
    DCP_ASSERT(commit_ <= last, "the commit index is in the log");
    DCP_ASSERT(durable_ <= last, "the log is durable through an index of the log");
    sessions_.check_invariants();
    incoming_.check_invariants(cfg_.max_snapshot_bytes);
    // The log: consecutive indexes; terms never decrease along it (each
    // leader appends in its own term after its predecessors' entries, 3.5)
    // and never exceed the current term; the quota's measure is its size.
    // Entries checked before are not walked again while the log only grew.
    auto& c = checked_log_;
    if (c.first != store_.first_index() || c.truncations != truncations_ || c.upto > last)
      c = {store_.first_index(), snap_index, snap_index == 0 ? 0 : store_.snapshot().term, 0, truncations_};
    DCP_ASSERT(store_.term_at(snap_index) == (snap_index == 0 ? 0 : store_.snapshot().term),
               "the snapshot's last term is known");
    for (auto i = c.upto + 1; i <= last; ++i) {
      const auto& e = store_.entry(i);
      DCP_ASSERT(e.index == i, "log entries are stored at their index");
      DCP_ASSERT(e.term >= c.term, "log terms never decrease along the log");
      c.term = e.term;
      c.bytes += e.data.size();
    }
    c.upto = last;
    DCP_ASSERT(c.term <= current_term(), "no entry has a term above the current term");
    DCP_ASSERT(c.bytes == log_bytes_ && snapshot_bytes_ == store_.snapshot().data.size(),
               "the quota's measure (measure_state) matches the log and the snapshot");
    // Configurations: the snapshot's first, then one per config entry of the log, ascending.
    configs_.check_invariants(snap_index, last);
    for (const auto& l : learners())
      DCP_ASSERT(!is_member(l), "a learner is not a voter (the two are disjoint, so no quorum counts a learner)");
    // Followers, proposals, reads and a leadership transfer are the leader
    // state's (role_): no other role, a failed replica included, has any.
    DCP_ASSERT(role() == raft_role::follower || is_member(env_.self()) || role() == raft_role::leader,
               "a learner or stranger never campaigns");
    if (failed()) return;
    DCP_ASSERT(!answer_ || sync_.running || sync_.wanted, "a held answer goes when the sync asked for it ends");
    const auto& vote = store_.state().vote;
    if (role() == raft_role::candidate || role() == raft_role::leader)
      DCP_ASSERT(vote == env_.self(), "a candidate or leader voted for itself in its term (3.4)");
    const auto* l = lead();
    if (!l) return;
    DCP_ASSERT(leader_ == env_.self(), "a leader knows it leads");
    DCP_ASSERT(l->self_match <= durable_, "the leader counts itself only for durable entries");
    for (const auto& [index, p] : l->pending)
      DCP_ASSERT(applied_ < index && index <= last, "a proposal waits on an entry of the log until it is applied");
    for (const auto& m : members())
      DCP_ASSERT(m == env_.self() || l->peers.contains(m),
                 "the leader replicates to every member of the latest configuration");
    for (const auto& m : learners())
      DCP_ASSERT(l->peers.contains(m), "the leader replicates to every learner of the latest configuration");
    DCP_ASSERT(!l->transfer || is_member(l->transfer->target), "a leadership transfer targets a voter");
    for (const auto& [a, p] : l->peers) {
      DCP_ASSERT(a != env_.self() && (is_member(a) || is_learner(a)),
                 "the leader replicates only to the other members");
      p.check_invariants();  // match < next, match <= sent, a transfer's offsets within what was sent
      DCP_ASSERT(p.next() <= last + 1 && p.sent() <= last, "a follower is sent entries of the log only");
    }
#endif
  }

  // ---- messages ----

  void on_message(const address& from, const raft_msg::vote_request& m) {
    if (failed() || !is_member(from)) return drop("vote_from_non_member");
    if (absurd(m.term)) return drop("absurd_term");
    const bool log_ok =
        m.last_term > last_term() || (m.last_term == last_term() && m.last_index >= store_.last_index());
    // Leader stickiness: while a leader is heard from, no election can win here.
    // A transfer's election is the leader's own wish (3.10): stickiness is waived for it.
    const bool leader_alive =
        !m.transfer && (is_leader() || (leader_ && env_.now() - last_leader_contact_ < cfg_.election_timeout_min));
    if (m.pre_vote) {
      const bool grant = m.term > current_term() && log_ok && !leader_alive;
      env_.send(from, raft_msg::vote_reply{current_term(), grant, true});
      return;
    }
    if (m.term > current_term()) {
      if (leader_alive) return drop("vote_while_leader_alive");
      note_target_campaigned(from);
      if (!step_down(m.term)) return;
    }
    bool grant = false;
    if (m.term == current_term() && log_ok && (!store_.state().vote || *store_.state().vote == from)) {
      if (!store_.state().vote) {
        if (!save_state({current_term(), from})) return;
      }
      grant = true;
      reset_election_timer();
    }
    env_.send(from, raft_msg::vote_reply{current_term(), grant, false});
  }

  void on_message(const address& from, const raft_msg::vote_reply& m) {
    if (failed() || !believes(from, m.term)) return;
    if (m.term > current_term() && !(m.pre_vote && m.granted)) {
      step_down(m.term);
      return;
    }
    if (!m.granted || !is_member(from)) return;
    auto* pre = std::get_if<pre_candidate_state>(&role_);
    auto* cand = std::get_if<candidate_state>(&role_);
    if (m.pre_vote && pre && m.term <= current_term()) {
      // A pre-vote grant comes from a replica whose term is below the one we asked for.
      pre->votes.insert(from);
      if (has_quorum(pre->votes)) become_candidate();
    } else if (!m.pre_vote && cand && m.term == current_term()) {
      cand->votes.insert(from);
      if (has_quorum(cand->votes)) become_leader();
    }
  }

  void on_message(const address& from, const raft_msg::append& m) {
    if (failed()) return;
    if (absurd(m.term)) return drop("absurd_term");
    if (!well_formed(m)) return drop("malformed_append");
    if (m.term < current_term()) {
      env_.send(from, raft_msg::append_reply{current_term(), false, m.prev_index, store_.last_index(), m.round});
      return;
    }
    if (m.term > current_term()) note_target_campaigned(from);
    if (!may_lead(from, m.term) || !accept_leader(from, m.term)) return;
    raft_msg::append_reply reply{current_term(), false, m.prev_index, store_.last_index(), m.round};
    if (m.prev_index < store_.snapshot().index) {
      // Everything up to our snapshot is committed and matches: skip that part.
      reply.success = true;
      reply.match = store_.snapshot().index;
      for (const auto& e : m.entries)
        if (e.index > store_.snapshot().index && !merge(e)) return;
      if (!m.entries.empty()) reply.match = std::max(reply.match, m.entries.back().index);
    } else if (store_.term_at(m.prev_index) == m.prev_term) {
      for (const auto& e : m.entries)
        if (!merge(e)) return;
      reply.success = true;
      reply.match = m.prev_index + m.entries.size();
    } else {
      env_.count("append_rejected");
    }
    if (reply.success && reply.match > durable_) {
      hold_answer(from, reply, m.commit);  // sent once the sync asked for here covers the entries
      return want_sync();
    }
    answer_append(from, reply, m.commit);
  }

  void on_message(const address& from, const raft_msg::append_reply& m) {
    if (failed() || !believes(from, m.term)) return;
    if (m.term > current_term()) {
      step_down(m.term);
      return;
    }
    if (!is_leader() || m.term != current_term()) return;
    auto* p = heard_from(from, m.round);
    if (!p) return;
    if (m.success) {
      if (!p->acknowledge(m.match)) return drop("match_beyond_sent");  // acknowledges what we never sent: forged
      advance_leader_commit();
      if (transfer_target(from)) advance_transfer();
      // More to send only if it is synced here (send_append sends nothing
      // else), and not already on its way: entries past self_match wait for
      // the group-commit flush, which sends them to every follower, and
      // entries a later AppendEntries carries are acknowledged by its own
      // answer. Sent anyway, an AppendEntries would carry nothing new, only
      // cost a message and its answer (a fifth of the leader's sends with
      // one client, before). Committing may end the leadership: the peer is
      // looked up again.
      if (auto* q = peer_of(from); q && q->next() <= lead()->self_match && !q->newer_in_flight(m.match))
        send_append(from, *q);
    } else if (p->reject(m.match, m.last)) {  // a rejection of a probe we may still be making
      send_append(from, *p);
    }
  }

  void on_message(const address& from, const raft_msg::install_snapshot& m) {
    if (failed()) return;
    if (absurd(m.term)) return drop("absurd_term");
    if (m.index == 0 || m.last_term == 0 || m.last_term > m.term || m.data.size() > cfg_.snapshot_chunk_bytes ||
        m.offset > m.total || m.data.size() > m.total - m.offset || m.done != (m.offset + m.data.size() == m.total))
      return drop("malformed_snapshot");
    if (m.term < current_term()) {
      env_.count("stale_snapshot_chunk");
      env_.send(from, raft_msg::snapshot_reply{current_term(), 0, m.round, 0, 0});
      return;
    }
    if (!may_lead(from, m.term) || !accept_leader(from, m.term)) return;
    if (m.index <= commit_) {  // we hold all of it already
      incoming_.reset();
      env_.send(from, raft_msg::snapshot_reply{current_term(), commit_, m.round, m.index, m.total});
      return;
    }
    if (m.total > cfg_.max_snapshot_bytes) {
      dcp::log(env_, log_level::error, "raft: the leader sends a snapshot of ", m.total,
               " bytes, over max_snapshot_bytes (", cfg_.max_snapshot_bytes, "); set the same limit on every replica");
      return drop("snapshot_too_large");
    }
    using outcome = raft_parts::snapshot_receiver::outcome;
    const auto got = incoming_.take(m);  // a chunk at offset 0 starts a transfer, replacing any other
    if (got == outcome::out_of_order) env_.count("snapshot_chunk_out_of_order");
    if (got == outcome::duplicate) env_.count("snapshot_chunk_duplicate");
    if (got != outcome::complete) {  // the follower tells where the next chunk starts
      env_.send(from, raft_msg::snapshot_reply{current_term(), 0, m.round, m.index, incoming_.held(m.index)});
      return;
    }
    auto snap = incoming_.finish();
    snapshot_state st;
    if (decode_snapshot_state(snap.data, st)) {
      env_.count("bad_snapshot");
      return;
    }
    // The machine first: a snapshot it cannot take must not be installed,
    // nor the log advanced past it (the replica would diverge silently).
    if (auto ec = restore_machine(st.machine)) return fail(ec, "the state machine refused a snapshot from the leader");
    if (auto ec = store_.install_snapshot(snap)) return fail(ec);
    log_rewritten();
    load_snapshot_state(std::move(st));
    rebuild_configs();
    commit_ = applied_ = snap.index;
    measure_state();
    env_.count("snapshot_installed");
    env_.send(from, raft_msg::snapshot_reply{current_term(), commit_, m.round, m.index, m.total});
  }

  void on_message(const address& from, const raft_msg::snapshot_reply& m) {
    if (failed() || !believes(from, m.term)) return;
    if (m.term > current_term()) {
      step_down(m.term);
      return;
    }
    if (!is_leader() || m.term != current_term()) return;
    auto* p = heard_from(from, m.round);
    if (!p) return;
    if (m.index == 0) {  // a transfer under way: send on from what the follower holds
      switch (p->snapshot_received(m.snap_index, m.received)) {
        case raft_parts::progress::chunk_ack::ignored:
          return;
        case raft_parts::progress::chunk_ack::forged:
          return drop("match_beyond_sent");
        case raft_parts::progress::chunk_ack::accepted:
          break;
      }
      if (p->next() <= store_.snapshot().index) send_append(from, *p);
      return;
    }
    if (!p->acknowledge(m.index)) return drop("match_beyond_sent");  // installed: the transfer is over
    advance_leader_commit();
    if (transfer_target(from)) advance_transfer();
    if (auto* q = peer_of(from); q && q->next() <= lead()->self_match)
      send_append(from, *q);  // synced entries only (above)
  }

  void on_message(const address& from, const raft_msg::timeout_now& m) {
    if (failed()) return;
    if (absurd(m.term)) return drop("absurd_term");
    // Only from the leader this replica follows, in its term: anyone else
    // could otherwise make it campaign at will.
    if (role() != raft_role::follower || m.term != current_term() || !leader_ || *leader_ != from)
      return drop("stale_timeout_now");
    if (!is_member(env_.self())) return drop("timeout_now_not_voter");
    env_.count("timeout_now_received");
    leader_.reset();
    become_candidate(true);  // no pre-vote: the leader asked for this election
  }

 private:
  /// What change_member does.
  enum class change : std::uint8_t { add_voter, add_learner, promote, remove };
  struct transfer_state {
    address target;
    timer_id timer{};
    transfer_callback done;
    bool target_campaigned = false;  ///< the target's election reached us
  };
  struct proposal {
    std::uint64_t term;
    propose_callback done;
  };
  using peer = raft_parts::progress;  // one follower's replication state (raft/progress.hpp)

  // ---- roles: each a state carrying its data, entered by one transition ----
  // (become_candidate, become_leader, step_down, fail; election_timeout for
  // pre_candidate). role() names them; failed() is stopped_state.
  struct follower_state {};
  struct pre_candidate_state {
    std::set<address> votes;  ///< pre-votes granted for the next term, its own included
  };
  struct candidate_state {
    std::set<address> votes;  ///< votes granted in its term, its own included
  };
  struct leader_state {
    std::map<address, peer> peers;                ///< every other member and learner of the latest configuration
    std::map<std::uint64_t, proposal> pending;    ///< proposals waiting on their entry, by index
    raft_parts::read_queue<read_callback> reads;  ///< ReadIndex reads waiting (raft/read_queue.hpp)
    std::uint64_t self_match = 0;                 ///< its own log is synced through here
    std::optional<transfer_state> transfer;       ///< a leadership transfer under way
  };
  /// Storage failed (or the state machine refused a snapshot): for good.
  struct stopped_state {};

  const leader_state* lead() const noexcept { return std::get_if<leader_state>(&role_); }
  leader_state* lead() noexcept { return std::get_if<leader_state>(&role_); }
  /// The leader state, or null after refusing `done` (storage_failed, not_leader):
  /// the gate of every call that needs a leader.
  template <class Done> leader_state* leading_or_refuse(Done& done) {
    DCP_ASSERT(!in_apply_hook_, "raft: the apply hook called into its Raft; do it after the event (dcp::defer)");
    if (failed()) {
      refuse(done, make_error_code(errc::storage_failed));
      return nullptr;
    }
    auto* l = lead();
    if (!l) refuse(done, dcp::make_error_code(dcp::errc::not_leader));
    return l;
  }
  /// Completes a call with an error, after the call has returned (DESIGN §10).
  template <class Done> void refuse(Done& done, std::error_code ec) { out_.complete(std::move(done), ec); }

  /// What a snapshot holds besides the log position: the configuration, the
  /// session table and the user's state machine.
  struct snapshot_state {
    std::vector<address> members;  // the voters
    raft_parts::session_table::map sessions;
    bytes machine;
    std::vector<address> learners;  // last, and only when there are some: the layout before learners otherwise
    template <class A> void serialize(A& ar) {
      ar(members, sessions, machine);
      wire::trailing(ar, learners);
    }
  };
  static std::error_code decode_snapshot_state(byte_view data, snapshot_state& st) {
    return storage::detail::decode_value(data, st);
  }

  // ---- persistence ----

  void restore_from_storage() {
    const auto& snap = store_.snapshot();
    if (snap.index > 0) {
      snapshot_state st;
      if (auto ec = decode_snapshot_state(snap.data, st))
        throw error(dcp::errc::io_error, "raft: the stored snapshot does not decode: " + ec.message());
      if (auto ec = restore_machine(st.machine))
        throw error(ec, "raft: the state machine refused the stored snapshot: " + ec.message());
      load_snapshot_state(std::move(st));
    }
    commit_ = applied_ = snap.index;
    durable_ = store_.last_index();  // what a store holds when opened survived
    rebuild_configs();
    measure_state();
  }

  /// The quota's measure: the snapshot's size, and the log's bytes after it.
  void measure_state() {
    snapshot_bytes_ = store_.snapshot().data.size();
    log_bytes_ = 0;
    for (auto i = store_.first_index(); i <= store_.last_index(); ++i) log_bytes_ += store_.entry(i).data.size();
  }

  /// Hands a snapshot to the state machine: an error if it cannot take it
  /// (a machine whose restore() returns std::error_code may refuse; one whose
  /// restore() returns void cannot).
  std::error_code restore_machine(byte_view data) {
    if constexpr (std::is_void_v<decltype(sm_.restore(data))>) {
      sm_.restore(data);
      return {};
    } else {
      return sm_.restore(data);
    }
  }
  /// The session table and configuration of a snapshot the machine has taken.
  void load_snapshot_state(snapshot_state st) {
    sessions_.restore(std::move(st.sessions));
    configs_.snapshot_recorded(raft_membership{std::move(st.members), std::move(st.learners)});
  }

  /// The configurations in effect: the snapshot's (or the bootstrap list),
  /// then one per config entry in the log.
  void rebuild_configs() {
    configs_.rebuild(store_.snapshot().index);
    for (auto i = store_.first_index(); i <= store_.last_index(); ++i) note_config(store_.entry(i));
  }
  void note_config(const log_entry& e) {
    if (e.kind != entry_kind::config) return;
    // Written by a leader's change_member (raft_membership: the voters, and
    // the learners if any). One that arrives undecodable, or naming a
    // server as both, came from a peer (or a damaged disk), not from a bug
    // here: counted and ignored.
    if (!configs_.append(e.index, e.data)) env_.count("malformed_config_entry");
  }

  bool save_state(const storage::hard_state& hs) {
    DCP_ASSERT(hs.term >= current_term(), "the term never decreases (3.3)");
    DCP_ASSERT(hs.term > current_term() || !store_.state().vote || hs.vote == store_.state().vote,
               "at most one vote per term (3.4)");
    if (auto ec = store_.save_state(hs)) {
      fail(ec);
      return false;
    }
    return true;
  }
  // ---- durability (the log's fsync, performed by the runtime) ----

  /// Asks for the log to be synced: now, or after the sync under way.
  void want_sync() {
    if (sync_.running) {
      sync_.wanted = true;
      return;
    }
    auto job = store_.sync_later();
    sync_.running = true;
    sync_.wanted = false;
    sync_.cut = ~std::uint64_t{0};
    const bool io = static_cast<bool>(job.io);
    if (!io) job.io = [] { return std::error_code{}; };
    env_.perform(std::move(job.io),
                 out_.guard([this, upto = job.upto, io](std::error_code ec) { synced(ec, upto, io); }));
  }

  /// The sync asked for when the log ended at `upto` is done.
  void synced(std::error_code ec, std::uint64_t upto, bool io) {
    sync_.running = false;
    if (failed()) return;
    if (ec) return fail(ec);
    // Entries cut while it ran were replaced by ones it may not have covered.
    const auto covered = std::min(upto, sync_.cut - 1);
    if (covered > durable_) {
      durable_ = std::min(covered, store_.last_index());
      if (io) store_.synced(durable_);
    }
    if (auto* l = lead()) {
      l->self_match = durable_;
      advance_leader_commit();
      if (auto* now = lead())  // committing may end the leadership (its removal commits, storage fails)
        for (auto& [a, p] : now->peers)
          if (p.next() <= store_.last_index()) send_append(a, p);
    } else {
      release_answer();
    }
    if (sync_.wanted && !failed()) want_sync();
  }

  /// The log was rewritten and synced whole (a snapshot installed): all of it
  /// is durable, and a sync under way covers nothing appended after. (A held
  /// answer goes when that sync ends, or at the end of the handler: not in
  /// the middle of installing or taking a snapshot.)
  void log_rewritten() {
    durable_ = store_.last_index();
    sync_.cut = std::min(sync_.cut, durable_ + 1);
  }
  /// Sends the held answer once its entries are durable; one of an earlier
  /// term is dropped (that leader is gone; the next one asks again).
  void release_answer() {
    if (!answer_ || answer_->reply.match > durable_) return;
    auto a = std::move(*answer_);
    answer_.reset();
    if (a.reply.term == current_term()) answer_append(a.leader, a.reply, a.commit);
  }

  /// A follower's success answer to AppendEntries, once its entries are durable.
  void answer_append(const address& leader, raft_msg::append_reply reply, std::uint64_t commit) {
    // Only what the leader sent is known to match: entries past it may be stale.
    if (reply.success) advance_commit_to(std::min(commit, reply.match));
    reply.last = store_.last_index();
    env_.send(leader, reply);
  }
  /// Keeps a success answer until its entries are durable: the one reaching
  /// furthest (answers are cumulative), with the latest round and commit index.
  void hold_answer(const address& leader, const raft_msg::append_reply& reply, std::uint64_t commit) {
    if (!answer_ || answer_->reply.term < reply.term || answer_->leader != leader) {
      answer_ = held_answer{leader, reply, commit};
      return;
    }
    answer_->reply.match = std::max(answer_->reply.match, reply.match);
    answer_->reply.round = std::max(answer_->reply.round, reply.round);
    answer_->commit = std::max(answer_->commit, commit);
  }

  /// Storage failed (or the state machine refused a snapshot): a replica that
  /// cannot keep its state must stop, loudly.
  /// The one transition into stopped_state, from any role, for good.
  void fail(std::error_code ec, std::string_view what = "storage failed") {
    if (failed()) return;
    auto was = std::exchange(role_, stopped_state{});
    dcp::log(env_, log_level::error, "raft: ", what, " (", ec.message(), "); this replica stops");
    env_.count("storage_failed");
    cancel_timer(election_timer_);
    cancel_timer(flush_timer_);
    heartbeat_.stop();
    if (auto* l = std::get_if<leader_state>(&was)) stop_leading(*l, make_error_code(errc::storage_failed));
  }

  // ---- log ----

  void propose_entry(command c, propose_callback done) {
    auto* l = leading_or_refuse(done);
    if (!l) return;
    if (l->transfer) {  // the target must catch up with a log that stops growing (3.10)
      env_.count("proposal_refused_transferring");
      return refuse(done, make_error_code(errc::leadership_transfer_in_progress));
    }
    bytes data;
    storage::detail::encode_value(c, data);
    // An entry travels whole in one AppendEntries message: at most one chunk.
    if (data.size() > cfg_.snapshot_chunk_bytes) {
      env_.count("entry_too_large");
      return refuse(done, dcp::make_error_code(dcp::errc::invalid_argument));
    }
    // The quota: the next snapshot holds at most the last one plus the log
    // since. (Forgetting a session shrinks the state: never refused.)
    if (c.kind != command_kind::unregister_client &&
        snapshot_bytes_ + log_bytes_ + data.size() > cfg_.max_snapshot_bytes) {
      env_.count("state_quota_exceeded");
      return refuse(done, make_error_code(errc::snapshot_too_large));
    }
    const auto index = append_local(entry_kind::command, std::move(data));
    if (index == 0) return refuse(done, make_error_code(errc::storage_failed));
    lead()->pending.emplace(index, proposal{current_term(), std::move(done)});
  }

  std::uint64_t last_term() const { return *store_.term_at(store_.last_index()); }

  /// Appends an entry of the leader's term; returns its index (0 on failure).
  std::uint64_t append_local(entry_kind kind, bytes data) {
    log_entry e{store_.last_index() + 1, current_term(), kind, std::move(data)};
    if (auto ec = store_.append(e)) {
      fail(ec);
      return 0;
    }
    log_bytes_ += e.data.size();
    note_config(e);
    if (!flush_timer_)
      flush_timer_ = env_.arm(duration::zero(), [this] {
        flush_timer_ = {};
        flush();
      });
    return e.index;
  }

  /// Group commit: one sync for every entry proposed in this instant, then
  /// replicate them. A zero-delay timer, not env.post: the flush is not an
  /// end-of-event hook but a batch, and a timer runs after the events
  /// already due (the other proposals of the instant in the simulator, the
  /// other frames of the reactor round over TCP), where posted work would run
  /// right after this one. Flushing per event cost 64 coord clients three
  /// times the messages per operation (coord_lock: 4.1 -> 12.0).
  void flush() {
    if (is_leader()) want_sync();  // synced() counts the entries and sends them
  }

  /// Follower side of AppendEntries for one entry; false if storage failed.
  bool merge(const log_entry& e) {
    const auto have = store_.term_at(e.index);
    if (have == e.term) return true;  // already there (a duplicate or an old retransmission)
    if (have) {
      if (e.index <= commit_) {  // a committed entry never changes; a leader that says so is wrong
        env_.count("conflict_below_commit");
        return true;
      }
      ++truncations_;
      if (auto ec = store_.truncate_suffix(e.index)) {
        fail(ec);
        return false;
      }
      durable_ = std::min(durable_, e.index - 1);
      sync_.cut = std::min(sync_.cut, e.index);
      configs_.truncate_from(e.index);
      measure_state();
    }
    // The prev check passed and the leader's entries are consecutive
    // (well_formed): each entry extends the log or overlaps it.
    DCP_ASSERT(e.index == store_.last_index() + 1, "an entry merged after the prev check leaves no gap");
    if (auto ec = store_.append(e)) {
      fail(ec);
      return false;
    }
    log_bytes_ += e.data.size();
    note_config(e);
    return true;
  }

  void advance_commit_to(std::uint64_t index) {
    if (index <= commit_) return;
    commit_ = std::min(index, store_.last_index());
    apply_committed();
  }

  void advance_leader_commit() {
    const auto* l = lead();
    if (!l) return;
    // The largest index a quorum has stored; only an entry of this term commits by counting.
    std::vector<std::uint64_t> candidates{l->self_match};
    for (auto& [a, p] : l->peers) candidates.push_back(p.match());
    std::sort(candidates.begin(), candidates.end(), std::greater<>());
    for (auto n : candidates) {
      if (n <= commit_) break;
      if (store_.term_at(n) != current_term()) continue;
      std::vector<address> ackers;
      if (l->self_match >= n) ackers.push_back(env_.self());
      for (auto& [a, p] : l->peers)
        if (p.match() >= n) ackers.push_back(a);
      if (has_quorum(ackers)) {
        advance_commit_to(n);  // may end the leadership (its removal commits, storage fails): l is not used after
        if (auto* now = lead()) {
          now->reads.commit_known(commit_);  // the first commit of the term unblocks waiting reads
          advance_reads();
        }
        break;
      }
    }
  }

  void apply_committed() {
    while (applied_ < commit_ && !failed()) {
      const log_entry e = store_.entry(applied_ + 1);  // a copy: a configuration's commit may fail storage
      ++applied_;
      if (e.kind == entry_kind::command)
        apply_command(e);
      else
        hook(e, nullptr, nullptr);
      if (e.kind == entry_kind::config) config_committed(e.index);
    }
    if (is_leader()) advance_reads();
    maybe_compact();
  }

  void apply_command(const log_entry& e) {
    command c;
    if (storage::detail::decode_value(e.data, c)) {
      env_.count("undecodable_command");
      hook(e, nullptr, nullptr);
      return finish(e, make_error_code(dcp::errc::malformed_payload));
    }
    if (c.kind == command_kind::register_client) return register_session(e, c);
    if (c.kind == command_kind::unregister_client) {
      sessions_.close(c.client);
      hook(e, &c, nullptr);
      return finish(e, bytes{});
    }
    if (c.client == 0) {
      bytes r = sm_.apply(c.payload);
      hook(e, &c, &r);
      return finish(e, std::move(r));
    }
    using verdict = raft_parts::session_table::verdict;
    const auto v = sessions_.admit(c.client, c.seq, e.index);
    if (v != verdict::apply) {
      hook(e, &c, nullptr);  // in the log, not applied
      if (v == verdict::unknown_session) return finish(e, make_error_code(errc::unknown_session));
      if (v == verdict::stale) return finish(e, make_error_code(errc::stale_request));
      env_.count("duplicate_suppressed");
      return finish(e, sessions_.result_of(c.client));
    }
    bytes r = sm_.apply(c.payload);
    sessions_.record(c.client, c.seq, e.index, r);
    hook(e, &c, &r);
    finish(e, std::move(r));
  }

  /// A registration: the entry's index names the new session. The table is
  /// bounded: beyond max_sessions the least recently used session goes (its
  /// client learns of it as unknown_session, an unknown outcome).
  void register_session(const log_entry& e, const command& c) {
    if (sessions_.open(e.index)) env_.count("session_evicted");
    hook(e, &c, nullptr);
    bytes id;
    storage::detail::encode_value(e.index, id);
    finish(e, std::move(id));
  }

  /// The apply hook sees each entry as it is applied, inside this event: it
  /// may read the replica but not call into it (asserted).
  void hook(const log_entry& e, const command* c, const bytes* r) {
    if (!apply_hook_) return;
    in_apply_hook_ = true;
    struct reset {
      bool& flag;
      ~reset() { flag = false; }
    } guard{in_apply_hook_};
    apply_hook_(e, c, r);
  }

  void finish(const log_entry& e, result<bytes> r) {
    auto* l = lead();
    if (!l) return;  // proposals wait on the leader only
    auto it = l->pending.find(e.index);
    if (it == l->pending.end()) return;
    auto p = std::move(it->second);
    l->pending.erase(it);
    if (p.term != e.term)
      out_.complete(std::move(p.done), make_error_code(errc::outcome_unknown));  // our entry was overwritten
    else
      out_.complete(std::move(p.done), std::move(r));
  }

  void maybe_compact() {
    if (applied_ - store_.snapshot().index < cfg_.snapshot_every) return;
    const auto& conf = configs_.at(applied_);
    snapshot_state st{conf.voters, sessions_.sessions(), bytes(sm_.snapshot()), conf.learners};
    storage::snapshot snap{applied_, *store_.term_at(applied_), {}};
    storage::detail::encode_value(st, snap.data);
    if (auto ec = store_.install_snapshot(snap)) return fail(ec);
    log_rewritten();
    configs_.compact(applied_);
    measure_state();
    env_.count("snapshots_taken");
  }

  // ---- roles ----

  bool is_member(const address& a) const {
    const auto& m = members();
    return std::find(m.begin(), m.end(), a) != m.end();
  }
  /// In any configuration this replica knows (the current one or one still
  /// in its log): a removed leader replicates its own removal.
  bool known_member(const address& a) const { return configs_.known(a); }
  static constexpr std::uint64_t max_term_step = std::uint64_t{1} << 32;
  bool absurd(std::uint64_t term) const { return term > current_term() && term - current_term() > max_term_step; }
  /// The filter a reply passes first: from a member it could have asked,
  /// with a term that leaves room for elections after it.
  bool believes(const address& from, std::uint64_t term) {
    if (!known_member(from)) {
      drop("not_a_member");
      return false;
    }
    if (absurd(term)) {
      drop("absurd_term");
      return false;
    }
    return true;
  }
  /// Whether `ackers` include a quorum of the voters. Learners (and anyone
  /// else outside the voters) are filtered out here, the one place every
  /// count (votes, commit, reads, check-quorum) passes, so no quorum rule
  /// can count them.
  bool has_quorum(const std::vector<address>& ackers) const {
    std::vector<address> voters;
    for (const auto& a : ackers)
      if (is_member(a)) voters.push_back(a);
    for (const auto& a : voters) DCP_ASSERT(!is_learner(a), "a learner never counts towards a quorum");
    return quorum_.is_quorum(members(), voters);
  }
  bool has_quorum(const std::set<address>& ackers) const {
    return has_quorum(std::vector<address>(ackers.begin(), ackers.end()));
  }

  /// Steps down to follower in `term` (>= current). False if storage failed.
  bool step_down(std::uint64_t term) {
    if (term > current_term()) {
      if (!save_state({term, std::nullopt})) return false;
      leader_.reset();
    }
    if (role() != raft_role::follower) {
      auto was = std::exchange(role_, follower_state{});
      if (auto* l = std::get_if<leader_state>(&was)) {
        heartbeat_.stop();
        cancel_timer(check_timer_);
        stop_leading(*l, dcp::make_error_code(dcp::errc::not_leader));
      }
      reset_election_timer();
    }
    return true;
  }

  /// The end of a leadership (`l`, no longer role_): its waiters learn why
  /// (proposals: outcome_unknown when it is not_leader), and a leadership
  /// transfer succeeded if its target's election reached us.
  void stop_leading(leader_state& l, std::error_code ec) {
    const bool lost = ec == dcp::make_error_code(dcp::errc::not_leader);
    for (auto& [i, p] : l.pending) out_.complete(std::move(p.done), lost ? make_error_code(errc::outcome_unknown) : ec);
    for (auto& done : l.reads.take_all()) out_.complete(std::move(done), ec);
    if (l.transfer) finish_transfer(*l.transfer, lost && l.transfer->target_campaigned ? std::error_code{} : ec);
  }

  /// Whether AppendEntries or InstallSnapshot of `term` (>= ours) from
  /// `from` may be followed (see "Whom it believes" above).
  bool may_lead(const address& from, std::uint64_t term) {
    if (role() == raft_role::follower && term == current_term() && leader_ && *leader_ != from) {
      drop("second_leader_in_term");  // Election Safety: one leader per term
      return false;
    }
    if (known_member(from) || !is_member(env_.self())) return true;
    if (term == current_term() && !leader_) return true;  // the term came from members it knows
    drop("not_a_member");
    return false;
  }

  /// A message from the leader of `term` (>= ours): follow it.
  bool accept_leader(const address& from, std::uint64_t term) {
    if (term > current_term() || role() != raft_role::follower) {
      if (is_leader() && term == current_term()) {
        env_.count("two_leaders_in_term");  // impossible unless storage lost a vote
        return false;
      }
      if (!step_down(term)) return false;
    }
    leader_ = from;
    last_leader_contact_ = env_.now();
    reset_election_timer();
    return true;
  }

  void reset_election_timer() {
    cancel_timer(election_timer_);
    if (failed()) return;
    const auto span = (cfg_.election_timeout_max - cfg_.election_timeout_min).count();
    const duration after = cfg_.election_timeout_min + duration(span > 0 ? env_.rng().between(0, span) : 0);
    election_timer_ = env_.arm(after, [this] {
      election_timer_ = {};
      election_timeout();
    });
  }

  void election_timeout() {
    if (is_leader() || failed()) return;
    reset_election_timer();
    if (!is_member(env_.self())) return;  // not (or no longer) a voter: wait to be told
    leader_.reset();
    if (cfg_.pre_vote) {
      auto& pre = role_.template emplace<pre_candidate_state>(pre_candidate_state{{env_.self()}});
      if (has_quorum(pre.votes)) return become_candidate();
      for (const auto& m : members())
        if (m != env_.self())
          env_.send(m, raft_msg::vote_request{current_term() + 1, store_.last_index(), last_term(), true});
    } else {
      become_candidate();
    }
  }

  /// `transfer`: the election a leader asked for (timeout_now).
  void become_candidate(bool transfer = false) {
    if (!save_state({current_term() + 1, env_.self()})) return;
    auto& cand = role_.template emplace<candidate_state>(candidate_state{{env_.self()}});
    env_.count("elections");
    reset_election_timer();
    if (has_quorum(cand.votes)) return become_leader();
    for (const auto& m : members())
      if (m != env_.self())
        env_.send(m, raft_msg::vote_request{current_term(), store_.last_index(), last_term(), false, transfer});
  }

  void become_leader() {
    role_.template emplace<leader_state>();  // no followers tracked, nothing synced, no waiters yet
    leader_ = env_.self();
    cancel_timer(election_timer_);
    sync_peers();
    dcp::log(env_, log_level::info, "raft: leader of term ", current_term());
    env_.count("leaderships");
    append_local(entry_kind::noop, {});  // commits the entries of earlier terms (3.6.2)
    heartbeat_.start(env_, cfg_.heartbeat_interval, [this] { broadcast_append(); });
    arm_check_quorum();
    broadcast_append();
  }

  /// Peers follow the latest configuration.
  void sync_peers() {
    auto& peers = lead()->peers;
    for (auto it = peers.begin(); it != peers.end();)
      it = configs_.latest().has(it->first) ? std::next(it) : peers.erase(it);
    std::vector<address> all = members();
    all.insert(all.end(), learners().begin(), learners().end());
    for (const auto& m : all)
      if (m != env_.self() && !peers.contains(m)) peers.emplace(m, peer(store_.last_index()));
  }

  void arm_check_quorum() {
    check_timer_ = env_.arm(cfg_.election_timeout_max, [this] {
      check_timer_ = {};
      auto* l = lead();
      if (!l) return;
      std::vector<address> alive{env_.self()};
      for (auto& [a, p] : l->peers)
        if (p.take_heard()) alive.push_back(a);
      if (!has_quorum(alive) || !is_member(env_.self())) {
        dcp::log(env_, log_level::info, "raft: lost contact with a quorum; stepping down");
        env_.count("check_quorum_step_down");
        step_down(current_term());
        return;
      }
      // Reads that a quorum never confirmed within an election timeout fail, loudly.
      for (auto& done : l->reads.take_expired(env_.now(), cfg_.election_timeout_max))
        out_.complete(std::move(done), dcp::make_error_code(dcp::errc::timed_out));
      arm_check_quorum();
    });
  }

  /// Notes that a peer acknowledged us in this term (it may confirm reads);
  /// its progress, or null if it is not one of ours.
  peer* heard_from(const address& from, std::uint64_t round) {
    auto* p = peer_of(from);
    if (!p) return nullptr;
    p->heard(round);
    advance_reads();
    return p;
  }
  peer* peer_of(const address& a) {
    auto* l = lead();
    if (!l) return nullptr;
    auto it = l->peers.find(a);
    return it == l->peers.end() ? nullptr : &it->second;
  }

  bool committed_in_term() const { return store_.term_at(commit_) == current_term(); }

  void advance_reads() {
    // Confirmed: a quorum (this leader among it) acknowledged the round.
    auto confirmed = [this](std::uint64_t round) {
      std::vector<address> ackers{env_.self()};
      for (auto& [a, p] : lead()->peers)
        if (p.acked_round() >= round) ackers.push_back(a);
      return has_quorum(ackers);
    };
    auto* l = lead();
    if (!l) return;
    while (auto r = l->reads.pop_ready(applied_, confirmed)) out_.complete(std::move(r->done), r->index);
  }

  void broadcast_append() {
    auto* l = lead();
    if (!l) return;
    ++round_;
    for (auto& [a, p] : l->peers) send_append(a, p);
    if (l->transfer) advance_transfer();  // timeout_now again each heartbeat: it may have been lost
  }

  /// Sends timeout_now once the target holds the leader's whole (synced)
  /// log: its vote requests must win every voter's log check.
  void advance_transfer() {
    auto* l = lead();
    if (!l || !l->transfer) return;
    auto* p = peer_of(l->transfer->target);
    if (!p) return;
    if (p->match() == store_.last_index() && l->self_match == store_.last_index()) {
      env_.count("timeout_now_sent");
      env_.send(l->transfer->target, raft_msg::timeout_now{current_term()});
    }
  }

  /// Ends the leader's transfer (it goes on leading).
  void end_transfer(std::error_code ec) {
    auto* l = lead();
    if (!l || !l->transfer) return;
    auto t = std::move(*l->transfer);
    l->transfer.reset();
    finish_transfer(t, ec);
  }
  void finish_transfer(transfer_state& t, std::error_code ec) {
    cancel_timer(t.timer);
    out_.complete(std::move(t.done), ec);
  }
  /// The leader's transfer targets `a`.
  bool transfer_target(const address& a) const {
    const auto* l = lead();
    return l && l->transfer && l->transfer->target == a;
  }
  /// `a`'s election reached us (a vote request or AppendEntries of a later
  /// term): if it is a transfer's target, the transfer did its work.
  void note_target_campaigned(const address& a) {
    if (transfer_target(a)) lead()->transfer->target_campaigned = true;
  }

  void send_append(const address& to, peer& p) {
    if (p.needs_snapshot(store_.snapshot().index)) return send_snapshot_chunk(to, p);
    raft_msg::append m{current_term(), p.next() - 1, *store_.term_at(p.next() - 1), commit_, round_, {}};
    // Send only what is durable here: a follower must never hold an entry that
    // the leader could lose (it would be counted towards a quorum).
    // Bounded in entries and in bytes (at least one entry, and an entry is at
    // most one chunk: propose refuses larger), so a batch fits in one frame.
    const auto last = std::min(lead()->self_match, p.next() - 1 + cfg_.max_entries_per_message);
    std::size_t batch_bytes = 0;
    for (auto i = p.next(); i <= last; ++i) {
      const auto& e = store_.entry(i);
      if (!m.entries.empty() && batch_bytes + e.data.size() > cfg_.snapshot_chunk_bytes) break;
      batch_bytes += e.data.size();
      m.entries.push_back(e);
    }
    p.entries_sent(p.next() - 1 + m.entries.size());
    env_.send(to, m);
  }

  /// Sends the chunk the follower needs next, unless it went out less than a
  /// heartbeat ago (replies bring the next one; heartbeats resend a lost one).
  void send_snapshot_chunk(const address& to, peer& p) {
    if (!outgoing_ || outgoing_->index != store_.snapshot().index)
      outgoing_ = std::make_shared<const storage::snapshot>(store_.snapshot());
    const auto& tx = p.begin_snapshot(outgoing_);  // (re)starts with the newest unless under way
    const auto& snap = *tx.snap;
    const std::uint64_t total = snap.data.size();
    if (total > cfg_.max_snapshot_bytes) {  // cannot happen while proposals respect the quota (sessions aside)
      env_.count("snapshot_too_large");
      dcp::log(env_, log_level::error, "raft: the snapshot (", total, " bytes) exceeds max_snapshot_bytes (",
               cfg_.max_snapshot_bytes, "): lagging followers cannot catch up; raise the limit on every replica");
      return;
    }
    const auto now = env_.now();
    if (!p.chunk_due(now, cfg_.heartbeat_interval)) return;
    const auto offset = std::min<std::uint64_t>(tx.offset, total);
    const auto len = std::min<std::uint64_t>(cfg_.snapshot_chunk_bytes, total - offset);
    const auto* begin = snap.data.data() + offset;
    raft_msg::install_snapshot m{
        current_term(), round_, snap.index, snap.term, offset, total, bytes(begin, begin + len), offset + len == total};
    p.chunk_sent(now, offset + len, m.done);
    env_.count("snapshot_chunks_sent");
    env_.send(to, m);
  }

  void change_member(const address& a, change what, propose_callback done) {
    auto* l = leading_or_refuse(done);
    if (!l) return;
    if (l->transfer) return refuse(done, make_error_code(errc::leadership_transfer_in_progress));
    if (configs_.latest_index() > commit_ || !committed_in_term())
      return refuse(done, make_error_code(errc::config_change_pending));
    raft_membership next = configs_.latest();
    auto erase = [](std::vector<address>& v, const address& x) { v.erase(std::find(v.begin(), v.end(), x)); };
    switch (what) {
      case change::add_voter:
      case change::add_learner:
        if (next.has(a)) return refuse(done, dcp::make_error_code(dcp::errc::invalid_argument));
        (what == change::add_voter ? next.voters : next.learners).push_back(a);
        break;
      case change::promote: {
        if (!next.has_learner(a)) return refuse(done, make_error_code(errc::not_a_learner));
        // Caught up: it acknowledged, in this term, the log up to within one
        // AppendEntries batch of the commit index (etcd checks a similar margin).
        const auto* p = peer_of(a);
        const auto margin = std::min<std::uint64_t>(commit_, cfg_.max_entries_per_message);
        if (!p || p->match() == 0 || p->match() + margin < commit_) {
          env_.count("promotion_refused_lagging");
          return refuse(done, make_error_code(errc::learner_not_caught_up));
        }
        erase(next.learners, a);
        next.voters.push_back(a);
        break;
      }
      case change::remove:
        if (next.has_voter(a))
          erase(next.voters, a);
        else if (next.has_learner(a))
          erase(next.learners, a);
        else
          return refuse(done, dcp::make_error_code(dcp::errc::invalid_argument));
        break;
    }
    if (next.voters.empty()) return refuse(done, dcp::make_error_code(dcp::errc::invalid_argument));
    std::sort(next.voters.begin(), next.voters.end());
    std::sort(next.learners.begin(), next.learners.end());
    bytes data;
    storage::detail::encode_value(next, data);
    const auto index = append_local(entry_kind::config, std::move(data));
    if (index == 0) return refuse(done, make_error_code(errc::storage_failed));
    sync_peers();
    lead()->pending.emplace(index, proposal{current_term(), std::move(done)});
    broadcast_append();
  }

  void config_committed(std::uint64_t index) {
    if (auto* l = lead())
      if (auto it = l->pending.find(index); it != l->pending.end()) {
        auto p = std::move(it->second);
        l->pending.erase(it);
        out_.complete(std::move(p.done), bytes{});
      }
    // A leader removed by this configuration hands over by stepping down.
    if (is_leader() && configs_.latest_index() == index && !is_member(env_.self())) step_down(current_term());
  }

  /// Entries consecutive from prev_index + 1, terms never above the sender's:
  /// anything else is not from a Raft leader, and is dropped.
  static bool well_formed(const raft_msg::append& m) {
    std::uint64_t expect = m.prev_index + 1, term = m.prev_term;
    if (m.prev_term > m.term) return false;
    for (const auto& e : m.entries) {
      if (e.index != expect++ || e.term < term || e.term > m.term || e.term == 0) return false;
      term = e.term;
    }
    return true;
  }

  void cancel_timer(timer_id& t) {
    if (t) env_.cancel(t);
    t = {};
  }
  void drop(std::string_view why) { env_.count(why); }

  E env_;
  raft_config cfg_;
  Store store_;
  Machine sm_;
  [[no_unique_address]] Quorum quorum_;
  std::variant<follower_state, pre_candidate_state, candidate_state, leader_state, stopped_state> role_;
  // The leader this replica knows of in its term, whatever its role (itself
  // while it leads, and after stepping down in the same term).
  std::optional<address> leader_;
  time_point last_leader_contact_{};
  std::uint64_t commit_ = 0, applied_ = 0, round_ = 0;  // round_: the last heartbeat round, across terms
  std::size_t snapshot_bytes_ = 0, log_bytes_ = 0;      // the quota's measure (measure_state)
  raft_parts::snapshot_receiver incoming_;  // the snapshot being received, chunk by chunk (raft/snapshot_receiver.hpp)
  std::shared_ptr<const storage::snapshot> outgoing_;  // the current snapshot, shared by the transfers that send it
  raft_parts::config_history configs_;  // the snapshot's configuration, then the log's (raft/configuration.hpp)
  raft_parts::session_table sessions_;  // the replicated client sessions (raft/session_table.hpp)
  apply_hook apply_hook_;
  bool in_apply_hook_ = false;  // hook() is running
  // The user's completions, after the event (DESIGN §10). Dropped with the
  // replica: they may refer to it.
  outbox<E> out_;
  timer_id flush_timer_{};  // the group-commit flush (flush())
  // The log's durability: it is synced through durable_; at most one sync
  // runs (performed by the runtime), another is wanted after it, and `cut`
  // is the lowest index truncated since the running one began.
  std::uint64_t durable_ = 0;
  struct sync_state {
    bool running = false, wanted = false;
    std::uint64_t cut = ~std::uint64_t{0};
  } sync_;
  // A follower's success answer waiting for its entries' sync.
  struct held_answer {
    address leader;
    raft_msg::append_reply reply;
    std::uint64_t commit = 0;
  };
  std::optional<held_answer> answer_;
  timer_id election_timer_{}, check_timer_{};
  periodic<E> heartbeat_;
  // check_invariants' memory of the log prefix it has checked (present
  // whether or not assertions are on, so the layout is the same everywhere).
  struct checked_log {
    std::uint64_t first = 0, upto = 0, term = 0, bytes = 0, truncations = 0;
  };
  mutable checked_log checked_log_{~std::uint64_t{0}};
  std::uint64_t truncations_ = 0;  // suffixes cut (merge): the checked prefix may have changed
};

}  // namespace dcp::consensus
