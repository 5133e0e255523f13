#pragma once
// replay_window: which of a sender's datagram numbers were already accepted,
// as IPsec (RFC 4303 §3.4.3) and WireGuard keep it: a sliding bitmap over
// the highest number accepted, in 64-bit blocks that are cleared whole as the
// window slides (RFC 6479), so a check and an update cost O(1) and the state
// is a fixed 128 bytes per sender, whatever numbers an attacker presents.
//
// Two steps, so that nothing changes before a datagram authenticates:
// fresh(n) before opening it (a cheap refusal of a replay), accept(n) after.
// A number more than `size` below the highest accepted is refused as stale:
// it may have been accepted and forgotten. Numbers are per sender and its
// boot (dcp/net/udp_keyring.hpp resets the window when the sender restarts).
#include <array>
#include <cstdint>

namespace dcp::net::detail {

class replay_window {
 public:
  static constexpr std::uint64_t blocks = 16;
  /// How far below the highest number accepted a number is still told apart
  /// (one block is the slack the sliding needs).
  static constexpr std::uint64_t size = (blocks - 1) * 64;

  enum class verdict { fresh, replayed, stale };

  /// Whether `n` may be accepted: not accepted before, and within the window.
  verdict check(std::uint64_t n) const noexcept {
    if (!any_ || n > top_) return verdict::fresh;
    if (top_ - n >= size) return verdict::stale;
    return (bits_[(n >> 6) % blocks] >> (n & 63)) & 1 ? verdict::replayed : verdict::fresh;
  }

  /// Records `n` as accepted (after check(n) said fresh and it authenticated).
  void accept(std::uint64_t n) noexcept {
    if (!any_ || n > top_) {
      const std::uint64_t from = any_ ? (top_ >> 6) + 1 : n >> 6;
      const std::uint64_t to = n >> 6;
      // Clear the blocks the window slides over (all of them at most once).
      for (std::uint64_t b = from; b <= to && b - from < blocks; ++b) bits_[b % blocks] = 0;
      top_ = n;
      any_ = true;
    }
    bits_[(n >> 6) % blocks] |= std::uint64_t{1} << (n & 63);
  }

  /// Forgets everything (the sender restarted).
  void reset() noexcept {
    bits_.fill(0);
    top_ = 0;
    any_ = false;
  }

  std::uint64_t highest() const noexcept { return top_; }

 private:
  std::array<std::uint64_t, blocks> bits_{};
  std::uint64_t top_ = 0;
  bool any_ = false;
};

}  // namespace dcp::net::detail
