#pragma once
// delegation::ledger: a coordinator group's book of grants, as a replicated
// state machine (dcp::consensus::StateMachine) under the group's Raft log.
//
// Multi-delegation (group.hpp) makes r coordinators act as one: the leader
// proposes every grant, renewal and release to this ledger and signs a token
// only once its entry is committed, so every grant lives on a majority
// before anyone holds it. A leader that crashes takes nothing with it: the
// next leader applies the same entries and knows every permit that is out,
// and under the same certificate (which names every member's key) it renews
// those tokens and grants the rest of the share. That is what a single
// coordinator (coordinator.hpp) cannot give: its crash costs its shard a
// certificate's life.
//
// apply() is deterministic: it reads no clock. Time enters through the
// commands: the leader writes each grant's wall-clock expiry, and with every
// grant or renewal a `cutoff` (its wall clock minus twice the drift bound)
// before which every expiry is past on every member's clock; grants expired
// by then free their permits. So a new leader whose clock runs behind or
// ahead by the drift bound never counts a live grant as gone.
//
// A grant is idempotent per (holder, request nonce): a client that resends a
// request whose reply was lost (or that reaches a new leader) gets the same
// grant back, renewed, not a second one.
//
// Under a quorum-signed certificate (token.hpp) a grant also names its
// permits one by one: the smallest slots in [0, share) no live grant holds,
// a function of the book alone, so every member that applied the same
// entries names the same slots and signs the same token.
//
// Stock (units consumed for good): an allocation is reserved in the book
// (idempotent per (holder, request id)), then put into the shard's one open
// batch by an entry of its own, so the batch's id and contents are in the
// log: whichever member leads sends the origin exactly that batch until the
// origin answers, and the origin applies a batch id once. The answer is
// logged too (confirm, or unreserve when the origin refuses), and only a
// confirmed allocation earns its holder a receipt. So no confirmed
// allocation is lost with a leader, none is applied twice, and the origin
// hears one message per batch.
#include <algorithm>
#include <cstdint>
#include <iterator>
#include <map>
#include <set>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include <cereal/types/map.hpp>
#include <cereal/types/string.hpp>
#include <cereal/types/utility.hpp>

#include "dcp/core/address.hpp"
#include "dcp/core/assert.hpp"
#include "dcp/core/bytes.hpp"
#include "dcp/delegation/certificate.hpp"
#include "dcp/delegation/error.hpp"
#include "dcp/delegation/messages.hpp"
#include "dcp/delegation/token.hpp"
#include "dcp/storage/detail/codec.hpp"

namespace dcp::delegation {

class ledger {
 public:
  enum class op : std::uint8_t {
    certify = 1,  ///< the origin delegated (or renewed) the shard to the group: `sealed_certificate`, `cert`
    grant,        ///< `permits` to `holder` until `expiry`, for request `nonce`
    renew,        ///< grant `fencing` of `holder` until `expiry` (never earlier than it was)
    release,      ///< `holder` is done with grant `fencing`
    reserve,      ///< stock: `permits` units for (`holder`, `request_id`), once
    seal_batch,   ///< stock: the reservations not yet in a batch (up to `permits` of them) form the next batch
    confirm,      ///< stock: the origin applied batch `batch`
    unreserve,    ///< stock: the origin refused batch `batch`; its units are free again
  };
  struct command {
    op kind = op::grant;
    std::string key;  ///< shard_key(resource, shard)
    bytes sealed_certificate;
    certificate cert;
    address holder;
    std::uint32_t permits = 0;
    std::uint64_t nonce = 0, fencing = 0;
    std::int64_t expiry_ns = 0, cutoff_ns = 0;  ///< wall time since the Unix epoch
    std::uint64_t request_id = 0, batch = 0;    ///< stock
    template <class A> void serialize(A& ar) {
      ar(kind, key, sealed_certificate, cert, holder, permits, nonce, fencing, expiry_ns, cutoff_ns, request_id, batch);
    }
  };
  /// What a command did: code 0 (ok) with the grant's fencing token and
  /// expiry, or a delegation::errc (share_exhausted, delegation_ended,
  /// certificate_expired, unknown_shard).
  struct outcome {
    std::uint32_t code = 0;
    std::uint64_t fencing = 0;
    std::int64_t expiry_ns = 0;
    std::uint32_t permits = 0;  ///< the grant's (a renewal is for what was granted, not what was asked)
    bool confirmed = false;     ///< reserve: the allocation was confirmed by the origin already (a resend)
    std::uint64_t batch = 0;    ///< seal_batch: the batch formed (0: nothing to batch, or one is open)
    template <class A> void serialize(A& ar) { ar(code, fencing, expiry_ns, permits, confirmed, batch); }
  };

