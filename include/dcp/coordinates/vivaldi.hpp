#pragma once
// Vivaldi network coordinates (Dabek, Cox, Kaashoek, Morris, SIGCOMM 2004).
//
// Each node keeps a synthetic coordinate whose distance to another node's
// predicts the round-trip time between them, without measuring it. The space
// is the paper's best one: a 2-D Euclidean plane plus a height (§5.5, "height
// vectors"): the height models the access link every packet crosses twice,
// so distance([x,h], [y,g]) = |x - y| + h + g. Units are milliseconds of RTT.
//
// Update rule, from one sample (the paper's Figure 3, the adaptive timestep):
//   w   = e_i / (e_i + e_j)                    confidence of i against j
//   e_s = | |x_i - x_j| - rtt | / rtt          relative error of this sample
//   e_i = e_s * ce * w + e_i * (1 - ce * w)    moving average of the error
//   d   = cc * w                               the adaptive timestep
//   x_i = x_i + d * (rtt - |x_i - x_j|) * u(x_i - x_j)
// with cc = ce = 0.25 (the paper's values) and a random direction when the
// two coordinates coincide (every node starts at the origin). Heights stay
// at or above min_height, as the paper keeps them positive.
//
// vivaldi_state is the algorithm alone (no I/O): other protocols that carry
// coordinates on their own messages (piggybacking, §4: "Vivaldi can ride on
// the application's traffic") feed it their RTT samples. vivaldi<E, M> is the
// protocol that keeps it fed when the application sends nothing: every period
// it pings a neighbour drawn from the membership, with its coordinate on the
// ping and on the reply, and updates from the measured round trip.
//
// Paper figure: median relative error ~11% on the King data set (1740 DNS
// servers) with 2-D + height. benchmarks/superpeer_selection.cpp measures it
// on the simulator's per-link latencies (docs/mutex-and-election.md).
//
// Faults tolerated: loss (a ping without a reply is forgotten after
// rpc_timeout), duplication (a pong is matched to its ping by nonce once),
// reordering and delay (a pong within rpc_timeout is a true RTT sample, a
// later one is dropped as unexpected), crashes (a restarted node starts again from the origin with error
// 1; the others' errors make them trust it little until it has converged).
// Hostile input: a coordinate that is NaN, infinite or beyond max_coordinate,
// an error outside [0, max_error], an RTT outside (0, max_coordinate] ms, a pong with no
// ping, or any message from outside the membership is dropped and counted.
// What it cannot tolerate: a lying peer with a plausible coordinate pulls this
// node's coordinate (Vivaldi has no defence against that; the membership's
// admits() keeps strangers out, not liars).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <optional>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "dcp/core/assert.hpp"
#include "dcp/core/env.hpp"
#include "dcp/core/error.hpp"
#include "dcp/membership/membership.hpp"
#include "dcp/wire/message.hpp"

namespace dcp::coordinates {

/// A point in the 2-D + height space, in milliseconds.
struct coordinate {
  double x = 0, y = 0, height = 0;

