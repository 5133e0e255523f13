#pragma once
// dcp's error codes, in the std::error_code machinery so that they mix with
// Asio's and the system's.
//
// One category, "dcp", covers the foundation: the wire, the transports and the
// generic failures of protocols (time-outs, unreachable peers, misuse).
// Chapters with errors of their own (lease verification, say) define their
// own enum and category next to their code, the same way.
//
// Every code also says what it means for the caller: its category maps it to
// one dcp::condition (retryable, outcome_unknown, permanent;
// dcp/core/condition.hpp), so callers test `ec == dcp::condition::retryable`
// instead of listing codes.
#include <string>
#include <system_error>

#include "dcp/core/condition.hpp"

namespace dcp {

enum class errc : int {
  // the wire: a frame or payload that cannot be trusted
  truncated_frame = 1,   ///< fewer bytes than the header or payload length says
  bad_magic,             ///< the frame does not start with dcp's magic
  unsupported_version,   ///< a wire version this build does not speak
  bad_flags,             ///< reserved header bits are set
  frame_too_large,       ///< payload length above the configured maximum
  unknown_protocol,      ///< no protocol with this id on the node
  unknown_message_type,  ///< the protocol has no message with this type id
  malformed_payload,     ///< the payload does not decode as the message type
  trailing_bytes,        ///< the payload decoded but bytes were left over
  // transports
  queue_full,         ///< the per-peer send queue is at its byte limit
  peer_unreachable,   ///< no connection could be made to the peer
  connection_closed,  ///< the connection closed before the frame was sent
  bad_handshake,      ///< a connection did not introduce itself correctly
  shutting_down,      ///< the node is stopping
  bad_address,        ///< an address this environment cannot send to
  // protocols and their users
  timed_out,              ///< no answer within the configured bound
  cancelled,              ///< the operation was cancelled by the user or a stop
  invalid_argument,       ///< the caller passed a value outside the contract
  invalid_config,         ///< a configuration that cannot work, caught at set-up
  not_found,              ///< no such key, file, protocol or member
  member_failed,          ///< a member the algorithm needs has failed
  not_leader,             ///< this node cannot serve the request; ask the leader
  busy,                   ///< the operation conflicts with one in progress
  io_error,               ///< durable storage failed
  outcome_unknown,        ///< the request may or may not have taken effect (at most once); look before retrying
  authentication_failed,  ///< a frame or handshake did not authenticate (wrong key, forged, replayed, reordered)
};

class error_category_impl final : public std::error_category {
 public:
  const char* name() const noexcept override { return "dcp"; }
  std::string message(int ev) const override {
    switch (static_cast<errc>(ev)) {
      case errc::truncated_frame:
        return "truncated frame";
      case errc::bad_magic:
        return "bad frame magic (not a dcp peer?)";
      case errc::unsupported_version:
        return "unsupported wire version";
      case errc::bad_flags:
        return "reserved frame flags set";
      case errc::frame_too_large:
        return "frame larger than the configured maximum";
      case errc::unknown_protocol:
        return "unknown protocol id";
      case errc::unknown_message_type:
        return "unknown message type for the protocol";
      case errc::malformed_payload:
        return "malformed payload";
      case errc::trailing_bytes:
        return "trailing bytes after the payload";
      case errc::queue_full:
        return "send queue to the peer is full";
      case errc::peer_unreachable:
        return "peer unreachable";
      case errc::connection_closed:
        return "connection closed";
      case errc::bad_handshake:
        return "bad connection handshake";
      case errc::shutting_down:
        return "node is shutting down";
      case errc::bad_address:
        return "address not reachable from this environment";
      case errc::timed_out:
        return "timed out";
      case errc::cancelled:
        return "cancelled";
      case errc::invalid_argument:
        return "invalid argument";
      case errc::invalid_config:
        return "invalid configuration";
      case errc::not_found:
        return "not found";
      case errc::member_failed:
        return "a required member has failed";
      case errc::not_leader:
        return "not the leader";
      case errc::busy:
        return "busy: conflicts with an operation in progress";
      case errc::io_error:
        return "durable storage I/O error";
      case errc::outcome_unknown:
        return "outcome unknown: the request may have taken effect (at most once)";
      case errc::authentication_failed:
        return "authentication failed (wrong key, forged, replayed or reordered)";
    }
    return "unknown dcp error " + std::to_string(ev);
  }
  std::error_condition default_error_condition(int ev) const noexcept override {
    switch (static_cast<errc>(ev)) {
      // nothing was sent or done: later, or at another peer, it may work
      case errc::queue_full:
      case errc::peer_unreachable:
      case errc::connection_closed:
      case errc::shutting_down:
      case errc::member_failed:
      case errc::not_leader:
      case errc::busy:
        return condition::retryable;
      // the request may have taken effect before the answer was lost
      case errc::timed_out:
      case errc::outcome_unknown:
        return condition::outcome_unknown;
      // the same bytes, arguments or set-up fail the same way again
      case errc::truncated_frame:
      case errc::bad_magic:
      case errc::unsupported_version:
      case errc::bad_flags:
      case errc::frame_too_large:
      case errc::unknown_protocol:
      case errc::unknown_message_type:
      case errc::malformed_payload:
      case errc::trailing_bytes:
      case errc::bad_handshake:
      case errc::bad_address:
      case errc::cancelled:  // the caller (or the end of its session) withdrew it: nothing happens unless asked anew
      case errc::invalid_argument:
      case errc::invalid_config:
      case errc::not_found:
      case errc::io_error:
      case errc::authentication_failed:
        return condition::permanent;
    }
    return std::error_category::default_error_condition(ev);
  }
};

inline const std::error_category& error_category() noexcept {
  static const error_category_impl instance;
  return instance;
}

inline std::error_code make_error_code(errc e) noexcept { return {static_cast<int>(e), error_category()}; }

/// Thrown at API boundaries where a call cannot return an error value
/// (constructors with an invalid configuration, mostly).
class error : public std::system_error {
 public:
  error(std::error_code ec, const std::string& what) : std::system_error(ec, what) {}
  error(errc e, const std::string& what) : std::system_error(make_error_code(e), what) {}
};

}  // namespace dcp

template <> struct std::is_error_code_enum<dcp::errc> : std::true_type {};
