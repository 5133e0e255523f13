#pragma once
// dcp::net::config: everything a dcp::net::node needs to know before it starts.
//
// Every field has a working default; validate() turns a configuration that
// cannot work into a dcp::error(errc::invalid_config) naming the field.
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>

#include "dcp/core/address.hpp"
#include "dcp/core/error.hpp"
#include "dcp/core/log.hpp"
#include "dcp/core/time.hpp"
#include "dcp/wire/frame.hpp"
#include "dcp/wire/limits.hpp"

namespace dcp::net {

/// How the transport retries a peer it cannot connect to.
///
/// The n-th consecutive failed attempt waits a delay drawn uniformly from
/// [b/2, b] with b = min(max, initial * 2^(n-1)) ("equal jitter": exponential
/// growth, and peers that failed together do not retry in lock-step). The
/// transport gives up on the peer once `give_up_after_attempts` attempts have
/// failed in a row, or once the first failure of the streak is
/// `give_up_after` old, whichever comes first (zero disables a bound; at least
/// one must be set). Giving up drops the peer's queue, counts every dropped
/// frame as errc::peer_unreachable and tells the protocols (on_unreachable).
/// The next send to the peer starts a fresh streak.
struct reconnect_policy {
  duration initial = 50ms;
  duration max = 2s;
  std::uint32_t give_up_after_attempts = 6;
  duration give_up_after = duration::zero();

  void validate() const {
    if (initial <= duration::zero()) throw error(errc::invalid_config, "net::reconnect_policy: initial must be > 0");
    if (max < initial) throw error(errc::invalid_config, "net::reconnect_policy: max must be >= initial");
    if (give_up_after_attempts == 0 && give_up_after <= duration::zero())
      throw error(errc::invalid_config,
                  "net::reconnect_policy: set give_up_after_attempts or give_up_after, or an unreachable peer is "
                  "never reported and its queue never freed");
    if (give_up_after < duration::zero())
      throw error(errc::invalid_config, "net::reconnect_policy: give_up_after must be >= 0 (0 = no time bound)");
  }
};

struct config {
  /// Where the node listens (an IP address); port 0 picks a free port (read
  /// it back with node::self()). Unless `advertise` is set, this is also the
  /// address the node introduces itself with, so it must be one its peers can
  /// connect to: 0.0.0.0 / :: are refused then.
  address listen = address::loopback(0);
  /// The address peers know this node by, if not `listen`: what the hello
  /// frame carries and node::self() returns. May be a host name (a
  /// Kubernetes pod's stable DNS name, say: "db-0.db.default.svc:7000"),
  /// which peers resolve on every connection attempt. Its port is the one
  /// peers reach the node at; 0: the port the node listens on.
  std::optional<address> advertise;
  wire::limits limits{};
  reconnect_policy reconnect{};
  /// A connection attempt that has not completed after this long fails.
  duration connect_timeout = 3s;
  /// An inbound connection must introduce itself (hello frame) within this.
  duration handshake_timeout = 5s;
  /// The largest frame accepted before a connection has introduced itself:
  /// a caller nobody knows yet cannot make the node buffer a max_frame_size
  /// frame. A hello is one address (a host name at most 253 bytes).
  std::uint32_t max_hello_frame_size = 1024;
  /// A frame that has begun must arrive whole within this, else the
  /// connection closes (drop timed_out of protocol 0): a peer that trickles a
  /// frame, or stops in the middle of one, cannot hold its buffer for ever.
  /// A bulk stream is not affected: the clock restarts at every whole frame.
  duration read_timeout = 30s;
  /// A connection with no bytes in either direction for this long closes
  /// (counter "idle_closed" of protocol 0) and frees its slot; the next frame
  /// to that peer opens a new one.
  duration idle_timeout = 5min;
  /// Connections this node opens to its peers at once. Inbound connections
  /// have their own slots (limits.max_connections) and never take these, so
  /// callers that hold connections open cannot stop a node from reaching its
  /// peers. Past it, the least recently used idle outbound connection closes,
  /// else the attempt fails.
  std::size_t max_outbound_connections = 1024;
  /// Inbound connections from one IP address at once (past it: counter
  /// "connections_refused_per_ip"); 0: no cap. Loopback clusters and peers
  /// behind one NAT share an address: keep it above their number.
  std::size_t max_inbound_per_ip = 256;
  /// Bytes queued for sending on all connections together (frames waiting
  /// plus writes in flight; UDP: datagrams queued). Each queue is bounded by
  /// limits.max_queued_bytes_per_peer, but that times max_outbound_connections
  /// plus limits.max_connections is no bound at all (16 GiB and more by
  /// default): peers that never read could make the node hold it. Past this,
  /// send() refuses the frame before encoding it (errc::queue_full for its
  /// protocol, and counter "buffered_bytes_refused" of protocol 0); bytes
  /// come back as they are written or their connection closes. At least
  /// limits.max_queued_bytes_per_peer.
  std::size_t max_buffered_bytes = 256u << 20;
  /// Bytes the connections' read buffers hold, all together. Each buffer is
  /// bounded by the frame it is reading (limits.max_frame_size, and it
  /// shrinks once that frame is delivered), but limits.max_connections
  /// peers each sending most of a large frame would make the node hold
  /// them all (4 GiB by default). A read that would grow a buffer past this
  /// closes that connection instead (counter "read_buffer_bytes_refused" of
  /// protocol 0). At least twice limits.max_frame_size (a buffer grows by
  /// doubling), so one largest frame always fits.
  std::size_t max_read_buffer_bytes = 256u << 20;
  /// Where env.disk() keeps its files; none: an in-memory disk (lost at exit).
  std::optional<std::filesystem::path> data_dir;
  /// Where logs go; empty: logging is off and costs one branch.
  log_sink log;
  log_level level = log_level::info;
  /// Seeds env.rng(); none: seeded from std::random_device.
  std::optional<std::uint64_t> seed;

