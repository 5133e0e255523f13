#pragma once
// dcp's error codes, in the std::error_code machinery so that they mix with
// Asio's and the system's.
//
// One category, "dcp", covers the foundation: the wire, the transports and the
// generic failures of protocols (time-outs, unreachable peers, misuse).
// Chapters with errors of their own (lease verification, say) define their
// own enum next to their code, the same way: the category itself is
// dcp/core/error_category.hpp's, shared by all.
//
// Every code also says what it means for the caller: describe() puts it in
// one dcp::condition (retryable, outcome_unknown, permanent;
// dcp/core/condition.hpp), so callers test `ec == dcp::condition::retryable`
// instead of listing codes.
#include <string>
#include <system_error>

#include "dcp/core/error_category.hpp"

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

constexpr const char* error_category_name(errc) noexcept { return "dcp"; }

/// Each code's condition and message. The condition is retryable when nothing
/// was sent or done (later, or at another peer, it may work); outcome_unknown
/// when the request may have taken effect before the answer was lost;
/// permanent when the same bytes, arguments or set-up fail the same way again.
constexpr error_meaning describe(errc e) noexcept {
  // every code, and no default: -Wswitch names a code added without a meaning
  switch (e) {
    case errc::truncated_frame:
      return {condition::permanent, "truncated frame"};
    case errc::bad_magic:
      return {condition::permanent, "bad frame magic (not a dcp peer?)"};
    case errc::unsupported_version:
      return {condition::permanent, "unsupported wire version"};
    case errc::bad_flags:
      return {condition::permanent, "reserved frame flags set"};
    case errc::frame_too_large:
      return {condition::permanent, "frame larger than the configured maximum"};
    case errc::unknown_protocol:
      return {condition::permanent, "unknown protocol id"};
    case errc::unknown_message_type:
      return {condition::permanent, "unknown message type for the protocol"};
    case errc::malformed_payload:
      return {condition::permanent, "malformed payload"};
    case errc::trailing_bytes:
      return {condition::permanent, "trailing bytes after the payload"};
    case errc::queue_full:
      return {condition::retryable, "send queue to the peer is full"};
    case errc::peer_unreachable:
      return {condition::retryable, "peer unreachable"};
    case errc::connection_closed:
      return {condition::retryable, "connection closed"};
    case errc::bad_handshake:
      return {condition::permanent, "bad connection handshake"};
    case errc::shutting_down:
      return {condition::retryable, "node is shutting down"};
    case errc::bad_address:
      return {condition::permanent, "address not reachable from this environment"};
    case errc::timed_out:
      return {condition::outcome_unknown, "timed out"};
    case errc::cancelled:  // the caller (or the end of its session) withdrew it: nothing happens unless asked anew
      return {condition::permanent, "cancelled"};
    case errc::invalid_argument:
      return {condition::permanent, "invalid argument"};
    case errc::invalid_config:
      return {condition::permanent, "invalid configuration"};
    case errc::not_found:
      return {condition::permanent, "not found"};
    case errc::member_failed:
      return {condition::retryable, "a required member has failed"};
    case errc::not_leader:
      return {condition::retryable, "not the leader"};
    case errc::busy:
      return {condition::retryable, "busy: conflicts with an operation in progress"};
    case errc::io_error:
      return {condition::permanent, "durable storage I/O error"};
    case errc::outcome_unknown:
      return {condition::outcome_unknown, "outcome unknown: the request may have taken effect (at most once)"};
    case errc::authentication_failed:
      return {condition::permanent, "authentication failed (wrong key, forged, replayed or reordered)"};
  }
  return {};  // not a code
}

inline const std::error_category& error_category() noexcept { return error_category_of<errc>(); }

/// Thrown at API boundaries where a call cannot return an error value
/// (constructors with an invalid configuration, mostly).
class error : public std::system_error {
 public:
  error(std::error_code ec, const std::string& what) : std::system_error(ec, what) {}
  error(errc e, const std::string& what) : std::system_error(make_error_code(e), what) {}
};

}  // namespace dcp

template <> struct std::is_error_code_enum<dcp::errc> : std::true_type {};
