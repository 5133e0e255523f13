#pragma once
// coord::machine: the replicated state of the coordination service.
//
// A deterministic StateMachine (dcp::consensus) holding sessions and what
// they hold or wait for. Every primitive is one of three shapes:
//   - a semaphore of k permits (a mutex is k = 1; an election is a mutex
//     whose holder is the leader and carries a value): acquire, try-acquire,
//     release, with a FIFO queue of waiters;
//   - a barrier of n parties: enter returns when n sessions have entered;
//   - the leave phase of a double barrier: leave returns when every session
//     that passed the enter phase has left (or lost its session);
//   - a small key-value store (put, append, compare-and-set; get is a
//     ReadIndex read on the server): configuration and service discovery
//     data, the way etcd and ZooKeeper keep them. Its writes need no
//     session: the log's client sessions already apply each one once.
//
// Fencing: every grant takes the next value of one counter that lives in the
// replicated state, so tokens only grow, across failover and restarts, and
// later grants always carry larger tokens.
// Release names the grant's token: a retried or late release of an old grant
// never releases a newer one.
//
// Lease tokens (coord/server.hpp): a token for a grant lets a resource server
// honour the holder offline until the token expires, whatever the service
// does meanwhile. So a grant for which a token was issued (lease_issued, in
// the log before the token leaves the leader) is not handed on by a voluntary
// release or close: the holder is gone from the session at once, but its
// permit stays taken ("draining") until the leader, once the token has
// expired in its clock, proposes reclaim. A grant without a token is handed
// on at once, and an expired session's grants too (its tokens expired first). Expiring a session removes its waiters in the
// same step that releases its grants, so a waiter whose session expired is
// never granted.
#include <algorithm>
#include <cstdint>
#include <deque>
#include <map>
#include <set>
#include <string>
#include <system_error>
#include <vector>

#include <cereal/types/deque.hpp>
#include <cereal/types/map.hpp>
#include <cereal/types/set.hpp>
#include <cereal/types/string.hpp>
#include <cereal/types/vector.hpp>

#include "dcp/core/address.hpp"
#include "dcp/core/assert.hpp"
#include "dcp/core/bytes.hpp"
#include "dcp/storage/detail/codec.hpp"

