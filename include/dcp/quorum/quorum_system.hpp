#pragma once
// QuorumSystem: which sets of members may act for the whole group.
//
// A quorum system over members M is a family of subsets of M (the quorums)
// such that any two quorums intersect. That single property is what every
// quorum protocol leans on: a write acknowledged by one quorum is seen by any
// later read from another quorum (Gifford), two conflicting requests cannot
// both gather a quorum (Maekawa), two ballots cannot both be chosen (Paxos).
//
// The concept is deliberately small:
//
//     q.members()          -> the member set (std::span<const dcp::address>)
//     q.is_quorum(set)     -> does `set` contain a quorum? Non-members and
//                             repeats in `set` are ignored.
//     q.choose(preferred)  -> a minimal quorum to ask: inclusion-minimal (no
//                             member can be left out), drawn from `preferred`
//                             (the members believed live) wherever the system
//                             allows. If `preferred` contains a quorum, the
//                             answer lies entirely inside it.
//
// All systems here are monotone (a superset of a quorum is a quorum), which
// is why is_quorum answers "contains a quorum". dcp::quorum::check_intersection
// (intersection.hpp) verifies the intersection property of any system,
// exhaustively for small groups; docs/quorum.md gives the proofs for the
// constructions.
#include <concepts>
#include <span>
#include <vector>

#include "dcp/core/address.hpp"

namespace dcp::quorum {

template <class Q>
concept QuorumSystem = requires(const Q& q, std::span<const address> set) {
  { q.members() } -> std::convertible_to<std::span<const address>>;
  { q.is_quorum(set) } -> std::same_as<bool>;
  { q.choose(set) } -> std::same_as<std::vector<address>>;
};

}  // namespace dcp::quorum
