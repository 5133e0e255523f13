#pragma once
// Why a lease token was refused, as std::error_code values of their own
// category ("dcp.lease", dcp/core/error_category.hpp), each with a message
// that tells the person reading a log what to do about it.
#include <system_error>

#include "dcp/core/error_category.hpp"

namespace dcp::lease {

enum class errc : int {
  token_too_large = 1,  ///< more bytes than the verifier's max_token_size
  malformed_token,      ///< the bytes do not parse as a sealed lease token
  unsupported_version,  ///< a token format this build does not speak
  unknown_scheme,       ///< a signature scheme this build does not know
  scheme_mismatch,      ///< signed with HMAC but the verifier holds an Ed25519 key, or the reverse
  unknown_key,          ///< signed under another key id than the verifier's
  bad_signature,        ///< the signature does not verify: forged or altered
  expired,              ///< past its expiry, counting the clock-drift margin
  wrong_resource,       ///< the token is for a resource this server does not guard
  stale_fencing,        ///< older than a token already accepted for the resource
  released,             ///< the lease was returned to this server already
  over_capacity,        ///< admitting it would exceed the server's permits
  invalid_token,        ///< an issuer asked to seal a token that makes no sense
  invalid_key,          ///< key material of the wrong size or kind
  crypto_failure,       ///< OpenSSL reported an internal failure
};

constexpr const char* error_category_name(errc) noexcept { return "dcp.lease"; }

/// Each code's condition and message. Every refusal is for good but one: a
/// token that does not verify, or is expired, stale or released, will not
/// pass later either (a new lease will); a full server may have room once a
/// permit frees.
constexpr error_meaning describe(errc e) noexcept {
  // every code, and no default: -Wswitch names a code added without a meaning
  switch (e) {
    case errc::token_too_large:
      return {condition::permanent,
              "lease token larger than the verifier's max_token_size: not a token from this group, or raise the limit"};
    case errc::malformed_token:
      return {condition::permanent, "lease token bytes do not parse (truncated, corrupted or not a dcp lease token)"};
    case errc::unsupported_version:
      return {condition::permanent,
              "lease token format version not supported by this build: upgrade the resource server"};
    case errc::unknown_scheme:
      return {condition::permanent, "lease token uses an unknown signature scheme"};
    case errc::scheme_mismatch:
      return {condition::permanent,
              "lease token signed with a different scheme than the verifier's key (HMAC-SHA256 vs Ed25519): "
              "configure the verifier with the group's key for that scheme"};
    case errc::unknown_key:
      return {condition::permanent,
              "lease token signed under another key id than the verifier holds: install the group's current key"};
    case errc::bad_signature:
      return {condition::permanent,
              "lease token signature does not verify: forged, altered in transit, or signed with another group's key"};
    case errc::expired:
      return {condition::permanent,
              "lease token expired (or is within the clock-drift margin of its expiry): ask the group for a new lease"};
    case errc::wrong_resource:
      return {condition::permanent,
              "lease token is for a resource this server does not guard: present the token issued for this resource"};
    case errc::stale_fencing:
      return {condition::permanent,
              "lease token is older (lower fencing token) than one already accepted for this resource: "
              "the holder was superseded and must acquire a new lease"};
    case errc::released:
      return {condition::permanent, "lease token was already released at this server: acquire a new lease"};
    case errc::over_capacity:
      return {condition::retryable,
              "admitting this lease would exceed the server's capacity: wait for a permit to be released or expire"};
    case errc::invalid_token:
      return {condition::permanent,
              "refusing to seal a lease token with an empty or overlong resource name or zero permits"};
    case errc::invalid_key:
      return {condition::permanent,
              "invalid lease key: HMAC group keys need at least 16 bytes, Ed25519 keys exactly 32"};
    case errc::crypto_failure:
      return {condition::permanent, "OpenSSL failed while signing or verifying a lease token"};
  }
  return {};  // not a code
}

inline const std::error_category& error_category() noexcept { return error_category_of<errc>(); }
using dcp::make_error_code;

}  // namespace dcp::lease

template <> struct std::is_error_code_enum<dcp::lease::errc> : std::true_type {};
