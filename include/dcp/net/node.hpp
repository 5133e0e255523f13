#pragma once
// dcp::net::basic_node<Transport>: one dcp node in a real process.
//
// A node is an executor, a dcp::host (the protocols, by id), a timer queue
// and a transport (dcp/net/transport.hpp says what one provides). Protocols
// are the same classes that run in dcp::sim, whatever the transport: their
// Env is dcp::net::env for every one of them.
//
// Which transport. The type says it, so nobody gets plaintext by accident:
//
//   dcp::net::keyring_node   every frame sealed (AES-256-GCM) under a shared
//                            keyring, callers authenticated by the key
//                            (dcp/net/keyring.hpp; needs OpenSSL, dcp::lease)
//   dcp::net::tls_node       TLS 1.3 with mutual authentication: each node's
//                            certificate, from the group's CA, binds its
//                            address (dcp/net/tls.hpp; needs OpenSSL, dcp::tls)
//   dcp::net::plaintext_node frames in clear, and whoever connects may claim
//                            any address: only on a network nothing else reaches
//   dcp::net::node           the same as plaintext_node
//
// `node` stays the plaintext one so that existing programs build unchanged
// (and dcp::dcp needs no OpenSSL); new code names what it wants, and an
// authenticated node cannot be built without its key material: keyring_node's
// constructor takes the keyring, tls_node's its certificates, there is no
// default and no fallback.
//
//     asio::io_context io;
//     dcp::net::node n(io, {.listen = *dcp::address::parse("127.0.0.1:7001")});
//     auto& hb = n.add<dcp::failure::heartbeat<dcp::net::env>>(1, dcp::failure::heartbeat_config{});
//     hb.monitor(*dcp::address::parse("127.0.0.1:7002"));
//     n.start();
//     io.run();
//
// The constructor binds the listening socket (so self() is known at once, and
// a port in use is an error there); start() starts accepting and calls
// start() on every protocol.
//
// Thread safety. A node and its protocols run only on the node's executor:
// every handler the node starts runs there. post(), async_stop() and
// get_executor() may be called from any thread; all other members (and the
// protocols' own functions) must be called on the executor, or while no
// thread runs it (before io_context::run, or after it returned). Use post()
// or dcp::net::async_call (dcp/net/async.hpp) to reach a running node. The
// library never creates a strand: if the io_context runs on several
// threads, construct the node with a strand executor.
//
// Lifetime. stop() closes the listening socket and every connection, cancels
// every timer and drops what was queued; the protocols stay (references
// remain valid, they receive nothing more) until the node is destroyed.
// Handlers still queued in the io_context then run as no-ops, so
// io_context::run returns. The destructor stops the node if needed, under
// the same thread rule as stop().
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>
#include <system_error>
#include <utility>

#include <asio/any_io_executor.hpp>
#include <asio/async_result.hpp>
#include <asio/dispatch.hpp>
#include <asio/io_context.hpp>
#include <asio/post.hpp>

#include "dcp/core/error.hpp"
#include "dcp/core/metrics.hpp"
#include "dcp/core/protocol.hpp"
#include "dcp/net/config.hpp"
#include "dcp/net/detail/node_core.hpp"
#include "dcp/net/env.hpp"
#include "dcp/net/tcp_transport.hpp"
#include "dcp/net/transport.hpp"

