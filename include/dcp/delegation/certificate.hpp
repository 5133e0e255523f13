#pragma once
// certificate: the origin's signed statement that a shard is delegated.
//
//   { resource, shard, kind, share, epoch, not_before, not_after,
//     coordinators (address + Ed25519 public key), quorum }
//
// A client checks it with the origin's public key (its root of trust) before
// it believes a coordinator; the origin needs no copy of it to check tokens
// (it keeps its own table). A token of the shard is a dcp::lease::token whose
// resource is shard_key(resource, shard), sealed by the key of the
// coordinator at position i of the list with key id = group_key_id(epoch, i)
// (= epoch for the first, the only one in single delegation), and whose
// expiry never passes not_after. The key id names the signer, so checking a
// token stays one signature verification however large the group.
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
/// Bound on a sealed certificate's bytes.
inline constexpr std::size_t max_certificate_size = 4096;
inline constexpr std::uint8_t certificate_version = 1;
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
  std::uint64_t share = 0;   ///< what the shard's coordinators may grant at once (or per second, or in all)
  std::uint32_t epoch = 0;   ///< grows with every new delegation of the shard; tokens carry it as key id
  wall_time not_before{}, not_after{};
  std::vector<coordinator_entry> coordinators;
  std::uint32_t quorum = 1;  ///< coordinators that must agree (1: single delegation)

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
    return {};
  }

  template <class A>
  void save(A& ar) const {
    ar(resource, shard, static_cast<std::uint8_t>(kind), share, epoch,
       static_cast<std::int64_t>(not_before.time_since_epoch().count()),
       static_cast<std::int64_t>(not_after.time_since_epoch().count()), coordinators, quorum);
  }
  template <class A>
  void load(A& ar) {
    std::uint8_t k = 0;
    std::int64_t nb = 0, na = 0;
    ar(resource, shard, k, share, epoch, nb, na, coordinators, quorum);
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
  auto sig = origin.sign(lease::detail::signed_message(certificate_domain, certificate_version, s, origin.key_id(), body));
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
      !origin.verify(lease::detail::signed_message(certificate_domain, env->version, env->scheme, env->key_id, env->body),
                     env->signature))
    return make_error_code(errc::bad_certificate);
  certificate c;
  try {
    wire::input_archive ar(env->body, wire::decode_budget(env->body.size()));
    ar(c);
    if (ar.remaining() != 0) return make_error_code(errc::bad_certificate);
  } catch (const std::exception&) {
    return make_error_code(errc::bad_certificate);
  }
  if (!c.problem().empty()) return make_error_code(errc::bad_certificate);
  return c;
}

/// A coordinator's fencing token: the certificate's epoch in the high half,
/// so that every token of a newer epoch fences every older one's, and in
/// the low half a grant's sequence number, or a receipt's request id (so
/// that a receipt sent again is the same token).
constexpr std::uint64_t fencing_of(std::uint32_t epoch, std::uint64_t low) noexcept {
  return std::uint64_t{epoch} << 32 | (low & 0xffffffffu);
}

/// The receipt for a confirmed stock allocation (`units` to `holder` for
/// its request `request_id`): a token the holder can show, valid until the
/// certificate ends. A single coordinator and a group's members sign the
/// same token.
inline lease::token stock_receipt(const certificate& c, const address& holder, std::uint64_t request_id, std::uint32_t units) {
  return lease::token{c.key(), holder, units, fencing_of(c.epoch, request_id), c.not_after};
}

/// Checks that `sealed` is a token of the shard `c` delegates, signed by one
/// of its coordinators (the one its key id names), within the certificate's
/// life. Returns the token. Errors: certificate_mismatch, and lease::errc
/// values for the token itself.
inline result<lease::token> check_token(byte_view sealed, const certificate& c) {
  std::optional<lease::verification_key> key;
  auto u = lease::unseal_with(sealed, [&](const lease::token&, std::uint32_t key_id) -> result<const lease::verification_key*> {
    const std::size_t member = key_id >> 24;
    if ((key_id & max_epoch) != c.epoch || member >= c.coordinators.size()) return make_error_code(errc::certificate_mismatch);
    auto pk = lease::ed25519_public_key::from_bytes(c.coordinators[member].public_key);
    if (!pk) return make_error_code(errc::certificate_mismatch);
    return &key.emplace(*pk, key_id);
  });
  if (!u) return u.error() == lease::errc::bad_signature ? make_error_code(errc::certificate_mismatch) : u.error();
  if (u->token.resource != c.key() || u->token.expiry > c.not_after) return make_error_code(errc::certificate_mismatch);
  return std::move(u->token);
}

}  // namespace dcp::delegation
