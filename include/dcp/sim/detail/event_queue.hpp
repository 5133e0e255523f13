#pragma once
// The simulator's event queue: a ladder queue (Tang, Goh and Thng, "Ladder
// queue: an O(1) priority queue structure for large-scale discrete event
// simulation", ACM TOMACS 15(3), 2005), ordered by (time, sequence).
//
// Why not a heap. At 10^5 nodes the queue holds ~10^5 events, and the 4-ary
// heap this replaces missed the cache on the lower levels of every pop (its
// sift loop was the hottest code at 10^5 nodes). Worse, a heap cannot say
// cheaply which events come after the next one, and at 10^5 nodes most of an
// event's time is spent waiting on a chain of cache misses (slot, node,
// protocol table, payload, protocol) that only knowing the next few events
// lets the simulator prefetch. Measured by choice, in one run (token
// passing, N = 10^5, events per CPU second, medians): the heap 0.8 M; the
// heap with its one-ahead prefetch working 1.4 M; this queue with the
// three-deep prefetch 2.6 M. Bucket sizes of 16, 32 or 64 events measured
// alike; 8 was 15% slower.
//
// Why a ladder rather than a calendar queue. Both bucket events by time, but
// a calendar queue (Brown 1988) must guess its bucket width, and resizes the
// whole calendar when the guess goes stale; simulations here mix message
// delays of microseconds with timeouts of seconds and actions hours ahead.
// The ladder needs no guess: far-future events wait unsorted in `top`; when
// the nearer ones run out, top is spread over a rung of buckets sized from
// its own spread and count, and a bucket that is still crowded when its turn
// comes is spread over a finer rung instead of being sorted. Only the bucket
// whose turn it is gets sorted, into `bottom`, from where events leave in
// order: pops read one array front to back, and the events after the next
// are known (ahead(k)), which lets the simulator prefetch a few events ahead.
//
// Where an event goes on push, by its time t:
//   t <= bottom_last_            bottom (sorted insertion; bottom is small)
//   t <= rungs_[k].last          rung k, the finest such (its buckets are unsorted)
//   otherwise                    top (unsorted)
// Every event in bottom precedes every event in the rungs, which precede
// every event in top, and rung k+1 covers exactly the bucket of rung k that
// it was spread from. So the order of pops is exactly the order of a heap:
// by time, then by `order` (whose sequence number makes every key distinct),
// whatever the layout; only the speed depends on the layout.
//
// Bucket sizes: a rung gets one bucket per `bucket_target` events, and a
// bucket of more than `spread_threshold` events whose times differ is spread
// over a new rung (8 rungs at most; beyond that it is sorted, which stays
// correct). Memory: 24 bytes an event in the ladder, plus the capacity that
// top and the buckets keep for reuse (bounded by the largest population):
// 135-190 bytes more per node than the heap with 10^5 tokens in flight.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <vector>

#include "dcp/core/assert.hpp"
#include "dcp/core/time.hpp"

namespace dcp::sim::detail {

struct queued_event {
  std::int64_t time;    // ns since the epoch of the simulated clock
  std::uint64_t order;  // sequence number << 2 | kind: ties go to the earlier push (determinism, FIFO links)
  std::uint32_t slot;   // index into the simulator's message or timer slab
  std::uint32_t gen;    // timers: the slot's generation when armed; messages: the target node

  unsigned kind() const noexcept { return static_cast<unsigned>(order & 3); }
  time_point when() const noexcept { return time_point(duration(time)); }
};

class event_queue {
 public:
  static constexpr std::size_t bucket_target = 16;     // events per bucket when a rung is built
  static constexpr std::size_t spread_threshold = 64;  // a bigger bucket is spread over a finer rung
  static constexpr std::size_t bottom_limit = 256;     // a bigger bottom is spread over a rung
  static constexpr std::size_t max_rungs = 8;

