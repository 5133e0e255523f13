#pragma once
// One follower's replication progress as the Raft leader tracks it (the
// role of etcd-raft's tracker.Progress): where the follower's log agrees
// with the leader's (match), where the next AppendEntries starts (next),
// the most the leader has sent it (sent), and which of three states it is
// in, each a type carrying its own data:
//
//   probing       the leader does not yet know where the follower's log
//                 agrees with its own: next is a guess (the leader's last
//                 index + 1 at first), lowered by each rejection towards the
//                 follower's hint, never below match + 1. Unlike etcd's
//                 probe, dcp's leader does not pause while probing: every
//                 AppendEntries (a heartbeat, a flush, the answer to a
//                 rejection) starts from next, so a lost one costs nothing
//                 but the wait for the next;
//   replicating   the follower acknowledged an AppendEntries: next follows
//                 match (next = match + 1 for acknowledgements of this
//                 progress's sends), and every AppendEntries carries what the
//                 follower has not acknowledged, from next, at most one batch
//                 (go-back-N: next does not move when entries are sent, only
//                 when they are acknowledged);
//   snapshotting  next is at or below the leader's snapshot: the snapshot
//                 goes out in chunks, one in flight (the next sent when the
//                 follower reports it holds this one, the current one again
//                 at most once per heartbeat while it does not). Left for
//                 replicating only when the follower acknowledges the
//                 snapshot's index (installed, or its log already held it).
//
// Transitions are the member functions below; each leaves match < next and
// match <= sent, and match never decreases. The leader's side (which
// snapshot, when a heartbeat is due, the log's bounds) stays in raft.hpp.
#include <algorithm>
#include <cstdint>
#include <memory>
#include <optional>
#include <utility>
#include <variant>

#include "dcp/core/assert.hpp"
#include "dcp/core/time.hpp"
#include "dcp/storage/storage.hpp"

namespace dcp::consensus::raft_parts {

class progress {
 public:
  struct probing {};
  struct replicating {};
  /// A snapshot transfer: the snapshot (kept while it lasts, even if the
  /// leader compacts again meanwhile, or a transfer could never finish under
  /// steady writes), the bytes the follower holds, the most sent, and when
  /// the chunk at `offset` was last sent.
  struct snapshotting {
    std::shared_ptr<const storage::snapshot> snap;
    std::uint64_t offset = 0, sent_upto = 0;
    std::optional<time_point> sent_at;
  };
  using state = std::variant<probing, replicating, snapshotting>;

  /// A follower the leader starts replicating to, its own log ending at
  /// `leader_last`. Counted as heard from until the first check-quorum says
  /// otherwise: the check may fire before a new follower had a chance to
  /// answer (etcd marks a new progress RecentActive for the same reason).
  explicit progress(std::uint64_t leader_last) noexcept : next_(leader_last + 1) {}

  std::uint64_t next() const noexcept { return next_; }
  std::uint64_t match() const noexcept { return match_; }
  /// The highest index sent: an acknowledgement of more is forged.
  std::uint64_t sent() const noexcept { return sent_; }
  const state& current() const noexcept { return state_; }
  template <class S> bool in() const noexcept { return std::holds_alternative<S>(state_); }
  const snapshotting* transfer() const noexcept { return std::get_if<snapshotting>(&state_); }

  // ---- transitions ----

  /// AppendEntries carrying entries through `upto` went out.
  void entries_sent(std::uint64_t upto) noexcept {
    sent_ = std::max(sent_, upto);
    latest_ = upto;
  }
  /// Whether the latest AppendEntries reaches past `acked`, what an answer
  /// just acknowledged: its own answer is still to come, and brings the next
  /// send, so the leader need not send now what it already carries (a lost
  /// one is sent again from next at the heartbeat).
  bool newer_in_flight(std::uint64_t acked) const noexcept { return acked < latest_; }

  /// The follower holds the leader's log through `index` (an AppendEntries
  /// success, or an installed snapshot). False, and nothing changes, if that
  /// is more than was sent: the acknowledgement is forged. Otherwise
  /// probing becomes replicating, and a snapshot transfer ends once `index`
  /// reaches the snapshot's.
  [[nodiscard]] bool acknowledge(std::uint64_t index) noexcept {
    if (index > sent_) return false;
    match_ = std::max(match_, index);
    next_ = std::max(next_, match_ + 1);
    if (const auto* s = transfer()) {
      if (match_ >= s->snap->index) state_ = replicating{};
    } else {
      state_ = replicating{};
    }
    return true;
  }

