#pragma once
// Scribe's error codes (category "dcp.scribe", dcp/core/error_category.hpp),
// beside dcp::errc and the DHT's.
#include <system_error>

#include "dcp/core/error_category.hpp"

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

constexpr const char* error_category_name(scribe_errc) noexcept { return "dcp.scribe"; }

/// Each code's condition and message.
constexpr error_meaning describe(scribe_errc e) noexcept {
  // every code, and no default: -Wswitch names a code added without a meaning
  switch (e) {
    case scribe_errc::not_joined:  // once the router has joined
      return {condition::retryable, "the router has not joined the overlay yet"};
    case scribe_errc::unknown_group:
      return {condition::permanent, "the group's root does not know this group: create() it first"};
    case scribe_errc::no_member:  // members come and go: a later walk may find one willing
      return {condition::retryable, "anycast: no member of the group accepted"};
    case scribe_errc::table_full:  // until this node leaves a group, or max_groups is raised
      return {condition::permanent, "this node holds scribe_config::max_groups groups already"};
    case scribe_errc::timeout:
      return {condition::outcome_unknown, "no answer within scribe_config::op_timeout (outcome unknown)"};
    case scribe_errc::bad_argument:
      return {condition::permanent, "payload larger than scribe_config::max_payload"};
  }
  return {};  // not a code
}

inline const std::error_category& scribe_category() noexcept { return error_category_of<scribe_errc>(); }
using dcp::make_error_code;

}  // namespace dcp::dht

template <> struct std::is_error_code_enum<dcp::dht::scribe_errc> : std::true_type {};
