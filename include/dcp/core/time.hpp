#pragma once
// Time in the environment's clocks.
//
// Protocols never read a clock themselves. An Env gives two:
//   - `now()`, a steady clock (virtual time in dcp::sim, std::chrono::
//     steady_clock in the Asio runtime) for timeouts and intervals on this
//     host. Its epoch is arbitrary: a time_point means nothing on another host.
//   - `wall_now()`, wall-clock time since the Unix epoch (system_clock in the
//     Asio runtime; the node's skewed, drifting clock in dcp::sim). The only
//     time that may cross a host boundary, e.g. a lease token's expiry, and
//     then only with a bound on how far two hosts' wall clocks differ.
// They are distinct types, so a steady time_point cannot be sealed into a
// token or compared with a wall time by mistake.
#include <chrono>
#include <cstdint>
#include <ostream>

namespace dcp {

/// The clock of an Env. It has no static now(): only an Env can tell the time.
struct env_clock {
  using rep = std::int64_t;
  using period = std::nano;
  using duration = std::chrono::duration<rep, period>;
  using time_point = std::chrono::time_point<env_clock>;
  static constexpr bool is_steady = true;
};

using duration = env_clock::duration;
using time_point = env_clock::time_point;

/// Wall-clock time: nanoseconds since the Unix epoch (1970-01-01 UTC). No
/// static now() either: Env::wall_now() tells it.
struct wall_clock {
  using rep = std::int64_t;
  using period = std::nano;
  using duration = std::chrono::duration<rep, period>;
  using time_point = std::chrono::time_point<wall_clock>;
  static constexpr bool is_steady = false;
};
using wall_time = wall_clock::time_point;

/// The host's wall clock (std::chrono::system_clock) as a wall_time: what
/// dcp::net's Env returns, and what a resource server outside any Env reads.
inline wall_time system_wall_now() noexcept {
  return wall_time(std::chrono::duration_cast<duration>(std::chrono::system_clock::now().time_since_epoch()));
}

using namespace std::chrono_literals;  // 10ms, 2s ... read naturally in configs

/// Seconds as a double, for reports and rate computations.
constexpr double to_seconds(duration d) noexcept { return std::chrono::duration<double>(d).count(); }
constexpr double to_millis(duration d) noexcept { return std::chrono::duration<double, std::milli>(d).count(); }

inline std::ostream& operator<<(std::ostream& os, time_point t) {
  return os << to_seconds(t.time_since_epoch()) << "s";
}
inline std::ostream& operator<<(std::ostream& os, wall_time t) {
  return os << "unix " << to_seconds(t.time_since_epoch()) << "s";
}

}  // namespace dcp
