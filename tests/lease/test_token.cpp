#include <doctest/doctest.h>

#include <string>

#include "dcp/core/rng.hpp"
#include "dcp/lease.hpp"

namespace test_token {

using namespace dcp;
using namespace dcp::lease;

namespace {

bytes hex(std::string_view h) {
  bytes out;
  for (std::size_t i = 0; i + 1 < h.size(); i += 2)
    out.push_back(static_cast<std::uint8_t>(std::stoi(std::string(h.substr(i, 2)), nullptr, 16)));
  return out;
}

signing_key hmac_signer(std::uint8_t fill = 7, std::uint32_t id = 1) {
  return {hmac_key::from_bytes(bytes(32, fill)).value(), id};
}
signing_key ed_signer(std::uint8_t fill = 9, std::uint32_t id = 1) {
  return {ed25519_private_key::from_seed(bytes(32, fill)).value(), id};
}

token sample(std::uint64_t fencing = 5, wall_time expiry = wall_time(10s)) {
  return {"printer/3", address::loopback(9000), 2, fencing, expiry};
}

}  // namespace

TEST_CASE("lease: the primitives match their standards' test vectors") {
  // RFC 4231, test case 1 (HMAC-SHA256)
  auto k = hmac_key::from_bytes(bytes(20, 0x0b)).value();
  CHECK(*k.sign(as_bytes("Hi There")) == hex("b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"));
  // RFC 8032, section 7.1, test 1 (Ed25519, empty message)
  auto sk =
      ed25519_private_key::from_seed(hex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")).value();
  CHECK(sk.public_key().raw() == hex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"));
  const auto sig = hex(
      "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b");
  CHECK(*sk.sign({}) == sig);
  CHECK(sk.public_key().verify({}, sig));
  CHECK_FALSE(sk.public_key().verify(as_bytes("x"), sig));
}

TEST_CASE("lease: keys of the wrong size are refused") {
  CHECK(hmac_key::from_bytes(bytes(15, 1)).error() == lease::errc::invalid_key);
  CHECK(ed25519_private_key::from_seed(bytes(31, 1)).error() == lease::errc::invalid_key);
  CHECK(ed25519_public_key::from_bytes(bytes(33, 1)).error() == lease::errc::invalid_key);
  auto g = ed25519_private_key::generate();
  REQUIRE(g);
  CHECK(ed25519_private_key::from_seed(g->seed())->public_key().raw() == g->public_key().raw());
  auto h1 = hmac_key::generate(), h2 = hmac_key::generate();
  REQUIRE((h1 && h2));
  CHECK(bytes(h1->raw().begin(), h1->raw().end()) != bytes(h2->raw().begin(), h2->raw().end()));
}

TEST_CASE("lease: seal and unseal round-trip under both schemes") {
  for (const auto& key : {hmac_signer(), ed_signer()}) {
    for (const auto& t : {sample(), token{"a", address::sim(3), 1, 0, wall_time(-5s)},
                          token{std::string(max_resource_size, 'r'), *address::parse("[2001:db8::1]:443"), 0xFFFFFFFFu,
                                ~std::uint64_t{0}, wall_time::max()}}) {
      auto sealed = seal(t, key);
      REQUIRE(sealed);
      CHECK(sealed->size() <= default_max_token_size);
      auto u = unseal(*sealed, key.to_verification_key());
      REQUIRE(u);
      CHECK(u->token == t);
      CHECK(u->scheme == key.scheme());
      CHECK(u->key_id == 1);
    }
  }
  // compact: a typical lock token
  CHECK(seal(sample(), hmac_signer())->size() < 120);
  CHECK(seal(sample(), ed_signer())->size() < 160);
}

TEST_CASE("lease: an issuer refuses to seal a token that makes no sense") {
  auto t = sample();
  t.permits = 0;
  CHECK(seal(t, hmac_signer()).error() == lease::errc::invalid_token);
  t = sample();
  t.resource = "";
  CHECK(seal(t, ed_signer()).error() == lease::errc::invalid_token);
  t.resource = std::string(max_resource_size + 1, 'x');
  CHECK(seal(t, ed_signer()).error() == lease::errc::invalid_token);
}

TEST_CASE("lease: forged, re-keyed and mismatched tokens are refused, each with its reason") {
  const auto t = sample();
  // same scheme, different key: a forgery
  CHECK(unseal(*seal(t, hmac_signer(8)), hmac_signer(7).to_verification_key()).error() == lease::errc::bad_signature);
  CHECK(unseal(*seal(t, ed_signer(8)), ed_signer(9).to_verification_key()).error() == lease::errc::bad_signature);
  // other scheme
  CHECK(unseal(*seal(t, hmac_signer()), ed_signer().to_verification_key()).error() == lease::errc::scheme_mismatch);
  CHECK(unseal(*seal(t, ed_signer()), hmac_signer().to_verification_key()).error() == lease::errc::scheme_mismatch);
  // other key id (a rotation the server has not seen)
  CHECK(unseal(*seal(t, hmac_signer(7, 2)), hmac_signer(7, 1).to_verification_key()).error() ==
        lease::errc::unknown_key);
  // Ed25519: a server holding only the public key verifies; it cannot mint
  auto pub = ed25519_public_key::from_bytes(ed_signer().to_verification_key().scheme() == scheme::ed25519
                                                ? ed25519_private_key::from_seed(bytes(32, 9))->public_key().raw()
                                                : bytes{});
  REQUIRE(pub);
  CHECK(unseal(*seal(t, ed_signer()), verification_key(*pub, 1)));
  // the messages say what to do
  for (int e = 1; e <= static_cast<int>(lease::errc::crypto_failure); ++e) {
    const auto ec = make_error_code(static_cast<lease::errc>(e));
    CHECK(std::string(ec.category().name()) == "dcp.lease");
    CHECK(ec.message().size() > 20);
    CHECK(ec.message().find("unknown") != 0);
  }
}

TEST_CASE("lease: every single-bit flip of a sealed token is refused") {
  for (const auto& key : {hmac_signer(), ed_signer()}) {
    const auto sealed = *seal(sample(), key);
    const auto vk = key.to_verification_key();
    std::size_t refused = 0;
    for (std::size_t bit = 0; bit < sealed.size() * 8; ++bit) {
      auto b = sealed;
      b[bit / 8] ^= static_cast<std::uint8_t>(1u << (bit % 8));
      auto u = unseal(b, vk);
      CHECK_MESSAGE(!u, "flip of bit " << bit << " accepted");
      refused += !u;
    }
    CHECK(refused == sealed.size() * 8);
  }
}

TEST_CASE("lease: truncated, oversized and random bytes give an error value") {
  const auto key = ed_signer();
  const auto vk = key.to_verification_key();
  const auto sealed = *seal(sample(), key);
  for (std::size_t n = 0; n < sealed.size(); ++n) {
    auto u = unseal(byte_view(sealed).first(n), vk);
    REQUIRE_FALSE(u);
    CHECK((u.error() == lease::errc::malformed_token || u.error() == lease::errc::unsupported_version));
  }
  auto longer = sealed;
  longer.push_back(0);
  CHECK(unseal(longer, vk).error() == lease::errc::malformed_token);  // trailing bytes
  CHECK(unseal(bytes(default_max_token_size + 1, 1), vk).error() == lease::errc::token_too_large);
  CHECK(unseal(sealed, vk, sealed.size() - 1).error() == lease::errc::token_too_large);
  // a future format version and an unknown scheme are told apart from garbage
  auto v2 = sealed;
  v2[1] = 2;
  CHECK(unseal(v2, vk).error() == lease::errc::unsupported_version);
  auto s9 = sealed;
  s9[2] = 9;
  CHECK(unseal(s9, vk).error() == lease::errc::unknown_scheme);
  // hostile container sizes: body length claims 2^63 bytes
  bytes hostile{1, 1, 2, 1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f};
  CHECK(unseal(hostile, vk).error() == lease::errc::malformed_token);
  rng r(1);
  for (int i = 0; i < 20000; ++i) {
    bytes junk(r.below(200));
    for (auto& b : junk) b = static_cast<std::uint8_t>(r());
    if (!junk.empty() && r.chance(0.5)) junk[0] = 1;    // get past the endianness flag
    if (junk.size() > 1 && r.chance(0.5)) junk[1] = 1;  // and the version
    if (junk.size() > 2 && r.chance(0.5)) junk[2] = 2;  // and the scheme
    CHECK_FALSE(unseal(junk, vk));
  }
}

TEST_CASE("lease: a valid envelope around a body that is not a token is refused") {
  // The issuer's key signs garbage: only a buggy issuer does this, and the
  // verifier must still not crash or accept it.
  const auto key = hmac_signer();
  for (const bytes& body : {bytes{}, bytes{1, 0, 0}, bytes(40, 0xff), bytes{1, 0, 0, 0, 0, 0, 0, 0, 0, 0}}) {
    const std::uint8_t s = static_cast<std::uint8_t>(scheme::hmac_sha256);
    auto sig = *key.sign(lease::detail::signed_message(token_version, s, key.key_id(), body));
    bytes out;
    wire::output_archive ar(out);
    ar(token_version, s, key.key_id(), body, sig);
    CHECK(unseal(out, key.to_verification_key()).error() == lease::errc::malformed_token);
  }
}

}  // namespace test_token
