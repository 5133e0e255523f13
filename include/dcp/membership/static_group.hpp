#pragma once
// static_group: the Membership of a small group whose members are known in
// advance (a configuration file, a test), with no protocol traffic at all.
//
// The roster is a dcp::group::static_group (the sorted member list the
// mutual-exclusion and election algorithms use), seen here as a Membership:
// every member is a neighbour of every other. One roster may be shared by all
// the nodes of a simulation (one copy for 10^6 nodes), which makes it also
// the "uniform peer sampling" oracle that the papers' analyses assume:
// sample(k) draws uniformly from the whole group.
//
// Nothing is detected: a member leaves the neighbours only when told to
// (mark_down, or on_unreachable when the transport gives up on it), and comes
// back with mark_up. Hosted as a protocol (no messages) or used stand-alone.
#include <algorithm>
#include <memory>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "dcp/core/address.hpp"
#include "dcp/core/env.hpp"
#include "dcp/core/error.hpp"
#include "dcp/group/static_group.hpp"
#include "dcp/membership/membership.hpp"
#include "dcp/wire/message.hpp"

namespace dcp::membership {

struct static_group_config {
  /// Every member of the group; this node may or may not be listed.
  std::shared_ptr<const group::static_group> members;
  /// Remove a member from the neighbours when the transport reports it unreachable.
  bool trust_transport = true;

  /// Throws dcp::error(invalid_config) if `members` is empty or holds an empty address.
  static static_group_config of(std::vector<address> members) {
    return {std::make_shared<const group::static_group>(std::move(members))};
  }
  void validate() const {
    if (!members) throw error(errc::invalid_config, "static_group: no member list given");
  }
};

template <Env E> class static_group {
 public:
  using messages = wire::message_set<>;
  static constexpr std::string_view name = "static_group";
  static constexpr protocol_id default_id = 10;

  static_group(E env, static_group_config cfg) : env_(std::move(env)), cfg_(std::move(cfg)) { cfg_.validate(); }

  std::vector<address> neighbours() const {
    std::vector<address> out;
    out.reserve(cfg_.members->size());
    for (const auto& m : cfg_.members->members())
      if (m != env_.self() && !down_.contains(m)) out.push_back(m);
    return out;
  }
  /// Up to k distinct members other than this node, uniformly; O(k) expected
  /// when k is small against the group (rejection sampling), so that a node
  /// of a 10^6 group samples cheaply.
  std::vector<address> sample(std::size_t k) {
    const auto all = cfg_.members->members();
    std::vector<address> out;
    if (all.empty() || k == 0) return out;
    if (k >= all.size() || 4 * (k + down_.size() + 1) >= all.size()) {
      out = neighbours();
      auto picked = env_.rng().sample(std::span<address>(out), k);
      out.resize(picked.size());
      return out;
    }
    while (out.size() < k) {
      const address& a = all[env_.rng().below(all.size())];
      if (a == env_.self() || down_.contains(a) || std::find(out.begin(), out.end(), a) != out.end()) continue;
      out.push_back(a);
    }
    return out;
  }
  void on_neighbour_up(neighbour_callback f) { events_.on_up(std::move(f)); }
  void on_neighbour_down(neighbour_callback f) { events_.on_down(std::move(f)); }

  void mark_down(const address& peer) {
    if (is_member(peer) && down_.insert(peer).second) events_.down(peer);
  }
  void mark_up(const address& peer) {
    if (down_.erase(peer)) events_.up(peer);
  }
  void on_unreachable(const address& peer) {
    if (cfg_.trust_transport) mark_down(peer);
  }
  /// No message is ever accepted (the message set is empty); declared so the host's dispatcher compiles.
  template <class M> void on_message(const address&, const M&) = delete;

  bool is_member(const address& a) const { return a != env_.self() && cfg_.members->contains(a); }
  /// Messages are believed from members, even one marked down (it may be back).
  bool admits(const address& a) const { return is_member(a); }

 private:
  E env_;
  static_group_config cfg_;
  std::unordered_set<address> down_;
  neighbour_events events_;
};

}  // namespace dcp::membership
