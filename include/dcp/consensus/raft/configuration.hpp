#pragma once
// Raft's configurations (dissertation 4.1): a membership, and the history of
// memberships a replica holds. A configuration takes effect when its entry
// is appended, not when it commits, so a replica's configuration is the
// latest in its log, and a truncated log takes back the configurations in
// the part cut. What the history holds: the snapshot's configuration (or
// the bootstrap list, with no snapshot), then one per configuration entry of
// the log, ascending by index. Older ones are kept while their entries are
// in the log: a leader removed by a configuration still replicates to the
// members it knew (known), and a snapshot records the configuration at its
// own index (at), which may be older than the latest.
#include <algorithm>
#include <cstdint>
#include <utility>
#include <vector>

#include "dcp/core/address.hpp"
#include "dcp/core/assert.hpp"
#include "dcp/core/bytes.hpp"
#include "dcp/storage/detail/codec.hpp"
#include "dcp/wire/message.hpp"

namespace dcp::consensus {

/// A configuration: the voters (whose majorities elect and commit) and the
/// learners (non-voting members: they receive the log and snapshots, never
/// vote, never campaign, never count towards any quorum). Disjoint, sorted.
/// Written in configuration entries and snapshots, so a restart keeps roles;
/// with no learners, an entry's bytes are those of the voters' list alone,
/// the layout before learners (wire::trailing), which older builds read.
struct raft_membership {
  std::vector<address> voters, learners;
  bool has_voter(const address& a) const { return std::find(voters.begin(), voters.end(), a) != voters.end(); }
  bool has_learner(const address& a) const { return std::find(learners.begin(), learners.end(), a) != learners.end(); }
  bool has(const address& a) const { return has_voter(a) || has_learner(a); }
  template <class A> void serialize(A& ar) {
    ar(voters);
    wire::trailing(ar, learners);
  }
};

namespace raft_parts {

class config_history {
 public:
  /// `bootstrap`: the configuration of a replica with no snapshot.
  explicit config_history(raft_membership bootstrap) : bootstrap_(std::move(bootstrap)) {
    configs_.push_back({0, bootstrap_});
  }

  /// The configuration in effect: the latest appended.
  const raft_membership& latest() const noexcept { return configs_.back().second; }
  /// The index of its entry (the snapshot's index, or 0, if none is in the log).
  std::uint64_t latest_index() const noexcept { return configs_.back().first; }
  /// The configuration in effect at log index `index` (at or after the first held).
  const raft_membership& at(std::uint64_t index) const noexcept {
    const raft_membership* m = &configs_.front().second;
    for (const auto& [i, members] : configs_)
      if (i <= index) m = &members;
    return *m;
  }
  /// In any configuration held (the latest or one still in the log).
  bool known(const address& a) const {
    for (const auto& [index, conf] : configs_)
      if (conf.has(a)) return true;
    return false;
  }
  /// (index, configuration) pairs, ascending; the first is the snapshot's.
  const std::vector<std::pair<std::uint64_t, raft_membership>>& all() const noexcept { return configs_; }
  /// The configuration recorded by the last snapshot taken or installed.
  const raft_membership& at_snapshot() const noexcept { return snapshot_; }

  // ---- changes ----

  /// A snapshot (restored, installed) recorded `m`: the history restarts
  /// from it at the next rebuild().
  void snapshot_recorded(raft_membership m) { snapshot_ = std::move(m); }
  /// Starts again from the snapshot at `snap_index` (0: none, the bootstrap
  /// configuration); the caller then appends the log's configuration entries.
  void rebuild(std::uint64_t snap_index) {
    configs_.clear();
    configs_.push_back({snap_index, snap_index > 0 ? snapshot_ : bootstrap_});
  }
  /// A configuration entry at `index`, appended to the log: in effect now.
  /// False, and nothing changes, if `data` does not decode or names a server
  /// as both voter and learner: it came from a peer (or a damaged disk), not
  /// from a leader's change.
  [[nodiscard]] bool append(std::uint64_t index, byte_view data) {
    DCP_ASSERT(index > configs_.back().first, "configuration entries are appended in log order");
    raft_membership m;
    if (storage::detail::decode_value(data, m)) return false;
    for (const auto& l : m.learners)
      if (m.has_voter(l)) return false;
    configs_.push_back({index, std::move(m)});
    return true;
  }
  /// The log was cut from `index` on: its configurations go (never the
  /// first, the snapshot's).
  void truncate_from(std::uint64_t index) {
    while (configs_.size() > 1 && configs_.back().first >= index) configs_.pop_back();
  }
  /// A snapshot through `index` was taken: the configuration at `index`
  /// becomes the first (and the snapshot's); those before it go.
  void compact(std::uint64_t index) {
    snapshot_ = at(index);
    while (configs_.size() > 1 && configs_[1].first <= index) configs_.erase(configs_.begin());
    configs_.front() = {index, snapshot_};
  }

  /// The history starts at the snapshot (`snap_index`) and holds entries of
  /// the log (through `last`) in log order.
  void check_invariants(std::uint64_t snap_index, std::uint64_t last) const {
    DCP_ASSERT(!configs_.empty() && configs_.front().first == snap_index, "the first configuration is the snapshot's");
    for (std::size_t k = 1; k < configs_.size(); ++k)
      DCP_ASSERT(configs_[k - 1].first < configs_[k].first && configs_[k].first <= last,
                 "later configurations are entries of the log, in log order");
  }

 private:
  raft_membership bootstrap_, snapshot_;
  std::vector<std::pair<std::uint64_t, raft_membership>> configs_;  // (index, configuration), ascending
};

}  // namespace raft_parts
}  // namespace dcp::consensus
