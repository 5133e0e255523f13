// udp_transport (dcp/net/udp_transport.hpp): what only a datagram transport
// has to show. Hostile datagrams, the datagram size bound, attribution to the
// source address, bounded queues. The properties it shares with the stream
// transports run in the shared suite (test_transport.cpp, test_keyring.cpp).
// Real sockets on loopback.
#include <doctest/doctest.h>

#include <limits>
#include <random>
#include <string>
#include <vector>

#include <asio/ip/udp.hpp>

#include "dcp/dht/kademlia.hpp"
#include "dcp/dht/store.hpp"
#include "dcp/net.hpp"
#include "echo.hpp"

namespace test_udp {

using namespace dcp;
using dcp::test::run_until;
using echo = dcp::test::echo<net::env>;

namespace {
constexpr protocol_id echo_id = 7;

net::config loopback_config(std::uint16_t port = 0) {
  net::config c;
  c.listen = address::loopback(port);
  c.seed = 13;
  return c;
}

bytes frame_of(protocol_id p, message_type t, byte_view payload) {
  bytes out(wire::header_size + payload.size());
  wire::write_header(out.data(), {p, t, static_cast<std::uint32_t>(payload.size())});
  std::copy(payload.begin(), payload.end(), out.begin() + wire::header_size);
  return out;
}
bytes note_frame(const std::string& body) {
  bytes out;
  REQUIRE(!wire::encode_frame(echo_id, dcp::test::echo_msg::note{body}, out));
  return out;
}
bytes operator+(bytes x, const bytes& y) {
  x.insert(x.end(), y.begin(), y.end());
  return x;
}

/// A raw UDP socket on loopback (any 127.x.y.z): what an attacker sends from.
struct raw_udp {
  explicit raw_udp(asio::io_context& io, const char* from = "127.0.0.1") : socket(io) {
    socket.open(asio::ip::udp::v4());
    socket.bind({asio::ip::make_address(from), 0});
  }
  void send(const address& to, const bytes& datagram) {
    socket.send_to(asio::buffer(datagram), asio::ip::udp::endpoint(to.ip_address(), to.port()));
  }
  address self() const { return address::ip(socket.local_endpoint().address(), socket.local_endpoint().port()); }
  asio::ip::udp::socket socket;
};
}  // namespace

TEST_CASE("udp: frames are attributed to the datagram's source, which is the sender's listening address") {
  asio::io_context io;
  net::plaintext_udp_node a(io, loopback_config()), b(io, loopback_config());
  auto& ea = a.add<echo>(echo_id);
  auto& eb = b.add<echo>(echo_id);
  a.start();
  b.start();
  std::string answer;
  ea.call(b.self(), "ping", [&](std::error_code ec, std::string body) {
    REQUIRE(!ec);
    answer = std::move(body);
  });
  REQUIRE(ea.tell(b.self(), "note"));
  REQUIRE(ea.tell(a.self(), "to self"));  // delivered locally
  REQUIRE(run_until(io, [&] { return answer == "ping" && eb.notes.size() == 1 && ea.notes.size() == 1; }));
  CHECK(eb.notes[0].from == a.self());
  CHECK(ea.notes[0].from == a.self());
  CHECK(a.connections() == 0);  // nothing queued: UDP holds no connection
  CHECK(a.metrics().drops() == 0);
  CHECK(b.metrics().drops() == 0);
  CHECK(!a.transport().authenticated);
}

TEST_CASE("udp: the source address is the sender's word: a spoofer is believed (why it is plaintext only)") {
  // A datagram sent from another socket is attributed to that socket's
  // address: whoever can choose a source address can speak for any node.
  // This test pins the documented weakness down, so that nobody mistakes the
  // transport for an authenticated one.
  asio::io_context io;
  net::plaintext_udp_node b(io, loopback_config());
  auto& eb = b.add<echo>(echo_id);
  b.start();
  raw_udp liar(io, "127.0.0.3");
  liar.send(b.self(), note_frame("believed"));
  REQUIRE(run_until(io, [&] { return eb.notes.size() == 1; }));
  CHECK(eb.notes[0].from == liar.self());
  CHECK(eb.notes[0].body == "believed");
}

TEST_CASE("udp: hostile datagrams are dropped one by one, counted by reason, and the node keeps serving") {
  asio::io_context io;
  auto cfg = loopback_config();
  cfg.limits.max_frame_size = 1024;
  net::plaintext_udp_node a(io, cfg), b(io, cfg);
  auto& ea = a.add<echo>(echo_id);
  auto& eb = b.add<echo>(echo_id);
  a.start();
  b.start();
  raw_udp attacker(io);
  int round = 0;
  auto attack = [&](const bytes& datagram, errc expected) {
    ++round;
    const auto before = b.metrics().drops(0, expected);
    const std::size_t heard = eb.notes.size();
    attacker.send(b.self(), datagram);
    REQUIRE(run_until(io, [&] { return b.metrics().drops(0, expected) == before + 1; }));
    CHECK(eb.notes.size() == heard);  // nothing of it was delivered
    // a and b still talk both ways
    REQUIRE(ea.tell(b.self(), "r" + std::to_string(round)));
    REQUIRE(eb.tell(a.self(), "r" + std::to_string(round)));
    REQUIRE(run_until(
        io, [&] { return eb.notes.size() == heard + 1 && ea.notes.size() == static_cast<std::size_t>(round); }));
    CHECK(eb.notes.back().body == "r" + std::to_string(round));
  };
  attack(to_bytes("GET / HTTP/1.1\r\nHost: dcp\r\n\r\n"), errc::bad_magic);
  bytes v = note_frame("x");
  v[2] = 9;
  attack(v, errc::unsupported_version);
  bytes f = note_frame("x");
  f[3] = 1;
  attack(f, errc::bad_flags);
  bytes big(wire::header_size + 8);
  wire::write_header(big.data(), {echo_id, 3, 0xFFFFFFF0u});
  attack(big, errc::frame_too_large);                                      // a header claiming more than max_frame_size
  attack(frame_of(echo_id, 3, bytes(1500, 0x55)), errc::frame_too_large);  // a datagram above max_datagram_size
  attack(bytes{0xDC, 0x50, 1}, errc::truncated_frame);                     // shorter than a header
  bytes cut = note_frame("half a frame");
  cut.resize(cut.size() - 3);
  attack(cut, errc::truncated_frame);                                      // shorter than its header says
  attack(note_frame("two") + note_frame("frames"), errc::trailing_bytes);  // one frame per datagram
  attack(frame_of(0, 1, to_bytes("\x01\x07")), errc::bad_handshake);       // protocol 0: no transport messages over UDP
  // A frame whose payload does not decode is dropped for its protocol only.
  attacker.send(b.self(), frame_of(echo_id, 3, to_bytes("\x01\xFF\xFF\xFF\xFF\xFF\xFF\xFF\x7F")));
  attacker.send(b.self(), frame_of(99, 1, {}));
  REQUIRE(run_until(io, [&] { return b.metrics().drops(99, errc::unknown_protocol) == 1; }));
  CHECK(b.metrics().drops(echo_id, errc::malformed_payload) == 1);
  CHECK(a.metrics().drops() == 0);
}

TEST_CASE(
    "udp: random datagrams, many seeds: each is delivered or dropped and counted, exactly once; the node keeps serving") {
  // Valid frames of every kind, then mutated at random (bytes flipped, cut,
  // extended, the length rewritten) or replaced by noise. Whatever arrives,
  // the node accounts for every datagram once: decoded and delivered
  // (metrics' received) or dropped for a reason (drops). Loopback loses
  // nothing at 50 datagrams in flight, so a missing account is a bug.
  asio::io_context io;
  net::plaintext_udp_node a(io, loopback_config()), b(io, loopback_config());
  auto& ea = a.add<echo>(echo_id);
  auto& eb = b.add<echo>(echo_id);
  a.start();
  b.start();
  raw_udp attacker(io);
  std::vector<bytes> seeds;
  seeds.push_back(note_frame("a note"));
  seeds.push_back(note_frame(std::string(1300, 'n')));
  bytes request, reply;
  REQUIRE(!wire::encode_frame(echo_id, dcp::test::echo_msg::request{5, "ask"}, request));
  REQUIRE(!wire::encode_frame(echo_id, dcp::test::echo_msg::reply{6, "unasked"}, reply));
  seeds.push_back(request);
  seeds.push_back(reply);
  seeds.push_back(frame_of(99, 1, to_bytes("elsewhere")));
  seeds.push_back(frame_of(0, 1, to_bytes("transport")));
  const std::size_t buffer = b.transport().read_buffer_bytes();
  std::uint64_t sent = 0;
  auto accounted = [&] { return b.metrics().total().received + b.metrics().drops(); };
  for (std::uint64_t seed = 1; seed <= 20; ++seed) {
    std::mt19937_64 gen(seed);
    auto below = [&](std::size_t n) { return static_cast<std::size_t>(gen() % n); };
    for (int batch = 0; batch < 4; ++batch) {
      for (int i = 0; i < 50; ++i) {
        bytes d = seeds[below(seeds.size())];
        switch (below(6)) {
          case 0:
            break;  // as is
          case 1:
            for (int k = 0, n = 1 + static_cast<int>(below(4)); k < n; ++k)
              d[below(d.size())] ^= static_cast<std::uint8_t>(1 + below(255));
            break;
          case 2:
            d.resize(below(d.size()));
            break;
          case 3:
            d.resize(d.size() + 1 + below(200), static_cast<std::uint8_t>(gen()));
            break;
          case 4: {
            const auto len = static_cast<std::uint32_t>(gen());
            for (int k = 0; k < 4; ++k) d[8 + static_cast<std::size_t>(k)] = static_cast<std::uint8_t>(len >> (8 * k));
            break;
          }
          default:
            d.resize(below(1500));
            for (auto& x : d) x = static_cast<std::uint8_t>(gen());
        }
        attacker.send(b.self(), d);
        ++sent;
      }
      REQUIRE(run_until(io, [&] { return accounted() >= sent; }));
      CHECK(accounted() == sent);
    }
  }
  CHECK(b.transport().read_buffer_bytes() == buffer);
  const std::size_t heard = ea.notes.size();
  REQUIRE(eb.tell(a.self(), "still here"));
  REQUIRE(run_until(io, [&] { return ea.notes.size() == heard + 1; }));
  CHECK(ea.notes.back().from == b.self());
}

TEST_CASE("udp: a frame above the datagram bound is refused and counted, never fragmented; larger bounds carry it") {
  asio::io_context io;
  net::plaintext_udp_node a(io, loopback_config()), b(io, loopback_config());
  auto& ea = a.add<echo>(echo_id);
  auto& eb = b.add<echo>(echo_id);
  a.start();
  b.start();
  CHECK(a.transport().max_payload() == 1400 - wire::header_size);
  // The largest note whose frame fits in 1,400 bytes goes; one byte more does not.
  std::size_t n = 1400;
  while (note_frame(std::string(n, 'f')).size() > 1400) --n;
  const std::string fits(n, 'f');
  REQUIRE(ea.tell(b.self(), fits));
  CHECK(!ea.tell(b.self(), std::string(n + 1, 'x')));
  CHECK(a.metrics().drops(echo_id, errc::frame_too_large) == 1);
  CHECK(a.queued_bytes(b.self()) == note_frame(fits).size());
  REQUIRE(run_until(io, [&] { return eb.notes.size() == 1; }));
  CHECK(eb.notes[0].body == fits);

  // Nodes configured for 8 KiB datagrams carry 8 KiB frames; one of them
  // sent to a node with the default bound is dropped there, and counted.
  net::plaintext_udp_node c(io, loopback_config(), {.max_datagram_size = 8192}),
      d(io, loopback_config(), {.max_datagram_size = 8192});
  auto& ec = c.add<echo>(echo_id);
  auto& ed = d.add<echo>(echo_id);
  c.start();
  d.start();
  REQUIRE(ec.tell(d.self(), std::string(8000, 'y')));
  REQUIRE(run_until(io, [&] { return ed.notes.size() == 1; }));
  CHECK(ed.notes[0].body.size() == 8000);
  REQUIRE(ec.tell(b.self(), std::string(8000, 'z')));
  REQUIRE(run_until(io, [&] { return b.metrics().drops(0, errc::frame_too_large) == 1; }));
  CHECK(eb.notes.size() == 1);
  CHECK(b.transport().read_buffer_bytes() == 1401);  // fixed: a large datagram did not grow it

  // Out-of-range bounds are configuration errors, caught at construction.
  CHECK_THROWS_AS(net::plaintext_udp_node(io, loopback_config(), {.max_datagram_size = 65508}), dcp::error);
  CHECK_THROWS_AS(net::plaintext_udp_node(io, loopback_config(), {.max_datagram_size = 10}), dcp::error);
}

TEST_CASE(
    "udp: queues are bounded per peer and in the number of peers; host names and other advertised addresses are refused") {
  asio::io_context io;
  auto cfg = loopback_config();
  cfg.limits.max_frame_size = 1024;
  cfg.limits.max_queued_bytes_per_peer = 4096;
  cfg.max_outbound_connections = 3;  // peers with datagrams queued at once
  net::plaintext_udp_node a(io, cfg);
  auto& ea = a.add<echo>(echo_id);
  a.start();
  // The io_context does not run: nothing leaves.
  for (std::uint16_t p = 1; p <= 3; ++p) REQUIRE(ea.tell(address::loopback(p), "queued"));
  CHECK(a.connections() == 3);
  CHECK(!ea.tell(address::loopback(4), "a fourth peer"));
  CHECK(a.metrics().drops(echo_id, errc::queue_full) == 1);
  std::size_t accepted = 1;
  while (ea.tell(address::loopback(1), std::string(500, 'q'))) ++accepted;
  CHECK(a.queued_bytes(address::loopback(1)) <= 4096);
  const std::size_t first = note_frame("queued").size(), each = note_frame(std::string(500, 'q')).size();
  CHECK(accepted == 1 + (4096 - first) / each);  // every frame that fits, and not one more
  CHECK(a.queued_bytes(address::loopback(1)) == first + (accepted - 1) * each);
  CHECK(a.metrics().drops(echo_id, errc::queue_full) == 2);
  // Host names cannot be sent to: a reply would come from an IP address.
  CHECK(!ea.tell(*address::parse("db-0.example.org:7000"), "by name"));
  CHECK(a.metrics().drops(echo_id, errc::bad_address) == 1);
  CHECK(!ea.tell(*address::parse("[::1]:7000"), "to another family than the socket's"));
  CHECK(a.metrics().drops(echo_id, errc::bad_address) == 2);
  // Sent (to nobody): the queues drain, and nothing ever reports the peers unreachable.
  REQUIRE(run_until(io, [&] { return a.connections() == 0; }));
  io.run_for(std::chrono::milliseconds(50));
  CHECK(ea.unreachable.empty());

  auto adv = loopback_config();
  adv.advertise = *address::parse("127.0.0.2:0");
  CHECK_THROWS_AS(net::plaintext_udp_node(io, adv), dcp::error);
}

TEST_CASE("udp: the datagrams queued for all peers together stay within max_buffered_bytes, and drain to 0") {
  asio::io_context io;
  auto cfg = loopback_config();
  cfg.limits.max_frame_size = 1024;
  cfg.limits.max_queued_bytes_per_peer = 4096;
  cfg.max_buffered_bytes = 8192;  // 8 peers x 4 KiB would be 32 KiB
  net::plaintext_udp_node a(io, cfg);
  auto& ea = a.add<echo>(echo_id);
  a.start();
  // The io_context does not run: nothing leaves.
  std::size_t accepted = 0, refused_with_room = 0;
  for (int round = 0; round < 10; ++round)
    for (std::uint16_t p = 1; p <= 8; ++p) {
      const bool room = a.queued_bytes(address::loopback(p)) + 600 <= cfg.limits.max_queued_bytes_per_peer;
      if (ea.tell(address::loopback(p), std::string(500, 'q')))
        ++accepted;
      else if (room)
        ++refused_with_room;
      CHECK(a.transport().buffered_bytes() <= cfg.max_buffered_bytes);
    }
  std::size_t sum = 0;
  for (std::uint16_t p = 1; p <= 8; ++p) sum += a.queued_bytes(address::loopback(p));
  CHECK(a.transport().buffered_bytes() == sum);
  CHECK(refused_with_room > 0);
  CHECK(a.metrics().counter(0, "buffered_bytes_refused") >= static_cast<std::int64_t>(refused_with_room));
  CHECK(accepted * note_frame(std::string(500, 'q')).size() == sum);
  REQUIRE(run_until(io, [&] { return a.transport().buffered_bytes() == 0; }));
  CHECK(a.connections() == 0);
}

TEST_CASE(
    "udp: what dht_node sends over UDP fits one default datagram (Kademlia at k = 20, the store's bounded messages)") {
  // examples/dht_node.cpp runs Kademlia and the store over 1,400-byte
  // datagrams with keys <= 128 B, values <= 1 KiB and 24 summaries per sync
  // message. Their largest messages, with the longest addresses (IPv6), must
  // fit, or every such send would be refused.
  const std::size_t room = 1400;
  auto frame_size = [](const auto& m) {
    bytes out;
    REQUIRE(!wire::encode_frame(1, m, out));
    return out.size();
  };
  const node_id far = node_id::hash("far");
  const address v6 = *address::parse("[2001:db8:ffff:ffff:ffff:ffff:ffff:ffff]:65535");
  dht::kademlia_msg::nodes reply{~0ull, {far, v6}, {}};
  for (int i = 0; i < 20; ++i) reply.closest.push_back({node_id::hash(std::to_string(i)), v6});
  CHECK(frame_size(reply) <= room);
  dht::store_config sc;
  sc.max_key_size = 128;
  sc.max_value_size = 1024;
  sc.sync_batch = 24;
  dht::store_msg::put put{~0ull,
                          {std::string(sc.max_key_size, 'k'), bytes(sc.max_value_size, 0xCD), ~0ull, ~0ull,
                           std::numeric_limits<std::int64_t>::max(), false}};
  CHECK(frame_size(put) <= room);
  CHECK(frame_size(dht::store_msg::get_reply{~0ull, true, put.it}) <= room);
  dht::store_msg::sync_offer offer;
  for (std::size_t i = 0; i < sc.sync_batch; ++i)
    offer.items.push_back({node_id::hash(std::to_string(i)), ~0ull, ~0ull});
  CHECK(frame_size(offer) <= room);
  dht::store_msg::sync_want want;
  for (auto& o : offer.items) want.hashes.push_back(o.hash);  // at most what was offered
  CHECK(frame_size(want) <= room);
}

}  // namespace test_udp