  void validate() const {
    if (!listen.is_ip())
      throw error(errc::invalid_config,
                  "net::config: listen must be an IPv4 or IPv6 address, not " + listen.to_string());
    if (advertise && !advertise->is_network())
      throw error(errc::invalid_config,
                  "net::config: advertise must be an IP address or a host name, not " + advertise->to_string());
    if (!advertise && listen.ip_address().is_unspecified())
      throw error(errc::invalid_config,
                  "net::config: listen " + listen.to_string() +
                      " is the unspecified address; peers attribute frames to the address a node introduces itself "
                      "with, so give the concrete address they reach this node at (listen, or advertise)");
    limits.validate();
    reconnect.validate();
    if (connect_timeout <= duration::zero())
      throw error(errc::invalid_config, "net::config: connect_timeout must be > 0");
    if (handshake_timeout <= duration::zero())
      throw error(errc::invalid_config, "net::config: handshake_timeout must be > 0");
    if (max_hello_frame_size < 64 || max_hello_frame_size > limits.max_frame_size)
      throw error(errc::invalid_config, "net::config: max_hello_frame_size must be in [64, limits.max_frame_size]");
    if (read_timeout <= duration::zero()) throw error(errc::invalid_config, "net::config: read_timeout must be > 0");
    if (idle_timeout <= duration::zero()) throw error(errc::invalid_config, "net::config: idle_timeout must be > 0");
    if (max_outbound_connections == 0)
      throw error(errc::invalid_config, "net::config: max_outbound_connections must be > 0");
    if (max_buffered_bytes < limits.max_queued_bytes_per_peer)
      throw error(errc::invalid_config,
                  "net::config: max_buffered_bytes (" + std::to_string(max_buffered_bytes) +
                      ") must be >= limits.max_queued_bytes_per_peer (" +
                      std::to_string(limits.max_queued_bytes_per_peer) +
                      "): the node-wide budget must hold at least one full queue");
    if (max_read_buffer_bytes < 2 * (std::size_t{limits.max_frame_size} + wire::header_size))
      throw error(errc::invalid_config,
                  "net::config: max_read_buffer_bytes (" + std::to_string(max_read_buffer_bytes) +
                      ") must be >= 2 x (limits.max_frame_size + the frame header) (" +
                      std::to_string(2 * (std::size_t{limits.max_frame_size} + wire::header_size)) +
                      "): one largest frame must fit");
    if (data_dir && data_dir->empty()) throw error(errc::invalid_config, "net::config: data_dir is set but empty");
  }
};

}  // namespace dcp::net
