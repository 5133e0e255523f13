#pragma once
// Messages a member sends to itself (Maekawa's arbiter in its own quorum, say)
// go through a queue drained by a zero-delay timer: delivered in order, after
// the current handler returns, and never counted as network messages.
#include <functional>
#include <utility>
#include <vector>

#include "dcp/core/env.hpp"

namespace dcp::mutex::detail {

template <Env E> class loopback {
 public:
  explicit loopback(E& env) : env_(&env) {}
  loopback(const loopback&) = delete;
  loopback& operator=(const loopback&) = delete;
  ~loopback() {
    if (timer_) env_->cancel(timer_);
  }
  void post(std::function<void()> fn) {
    queue_.push_back(std::move(fn));
    if (!timer_) timer_ = env_->arm(duration::zero(), [this] { drain(); });
  }

 private:
  void drain() {
    timer_ = {};
    auto due = std::exchange(queue_, {});
    for (auto& fn : due) fn();
  }
  E* env_;
  std::vector<std::function<void()>> queue_;
  timer_id timer_{};
};

}  // namespace dcp::mutex::detail
