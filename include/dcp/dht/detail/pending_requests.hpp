#pragma once
// pending_requests: the requests a recursively routing DHT has in flight at
// their origin, by nonce (the lookups of dht::pastry, dht::can and
// dht::tapestry, through routed_lookups.hpp, and Tapestry's locates).
//
// A request travels hop by hop, each hop acknowledged (hop_forwarder.hpp),
// and the key's root answers the origin directly, as in Pastry (Rowstron,
// Druschel 2001, §2.2), CAN (§2.1) and Tapestry (§3.2). That answer is not
// acknowledged: the origin sends the request again every `resend_every`
// until an answer comes or `deadline` passes, when the request fails with
// errc::lookup_failed. A reply is matched by the nonce alone, since the
// origin cannot name the root in advance (so the router draws nonces a
// stranger cannot guess); the first one completes the request, and later
// copies find nothing ("stale_reply" in the router).
//
// Not peer_requests.hpp, which waits for one named peer's answer (a hop's
// acknowledgement, a Chord or Kademlia RPC) for one timeout and leaves what
// follows to the router: here the answerer is unknown in advance, the request
// is resent on a period until its deadline, and it ends in the caller's
// callback. The two compose: each hop of a request here is acknowledged
// through peer_requests (hop_forwarder.hpp).
//
// Completion rule: open() runs the first send inside the call, which may reach
// the root at once (a lone node, or the origin owns the key); the callback is
// wrapped with after_return, so it still runs after open() has returned.
//
// Bounded by its owner: a request is opened only by a local call, never by a
// message from the network, and each lives at most `deadline`.
#include <cstdint>
#include <functional>
#include <string_view>
#include <system_error>
#include <unordered_map>
#include <utility>

#include "dcp/core/env.hpp"
#include "dcp/core/result.hpp"
#include "dcp/dht/error.hpp"

namespace dcp::dht::detail {

template <Env E, class Result> class pending_requests {
 public:
  using callback = std::function<void(result<Result>)>;
  /// Sends (or resends) the request with this nonce along the route.
  using sender = std::function<void(std::uint64_t nonce)>;

  /// failed_counter counts requests that reached their deadline; retry_counter
  /// counts resends.
  pending_requests(E env, duration deadline, duration resend_every, std::string_view failed_counter,
                   std::string_view retry_counter)
      : env_(std::move(env)),
        deadline_(deadline),
        resend_every_(resend_every),
        failed_counter_(failed_counter),
        retry_counter_(retry_counter) {}
  pending_requests(const pending_requests&) = delete;
  pending_requests& operator=(const pending_requests&) = delete;
  ~pending_requests() { cancel_timers(); }

  bool contains(std::uint64_t nonce) const { return ops_.contains(nonce); }
  std::size_t size() const noexcept { return ops_.size(); }

  /// Opens a request: arms its deadline, sends it now and again every
  /// resend_every until it completes. `cb` runs once, after this call returns.
  void open(std::uint64_t nonce, callback cb, sender send) {
    after_return done(env_);
    const timer_id t = env_.arm(deadline_, [this, nonce] {
      auto it = ops_.find(nonce);
      if (it == ops_.end()) return;
      auto cb = std::move(it->second.cb);
      env_.cancel(it->second.retry);
      ops_.erase(it);
      env_.count(failed_counter_);
      cb(make_error_code(errc::lookup_failed));
    });
    ops_.emplace(nonce, op{done.wrap(std::move(cb)), t, {}, std::move(send)});
    resend(nonce, 0);
    done.returned();
  }

  /// Completes the request: false when none with this nonce is in flight.
  bool complete(std::uint64_t nonce, std::error_code ec, Result result = {}) {
    auto it = ops_.find(nonce);
    if (it == ops_.end()) return false;
    auto cb = std::move(it->second.cb);
    env_.cancel(it->second.timer);
    env_.cancel(it->second.retry);
    ops_.erase(it);
    if (ec)
      cb(ec);
    else
      cb(std::move(result));
    return true;
  }

  /// Completes every request with `ec` (the node left, or was evicted).
  void fail_all(std::error_code ec) {
    auto ops = std::move(ops_);
    ops_.clear();
    for (auto& [n, o] : ops) {
      env_.cancel(o.timer);
      env_.cancel(o.retry);
      if (o.cb) o.cb(ec);
    }
  }

  /// Stops every request's deadline and resends, leaving them in the table.
  void cancel_timers() {
    for (auto& [n, o] : ops_) env_.cancel(o.timer), env_.cancel(o.retry);
  }

 private:
  struct op {
    callback cb;
    timer_id timer{}, retry{};
    sender send;
  };

  void resend(std::uint64_t nonce, unsigned attempt) {
    auto it = ops_.find(nonce);
    if (it == ops_.end()) return;
    if (attempt > 0) env_.count(retry_counter_);
    it->second.retry = env_.arm(resend_every_, [this, nonce, attempt] { resend(nonce, attempt + 1); });
    auto send = it->second.send;  // the send may complete the request, erasing it
    send(nonce);
  }

  E env_;
  duration deadline_, resend_every_;
  std::string_view failed_counter_, retry_counter_;
  std::unordered_map<std::uint64_t, op> ops_;
};

}  // namespace dcp::dht::detail
