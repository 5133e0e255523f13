#pragma once
// Node ids bound to addresses, as BitTorrent's DHT security extension (BEP 42)
// binds them: a sender cannot choose its place in the key space at will.
//
// The first 21 bits of a bound id are the first 21 bits of
// CRC-32C((ip & mask) | r << 29) (BEP 42: IPv4 mask 0x030f3fff, IPv6 mask
// 0x0103070f1f3f7fff over the first 8 bytes, r << 5 in their first byte),
// where r is the low 3 bits of the id's last byte; the other bits are free.
// So one IP address offers 8 places (prefixes) of 2^21, and the mask keeps the
// bits a provider hands out in blocks from multiplying them: an attacker needs
// about as many addresses, spread over the address space, as the network has
// 21-bit prefixes per key to take one over. It limits Sybil by addresses; it
// does not stop an attacker who has many.
//
// Addresses that are not IP: a simulator address ("sim:i") is bound as the
// IPv4 address i (so simulated tests can run with binding on), a host name by
// the first 8 bytes of its digest as if IPv6 (a name is only as good as the
// transport's claim to it). Unlike BEP 42 no range is exempt: dcp's nodes
// know the address they are reached at (no NAT between members), and private
// ranges are where dcp clusters run. Many nodes behind one address (a test
// cluster on loopback) share its 8 prefixes: ownership of keys is then less
// even between them, the price BEP 42 also pays.
#include <algorithm>
#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "dcp/core/address.hpp"
#include "dcp/core/error.hpp"
#include "dcp/core/node_id.hpp"
#include "dcp/core/rng.hpp"
#include "dcp/dht/contact.hpp"
#include "dcp/storage/detail/crc32c.hpp"

namespace dcp::dht {

/// Whether a router binds node ids to addresses.
enum class id_binding : std::uint8_t {
  automatic,  ///< bep42 for network addresses (dcp::net), none in the simulator
  none,       ///< ids are their sender's word (Kademlia as published)
  bep42,      ///< ids must derive from the sender's address (BEP 42)
};

namespace detail {
/// CRC-32C of the masked address with r in its top bits (BEP 42).
inline std::uint32_t bep42_crc(const address& a, std::uint8_t r) {
  r &= 0x7;
  std::array<std::uint8_t, 8> b{};
  std::size_t n = 4;
  static constexpr std::array<std::uint8_t, 4> v4_mask{0x03, 0x0f, 0x3f, 0xff};
  static constexpr std::array<std::uint8_t, 8> v6_mask{0x01, 0x03, 0x07, 0x0f, 0x1f, 0x3f, 0x7f, 0xff};
  const auto& ip = a.ip_bytes();
  const bool v4_mapped = a.kind() == address::family::ipv6 && ip[10] == 0xff && ip[11] == 0xff &&
      std::all_of(ip.begin(), ip.begin() + 10, [](std::uint8_t x) { return x == 0; });
  if (a.kind() == address::family::ipv4 || a.is_sim()) {
    for (std::size_t i = 0; i < 4; ++i) b[i] = static_cast<std::uint8_t>(ip[i] & v4_mask[i]);
  } else if (v4_mapped) {
    for (std::size_t i = 0; i < 4; ++i) b[i] = static_cast<std::uint8_t>(ip[12 + i] & v4_mask[i]);
  } else {
    n = 8;
    for (std::size_t i = 0; i < 8; ++i) b[i] = static_cast<std::uint8_t>(ip[i] & v6_mask[i]);
  }
  b[0] = static_cast<std::uint8_t>(b[0] | r << 5);
  return storage::detail::crc32c(std::span<const std::uint8_t>(b.data(), n));
}
}  // namespace detail

/// Whether `id` derives from `a` (BEP 42): its first 21 bits from the address and its last byte's r.
inline bool bep42_valid(const node_id& id, const address& a) {
  if (a.empty()) return false;
  const auto& v = id.bytes();
  const std::uint32_t crc = detail::bep42_crc(a, v[node_id::size - 1]);
  return v[0] == static_cast<std::uint8_t>(crc >> 24) && v[1] == static_cast<std::uint8_t>(crc >> 16) &&
      (v[2] & 0xf8) == (static_cast<std::uint8_t>(crc >> 8) & 0xf8);
}

/// A random id bound to `a` (BEP 42): one of its 8 prefixes, every other bit random.
template <class Rng> node_id bep42_id(const address& a, Rng& rng) {
  auto v = node_id::random(rng).bytes();
  const std::uint32_t crc = detail::bep42_crc(a, v[node_id::size - 1]);
  v[0] = static_cast<std::uint8_t>(crc >> 24);
  v[1] = static_cast<std::uint8_t>(crc >> 16);
  v[2] = static_cast<std::uint8_t>((crc >> 8 & 0xf8) | (v[2] & 0x7));
  return node_id(v);
}

/// Whether a router on `self` binds ids under `b`: bep42 always, automatic over
/// a network address (dcp::net), never in the simulator.
inline bool binds_ids(id_binding b, const address& self) noexcept {
  return b == id_binding::bep42 || (b == id_binding::automatic && self.is_network());
}

/// A router's own id: `given` when set (which must derive from `self` when ids
/// are bound: invalid_config, naming the router), else one bound to `self`, or
/// a free random one when ids are not bound.
template <class Rng> node_id own_id(std::string_view router, bool bound, const std::optional<node_id>& given,
                                    const address& self, Rng& rng) {
  if (bound && given && !bep42_valid(*given, self))
    throw error(dcp::errc::invalid_config,
                std::string(router) + ": id " + given->to_string() + " does not derive from address " +
                    self.to_string() + " (BEP 42): leave id unset, or set bind_ids = none");
  if (given) return *given;
  return bound ? bep42_id(self, rng) : node_id::random(rng);
}

/// Whether a router that binds ids (`bound`) may take `c` into its routing
/// state: its id must derive from its address. Always true when not bound.
inline bool admissible(bool bound, const contact& c) { return !bound || bep42_valid(c.id, c.addr); }

}  // namespace dcp::dht
