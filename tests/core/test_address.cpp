#include <doctest/doctest.h>

#include <set>
#include <string>
#include <unordered_set>
#include <vector>

#include "dcp/core/address.hpp"
#include "dcp/core/rng.hpp"
#include "dcp/wire/message.hpp"

namespace test_address {

using namespace dcp;

namespace {
struct carries {
  static constexpr message_type wire_id = 1;
  address a;
  template <class Ar> void serialize(Ar& ar) { ar(a); }
};

bytes encoded(const address& a) {
  bytes out;
  wire::encode(carries{a}, out);
  return out;
}
std::optional<address> decoded(byte_view b) {
  carries c;
  if (wire::decode(b, c)) return std::nullopt;
  return c.a;
}
void round_trips(const address& a) {
  INFO(a.to_string());
  const auto parsed = address::parse(a.to_string());
  REQUIRE(parsed);
  CHECK(*parsed == a);
  CHECK(parsed->hash() == a.hash());
  CHECK(parsed->to_string() == a.to_string());
  const auto back = decoded(encoded(a));
  REQUIRE(back);
  CHECK(*back == a);
}
}  // namespace

TEST_CASE("address: IPv6 printed as every other tool prints it (RFC 5952), and parsed back") {
  CHECK(address::parse("[::]:1")->to_string() == "[::]:1");
  CHECK(address::parse("[0:0:0:0:0:0:0:1]:80")->to_string() == "[::1]:80");
  CHECK(address::parse("[2001:DB8:0:0:1:0:0:1]:443")->to_string() == "[2001:db8::1:0:0:1]:443");
  CHECK(address::parse("[fe80::1:2]:9") == address::parse("[fe80:0:0:0:0:0:1:2]:9"));
  // IPv4-mapped: kept as IPv6, printed with the dotted quad.
  const auto mapped = address::parse("[::ffff:10.0.0.1]:7000");
  REQUIRE(mapped);
  CHECK(mapped->kind() == address::family::ipv6);
  CHECK(mapped->to_string() == "[::ffff:10.0.0.1]:7000");
  CHECK(mapped->ip_address().to_v6().is_v4_mapped());
  // Zone-scoped (numeric zone: the interface index; names need the interface to exist).
  const auto scoped = address::parse("[fe80::1%3]:7000");
  REQUIRE(scoped);
  CHECK(scoped->scope_id() == 3);
  CHECK(scoped != address::parse("[fe80::1]:7000"));
  CHECK(scoped != address::parse("[fe80::1%4]:7000"));
  round_trips(*scoped);
  if (auto lo = address::parse("[fe80::1%lo]:7000")) CHECK(lo->scope_id() != 0);  // where "lo" exists
  for (const char* bad :
       {"::1:80", "[::1]80", "[::1:80", "[:::1]:80", "[1:2:3:4:5:6:7:8:9]:1", "[::1]:65536", "[10.0.0.1]:1", "[::g]:1"})
    CHECK_MESSAGE(!address::parse(bad), bad);
}

TEST_CASE("address: host names are addresses, case-insensitive, resolved only at the edge") {
  const auto a = address::parse("db-0.DB.default.svc:7000");
  REQUIRE(a);
  CHECK(a->is_name());
  CHECK(a->is_network());
  CHECK_FALSE(a->is_ip());
  CHECK(a->host_name() == "db-0.db.default.svc");
  CHECK(a->to_string() == "db-0.db.default.svc:7000");
  CHECK(a == address::parse("db-0.db.default.svc.:7000"));  // the root label
  CHECK(a == address::host("DB-0.db.default.svc", 7000));
  CHECK(a != address::parse("db-0.db.default.svc:7001"));
  CHECK(a != address::parse("db-1.db.default.svc:7000"));
  CHECK(a->with_port(1).port() == 1);
  CHECK(address::parse("localhost:7") == address::loopback(7));  // as before: no resolver needed
  CHECK(address::host("localhost", 7)->is_name());
  round_trips(*a);
  round_trips(*address::parse("node7:1"));
  for (const char* bad :
       {"a_b:1", "-a:1", "a-:1", "a..b:1", ".a:1", "1.2.3:4", "10.0.0.256:1", "a b:1", "x:", ":1", "é.example:1"})
    CHECK_MESSAGE(!address::parse(bad), bad);
  CHECK_FALSE(address::parse(std::string(64, 'a') + ".example:1"));  // a label of 64
  CHECK(address::parse(std::string(63, 'a') + ".example:1"));
  std::string long_name;
  while (long_name.size() < 260) long_name += "abcdefghi.";
  CHECK_FALSE(address::parse(long_name + "x:1"));  // longer than 253
}

TEST_CASE("address: order and hash agree with equality, across families and random values") {
  rng r(7);
  std::vector<address> all;
  for (int i = 0; i < 200; ++i) {
    all.push_back(address::sim(static_cast<std::uint32_t>(r.below(50))));
    all.push_back(
        address::ipv4({10, 0, 0, static_cast<std::uint8_t>(r.below(4))}, static_cast<std::uint16_t>(r.below(3))));
    std::array<std::uint8_t, 16> ip{};
    ip[15] = static_cast<std::uint8_t>(r.below(4));
    all.push_back(address::ipv6(ip, static_cast<std::uint16_t>(r.below(3)), static_cast<std::uint32_t>(r.below(2))));
    all.push_back(
        *address::host("n" + std::to_string(r.below(5)) + ".example", static_cast<std::uint16_t>(r.below(3))));
  }
  std::set<address> ordered(all.begin(), all.end());
  std::unordered_set<address> hashed(all.begin(), all.end());
  CHECK(ordered.size() == hashed.size());
  for (const auto& a : ordered) {
    round_trips(a.is_sim() ? a : a.with_port(static_cast<std::uint16_t>(a.port() + 1)));
    CHECK(hashed.contains(a));
  }
}

TEST_CASE("address: the wire format of dcp 0.1 is unchanged; new forms have codes of their own") {
  // The payload's endianness flag (1: little), the family byte, then: sim
  // index (u32), IPv4 (4 bytes, u16 port), IPv6 (16 bytes, u16 port).
  CHECK(encoded(address{}) == bytes{1, 0});
  CHECK(encoded(address::sim(5)) == bytes{1, 1, 5, 0, 0, 0});
  CHECK(encoded(address::ipv4({10, 0, 0, 1}, 7000)) == bytes{1, 2, 10, 0, 0, 1, 0x58, 0x1B});
  const bytes v6_01{1, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 80, 0};
  CHECK(encoded(*address::parse("[::1]:80")) == v6_01);
  CHECK(decoded(v6_01) == address::parse("[::1]:80"));
  CHECK(encoded(*address::parse("[fe80::1%3]:80"))[1] == 4);
  CHECK(encoded(*address::parse("a.example:80"))[1] == 5);
  // hostile input: an unknown family, a name that is not one, truncation
  CHECK_FALSE(decoded(bytes{1, 9}));
  bytes bad_name = encoded(*address::parse("a.example:80"));
  bad_name[bad_name.size() - 3] = '_';  // "a.exampl_": the last byte of the name, before the u16 port
  CHECK_FALSE(decoded(bad_name));
  bytes whole = encoded(*address::parse("a.example:80"));
  for (std::size_t n = 0; n < whole.size(); ++n) CHECK_FALSE(decoded(byte_view(whole).first(n)));
}

}  // namespace test_address
