#pragma once
// dcp::net::Transport: what a dcp::net::basic_node needs from the thing that
// moves its frames, and the plaintext policy.
//
// A transport carries dcp frames (dcp/wire/frame.hpp) between nodes and
// attributes every frame it delivers to a peer address. That attribution is
// the whole trust boundary of dcp::net: protocols believe the `from` the
// transport hands them (docs/security.md). A transport must therefore say
// whether it authenticates (`T::authenticated`): a plaintext transport lets
// whoever connects claim any address; an authenticated one delivers a frame
// only if its sender proved it holds the group's key or certificate.
//
// A type T is a Transport when it provides:
//
//   typename T::options      what it needs beyond net::config (a keyring,
//                            certificates; an empty struct for plaintext).
//                            Authenticated transports have no usable default:
//                            a node cannot fall back to plaintext silently.
//   T::authenticated         bool constant, see above.
//   T(executor, const config&, metrics&, rng&, frame_handler, unreachable_handler, options)
//                            the metrics and rng outlive the transport's active life;
//                            frame_handler(from, header, payload) is called for every
//                            frame received (never inside send), unreachable_handler(peer)
//                            when the transport gave up on a peer. Owned through
//                            std::shared_ptr (handlers keep it alive).
//   t.listen() -> address    binds config::listen, returns the address the node
//                            introduces itself with; throws dcp::error when it cannot.
//   t.start(), t.stop()      start accepting; close everything (idempotent, noexcept),
//                            after which pending handlers only release the transport.
//   t.send_frame(protocol, to, frame_source) -> bool
//                            queue one message for `to`; false (and counted as a drop
//                            of `protocol` by reason) when refused at once. Never
//                            blocks, never calls back inside the call.
//   t.connections(), t.queued_bytes(peer) -> std::size_t   for node status and back-pressure.
//
// Every handler runs on the transport's executor; no member is thread-safe.
// The transports in dcp: tcp_transport (plaintext, dcp/net/tcp_transport.hpp),
// keyring_transport (AES-256-GCM under a shared keyring, dcp/net/keyring.hpp),
// tls_transport (TLS 1.3, mutual authentication, dcp/net/tls.hpp), over
// TCP; udp_transport (plaintext datagrams, one frame each, never reports a
// peer unreachable, dcp/net/udp_transport.hpp) and keyring_udp_transport
// (the same, each datagram sealed under a keyring, with a replay window per
// sender, dcp/net/udp_keyring.hpp).
#include <concepts>
#include <cstddef>
#include <functional>
#include <memory>
#include <string_view>

#include <asio/any_io_executor.hpp>

#include "dcp/core/address.hpp"
#include "dcp/core/bytes.hpp"
#include "dcp/core/metrics.hpp"
#include "dcp/core/rng.hpp"
#include "dcp/net/config.hpp"
#include "dcp/wire/frame.hpp"
#include "dcp/wire/message.hpp"

namespace dcp::net {

/// A frame received from `from` (the peer's address, as the transport
/// established it). Must not throw.
using frame_handler = std::function<void(const address& from, const wire::frame_header&, byte_view payload)>;
/// The transport gave up on `peer` (its reconnect_policy is exhausted).
using unreachable_handler = std::function<void(const address& peer)>;

/// One message to encode, without its type: what lets a node's Env (one
/// class for every transport) hand any wire::Message to any transport, and
/// the transport encode it straight into the peer's queue (no copy).
struct frame_source {
  message_type type = 0;
  const void* message = nullptr;
  void (*encode)(const void* message, bytes& out) = nullptr;  // appends the payload

  template <wire::Message M> static frame_source of(const M& m) noexcept {
    return {static_cast<message_type>(M::wire_id), &m,
            [](const void* p, bytes& out) { wire::encode(*static_cast<const M*>(p), out); }};
  }
};

/// Appends the frame (header and payload) of `src` to `out`; frame_too_large
/// (and `out` unchanged) past lim.max_frame_size.
inline std::error_code encode_frame(protocol_id protocol, const frame_source& src, bytes& out,
                                    const wire::limits& lim) {
  const std::size_t at = out.size();
  out.resize(at + wire::header_size);
  src.encode(src.message, out);
  const std::size_t length = out.size() - at - wire::header_size;
  if (length > lim.max_frame_size) {
    out.resize(at);
    return errc::frame_too_large;
  }
  wire::write_header(out.data() + at, {protocol, src.type, static_cast<std::uint32_t>(length)});
  return {};
}

template <class T>
concept Transport = requires {
  typename T::options;
}
&&std::same_as<std::remove_cv_t<decltype(T::authenticated)>, bool>&&
    std::constructible_from<T, asio::any_io_executor, const config&, dcp::metrics&, dcp::rng&, frame_handler,
                            unreachable_handler, typename T::options>&& requires(T& t, const T& ct, protocol_id p,
                                                                                 const address& a,
                                                                                 const frame_source& src) {
  { t.listen() } -> std::same_as<address>;
  t.start();
  t.stop();
  { t.send_frame(p, a, src) } -> std::same_as<bool>;
  { ct.connections() } -> std::convertible_to<std::size_t>;
  { ct.queued_bytes(a) } -> std::convertible_to<std::size_t>;
};

/// The policy of a transport that neither authenticates nor encrypts: every
/// caller may claim any address, and anyone on path reads every frame. Name
/// it only on a network nothing else can reach (docs/security.md).
struct plaintext {
  struct options {};
  static constexpr bool authenticated = false;
  static constexpr bool sealed = false;
  static constexpr bool layered = false;
  static constexpr std::size_t overhead = 0;  // bytes a frame grows by on the wire
  static constexpr std::string_view name = "plaintext";
  explicit plaintext(options = {}) noexcept {}
};

}  // namespace dcp::net
