// Drives the fuzz entry point without libFuzzer: random streams, and random
// mutations of valid frame streams (what a coverage-guided fuzzer would reach
// first), so every CI run exercises the decoders with hostile input.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "dcp/core/rng.hpp"
#include "dcp/wire.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

namespace {
struct probe {
  static constexpr dcp::message_type wire_id = 1;
  std::uint64_t seq = 0;
  template <class A> void serialize(A& ar) { ar(seq); }
};
}  // namespace

int main(int argc, char** argv) {
  const long runs = argc > 1 ? std::atol(argv[1]) : 10000;
  dcp::rng r(0xF022);
  for (long i = 0; i < runs; ++i) {
    dcp::bytes in;
    if (r.chance(0.3)) {
      in.resize(r.below(512));
      for (auto& b : in) b = static_cast<std::uint8_t>(r());
    } else {
      for (auto k = 1 + r.below(8); k-- > 0;)
        (void)dcp::wire::encode_frame(static_cast<dcp::protocol_id>(r.below(4)), probe{r()}, in);
      for (auto k = r.below(4); k-- > 0 && !in.empty();) in[r.below(in.size())] = static_cast<std::uint8_t>(r());
      if (r.chance(0.3)) in.resize(r.below(in.size() + 1));
    }
    LLVMFuzzerTestOneInput(in.data(), in.size());
  }
  std::printf("%ld inputs replayed\n", runs);
  return 0;
}
