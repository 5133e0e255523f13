#pragma once
// grid: members laid out row by row in a grid of ceil(sqrt(N)) columns; a
// quorum is one whole row plus one whole column (Maekawa 1985 uses row and
// column through a cell; Agrawal and El Abbadi build on the same layout).
// Quorums have about 2*sqrt(N) members instead of N/2, which is the point:
// each request loads O(sqrt(N)) members.
//
// Layout: c = ceil(sqrt(N)) columns, r = ceil(N/c) rows; member k sits at
// row k / c, column k % c. Only the last row may be short (m cells, 1 <= m <= c),
// so column j has r cells if j < m and r-1 cells otherwise.
//
// Intersection: take quorums (row a + column b) and (row a' + column b').
// Cell (a, b') lies in the first quorum's row and the second's column, and
// cell (a', b) the other way round; at least one of them exists unless both
// are missing, which needs a and a' to both be the short last row, and then
// the two quorums share that row (which has m >= 1 cells). docs/quorum.md
// spells this out; tests check it exhaustively for small N.
//
// Availability is lower than a majority's: losing one whole column (r
// members) leaves no quorum.
#include <cmath>
#include <cstddef>
#include <limits>
#include <span>
#include <vector>

#include "dcp/quorum/detail/member_index.hpp"
#include "dcp/quorum/quorum_system.hpp"

namespace dcp::quorum {

class grid {
 public:
  /// Throws dcp::error(invalid_config) on an empty list, an empty address or a duplicate.
  explicit grid(std::vector<address> members) : index_(std::move(members), "quorum::grid") {
    const std::size_t n = index_.size();
    cols_ = static_cast<std::size_t>(std::ceil(std::sqrt(static_cast<double>(n))));
    while (cols_ * cols_ < n) ++cols_;  // guard against rounding
    while (cols_ > 1 && (cols_ - 1) * (cols_ - 1) >= n) --cols_;
    rows_ = (n + cols_ - 1) / cols_;
  }

  std::span<const address> members() const noexcept { return index_.members(); }
  std::size_t rows() const noexcept { return rows_; }
  std::size_t columns() const noexcept { return cols_; }

  /// Members of row `i` / column `j`, in member order.
  std::vector<address> row(std::size_t i) const { return index_.to_addresses(row_mask(i)); }
  std::vector<address> column(std::size_t j) const { return index_.to_addresses(column_mask(j)); }

  bool is_quorum(std::span<const address> set) const { return is_quorum_mask(index_.mask(set)); }

  /// The row + column with the fewest members outside `preferred` (ties: the
  /// smaller quorum, then the first), pruned to an inclusion-minimal set
  /// (only degenerate shapes, like a last row of one cell, need pruning).
  std::vector<address> choose(std::span<const address> preferred) const {
    const auto pref = index_.mask(preferred);
    std::vector<std::size_t> row_missing(rows_, 0), col_missing(cols_, 0), row_len(rows_, 0), col_len(cols_, 0);
    for (std::size_t k = 0; k < index_.size(); ++k) {
      ++row_len[k / cols_];
      ++col_len[k % cols_];
      if (!pref[k]) ++row_missing[k / cols_], ++col_missing[k % cols_];
    }
    std::size_t best_r = 0, best_c = 0;
    auto best = std::pair{std::numeric_limits<std::size_t>::max(), std::numeric_limits<std::size_t>::max()};
    for (std::size_t i = 0; i < rows_; ++i)
      for (std::size_t j = 0; j < cols_; ++j) {
        const std::size_t k = i * cols_ + j;
        const bool cell = k < index_.size();
        const std::size_t missing = row_missing[i] + col_missing[j] - (cell && !pref[k] ? 1 : 0);
        const std::size_t size = row_len[i] + col_len[j] - (cell ? 1 : 0);
        if (std::pair{missing, size} < best) best = {missing, size}, best_r = i, best_c = j;
      }
    auto in = row_mask(best_r);
    const auto col = column_mask(best_c);
    for (std::size_t k = 0; k < in.size(); ++k) in[k] = in[k] || col[k];
    std::vector<std::size_t> order(index_.size());
    for (std::size_t k = 0; k < order.size(); ++k) order[k] = k;
    detail::prune_to_minimal(in, pref, order, [&](const std::vector<bool>& m) { return is_quorum_mask(m); });
    return index_.to_addresses(in);
  }

 private:
  std::vector<bool> row_mask(std::size_t i) const {
    std::vector<bool> in(index_.size(), false);
    for (std::size_t k = i * cols_; k < std::min(index_.size(), (i + 1) * cols_); ++k) in[k] = true;
    return in;
  }
  std::vector<bool> column_mask(std::size_t j) const {
    std::vector<bool> in(index_.size(), false);
    for (std::size_t k = j; k < index_.size(); k += cols_) in[k] = true;
    return in;
  }
  bool is_quorum_mask(const std::vector<bool>& in) const {
    bool some_row = false, some_col = false;
    for (std::size_t i = 0; i < rows_ && !some_row; ++i) {
      bool full = true;
      for (std::size_t k = i * cols_; k < std::min(index_.size(), (i + 1) * cols_) && full; ++k) full = in[k];
      some_row = full;
    }
    for (std::size_t j = 0; j < cols_ && !some_col; ++j) {
      bool full = true;
      for (std::size_t k = j; k < index_.size() && full; k += cols_) full = in[k];
      some_col = full;
    }
    return some_row && some_col;
  }

  detail::member_index index_;
  std::size_t rows_ = 0, cols_ = 0;
};

static_assert(QuorumSystem<grid>);

}  // namespace dcp::quorum