  bool empty() const noexcept { return size_ == 0; }
  std::size_t size() const noexcept { return size_; }
  /// The earliest event. Precondition: !empty().
  const queued_event& top() const noexcept { return bottom_[head_]; }
  /// The k-th event after top() if it is already sorted (nullptr otherwise):
  /// a hint for prefetching, which a later push may still overtake.
  const queued_event* ahead(std::size_t k) const noexcept {
    return head_ + k < bottom_.size() ? &bottom_[head_ + k] : nullptr;
  }
  /// The event after top() if known cheaply (nullptr otherwise).
  const queued_event* second() const noexcept { return ahead(1); }
  std::size_t rungs() const noexcept { return active_; }  // for tests

  void push(const queued_event& e) {
    const std::uint64_t t = key(e.time);
    ++size_;
    if (size_ == 1) {  // the queue was empty: the event alone is the bottom
      bottom_.clear();
      head_ = 0;
      bottom_.push_back(e);
      bottom_last_ = t;
      return;
    }
    if (t <= bottom_last_) {
      insert_bottom(e);
      return;
    }
    for (std::size_t r = active_; r-- > 0;) {
      rung& g = rungs_[r];
      if (t <= g.last) {
        g.buckets[g.index(t)].push_back(e);
        return;
      }
    }
    add_top(e);
  }

  /// Removes and returns the earliest event. Precondition: !empty().
  queued_event pop() {
    DCP_ASSERT(size_ > 0, "pop() on an empty event queue: the simulator checks empty() first");
    const queued_event out = bottom_[head_++];
    --size_;
    if (head_ == bottom_.size()) {
      bottom_.clear();
      head_ = 0;
      if (size_ > 0)
        refill();
      else
        active_ = 0;  // every bucket is empty: forget the rungs
    }
    return out;
  }

 private:
  struct rung {
    std::uint64_t lo = 0;  // bucket j holds [lo + j*width, lo + (j+1)*width), the first and last clamped open
    std::uint64_t width = 1;
    std::uint64_t last = 0;                          // the last time this rung covers
    std::size_t count = 0;                           // buckets in use
    std::size_t cur = 0;                             // the next bucket to consume
    std::vector<std::vector<queued_event>> buckets;  // kept (with their capacity) for the next use

    std::size_t index(std::uint64_t t) const noexcept {
      if (t < lo) return 0;
      const std::uint64_t j = (t - lo) / width;
      return j < count ? static_cast<std::size_t>(j) : count - 1;
    }
    std::uint64_t bucket_last(std::size_t j) const noexcept {
      if (j + 1 >= count) return last;
      std::uint64_t off;
      if (__builtin_mul_overflow(static_cast<std::uint64_t>(j + 1), width, &off)) return last;
      return off - 1 >= last - lo ? last : lo + off - 1;
    }
  };

  // Times as unsigned keys in the same order (so ranges never overflow a sign).
  static std::uint64_t key(std::int64_t t) noexcept { return static_cast<std::uint64_t>(t) ^ (std::uint64_t{1} << 63); }
  // A function object, not a function pointer: std::sort inlines it.
  struct earlier {
    bool operator()(const queued_event& a, const queued_event& b) const noexcept {
      return a.time != b.time ? a.time < b.time : a.order < b.order;
    }
  };
  static constexpr earlier before{};

  void insert_bottom(const queued_event& e) {
    auto at = std::upper_bound(bottom_.begin() + static_cast<std::ptrdiff_t>(head_), bottom_.end(), e, before);
    bottom_.insert(at, e);
    // A crowded bottom (events pushed behind the current bucket, or many
    // pushes into an empty queue) is spread over a rung of its own, as the
    // ladder queue does, so that insertions stay cheap.
    if (bottom_.size() - head_ > bottom_limit) {
      const std::uint64_t lo = key(bottom_[head_].time), hi = key(bottom_.back().time);
      if (lo != hi) {
        // Out of rungs (pushes keep arriving in front, as when setup arms
        // timers in descending order): everything but the bottom goes back
        // to top, to be spread afresh. O(n), once per max_rungs spreads.
        if (active_ == max_rungs) collapse();
        rung& g = build_rung(lo, hi, bottom_last_, bottom_.size() - head_);
        for (std::size_t i = head_; i < bottom_.size(); ++i)
          g.buckets[g.index(key(bottom_[i].time))].push_back(bottom_[i]);
        bottom_.clear();
        head_ = 0;
        refill();
      }
    }
  }

