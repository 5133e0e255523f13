#pragma once
// address: where a node can be reached.
//
// One value type for both worlds, so that a protocol can put addresses in its
// messages (HyParView's FORWARD_JOIN, a DHT contact) and run unchanged:
//   - sim:  node i of a dcp::sim::simulator, printed "sim:i";
//   - ipv4 / ipv6: a host and port for the Asio runtime, "127.0.0.1:7000",
//     "[::1]:7000", "[fe80::1%eth0]:7000" (zone-scoped), "[::ffff:10.0.0.1]:7000"
//     (IPv4-mapped, kept as IPv6); parsed and printed by Asio (RFC 5952);
//   - name: a DNS host name and port, "db-0.db.default.svc:7000", resolved
//     only at the edge: dcp::net's TCP transport resolves it on every
//     connection attempt (a Kubernetes service or pod name may move).
// Addresses are ordered, hashable, printable, parseable and serializable, and
// stay a trivially copyable 24-byte value: a host name is kept once per
// process in a table (bounded: max_host_names) and the address holds a 128-bit
// digest of it, so equal names are equal addresses and order the same way in
// every process.
#include <array>
#include <charconv>
#include <compare>
#include <cstdint>
#include <cstring>
#include <functional>
#include <mutex>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <unordered_map>

#include <asio/ip/address.hpp>
#include <cereal/cereal.hpp>
#include <cereal/types/string.hpp>

#include "dcp/core/detail/sha1.hpp"

namespace dcp {

namespace detail {
/// The process-wide table of host names that addresses refer to by digest.
/// Append-only (an address of a name stays printable for the life of the
/// process) and bounded: names come from configuration and from peers'
/// messages, and a peer must not be able to grow it without limit.
class host_name_table {
 public:
  using key = std::array<std::uint8_t, 16>;
  static constexpr std::size_t capacity = 4096;

  static host_name_table& instance() {
    static host_name_table t;
    return t;
  }
  /// The key of `name` (already validated and lower-cased); nullopt when the
  /// table is full and `name` is not in it.
  std::optional<key> intern(std::string_view name) {
    sha1 h;
    h.update({reinterpret_cast<const std::uint8_t*>(name.data()), name.size()});
    const auto d = h.finish();
    key k{};
    std::memcpy(k.data(), d.data(), k.size());
    std::lock_guard lock(mutex_);
    if (names_.contains(k)) return k;
    if (names_.size() >= capacity) return std::nullopt;
    names_.emplace(k, std::string(name));
    return k;
  }
  std::string lookup(const key& k) const {
    std::lock_guard lock(mutex_);
    auto it = names_.find(k);
    return it == names_.end() ? std::string("?") : it->second;
  }

 private:
  struct key_hash {
    std::size_t operator()(const key& k) const noexcept {
      std::size_t h;
      std::memcpy(&h, k.data(), sizeof h);
      return h;
    }
  };
  mutable std::mutex mutex_;
  std::unordered_map<key, std::string, key_hash> names_;
};

inline std::optional<std::uint32_t> parse_uint(std::string_view s, std::uint32_t max, int base = 10) {
  if (s.empty()) return std::nullopt;
  std::uint32_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v, base);
  if (ec != std::errc{} || p != s.data() + s.size() || v > max) return std::nullopt;
  return v;
}

/// RFC 1123 host name, lower-cased; nullopt if it is not one. A name whose
/// last label is all digits is refused: it is a mistyped IPv4 address.
inline std::optional<std::string> normalize_host_name(std::string_view name) {
  if (name.empty() || name.size() > 253) return std::nullopt;
  if (name.back() == '.') name.remove_suffix(1);  // the root: "a.b." is "a.b"
  std::string out;
  out.reserve(name.size());
  std::size_t label = 0;
  bool all_digits = true;
  for (std::size_t i = 0; i <= name.size(); ++i) {
    const char c = i < name.size() ? name[i] : '.';
    if (c == '.') {
      if (label == 0 || label > 63 || out.back() == '-') return std::nullopt;
      if (i == name.size() && all_digits) return std::nullopt;
      label = 0;
      all_digits = true;
      if (i < name.size()) out += '.';
      continue;
    }
    const bool digit = c >= '0' && c <= '9';
    const bool letter = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
    if (!digit && !letter && c != '-') return std::nullopt;
    if (c == '-' && label == 0) return std::nullopt;
    all_digits &= digit;
    out += static_cast<char>(letter && c <= 'Z' ? c - 'A' + 'a' : c);
    ++label;
  }
  return out;
}
}  // namespace detail

