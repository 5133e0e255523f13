#pragma once
// Lamport's logical clock (Lamport 1978): a counter that respects causality.
// If event a happened before b then time(a) < time(b); the converse does not
// hold (use vector_clock to tell concurrency). Ties are broken by a node's
// rank to give the total order that Lamport's and Ricart–Agrawala's mutexes
// grant requests in (see lamport_stamp).
#include <compare>
#include <cstdint>

namespace dcp::clock {

class lamport_clock {
 public:
  using value_type = std::uint64_t;

  /// A local event or a send: advance and return the event's time.
  value_type tick() noexcept { return ++time_; }
  /// A receive of a message stamped `t`: jump past it, then count the receive.
  value_type observe(value_type t) noexcept {
    if (t > time_) time_ = t;
    return ++time_;
  }
  /// Moves up to `t` without counting an event (merging knowledge only).
  void witness(value_type t) noexcept {
    if (t > time_) time_ = t;
  }
  value_type now() const noexcept { return time_; }

 private:
  value_type time_ = 0;
};

/// A Lamport time with the rank of the node that made it: a total order.
struct lamport_stamp {
  std::uint64_t time = 0;
  std::uint64_t node = 0;
  constexpr auto operator<=>(const lamport_stamp&) const noexcept = default;
  template <class A> void serialize(A& ar) { ar(time, node); }
};

}  // namespace dcp::clock
