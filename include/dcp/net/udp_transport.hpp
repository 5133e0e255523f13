#pragma once
// udp_transport: dcp frames over UDP datagrams, for one node; a
// dcp::net::Transport (dcp/net/transport.hpp). What SWIM (Das et al., 2002)
// and Kademlia (Maymounkov and Mazieres, 2002) were designed for: small
// request / answer messages whose loss the protocol already tolerates
// (timeouts, retries, indirect probes), with no connection to set up, keep
// or tear down per peer.
//
//   dcp::net::plaintext_udp_node n(io, cfg);                   // 1,400-byte datagrams
//   dcp::net::plaintext_udp_node n(io, cfg, {.max_datagram_size = 8192});
//   // or at run time: transport_spec "udp:plaintext" (dcp/net/transport_spec.hpp)
//
// Frames. One dcp frame per datagram: the same 12-byte wire::frame header
// and the same wire::limits as over TCP. A frame larger than the datagram
// bound (options::max_datagram_size, header included; 1,400 bytes by
// default, which fits a 1,500-byte Ethernet MTU with IPv6 and tunnel headers
// to spare, and at most 65,507, the largest UDP payload over IPv4) is refused
// by send() with errc::frame_too_large and counted as a drop of its
// protocol: it is never fragmented silently. Protocols whose messages grow
// with the cluster (a full membership list, a DHT's value) need TCP, or a
// bound on what they put in one message.
//
// Attribution, and what it is worth. A node sends every datagram from its
// listening socket, so a datagram's source address IS its sender's listening
// address: the transport attributes each frame to the datagram's source
// IP:port, and a protocol sees the same peer address whether it sends to the
// peer or hears from it, as over TCP. Hence `listen` must be the concrete
// address peers reach (config::advertise is refused unless it equals it:
// behind a NAT or a DNS name the source would not be the advertised
// address), and peers are named by IP:port of the listening address's
// family (a host name, or the other family, cannot be sent to:
// errc::bad_address).
//
// This transport is plaintext and unauthenticated (`authenticated = false`):
// a source address is whatever the sender writes in its IP header, so anyone
// who can send a datagram to the port can speak for any address, and anyone
// on path reads and alters every frame. It is weaker than plaintext TCP
// there: no handshake round trip stands between a spoofer and a protocol.
// Name it only on a network nothing else reaches (docs/security.md). The
// authenticated datagram mode is keyring_udp_transport
// (dcp/net/udp_keyring.hpp): this transport with a Security policy that
// seals each datagram under a keyring, with a replay window per sender.
//
// Delivery: none promised. A datagram may be lost, duplicated or reordered,
// by the network or by a full socket buffer; nothing is retransmitted and
// nothing is acknowledged. The transport cannot know that a peer is gone, so
// it never calls the unreachable handler: protocols over UDP detect failures
// with their own timeouts (all of dcp's do).
//
// Sending. send() checks the peer's queue, encodes the frame into it and
// returns at once; it never blocks and never calls back. The queue is sent
// from a posted handler (or right after the batch of received frames being
// delivered, so that answers leave at once), with non-blocking sends, and
// waits for the socket to be writable when the kernel's buffer is full.
// Policies:
//   - queue full: a frame that would take the peer's queue above
//     limits.max_queued_bytes_per_peer is dropped, counted as
//     errc::queue_full for its protocol, and send() returns false; so is one
//     for a new peer when config::max_outbound_connections peers already have
//     datagrams queued (what bounds the memory all queues take together). The
//     queue is checked before the frame is encoded; so is the node's budget:
//     a frame that would take the bytes queued for all peers together above
//     config::max_buffered_bytes is refused the same way, and also counted
//     as "buffered_bytes_refused" of protocol 0.
//   - a send the kernel refuses (no route, say) drops that datagram, counted
//     for its protocol under the system's error.
//   - frames to the node's own address are delivered locally (posted).
//
// Receiving. One receive buffer of max_datagram_size + 1 bytes, allocated
// once. A datagram that cannot be trusted is dropped and counted as a drop of
// protocol 0, by reason: larger than max_datagram_size (frame_too_large),
// shorter than a header or than its header's length (truncated_frame), bad
// magic, unknown version, reserved flags, a length above
// limits.max_frame_size, bytes after the frame (trailing_bytes), and a frame
// of protocol 0 (bad_handshake: this transport has no messages of its own).
// Nothing else changes; the node keeps serving everyone else.
//
// connections() is the number of peers with datagrams queued (0 when the
// queue is empty: UDP holds no connection); queued_bytes(peer) the bytes
// queued for `peer`.
//
// Thread safety: none. Every member function runs on the transport's
// executor; so do its handlers (pass a strand if the io_context runs on
// several threads). Lifetime: owned through a shared_ptr that every pending
// handler holds; after stop() handlers only release it.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <sstream>
#include <string>
#include <string_view>
#include <system_error>
#include <unordered_map>
#include <utility>

