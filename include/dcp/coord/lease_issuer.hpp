#pragma once
// coord::lease_issuer: the coordination service's grants as sealed lease
// tokens (dcp::lease), so that a resource server can check a holder offline.
//
//   auto key = lease::signing_key{lease::ed25519_private_key::from_seed(seed).value(), 1};
//   server.issue_leases(coord::lease_issuer(key));       // on every replica
//   client.lease(grant, [](result<bytes> token) { ... }); // a holder asks the leader
//
// The leader decides the terms (coord::server, on a lease_request): the
// grant must be held, the request renews the session, and the token carries
// the grant's fencing token and expires TTL x (1 - 2ρ) after the request's
// receipt in the leader's clock, ρ being server_config::drift_bound. The
// permit cannot be handed to anyone else before then (server.hpp gives the
// argument); a verifier or permit_gate whose clock is within max_drift of
// the leader's stops honouring the token before the permit can move.
// Fencing tokens grow with every grant of the service (one replicated
// counter), so a resource server's "newer than the newest accepted" check
// orders holders across failover.
//
// This header needs OpenSSL's libcrypto (link dcp::lease); it is not part
// of the dcp/coord.hpp umbrella, which needs no crypto.
#include <utility>

#include "dcp/coord/server.hpp"
#include "dcp/lease/keys.hpp"
#include "dcp/lease/token.hpp"

namespace dcp::coord {

/// A lease_sealer: turns the leader's lease_terms into sealed token bytes.
/// Copies share the key (immutable); safe to install on several replicas.
class lease_issuer {
 public:
  explicit lease_issuer(lease::signing_key key) : key_(std::move(key)) {}

  result<bytes> operator()(const lease_terms& t) const {
    return lease::seal(lease::token{t.resource, t.holder, t.permits, t.fencing, t.expiry}, key_);
  }

  const lease::signing_key& key() const noexcept { return key_; }

 private:
  lease::signing_key key_;
};

}  // namespace dcp::coord
