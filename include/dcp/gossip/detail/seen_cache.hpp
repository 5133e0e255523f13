#pragma once
// A set of recently seen message ids with a fixed capacity: the oldest id is
// forgotten first. What makes "at most once" hold is that a duplicate arrives
// before `capacity` newer messages did; broadcasters size it from their rate.
#include <cstdint>
#include <unordered_set>
#include <vector>

#include "dcp/core/assert.hpp"

namespace dcp::gossip::detail {

class seen_cache {
 public:
  explicit seen_cache(std::size_t capacity) : capacity_(capacity ? capacity : 1) {}
  bool contains(std::uint64_t id) const { return set_.contains(id); }
  /// Adds `id`; false if it was there already. May evict the oldest id.
  bool insert(std::uint64_t id) {
    if (!set_.insert(id).second) return false;
    if (ring_.size() < capacity_) {
      ring_.push_back(id);
    } else {
      set_.erase(ring_[next_]);
      ring_[next_] = id;
      next_ = (next_ + 1) % capacity_;
      ++evicted_;
    }
    return true;
  }
  std::size_t size() const noexcept { return set_.size(); }
  std::uint64_t evicted() const noexcept { return evicted_; }
  /// The set and its eviction ring hold the same ids, at most capacity (O(1)).
  void check_invariants() const {
    DCP_ASSERT(set_.size() == ring_.size() && ring_.size() <= capacity_,
               "seen_cache: the set and its eviction ring disagree, or exceed the capacity");
    DCP_ASSERT(next_ < capacity_ && (next_ == 0 || ring_.size() == capacity_),
               "seen_cache: the eviction cursor moved before the ring was full");
  }

 private:
  std::size_t capacity_;
  std::vector<std::uint64_t> ring_;
  std::size_t next_ = 0;
  std::uint64_t evicted_ = 0;
  std::unordered_set<std::uint64_t> set_;
};

}  // namespace dcp::gossip::detail
