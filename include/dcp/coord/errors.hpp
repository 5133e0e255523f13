#pragma once
// Errors of the coordination service's key-value store, in their own
// std::error_category: reads and watches at a revision (etcd's
// ErrCompacted and ErrFutureRev).
#include <string>
#include <system_error>

#include "dcp/core/condition.hpp"

namespace dcp::coord {

enum class errc : int {
  compacted = 1,    ///< the revision asked for is below the store's compact revision: its state is gone
  future_revision,  ///< the revision asked for is above the store's current revision
};

class error_category_impl final : public std::error_category {
 public:
  const char* name() const noexcept override { return "dcp.coord"; }
  std::string message(int ev) const override {
    switch (static_cast<errc>(ev)) {
      case errc::compacted:
        return "compacted: the revision asked for has left the store's history";
      case errc::future_revision:
        return "future revision: the revision asked for is above the store's current revision";
    }
    return "unknown coord error " + std::to_string(ev);
  }
  std::error_condition default_error_condition(int ev) const noexcept override {
    switch (static_cast<errc>(ev)) {
      case errc::future_revision:  // not yet: the store reaches it as writes commit
        return condition::retryable;
      case errc::compacted:  // gone for good: read the current state instead
        return condition::permanent;
    }
    return std::error_category::default_error_condition(ev);
  }
};

inline const std::error_category& error_category() noexcept {
  static const error_category_impl instance;
  return instance;
}
inline std::error_code make_error_code(errc e) noexcept { return {static_cast<int>(e), error_category()}; }

}  // namespace dcp::coord

template <> struct std::is_error_code_enum<dcp::coord::errc> : std::true_type {};
