#pragma once
// Ed25519 for signed DHT values (dcp/dht/signature.hpp), over dcp::lease's
// OpenSSL keys: the verifier policy dht::store takes, and the owner's signing.
//
//   auto key = dcp::lease::ed25519_private_key::generate().value();
//   dcp::dht::store<Env, dcp::dht::kademlia<Env>, dcp::dht::ed25519_verifier> s(env, router, cfg);
//   s.put(dcp::dht::sign_value(key, to_bytes("salt"), seq, value).value(), ttl, cb);
//   s.get(key.public_key().raw(), to_bytes("salt"), cb);
//
// Verification is real CPU: tens of thousands per second per core
// (benchmarks/dht_signed_values.cpp measures it). Every replica verifies every
// signed put it receives (including repair traffic) and a get verifies every
// answer, so a forged value is refused by whoever sees it first.
// Linking: needs libcrypto; link dcp::lease (which brings OpenSSL::Crypto).
#include "dcp/core/result.hpp"
#include "dcp/dht/signature.hpp"
#include "dcp/lease/keys.hpp"

namespace dcp::dht {

/// dht::store's SignatureVerifier for Ed25519 (RFC 8032).
struct ed25519_verifier {
  static constexpr bool enabled = true;
  bool verify(byte_view public_key, byte_view message, byte_view signature) const {
    auto k = lease::ed25519_public_key::from_bytes(public_key);
    return k && k->verify(message, signature);
  }
};

/// The owner's signed value: `value` under (its public key, `salt`) with sequence number `seq`.
inline result<signed_value> sign_value(const lease::ed25519_private_key& key, bytes salt, std::uint64_t seq,
                                       bytes value) {
  auto sig = key.sign(signed_message(salt, seq, value));
  if (!sig) return sig.error();
  signed_value v;
  v.public_key = key.public_key().raw();
  v.salt = std::move(salt);
  v.seq = seq;
  v.value = std::move(value);
  v.signature = std::move(*sig);
  return v;
}

}  // namespace dcp::dht
