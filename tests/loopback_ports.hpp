// Loopback ports a test binds later (a TLS node's certificate names its port
// before the node listens), none of which another dcp test can take in the
// meantime: the C++ side of tests/multiprocess.sh's port blocks, with the
// same lock files. A port the kernel picks (bind to 0, read it, close) is
// from the ephemeral range, where the outgoing connections of every test
// running beside this one take their ports; a port of a block this process
// holds an flock on is handed to nobody else, and lies below that range.
#pragma once

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <random>
#include <stdexcept>
#include <string>

#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>

#include "dcp/core/address.hpp"

namespace dcp::test {

/// A loopback port of this process's block on which nobody listens now, a
/// new one at each call (256 per process).
inline std::uint16_t claim_loopback_port() {
  constexpr int first_port = 15000, block_size = 256, blocks = (32768 - first_port) / block_size;
  static int block_first = -1;  // the block's lock is held for the life of the process
  static int next = 0;
  if (block_first < 0) {
    const char* tmp = std::getenv("TMPDIR");
    const std::string dir = std::string(tmp && *tmp ? tmp : "/tmp") + "/dcp-test-ports-" + std::to_string(::getuid());
    ::mkdir(dir.c_str(), 0755);
    std::minstd_rand pick(static_cast<unsigned>(::getpid()) ^ std::random_device{}());
    for (int attempt = 0; attempt < 500 && block_first < 0; ++attempt) {
      const int b = static_cast<int>(pick() % blocks);
      const int fd = ::open((dir + "/" + std::to_string(b)).c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0644);
      if (fd < 0) continue;
      if (::flock(fd, LOCK_EX | LOCK_NB) == 0)
        block_first = first_port + b * block_size;
      else
        ::close(fd);
    }
    if (block_first < 0) throw std::runtime_error("claim_loopback_port: no free block of test ports in " + dir);
  }
  asio::io_context io;
  while (next < block_size) {
    const auto port = static_cast<std::uint16_t>(block_first + next++);
    asio::ip::tcp::acceptor probe(io);
    asio::error_code ec;
    probe.open(asio::ip::tcp::v4(), ec);
    if (!ec) probe.bind({asio::ip::address_v4::loopback(), port}, ec);
    if (!ec) return port;  // closed again on return: free for the test to bind
  }
  throw std::runtime_error("claim_loopback_port: the 256 ports of this process's block are used up");
}

/// claim_loopback_port() as a dcp address.
inline address free_loopback_address() { return address::ip(asio::ip::address_v4::loopback(), claim_loopback_port()); }

}  // namespace dcp::test
