#pragma once
// The Env of a Raft that a node hosts for one group among many
// (group_host.hpp): everything passes through to the node's Env, except that
// a message travels inside a msg::group_raft envelope naming the group's
// shard and epoch, so the receiving node hands it to the right group's Raft.
// A node has one protocol id for delegation, and groups come and go at run
// time, so a protocol id per group is not an option.
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

#include "dcp/core/env.hpp"
#include "dcp/delegation/messages.hpp"

namespace dcp::delegation::detail {

template <Env E> class group_raft_env {
 public:
  group_raft_env(E base, std::string resource, std::uint32_t shard, std::uint32_t epoch)
      : base_(std::move(base)), resource_(std::move(resource)), shard_(shard), epoch_(epoch) {}

  address self() const { return base_.self(); }
  time_point now() const { return base_.now(); }
  wall_time wall_now() const { return base_.wall_now(); }
  template <wire::Message M> bool send(const address& to, const M& m) {
    msg::group_raft out{resource_, shard_, epoch_, M::wire_id, {}};
    wire::encode(m, out.payload);
    return base_.send(to, out);
  }
  timer_id arm(duration after, timer_callback fn) { return base_.arm(after, std::move(fn)); }
  bool cancel(timer_id t) { return base_.cancel(t); }
  void post(timer_callback fn) { base_.post(std::move(fn)); }
  void perform(io_work io, std::function<void(std::error_code)> done) { base_.perform(std::move(io), std::move(done)); }
  dcp::rng& rng() { return base_.rng(); }
  dcp::disk& disk() { return base_.disk(); }
  bool logs(log_level level) const { return base_.logs(level); }
  void log(log_level level, std::string_view text) { base_.log(level, text); }
  void count(std::string_view name, std::int64_t delta = 1) { base_.count(name, delta); }

 private:
  E base_;
  std::string resource_;
  std::uint32_t shard_ = 0;
  std::uint32_t epoch_ = 0;
};

}  // namespace dcp::delegation::detail