namespace dcp::net {

/// One protocol of a node, as node::status() reports it.
struct protocol_status {
  protocol_id id = 0;
  std::string name;
  message_counters messages;                           ///< all its message types added together
  std::vector<std::pair<std::string, double>> gauges;  ///< what its gauges(emit) reports, if anything
};

/// A snapshot of a node for an operator: who, since when, how connected, and
/// each protocol's traffic and gauges (role, term, view sizes, ...).
struct node_status {
  address self;
  bool running = false;
  duration uptime{};  ///< since start(); 0 before
  std::size_t connections = 0;
  std::uint64_t drops = 0;  ///< frames dropped, every protocol and reason
  std::vector<protocol_status> protocols;
  std::vector<std::pair<std::string, double>> gauges;  ///< the node's own, from add_gauge
};

template <Transport T> class basic_node {
 public:
  using executor_type = asio::any_io_executor;
  using transport_type = T;
  using options = typename T::options;
  static constexpr bool authenticated = T::authenticated;

  /// Validates `cfg` and binds its listen address. Throws dcp::error
  /// (invalid_config, or the system error when the address cannot be bound).
  /// `opts`: what the transport needs (the keyring); plaintext needs nothing.
  basic_node(executor_type ex, config cfg, options opts)
      : core_(std::make_unique<detail::node_core>(std::in_place_type<T>, std::move(ex), std::move(cfg),
                                                  std::move(opts))) {}
  basic_node(asio::io_context& io, config cfg, options opts)
      : basic_node(io.get_executor(), std::move(cfg), std::move(opts)) {}
  basic_node(executor_type ex, config cfg) requires(!T::authenticated)
      : basic_node(std::move(ex), std::move(cfg), options{}) {}
  basic_node(asio::io_context& io, config cfg) requires(!T::authenticated)
      : basic_node(io.get_executor(), std::move(cfg), options{}) {}
  basic_node(const basic_node&) = delete;
  basic_node& operator=(const basic_node&) = delete;
  ~basic_node() {
    stop();
    core_->host.clear();  // protocols go first: their destructors cancel timers through their Env
  }

  /// Constructs P(env, args...) as protocol `id`, before start(). Id 0 is the
  /// transport's own. Throws dcp::error(invalid_argument) if the id is taken,
  /// 0, or the node already started.
  template <class P, class... Args> P& add(protocol_id id, Args&&... args) {
    if (id == detail::transport_protocol)
      throw error(errc::invalid_argument, "dcp::net::node: protocol id 0 is reserved for the transport");
    if (core_->state != detail::node_core::phase::created)
      throw error(errc::invalid_argument, "dcp::net::node: add protocols before start()");
    core_->metrics.declare(id, detail::node_counters);
    return core_->host.emplace<P>(id, env(*core_, id), std::forward<Args>(args)...);
  }

  /// The protocol with this id if it is a P, else nullptr.
  template <class P> P* find(protocol_id id) noexcept { return core_->host.find<P>(id); }

  /// Starts accepting connections and starts the protocols. Once only.
  void start() {
    if (core_->state != detail::node_core::phase::created)
      throw error(errc::invalid_argument, "dcp::net::node: start() called twice or after stop()");
    core_->state = detail::node_core::phase::running;
    core_->started = detail::steady_now();
    core_->start_transport();
    core_->host.start();
  }

  /// Stops the node (see Lifetime above); idempotent.
  void stop() noexcept {
    if (core_->state == detail::node_core::phase::stopped) return;
    core_->state = detail::node_core::phase::stopped;
    core_->timers->stop();
    core_->stop_transport();
    core_->stop_io();
  }

  /// stop(), run on the node's executor, from any thread; completes with no
  /// error once the node is stopped. Token: a callback void(std::error_code),
  /// asio::use_future, asio::use_awaitable, ...
  template <class CompletionToken> auto async_stop(CompletionToken&& token) {
    return asio::async_initiate<CompletionToken, void(std::error_code)>(
        [this](auto handler) {
          asio::dispatch(core_->ex, [this, handler = std::move(handler)]() mutable {
            stop();
            auto ex = asio::get_associated_executor(handler, core_->ex);
            asio::post(ex, [handler = std::move(handler)]() mutable { std::move(handler)(std::error_code{}); });
          });
        },
        token);
  }

  /// Runs f() on the node's executor (later, never inside the caller). Thread-safe.
  template <class F> void post(F&& f) { asio::post(core_->ex, std::forward<F>(f)); }

  executor_type get_executor() const noexcept { return core_->ex; }
  /// The address the node listens on (the port chosen when config.listen had port 0).
  address self() const noexcept { return core_->self; }
  bool running() const noexcept { return core_->state == detail::node_core::phase::running; }
  bool stopped() const noexcept { return core_->state == detail::node_core::phase::stopped; }

  /// Per protocol and message type: messages and bytes sent and received;
  /// drops by protocol and reason (protocol 0: the transport's own, e.g. a
  /// connection closed for bad_magic); named counters from env.count().
  const dcp::metrics& metrics() const noexcept { return core_->metrics; }
  /// Open sockets, inbound plus outbound.
  std::size_t connections() const noexcept { return core_->connections(); }
  /// Bytes waiting to be written to `peer`: a sender's back-pressure signal.
  std::size_t queued_bytes(const address& peer) const noexcept { return core_->queued_bytes(peer); }
  /// The transport, for what only it knows (keyring rotation, read buffer
  /// sizes): on the executor only, like every member but post().
  T& transport() noexcept { return *static_cast<T*>(core_->transport); }
  const T& transport() const noexcept { return *static_cast<const T*>(core_->transport); }
  const config& configuration() const noexcept { return core_->cfg; }

  /// Adds a gauge the node reports in status() and in its metrics exposition
  /// (dcp/net/metrics_exposition.hpp): read() is called on the executor each
  /// time, e.g. add_gauge("raft_term", [&r] { return double(r.current_term()); }).
  /// For values only the application can see (a protocol reports its own
  /// through a gauges() member, see dcp::gauge_sink). `name`: snake_case.
  void add_gauge(std::string name, std::function<double()> read) {
    core_->user_gauges.emplace_back(std::move(name), std::move(read));
  }

  /// The node now: call on the executor (like metrics()).
  node_status status() const {
    node_status s;
    s.self = core_->self;
    s.running = running();
    if (s.running) s.uptime = detail::steady_now() - core_->started;
    s.connections = connections();
    s.drops = core_->metrics.drops();
    core_->host.for_each_protocol([&](protocol_id id, std::string name) {
      protocol_status p;
      p.id = id;
      p.name = std::move(name);
      p.messages = core_->metrics.of(id);
      core_->host.gauges(id, [&](std::string_view g, double v) { p.gauges.emplace_back(std::string(g), v); });
      s.protocols.push_back(std::move(p));
    });
    for (auto& [name, read] : core_->user_gauges) s.gauges.emplace_back(name, read());
    return s;
  }
  /// The protocols' message names, for reports: "ping", or "#3" when unnamed.
  std::string message_name(protocol_id id, message_type t) const { return core_->host.message_name(id, t); }

 private:
  std::unique_ptr<detail::node_core> core_;
};

/// A node whose frames travel in clear, unauthenticated: see above.
using plaintext_node = basic_node<tcp_transport>;
/// The same as plaintext_node (the name every program used before transports were a policy).
using node = plaintext_node;

}  // namespace dcp::net
