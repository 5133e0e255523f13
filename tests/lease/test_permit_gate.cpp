#include <doctest/doctest.h>

#include "../seeds.hpp"  // fewer seeds under sanitizers

#include <map>
#include <vector>

#include "dcp/core/rng.hpp"
#include "dcp/lease.hpp"

namespace test_permit_gate {

using namespace dcp;
using namespace dcp::lease;

namespace {
const signing_key& group() {
  static const signing_key k{hmac_key::from_bytes(bytes(32, 5)).value()};
  return k;
}
bytes grant(std::uint64_t fencing, address holder, std::uint32_t permits, wall_time expiry,
            std::string resource = "gpu") {
  return seal({std::move(resource), holder, permits, fencing, expiry}, group()).value();
}
}  // namespace

TEST_CASE("permit gate: admits up to its capacity and no further") {
  permit_gate g(group().to_verification_key(), "gpu", 3, {.max_drift = 10ms});
  const wall_time now(10s);
  CHECK(g.admit(grant(1, address::sim(1), 2, now + 1s), now));
  CHECK(g.in_use(now) == 2);
  CHECK(g.admit(grant(1, address::sim(1), 2, now + 1s), now));  // presented again: counted once
  CHECK(g.in_use(now) == 2);
  CHECK(g.admit(grant(2, address::sim(2), 2, now + 1s), now).error() == lease::errc::over_capacity);
  CHECK(g.admit(grant(3, address::sim(3), 1, now + 1s), now));
  CHECK(g.in_use(now) == 3);
  CHECK(g.admit(grant(4, address::sim(4), 1, now + 1s), now).error() == lease::errc::over_capacity);
  // a release frees the permits; the released token is refused from then on
  CHECK(g.release(1));
  CHECK_FALSE(g.release(1));
  CHECK(g.in_use(now) == 1);
  CHECK(g.admit(grant(1, address::sim(1), 2, now + 1s), now).error() == lease::errc::released);
  CHECK(g.admit(grant(4, address::sim(4), 1, now + 1s), now));
  // other resources, forgeries and expired tokens never count
  CHECK(g.admit(grant(5, address::sim(5), 1, now + 1s, "disk"), now).error() == lease::errc::wrong_resource);
  CHECK(g.admit(grant(6, address::sim(6), 1, now), now).error() == lease::errc::expired);
  signing_key other{hmac_key::from_bytes(bytes(32, 6)).value()};
  CHECK(g.admit(seal({"gpu", address::sim(7), 1, 7, now + 1s}, other).value(), now).error() ==
        lease::errc::bad_signature);
  CHECK(g.in_use(now) == 2);
  // expiry (minus the drift margin) frees permits too
  CHECK(g.in_use(now + 1s - 10ms - 1ns) == 2);
  CHECK(g.in_use(now + 1s - 10ms) == 0);
}

TEST_CASE("permit gate: a holder's newer grant supersedes its older one") {
  permit_gate g(group().to_verification_key(), "gpu", 2);
  const wall_time now(0s);
  const address a = address::sim(1);
  CHECK(g.admit(grant(10, a, 2, now + 1s), now));
  // with the older grant counted the newer would not fit; superseding frees it
  CHECK(g.admit(grant(12, a, 2, now + 1s), now));
  CHECK(g.in_use(now) == 2);
  CHECK(g.admit(grant(10, a, 2, now + 1s), now).error() == lease::errc::stale_fencing);
  CHECK(g.admit(grant(11, a, 1, now + 1s), now).error() == lease::errc::stale_fencing);
  CHECK(g.in_use(now) == 2);
}

TEST_CASE("permit gate: bad configurations are refused") {
  CHECK_THROWS_AS(permit_gate(group().to_verification_key(), "gpu", 0), dcp::error);
  CHECK_THROWS_AS(permit_gate(group().to_verification_key(), "", 1), dcp::error);
}

// An issuer that ignores capacity altogether (a buggy or partitioned group
// granting more than C), holders presenting tokens at random, releases and
// time passing. Judged at every step: the permits counted sum to at most C,
// and any token the server would honour now (asked of a copy of the gate, so
// the question changes nothing) is counted once honoured, still within C.
TEST_CASE("permit gate: never honours more than its capacity, whatever the issuer does") {
  for (std::uint64_t seed = 1; seed <= dcp::test::last_seed(1, 30); ++seed) {
    rng r(seed);
    const std::uint32_t capacity = static_cast<std::uint32_t>(r.between(1, 5));
    permit_gate g(group().to_verification_key(), "gpu", capacity, {.max_drift = 5ms});
    struct issued {
      bytes sealed;
      std::uint32_t permits;
      std::uint64_t fencing;
    };
    std::vector<issued> tokens;
    std::uint64_t fencing = 0;
    wall_time now(1s);
    std::size_t admitted = 0, refused_capacity = 0;
    for (int step = 0; step < 400; ++step) {
      const double what = r.uniform();
      if (what < 0.35 || tokens.empty()) {  // the group grants (too much, sometimes)
        const std::uint32_t permits = static_cast<std::uint32_t>(r.between(1, capacity + 1));
        const auto holder = address::sim(static_cast<std::uint32_t>(r.below(6)));
        tokens.push_back(
            {grant(++fencing, holder, permits, now + std::chrono::milliseconds(r.between(1, 300))), permits, fencing});
      } else if (what < 0.8) {  // a holder presents a token, maybe an old one
        auto got = g.admit(tokens[r.below(tokens.size())].sealed, now);
        admitted += static_cast<bool>(got);
        refused_capacity += !got && got.error() == lease::errc::over_capacity;
      } else if (what < 0.9) {
        g.release(tokens[r.below(tokens.size())].fencing);
      } else {
        now += std::chrono::milliseconds(r.between(1, 50));
      }
      // the invariant, from outside: every token the server would honour now
      // is counted when honoured, and the count never passes the capacity
      const std::uint32_t in_use = g.in_use(now);
      REQUIRE(in_use <= capacity);
      std::uint64_t counted = 0;
      for (const auto& t : tokens) {
        if (g.holds(t.fencing)) counted += t.permits;
        permit_gate probe = g;
        if (probe.admit(t.sealed, now)) {
          REQUIRE(probe.holds(t.fencing));
          REQUIRE(probe.in_use(now) <= capacity);
        }
      }
      REQUIRE(counted == in_use);
    }
    CHECK(admitted > 0);
    CHECK(refused_capacity > 0);  // the issuer did over-grant, and the gate held
  }
}

TEST_CASE("permit gate: a renewal (same grant, later expiry) extends it; a released grant stays refused") {
  permit_gate g(group().to_verification_key(), "gpu", 1, {.max_drift = 10ms});
  const wall_time now(10s);
  CHECK(g.admit(grant(7, address::sim(1), 1, now + 100ms), now));
  CHECK(g.admit(grant(7, address::sim(1), 1, now + 500ms), now + 50ms));  // renewed while held
  CHECK(g.in_use(now + 200ms) == 1);                                      // counted past the first expiry
  CHECK(g.admit(grant(8, address::sim(2), 1, now + 1s), now + 200ms).error() == lease::errc::over_capacity);
  CHECK(g.in_use(now + 490ms) == 0);  // the renewal's deadline (expiry - max_drift)
  // A renewal presented only after the grant expired here is admitted afresh, capacity permitting.
  CHECK(g.admit(grant(7, address::sim(1), 1, now + 900ms), now + 600ms));
  CHECK(g.in_use(now + 600ms) == 1);
  // Once released, neither the token nor a renewal of it is honoured again.
  CHECK(g.release(7));
  CHECK(g.admit(grant(7, address::sim(1), 1, now + 2s), now + 700ms).error() == lease::errc::released);
  CHECK(g.admit(grant(8, address::sim(2), 1, now + 2s), now + 700ms));
}

}  // namespace test_permit_gate
