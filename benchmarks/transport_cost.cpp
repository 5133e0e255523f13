// transport_cost: what authentication costs, plaintext vs keyring vs TLS, side by side.
//
//   ping-pong of 64-byte payloads: round trip p50 and p99 (one message in flight)
//   one-way throughput of 64 B and 64 KiB payloads, a window of unacknowledged
//   messages, acknowledged every `ack_every`
//
// UDP, plaintext (dcp::net::plaintext_udp_node, dcp/net/udp_transport.hpp)
// and sealed (dcp::net::keyring_udp_node, dcp/net/udp_keyring.hpp), in a
// table of their own: the same ping-pong, and streams of 64 B and 1 KiB
// payloads (a datagram holds at most 1,400 bytes) in small windows (256 and
// 64 messages, acknowledged every 32 and 8), which stay far below the socket
// buffers: UDP has no flow control, and a message or acknowledgement lost is
// never resent (a stream that stalls for 20 s prints "-").
//
// for dcp::net::plaintext_node, dcp::net::keyring_node (AES-256-GCM every
// frame, dcp/net/keyring.hpp) and dcp::net::tls_node (TLS 1.3, mutual
// authentication, certificates from a throwaway CA made at start-up with
// tests/net/tls_certs.hpp), two processes on loopback (each case forks a
// child; both run their own io_context). Prints a table; writes
// transport_cost.csv (or --csv PATH). --quick: a short run for CI (< 5 s).
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <iomanip>
#include <iostream>
#include <string>
#include <type_traits>
#include <vector>

#include <asio/io_context.hpp>

#include "dcp/net.hpp"
#include "dcp/net/keyring.hpp"
#include "dcp/net/tls.hpp"
#include "dcp/net/udp_keyring.hpp"
#include "pingpong_protocol.hpp"
#include "../tests/net/tls_certs.hpp"

using namespace std::chrono_literals;
using clk = std::chrono::steady_clock;

using pingpong_bench::bench_id;
using bench = pingpong_bench::bench<dcp::net::env>;

[[noreturn]] void die(const char* what) {
  std::perror(what);
  std::exit(1);
}

const dcp::net::keyring_key shared_key = dcp::net::keyring::generate();  // before any fork: both sides hold it
const dcp::test::tls_authority group_ca;                                 // likewise: both sides trust it

/// Builds the node of the kind named (a plaintext_node, keyring_node or
/// tls_node). A TLS node's certificate names its address: a port is chosen
/// before it binds.
template <class Node> std::unique_ptr<Node> make_node(asio::io_context& io) {
  dcp::net::config c;
  if constexpr (std::is_same_v<Node, dcp::net::tls_node>) {
    c.listen = dcp::test::free_loopback_address();
    return std::make_unique<Node>(io, c, group_ca.options_for(c.listen));
  } else if constexpr (Node::authenticated) {
    return std::make_unique<Node>(io, c, dcp::net::keyring(shared_key));
  } else {
    return std::make_unique<Node>(io, c);
  }
}

struct child {
  pid_t pid;
  std::uint16_t port;
};

template <class Node> child responder(std::uint64_t ack_every) {
  int fds[2];
  if (pipe(fds) != 0) die("pipe");
  const pid_t pid = fork();
  if (pid < 0) die("fork");
  if (pid == 0) {
    close(fds[0]);
    asio::io_context io;
    auto n = make_node<Node>(io);
    bench::config c;
    c.ack_every = ack_every;
    n->template add<bench>(bench_id, c);
    n->start();
    const std::uint16_t port = n->self().port();
    if (write(fds[1], &port, sizeof port) != static_cast<ssize_t>(sizeof port)) _exit(1);
    io.run();
    _exit(0);
  }
  close(fds[1]);
  std::uint16_t port = 0;
  if (read(fds[0], &port, sizeof port) != static_cast<ssize_t>(sizeof port)) die("read port");
  close(fds[0]);
  return {pid, port};
}
void reap(const child& c) {
  kill(c.pid, SIGKILL);
  waitpid(c.pid, nullptr, 0);
}

