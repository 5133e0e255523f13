// async_lock: completion tokens over any mutex.
#include <asio/bind_executor.hpp>
#include <asio/io_context.hpp>
#include <asio/use_future.hpp>

#include "harness.hpp"

namespace test_async {

using namespace dcp;
using ra = mutex::ricart_agrawala<sim::env>;

TEST_CASE("async_lock: use_future and a callback bound to an io_context") {
  harness::simulator w(5, harness::random_network());
  harness::build<ra>(w, 3, mutex::ricart_agrawala_config{.request_timeout = 1s});
  auto& m1 = w.get<ra>(1, ra::default_id);
  auto f = mutex::async_lock(m1, asio::use_future);
  w.run_for(200ms);
  REQUIRE(f.wait_for(std::chrono::seconds(0)) == std::future_status::ready);
  f.get();  // no exception: granted
  CHECK(m1.holding());

  asio::io_context io;
  auto& m2 = w.get<ra>(2, ra::default_id);
  std::error_code got = errc::busy;
  bool called = false;
  mutex::async_lock(m2, asio::bind_executor(io, [&](std::error_code ec) { called = true, got = ec; }));
  w.run_for(2s);        // m1 never unlocks: m2 times out
  CHECK_FALSE(called);  // the completion waits for its own executor
  io.run();
  CHECK(called);
  CHECK(got == errc::timed_out);

  auto& m0 = w.get<ra>(0, ra::default_id);
  auto f2 = mutex::async_lock(m0, asio::use_future);
  w.run_for(2s);
  CHECK_THROWS_AS(f2.get(), std::system_error);  // errors arrive as exceptions through a future
}

}  // namespace test_async
