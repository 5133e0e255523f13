#pragma once
// The net::config of a node in the net tests: a fixed seed, and reconnects
// quick enough for a test (10 ms, backing off to 40 ms, given up after 4).
#include <chrono>

#include "dcp/core/address.hpp"
#include "dcp/net/config.hpp"

namespace dcp::test {

inline net::config node_config(const address& listen = address::loopback(0)) {
  using namespace std::chrono_literals;
  net::config c;
  c.listen = listen;
  c.seed = 11;
  c.reconnect.initial = 10ms;
  c.reconnect.max = 40ms;
  c.reconnect.give_up_after_attempts = 4;
  return c;
}

}  // namespace dcp::test
