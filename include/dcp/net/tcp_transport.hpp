#pragma once
// basic_tcp_transport<Security>: dcp frames over TCP, for one node; a
// dcp::net::Transport (dcp/net/transport.hpp). tcp_transport is its
// plaintext instance; keyring_transport (dcp/net/keyring.hpp) seals every
// frame under a shared keyring; tls_transport (dcp/net/tls.hpp) runs the same
// frames through a TLS 1.3 stream. Everything below holds for all three; what
// each adds is described in its header.
//
// The Security policy says how a connection is protected:
//   options, name, overhead (bytes a frame grows by), authenticated (the
//   caller is not up until the acceptor's own hello, its "welcome", arrives:
//   the acceptor proved itself, and a refused caller backs off and gives up
//   as on an unreachable peer);
//   sealed: the policy seals each frame itself (open_session, seal, open);
//   layered: the policy wraps the socket in a stream (TLS): start_layer()
//   runs its handshake after connect / accept, every read and write goes
//   through stream(link), and the policy says whether a certificate binds
//   an address (binds()).
//
// Connections. A connection opens with a hello frame (protocol 0) carrying
// the caller's listening address, and every frame that follows on it is
// attributed to that address, so a protocol sees the same peer address
// whether it sends to the peer or hears from it. Frames flow both ways on a
// connection: when B has no connection of its own to A but A connected to B,
// B answers on A's connection (a request and its answer then share one TCP
// connection, whose data segments carry each other's ACKs; over loopback that
// is a third of the round trip). A peer keeps using the connection it
// started with while that one is up or has frames queued, so frames to one
// peer stay in order except across a lost connection. The hello is not
// authentication: whoever connects may claim any address (keyring_transport
// makes it a key holder's word, tls_transport a certificate's).
//
// Input that cannot be trusted closes the connection that carried it and is
// counted as a drop of protocol 0 in the node's metrics, by reason: a first
// frame that is not a hello, or a hello that does not decode (bad_handshake),
// no hello within handshake_timeout (timed_out), a later frame on protocol 0
// (bad_handshake), bad magic, unknown version, reserved flags, a length above
// limits.max_frame_size, and a connection that ends inside a frame
// (truncated_frame). The node keeps serving everyone else.
//
// Sending. send() encodes the frame straight into the peer's queue and
// returns at once. The first frame to an idle peer starts a connection; the
// queued frames go out, all of them in one async_write, as soon as the
// connection is up and the previous write has completed (batching: a burst of
// frames costs one syscall). Policies:
//   - queue full: a frame that would take the peer's queue (frames waiting
//     plus the write in flight) above limits.max_queued_bytes_per_peer is
//     dropped, counted as errc::queue_full for its protocol, and send()
//     returns false. Frames already queued are kept (FIFO is preserved).
//   - node full: the same, when the frame would take the bytes queued on all
//     connections together (buffered_bytes()) above config::max_buffered_bytes;
//     also counted as "buffered_bytes_refused" of protocol 0. Both checks
//     come before the frame is encoded.
//   - a failed connection attempt is retried with exponential back-off and
//     jitter (reconnect_policy); past the policy's bound the transport gives
//     up: it drops the queue (each frame counted as errc::peer_unreachable)
//     and reports the peer through the unreachable handler.
//   - a connection lost while frames were in flight loses them (counted as
//     errc::connection_closed: TCP may or may not have delivered them); the
//     frames still queued go out on a new connection, opened after a short
//     jittered delay so that a peer that keeps closing is not hammered.
//   - frames to the node's own address are delivered locally (posted).
//
// Resources. Inbound and outbound connections have separate slots:
// limits.max_connections inbound (past it an inbound connection is closed at
// once, counter "connections_refused" of protocol 0), of which at most
// config::max_inbound_per_ip from one IP address ("connections_refused_per_ip"),
// and config::max_outbound_connections outbound (past it the least recently
// used idle outbound connection is closed, or the attempt fails). Before its
// hello a connection may send frames of at most config::max_hello_frame_size
// (else frame_too_large); a frame begun must be whole within
// config::read_timeout, and a connection silent both ways for
// config::idle_timeout closes ("idle_closed"). A read buffer grown for a
// large frame shrinks back once the frame is delivered. Sockets have TCP
// keepalive on, so a peer that vanished is noticed by the kernel too.
//
// Thread safety: none. Every member function runs on the transport's
// executor; so do its handlers. It never creates a strand: when the
// io_context runs on several threads, pass a strand as the executor.
//
// Lifetime: owned through a shared_ptr; every pending handler holds one, and
// after stop() handlers only release it. stop() closes every socket and
// cancels every timer, so io_context::run returns once they have drained.
#include <algorithm>
#include <array>
#include <chrono>
#include <sstream>
#include <string_view>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <system_error>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include <asio/any_io_executor.hpp>
#include <asio/buffer.hpp>
#include <asio/connect.hpp>
#include <asio/read.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>
#include <asio/write.hpp>

#include "dcp/core/address.hpp"
#include "dcp/core/error.hpp"
#include "dcp/core/log.hpp"
#include "dcp/core/metrics.hpp"
#include "dcp/core/rng.hpp"
#include "dcp/net/config.hpp"
#include "dcp/net/detail/connection.hpp"
#include "dcp/net/detail/local_frames.hpp"
#include "dcp/net/detail/timer_queue.hpp"
#include "dcp/net/transport.hpp"
#include "dcp/wire/frame.hpp"
#include "dcp/wire/message.hpp"

