// libFuzzer target: arbitrary bytes as a sealed lease token at a resource
// server, and as the body of a token that the group's key did sign (so the
// token parser behind the signature is exercised too, as a buggy or
// compromised issuer would). Any crash, sanitizer report, exception or
// acceptance of an unsigned token is a bug: unseal() is total.
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "dcp/lease.hpp"

namespace {
const dcp::lease::signing_key& hmac_group() {
  static const dcp::lease::signing_key k{dcp::lease::hmac_key::from_bytes(dcp::bytes(32, 0x5A)).value(), 1};
  return k;
}
const dcp::lease::signing_key& ed_group() {
  static const dcp::lease::signing_key k{dcp::lease::ed25519_private_key::from_seed(dcp::bytes(32, 0xA5)).value(), 1};
  return k;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace dcp::lease;
  const dcp::byte_view in(data, size);
  const dcp::wall_time now(std::chrono::seconds(1));
  static verifier hmac_server(hmac_group().to_verification_key(), {"r"}, {.max_drift = std::chrono::milliseconds(5)});
  static verifier ed_server(ed_group().to_verification_key(), {"r"});
  static permit_gate gate(hmac_group().to_verification_key(), "r", 3);
  // 1. hostile bytes at the server: nothing unsigned may pass
  if (hmac_server.accept(in, now) || ed_server.accept(in, now) || gate.admit(in, now)) std::abort();
  // 2. the same bytes as a signed body: parsed totally, accepted only if they are a token
  const std::uint8_t s = static_cast<std::uint8_t>(scheme::hmac_sha256);
  auto sig = hmac_group().sign(detail::signed_message(token_version, s, 1, in));
  if (!sig) std::abort();
  dcp::bytes sealed;
  {
    dcp::wire::output_archive ar(sealed);
    ar(token_version, s, std::uint32_t{1}, dcp::bytes(in.begin(), in.end()), *sig);
  }
  if (auto t = unseal(sealed, hmac_group().to_verification_key(), 1 << 16)) {
    // it parsed: it must survive a round trip unchanged
    auto again = seal(t->token, hmac_group());
    if (!again || !(unseal(*again, hmac_group().to_verification_key())->token == t->token)) std::abort();
  }
  return 0;
}
