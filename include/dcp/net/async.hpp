#pragma once
// Completion tokens for user-facing calls: any callback-style protocol call
// becomes an Asio asynchronous operation.
//
// Protocols are sans-I/O: a call that answers later takes a plain callback,
// e.g. `void get(key, std::function<void(dcp::result<value>)> done)`.
// async_call adapts such a call to Asio's universal model (whose signature
// is `void(std::error_code, value)`), so the caller picks how to wait, with
// any completion token:
//
//     auto init = [&](auto done) {
//       store.get(key, [done](dcp::result<value> r) { r ? done({}, *r) : done(r.error(), {}); });
//     };
//     // a callback
//     dcp::net::async_call<void(std::error_code, value)>(node, init,
//         [](std::error_code ec, value v) { ... });
//     // a future, from another thread
//     auto f = dcp::net::async_call<void(std::error_code, value)>(node, init, asio::use_future);
//     // a coroutine
//     value v = co_await dcp::net::async_call<void(std::error_code, value)>(node, init, asio::use_awaitable);
//
// The initiation runs on the node's executor (dispatched: inline when the
// caller is already there), so async_call may be called from any thread.
// It receives a dcp::net::completion<Signature>: copyable (a protocol may keep
// it in a std::function) and once-only (later calls are ignored). Completing
// it posts the handler to the handler's associated executor (the node's
// executor by default), never inline: a protocol can complete from inside
// its own state changes without the user's code re-entering it there.
// A protocol must complete every call it accepted, with an error such as
// errc::cancelled or errc::shutting_down when it gives up; a completion
// destroyed without being called destroys the handler (a future then reports
// a broken promise, a coroutine never resumes).
//
// Per-operation cancellation (Asio's cancellation slots: a handler bound
// with asio::bind_cancellation_slot, an awaitable raced against a timer). An
// initiation that can stop its call returns how, a callable:
//
//     auto init = [&](auto done) {
//       auto h = peer.acquire(res, shard, 1, [done](dcp::result<grant> g) { ... });
//       return [&peer, h] { peer.cancel(h); };
//     };
//
// and a cancellation emitted on the handler's slot runs it on the node's
// executor; the protocol then completes the call (with errc::cancelled) as
// it always must. The slot is cleared when the call completes. An
// initiation that returns nothing ignores cancellation.
#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <tuple>
#include <type_traits>
#include <utility>

#include <asio/any_io_executor.hpp>
#include <asio/associated_allocator.hpp>
#include <asio/associated_cancellation_slot.hpp>
#include <asio/associated_executor.hpp>
#include <asio/async_result.hpp>
#include <asio/dispatch.hpp>
#include <asio/execution.hpp>
#include <asio/post.hpp>
#include <asio/prefer.hpp>

namespace dcp::net {

template <class Signature> class completion;

/// A copyable, once-only completion handler of signature void(Args...).
template <class... Args> class completion<void(Args...)> {
 public:
  /// Wraps `handler`; `fallback` is the executor it completes on when it has
  /// no associated executor of its own (the node's).
  template <class Handler> completion(Handler&& handler, const asio::any_io_executor& fallback)
      : state_(std::make_shared<state<std::decay_t<Handler>>>(std::forward<Handler>(handler), fallback)) {}

  /// Completes the operation (the first call only).
  void operator()(Args... args) const {
    if (state_ && !state_->done.exchange(true)) state_->complete(std::forward<Args>(args)...);
  }
  /// True until the first call.
  bool pending() const noexcept { return state_ && !state_->done.load(); }
  /// Runs `stop` on `ex` when a cancellation is emitted on the handler's
  /// cancellation slot before the call completes (nothing if the handler has
  /// no slot connected).
  template <class Stop> void on_cancel(const asio::any_io_executor& ex, Stop stop) const {
    if (state_) state_->on_cancel(ex, std::function<void()>(std::move(stop)));
  }

 private:
  struct base {
    virtual ~base() = default;
    virtual void complete(Args... args) = 0;
    virtual void on_cancel(const asio::any_io_executor& ex, std::function<void()> stop) = 0;
    std::atomic<bool> done{false};
  };
  template <class Handler> struct state final : base {
    using executor = asio::associated_executor_t<Handler, asio::any_io_executor>;
    using tracked =
        std::decay_t<decltype(asio::prefer(std::declval<executor>(), asio::execution::outstanding_work.tracked))>;

    state(Handler h, const asio::any_io_executor& fallback)
        : handler(std::move(h)),
          work(asio::prefer(asio::get_associated_executor(handler, fallback),
                            asio::execution::outstanding_work.tracked)) {}
    void complete(Args... args) override {
      if (slot.is_connected()) slot.clear();  // its stop would now name a finished call
      asio::post(*work,
                 [h = std::move(handler),
                  values = std::make_tuple(std::decay_t<Args>(std::forward<Args>(args))...)]() mutable {
                   std::apply([&](auto&&... v) { std::move(h)(std::move(v)...); }, std::move(values));
                 });
      work.reset();  // the posted handler now keeps the executor busy
    }
    void on_cancel(const asio::any_io_executor& ex, std::function<void()> stop) override {
      if (!slot.is_connected() || this->done.load()) return;
      // posted, never run inside emit(): completing clears the slot, which must not
      // destroy the handler emit() is running
      slot.assign([ex, stop = std::move(stop)](asio::cancellation_type) { asio::post(ex, stop); });
    }
    Handler handler;
    asio::cancellation_slot slot = asio::get_associated_cancellation_slot(handler);
    std::optional<tracked> work;  // keeps the handler's executor from running out of work meanwhile
  };
  std::shared_ptr<base> state_;
};

/// Runs `initiation(completion<Signature>)` on `node`'s executor and returns
/// what `token` makes of it (nothing for a callback, a std::future for
/// asio::use_future, an awaitable for asio::use_awaitable, ...).
/// `node` is anything with get_executor(): a dcp::net::node, say.
template <class Signature, class Node, class Initiation, class CompletionToken>
auto async_call(Node& node, Initiation&& initiation, CompletionToken&& token) {
  return asio::async_initiate<CompletionToken, Signature>(
      [](auto handler, asio::any_io_executor ex, auto init) {
        asio::dispatch(ex, [handler = std::move(handler), ex, init = std::move(init)]() mutable {
          completion<Signature> done(std::move(handler), ex);
          if constexpr (std::is_void_v<decltype(init(done))>) {
            init(done);
          } else {  // it says how to stop the call: on the handler's cancellation slot
            auto stop = init(done);
            if (done.pending()) done.on_cancel(ex, std::move(stop));
          }
        });
      },
      token, asio::any_io_executor(node.get_executor()), std::forward<Initiation>(initiation));
}

}  // namespace dcp::net
