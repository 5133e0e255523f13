#pragma once
// QuorumRule: which sets of members may decide. The consensus protocols here
// take it as a template parameter so that any quorum system can be plugged
// in; dcp::consensus::simple_majority is the default.
//
//   struct my_rule {
//     bool is_quorum(std::span<const dcp::address> members,
//                    std::span<const dcp::address> ackers) const;
//   };
//
// Safety needs one property of the rule: any two quorums of the same member
// set intersect. (dcp::quorum, where it exists, provides majority, weighted
// and grid systems with a check of that property.)
#include <algorithm>
#include <concepts>
#include <span>

#include "dcp/core/address.hpp"

namespace dcp::consensus {

template <class Q>
concept QuorumRule = std::default_initializable<Q> &&
    requires(const Q& q, std::span<const address> members, std::span<const address> ackers) {
  { q.is_quorum(members, ackers) } -> std::same_as<bool>;
};

/// More than half of the members. `ackers` may hold non-members and
/// duplicates; they do not count.
struct simple_majority {
  bool is_quorum(std::span<const address> members, std::span<const address> ackers) const {
    std::size_t n = 0;
    for (const auto& m : members)
      if (std::find(ackers.begin(), ackers.end(), m) != ackers.end()) ++n;
    return 2 * n > members.size();
  }
};
static_assert(QuorumRule<simple_majority>);

}  // namespace dcp::consensus