template <class Node> std::vector<clk::duration> pingpong(std::size_t rounds) {
  const child c = responder<Node>(1024);
  asio::io_context io;
  auto n = make_node<Node>(io);
  bench::config cfg;
  cfg.peer = dcp::address::loopback(c.port);
  cfg.total = rounds;
  cfg.done = [&] { n->stop(); };
  auto& b = n->template add<bench>(bench_id, cfg);
  n->start();
  b.start_pingpong();
  io.run();
  reap(c);
  return std::move(b.rtts);
}

template <class Node>
double stream_seconds(std::size_t size, std::uint64_t count, std::uint64_t window, std::uint64_t ack_every) {
  const child c = responder<Node>(ack_every);
  asio::io_context io;
  auto n = make_node<Node>(io);
  bench::config cfg;
  cfg.peer = dcp::address::loopback(c.port);
  cfg.payload = size;
  cfg.total = count;
  cfg.window = window;
  cfg.ack_every = ack_every;
  cfg.done = [&] { n->stop(); };
  auto& b = n->template add<bench>(bench_id, cfg);
  n->start();
  b.start_stream();
  io.run_for(20s);  // a datagram stream that lost a message or acknowledgement never finishes
  reap(c);
  if (b.finished == clk::time_point{}) return -1;
  return std::chrono::duration<double>(b.finished - b.started).count();
}

double percentile_us(std::vector<clk::duration> v, double p) {
  std::sort(v.begin(), v.end());
  const auto i = std::min(v.size() - 1, static_cast<std::size_t>(p * static_cast<double>(v.size())));
  return std::chrono::duration<double, std::micro>(v[i]).count();
}

