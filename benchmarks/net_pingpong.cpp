// net_pingpong: what dcp::net costs over raw TCP, between two processes on loopback.
//
//   (a) raw blocking-socket ping-pong of 64-byte messages: the floor (p50, p99 round trip)
//   (b) dcp::net node ping-pong, 64-byte payloads: p50, p99, and the ratio to (a)
//       (goal: p50 within 1.3x of raw)
//   (c) one-way throughput, 64-byte and 64 KiB messages, with a window of
//       unacknowledged messages (goal: >= 500,000 msg/s at 64 B), next to a raw
//       socket writing the same bytes (one write() per message for 64 B, which
//       is what an unbatched sender pays; big writes for 64 KiB)
//
// Each case forks a child process; parent and child each run their own
// io_context (created after the fork). Prints a table; writes net_pingpong.csv
// (or --csv PATH). --quick: a short run for CI.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <iomanip>
#include <iostream>
#include <string>
#include <vector>

#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>

#include "dcp/net.hpp"
#include "pingpong_protocol.hpp"

using namespace std::chrono_literals;
using clk = std::chrono::steady_clock;

using pingpong_bench::bench_id;
using bench_protocol = pingpong_bench::bench<dcp::net::env>;

// ---- process plumbing ----

[[noreturn]] void die(const std::string& what) {
  std::perror(what.c_str());
  std::exit(1);
}

struct child {
  pid_t pid = -1;
  int from_child = -1;  // the child writes its port here
};

/// Forks; the child runs f(write_fd) and exits.
child spawn(const std::function<void(int)>& f) {
  int fds[2];
  if (pipe(fds) != 0) die("pipe");
  const pid_t pid = fork();
  if (pid < 0) die("fork");
  if (pid == 0) {
    close(fds[0]);
    f(fds[1]);
    _exit(0);
  }
  close(fds[1]);
  return {pid, fds[0]};
}
std::uint16_t read_port(const child& c) {
  std::uint16_t port = 0;
  if (read(c.from_child, &port, sizeof port) != static_cast<ssize_t>(sizeof port)) die("read port");
  return port;
}
void reap(child& c) {
  kill(c.pid, SIGKILL);
  waitpid(c.pid, nullptr, 0);
  close(c.from_child);
}

// ---- raw sockets ----

int raw_listen(std::uint16_t& port) {
  const int s = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || listen(s, 4) != 0) die("listen");
  socklen_t len = sizeof a;
  getsockname(s, reinterpret_cast<sockaddr*>(&a), &len);
  port = ntohs(a.sin_port);
  return s;
}
int raw_connect(std::uint16_t port) {
  const int s = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(port);
  if (connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) die("connect");
  int one = 1;
  setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return s;
}
void write_all(int s, const void* p, std::size_t n) {
  auto* b = static_cast<const char*>(p);
  while (n > 0) {
    const ssize_t k = write(s, b, n);
    if (k <= 0) die("write");
    b += k;
    n -= static_cast<std::size_t>(k);
  }
}
bool read_all(int s, void* p, std::size_t n) {
  auto* b = static_cast<char*>(p);
  while (n > 0) {
    const ssize_t k = read(s, b, n);
    if (k <= 0) return false;
    b += k;
    n -= static_cast<std::size_t>(k);
  }
  return true;
}

std::vector<clk::duration> raw_pingpong(std::size_t n) {
  child c = spawn([](int out) {
    std::uint16_t port = 0;
    const int l = raw_listen(port);
    write_all(out, &port, sizeof port);
    const int s = accept(l, nullptr, nullptr);
    int one = 1;
    setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    char buf[64];
    while (read_all(s, buf, sizeof buf)) write_all(s, buf, sizeof buf);
  });
  const int s = raw_connect(read_port(c));
  char buf[64];
  std::memset(buf, 0xCD, sizeof buf);
  std::vector<clk::duration> rtts;
  rtts.reserve(n);
  for (std::size_t i = 0; i < n; ++i) {
    const auto t0 = clk::now();
    write_all(s, buf, sizeof buf);
    if (!read_all(s, buf, sizeof buf)) die("raw pong");
    rtts.push_back(clk::now() - t0);
  }
  close(s);
  reap(c);
  return rtts;
}

/// The same exchange through Asio's reactor (async_read_some, then a write),
/// with no dcp code: what any epoll-driven runtime pays over blocking sockets.
struct asio_echo {
  asio::ip::tcp::socket s;
  std::array<char, 64> buf{};
  std::size_t have = 0;
  std::function<void()> on_message;
  void read() {
    s.async_read_some(asio::buffer(buf.data() + have, buf.size() - have), [this](std::error_code ec, std::size_t n) {
      if (ec) return;
      have += n;
      if (have < buf.size()) return read();
      have = 0;
      on_message();
      read();
    });
  }
};

