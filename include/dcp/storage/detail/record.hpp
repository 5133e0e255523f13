#pragma once
// The framing of a durable record: [length u32][crc32c u32][payload].
//
// Both integers are little-endian. The CRC covers the length bytes and the
// payload, so a torn length cannot pass as a shorter valid record. A reader
// stops at the first record that is incomplete or fails its check: on a disk
// that only tears unsynced tails, that is exactly where the durable prefix
// ends.
#include <cstdint>
#include <optional>

#include "dcp/core/bytes.hpp"
#include "dcp/storage/detail/crc32c.hpp"

namespace dcp::storage::detail {

inline constexpr std::size_t record_header = 8;
/// No record is larger: a length above it is garbage, not a record.
inline constexpr std::uint32_t max_record = 64u << 20;

inline void put_u32(bytes& out, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
}
inline std::uint32_t get_u32(const std::uint8_t* p) noexcept {
  return std::uint32_t{p[0]} | std::uint32_t{p[1]} << 8 | std::uint32_t{p[2]} << 16 | std::uint32_t{p[3]} << 24;
}

/// Appends one framed record holding `payload` to `out`.
inline void frame_record(byte_view payload, bytes& out) {
  const std::size_t at = out.size();
  put_u32(out, static_cast<std::uint32_t>(payload.size()));
  const std::uint32_t crc = crc32c(payload, crc32c(byte_view(out.data() + at, 4)));
  put_u32(out, crc);
  out.insert(out.end(), payload.begin(), payload.end());
}

/// The payload of the record at `data[offset]`, or nullopt if the bytes there
/// are not a whole, intact record.
inline std::optional<byte_view> read_record(byte_view data, std::size_t offset) noexcept {
  if (offset > data.size() || data.size() - offset < record_header) return std::nullopt;
  const std::uint8_t* p = data.data() + offset;
  const std::uint32_t len = get_u32(p);
  if (len > max_record || data.size() - offset - record_header < len) return std::nullopt;
  const byte_view payload(p + record_header, len);
  if (crc32c(payload, crc32c(byte_view(p, 4))) != get_u32(p + 4)) return std::nullopt;
  return payload;
}

}  // namespace dcp::storage::detail
