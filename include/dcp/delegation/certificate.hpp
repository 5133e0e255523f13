#pragma once
// certificate: the origin's signed statement that a shard is delegated.
//
//   { resource, shard, kind, share, epoch, not_before, not_after,
//     coordinators (address + Ed25519 public key), quorum, signers }
//
// A client checks it with the origin's public key (its root of trust) before
// it believes a coordinator; the origin needs no copy of it to check tokens
// (it keeps its own table). What a token of the shard is, signed by one
// coordinator or by `signers` of them, is in token.hpp.
//
// Sealed like a lease token (version | scheme | key id | body | signature),
// with its own signature domain, so a token can never pass for a
// certificate or the reverse. open_certificate() is total: any input gives
// a certificate or an error, never an exception or an out-of-bounds read.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <cereal/types/string.hpp>
#include <cereal/types/vector.hpp>

#include "dcp/core/address.hpp"
#include "dcp/core/bytes.hpp"
#include "dcp/core/result.hpp"
#include "dcp/core/time.hpp"
#include "dcp/delegation/capacity.hpp"
#include "dcp/delegation/error.hpp"
#include "dcp/lease/keys.hpp"
#include "dcp/lease/token.hpp"
#include "dcp/wire/archive.hpp"
#include "dcp/wire/limits.hpp"

namespace dcp::delegation {

/// Most coordinators one shard may have (multi-delegation groups are small).
inline constexpr std::size_t max_coordinators = 16;
/// Epochs fit in the key id's low 24 bits; the coordinator's position, the high 8.
inline constexpr std::uint32_t max_epoch = (1u << 24) - 1;
/// The key id a shard's coordinator at position `member` signs its tokens
/// with in `epoch`.
constexpr std::uint32_t group_key_id(std::uint32_t epoch, std::size_t member) noexcept {
  return (static_cast<std::uint32_t>(member) << 24) | (epoch & max_epoch);
}
/// The quorum a group of n signs tokens with when they are quorum-signed:
/// the smallest q that both tolerates f = (n - 1) / 3 lying members
/// (2q - n > f: two quorums share an honest member) and leaves a quorum of
/// honest ones (q <= n - f). 4 members: 3; 3 members: 2 (no liar tolerated).
constexpr std::uint32_t signing_quorum(std::size_t n) noexcept {
  const std::size_t f = n == 0 ? 0 : (n - 1) / 3;
  return static_cast<std::uint32_t>((n + f + 2) / 2);
}
/// Most permits a quorum-signed share may have: its tokens name their permits
/// one by one (token.hpp), and each member remembers the ones it signed.
inline constexpr std::uint64_t max_quorum_signed_share = 1u << 20;
/// Bound on a sealed certificate's bytes.
inline constexpr std::size_t max_certificate_size = 4096;
inline constexpr std::uint8_t certificate_version = 2;  // 2: signers
inline constexpr std::string_view certificate_domain = "dcp.delegation.certificate.v1";

struct coordinator_entry {
  address addr;
  bytes public_key;  ///< Ed25519, 32 bytes
  template <class A> void serialize(A& ar) { ar(addr, public_key); }
  bool operator==(const coordinator_entry&) const = default;
};

struct certificate {
  std::string resource;
  std::uint32_t shard = 0;
  capacity_kind kind = capacity_kind::concurrency;
  std::uint64_t share = 0;  ///< what the shard's coordinators may grant at once (or per second, or in all)
  std::uint32_t epoch = 0;  ///< grows with every new delegation of the shard; tokens carry it as key id
  wall_time not_before{}, not_after{};
  std::vector<coordinator_entry> coordinators;
  std::uint32_t quorum = 1;  ///< coordinators that must agree (1: single delegation)
  /// Coordinators whose signatures a token needs: 1 (any one member signs
  /// for the group, whose book is replicated), or `quorum` (quorum-signed
  /// tokens, token.hpp: then 2 x signers - coordinators - 1 lying members
  /// cannot make tokens whose permits overlap).
  std::uint32_t signers = 1;

