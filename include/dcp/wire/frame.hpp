#pragma once
// The frame: a fixed 12-byte header and a payload.
//
//   offset size field
//        0    2 magic        0xDC 0x50
//        2    1 version      1
//        3    1 flags        reserved, must be 0
//        4    2 protocol id  little-endian
//        6    2 message type little-endian
//        8    4 payload length, little-endian, at most limits::max_frame_size
//       12    n payload      Cereal portable binary (dcp::wire::archive)
//
// The header carries the payload length, so a stream of frames is
// self-delimiting (the TCP transport needs nothing more). frame_reader cuts
// a byte stream into frames; its errors mean the stream can no longer be
// trusted and the connection must close.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <system_error>

#include "dcp/core/bytes.hpp"
#include "dcp/core/error.hpp"
#include "dcp/wire/limits.hpp"

namespace dcp {
using protocol_id = std::uint16_t;   ///< which protocol instance on a node a frame is for
using message_type = std::uint16_t;  ///< which message of that protocol
}  // namespace dcp

namespace dcp::wire {

inline constexpr std::uint8_t magic[2] = {0xDC, 0x50};
inline constexpr std::uint8_t version = 1;
inline constexpr std::size_t header_size = 12;

struct frame_header {
  protocol_id protocol = 0;
  message_type type = 0;
  std::uint32_t length = 0;  ///< payload bytes after the header
  bool operator==(const frame_header&) const = default;
};

inline void write_header(std::uint8_t* out, const frame_header& h) noexcept {
  out[0] = magic[0];
  out[1] = magic[1];
  out[2] = version;
  out[3] = 0;
  out[4] = static_cast<std::uint8_t>(h.protocol);
  out[5] = static_cast<std::uint8_t>(h.protocol >> 8);
  out[6] = static_cast<std::uint8_t>(h.type);
  out[7] = static_cast<std::uint8_t>(h.type >> 8);
  for (int i = 0; i < 4; ++i) out[8 + i] = static_cast<std::uint8_t>(h.length >> (8 * i));
}

/// Parses and validates a header. `in` must hold at least header_size bytes,
/// else truncated_frame. Checks magic, version, flags and the size limit.
inline std::error_code read_header(byte_view in, frame_header& h, const limits& lim = {}) noexcept {
  if (in.size() < header_size) return errc::truncated_frame;
  if (in[0] != magic[0] || in[1] != magic[1]) return errc::bad_magic;
  if (in[2] != version) return errc::unsupported_version;
  if (in[3] != 0) return errc::bad_flags;
  h.protocol = static_cast<protocol_id>(in[4] | in[5] << 8);
  h.type = static_cast<message_type>(in[6] | in[7] << 8);
  h.length =
      std::uint32_t{in[8]} | std::uint32_t{in[9]} << 8 | std::uint32_t{in[10]} << 16 | std::uint32_t{in[11]} << 24;
  if (h.length > lim.max_frame_size) return errc::frame_too_large;
  return {};
}

struct frame_view {
  frame_header header;
  byte_view payload;
};

/// Cuts a byte stream into frames, in place, with one growing buffer.
///
/// Use: write received bytes into prepare(n), commit(k) what arrived, then
/// call next() until it returns false. A false with an error set means the
/// stream is corrupt (bad magic, oversized frame ...): close the connection.
/// The payload views stay valid until the next prepare().
class frame_reader {
 public:
  explicit frame_reader(const limits& lim = {}) : lim_(lim) {}

  std::uint8_t* prepare(std::size_t n) {
    if (start_ > 0 && (start_ == end_ || buf_.size() - end_ < n)) {  // compact what is left
      std::memmove(buf_.data(), buf_.data() + start_, end_ - start_);
      end_ -= start_;
      start_ = 0;
    }
    if (buf_.size() - end_ < n) buf_.resize(std::max(buf_.size() * 2, end_ + n));
    return buf_.data() + end_;
  }
  void commit(std::size_t n) noexcept { end_ += n; }

  /// Convenience for callers that already hold the bytes.
  void feed(byte_view data) {
    if (data.empty()) return;
    std::memcpy(prepare(data.size()), data.data(), data.size());
    commit(data.size());
  }

  bool next(frame_view& f, std::error_code& ec) {
    ec.clear();
    const std::size_t avail = end_ - start_;
    if (avail < header_size) return false;
    frame_header h;
    if ((ec = read_header({buf_.data() + start_, header_size}, h, lim_))) return false;
    if (avail < header_size + h.length) return false;
    f.header = h;
    f.payload = {buf_.data() + start_ + header_size, h.length};
    start_ += header_size + h.length;
    return true;
  }

  std::size_t buffered() const noexcept { return end_ - start_; }
  /// Bytes the reader holds allocated (what a connection costs while idle).
  std::size_t capacity() const noexcept { return buf_.capacity(); }

  /// The limits later headers are checked against (a transport accepts only
  /// a small frame before a connection has introduced itself, say).
  void set_limits(const limits& lim) noexcept { lim_ = lim; }

  /// Gives memory back after a large frame: when more than `keep` bytes are
  /// allocated and the unread bytes fit in `keep`, they move to a buffer of
  /// `keep` bytes. Invalidates payload views, like prepare().
  void shrink(std::size_t keep) {
    if (buf_.capacity() <= keep || end_ - start_ > keep) return;
    bytes smaller(keep);
    std::memcpy(smaller.data(), buf_.data() + start_, end_ - start_);
    end_ -= start_;
    start_ = 0;
    buf_ = std::move(smaller);
  }

 private:
  limits lim_;
  bytes buf_;
  std::size_t start_ = 0, end_ = 0;
};

}  // namespace dcp::wire