#include <asio/any_io_executor.hpp>
#include <asio/buffer.hpp>
#include <asio/ip/udp.hpp>
#include <asio/post.hpp>

#include "dcp/core/address.hpp"
#include "dcp/core/bytes.hpp"
#include "dcp/core/error.hpp"
#include "dcp/core/log.hpp"
#include "dcp/core/metrics.hpp"
#include "dcp/core/rng.hpp"
#include "dcp/net/config.hpp"
#include "dcp/net/detail/connection.hpp"
#include "dcp/net/detail/local_frames.hpp"
#include "dcp/net/detail/timer_queue.hpp"
#include "dcp/net/node.hpp"
#include "dcp/net/transport.hpp"
#include "dcp/wire/frame.hpp"

namespace dcp::net {

/// What udp_transport needs beyond net::config.
struct udp_options {
  /// The largest datagram sent or accepted: a whole dcp frame, its 12-byte
  /// header included. In [64, 65,507]; larger frames are refused, never
  /// fragmented.
  std::size_t max_datagram_size = 1400;
  /// The kernel socket buffers asked for (SO_RCVBUF and SO_SNDBUF; the kernel
  /// caps them at net.core.rmem_max / wmem_max): what absorbs a burst of
  /// datagrams between two reads, beyond which the kernel drops them.
  std::size_t socket_buffer_size = 1u << 20;

  static constexpr std::size_t max_udp_payload = 65507;  // 65,535 - 8 (UDP header) - 20 (IPv4 header)

