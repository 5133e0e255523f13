#pragma once
// shard_coordinator: what one coordinator keeps for one delegated shard, and
// how it grants (no I/O: delegation::peer drives it).
//
// Concurrency and rate: a book of grants {holder, permits, expiry}, whose
// permits never sum past the certificate's share. A grant is a lease token
// signed with this coordinator's key (key id = epoch), for
// shard_key(resource, shard), with a fencing token unique across epochs
// (epoch << 32 | sequence) and an expiry never past the certificate's
// not_after. A holder renews (same fencing, later expiry). A release frees
// the permits at once: the holder releases at the origin first, after its
// last request, so the origin has stopped honouring the token; a holder that
// lies about it wastes permits (the origin refuses the next grant as over
// capacity until the old token expires) but cannot exceed the share.
// Expired grants free their permits.
//
// Stock: an allocation is reserved here, sent to the origin in the next
// batch, and confirmed (a receipt token) only once the origin has applied the
// batch; reservations die with the coordinator, confirmations do not.
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <utility>
#include <vector>

#include "dcp/core/address.hpp"
#include "dcp/core/result.hpp"
#include "dcp/core/time.hpp"
#include "dcp/delegation/certificate.hpp"
#include "dcp/delegation/token.hpp"
#include "dcp/delegation/messages.hpp"
#include "dcp/lease/keys.hpp"
#include "dcp/lease/token.hpp"

namespace dcp::delegation {

class shard_coordinator {
 public:
  shard_coordinator(certificate cert, bytes sealed_cert, lease::signing_key key)
      : cert_(std::move(cert)), sealed_(std::move(sealed_cert)), key_(std::move(key)) {}

  const certificate& cert() const noexcept { return cert_; }
  const bytes& sealed_certificate() const noexcept { return sealed_; }
  /// A renewed certificate of the same epoch (a new share, a later end).
  void renew(certificate c, bytes sealed) {
    cert_ = std::move(c);
    sealed_ = std::move(sealed);
  }

  /// A token for `permits` to `holder`, or share_exhausted / certificate_expired.
  result<bytes> grant(const address& holder, std::uint32_t permits, duration ttl, wall_time now) {
    expire(now);
    if (!cert_.valid_at(now)) return make_error_code(errc::certificate_expired);
    if (permits == 0 || in_use_ + permits > cert_.share) {
      unmet_ += permits;
      return make_error_code(errc::share_exhausted);
    }
    const std::uint64_t fencing = fencing_of(cert_.epoch, ++sequence_);
    const auto expiry = std::min(now + ttl, cert_.not_after);
    auto sealed = seal(holder, permits, fencing, expiry);
    if (!sealed) return sealed;
    grants_[fencing] = {holder, permits, expiry};
    by_expiry_.insert({expiry, fencing});
    in_use_ += permits;
    return sealed;
  }
  /// The same grant with a later expiry, if `holder` still has it.
  result<bytes> renew_grant(const address& holder, std::uint64_t fencing, duration ttl, wall_time now) {
    expire(now);
    auto it = grants_.find(fencing);
    if (!cert_.valid_at(now)) return make_error_code(errc::certificate_expired);
    if (it == grants_.end() || it->second.holder != holder) return make_error_code(errc::delegation_ended);
    const auto expiry = std::min(now + ttl, cert_.not_after);
    auto sealed = seal(holder, it->second.permits, fencing, std::max(expiry, it->second.expiry));
    if (sealed && expiry > it->second.expiry) {
      by_expiry_.erase({it->second.expiry, fencing});
      it->second.expiry = expiry;
      by_expiry_.insert({expiry, fencing});
    }
    return sealed;
  }
  /// The holder is done (and has released the token at the origin).
  void release(const address& holder, std::uint64_t fencing) {
    if (auto it = grants_.find(fencing); it != grants_.end() && it->second.holder == holder) forget(it);
  }
  /// Frees the grants expired by `now`: the expired ones are visited, not
  /// every grant (the owner calls this on every tick).
  void expire(wall_time now) {
    while (!by_expiry_.empty() && now >= by_expiry_.begin()->first) forget(grants_.find(by_expiry_.begin()->second));
  }
  std::uint64_t in_use() const noexcept { return in_use_; }
  /// The fencing token of the latest grant.
  std::uint64_t last_fencing() const noexcept { return fencing_of(cert_.epoch, sequence_); }
  /// The demand to report to the origin: what is held (or allocated) plus
  /// what was asked for and refused since the last report.
  std::uint64_t take_demand() noexcept {
    return (cert_.kind == capacity_kind::stock ? reserved_ : in_use_) + std::exchange(unmet_, 0);
  }

