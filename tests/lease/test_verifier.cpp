#include <doctest/doctest.h>

#include "../seeds.hpp"  // fewer seeds under sanitizers

#include <map>
#include <set>

#include "dcp/core/rng.hpp"
#include "dcp/lease.hpp"

namespace test_verifier {

using namespace dcp;
using namespace dcp::lease;

namespace {
signing_key group_key() { return {ed25519_private_key::from_seed(bytes(32, 3)).value(), 7}; }

bytes grant(const signing_key& k, std::string resource, std::uint64_t fencing, wall_time expiry,
            std::uint32_t permits = 1, address holder = address::sim(1)) {
  return seal({std::move(resource), holder, permits, fencing, expiry}, k).value();
}
}  // namespace

TEST_CASE("lease verifier: accepts a valid token and refuses each bad one with its own error") {
  const auto k = group_key();
  verifier v(k.to_verification_key(), {"db/shard-1"}, {.max_drift = 100ms});
  const wall_time now(50s);
  auto ok = v.accept(grant(k, "db/shard-1", 10, now + 1s), now);
  REQUIRE(ok);
  CHECK(ok->fencing == 10);
  CHECK(v.newest_fencing("db/shard-1") == 10u);

  CHECK(v.accept(grant(k, "db/shard-1", 11, now + 50ms), now).error() == lease::errc::expired);  // within drift
  CHECK(v.accept(grant(k, "db/shard-2", 12, now + 1s), now).error() == lease::errc::wrong_resource);
  CHECK(v.accept(grant(k, "db/shard-1", 9, now + 1s), now).error() == lease::errc::stale_fencing);
  signing_key other{ed25519_private_key::from_seed(bytes(32, 4)).value(), 7};
  CHECK(v.accept(grant(other, "db/shard-1", 13, now + 1s), now).error() == lease::errc::bad_signature);
  CHECK(v.accept(bytes{1, 1, 3}, now).error() == lease::errc::malformed_token);
  // refusals changed nothing
  CHECK(v.newest_fencing("db/shard-1") == 10u);
  // the same token again, and an equal fencing, are still honoured
  CHECK(v.accept(grant(k, "db/shard-1", 10, now + 1s), now));
  CHECK(v.accept(grant(k, "db/shard-1", 14, now + 1s), now));
  CHECK(v.accept(grant(k, "db/shard-1", 10, now + 1s), now).error() == lease::errc::stale_fencing);
  // check() records nothing
  CHECK(v.check(grant(k, "db/shard-1", 20, now + 1s), now));
  CHECK(v.newest_fencing("db/shard-1") == 14u);
  CHECK(v.guards("db/shard-1"));
  CHECK_FALSE(v.newest_fencing("db/shard-9").has_value());
}

TEST_CASE("lease verifier: expiry boundary with and without a drift margin") {
  const auto k = group_key();
  const wall_time expiry(100s);
  const auto token = grant(k, "r", 1, expiry);
  for (duration drift : {duration::zero(), duration(1ns), duration(250ms), duration(5s)}) {
    verifier v(k.to_verification_key(), {"r"}, {.max_drift = drift});
    CHECK(v.check(token, expiry - drift - 1ns));                            // last honoured instant
    CHECK(v.check(token, expiry - drift).error() == lease::errc::expired);  // first refused instant
    CHECK(v.check(token, expiry).error() == lease::errc::expired);
    CHECK(v.check(token, expiry + 1h).error() == lease::errc::expired);
  }
  // a drift larger than the whole lease refuses it at once
  verifier v(k.to_verification_key(), {"r"}, {.max_drift = 200s});
  CHECK(v.check(token, wall_time(0s)).error() == lease::errc::expired);
  // extreme values saturate instead of overflowing (UBSan watches this test)
  verifier huge(k.to_verification_key(), {"r"}, {.max_drift = duration::max()});
  CHECK(huge.check(grant(k, "r", 1, wall_time::min()), wall_time::min()).error() == lease::errc::expired);
  CHECK(huge.check(grant(k, "r", 1, wall_time::max()), wall_time::min()));
  verifier none(k.to_verification_key(), {"r"});
  CHECK(none.check(grant(k, "r", 1, wall_time::max()), wall_time::max() - 1ns));
  CHECK(none.check(grant(k, "r", 1, wall_time::min()), wall_time::min()).error() == lease::errc::expired);
  CHECK_THROWS_AS(verifier(k.to_verification_key(), {"r"}, {.max_drift = -1ns}), dcp::error);
}

TEST_CASE("lease verifier: the drift margin protects a server whose clock runs behind") {
  // The issuer's clock is ahead of the server's by up to `skew`; the lease is
  // 1 s in issuer time. The server must stop honouring the token no later than
  // the issuer's expiry, measured in issuer time, for every skew within the bound.
  const auto k = signing_key{hmac_key::from_bytes(bytes(32, 1)).value()};  // the scheme does not matter here
  const duration bound = 80ms;
  verifier v(k.to_verification_key(), {"r"}, {.max_drift = bound});
  verifier naive(k.to_verification_key(), {"r"});  // no margin: must be caught out by the same check
  std::size_t naive_violations = 0;
  rng r(5);
  for (int i = 0; i < 2000; ++i) {
    const wall_time issued(std::chrono::milliseconds(r.between(0, 1'000'000)));
    const duration skew = std::chrono::microseconds(r.between(-80'000, 80'000));  // issuer - server
    const auto token = grant(k, "r", 1, issued + 1s);
    // server time t_s corresponds to issuer time t_s + skew
    for (auto step = 0ms; step <= 1200ms; step += 10ms) {
      const wall_time server_now = issued - skew + step;
      const bool honoured = static_cast<bool>(v.check(token, server_now));
      if (honoured) CHECK(server_now + skew < issued + 1s);  // honoured only inside the issuer's lease
      if (naive.check(token, server_now) && server_now + skew >= issued + 1s) ++naive_violations;
    }
  }
  CHECK(naive_violations > 0);
}

TEST_CASE("lease verifier: fencing tokens only move forward, per resource") {
  const auto k = signing_key{hmac_key::from_bytes(bytes(32, 1)).value()};
  for (std::uint64_t seed = 1; seed <= dcp::test::last_seed(1, 20); ++seed) {
    rng r(seed);
    const std::vector<std::string> resources{"a", "b", "c"};
    verifier v(k.to_verification_key(), resources);
    std::map<std::string, std::uint64_t> newest;  // the model
    const wall_time now(1s);
    for (int i = 0; i < 200; ++i) {
      const auto& res = resources[r.below(3)];
      const std::uint64_t f = r.below(40);
      const auto before = v.newest_fencing(res);
      auto got = v.accept(grant(k, res, f, now + 1s), now);
      const bool model_accepts = !newest.contains(res) || f >= newest[res];
      CHECK(static_cast<bool>(got) == model_accepts);
      if (!got) CHECK(got.error() == lease::errc::stale_fencing);
      if (model_accepts) newest[res] = std::max(newest[res], f);
      const auto after = v.newest_fencing(res);
      CHECK(after == newest[res]);
      if (before) CHECK(*after >= *before);  // never goes back
    }
  }
}

TEST_CASE("lease verifier: restored fencing survives a restart") {
  const auto k = group_key();
  const wall_time now(1s);
  verifier before(k.to_verification_key(), {"r"});
  REQUIRE(before.accept(grant(k, "r", 30, now + 1s), now));
  verifier after(k.to_verification_key(), {"r"});
  after.restore("r", *before.newest_fencing("r"));
  after.restore("r", 3);  // never lowers
  CHECK(after.accept(grant(k, "r", 29, now + 1s), now).error() == lease::errc::stale_fencing);
  CHECK(after.accept(grant(k, "r", 30, now + 1s), now));
}

}  // namespace test_verifier
