#pragma once
// A heartbeat failure detector (ping / ack with a timeout).
//
// Every `interval` the detector pings each peer it monitors; a peer that has
// not answered anything for `timeout` is suspected, and suspicion is lifted
// when the peer is heard from again. Other protocols feed it too: any sign of
// life they see (heard_from) resets the clock, and a transport that gives up
// on a peer (on_unreachable) makes it suspected at once.
//
// It is an eventually perfect detector (◇P) only under partial synchrony: a
// peer slower than `timeout` is suspected wrongly, and restored when it
// answers. Choose timeout >= 2 * interval + a round trip, or more under loss:
// with loss probability p, a live peer is wrongly suspected in a given period
// with probability about p^(2 * timeout / interval) (ping and ack both lost).
//
// Events: on_down(peer) when a peer becomes suspected, on_up(peer) when it is
// monitored for the first time or restored.
#include <algorithm>
#include <functional>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "dcp/core/address.hpp"
#include "dcp/core/env.hpp"
#include "dcp/core/error.hpp"
#include "dcp/core/metrics.hpp"
#include "dcp/core/protocol.hpp"
#include "dcp/wire/message.hpp"

namespace dcp::failure {

struct heartbeat_config {
  duration interval = 1s;  ///< between two pings to one peer
  duration timeout = 3s;   ///< silence after which a peer is suspected
  /// Suspect a peer at once when the transport reports it unreachable.
  bool trust_transport = true;

  void validate() const {
    if (interval <= duration::zero()) throw error(errc::invalid_config, "heartbeat: interval must be > 0");
    if (timeout <= interval)
      throw error(errc::invalid_config,
                  "heartbeat: timeout must exceed interval, or every peer is suspected between pings");
  }
};

namespace heartbeat_msg {
struct ping {
  static constexpr message_type wire_id = 1;
  static constexpr std::string_view wire_name = "ping";
  std::uint64_t seq = 0;
  template <class A> void serialize(A& ar) { ar(seq); }
};
struct ack {
  static constexpr message_type wire_id = 2;
  static constexpr std::string_view wire_name = "ack";
  std::uint64_t seq = 0;
  template <class A> void serialize(A& ar) { ar(seq); }
};
}  // namespace heartbeat_msg

template <Env E> class heartbeat {
 public:
  using messages = wire::message_set<heartbeat_msg::ping, heartbeat_msg::ack>;
  /// What it counts (env.count), declared: dcp/core/counter_set.hpp.
  static constexpr dcp::counter_set counters{{"restored", "suspected"}};
  static constexpr std::string_view name = "heartbeat";
  static constexpr protocol_id default_id = 1;
  using callback = std::function<void(const address&)>;

  explicit heartbeat(E env, heartbeat_config cfg = {}) : env_(std::move(env)), cfg_(cfg) { cfg_.validate(); }

  void start() {
    timer_.start(env_, cfg_.interval, [this] { round(); });
  }

  /// Starts watching `peer` (idempotent). It counts as alive from now.
  void monitor(const address& peer) {
    if (peer == env_.self()) return;
    auto [it, added] = peers_.try_emplace(peer, state{env_.now(), false});
    if (added) {
      env_.send(peer, heartbeat_msg::ping{++seq_});
      if (on_up_) on_up_(peer);
    }
  }
  void unmonitor(const address& peer) { peers_.erase(peer); }

  /// Any sign of life from `peer`, seen by this or another protocol.
  void heard_from(const address& peer) {
    auto it = peers_.find(peer);
    if (it == peers_.end()) return;
    it->second.last_heard = env_.now();
    if (it->second.suspected) {
      it->second.suspected = false;
      env_.count("restored");
      if (on_up_) on_up_(peer);
    }
  }

  bool suspects(const address& peer) const {
    auto it = peers_.find(peer);
    return it != peers_.end() && it->second.suspected;
  }
  bool monitors(const address& peer) const { return peers_.contains(peer); }
  std::vector<address> suspected() const { return select(true); }
  std::vector<address> alive() const { return select(false); }
  /// Gauges for a node's metrics: peers monitored, peers suspected.
  void gauges(const gauge_sink& emit) const {
    emit("monitored", static_cast<double>(peers_.size()));
    emit("suspected", static_cast<double>(select(true).size()));
  }

  void on_down(callback f) { on_down_ = std::move(f); }
  void on_up(callback f) { on_up_ = std::move(f); }

  void on_message(const address& from, const heartbeat_msg::ping& m) {
    env_.send(from, heartbeat_msg::ack{m.seq});
    heard_from(from);
  }
  void on_message(const address& from, const heartbeat_msg::ack&) { heard_from(from); }
  void on_unreachable(const address& peer) {
    if (cfg_.trust_transport) suspect(peer);
  }

  const heartbeat_config& config() const noexcept { return cfg_; }

 private:
  struct state {
    time_point last_heard;
    bool suspected;
  };

  void round() {
    const time_point now = env_.now();
    std::vector<address> late;
    for (auto& [peer, s] : peers_) {
      env_.send(peer, heartbeat_msg::ping{++seq_});
      if (!s.suspected && now - s.last_heard > cfg_.timeout) late.push_back(peer);
    }
    for (auto& p : late) suspect(p);  // callbacks may change peers_: not while iterating it
  }
  void suspect(const address& peer) {
    auto it = peers_.find(peer);
    if (it == peers_.end() || it->second.suspected) return;
    it->second.suspected = true;
    env_.count("suspected");
    if (on_down_) on_down_(peer);
  }
  std::vector<address> select(bool suspected) const {
    std::vector<address> out;
    for (auto& [p, s] : peers_)
      if (s.suspected == suspected) out.push_back(p);
    std::sort(out.begin(), out.end());
    return out;
  }

  E env_;
  heartbeat_config cfg_;
  std::unordered_map<address, state> peers_;
  std::uint64_t seq_ = 0;
  callback on_down_, on_up_;
  periodic<E> timer_;
};

}  // namespace dcp::failure