std::vector<clk::duration> asio_pingpong(std::size_t n) {
  child c = spawn([](int out) {
    asio::io_context io;
    asio::ip::tcp::acceptor acc(io, {asio::ip::address_v4::loopback(), 0});
    const std::uint16_t port = acc.local_endpoint().port();
    write_all(out, &port, sizeof port);
    asio_echo e{acc.accept()};
    e.s.set_option(asio::ip::tcp::no_delay(true));
    e.s.non_blocking(true);
    e.on_message = [&] { e.s.write_some(asio::buffer(e.buf)); };
    e.read();
    io.run();
  });
  asio::io_context io;
  asio_echo e{asio::ip::tcp::socket(io)};
  e.s.connect({asio::ip::address_v4::loopback(), read_port(c)});
  e.s.set_option(asio::ip::tcp::no_delay(true));
  e.s.non_blocking(true);
  std::vector<clk::duration> rtts;
  rtts.reserve(n);
  clk::time_point t0;
  auto ping = [&] {
    t0 = clk::now();
    e.s.write_some(asio::buffer(e.buf));
  };
  e.on_message = [&] {
    rtts.push_back(clk::now() - t0);
    if (rtts.size() == n) return e.s.close();
    ping();
  };
  ping();
  e.read();
  io.run();
  reap(c);
  return rtts;
}

/// One-way raw stream: `count` writes of `size` bytes; the child answers one byte at the end.
double raw_stream_seconds(std::size_t size, std::uint64_t count) {
  child c = spawn([size, count](int out) {
    std::uint16_t port = 0;
    const int l = raw_listen(port);
    write_all(out, &port, sizeof port);
    const int s = accept(l, nullptr, nullptr);
    std::vector<char> buf(1 << 20);
    std::uint64_t left = size * count;
    while (left > 0) {
      const ssize_t k = read(s, buf.data(), std::min<std::uint64_t>(buf.size(), left));
      if (k <= 0) _exit(1);
      left -= static_cast<std::uint64_t>(k);
    }
    write_all(s, "!", 1);
    pause();
  });
  const int s = raw_connect(read_port(c));
  std::vector<char> msg(size, 'x');
  const auto t0 = clk::now();
  for (std::uint64_t i = 0; i < count; ++i) write_all(s, msg.data(), msg.size());
  char done;
  if (!read_all(s, &done, 1)) die("raw stream end");
  const double secs = std::chrono::duration<double>(clk::now() - t0).count();
  close(s);
  reap(c);
  return secs;
}

// ---- dcp::net ----

/// The child side: a node answering pings and acknowledging data, forever.
child dcp_responder(std::uint64_t ack_every) {
  return spawn([ack_every](int out) {
    asio::io_context io;
    dcp::net::node n(io, {});
    bench_protocol::config c;
    c.ack_every = ack_every;
    n.add<bench_protocol>(bench_id, c);
    n.start();
    const std::uint16_t port = n.self().port();
    write_all(out, &port, sizeof port);
    io.run();
  });
}

std::vector<clk::duration> dcp_pingpong(std::size_t n) {
  child c = dcp_responder(1024);
  asio::io_context io;
  dcp::net::node node(io, {});
  bench_protocol::config cfg;
  cfg.peer = dcp::address::loopback(read_port(c));
  cfg.total = n;
  cfg.done = [&] { node.stop(); };
  auto& b = node.add<bench_protocol>(bench_id, cfg);
  node.start();
  b.start_pingpong();
  io.run();
  reap(c);
  return std::move(b.rtts);
}

struct stream_result {
  double seconds;
  std::uint64_t refused;
};
stream_result dcp_stream(std::size_t size, std::uint64_t count, std::uint64_t window, std::uint64_t ack_every) {
  if (count % ack_every != 0) {
    std::cerr << "dcp_stream: count must be a multiple of ack_every (the last ack ends the run)\n";
    std::exit(2);
  }
  child c = dcp_responder(ack_every);
  asio::io_context io;
  dcp::net::node node(io, {});
  bench_protocol::config cfg;
  cfg.peer = dcp::address::loopback(read_port(c));
  cfg.payload = size;
  cfg.total = count;
  cfg.window = window;
  cfg.ack_every = ack_every;
  cfg.done = [&] { node.stop(); };
  auto& b = node.add<bench_protocol>(bench_id, cfg);
  node.start();
  b.start_stream();
  io.run();
  reap(c);
  return {std::chrono::duration<double>(b.finished - b.started).count(), b.refused};
}

double percentile_us(std::vector<clk::duration> v, double p) {
  std::sort(v.begin(), v.end());
  const auto i = std::min(v.size() - 1, static_cast<std::size_t>(p * static_cast<double>(v.size())));
  return std::chrono::duration<double, std::micro>(v[i]).count();
}

