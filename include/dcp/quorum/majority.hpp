#pragma once
// majority: any floor(N/2)+1 of the N members (Thomas, 1979).
//
// Two majorities of the same N members cannot be disjoint: together they would
// hold at least 2*(floor(N/2)+1) > N distinct members. The cheapest system in
// availability terms (tolerates floor((N-1)/2) failures); every quorum has
// size Theta(N).
#include <algorithm>
#include <span>
#include <vector>

#include "dcp/quorum/detail/member_index.hpp"
#include "dcp/quorum/quorum_system.hpp"

namespace dcp::quorum {

class majority {
 public:
  /// Throws dcp::error(invalid_config) on an empty list, an empty address or a duplicate.
  explicit majority(std::vector<address> members) : index_(std::move(members), "quorum::majority") {}

  std::span<const address> members() const noexcept { return index_.members(); }
  /// Size of every minimal quorum: floor(N/2)+1.
  std::size_t quorum_size() const noexcept { return index_.size() / 2 + 1; }

  bool is_quorum(std::span<const address> set) const {
    const auto in = index_.mask(set);
    return static_cast<std::size_t>(std::count(in.begin(), in.end(), true)) >= quorum_size();
  }

  /// floor(N/2)+1 members: the preferred ones first (in member order), then
  /// the others in member order.
  std::vector<address> choose(std::span<const address> preferred) const {
    const auto pref = index_.mask(preferred);
    std::vector<address> out;
    out.reserve(quorum_size());
    for (int pass = 0; pass < 2; ++pass)
      for (std::size_t i = 0; i < index_.size() && out.size() < quorum_size(); ++i)
        if (pref[i] == (pass == 0)) out.push_back(index_[i]);
    return out;
  }

 private:
  detail::member_index index_;
};

static_assert(QuorumSystem<majority>);

}  // namespace dcp::quorum
