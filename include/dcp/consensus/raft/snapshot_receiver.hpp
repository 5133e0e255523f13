#pragma once
// The follower's side of a chunked InstallSnapshot (the paper's Figure 13):
// it buffers one transfer at a time and takes only the chunk at the offset
// it expects, so what it holds is always a prefix of one snapshot. A chunk
// at offset 0 starts a transfer, replacing any other, unless it repeats the
// start of the same one already under way (a duplicate must not throw away
// what was received). Checking that a chunk is well formed, that it comes
// from the leader of the term, and the bound on its size are raft.hpp's:
// it counts what it drops.
#include <cstdint>
#include <optional>
#include <utility>

#include "dcp/core/assert.hpp"
#include "dcp/core/bytes.hpp"
#include "dcp/storage/storage.hpp"

namespace dcp::consensus::raft_parts {

class snapshot_receiver {
 public:
  enum class outcome : std::uint8_t {
    out_of_order,  ///< not the chunk expected (another transfer, or past what is held): dropped
    duplicate,     ///< already held: dropped
    partial,       ///< appended; more to come
    complete,      ///< appended, and it was the last: take it with finish()
  };

  /// Takes chunk `m` (term, index, last_term, offset, total, data, done:
  /// raft_msg::install_snapshot, well formed).
  template <class Chunk> outcome take(const Chunk& m) {
    if (m.offset == 0 && !(in_ && same_transfer(m) && !in_->data.empty()))
      in_ = transfer{m.term, m.index, m.last_term, m.total, {}};
    if (!in_ || !same_transfer(m) || m.offset > in_->data.size()) return outcome::out_of_order;
    if (m.offset < in_->data.size()) return outcome::duplicate;
    in_->data.insert(in_->data.end(), m.data.begin(), m.data.end());
    return m.done ? outcome::complete : outcome::partial;
  }

  /// The bytes held of snapshot `index` (0 for another snapshot, or none):
  /// where the next chunk must start.
  std::uint64_t held(std::uint64_t index) const noexcept { return in_ && in_->index == index ? in_->data.size() : 0; }

  /// The bytes held of the transfer under way (a prefix of its snapshot).
  byte_view received() const noexcept { return in_ ? byte_view(in_->data) : byte_view{}; }

  /// The snapshot received (take() said complete); the buffer is emptied.
  storage::snapshot finish() {
    DCP_ASSERT(in_ && in_->data.size() == in_->total, "a snapshot is taken once received whole");
    storage::snapshot snap{in_->index, in_->last_term, std::move(in_->data)};
    in_.reset();
    return snap;
  }
  /// Drops any transfer under way (the log already holds what it covers).
  void reset() noexcept { in_.reset(); }

  /// What is held is bounded by what the transfer announced, and that by `max_bytes`.
  void check_invariants(std::uint64_t max_bytes) const {
    DCP_ASSERT(!in_ || (in_->data.size() <= in_->total && in_->total <= max_bytes),
               "a snapshot being received is bounded by what it announced and by max_snapshot_bytes");
  }

 private:
  struct transfer {
    std::uint64_t term = 0, index = 0, last_term = 0, total = 0;
    bytes data;
  };
  template <class Chunk> bool same_transfer(const Chunk& m) const noexcept {
    return in_->term == m.term && in_->index == m.index && in_->last_term == m.last_term && in_->total == m.total;
  }
  std::optional<transfer> in_;
};

}  // namespace dcp::consensus::raft_parts
