// Lease tokens: seal (sign) and verify throughput, HMAC-SHA256 vs Ed25519,
// single thread, plus the permit gate's admit rate.
//
//   lease_tokens [--quick] [--csv FILE]    (default CSV: lease_tokens.csv)
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "dcp/lease.hpp"

using namespace dcp;
using namespace dcp::lease;

namespace {
using clock_type = std::chrono::steady_clock;

template <class F> double per_second(std::size_t n, F&& f) {
  const auto start = clock_type::now();
  for (std::size_t i = 0; i < n; ++i) f(i);
  const double s = std::chrono::duration<double>(clock_type::now() - start).count();
  return static_cast<double>(n) / s;
}
}  // namespace

int main(int argc, char** argv) {
  bool quick = false;
  std::string csv = "lease_tokens.csv";
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--quick"))
      quick = true;
    else if (!std::strcmp(argv[i], "--csv") && i + 1 < argc)
      csv = argv[++i];
  }
  const std::size_t n = quick ? 2'000 : 100'000;

  struct scheme_case {
    const char* name;
    signing_key key;
  };
  std::vector<scheme_case> cases{{"hmac-sha256", signing_key{hmac_key::generate().value(), 1}},
                                 {"ed25519", signing_key{ed25519_private_key::generate().value(), 1}}};

  std::ofstream out(csv);
  out << "scheme,token_bytes,seal_per_s,verify_per_s,gate_admit_per_s\n";
  std::printf("%-12s %11s %14s %14s %16s\n", "scheme", "token bytes", "seal/s", "verify/s", "gate admit/s");
  volatile std::size_t sink = 0;
  for (auto& c : cases) {
    const token t{"db/shard-17", address::loopback(9000), 1, 42, wall_time(3600s)};
    const auto sealed = seal(t, c.key).value();
    const double seal_rate = per_second(n, [&](std::size_t i) {
      token u = t;
      u.fencing = i;
      sink = sink + seal(u, c.key)->size();
    });
    verifier v(c.key.to_verification_key(), {"db/shard-17"}, {.max_drift = 50ms});
    const double verify_rate =
        per_second(n, [&](std::size_t) { sink = sink + v.accept(sealed, wall_time(1s))->permits; });
    // the gate: distinct holders, each admitted then released
    std::vector<bytes> grants;
    for (std::size_t i = 0; i < std::min<std::size_t>(n, 4096); ++i)
      grants.push_back(
          seal({"db/shard-17", address::sim(static_cast<std::uint32_t>(i)), 1, i + 1, wall_time(3600s)}, c.key)
              .value());
    permit_gate gate(c.key.to_verification_key(), "db/shard-17", 64, {.max_drift = 50ms});
    const double gate_rate = per_second(grants.size(), [&](std::size_t i) {
      auto r = gate.admit(grants[i], wall_time(1s));
      if (r) gate.release(r->fencing);
    });
    std::printf("%-12s %11zu %14.0f %14.0f %16.0f\n", c.name, sealed.size(), seal_rate, verify_rate, gate_rate);
    out << c.name << "," << sealed.size() << "," << seal_rate << "," << verify_rate << "," << gate_rate << "\n";
  }
  std::fprintf(stderr, "wrote %s\n", csv.c_str());
  return sink == 0xFFFFFFFF ? 1 : 0;
}
