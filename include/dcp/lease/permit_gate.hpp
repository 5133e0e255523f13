#pragma once
// permit_gate: a resource server that honours at most C permits at once.
//
// The mission in one line: a server is never asked for more than it can give.
// The group hands out at most C permits of a resource (a C-permit semaphore
// with leases); the gate is the server's own guard, enforcing C with no trust
// in the group's arithmetic or in clocks beyond the stated drift bound. Each
// request carries its holder's sealed token; the gate:
//
//   - checks it as the verifier does (signature, resource, expiry with the
//     drift margin);
//   - counts it once: a token already admitted (same fencing) is honoured
//     again without counting twice; a renewal (the same grant, the same
//     fencing, a later expiry: coord::server issues one each time a holder
//     asks) extends the grant's deadline;
//   - lets a holder's newer grant supersede its older one (the older one's
//     permits are freed, and the older token is refused from then on:
//     stale_fencing);
//   - refuses a token whose admission would take the permits in use above C
//     (over_capacity), and a token its holder released (released);
//   - frees a grant's permits when the holder releases it or when the token
//     expires in the server's clock (expiry - max_drift).
//
// Why expiry frees permits safely: the gate stops honouring a token at the
// same instant it stops counting it, so at every instant the permits of the
// tokens the server honours sum to at most C, whatever the group does.
// For the group's side: with clocks within max_drift, the gate has freed a
// token's permits by the time the issuer's clock reads its expiry; a group
// that re-issues the permit earlier makes the gate refuse the new holder with
// over_capacity until then, never exceed C.
//
// Memory: at most C grants held, plus one entry per holder seen, forgotten
// once that holder's newest token has expired. Not thread-safe.
#include <algorithm>
#include <cstdint>
#include <map>
#include <string>

#include "dcp/core/address.hpp"
#include "dcp/core/error.hpp"
#include "dcp/lease/verifier.hpp"

namespace dcp::lease {

/// The counting half of a gate, for tokens already verified: at most
/// `capacity` permits honoured at once, each token counted once, a holder's
/// newer grant superseding its older one, released and expired grants freed.
/// permit_gate puts a verifier in front of it; dcp::delegation's origin puts
/// one per shard behind its own look-up of the signing key.
class permit_counter {
 public:
  explicit permit_counter(std::uint32_t capacity) : capacity_(capacity) {}

  /// Counts `t`'s permits until `deadline` (the instant this server stops
  /// honouring it, in its clock), if they fit. On error nothing changes.
  result<token> admit(token t, wall_time deadline, wall_time now) {
    expire(now);
    auto h = holders_.find(t.holder);
    if (auto held = held_.find(t.fencing); held != held_.end()) {         // presented again: already counted
      held->second.deadline = std::max(held->second.deadline, deadline);  // a renewal extends it
      if (h != holders_.end() && h->second.newest == t.fencing) h->second.deadline = held->second.deadline;
      return t;
    }
    std::uint32_t freed = 0;
    if (h != holders_.end()) {
      if (t.fencing < h->second.newest) return make_error_code(errc::stale_fencing);
      if (t.fencing == h->second.newest && h->second.released) return make_error_code(errc::released);
      // (the newest, not held, not released: it expired here; a renewal of it is admitted afresh)
      if (auto old = held_.find(h->second.newest); old != held_.end()) freed = old->second.permits;
    }
    if (std::uint64_t{in_use_} - freed + t.permits > capacity_) return make_error_code(errc::over_capacity);
    if (h != holders_.end()) {
      if (freed) drop(h->second.newest);
      h->second = {t.fencing, deadline, false};
    } else {
      holders_.emplace(t.holder, holder_state{t.fencing, deadline, false});
    }
    held_.emplace(t.fencing, grant{t.permits, deadline, t.holder});
    in_use_ += t.permits;
    return t;
  }

