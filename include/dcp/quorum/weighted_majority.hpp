#pragma once
// weighted_majority: members carry votes; a quorum holds more than half of
// all votes (Gifford's weighted voting, 1979, with read and write quorums
// equal).
//
// Two quorums cannot be disjoint: each holds more than W/2 of the W votes, so
// together more than W, which disjoint sets of members cannot hold. Weights
// let a group give more say to members that are more reliable or closer to
// the resource, and a single heavy member (weight > W/2) turns the system
// into a primary copy.
#include <algorithm>
#include <cstdint>
#include <numeric>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "dcp/quorum/detail/member_index.hpp"
#include "dcp/quorum/quorum_system.hpp"

namespace dcp::quorum {

struct weighted_member {
  address member;
  std::uint32_t weight = 1;
};

class weighted_majority {
 public:
  /// Throws dcp::error(invalid_config) on an empty list, an empty address, a
  /// duplicate or a zero weight (a member with no vote would be a member in
  /// name only: leave it out instead).
  explicit weighted_majority(const std::vector<weighted_member>& members)
      : index_(addresses_of(members), "quorum::weighted_majority") {
    weights_.reserve(members.size());
    for (const auto& m : members) {
      if (m.weight == 0)
        throw error(errc::invalid_config,
                    "quorum::weighted_majority: member " + m.member.to_string() +
                        " has weight 0; give it at least one vote or leave it out");
      weights_.push_back(m.weight);
      total_ += m.weight;  // N <= 2^32 members of < 2^32 votes: no overflow of 64 bits in practice
    }
    by_weight_.resize(weights_.size());
    std::iota(by_weight_.begin(), by_weight_.end(), std::size_t{0});
    std::stable_sort(by_weight_.begin(), by_weight_.end(),
                     [&](std::size_t a, std::size_t b) { return weights_[a] > weights_[b]; });
  }

  std::span<const address> members() const noexcept { return index_.members(); }
  std::uint64_t total_weight() const noexcept { return total_; }
  std::uint32_t weight_of(const address& a) const noexcept {
    const auto i = index_.find(a);
    return i < weights_.size() ? weights_[i] : 0;
  }

  bool is_quorum(std::span<const address> set) const { return is_quorum_mask(index_.mask(set)); }

  /// Heaviest preferred members first until the votes suffice, then the
  /// heaviest others; then members are dropped (others first, lightest
  /// first) while the votes still suffice, so the answer is inclusion-minimal.
  std::vector<address> choose(std::span<const address> preferred) const {
    const auto pref = index_.mask(preferred);
    std::vector<bool> in(index_.size(), false);
    std::uint64_t votes = 0;
    for (int pass = 0; pass < 2; ++pass)
      for (std::size_t i : by_weight_)
        if (pref[i] == (pass == 0) && 2 * votes <= total_) {
          in[i] = true;
          votes += weights_[i];
        }
    std::vector<std::size_t> lightest_first(by_weight_.rbegin(), by_weight_.rend());
    detail::prune_to_minimal(in, pref, lightest_first, [&](const std::vector<bool>& m) { return is_quorum_mask(m); });
    return index_.to_addresses(in);
  }

 private:
  static std::vector<address> addresses_of(const std::vector<weighted_member>& ms) {
    std::vector<address> out;
    out.reserve(ms.size());
    for (const auto& m : ms) out.push_back(m.member);
    return out;
  }
  bool is_quorum_mask(const std::vector<bool>& in) const {
    std::uint64_t votes = 0;
    for (std::size_t i = 0; i < in.size(); ++i)
      if (in[i]) votes += weights_[i];
    return 2 * votes > total_;
  }

  detail::member_index index_;
  std::vector<std::uint32_t> weights_;
  std::vector<std::size_t> by_weight_;  // member positions, heaviest first
  std::uint64_t total_ = 0;
};

static_assert(QuorumSystem<weighted_majority>);

}  // namespace dcp::quorum
