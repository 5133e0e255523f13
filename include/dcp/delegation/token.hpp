#pragma once
// A shard's tokens: what its coordinators hand their clients, and how anyone
// who holds the certificate checks one offline.
//
// Two forms, as the certificate's `signers` says:
//
// - signers = 1 (single delegation, and groups whose replicated book alone
//   bounds what they grant): a dcp::lease::token whose resource is
//   shard_key(resource, shard), sealed by the coordinator at position i with
//   key id group_key_id(epoch, i), its expiry within the certificate's. One
//   signature check, however large the group.
//
// - signers = q > 1, quorum-signed (multi-delegation's stretch goal): the
//   same token, with the permits it holds named one by one as slots in
//   [0, share), signed by q distinct members of the group:
//
//     u8 version (2) | u8 scheme | u32 epoch | bytes body | [(u8 member, bytes signature)...]
//
//   An honest member signs a slot only while no other live grant it signed
//   holds that slot (cosign_guard.hpp). Two tokens that share a slot have q
//   signers each, so at least 2q - n members signed both; if at most
//   f = 2q - n - 1 of the n members lie, an honest one signed both, which it
//   never does while the first is live. So the slots of live tokens are
//   disjoint and their permits never exceed the share, whatever the lying
//   members (a lying leader included) do and without the origin's counter:
//   4 members with q = 3 tolerate 1 liar. Counting permits per member instead
//   of naming them would not do: n/q quorums' worth of permits could pass.
//   The cost: q signature checks per token at every verifier instead of one.
//
// open_quorum_token() is total: any input gives a grant or an error, never
// an exception or an out-of-bounds read.
#include <algorithm>
#include <cstdint>
#include <optional>
#include <string_view>
#include <utility>
#include <vector>

#include <cereal/types/vector.hpp>

#include "dcp/core/result.hpp"
#include "dcp/delegation/certificate.hpp"
#include "dcp/delegation/error.hpp"
#include "dcp/lease/keys.hpp"
#include "dcp/lease/token.hpp"
#include "dcp/wire/archive.hpp"