  void validate() const {
    if (max_datagram_size < 64 || max_datagram_size > max_udp_payload)
      throw error(errc::invalid_config, "net::udp_options: max_datagram_size must be in [64, 65507]");
    if (socket_buffer_size == 0) throw error(errc::invalid_config, "net::udp_options: socket_buffer_size must be > 0");
  }
};

/// The Security policy of a datagram transport that seals nothing: its
/// options are the datagram ones alone. (A sealing policy, as
/// udp_keyring_security in dcp/net/udp_keyring.hpp, also has
/// prefix_size, bind(self), seal(datagram, to) and open(datagram, from,
/// frame, metrics); see there.)
struct udp_plaintext {
  using options = udp_options;
  static constexpr bool authenticated = false;  // see the top of this header: the source address is the sender's word
  static constexpr bool sealed = false;
  static constexpr std::size_t overhead = 0;  // bytes a datagram carries beyond its frame
  static constexpr std::string_view name = "udp";
  static const udp_options& datagram_options(const options& o) noexcept { return o; }
  explicit udp_plaintext(const options&) noexcept {}
};

template <class Security> class basic_udp_transport
    : public std::enable_shared_from_this<basic_udp_transport<Security>> {
 public:
  using executor_type = asio::any_io_executor;
  using options = typename Security::options;
  using security_type = Security;
  static constexpr bool authenticated = Security::authenticated;
  static constexpr bool is_datagram =
      true;  // no order, no connection, no news of a lost peer (see the top of this header)
  static constexpr std::string_view name = Security::name;

  /// `m` and `r` must outlive the transport's active life (until stop()).
  /// The unreachable handler is never called (UDP cannot know a peer is gone).
  basic_udp_transport(executor_type ex, const config& cfg, dcp::metrics& m, dcp::rng&, frame_handler on_frame,
                      unreachable_handler, options opts)
      : opts_((Security::datagram_options(opts).validate(), Security::datagram_options(opts))),
        sec_(opts),
        ex_(std::move(ex)),
        cfg_(cfg),
        metrics_(m),
        on_frame_(std::move(on_frame)),
        socket_(ex_),
        receive_buffer_(opts_.max_datagram_size + 1) {
    if (opts_.max_datagram_size < wire::header_size + Security::overhead + 1)
      throw error(errc::invalid_config, "net::udp_options: max_datagram_size leaves no room for a frame once sealed");
    frame_limits_ = cfg_.limits;
    frame_limits_.max_frame_size = static_cast<std::uint32_t>(std::min<std::size_t>(
        cfg_.limits.max_frame_size, opts_.max_datagram_size - wire::header_size - Security::overhead));
  }
  basic_udp_transport(executor_type ex, const config& cfg, dcp::metrics& m, dcp::rng& r, frame_handler on_frame,
                      unreachable_handler u) requires(!Security::authenticated)
      : basic_udp_transport(std::move(ex), cfg, m, r, std::move(on_frame), std::move(u), options{}) {}
  basic_udp_transport(const basic_udp_transport&) = delete;
  basic_udp_transport& operator=(const basic_udp_transport&) = delete;

  /// Binds cfg.listen; returns it (the port filled in). Throws dcp::error
  /// when the address cannot be used, or when config::advertise names
  /// another address (datagrams are attributed to their source address).
  address listen() {
    const asio::ip::udp::endpoint ep(cfg_.listen.ip_address(), cfg_.listen.port());
    std::error_code ec;
    socket_.open(ep.protocol(), ec);
    if (!ec) socket_.bind(ep, ec);
    if (ec) {
      socket_.close(ec);
      throw error(errc::invalid_config, "dcp::net: cannot bind UDP " + cfg_.listen.to_string() + ": " + ec.message());
    }
    std::error_code ignored;
    socket_.non_blocking(true, ignored);
    const int buf = static_cast<int>(std::min<std::size_t>(opts_.socket_buffer_size, 1u << 30));
    socket_.set_option(asio::socket_base::receive_buffer_size(buf), ignored);
    socket_.set_option(asio::socket_base::send_buffer_size(buf), ignored);
    const auto local = socket_.local_endpoint();
    self_ = address::ip(local.address(), local.port());
    if constexpr (Security::sealed) sec_.bind(self_);
    if (cfg_.advertise) {
      const address adv = cfg_.advertise->port() ? *cfg_.advertise : cfg_.advertise->with_port(self_.port());
      if (adv != self_) {
        socket_.close(ignored);
        throw error(errc::invalid_config,
                    "dcp::net: UDP attributes a datagram to its source address, " + self_.to_string() +
                        " here, so a UDP node cannot advertise another one (" + adv.to_string() + ")");
      }
    }
    return self_;
  }

  /// Starts receiving.
  void start() {
    if (stopped_ || started_ || !socket_.is_open()) return;
    started_ = true;
    receive();
  }

  /// Closes the socket; idempotent. Queued datagrams are discarded.
  void stop() noexcept {
    if (stopped_) return;
    stopped_ = true;
    std::error_code ignored;
    socket_.close(ignored);
    queue_.clear();
    queued_.clear();
    buffered_ = 0;
  }

  template <wire::Message M> bool send(protocol_id protocol, const address& to, const M& m) {
    return send_frame(protocol, to, frame_source::of(m));
  }

  /// Queues one frame for `to`; false (and counted) if refused at once:
  /// stopped, not an IP address of the socket's family, larger than a
  /// datagram, queue full.
  bool send_frame(protocol_id protocol, const address& to, const frame_source& src) {
    if (stopped_) return refuse(protocol, errc::shutting_down);
    if (!to.is_ip() || to.ip_address().is_v6() != self_.ip_address().is_v6())
      return refuse(protocol, errc::bad_address);
    if (to == self_) return send_local(protocol, src);
    // The queue first: a full one costs no encoding.
    auto q = queued_.find(to);
    const std::size_t before = q == queued_.end() ? 0 : q->second;
    if (before + wire::header_size + Security::overhead > cfg_.limits.max_queued_bytes_per_peer)
      return refuse(protocol, errc::queue_full);
    if (q == queued_.end() && queued_.size() >= cfg_.max_outbound_connections)
      return refuse(protocol, errc::queue_full);
    // ... and the node's, across every peer (config::max_buffered_bytes).
    if (buffered_ + wire::header_size + Security::overhead > cfg_.max_buffered_bytes) return refuse_buffered(protocol);
    datagram d{protocol, to, {}};
    if constexpr (Security::sealed) d.frame.resize(Security::prefix_size);  // the seal's header goes first
    if (auto ec = net::encode_frame(protocol, src, d.frame, frame_limits_)) return refuse(protocol, ec);
    if constexpr (Security::sealed) sec_.seal(d.frame, to);
    if (before + d.frame.size() > cfg_.limits.max_queued_bytes_per_peer) return refuse(protocol, errc::queue_full);
    if (buffered_ + d.frame.size() > cfg_.max_buffered_bytes) return refuse_buffered(protocol);
    metrics_.sent(protocol, src.type, d.frame.size());
    if (q == queued_.end()) q = queued_.emplace(to, 0).first;
    q->second += d.frame.size();
    buffered_ += d.frame.size();
    queue_.push_back(std::move(d));
    if (!delivering_ && !flush_posted_ && !waiting_writable_) {
      flush_posted_ = true;
      asio::post(ex_, [self = this->shared_from_this()] {
        self->flush_posted_ = false;
        if (!self->stopped_ && !self->waiting_writable_) self->flush();
      });
    }
    return true;
  }

  address self() const noexcept { return self_; }
  executor_type get_executor() const noexcept { return ex_; }
  bool stopped() const noexcept { return stopped_; }
  const udp_options& udp() const noexcept { return opts_; }
  /// Peers with datagrams queued (UDP holds no connections).
  std::size_t connections() const noexcept { return queued_.size(); }
  /// Bytes queued for all peers together (what config::max_buffered_bytes bounds).
  std::size_t buffered_bytes() const noexcept { return buffered_; }
  /// Bytes queued for `peer`: a sender's back-pressure signal.
  std::size_t queued_bytes(const address& peer) const noexcept {
    auto it = queued_.find(peer);
    return it == queued_.end() ? 0 : it->second;
  }
  /// The largest frame payload a datagram carries (what protocols must fit in).
  std::size_t max_payload() const noexcept { return frame_limits_.max_frame_size; }
  /// Bytes of the receive buffer (fixed at construction).
  std::size_t read_buffer_bytes() const noexcept { return receive_buffer_.size(); }

  /// The security policy (the keyring and the senders tracked, for keyring_udp_transport).
  Security& security() noexcept { return sec_; }
  const Security& security() const noexcept { return sec_; }

  /// Keyring transports: seal with the key `id` (installed) from the next
  /// datagram on; peers holding it open them at once (they accept every key
  /// installed). Install everywhere, use everywhere, then remove.
  std::error_code use_key(std::uint64_t id) requires Security::sealed { return sec_.ring().use(id); }
  /// Keyring transports: forget the key `id` (never the primary): a datagram
  /// under it opens no more (counted as "udp_keyring_unknown_key").
  std::error_code remove_key(std::uint64_t id) requires Security::sealed { return sec_.ring().remove(id); }

 private:
  struct datagram {
    protocol_id protocol;
    address to;
    bytes frame;
  };
  static constexpr int receive_batch = 64;  // datagrams read per wake-up before others get the executor

  bool refuse(protocol_id protocol, std::error_code ec) {
    metrics_.dropped(protocol, ec);
    return false;
  }
  bool refuse_buffered(protocol_id protocol) {
    metrics_.add(detail::transport_protocol, "buffered_bytes_refused", 1);
    return refuse(protocol, errc::queue_full);
  }

  template <class... Args> void log(log_level level, const Args&... args) {
    detail::transport_log(cfg_, self_, level, args...);
  }

  bool send_local(protocol_id protocol, const frame_source& src) {
    return detail::send_local(ex_, metrics_, frame_limits_.max_frame_size, protocol, src,
                              [self = this->shared_from_this()](const wire::frame_header& h, const bytes& payload) {
                                if (!self->stopped_) self->on_frame_(self->self_, h, payload);
                              });
  }

  // ---- sending ----

  /// Sends what is queued, in order, until the queue is empty or the
  /// kernel's buffer is full (then waits until the socket is writable).
  void flush() {
    while (!queue_.empty() && !stopped_) {
      datagram& d = queue_.front();
      std::error_code ec;
      const asio::ip::udp::endpoint to(d.to.ip_address(), d.to.port());
      socket_.send_to(asio::buffer(d.frame), to, 0, ec);
      if (ec == asio::error::would_block || ec == asio::error::try_again) {
        waiting_writable_ = true;
        socket_.async_wait(asio::socket_base::wait_write, [self = this->shared_from_this()](const std::error_code&) {
          self->waiting_writable_ = false;
          if (!self->stopped_) self->flush();  // on an error too: the next send_to reports it, per datagram
        });
        return;
      }
      if (ec) {
        if (ec != asio::error::operation_aborted) {
          metrics_.dropped(d.protocol, ec);
          log(log_level::debug, "a datagram to ", d.to, " was not sent: ", ec.message());
        }
      }
      unqueue(d);
      queue_.pop_front();
    }
  }

  void unqueue(const datagram& d) {
    auto it = queued_.find(d.to);
    if (it == queued_.end()) return;
    const std::size_t n = std::min(it->second, d.frame.size());
    it->second -= n;
    buffered_ -= n;
    if (it->second == 0) queued_.erase(it);
  }

  // ---- receiving ----

  void receive() {
    socket_.async_receive_from(
        asio::buffer(receive_buffer_), sender_,
        [self = this->shared_from_this()](const std::error_code& ec, std::size_t n) { self->on_receive(ec, n); });
  }

  void on_receive(const std::error_code& ec, std::size_t n) {
    if (stopped_) return;
    delivering_ = true;
    if (!ec) {
      datagram_in(n);
      // More may be waiting: read them without another trip through the
      // reactor, a bounded number so that timers and sends are not starved.
      for (int i = 1; i < receive_batch && !stopped_; ++i) {
        std::error_code e;
        const std::size_t m = socket_.receive_from(asio::buffer(receive_buffer_), sender_, 0, e);
        if (e) break;  // would_block: nothing left (other errors: next receive reports them)
        datagram_in(m);
      }
    } else if (ec != asio::error::operation_aborted) {
      // ICMP errors (port unreachable) may surface here on some systems:
      // they say nothing trustworthy about a peer; count and go on.
      metrics_.add(detail::transport_protocol, "receive_errors", 1);
    }
    delivering_ = false;
    if (stopped_) return;
    if (!waiting_writable_) flush();  // answers first, then the next receive
    receive();
  }

  /// One datagram of `n` bytes in receive_buffer_, from sender_.
  void datagram_in(std::size_t n) {
    if (n > opts_.max_datagram_size) return drop(errc::frame_too_large);  // the kernel cut it to our buffer
    byte_view data(receive_buffer_.data(), n);
    if constexpr (Security::sealed) {
      // Opened in place: `data` becomes the frame inside, authenticated as
      // sent by `from` to us and never accepted before; else dropped and
      // counted by the policy, and nothing else changes.
      if (auto ec = sec_.open(std::span<std::uint8_t>(receive_buffer_.data(), n),
                              address::ip(sender_.address(), sender_.port()), data, metrics_))
        return drop(ec);
    }
    wire::frame_header h;
    if (auto ec = wire::read_header(data, h, frame_limits_)) return drop(ec);
    const std::size_t have = data.size() - wire::header_size;
    if (h.length > have) return drop(errc::truncated_frame);
    if (h.length < have) return drop(errc::trailing_bytes);
    if (h.protocol == detail::transport_protocol) return drop(errc::bad_handshake);
    on_frame_(address::ip(sender_.address(), sender_.port()), h, data.subspan(wire::header_size));
  }

  void drop(std::error_code why) { metrics_.dropped(detail::transport_protocol, why); }

  udp_options opts_;
  Security sec_;
  executor_type ex_;
  config cfg_;
  dcp::metrics& metrics_;
  frame_handler on_frame_;  // (no unreachable handler: UDP cannot know a peer is gone)
  asio::ip::udp::socket socket_;
  wire::limits frame_limits_;
  bytes receive_buffer_;
  asio::ip::udp::endpoint sender_;
  address self_;
  std::deque<datagram> queue_;                       // every peer's datagrams, in the order sent
  std::unordered_map<address, std::size_t> queued_;  // bytes queued per peer (only peers with some)
  std::size_t buffered_ = 0;                         // ... all together
  bool started_ = false;
  bool stopped_ = false;
  bool delivering_ = false;  // inside on_receive: sends wait for the flush after the batch
  bool flush_posted_ = false;
  bool waiting_writable_ = false;
};

/// Plaintext datagrams (see the top of this header).
using udp_transport = basic_udp_transport<udp_plaintext>;
static_assert(Transport<udp_transport>);

/// A node whose frames travel as plaintext UDP datagrams (see the top of
/// this header: unauthenticated; only on a network nothing else reaches).
using plaintext_udp_node = basic_node<udp_transport>;

}  // namespace dcp::net
