#pragma once
// Raft's wire: the command a log entry carries, and the seven messages
// (ids 1-7) of the raft protocol (dcp/consensus/raft.hpp). Layouts are
// those of earlier builds: fields added later are written only when set
// (wire::trailing), so builds mix in a rolling upgrade.
#include <cstdint>
#include <string_view>
#include <vector>

#include "dcp/core/bytes.hpp"
#include "dcp/storage/storage.hpp"
#include "dcp/wire/message.hpp"

namespace dcp::consensus {

using storage::log_entry;

/// What a command entry asks of the session table.
enum class command_kind : std::uint8_t {
  apply = 0,         ///< apply `payload` (once per (client, seq) when client != 0)
  register_client,   ///< create a client session; its id is this entry's index
  unregister_client  ///< forget session `client` (its later commands fail with unknown_session)
};

/// A client command as it travels in a log entry.
struct command {
  std::uint64_t client = 0;  ///< 0: no session, no deduplication
  std::uint64_t seq = 0;     ///< 1, 2, 3 ... per client
  bytes payload;
  command_kind kind = command_kind::apply;
  template <class A> void serialize(A& ar) { ar(kind, client, seq, payload); }
};

namespace raft_msg {
struct vote_request {
  static constexpr message_type wire_id = 1;
  static constexpr std::string_view wire_name = "vote_request";
  std::uint64_t term = 0, last_index = 0, last_term = 0;
  bool pre_vote = false;
  /// Sent by the target of a leadership transfer (after timeout_now): the
  /// receiver grants it even while it hears from a leader (stickiness is
  /// waived: the leader asked for this election, dissertation 3.10).
  /// Written only when set (wire::trailing): other vote requests keep the
  /// layout of builds before it.
  bool transfer = false;
  template <class A> void serialize(A& ar) {
    ar(term, last_index, last_term, pre_vote);
    wire::trailing(ar, transfer);
  }
};
struct vote_reply {
  static constexpr message_type wire_id = 2;
  static constexpr std::string_view wire_name = "vote_reply";
  std::uint64_t term = 0;
  bool granted = false, pre_vote = false;
  template <class A> void serialize(A& ar) { ar(term, granted, pre_vote); }
};
struct append {
  static constexpr message_type wire_id = 3;
  static constexpr std::string_view wire_name = "append";
  std::uint64_t term = 0, prev_index = 0, prev_term = 0, commit = 0, round = 0;
  std::vector<log_entry> entries;
  template <class A> void serialize(A& ar) { ar(term, prev_index, prev_term, commit, round, entries); }
};
struct append_reply {
  static constexpr message_type wire_id = 4;
  static constexpr std::string_view wire_name = "append_reply";
  std::uint64_t term = 0;
  bool success = false;
  std::uint64_t match = 0;  ///< success: last index known to agree; failure: the rejected prev_index
  std::uint64_t last = 0;   ///< the follower's last log index (a hint for the leader's next index)
  std::uint64_t round = 0;
  template <class A> void serialize(A& ar) { ar(term, success, match, last, round); }
};
/// One chunk of a snapshot (the paper's InstallSnapshot RPC, Figure 13):
/// bytes [offset, offset + data.size()) of a snapshot of `total` bytes that
/// covers the log through `index` (of term `last_term`); `done` on the last.
struct install_snapshot {
  static constexpr message_type wire_id = 5;
  static constexpr std::string_view wire_name = "install_snapshot";
  std::uint64_t term = 0, round = 0;
  std::uint64_t index = 0, last_term = 0;
  std::uint64_t offset = 0, total = 0;
  bytes data;
  bool done = false;
  template <class A> void serialize(A& ar) { ar(term, round, index, last_term, offset, total, data, done); }
};
/// index: the follower holds the log through `index` (the snapshot is
/// installed), or 0 while a transfer is under way; then `received` bytes of
/// snapshot `snap_index` are buffered, and the next chunk starts there.
struct snapshot_reply {
  static constexpr message_type wire_id = 6;
  static constexpr std::string_view wire_name = "snapshot_reply";
  std::uint64_t term = 0, index = 0, round = 0;
  std::uint64_t snap_index = 0, received = 0;
  template <class A> void serialize(A& ar) { ar(term, index, round, snap_index, received); }
};
/// Leadership transfer (dissertation 3.10; etcd-raft's MsgTimeoutNow): the
/// leader of `term`, having brought the receiver's log up to date, tells it
/// to campaign at once rather than wait for its election timer.
struct timeout_now {
  static constexpr message_type wire_id = 7;
  static constexpr std::string_view wire_name = "timeout_now";
  std::uint64_t term = 0;
  template <class A> void serialize(A& ar) { ar(term); }
};
}  // namespace raft_msg

}  // namespace dcp::consensus
