#pragma once
// The explicit limits of the wire and the transports.
#include <cstddef>
#include <cstdint>

#include "dcp/core/error.hpp"

namespace dcp::wire {

/// What decoding one payload of `payload_size` bytes may allocate for the
/// containers it fills (archive.hpp): 16 times its size, plus 64 KiB for
/// small messages. Legitimate messages stay well below it (a vector of IP
/// addresses allocates about 3.5 times its bytes, of simulated ones 5); a
/// payload built to amplify (empty addresses, disengaged optionals: one byte
/// each on the wire, 24 to 72 in memory) is refused as malformed.
inline constexpr std::size_t decode_budget(std::size_t payload_size) noexcept {
  return 16 * payload_size + (std::size_t{64} << 10);
}

struct limits {
  /// Largest payload accepted or sent. A larger incoming length closes the
  /// connection (the stream cannot be trusted); a larger outgoing message is
  /// refused at send with frame_too_large.
  std::uint32_t max_frame_size = 4u << 20;
  /// Bytes that may wait in one peer's send queue. Past it, new frames to that
  /// peer are dropped and counted (errc::queue_full): the protocols above are
  /// built for lossy links, and a slow peer must not exhaust our memory.
  std::size_t max_queued_bytes_per_peer = 16u << 20;
  /// Inbound connections (those peers open) at once; past it, new ones are
  /// refused. The connections a node opens have their own slots
  /// (net::config::max_outbound_connections), so idle callers cannot lock a
  /// node out of its peers.
  std::size_t max_connections = 1024;

  /// Throws dcp::error(invalid_config) with the reason when a limit cannot work.
  void validate() const {
    if (max_frame_size == 0) throw error(errc::invalid_config, "wire::limits: max_frame_size must be > 0");
    if (max_queued_bytes_per_peer < max_frame_size)
      throw error(errc::invalid_config,
                  "wire::limits: max_queued_bytes_per_peer must hold at least one max_frame_size frame");
    if (max_connections < 2) throw error(errc::invalid_config, "wire::limits: max_connections must be >= 2");
  }
};

}  // namespace dcp::wire