namespace dcp::coord {

using session_id = std::uint64_t;
using fencing_token = std::uint64_t;

enum class op : std::uint8_t {
  open_session = 1,
  close_session,
  expire_session,  ///< proposed by the leader when a session's TTL ran out
  acquire,         ///< semaphore/mutex/election; `wait` false is try-acquire
  release,         ///< names the grant's fencing token
  barrier_enter,
  barrier_leave,
  put,             ///< key `name` := `value` (no session needed)
  append,          ///< key `name` := its value (empty if missing) followed by `value`
  compare_and_set, ///< key `name` := `value` if its value (empty if missing) is `expected`
  lease_issued,    ///< proposed by the leader before it sends the first lease token for grant (name, fencing)
  reclaim,         ///< proposed by the leader: a released grant's token has expired; its permit is free
};

/// Bounds on the key-value store's entries. The whole state travels in one
/// snapshot (sent in chunks), within raft_config::max_snapshot_bytes.
inline constexpr std::size_t max_key_bytes = 512;
inline constexpr std::size_t max_value_bytes = 64 * 1024;

struct request {
  op kind = op::open_session;
  session_id session = 0;
  std::string name;            ///< the resource, election or barrier
  std::uint32_t permits = 1;   ///< semaphore size k (1: mutex, election); barrier: parties n
  bool wait = true;
  fencing_token fencing = 0;   ///< release: which grant
  std::uint64_t ttl_ms = 0;    ///< open_session
  bytes value;                 ///< campaign: the candidate's value; put, append, compare_and_set: the value
  bytes expected;              ///< compare_and_set: the value the key must hold
  std::uint64_t secret = 0;    ///< the session's secret (open_session: chosen by the client); every
                               ///< request under a session must carry it, so a session is its owner's alone
  address owner;               ///< open_session: where its owner is (set by the replica from the transport, never the client's
                               ///< say), so that any later leader can tell it of a grant at once
  template <class A> void serialize(A& ar) { ar(kind, session, name, permits, wait, fencing, ttl_ms, value, expected, secret, owner); }
};

enum class status : std::uint8_t {
  ok = 0,
  granted,        ///< fencing holds the token
  queued,         ///< waiting: the grant will show in the session's state
  busy,           ///< try-acquire of a resource at capacity
  not_held,       ///< release of a grant the session does not hold (already released, or a stale token)
  no_session,     ///< the session expired or never existed
  bad_request,    ///< e.g. a semaphore used with two different sizes, a barrier of 0 parties,
                  ///< a key or value over max_key_bytes / max_value_bytes
  mismatch,       ///< compare_and_set: the key did not hold the expected value; nothing changed
};

struct reply {
  status code = status::ok;
  fencing_token fencing = 0;
  session_id session = 0;
  std::uint64_t generation = 0;  ///< barriers: the generation this enter/leave belongs to
  template <class A> void serialize(A& ar) { ar(code, fencing, session, generation); }
};

/// A grant as the holder sees it.
struct grant {
  std::string name;
  fencing_token fencing = 0;
  template <class A> void serialize(A& ar) { ar(name, fencing); }
  bool operator==(const grant&) const = default;
};

/// What a keepalive answer tells a session about itself.
struct session_view {
  bool alive = false;
  std::vector<grant> holds;
  std::map<std::string, std::uint64_t> barriers_passed;  ///< barrier name -> last generation passed (enter: 2g+1, leave: 2g+2)
  template <class A> void serialize(A& ar) { ar(alive, holds, barriers_passed); }
};

struct holder {
  session_id session = 0;
  fencing_token fencing = 0;
  bytes value;
  template <class A> void serialize(A& ar) { ar(session, fencing, value); }
  bool operator==(const holder&) const = default;
};

class machine {
 public:
  bytes apply(byte_view in) {
    touched_.clear();
    request r;
    reply out;
    if (storage::detail::decode_value(in, r)) out.code = status::bad_request;
    else out = execute(r);
    bytes b;
    storage::detail::encode_value(out, b);
    return b;
  }
  bytes snapshot() const {
    bytes b;
    storage::detail::encode_value(*this, b);
    return b;
  }
  /// Replaces the state with a snapshot's; on bytes that do not decode, an
  /// error and the state unchanged (Raft then stops this replica, loudly).
  std::error_code restore(byte_view s) {
    machine m;
    if (auto ec = storage::detail::decode_value(s, m)) return ec;
    *this = std::move(m);
    return {};
  }

  /// Asserts (DCP_ASSERT) what every apply() leaves true: the tests call
  /// it after every event on every replica. O(state); a no-op when
  /// assertions are off.
  void check_invariants() const {
#if DCP_ASSERTIONS
    for (const auto& [session_id, session] : sessions_) {
      const auto id = session_id;  // a structured binding cannot be captured before C++20's P1091 (clang 15)
      DCP_ASSERT(id != 0 && id <= next_session_, "session ids come from the counter");
      for (const auto& [name, f] : session.holds) {
        auto it = sems_.find(name);
        DCP_ASSERT(it != sems_.end() && std::count_if(it->second.holders.begin(), it->second.holders.end(),
                                                      [&](const holder& h) { return h.session == id; }) == 1,
                   "a session holds a semaphore once");
        (void)f;  // its token is checked from the holder's side below
      }
    }
    for (const auto& [name, sem] : sems_) {
      DCP_ASSERT(!sem.idle(), "an idle semaphore is forgotten");
      DCP_ASSERT(sem.taken() <= sem.permits, "no more permits taken than the semaphore has");
      DCP_ASSERT(sem.waiters.empty() || sem.taken() == sem.permits, "no one waits while a permit is free (FIFO grants)");
      for (const auto& h : sem.holders) {
        auto it = sessions_.find(h.session);
        DCP_ASSERT(it != sessions_.end() && it->second.holds.contains(name) && it->second.holds.at(name) == h.fencing,
                   "a holder's session exists and holds the grant");
        DCP_ASSERT(h.fencing != 0 && h.fencing <= fencing_, "fencing tokens come from the counter");
      }
      for (auto f : sem.leased)
        DCP_ASSERT(std::any_of(sem.holders.begin(), sem.holders.end(), [f](const holder& h) { return h.fencing == f; }),
                   "a lease was issued for a current holder's grant");
      for (const auto& d : sem.draining) DCP_ASSERT(d.fencing <= fencing_, "draining tokens come from the counter");
      for (const auto& w : sem.waiters) {
        DCP_ASSERT(sessions_.contains(w.session), "an expired session waits for nothing");
        DCP_ASSERT(std::count_if(sem.waiters.begin(), sem.waiters.end(), [&](const waiter& o) { return o.session == w.session; }) == 1,
                   "a session waits once per semaphore");
      }
    }
    for (const auto& [name, b] : barriers_) {
      DCP_ASSERT(b.parties == 0 || b.entered.size() < b.parties, "a full barrier has passed its enter phase");
      for (auto s : b.left) DCP_ASSERT(b.inside.contains(s), "only a session inside the barrier leaves it");
    }
#endif
  }

