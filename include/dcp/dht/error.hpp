#pragma once
// The DHT chapter's error codes (category "dcp.dht", dcp/core/error_category.hpp),
// beside dcp::errc.
#include <system_error>

#include "dcp/core/error_category.hpp"

namespace dcp::dht {

enum class errc : int {
  not_joined = 1,         ///< the node has not joined the overlay yet (bootstrap still running)
  lookup_failed,          ///< every path to the key's owner failed within the retry budget
  key_too_large,          ///< the key is longer than store_config::max_key_size
  value_too_large,        ///< the value is longer than store_config::max_value_size
  no_replica,             ///< no responsible node acknowledged within the timeout
  not_found,              ///< no live value under the key (never put, deleted, or expired)
  bad_argument,           ///< a count, a TTL or a bootstrap list outside the contract
  ttl_too_large,          ///< a TTL above store_config::max_ttl
  version_too_far_ahead,  ///< a version more than store_config::max_version_lead ahead of the wall clock
  bad_signature,          ///< a signed value whose signature, key or salt is malformed or does not verify
  seq_not_newer,          ///< a signed value whose seq is not above the one stored (BEP 44)
  key_is_signed,          ///< an unsigned write to a place that holds a signed value: only its owner may write there
};

constexpr const char* error_category_name(errc) noexcept { return "dcp.dht"; }

/// Each code's condition and message.
constexpr error_meaning describe(errc e) noexcept {
  // every code, and no default: -Wswitch names a code added without a meaning
  switch (e) {
    case errc::not_joined:  // once bootstrap completes
      return {condition::retryable,
              "not joined to the overlay yet: call bootstrap() with a reachable contact and wait"};
    case errc::lookup_failed:  // the overlay repairs its routes
      return {condition::retryable, "lookup failed: no live path to the key's owner within the retry budget"};
    case errc::key_too_large:
      return {condition::permanent, "key larger than store_config::max_key_size"};
    case errc::value_too_large:
      return {condition::permanent, "value larger than store_config::max_value_size"};
    case errc::no_replica:  // a replica may have stored it and its acknowledgement been lost
      return {condition::outcome_unknown, "no responsible node acknowledged within the timeout"};
    case errc::not_found:
      return {condition::permanent, "no live value under this key (never put, deleted or expired)"};
    case errc::bad_argument:
      return {condition::permanent, "argument outside the contract (count, TTL or contact list)"};
    case errc::ttl_too_large:
      return {condition::permanent, "TTL larger than store_config::max_ttl"};
    case errc::version_too_far_ahead:
      return {
          condition::permanent,
          "version more than store_config::max_version_lead ahead of the wall clock (in nanoseconds since the Unix epoch)"};
    case errc::bad_signature:
      return {
          condition::permanent,
          "signed value refused: a public key of 32 bytes, a salt of at most 64 and a valid Ed25519 signature over (salt, seq, value) are needed, and a store built with ed25519_verifier"};
    case errc::seq_not_newer:
      return {condition::permanent,
              "signed value refused: its seq is not above the one stored (a later value needs a higher seq)"};
    case errc::key_is_signed:
      return {condition::permanent, "write refused: the key holds a signed value, which only its owner may replace"};
  }
  return {};  // not a code
}

inline const std::error_category& error_category() noexcept { return error_category_of<errc>(); }
using dcp::make_error_code;

}  // namespace dcp::dht

template <> struct std::is_error_code_enum<dcp::dht::errc> : std::true_type {};
