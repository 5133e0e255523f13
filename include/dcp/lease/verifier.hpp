#pragma once
// verifier: the resource server's side of a lease, entirely offline.
//
// A resource server holds the group's verification key (the Ed25519 public
// key, or the shared HMAC key) and the names of the resources it guards. For
// every request it checks the token that came with it:
//
//   1. the bytes parse and the signature verifies under its key
//      (malformed_token, token_too_large, unsupported_version, unknown_scheme,
//      scheme_mismatch, unknown_key, bad_signature);
//   2. the token is for a resource it guards            (wrong_resource);
//   3. the token has not expired, drift margin included  (expired);
//   4. its fencing token is not lower than the newest it has accepted for
//      that resource                                    (stale_fencing).
//
// Clock assumption. The issuer states expiry in its own clock; the server
// reads its own. They are different clocks, so the server treats a token as
// expired `max_drift` early: expired iff now_verifier >= expiry - max_drift.
// This is safe exactly when, over a lease's lifetime, the two clocks differ by
// at most max_drift, i.e. max_drift >= (skew when last synchronized) +
// (relative drift rate) x (time since). With NTP-disciplined clocks (skew in
// milliseconds, drift rate <= 100 ppm) a lease of seconds wants a max_drift of
// tens of milliseconds plus the expected skew. Outside that assumption a
// holder may be honoured after the group believes its lease ended: pick the
// bound from measured skew, not hope. Both sides read wall clocks since the
// Unix epoch (dcp::wall_time: Env::wall_now(), or dcp::system_wall_now()
// outside an Env); a steady clock is not comparable across hosts, and the
// types keep one from being passed for the other.
//
// Fencing. The newest fencing token accepted per resource lives in memory. A
// server that restarts must restore it (restore(), from its own durable
// state) or refuse tokens until every token issued before the restart has
// expired; otherwise a stale holder could slip in once.
//
// Not thread-safe: call from one thread or strand, like the rest of dcp.
#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "dcp/core/error.hpp"
#include "dcp/core/time.hpp"
#include "dcp/lease/error.hpp"
#include "dcp/lease/keys.hpp"
#include "dcp/lease/token.hpp"

namespace dcp::lease {

struct verifier_config {
  /// Bound on |issuer clock - verifier clock| while a token lives (see above).
  duration max_drift = 0ns;
  /// Sealed tokens above this many bytes are refused unread.
  std::size_t max_token_size = default_max_token_size;

  void validate() const {
    if (max_drift < duration::zero())
      throw dcp::error(dcp::errc::invalid_config, "lease::verifier_config: max_drift must be >= 0");
    if (max_token_size < 64)
      throw dcp::error(dcp::errc::invalid_config,
                       "lease::verifier_config: max_token_size below 64 bytes cannot hold any sealed token");
  }
};

/// The last instant (in the verifier's clock) at which `t` is still honoured
/// is strictly before this deadline: expiry - max_drift, saturating.
inline wall_time verifier_deadline(const token& t, duration max_drift) noexcept {
  const auto e = t.expiry.time_since_epoch().count();
  const auto d = max_drift.count();
  if (e < std::numeric_limits<std::int64_t>::min() + d) return wall_time::min();
  return wall_time(duration(e - d));
}

inline bool is_expired(const token& t, wall_time now, duration max_drift) noexcept {
  return now >= verifier_deadline(t, max_drift);
}

class verifier {
 public:
  /// Throws dcp::error(invalid_config) on a bad configuration.
  verifier(verification_key key, std::vector<std::string> resources, verifier_config cfg = {})
      : key_(std::move(key)), cfg_(cfg) {
    cfg_.validate();
    for (auto& r : resources) guard(std::move(r));
  }

  /// Starts guarding `resource` (no-op if already guarded).
  void guard(std::string resource) { newest_.try_emplace(std::move(resource)); }
  bool guards(std::string_view resource) const { return newest_.find(resource) != newest_.end(); }

  /// Every check; on success the token's fencing becomes the newest for its
  /// resource (if it is newer) and the token is returned.
  result<token> accept(byte_view sealed, wall_time now) {
    auto t = check(sealed, now);
    if (t) {
      auto& newest = newest_.find(t->resource)->second;
      if (!newest || *newest < t->fencing) newest = t->fencing;
    }
    return t;
  }

  /// Every check, recording nothing.
  result<token> check(byte_view sealed, wall_time now) const {
    auto u = unseal(sealed, key_, cfg_.max_token_size);
    if (!u) return u.error();
    auto it = newest_.find(u->token.resource);
    if (it == newest_.end()) return make_error_code(errc::wrong_resource);
    if (is_expired(u->token, now, cfg_.max_drift)) return make_error_code(errc::expired);
    if (it->second && u->token.fencing < *it->second) return make_error_code(errc::stale_fencing);
    return std::move(u->token);
  }

  /// Newest fencing token accepted for `resource`, if any.
  std::optional<std::uint64_t> newest_fencing(std::string_view resource) const {
    auto it = newest_.find(resource);
    return it == newest_.end() ? std::nullopt : it->second;
  }

  /// Reloads a newest fencing token saved before a restart (never lowers it).
  void restore(std::string_view resource, std::uint64_t fencing) {
    auto it = newest_.find(resource);
    if (it == newest_.end()) it = newest_.emplace(std::string(resource), std::nullopt).first;
    if (!it->second || *it->second < fencing) it->second = fencing;
  }

  const verifier_config& config() const noexcept { return cfg_; }

 private:
  verification_key key_;
  verifier_config cfg_;
  std::map<std::string, std::optional<std::uint64_t>, std::less<>> newest_;
};

}  // namespace dcp::lease
