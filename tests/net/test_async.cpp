#include <doctest/doctest.h>

#include <future>
#include <string>
#include <thread>

#include <asio/bind_cancellation_slot.hpp>
#include <asio/cancellation_signal.hpp>
#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/executor_work_guard.hpp>
#include <asio/strand.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/use_future.hpp>

#include "dcp/net.hpp"
#include "echo.hpp"

namespace test_async {

using namespace dcp;
using dcp::test::run_until;
using echo = dcp::test::echo<net::env>;

namespace {
constexpr protocol_id echo_id = 7;

net::config loopback_config() {
  net::config c;
  c.listen = address::loopback(0);
  return c;
}

// The user-facing async form of echo::call, for any completion token.
template <class Token> auto async_echo(net::node& n, echo& e, address to, std::string body, Token&& token) {
  return net::async_call<void(std::error_code, std::string)>(
      n, [&e, to, body = std::move(body)](auto done) mutable { e.call(to, std::move(body), std::move(done)); },
      std::forward<Token>(token));
}
}  // namespace

TEST_CASE("net::async_call with a callback: completes once, posted, on the node's executor") {
  asio::io_context io;
  net::node a(io, loopback_config()), b(io, loopback_config());
  auto& ea = a.add<echo>(echo_id, 300ms);
  b.add<echo>(echo_id);
  a.start();
  b.start();
  int calls = 0;
  std::string got;
  async_echo(a, ea, b.self(), "by callback", [&](std::error_code ec, std::string body) {
    CHECK(!ec);
    got = body;
    ++calls;
  });
  CHECK(calls == 0);  // never inline
  REQUIRE(run_until(io, [&] { return calls == 1; }));
  CHECK(got == "by callback");

  // An error travels as the error_code; a completion called twice completes once.
  std::error_code timeout;
  const address nobody = address::loopback(1);  // port 1: refused, but the call times out first? either way: an error
  async_echo(a, ea, nobody, "x", [&](std::error_code ec, std::string) {
    timeout = ec;
    ++calls;
  });
  REQUIRE(run_until(io, [&] { return calls == 2; }));
  CHECK(timeout);
  int once = 0;
  net::async_call<void(int)>(
      a,
      [](auto done) {
        done(1);
        done(2);
      },
      [&](int v) { once += v; });
  REQUIRE(run_until(io, [&] { return once != 0; }));
  io.restart();
  io.poll();
  CHECK(once == 1);
}

TEST_CASE("net::async_call with use_future, from a thread that does not run the io_context") {
  asio::io_context io;
  net::node a(io, loopback_config()), b(io, loopback_config());
  auto& ea = a.add<echo>(echo_id);
  b.add<echo>(echo_id);
  a.start();
  b.start();
  auto work = asio::make_work_guard(io);
  std::thread runner([&] { io.run(); });
  // The initiation is dispatched to the node's executor: safe from this thread.
  std::future<std::string> f = async_echo(a, ea, b.self(), "by future", asio::use_future);
  CHECK(f.get() == "by future");
  // An error becomes an exception carrying the error_code.
  auto failed = net::async_call<void(std::error_code, std::string)>(
      a, [](auto done) { done(make_error_code(errc::not_found), std::string{}); }, asio::use_future);
  try {
    failed.get();
    FAIL("no exception");
  } catch (const std::system_error& e) { CHECK(e.code() == make_error_code(errc::not_found)); }
  a.async_stop(asio::use_future).get();
  b.async_stop(asio::use_future).get();
  work.reset();
  runner.join();
}

// Asio offers coroutines only where the compiler and the standard library
// agree on them (not clang 14 with libstdc++ 12, say).
#if defined(ASIO_HAS_CO_AWAIT)
TEST_CASE("net::async_call with use_awaitable, in a coroutine; and nodes on strands of a multi-threaded io_context") {
  asio::io_context io;
  // Two threads run the io_context; each node gets its own strand, so its
  // protocols still run one handler at a time (the library makes no strand itself).
  auto sa = asio::make_strand(io), sb = asio::make_strand(io);
  net::node a(sa, loopback_config()), b(sb, loopback_config());
  auto& ea = a.add<echo>(echo_id);
  b.add<echo>(echo_id);
  a.start();
  b.start();
  std::vector<std::string> replies;
  bool failed_as_expected = false;
  asio::co_spawn(
      sa,
      [&]() -> asio::awaitable<void> {
        for (int i = 0; i < 20; ++i)
          replies.push_back(co_await async_echo(a, ea, b.self(), "co " + std::to_string(i), asio::use_awaitable));
        try {
          co_await net::async_call<void(std::error_code)>(
              a, [](auto done) { done(make_error_code(errc::cancelled)); }, asio::use_awaitable);
        } catch (const std::system_error& e) { failed_as_expected = e.code() == make_error_code(errc::cancelled); }
        a.stop();
        co_await b.async_stop(asio::use_awaitable);
      },
      asio::detached);
  std::thread second([&] { io.run(); });
  io.run();
  second.join();
  REQUIRE(replies.size() == 20);
  for (int i = 0; i < 20; ++i) CHECK(replies[i] == "co " + std::to_string(i));
  CHECK(failed_as_expected);
}
#endif  // ASIO_HAS_CO_AWAIT

// Per-operation cancellation: an initiation that returns how to stop its
// call has it run when the handler's cancellation slot is emitted; the call
// then completes as cancelled, once. After the call completed, an emission
// stops nothing.
TEST_CASE("net::async_call: a cancellation emitted on the handler's slot stops the call") {
  asio::io_context io;
  net::node a(io, loopback_config());
  // A call that completes only when told to, or stopped.
  std::function<void(result<int>)> waiting;
  int stops = 0;
  auto init = [&](auto done) {
    waiting = [done](result<int> r) { r ? done({}, *r) : done(r.error(), 0); };
    return [&] {
      ++stops;
      if (auto w = std::exchange(waiting, nullptr)) w(dcp::make_error_code(dcp::errc::cancelled));
    };
  };
  asio::cancellation_signal signal;
  int calls = 0;
  std::error_code got;
  net::async_call<void(std::error_code, int)>(a, init,
                                              asio::bind_cancellation_slot(signal.slot(), [&](std::error_code ec, int) {
                                                got = ec;
                                                ++calls;
                                              }));
  io.poll();
  CHECK(calls == 0);
  signal.emit(asio::cancellation_type::terminal);
  CHECK(stops == 0);  // posted to the node's executor, never run inside emit()
  REQUIRE(run_until(io, [&] { return calls == 1; }));
  CHECK(stops == 1);
  CHECK(got == dcp::make_error_code(dcp::errc::cancelled));

  // Completed first: the slot is cleared, and a later emission stops nothing.
  net::async_call<void(std::error_code, int)>(a, init,
                                              asio::bind_cancellation_slot(signal.slot(), [&](std::error_code ec, int) {
                                                got = ec;
                                                ++calls;
                                              }));
  io.restart();
  io.poll();
  std::exchange(waiting, nullptr)(7);
  REQUIRE(run_until(io, [&] { return calls == 2; }));
  CHECK(!got);
  signal.emit(asio::cancellation_type::terminal);
  io.restart();
  io.poll();
  CHECK(stops == 1);
  CHECK(calls == 2);

  // An initiation that returns nothing ignores cancellation.
  net::async_call<void(std::error_code, int)>(
      a, [&](auto done) { waiting = [done](result<int> r) { done(r.error(), 0); }; },
      asio::bind_cancellation_slot(signal.slot(), [&](std::error_code, int) { ++calls; }));
  io.restart();
  io.poll();
  signal.emit(asio::cancellation_type::terminal);
  io.restart();
  io.poll();
  CHECK(calls == 2);
  CHECK(stops == 1);
}

}  // namespace test_async