  /// The follower refused an AppendEntries whose previous index was
  /// `rejected` (its own log ends at `follower_last`): next steps back, by
  /// one or to the follower's hint, never to match or below. False, and
  /// nothing changes, for a rejection of an index below match (stale: an
  /// answer to an earlier probe). A replicating follower that refuses an
  /// index above match is probed again; one that refuses match itself (a
  /// late copy of a rejection: it acknowledged match since) is resent from
  /// match + 1 and stays replicating.
  [[nodiscard]] bool reject(std::uint64_t rejected, std::uint64_t follower_last) noexcept {
    if (rejected < match_) return false;
    const auto hint = std::min(rejected, follower_last + 1);
    next_ = std::max(match_ + 1, std::min(next_ - (next_ > 1 ? 1 : 0), hint));
    if (rejected > match_ && in<replicating>()) state_ = probing{};
    return true;
  }

  /// Whether the next send must be a snapshot chunk: next is at or below the
  /// leader's snapshot (`leader_snapshot`, its last index), or below the
  /// one being sent.
  bool needs_snapshot(std::uint64_t leader_snapshot) const noexcept {
    const auto* s = transfer();
    return next_ <= leader_snapshot || (s && next_ <= s->snap->index);
  }

  /// Sends (or goes on sending) `newest`, the leader's current snapshot: a
  /// transfer under way goes on, unless it has not got past its first byte
  /// and a newer snapshot exists, which replaces it.
  const snapshotting& begin_snapshot(const std::shared_ptr<const storage::snapshot>& newest) {
    DCP_ASSERT(newest, "a snapshot to send");
    const auto* s = transfer();
    if (!s || (s->offset == 0 && s->snap->index < newest->index)) state_ = snapshotting{newest, 0, 0, std::nullopt};
    return std::get<snapshotting>(state_);
  }
  /// Whether the chunk the follower needs may go out at `now`: not if it
  /// went out less than `resend_after` ago (a reply brings the next chunk; a
  /// heartbeat resends a lost one).
  bool chunk_due(time_point now, duration resend_after) const noexcept {
    const auto* s = transfer();
    return s && (!s->sent_at || now - *s->sent_at >= resend_after);
  }
  /// The chunk ending at byte `end` of the snapshot went out at `now`;
  /// `done`: it was the last, so the follower may acknowledge the snapshot's
  /// index.
  void chunk_sent(time_point now, std::uint64_t end, bool done) noexcept {
    auto* s = std::get_if<snapshotting>(&state_);
    DCP_ASSERT(s, "a chunk is sent during a snapshot transfer");
    s->sent_at = now;
    s->sent_upto = std::max(s->sent_upto, end);
    if (done) sent_ = std::max(sent_, s->snap->index);
  }

  enum class chunk_ack : std::uint8_t { ignored, forged, accepted };
  /// The follower holds `received` bytes of snapshot `snap_index` (a
  /// transfer under way). Ignored if that is not the snapshot being sent;
  /// forged if more than was sent. A follower behind what it reported
  /// before (it lost its buffer: a restart) is resent from there at once.
  [[nodiscard]] chunk_ack snapshot_received(std::uint64_t snap_index, std::uint64_t received) noexcept {
    auto* s = std::get_if<snapshotting>(&state_);
    if (!s || snap_index != s->snap->index) return chunk_ack::ignored;
    if (received > s->sent_upto) return chunk_ack::forged;
    if (received != s->offset) s->sent_at.reset();
    s->offset = received;
    return chunk_ack::accepted;
  }

  // ---- liveness (check-quorum and ReadIndex rounds) ----

  /// The follower answered heartbeat round `round` (or a later message of it).
  void heard(std::uint64_t round) noexcept {
    heard_since_check_ = true;
    acked_round_ = std::max(acked_round_, round);
  }
  std::uint64_t acked_round() const noexcept { return acked_round_; }
  /// Whether it was heard from since the last check, which starts now.
  bool take_heard() noexcept { return std::exchange(heard_since_check_, false); }

  /// What every transition keeps (checked by raft's check_invariants).
  void check_invariants() const {
    DCP_ASSERT(match_ < next_, "match < next for every follower");
    DCP_ASSERT(match_ <= sent_, "a follower matches only what was sent");
    DCP_ASSERT(latest_ <= sent_, "the latest send reaches no further than the most sent");
    if (const auto* s = transfer())
      DCP_ASSERT(s->snap && s->offset <= s->sent_upto && s->sent_upto <= s->snap->data.size(),
                 "a snapshot transfer's offsets are within what was sent of the snapshot");
  }

 private:
  std::uint64_t next_ = 1, match_ = 0, sent_ = 0, acked_round_ = 0;
  std::uint64_t latest_ = 0;  // the reach of the latest AppendEntries (newer_in_flight)
  bool heard_since_check_ = true;
  state state_ = probing{};
};

}  // namespace dcp::consensus::raft_parts
