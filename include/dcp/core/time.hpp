#pragma once
// Time in the environment's clock.
//
// Protocols never read a clock themselves: `Env::now()` gives the time of the
// world they run in (virtual time in dcp::sim, std::chrono::steady_clock in
// the Asio runtime). Both are expressed in one clock type so that a protocol
// compiles once and runs in either world.
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

using namespace std::chrono_literals;  // 10ms, 2s ... read naturally in configs

/// Seconds as a double, for reports and rate computations.
constexpr double to_seconds(duration d) noexcept { return std::chrono::duration<double>(d).count(); }
constexpr double to_millis(duration d) noexcept { return std::chrono::duration<double, std::milli>(d).count(); }

inline std::ostream& operator<<(std::ostream& os, time_point t) {
  return os << to_seconds(t.time_since_epoch()) << "s";
}

}  // namespace dcp
