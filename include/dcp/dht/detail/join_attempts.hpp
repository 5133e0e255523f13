#pragma once
// join_attempts: how a DHT node joins through its seeds, and when it tries
// again (every router: dht::pastry, dht::can, dht::tapestry, dht::chord,
// dht::kademlia).
//
// A newcomer sends its join request to one seed, which routes it toward the
// newcomer's own id (or point); the node there answers with the state the
// newcomer needs, and that answer ends the attempts (Pastry §2.2, CAN §2.2,
// Tapestry §4.1). A seed may be dead, or the route may fail, and the answer
// is not acknowledged, so silence means "try again": each seed in turn, after
// `wait` plus a backoff that doubles from `first_backoff` up to
// `max_backoff`, so that a crowd of newcomers facing a dead seed does not
// hammer the overlay. The attempts go on until the router is joined (its
// `joined` predicate) or stop() is called; the seed rotation carries on
// across restarts, so a rejoin starts from the seed after the last one tried.
//
// An iterative router (Chord §4.3, Kademlia §2.3) joins by a lookup of its own
// id that asks the seeds itself (seeds()) and ends by itself, in an answer or
// a failure, so it waits for no silence: it passes no `wait`, and on a failed
// attempt calls retry(), which tries again after the backoff (doubling unless
// told not to: an answer that was merely stale is asked again at the same
// pace), or retry_now() when the attempt was cut short by the step after the
// lookup (Chord's join request to the successor found). A rejoin waits the
// first backoff before its first attempt (start_later()).
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <utility>
#include <vector>

#include "dcp/core/env.hpp"
#include "dcp/dht/contact.hpp"

namespace dcp::dht::detail {

/// What join_attempts counts, under its host protocol's id (each router joins it).
inline constexpr counter_set join_attempts_counters{{"join_attempts"}};

template <Env E> class join_attempts {
 public:
  /// Sends one join request through `seed`.
  using sender = std::function<void(const contact& seed)>;

  /// `wait`: how long an attempt's silence lasts before the next (plus the
  /// backoff); none for attempts that report their failure (retry()).
  join_attempts(E env, std::optional<duration> wait, duration first_backoff, duration max_backoff,
                std::function<bool()> joined, sender send)
      : env_(std::move(env)),
        wait_(wait),
        first_backoff_(first_backoff),
        max_backoff_(max_backoff),
        joined_(std::move(joined)),
        send_(std::move(send)) {}
  join_attempts(const join_attempts&) = delete;
  join_attempts& operator=(const join_attempts&) = delete;
  ~join_attempts() { stop(); }

  /// Keeps the distinct seeds other than `self`, in order. False when none is
  /// left: the node founds a new overlay alone.
  bool set_seeds(const std::vector<contact>& seeds, const address& self) {
    seeds_.clear();
    for (auto& s : seeds)
      if (!s.addr.empty() && s.addr != self &&
          std::none_of(seeds_.begin(), seeds_.end(), [&](const contact& o) { return o.addr == s.addr; }))
        seeds_.push_back(s);
    return !seeds_.empty();
  }
  const std::vector<contact>& seeds() const noexcept { return seeds_; }

  /// Tries now, with the backoff back at its start (a bootstrap, or a rejoin).
  void start() {
    backoff_ = first_backoff_;
    attempt();
  }
  /// Tries after the first backoff (a rejoin: the peers that knew us are leaving).
  void start_later() {
    backoff_ = first_backoff_;
    retry(false);
  }
  /// The attempt failed: tries again after the backoff, which then doubles (`grow`).
  void retry(bool grow = true) {
    stop();
    timer_ = env_.arm(backoff_, [this] { attempt(); });
    if (grow) backoff_ = std::min(backoff_ * 2, max_backoff_);
  }
  /// The attempt failed past its lookup: tries again at once, the backoff as it is.
  void retry_now() {
    stop();
    attempt();
  }
  /// No more attempts (joined, or stopped).
  void stop() {
    if (timer_) env_.cancel(timer_), timer_ = {};
  }

 private:
  void attempt() {
    timer_ = {};
    if (joined_() || seeds_.empty()) return;
    env_.count("join_attempts");
    const contact seed = seeds_[next_++ % seeds_.size()];
    send_(seed);
    if (!wait_) return;  // the attempt reports its failure: retry()
    timer_ = env_.arm(*wait_ + backoff_, [this] { attempt(); });
    backoff_ = std::min(backoff_ * 2, max_backoff_);
  }

  E env_;
  std::optional<duration> wait_;
  duration first_backoff_, max_backoff_;
  std::function<bool()> joined_;
  sender send_;
  std::vector<contact> seeds_;
  std::size_t next_ = 0;
  duration backoff_{};
  timer_id timer_{};
};

/// A join request's first hop: the newcomer's own id as key, itself as origin
/// and sender. It is sent outside the hop_forwarder: a silent seed is answered
/// by the next attempt, through the next seed.
template <class Route>
Route join_request(std::uint8_t what, const contact& self, std::uint64_t nonce, std::uint64_t hop) {
  Route m;
  m.nonce = nonce;
  m.what = what;
  m.key = self.id;
  m.origin = self;
  m.sender = self;
  m.hop = hop;
  return m;
}

}  // namespace dcp::dht::detail