  // ---- reads (serve them after a ReadIndex) ----

  bool has_session(session_id s) const { return sessions_.contains(s); }
  std::uint64_t ttl_ms(session_id s) const {
    auto it = sessions_.find(s);
    return it == sessions_.end() ? 0 : it->second.ttl_ms;
  }
  /// Where session `s`'s owner was when it opened it (null: no such session).
  const address* owner(session_id s) const {
    auto it = sessions_.find(s);
    return it == sessions_.end() ? nullptr : &it->second.owner;
  }
  std::vector<session_id> sessions() const {
    std::vector<session_id> out;
    for (auto& [id, s] : sessions_) out.push_back(id);
    return out;
  }
  /// What session `id` holds, for its owner only: a wrong secret sees a dead session.
  session_view view(session_id id, std::uint64_t secret) const {
    session_view v;
    auto it = sessions_.find(id);
    if (it == sessions_.end() || it->second.secret != secret) return v;
    v.alive = true;
    for (auto& [name, f] : it->second.holds) v.holds.push_back({name, f});
    v.barriers_passed = it->second.passed;
    return v;
  }
  /// The holders of a semaphore, oldest grant first (an election's leader is the first).
  std::vector<holder> holders(const std::string& name) const {
    auto it = sems_.find(name);
    return it == sems_.end() ? std::vector<holder>{} : it->second.holders;
  }
  fencing_token last_fencing() const noexcept { return fencing_; }
  /// The value of `key`, or null if it was never written.
  const bytes* value(const std::string& key) const {
    auto it = kv_.find(key);
    return it == kv_.end() ? nullptr : &it->second;
  }
  /// Grants released while a lease token for them may still be honoured:
  /// (name, fencing token, the session's TTL), their permits still taken.
  struct draining_grant {
    std::string name;
    fencing_token fencing = 0;
    std::uint64_t ttl_ms = 0;
  };
  std::vector<draining_grant> draining() const {
    std::vector<draining_grant> out;
    for (auto& [name, sem] : sems_)
      for (auto& d : sem.draining) out.push_back({name, d.fencing, d.ttl_ms});
    return out;
  }
  /// A lease token was issued for grant (name, fencing), and it is held.
  bool leased(const std::string& name, fencing_token f) const {
    auto it = sems_.find(name);
    return it != sems_.end() && it->second.leased.contains(f);
  }
  /// Sessions that the last apply() granted a waiting request or let
  /// through a barrier: the ones to tell (not part of the replicated state).
  const std::vector<session_id>& touched() const noexcept { return touched_; }

  template <class A>
  void serialize(A& ar) {
    ar(fencing_, next_session_, sessions_, sems_, barriers_, kv_);
  }

 private:
  struct session_state {
    std::uint64_t ttl_ms = 0;
    std::uint64_t secret = 0;
    std::map<std::string, fencing_token> holds;
    std::map<std::string, std::uint64_t> passed;
    address owner;
    template <class A> void serialize(A& ar) { ar(ttl_ms, secret, holds, passed, owner); }
  };
  struct waiter {
    session_id session = 0;
    bytes value;
    template <class A> void serialize(A& ar) { ar(session, value); }
  };
  struct drained {
    fencing_token fencing = 0;
    std::uint64_t ttl_ms = 0;
    template <class A> void serialize(A& ar) { ar(fencing, ttl_ms); }
  };
  struct semaphore {
    std::uint32_t permits = 1;
    std::vector<holder> holders;
    std::deque<waiter> waiters;
    std::set<fencing_token> leased;  ///< holders' grants a lease token was issued for
    std::vector<drained> draining;   ///< released grants whose tokens may be honoured: permits still taken
    std::size_t taken() const { return holders.size() + draining.size(); }
    bool idle() const { return holders.empty() && waiters.empty() && draining.empty(); }
    template <class A> void serialize(A& ar) { ar(permits, holders, waiters, leased, draining); }
  };
  struct barrier {
    std::uint32_t parties = 0;
    std::uint64_t generation = 0;
    std::set<session_id> entered;  // waiting to pass the enter phase of this generation
    std::set<session_id> inside;   // passed enter; a double barrier's leave waits for all of them
    std::set<session_id> left;
    template <class A> void serialize(A& ar) { ar(parties, generation, entered, inside, left); }
  };

