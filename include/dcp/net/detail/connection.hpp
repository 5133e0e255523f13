#pragma once
// The per-connection state of the TCP transport (internal).
//
// Every connection is a `link`: a socket, a wire::frame_reader cutting what
// arrives into frames, and a send queue. Frames are encoded back to back into
// `pending`; a write swaps `pending` with `writing` and hands the whole batch
// to the socket at once, so a burst of N frames costs one syscall, and the
// two buffers keep their capacity: no allocation per frame in steady state.
//
// Outbound: one `outbound` per peer address we connect to, with the
// connection state machine and back-off. Inbound: one `inbound` per accepted
// socket; its first frame must be the hello naming the peer's listening
// address, to which every later frame is attributed, and from then on frames
// for that address may travel back on it.
#include <array>
#include <cstdint>
#include <memory>
#include <string_view>

#include <asio/ip/tcp.hpp>
#include <asio/steady_timer.hpp>

#include "dcp/core/address.hpp"
#include "dcp/core/bytes.hpp"
#include "dcp/core/time.hpp"
#include "dcp/wire/frame.hpp"
#include "dcp/wire/message.hpp"

namespace dcp::net::detail {

/// Protocol id 0 is the transport's own: only the hello travels on it.
inline constexpr protocol_id transport_protocol = 0;

/// The first frame on every connection: who is calling, as an address the
/// receiver can reach back (the sender's listening address).
struct hello {
  static constexpr message_type wire_id = 1;
  static constexpr std::string_view wire_name = "hello";
  address listen;
  template <class Archive> void serialize(Archive& ar) { ar(listen); }
};

/// Sent on a keyring connection when its sender switches to a new primary
/// key: every later frame in that direction is sealed with `key_id`.
struct rekey {
  static constexpr message_type wire_id = 2;
  static constexpr std::string_view wire_name = "rekey";
  std::uint64_t key_id = 0;
  template <class Archive> void serialize(Archive& ar) { ar(key_id); }
};

/// The per-connection state of a sealing transport (dcp/net/keyring.hpp):
/// plain bytes, so that this header needs no OpenSSL. Unused in plaintext.
struct seal_state {
  static constexpr std::size_t opening_size = 48;   // magic, version, key id, nonce
  std::array<std::uint8_t, opening_size> mine{};    // the opening this side sent
  std::array<std::uint8_t, opening_size> theirs{};  // the peer's, once read
  std::array<std::uint8_t, 32> send_key{}, recv_key{};
  std::shared_ptr<void> send_cipher, recv_cipher;    // the keys scheduled once (an EVP_CIPHER_CTX each), opaque here
  std::uint64_t send_key_id = 0, recv_key_id = 0;    // which keyring key each direction is derived from
  std::uint64_t send_counter = 0, recv_counter = 0;  // the next frame's number, each way
  bool ready = false;                                // both openings exchanged, keys derived
  bool welcomed = false;          // caller: the acceptor's hello arrived (it holds the key, accepted our certificate)
  std::size_t sealed_prefix = 0;  // bytes at the front of `pending` already sealed
};

/// The endpoint of an IP address (a host name is resolved by the transport).
inline asio::ip::tcp::endpoint to_endpoint(const address& a) { return {a.ip_address(), a.port()}; }

inline address to_address(const asio::ip::tcp::endpoint& e) { return address::ip(e.address(), e.port()); }

/// Calls f(header) for every whole frame in a buffer of frames we encoded.
template <class F> void for_each_frame(byte_view frames, F&& f) {
  std::size_t at = 0;
  wire::frame_header h;
  while (at + wire::header_size <= frames.size()) {
    // our own bytes: the header is valid, only the length matters (no size limit)
    if (wire::read_header(frames.subspan(at, wire::header_size), h, wire::limits{0xFFFFFFFFu})) return;
    f(h);
    at += wire::header_size + h.length;
  }
}

/// The bytes queued for sending on all of a node's connections together
/// (config::max_buffered_bytes), and the bytes their read buffers hold
/// (config::max_read_buffer_bytes). Shared with every link, so that a link a
/// handler keeps alive after the transport let go of it still gives its
/// bytes back when it dies: the sums cannot leak.
struct byte_pool {
  std::size_t bytes = 0;
  std::size_t read_bytes = 0;
};

/// One TCP connection, whichever side opened it: frames are read from it and
/// may be written to it.
struct link : std::enable_shared_from_this<link> {
  link(asio::ip::tcp::socket s, const wire::limits& lim, bool accepted)
      : socket(std::move(s)), reader(lim), inbound(accepted) {}
  link(const link&) = delete;
  link& operator=(const link&) = delete;
  ~link() {
    if (pool) pool->bytes -= charged, pool->read_bytes -= read_charged;
  }

