#pragma once
// The wire between coordination clients and replicas.
//
// Clients and replicas speak one protocol id (default 120): a frame is
// dispatched by the sender's protocol id, so coord::server and coord::client
// share this message set and each ignores the half meant for the other.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "dcp/coord/machine.hpp"
#include "dcp/core/address.hpp"
#include "dcp/wire/message.hpp"

namespace dcp::coord {

/// Why a replica did not answer a request with a result.
enum class refusal : std::uint8_t {
  none = 0,
  not_leader,       ///< ask `leader` (if known)
  retry,            ///< leadership changed: outcome unknown; resend with the same sequence number
  unknown_session,  ///< the log does not know the client's command session (evicted): outcome
                    ///< unknown (an earlier send may have applied); register a new one
  failed,           ///< the replica cannot serve (storage failure, bad request)
};

namespace msg {
struct command {
  static constexpr message_type wire_id = 1;
  static constexpr std::string_view wire_name = "command";
  std::uint64_t client = 0, seq = 0;
  request req;
  template <class A> void serialize(A& ar) { ar(client, seq, req); }
};
struct command_reply {
  static constexpr message_type wire_id = 2;
  static constexpr std::string_view wire_name = "command_reply";
  std::uint64_t client = 0, seq = 0;
  refusal refused = refusal::none;
  std::optional<address> leader;
  reply result;
  template <class A> void serialize(A& ar) { ar(client, seq, refused, leader, result); }
};
struct keepalive {
  static constexpr message_type wire_id = 3;
  static constexpr std::string_view wire_name = "keepalive";
  session_id session = 0;
  std::uint64_t nonce = 0;
  std::uint64_t secret = 0;  ///< the session's: only its owner renews it and sees what it holds
  template <class A> void serialize(A& ar) { ar(session, nonce, secret); }
};
struct keepalive_ack {
  static constexpr message_type wire_id = 4;
  static constexpr std::string_view wire_name = "keepalive_ack";
  session_id session = 0;
  std::uint64_t nonce = 0;
  refusal refused = refusal::none;
  std::optional<address> leader;
  session_view view;
  template <class A> void serialize(A& ar) { ar(session, nonce, refused, leader, view); }
};
struct query {
  static constexpr message_type wire_id = 5;
  static constexpr std::string_view wire_name = "query";
  std::string name;
  std::uint64_t nonce = 0;
  template <class A> void serialize(A& ar) { ar(name, nonce); }
};
struct query_reply {
  static constexpr message_type wire_id = 6;
  static constexpr std::string_view wire_name = "query_reply";
  std::uint64_t nonce = 0;
  refusal refused = refusal::none;
  std::optional<address> leader;
  std::vector<holder> holders;  ///< values only: sessions and fencing tokens are not disclosed
  template <class A> void serialize(A& ar) { ar(nonce, refused, leader, holders); }
};
/// Something changed for this client's session: ask (keepalive) now rather than at the next period.
struct notify {
  static constexpr message_type wire_id = 7;
  static constexpr std::string_view wire_name = "notify";
  session_id session = 0;
  template <class A> void serialize(A& ar) { ar(session); }
};

/// A linearizable read of one key of the key-value store (ReadIndex at the leader).
struct get {
  static constexpr message_type wire_id = 8;
  static constexpr std::string_view wire_name = "get";
  std::string key;
  std::uint64_t nonce = 0;
  template <class A> void serialize(A& ar) { ar(key, nonce); }
};
struct get_reply {
  static constexpr message_type wire_id = 9;
  static constexpr std::string_view wire_name = "get_reply";
  std::uint64_t nonce = 0;
  refusal refused = refusal::none;
  std::optional<address> leader;
  std::optional<bytes> value;  ///< nullopt: the key was never written
  template <class A> void serialize(A& ar) { ar(nonce, refused, leader, value); }
};

/// Asks the leader to seal a lease token for a grant the session holds
/// (when the replicas issue leases: server::issue_leases). It renews the
/// session as a keepalive does.
struct lease_request {
  static constexpr message_type wire_id = 10;
  static constexpr std::string_view wire_name = "lease_request";
  session_id session = 0;
  grant held;
  std::uint64_t nonce = 0;
  std::uint64_t secret = 0;  ///< the session's: only its owner gets a token for its grant
  template <class A> void serialize(A& ar) { ar(session, held, nonce, secret); }
};
struct lease_reply {
  static constexpr message_type wire_id = 11;
  static constexpr std::string_view wire_name = "lease_reply";
  std::uint64_t nonce = 0;
  refusal refused = refusal::none;
  std::optional<address> leader;
  status code = status::granted;  ///< granted (token holds the sealed bytes), not_held or no_session
  bytes token;
  template <class A> void serialize(A& ar) { ar(nonce, refused, leader, code, token); }
};

/// Asks the leader to register a command session in the log (Raft 6.3):
/// commands then carry its id and a sequence number, so each applies once.
struct register_client {
  static constexpr message_type wire_id = 12;
  static constexpr std::string_view wire_name = "register_client";
  std::uint64_t nonce = 0;
  template <class A> void serialize(A& ar) { ar(nonce); }
};
struct register_reply {
  static constexpr message_type wire_id = 13;
  static constexpr std::string_view wire_name = "register_reply";
  std::uint64_t nonce = 0;
  refusal refused = refusal::none;
  std::optional<address> leader;
  std::uint64_t client = 0;  ///< the new command session's id (the log index of its registration)
  template <class A> void serialize(A& ar) { ar(nonce, refused, leader, client); }
};

/// A linearizable range read (ReadIndex at the leader): keys in
/// [key, range_end) with their revisions (range_end empty: `key` alone;
/// "\0": every key from `key` on; prefix_end(p): the prefix p).
struct range {
  static constexpr message_type wire_id = 14;
  static constexpr std::string_view wire_name = "range";
  std::string key, range_end;
  std::uint64_t limit = 0;  ///< at most this many keys (0: up to max_range_keys)
  std::uint64_t nonce = 0;
  template <class A> void serialize(A& ar) { ar(key, range_end, limit, nonce); }
};
struct range_reply {
  static constexpr message_type wire_id = 15;
  static constexpr std::string_view wire_name = "range_reply";
  std::uint64_t nonce = 0;
  refusal refused = refusal::none;
  std::optional<address> leader;
  range_result result;
  template <class A> void serialize(A& ar) { ar(nonce, refused, leader, result); }
};

/// Subscribes (or renews, or cancels) watch `watch_id` of this client on
/// keys in [key, range_end), from revision `start` (0: from the next
/// change). The leader answers at once with every change since `start`
/// still in its history, then pushes changes as they apply. The client
/// renews every keepalive period from the revision after the last it has
/// seen: that re-creates the watch on a new leader and fills any gap a lost
/// push left (see client.hpp).
struct watch {
  static constexpr message_type wire_id = 16;
  static constexpr std::string_view wire_name = "watch";
  std::uint64_t watch_id = 0;
  std::string key, range_end;
  std::uint64_t start = 0;
  bool cancel = false;
  template <class A> void serialize(A& ar) { ar(watch_id, key, range_end, start, cancel); }
};
/// Every change on the watched keys in revisions (after, through], in
/// order. `compacted`: revisions up to `compact_revision` have left the
/// history, so the watch cannot resume from `start`; it is over.
struct watch_events {
  static constexpr message_type wire_id = 17;
  static constexpr std::string_view wire_name = "watch_events";
  std::uint64_t watch_id = 0;
  refusal refused = refusal::none;
  std::optional<address> leader;
  std::uint64_t after = 0, through = 0;
  bool compacted = false;
  std::uint64_t compact_revision = 0;
  std::vector<watch_event> events;
  template <class A> void serialize(A& ar) {
    ar(watch_id, refused, leader, after, through, compacted, compact_revision, events);
  }
};

/// Asks one replica for its own view of the group (an operator's question,
/// `dcpctl status`): any replica answers at once from its local state, no
/// ReadIndex, so the answer may be stale (a deposed leader still says
/// "leader" until it hears a higher term): compare the terms.
struct status {
  static constexpr message_type wire_id = 18;
  static constexpr std::string_view wire_name = "status";
  std::uint64_t nonce = 0;
  template <class A> void serialize(A& ar) { ar(nonce); }
};
struct status_reply {
  static constexpr message_type wire_id = 19;
  static constexpr std::string_view wire_name = "status_reply";
  std::uint64_t nonce = 0;
  std::string role;  ///< consensus::raft_role in words: follower, pre_candidate, candidate, leader
  std::uint64_t term = 0;
  std::optional<address> leader;          ///< the leader this replica knows of in `term` (none: not known)
  std::uint64_t commit = 0, applied = 0;  ///< its Raft commit and applied indexes
  std::uint64_t revision = 0;             ///< the key-value store's revision in its applied state
  std::vector<address> members;           ///< its current configuration's voters
  std::vector<address> learners;          ///< and its learners (non-voting members): sent only if any (wire::trailing)
  template <class A> void serialize(A& ar) {
    ar(nonce, role, term, leader, commit, applied, revision, members);
    wire::trailing(ar, learners);
  }
};

/// A linearizable range read at a past revision (etcd's Range with a
/// revision; ReadIndex at the leader): keys in [key, range_end) as they were
/// at `revision` (0: now). Answered with `code` ok (and `result`, whose
/// revision is the one asked for), compacted (below `compact_revision`, the
/// oldest revision still readable) or future_revision (above
/// `current_revision`). Separate from `range` (wire ids 14 and 15), whose
/// layout is unchanged.
struct range_at {
  static constexpr message_type wire_id = 20;
  static constexpr std::string_view wire_name = "range_at";
  std::string key, range_end;
  std::uint64_t limit = 0;     ///< at most this many keys (0: up to max_range_keys)
  std::uint64_t revision = 0;  ///< the revision to read at (0: the current one)
  std::uint64_t nonce = 0;
  template <class A> void serialize(A& ar) { ar(key, range_end, limit, revision, nonce); }
};
struct range_at_reply {
  static constexpr message_type wire_id = 21;
  static constexpr std::string_view wire_name = "range_at_reply";
  std::uint64_t nonce = 0;
  refusal refused = refusal::none;
  std::optional<address> leader;
  coord::status code = coord::status::ok;  ///< ok, compacted or future_revision
  std::uint64_t compact_revision = 0, current_revision = 0;
  range_result result;
  template <class A> void serialize(A& ar) {
    ar(nonce, refused, leader, code, compact_revision, current_revision, result);
  }
};

/// What member_change asks. remove and add keep the values of the bool
/// this field was before learners (false, true): older frames mean the same.
enum class member_op : std::uint8_t {
  remove = 0,   ///< remove a voter or a learner
  add,          ///< add a voter (at once: no catch-up)
  add_learner,  ///< add a non-voting member, to promote once it has caught up
  promote,      ///< make a learner a voter (refused while it lags: not_ready)
  move_leader,  ///< leadership transfer to voter `member` (dissertation 3.10)
};
/// Asks the leader for one change of the group (Raft's one-server change,
/// consensus/raft.hpp: add_member, add_learner, promote_learner,
/// remove_member) or of its leader (transfer_leadership); answered once the
/// new configuration has committed, or the target has taken over. An
/// operator's request (dcpctl member, dcpctl move-leader): whoever the
/// transport lets in may send it, as with etcd without auth.
struct member_change {
  static constexpr message_type wire_id = 22;
  static constexpr std::string_view wire_name = "member_change";
  std::uint64_t nonce = 0;
  member_op op = member_op::add;
  address member;
  template <class A> void serialize(A& ar) { ar(nonce, op, member); }
};
enum class member_outcome : std::uint8_t {
  done = 0,
  already,     ///< add: already a member; remove: not a member; move_leader: it leads already (nothing changed)
  pending,     ///< another change (or a transfer) is under way, or the leader has not committed in its term: retry
  invalid,     ///< the last voter, or not an address
  not_ready,   ///< promote: the learner lags the leader's log; move_leader: the target did not take over in time
  wrong_role,  ///< promote: not a learner; move_leader: not a voter (a learner, or not a member)
};
struct member_change_reply {
  static constexpr message_type wire_id = 23;
  static constexpr std::string_view wire_name = "member_change_reply";
  std::uint64_t nonce = 0;
  refusal refused = refusal::none;
  std::optional<address> leader;
  member_outcome outcome = member_outcome::done;
  std::vector<address> members;   ///< the configuration's voters after the change (done), or the leader's now
  std::vector<address> learners;  ///< and its learners: sent only if any (wire::trailing)
  template <class A> void serialize(A& ar) {
    ar(nonce, refused, leader, outcome, members);
    wire::trailing(ar, learners);
  }
};

using all =
    wire::message_set<command, command_reply, keepalive, keepalive_ack, query, query_reply, notify, get, get_reply,
                      lease_request, lease_reply, register_client, register_reply, range, range_reply, watch,
                      watch_events, status, status_reply, range_at, range_at_reply, member_change, member_change_reply>;
}  // namespace msg

inline constexpr protocol_id default_protocol_id = 120;

}  // namespace dcp::coord
