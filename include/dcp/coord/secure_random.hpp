#pragma once
// coord::secure_random: 64 bits from the operating system's CSPRNG, for
// session ids and session secrets (issue 11: an attacker must not predict
// them).
//
// Why not env.rng(): it is xoshiro256**, seeded from std::random_device or
// from net::config::seed; its output is a function of 256 bits of state that
// a few observed outputs reveal, and of the seed when one is configured. Why
// not OpenSSL's RAND_bytes: coord is header-only and needs no libcrypto (only
// dcp::lease links it); the kernel's generator, which OpenSSL itself seeds
// from, is as good for 64-bit secrets. getrandom(2) on Linux (it blocks only
// until the kernel's pool is first seeded at boot); elsewhere
// std::random_device, which libstdc++ and libc++ back with the OS's CSPRNG
// (/dev/urandom, arc4random, BCryptGenRandom).
//
// A simulation wants reproducible runs: coord::client_config::entropy and
// coord::server_config::entropy may name a seeded generator instead, by name,
// for tests only.
#include <cstdint>
#include <functional>
#include <random>

#if defined(__linux__)
#include <sys/random.h>

#include <cerrno>
#endif

#include "dcp/core/error.hpp"

namespace dcp::coord {

/// Where a session's id and secret come from (default: secure_random).
using entropy_source = std::function<std::uint64_t()>;

/// 64 bits from the OS's CSPRNG; throws dcp::error if it cannot deliver.
inline std::uint64_t secure_random() {
  std::uint64_t v = 0;
#if defined(__linux__)
  auto* p = reinterpret_cast<unsigned char*>(&v);
  std::size_t got = 0;
  while (got < sizeof v) {
    const auto n = ::getrandom(p + got, sizeof v - got, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == ENOSYS) break;  // a kernel before 3.17: fall back below
      throw error(dcp::errc::io_error, "coord::secure_random: getrandom failed");
    }
    got += static_cast<std::size_t>(n);
  }
  if (got == sizeof v) return v;
#endif
  std::random_device rd;
  v = (static_cast<std::uint64_t>(rd()) << 32) ^ rd();
  return v;
}

}  // namespace dcp::coord
