#pragma once
// What a failure means for the caller, whatever its code: dcp::condition, a
// std::error_condition enum.
//
// dcp has many codes (dcp::errc and one enum per chapter), and a caller that
// decides what to do next should not have to list six of them. Every code of
// every dcp category maps to exactly one condition (its category's
// default_error_condition), so that
//
//     if (ec == dcp::condition::retryable) ...   // or outcome_unknown, permanent
//
// asks the question the caller has: may I try again, and how? Compare against
// a code only to tell two codes of one condition apart (not_leader from busy,
// say, to go to the leader rather than wait).
//
// A code outside dcp (Asio's, the system's) matches no dcp condition.
#include <string>
#include <system_error>

namespace dcp {

enum class condition : int {
  retryable = 1,    ///< nothing happened: try again, later or elsewhere (the leader, the coordinator, another peer)
  outcome_unknown,  ///< it may have taken effect (at most once): retry with the same idempotency key, or look first
  permanent,        ///< it will not succeed as asked: the caller (or an operator) must change something first
};

class condition_category_impl final : public std::error_category {
 public:
  const char* name() const noexcept override { return "dcp.condition"; }
  std::string message(int ev) const override {
    switch (static_cast<condition>(ev)) {
      case condition::retryable:
        return "retryable: nothing happened; try again, later or elsewhere";
      case condition::outcome_unknown:
        return "outcome unknown: it may have taken effect (at most once); retry with the same idempotency key";
      case condition::permanent:
        return "permanent: it will not succeed as asked; change the request or the setup";
    }
    return "unknown dcp.condition " + std::to_string(ev);
  }
};

inline const std::error_category& condition_category() noexcept {
  static const condition_category_impl instance;
  return instance;
}

inline std::error_condition make_error_condition(condition c) noexcept {
  return {static_cast<int>(c), condition_category()};
}

}  // namespace dcp

template <> struct std::is_error_condition_enum<dcp::condition> : std::true_type {};
