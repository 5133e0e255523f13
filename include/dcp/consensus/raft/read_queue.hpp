#pragma once
// The leader's queue of linearizable reads (ReadIndex, dissertation 6.4).
// A read is answered once three things hold, oldest first:
//   1. its read index is known: the leader's commit index when the read
//      came, or, if the leader had not yet committed an entry of its own
//      term (it cannot know the commit index before: 6.4 step 1), the
//      commit index once it has (commit_known);
//   2. the leader is still the leader: a quorum acknowledged a heartbeat
//      round sent after the read came (the caller counts, with its
//      followers' progress and its quorum rule);
//   3. the state machine has applied through the read index.
// A read that no quorum confirms within an election timeout fails
// (take_expired); a leader that steps down fails them all (take_all).
// Callbacks are handed back, never run here: the caller runs them once the
// queue is consistent, so a callback may add a read (a retry) safely.
#include <cstdint>
#include <deque>
#include <optional>
#include <utility>
#include <vector>

#include "dcp/core/assert.hpp"
#include "dcp/core/time.hpp"

namespace dcp::consensus::raft_parts {

template <class Callback> class read_queue {
 public:
  bool empty() const noexcept { return reads_.empty(); }
  std::size_t size() const noexcept { return reads_.size(); }

  /// A read that came at `now`, confirmed by heartbeat round `round` (sent
  /// after it came); `index` its read index, or 0 if the leader has not
  /// committed in its term yet.
  void push(std::uint64_t index, std::uint64_t round, time_point now, Callback done) {
    DCP_ASSERT(reads_.empty() || reads_.back().round < round, "each read waits on a round of its own, in order");
    reads_.push_back(read{index, round, now, std::move(done)});
  }

  /// The leader committed an entry of its term, through `commit`: reads
  /// waiting for a read index read at it.
  void commit_known(std::uint64_t commit) noexcept {
    DCP_ASSERT(commit > 0, "a commit index of the leader's term");
    for (auto& r : reads_)
      if (r.index == 0) r.index = commit;
  }

  struct ready {
    std::uint64_t index;
    Callback done;
  };
  /// The oldest read, removed, if it may be answered now: its read index is
  /// known and at most `applied`, and `confirmed(round)` (a quorum
  /// acknowledged that round). Reads are answered in order: none while the
  /// oldest waits.
  template <class Confirmed> std::optional<ready> pop_ready(std::uint64_t applied, Confirmed&& confirmed) {
    if (reads_.empty()) return std::nullopt;
    auto& r = reads_.front();
    if (r.index == 0 || applied < r.index || !confirmed(r.round)) return std::nullopt;
    ready out{r.index, std::move(r.done)};
    reads_.pop_front();
    return out;
  }

  /// Removes the reads that came more than `timeout` before `now`, and hands
  /// back their callbacks, oldest first.
  std::vector<Callback> take_expired(time_point now, duration timeout) {
    std::vector<Callback> out;
    for (auto it = reads_.begin(); it != reads_.end();) {
      if (now - it->started > timeout) {
        out.push_back(std::move(it->done));
        it = reads_.erase(it);
      } else {
        ++it;
      }
    }
    return out;
  }

  /// Removes every read and hands back their callbacks, oldest first.
  std::vector<Callback> take_all() {
    std::vector<Callback> out;
    for (auto& r : reads_) out.push_back(std::move(r.done));
    reads_.clear();
    return out;
  }

 private:
  struct read {
    std::uint64_t index;  // 0 until the leader has committed in its term
    std::uint64_t round;
    time_point started;
    Callback done;
  };
  std::deque<read> reads_;
};

}  // namespace dcp::consensus::raft_parts
