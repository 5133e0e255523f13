#pragma once
// Hybrid logical clock (Kulkarni, Demirbas et al. 2014): a (physical, logical)
// pair that stays within the clock skew of physical time, yet never goes
// backwards and respects causality like a Lamport clock. The physical part
// comes from the caller (an Env's now()): the clock never reads time itself.
#include <algorithm>
#include <compare>
#include <cstdint>

#include "dcp/core/time.hpp"

namespace dcp::clock {

struct hlc_timestamp {
  std::int64_t wall = 0;      ///< nanoseconds of the largest physical time seen
  std::uint32_t logical = 0;  ///< events since `wall` last moved
  constexpr auto operator<=>(const hlc_timestamp&) const noexcept = default;
  template <class A> void serialize(A& ar) { ar(wall, logical); }
};

class hybrid_logical_clock {
 public:
  /// A local event or a send, with the node's physical time `pt`.
  hlc_timestamp tick(time_point pt) noexcept {
    const std::int64_t p = pt.time_since_epoch().count();
    if (p > last_.wall)
      last_ = {p, 0};
    else
      ++last_.logical;
    return last_;
  }
  /// A receive of a message stamped `m`, at physical time `pt`.
  hlc_timestamp observe(hlc_timestamp m, time_point pt) noexcept {
    const std::int64_t p = pt.time_since_epoch().count();
    const std::int64_t wall = std::max({last_.wall, m.wall, p});
    if (wall == last_.wall && wall == m.wall)
      last_.logical = std::max(last_.logical, m.logical) + 1;
    else if (wall == last_.wall)
      ++last_.logical;
    else if (wall == m.wall)
      last_.logical = m.logical + 1;
    else
      last_.logical = 0;
    last_.wall = wall;
    return last_;
  }
  hlc_timestamp now() const noexcept { return last_; }

 private:
  hlc_timestamp last_{};
};

}  // namespace dcp::clock
