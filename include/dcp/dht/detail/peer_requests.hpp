#pragma once
// peer_requests: the requests a DHT router has in flight to named peers, by
// nonce, each waiting for that one peer's answer.
//
// Every router asks a peer and waits: each acknowledged hop of the recursive
// routers (hop_forwarder.hpp), Chord's stabilization, predecessor pings and
// join requests (Stoica et al. 2001, §4), Kademlia's find_node requests and
// pings (Maymounkov, Mazières 2002, §2.3). The table matches an answer by its
// nonce and counts it only from the peer it was sent to, so a stranger that
// guesses a nonce ends nothing (the router counts "stale_reply"). A request
// not answered within `timeout` leaves the table and goes to the router's
// timeout handler (counted as `timeout_counter` when one is named), which does
// what its paper says: ask the same peer again, ask another, or declare the
// peer failed. The handler gets the request's nonce and `Note`, what the
// router remembers of it (the lookup it serves, the message to resend, ...).
//
// A request may also wait without a timeout (await_untimed): one that timed
// out but whose late answer still counts, as Kademlia's first request to a
// silent contact (§2.3: a node is considered again if it does respond), kept
// until what it belongs to ends (drop_if) or its owner stops (clear).
//
// Not pending_requests.hpp: that table holds a request at its origin whose
// answerer is not known in advance (a routed lookup's root), matched by nonce
// alone, resent on a fixed period until a deadline, and ending in the
// caller's callback. Here the peer is named, its answer only counts from it,
// one timeout ends the wait, and the router decides what follows. The two
// compose: each hop of a routed request is a peer request here
// (hop_forwarder.hpp).
//
// Bounded by its owner: a request is entered only when the router itself
// sends one, never on a message from the network, and each lives at most its
// timeout or as long as the lookup or join it belongs to.
#include <cstdint>
#include <functional>
#include <optional>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <variant>
#include <vector>

#include "dcp/core/address.hpp"
#include "dcp/core/env.hpp"

namespace dcp::dht::detail {

template <Env E, class Note = std::monostate> class peer_requests {
 public:
  struct request {
    address peer;
    Note note{};
    timer_id timer{};  // none while waiting untimed
  };
  using timeout_handler = std::function<void(std::uint64_t nonce, request)>;

  /// `timeout_counter` empty: timeouts are not counted here (the handler may count them).
  peer_requests(E env, duration timeout, std::string_view timeout_counter = {})
      : env_(std::move(env)), timeout_(timeout), timeout_counter_(timeout_counter) {}
  peer_requests(const peer_requests&) = delete;
  peer_requests& operator=(const peer_requests&) = delete;
  ~peer_requests() { clear(); }

  /// What to do with a request not answered in time; it has left the table.
  void on_timeout(timeout_handler h) { on_timeout_ = std::move(h); }

  bool contains(std::uint64_t nonce) const { return requests_.contains(nonce); }
  bool empty() const noexcept { return requests_.empty(); }
  std::size_t size() const noexcept { return requests_.size(); }
  /// Whether a request to `peer` is in flight (a router that asks one at a time).
  bool awaits(const address& peer) const {
    for (auto& [n, r] : requests_)
      if (r.peer == peer) return true;
    return false;
  }
  /// Whether `from`'s answer to `nonce` would end a request (without ending it).
  bool expects(const address& from, std::uint64_t nonce) const {
    auto it = requests_.find(nonce);
    return it != requests_.end() && it->second.peer == from;
  }

  /// Waits one timeout for `peer`'s answer to request `nonce`, which the caller sends.
  void await(std::uint64_t nonce, const address& peer, Note note = {}) {
    const timer_id t = env_.arm(timeout_, [this, nonce] { timed_out(nonce); });
    put(nonce, request{peer, std::move(note), t});
  }
  /// Waits for it without a timeout, until answered, dropped or cleared.
  void await_untimed(std::uint64_t nonce, const address& peer, Note note = {}) {
    put(nonce, request{peer, std::move(note), {}});
  }

  /// `from`'s answer to `nonce`: the request, out of the table, when one was in
  /// flight to that peer; nothing otherwise.
  std::optional<request> answer(const address& from, std::uint64_t nonce) {
    auto it = requests_.find(nonce);
    if (it == requests_.end() || it->second.peer != from) return std::nullopt;
    return take(it);
  }

  /// Takes out every request waiting for `peer` (the transport gave up on it)
  /// and hands each, one at a time, to `f(nonce, request)` without waiting for its timeout.
  template <class F> void abandon(const address& peer, F&& f) {
    std::vector<std::uint64_t> waiting;  // (f may send, and so add requests)
    for (auto& [n, r] : requests_)
      if (r.peer == peer) waiting.push_back(n);
    for (auto n : waiting)
      if (auto it = requests_.find(n); it != requests_.end()) f(n, take(it));
  }
  /// Forgets request `nonce`, if in flight (what it served has ended).
  void erase(std::uint64_t nonce) {
    if (auto it = requests_.find(nonce); it != requests_.end()) take(it);
  }
  /// Forgets the requests for which `pred(request)` holds (what they served has ended).
  template <class P> void drop_if(P&& pred) {
    std::erase_if(requests_, [&](const auto& kv) {
      if (!pred(kv.second)) return false;
      if (kv.second.timer) env_.cancel(kv.second.timer);
      return true;
    });
  }
  /// Forgets every request (the node stopped).
  void clear() {
    for (auto& [n, r] : requests_)
      if (r.timer) env_.cancel(r.timer);
    requests_.clear();
  }

 private:
  void put(std::uint64_t nonce, request r) {
    auto [it, fresh] = requests_.try_emplace(nonce, std::move(r));
    if (fresh) return;
    if (it->second.timer) env_.cancel(it->second.timer);  // the same request again: one timeout at a time
    it->second = std::move(r);
  }
  request take(typename std::unordered_map<std::uint64_t, request>::iterator it) {
    request r = std::move(it->second);
    if (r.timer) env_.cancel(r.timer), r.timer = {};
    requests_.erase(it);
    return r;
  }

  void timed_out(std::uint64_t nonce) {
    auto it = requests_.find(nonce);
    if (it == requests_.end()) return;
    request r = std::move(it->second);
    r.timer = {};
    requests_.erase(it);
    if (!timeout_counter_.empty()) env_.count(timeout_counter_);
    if (on_timeout_) on_timeout_(nonce, std::move(r));
  }

  E env_;
  duration timeout_;
  std::string_view timeout_counter_;
  timeout_handler on_timeout_;
  std::unordered_map<std::uint64_t, request> requests_;
};

}  // namespace dcp::dht::detail