  struct grant_entry {
    address holder;
    std::uint32_t permits = 0;
    std::int64_t expiry_ns = 0;
    std::uint64_t nonce = 0;
    std::vector<std::uint32_t> slots;  ///< quorum-signed certificates: the permits, by number
    template <class A> void serialize(A& ar) { ar(holder, permits, expiry_ns, nonce, slots); }
  };
  /// A stock allocation of this epoch: batch 0 while reserved and not yet
  /// in a batch.
  struct stock_entry {
    std::uint32_t units = 0;
    std::uint64_t batch = 0;
    bool confirmed = false;
    template <class A> void serialize(A& ar) { ar(units, batch, confirmed); }
  };
  struct shard_book {
    bytes sealed_certificate;
    certificate cert;
    std::uint32_t sequence = 0;                                             ///< grants made in this epoch
    std::map<std::uint64_t, grant_entry> grants;                            ///< by fencing token
    std::uint64_t in_use = 0;                                               ///< permits of the grants above
    std::map<std::pair<address, std::uint64_t>, std::uint64_t> by_request;  ///< (holder, nonce) -> fencing
    std::map<std::pair<address, std::uint64_t>, stock_entry> stock;         ///< (holder, request id) -> allocation
    std::uint64_t stock_units = 0;  ///< units of the allocations above, reserved or confirmed
    std::uint64_t last_batch = 0;   ///< batch ids formed in this epoch
    std::uint64_t open_batch = 0;   ///< the batch the origin has not answered (0: none)
    /// The grants by (expiry, fencing): derived from `grants`, not stored
    /// (restore rebuilds it), so that live_permits costs the expired grants,
    /// not all of them.
    std::set<std::pair<std::int64_t, std::uint64_t>> by_expiry;
    /// The slots the grants hold (quorum-signed certificates), derived too.
    std::set<std::uint32_t> used_slots;
    /// The allocations not yet in a batch, and those of the open batch, in
    /// the book's order: derived from `stock` like by_expiry, so that forming
    /// and answering a batch cost the batch, not every allocation of the
    /// epoch (a leader looks for unbatched ones every batch period).
    std::set<std::pair<address, std::uint64_t>> unbatched;
    std::vector<std::pair<address, std::uint64_t>> in_open_batch;
    template <class A> void serialize(A& ar) {
      ar(sealed_certificate, cert, sequence, grants, in_use, by_request, stock, stock_units, last_batch, open_batch);
    }
    /// Permits held by grants that expire after `cutoff_ns`: what is in use
    /// now, whether or not an entry has collected the expired ones yet.
    std::uint64_t live_permits(std::int64_t cutoff_ns) const {
      std::uint64_t n = in_use;
      for (auto it = by_expiry.begin(); it != by_expiry.end() && it->first <= cutoff_ns; ++it)
        n -= grants.at(it->second).permits;
      return n;
    }
    /// The open batch's allocations, in the book's order (so every leader
    /// sends the same contents under the same id).
    std::vector<msg::allocation> open_batch_contents() const {
      std::vector<msg::allocation> out;
      out.reserve(in_open_batch.size());
      for (auto& k : in_open_batch) out.push_back({k.first, k.second, stock.at(k).units});
      return out;
    }
    /// Rebuilds what is derived from the stored fields.
    void derive() {
      by_expiry.clear();
      unbatched.clear();
      in_open_batch.clear();
      used_slots.clear();
      for (auto& [fencing, g] : grants) {
        by_expiry.insert({g.expiry_ns, fencing});
        used_slots.insert(g.slots.begin(), g.slots.end());
      }
      for (auto& [k, e] : stock) {
        if (e.batch == 0)
          unbatched.insert(k);
        else if (e.batch == open_batch)
          in_open_batch.push_back(k);
      }
    }
  };

