#pragma once
// Why delegation refused something, as std::error_code values of their own
// category ("dcp.delegation", dcp/core/error_category.hpp), each with a
// message that says what to do.
// Token checks that are the same as a lease's (signature, expiry, capacity)
// keep dcp::lease's codes; these are the ones only delegation has.
#include <system_error>

#include "dcp/core/error_category.hpp"

namespace dcp::delegation {

enum class errc : int {
  unknown_shard = 1,     ///< no such resource or shard at this origin
  wrong_epoch,           ///< the token names a delegation epoch this origin never issued for the shard
  delegation_ended,      ///< the token's delegation ended (superseded, or its certificate expired)
  bad_certificate,       ///< a certificate that does not parse or whose signature does not verify
  certificate_expired,   ///< a certificate outside its validity window
  certificate_mismatch,  ///< a token and a certificate that do not belong together
  shard_delegated,       ///< the shard is delegated to another coordinator until its certificate ends
  not_coordinator,       ///< this node does not coordinate the shard (yet): ask again later
  share_exhausted,       ///< the shard's share is in use: retry after the hinted delay
  stock_exhausted,       ///< every unit of the shard's stock is allocated: for good
  duplicate_batch,       ///< a stock batch applied already (answered with its first result)
  wrong_holder,          ///< the token was granted to another node than the one presenting it
  not_allowed,           ///< the origin's policy (origin_config::may_coordinate) refuses this coordinator
  too_few_signers,       ///< a quorum-signed token without the certificate's number of distinct members' signatures
  slot_held,             ///< a member will not sign a permit a live grant it signed still holds
};

constexpr const char* error_category_name(errc) noexcept { return "dcp.delegation"; }

/// Each code's condition and message. Retryable: not now, or not here:
/// after the hinted delay, or at the shard's coordinator.
constexpr error_meaning describe(errc e) noexcept {
  // every code, and no default: -Wswitch names a code added without a meaning
  switch (e) {
    case errc::unknown_shard:
      return {condition::permanent,
              "no such resource or shard at this origin: check the resource name and shard count"};
    case errc::wrong_epoch:
      return {condition::permanent,
              "token from a delegation epoch the origin never issued for this shard: forged or from another origin"};
    case errc::delegation_ended:  // that token is done: a new request gets a new one
      return {condition::permanent,
              "token from a delegation that has ended (its coordinator was replaced or its certificate expired): "
              "ask the shard's current coordinator"};
    case errc::bad_certificate:
      return {condition::permanent, "delegation certificate does not parse or is not signed by the origin"};
    case errc::certificate_expired:
      return {condition::retryable, "delegation certificate outside its validity window: ask the coordinator again"};
    case errc::certificate_mismatch:
      return {condition::permanent,
              "the token was not signed by the certificate's coordinator, or names another shard"};
    case errc::shard_delegated:
      return {condition::retryable, "the shard is delegated to another coordinator until its certificate ends"};
    case errc::not_coordinator:
      return {condition::retryable, "this node does not coordinate the shard yet: retry after the hinted delay"};
    case errc::share_exhausted:
      return {condition::retryable, "the shard's share of the capacity is in use: retry after the hinted delay"};
    case errc::stock_exhausted:
      return {condition::permanent, "every unit of the shard's stock is allocated"};
    case errc::duplicate_batch:  // applied already: asking again changes nothing
      return {condition::permanent, "stock batch already applied"};
    case errc::wrong_holder:
      return {condition::permanent, "the token was granted to another node: a node presents only its own tokens"};
    case errc::not_allowed:
      return {
          condition::permanent,
          "the origin does not let this node coordinate (its may_coordinate policy): register its key with the origin"};
    case errc::too_few_signers:
      return {
          condition::permanent,
          "the token lacks the signatures of a quorum of its group (distinct members, each valid): forged or cut short"};
    case errc::slot_held:
      return {
          condition::retryable,
          "a permit this token names is held by a live grant the member signed: retry after that grant expires or is released"};
  }
  return {};  // not a code
}

inline const std::error_category& error_category() noexcept { return error_category_of<errc>(); }
using dcp::make_error_code;

}  // namespace dcp::delegation

template <> struct std::is_error_code_enum<dcp::delegation::errc> : std::true_type {};
