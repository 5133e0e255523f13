#include <doctest/doctest.h>

#include <algorithm>
#include <future>
#include <string>
#include <type_traits>
#include <thread>
#include <vector>

#include <asio/connect.hpp>
#include <asio/use_future.hpp>
#include <asio/read.hpp>
#include <asio/write.hpp>

#include "dcp/net.hpp"
#if DCP_TEST_KEYRING
#include "dcp/net/udp_keyring.hpp"
#endif
#include "echo.hpp"
#include "raw_client.hpp"

namespace test_transport {

using namespace dcp;
using dcp::test::run_until;
using echo = dcp::test::echo<net::env>;
using dcp::test::raw_client;

namespace {
constexpr protocol_id echo_id = 7;

net::config loopback_config(std::uint16_t port = 0) {
  net::config c;
  c.listen = address::loopback(port);
  c.seed = 7;
  return c;
}

bytes frame_of(protocol_id p, message_type t, byte_view payload) {
  bytes out(wire::header_size + payload.size());
  wire::write_header(out.data(), {p, t, static_cast<std::uint32_t>(payload.size())});
  std::copy(payload.begin(), payload.end(), out.begin() + wire::header_size);
  return out;
}
bytes hello_from(const address& a) {
  bytes out;
  REQUIRE(!wire::encode_frame(0, net::detail::hello{a}, out));
  return out;
}
bytes operator+(bytes a, const bytes& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// The shared transport suite: the tests below marked TEST_CASE_TEMPLATE run
// over every transport that can run without key material (the keyring and
// TLS transports run theirs in test_keyring.cpp and test_tls.cpp). What a
// datagram transport does not promise (order, knowing a peer is gone) is
// checked for the streams only, and each such place says so. The plain
// TEST_CASEs are about connections (a hello, answers on the caller's
// connection, inbound slots) and run over TCP only: UDP has none, and its
// own hostile-input and bound tests are in test_udp.cpp.
template <class Node> constexpr bool is_datagram = requires { requires Node::transport_type::is_datagram; };

#if DCP_TEST_KEYRING
/// keyring_udp_node with a key of the suite's, so that the templates below
/// build it as they build the plaintext nodes: Node(io, cfg).
struct keyed_udp_node : net::keyring_udp_node {
  static const net::keyring_key& key() {
    static const net::keyring_key k = net::keyring::generate();
    return k;
  }
  keyed_udp_node(asio::io_context& io, net::config c) : net::keyring_udp_node(io, std::move(c), net::keyring(key())) {}
};
#define DCP_TEST_DATAGRAM_NODES net::plaintext_udp_node, keyed_udp_node
#else
#define DCP_TEST_DATAGRAM_NODES net::plaintext_udp_node
#endif

/// The notes received carry exactly `sent`: in order over a stream; over
/// UDP, which promises no order (a datagram may overtake another on a real
/// network), each exactly once.
void check_delivered(std::vector<echo::received> notes, std::vector<std::string> sent, bool ordered) {
  REQUIRE(notes.size() == sent.size());
  std::vector<std::string> got;
  for (auto& n : notes) got.push_back(n.body);
  if (!ordered) {
    std::sort(got.begin(), got.end());
    std::sort(sent.begin(), sent.end());
  }
  for (std::size_t i = 0; i < sent.size(); ++i) CHECK(got[i] == sent[i]);
}
}  // namespace

TEST_CASE("net: hostile bytes close only their own connection, are counted, and the node keeps serving") {
  asio::io_context io;
  auto cfg = loopback_config();
  cfg.limits.max_frame_size = 1024;
  cfg.limits.max_queued_bytes_per_peer = 64 * 1024;
  cfg.handshake_timeout = 500ms;
  net::node a(io, cfg), b(io, cfg);
  auto& ea = a.add<echo>(echo_id);
  auto& eb = b.add<echo>(echo_id);
  a.start();
  b.start();
  int round = 0;
  // After each attack, a and b still talk both ways.
  auto still_serving = [&] {
    ++round;
    const std::size_t na = ea.notes.size(), nb = eb.notes.size();
    REQUIRE(ea.tell(b.self(), "r" + std::to_string(round)));
    REQUIRE(eb.tell(a.self(), "r" + std::to_string(round)));
    REQUIRE(run_until(io, [&] { return ea.notes.size() == na + 1 && eb.notes.size() == nb + 1; }));
    CHECK(eb.notes.back().body == "r" + std::to_string(round));
  };
  still_serving();

  const address liar = address::loopback(1);  // whatever a client claims, frames are attributed to it
  auto attack = [&](bytes data, errc expected, bool half_close = false) {
    const auto before = b.metrics().drops(0, expected);
    raw_client c(io, b.self(), std::move(data), half_close);
    REQUIRE(run_until(io, [&] { return c.closed_by_peer; }));
    CHECK(c.received == 0);  // nothing was sent to the address the attacker claimed
    CHECK(b.metrics().drops(0, expected) == before + 1);
    still_serving();
  };

  SUBCASE("garbage") { attack(to_bytes("GET / HTTP/1.1\r\nHost: dcp\r\n\r\n"), errc::bad_magic); }
  SUBCASE("wrong version") {
    bytes h = hello_from(liar);
    h[2] = 9;
    attack(h, errc::unsupported_version);
  }
  SUBCASE("reserved flags") {
    bytes h = hello_from(liar);
    h[3] = 1;
    attack(h, errc::bad_flags);
  }
  SUBCASE("oversized length, before and after the hello") {
    bytes big(wire::header_size);
    wire::write_header(big.data(), {echo_id, 3, 0xFFFFFFF0u});
    attack(big, errc::frame_too_large);
    attack(hello_from(liar) + big, errc::frame_too_large);
  }
  SUBCASE("truncated: the connection ends inside a frame") {
    bytes note;
    REQUIRE(!wire::encode_frame(echo_id, dcp::test::echo_msg::note{"half a frame"}, note));
    note.resize(note.size() - 3);
    attack(hello_from(liar) + note, errc::truncated_frame, /*half_close=*/true);
    attack(bytes{0xDC, 0x50, 1}, errc::truncated_frame, true);  // inside the header
  }
  SUBCASE("wrong handshake: a protocol frame first") {
    bytes note;
    REQUIRE(!wire::encode_frame(echo_id, dcp::test::echo_msg::note{"no hello"}, note));
    attack(note, errc::bad_handshake);
    CHECK(eb.notes.size() == static_cast<std::size_t>(round));  // nothing from the attacker was delivered
  }
  SUBCASE("wrong handshake: a hello that does not decode, a second hello, a hello with a sim address") {
    attack(frame_of(0, 1, to_bytes("\x01\x07")), errc::bad_handshake);
    attack(hello_from(liar) + hello_from(liar), errc::bad_handshake);
    attack(hello_from(address::sim(3)), errc::bad_handshake);
    attack(frame_of(0, 2, {}), errc::bad_handshake);
  }
  SUBCASE("silence: no hello within the handshake time-out") { attack({}, errc::timed_out); }
  SUBCASE("after a good hello, a bad payload only drops the frame") {
    // A frame whose payload does not decode is dropped and counted for its
    // protocol, but the stream is intact: the connection stays open.
    const bytes bad = frame_of(echo_id, 3, to_bytes("\x01\xFF\xFF\xFF\xFF\xFF\xFF\xFF\x7F"));
    bytes good;
    REQUIRE(!wire::encode_frame(echo_id, dcp::test::echo_msg::note{"after the bad one"}, good));
    raw_client c(io, b.self(), hello_from(liar) + bad + frame_of(99, 1, {}) + good);
    REQUIRE(run_until(io, [&] { return !eb.notes.empty() && eb.notes.back().body == "after the bad one"; }));
    CHECK(eb.notes.back().from == liar);
    CHECK(b.metrics().drops(echo_id, errc::malformed_payload) == 1);
    CHECK(b.metrics().drops(99, errc::unknown_protocol) == 1);
    CHECK(!c.closed_by_peer);
    still_serving();
  }
  CHECK(a.metrics().drops() == 0);
}

TEST_CASE("net: frames for a peer travel back on the connection it opened, whatever client it is") {
  asio::io_context io;
  net::node b(io, loopback_config());
  b.add<echo>(echo_id);
  b.start();
  // A raw client says hello as 127.0.0.1:1 (nobody listens there) and sends a
  // request: the reply can only reach it on its own connection.
  bytes request;
  REQUIRE(!wire::encode_frame(echo_id, dcp::test::echo_msg::request{77, "over here"}, request));
  raw_client c(io, b.self(), hello_from(address::loopback(1)) + request);
  REQUIRE(run_until(io, [&] { return c.received > 0 && c.bytes_in.size() >= wire::header_size; }));
  wire::frame_reader reader;
  reader.feed(c.bytes_in);
  wire::frame_view f;
  std::error_code ec;
  REQUIRE(run_until(io, [&] {
    reader = wire::frame_reader{};
    reader.feed(c.bytes_in);
    return reader.next(f, ec);
  }));
  CHECK(f.header.protocol == echo_id);
  CHECK(f.header.type == dcp::test::echo_msg::reply::wire_id);
  dcp::test::echo_msg::reply r;
  REQUIRE(!wire::decode(f.payload, r));
  CHECK(r.id == 77);
  CHECK(r.body == "over here");
  CHECK(b.connections() == 1);
  CHECK(b.metrics().drops() == 0);
}

TEST_CASE("net: max_connections refuses inbound connections past the limit") {
  asio::io_context io;
  auto cfg = loopback_config();
  cfg.limits.max_connections = 2;
  net::node n(io, cfg);
  n.start();
  raw_client c1(io, n.self(), hello_from(address::loopback(1)));
  raw_client c2(io, n.self(), hello_from(address::loopback(2)));
  REQUIRE(run_until(io, [&] { return n.connections() == 2; }));
  raw_client c3(io, n.self(), hello_from(address::loopback(3)));
  REQUIRE(run_until(io, [&] { return c3.closed_by_peer; }));
  CHECK(n.metrics().counter(0, "connections_refused") == 1);
  CHECK(!c1.closed_by_peer);
  CHECK(!c2.closed_by_peer);
  CHECK(n.connections() == 2);
}

TEST_CASE_TEMPLATE("net: a full per-peer queue drops the new frame, counts it, and keeps what was queued in order",
                   Node, net::plaintext_node, DCP_TEST_DATAGRAM_NODES) {
  asio::io_context io;
  auto cfg = loopback_config();
  cfg.limits.max_frame_size = 4096;
  cfg.limits.max_queued_bytes_per_peer = 16 * 1024;
  Node a(io, cfg), b(io, loopback_config());
  auto& ea = a.template add<echo>(echo_id);
  auto& eb = b.template add<echo>(echo_id);
  a.start();
  b.start();
  // The io_context is not running: nothing leaves, the queue fills.
  const std::string body(1000, 'x');
  std::size_t accepted = 0, refused = 0;
  for (int i = 0; i < 40; ++i) {
    if (ea.tell(b.self(), std::to_string(i) + body)) {
      CHECK(refused == 0);  // once full, it stays full until something is written
      ++accepted;
    } else {
      ++refused;
    }
  }
  // Every frame that fits, and not one more: the first refused (as large as
  // the last accepted, give or take a digit) would not have fit.
  CHECK(a.queued_bytes(b.self()) <= cfg.limits.max_queued_bytes_per_peer);
  CHECK(a.queued_bytes(b.self()) + a.queued_bytes(b.self()) / accepted > cfg.limits.max_queued_bytes_per_peer);
  if constexpr (!Node::authenticated) {
    CHECK(accepted == 16);  // 16 frames of ~1 KiB fit in 16 KiB, the 17th does not
    CHECK(refused == 24);
  } else {
    CHECK(accepted == 15);  // sealed: each datagram is 56 bytes larger, and the 16th no longer fits
  }
  CHECK(a.metrics().drops(echo_id, errc::queue_full) == refused);
  // A frame above max_frame_size is refused on its own account.
  CHECK(!ea.tell(b.self(), std::string(5000, 'y')));
  CHECK(a.metrics().drops(echo_id, errc::frame_too_large) == 1);

  REQUIRE(run_until(io, [&] { return eb.notes.size() == accepted; }));
  std::vector<std::string> sent;
  for (std::size_t i = 0; i < accepted; ++i) sent.push_back(std::to_string(i) + body);
  check_delivered(eb.notes, sent, !is_datagram<Node>);
  // Drained: the queue takes frames again.
  REQUIRE(run_until(io, [&] { return a.queued_bytes(b.self()) == 0; }));
  CHECK(ea.tell(b.self(), "again"));
  REQUIRE(run_until(io, [&] { return eb.notes.size() == accepted + 1; }));
}

/// A frame of `size` payload bytes whose every encoding is counted: what
/// shows whether a transport encoded a frame it then refused.
struct counted_payload {
  std::size_t size = 0;
  int* encodes = nullptr;
  net::frame_source source() const {
    return {3, this, [](const void* p, bytes& out) {
              auto& m = *static_cast<const counted_payload*>(p);
              ++*m.encodes;
              out.insert(out.end(), m.size, 0xAB);
            }};
  }
};

TEST_CASE_TEMPLATE("net: a queue too full for the smallest frame refuses the next one without encoding it", Node,
                   net::plaintext_node, DCP_TEST_DATAGRAM_NODES) {
  asio::io_context io;
  auto cfg = loopback_config();
  cfg.limits.max_frame_size = 1024;
  cfg.limits.max_queued_bytes_per_peer = 4096;
  Node a(io, cfg);
  a.start();
  auto& t = a.transport();
  const address to = address::loopback(1);  // the io_context does not run: nothing leaves
  int encodes = 0;
  auto send = [&](std::size_t size) { return t.send_frame(echo_id, to, counted_payload{size, &encodes}.source()); };
  // What a frame of n payload bytes takes in the queue: n + header + the seal's overhead.
  REQUIRE(send(100));
  const std::size_t overhead = a.queued_bytes(to) - 100 - wire::header_size;
  while (send(500)) {}
  // Fill the room left exactly: the queue is then at its bound.
  const std::size_t room = cfg.limits.max_queued_bytes_per_peer - a.queued_bytes(to);
  REQUIRE(room >= wire::header_size + overhead);
  REQUIRE(send(room - wire::header_size - overhead));
  REQUIRE(a.queued_bytes(to) == cfg.limits.max_queued_bytes_per_peer);
  const int before = encodes;
  const auto refused = a.metrics().drops(echo_id, errc::queue_full);
  CHECK(!send(0));  // not even an empty frame fits
  CHECK(!send(700));
  CHECK(a.metrics().drops(echo_id, errc::queue_full) == refused + 2);
  CHECK(encodes == before);  // refused before encoding
}

TEST_CASE_TEMPLATE("net: an unreachable peer is given up on, reported, and reached again once it is back", Node,
                   net::plaintext_node, DCP_TEST_DATAGRAM_NODES) {
  if constexpr (is_datagram<Node>) {
    // Skipped for UDP: nothing answers a datagram sent to a closed port (an
    // ICMP error, if any, is not reported on an unconnected socket and would
    // be forgeable), so the transport cannot know a peer is gone and never
    // reports one (udp_transport.hpp); protocols over it use their timeouts.
    MESSAGE("skipped for udp_transport: a datagram transport cannot know that a peer is unreachable");
    return;
  }
  asio::io_context io;
  auto cfg = loopback_config();
  cfg.reconnect = {10ms, 40ms, 4, 0s};
  Node a(io, cfg);
  auto& ea = a.template add<echo>(echo_id, 10s);
  a.start();
  // Reserve a port, then free it: nobody listens there.
  address b_addr;
  {
    Node tmp(io, loopback_config());
    b_addr = tmp.self();
  }
  io.restart();
  io.run_for(20ms);  // let the closed node's handlers drain

  std::error_code call_result;
  ea.call(b_addr, "anyone?", [&](std::error_code ec, std::string) { call_result = ec; });
  for (int i = 0; i < 5; ++i) REQUIRE(ea.tell(b_addr, "queued " + std::to_string(i)));
  REQUIRE(run_until(
      io, [&] { return !ea.unreachable.empty(); }, 5000ms));
  CHECK(ea.unreachable.front() == b_addr);
  CHECK(call_result == make_error_code(errc::peer_unreachable));   // the protocol learned, and failed its call
  CHECK(a.metrics().drops(echo_id, errc::peer_unreachable) == 6);  // the request and 5 notes
  CHECK(a.metrics().counter(0, "peers_unreachable") == 1);
  CHECK(a.queued_bytes(b_addr) == 0);
  CHECK(a.connections() == 0);

  // The peer comes up on that port: the next send connects afresh.
  Node b(io, loopback_config(b_addr.port()));
  auto& eb = b.template add<echo>(echo_id);
  b.start();
  REQUIRE(ea.tell(b_addr, "hello again"));
  REQUIRE(run_until(io, [&] { return eb.notes.size() == 1; }));
  CHECK(eb.notes[0].body == "hello again");
  CHECK(eb.notes[0].from == a.self());
}

TEST_CASE_TEMPLATE("net: a peer restarted on the same port gets the frames sent after it is back", Node,
                   net::plaintext_node, DCP_TEST_DATAGRAM_NODES) {
  asio::io_context io;
  auto cfg = loopback_config();
  cfg.reconnect = {10ms, 50ms, 20, 0s};
  Node a(io, cfg);
  auto& ea = a.template add<echo>(echo_id);
  a.start();
  auto b = std::make_unique<Node>(io, loopback_config());
  const address b_addr = b->self();
  b->template add<echo>(echo_id);
  b->start();
  REQUIRE(ea.tell(b_addr, "first"));
  REQUIRE(run_until(io, [&] { return b->template find<echo>(echo_id)->notes.size() == 1; }));
  b.reset();  // stopped and destroyed: a's connection to it breaks (UDP: a holds none)
  REQUIRE(run_until(io, [&] { return a.connections() == 0; }));
  if constexpr (is_datagram<Node>) {  // sent while nobody listens: lost, and nothing else changes
    REQUIRE(ea.tell(b_addr, "into the void"));
    REQUIRE(run_until(io, [&] { return a.queued_bytes(b_addr) == 0; }));
  }

  b = std::make_unique<Node>(io, loopback_config(b_addr.port()));
  auto& eb2 = b->template add<echo>(echo_id);
  b->start();
  REQUIRE(ea.tell(b_addr, "second"));
  REQUIRE(run_until(io, [&] { return eb2.notes.size() == 1; }));
  CHECK(eb2.notes[0].body == "second");
  CHECK(ea.unreachable.empty());
}

TEST_CASE_TEMPLATE("net: stop with pending work lets io_context::run return, and nothing runs on a destroyed node",
                   Node, net::plaintext_node, DCP_TEST_DATAGRAM_NODES) {
  asio::io_context io;
  auto drains = [&] {  // run() returns by itself: no handler, timer or socket is left
    const auto t0 = std::chrono::steady_clock::now();
    io.restart();
    io.run_for(5s);
    return io.stopped() && std::chrono::steady_clock::now() - t0 < 4s;
  };
  SUBCASE("stop while connecting, with queued frames, armed timers and calls in flight") {
    Node a(io, loopback_config()), b(io, loopback_config());
    auto& ea = a.template add<echo>(echo_id, 1h);
    b.template add<echo>(echo_id);
    a.start();
    b.start();
    int completions = 0;
    for (int i = 0; i < 100; ++i) {
      ea.tell(b.self(), "pending");
      ea.tell(a.self(), "to self, posted");
      ea.call(b.self(), "pending call", [&](std::error_code, std::string) { ++completions; });
    }
    a.stop();
    b.stop();
    CHECK(drains());
    CHECK(completions == 0);  // their timers were cancelled with the node
    CHECK(ea.notes.empty());  // local deliveries posted before the stop do not run after it
    CHECK(!ea.tell(b.self(), "after stop"));
    CHECK(a.metrics().drops(echo_id, errc::shutting_down) == 1);
  }
  SUBCASE("nodes destroyed before the io_context ever ran") {
    {
      Node a(io, loopback_config()), b(io, loopback_config());
      auto& ea = a.template add<echo>(echo_id);
      a.start();
      b.start();
      for (int i = 0; i < 10; ++i) {
        ea.tell(b.self(), "x");
        ea.tell(a.self(), "y");
      }
    }
    CHECK(drains());  // the queued handlers run as no-ops on the released state
  }
  SUBCASE("a protocol stops its own node from inside a handler") {
    Node a(io, loopback_config()), b(io, loopback_config());
    auto& ea = a.template add<echo>(echo_id);
    auto& eb = b.template add<echo>(echo_id);
    eb.on_note = [&](const address&, const std::string&) { b.stop(); };
    a.start();
    b.start();
    for (int i = 0; i < 50; ++i) ea.tell(b.self(), "n");  // one batch: the rest of it is not delivered
    REQUIRE(run_until(io, [&] { return b.stopped(); }));
    CHECK(eb.notes.size() == 1);
    a.stop();
    CHECK(drains());
  }
  SUBCASE("async_stop from another thread while the io_context runs there") {
    Node a(io, loopback_config()), b(io, loopback_config());
    auto& ea = a.template add<echo>(echo_id);
    auto& eb = b.template add<echo>(echo_id);
    a.start();
    b.start();
    std::promise<void> got;
    eb.on_note = [&](const address&, const std::string&) { got.set_value(); };
    ea.tell(b.self(), "before the thread");
    std::thread runner([&] { io.run(); });
    got.get_future().wait();
    a.async_stop(asio::use_future).get();
    b.async_stop(asio::use_future).get();
    runner.join();  // run() returned: nothing is left
    CHECK(io.stopped());
    CHECK(a.stopped());
  }
}

}  // namespace test_transport