  bytes apply(byte_view in) {
    command c;
    outcome out;
    if (storage::detail::decode_value(in, c))
      out.code = static_cast<std::uint32_t>(errc::unknown_shard);
    else
      out = run(c);
    bytes r;
    storage::detail::encode_value(out, r);
    return r;
  }
  bytes snapshot() const {
    bytes out;
    storage::detail::encode_value(books_, out);
    return out;
  }
  std::error_code restore(byte_view in) {
    std::map<std::string, shard_book> b;
    if (auto ec = storage::detail::decode_value(in, b)) return ec;
    for (auto& [key, book] : b) book.derive();
    books_ = std::move(b);
    return {};
  }

  /// The shard's book, if the group was ever delegated it.
  const shard_book* book(const std::string& key) const {
    auto it = books_.find(key);
    return it == books_.end() ? nullptr : &it->second;
  }
  static std::int64_t ns(wall_time t) noexcept { return t.time_since_epoch().count(); }

  /// The book's own consistency (DCP_ASSERT: a violation is a bug here, not
  /// bad input): the permits counted are the grants' permits, every grant is
  /// of the certificate's epoch and ends with it, and the request index
  /// names exactly the grants. The simulated tests call it after every event.
  void check_invariants() const {
    for (auto& [key, b] : books_) {
      std::uint64_t permits = 0, slots = 0;
      for (auto& [fencing, g] : b.grants) {
        permits += g.permits;
        DCP_ASSERT(fencing >> 32 == b.cert.epoch, "a grant of another epoch than the book's certificate");
        DCP_ASSERT((fencing & 0xffffffffu) <= b.sequence, "a fencing token the sequence has not reached");
        DCP_ASSERT(g.expiry_ns <= ns(b.cert.not_after), "a grant that outlives the certificate");
        DCP_ASSERT(b.by_expiry.contains({g.expiry_ns, fencing}), "a grant missing from the expiry index");
        auto r = b.by_request.find({g.holder, g.nonce});
        DCP_ASSERT(r != b.by_request.end() && r->second == fencing, "a grant missing from the request index");
        DCP_ASSERT(g.slots.size() == (b.cert.signers > 1 ? g.permits : 0), "a grant's slots are not its permits");
        slots += g.slots.size();
        for (auto s : g.slots) DCP_ASSERT(b.used_slots.contains(s), "a grant's slot missing from the slot index");
      }
      DCP_ASSERT(slots == b.used_slots.size(),
                 "two grants hold one slot, or the slot index names a slot no grant holds");
      DCP_ASSERT(permits == b.in_use, "in_use is not the sum of the grants' permits");
      DCP_ASSERT(b.by_request.size() == b.grants.size(), "the request index names grants that are gone");
      DCP_ASSERT(b.by_expiry.size() == b.grants.size(), "the expiry index names grants that are gone");
      std::uint64_t units = 0;
      std::size_t unbatched = 0, in_open = 0;
      for (auto& [k, e] : b.stock) {
        units += e.units;
        unbatched += e.batch == 0;
        in_open += e.batch != 0 && e.batch == b.open_batch;
        DCP_ASSERT((e.batch == 0) == b.unbatched.contains(k), "the unbatched index disagrees with the allocations");
        DCP_ASSERT(e.units > 0 && e.batch <= b.last_batch, "a stock allocation of no units, or in a batch not formed");
        DCP_ASSERT(!e.confirmed || e.batch != 0, "a confirmed allocation that was never in a batch");
        DCP_ASSERT(e.confirmed || e.batch == 0 || e.batch == b.open_batch,
                   "an unconfirmed allocation in a closed batch");
      }
      DCP_ASSERT(units == b.stock_units, "stock_units is not the sum of the allocations' units");
      DCP_ASSERT(unbatched == b.unbatched.size() && in_open == b.in_open_batch.size(),
                 "a batch index names allocations that are gone");
      for (auto& k : b.in_open_batch)
        DCP_ASSERT(b.stock.at(k).batch == b.open_batch, "the open batch's index names another batch's allocation");
      DCP_ASSERT(b.open_batch == 0 || b.open_batch == b.last_batch, "the open batch is not the last one formed");
    }
  }

