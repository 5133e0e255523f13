#include <doctest/doctest.h>

#include <unistd.h>

#include <filesystem>
#include <string>
#include <vector>

#include "dcp/net.hpp"
#include "echo.hpp"

namespace test_env {

using namespace dcp;
using dcp::test::run_until;
using echo = dcp::test::echo<net::env>;

namespace {
constexpr protocol_id echo_id = 7;
}

TEST_CASE("net::env: disk in the data directory (or memory), seeded rng, logs from the level up, counters") {
  asio::io_context io;
  const auto dir = std::filesystem::temp_directory_path() / ("dcp_net_env_" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  std::vector<std::string> lines;
  net::config cfg;
  cfg.data_dir = dir;
  cfg.seed = 1234;
  cfg.level = log_level::info;
  cfg.log = [&](const log_record& r) {
    lines.push_back(std::string(to_string(r.level)) + " " + std::to_string(r.protocol) + " " + std::string(r.text));
  };
  net::node a(io, cfg);
  auto& env = a.add<echo>(echo_id).environment();

  // disk(): a file_disk in data_dir; synced bytes are on the file system.
  REQUIRE(!env.disk().write("state", as_bytes("durable")));
  REQUIRE(!env.disk().sync("state"));
  CHECK(std::filesystem::exists(dir / "state"));
  CHECK(as_string(*env.disk().read("state")) == "durable");

  // rng(): the configured seed gives the same sequence on another node.
  net::config other;
  other.seed = 1234;
  net::node b(io, other);
  auto& env_b = b.add<echo>(echo_id).environment();
  for (int i = 0; i < 5; ++i) CHECK(env.rng()() == env_b.rng()());
  // ... and without a seed, two nodes differ.
  net::node c(io, {}), d(io, {});
  CHECK(c.add<echo>(echo_id).environment().rng()() != d.add<echo>(echo_id).environment().rng()());
  // No data_dir: an in-memory disk, nothing on the file system.
  CHECK(!env_b.disk().write("state", as_bytes("volatile")));
  CHECK(as_string(*env_b.disk().read("state")) == "volatile");

  // logs(): from the configured level up, tagged with the protocol.
  CHECK(env.logs(log_level::warn));
  CHECK(!env.logs(log_level::debug));
  dcp::log(env, log_level::debug, "hidden");
  dcp::log(env, log_level::warn, "shown ", 42);
  REQUIRE(lines.size() == 1);
  CHECK(lines[0] == "warn 7 shown 42");
  CHECK(!env_b.logs(log_level::error));  // no sink: logging is off

  // count(): a named counter of the protocol in the node's metrics.
  env.count("rounds");
  env.count("rounds", 2);
  CHECK(a.metrics().counter(echo_id, "rounds") == 3);

  // now(): the steady clock; timers fire in deadline order, ties in arming order.
  const time_point t0 = env.now();
  std::vector<int> fired;
  env.arm(30ms, [&] { fired.push_back(3); });
  env.arm(10ms, [&] { fired.push_back(1); });
  env.arm(10ms, [&] { fired.push_back(2); });
  const timer_id gone = env.arm(20ms, [&] { fired.push_back(99); });
  CHECK(env.cancel(gone));
  CHECK(!env.cancel(gone));
  REQUIRE(run_until(io, [&] { return fired.size() == 3; }));
  CHECK(fired == std::vector<int>{1, 2, 3});
  CHECK(env.now() - t0 >= 30ms);
  a.stop();
  CHECK(env.arm(1ms, [&] { fired.push_back(4); }));  // a stopped node arms nothing that fires
  io.restart();
  io.run_for(20ms);
  CHECK(fired.size() == 3);
  std::filesystem::remove_all(dir);
}

TEST_CASE("net::env: an in-memory disk says so once, through the log hook, at its first use") {
  asio::io_context io;
  std::vector<std::string> warnings;
  net::config cfg;  // no data_dir
  cfg.log = [&](const log_record& r) {
    if (r.level == log_level::warn) warnings.push_back(std::to_string(r.protocol) + " " + std::string(r.text));
  };
  net::node n(io, cfg);
  auto& one = n.add<echo>(echo_id).environment();
  auto& two = n.add<echo>(echo_id + 1).environment();
  CHECK(warnings.empty());  // a node that never uses its disk hears nothing
  REQUIRE(!one.disk().write("state", as_bytes("volatile")));
  REQUIRE(!one.disk().sync("state"));
  REQUIRE(!two.disk().write("other", as_bytes("volatile")));
  REQUIRE(warnings.size() == 1);  // once per node, not per protocol or per call
  CHECK(warnings[0].starts_with("7 env.disk() is in memory"));
  CHECK(warnings[0].find("data_dir") != std::string::npos);

  // With a data directory: no warning.
  const auto dir = std::filesystem::temp_directory_path() / ("dcp_net_env_warn_" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  warnings.clear();
  cfg.data_dir = dir;
  net::node d(io, cfg);
  REQUIRE(!d.add<echo>(echo_id).environment().disk().write("state", as_bytes("durable")));
  CHECK(warnings.empty());
  std::filesystem::remove_all(dir);
}

}  // namespace test_env
