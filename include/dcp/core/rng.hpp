#pragma once
// rng: the random source an Env hands to its protocols.
//
// xoshiro256** (Blackman & Vigna): fast, 32 bytes of state, and the same
// sequence on every platform. The helpers below are written out rather than
// taken from <random>'s distributions, whose outputs differ between standard
// libraries: a simulation seed must replay the same on any machine.
#include <cmath>
#include <cstdint>
#include <limits>
#include <span>
#include <utility>

#include "dcp/core/detail/sha1.hpp"

namespace dcp {

class rng {
 public:
  using result_type = std::uint64_t;
  static constexpr result_type min() noexcept { return 0; }
  static constexpr result_type max() noexcept { return std::numeric_limits<result_type>::max(); }

  explicit rng(std::uint64_t seed = 0) noexcept { reseed(seed); }

  void reseed(std::uint64_t seed) noexcept {
    for (auto& w : s_) {  // splitmix64, as the xoshiro authors recommend
      seed += 0x9E3779B97F4A7C15ull;
      w = detail::mix64(seed);
    }
  }

  result_type operator()() noexcept {
    const std::uint64_t r = rotl(s_[1] * 5, 7) * 9;
    const std::uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = rotl(s_[3], 45);
    return r;
  }

  /// Uniform in [0, n), n > 0 (Lemire's method, unbiased).
  std::uint64_t below(std::uint64_t n) noexcept {
    __uint128_t m = static_cast<__uint128_t>((*this)()) * n;
    auto lo = static_cast<std::uint64_t>(m);
    if (lo < n) {
      const std::uint64_t threshold = (0 - n) % n;
      while (lo < threshold) {
        m = static_cast<__uint128_t>((*this)()) * n;
        lo = static_cast<std::uint64_t>(m);
      }
    }
    return static_cast<std::uint64_t>(m >> 64);
  }
  /// Uniform in [lo, hi].
  std::int64_t between(std::int64_t lo, std::int64_t hi) noexcept {
    return lo + static_cast<std::int64_t>(below(static_cast<std::uint64_t>(hi - lo) + 1));
  }
  /// Uniform in [0, 1).
  double uniform() noexcept { return static_cast<double>((*this)() >> 11) * 0x1.0p-53; }
  /// True with probability p.
  bool chance(double p) noexcept { return p > 0 && (p >= 1 || uniform() < p); }
  /// Exponentially distributed with the given mean.
  double exponential(double mean) noexcept { return -mean * std::log1p(-uniform()); }
  /// Fisher–Yates shuffle.
  template <class T> void shuffle(std::span<T> items) noexcept {
    for (std::size_t i = items.size(); i > 1; --i) std::swap(items[i - 1], items[below(i)]);
  }
  /// Moves k uniformly chosen items (without replacement) to the front; k is clamped to the size.
  template <class T> std::span<T> sample(std::span<T> items, std::size_t k) noexcept {
    k = std::min(k, items.size());
    for (std::size_t i = 0; i < k; ++i) std::swap(items[i], items[i + below(items.size() - i)]);
    return items.first(k);
  }

 private:
  static constexpr std::uint64_t rotl(std::uint64_t x, int k) noexcept { return (x << k) | (x >> (64 - k)); }
  std::uint64_t s_[4];
};

}  // namespace dcp
