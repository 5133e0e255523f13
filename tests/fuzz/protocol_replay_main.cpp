// Drives a protocol fuzz entry point (fuzz_support.hpp) without libFuzzer.
// The structure lives in the target's generator, so any bytes are a valid
// script of deliveries and time advances: random inputs of every length up
// to 2 KiB, and mutations of earlier ones (bytes changed, inserted, cut,
// two inputs spliced), as a coverage-guided fuzzer would try them.
//
// Usage: NAME_replay RUNS [SEED], or NAME_replay FILE. With DCP_FUZZ_DUMP=FILE each input is
// written to FILE before it runs, so a failure leaves its input there. Under a sanitizer (4 to 8 times slower) a
// third of RUNS, as tests/seeds.hpp does for the seed sweeps.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "../seeds.hpp"
#include "dcp/core/rng.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

int main(int argc, char** argv) {
  if (argc > 1 && (argv[1][0] < '0' || argv[1][0] > '9')) {  // NAME_replay FILE: that one input
    std::vector<std::uint8_t> in;
    if (std::FILE* f = std::fopen(argv[1], "rb")) {
      for (int c; (c = std::fgetc(f)) != EOF;) in.push_back(static_cast<std::uint8_t>(c));
      std::fclose(f);
    }
    LLVMFuzzerTestOneInput(in.data(), in.size());
    std::printf("%s replayed\n", argv[1]);
    return 0;
  }
  long runs = argc > 1 ? std::atol(argv[1]) : 300;
  if (dcp::test::sanitized) runs = (runs + 2) / 3;
  dcp::rng r(argc > 2 ? std::strtoull(argv[2], nullptr, 0) : 0xF0221);
  std::vector<std::vector<std::uint8_t>> kept;
  const char* dump = std::getenv("DCP_FUZZ_DUMP");
  for (long i = 0; i < runs; ++i) {
    std::vector<std::uint8_t> in;
    if (kept.empty() || r.chance(0.4)) {
      in.resize(r.below(2048));
      for (auto& b : in) b = static_cast<std::uint8_t>(r());
    } else {
      in = kept[r.below(kept.size())];
      for (auto k = 1 + r.below(8); k-- > 0;) {
        switch (r.below(4)) {
          case 0:
            if (!in.empty()) in[r.below(in.size())] = static_cast<std::uint8_t>(r());
            break;
          case 1:
            in.insert(in.begin() + static_cast<long>(r.below(in.size() + 1)), static_cast<std::uint8_t>(r()));
            break;
          case 2:
            if (!in.empty()) in.resize(r.below(in.size()));
            break;
          default: {
            const auto& other = kept[r.below(kept.size())];
            in.insert(in.end(), other.begin() + static_cast<long>(r.below(other.size() + 1)), other.end());
          }
        }
      }
    }
    if (dump) {  // the input about to run, for a crash to leave behind (run it alone under libFuzzer's binary)
      if (std::FILE* f = std::fopen(dump, "wb")) {
        std::fwrite(in.data(), 1, in.size(), f);
        std::fclose(f);
      }
    }
    LLVMFuzzerTestOneInput(in.data(), in.size());
    if (kept.size() < 64)
      kept.push_back(in);
    else
      kept[r.below(kept.size())] = std::move(in);
  }
  std::printf("%ld inputs replayed\n", runs);
  return 0;
}
