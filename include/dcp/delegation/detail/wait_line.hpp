#pragma once
// wait_line: the FIFO of token requests a coordinator's share could not
// serve yet, shared by delegation::peer (single delegation) and
// delegation::group (multi-delegation).
//
// Waiting in line instead of being told "retry later" keeps permits from
// idling while clients back off, and serves requests in arrival order, so
// nobody is passed over by a luckier retry. A waiter keeps its place by
// resending its request (same nonce); one that stops resending for
// `patience` has given up and leaves the line when it reaches the head.
// The line is bounded by its owner (4 x share + 16 in both): beyond it,
// requests are told to retry, and a flood costs the flooder round trips,
// not the coordinator memory.
//
// Every waiter resends, so a refresh must not scan the line: with L waiters
// that would cost L^2 per resend period (at 10^5 clients it was most of a
// simulation's time). The waiters' times are kept by (sender, nonce).
#include <cstdint>
#include <deque>
#include <map>
#include <utility>

#include "dcp/core/address.hpp"
#include "dcp/core/time.hpp"

namespace dcp::delegation::detail {

class wait_line {
 public:
  struct waiter {
    address from;
    std::uint64_t nonce = 0;
    std::uint32_t permits = 1;
    time_point refreshed{};  ///< when it joined; its latest resend is kept in the line
  };

  bool empty() const noexcept { return line_.empty(); }
  std::size_t size() const noexcept { return line_.size(); }
  void clear() noexcept {
    line_.clear();
    refreshed_.clear();
  }

  /// A resend of a request already in line: it keeps its place. True if it was there.
  bool refresh(const address& from, std::uint64_t nonce, time_point now) {
    auto it = refreshed_.find({from, nonce});
    if (it == refreshed_.end()) return false;
    it->second = now;
    return true;
  }
  /// Joins the back of the line, unless it already holds `bound` waiters
  /// (or this request is in line already).
  bool join(waiter w, std::size_t bound) {
    if (line_.size() >= bound || !refreshed_.emplace(std::pair{w.from, w.nonce}, w.refreshed).second) return false;
    line_.push_back(w);
    return true;
  }
  /// Back to the front (its grant could not be made after all).
  void rejoin_front(waiter w) {
    if (refreshed_.emplace(std::pair{w.from, w.nonce}, w.refreshed).second) line_.push_front(w);
  }
  /// The first waiter still waiting (those silent for longer than `patience`
  /// leave), or null.
  const waiter* head(time_point now, duration patience) {
    while (!line_.empty() && now - refreshed_.at({line_.front().from, line_.front().nonce}) > patience) pop();
    return line_.empty() ? nullptr : &line_.front();
  }
  void pop() {
    refreshed_.erase({line_.front().from, line_.front().nonce});
    line_.pop_front();
  }

 private:
  std::deque<waiter> line_;
  std::map<std::pair<address, std::uint64_t>, time_point> refreshed_;  // (sender, nonce) -> its latest resend
};

}  // namespace dcp::delegation::detail
