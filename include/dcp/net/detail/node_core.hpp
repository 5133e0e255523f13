#pragma once
// node_core: the state of one dcp::net::node that its Env handles point to
// (internal). A node owns exactly one; its address never changes.
#include <concepts>
#include <exception>
#include <functional>
#include <utility>
#include <vector>
#include <memory>
#include <random>
#include <utility>
#include <string>

#include <asio/any_io_executor.hpp>
#include <asio/post.hpp>
#include <asio/thread_pool.hpp>

#include "dcp/core/disk.hpp"
#include "dcp/core/file_disk.hpp"
#include "dcp/core/host.hpp"
#include "dcp/core/log.hpp"
#include "dcp/core/counter_set.hpp"
#include "dcp/core/metrics.hpp"
#include "dcp/core/rng.hpp"
#include "dcp/net/config.hpp"
#include "dcp/net/detail/timer_queue.hpp"
#include "dcp/net/detail/connection.hpp"
#include "dcp/net/transport.hpp"

namespace dcp::net::detail {

inline std::uint64_t random_seed() {
  std::random_device rd;
  return (std::uint64_t{rd()} << 32) ^ rd();
}

/// A node's transport, its type erased: the Env (one class for every
/// transport) reaches it through these.
struct transport_ops {
  bool (*send)(void* t, protocol_id, const address&, const frame_source&);
  void (*start)(void* t);
  void (*stop)(void* t) noexcept;
  std::size_t (*connections)(const void* t) noexcept;
  std::size_t (*queued_bytes)(const void* t, const address&) noexcept;
  // basic_tcp_transport::turn; null for a transport without turns.
  void (*turn)(void* t, const std::function<void()>& f);
};

/// A transport that can run a piece of work as one of its turns, writing
/// what it sends at the end (basic_tcp_transport, and any_transport
/// forwarding to one).
template <class T>
concept turn_based = requires(T& x) {
  x.turn(std::function<void()>{});
};

template <Transport T> inline constexpr transport_ops ops_of{
    [](void* t, protocol_id p, const address& to, const frame_source& src) {
      return static_cast<T*>(t)->send_frame(p, to, src);
    },
    [](void* t) { static_cast<T*>(t)->start(); },
    [](void* t) noexcept { static_cast<T*>(t)->stop(); },
    [](const void* t) noexcept -> std::size_t { return static_cast<const T*>(t)->connections(); },
    [](const void* t, const address& a) noexcept -> std::size_t { return static_cast<const T*>(t)->queued_bytes(a); },
    [] {
      if constexpr (turn_based<T>)
        return [](void* t, const std::function<void()>& f) { static_cast<T*>(t)->turn(f); };
      else
        return nullptr;
    }(),
};

/// The counters the node itself adds to every protocol's (handler_threw).
inline constexpr counter_set node_counters{
    {{"handler_exceptions", "a handler of the protocol threw; the node logged it and went on"}}};

/// What protocol 0, the transport, counts: every transport's names (TCP, UDP,
/// their keyring and TLS securities), declared on every node whatever its
/// transport, so that a typo in a read of a transport counter fails too.
inline constexpr counter_set transport_counters{
    {{"handler_exceptions", "an unreachable handler threw; the node logged it and went on"},
     {"accept_errors", "accepting a TCP connection failed (out of descriptors, say)"},
     {"connections_refused", "an inbound connection closed at once: limits.max_connections are open"},
     {"connections_refused_per_ip", "an inbound connection closed at once: config::max_inbound_per_ip from its IP"},
     {"idle_closed", "a connection silent both ways for config::idle_timeout, closed"},
     {"peers_unreachable", "a peer given up on after the reconnect policy's bound; its queue dropped"},
     {"buffered_bytes_refused", "a frame refused: the node's queued bytes would pass config::max_buffered_bytes"},
     {"read_buffer_bytes_refused", "a connection closed: its frame would pass config::max_read_buffer_bytes"},
     {"receive_errors", "a UDP receive failed (an ICMP error, say), counted and ignored"},
     {"keyring_auth_failures", "a keyring connection that did not authenticate, closed"},
     {"keyring_rekeys", "a peer switched the key it seals with"},
     {"keyring_sessions_closed", "a connection under a removed key, closed"},
     {"tls_auth_failures", "a TLS handshake failed (no certificate, another CA's, not TLS 1.3)"},
     {"tls_address_mismatch", "a TLS peer whose certificate does not bind the address it claims or was dialled at"},
     {"udp_keyring_unknown_key", "a datagram under a key id the ring does not hold, dropped"},
     {"udp_keyring_auth_failures", "a datagram whose tag does not verify (forged, altered, or re-addressed), dropped"},
     {"udp_keyring_replays", "a datagram number already accepted, dropped"},
     {"udp_keyring_stale", "a datagram below the replay window or of an earlier boot, dropped"},
     {"udp_keyring_peer_restarts", "a sender heard from a later boot: its window starts afresh"},
     {"udp_keyring_peers_evicted", "a sender's replay window evicted (options::max_peers, least recently heard)"}}};

struct node_core {
  enum class phase : std::uint8_t { created, running, stopped };

