#pragma once
// The attacker without credentials, for the net tests: a plain TCP client
// that writes bytes of its choosing to a node and then reads until the node
// closes the connection (or `half_close` ends its own side after writing).
#include <array>
#include <cstddef>
#include <cstdint>
#include <system_error>
#include <utility>

#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/write.hpp>
#include <doctest/doctest.h>

#include "dcp/core/address.hpp"
#include "dcp/core/bytes.hpp"
#include "dcp/net/detail/connection.hpp"

namespace dcp::test {

struct raw_client {
  raw_client(asio::io_context& io, const address& to, bytes data, bool half_close = false)
      : socket(io), data_(std::move(data)) {
    socket.async_connect(net::detail::to_endpoint(to), [this, half_close](std::error_code ec) {
      REQUIRE(!ec);
      asio::async_write(socket, asio::buffer(data_), [this, half_close](std::error_code, std::size_t) {
        if (half_close) socket.shutdown(asio::socket_base::shutdown_send);
        read();
      });
    });
  }
  void read() {
    socket.async_read_some(asio::buffer(buf_), [this](std::error_code ec, std::size_t n) {
      if (ec) {
        closed_by_peer = true;
        return;
      }
      received += n;
      bytes_in.insert(bytes_in.end(), buf_.begin(), buf_.begin() + static_cast<std::ptrdiff_t>(n));
      read();
    });
  }
  asio::ip::tcp::socket socket;
  bool closed_by_peer = false;
  std::size_t received = 0;
  bytes bytes_in;  ///< what the node sent back

 private:
  bytes data_;
  std::array<std::uint8_t, 256> buf_{};
};

}  // namespace dcp::test