  std::string key() const { return shard_key(resource, shard); }
  bool valid_at(wall_time now) const noexcept { return not_before <= now && now < not_after; }
  /// The coordinator whose key signs tokens at `addr`, if it is one of them.
  const coordinator_entry* coordinator(const address& a) const {
    for (auto& c : coordinators)
      if (c.addr == a) return &c;
    return nullptr;
  }

  /// Empty if it makes sense; else what is wrong with it.
  std::string problem() const {
    if (resource.empty() || resource.size() > max_resource_name) return "resource name empty or too long";
    if (kind != capacity_kind::concurrency && kind != capacity_kind::rate && kind != capacity_kind::stock)
      return "unknown capacity kind";
    if (share == 0) return "zero share";
    if (epoch == 0 || epoch > max_epoch) return "epoch outside 1..2^24-1";
    if (!(not_before < not_after)) return "empty validity window";
    if (coordinators.empty() || coordinators.size() > max_coordinators) return "needs 1..16 coordinators";
    for (auto& c : coordinators)
      if (c.public_key.size() != lease::ed25519_key_size) return "a coordinator key is not 32 bytes";
    if (quorum == 0 || quorum > coordinators.size() || 2 * quorum <= coordinators.size())
      return "the quorum rule does not intersect (need coordinators/2 < quorum <= coordinators)";
    if (signers != 1 && signers != quorum) return "signers must be 1 or the quorum";
    if (signers > 1 && kind != capacity_kind::concurrency)
      return "quorum-signed tokens are for concurrency shares only";
    if (signers > 1 && share > max_quorum_signed_share) return "a quorum-signed share is at most 2^20 permits";
    return {};
  }

  template <class A> void save(A& ar) const {
    ar(resource, shard, static_cast<std::uint8_t>(kind), share, epoch,
       static_cast<std::int64_t>(not_before.time_since_epoch().count()),
       static_cast<std::int64_t>(not_after.time_since_epoch().count()), coordinators, quorum, signers);
  }
  template <class A> void load(A& ar) {
    std::uint8_t k = 0;
    std::int64_t nb = 0, na = 0;
    ar(resource, shard, k, share, epoch, nb, na, coordinators, quorum, signers);
    kind = static_cast<capacity_kind>(k);
    not_before = wall_time(duration(nb));
    not_after = wall_time(duration(na));
  }
  bool operator==(const certificate&) const = default;
};

/// Signs `c` with the origin's key. Errors: invalid_config (a certificate
/// that makes no sense), lease::errc::crypto_failure.
inline result<bytes> seal_certificate(const certificate& c, const lease::signing_key& origin) {
  if (auto p = c.problem(); !p.empty()) return dcp::make_error_code(dcp::errc::invalid_config);
  bytes body;
  {
    wire::output_archive ar(body);
    ar(c);
  }
  const auto s = static_cast<std::uint8_t>(origin.scheme());
  auto sig =
      origin.sign(lease::detail::signed_message(certificate_domain, certificate_version, s, origin.key_id(), body));
  if (!sig) return sig.error();
  bytes out;
  wire::output_archive ar(out);
  ar(certificate_version, s, origin.key_id(), body, *sig);
  return out;
}

/// Parses `sealed`, checks the origin's signature and that the certificate
/// makes sense. Errors: bad_certificate. (Validity in time is the caller's:
/// certificate::valid_at.)
inline result<certificate> open_certificate(byte_view sealed, const lease::verification_key& origin) {
  auto env = lease::detail::parse_envelope(sealed, max_certificate_size, certificate_version);
  if (!env) return make_error_code(errc::bad_certificate);
  if (env->scheme != static_cast<std::uint8_t>(origin.scheme()) || env->key_id != origin.key_id() ||
      !origin.verify(
          lease::detail::signed_message(certificate_domain, env->version, env->scheme, env->key_id, env->body),
          env->signature))
    return make_error_code(errc::bad_certificate);
  certificate c;
  try {
    wire::input_archive ar(env->body, wire::decode_budget(env->body.size()));
    ar(c);
    if (ar.remaining() != 0) return make_error_code(errc::bad_certificate);
  } catch (const std::exception&) { return make_error_code(errc::bad_certificate); }
  if (!c.problem().empty()) return make_error_code(errc::bad_certificate);
  return c;
}

}  // namespace dcp::delegation