  reply execute(const request& r) {
    if (r.kind == op::open_session) {
      if (r.ttl_ms == 0 || r.secret == 0) return {status::bad_request};
      const session_id id = ++next_session_;
      sessions_[id].ttl_ms = r.ttl_ms;
      sessions_[id].secret = r.secret;
      sessions_[id].owner = r.owner;
      return {status::ok, 0, id};
    }
    if (r.kind == op::put || r.kind == op::append || r.kind == op::compare_and_set) return write(r);
    if (r.kind == op::reclaim) return reclaim(r);
    auto sit = sessions_.find(r.session);
    // Another's session, named without its secret, looks like none at all
    // (expire_session is the leader's own, refused from clients by the server).
    if (sit == sessions_.end() || (r.kind != op::expire_session && sit->second.secret != r.secret))
      return {status::no_session};
    switch (r.kind) {
      case op::open_session: break;
      case op::close_session: end_session(r.session, true); return {status::ok};
      case op::expire_session: end_session(r.session, false); return {status::ok};
      case op::lease_issued: {
        auto h = sit->second.holds.find(r.name);
        if (h == sit->second.holds.end() || h->second != r.fencing) return {status::not_held};
        sems_[r.name].leased.insert(r.fencing);
        return {status::ok};
      }
      case op::reclaim: break;  // handled above (the session may be gone)
      case op::acquire: return acquire(r, sit->second);
      case op::release: return release(r, sit->second);
      case op::barrier_enter: return enter(r);
      case op::barrier_leave: return leave(r);
      case op::put:
      case op::append:
      case op::compare_and_set: break;  // handled above
    }
    return {status::bad_request};
  }

  reply acquire(const request& r, session_state& s) {
    if (r.permits == 0 || r.name.empty()) return {status::bad_request};
    auto& sem = sems_[r.name];
    if (sem.idle()) sem.permits = r.permits;
    if (sem.permits != r.permits) return {status::bad_request};
    if (auto h = s.holds.find(r.name); h != s.holds.end()) return {status::granted, h->second};  // re-entrant
    for (auto& w : sem.waiters)
      if (w.session == r.session) return {status::queued};
    if (sem.taken() < sem.permits && sem.waiters.empty()) return {status::granted, give(sem, r.name, r.session, r.value)};
    if (!r.wait) return {status::busy};
    sem.waiters.push_back({r.session, r.value});
    return {status::queued};
  }

  reply release(const request& r, session_state& s) {
    auto h = s.holds.find(r.name);
    if (h == s.holds.end() || h->second != r.fencing) return {status::not_held};
    drop_holder(r.name, r.session, true);
    return {status::ok};
  }

  reply reclaim(const request& r) {
    auto it = sems_.find(r.name);
    if (it == sems_.end()) return {status::not_held};
    auto& sem = it->second;
    const auto before = sem.draining.size();
    std::erase_if(sem.draining, [&](const drained& d) { return d.fencing == r.fencing; });
    if (sem.draining.size() == before) return {status::not_held};
    grant_waiters(r.name, sem);
    return {status::ok};
  }

  reply write(const request& r) {
    if (r.name.empty() || r.name.size() > max_key_bytes) return {status::bad_request};
    if (r.kind == op::put || r.kind == op::compare_and_set) {
      if (r.value.size() > max_value_bytes) return {status::bad_request};
      if (r.kind == op::compare_and_set) {
        auto it = kv_.find(r.name);
        const bool matches = it == kv_.end() ? r.expected.empty() : it->second == r.expected;
        if (!matches) return {status::mismatch};
      }
      kv_[r.name] = r.value;
      return {status::ok};
    }
    auto it = kv_.find(r.name);
    const std::size_t had = it == kv_.end() ? 0 : it->second.size();
    if (had + r.value.size() > max_value_bytes) return {status::bad_request};
    auto& v = it == kv_.end() ? kv_[r.name] : it->second;
    v.insert(v.end(), r.value.begin(), r.value.end());
    return {status::ok};
  }

