#pragma once
// disciplined_clock: a local clock corrected by a synchronization algorithm,
// the way an operating system disciplines its clock with adjtime() (slew)
// and a frequency correction (ntpd's and chrony's kernel discipline).
//
// The node's own clock (an Env's now(), called `local` below) is never
// touched. The disciplined clock reads
//
//     sync(local) = target(local) - pending
//     target(local) = target(anchor) + (local - anchor) * (1 + frequency)
//
// where `target` is where the algorithm wants the clock to be and `pending`
// is the part of its last corrections not yet applied. Corrections are
// slewed: pending shrinks at most `max_slew_rate` seconds per second, so the
// synchronized clock runs between (1 - max_frequency - max_slew_rate) and
// (1 + max_frequency + max_slew_rate) times as fast as the local clock and
// never goes backwards (Tanenbaum & van Steen ch. 6: "time cannot run
// backwards"; timeouts across the system assume it moves smoothly). A
// forward correction larger than `step_forward_threshold` is applied at once
// (ntpd's step, chrony's makestep), never a backward one.
//
// The clock also carries the error bound the algorithm reported with its
// last correction: |sync - reference| <= error_bound(local), which is
//     error + |pending| + growth * (local - since)
// (the estimate's error when made, what is still to be slewed, and how fast
// the estimate ages: the drift bound, or the uncertainty of a fitted rate).
// Unsynchronized, the bound is duration::max().
//
// A plain value type: no Env, no timers; the protocols in this folder own one.
// Not thread-safe.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include "dcp/core/assert.hpp"
#include "dcp/core/error.hpp"
#include "dcp/core/time.hpp"

namespace dcp::clock {

struct disciplined_clock_config {
  /// How fast a correction is applied: adjtime() slews at 500 ppm on Linux and the BSDs.
  double max_slew_rate = 500e-6;
  /// The largest frequency correction accepted (ntpd's limit: 500 ppm).
  double max_frequency = 500e-6;
  /// Forward corrections above this are stepped at once; backward ones never are.
  duration step_forward_threshold = duration::max();

  void validate() const {
    if (!(max_slew_rate > 0 && max_slew_rate <= 0.1))
      throw error(errc::invalid_config, "disciplined_clock: max_slew_rate must be in (0, 0.1]");
    if (!(max_frequency >= 0 && max_frequency <= 0.1))
      throw error(errc::invalid_config, "disciplined_clock: max_frequency must be in [0, 0.1]");
    if (step_forward_threshold <= duration::zero())
      throw error(errc::invalid_config, "disciplined_clock: step_forward_threshold must be > 0");
  }
};

/// The error of an estimate: `error` at local time `since`, growing by
/// `growth` seconds per second after it.
struct sync_bound {
  duration error{};
  time_point since{};
  double growth = 0;
};

class disciplined_clock {
 public:
  explicit disciplined_clock(disciplined_clock_config cfg = {}) : cfg_(cfg) { cfg_.validate(); }

  /// The synchronized time at local time `local` (the Env's now()). Monotone:
  /// never less than an earlier reading, whatever the corrections.
  time_point now(time_point local) noexcept {
    advance(local);
    // advance() moves anchor_sync_ forward only (frequency and slew are
    // clamped well under 1), and settle() steps forward only.
    DCP_ASSERT(anchor_sync_ >= last_read_, "the synchronized clock never runs backwards");
    if (anchor_sync_ < last_read_) {
      ++monotonic_guard_hits_;  // with assertions off, a reading stays monotone all the same
      return last_read_;
    }
    last_read_ = anchor_sync_;
    return anchor_sync_;
  }
  /// Where the algorithm wants the clock now (sync + pending).
  time_point target(time_point local) noexcept {
    advance(local);
    return anchor_sync_ + rounded(pending_);
  }

