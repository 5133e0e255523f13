#pragma once
// node_id: a fixed-width (160-bit) identifier in the overlay's id space.
//
// 160 bits is Kademlia's width and SHA-1's, and holds Pastry's 128-bit ids
// and Chord's m-bit ids as prefixes. Ids come from bytes, from a hash of a
// name or an address, or from an Env's random source. They are ordered
// (big-endian, so the order is the ring's), hashable, printable, and carry
// the arithmetic the DHTs need: XOR distance, bits and digits, and addition
// modulo 2^160.
#include <algorithm>
#include <array>
#include <bit>
#include <compare>
#include <cstdint>
#include <functional>
#include <optional>
#include <ostream>
#include <random>
#include <string>
#include <string_view>

#include <cereal/cereal.hpp>

#include "dcp/core/address.hpp"
#include "dcp/core/bytes.hpp"
#include "dcp/core/detail/sha1.hpp"

namespace dcp {

class node_id {
 public:
  static constexpr std::size_t size = 20;  ///< bytes
  static constexpr std::size_t bits = size * 8;
  using value_type = std::array<std::uint8_t, size>;

  constexpr node_id() noexcept = default;
  constexpr explicit node_id(const value_type& v) noexcept : v_(v) {}

  /// Exactly `size` bytes, most significant first; nullopt otherwise.
  static std::optional<node_id> from_bytes(byte_view b) noexcept {
    if (b.size() != size) return std::nullopt;
    node_id id;
    std::copy(b.begin(), b.end(), id.v_.begin());
    return id;
  }
  /// SHA-1 of arbitrary bytes: names, keys.
  static node_id hash(byte_view b) noexcept { return node_id(detail::sha1::of(b)); }
  static node_id hash(std::string_view s) noexcept { return hash(as_bytes(s)); }
  /// SHA-1 of an address's printed form, so that every process derives the same id.
  static node_id of(const address& a) { return hash(a.to_string()); }
  /// Uniformly random, from any UniformRandomBitGenerator (an Env's rng()).
  template <class Rng> static node_id random(Rng& rng) {
    node_id id;
    for (auto& b : id.v_) b = static_cast<std::uint8_t>(std::uniform_int_distribution<unsigned>(0, 255)(rng));
    return id;
  }
  /// The 64-bit value placed in the top bits (tests and small examples).
  static constexpr node_id from_u64(std::uint64_t x) noexcept {
    node_id id;
    for (int i = 0; i < 8; ++i) id.v_[i] = static_cast<std::uint8_t>(x >> (56 - 8 * i));
    return id;
  }
  static constexpr node_id max() noexcept {
    node_id id;
    id.v_.fill(0xFF);
    return id;
  }
  /// Parses 40 hex digits.
  static std::optional<node_id> from_hex(std::string_view hex) noexcept {
    if (hex.size() != 2 * size) return std::nullopt;
    node_id id;
    for (std::size_t i = 0; i < size; ++i) {
      auto hi = digit_value(hex[2 * i]), lo = digit_value(hex[2 * i + 1]);
      if (hi < 0 || lo < 0) return std::nullopt;
      id.v_[i] = static_cast<std::uint8_t>(hi << 4 | lo);
    }
    return id;
  }

  constexpr const value_type& bytes() const noexcept { return v_; }
  /// The top 64 bits, as an unsigned integer (handy for plots and tests).
  constexpr std::uint64_t top64() const noexcept {
    std::uint64_t x = 0;
    for (int i = 0; i < 8; ++i) x = x << 8 | v_[i];
    return x;
  }

