#pragma once
// address: where a node can be reached.
//
// One value type for both worlds, so that a protocol can put addresses in its
// messages (HyParView's FORWARD_JOIN, a DHT contact) and run unchanged:
//   - sim:  node i of a dcp::sim::simulator, printed "sim:i";
//   - ipv4 / ipv6: a host and port for the Asio runtime, "127.0.0.1:7000",
//     "[::1]:7000".
// Addresses are ordered, hashable, printable, parseable and serializable.
#include <array>
#include <charconv>
#include <compare>
#include <cstdint>
#include <cstring>
#include <functional>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>

#include <cereal/cereal.hpp>

#include "dcp/core/detail/sha1.hpp"

namespace dcp {

class address {
 public:
  enum class family : std::uint8_t { none = 0, sim = 1, ipv4 = 2, ipv6 = 3 };

  constexpr address() noexcept = default;

  /// Node `index` of a simulator.
  static constexpr address sim(std::uint32_t index) noexcept {
    address a;
    a.family_ = family::sim;
    a.bytes_[0] = static_cast<std::uint8_t>(index >> 24);
    a.bytes_[1] = static_cast<std::uint8_t>(index >> 16);
    a.bytes_[2] = static_cast<std::uint8_t>(index >> 8);
    a.bytes_[3] = static_cast<std::uint8_t>(index);
    return a;
  }
  static constexpr address ipv4(std::array<std::uint8_t, 4> ip, std::uint16_t port) noexcept {
    address a;
    a.family_ = family::ipv4;
    for (int i = 0; i < 4; ++i) a.bytes_[i] = ip[i];
    a.port_ = port;
    return a;
  }
  static constexpr address ipv6(const std::array<std::uint8_t, 16>& ip, std::uint16_t port) noexcept {
    address a;
    a.family_ = family::ipv6;
    a.bytes_ = ip;
    a.port_ = port;
    return a;
  }
  static constexpr address loopback(std::uint16_t port) noexcept { return ipv4({127, 0, 0, 1}, port); }

  /// Parses "sim:3", "10.0.0.1:7000" or "[::1]:7000"; nullopt if malformed.
  static std::optional<address> parse(std::string_view text);

  constexpr family kind() const noexcept { return family_; }
  constexpr bool is_sim() const noexcept { return family_ == family::sim; }
  constexpr bool is_ip() const noexcept { return family_ == family::ipv4 || family_ == family::ipv6; }
  constexpr bool empty() const noexcept { return family_ == family::none; }
  constexpr explicit operator bool() const noexcept { return !empty(); }

  /// The simulator index; only meaningful when is_sim().
  constexpr std::uint32_t sim_index() const noexcept {
    return std::uint32_t{bytes_[0]} << 24 | std::uint32_t{bytes_[1]} << 16 | std::uint32_t{bytes_[2]} << 8 |
           std::uint32_t{bytes_[3]};
  }
  constexpr std::uint16_t port() const noexcept { return port_; }
  constexpr const std::array<std::uint8_t, 16>& ip_bytes() const noexcept { return bytes_; }

  std::string to_string() const;

  constexpr auto operator<=>(const address&) const noexcept = default;
  constexpr bool operator==(const address&) const noexcept = default;

  std::size_t hash() const noexcept {
    std::uint64_t h = detail::fnv1a(bytes_);
    return static_cast<std::size_t>(detail::mix64(h ^ (std::uint64_t{port_} << 8) ^ static_cast<std::uint64_t>(family_)));
  }

  template <class Archive>
  void save(Archive& ar) const {
    ar(static_cast<std::uint8_t>(family_));
    switch (family_) {
      case family::none: break;
      case family::sim: ar(sim_index()); break;
      case family::ipv4: ar(cereal::binary_data(bytes_.data(), 4), port_); break;
      case family::ipv6: ar(cereal::binary_data(bytes_.data(), 16), port_); break;
    }
  }
  template <class Archive>
  void load(Archive& ar) {
    std::uint8_t f = 0;
    ar(f);
    *this = address{};
    switch (f) {
      case 0: break;
      case 1: { std::uint32_t i = 0; ar(i); *this = sim(i); break; }
      case 2: family_ = family::ipv4; ar(cereal::binary_data(bytes_.data(), 4), port_); break;
      case 3: family_ = family::ipv6; ar(cereal::binary_data(bytes_.data(), 16), port_); break;
      default: throw cereal::Exception("address: unknown family " + std::to_string(f));
    }
  }