  reply enter(const request& r) {
    if (r.permits == 0 || r.name.empty()) return {status::bad_request};
    auto& b = barriers_[r.name];
    if (b.entered.empty()) b.parties = r.permits;
    if (b.parties != r.permits) return {status::bad_request};
    b.entered.insert(r.session);
    const auto gen = b.generation;
    if (b.entered.size() >= b.parties) {  // everyone is here: pass the enter phase together
      for (auto s : b.entered) {
        sessions_[s].passed[r.name] = 2 * gen + 1;
        touched_.push_back(s);
        b.inside.insert(s);
      }
      b.entered.clear();
      ++b.generation;
    }
    return {status::queued, 0, r.session, 2 * gen + 1};
  }

  reply leave(const request& r) {
    auto it = barriers_.find(r.name);
    if (it == barriers_.end() || !it->second.inside.contains(r.session)) return {status::not_held};
    auto& b = it->second;
    b.left.insert(r.session);
    const auto gen = sessions_[r.session].passed[r.name] + 1;
    maybe_pass_leave(r.name, b);
    return {status::queued, 0, r.session, gen};
  }

  void maybe_pass_leave(const std::string& name, barrier& b) {
    for (auto s : b.inside)
      if (!b.left.contains(s)) return;
    for (auto s : b.left)
      if (auto it = sessions_.find(s); it != sessions_.end()) {
        it->second.passed[name] = it->second.passed[name] + 1;
        touched_.push_back(s);
      }
    b.inside.clear();
    b.left.clear();
  }

  fencing_token give(semaphore& sem, const std::string& name, session_id s, bytes value) {
    const fencing_token f = ++fencing_;
    sem.holders.push_back({s, f, std::move(value)});
    sessions_[s].holds[name] = f;
    touched_.push_back(s);
    return f;
  }

  /// `voluntary`: released or closed by its holder, whose lease token (if
  /// one was issued) may still be honoured: the permit drains instead.
  void drop_holder(const std::string& name, session_id s, bool voluntary) {
    auto& sem = sems_[name];
    auto& session = sessions_[s];
    if (auto h = session.holds.find(name); h != session.holds.end()) {
      if (sem.leased.erase(h->second) && voluntary) sem.draining.push_back({h->second, session.ttl_ms});
    }
    std::erase_if(sem.holders, [&](const holder& h) { return h.session == s; });
    session.holds.erase(name);
    grant_waiters(name, sem);
  }
  void grant_waiters(const std::string& name, semaphore& sem) {
    while (sem.taken() < sem.permits && !sem.waiters.empty()) {  // FIFO: the longest waiter first
      auto w = std::move(sem.waiters.front());
      sem.waiters.pop_front();
      give(sem, name, w.session, std::move(w.value));
    }
    if (sem.idle()) sems_.erase(name);
  }

  void end_session(session_id id, bool voluntary) {
    auto& s = sessions_[id];
    // Its waits go first, in the same step: an expired session is never granted.
    for (auto& [name, sem] : sems_) std::erase_if(sem.waiters, [&](const waiter& w) { return w.session == id; });
    std::vector<std::string> held;
    for (auto& [name, f] : s.holds) held.push_back(name);
    for (auto& name : held) drop_holder(name, id, voluntary);
    for (auto& [name, b] : barriers_) {
      b.entered.erase(id);
      if (b.inside.erase(id)) {
        b.left.erase(id);
        maybe_pass_leave(name, b);
      }
    }
    sessions_.erase(id);
    std::erase_if(sems_, [](auto& kv) { return kv.second.idle(); });
  }

  fencing_token fencing_ = 0;
  session_id next_session_ = 0;
  std::map<session_id, session_state> sessions_;
  std::map<std::string, semaphore> sems_;
  std::map<std::string, barrier> barriers_;
  std::map<std::string, bytes> kv_;
  std::vector<session_id> touched_;
};

}  // namespace dcp::coord
