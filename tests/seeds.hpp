// Seed sweeps of the simulated property tests, under sanitizers.
//
// CI runs every suite twice: plainly (g++) and under AddressSanitizer and
// UndefinedBehaviorSanitizer (clang), where the simulated suites run 4 to 8
// times slower. A memory error or undefined behaviour shows on any schedule
// that reaches the code, not only on rare ones, so under a sanitizer a sweep
// runs its first third of seeds (at least one); the plain pass runs them all,
// and the checks are the same in both.
//
//   for (std::uint64_t seed = 1; seed <= dcp::test::last_seed(1, 30); ++seed)
#pragma once

#include <cstdint>

namespace dcp::test {

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_UNDEFINED__)
inline constexpr bool sanitized = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(undefined_behavior_sanitizer)
inline constexpr bool sanitized = true;
#else
inline constexpr bool sanitized = false;
#endif
#else
inline constexpr bool sanitized = false;
#endif

/// The last seed of the sweep first..last that this build runs.
constexpr std::uint64_t last_seed(std::uint64_t first, std::uint64_t last) {
  if (!sanitized || last < first) return last;
  return first + (last - first + 1 + 2) / 3 - 1;
}

}  // namespace dcp::test
