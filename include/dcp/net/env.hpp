#pragma once
// dcp::net::env: the Env a protocol gets on a dcp::net::node.
//
//   now()     std::chrono::steady_clock, as dcp::time_point
//   wall_now() std::chrono::system_clock since the Unix epoch, as dcp::wall_time
//   send()    a frame on the node's transport (dcp/net/transport.hpp)
//   arm()     a one-shot timer in the node's timer queue (one steady_timer)
//   post()    work run from a posted handler as the node's next turn (timer_queue::post)
//   perform() an fsync on the node's I/O thread (file_disk), then done as a turn
//   rng()     the node's dcp::rng: config::seed, else std::random_device
//   disk()    a dcp::file_disk in config::data_dir, else a dcp::memory_disk
//             (lost at exit: the first use logs a warning)
//   log()     config::log, from config::level up
//   count()   a named counter of this protocol in node::metrics()
//
// A handle of two words (the node's state and the protocol id), copyable,
// valid while its node lives. Thread safety: like everything a protocol
// touches, call it only on the node's executor.
#include <cstdint>
#include <string_view>

#include "dcp/core/env.hpp"
#include "dcp/net/detail/node_core.hpp"

namespace dcp::net {

class env {
 public:
  env(detail::node_core& core, protocol_id protocol) noexcept : core_(&core), protocol_(protocol) {}

  address self() const noexcept { return core_->self; }
  time_point now() const noexcept { return detail::steady_now(); }
  wall_time wall_now() const noexcept { return system_wall_now(); }
  /// Fire-and-forget; false when refused at once (counted in metrics by reason).
  template <wire::Message M> bool send(const address& to, const M& m) {
    return core_->send(protocol_, to, frame_source::of(m));
  }
  timer_id arm(duration after, timer_callback fn) { return core_->timers->arm(after, std::move(fn)); }
  bool cancel(timer_id id) noexcept { return core_->timers->cancel(id); }
  void post(timer_callback fn) { core_->timers->post(std::move(fn)); }
  void perform(io_work io, std::function<void(std::error_code)> done) {
    core_->perform(std::move(io), std::move(done));
  }
  dcp::rng& rng() noexcept { return core_->rng; }
  /// Files in config::data_dir; without one, memory (logged once, at warn).
  dcp::disk& disk() noexcept { return core_->disk_for(protocol_); }
  bool logs(log_level level) const noexcept { return core_->logs(level); }
  void log(log_level level, std::string_view text) { core_->log(protocol_, level, text); }
  void count(std::string_view name, std::int64_t delta = 1) { core_->metrics.add(protocol_, name, delta); }

  protocol_id protocol() const noexcept { return protocol_; }

 private:
  detail::node_core* core_;
  protocol_id protocol_;
};

static_assert(Env<env>, "dcp::net::env must model dcp::Env");

}  // namespace dcp::net