 private:
  static void expire(shard_book& b, std::int64_t cutoff) {
    while (!b.by_expiry.empty() && b.by_expiry.begin()->first <= cutoff)
      forget(b, b.grants.find(b.by_expiry.begin()->second));
  }
  /// Moves grant `g` to a later expiry.
  static void extend(shard_book& b, std::uint64_t fencing, grant_entry& g, std::int64_t expiry_ns) {
    if (expiry_ns <= g.expiry_ns) return;
    b.by_expiry.erase({g.expiry_ns, fencing});
    g.expiry_ns = expiry_ns;
    b.by_expiry.insert({g.expiry_ns, fencing});
  }
  /// The `n` smallest slots no grant holds (there are enough below the
  /// share: in_use + n <= share and every grant holds one slot a permit).
  static std::vector<std::uint32_t> take_slots(shard_book& b, std::uint32_t n) {
    std::vector<std::uint32_t> out;
    out.reserve(n);
    std::uint32_t next = 0;
    for (auto used = b.used_slots.begin(); out.size() < n; ++next) {
      while (used != b.used_slots.end() && *used < next) ++used;
      if (used != b.used_slots.end() && *used == next) continue;
      out.push_back(next);
    }
    b.used_slots.insert(out.begin(), out.end());
    return out;
  }
  using grant_iterator = std::map<std::uint64_t, grant_entry>::iterator;
  static grant_iterator forget(shard_book& b, grant_iterator g) {
    b.in_use -= g->second.permits;
    b.by_request.erase({g->second.holder, g->second.nonce});
    b.by_expiry.erase({g->second.expiry_ns, g->first});
    for (auto s : g->second.slots) b.used_slots.erase(s);
    return b.grants.erase(g);
  }

  /// One function per command; each starts from the shard's book, its
  /// expired grants gone.
  outcome run(const command& c) {
    if (c.kind == op::certify) return certify(c);
    auto it = books_.find(c.key);
    if (it == books_.end() || it->second.cert.epoch == 0) return {static_cast<std::uint32_t>(errc::not_coordinator)};
    auto& b = it->second;
    expire(b, c.cutoff_ns);
    switch (c.kind) {
      case op::grant:
        return grant(b, c);
      case op::renew:
        return renew(b, c);
      case op::release:
        return release(b, c);
      case op::reserve:
        return reserve(b, c);
      case op::seal_batch:
        return seal_batch(b, c);
      case op::confirm:
      case op::unreserve:
        return close_batch(b, c);
      case op::certify:
        break;
    }
    return {static_cast<std::uint32_t>(errc::unknown_shard)};
  }

  outcome certify(const command& c) {
    auto& b = books_[c.key];
    if (c.cert.epoch < b.cert.epoch) return {static_cast<std::uint32_t>(errc::wrong_epoch)};
    if (c.cert.epoch > b.cert.epoch) b = shard_book{};  // a new epoch: the old grants are the origin's to wait out
    b.sealed_certificate = c.sealed_certificate;
    b.cert = c.cert;
    return {};
  }

