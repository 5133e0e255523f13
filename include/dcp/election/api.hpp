#pragma once
// The one API every dcp election offers.
//
//   e.start_election()        this node starts (or joins) an election
//   e.leader()                the leader this node knows; nullopt while unknown
//   e.electing()              an election is in progress here
//   e.on_leader_changed(f)    f(leader) whenever leader() changes (nullopt when
//                             a leader is lost and not yet replaced)
//
// start_election() is also what the protocol does by itself when the node
// comes up (elect_on_start) and, where the algorithm detects failures, when
// the leader is suspected.
#include <concepts>
#include <functional>
#include <optional>

#include "dcp/core/address.hpp"

namespace dcp::election {

using leader_handler = std::function<void(const std::optional<address>&)>;

template <class P>
concept Election = requires(P& p, const P& cp, leader_handler h) {
  p.start_election();
  { cp.leader() } -> std::same_as<std::optional<address>>;
  { cp.electing() } -> std::same_as<bool>;
  p.on_leader_changed(std::move(h));
};

namespace detail {
/// The leader a node knows, and the event when it changes.
class leader_slot {
 public:
  const std::optional<address>& get() const noexcept { return leader_; }
  void on_change(leader_handler h) { handler_ = std::move(h); }
  void set(const std::optional<address>& l) {
    if (l == leader_) return;
    leader_ = l;
    if (handler_) handler_(leader_);
  }

 private:
  std::optional<address> leader_;
  leader_handler handler_;
};
}  // namespace detail

}  // namespace dcp::election
