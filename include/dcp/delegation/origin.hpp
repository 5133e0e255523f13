#pragma once
// delegation::origin: the resource server's side of delegation, the class a
// C++ service embeds (Env-driven like every dcp core).
//
// It holds the origin's Ed25519 key, the root of trust clients know. For each
// resource it has a capacity C of one kind (capacity.hpp), split into shards.
// A shard is delegated to whichever node asks first while it is free (the
// DHT owner of shard_key(resource, shard), in practice), or to a group of
// coordinators that acts as one by quorum (group.hpp: multi-delegation,
// asked for by its leader), by a certificate {resource, shard, share, epoch,
// validity, coordinators' keys}; the
// coordinator renews it every third of its validity, reporting the demand it
// saw, and the origin re-divides C max-min fairly by those demands (each
// shard's share moves when its coordinator renews, so a certificate always
// states what the origin will honour).
//
// Admission is offline: admit(token) is one table look-up (the shard, then
// the key of the epoch's coordinator that the token's key id names) and one
// signature check, no message to anyone.
// Then the back-stop: per shard a permit_counter (concurrency) or a window
// counter (rate) holds the shard to its share *whatever its coordinator
// grants*, so a lying or buggy coordinator can waste its own share but never
// exceed it, and shares always sum to at most C:
//   - a share that shrinks applies at once to new admissions (what is already
//     counted stays until it expires);
//   - a share grows only into capacity that no other shard holds or still
//     counts: cap(s) <= C - sum over t != s of max(cap(t), in_use(t)).
// (For rate, in_use is the current second's count, and a share that shrinks
// binds from the next second.)
// So at every instant the origin honours at most C, in every failure.
//
// Epochs never overlap: a shard whose coordinator is silent is delegated
// anew only after its certificate has ended plus the drift bound, and
// coordinators never sign a token that outlives their certificate (the
// origin clips one that does). Tokens of an ended epoch are refused
// (delegation_ended); of an epoch never issued, refused (wrong_epoch).
// The outage this costs in single delegation: a silent coordinator's shard
// grants nothing for at most the rest of its certificate's validity plus
// 2 x max_drift (docs/delegation.md).
//
// Stock: coordinators commit allocations in batches (one message per batch,
// not per unit); a batch is applied whole or not at all, once (by batch id),
// and each allocation once (by holder and request id), never past the share.
//
// Whom it believes: a delegate request or stock commit only when signed by
// the coordinator key it concerns (request_signature.hpp), a request only
// when fresh and newer than that coordinator's last; otherwise it is counted
// and left unanswered (stats().unauthenticated, stale_requests).
//
// Not thread-safe: like every dcp core, call it on its Env's executor.
#include <algorithm>
#include <cstdint>
#include <functional>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "dcp/core/env.hpp"
#include "dcp/delegation/capacity.hpp"
#include "dcp/delegation/certificate.hpp"
#include "dcp/delegation/error.hpp"
#include "dcp/delegation/messages.hpp"
#include "dcp/delegation/request_signature.hpp"
#include "dcp/delegation/token.hpp"
#include "dcp/lease/permit_gate.hpp"
#include "dcp/lease/verifier.hpp"

namespace dcp::delegation {

struct origin_config {
  std::vector<resource_spec> resources;
  duration certificate_validity = 10s;  ///< a delegation lasts this long unless renewed
  duration max_drift = 100ms;           ///< bound on |origin's wall clock - any coordinator's|
  std::size_t max_batch = 1024;         ///< allocations in one stock batch
  /// A delegate request sent longer ago than this (plus max_drift) is refused
  /// unanswered as stale: a recorded request cannot be replayed later. Each
  /// coordinator's requests must also be newer than its last accepted one.
  duration request_max_age = 5s;
  /// Who may coordinate a shard: called with the coordinators (address and
  /// public key; several for a group) before a new epoch is delegated to
  /// them. Unset: anyone who asks while the shard is free (clients of an
  /// open overlay coordinate; the back-stop still holds every shard to its
  /// share). Set it to an allow-list of registered keys where only known
  /// clients may hold a shard (docs/security.md).
  std::function<bool(const std::vector<coordinator_entry>&)> may_coordinate;