class address {
 public:
  enum class family : std::uint8_t { none = 0, sim = 1, ipv4 = 2, ipv6 = 3, name = 4 };
  /// How many distinct host names a process can hold (see the header comment).
  static constexpr std::size_t max_host_names = detail::host_name_table::capacity;

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
  /// `scope`: the zone (interface index) of a link-local address, 0 for none.
  static constexpr address ipv6(const std::array<std::uint8_t, 16>& ip, std::uint16_t port,
                                std::uint32_t scope = 0) noexcept {
    address a;
    a.family_ = family::ipv6;
    a.bytes_ = ip;
    a.port_ = port;
    a.scope_ = scope;
    return a;
  }
  static constexpr address loopback(std::uint16_t port) noexcept { return ipv4({127, 0, 0, 1}, port); }
  /// An Asio IP address and a port.
  static address ip(const asio::ip::address& ip, std::uint16_t port) noexcept {
    if (ip.is_v4()) return ipv4(ip.to_v4().to_bytes(), port);
    const auto v6 = ip.to_v6();
    return ipv6(v6.to_bytes(), port, static_cast<std::uint32_t>(v6.scope_id()));
  }
  /// A DNS host name (RFC 1123, case-insensitive) and a port; nullopt if
  /// `name` is not a host name or the process already holds max_host_names.
  static std::optional<address> host(std::string_view name, std::uint16_t port) {
    auto normal = detail::normalize_host_name(name);
    if (!normal) return std::nullopt;
    auto key = detail::host_name_table::instance().intern(*normal);
    if (!key) return std::nullopt;
    address a;
    a.family_ = family::name;
    a.bytes_ = *key;
    a.port_ = port;
    return a;
  }

  /// Parses "sim:3", "10.0.0.1:7000", "[::1]:7000", "[fe80::1%eth0]:7000" or
  /// "host.example:7000" ("localhost" is 127.0.0.1); nullopt if malformed.
  /// IPv6 must be in brackets.
  static std::optional<address> parse(std::string_view text);

  constexpr family kind() const noexcept { return family_; }
  constexpr bool is_sim() const noexcept { return family_ == family::sim; }
  /// A numeric IP address.
  constexpr bool is_ip() const noexcept { return family_ == family::ipv4 || family_ == family::ipv6; }
  constexpr bool is_name() const noexcept { return family_ == family::name; }
  /// Reachable over a network: an IP address or a host name.
  constexpr bool is_network() const noexcept { return is_ip() || is_name(); }
  constexpr bool empty() const noexcept { return family_ == family::none; }
  constexpr explicit operator bool() const noexcept { return !empty(); }

  /// The simulator index; only meaningful when is_sim().
  constexpr std::uint32_t sim_index() const noexcept {
    return std::uint32_t{bytes_[0]} << 24 | std::uint32_t{bytes_[1]} << 16 | std::uint32_t{bytes_[2]} << 8 |
        std::uint32_t{bytes_[3]};
  }
  constexpr std::uint16_t port() const noexcept { return port_; }
  /// The same host with another port.
  constexpr address with_port(std::uint16_t port) const noexcept {
    address a = *this;
    if (is_network()) a.port_ = port;
    return a;
  }
  constexpr const std::array<std::uint8_t, 16>& ip_bytes() const noexcept { return bytes_; }
  /// The IPv6 zone (interface index), 0 if none.
  constexpr std::uint32_t scope_id() const noexcept { return scope_; }
  /// The Asio IP address; only meaningful when is_ip().
  asio::ip::address ip_address() const {
    if (family_ == family::ipv4) return asio::ip::address_v4({bytes_[0], bytes_[1], bytes_[2], bytes_[3]});
    return asio::ip::address_v6(bytes_, scope_);
  }
  /// The host name (lower case); only meaningful when is_name().
  std::string host_name() const { return detail::host_name_table::instance().lookup(bytes_); }
  /// The IP address or the host name, without the port.
  std::string host_string() const {
    if (is_ip()) return ip_address().to_string();
    if (is_name()) return host_name();
    return {};
  }

  std::string to_string() const;

  constexpr auto operator<=>(const address&) const noexcept = default;
  constexpr bool operator==(const address&) const noexcept = default;

  std::size_t hash() const noexcept {
    std::uint64_t h = detail::fnv1a(bytes_);
    return static_cast<std::size_t>(detail::mix64(h ^ (std::uint64_t{port_} << 8) ^
                                                  static_cast<std::uint64_t>(family_) ^ (std::uint64_t{scope_} << 24)));
  }

