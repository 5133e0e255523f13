#pragma once
// token: the permission a group grants, and its sealed (signed) bytes.
//
//   token { resource, holder, permits, fencing, expiry }
//
// - resource: the name a resource server knows its resource (or shard) by;
// - holder:   the address the grant was made to (for the server's logs and
//             for superseding a holder's older grant);
// - permits:  how many units of the resource the holder may use (1 for a lock,
//             up to k for a k-permit semaphore);
// - fencing:  a number the group makes grow with every grant of the resource,
//             so that a server can refuse a token older than one it has
//             already honoured (a paused holder waking up after its lease was
//             given to someone else);
// - expiry:   when the grant ends: wall-clock time since the Unix epoch in
//             the issuer's clock (see verifier.hpp for how a server with
//             another clock treats it). Never a steady clock: a steady
//             time_point means nothing on another host.
//
// Sealed format (Cereal portable binary through dcp's archive, ~100 bytes):
//
//   u8 version (1) | u8 scheme | u32 key id | bytes body | bytes signature
//
// where body is the encoded token and the signature covers the domain string
// "dcp.lease.v1", version, scheme, key id and body, so a signature can be
// neither moved to another format, scheme or key nor to other bytes.
//
// unseal() is total: any input (garbage, truncated, oversized, hostile sizes)
// yields a dcp::lease::errc value; it never throws or reads out of bounds.
#include <cstdint>
#include <cstring>
#include <exception>
#include <string>
#include <string_view>
#include <utility>

#include <cereal/cereal.hpp>
#include <cereal/types/string.hpp>
#include <cereal/types/vector.hpp>

#include "dcp/core/address.hpp"
#include "dcp/core/bytes.hpp"
#include "dcp/core/result.hpp"
#include "dcp/core/time.hpp"
#include "dcp/lease/error.hpp"
#include "dcp/lease/keys.hpp"
#include "dcp/wire/archive.hpp"
#include "dcp/wire/limits.hpp"

namespace dcp::lease {

/// Longest resource name a token may carry.
inline constexpr std::size_t max_resource_size = 512;
/// Default bound on sealed token bytes at a verifier: a token that names the
/// longest resource with an IPv6 holder and an Ed25519 signature fits.
inline constexpr std::size_t default_max_token_size = 1024;
inline constexpr std::uint8_t token_version = 1;

struct token {
  std::string resource;
  address holder;
  std::uint32_t permits = 1;
  std::uint64_t fencing = 0;
  wall_time expiry{};  ///< Unix-epoch wall time, in the issuer's clock

  friend bool operator==(const token&, const token&) = default;

