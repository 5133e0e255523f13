#pragma once
// The simulator's event queue: a 4-ary min-heap ordered by (time, sequence).
//
// At 10^5 nodes the queue holds ~10^5 events and the heap's sift loops are
// the simulator's hottest code (a third of its time with std::push_heap on a
// binary heap, mostly cache misses). A 4-ary heap halves the depth, and its
// four children share a cache line or two. Entries are 24 bytes.
#include <cstdint>
#include <vector>

#include "dcp/core/time.hpp"

namespace dcp::sim::detail {

struct queued_event {
  std::int64_t time;   // ns since the epoch of the simulated clock
  std::uint64_t order; // sequence number << 2 | kind: ties go to the earlier push (determinism, FIFO links)
  std::uint32_t slot;  // index into the simulator's message or timer slab
  std::uint32_t gen;   // timers: the slot's generation when armed; messages: the target node

  unsigned kind() const noexcept { return static_cast<unsigned>(order & 3); }
  time_point when() const noexcept { return time_point(duration(time)); }
};

class event_queue {
 public:
  bool empty() const noexcept { return heap_.empty(); }
  std::size_t size() const noexcept { return heap_.size(); }
  const queued_event& top() const noexcept { return heap_.front(); }

  /// The event after top(), without removing anything (nullptr if none).
  const queued_event* second() const noexcept {
    const std::size_t n = heap_.size();
    if (n < 2) return nullptr;
    std::size_t best = 1;
    for (std::size_t c = 2; c < 5 && c < n; ++c)
      if (before(heap_[c], heap_[best])) best = c;
    return &heap_[best];
  }

  void push(const queued_event& e) {
    heap_.push_back(e);
    std::size_t i = heap_.size() - 1;
    while (i > 0) {
      const std::size_t parent = (i - 1) / 4;
      if (!before(e, heap_[parent])) break;
      heap_[i] = heap_[parent];
      i = parent;
    }
    heap_[i] = e;
  }

  queued_event pop() noexcept {
    const queued_event out = heap_.front();
    const queued_event last = heap_.back();
    heap_.pop_back();
    const std::size_t n = heap_.size();
    if (n == 0) return out;
    std::size_t i = 0;
    while (true) {
      const std::size_t first = 4 * i + 1;
      if (first >= n) break;
      std::size_t best = first;
      const std::size_t end = first + 4 < n ? first + 4 : n;
      for (std::size_t c = first + 1; c < end; ++c)
        if (before(heap_[c], heap_[best])) best = c;
      if (!before(heap_[best], last)) break;
      heap_[i] = heap_[best];
      i = best;
    }
    heap_[i] = last;
    return out;
  }

 private:
  static bool before(const queued_event& a, const queued_event& b) noexcept {
    return a.time != b.time ? a.time < b.time : a.order < b.order;
  }
  std::vector<queued_event> heap_;
};

}  // namespace dcp::sim::detail
