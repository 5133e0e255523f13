#pragma once
// join_settling: when a newcomer that has the root's state counts as joined
// (dht::pastry, dht::tapestry).
//
// The root's answer ends the join attempts (join_attempts.hpp), but the state
// it hands over (Pastry's leaf set, Tapestry's table) is others' view and may
// name nodes that crashed since: the newcomer probes each one it would use,
// and takes it in only on its answer. Joined on the root's state alone, it
// would claim keys, or route them, as if the root's neighbours were its own.
// So it settles (the router's `settle`: joined, maintenance started) once
// every probe has answered, or `patience` after the root's answer: a probe
// still silent then is a dead node, and waiting longer changes nothing.
#include <functional>
#include <utility>

#include "dcp/core/env.hpp"

namespace dcp::dht::detail {

template <Env E> class join_settling {
 public:
  join_settling(E env, duration patience, std::function<void()> settle)
      : env_(std::move(env)), patience_(patience), settle_(std::move(settle)) {}
  join_settling(const join_settling&) = delete;
  join_settling& operator=(const join_settling&) = delete;
  ~join_settling() { cancel(); }

  /// The root's state arrived, its probes sent: settles now when `all_answered`
  /// (none was needed), else on the last answer or after the patience. A copy
  /// of the root's answer while waiting changes nothing.
  void root_answered(bool all_answered) {
    if (timer_) return;
    timer_ = env_.arm(patience_, [this] { settle(); });
    if (all_answered) settle();
  }
  /// A probe answered; `all_answered`: none is out any more.
  void probe_answered(bool all_answered) {
    if (timer_ && all_answered) settle();
  }
  /// Waits no more (the node stopped).
  void cancel() {
    if (timer_) env_.cancel(timer_), timer_ = {};
  }

 private:
  void settle() {
    cancel();
    settle_();
  }

  E env_;
  duration patience_;
  std::function<void()> settle_;
  timer_id timer_{};
};

}  // namespace dcp::dht::detail
