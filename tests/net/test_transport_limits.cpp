// The transport's resource bounds (issue 11, item 5): what a caller that
// holds connections, trickles frames or sends one huge frame can cost a node,
// and that a live peer still gets through. Real sockets on loopback.
// Stream transports only: pre-hello limits, read and idle time-outs, slots
// and read buffers that grow are a connection's; UDP holds no connection,
// reads into one fixed buffer, and is checked for that in test_udp.cpp.
#include <doctest/doctest.h>

#include <algorithm>
#include <array>
#include <memory>
#include <string>
#include <vector>

#include <asio/write.hpp>

#include "dcp/net.hpp"
#include "echo.hpp"

namespace test_transport_limits {

using namespace dcp;
using dcp::test::run_until;
using echo = dcp::test::echo<net::env>;

namespace {
constexpr protocol_id echo_id = 7;

net::config loopback_config() {
  net::config c;
  c.listen = address::loopback(0);
  c.seed = 5;
  return c;
}

bytes operator+(bytes x, const bytes& y) {
  x.insert(x.end(), y.begin(), y.end());
  return x;
}

bytes hello_from(const address& a) {
  bytes out;
  REQUIRE(!wire::encode_frame(0, net::detail::hello{a}, out));
  return out;
}

/// A raw client, bound to `from` (any 127.x.y.z), that writes `data` and
/// then reads until the node closes the connection.
struct raw_client {
  raw_client(asio::io_context& io, const address& to, bytes data, const char* from = "127.0.0.1")
      : socket(io), data_(std::move(data)) {
    socket.open(asio::ip::tcp::v4());
    socket.bind({asio::ip::make_address(from), 0});
    socket.async_connect(net::detail::to_endpoint(to), [this](std::error_code ec) {
      REQUIRE(!ec);
      asio::async_write(socket, asio::buffer(data_), [this](std::error_code, std::size_t) { read(); });
    });
  }
  void read() {
    socket.async_read_some(asio::buffer(buf_), [this](std::error_code ec, std::size_t) {
      if (ec) {
        closed_by_peer = true;
        return;
      }
      read();
    });
  }
  asio::ip::tcp::socket socket;
  bool closed_by_peer = false;