int main(int argc, char** argv) {
  bool quick = false;
  std::string only;  // "rtt" or "stream": one half, for profiling
  std::string csv_path = "net_pingpong.csv";
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--quick")
      quick = true;
    else if (a == "--csv" && i + 1 < argc)
      csv_path = argv[++i];
    else if (a == "--only" && i + 1 < argc)
      only = argv[++i];
    else {
      std::cerr << "usage: net_pingpong [--quick] [--csv PATH] [--only rtt|stream]\n";
      return 2;
    }
  }
  signal(SIGPIPE, SIG_IGN);
  const std::size_t rounds = quick ? 2000 : 20000;
  const std::uint64_t small_count = quick ? 256 * 1024 : 4096 * 1024;  // multiples of the ack interval
  const std::uint64_t big_count = quick ? 2'000 : 20'000;

  std::ofstream csv(csv_path);
  csv << "case,metric,value\n";
  std::cout << std::fixed << std::setprecision(1);

  if (only != "stream") {
    // warm-up runs are discarded: the first fork and connection pay page faults
    raw_pingpong(200);
    const auto raw = raw_pingpong(rounds);
    if (only == "dcp-rtt") {  // for a profiler
      dcp_pingpong(rounds * 5);
      return 0;
    }
    if (only == "dcp-64k") {  // for a profiler
      const auto r = dcp_stream(65536, big_count, 128, 16);
      std::cout << static_cast<double>(big_count) * 65536 / r.seconds / 1e6 << " MB/s\n";
      return 0;
    }
    const auto asio_rtt = asio_pingpong(rounds);
    const auto dcp_rtt = dcp_pingpong(rounds);
    const double asio50 = percentile_us(asio_rtt, 0.5), asio99 = percentile_us(asio_rtt, 0.99);
    const double raw50 = percentile_us(raw, 0.5), raw99 = percentile_us(raw, 0.99);
    const double dcp50 = percentile_us(dcp_rtt, 0.5), dcp99 = percentile_us(dcp_rtt, 0.99);
    std::cout << "\nround trip, 64-byte messages, two processes on loopback (" << rounds << " rounds)\n";
    std::cout << "  case                      p50 us    p99 us   p50 / raw\n";
    std::cout << "  raw blocking sockets   " << std::setw(9) << raw50 << std::setw(10) << raw99 << "         1.00\n";
    std::cout << "  asio reactor, no dcp  " << std::setw(10) << asio50 << std::setw(10) << asio99 << std::setw(13)
              << std::setprecision(2) << asio50 / raw50 << "\n"
              << std::setprecision(1);
    std::cout << "  dcp::net node          " << std::setw(9) << dcp50 << std::setw(10) << dcp99 << std::setw(13)
              << std::setprecision(2) << dcp50 / raw50 << "   (goal <= 1.30)\n"
              << std::setprecision(1);
    csv << "raw_pingpong_64B,p50_us," << raw50 << "\nraw_pingpong_64B,p99_us," << raw99 << "\n";
    csv << "asio_pingpong_64B,p50_us," << asio50 << "\nasio_pingpong_64B,p99_us," << asio99 << "\n";
    csv << "dcp_pingpong_64B,p50_us," << dcp50 << "\ndcp_pingpong_64B,p99_us," << dcp99 << "\n";
    csv << "dcp_pingpong_64B,p50_ratio_to_raw," << dcp50 / raw50 << "\n";
  }
  if (only == "rtt") return 0;

  std::cout << "\none-way throughput, two processes on loopback\n";
  std::cout << "  case                                  messages      msg/s        MB/s\n";
  auto row = [&](const std::string& label, const std::string& key, std::size_t size, std::uint64_t count, double secs) {
    const double rate = static_cast<double>(count) / secs;
    const double mbps = rate * static_cast<double>(size) / 1e6;
    std::cout << "  " << std::left << std::setw(36) << label << std::right << std::setw(10) << count << std::setw(13)
              << std::setprecision(0) << rate << std::setw(12) << std::setprecision(1) << mbps << "\n";
    csv << key << ",msgs_per_s," << rate << "\n" << key << ",MB_per_s," << mbps << "\n";
  };
  row("raw, one write() per 64 B message", "raw_stream_64B", 64, small_count / 4,
      raw_stream_seconds(64, small_count / 4));
  const auto s64 = dcp_stream(64, small_count, 65536, 1024);
  row("dcp::net, 64 B payloads", "dcp_stream_64B", 64, small_count, s64.seconds);
  row("raw, 64 KiB writes", "raw_stream_64KiB", 65536, big_count, raw_stream_seconds(65536, big_count));
  const auto s64k = dcp_stream(65536, big_count, 128, 16);
  row("dcp::net, 64 KiB payloads", "dcp_stream_64KiB", 65536, big_count, s64k.seconds);
  std::cout << "  (goal: dcp::net 64 B >= 500000 msg/s)\n";
  if (s64.refused || s64k.refused)
    std::cout << "  note: " << s64.refused + s64k.refused << " sends refused (queue full)\n";
  std::cout << "\nCSV written to " << csv_path << "\n";
  return 0;
}
