#pragma once
// Checking the one property a quorum system must have: any two quorums intersect.
//
// Because is_quorum(S) means "S contains a quorum", two disjoint quorums A and
// B exist exactly when some set S and its complement both contain a quorum
// (take S = A; B lies in the complement). So the exhaustive check walks the
// 2^(N-1) splits of the members into S and its complement, which is both
// complete and cheap enough up to about 20 members. For larger groups the
// sampled check tries random splits and the quorums choose() returns for
// random live sets; it can find violations, not prove their absence, which
// is what the proofs in docs/quorum.md are for.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "dcp/core/error.hpp"
#include "dcp/core/rng.hpp"
#include "dcp/quorum/quorum_system.hpp"

namespace dcp::quorum {

/// Two disjoint sets that each contain a quorum: proof that a system is broken.
struct disjoint_quorums {
  std::vector<address> first, second;
};

/// Largest group check_intersection accepts (2^(N-1) splits).
inline constexpr std::size_t max_exhaustive_members = 22;

/// Every split of the members; nullopt when any two quorums intersect.
/// Throws dcp::error(invalid_argument) above max_exhaustive_members.
template <class Q> std::optional<disjoint_quorums> check_intersection(const Q& q) {
  static_assert(QuorumSystem<Q>,
                "dcp: a QuorumSystem needs members() -> span<const dcp::address>, is_quorum(span<const address>) -> "
                "bool and choose(span<const address>) -> std::vector<address>");
  const std::span<const address> all = q.members();
  const std::size_t n = all.size();
  if (n > max_exhaustive_members)
    throw error(errc::invalid_argument,
                "quorum::check_intersection: " + std::to_string(n) +
                    " members is too many to enumerate; use check_intersection_sampled");
  if (n == 0) return std::nullopt;
  std::vector<address> s, rest;
  // The last member always goes to `rest`: each unordered split is seen once.
  for (std::uint64_t bits = 0; bits < (std::uint64_t{1} << (n - 1)); ++bits) {
    s.clear();
    rest.clear();
    for (std::size_t i = 0; i < n; ++i) (i + 1 < n && (bits >> i & 1) ? s : rest).push_back(all[i]);
    if (q.is_quorum(s) && q.is_quorum(rest)) return disjoint_quorums{s, rest};
  }
  return std::nullopt;
}

/// `trials` random splits and `trials` pairs of chosen quorums for random
/// preferred sets; nullopt when no violation was found.
template <class Q>
std::optional<disjoint_quorums> check_intersection_sampled(const Q& q, rng& random, std::size_t trials) {
  static_assert(QuorumSystem<Q>,
                "dcp: a QuorumSystem needs members() -> span<const dcp::address>, is_quorum(span<const address>) -> "
                "bool and choose(span<const address>) -> std::vector<address>");
  const std::span<const address> all = q.members();
  std::vector<address> s, rest, pa, pb;
  auto intersect = [](const std::vector<address>& a, const std::vector<address>& b) {
    for (const auto& x : a)
      for (const auto& y : b)
        if (x == y) return true;
    return false;
  };
  for (std::size_t t = 0; t < trials; ++t) {
    const double density = random.uniform();
    s.clear(), rest.clear(), pa.clear(), pb.clear();
    for (const auto& m : all) {
      (random.chance(density) ? s : rest).push_back(m);
      if (random.chance(density)) pa.push_back(m);
      if (random.chance(1 - density)) pb.push_back(m);
    }
    if (q.is_quorum(s) && q.is_quorum(rest)) return disjoint_quorums{s, rest};
    auto a = q.choose(pa), b = q.choose(pb);
    if (!intersect(a, b)) return disjoint_quorums{std::move(a), std::move(b)};
  }
  return std::nullopt;
}

}  // namespace dcp::quorum
