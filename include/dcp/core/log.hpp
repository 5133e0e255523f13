#pragma once
// Logging without a logging library: a level, a record, and a sink the user
// plugs in (std::function). With no sink, logging costs one branch, and
// dcp::log() formats nothing unless some sink wants the level.
#include <cstdint>
#include <functional>
#include <ostream>
#include <sstream>
#include <string>
#include <string_view>

#include "dcp/core/address.hpp"
#include "dcp/core/time.hpp"
#include "dcp/wire/frame.hpp"

namespace dcp {

enum class log_level : std::uint8_t { trace, debug, info, warn, error, off };

constexpr std::string_view to_string(log_level l) noexcept {
  constexpr std::string_view names[] = {"trace", "debug", "info", "warn", "error", "off"};
  return names[static_cast<int>(l)];
}

struct log_record {
  time_point time;       ///< in the node's clock
  address node;          ///< who logs
  protocol_id protocol;  ///< which protocol instance
  log_level level;
  std::string_view text;  ///< valid during the call only
};

using log_sink = std::function<void(const log_record&)>;

/// A sink that writes "time node/protocol level: text" lines to a stream.
inline log_sink ostream_sink(std::ostream& os) {
  return [&os](const log_record& r) {
    os << r.time << ' ' << r.node << '/' << r.protocol << ' ' << to_string(r.level) << ": " << r.text << '\n';
  };
}

/// Formats its arguments with operator<< and logs them, only when the Env's
/// sink takes the level: dcp::log(env, log_level::info, "joined ", peer);
template <class E, class... Args> void log(E& env, log_level level, const Args&... args) {
  if (!env.logs(level)) return;
  std::ostringstream os;
  (os << ... << args);
  env.log(level, os.str());
}

}  // namespace dcp