  /// Moves the target by `delta` (Berkeley: "adjust by").
  void adjust_by(time_point local, duration delta, sync_bound bound) noexcept {
    advance(local);
    pending_ += static_cast<double>(delta.count());
    settle(bound);
  }
  /// Sets the target to `reference` at local time `local` (Cristian, NTP, RBS).
  void adjust_to(time_point local, time_point reference, sync_bound bound) noexcept {
    advance(local);
    pending_ = static_cast<double>((reference - anchor_sync_).count());
    settle(bound);
  }
  /// Sets the rate correction (clamped to ±max_frequency; false if clamped).
  bool set_frequency(time_point local, double frequency) noexcept {
    advance(local);
    const bool ok = std::isfinite(frequency) && std::abs(frequency) <= cfg_.max_frequency;
    frequency_ = std::isfinite(frequency) ? std::clamp(frequency, -cfg_.max_frequency, cfg_.max_frequency) : 0.0;
    return ok;
  }

  /// |sync - reference| at local time `local`, as the last correction reported it.
  duration error_bound(time_point local) const noexcept {
    if (!synchronized_) return duration::max();
    double e = static_cast<double>(bound_.error.count()) + std::abs(pending_after(local)) +
        bound_.growth * static_cast<double>(std::max<std::int64_t>(0, (local - bound_.since).count())) + 2;
    if (e >= 9e18) return duration::max();
    return duration(static_cast<std::int64_t>(std::ceil(e)));
  }

  bool synchronized() const noexcept { return synchronized_; }
  double frequency() const noexcept { return frequency_; }
  /// The part of the corrections still to be slewed, in nanoseconds.
  double pending() const noexcept { return pending_; }
  std::uint64_t steps_forward() const noexcept { return steps_forward_; }
  /// Readings whose local time was earlier than one before (the local clock stepped back).
  std::uint64_t local_steps_back() const noexcept { return local_steps_back_; }
  /// Readings the monotone guard had to hold back: zero unless the arithmetic is wrong.
  std::uint64_t monotonic_guard_hits() const noexcept { return monotonic_guard_hits_; }
  const disciplined_clock_config& config() const noexcept { return cfg_; }

 private:
  static duration rounded(double ns) noexcept { return duration(static_cast<std::int64_t>(std::llround(ns))); }

  void advance(time_point local) noexcept {
    if (!started_) {
      started_ = true;
      anchor_local_ = local;
      anchor_sync_ = local;
      last_read_ = local;
      return;
    }
    if (local <= anchor_local_) {
      // A local clock that steps back (a wall clock set by hand) makes the
      // synchronized clock wait until it has caught up: it never follows.
      if (local < anchor_local_) ++local_steps_back_;
      return;
    }
    const double e = static_cast<double>((local - anchor_local_).count());
    const double slew = std::copysign(std::min(std::abs(pending_), cfg_.max_slew_rate * e), pending_);
    pending_ -= slew;
    const double step = e * (1 + frequency_) + slew + fraction_;
    const double whole = std::floor(step);
    fraction_ = step - whole;
    anchor_sync_ += duration(static_cast<std::int64_t>(whole));
    anchor_local_ = local;
  }
  double pending_after(time_point local) const noexcept {
    const double e = static_cast<double>(std::max<std::int64_t>(0, (local - anchor_local_).count()));
    return std::copysign(std::max(0.0, std::abs(pending_) - cfg_.max_slew_rate * e), pending_);
  }
  void settle(const sync_bound& b) noexcept {
    if (pending_ > 0 && pending_ > static_cast<double>(cfg_.step_forward_threshold.count())) {
      anchor_sync_ += rounded(pending_);  // forward only: readings stay monotone
      pending_ = 0;
      ++steps_forward_;
    }
    bound_ = b;
    synchronized_ = true;
  }

  disciplined_clock_config cfg_;
  bool started_ = false, synchronized_ = false;
  time_point anchor_local_{}, anchor_sync_{}, last_read_{};
  double pending_ = 0, frequency_ = 0, fraction_ = 0;
  sync_bound bound_{};
  std::uint64_t steps_forward_ = 0, monotonic_guard_hits_ = 0, local_steps_back_ = 0;
};

}  // namespace dcp::clock
