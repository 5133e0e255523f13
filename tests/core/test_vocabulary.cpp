#include <doctest/doctest.h>

#include <limits>
#include <set>
#include <sstream>
#include <unordered_set>

#include "dcp/core/address.hpp"
#include "dcp/core/error.hpp"
#include "dcp/core/node_id.hpp"
#include "dcp/core/result.hpp"
#include "dcp/core/rng.hpp"
#include "dcp/core/time.hpp"

namespace test_vocabulary {

using namespace dcp;

TEST_CASE("sha1 matches the FIPS 180 test vectors") {
  CHECK(node_id::hash("abc").to_string() == "a9993e364706816aba3e25717850c26c9cd0d89d");
  CHECK(node_id::hash("").to_string() == "da39a3ee5e6b4b0d3255bfef95601890afd80709");
  CHECK(node_id::hash("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq").to_string() ==
        "84983e441c3bd26ebaae4aa1f95129e5e54670f1");
  std::string million(1000000, 'a');
  CHECK(node_id::hash(million).to_string() == "34aa973cd4c4daa4f61eeb2bdbad27316534016f");
}

TEST_CASE("node_id: bytes, hex, order, hash") {
  const auto a = node_id::hash("a"), b = node_id::hash("b");
  CHECK(node_id::from_hex(a.to_string()) == a);
  CHECK_FALSE(node_id::from_hex("xyz"));
  CHECK_FALSE(node_id::from_hex(std::string(40, 'g')));
  CHECK(node_id::from_bytes(a.bytes()) == a);
  CHECK_FALSE(node_id::from_bytes(byte_view(a.bytes()).first(19)));
  CHECK((a < b) == (a.to_string() < b.to_string()));  // big-endian order is the ring's order
  std::unordered_set<node_id> s{a, b, a};
  CHECK(s.size() == 2);
  std::ostringstream os;
  os << a;
  CHECK(os.str() == a.to_string().substr(0, 8));
}

TEST_CASE("node_id arithmetic: xor, bits, digits, ring") {
  const auto x = node_id::from_u64(0xF0F0000000000000ull);
  CHECK(x.bit(0));
  CHECK_FALSE(x.bit(4));
  CHECK(x.digit(0, 4) == 0xF);
  CHECK(x.digit(1, 4) == 0x0);
  CHECK((x ^ x) == node_id{});
  CHECK(x.common_prefix_bits(x) == 160);
  CHECK(node_id::from_u64(0x8000000000000000ull).common_prefix_bits(node_id{}) == 0);
  CHECK(node_id::pow2(0).log2() == 0);
  CHECK(node_id::pow2(159).log2() == 159);
  CHECK(node_id{}.log2() == -1);
  // modular ring: max + 1 == 0, 0 - 1 == max
  CHECK(node_id::max() + node_id::pow2(0) == node_id{});
  CHECK(node_id{} - node_id::pow2(0) == node_id::max());
  rng r(7);
  for (int i = 0; i < 200; ++i) {
    const auto a = node_id::random(r), b = node_id::random(r);
    CHECK((a + b) - b == a);
    CHECK(((a ^ b) ^ b) == a);
    CHECK(node_id::in_half_open(b, a, b));
    CHECK_FALSE(node_id::in_open(a, a, b));
    CHECK(node_id::in_open(a + node_id::pow2(0), a, a + node_id::pow2(0) + node_id::pow2(0)));
  }
}

TEST_CASE("address: print, parse, order") {
  CHECK(address::sim(42).to_string() == "sim:42");
  CHECK(address::parse("sim:42") == address::sim(42));
  CHECK(address::loopback(7000).to_string() == "127.0.0.1:7000");
  CHECK(address::parse("127.0.0.1:7000") == address::loopback(7000));
  CHECK(address::parse("localhost:7000") == address::loopback(7000));
  auto v6 = address::parse("[::1]:80");
  REQUIRE(v6);
  CHECK(v6->kind() == address::family::ipv6);
  CHECK(v6->to_string() == "[::1]:80");
  CHECK(address::parse(v6->to_string()) == v6);
  CHECK(address::parse("[fe80::1:2]:9") == address::parse("[fe80:0:0:0:0:0:1:2]:9"));
  for (const char* bad : {"", "1.2.3:4", "1.2.3.4", "1.2.3.256:1", "1.2.3.4:70000", "sim:", "sim:x", "[::1]",
                          "[1:2:3:4:5:6:7:8:9]:1", "a_b:1", "1.2.3.4:-1"})
    CHECK_MESSAGE(!address::parse(bad), bad);
  CHECK(address::sim(1) < address::sim(2));
  CHECK(address{}.empty());
  CHECK(std::hash<address>{}(address::sim(3)) == std::hash<address>{}(address::sim(3)));
}

TEST_CASE("rng: deterministic, unbiased enough, helpers in range") {
  rng a(1), b(1), c(2);
  for (int i = 0; i < 100; ++i) {
    const auto x = a();
    CHECK(x == b());
  }
  CHECK(a() != c());
  std::array<int, 10> hist{};
  for (int i = 0; i < 100000; ++i) ++hist[a.below(10)];
  for (int h : hist) CHECK(std::abs(h - 10000) < 600);  // ~6 sigma
  for (int i = 0; i < 1000; ++i) {
    const auto v = a.between(-3, 3);
    CHECK(v >= -3);
    CHECK(v <= 3);
    const double u = a.uniform();
    CHECK(u >= 0);
    CHECK(u < 1);
  }
  CHECK_FALSE(a.chance(0));
  CHECK(a.chance(1));
  std::vector<int> v{1, 2, 3, 4, 5, 6};
  auto s = a.sample(std::span<int>(v), 3);
  CHECK(s.size() == 3);
  CHECK(std::set<int>(v.begin(), v.end()).size() == 6);  // a permutation, nothing lost
}

TEST_CASE("errors: category, messages, result") {
  std::error_code ec = errc::frame_too_large;
  CHECK(ec.category().name() == std::string("dcp"));
  CHECK(ec.message() == "frame larger than the configured maximum");
  result<int> ok = 3;
  result<int> bad = errc::not_found;
  CHECK(ok.has_value());
  CHECK(*ok == 3);
  CHECK_FALSE(bad);
  CHECK(bad.error() == errc::not_found);
  CHECK_THROWS_AS(bad.value(), std::system_error);
}

TEST_CASE("parse_duration: one number, one unit; anything else is nullopt, never an exception") {
  using namespace std::chrono_literals;
  CHECK(dcp::parse_duration("250ms") == dcp::duration(250ms));
  CHECK(dcp::parse_duration("2s") == dcp::duration(2s));
  CHECK(dcp::parse_duration("1m") == dcp::duration(1min));
  CHECK(dcp::parse_duration("3h") == dcp::duration(3h));
  CHECK(dcp::parse_duration("7us") == dcp::duration(7us));
  CHECK(dcp::parse_duration("9ns") == dcp::duration(9ns));
  for (const char* bad : {"", "ms", "0s", "-1s", "1", "1 s", "1sec", "1.5s", "s1", "1ms2", "99999999999999999999999s",
                          "9223372036854775807s", "3000000h"})
    CHECK_MESSAGE(!dcp::parse_duration(bad), bad);
  CHECK(dcp::parse_duration("9223372036854775807ns") == dcp::duration(std::numeric_limits<std::int64_t>::max()));
}

}  // namespace test_vocabulary
