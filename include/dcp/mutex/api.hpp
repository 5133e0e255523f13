#pragma once
// The one API every dcp mutual-exclusion algorithm offers.
//
//   m.lock(handler)     asks for the lock; handler(dcp::result<void>) runs once
//                       (a handler taking std::error_code fits too): success
//                       when this node holds the lock, or an error:
//                         busy           this node already holds or awaits it
//                         timed_out      not granted within request_timeout
//                         member_failed  a member the algorithm needs is gone
//                         cancelled      cancel() was called
//                       On an error the request is withdrawn: nothing is held.
//   m.try_lock()        takes the lock at once when that needs no message (an
//                       idle token already here, say); false otherwise, and
//                       then nothing was sent.
//   m.unlock()          leaves the critical section (throws dcp::error if not
//                       holding: a bug in the caller, not a network event).
//   m.cancel()          withdraws a waiting request (handler gets cancelled).
//   m.holding()         this node is in the critical section.
//   m.state()           idle, waiting or held.
//   m.holder()          who holds the lock as far as this node knows (itself,
//                       or what a coordinator was told); nullopt if unknown.
//   guard g(m)          RAII: unlocks when it goes out of scope.
//
// Handlers run after the event that decides them (DESIGN §10), never inside
// lock(), cancel() or a message handler, so they may call back into the
// mutex, unlock() included, and find it between steps.
#include <concepts>
#include <functional>
#include <optional>
#include <system_error>
#include <utility>

#include "dcp/core/address.hpp"
#include "dcp/core/error.hpp"
#include "dcp/core/result.hpp"

namespace dcp::mutex {

using lock_handler = std::function<void(result<void>)>;

enum class lock_state { idle, waiting, held };

template <class M>
concept Mutex = requires(M& m, const M& cm, lock_handler h) {
  m.lock(std::move(h));
  { m.try_lock() } -> std::same_as<bool>;
  m.unlock();
  m.cancel();
  { cm.holding() } -> std::same_as<bool>;
  { cm.state() } -> std::same_as<lock_state>;
  { cm.holder() } -> std::same_as<std::optional<address>>;
};

/// Holds a lock this node has been granted and unlocks it on destruction.
template <Mutex M> class guard {
 public:
  /// Adopts the lock `m` holds now; throws dcp::error(invalid_argument) if it does not.
  explicit guard(M& m) : m_(&m) {
    if (!m.holding()) throw error(errc::invalid_argument, "mutex::guard: the mutex is not held by this node");
  }
  guard(guard&& o) noexcept : m_(std::exchange(o.m_, nullptr)) {}
  guard& operator=(guard&& o) noexcept {
    if (this != &o) {
      reset();
      m_ = std::exchange(o.m_, nullptr);
    }
    return *this;
  }
  guard(const guard&) = delete;
  guard& operator=(const guard&) = delete;
  ~guard() { reset(); }

  /// Unlocks now (if still held).
  void reset() noexcept {
    if (m_ && m_->holding()) {
      try {
        m_->unlock();
      } catch (...) {}  // holding() was checked: cannot throw
    }
    m_ = nullptr;
  }
  /// Gives up ownership without unlocking.
  M* release() noexcept { return std::exchange(m_, nullptr); }
  bool owns_lock() const noexcept { return m_ && m_->holding(); }

 private:
  M* m_;
};

}  // namespace dcp::mutex
