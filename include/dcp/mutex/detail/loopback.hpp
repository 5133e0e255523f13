#pragma once
// Messages a member sends to itself (Maekawa's arbiter in its own quorum, say)
// go through a queue run after the current event (an outbox,
// dcp/core/outbox.hpp): delivered in order, once the handler that sent them
// has returned (never inside it), never counted as network messages, and
// dropped with the mutex.
#include <functional>
#include <utility>

#include "dcp/core/env.hpp"
#include "dcp/core/outbox.hpp"

namespace dcp::mutex::detail {

template <Env E> class loopback {
 public:
  explicit loopback(E& env) : out_(env) {}
  loopback(const loopback&) = delete;
  loopback& operator=(const loopback&) = delete;
  void post(std::function<void()> fn) { out_.push(std::move(fn)); }

 private:
  outbox<E> out_;
};

}  // namespace dcp::mutex::detail