namespace dcp::delegation {

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
inline lease::token stock_receipt(const certificate& c, const address& holder, std::uint64_t request_id,
                                  std::uint32_t units) {
  return lease::token{c.key(), holder, units, fencing_of(c.epoch, request_id), c.not_after};
}

inline constexpr std::uint8_t quorum_token_version = 2;  // lease tokens are version 1: the version tells them apart
inline constexpr std::string_view quorum_token_domain = "dcp.delegation.quorum-token.v1";
/// Most permits one quorum-signed token names (each is a slot in its body).
inline constexpr std::uint32_t max_quorum_token_permits = 4096;
/// Bound on a sealed quorum-signed token's bytes.
inline constexpr std::size_t max_quorum_token_size = 32 * 1024;

/// A grant as a quorum of the group signs it.
struct quorum_grant {
  lease::token token;
  std::vector<std::uint32_t> slots;  ///< token.permits distinct permit numbers in [0, share)
  template <class A> void serialize(A& ar) { ar(token, slots); }
  bool operator==(const quorum_grant&) const = default;
};

/// One member's signature on a quorum_grant.
struct cosignature {
  std::uint8_t member = 0;  ///< position in the certificate's coordinators
  bytes signature;
  template <class A> void serialize(A& ar) { ar(member, signature); }
};

namespace detail {
inline bytes quorum_body(const quorum_grant& g) {
  bytes body;
  wire::output_archive ar(body);
  ar(g);
  return body;
}
/// What member `member` of `epoch` signs: the body under its own key id, so
/// a signature can be moved to neither another member, epoch nor format.
inline bytes cosigned_message(std::uint32_t epoch, std::size_t member, byte_view body) {
  return lease::detail::signed_message(quorum_token_domain, quorum_token_version,
                                       static_cast<std::uint8_t>(lease::scheme::ed25519), group_key_id(epoch, member),
                                       body);
}
}  // namespace detail

/// Member `member`'s signature on `g` in `epoch`.
inline result<bytes> cosign(const quorum_grant& g, std::uint32_t epoch, std::size_t member,
                            const lease::ed25519_private_key& key) {
  return key.sign(detail::cosigned_message(epoch, member, detail::quorum_body(g)));
}
/// Whether `signature` is member `member`'s on `g` in `epoch` (who gathers
/// signatures checks each before counting it).
inline bool cosignature_valid(const quorum_grant& g, std::uint32_t epoch, std::size_t member, byte_view signature,
                              const lease::ed25519_public_key& key) {
  return key.verify(detail::cosigned_message(epoch, member, detail::quorum_body(g)), signature);
}

/// The sealed token: `g` with its members' signatures.
inline result<bytes> seal_quorum_token(const quorum_grant& g, std::uint32_t epoch,
                                       const std::vector<cosignature>& sigs) {
  bytes out;
  wire::output_archive ar(out);
  ar(quorum_token_version, static_cast<std::uint8_t>(lease::scheme::ed25519), epoch, detail::quorum_body(g), sigs);
  if (out.size() > max_quorum_token_size) return lease::make_error_code(lease::errc::token_too_large);
  return out;
}

/// Whether `sealed` is in the quorum-signed form (else it is a lease token):
/// its version, after the archive's endianness byte, says so.
inline bool is_quorum_signed(byte_view sealed) noexcept {
  return sealed.size() > 1 && sealed[1] == quorum_token_version;
}

/// A quorum-signed token whose signatures checked out.
struct opened_quorum_token {
  quorum_grant grant;
  std::uint32_t epoch = 0;
  std::size_t signers = 0;  ///< distinct members whose signatures verified
};

/// Opens a quorum-signed token: every signature present verifies, each
/// member signs once, and the slots are distinct and as many as the
/// permits. The caller compares `signers` with what its certificate needs.
/// `key_of(grant, epoch, member)` returns the member's key as a
/// result<const lease::verification_key*> (or why there is none: an epoch,
/// shard or position the verifier does not know). Errors: lease::errc for
/// the envelope and bad signatures, too_few_signers for a member counted
/// twice, and key_of's.
template <class KeyOf> result<opened_quorum_token> open_quorum_token(byte_view sealed, KeyOf&& key_of) {
  if (sealed.size() > max_quorum_token_size) return lease::make_error_code(lease::errc::token_too_large);
  std::uint8_t version = 0, scheme = 0;
  bytes body;
  std::vector<cosignature> sigs;
  opened_quorum_token out;
  auto& g = out.grant;
  try {
    wire::input_archive ar(sealed, wire::decode_budget(sealed.size()));
    ar(version);
    if (version != quorum_token_version) return lease::make_error_code(lease::errc::unsupported_version);
    ar(scheme, out.epoch, body, sigs);
    if (ar.remaining() != 0) return lease::make_error_code(lease::errc::malformed_token);
    wire::input_archive inner(body, wire::decode_budget(body.size()));
    inner(g);
    if (inner.remaining() != 0) return lease::make_error_code(lease::errc::malformed_token);
  } catch (const std::exception&) { return lease::make_error_code(lease::errc::malformed_token); }
  if (scheme != static_cast<std::uint8_t>(lease::scheme::ed25519))
    return lease::make_error_code(lease::errc::unknown_scheme);
  if (g.token.permits == 0 || g.slots.size() != g.token.permits || g.token.fencing >> 32 != out.epoch)
    return lease::make_error_code(lease::errc::malformed_token);
  auto slots = g.slots;
  std::sort(slots.begin(), slots.end());
  if (std::adjacent_find(slots.begin(), slots.end()) != slots.end())
    return lease::make_error_code(lease::errc::malformed_token);
  if (sigs.empty() || sigs.size() > max_coordinators) return make_error_code(errc::too_few_signers);
  std::vector<bool> seen(max_coordinators, false);
  for (auto& s : sigs) {
    if (s.member >= max_coordinators || seen[s.member])
      return make_error_code(errc::too_few_signers);  // a member counts once
    seen[s.member] = true;
    auto key = key_of(std::as_const(g), out.epoch, static_cast<std::size_t>(s.member));
    if (!key) return key.error();
    if (!(*key)->verify(detail::cosigned_message(out.epoch, s.member, body), s.signature))
      return lease::make_error_code(lease::errc::bad_signature);
  }
  out.signers = sigs.size();
  return out;
}

/// Checks that `sealed` is a token of the shard `c` delegates, signed as the
/// certificate says (by one coordinator, the one its key id names, or by
/// `c.signers` of them with its permits within the share), within the
/// certificate's life. Returns the token. Errors: certificate_mismatch,
/// too_few_signers, and lease::errc values for the token itself.
inline result<lease::token> check_token(byte_view sealed, const certificate& c) {
  std::optional<lease::verification_key> key;
  auto member_key = [&](std::uint32_t epoch, std::size_t member) -> result<const lease::verification_key*> {
    if (epoch != c.epoch || member >= c.coordinators.size()) return make_error_code(errc::certificate_mismatch);
    auto pk = lease::ed25519_public_key::from_bytes(c.coordinators[member].public_key);
    if (!pk) return make_error_code(errc::certificate_mismatch);
    return &key.emplace(*pk, group_key_id(epoch, member));
  };
  lease::token t;
  if (c.signers > 1) {
    if (!is_quorum_signed(sealed)) return make_error_code(errc::too_few_signers);
    auto q = open_quorum_token(sealed, [&](const quorum_grant&, std::uint32_t epoch, std::size_t member) {
      return member_key(epoch, member);
    });
    if (!q) return q.error();
    if (q->signers < c.signers) return make_error_code(errc::too_few_signers);
    if (std::any_of(q->grant.slots.begin(), q->grant.slots.end(), [&](std::uint32_t s) { return s >= c.share; }))
      return make_error_code(errc::certificate_mismatch);
    t = std::move(q->grant.token);
  } else {
    auto u = lease::unseal_with(sealed, [&](const lease::token&, std::uint32_t key_id) {
      return member_key(key_id & max_epoch, key_id >> 24);
    });
    if (!u) return u.error() == lease::errc::bad_signature ? make_error_code(errc::certificate_mismatch) : u.error();
    t = std::move(u->token);
  }
  if (t.resource != c.key() || t.expiry > c.not_after) return make_error_code(errc::certificate_mismatch);
  return t;
}

}  // namespace dcp::delegation
