#pragma once
// Signed (mutable) DHT values, BEP 44 style: what is signed and where it lives.
//
// A signed value is {public key (Ed25519, 32 bytes), salt (0..64 bytes),
// sequence number, value, signature (64 bytes)}. It lives at
// SHA-1(public key || salt), BEP 44's target, so its place in the key space is
// fixed by the key pair: only the holder of the private key can write there
// (dht::store refuses an unsigned write to a place that holds a signed value,
// and a signed one that does not verify or whose seq is not above the stored
// one). The signature covers BEP 44's bencoded
//
//     4:salt<len>:<salt>3:seqi<seq>e1:v<len>:<value>
//
// (the salt part only when the salt is not empty), so salt, seq and value
// cannot be cut from one signed value and pasted into another. Unlike BEP 44
// the value is raw bytes (v is one bencoded string), and the TTL is not
// signed: as in BEP 44 each storing node bounds it (store_config::max_ttl).
//
// This header needs no crypto library: dht::store checks signatures through a
// SignatureVerifier policy. dcp/dht/ed25519.hpp has the real one (and the
// signing helper) over OpenSSL's libcrypto, through dcp::lease's Ed25519 keys;
// no_signatures, the store's default, refuses every signed value.
#include <concepts>
#include <cstdint>
#include <string>

#include "dcp/core/bytes.hpp"
#include "dcp/core/detail/sha1.hpp"
#include "dcp/core/node_id.hpp"

namespace dcp::dht {

inline constexpr std::size_t signed_public_key_size = 32;  ///< Ed25519 (RFC 8032)
inline constexpr std::size_t signed_signature_size = 64;   ///< Ed25519 (RFC 8032)
inline constexpr std::size_t max_salt_size = 64;           ///< BEP 44

/// A value signed by its owner, as the user builds it (see dcp/dht/ed25519.hpp: sign_value).
struct signed_value {
  bytes public_key;       ///< the owner's Ed25519 public key
  bytes salt;             ///< lets one key pair own many places; at most max_salt_size bytes
  std::uint64_t seq = 0;  ///< a later value must carry a higher seq
  bytes value;
  bytes signature;  ///< over signed_message(salt, seq, value)
};

/// Where a signed value lives: SHA-1(public key || salt) (BEP 44's target).
inline node_id signed_target(byte_view public_key, byte_view salt) {
  dcp::detail::sha1 h;
  h.update(public_key);
  h.update(salt);
  return node_id(h.finish());
}

/// The bytes the owner signs: BEP 44's "4:salt<n>:<salt>3:seqi<seq>e1:v<n>:<value>".
inline bytes signed_message(byte_view salt, std::uint64_t seq, byte_view value) {
  bytes m;
  m.reserve(salt.size() + value.size() + 64);
  auto put = [&m](std::string_view s) { m.insert(m.end(), s.begin(), s.end()); };
  if (!salt.empty()) {
    put("4:salt");
    put(std::to_string(salt.size()));
    put(":");
    m.insert(m.end(), salt.begin(), salt.end());
  }
  put("3:seqi");
  put(std::to_string(seq));
  put("e1:v");
  put(std::to_string(value.size()));
  put(":");
  m.insert(m.end(), value.begin(), value.end());
  return m;
}

/// How dht::store checks a signed value: verify(public key, message, signature).
template <class V>
concept SignatureVerifier = requires(const V& v, byte_view k, byte_view m, byte_view s) {
  { v.verify(k, m, s) } -> std::same_as<bool>;
  { V::enabled } -> std::convertible_to<bool>;
};

/// The store's default: no crypto linked, so no signed value is accepted
/// (refused and counted "signature_unverifiable"); unsigned values as before.
struct no_signatures {
  static constexpr bool enabled = false;
  bool verify(byte_view, byte_view, byte_view) const noexcept { return false; }
};

}  // namespace dcp::dht
