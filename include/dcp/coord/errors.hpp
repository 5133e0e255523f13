#pragma once
// Errors of the coordination service's key-value store, in their own
// std::error_category ("dcp.coord", dcp/core/error_category.hpp): reads and
// watches at a revision (etcd's ErrCompacted and ErrFutureRev).
#include <system_error>

#include "dcp/core/error_category.hpp"

namespace dcp::coord {

enum class errc : int {
  compacted = 1,    ///< the revision asked for is below the store's compact revision: its state is gone
  future_revision,  ///< the revision asked for is above the store's current revision
};

constexpr const char* error_category_name(errc) noexcept { return "dcp.coord"; }

/// Each code's condition and message.
constexpr error_meaning describe(errc e) noexcept {
  // every code, and no default: -Wswitch names a code added without a meaning
  switch (e) {
    case errc::compacted:  // gone for good: read the current state instead
      return {condition::permanent, "compacted: the revision asked for has left the store's history"};
    case errc::future_revision:  // not yet: the store reaches it as writes commit
      return {condition::retryable, "future revision: the revision asked for is above the store's current revision"};
  }
  return {};  // not a code
}

inline const std::error_category& error_category() noexcept { return error_category_of<errc>(); }
using dcp::make_error_code;

}  // namespace dcp::coord

template <> struct std::is_error_code_enum<dcp::coord::errc> : std::true_type {};