 private:
  bytes data_;
  std::array<std::uint8_t, 256> buf_{};
};

bytes header_only(protocol_id p, message_type t, std::uint32_t length, std::size_t then_bytes) {
  bytes out(wire::header_size + then_bytes, 0x55);
  wire::write_header(out.data(), {p, t, length});
  return out;
}
}  // namespace

TEST_CASE("net limits: before its hello a caller may send only a small frame") {
  asio::io_context io;
  auto cfg = loopback_config();
  cfg.handshake_timeout = 10s;  // the close below is the frame limit's, not the handshake time-out's
  net::node b(io, cfg);
  b.start();
  // A 100 KiB frame is within max_frame_size (4 MiB), but no caller that has
  // not said who it is may make the node hold it.
  raw_client c(io, b.self(), header_only(echo_id, 3, 100 * 1024, 1000));
  REQUIRE(run_until(
      io, [&] { return c.closed_by_peer; }, 2s));
  CHECK(b.metrics().drops(0, errc::frame_too_large) == 1);
  // A hello itself above max_hello_frame_size, the same.
  raw_client h(io, b.self(), header_only(0, 1, cfg.max_hello_frame_size + 1, 10));
  REQUIRE(run_until(
      io, [&] { return h.closed_by_peer; }, 2s));
  CHECK(b.metrics().drops(0, errc::frame_too_large) == 2);
  CHECK(b.connections() == 0);
}

TEST_CASE("net limits: a frame that stalls or trickles is closed after read_timeout; a bulk stream is not") {
  asio::io_context io;
  auto cfg = loopback_config();
  cfg.read_timeout = 300ms;
  net::node a(io, cfg), b(io, cfg);
  auto& ea = a.add<echo>(echo_id);
  auto& eb = b.add<echo>(echo_id);
  a.start();
  b.start();
  // After a good hello, a frame of 1000 bytes of which 10 ever arrive.
  raw_client stall(io, b.self(), hello_from(address::loopback(1)) + header_only(echo_id, 3, 1000, 10));
  REQUIRE(run_until(
      io, [&] { return stall.closed_by_peer; }, 3s));
  CHECK(b.metrics().drops(0, errc::timed_out) == 1);
  // Meanwhile, and after, a stream of large frames takes longer than
  // read_timeout in all, and flows: the clock restarts at every whole frame.
  const auto start = std::chrono::steady_clock::now();
  while (std::chrono::steady_clock::now() - start < 600ms) {
    if (a.queued_bytes(b.self()) < (1u << 20))
      REQUIRE(ea.tell(b.self(), std::string(64 * 1024, 'x')));
    else
      io.run_for(std::chrono::milliseconds(1));
  }
  REQUIRE(run_until(io, [&] { return a.queued_bytes(b.self()) == 0; }));
  CHECK(b.metrics().drops(0, errc::timed_out) == 1);
  CHECK(a.metrics().drops() == 0);
  CHECK(!eb.notes.empty());
}

TEST_CASE("net limits: idle connections are closed after idle_timeout; live ones stay") {
  asio::io_context io;
  auto cfg = loopback_config();
  cfg.idle_timeout = 300ms;
  net::node a(io, cfg), b(io, cfg);
  auto& ea = a.add<echo>(echo_id);
  auto& eb = b.add<echo>(echo_id);
  a.start();
  b.start();
  raw_client idle(io, b.self(), hello_from(address::loopback(1)));
  // a talks to b every 50 ms for a second: its connection never goes idle.
  for (int i = 0; i < 20; ++i) {
    REQUIRE(ea.tell(b.self(), std::to_string(i)));
    io.restart();
    io.run_for(std::chrono::milliseconds(50));
  }
  REQUIRE(run_until(io, [&] { return idle.closed_by_peer && eb.notes.size() == 20; }));
  CHECK(b.metrics().counter(0, "idle_closed") == 1);
  CHECK(b.connections() == 1);  // a's
  // Once a falls silent, its connection goes too, and the next note reopens one.
  REQUIRE(run_until(
      io, [&] { return a.connections() == 0 && b.connections() == 0; }, 3s));
  REQUIRE(ea.tell(b.self(), "after the idle close"));
  REQUIRE(run_until(io, [&] { return eb.notes.size() == 21; }));
  CHECK(a.metrics().drops() == 0);
}

TEST_CASE("net limits: idle callers holding every inbound slot cannot stop a node from reaching its peers") {
  asio::io_context io;
  auto cfg = loopback_config();
  cfg.limits.max_connections = 3;  // inbound slots
  net::node a(io, loopback_config()), b(io, cfg);
  auto& ea = a.add<echo>(echo_id);
  auto& eb = b.add<echo>(echo_id);
  a.start();
  b.start();
  std::vector<std::unique_ptr<raw_client>> squatters;
  for (int i = 0; i < 3; ++i)
    squatters.push_back(
        std::make_unique<raw_client>(io, b.self(), hello_from(address::loopback(static_cast<std::uint16_t>(i + 1)))));
  REQUIRE(run_until(io, [&] { return b.connections() == 3; }));
  // b's inbound slots are full, yet it reaches a: outbound slots are its own.
  REQUIRE(eb.tell(a.self(), "through"));
  REQUIRE(run_until(
      io, [&] { return ea.notes.size() == 1; }, 3s));
  CHECK(ea.notes.front().from == b.self());
  CHECK(eb.unreachable.empty());
  // ... and a's answer comes back on b's own connection.
  std::string answer;
  eb.call(a.self(), "ping", [&](std::error_code ec, std::string body) {
    REQUIRE(!ec);
    answer = std::move(body);
  });
  REQUIRE(run_until(
      io, [&] { return answer == "ping"; }, 3s));
  for (auto& s : squatters) CHECK(!s->closed_by_peer);
}

TEST_CASE("net limits: one IP address holds at most max_inbound_per_ip connections; others still get in") {
  asio::io_context io;
  auto cfg = loopback_config();
  cfg.max_inbound_per_ip = 2;
  net::node a(io, loopback_config()), b(io, cfg);
  auto& ea = a.add<echo>(echo_id);
  auto& eb = b.add<echo>(echo_id);
  a.start();
  b.start();
  raw_client s1(io, b.self(), hello_from(address::loopback(1)), "127.0.0.2");
  raw_client s2(io, b.self(), hello_from(address::loopback(2)), "127.0.0.2");
  REQUIRE(run_until(io, [&] { return b.connections() == 2; }));
  raw_client s3(io, b.self(), hello_from(address::loopback(3)), "127.0.0.2");
  REQUIRE(run_until(
      io, [&] { return s3.closed_by_peer; }, 3s));
  CHECK(b.metrics().counter(0, "connections_refused_per_ip") == 1);
  CHECK(!s1.closed_by_peer);
  CHECK(!s2.closed_by_peer);
  REQUIRE(ea.tell(b.self(), "from another address"));  // a calls from 127.0.0.1
  REQUIRE(run_until(io, [&] { return eb.notes.size() == 1; }));
}

TEST_CASE("net limits: a read buffer grown for a large frame shrinks once it is delivered") {
  asio::io_context io;
  net::node a(io, loopback_config()), b(io, loopback_config());
  auto& ea = a.add<echo>(echo_id);
  auto& eb = b.add<echo>(echo_id);
  a.start();
  b.start();
  REQUIRE(ea.tell(b.self(), std::string(3u << 20, 'x')));  // 3 MiB
  REQUIRE(run_until(io, [&] { return eb.notes.size() == 1; }));
  CHECK(eb.notes.front().body.size() == (3u << 20));
  const std::size_t after_big = b.transport().read_buffer_bytes();
  CHECK(after_big <= (1u << 20));  // the bulk read size at most; it held 3 MiB for the frame
  // Small messages bring the read size, and the buffer, back down.
  for (std::size_t i = 0; i < 6; ++i) {
    REQUIRE(ea.tell(b.self(), "small"));
    REQUIRE(run_until(io, [&] { return eb.notes.size() == i + 2; }));
  }
  CHECK(b.transport().read_buffer_bytes() <= (128u << 10));
}

// Each read buffer is bounded by the frame it reads, but many callers that
// each send most of a large frame would make the node hold them all. Past
// max_read_buffer_bytes, the connection whose buffer would grow is closed.
TEST_CASE(
    "net limits: many callers each sending most of a large frame cannot take the read buffers past max_read_buffer_bytes") {
  asio::io_context io;
  auto cfg = loopback_config();
  cfg.limits.max_frame_size = 1u << 20;
  cfg.max_read_buffer_bytes = 4u << 20;  // the least allowed: twice (a largest frame and its header)
  net::node b(io, cfg);
  b.add<echo>(echo_id);
  b.start();
  std::vector<std::unique_ptr<raw_client>> callers;
  for (int i = 0; i < 8; ++i)  // 8 x ~1 MiB of frames that never end
    callers.push_back(std::make_unique<raw_client>(io, b.self(),
                                                   hello_from(address::loopback(static_cast<std::uint16_t>(10 + i))) +
                                                       header_only(echo_id, 3, 1u << 20, 900u << 10)));
  std::size_t most = 0;
  run_until(
      io,
      [&] {
        most = std::max(most, b.transport().read_buffer_bytes());
        return false;
      },
      1500ms);
  CHECK(b.metrics().counter(0, "read_buffer_bytes_refused") > 0);
  CHECK(b.transport().read_buffer_bytes() <= cfg.max_read_buffer_bytes);
  // Between a buffer's growth and its connection's close, one growth more at most.
  CHECK(most <= cfg.max_read_buffer_bytes + 2 * (cfg.limits.max_frame_size + wire::header_size));
  std::size_t closed = 0;
  for (auto& c : callers) closed += c->closed_by_peer;
  CHECK(closed > 0);
  CHECK(closed < callers.size());  // those within the budget still read
  // When they all go, the sum returns to what no connection holds. (Their
  // handlers must have run before they are destroyed: close, then wait.)
  for (auto& c : callers) c->socket.close();
  REQUIRE(run_until(
      io, [&] { return std::all_of(callers.begin(), callers.end(), [](auto& c) { return c->closed_by_peer; }); }, 3s));
  REQUIRE(run_until(
      io, [&] { return b.transport().read_buffer_bytes() == 0; }, 3s));
  io.poll();  // the last aborted operations' handlers
  callers.clear();
}

TEST_CASE("net limits: max_read_buffer_bytes below two largest frames is refused with a clear error") {
  auto cfg = loopback_config();
  cfg.max_read_buffer_bytes = cfg.limits.max_frame_size;
  CHECK_THROWS_WITH_AS(cfg.validate(), doctest::Contains("max_read_buffer_bytes"), dcp::error);
}

/// A peer that accepts connections and never reads (until told to): what a
/// node's send queues to it can only grow against. Its receive buffer is
/// small (inherited by accepted sockets), so the kernel soon stops taking
/// bytes for it.
struct stalled_peer {
  explicit stalled_peer(asio::io_context& io) : acceptor(io) {
    acceptor.open(asio::ip::tcp::v4());
    acceptor.set_option(asio::socket_base::receive_buffer_size(4096));
    acceptor.bind({asio::ip::make_address("127.0.0.1"), 0});
    acceptor.listen();
    addr = net::detail::to_address(acceptor.local_endpoint());
    accept();
  }
  address self() const { return addr; }
  void accept() {
    acceptor.async_accept([this](std::error_code ec, asio::ip::tcp::socket s) {
      if (ec) return;
      sockets.push_back(std::make_unique<asio::ip::tcp::socket>(std::move(s)));
      if (reading) read(*sockets.back());
      accept();
    });
  }
  void start_reading() {
    reading = true;
    for (auto& s : sockets) read(*s);
  }
  void read(asio::ip::tcp::socket& s) {
    s.async_read_some(asio::buffer(buf), [this, &s](std::error_code ec, std::size_t) {
      if (!ec) read(s);
    });
  }
  void close() {
    std::error_code ignored;
    acceptor.close(ignored);
    for (auto& s : sockets) s->close(ignored);
  }
  asio::ip::tcp::acceptor acceptor;
  address addr;
  std::vector<std::unique_ptr<asio::ip::tcp::socket>> sockets;
  bool reading = false;
  std::array<std::uint8_t, 64 * 1024> buf{};
};

TEST_CASE(
    "net limits: many stalled peers cannot make a node buffer more than max_buffered_bytes; it frees as they read or close") {
  asio::io_context io;
  auto cfg = loopback_config();
  cfg.limits.max_frame_size = 16u << 10;
  cfg.limits.max_queued_bytes_per_peer = 64u << 10;
  cfg.max_buffered_bytes = 256u << 10;  // 16 peers x 64 KiB would be 1 MiB
  cfg.reconnect.initial = 10ms;
  cfg.reconnect.max = 20ms;
  cfg.reconnect.give_up_after_attempts = 2;  // a closed peer's queue is dropped soon
  net::node a(io, cfg);
  auto& ea = a.add<echo>(echo_id);
  a.start();
  std::vector<std::unique_ptr<stalled_peer>> peers;
  for (int i = 0; i < 16; ++i) peers.push_back(std::make_unique<stalled_peer>(io));

  // The pool is the sum of every queue, and never above the budget.
  auto accounted = [&] {
    std::size_t sum = 0;
    for (auto& p : peers) sum += a.queued_bytes(p->self());
    const std::size_t pool = a.transport().buffered_bytes();
    CHECK(pool == sum);
    CHECK(pool <= cfg.max_buffered_bytes);
    return pool;
  };
  auto refused = [&] { return a.metrics().counter(0, "buffered_bytes_refused"); };
  const std::string body(8u << 10, 'b');

  // Send to every peer, round after round, while the io_context runs: the
  // kernel takes a little, then the queues fill, and past the budget sends
  // are refused though each peer's own queue still has room.
  bool refused_with_room = false;
  std::size_t peak = 0;
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (!refused_with_room && std::chrono::steady_clock::now() < deadline) {
    for (auto& p : peers) {
      const auto before = refused();
      const bool room = a.queued_bytes(p->self()) + body.size() + 64 <= cfg.limits.max_queued_bytes_per_peer;
      if (!ea.tell(p->self(), body) && refused() == before + 1 && room) refused_with_room = true;
      peak = std::max(peak, accounted());
    }
    io.restart();
    io.run_for(std::chrono::milliseconds(2));
    peak = std::max(peak, accounted());
  }
  REQUIRE(refused_with_room);
  CHECK(refused() > 0);
  CHECK(a.metrics().drops(echo_id, errc::queue_full) >= static_cast<std::uint64_t>(refused()));
  CHECK(peak > cfg.max_buffered_bytes - (2 * body.size() + 64));  // it did fill up to the budget
  MESSAGE("peak buffered " << peak << " of " << cfg.max_buffered_bytes << "; refused " << refused());

  // Half the peers start reading, the other half close: every byte comes back.
  for (std::size_t i = 0; i < peers.size(); ++i) {
    if (i % 2 == 0)
      peers[i]->start_reading();
    else
      peers[i]->close();
  }
  REQUIRE(run_until(io, [&] { return accounted() == 0; }));
  // And the budget is there again for whoever reads.
  REQUIRE(ea.tell(peers[0]->self(), body));
  CHECK(accounted() > 0);
  REQUIRE(run_until(io, [&] { return accounted() == 0; }));
}

TEST_CASE("net limits: max_buffered_bytes below one peer's queue is refused with a clear error") {
  auto cfg = loopback_config();
  cfg.max_buffered_bytes = cfg.limits.max_queued_bytes_per_peer - 1;
  CHECK_THROWS_WITH_AS(cfg.validate(), doctest::Contains("max_buffered_bytes"), dcp::error);
  cfg.max_buffered_bytes = cfg.limits.max_queued_bytes_per_peer;
  CHECK_NOTHROW(cfg.validate());
}

}  // namespace test_transport_limits
