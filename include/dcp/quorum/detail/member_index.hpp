#pragma once
// member_index: the member list of a quorum system, validated once, with an
// address -> position map so that membership tests on sets are O(1).
#include <cstddef>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "dcp/core/address.hpp"
#include "dcp/core/error.hpp"

namespace dcp::quorum::detail {

class member_index {
 public:
  /// Refuses (dcp::error, invalid_config) an empty list, an empty address and
  /// a member listed twice: each would make "a quorum" mean something other
  /// than what the construction's intersection argument assumes.
  member_index(std::vector<address> members, const char* system) : members_(std::move(members)) {
    if (members_.empty())
      throw error(errc::invalid_config,
                  std::string(system) + ": the member list is empty; a quorum system needs at least one member");
    position_.reserve(members_.size());
    for (std::size_t i = 0; i < members_.size(); ++i) {
      if (members_[i].empty())
        throw error(errc::invalid_config,
                    std::string(system) + ": member " + std::to_string(i) +
                        " is an empty address; give every member a reachable address");
      if (!position_.emplace(members_[i], i).second)
        throw error(errc::invalid_config,
                    std::string(system) + ": member " + members_[i].to_string() +
                        " is listed twice; each member may appear once");
    }
  }

  std::span<const address> members() const noexcept { return members_; }
  std::size_t size() const noexcept { return members_.size(); }
  const address& operator[](std::size_t i) const noexcept { return members_[i]; }

  /// Position of `a`, or size() when it is not a member.
  std::size_t find(const address& a) const noexcept {
    auto it = position_.find(a);
    return it == position_.end() ? members_.size() : it->second;
  }

  /// The set as a membership mask; non-members and repeats are ignored.
  std::vector<bool> mask(std::span<const address> set) const {
    std::vector<bool> in(members_.size(), false);
    for (const auto& a : set)
      if (auto i = find(a); i < members_.size()) in[i] = true;
    return in;
  }

  std::vector<address> to_addresses(const std::vector<bool>& in) const {
    std::vector<address> out;
    for (std::size_t i = 0; i < in.size(); ++i)
      if (in[i]) out.push_back(members_[i]);
    return out;
  }

 private:
  std::vector<address> members_;
  std::unordered_map<address, std::size_t> position_;
};

/// Shrinks a quorum (as a mask) to an inclusion-minimal one: tries to drop
/// each member, those not preferred first, and keeps the drop when what is
/// left is still a quorum. Correct for any monotone system (a superset of a
/// quorum is a quorum): a member that could not be dropped at some point
/// cannot be dropped after further removals either, so one pass suffices.
template <class IsQuorumMask> void prune_to_minimal(std::vector<bool>& in, const std::vector<bool>& preferred,
                                                    std::span<const std::size_t> order, IsQuorumMask&& is_quorum_mask) {
  for (int pass = 0; pass < 2; ++pass)  // pass 0: members not preferred; pass 1: preferred ones
    for (std::size_t i : order) {
      if (!in[i] || preferred[i] != (pass == 1)) continue;
      in[i] = false;
      if (!is_quorum_mask(in)) in[i] = true;
    }
}

}  // namespace dcp::quorum::detail