  // Wire format: a family byte, then its fields. Codes 0-3 are those of dcp
  // 0.1 (none, sim, ipv4, unscoped ipv6); a scoped IPv6 address (4) and a
  // host name (5) have codes of their own, which older peers refuse.
  template <class Archive> void save(Archive& ar) const {
    switch (family_) {
      case family::none:
        ar(std::uint8_t{0});
        break;
      case family::sim:
        ar(std::uint8_t{1}, sim_index());
        break;
      case family::ipv4:
        ar(std::uint8_t{2}, cereal::binary_data(bytes_.data(), 4), port_);
        break;
      case family::ipv6:
        if (scope_ == 0)
          ar(std::uint8_t{3}, cereal::binary_data(bytes_.data(), 16), port_);
        else
          ar(std::uint8_t{4}, cereal::binary_data(bytes_.data(), 16), port_, scope_);
        break;
      case family::name:
        ar(std::uint8_t{5}, host_name(), port_);
        break;
    }
  }
  template <class Archive> void load(Archive& ar) {
    std::uint8_t f = 0;
    ar(f);
    *this = address{};
    switch (f) {
      case 0:
        break;
      case 1: {
        std::uint32_t i = 0;
        ar(i);
        *this = sim(i);
        break;
      }
      case 2:
        family_ = family::ipv4;
        ar(cereal::binary_data(bytes_.data(), 4), port_);
        break;
      case 3:
        family_ = family::ipv6;
        ar(cereal::binary_data(bytes_.data(), 16), port_);
        break;
      case 4:
        family_ = family::ipv6;
        ar(cereal::binary_data(bytes_.data(), 16), port_, scope_);
        break;
      case 5: {
        std::string name;  // the archive bounds its length by the bytes left in the frame
        std::uint16_t port = 0;
        ar(name, port);
        auto a = host(name, port);
        if (!a) throw cereal::Exception("address: not a host name, or the host-name table is full");
        *this = *a;
        break;
      }
      default:
        throw cereal::Exception("address: unknown family " + std::to_string(f));
    }
  }

 private:
  family family_ = family::none;
  std::uint16_t port_ = 0;
  std::array<std::uint8_t, 16> bytes_{};  // sim index, IP, or host-name digest
  std::uint32_t scope_ = 0;               // IPv6 zone
};

inline std::ostream& operator<<(std::ostream& os, const address& a) { return os << a.to_string(); }

inline std::string address::to_string() const {
  switch (family_) {
    case family::none:
      return "none";
    case family::sim:
      return "sim:" + std::to_string(sim_index());
    case family::ipv4:
      return ip_address().to_string() + ":" + std::to_string(port_);
    case family::ipv6:
      return "[" + ip_address().to_string() + "]:" + std::to_string(port_);
    case family::name:
      return host_name() + ":" + std::to_string(port_);
  }
  return "?";
}

inline std::optional<address> address::parse(std::string_view text) {
  if (text.starts_with("sim:")) {
    auto i = detail::parse_uint(text.substr(4), 0xFFFFFFFFu);
    if (!i) return std::nullopt;
    return sim(*i);
  }
  const auto colon = text.rfind(':');
  if (colon == std::string_view::npos) return std::nullopt;
  auto port = detail::parse_uint(text.substr(colon + 1), 65535);
  if (!port) return std::nullopt;
  const auto p = static_cast<std::uint16_t>(*port);
  std::string_view host_part = text.substr(0, colon);
  std::error_code ec;
  if (host_part.starts_with('[')) {  // [v6]:port, [v6%zone]:port
    if (!host_part.ends_with(']')) return std::nullopt;
    const auto v6 = asio::ip::make_address_v6(std::string(host_part.substr(1, host_part.size() - 2)), ec);
    if (ec) return std::nullopt;
    return ip(v6, p);
  }
  if (host_part.find(':') != std::string_view::npos) return std::nullopt;  // IPv6 needs brackets
  if (host_part == "localhost") return loopback(p);
  const auto v4 = asio::ip::make_address_v4(std::string(host_part), ec);  // inet_pton: dotted quad only
  if (!ec) return ip(v4, p);
  return host(host_part, p);
}

}  // namespace dcp

template <> struct std::hash<dcp::address> {
  std::size_t operator()(const dcp::address& a) const noexcept { return a.hash(); }
};
