#pragma once
// Why a lease token was refused, as std::error_code values of their own
// category ("dcp.lease"), each with a message that tells the person reading a
// log what to do about it.
#include <string>
#include <system_error>

#include "dcp/core/condition.hpp"

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

class error_category_impl final : public std::error_category {
 public:
  const char* name() const noexcept override { return "dcp.lease"; }
  std::string message(int ev) const override {
    switch (static_cast<errc>(ev)) {
      case errc::token_too_large:
        return "lease token larger than the verifier's max_token_size: not a token from this group, or raise the limit";
      case errc::malformed_token:
        return "lease token bytes do not parse (truncated, corrupted or not a dcp lease token)";
      case errc::unsupported_version:
        return "lease token format version not supported by this build: upgrade the resource server";
      case errc::unknown_scheme:
        return "lease token uses an unknown signature scheme";
      case errc::scheme_mismatch:
        return "lease token signed with a different scheme than the verifier's key (HMAC-SHA256 vs Ed25519): "
               "configure the verifier with the group's key for that scheme";
      case errc::unknown_key:
        return "lease token signed under another key id than the verifier holds: install the group's current key";
      case errc::bad_signature:
        return "lease token signature does not verify: forged, altered in transit, or signed with another group's key";
      case errc::expired:
        return "lease token expired (or is within the clock-drift margin of its expiry): ask the group for a new lease";
      case errc::wrong_resource:
        return "lease token is for a resource this server does not guard: present the token issued for this resource";
      case errc::stale_fencing:
        return "lease token is older (lower fencing token) than one already accepted for this resource: "
               "the holder was superseded and must acquire a new lease";
      case errc::released:
        return "lease token was already released at this server: acquire a new lease";
      case errc::over_capacity:
        return "admitting this lease would exceed the server's capacity: wait for a permit to be released or expire";
      case errc::invalid_token:
        return "refusing to seal a lease token with an empty or overlong resource name or zero permits";
      case errc::invalid_key:
        return "invalid lease key: HMAC group keys need at least 16 bytes, Ed25519 keys exactly 32";
      case errc::crypto_failure:
        return "OpenSSL failed while signing or verifying a lease token";
    }
    return "unknown dcp.lease error " + std::to_string(ev);
  }
  /// Every refusal is for good but one: a token that does not verify, or is
  /// expired, stale or released, will not pass later either (a new lease
  /// will); a full server may have room once a permit frees.
  std::error_condition default_error_condition(int ev) const noexcept override {
    switch (static_cast<errc>(ev)) {
      case errc::over_capacity:
        return condition::retryable;
      case errc::token_too_large:
      case errc::malformed_token:
      case errc::unsupported_version:
      case errc::unknown_scheme:
      case errc::scheme_mismatch:
      case errc::unknown_key:
      case errc::bad_signature:
      case errc::expired:
      case errc::wrong_resource:
      case errc::stale_fencing:
      case errc::released:
      case errc::invalid_token:
      case errc::invalid_key:
      case errc::crypto_failure:
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

}  // namespace dcp::lease

template <> struct std::is_error_code_enum<dcp::lease::errc> : std::true_type {};