  template <class Archive> void save(Archive& ar) const {
    ar(resource, holder, permits, fencing, static_cast<std::int64_t>(expiry.time_since_epoch().count()));
  }
  template <class Archive> void load(Archive& ar) {
    std::int64_t expiry_ns = 0;
    ar(resource, holder, permits, fencing, expiry_ns);
    if (resource.empty() || resource.size() > max_resource_size)
      throw cereal::Exception("lease token resource name empty or too long");
    if (permits == 0) throw cereal::Exception("lease token grants zero permits");
    expiry = wall_time(duration(expiry_ns));
  }
};

/// A token whose signature checked out, with how it was signed.
struct unsealed_token {
  lease::token token;
  lease::scheme scheme = scheme::hmac_sha256;
  std::uint32_t key_id = 0;
};

namespace detail {

inline constexpr std::string_view seal_domain = "dcp.lease.v1";

/// What a signature covers: a domain string naming the kind of document (so
/// a signature on one kind never verifies as another), the envelope's
/// version, scheme and key id, and the body.
inline bytes signed_message(std::string_view domain, std::uint8_t version, std::uint8_t scheme, std::uint32_t key_id,
                            byte_view body) {
  bytes m(domain.size() + 6 + body.size());
  std::uint8_t* p = m.data();
  std::memcpy(p, domain.data(), domain.size());
  p += domain.size();
  *p++ = version;
  *p++ = scheme;
  for (int i = 0; i < 4; ++i) *p++ = static_cast<std::uint8_t>(key_id >> (8 * i));
  if (!body.empty()) std::memcpy(p, body.data(), body.size());
  return m;
}
inline bytes signed_message(std::uint8_t version, std::uint8_t scheme, std::uint32_t key_id, byte_view body) {
  return signed_message(seal_domain, version, scheme, key_id, body);
}

/// The envelope fields, parsed but not yet trusted.
struct envelope {
  std::uint8_t version = 0;
  std::uint8_t scheme = 0;
  std::uint32_t key_id = 0;
  bytes body;
  bytes signature;
};

inline result<envelope> parse_envelope(byte_view in, std::size_t max_size, std::uint8_t version = token_version) {
  if (in.size() > max_size) return make_error_code(errc::token_too_large);
  envelope e;
  try {
    wire::input_archive ar(in, wire::decode_budget(in.size()));
    ar(e.version);
    if (e.version != version) return make_error_code(errc::unsupported_version);
    ar(e.scheme, e.key_id, e.body, e.signature);
    if (ar.remaining() != 0) return make_error_code(errc::malformed_token);
  } catch (const std::exception&) {  // cereal::Exception (truncated, lying sizes), bad_alloc
    return make_error_code(errc::malformed_token);
  }
  return e;
}

}  // namespace detail

/// Encodes and signs `t` with the group's key. Errors: invalid_token (empty or
/// overlong resource, zero permits), crypto_failure.
inline result<bytes> seal(const token& t, const signing_key& key) {
  if (t.resource.empty() || t.resource.size() > max_resource_size || t.permits == 0)
    return make_error_code(errc::invalid_token);
  bytes body;
  {
    wire::output_archive ar(body);
    ar(t);
  }
  const auto s = static_cast<std::uint8_t>(key.scheme());
  auto sig = key.sign(detail::signed_message(token_version, s, key.key_id(), body));
  if (!sig) return sig.error();
  bytes out;
  wire::output_archive ar(out);
  ar(token_version, s, key.key_id(), body, *sig);
  return out;
}

/// Parses `sealed`, asks `key_for(token, key_id)` which key should have
/// signed it (a result<const verification_key*>: e.g. the key of the
/// delegation a token names, found by a table look-up), and checks the
/// signature under that key. The token's fields are read before they are
/// trusted only to find the key; nothing else is decided on them. Errors: as
/// unseal, plus whatever key_for returns.
template <class KeyFor> result<unsealed_token> unseal_with(byte_view sealed, KeyFor&& key_for,
                                                           std::size_t max_token_size = default_max_token_size) {
  auto env = detail::parse_envelope(sealed, max_token_size);
  if (!env) return env.error();
  const auto s = static_cast<scheme>(env->scheme);
  if (signature_size(s) == 0) return make_error_code(errc::unknown_scheme);
  lease::token t;
  try {
    wire::input_archive ar(env->body, wire::decode_budget(env->body.size()));
    ar(t);
    if (ar.remaining() != 0) return make_error_code(errc::malformed_token);
  } catch (const std::exception&) { return make_error_code(errc::malformed_token); }
  result<const verification_key*> key = key_for(std::as_const(t), env->key_id);
  if (!key) return key.error();
  if (s != (*key)->scheme()) return make_error_code(errc::scheme_mismatch);
  if (env->signature.size() != signature_size(s) ||
      !(*key)->verify(detail::signed_message(env->version, env->scheme, env->key_id, env->body), env->signature))
    return make_error_code(errc::bad_signature);
  return unsealed_token{std::move(t), s, env->key_id};
}

/// Parses `sealed` and checks its signature under `key`; says nothing yet
/// about expiry, resource or fencing (the verifier's policy does).
/// Errors: token_too_large, malformed_token, unsupported_version,
/// unknown_scheme, scheme_mismatch, unknown_key, bad_signature.
inline result<unsealed_token> unseal(byte_view sealed, const verification_key& key,
                                     std::size_t max_token_size = default_max_token_size) {
  return unseal_with(
      sealed,
      [&](const token&, std::uint32_t key_id) -> result<const verification_key*> {
        if (key_id != key.key_id()) return make_error_code(errc::unknown_key);
        return &key;
      },
      max_token_size);
}

}  // namespace dcp::lease