  outcome grant(shard_book& b, const command& c) {
    const std::int64_t end = ns(b.cert.not_after);
    if (auto same = b.by_request.find({c.holder, c.nonce}); same != b.by_request.end()) {
      // A resend (its answer was lost, or it reached another leader):
      // the same grant, as fresh as a new one would be.
      auto& g = b.grants.at(same->second);
      extend(b, same->second, g, std::min(c.expiry_ns, end));
      return {0, same->second, g.expiry_ns, g.permits};
    }
    if (c.cutoff_ns >= end) return {static_cast<std::uint32_t>(errc::certificate_expired)};
    if (c.permits == 0 || b.in_use + c.permits > b.cert.share ||
        (b.cert.signers > 1 && c.permits > max_quorum_token_permits))
      return {static_cast<std::uint32_t>(errc::share_exhausted)};
    const std::uint64_t fencing = fencing_of(b.cert.epoch, ++b.sequence);
    const auto expiry = std::min(c.expiry_ns, end);
    b.grants[fencing] = {c.holder, c.permits, expiry, c.nonce,
                         b.cert.signers > 1 ? take_slots(b, c.permits) : std::vector<std::uint32_t>{}};
    b.by_request[{c.holder, c.nonce}] = fencing;
    b.by_expiry.insert({expiry, fencing});
    b.in_use += c.permits;
    return {0, fencing, expiry, c.permits};
  }

  outcome renew(shard_book& b, const command& c) {
    auto g = b.grants.find(c.fencing);
    if (g == b.grants.end() || g->second.holder != c.holder)
      return {static_cast<std::uint32_t>(errc::delegation_ended)};
    // A share renewed smaller: a grant holding a slot past it is not
    // renewed (its token would name a permit the share no longer has).
    if (!g->second.slots.empty() && *std::max_element(g->second.slots.begin(), g->second.slots.end()) >= b.cert.share)
      return {static_cast<std::uint32_t>(errc::delegation_ended)};
    extend(b, c.fencing, g->second, std::min(c.expiry_ns, ns(b.cert.not_after)));
    return {0, c.fencing, g->second.expiry_ns, g->second.permits};
  }

  outcome release(shard_book& b, const command& c) {
    auto g = b.grants.find(c.fencing);
    if (g != b.grants.end() && g->second.holder == c.holder) forget(b, g);
    return {};
  }

  outcome reserve(shard_book& b, const command& c) {
    if (auto e = b.stock.find({c.holder, c.request_id}); e != b.stock.end())  // a resend: where it stands
      return {0, 0, 0, e->second.units, e->second.confirmed, e->second.batch};
    if (c.cutoff_ns >= ns(b.cert.not_after)) return {static_cast<std::uint32_t>(errc::certificate_expired)};
    if (c.permits == 0 || b.stock_units + c.permits > b.cert.share)
      return {static_cast<std::uint32_t>(errc::stock_exhausted)};
    b.stock[{c.holder, c.request_id}] = {c.permits, 0, false};
    b.unbatched.insert({c.holder, c.request_id});
    b.stock_units += c.permits;
    return {0, 0, 0, c.permits};
  }

  outcome seal_batch(shard_book& b, const command& c) {
    if (b.open_batch != 0) return {0, 0, 0, 0, false, 0};  // one batch at a time: the origin answers it first
    std::uint32_t taken = 0;
    for (auto k = b.unbatched.begin(); k != b.unbatched.end() && taken < c.permits; ++taken) {
      b.stock.at(*k).batch = b.last_batch + 1;
      b.in_open_batch.push_back(*k);
      k = b.unbatched.erase(k);
    }
    if (taken == 0) return {};
    b.open_batch = ++b.last_batch;
    return {0, 0, 0, taken, false, b.open_batch};
  }

  /// confirm (the origin took the batch) or unreserve (it refused it).
  outcome close_batch(shard_book& b, const command& c) {
    if (c.batch == 0 || c.batch != b.open_batch)
      return {static_cast<std::uint32_t>(errc::duplicate_batch)};  // answered already
    for (auto& k : b.in_open_batch) {
      auto e = b.stock.find(k);
      if (c.kind == op::confirm) {
        e->second.confirmed = true;
      } else {
        b.stock_units -= e->second.units;
        b.stock.erase(e);
      }
    }
    b.in_open_batch.clear();
    b.open_batch = 0;
    return {};
  }

  std::map<std::string, shard_book> books_;
};

}  // namespace dcp::delegation