 private:
  family family_ = family::none;
  std::uint16_t port_ = 0;
  std::array<std::uint8_t, 16> bytes_{};
};

inline std::ostream& operator<<(std::ostream& os, const address& a) { return os << a.to_string(); }

inline std::string address::to_string() const {
  switch (family_) {
    case family::none: return "none";
    case family::sim: return "sim:" + std::to_string(sim_index());
    case family::ipv4:
      return std::to_string(bytes_[0]) + "." + std::to_string(bytes_[1]) + "." + std::to_string(bytes_[2]) + "." +
             std::to_string(bytes_[3]) + ":" + std::to_string(port_);
    case family::ipv6: {
      static constexpr char hex[] = "0123456789abcdef";
      std::string s = "[";
      for (int i = 0; i < 16; i += 2) {
        if (i) s += ':';
        const unsigned v = unsigned{bytes_[i]} << 8 | bytes_[i + 1];
        bool lead = true;  // RFC 5952 without '::' compression: simple and unambiguous
        for (int sh = 12; sh >= 0; sh -= 4) {
          const unsigned d = (v >> sh) & 0xF;
          if (lead && d == 0 && sh) continue;
          lead = false;
          s += hex[d];
        }
      }
      return s + "]:" + std::to_string(port_);
    }
  }
  return "?";
}

namespace detail {
inline std::optional<std::uint32_t> parse_uint(std::string_view s, std::uint32_t max, int base = 10) {
  if (s.empty()) return std::nullopt;
  std::uint32_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v, base);
  if (ec != std::errc{} || p != s.data() + s.size() || v > max) return std::nullopt;
  return v;
}
}  // namespace detail

inline std::optional<address> address::parse(std::string_view text) {
  if (text.starts_with("sim:")) {
    auto i = detail::parse_uint(text.substr(4), 0xFFFFFFFFu);
    if (!i) return std::nullopt;
    return sim(*i);
  }
  if (text.starts_with("[")) {  // [v6]:port
    const auto close = text.find("]:");
    if (close == std::string_view::npos) return std::nullopt;
    auto port = detail::parse_uint(text.substr(close + 2), 65535);
    if (!port) return std::nullopt;
    std::string_view body = text.substr(1, close - 1);
    // expand "::" into the right number of zero groups
    std::array<std::uint16_t, 8> groups{};
    auto parse_groups = [](std::string_view part, std::uint16_t* out, int& n) -> bool {
      n = 0;
      if (part.empty()) return true;
      while (true) {
        const auto colon = part.find(':');
        auto g = detail::parse_uint(part.substr(0, colon), 0xFFFF, 16);
        if (!g || n == 8) return false;
        out[n++] = static_cast<std::uint16_t>(*g);
        if (colon == std::string_view::npos) return true;
        part = part.substr(colon + 1);
      }
    };
    const auto dbl = body.find("::");
    std::uint16_t head[8], tail[8];
    int nh = 0, nt = 0;
    if (dbl == std::string_view::npos) {
      if (!parse_groups(body, head, nh) || nh != 8) return std::nullopt;
    } else {
      if (!parse_groups(body.substr(0, dbl), head, nh) || !parse_groups(body.substr(dbl + 2), tail, nt) ||
          nh + nt > 7)
        return std::nullopt;
    }
    for (int i = 0; i < nh; ++i) groups[i] = head[i];
    for (int i = 0; i < nt; ++i) groups[8 - nt + i] = tail[i];
    std::array<std::uint8_t, 16> ip{};
    for (int i = 0; i < 8; ++i) {
      ip[2 * i] = static_cast<std::uint8_t>(groups[i] >> 8);
      ip[2 * i + 1] = static_cast<std::uint8_t>(groups[i]);
    }
    return ipv6(ip, static_cast<std::uint16_t>(*port));
  }
  const auto colon = text.rfind(':');
  if (colon == std::string_view::npos) return std::nullopt;
  auto port = detail::parse_uint(text.substr(colon + 1), 65535);
  if (!port) return std::nullopt;
  std::array<std::uint8_t, 4> ip{};
  std::string_view host = text.substr(0, colon);
  if (host == "localhost") host = "127.0.0.1";
  for (int i = 0; i < 4; ++i) {
    const auto dot = host.find('.');
    if ((i < 3) == (dot == std::string_view::npos)) return std::nullopt;
    auto octet = detail::parse_uint(host.substr(0, dot), 255);
    if (!octet) return std::nullopt;
    ip[i] = static_cast<std::uint8_t>(*octet);
    host = dot == std::string_view::npos ? std::string_view{} : host.substr(dot + 1);
  }
  return ipv4(ip, static_cast<std::uint16_t>(*port));
}

}  // namespace dcp

template <>
struct std::hash<dcp::address> {
  std::size_t operator()(const dcp::address& a) const noexcept { return a.hash(); }
};