  /// The holder of grant `fencing` is done: its permits are free, its token
  /// is refused from now on. Returns false if no such grant is held (a grant
  /// never admitted is not remembered: release after the last request).
  bool release(std::uint64_t fencing) {
    auto it = held_.find(fencing);
    if (it == held_.end()) return false;
    if (auto h = holders_.find(it->second.holder); h != holders_.end() && h->second.newest == fencing)
      h->second.released = true;
    drop(fencing);
    return true;
  }

  /// Permits honoured at `now` (grants past their deadline are freed first).
  std::uint32_t in_use(wall_time now) {
    expire(now);
    return in_use_;
  }
  /// Is grant `fencing` counted (admitted, not released, superseded or freed by expiry)?
  bool holds(std::uint64_t fencing) const { return held_.contains(fencing); }
  std::uint32_t capacity() const noexcept { return capacity_; }
  /// A new capacity, for admissions from now on: permits already counted stay
  /// counted until released or expired (a lower capacity may be exceeded
  /// until then; the caller accounts for it).
  void set_capacity(std::uint32_t capacity) noexcept { capacity_ = capacity; }

 private:
  struct grant {
    std::uint32_t permits;
    wall_time deadline;  ///< in this server's clock
    address holder;
  };
  struct holder_state {
    std::uint64_t newest;  ///< highest fencing admitted from this holder
    wall_time deadline;    ///< when that token stops being honoured
    bool released;         ///< the holder gave `newest` back: refuse it from now on
  };

  void drop(std::uint64_t fencing) {
    auto it = held_.find(fencing);
    in_use_ -= it->second.permits;
    held_.erase(it);
  }

  void expire(wall_time now) {
    std::erase_if(held_, [&](const auto& kv) {
      if (now < kv.second.deadline) return false;
      in_use_ -= kv.second.permits;
      return true;
    });
    // Holder entries only guard against that holder's older tokens, and those
    // can no longer matter once its newest has expired. Swept when the map has
    // doubled since the last sweep, so the cost is amortised O(1) per admit.
    if (holders_.size() >= 2 * holders_after_sweep_ + 16) {
      std::erase_if(holders_, [&](const auto& kv) { return now >= kv.second.deadline; });
      holders_after_sweep_ = holders_.size();
    }
  }

  std::uint32_t capacity_;
  std::map<std::uint64_t, grant> held_;  // by fencing token
  std::map<address, holder_state> holders_;
  std::size_t holders_after_sweep_ = 0;
  std::uint32_t in_use_ = 0;
};

class permit_gate {
 public:
  /// Throws dcp::error(invalid_config) on a zero capacity, an empty resource or a bad config.
  permit_gate(verification_key key, std::string resource, std::uint32_t capacity, verifier_config cfg = {})
      : key_(std::move(key)), resource_(std::move(resource)), counter_(capacity), cfg_(cfg) {
    cfg_.validate();
    if (capacity == 0) throw dcp::error(dcp::errc::invalid_config, "lease::permit_gate: capacity must be >= 1");
    if (resource_.empty()) throw dcp::error(dcp::errc::invalid_config, "lease::permit_gate: resource name is empty");
  }

  /// Checks `sealed` and, if it fits, counts its permits. Returns the token
  /// on success; on error nothing changes.
  result<token> admit(byte_view sealed, wall_time now) {
    auto u = unseal(sealed, key_, cfg_.max_token_size);
    if (!u) return u.error();
    token& t = u->token;
    if (t.resource != resource_) return make_error_code(errc::wrong_resource);
    if (is_expired(t, now, cfg_.max_drift)) return make_error_code(errc::expired);
    const wall_time deadline = verifier_deadline(t, cfg_.max_drift);
    return counter_.admit(std::move(t), deadline, now);
  }

  bool release(std::uint64_t fencing) { return counter_.release(fencing); }
  std::uint32_t in_use(wall_time now) { return counter_.in_use(now); }
  bool holds(std::uint64_t fencing) const { return counter_.holds(fencing); }
  std::uint32_t capacity() const noexcept { return counter_.capacity(); }
  const std::string& resource() const noexcept { return resource_; }

 private:
  verification_key key_;
  std::string resource_;
  permit_counter counter_;
  verifier_config cfg_;
};

}  // namespace dcp::lease