  void validate() const {
    if (resources.empty()) throw error(dcp::errc::invalid_config, "delegation::origin: no resources to delegate");
    std::set<std::string> names;
    for (auto& r : resources) {
      r.validate();
      if (!names.insert(r.name).second)
        throw error(dcp::errc::invalid_config, "delegation::origin: resource '" + r.name + "' is listed twice");
    }
    if (max_drift < duration::zero() || certificate_validity <= 4 * max_drift)
      throw error(dcp::errc::invalid_config,
                  "delegation::origin: certificate_validity must be above 4 x max_drift (renewals need room)");
    if (max_batch == 0) throw error(dcp::errc::invalid_config, "delegation::origin: max_batch must be >= 1");
    if (request_max_age <= duration::zero())
      throw error(dcp::errc::invalid_config, "delegation::origin: request_max_age must be positive");
  }
};

/// What the origin did, for its operator and the benchmarks.
struct origin_stats {
  std::uint64_t certificates = 0, renewals = 0, refused_delegations = 0;
  std::uint64_t admitted = 0, refused = 0, over_capacity = 0;
  std::uint64_t batches = 0, duplicate_batches = 0, allocations = 0;
  std::uint64_t messages_in = 0;
  std::uint64_t unauthenticated = 0;  ///< requests and commits not signed by the key they must be
  std::uint64_t stale_requests = 0;   ///< delegate requests too old, from the future, or replayed
};

template <Env E> class origin {
 public:
  using messages = msg::all;
  /// What it counts (env.count), declared: dcp/core/counter_set.hpp.
  static constexpr dcp::counter_set counters{
      {"group_request_not_from_member", "stock_batch_refused", "stock_commit_unauthenticated", "unexpected_message",
       "bad_delegate_request", "delegate_request_unauthenticated", "delegate_request_stale", "coordinator_not_allowed",
       "certificate_seal_failed", "token_refused"}};
  static constexpr std::string_view name = "delegation_origin";
  static constexpr protocol_id default_id = default_protocol_id;

  /// `key`: the origin's signing key (Ed25519 for certificates clients can check).
  origin(E env, lease::signing_key key, origin_config cfg)
      : env_(std::move(env)), key_(std::move(key)), cfg_(std::move(cfg)) {
    cfg_.validate();
    for (auto& r : cfg_.resources) {
      auto& res = resources_[r.name];
      res.spec = r;
      for (std::uint32_t s = 0; s < r.shards; ++s) {
        auto& sh = res.shards.emplace_back();
        sh.resource = r.name;
        sh.index = s;
        sh.owner = &res;
        sh.cap = r.capacity / r.shards + (s < r.capacity % r.shards ? 1 : 0);
        sh.counter.set_capacity(static_cast<std::uint32_t>(sh.cap));
        by_key_[shard_key(r.name, s)] = {&res, s};
      }
    }
  }
  origin(const origin&) = delete;
  origin& operator=(const origin&) = delete;

  void start() {}

  // ---- admission: offline, one look-up and one signature check ----

  /// Checks a token presented with a request and, for concurrency, counts its
  /// permits; for rate, counts one request. On error nothing changes.
  /// `presented_by`: the (authenticated) address the request came from; a
  /// token is honoured only from its holder (wrong_holder), so a token seen
  /// on the wire is worth nothing to anyone else.
  result<lease::token> admit(byte_view sealed, wall_time now, std::optional<address> presented_by = std::nullopt) {
    shard_state* sh = nullptr;
    // The shard the token names, and its signer's key (see token.hpp).
    auto key_of = [&](const lease::token& t, std::uint32_t epoch,
                      std::size_t member) -> result<const lease::verification_key*> {
      auto it = by_key_.find(t.resource);
      if (it == by_key_.end()) return make_error_code(errc::unknown_shard);
      sh = &it->second.first->shards[it->second.second];
      if (epoch == 0 || epoch > sh->epoch) return make_error_code(errc::wrong_epoch);
      if (epoch != sh->epoch || sh->keys.empty() || now >= sh->not_after)
        return make_error_code(errc::delegation_ended);
      if (member >= sh->keys.size()) return make_error_code(errc::wrong_epoch);
      return &sh->keys[member];
    };
    lease::token t;
    if (is_quorum_signed(sealed)) {
      auto q = open_quorum_token(sealed, [&](const quorum_grant& g, std::uint32_t epoch, std::size_t member) {
        return key_of(g.token, epoch, member);
      });
      if (!q) return refuse(q.error());
      if (q->signers < sh->signers) return refuse(make_error_code(errc::too_few_signers));
      if (std::any_of(q->grant.slots.begin(), q->grant.slots.end(), [&](std::uint32_t s) { return s >= sh->cap; }))
        return refuse(lease::make_error_code(lease::errc::over_capacity));
      t = std::move(q->grant.token);
    } else {
      auto u = lease::unseal_with(sealed, [&](const lease::token& tok, std::uint32_t key_id) {
        return key_of(tok, key_id & max_epoch,
                      key_id >> 24);  // the key id names the epoch and which coordinator signed
      });
      if (!u) return refuse(u.error());
      if (sh->signers > 1)
        return refuse(make_error_code(errc::too_few_signers));  // one member's word is not enough here
      t = std::move(u->token);
    }
    if (presented_by && t.holder != *presented_by) return refuse(make_error_code(errc::wrong_holder));
    // A token never outlives its delegation, whatever its coordinator wrote.
    t.expiry = std::min(t.expiry, sh->not_after);
    if (lease::is_expired(t, now, cfg_.max_drift)) return refuse(lease::make_error_code(lease::errc::expired));
    const auto deadline = lease::verifier_deadline(t, cfg_.max_drift);
    if (sh->kind() == capacity_kind::rate) {
      if (auto ec = sh->count_request(t, deadline, now)) return refuse(ec);
      ++stats_.admitted;
      return t;
    }
    if (sh->kind() != capacity_kind::concurrency) return refuse(make_error_code(errc::unknown_shard));
    auto r = sh->counter.admit(std::move(t), deadline, now);
    if (!r) return refuse(r.error());
    ++stats_.admitted;
    return r;
  }

  /// The holder of a concurrency token is done (after its last request): its
  /// permits are free here, and the token is refused from now on.
  bool release(const lease::token& t) {
    auto it = by_key_.find(t.resource);
    return it != by_key_.end() && it->second.first->shards[it->second.second].counter.release(t.fencing);
  }

  // ---- observation ----

  /// Permits honoured now across the resource's shards (concurrency).
  std::uint64_t in_use(std::string_view resource, wall_time now) {
    std::uint64_t n = 0;
    if (auto it = resources_.find(resource); it != resources_.end())
      for (auto& sh : it->second.shards) n += sh.counter.in_use(now);
    return n;
  }
  /// Units allocated for good (stock), each (holder, request id) once.
  std::uint64_t allocated(std::string_view resource) const {
    std::uint64_t n = 0;
    if (auto it = resources_.find(resource); it != resources_.end())
      for (auto& sh : it->second.shards) n += sh.allocated;
    return n;
  }
  /// Every allocation the origin has confirmed for a resource: (holder, request id) -> units.
  std::map<std::pair<address, std::uint64_t>, std::uint32_t> allocations(std::string_view resource) const {
    std::map<std::pair<address, std::uint64_t>, std::uint32_t> out;
    if (auto it = resources_.find(resource); it != resources_.end())
      for (auto& sh : it->second.shards) out.insert(sh.allocations.begin(), sh.allocations.end());
    return out;
  }
  /// The share shard `s` may be granted now (its cap), and its current epoch.
  std::uint64_t share(std::string_view resource, std::uint32_t shard) const {
    auto* sh = const_cast<origin*>(this)->find(resource, shard);
    return sh ? sh->cap : 0;
  }
  std::uint32_t epoch(std::string_view resource, std::uint32_t shard) const {
    auto* sh = const_cast<origin*>(this)->find(resource, shard);
    return sh ? sh->epoch : 0;
  }
  const origin_stats& stats() const noexcept { return stats_; }
  lease::verification_key public_key() const { return key_.to_verification_key(); }

  // ---- messages ----

  void on_message(const address& from, const msg::delegate_request& m) {
    delegate(from, m.resource, m.shard, {{from, m.public_key}}, m.demand, m.sent_at, m.signature);
  }
  /// A group of coordinators asks (through whichever member leads it) for
  /// the shard: one certificate names them all, and any member renews it.
  void on_message(const address& from, const msg::group_delegate_request& m) {
    if (!std::any_of(m.members.begin(), m.members.end(), [&](auto& c) { return c.addr == from; })) {
      ++stats_.messages_in;
      env_.count("group_request_not_from_member");
      return void(env_.send(from,
                            msg::delegate_reply{m.resource,
                                                m.shard,
                                                status::refused,
                                                static_cast<std::uint32_t>(errc::unknown_shard),
                                                {},
                                                0,
                                                std::nullopt}));
    }
    delegate(from, m.resource, m.shard, m.members, m.demand, m.sent_at, m.signature);
  }

  void on_message(const address& from, const msg::stock_commit& m) {
    ++stats_.messages_in;
    msg::stock_ack out{m.resource, m.shard, m.batch, status::ok, 0};
    auto* sh = find(m.resource, m.shard);
    const auto now = env_.wall_now();
    auto refuse_batch = [&](errc why, status code = status::refused) {
      env_.count("stock_batch_refused");
      out.code = code;
      out.error = static_cast<std::uint32_t>(why);
      env_.send(from, out);
    };
    if (!sh || sh->kind() != capacity_kind::stock) return refuse_batch(errc::unknown_shard);
    // Only a coordinator of the current epoch (in a group, whichever member
    // leads: the batch is the group's, from its log), while its delegation
    // lasts, commits.
    const auto member =
        std::find_if(sh->coordinators.begin(), sh->coordinators.end(), [&](auto& c) { return c.addr == from; });
    if (m.epoch != sh->epoch || member == sh->coordinators.end() || now >= sh->not_after)
      return refuse_batch(errc::delegation_ended);
    // Not signed by that coordinator's key: not the coordinator, whatever
    // address it claims. Unanswered, so a forger cannot refuse the real
    // coordinator's batch in its name.
    if (!commit_signed_by(sh->coordinator_keys[static_cast<std::size_t>(member - sh->coordinators.begin())], from, m)) {
      ++stats_.unauthenticated;
      return env_.count("stock_commit_unauthenticated");
    }
    if (m.allocations.empty() || m.allocations.size() > cfg_.max_batch) return refuse_batch(errc::unknown_shard);
    if (sh->batches.contains(m.batch)) {
      ++stats_.duplicate_batches;
      out.error = static_cast<std::uint32_t>(errc::duplicate_batch);
      return void(env_.send(from, out));  // applied already: the same answer
    }
    std::uint64_t adding = 0;
    for (auto& a : m.allocations) {
      if (a.units == 0) return refuse_batch(errc::unknown_shard);
      if (!sh->allocations.contains({a.holder, a.request_id})) adding += a.units;
    }
    if (sh->allocated + adding > sh->cap) return refuse_batch(errc::stock_exhausted);
    for (auto& a : m.allocations)
      if (sh->allocations.emplace(std::pair{a.holder, a.request_id}, a.units).second) {
        sh->allocated += a.units;
        ++stats_.allocations;
      }
    sh->batches.insert(m.batch);
    ++stats_.batches;
    env_.send(from, out);
  }

  // Messages meant for peers.
  template <class M> void on_message(const address&, const M&) {
    ++stats_.messages_in;
    env_.count("unexpected_message");
  }

 private:
  void delegate(const address& from, const std::string& resource, std::uint32_t shard,
                std::vector<coordinator_entry> members, std::uint64_t demand, std::int64_t sent_at,
                const bytes& signature) {
    ++stats_.messages_in;
    msg::delegate_reply out{resource, shard, status::ok, 0, {}, 0, std::nullopt};
    auto* sh = find(resource, shard);
    std::vector<lease::ed25519_public_key> pks;
    for (auto& c : members)
      if (auto pk = lease::ed25519_public_key::from_bytes(c.public_key)) pks.push_back(*pk);
    const bool well_formed = !members.empty() && members.size() <= max_coordinators && pks.size() == members.size();
    if (!sh || !well_formed || sh->epoch >= max_epoch) {
      env_.count("bad_delegate_request");
      out.code = status::refused;
      out.error = static_cast<std::uint32_t>(errc::unknown_shard);
      return void(env_.send(from, out));
    }
    const auto now = env_.wall_now();
    // Believe the request only when the sender's own key signed it, lately,
    // and after anything it signed before (request_signature.hpp). Refused
    // unanswered: an answer would go to the address the forger claimed.
    const auto signer = static_cast<std::size_t>(
        std::find_if(members.begin(), members.end(), [&](auto& c) { return c.addr == from; }) - members.begin());
    if (!request_signed_by(pks[signer], resource, shard, members, demand, sent_at, signature)) {
      ++stats_.unauthenticated;
      return env_.count("delegate_request_unauthenticated");
    }
    const auto now_ns = detail::wall_ns(now);
    const auto drift_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(cfg_.max_drift).count();
    const auto max_age_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(cfg_.request_max_age).count();
    const bool same_coordinators = sh->coordinators == members;
    if (sent_at > now_ns + drift_ns || sent_at < now_ns - drift_ns - max_age_ns ||
        (same_coordinators && sent_at <= sh->last_request[signer])) {
      ++stats_.stale_requests;
      return env_.count("delegate_request_stale");
    }
    // The same coordinators (the same keys: a node that restarted has a new
    // one) renew, through any of them; anyone else waits for the epoch to end.
    const bool renewal = same_coordinators && now < sh->not_after;
    if (!renewal && !sh->keys.empty() && now < sh->not_after + 2 * cfg_.max_drift) {
      // Held by another, or by this node under another key (it restarted):
      // a new epoch only once no token of the old one can be honoured.
      ++stats_.refused_delegations;
      out.code = status::retry;
      out.error = static_cast<std::uint32_t>(errc::shard_delegated);
      out.retry_after_ms = static_cast<std::uint32_t>(
          std::chrono::duration_cast<std::chrono::milliseconds>(sh->not_after + 2 * cfg_.max_drift - now).count() + 1);
      out.coordinator = sh->coordinators.front().addr;
      out.certificate = sh->sealed;  // every member of the group that holds it: the asker can send clients to one alive
      return void(env_.send(from, out));
    }
    auto& res = resources_.find(resource)->second;
    if (!renewal && cfg_.may_coordinate && !cfg_.may_coordinate(members)) {
      ++stats_.refused_delegations;
      env_.count("coordinator_not_allowed");
      out.code = status::refused;
      out.error = static_cast<std::uint32_t>(errc::not_allowed);
      return void(env_.send(from, out));
    }
    sh->demand = std::min<std::uint64_t>(demand, res.spec.capacity);
    rebalance(res, shard, now);
    if (renewal) {
      ++stats_.renewals;
    } else {
      ++stats_.certificates;
      ++sh->epoch;
      sh->coordinators = std::move(members);
      sh->keys.clear();
      for (std::size_t i = 0; i < pks.size(); ++i) sh->keys.emplace_back(pks[i], group_key_id(sh->epoch, i));
      sh->coordinator_keys = std::move(pks);
      sh->last_request.assign(sh->coordinators.size(), std::numeric_limits<std::int64_t>::min());
      sh->not_before = now;
      sh->batches.clear();  // batch ids are per epoch
    }
    sh->last_request[signer] = sent_at;
    sh->not_after = now + cfg_.certificate_validity;
    const auto n = static_cast<std::uint32_t>(sh->coordinators.size());
    const bool quorum_signed = res.spec.quorum_signed && n > 1;
    sh->signers = quorum_signed ? signing_quorum(n) : 1;
    certificate c{sh->resource,  sh->index,        sh->kind(),
                  sh->cap,       sh->epoch,        sh->not_before,
                  sh->not_after, sh->coordinators, quorum_signed ? sh->signers : n / 2 + 1,
                  sh->signers};
    auto sealed = seal_certificate(c, key_);
    if (!sealed) {
      env_.count("certificate_seal_failed");
      out.code = status::refused;
      out.error = static_cast<std::uint32_t>(errc::bad_certificate);
      return void(env_.send(from, out));
    }
    sh->sealed = *sealed;
    out.certificate = std::move(*sealed);
    env_.send(from, out);
  }

  struct resource_state;
  struct shard_state {
    std::string resource;
    std::uint32_t index = 0;
    const resource_state* owner = nullptr;
    std::uint64_t cap = 0;     // the share: what may be honoured (or granted) now
    std::uint64_t demand = 0;  // last reported by its coordinator
    std::uint32_t epoch = 0;
    std::vector<coordinator_entry> coordinators;              // of the current epoch; [0] alone in single delegation
    std::vector<lease::verification_key> keys;                // theirs, key id group_key_id(epoch, position)
    std::vector<lease::ed25519_public_key> coordinator_keys;  // the same, for their requests and commits
    std::vector<std::int64_t> last_request;                   // sent_at of each one's last accepted request, this epoch
    std::uint32_t signers = 1;                                // members whose signatures a token needs (token.hpp)
    wall_time not_before{}, not_after{};
    bytes sealed;                      // the last certificate issued
    lease::permit_counter counter{0};  // concurrency
    std::int64_t window = 0;           // rate: the wall-clock second being counted
    std::uint64_t window_count = 0;
    std::map<std::uint64_t, std::pair<std::int64_t, std::uint64_t>> per_token;  // rate: fencing -> (second, count)
    std::map<std::uint64_t, wall_time> token_deadline;                          // rate: when to forget a fencing
    std::uint64_t allocated = 0;                                                // stock
    std::map<std::pair<address, std::uint64_t>, std::uint32_t> allocations;
    std::set<std::uint64_t> batches;

    capacity_kind kind() const;

    /// Rate: at most cap requests in each wall-clock second over the shard,
    /// and at most `permits` per second for each token.
    std::error_code count_request(const lease::token& t, wall_time deadline, wall_time now) {
      const auto second = std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count();
      if (second != window) {
        window = second;
        window_count = 0;
        std::erase_if(token_deadline, [&](auto& kv) {
          if (now < kv.second) return false;
          per_token.erase(kv.first);
          return true;
        });
      }
      auto& [tw, tc] = per_token[t.fencing];
      if (tw != second) tw = second, tc = 0;
      if (window_count + 1 > cap || tc + 1 > t.permits) {
        if (tc == 0) per_token.erase(t.fencing);
        return lease::make_error_code(lease::errc::over_capacity);
      }
      auto& d = token_deadline[t.fencing];
      d = std::max(d, deadline);
      ++window_count;
      ++tc;
      return {};
    }
    std::uint64_t held(wall_time now) {
      if (kind() == capacity_kind::concurrency) return counter.in_use(now);
      if (kind() == capacity_kind::stock) return allocated;
      return 0;  // rate: a window of one second; a lower cap holds from the next second
    }
  };
  struct resource_state {
    resource_spec spec;
    std::vector<shard_state> shards;
  };

  shard_state* find(std::string_view resource, std::uint32_t shard) {
    auto it = resources_.find(resource);
    if (it == resources_.end() || shard >= it->second.shards.size()) return nullptr;
    return &it->second.shards[shard];
  }

  result<lease::token> refuse(std::error_code ec) {
    ++stats_.refused;
    if (ec == lease::errc::over_capacity) ++stats_.over_capacity;
    env_.count("token_refused");
    return ec;
  }

  /// Max-min fair targets by reported demand, what nobody wants spread
  /// evenly (a stock's shares only grow, into room no shard holds). Only
  /// the asking shard's share moves (its coordinator hears of it now, so a
  /// certificate's share is always what the origin honours): down
  /// to its target at once, up to it only into room that no other shard holds
  /// or still counts, so the shares (and what a shard still holds above its
  /// share) never sum past C.
  void rebalance(resource_state& res, std::uint32_t asking, wall_time now) {
    const std::uint64_t C = res.spec.capacity;
    std::vector<std::uint64_t> wants;
    for (auto& sh : res.shards) wants.push_back(std::max<std::uint64_t>(sh.demand, 1));
    // Whole units leave a remainder of a unit each for some shards. Those
    // that hold one now keep it (max_min_fair's `now`): given by largest
    // wants, a unit would move with every report, and a unit taken away
    // idles until another shard's next renewal takes it up (1% of C in
    // delegation_surge). Only shards whose coordinators renew (every third
    // of the validity) keep theirs: a silent one's share stays until its
    // certificate ends, unused.
    std::vector<std::uint64_t> holding;
    for (auto& x : res.shards) holding.push_back(x.not_after - now >= cfg_.certificate_validity / 2 ? x.cap : 0);
    auto target = max_min_fair(C, wants, holding);
    std::uint64_t given = 0;
    for (auto t : target) given += t;
    const std::uint64_t n = res.shards.size();
    for (std::size_t i = 0; i < n; ++i) target[i] += (C - given) / n + (i < (C - given) % n ? 1 : 0);
    auto& sh = res.shards[asking];
    if (target[asking] <= sh.cap) {
      // A stock's share is never lowered. Its clients walk the shards
      // (peer::acquire_stock), so units a shard has not sold are found where
      // they are, and demand it could not meet was met at another shard;
      // moved away they would wait, unasked, for another shard's renewal.
      if (res.spec.kind != capacity_kind::stock) sh.cap = target[asking];
    } else {
      std::uint64_t others = 0;
      for (std::size_t j = 0; j < n; ++j)
        if (j != asking) others += std::max(res.shards[j].cap, res.shards[j].held(now));
      const std::uint64_t room = C > others ? C - others : 0;
      sh.cap = std::max(sh.cap, std::min(target[asking], room));
    }
    sh.counter.set_capacity(static_cast<std::uint32_t>(sh.cap));
  }

  E env_;
  lease::signing_key key_;
  origin_config cfg_;
  std::map<std::string, resource_state, std::less<>> resources_;
  std::map<std::string, std::pair<resource_state*, std::uint32_t>, std::less<>> by_key_;
  origin_stats stats_;
};

template <Env E> capacity_kind origin<E>::shard_state::kind() const {
  return owner ? owner->spec.kind : capacity_kind::concurrency;
}

}  // namespace dcp::delegation