  std::size_t queued() const noexcept { return pending.size() + writing.size(); }
  /// Brings the pool up to date with what this link queues now, and with
  /// what its read buffer holds.
  void settle() noexcept {
    if (pool) {
      pool->bytes = pool->bytes - charged + queued();
      pool->read_bytes = pool->read_bytes - read_charged + reader.capacity();
    }
    charged = queued();
    read_charged = reader.capacity();
  }

  asio::ip::tcp::socket socket;
  wire::frame_reader reader;
  bytes pending;  // frames not yet handed to the socket
  bytes writing;  // the batch of the write in flight
  bool write_in_flight = false;
  bool flush_due = false;             // listed in the transport's dirty list
  bool hello_sent = false;            // the caller introduces itself; the accepting side never does
  bool up = false;                    // frames may be written now
  const bool inbound;                 // accepted (an `inbound`), else an `outbound`
  std::size_t read_size = 64 * 1024;  // bytes asked of each read; grows on bulk streams
  std::uint64_t generation = 0;       // bumped whenever the socket closes: stale handlers compare it
  time_point last_active{};           // last bytes read or written (idle_timeout)
  time_point frame_started{};         // a frame is partly read since then (read_timeout); {} when none
  seal_state seal;                    // keyring transports; `welcomed` for every authenticated one
  // A layered transport's stream over `socket` (an asio::ssl::stream for
  // TLS), opaque here so that this header needs no OpenSSL; fresh for each
  // connection, kept alive by the handlers of its pending operations.
  std::shared_ptr<void> layer;
  std::shared_ptr<byte_pool> pool;  // the node's; what queued() was when last settled is `charged`
  std::size_t charged = 0;
  std::size_t read_charged = 0;  // reader.capacity() when last settled
};

/// The connection this node opens to a peer address, with its queue and back-off.
struct outbound final : link {
  enum class state : std::uint8_t {
    idle,        ///< no socket; the next frame starts a connection
    connecting,  ///< resolving (a host name) or async_connect in flight (with a time-out on `timer`)
    backoff,     ///< the last attempt failed; `timer` retries
    connected,   ///< frames flow
  };

  outbound(const asio::any_io_executor& ex, const address& a, const wire::limits& lim)
      : link(asio::ip::tcp::socket(ex), lim, false), addr(a), timer(ex) {}

  address addr;
  asio::steady_timer timer;  // connect time-out, then back-off
  // A host name is resolved afresh on every attempt (its IPs may have moved);
  // the resolver of the attempt in flight, so that a time-out can cancel it.
  std::shared_ptr<asio::ip::tcp::resolver> resolver;
  state st = state::idle;
  bool holds_slot = false;     // counts against limits.max_connections
  bool retired = false;        // removed from the transport (gave up, or stopped)
  std::uint32_t failures = 0;  // consecutive failed attempts
  time_point first_failure{};
  std::uint64_t last_used = 0;  // for closing the least recently used idle connection
};

/// A connection a peer opened to us; usable for sending once it said hello.
struct inbound final : link {
  inbound(asio::ip::tcp::socket s, const wire::limits& lim)
      : link(std::move(s), lim, true), timer(socket.get_executor()) {
    hello_sent = true;
  }

  asio::steady_timer timer;  // handshake time-out
  asio::ip::address remote;  // the peer's IP, for the per-IP cap
  address peer;              // from the hello
  bool greeted = false;
  bool open = true;
};

}  // namespace dcp::net::detail
