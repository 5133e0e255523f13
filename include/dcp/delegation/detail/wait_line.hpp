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
#include <cstdint>
#include <deque>

#include "dcp/core/address.hpp"
#include "dcp/core/time.hpp"

namespace dcp::delegation::detail {

class wait_line {
 public:
  struct waiter {
    address from;
    std::uint64_t nonce = 0;
    std::uint32_t permits = 1;
    time_point refreshed{};
  };

  bool empty() const noexcept { return line_.empty(); }
  std::size_t size() const noexcept { return line_.size(); }
  void clear() noexcept { line_.clear(); }

  /// A resend of a request already in line: it keeps its place. True if it was there.
  bool refresh(const address& from, std::uint64_t nonce, time_point now) {
    for (auto& w : line_)
      if (w.from == from && w.nonce == nonce) {
        w.refreshed = now;
        return true;
      }
    return false;
  }
  /// Joins the back of the line, unless it already holds `bound` waiters.
  bool join(waiter w, std::size_t bound) {
    if (line_.size() >= bound) return false;
    line_.push_back(w);
    return true;
  }
  /// Back to the front (its grant could not be made after all).
  void rejoin_front(waiter w) { line_.push_front(w); }
  /// The first waiter still waiting (those silent for longer than `patience`
  /// leave), or null.
  const waiter* head(time_point now, duration patience) {
    while (!line_.empty() && now - line_.front().refreshed > patience) line_.pop_front();
    return line_.empty() ? nullptr : &line_.front();
  }
  void pop() { line_.pop_front(); }

 private:
  std::deque<waiter> line_;
};

}  // namespace dcp::delegation::detail