  /// The predicted RTT between two nodes: planar distance plus both heights.
  friend double distance(const coordinate& a, const coordinate& b) noexcept {
    return std::hypot(a.x - b.x, a.y - b.y) + a.height + b.height;
  }
  /// Finite, every component within `bound`, height non-negative.
  bool sane(double bound) const noexcept {
    auto ok = [bound](double v) { return std::isfinite(v) && std::fabs(v) <= bound; };
    return ok(x) && ok(y) && ok(height) && height >= 0;
  }
  friend bool operator==(const coordinate&, const coordinate&) = default;
  template <class A> void serialize(A& ar) { ar(x, y, height); }
};

struct vivaldi_params {
  double cc = 0.25;             ///< timestep constant (paper: 0.25)
  double ce = 0.25;             ///< error moving-average constant (paper: 0.25)
  double initial_error = 1.0;   ///< a fresh node trusts its coordinate not at all
  double min_error = 1e-3;      ///< keeps w = e_i / (e_i + e_j) defined
  double max_error = 10.0;      ///< an error above this, from the network, is refused
  double min_height = 0.1;      ///< ms; heights stay positive (§5.5)
  double max_coordinate = 1e6;  ///< ms; a component beyond this, from the network, is refused
  void validate() const {
    if (!(cc > 0 && cc <= 1 && ce > 0 && ce <= 1))
      throw error(errc::invalid_config, "vivaldi: cc and ce must lie in (0, 1]");
    if (!(min_error > 0 && initial_error >= min_error && max_error >= initial_error))
      throw error(errc::invalid_config, "vivaldi: need 0 < min_error <= initial_error <= max_error");
    if (!(min_height >= 0 && max_coordinate > 0 && std::isfinite(max_coordinate)))
      throw error(errc::invalid_config, "vivaldi: min_height >= 0 and a finite max_coordinate > 0");
  }
};

/// The Vivaldi algorithm on one node: its coordinate, its error, and the
/// update from one RTT sample. No I/O.
class vivaldi_state {
 public:
  explicit vivaldi_state(vivaldi_params p = {}) : p_(p), error_(p.initial_error) {
    p_.validate();
    coord_.height = p_.min_height;
  }

  const coordinate& position() const noexcept { return coord_; }
  double error() const noexcept { return error_; }
  const vivaldi_params& params() const noexcept { return p_; }

  /// Whether a remote coordinate and error may be used (finite and bounded).
  bool admissible(const coordinate& c, double remote_error) const noexcept {
    return c.sane(p_.max_coordinate) && std::isfinite(remote_error) && remote_error >= 0 &&
        remote_error <= p_.max_error;
  }

  /// One sample: the remote node's coordinate and error, and the RTT
  /// measured to it (ms). `random_angle` in [0, 1) picks the direction when
  /// the coordinates coincide. False (nothing changed) when the input is not
  /// admissible or the RTT is not in (0, max_coordinate].
  bool observe(const coordinate& remote, double remote_error, double rtt, double random_angle) noexcept {
    if (!admissible(remote, remote_error) || !std::isfinite(rtt) || rtt <= 0 || rtt > p_.max_coordinate) return false;
    const double e_j = std::max(remote_error, p_.min_error);
    const double w = error_ / (error_ + e_j);
    const double predicted = distance(coord_, remote);
    const double sample_error = std::fabs(predicted - rtt) / rtt;
    error_ = std::clamp(sample_error * p_.ce * w + error_ * (1 - p_.ce * w), p_.min_error, p_.max_error);
    const double step = p_.cc * w * (rtt - predicted);  // > 0 pushes apart, < 0 pulls together
    double dx = coord_.x - remote.x, dy = coord_.y - remote.y;
    double planar = std::hypot(dx, dy);
    if (planar < 1e-9) {  // same place: a random direction (Figure 3's u(0))
      const double a = 6.283185307179586 * random_angle;
      dx = std::cos(a), dy = std::sin(a), planar = 1;
    }
    // u(x_i - x_j) with heights: the vector [dx, dy, h_i + h_j] over its norm |d| + h_i + h_j.
    const double norm = planar + coord_.height + remote.height;
    coord_.x += step * dx / planar * (planar / norm);
    coord_.y += step * dy / planar * (planar / norm);
    coord_.height = std::max(p_.min_height, coord_.height + step * (coord_.height + remote.height) / norm);
    // Bound our own coordinate as we bound others', so a run of absurd (but
    // admissible) samples cannot walk it out of the space others accept.
    coord_.x = std::clamp(coord_.x, -p_.max_coordinate, p_.max_coordinate);
    coord_.y = std::clamp(coord_.y, -p_.max_coordinate, p_.max_coordinate);
    coord_.height = std::min(coord_.height, p_.max_coordinate);
    return true;
  }

  /// Back to the origin with the initial error (a restart).
  void reset() noexcept {
    coord_ = {0, 0, p_.min_height};
    error_ = p_.initial_error;
  }

