#pragma once
// CRC-32C (Castagnoli), the checksum of every durable record.
//
// Castagnoli's polynomial detects all burst errors up to 32 bits and has a
// better Hamming distance than CRC-32 at record sizes; it is what ext4, iSCSI,
// etcd's WAL and LevelDB use. Table-driven, eight bytes at a time ("slicing
// by 8", Intel 2008: eight 1 KiB tables, portable and constexpr): every log
// record is checksummed on the replicas' write path, where the one-byte
// table walk took about a microsecond and a half of each lock+unlock in the
// peers benchmark (perf, docs/consensus.md); the SSE4.2 instruction would
// need a CPU check and a second path for little more.
#include <array>
#include <cstddef>
#include <cstdint>
#include <span>

namespace dcp::storage::detail {

inline constexpr std::uint32_t crc32c_poly = 0x82F63B78u;  // reflected 0x1EDC6F41

constexpr std::array<std::uint32_t, 256> make_crc32c_table() noexcept {
  std::array<std::uint32_t, 256> t{};
  for (std::uint32_t i = 0; i < 256; ++i) {
    std::uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ crc32c_poly : c >> 1;
    t[i] = c;
  }
  return t;
}
inline constexpr auto crc32c_table = make_crc32c_table();

/// crc32c_slices[k][b]: the CRC of byte b followed by k zero bytes.
constexpr std::array<std::array<std::uint32_t, 256>, 8> make_crc32c_slices() noexcept {
  std::array<std::array<std::uint32_t, 256>, 8> t{};
  t[0] = make_crc32c_table();
  for (std::size_t k = 1; k < 8; ++k)
    for (std::size_t i = 0; i < 256; ++i) t[k][i] = (t[k - 1][i] >> 8) ^ t[0][t[k - 1][i] & 0xFF];
  return t;
}
inline constexpr auto crc32c_slices = make_crc32c_slices();

/// Extends `crc` (the CRC of the bytes before) over `data`; start from 0.
constexpr std::uint32_t crc32c(std::span<const std::uint8_t> data, std::uint32_t crc = 0) noexcept {
  const auto& t = crc32c_slices;
  crc = ~crc;
  const std::uint8_t* p = data.data();
  std::size_t n = data.size();
  for (; n >= 8; p += 8, n -= 8) {  // bytes assembled one by one: any endianness, and constexpr
    const std::uint32_t lo =
        crc ^ (std::uint32_t{p[0]} | std::uint32_t{p[1]} << 8 | std::uint32_t{p[2]} << 16 | std::uint32_t{p[3]} << 24);
    const std::uint32_t hi =
        std::uint32_t{p[4]} | std::uint32_t{p[5]} << 8 | std::uint32_t{p[6]} << 16 | std::uint32_t{p[7]} << 24;
    crc = t[7][lo & 0xFF] ^ t[6][(lo >> 8) & 0xFF] ^ t[5][(lo >> 16) & 0xFF] ^ t[4][lo >> 24] ^ t[3][hi & 0xFF] ^
        t[2][(hi >> 8) & 0xFF] ^ t[1][(hi >> 16) & 0xFF] ^ t[0][hi >> 24];
  }
  for (; n > 0; ++p, --n) crc = t[0][(crc ^ *p) & 0xFF] ^ (crc >> 8);
  return ~crc;
}

}  // namespace dcp::storage::detail
