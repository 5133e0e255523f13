#pragma once
// The replicated session table behind Raft's exactly-once commands
// (dissertation 6.3): part of the applied state, changed only by applying
// committed entries, so every replica holds the same table at the same
// index, and it travels in snapshots.
//
//   - A session is opened by a registration entry, and named by that
//     entry's log index: an id is never reused, not even by a restarted
//     client with a fixed seed.
//   - A client's command carries (client, seq); the table applies each at
//     most once: seq above the last applied applies, seq equal to it is a
//     duplicate answered with the first result, seq below it is stale.
//   - A command of an unknown session (evicted, closed, never opened) is
//     never applied: only a registration creates a session, so a late or
//     duplicated copy can never apply twice.
//   - Bounded: past max_sessions, opening evicts the least recently used
//     session (by the log index of its last command, so the choice is the
//     same on every replica).
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <map>
#include <utility>

#include "dcp/core/assert.hpp"
#include "dcp/core/bytes.hpp"

namespace dcp::consensus::raft_parts {

class session_table {
 public:
  struct session {
    std::uint64_t seq = 0, last_index = 0;  ///< the last command applied; the entry that last used the session
    bytes result;                           ///< that command's result, for its retries
    template <class A> void serialize(A& ar) { ar(seq, last_index, result); }
  };
  /// The table as a snapshot holds it (its layout is the snapshot's: a
  /// std::map of client id to session).
  using map = std::map<std::uint64_t, session>;

  explicit session_table(std::size_t max_sessions) noexcept : max_(max_sessions) {
    DCP_ASSERT(max_sessions > 0, "a session table holds at least one session");
  }

  bool contains(std::uint64_t client) const { return sessions_.contains(client); }
  std::size_t size() const noexcept { return sessions_.size(); }
  std::size_t capacity() const noexcept { return max_; }
  const map& sessions() const noexcept { return sessions_; }
  /// The table of a snapshot being installed (or restored at start).
  void restore(map sessions) { sessions_ = std::move(sessions); }

  /// Applies a registration at log index `index`: the new session's id.
  /// True if it evicted the least recently used session to stay bounded.
  bool open(std::uint64_t index) {
    sessions_[index] = session{0, index, {}};
    if (sessions_.size() <= max_) return false;
    auto victim = std::min_element(sessions_.begin(), sessions_.end(),
                                   [](auto& a, auto& b) { return a.second.last_index < b.second.last_index; });
    sessions_.erase(victim);
    return true;
  }
  /// Applies an unregistration: the client's later commands are unknown.
  void close(std::uint64_t client) { sessions_.erase(client); }

  /// What the command (client, seq) at log index `index` is to the table.
  enum class verdict : std::uint8_t {
    apply,            ///< new: apply it, then record() its result
    duplicate,        ///< applied before: answer with result_of(client), do not apply
    stale,            ///< older than the last applied: its answer is gone
    unknown_session,  ///< no such session: not applied; the outcome of an earlier send is unknown
  };
  /// A duplicate counts as a use of the session (it is recently used).
  verdict admit(std::uint64_t client, std::uint64_t seq, std::uint64_t index) {
    auto it = sessions_.find(client);
    if (it == sessions_.end()) return verdict::unknown_session;
    if (seq > it->second.seq) return verdict::apply;
    if (seq < it->second.seq) return verdict::stale;
    it->second.last_index = index;
    return verdict::duplicate;
  }
  /// The result of the client's last applied command (admit said duplicate).
  const bytes& result_of(std::uint64_t client) const {
    auto it = sessions_.find(client);
    DCP_ASSERT(it != sessions_.end(), "a result is asked of a known session");
    return it->second.result;
  }
  /// Records the result of command (client, seq), applied at log index
  /// `index` (admit said apply).
  void record(std::uint64_t client, std::uint64_t seq, std::uint64_t index, bytes result) {
    auto it = sessions_.find(client);
    DCP_ASSERT(it != sessions_.end() && seq > it->second.seq, "only an admitted command is recorded");
    it->second = session{seq, index, std::move(result)};
  }

  void check_invariants() const { DCP_ASSERT(sessions_.size() <= max_, "the session table is bounded"); }

 private:
  std::size_t max_;
  map sessions_;
};

}  // namespace dcp::consensus::raft_parts
