#pragma once
// Scribe's error codes (category "dcp.scribe"), beside dcp::errc and the DHT's.
#include <string>
#include <system_error>

#include "dcp/core/condition.hpp"

namespace dcp::dht {

/// Scribe's error codes (category "dcp.scribe").
enum class scribe_errc : int {
  not_joined = 1,  ///< the router has not joined the overlay yet
  unknown_group,   ///< the group's root does not know the group: create() it first
  no_member,       ///< anycast: the walk visited the whole tree and no member accepted
  table_full,      ///< max_groups groups are held here already
  timeout,         ///< no answer within op_timeout; the outcome is unknown
  bad_argument,    ///< a payload larger than max_payload
};

class scribe_category_impl final : public std::error_category {
 public:
  const char* name() const noexcept override { return "dcp.scribe"; }
  std::string message(int ev) const override {
    switch (static_cast<scribe_errc>(ev)) {
      case scribe_errc::not_joined:
        return "the router has not joined the overlay yet";
      case scribe_errc::unknown_group:
        return "the group's root does not know this group: create() it first";
      case scribe_errc::no_member:
        return "anycast: no member of the group accepted";
      case scribe_errc::table_full:
        return "this node holds scribe_config::max_groups groups already";
      case scribe_errc::timeout:
        return "no answer within scribe_config::op_timeout (outcome unknown)";
      case scribe_errc::bad_argument:
        return "payload larger than scribe_config::max_payload";
    }
    return "unknown dcp.scribe error " + std::to_string(ev);
  }
  std::error_condition default_error_condition(int ev) const noexcept override {
    switch (static_cast<scribe_errc>(ev)) {
      case scribe_errc::not_joined:  // once the router has joined
      case scribe_errc::no_member:   // members come and go: a later walk may find one willing
        return condition::retryable;
      case scribe_errc::timeout:
        return condition::outcome_unknown;
      case scribe_errc::unknown_group:
      case scribe_errc::table_full:  // until this node leaves a group, or max_groups is raised
      case scribe_errc::bad_argument:
        return condition::permanent;
    }
    return std::error_category::default_error_condition(ev);
  }
};
inline const std::error_category& scribe_category() noexcept {
  static const scribe_category_impl instance;
  return instance;
}
inline std::error_code make_error_code(scribe_errc e) noexcept { return {static_cast<int>(e), scribe_category()}; }

}  // namespace dcp::dht

template <> struct std::is_error_code_enum<dcp::dht::scribe_errc> : std::true_type {};