  template <Transport T>
  node_core(std::in_place_type_t<T>, asio::any_io_executor executor, config c, typename T::options opts)
      : ex(std::move(executor)),
        cfg((c.validate(), std::move(c))),
        host(&metrics),
        rng(cfg.seed ? *cfg.seed : random_seed()),
        timers(std::make_shared<timer_queue>(ex)) {
    metrics.declare(transport_protocol, transport_counters);
    if (cfg.data_dir)
      disk = std::make_unique<file_disk>(*cfg.data_dir);
    else
      disk = std::make_unique<memory_disk>();
    auto t =
        std::make_shared<T>(ex, cfg, metrics, rng,
                            frame_handler([this](const address& from, const wire::frame_header& h, byte_view payload) {
                              deliver(from, h, payload);
                            }),
                            unreachable_handler([this](const address& peer) { unreachable(peer); }), std::move(opts));
    if constexpr (turn_based<T>) {
      // Timers fire as transport turns (timer_queue::run_in). The queue is
      // stopped before the transport goes (node::stop), so the raw pointer
      // is never used past it.
      T* tp = t.get();
      timers->run_in([tp](const std::function<void()>& f) { tp->turn(f); });
    }
    self = t->listen();
    transport = t.get();
    transport_ops_ = &ops_of<T>;
    transport_owner = std::move(t);
  }

  bool send(protocol_id p, const address& to, const frame_source& src) {
    return transport_ops_->send(transport, p, to, src);
  }
  void start_transport() { transport_ops_->start(transport); }
  void stop_transport() noexcept { transport_ops_->stop(transport); }
  std::size_t connections() const noexcept { return transport_ops_->connections(transport); }
  std::size_t queued_bytes(const address& a) const noexcept { return transport_ops_->queued_bytes(transport, a); }
  node_core(const node_core&) = delete;
  node_core& operator=(const node_core&) = delete;

  bool logs(log_level level) const noexcept { return cfg.log && level >= cfg.level && level != log_level::off; }

  /// env.disk(): without config::data_dir it is a memory_disk, and a node
  /// restarted after "syncing" has lost everything. Said once per node, at
  /// warn level, the first time a protocol uses it.
  dcp::disk& disk_for(protocol_id protocol) noexcept {
    if (!cfg.data_dir && !warned_memory_disk) {
      warned_memory_disk = true;
      try {
        log(protocol, log_level::warn,
            "env.disk() is in memory: net::config::data_dir is not set, so what this node syncs is lost when the "
            "process exits");
      } catch (...) {  // out of memory while logging: the disk still works
      }
    }
    return *disk;
  }
  /// env.perform: work a disk can run off the node's thread (file_disk's
  /// fsync) runs on the node's I/O thread, so the event loop goes on
  /// meanwhile; other work (a memory_disk's) runs on the node's thread, as
  /// posted work. Either way done(ec) runs as a turn of the node's, and not
  /// once it has stopped.
  void perform(io_work io, std::function<void(std::error_code)> done) {
    if (!disk->off_thread()) {
      timers->post([io = std::move(io), done = std::move(done)] { done(io()); });
      return;
    }
    if (!io_thread) io_thread = std::make_unique<asio::thread_pool>(1);
    asio::post(
        *io_thread,
        [io = std::move(io), done = std::move(done), ex = ex, queue = std::weak_ptr<timer_queue>(timers)]() mutable {
          const std::error_code ec = io();
          asio::post(ex, [queue, done = std::move(done), ec]() mutable {
            if (auto q = queue.lock()) q->post([done = std::move(done), ec] { done(ec); });
          });
        });
  }
  /// Waits for the I/O under way (node::stop): none outlives the node.
  void stop_io() noexcept {
    if (io_thread) io_thread->join();
  }

  void log(protocol_id protocol, log_level level, std::string_view text) {
    if (logs(level)) cfg.log(log_record{steady_now(), self, protocol, level, text});
  }

  // A protocol that throws out of a handler has a bug; the frame or the event
  // is lost, but the node and its other protocols keep running.
  void deliver(const address& from, const wire::frame_header& h, byte_view payload) noexcept {
    try {
      host.deliver(from, h.protocol, h.type, payload);
    } catch (const std::exception& e) { handler_threw(h.protocol, e.what()); } catch (...) {
      handler_threw(h.protocol, "unknown exception");
    }
  }
  void unreachable(const address& peer) noexcept {
    try {
      host.unreachable(peer);
    } catch (const std::exception& e) { handler_threw(transport_protocol, e.what()); } catch (...) {
      handler_threw(transport_protocol, "unknown exception");
    }
  }
  void handler_threw(protocol_id protocol, std::string_view what) noexcept {
    try {
      metrics.add(protocol, "handler_exceptions", 1);
      log(protocol, log_level::error, std::string("a protocol handler threw: ") + std::string(what));
    } catch (...) {  // out of memory while reporting: nothing more to do
    }
  }

  asio::any_io_executor ex;
  config cfg;
  dcp::metrics metrics;
  dcp::host host;
  dcp::rng rng;
  std::unique_ptr<dcp::disk> disk;
  std::shared_ptr<timer_queue> timers;
  std::unique_ptr<asio::thread_pool> io_thread;  // perform(): one thread, made at the first fsync
  std::shared_ptr<void> transport_owner;         // the transport; handlers it started hold it too
  void* transport = nullptr;                     // the same, for transport_ops_
  const transport_ops* transport_ops_ = nullptr;
  address self;
  phase state = phase::created;
  bool warned_memory_disk = false;
  time_point started{};
  std::vector<std::pair<std::string, std::function<double()>>> user_gauges;  // node::add_gauge
};

}  // namespace dcp::net::detail
