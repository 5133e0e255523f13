#pragma once
// Vector clocks (Fidge, Mattern 1988): one counter per node; a happened
// before b exactly when a's vector is <= b's everywhere and differs somewhere.
// Entries are kept sparse (node rank -> counter) so that a clock costs only
// the nodes it has heard of; absent entries are zero.
#include <algorithm>
#include <cstdint>
#include <map>

namespace dcp::clock {

enum class causality { equal, before, after, concurrent };

class vector_clock {
 public:
  using node_type = std::uint64_t;
  using counter_type = std::uint64_t;

  /// A local event or a send at `self`.
  void tick(node_type self) { ++entries_[self]; }
  /// Entry-wise maximum with `other` (what a receive does, before tick).
  void merge(const vector_clock& other) {
    for (auto& [n, c] : other.entries_) {
      auto& mine = entries_[n];
      mine = std::max(mine, c);
    }
  }
  /// A receive at `self` of a message stamped `other`.
  void observe(node_type self, const vector_clock& other) {
    merge(other);
    tick(self);
  }
  counter_type operator[](node_type n) const {
    auto it = entries_.find(n);
    return it == entries_.end() ? 0 : it->second;
  }

  /// How this clock relates to `other`: before means this happened before it.
  causality compare(const vector_clock& other) const {
    bool less = false, greater = false;
    auto a = entries_.begin(), b = other.entries_.begin();
    while (a != entries_.end() || b != other.entries_.end()) {
      counter_type x = 0, y = 0;
      if (b == other.entries_.end() || (a != entries_.end() && a->first < b->first))
        x = (a++)->second;
      else if (a == entries_.end() || b->first < a->first)
        y = (b++)->second;
      else {
        x = (a++)->second;
        y = (b++)->second;
      }
      less |= x < y;
      greater |= x > y;
    }
    if (less && greater) return causality::concurrent;
    if (less) return causality::before;
    if (greater) return causality::after;
    return causality::equal;
  }
  bool happened_before(const vector_clock& o) const { return compare(o) == causality::before; }
  bool concurrent_with(const vector_clock& o) const { return compare(o) == causality::concurrent; }
  /// Equal as clocks: zero entries count as absent.
  friend bool operator==(const vector_clock& a, const vector_clock& b) { return a.compare(b) == causality::equal; }

  const std::map<node_type, counter_type>& entries() const noexcept { return entries_; }
  template <class A> void serialize(A& ar) { ar(entries_); }

 private:
  std::map<node_type, counter_type> entries_;
};

}  // namespace dcp::clock
