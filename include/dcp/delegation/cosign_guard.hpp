#pragma once
// cosign_guard: what a member of a quorum-signing group remembers of the
// permits it signed, so that it never signs one permit for two live grants.
//
// token.hpp says why that bounds a quorum-signed shard: two tokens that
// name one slot share an honest signer. An honest member signs slot s for
// grant G only if the last grant it signed s for is G itself (a renewal),
// has expired by its own wall clock plus twice the drift bound (past on
// every clock), or was released to this member by its holder (after which
// it signs no renewal of that grant). The group's
// replicated book decides which slots a grant takes, but the guard does not
// trust the book: a lying leader can log a release no holder sent, or a
// grant the book should have refused, and the honest members still refuse
// to sign it (slot_held).
//
// The guard lives in memory. A member that restarts may have signed slots
// before it crashed, so it signs nothing until every token it could have
// signed has expired: `quiet_until` = its start + the longest token life it
// signs + twice the drift bound (the group passes none for a member whose
// log is empty: it never signed anything). Tokens it is asked to sign that
// would live longer than that life are refused (invalid_token): a lying
// leader cannot make an honest member's signature outlast its memory.
//
// Memory: one entry per slot signed and not yet known to be free, slots
// below the share: at most the shares of the shards the member coordinates;
// and up to 4,096 releases per shard, each kept a token's life.
#include <algorithm>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <system_error>

#include "dcp/core/address.hpp"
#include "dcp/core/time.hpp"
#include "dcp/delegation/certificate.hpp"
#include "dcp/delegation/error.hpp"
#include "dcp/delegation/token.hpp"
#include "dcp/lease/error.hpp"

namespace dcp::delegation {

class cosign_guard {
 public:
  /// `max_token_life`: the longest a token this member signs may live;
  /// `quiet_until`: signs nothing before (see above).
  cosign_guard(duration max_token_life, duration max_drift, std::optional<wall_time> quiet_until = std::nullopt)
      : life_(max_token_life), drift_(max_drift), quiet_until_(quiet_until) {}

  /// Whether this member may sign `g` under certificate `c` at `now` (its
  /// wall clock); if so, remembers it as the holder of its slots. Errors:
  /// slot_held, not_coordinator (quiet after a restart), wrong_epoch,
  /// certificate_mismatch (another shard, or a slot past the share),
  /// lease::errc::invalid_token (a token living past max_token_life).
  /// The grant that keeps a slot from being signed: whom to ask whether it
  /// is done with it (group.hpp sends a release_query).
  struct holder_of_slot {
    std::uint64_t fencing = 0;
    address holder;
  };
  std::error_code sign_off(const certificate& c, const quorum_grant& g, wall_time now,
                           holder_of_slot* blocked_by = nullptr) {
    if (quiet_until_ && now < *quiet_until_) return make_error_code(errc::not_coordinator);
    if (g.token.resource != c.key() || g.slots.size() != g.token.permits)
      return make_error_code(errc::certificate_mismatch);
    if (g.token.expiry > now + life_ + drift_ || g.token.expiry > c.not_after)
      return lease::make_error_code(lease::errc::invalid_token);
    const std::uint32_t epoch = static_cast<std::uint32_t>(g.token.fencing >> 32);
    auto& sh = shards_[c.key()];
    if (epoch != c.epoch || epoch < sh.epoch) return make_error_code(errc::wrong_epoch);
    if (epoch > sh.epoch) {  // the origin starts an epoch only once every token of the last has expired
      sh.epoch = epoch;
      sh.slots.clear();
      sh.released.clear();
    }
    if (auto r = sh.released.find(g.token.fencing);
        r != sh.released.end() && r->second.first == g.token.holder && now < r->second.second)
      return make_error_code(errc::delegation_ended);  // its holder is done with it
    const auto cutoff = now - 2 * drift_;
    for (auto s : g.slots) {
      if (s >= c.share) return make_error_code(errc::certificate_mismatch);
      auto it = sh.slots.find(s);
      if (it != sh.slots.end() && it->second.fencing != g.token.fencing && it->second.expiry > cutoff) {
        if (blocked_by) *blocked_by = {it->second.fencing, it->second.holder};
        return make_error_code(errc::slot_held);
      }
    }
    for (auto s : g.slots) {
      auto& h = sh.slots[s];
      if (h.fencing == g.token.fencing)
        h.expiry = std::max(h.expiry, g.token.expiry);  // a renewal never shortens
      else
        h = {g.token.fencing, g.token.holder, g.token.expiry};
    }
    return {};
  }

  /// `holder` told this member at `now` that it is done with grant
  /// `fencing` of `shard`: the slots the member signed for it are free, and
  /// it signs no renewal of that grant again (one still in the log when the
  /// release came would otherwise lock the slots again for a token's life).
  void released(const std::string& shard, std::uint64_t fencing, const address& holder, wall_time now) {
    auto& sh = shards_[shard];
    std::erase_if(sh.slots, [&](auto& kv) { return kv.second.fencing == fencing && kv.second.holder == holder; });
    if (sh.released.size() >= max_released) {  // forget those past any renewal first, else the oldest
      std::erase_if(sh.released, [&](auto& kv) { return kv.second.second < now; });
      if (sh.released.size() >= max_released) sh.released.erase(sh.released.begin());
    }
    sh.released[fencing] = {holder, now + life_ + 2 * drift_};
  }

  /// Slots remembered (for tests and metrics).
  std::size_t remembered() const {
    std::size_t n = 0;
    for (auto& [k, sh] : shards_) n += sh.slots.size();
    return n;
  }

 private:
  struct held {
    std::uint64_t fencing = 0;
    address holder;
    wall_time expiry{};
  };
  struct shard {
    std::uint32_t epoch = 0;
    std::map<std::uint32_t, held> slots;
    std::map<std::uint64_t, std::pair<address, wall_time>>
        released;  // fencing -> (holder, until when a renewal is moot)
  };
  /// Releases remembered per shard (each is moot a token's life later).
  static constexpr std::size_t max_released = 4096;
  duration life_, drift_;
  std::optional<wall_time> quiet_until_;
  std::map<std::string, shard> shards_;
};

}  // namespace dcp::delegation
