#pragma once
// What every transport does alike with the frames it never puts on a wire
// (internal): the frames a node sends to itself, delivered through the
// executor, and its own log lines. One copy, so that the TCP and UDP
// transports cannot drift apart on them.
#include <cstdint>
#include <sstream>
#include <string>
#include <utility>

#include <asio/any_io_executor.hpp>
#include <asio/post.hpp>

#include "dcp/core/address.hpp"
#include "dcp/core/bytes.hpp"
#include "dcp/core/error.hpp"
#include "dcp/core/log.hpp"
#include "dcp/core/metrics.hpp"
#include "dcp/net/config.hpp"
#include "dcp/net/detail/connection.hpp"
#include "dcp/net/detail/timer_queue.hpp"
#include "dcp/net/transport.hpp"
#include "dcp/wire/frame.hpp"

namespace dcp::net::detail {

/// A frame of `protocol` for the node itself: encoded (refused and counted
/// as frame_too_large above `max_frame_size`), counted as sent, and handed
/// to deliver(header, payload) from the executor, never inside the send.
/// `deliver` holds the transport alive and checks it was not stopped.
template <class Deliver> bool send_local(const asio::any_io_executor& ex, dcp::metrics& m, std::uint32_t max_frame_size,
                                         protocol_id protocol, const frame_source& src, Deliver deliver) {
  bytes payload;
  src.encode(src.message, payload);
  if (payload.size() > max_frame_size) {
    m.dropped(protocol, errc::frame_too_large);
    return false;
  }
  const wire::frame_header h{protocol, src.type, static_cast<std::uint32_t>(payload.size())};
  m.sent(protocol, h.type, wire::header_size + payload.size());
  asio::post(ex, [deliver = std::move(deliver), h, payload = std::move(payload)]() mutable { deliver(h, payload); });
  return true;
}

/// A log line of the transport (protocol 0) from `self`, if cfg logs at `level`.
template <class... Args>
void transport_log(const config& cfg, const address& self, log_level level, const Args&... args) {
  if (!cfg.log || level < cfg.level) return;
  std::ostringstream os;
  (os << ... << args);
  const std::string text = os.str();
  cfg.log(log_record{steady_now(), self, transport_protocol, level, text});
}

}  // namespace dcp::net::detail
