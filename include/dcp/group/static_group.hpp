#pragma once
// static_group: a fixed set of members, known to every member in advance.
//
// The Group concept is what the mutual-exclusion and election algorithms need
// from "the set of participants": the members in one order every node agrees
// on (sorted addresses), and the position of a member in that order (its rank,
// used for ring successors, tree parents, grid cells and Bully priorities).
// static_group is the simplest Group: a sorted, de-duplicated list fixed at
// construction. A Group that changes by agreement would model the same concept.
#include <algorithm>
#include <concepts>
#include <cstddef>
#include <initializer_list>
#include <optional>
#include <span>
#include <vector>

#include "dcp/core/address.hpp"
#include "dcp/core/error.hpp"

namespace dcp::group {

template <class G>
concept Group = requires(const G& g, const address& a, std::size_t i) {
  { g.size() } -> std::convertible_to<std::size_t>;
  { g.member(i) } -> std::convertible_to<address>;
  { g.rank_of(a) } -> std::same_as<std::optional<std::size_t>>;
  { g.contains(a) } -> std::same_as<bool>;
};

class static_group {
 public:
  static_group() = default;
  /// Throws dcp::error(invalid_config) if `members` is empty or holds an empty address.
  explicit static_group(std::vector<address> members) : members_(std::move(members)) {
    std::sort(members_.begin(), members_.end());
    members_.erase(std::unique(members_.begin(), members_.end()), members_.end());
    if (members_.empty()) throw error(errc::invalid_config, "static_group: a group needs at least one member");
    if (members_.front().empty()) throw error(errc::invalid_config, "static_group: a member address is empty");
  }
  static_group(std::initializer_list<address> members) : static_group(std::vector<address>(members)) {}

  /// Simulator nodes 0..n-1.
  static static_group sim(std::size_t n) {
    std::vector<address> m;
    for (std::size_t i = 0; i < n; ++i) m.push_back(address::sim(static_cast<std::uint32_t>(i)));
    return static_group(std::move(m));
  }

  std::size_t size() const noexcept { return members_.size(); }
  const address& member(std::size_t rank) const { return members_.at(rank); }
  std::span<const address> members() const noexcept { return members_; }
  std::optional<std::size_t> rank_of(const address& a) const noexcept {
    auto it = std::lower_bound(members_.begin(), members_.end(), a);
    if (it == members_.end() || *it != a) return std::nullopt;
    return static_cast<std::size_t>(it - members_.begin());
  }
  bool contains(const address& a) const noexcept { return rank_of(a).has_value(); }

 private:
  std::vector<address> members_;
};

static_assert(Group<static_group>);

/// The rank of `self` in `g`, or a dcp::error(invalid_config) naming the problem.
template <Group G> std::size_t rank_of_self(const G& g, const address& self, const char* who) {
  auto r = g.rank_of(self);
  if (!r)
    throw error(errc::invalid_config,
                std::string(who) + ": this node (" + self.to_string() + ") is not a member of its group");
  return *r;
}

}  // namespace dcp::group