  // Buckets are often sorted already (ties arrive in push order; a spread
  // bottom stays sorted in its buckets): checking is cheaper than sorting.
  void sort_bottom() {
    if (!std::is_sorted(bottom_.begin(), bottom_.end(), before)) std::sort(bottom_.begin(), bottom_.end(), before);
  }

  // Moves every event of every rung to top (top's events all come later).
  void collapse() {
    for (std::size_t r = 0; r < active_; ++r) {
      rung& g = rungs_[r];
      for (std::size_t j = g.cur; j < g.count; ++j) {
        for (const auto& e : g.buckets[j]) add_top(e);
        g.buckets[j].clear();
      }
    }
    active_ = 0;
  }
  void add_top(const queued_event& e) {
    const std::uint64_t t = key(e.time);
    if (top_.empty())
      top_min_ = top_max_ = t;
    else {
      top_min_ = std::min(top_min_, t);
      top_max_ = std::max(top_max_, t);
    }
    top_.push_back(e);
  }

  // Makes rung active_ cover [lo, hi] with buckets for n events, up to `last`.
  rung& build_rung(std::uint64_t lo, std::uint64_t hi, std::uint64_t last, std::size_t n) {
    if (rungs_.size() <= active_) rungs_.resize(active_ + 1);
    rung& g = rungs_[active_++];
    const std::size_t count = std::max<std::size_t>(2, n / bucket_target);
    if (g.buckets.size() < count) g.buckets.resize(count);
    g.lo = lo;
    g.last = last;
    g.count = count;
    g.cur = 0;
    g.width = (hi - lo) / count + 1;  // count * width > hi - lo: every bucket up to hi is in range
    return g;
  }

  // Moves the next events into bottom. Precondition: bottom empty, size_ > 0.
  void refill() {
    while (true) {
      if (active_ == 0) {
        DCP_ASSERT(!top_.empty(), "refill() with no event left: size_ counts one that is nowhere");
        if (top_.size() <= spread_threshold || top_min_ == top_max_) {
          bottom_.swap(top_);
          bottom_last_ = top_max_;
          sort_bottom();
          return;
        }
        rung& g = build_rung(top_min_, top_max_, top_max_, top_.size());
        for (const auto& e : top_) g.buckets[g.index(key(e.time))].push_back(e);
        top_.clear();
        continue;
      }
      rung& g = rungs_[active_ - 1];
      while (g.cur < g.count && g.buckets[g.cur].empty()) ++g.cur;
      if (g.cur == g.count) {  // exhausted: back to the coarser rung
        --active_;
        continue;
      }
      const std::size_t j = g.cur++;
      const std::uint64_t last = g.bucket_last(j);
      auto& b = g.buckets[j];
      if (b.size() > spread_threshold && active_ < max_rungs) {
        std::uint64_t lo = key(b.front().time), hi = lo;
        for (const auto& e : b) {
          lo = std::min(lo, key(e.time));
          hi = std::max(hi, key(e.time));
        }
        if (lo != hi) {
          // g may move when rungs_ grows: take the bucket out first.
          std::vector<queued_event> crowd;
          crowd.swap(b);
          rung& child = build_rung(lo, hi, last, crowd.size());
          for (const auto& e : crowd) child.buckets[child.index(key(e.time))].push_back(e);
          crowd.clear();
          rungs_[active_ - 2].buckets[j].swap(crowd);  // give the capacity back
          continue;
        }
      }
      bottom_.swap(b);
      bottom_last_ = last;
      sort_bottom();
      return;
    }
  }

  std::vector<queued_event> bottom_;
  std::size_t head_ = 0;
  std::uint64_t bottom_last_ = 0;
  std::vector<rung> rungs_;
  std::size_t active_ = 0;
  std::vector<queued_event> top_;
  std::uint64_t top_min_ = 0, top_max_ = 0;
  std::size_t size_ = 0;
};

}  // namespace dcp::sim::detail
