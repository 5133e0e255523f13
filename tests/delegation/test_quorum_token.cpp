// Quorum-signed tokens (token.hpp) and the guard each member signs through
// (cosign_guard.hpp), on their own.
#include <doctest/doctest.h>

#include "dcp/delegation.hpp"

namespace test_quorum_token {

using namespace dcp;
using namespace dcp::delegation;
using namespace std::chrono_literals;

namespace {

lease::ed25519_private_key key_of(std::uint8_t fill) {
  return lease::ed25519_private_key::from_seed(bytes(32, fill)).value();
}

/// A shard of 4 permits delegated to 4 members, tokens signed by 3.
certificate four_members() {
  certificate c{"db", 0, capacity_kind::concurrency, 4, 7, wall_time(10s), wall_time(40s), {}, 3, 3};
  for (std::uint8_t i = 0; i < 4; ++i)
    c.coordinators.push_back({address::sim(i + 1), key_of(30 + i).public_key().raw()});
  return c;
}

quorum_grant grant_of(std::uint64_t seq, std::vector<std::uint32_t> slots, wall_time expiry = wall_time(20s),
                      std::uint32_t holder = 9) {
  const auto permits = static_cast<std::uint32_t>(slots.size());
  return {{"db#0", address::sim(holder), permits, fencing_of(7, seq), expiry}, std::move(slots)};
}

bytes sealed_by(const quorum_grant& g, std::vector<std::uint8_t> members, std::uint32_t epoch = 7) {
  std::vector<cosignature> sigs;
  for (auto m : members) sigs.push_back({m, cosign(g, epoch, m, key_of(30 + m)).value()});
  return seal_quorum_token(g, epoch, sigs).value();
}

}  // namespace

TEST_CASE("quorum-signed tokens: a quorum of distinct members' valid signatures, slots within the share, or refused") {
  const auto c = four_members();
  REQUIRE(c.problem().empty());
  CHECK(signing_quorum(4) == 3);
  CHECK(signing_quorum(3) == 2);
  CHECK(signing_quorum(5) == 4);
  CHECK(signing_quorum(7) == 5);
  const auto g = grant_of(1, {0, 2});
  auto ok = check_token(sealed_by(g, {0, 1, 3}), c);
  if (!ok) MESSAGE(ok.error().message());
  REQUIRE(ok);
  CHECK(*ok == g.token);
  CHECK(check_token(sealed_by(g, {0, 1, 2, 3}), c));  // more than a quorum is fine
  CHECK(check_token(sealed_by(g, {0, 1}), c).error() == delegation::errc::too_few_signers);
  CHECK(check_token(sealed_by(g, {1, 1, 2}), c).error() ==
        delegation::errc::too_few_signers);  // one member counts once
  CHECK(check_token(sealed_by(g, {0, 1, 4}), c).error() == delegation::errc::certificate_mismatch);  // no member 4
  CHECK(check_token(sealed_by(g, {0, 1, 3}, 8), c).error() ==
        lease::errc::malformed_token);  // fencing of epoch 7 under 8
  // One member's key signing in another's name.
  {
    std::vector<cosignature> sigs{{0, cosign(g, 7, 0, key_of(30)).value()},
                                  {1, cosign(g, 7, 1, key_of(31)).value()},
                                  {2, cosign(g, 7, 2, key_of(30)).value()}};
    CHECK(check_token(seal_quorum_token(g, 7, sigs).value(), c).error() == lease::errc::bad_signature);
  }
  // The signatures of one grant on another's body.
  {
    auto forged = g;
    forged.token.permits = 3;
    forged.slots = {0, 1, 2};
    std::vector<cosignature> sigs;
    for (std::uint8_t m : {0, 1, 3}) sigs.push_back({m, cosign(g, 7, m, key_of(30 + m)).value()});
    CHECK(check_token(seal_quorum_token(forged, 7, sigs).value(), c).error() == lease::errc::bad_signature);
  }
  CHECK(check_token(sealed_by(grant_of(2, {4}), {0, 1, 2}), c).error() ==
        delegation::errc::certificate_mismatch);  // past the share
  CHECK(check_token(sealed_by(grant_of(3, {1, 1}), {0, 1, 2}), c).error() ==
        lease::errc::malformed_token);  // a slot twice
  {
    auto g2 = grant_of(4, {0, 1});
    g2.token.permits = 3;  // three permits, two slots
    CHECK(check_token(sealed_by(g2, {0, 1, 2}), c).error() == lease::errc::malformed_token);
  }
  // One member's lease token is not enough under this certificate, and a
  // quorum token is not a lease token under a single-signer one.
  const auto single = lease::seal(g.token, lease::signing_key(key_of(30), group_key_id(7, 0))).value();
  CHECK(check_token(single, c).error() == delegation::errc::too_few_signers);
  auto one = c;
  one.signers = 1;
  one.quorum = 3;
  CHECK(check_token(single, one));
  CHECK_FALSE(check_token(sealed_by(g, {0, 1, 3}), one));
  // Garbage, truncation and flipped bits: errors, never a crash.
  auto sealed = sealed_by(g, {0, 1, 3});
  for (std::size_t n = 0; n < sealed.size(); n += 7) CHECK_FALSE(check_token(byte_view(sealed.data(), n), c));
  for (std::size_t i = 1; i < sealed.size(); i += 5) {
    auto bad = sealed;
    bad[i] ^= 0x40;
    CHECK_FALSE(check_token(bad, c));
  }
  // Certificates that ask for what quorum signing cannot give.
  auto wrong = c;
  wrong.signers = 2;
  CHECK_FALSE(wrong.problem().empty());
  wrong = c;
  wrong.kind = capacity_kind::rate;
  CHECK_FALSE(wrong.problem().empty());
  CHECK_THROWS_AS((resource_spec{"lab", capacity_kind::stock, 10, 1, true}.validate()), dcp::error);
}

TEST_CASE(
    "cosign guard: a member never signs a permit for two live grants; renewals, releases by the holder and expiry free it") {
  const auto c = four_members();
  const duration drift = 100ms;
  cosign_guard guard(2s, drift);
  const wall_time now(15s);
  CHECK_FALSE(guard.sign_off(c, grant_of(1, {0}, now + 2s), now));
  CHECK(guard.sign_off(c, grant_of(2, {0, 1}, now + 2s, 8), now) ==
        delegation::errc::slot_held);                                     // slot 0 is grant 1's
  CHECK_FALSE(guard.sign_off(c, grant_of(2, {1, 2}, now + 2s, 8), now));  // nothing taken by the refusal
  CHECK_FALSE(guard.sign_off(c, grant_of(1, {0}, now + 3s), now + 1s));   // grant 1 renewed
  CHECK(guard.remembered() == 3);
  // A release only from the holder frees the slots.
  guard.released("db#0", fencing_of(7, 1), address::sim(8), now + 1s);
  CHECK(guard.sign_off(c, grant_of(3, {0}, now + 2s, 8), now + 1s) == delegation::errc::slot_held);
  guard.released("db#0", fencing_of(7, 1), address::sim(9), now + 1s);
  // A renewal of the released grant still in the log is moot: refused, and it locks nothing.
  CHECK(guard.sign_off(c, grant_of(1, {0}, now + 3s), now + 1s) == delegation::errc::delegation_ended);
  CHECK_FALSE(guard.sign_off(c, grant_of(3, {0}, now + 3s, 8), now + 1s));
  // Expiry frees a slot only once it is past on every clock: expiry + 2 x drift.
  CHECK(guard.sign_off(c, grant_of(4, {1}, now + 4s), now + 2s + 2 * drift - 1ms) == delegation::errc::slot_held);
  CHECK_FALSE(guard.sign_off(c, grant_of(4, {1}, now + 4s), now + 2s + 2 * drift));
  // No token longer than the life the member signs, none past the certificate, none past the share.
  CHECK(guard.sign_off(c, grant_of(5, {3}, now + 3s), now) == lease::errc::invalid_token);
  CHECK(guard.sign_off(c, grant_of(5, {3}, wall_time(41s)), wall_time(39s)) == lease::errc::invalid_token);
  CHECK(guard.sign_off(c, grant_of(5, {4}, now + 1s), now) == delegation::errc::certificate_mismatch);
  // An older epoch is refused; a newer one starts afresh.
  auto next = c;
  next.epoch = 8;
  quorum_grant g8{{"db#0", address::sim(9), 1, fencing_of(8, 1), now + 2s}, {0}};
  CHECK_FALSE(guard.sign_off(next, g8, now + 1s));
  CHECK(guard.sign_off(c, grant_of(6, {3}, now + 2s), now + 1s) == delegation::errc::wrong_epoch);
  CHECK(guard.remembered() == 1);
  // A member that restarted signs nothing until what it may have signed is past.
  cosign_guard restarted(2s, drift, now + 2s + 2 * drift);
  CHECK(restarted.sign_off(c, grant_of(1, {0}, now + 2s), now + 1s) == delegation::errc::not_coordinator);
  CHECK_FALSE(restarted.sign_off(c, grant_of(1, {0}, now + 4s), now + 2s + 2 * drift));
}

}  // namespace test_quorum_token
