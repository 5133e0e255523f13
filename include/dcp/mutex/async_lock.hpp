#pragma once
// async_lock: any dcp mutex's lock() as an Asio asynchronous operation, so it
// takes a completion token: a callback, asio::use_future, asio::use_awaitable,
// asio::deferred ...
//
//     co_await dcp::mutex::async_lock(m, asio::use_awaitable);
//     std::future<void> f = dcp::mutex::async_lock(m, asio::use_future);
//
// Its completion signature is Asio's void(std::error_code), not lock()'s
// result<void>: that is what Asio's tokens expect (use_future makes it a
// std::future<void> that throws the error, use_awaitable throws it).
//
// The completion runs on the handler's associated executor (asio::dispatch),
// not inside the protocol's event: a coroutine on an io_context resumes on
// that io_context. Call async_lock() itself where the mutex's own calls are
// allowed (its node's strand / the simulator's thread).
#include <memory>
#include <system_error>
#include <utility>

#include <asio/associated_executor.hpp>
#include <asio/async_result.hpp>
#include <asio/dispatch.hpp>
#include <asio/executor_work_guard.hpp>

#include "dcp/mutex/api.hpp"

namespace dcp::mutex {

template <Mutex M, class CompletionToken> auto async_lock(M& m, CompletionToken&& token) {
  return asio::async_initiate<CompletionToken, void(std::error_code)>(
      [&m](auto handler) {
        using handler_type = decltype(handler);
        // lock() wants a copyable std::function; Asio handlers are move-only.
        struct state {
          handler_type handler;
          asio::executor_work_guard<asio::associated_executor_t<handler_type>> work;
        };
        auto ex = asio::get_associated_executor(handler);
        auto s = std::make_shared<state>(state{std::move(handler), asio::make_work_guard(ex)});
        m.lock([s](result<void> r) {
          const std::error_code ec = r.error();
          auto ex2 = s->work.get_executor();
          asio::dispatch(ex2, [s, ec]() mutable {
            auto h = std::move(s->handler);
            s->work.reset();
            std::move(h)(ec);
          });
        });
      },
      token);
}

}  // namespace dcp::mutex