  void check_invariants() const {
    DCP_ASSERT(coord_.sane(p_.max_coordinate), "vivaldi: own coordinate left the bounded space");
    DCP_ASSERT(error_ >= p_.min_error && error_ <= p_.max_error, "vivaldi: error outside its bounds");
  }

 private:
  vivaldi_params p_;
  coordinate coord_;
  double error_;
};

struct vivaldi_config {
  vivaldi_params params{};
  duration period = 1s;          ///< one ping to one neighbour per period
  duration rpc_timeout = 2s;     ///< a ping unanswered this long is forgotten
  std::size_t max_pending = 16;  ///< pings awaiting their pong, at most
  std::size_t max_peers = 256;   ///< peers whose last coordinate is remembered (oldest evicted)
  void validate() const {
    params.validate();
    if (period <= duration::zero() || rpc_timeout <= duration::zero())
      throw error(errc::invalid_config, "vivaldi: period and rpc_timeout must be > 0");
    if (max_pending == 0 || max_peers == 0)
      throw error(errc::invalid_config, "vivaldi: max_pending and max_peers must be > 0");
  }
};

namespace vivaldi_msg {
struct ping {
  static constexpr message_type wire_id = 1;
  static constexpr std::string_view wire_name = "ping";
  std::uint64_t nonce = 0;
  coordinate coord;
  double error = 0;
  template <class A> void serialize(A& ar) { ar(nonce, coord, error); }
};
struct pong {
  static constexpr message_type wire_id = 2;
  static constexpr std::string_view wire_name = "pong";
  std::uint64_t nonce = 0;
  coordinate coord;
  double error = 0;
  template <class A> void serialize(A& ar) { ar(nonce, coord, error); }
};
}  // namespace vivaldi_msg

/// What this node last heard of a peer's coordinate.
struct peer_coordinate {
  coordinate coord;
  double error = 0;
  time_point heard{};
};

template <Env E, class Membership> class vivaldi {
  static_assert(
      membership::Membership<Membership>,
      "dcp: vivaldi needs a Membership (neighbours(), sample(k), on_neighbour_up/down): see dcp/membership/membership.hpp");

 public:
  using messages = wire::message_set<vivaldi_msg::ping, vivaldi_msg::pong>;
  /// What it counts (env.count), declared: dcp/core/counter_set.hpp.
  static constexpr dcp::counter_set counters{{"vivaldi_bad_rtt", "vivaldi_samples", "vivaldi_unexpected_pong",
                                              "vivaldi_not_member", "vivaldi_bad_coordinate", "vivaldi_pending_full"}};
  static constexpr std::string_view name = "coordinates.vivaldi";
  static constexpr protocol_id default_id = 145;

  vivaldi(E env, Membership& m, vivaldi_config cfg = {})
      : env_(std::move(env)), membership_(m), cfg_(cfg), state_((cfg_.validate(), cfg_.params)) {}
  ~vivaldi() = default;

  /// Starts pinging one neighbour per period (the first after a random part of a period).
  void start() {
    pings_.start(
        env_, cfg_.period, [this] { ping_one(); },
        duration(1 + static_cast<std::int64_t>(env_.rng().below(static_cast<std::uint64_t>(cfg_.period.count())))));
  }
  void stop() { pings_.stop(); }

  const coordinate& position() const noexcept { return state_.position(); }
  double error() const noexcept { return state_.error(); }
  const vivaldi_state& state() const noexcept { return state_; }

  /// A sample another protocol measured (a piggybacked coordinate and the RTT
  /// of its own request): validated and counted as the pings' own are.
  bool observe(const address& from, const coordinate& c, double remote_error, duration rtt) {
    if (!accept(from, c, remote_error)) return false;
    const double ms = std::chrono::duration<double, std::milli>(rtt).count();
    if (!state_.observe(c, remote_error, ms, env_.rng().uniform())) {
      env_.count("vivaldi_bad_rtt");
      return false;
    }
    env_.count("vivaldi_samples");
    return true;
  }
  /// A piggybacked coordinate with no RTT: remembered, not used for an update.
  bool remember(const address& from, const coordinate& c, double remote_error) { return accept(from, c, remote_error); }

  /// The last coordinate heard from `peer`, if any.
  std::optional<peer_coordinate> known(const address& peer) const {
    auto it = peers_.find(peer);
    if (it == peers_.end()) return std::nullopt;
    return it->second;
  }
  /// Every peer whose coordinate this node remembers (at most max_peers).
  std::vector<address> known_peers() const {
    std::vector<address> out;
    out.reserve(peers_.size());
    for (const auto& [a, p] : peers_) out.push_back(a);
    std::sort(out.begin(), out.end());  // a stable order: the simulation stays deterministic
    return out;
  }
  /// The predicted RTT to `peer` in ms, if its coordinate is known.
  std::optional<double> predicted_rtt(const address& peer) const {
    auto p = known(peer);
    if (!p) return std::nullopt;
    return distance(state_.position(), p->coord);
  }

  void on_message(const address& from, const vivaldi_msg::ping& m) {
    if (!accept(from, m.coord, m.error)) return;
    env_.send(from, vivaldi_msg::pong{m.nonce, state_.position(), state_.error()});
  }
  void on_message(const address& from, const vivaldi_msg::pong& m) {
    auto it = std::find_if(pending_.begin(), pending_.end(), [&](const pending_ping& p) { return p.nonce == m.nonce; });
    if (it == pending_.end() || it->peer != from)
      return env_.count("vivaldi_unexpected_pong");  // duplicate, late or forged
    const duration rtt = env_.now() - it->sent;
    pending_.erase(it);
    observe(from, m.coord, m.error, rtt);
  }
  void on_unreachable(const address& peer) {
    std::erase_if(pending_, [&](const pending_ping& p) { return p.peer == peer; });
    peers_.erase(peer);
  }

  void check_invariants() const {
    state_.check_invariants();
    DCP_ASSERT(pending_.size() <= cfg_.max_pending, "vivaldi: more pings pending than max_pending");
    DCP_ASSERT(peers_.size() <= cfg_.max_peers, "vivaldi: more peers remembered than max_peers");
  }

 private:
  struct pending_ping {
    std::uint64_t nonce;
    address peer;
    time_point sent;
  };

  bool accept(const address& from, const coordinate& c, double remote_error) {
    if (!membership::admits(membership_, from)) {
      env_.count("vivaldi_not_member");
      return false;
    }
    if (!state_.admissible(c, remote_error)) {
      env_.count("vivaldi_bad_coordinate");
      return false;
    }
    auto it = peers_.find(from);
    if (it == peers_.end()) {
      if (peers_.size() >= cfg_.max_peers) {  // evict the peer heard from longest ago
        auto oldest = std::min_element(peers_.begin(), peers_.end(), [](const auto& a, const auto& b) {
          return a.second.heard < b.second.heard || (a.second.heard == b.second.heard && a.first < b.first);
        });
        peers_.erase(oldest);
      }
      it = peers_.emplace(from, peer_coordinate{}).first;
    }
    it->second = {c, remote_error, env_.now()};
    return true;
  }

  void ping_one() {
    const auto now = env_.now();
    std::erase_if(pending_, [&](const pending_ping& p) { return now - p.sent > cfg_.rpc_timeout; });
    if (pending_.size() >= cfg_.max_pending) return env_.count("vivaldi_pending_full");
    auto target = membership_.sample(1);
    if (target.empty()) return;
    const std::uint64_t nonce = env_.rng()();
    pending_.push_back({nonce, target.front(), now});
    env_.send(target.front(), vivaldi_msg::ping{nonce, state_.position(), state_.error()});
  }

  E env_;
  Membership& membership_;
  vivaldi_config cfg_;
  vivaldi_state state_;
  std::vector<pending_ping> pending_;
  std::unordered_map<address, peer_coordinate> peers_;
  periodic<E> pings_;
};

}  // namespace dcp::coordinates