int main(int argc, char** argv) {
  bool quick = false;
  std::string csv_path = "transport_cost.csv";
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--quick")
      quick = true;
    else if (a == "--csv" && i + 1 < argc)
      csv_path = argv[++i];
    else {
      std::cerr << "usage: transport_cost [--quick] [--csv PATH]\n";
      return 2;
    }
  }
  signal(SIGPIPE, SIG_IGN);
  const std::size_t rounds = quick ? 2000 : 20000;
  const std::uint64_t small_count = quick ? 64 * 1024 : 2048 * 1024;  // multiples of 1024
  const std::uint64_t big_count = quick ? 1024 : 16 * 1024;           // multiples of 16
  std::ofstream csv(csv_path);
  csv << "transport,metric,value\n";
  std::cout << std::fixed;

  pingpong<dcp::net::plaintext_node>(200);  // warm-up: the first fork and connection pay page faults
  struct row {
    const char* name;
    double p50, p99, small_rate, big_mbps;
  };
  auto measure = [&]<class Node>(const char* name, Node*) {
    const auto rtt = pingpong<Node>(rounds);
    const double s = stream_seconds<Node>(64, small_count, 65536, 1024);
    const double b = stream_seconds<Node>(65536, big_count, 128, 16);
    return row{name, percentile_us(rtt, 0.5), percentile_us(rtt, 0.99), static_cast<double>(small_count) / s,
               static_cast<double>(big_count) * 65536 / b / 1e6};
  };
  const row plain = measure("plaintext", static_cast<dcp::net::plaintext_node*>(nullptr));
  const row keyed = measure("keyring (AES-256-GCM)", static_cast<dcp::net::keyring_node*>(nullptr));
  const row tls = measure("TLS 1.3 (mutual)", static_cast<dcp::net::tls_node*>(nullptr));
  const std::uint64_t dgram_small = quick ? 16 * 1024 : 512 * 1024, dgram_big = quick ? 4 * 1024 : 128 * 1024;
  auto measure_udp = [&]<class Node>(const char* name, Node*) {
    const auto rtt = pingpong<Node>(rounds);
    const double s = stream_seconds<Node>(64, dgram_small, 256, 32);
    const double b = stream_seconds<Node>(1024, dgram_big, 64, 8);
    return row{name, percentile_us(rtt, 0.5), percentile_us(rtt, 0.99),
               s < 0 ? -1 : static_cast<double>(dgram_small) / s,
               b < 0 ? -1 : static_cast<double>(dgram_big) * 1024 / b / 1e6};
  };
  const row udp = measure_udp("UDP (plaintext)", static_cast<dcp::net::plaintext_udp_node*>(nullptr));
  const row udp_keyed = measure_udp("UDP keyring (AES-GCM)", static_cast<dcp::net::keyring_udp_node*>(nullptr));

  std::cout << "\ntransport cost, two processes on loopback (" << rounds << " round trips; " << small_count
            << " x 64 B and " << big_count << " x 64 KiB one way)\n";
  std::cout << "  transport                 rtt p50 us  rtt p99 us   64 B msg/s   64 KiB MB/s\n";
  for (const row& r : {plain, keyed, tls}) {
    std::cout << "  " << std::left << std::setw(24) << r.name << std::right << std::setprecision(1) << std::setw(12)
              << r.p50 << std::setw(12) << r.p99;
    csv << r.name << ",rtt_p50_us," << r.p50 << "\n" << r.name << ",rtt_p99_us," << r.p99 << "\n";
    if (r.small_rate < 0) {  // not measured (UDP: see the top)
      std::cout << std::setw(13) << "-" << std::setw(14) << "-"
                << "\n";
      continue;
    }
    std::cout << std::setprecision(0) << std::setw(13) << r.small_rate << std::setprecision(1) << std::setw(14)
              << r.big_mbps << "\n";
    csv << r.name << ",msgs_per_s_64B," << r.small_rate << "\n" << r.name << ",MB_per_s_64KiB," << r.big_mbps << "\n";
  }
  std::cout << std::setprecision(2) << "  keyring / plaintext: rtt p50 x" << keyed.p50 / plain.p50 << ", 64 B rate x"
            << keyed.small_rate / plain.small_rate << ", 64 KiB rate x" << keyed.big_mbps / plain.big_mbps << "\n";
  std::cout << "  TLS / plaintext:     rtt p50 x" << tls.p50 / plain.p50 << ", 64 B rate x"
            << tls.small_rate / plain.small_rate << ", 64 KiB rate x" << tls.big_mbps / plain.big_mbps << "\n";
  std::cout << "\ndatagrams (" << rounds << " round trips; " << dgram_small << " x 64 B in a window of 256, "
            << dgram_big << " x 1 KiB in a window of 64, one way)\n";
  std::cout << "  transport                 rtt p50 us  rtt p99 us   64 B msg/s    1 KiB MB/s\n";
  for (const row& r : {udp, udp_keyed}) {
    std::cout << "  " << std::left << std::setw(24) << r.name << std::right << std::setprecision(1) << std::setw(12)
              << r.p50 << std::setw(12) << r.p99;
    csv << r.name << ",rtt_p50_us," << r.p50 << "\n" << r.name << ",rtt_p99_us," << r.p99 << "\n";
    if (r.small_rate < 0)
      std::cout << std::setw(13) << "-";
    else
      std::cout << std::setprecision(0) << std::setw(13) << r.small_rate;
    if (r.big_mbps < 0)
      std::cout << std::setw(14) << "-"
                << "\n";
    else
      std::cout << std::setprecision(1) << std::setw(14) << r.big_mbps << "\n";
    csv << r.name << ",msgs_per_s_64B," << r.small_rate << "\n" << r.name << ",MB_per_s_1KiB," << r.big_mbps << "\n";
  }
  std::cout << std::setprecision(2) << "  UDP / TCP plaintext: rtt p50 x" << udp.p50 / plain.p50 << "\n";
  std::cout << "  UDP keyring / UDP:   rtt p50 x" << udp_keyed.p50 / udp.p50 << ", 64 B rate x"
            << udp_keyed.small_rate / udp.small_rate << ", 1 KiB rate x" << udp_keyed.big_mbps / udp.big_mbps << "\n";
  std::cout << "\nCSV written to " << csv_path << "\n";
  return 0;
}
