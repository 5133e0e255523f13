// Drives the lease-token fuzz entry point without libFuzzer: random bytes,
// and single-byte mutations, truncations and extensions of valid sealed
// tokens and token bodies, so every CI run feeds the parser hostile input.
#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "dcp/core/rng.hpp"
#include "dcp/lease.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

int main(int argc, char** argv) {
  const long runs = argc > 1 ? std::atol(argv[1]) : 10000;
  dcp::rng r(0x1EA5E);
  // Not the entry point's group key: a token from this driver is a well-formed forgery.
  const dcp::lease::signing_key key{dcp::lease::hmac_key::from_bytes(dcp::bytes(32, 0x5B)).value(), 1};
  for (long i = 0; i < runs; ++i) {
    dcp::bytes in;
    if (r.chance(0.2)) {
      in.resize(r.below(300));
      for (auto& b : in) b = static_cast<std::uint8_t>(r());
    } else {
      const dcp::lease::token t{std::string(1 + r.below(40), 'r'), dcp::address::sim(static_cast<std::uint32_t>(r())),
                                static_cast<std::uint32_t>(1 + r.below(5)), r(),
                                dcp::wall_time(dcp::duration(static_cast<std::int64_t>(r() >> 1)))};
      if (r.chance(0.5)) {
        in = dcp::lease::seal(t, key).value();
      } else {  // a bare body, which the entry point also signs and unseals
        dcp::wire::output_archive ar(in);
        ar(t);
      }
      for (auto k = r.below(4); k-- > 0 && !in.empty();) in[r.below(in.size())] = static_cast<std::uint8_t>(r());
      if (r.chance(0.3)) in.resize(r.below(in.size() + 8));
    }
    LLVMFuzzerTestOneInput(in.data(), in.size());
  }
  std::printf("%ld inputs replayed\n", runs);
  return 0;
}
