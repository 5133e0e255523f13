#pragma once
// Test and benchmark helper, not part of the library: fills a router's state
// from a global view of every live node (sorted by id), as a converged network
// would have it, with no joins and no warm-up. Real nodes join with bootstrap();
// hop figures in docs/dht.md and the README come from real joins (issue 16).
// Each router befriends testing::global_view for this.
#include <algorithm>
#include <bit>
#include <vector>

#include "dcp/dht.hpp"

namespace dcp::dht::testing {

struct global_view {
  /// For benchmarks and tests only: fills the successor list, predecessor and
  /// fingers from a global view of every live node (sorted by id), as if
  /// stabilization had converged, so that 10^5-node rings need no warm-up.
  /// A real deployment joins with bootstrap().
  template <Env E> static void install(chord<E>& r, const std::vector<contact>& sorted) {
    auto at = [&](std::size_t i) -> const contact& { return sorted[i % sorted.size()]; };
    auto succ_of = [&](const node_id& x) {  // first node with id >= x, wrapping
      auto it = std::lower_bound(sorted.begin(), sorted.end(), x,
                                 [](const contact& c, const node_id& v) { return c.id < v; });
      return static_cast<std::size_t>(it == sorted.end() ? 0 : it - sorted.begin());
    };
    const std::size_t me = succ_of(r.self_.id);
    r.successors_.clear();
    // the list length a converged ring reaches: 2·log2 N, within [successors, max_successors]
    const std::size_t len =
        std::clamp<std::size_t>(2 * (std::bit_width(sorted.size()) - 1), r.cfg_.successors, r.cfg_.max_successors);
    for (std::size_t k = 1; k <= len && k < sorted.size(); ++k) r.successors_.push_back(at(me + k));
    r.predecessor_ = sorted.size() > 1 ? at(me + sorted.size() - 1) : contact{};
    r.fingers_.clear();
    for (unsigned i = r.cfg_.bits; i-- > 0;) {
      const contact& f = at(succ_of(r.self_.id + r.ring_pow2(i)));
      if (f.addr == r.successor().addr || f.addr == r.self_.addr) break;
      r.fingers_.push_back(f);
    }
    r.become_joined();
  }

  /// For benchmarks and tests only: fills the leaf set and routing table from a
  /// global view of every live node (sorted by id), as a converged network would
  /// have them (table entries picked at random within each prefix range).
  template <Env E> static void install(pastry<E>& r, const std::vector<contact>& sorted) {
    r.left_.clear();
    r.right_.clear();
    r.table_.clear();
    const std::size_t n = sorted.size();
    auto it = std::lower_bound(sorted.begin(), sorted.end(), r.self_.id,
                               [](const contact& c, const node_id& v) { return c.id < v; });
    const std::size_t me = static_cast<std::size_t>(it - sorted.begin());
    const std::size_t half = std::clamp<std::size_t>(2 * (std::bit_width(n) - 1), r.cfg_.leaf_set / 2,
                                                     std::max(r.cfg_.leaf_set / 2, r.cfg_.max_leaf_side));
    for (std::size_t k = 1; k <= half && k < n; ++k) {
      r.right_.push_back(sorted[(me + k) % n]);
      r.left_.push_back(sorted[(me + n - k) % n]);
    }
    r.dedupe_leaves();
    const std::size_t digits = node_id::bits / r.cfg_.b;
    for (std::size_t row = 0; row < digits; ++row) {
      bool others = false;
      for (unsigned d = 0; d < (1u << r.cfg_.b); ++d) {
        if (d == r.self_.id.digit(row, r.cfg_.b)) continue;
        const node_id lo = r.prefix_low(row, d);
        const node_id hi = lo + (node_id::pow2(node_id::bits - (row + 1) * r.cfg_.b) - node_id::pow2(0));
        auto first = std::lower_bound(sorted.begin(), sorted.end(), lo,
                                      [](const contact& c, const node_id& v) { return c.id < v; });
        auto last =
            std::upper_bound(first, sorted.end(), hi, [](const node_id& v, const contact& c) { return v < c.id; });
        if (first == last) continue;
        others = true;
        r.row_at(row)[d] =
            *(first + static_cast<std::ptrdiff_t>(r.env_.rng().below(static_cast<std::uint64_t>(last - first))));
      }
      // nodes left that share row+1 digits with us besides ourselves?
      const node_id lo = r.prefix_low(row, r.self_.id.digit(row, r.cfg_.b));
      const node_id hi = lo + (node_id::pow2(node_id::bits - (row + 1) * r.cfg_.b) - node_id::pow2(0));
      auto first = std::lower_bound(sorted.begin(), sorted.end(), lo,
                                    [](const contact& c, const node_id& v) { return c.id < v; });
      auto last =
          std::upper_bound(first, sorted.end(), hi, [](const node_id& v, const contact& c) { return v < c.id; });
      (void)others;
      if (last - first <= 1) break;  // no node but us shares one more digit: deeper rows are empty
    }
    r.become_joined();
  }

  /// For benchmarks and tests only: fills every bucket with up to k random
  /// contacts of its range from a global view of all live nodes (sorted by id),
  /// as a long-running network would have them. Real nodes use bootstrap().
  template <Env E> static void install(kademlia<E>& r, const std::vector<contact>& sorted) {
    r.buckets_.clear();
    const time_point now = r.env_.now();
    for (int i = static_cast<int>(node_id::bits) - 1; i >= 0; --i) {
      // ids at XOR distance [2^i, 2^(i+1)): our prefix above bit i, bit i flipped, anything below
      const node_id lo = r.range_low(i), hi = lo + (node_id::pow2(static_cast<std::size_t>(i)) - node_id::pow2(0));
      auto first = std::lower_bound(sorted.begin(), sorted.end(), lo,
                                    [](const contact& c, const node_id& v) { return c.id < v; });
      auto last =
          std::upper_bound(first, sorted.end(), hi, [](const node_id& v, const contact& c) { return v < c.id; });
      std::vector<contact> range(first, last);
      if (range.empty()) continue;
      auto pick = r.env_.rng().sample(std::span(range), r.cfg_.k);
      auto& b = r.bucket_at(i);
      for (auto& c : pick) b.entries.push_back({c, now, 0});
    }
    r.become_joined();
  }
};

}  // namespace dcp::dht::testing
