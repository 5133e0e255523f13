#pragma once
// Why the origin believes a coordinator. A delegate request names the key
// that will sign a shard's tokens and reports the demand that moves shares;
// a stock commit spends stock for good. Sent unsigned, they would be
// believed on the sender's address alone, and an address is only as good as
// the transport: whoever can claim a coordinator's address could renew a
// dead coordinator's delegation (its share stays dark while nobody can sign
// for it), name a key it does not hold, inflate its demand, or spend stock.
//
// So each is signed by the Ed25519 key its sender coordinates with (the one
// the certificate names): a proof of possession on the first request, and
// from then on only that key's holder renews or commits. A request also
// carries the wall time it was sent at; the origin refuses one outside its
// freshness window (origin_config::request_max_age, plus the drift bound),
// or not newer than the last it accepted from the same coordinator in the
// epoch, so a recorded request cannot be replayed to keep a shard alive.
// A stock commit needs no clock: its batch id is unique per epoch, and a
// replay gets the first answer and spends nothing twice.
//
// The signatures are domain-separated from tokens and certificates, so no
// signed object can be passed off as another.
#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "dcp/core/bytes.hpp"
#include "dcp/core/time.hpp"
#include "dcp/delegation/messages.hpp"
#include "dcp/lease/keys.hpp"
#include "dcp/wire/archive.hpp"

namespace dcp::delegation {

namespace detail {
inline constexpr std::string_view request_domain = "dcp.delegation.delegate_request.v1";
inline constexpr std::string_view commit_domain = "dcp.delegation.stock_commit.v1";

/// What a delegate request's signature covers: every field, and every
/// coordinator's address (the sender's own included), so a signed request
/// is good only from the node that made it and for the group it names.
inline bytes request_body(const std::string& resource, std::uint32_t shard,
                          const std::vector<coordinator_entry>& members, std::uint64_t demand, std::int64_t sent_at) {
  bytes out;
  wire::output_archive ar(out);
  ar(std::string(request_domain), resource, shard, members, demand, sent_at);
  return out;
}
inline bytes commit_body(const address& from, const msg::stock_commit& m) {
  bytes out;
  wire::output_archive ar(out);
  ar(std::string(commit_domain), from, m.resource, m.shard, m.epoch, m.batch, m.allocations);
  return out;
}
inline std::int64_t wall_ns(wall_time t) noexcept {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}
}  // namespace detail

/// Signs a single coordinator's request as the node at `self`, at wall time
/// `now`. Errors: lease::errc::crypto_failure.
inline std::error_code sign(msg::delegate_request& m, const address& self, const lease::ed25519_private_key& key,
                            wall_time now) {
  m.sent_at = detail::wall_ns(now);
  auto sig = key.sign(detail::request_body(m.resource, m.shard, {{self, m.public_key}}, m.demand, m.sent_at));
  if (!sig) return sig.error();
  m.signature = std::move(*sig);
  return {};
}
/// Signs a group's request as one of its members (the one `key` belongs to).
inline std::error_code sign(msg::group_delegate_request& m, const lease::ed25519_private_key& key, wall_time now) {
  m.sent_at = detail::wall_ns(now);
  auto sig = key.sign(detail::request_body(m.resource, m.shard, m.members, m.demand, m.sent_at));
  if (!sig) return sig.error();
  m.signature = std::move(*sig);
  return {};
}
/// Signs a stock commit as the coordinator at `self`.
inline std::error_code sign(msg::stock_commit& m, const address& self, const lease::ed25519_private_key& key) {
  auto sig = key.sign(detail::commit_body(self, m));
  if (!sig) return sig.error();
  m.signature = std::move(*sig);
  return {};
}

/// Whether `signature` over a request verifies under `key`, the public key
/// of the coordinator that sent it.
inline bool request_signed_by(const lease::ed25519_public_key& key, const std::string& resource, std::uint32_t shard,
                              const std::vector<coordinator_entry>& members, std::uint64_t demand, std::int64_t sent_at,
                              byte_view signature) {
  return key.verify(detail::request_body(resource, shard, members, demand, sent_at), signature);
}
inline bool commit_signed_by(const lease::ed25519_public_key& key, const address& from, const msg::stock_commit& m) {
  return key.verify(detail::commit_body(from, m), m.signature);
}

}  // namespace dcp::delegation