  // ---- stock ----

  enum class allocation_state { none, reserved, confirmed };
  /// Where (holder, request id) stands here: a retry must not reserve twice.
  allocation_state state_of(const msg::allocation& a) const {
    auto it = known_.find({a.holder, a.request_id});
    return it == known_.end() ? allocation_state::none : it->second;
  }
  /// Reserves `units` for (holder, request id): stock_exhausted if they do not fit.
  std::error_code reserve(const msg::allocation& a) {
    if (state_of(a) != allocation_state::none) return {};
    if (a.units == 0 || reserved_ + a.units > cert_.share) {
      unmet_ += a.units;
      return make_error_code(errc::stock_exhausted);
    }
    reserved_ += a.units;
    pending_.push_back(a);
    known_[{a.holder, a.request_id}] = allocation_state::reserved;
    return {};
  }
  void confirmed(const std::vector<msg::allocation>& batch) {
    for (auto& a : batch) known_[{a.holder, a.request_id}] = allocation_state::confirmed;
  }
  /// The next batch to commit (empty if none): everything reserved and not yet sent.
  std::pair<std::uint64_t, std::vector<msg::allocation>> next_batch(std::size_t max) {
    if (pending_.empty()) return {0, {}};
    const std::size_t n = std::min(max, pending_.size());
    std::vector<msg::allocation> batch(pending_.begin(), pending_.begin() + static_cast<std::ptrdiff_t>(n));
    pending_.erase(pending_.begin(), pending_.begin() + static_cast<std::ptrdiff_t>(n));
    return {++batches_, std::move(batch)};
  }
  /// A receipt for a confirmed allocation: a token the holder can show.
  result<bytes> receipt(const msg::allocation& a) {
    return lease::seal(stock_receipt(cert_, a.holder, a.request_id, a.units), key_);
  }
  /// A batch the origin refused: its units are free again.
  void unreserve(const std::vector<msg::allocation>& batch) {
    for (auto& a : batch) {
      reserved_ -= std::min<std::uint64_t>(reserved_, a.units);
      known_.erase({a.holder, a.request_id});
    }
  }

 private:
  struct grant_entry {
    address holder;
    std::uint32_t permits = 0;
    wall_time expiry{};
  };

  void forget(std::map<std::uint64_t, grant_entry>::iterator it) {
    in_use_ -= it->second.permits;
    by_expiry_.erase({it->second.expiry, it->first});
    grants_.erase(it);
  }

  result<bytes> seal(const address& holder, std::uint32_t permits, std::uint64_t fencing, wall_time expiry) {
    return lease::seal(lease::token{cert_.key(), holder, permits, fencing, expiry}, key_);
  }

  certificate cert_;
  bytes sealed_;
  lease::signing_key key_;
  std::map<std::uint64_t, grant_entry> grants_;
  std::set<std::pair<wall_time, std::uint64_t>> by_expiry_;  // the grants by (expiry, fencing)
  std::uint64_t in_use_ = 0, unmet_ = 0;
  std::uint32_t sequence_ = 0;
  std::uint64_t reserved_ = 0, batches_ = 0;
  std::vector<msg::allocation> pending_;
  std::map<std::pair<address, std::uint64_t>, allocation_state> known_;
};

}  // namespace dcp::delegation