namespace dcp::net {

/// Security: net::plaintext, or net::keyring_security (dcp/net/keyring.hpp).
template <class Security> class basic_tcp_transport
    : public std::enable_shared_from_this<basic_tcp_transport<Security>> {
 public:
  using executor_type = asio::any_io_executor;
  using frame_handler = net::frame_handler;
  using unreachable_handler = net::unreachable_handler;
  using options = typename Security::options;
  using security_type = Security;
  static constexpr bool authenticated = Security::authenticated;

  /// `m` and `r` must outlive the transport's active life (until stop()).
  basic_tcp_transport(executor_type ex, const config& cfg, dcp::metrics& m, dcp::rng& r, frame_handler on_frame,
                      unreachable_handler on_unreachable, options opts)
      : sec_(std::move(opts)),
        ex_(std::move(ex)),
        cfg_(cfg),
        metrics_(m),
        rng_(r),
        on_frame_(std::move(on_frame)),
        on_unreachable_(std::move(on_unreachable)),
        acceptor_(ex_),
        accept_retry_(ex_),
        sweep_timer_(ex_) {}
  /// Plaintext needs no options: tcp_transport(ex, cfg, metrics, rng, on_frame, on_unreachable).
  basic_tcp_transport(executor_type ex, const config& cfg, dcp::metrics& m, dcp::rng& r, frame_handler on_frame,
                      unreachable_handler on_unreachable) requires(!Security::authenticated)
      : basic_tcp_transport(std::move(ex), cfg, m, r, std::move(on_frame), std::move(on_unreachable), options{}) {}

  basic_tcp_transport(const basic_tcp_transport&) = delete;
  basic_tcp_transport& operator=(const basic_tcp_transport&) = delete;

  using std::enable_shared_from_this<basic_tcp_transport<Security>>::shared_from_this;

  /// Binds and listens on cfg.listen (accepting starts with start()).
  /// Returns the bound address; throws dcp::error when the address cannot be used.
  address listen() {
    const auto ep = detail::to_endpoint(cfg_.listen);
    std::error_code ec;
    acceptor_.open(ep.protocol(), ec);
    if (!ec) acceptor_.set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec) acceptor_.bind(ep, ec);
    if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) {
      acceptor_.close();
      throw error(ec, "dcp::net: cannot listen on " + cfg_.listen.to_string() + ": " + ec.message());
    }
    self_ = detail::to_address(acceptor_.local_endpoint());
    if (cfg_.advertise) self_ = cfg_.advertise->port() ? *cfg_.advertise : cfg_.advertise->with_port(self_.port());
    if constexpr (Security::layered)
      if (!sec_.binds_self(self_)) {  // peers would refuse every connection: say so now
        acceptor_.close();
        throw error(errc::invalid_config,
                    "dcp::net: this node's " + std::string(Security::name) + " certificate does not bind its address " +
                        self_.to_string());
      }
    hello_frame_.clear();
    if (auto e = wire::encode_frame(detail::transport_protocol, detail::hello{self_}, hello_frame_, cfg_.limits))
      throw error(e, "dcp::net: the hello frame does not fit max_frame_size");
    return self_;
  }

  /// Starts accepting connections.
  void start() {
    if (!stopped_ && acceptor_.is_open()) accept();
    if (!stopped_) arm_sweep();
  }

  /// Closes everything; idempotent. Queued frames are discarded.
  void stop() noexcept {
    if (stopped_) return;
    stopped_ = true;
    std::error_code ignored;
    acceptor_.close(ignored);
    accept_retry_.cancel();
    sweep_timer_.cancel();
    for (auto& c : inbound_) {
      c->open = false;
      c->up = false;
      c->socket.close(ignored);
      c->timer.cancel();
    }
    inbound_.clear();
    routes_.clear();
    for (auto& [a, p] : peers_) {
      p->retired = true;
      p->up = false;
      p->socket.close(ignored);
      p->timer.cancel();
      if (p->resolver) p->resolver->cancel();
    }
    peers_.clear();
    dirty_.clear();
    outbound_open_ = 0;
  }

  /// Queues `m` for `to` as a frame of protocol `protocol`. False (and counted)
  /// if refused at once: stopped, not an IP address, too large, queue full.
  template <wire::Message M> bool send(protocol_id protocol, const address& to, const M& m) {
    return send_frame(protocol, to, frame_source::of(m));
  }
  /// The same, for a message whose type the caller erased (what net::env uses).
  bool send_frame(protocol_id protocol, const address& to, const frame_source& src) {
    if (stopped_) return refuse(protocol, errc::shutting_down);
    if (!to.is_network()) return refuse(protocol, errc::bad_address);
    if (to == self_) return send_local(protocol, src);
    detail::link& l = route(to);
    // The budget first: a queue too full for the smallest frame (a header,
    // sealed) costs no encoding. A frame that is encoded and then does not
    // fit is taken back below.
    if (l.queued() + wire::header_size + Security::overhead > cfg_.limits.max_queued_bytes_per_peer)
      return refuse(protocol, errc::queue_full);
    // ... and the node's, across every connection (the same check: before encoding).
    settle(l);
    if (pool_->bytes + wire::header_size + Security::overhead > cfg_.max_buffered_bytes)
      return refuse_buffered(protocol);
    const std::size_t at = l.pending.size();
    if (auto ec = net::encode_frame(protocol, src, l.pending, cfg_.limits)) return refuse(protocol, ec);
    const std::size_t frame = l.pending.size() - at;
    if (l.queued() + Security::overhead > cfg_.limits.max_queued_bytes_per_peer) {
      l.pending.resize(at);
      return refuse(protocol, errc::queue_full);
    }
    if (pool_->bytes + frame + Security::overhead > cfg_.max_buffered_bytes) {
      l.pending.resize(at);
      return refuse_buffered(protocol);
    }
    settle(l);
    metrics_.sent(protocol, src.type, frame);
    kick(l);
    return true;
  }

  /// Runs f as a turn, as frames received together are delivered: what it
  /// sends is written when it returns (or throws), one non-blocking write
  /// per connection, the rest through async_write. The node runs its timers
  /// so (timer_queue::run_in). Within a turn, f() runs at once.
  template <class F> void turn(F&& f) {
    if (delivering_) return f();
    delivering_ = true;
    turn_guard guard{this};
    f();
  }

  address self() const noexcept { return self_; }
  executor_type get_executor() const noexcept { return ex_; }
  bool stopped() const noexcept { return stopped_; }
  /// Open sockets, inbound plus outbound (what limits.max_connections bounds).
  std::size_t connections() const noexcept { return inbound_.size() + outbound_open_; }
  /// Bytes waiting for `peer` (queued plus the write in flight): a sender's back-pressure signal.
  std::size_t queued_bytes(const address& peer) const noexcept {
    std::size_t n = 0;
    if (auto it = peers_.find(peer); it != peers_.end()) n += it->second->queued();
    if (auto it = routes_.find(peer); it != routes_.end()) n += it->second->queued();
    return n;
  }
  /// Bytes queued for sending on all connections together (what
  /// config::max_buffered_bytes bounds); 0 once every queue has drained and
  /// every closed connection's handlers have run.
  std::size_t buffered_bytes() const noexcept { return pool_->bytes; }
  /// Inbound connections open now (what limits.max_connections bounds).
  std::size_t inbound_connections() const noexcept { return inbound_.size(); }
  /// Outbound connections open now (what config::max_outbound_connections bounds).
  std::size_t outbound_connections() const noexcept { return outbound_open_; }
  /// Bytes the connections' read buffers hold allocated, all together.
  std::size_t read_buffer_bytes() const noexcept { return pool_->read_bytes; }
  /// The security policy (the keyring, for keyring_transport).
  Security& security() noexcept { return sec_; }
  const Security& security() const noexcept { return sec_; }

  /// Keyring transports: makes the key `id` (installed) the one this node
  /// seals with. Every open connection switches at once (a rekey frame, then
  /// the new key), so nothing in flight is lost. Call on every node before
  /// removing the old key (install everywhere, use everywhere, remove).
  std::error_code use_key(std::uint64_t id) requires Security::sealed {
    if (auto ec = sec_.ring().use(id)) return ec;
    for (auto& c : inbound_)
      if (c->up) kick(*c);
    for (auto& [a, p] : peers_)
      if (p->up) kick(*p);  // an idle peer is not connected to just to rekey
    return {};
  }
  /// Keyring transports: removes the key `id` (never the primary) and closes
  /// every connection still using it either way, counted as
  /// "keyring_sessions_closed": a removed key opens nothing any more.
  std::error_code remove_key(std::uint64_t id) requires Security::sealed {
    if (auto ec = sec_.ring().remove(id)) return ec;
    std::vector<link_ptr> stale;
    for (auto& c : inbound_)
      if (c->seal.ready && (c->seal.send_key_id == id || c->seal.recv_key_id == id)) stale.push_back(c);
    for (auto& [a, p] : peers_)
      if (p->seal.ready && (p->seal.send_key_id == id || p->seal.recv_key_id == id)) stale.push_back(p);
    for (auto& l : stale) {
      metrics_.add(detail::transport_protocol, "keyring_sessions_closed", 1);
      link_failed(*l, {}, "its key was removed");
    }
    return {};
  }

 private:
  using link_ptr = std::shared_ptr<detail::link>;
  using outbound_ptr = std::shared_ptr<detail::outbound>;
  using inbound_ptr = std::shared_ptr<detail::inbound>;
  using outbound_state = detail::outbound::state;
  static constexpr std::size_t read_chunk = 64 * 1024;        // what a connection reads at a time, at first
  static constexpr std::size_t max_read_chunk = 1024 * 1024;  // ... and at most, on a bulk stream
  static constexpr std::size_t keep_capacity = 4u << 20;      // larger idle write buffers are freed

  static outbound_ptr shared(detail::outbound& p) {
    return std::static_pointer_cast<detail::outbound>(p.shared_from_this());
  }
  static inbound_ptr shared(detail::inbound& c) {
    return std::static_pointer_cast<detail::inbound>(c.shared_from_this());
  }

  bool refuse(protocol_id protocol, std::error_code ec) {
    metrics_.dropped(protocol, ec);
    return false;
  }
  bool refuse_buffered(protocol_id protocol) {
    metrics_.add(detail::transport_protocol, "buffered_bytes_refused", 1);
    return refuse(protocol, errc::queue_full);
  }
  /// Charges (or credits) the node's pool with what changed in l's queue
  /// since the last call. Called wherever a queue grows or shrinks; a link
  /// that dies gives back what it was charged (detail::link's destructor).
  void settle(detail::link& l) noexcept {
    if (!l.pool) l.pool = pool_;
    l.settle();
  }

  template <class... Args> void log(log_level level, const Args&... args) {
    detail::transport_log(cfg_, self_, level, args...);
  }

  // ---- local delivery ----

  bool send_local(protocol_id protocol, const frame_source& src) {
    return detail::send_local(ex_, metrics_, cfg_.limits.max_frame_size, protocol, src,
                              [self = shared_from_this()](const wire::frame_header& h, const bytes& payload) {
                                if (!self->stopped_) self->on_frame_(self->self_, h, payload);
                              });
  }

  // ---- choosing the connection for a peer ----

  /// Our own connection to `to` while it is in use (up, being set up, or
  /// holding frames: switching then would reorder them); else the peer's
  /// connection to us if it has one; else our own, connecting on demand.
  detail::link& route(const address& to) {
    auto it = peers_.find(to);
    if (it != peers_.end() && (it->second->st != outbound_state::idle || it->second->queued() > 0)) {
      it->second->last_used = ++use_clock_;
      return *it->second;
    }
    if (auto r = routes_.find(to); r != routes_.end() && r->second->up) return *r->second;
    if (it == peers_.end()) it = peers_.emplace(to, std::make_shared<detail::outbound>(ex_, to, frame_limits())).first;
    it->second->last_used = ++use_clock_;
    return *it->second;
  }

  void kick(detail::link& l) {
    if (!l.inbound) {
      auto& p = static_cast<detail::outbound&>(l);
      if (p.st == outbound_state::idle) return connect(p);
      if (p.st != outbound_state::connected) return;  // the frames wait for the connection
    }
    if (!l.up || l.write_in_flight || nothing_to_write(l)) return;
    if (delivering_ && l.hello_sent) {  // written once the received batch is delivered
      if (!l.flush_due) {
        l.flush_due = true;
        dirty_.push_back(l.shared_from_this());
      }
      return;
    }
    write(l);
  }

  // ---- turns ----

  /// Ends a turn on every way out of it: writes what the turn queued.
  struct turn_guard {
    basic_tcp_transport* t;
    void run() noexcept {
      if (!t->delivering_) return;
      t->delivering_ = false;
      t->flush_dirty();
    }
    ~turn_guard() { run(); }
  };

  // ---- writing ----

  // Frames queued while a batch of received frames is delivered (answers,
  // mostly) go out when the batch is done, written straight from this handler
  // with one non-blocking send: a request/answer exchange then costs one
  // syscall per message and no write-completion handler. What the socket does
  // not take at once goes through the usual async_write.
  void flush_dirty() noexcept {
    for (auto& lp : dirty_) {
      auto& l = *lp;
      l.flush_due = false;
      if (stopped_ || !l.up || l.write_in_flight || nothing_to_write(l)) continue;
      if constexpr (Security::layered) {  // a stream's records cannot be written part-way without blocking
        write(l);
        continue;
      }
      if constexpr (Security::sealed) seal_pending(l);
      std::error_code ec;
      const std::size_t n = l.socket.write_some(asio::buffer(l.pending), ec);
      if (ec && ec != asio::error::would_block && ec != asio::error::try_again) {
        link_failed(l, {}, ec.message());
        continue;
      }
      if (n > 0) l.last_active = detail::steady_now();
      if (!ec && n == l.pending.size()) {
        l.pending.clear();
        l.seal.sealed_prefix = 0;
        settle(l);
        continue;
      }
      write(l, ec ? 0 : n);  // the rest, without moving it
    }
    dirty_.clear();
  }

  /// Writes everything queued, but for its first `done` bytes (already sent).
  void write(detail::link& l, std::size_t done = 0) {
    l.write_in_flight = true;
    if constexpr (Security::sealed) seal_pending(l);  // the hello first, if due
    std::swap(l.pending, l.writing);                  // `writing` was drained: the batch is everything queued
    l.seal.sealed_prefix = 0;
    std::array<asio::const_buffer, 2> buffers{asio::const_buffer(), asio::buffer(l.writing) + done};
    if (!l.hello_sent) {
      buffers[0] = asio::buffer(hello_frame_);
      l.hello_sent = true;
    }
    auto written = [self = shared_from_this(), lp = l.shared_from_this(), gen = l.generation](
                       const std::error_code& ec, std::size_t) { self->on_written(lp, gen, ec); };
    settle(l);  // sealing grew the queue
    if constexpr (Security::layered)
      asio::async_write(sec_.stream(l), buffers, keep_layer(l, std::move(written)));
    else
      asio::async_write(l.socket, buffers, std::move(written));
  }

  void on_written(const link_ptr& lp, std::uint64_t gen, const std::error_code& ec) {
    auto& l = *lp;
    l.write_in_flight = false;
    if (stopped_) return;
    const bool stale = l.generation != gen;
    if (ec || stale)
      count_lost(l.writing, errc::connection_closed);
    else
      l.last_active = detail::steady_now();
    // Keep the buffer's capacity while it is used (no allocation per batch),
    // but give a large one back once the bursts that needed it are over.
    const bool oversized = l.writing.capacity() > keep_capacity && l.writing.size() < l.writing.capacity() / 8;
    l.writing.clear();
    if (oversized) l.writing.shrink_to_fit();
    settle(l);
    if (!l.up) return;  // closed, or not reconnected yet
    if (!stale && ec) return link_failed(l, {}, ec.message());
    kick(l);  // more frames, or a new connection that waited for this buffer
  }

  void count_lost(byte_view frames, errc why) {
    detail::for_each_frame(frames, [&](const wire::frame_header& h) {
      if (h.protocol != detail::transport_protocol) metrics_.dropped(h.protocol, why);
    });
  }

  // ---- reading (both directions) ----

  void read(detail::link& l) {
    const auto had = l.reader.capacity();
    const auto buffer = asio::buffer(l.reader.prepare(l.read_size), l.read_size);
    if (l.reader.capacity() != had) {
      settle(l);
      if (l.reader.capacity() > had && pool_->read_bytes > cfg_.max_read_buffer_bytes) {
        metrics_.add(detail::transport_protocol, "read_buffer_bytes_refused", 1);
        return link_failed(l, errc::frame_too_large,
                           "its frame would take the node's read buffers past config::max_read_buffer_bytes");
      }
    }
    auto received = [self = shared_from_this(), lp = l.shared_from_this(), gen = l.generation](
                        const std::error_code& ec, std::size_t n) { self->on_read(lp, gen, ec, n); };
    if constexpr (Security::layered)
      sec_.stream(l).async_read_some(buffer, keep_layer(l, std::move(received)));
    else
      l.socket.async_read_some(buffer, std::move(received));
  }

  void on_read(const link_ptr& lp, std::uint64_t gen, const std::error_code& ec, std::size_t n) {
    auto& l = *lp;
    if (stopped_ || l.generation != gen) return;
    if (ec) {
      if constexpr (Security::layered)
        if (sec_.is_refusal(ec)) {  // the peer's stack refused us (an alert), or its records did not authenticate
          metrics_.add(detail::transport_protocol, Security::auth_failure_counter, 1);
          return link_failed(l, errc::authentication_failed, ec.message());
        }
      if (l.reader.buffered() > 0)
        link_failed(l, errc::truncated_frame, "the connection ended inside a frame");
      else
        link_failed(l, {}, ec == asio::error::eof ? std::string("closed by the peer") : ec.message());
      return;
    }
    l.reader.commit(n);
    l.last_active = detail::steady_now();
    // A read that fills the buffer means a bulk stream: read more at a time
    // (fewer syscalls, and the reader moves a partial frame less often); a
    // connection back to small messages returns to the small buffer.
    if (n == l.read_size && l.read_size < max_read_chunk)
      l.read_size *= 2;
    else if (n < l.read_size / 8 && l.read_size > read_chunk)
      l.read_size /= 2;
    wire::frame_view f;
    std::error_code bad;
    delivering_ = true;
    turn_guard flush{this};  // on every way out, early returns included
    auto* in = l.inbound ? static_cast<detail::inbound*>(&l) : nullptr;
    bool whole_frame = false;
    while (l.reader.next(f, bad)) {
      whole_frame = true;
      if constexpr (Security::sealed) {
        // Opened in place (the reader's buffer is ours until the next
        // prepare()): a frame that fails, whatever the reason (wrong key,
        // forged, replayed, reordered, cut), closes the connection before
        // anything of it is looked at.
        std::span<std::uint8_t> sealed(const_cast<std::uint8_t*>(f.payload.data()), f.payload.size());
        if (!sec_.open(l.seal, f.header, sealed)) {
          metrics_.add(detail::transport_protocol, "keyring_auth_failures", 1);
          return link_failed(
              l, errc::authentication_failed,
              in && !in->greeted ? "a hello that does not authenticate" : "a frame that does not authenticate");
        }
        f.payload = f.payload.first(f.header.length);
      }
      if (f.header.protocol == detail::transport_protocol) {
        if constexpr (Security::sealed) {
          if (f.header.type == detail::rekey::wire_id && (!in || in->greeted)) {
            detail::rekey r;
            if (wire::decode(f.payload, r) || !sec_.switch_recv_key(l.seal, r.key_id))
              return link_failed(l, errc::authentication_failed, "a rekey to a key this node does not hold");
            metrics_.add(detail::transport_protocol, "keyring_rekeys", 1);
            continue;
          }
        }
        if constexpr (Security::authenticated) {
          if (!in && f.header.type == detail::hello::wire_id && !l.seal.welcomed) {
            // The acceptor's welcome: it holds the key (or accepted our
            // certificate) too. Only now is the connection attempt a success
            // (a refused caller fails every attempt, so it backs off and
            // gives up as for an unreachable peer).
            l.seal.welcomed = true;
            static_cast<detail::outbound&>(l).failures = 0;
            continue;
          }
        }
        detail::hello h;
        if (!in || in->greeted || f.header.type != detail::hello::wire_id || wire::decode(f.payload, h) ||
            !h.listen.is_network())
          return link_failed(l, errc::bad_handshake,
                             !in               ? "a transport frame from the accepting side"
                                 : in->greeted ? "a second hello"
                                               : "a hello that does not decode");
        if constexpr (Security::layered)
          if (!sec_.binds(l, h.listen)) {  // a member's certificate, claiming another member's address
            metrics_.add(detail::transport_protocol, Security::address_mismatch_counter, 1);
            return link_failed(l, errc::authentication_failed,
                               "a hello naming an address its certificate does not bind");
          }
        greeted(*in, h.listen);
        continue;
      }
      if (in && !in->greeted) return link_failed(l, errc::bad_handshake, "a frame before the hello");
      on_frame_(in ? in->peer : static_cast<detail::outbound&>(l).addr, f.header, f.payload);
      if (stopped_ || l.generation != gen) return;  // the handler stopped the node or closed this connection
    }
    // Answers first, then re-arm the read: the answer's latency must not
    // include the read's speculative (and usually empty) receive.
    flush.run();
    if (bad) return link_failed(l, bad, "the stream cannot be trusted");
    // read_timeout runs while a frame is partly here; it restarts at every
    // whole frame, so only a stalled or trickling frame reaches it.
    if (l.reader.buffered() == 0)
      l.frame_started = {};
    else if (whole_frame || l.frame_started == time_point{})
      l.frame_started = l.last_active;
    // A buffer grown for a large frame is given back once that frame is
    // delivered: a peer's memory is what its current frame needs.
    if (l.reader.capacity() > 2 * l.read_size) l.reader.shrink(l.read_size), settle(l);
    read(l);
  }

  /// The connection failed or carried bytes that cannot be trusted (`why`
  /// set: counted as a drop of protocol 0).
  void link_failed(detail::link& l, std::error_code why, std::string_view detail_text) {
    if (why) metrics_.dropped(detail::transport_protocol, why);
    if (l.inbound) return close_inbound(static_cast<detail::inbound&>(l), why, detail_text);
    auto& p = static_cast<detail::outbound&>(l);
    if (why) log(log_level::warn, "closed the connection to ", p.addr, ": ", why.message(), " (", detail_text, ")");
    if constexpr (Security::authenticated)
      if (!p.seal.welcomed) {  // the peer never proved itself: a failed attempt
        log(log_level::debug, "connection to ", p.addr, " ended before the peer's welcome: ", detail_text);
        return connect_failed(p);
      }
    connection_lost(p, detail_text);
  }

  // ---- outbound ----

  void connect(detail::outbound& p) {
    auto pp = shared(p);
    if (outbound_open_ >= cfg_.max_outbound_connections && !close_idle_outbound()) {
      // Report the failure from a handler, never from inside send(): the
      // unreachable callback may re-enter the protocol that is sending.
      p.st = outbound_state::connecting;
      asio::post(ex_, [self = shared_from_this(), pp, gen = p.generation] {
        if (self->stopped_ || pp->retired || pp->generation != gen) return;
        self->log(log_level::warn, "no connection slot for ", pp->addr,
                  " (max_outbound_connections = ", self->cfg_.max_outbound_connections, ")");
        self->connect_failed(*pp);
      });
      return;
    }
    p.st = outbound_state::connecting;
    p.holds_slot = true;
    ++outbound_open_;
    const auto gen = p.generation;
    if (p.addr.is_name()) {
      resolve_and_connect(p);
    } else {
      p.socket.async_connect(
          detail::to_endpoint(p.addr),
          [self = shared_from_this(), pp, gen](const std::error_code& ec) { self->on_connect(pp, gen, ec); });
    }
    p.timer.expires_after(std::chrono::duration_cast<std::chrono::steady_clock::duration>(cfg_.connect_timeout));
    p.timer.async_wait([self = shared_from_this(), pp, gen](const std::error_code& ec) {
      if (ec || self->stopped_ || pp->generation != gen || pp->st != outbound_state::connecting) return;
      std::error_code ignored;
      if (pp->resolver) pp->resolver->cancel();
      pp->socket.close(ignored);  // on_connect then sees operation_aborted: a failed attempt
    });
  }

  /// A host name is resolved on every attempt, never cached: a reconnect
  /// follows the name to wherever it points now (a rescheduled Kubernetes
  /// pod, a moved service). Every address it resolves to is tried in turn.
  void resolve_and_connect(detail::outbound& p) {
    auto r = std::make_shared<asio::ip::tcp::resolver>(ex_);
    p.resolver = r;
    r->async_resolve(
        p.addr.host_name(), std::to_string(p.addr.port()), asio::ip::resolver_base::numeric_service,
        [self = shared_from_this(), pp = shared(p), gen = p.generation](const std::error_code& ec,
                                                                        asio::ip::tcp::resolver::results_type results) {
          if (self->stopped_ || pp->retired || pp->generation != gen || pp->st != outbound_state::connecting) return;
          pp->resolver.reset();
          if (ec) {
            self->log(log_level::debug, "cannot resolve ", pp->addr, ": ", ec.message());
            return self->on_connect(pp, gen, ec);
          }
          asio::async_connect(pp->socket, results,
                              [self, pp, gen](const std::error_code& e, const asio::ip::tcp::endpoint&) {
                                self->on_connect(pp, gen, e);
                              });
        });
  }

  void on_connect(const outbound_ptr& pp, std::uint64_t gen, const std::error_code& ec) {
    auto& p = *pp;
    if (stopped_ || p.retired || p.generation != gen || p.st != outbound_state::connecting) return;
    p.timer.cancel();
    if (ec) {
      log(log_level::debug, "connect to ", p.addr,
          " failed: ", ec == asio::error::operation_aborted ? std::string("timed out") : ec.message());
      connect_failed(p);
      return;
    }
    std::error_code ignored;
    p.socket.set_option(asio::ip::tcp::no_delay(true), ignored);
    p.socket.set_option(asio::socket_base::keep_alive(true), ignored);
    p.socket.non_blocking(true, ignored);  // for flush_dirty's direct writes
    p.st = outbound_state::connected;
    if constexpr (!Security::authenticated) p.failures = 0;  // authenticated: once the peer's welcome arrives
    p.hello_sent = false;
    p.reader = wire::frame_reader(frame_limits());
    settle(p);  // the last connection's read buffer is gone
    p.read_size = read_chunk;
    p.last_active = detail::steady_now();
    p.frame_started = {};
    log(log_level::debug, "connected to ", p.addr);
    if constexpr (Security::sealed) return open_session(p);  // up once the openings are exchanged
    if constexpr (Security::layered) return start_layer(p);  // up once the handshake is done
    p.up = true;
    read(p);
    kick(p);  // sends the hello (and what is queued) unless a stale write is still draining
  }

  /// Closes p's socket (if open) and invalidates every handler of that socket.
  void close_socket(detail::outbound& p) {
    std::error_code ignored;
    if (p.resolver) {
      p.resolver->cancel();
      p.resolver.reset();
    }
    p.socket.close(ignored);
    p.timer.cancel();
    ++p.generation;
    p.up = false;
    if (p.seal.sealed_prefix > 0) {  // sealed for the session that just ended: it can never be sent
      const byte_view sealed(p.pending.data(), p.seal.sealed_prefix);
      count_lost(sealed, errc::connection_closed);
      p.pending.erase(p.pending.begin(), p.pending.begin() + static_cast<std::ptrdiff_t>(p.seal.sealed_prefix));
      settle(p);
    }
    p.seal = {};
    p.layer.reset();  // its pending handlers keep their own reference until they have run
    if (p.holds_slot) {
      p.holds_slot = false;
      --outbound_open_;
    }
    p.st = outbound_state::idle;
  }

  void connection_lost(detail::outbound& p, std::string_view why) {
    log(log_level::debug, "connection to ", p.addr, " lost: ", why);
    close_socket(p);
    if (!p.pending.empty()) retry_after(p, backoff_delay(1));
  }

  void connect_failed(detail::outbound& p) {
    close_socket(p);
    const time_point now = detail::steady_now();
    if (p.failures++ == 0) p.first_failure = now;
    const auto& policy = cfg_.reconnect;
    const bool too_many = policy.give_up_after_attempts != 0 && p.failures >= policy.give_up_after_attempts;
    const bool too_long = policy.give_up_after > duration::zero() && now - p.first_failure >= policy.give_up_after;
    if (too_many || too_long) {
      give_up(p);
      return;
    }
    retry_after(p, backoff_delay(p.failures));
  }

  /// Exponential back-off with "equal jitter": uniform in [b/2, b].
  duration backoff_delay(std::uint32_t failures) {
    const auto& policy = cfg_.reconnect;
    duration b = policy.initial;
    for (std::uint32_t i = 1; i < failures && b < policy.max; ++i) b *= 2;
    b = std::min(b, policy.max);
    return b / 2 + duration(rng_.between(0, (b - b / 2).count()));
  }

  void retry_after(detail::outbound& p, duration delay) {
    p.st = outbound_state::backoff;
    p.timer.expires_after(std::chrono::duration_cast<std::chrono::steady_clock::duration>(delay));
    p.timer.async_wait([self = shared_from_this(), pp = shared(p), gen = p.generation](const std::error_code& ec) {
      if (ec || self->stopped_ || pp->retired || pp->generation != gen || pp->st != outbound_state::backoff) return;
      self->connect(*pp);
    });
  }

  void give_up(detail::outbound& p) {
    const address addr = p.addr;
    log(log_level::info, "giving up on ", addr, " after ", p.failures, " failed connection attempts");
    count_lost(p.pending, errc::peer_unreachable);
    p.pending.clear();
    settle(p);
    metrics_.add(detail::transport_protocol, "peers_unreachable", 1);
    auto pp = shared(p);  // keep it alive past the erase
    close_socket(p);
    p.retired = true;
    peers_.erase(addr);  // before the callback: it may send to addr again, starting afresh
    on_unreachable_(addr);
  }

  /// Closes the least recently used outbound connection with nothing to send.
  bool close_idle_outbound() {
    detail::outbound* lru = nullptr;
    for (auto& [a, p] : peers_)
      if (p->st == outbound_state::connected && !p->write_in_flight && p->pending.empty() &&
          (!lru || p->last_used < lru->last_used))
        lru = p.get();
    if (!lru) return false;
    log(log_level::debug, "closing idle connection to ", lru->addr, " to free a slot");
    close_socket(*lru);
    return true;
  }

  // ---- inbound ----

  void accept() {
    acceptor_.async_accept([self = shared_from_this()](const std::error_code& ec, asio::ip::tcp::socket s) {
      self->on_accept(ec, std::move(s));
    });
  }

  void on_accept(const std::error_code& ec, asio::ip::tcp::socket s) {
    if (stopped_) return;
    if (ec) {
      if (ec == asio::error::operation_aborted) return;
      // Out of descriptors, say: wait a little instead of spinning on the error.
      log(log_level::warn, "accept failed: ", ec.message());
      metrics_.add(detail::transport_protocol, "accept_errors", 1);
      accept_retry_.expires_after(std::chrono::milliseconds(100));
      accept_retry_.async_wait([self = shared_from_this()](const std::error_code& e) {
        if (!e && !self->stopped_) self->accept();
      });
      return;
    }
    std::error_code ignored;
    const auto remote = s.remote_endpoint(ignored).address();
    if (inbound_.size() >= cfg_.limits.max_connections) {
      s.close(ignored);
      metrics_.add(detail::transport_protocol, "connections_refused", 1);
      log(log_level::warn, "refused a connection: limits.max_connections = ", cfg_.limits.max_connections);
      accept();
      return;
    }
    if (cfg_.max_inbound_per_ip != 0 && per_ip_[remote] >= cfg_.max_inbound_per_ip) {
      s.close(ignored);
      metrics_.add(detail::transport_protocol, "connections_refused_per_ip", 1);
      log(log_level::warn, "refused a connection from ", remote.to_string(),
          ": max_inbound_per_ip = ", cfg_.max_inbound_per_ip);
      accept();
      return;
    }
    s.set_option(asio::ip::tcp::no_delay(true), ignored);
    s.set_option(asio::socket_base::keep_alive(true), ignored);
    s.non_blocking(true, ignored);  // for flush_dirty's direct writes
    auto c = std::make_shared<detail::inbound>(std::move(s), hello_limits());
    c->remote = remote;
    ++per_ip_[remote];
    c->last_active = detail::steady_now();
    inbound_.insert(c);
    c->timer.expires_after(std::chrono::duration_cast<std::chrono::steady_clock::duration>(cfg_.handshake_timeout));
    c->timer.async_wait([self = shared_from_this(), c](const std::error_code& e) {
      if (!e && !self->stopped_ && c->open && !c->greeted) {
        self->metrics_.dropped(detail::transport_protocol, errc::timed_out);
        self->close_inbound(*c, errc::timed_out, "no hello in time");
      }
    });
    if constexpr (Security::sealed)
      open_session(*c);
    else if constexpr (Security::layered)
      start_layer(*c);
    else
      read(*c);
    accept();
  }

  void greeted(detail::inbound& c, const address& peer) {
    c.reader.set_limits(frame_limits());  // a known caller may send frames of any allowed size
    c.peer = peer;
    c.greeted = true;
    c.up = true;
    c.timer.cancel();
    routes_[peer] = shared(c);  // the newest connection from a peer is the way back to it
    if constexpr (Security::authenticated) {
      c.hello_sent = false;  // our own hello goes back first: the caller's proof that we accepted it
      kick(c);
    }
  }

  void close_inbound(detail::inbound& c, std::error_code why, std::string_view detail_text) {
    if (!c.open) return;
    auto cp = shared(c);
    c.open = false;
    c.up = false;
    ++c.generation;
    if (why)
      log(log_level::warn, "closed a connection from ",
          c.greeted ? c.peer.to_string() : std::string("an unidentified peer"), ": ", why.message(), " (", detail_text,
          ")");
    count_lost(c.pending, errc::connection_closed);
    c.pending.clear();
    settle(c);
    std::error_code ignored;
    c.socket.close(ignored);
    c.timer.cancel();
    inbound_.erase(cp);
    if (auto it = per_ip_.find(c.remote); it != per_ip_.end() && --it->second == 0) per_ip_.erase(it);
    if (c.greeted)
      if (auto it = routes_.find(c.peer); it != routes_.end() && it->second == cp) routes_.erase(it);
  }

  // ---- limits and time-outs ----

  /// What a frame may be on the wire: the payload limit, plus what sealing adds.
  wire::limits frame_limits() const noexcept {
    auto lim = cfg_.limits;
    lim.max_frame_size += static_cast<std::uint32_t>(Security::overhead);
    return lim;
  }
  wire::limits hello_limits() const noexcept {
    auto lim = cfg_.limits;
    lim.max_frame_size = cfg_.max_hello_frame_size + static_cast<std::uint32_t>(Security::overhead);
    return lim;
  }

  bool nothing_to_write(const detail::link& l) const noexcept {
    if (!l.hello_sent) return false;
    if constexpr (Security::sealed)
      if (l.seal.ready && l.seal.send_key_id != sec_.ring().primary_id()) return false;  // a rekey is due
    return l.pending.empty();
  }

  /// One timer for every connection's read and idle time-outs: checked a few
  /// times per time-out, so a connection closes at most a quarter late.
  void arm_sweep() {
    auto period = std::min(cfg_.read_timeout, cfg_.idle_timeout) / 4;
    period = std::clamp<duration>(period, std::chrono::milliseconds(5), std::chrono::seconds(1));
    sweep_timer_.expires_after(std::chrono::duration_cast<std::chrono::steady_clock::duration>(period));
    sweep_timer_.async_wait([self = shared_from_this()](const std::error_code& ec) {
      if (ec || self->stopped_) return;
      self->sweep();
      self->arm_sweep();
    });
  }

  void sweep() {
    const time_point now = detail::steady_now();
    std::vector<std::pair<link_ptr, bool>> expired;  // (link, whether a frame stalled)
    auto check = [&](const link_ptr& l) {
      if (l->frame_started != time_point{} && now - l->frame_started > cfg_.read_timeout)
        expired.emplace_back(l, true);
      else if (l->last_active != time_point{} && now - l->last_active > cfg_.idle_timeout && !l->write_in_flight)
        expired.emplace_back(l, false);
    };
    for (auto& c : inbound_) check(c);
    for (auto& [a, p] : peers_)
      if (p->st == outbound_state::connected) check(p);
    for (auto& [l, stalled] : expired) {
      if (stalled) {
        link_failed(*l, errc::timed_out, "a frame did not arrive whole within read_timeout");
      } else {
        metrics_.add(detail::transport_protocol, "idle_closed", 1);
        link_failed(*l, {}, "idle for idle_timeout");
      }
    }
  }

  // ---- sealing (keyring transports) ----

  /// Exchanges the openings (a fresh nonce each way, and the caller's key
  /// id), then derives the connection's keys; the caller's sealed hello
  /// follows. Counts as a frame in progress for read_timeout.
  void open_session(detail::link& l) requires Security::sealed {
    l.seal = {};
    sec_.make_opening(l.seal, !l.inbound);
    l.frame_started = detail::steady_now();
    l.write_in_flight = true;
    asio::async_write(l.socket, asio::buffer(l.seal.mine),
                      [self = shared_from_this(), lp = l.shared_from_this(), gen = l.generation](
                          const std::error_code& ec, std::size_t) {
                        auto& link = *lp;
                        link.write_in_flight = false;
                        if (self->stopped_ || link.generation != gen) return;
                        if (ec) return self->link_failed(link, {}, ec.message());
                        self->kick(link);
                      });
    asio::async_read(l.socket, asio::buffer(l.seal.theirs),
                     [self = shared_from_this(), lp = l.shared_from_this(), gen = l.generation](
                         const std::error_code& ec, std::size_t) { self->on_opening(lp, gen, ec); });
  }

  void on_opening(const link_ptr& lp, std::uint64_t gen, const std::error_code& ec) requires Security::sealed {
    auto& l = *lp;
    if (stopped_ || l.generation != gen) return;
    if (ec) return link_failed(l, {}, ec == asio::error::eof ? std::string("closed by the peer") : ec.message());
    if (const char* bad = sec_.accept_opening(l.seal, !l.inbound)) {
      metrics_.add(detail::transport_protocol, "keyring_auth_failures", 1);
      return link_failed(l, errc::authentication_failed, bad);
    }
    l.frame_started = {};
    l.last_active = detail::steady_now();
    read(l);
    if (!l.inbound) {
      l.up = true;
      kick(l);  // the sealed hello, and what is queued
    }
  }

  /// Seals what `pending` holds beyond its sealed prefix, in order: the hello
  /// (first frame of a caller), a rekey when the primary key changed, then
  /// the queued frames. Each frame is sealed under the next number.
  void seal_pending(detail::link& l) requires Security::sealed {
    auto& st = l.seal;
    const bool rekey = st.send_key_id != sec_.ring().primary_id();
    if (st.sealed_prefix == l.pending.size() && l.hello_sent && !rekey) return;
    scratch_.assign(l.pending.begin(), l.pending.begin() + static_cast<std::ptrdiff_t>(st.sealed_prefix));
    if (!l.hello_sent) {
      sec_.seal(st, scratch_, hello_frame_);
      l.hello_sent = true;
    }
    if (rekey) {
      control_.clear();
      const detail::rekey r{sec_.ring().primary_id()};
      (void)wire::encode_frame(detail::transport_protocol, r, control_, cfg_.limits);
      sec_.seal(st, scratch_, control_);  // under the old key: the peer learns the switch from a frame it trusts
      sec_.switch_send_key(st, r.key_id);
    }
    const byte_view rest(l.pending.data() + st.sealed_prefix, l.pending.size() - st.sealed_prefix);
    std::size_t at = 0;
    detail::for_each_frame(rest, [&](const wire::frame_header& h) {
      sec_.seal(st, scratch_, rest.subspan(at, wire::header_size + h.length));
      at += wire::header_size + h.length;
    });
    std::swap(l.pending, scratch_);
    st.sealed_prefix = l.pending.size();
  }

  // ---- layered streams (TLS transports) ----

  /// Wraps the connection's socket in a fresh stream and runs its handshake
  /// (a frame in progress for read_timeout). The caller then checks that the
  /// acceptor's certificate binds the address it dialled; the acceptor
  /// checks the caller's certificate against the address its hello claims.
  void start_layer(detail::link& l) requires Security::layered {
    l.layer = sec_.make_layer(l.socket);
    l.frame_started = detail::steady_now();
    sec_.async_handshake(l,
                         keep_layer(l,
                                    [self = shared_from_this(), lp = l.shared_from_this(), gen = l.generation](
                                        const std::error_code& ec) { self->on_layer_up(lp, gen, ec); }));
  }

  void on_layer_up(const link_ptr& lp, std::uint64_t gen, const std::error_code& ec) requires Security::layered {
    auto& l = *lp;
    if (stopped_ || l.generation != gen) return;
    if (ec) {
      if (sec_.is_refusal(ec)) {  // a certificate from another CA, none at all, or not TLS
        metrics_.add(detail::transport_protocol, Security::auth_failure_counter, 1);
        return link_failed(l, errc::authentication_failed, ec.message());
      }
      return link_failed(l, {}, ec == asio::error::eof ? std::string("closed by the peer") : ec.message());
    }
    if (!l.inbound && !sec_.binds(l, static_cast<detail::outbound&>(l).addr)) {
      // A member's certificate, but not for the address we dialled: a
      // redirected connection, or a member answering in another's place.
      metrics_.add(detail::transport_protocol, Security::address_mismatch_counter, 1);
      return link_failed(l, errc::authentication_failed,
                         "the acceptor's certificate does not bind the address dialled");
    }
    l.frame_started = {};
    l.last_active = detail::steady_now();
    read(l);
    if (!l.inbound) {
      l.up = true;
      kick(l);  // the hello, and what is queued
    }
  }

  /// A completion handler that also owns the link's stream: a stream must
  /// outlive its operations, even once its socket closed and was replaced.
  template <class Handler> static auto keep_layer(const detail::link& l, Handler h) {
    return [layer = l.layer, h = std::move(h)](auto&&... args) mutable { h(std::forward<decltype(args)>(args)...); };
  }

  Security sec_;
  bytes scratch_;  // seal_pending's output, swapped with the link's queue
  bytes control_;  // a rekey frame being sealed
  executor_type ex_;
  config cfg_;
  dcp::metrics& metrics_;
  dcp::rng& rng_;
  frame_handler on_frame_;
  unreachable_handler on_unreachable_;
  asio::ip::tcp::acceptor acceptor_;
  asio::steady_timer accept_retry_;
  asio::steady_timer sweep_timer_;                                                   // read and idle time-outs
  std::shared_ptr<detail::byte_pool> pool_ = std::make_shared<detail::byte_pool>();  // config::max_buffered_bytes
  std::map<asio::ip::address, std::size_t> per_ip_;                                  // inbound connections by remote IP
  address self_;
  bytes hello_frame_;
  std::unordered_map<address, outbound_ptr> peers_;  // the connections we open, by peer
  std::unordered_set<inbound_ptr> inbound_;          // the connections peers opened
  std::unordered_map<address, inbound_ptr> routes_;  // greeted inbound connections, by peer
  std::size_t outbound_open_ = 0;
  std::uint64_t use_clock_ = 0;
  std::vector<link_ptr> dirty_;  // connections with frames queued during delivering_
  bool delivering_ = false;      // inside a turn: on_read's delivery loop, or turn()
  bool stopped_ = false;
};

/// dcp frames over plaintext TCP: neither authenticated nor encrypted.
using tcp_transport = basic_tcp_transport<plaintext>;
static_assert(Transport<tcp_transport>);

}  // namespace dcp::net
