#include <doctest/doctest.h>

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <thread>
#include <vector>

#include "dcp/net.hpp"
#include "echo.hpp"

namespace test_perform {

using namespace dcp;
using dcp::test::run_until;
using echo = dcp::test::echo<net::env>;

// env.perform over TCP: with a file_disk the I/O runs on the node's own
// thread, so a slow fsync does not hold the executor: timers and posted work
// run meanwhile, and the completion comes back on the executor, once.
TEST_CASE("net::env: performed I/O runs beside the event loop, and its completion comes back on it") {
  const auto dir = std::filesystem::temp_directory_path() / ("dcp-perform-" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  asio::io_context io;
  net::config cfg;
  cfg.data_dir = dir;
  net::node a(io, cfg);
  auto& env = a.add<echo>(7).environment();
  a.start();
  const auto loop = std::this_thread::get_id();
  std::atomic<bool> io_running{false};
  std::thread::id io_thread;
  std::vector<int> order;
  env.perform(
      [&] {
        io_thread = std::this_thread::get_id();
        io_running = true;
        std::this_thread::sleep_for(std::chrono::milliseconds(200));  // a slow disk
        io_running = false;
        return std::error_code{};
      },
      [&](std::error_code ec) {
        CHECK_FALSE(ec);
        CHECK(std::this_thread::get_id() == loop);
        order.push_back(2);
      });
  bool ran_during_io = false;
  env.arm(std::chrono::milliseconds(20), [&] {
    ran_during_io = io_running;
    order.push_back(1);
  });
  REQUIRE(run_until(io, [&] { return order.size() == 2; }));
  CHECK(ran_during_io);  // the timer fired while the I/O was under way
  CHECK(io_thread != loop);
  CHECK(order == std::vector<int>{1, 2});

  // Stopped while I/O runs: stop() waits for it, and its completion is dropped.
  bool late = false;
  env.perform(
      [] {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        return std::error_code{};
      },
      [&](std::error_code) { late = true; });
  a.stop();
  io.restart();
  io.run_for(std::chrono::milliseconds(100));
  CHECK_FALSE(late);
  std::filesystem::remove_all(dir);
}

// Without a data directory (a memory disk, not safe off its thread) the
// work runs on the executor, after the call.
TEST_CASE("net::env: with a memory disk, performed I/O runs on the executor, after the call") {
  asio::io_context io;
  net::node a(io, {});
  auto& env = a.add<echo>(7).environment();
  a.start();
  std::thread::id ran;
  bool done = false;
  env.perform(
      [&] {
        ran = std::this_thread::get_id();
        return std::error_code{};
      },
      [&](std::error_code ec) { done = !ec; });
  CHECK_FALSE(done);
  REQUIRE(run_until(io, [&] { return done; }));
  CHECK(ran == std::this_thread::get_id());
}

}  // namespace test_perform
