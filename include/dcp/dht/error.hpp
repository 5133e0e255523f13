#pragma once
// The DHT chapter's error codes (category "dcp.dht"), beside dcp::errc.
#include <string>
#include <system_error>

#include "dcp/core/condition.hpp"

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

class error_category_impl final : public std::error_category {
 public:
  const char* name() const noexcept override { return "dcp.dht"; }
  std::string message(int ev) const override {
    switch (static_cast<errc>(ev)) {
      case errc::not_joined:
        return "not joined to the overlay yet: call bootstrap() with a reachable contact and wait";
      case errc::lookup_failed:
        return "lookup failed: no live path to the key's owner within the retry budget";
      case errc::key_too_large:
        return "key larger than store_config::max_key_size";
      case errc::value_too_large:
        return "value larger than store_config::max_value_size";
      case errc::no_replica:
        return "no responsible node acknowledged within the timeout";
      case errc::not_found:
        return "no live value under this key (never put, deleted or expired)";
      case errc::bad_argument:
        return "argument outside the contract (count, TTL or contact list)";
      case errc::ttl_too_large:
        return "TTL larger than store_config::max_ttl";
      case errc::version_too_far_ahead:
        return "version more than store_config::max_version_lead ahead of the wall clock (in nanoseconds since the Unix epoch)";
      case errc::bad_signature:
        return "signed value refused: a public key of 32 bytes, a salt of at most 64 and a valid Ed25519 signature over (salt, seq, value) are needed, and a store built with ed25519_verifier";
      case errc::seq_not_newer:
        return "signed value refused: its seq is not above the one stored (a later value needs a higher seq)";
      case errc::key_is_signed:
        return "write refused: the key holds a signed value, which only its owner may replace";
    }
    return "unknown dcp.dht error " + std::to_string(ev);
  }
  std::error_condition default_error_condition(int ev) const noexcept override {
    switch (static_cast<errc>(ev)) {
      case errc::not_joined:     // once bootstrap completes
      case errc::lookup_failed:  // the overlay repairs its routes
        return condition::retryable;
      case errc::no_replica:  // a replica may have stored it and its acknowledgement been lost
        return condition::outcome_unknown;
      case errc::key_too_large:
      case errc::value_too_large:
      case errc::not_found:
      case errc::bad_argument:
      case errc::ttl_too_large:
      case errc::version_too_far_ahead:
      case errc::bad_signature:
      case errc::seq_not_newer:
      case errc::key_is_signed:
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

}  // namespace dcp::dht

template <> struct std::is_error_code_enum<dcp::dht::errc> : std::true_type {};
