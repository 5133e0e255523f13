#pragma once
// dcp::sim::env: the Env a protocol gets inside the simulator.
//
// A handle of two words (the simulator, the node and the protocol id); all
// its calls go to the simulator, which is single-threaded and deterministic.
// Member definitions are at the end of dcp/sim/simulator.hpp.
#include <cstdint>
#include <string_view>

#include "dcp/core/address.hpp"
#include "dcp/core/disk.hpp"
#include "dcp/core/env.hpp"
#include "dcp/core/log.hpp"
#include "dcp/core/rng.hpp"
#include "dcp/core/time.hpp"
#include "dcp/wire/message.hpp"

namespace dcp::sim {

using node_index = std::uint32_t;
class simulator;

class env {
 public:
  env(simulator& s, node_index node, protocol_id protocol) noexcept : sim_(&s), node_(node), protocol_(protocol) {}

  address self() const noexcept { return address::sim(node_); }
  time_point now() const noexcept;
  /// The node's clock read as wall time: its steady clock (skew and drift
  /// included) plus simulator::wall_epoch, so wall clocks differ between
  /// nodes exactly as set_clock() makes their clocks differ.
  wall_time wall_now() const noexcept;
  template <wire::Message M> bool send(const address& to, const M& m);
  timer_id arm(duration after, timer_callback fn);
  bool cancel(timer_id id) noexcept;
  /// Runs fn once the current event is handled, before the next one.
  void post(timer_callback fn);
  dcp::rng& rng() noexcept;
  dcp::disk& disk();
  /// Runs `io` then done(ec), config::sync_latency after the event (right
  /// after it by default); a crash first loses both, and what `io` would
  /// have made durable.
  void perform(io_work io, std::function<void(std::error_code)> done);
  bool logs(log_level level) const noexcept;
  void log(log_level level, std::string_view text);
  void count(std::string_view name, std::int64_t delta = 1);

  node_index index() const noexcept { return node_; }
  protocol_id protocol() const noexcept { return protocol_; }
  simulator& world() const noexcept { return *sim_; }

 private:
  simulator* sim_;
  node_index node_;
  protocol_id protocol_;
};

}  // namespace dcp::sim
