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
#include <limits>
#include <optional>
#include <ostream>
#include <string_view>

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

/// A positive duration written as a number and one unit ("250ms", "2s",
/// "1m"; units ns, us, ms, s, m, h), as on a command line or in a
/// configuration file. nullopt when malformed, zero, or too large for a
/// duration: never an exception, whatever the text.
inline std::optional<duration> parse_duration(std::string_view text) noexcept {
  std::size_t digits = 0;
  std::int64_t n = 0;
  constexpr auto max = std::numeric_limits<std::int64_t>::max();
  for (; digits < text.size() && text[digits] >= '0' && text[digits] <= '9'; ++digits) {
    const int d = text[digits] - '0';
    if (n > (max - d) / 10) return std::nullopt;
    n = n * 10 + d;
  }
  if (digits == 0 || n == 0) return std::nullopt;
  const std::string_view unit = text.substr(digits);
  std::int64_t ns_per = 0;
  if (unit == "ns")
    ns_per = 1;
  else if (unit == "us")
    ns_per = 1'000;
  else if (unit == "ms")
    ns_per = 1'000'000;
  else if (unit == "s")
    ns_per = 1'000'000'000;
  else if (unit == "m")
    ns_per = 60'000'000'000;
  else if (unit == "h")
    ns_per = 3'600'000'000'000;
  else
    return std::nullopt;
  if (n > max / ns_per) return std::nullopt;
  return duration(n * ns_per);
}

inline std::ostream& operator<<(std::ostream& os, time_point t) {
  return os << to_seconds(t.time_since_epoch()) << "s";
}
inline std::ostream& operator<<(std::ostream& os, wall_time t) {
  return os << "unix " << to_seconds(t.time_since_epoch()) << "s";
}

}  // namespace dcp