  /// Bit i, counting from the most significant (bit 0).
  constexpr bool bit(std::size_t i) const noexcept { return (v_[i / 8] >> (7 - i % 8)) & 1; }
  /// Digit i in base 2^b (b in 1..8 dividing 160), most significant first: Pastry's digits.
  constexpr unsigned digit(std::size_t i, unsigned b) const noexcept {
    unsigned v = 0;
    for (unsigned k = 0; k < b; ++k) v = v << 1 | unsigned{bit(i * b + k)};
    return v;
  }
  /// Number of leading bits shared with `o` (160 when equal).
  constexpr std::size_t common_prefix_bits(const node_id& o) const noexcept {
    for (std::size_t i = 0; i < size; ++i)
      if (const auto x = static_cast<std::uint8_t>(v_[i] ^ o.v_[i]))
        return i * 8 + static_cast<std::size_t>(std::countl_zero(x));
    return bits;
  }
  /// Index of the highest set bit counted from the least significant end, or -1 for zero:
  /// the Kademlia bucket of a XOR distance.
  constexpr int log2() const noexcept {
    const std::size_t p = common_prefix_bits(node_id{});
    return p == bits ? -1 : static_cast<int>(bits - 1 - p);
  }

  friend constexpr node_id operator^(const node_id& a, const node_id& b) noexcept {
    node_id r;
    for (std::size_t i = 0; i < size; ++i) r.v_[i] = a.v_[i] ^ b.v_[i];
    return r;
  }
  /// Addition modulo 2^160 (Chord's ring).
  friend constexpr node_id operator+(const node_id& a, const node_id& b) noexcept {
    node_id r;
    unsigned carry = 0;
    for (std::size_t i = size; i-- > 0;) {
      const unsigned s = unsigned{a.v_[i]} + b.v_[i] + carry;
      r.v_[i] = static_cast<std::uint8_t>(s);
      carry = s >> 8;
    }
    return r;
  }
  /// Subtraction modulo 2^160: (b - a) is the clockwise distance from a to b.
  friend constexpr node_id operator-(const node_id& a, const node_id& b) noexcept {
    node_id r;
    int borrow = 0;
    for (std::size_t i = size; i-- > 0;) {
      int d = int{a.v_[i]} - int{b.v_[i]} - borrow;
      borrow = d < 0;
      r.v_[i] = static_cast<std::uint8_t>(d + (borrow ? 256 : 0));
    }
    return r;
  }
  /// 2^k modulo 2^160, k < 160: Chord's finger offsets.
  static constexpr node_id pow2(std::size_t k) noexcept {
    node_id r;
    if (k < bits) r.v_[size - 1 - k / 8] = static_cast<std::uint8_t>(1u << (k % 8));
    return r;
  }
  /// True when x lies in the ring interval (a, b]; the whole ring when a == b.
  static constexpr bool in_half_open(const node_id& x, const node_id& a, const node_id& b) noexcept {
    if (a == b) return true;
    return (x - a) <= (b - a) && x != a;
  }
  /// True when x lies in the open ring interval (a, b); everything but a when a == b.
  static constexpr bool in_open(const node_id& x, const node_id& a, const node_id& b) noexcept {
    if (a == b) return x != a;
    return x != a && x != b && (x - a) < (b - a);
  }

  std::string to_string() const {
    static constexpr char hex[] = "0123456789abcdef";
    std::string s(2 * size, '0');
    for (std::size_t i = 0; i < size; ++i) {
      s[2 * i] = hex[v_[i] >> 4];
      s[2 * i + 1] = hex[v_[i] & 15];
    }
    return s;
  }
  /// The first 8 hex digits: enough to tell ids apart in a log line.
  std::string short_string() const { return to_string().substr(0, 8); }

  constexpr auto operator<=>(const node_id&) const noexcept = default;
  constexpr bool operator==(const node_id&) const noexcept = default;

  template <class Archive> void serialize(Archive& ar) { ar(cereal::binary_data(v_.data(), size)); }

 private:
  static constexpr int digit_value(char c) noexcept {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  }
  value_type v_{};
};

inline std::ostream& operator<<(std::ostream& os, const node_id& id) { return os << id.short_string(); }

}  // namespace dcp

template <> struct std::hash<dcp::node_id> {
  std::size_t operator()(const dcp::node_id& id) const noexcept {
    // ids are uniformly distributed: a slice is a good hash, and xor keeps every byte involved
    std::uint64_t a = 0, b = 0;
    for (int i = 0; i < 8; ++i) {
      a = a << 8 | id.bytes()[i];
      b = b << 8 | id.bytes()[8 + i];
    }
    return static_cast<std::size_t>(dcp::detail::mix64(a ^ (b * 0x9E3779B97F4A7C15ull)));
  }
};
