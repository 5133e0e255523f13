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
//   - a small key-value store, etcd's data model: put, append,
//     compare-and-set, remove (a key or a range), multi-key transactions
//     (compares on several keys' value, version, create or mod revision,
//     then a list of puts and removes, else another: etcd's Txn); every
//     write takes the next value of one revision counter, and each key
//     carries its create_revision, mod_revision and version as in etcd.
//     Reads (get, range, prefix) are ReadIndex reads on the server. Writes
//     need no session (the log's client sessions already apply each one
//     once), but a put may bind its key to a session: the key is ephemeral
//     and removed when the session ends or expires, in the step that ends
//     it (ZooKeeper's ephemeral nodes, etcd's keys attached to a lease).
//
// Per-client quotas (client_quotas, below): what one client may hold of
// sessions, keys and bytes, charged to the client the leader stamped into
// the command (request::owner), enforced here so every replica agrees; the
// quotas themselves arrive through the log (op::set_quotas).
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
#include <optional>
#include <set>
#include <string>
#include <system_error>
#include <vector>

#include <cereal/types/deque.hpp>
#include <cereal/types/map.hpp>
#include <cereal/types/optional.hpp>
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
  put,              ///< key `name` := `value` (no session needed)
  append,           ///< key `name` := its value (empty if missing) followed by `value`
  compare_and_set,  ///< key `name` := `value` if its value (empty if missing) is `expected`
  lease_issued,     ///< proposed by the leader before it sends the first lease token for grant (name, fencing)
  reclaim,          ///< proposed by the leader: a released grant's token has expired; its permit is free
  remove,           ///< removes key `name`, or every key in [name, range end) when `expected` holds a range end
  txn,              ///< `value` holds an encoded txn_request (compares, then success or failure writes)
  compact,          ///< etcd's Compact: the history below revision `fencing` is discarded (no session needed)
  set_quotas,  ///< proposed by the leader: `value` holds the encoded client_quotas every replica enforces from here on
};
// Layout rule: `request` and `reply` are in the log and in raft's cached
// results, so their fields never change; new operations reuse them (remove's
// range end travels in `expected`, a transaction in `value`) and new message
// types take new wire ids. The snapshot carries a format tag (machine::save).

/// Bounds on the key-value store's entries. The whole state travels in one
/// snapshot (sent in chunks), within raft_config::max_snapshot_bytes.
inline constexpr std::size_t max_key_bytes = 512;
inline constexpr std::size_t max_value_bytes = 64 * 1024;
/// Keys in the store and ephemeral keys one session may own (a write beyond:
/// quota_exceeded; the state's byte quota, raft's max_snapshot_bytes, may
/// come first), and the compares and writes of one transaction (beyond:
/// bad_request).
inline constexpr std::size_t max_keys = 100'000;
inline constexpr std::size_t max_session_keys = 1'024;
inline constexpr std::size_t max_txn_ops = 128;
/// An encoded transaction, checked by the client (the replicas refuse any
/// entry over raft_config::snapshot_chunk_bytes).
inline constexpr std::size_t max_txn_bytes = 512 * 1024;
/// A range read answers at most this many keys and bytes (`more` says the
/// rest was cut): one reply fits a frame.
inline constexpr std::size_t max_range_keys = 10'000;
inline constexpr std::size_t max_range_bytes = 1024 * 1024;

/// Per-client quotas (issues 11, 12; ZooKeeper's and etcd's limits per
/// source): what one client may hold of the replicated state, so that one
/// client cannot fill the store (max_keys, the state's byte quota) and lock
/// every other client out. A client is the address the transport attributes
/// the command to, stamped into the request by the leader (request::owner):
/// under tls_node the address its certificate binds, under keyring_node
/// whatever a key holder claims, over plaintext the hello's claim (see
/// docs/security.md). Every replica enforces the same numbers: the leader
/// puts its server_config::quotas in the log (op::set_quotas), so they are
/// replicated state, in the snapshot; until such an entry applies there is
/// no per-client limit (a log written before replays as it applied then).
/// 0: no limit on that resource.
struct client_quotas {
  std::uint64_t sessions = 0;  ///< sessions opened by the client and still alive
  std::uint64_t keys = 0;      ///< keys whose last write was the client's
  std::uint64_t bytes = 0;     ///< key and value bytes of those keys
  template <class A> void serialize(A& ar) { ar(sessions, keys, bytes); }
  bool operator==(const client_quotas&) const = default;
};
/// What one client holds (machine::usage): the sums over clients are the
/// store's totals (sessions, keys, key and value bytes).
struct client_usage {
  std::uint64_t sessions = 0, keys = 0, bytes = 0;
  bool operator==(const client_usage&) const = default;
  bool empty() const { return sessions == 0 && keys == 0 && bytes == 0; }
};
/// Which quota refused a command (reply::session of a client_quota_exceeded reply).
enum class quota_resource : std::uint8_t { sessions = 1, keys, bytes };

struct request {
  op kind = op::open_session;
  session_id session = 0;
  std::string name;           ///< the resource, election or barrier; the key (put, remove, ...)
  std::uint32_t permits = 1;  ///< semaphore size k (1: mutex, election); barrier: parties n
  bool wait = true;
  fencing_token fencing = 0;  ///< release: which grant
  std::uint64_t ttl_ms = 0;   ///< open_session
  bytes value;                ///< campaign: the candidate's value; put, append, compare_and_set: the value
  bytes expected;             ///< compare_and_set: the value the key must hold; remove: the range end (empty: one key)
  std::uint64_t secret = 0;   ///< the session's secret (open_session: chosen by the client); every
                              ///< request under a session must carry it, so a session is its owner's alone
  address owner;  ///< the client that sent it, set by the leader from the transport, never the client's say:
                  ///< open_session: where its owner is, so that any later leader can tell it of a grant at once;
                  ///< every command: who is charged for what it opens or writes (client_quotas)
  template <class A> void serialize(A& ar) {
    ar(kind, session, name, permits, wait, fencing, ttl_ms, value, expected, secret, owner);
  }
};

enum class status : std::uint8_t {
  ok = 0,
  granted,          ///< fencing holds the token
  queued,           ///< waiting: the grant will show in the session's state
  busy,             ///< try-acquire of a resource at capacity
  not_held,         ///< release of a grant the session does not hold (already released, or a stale token)
  no_session,       ///< the session expired or never existed
  bad_request,      ///< e.g. a semaphore used with two different sizes, a barrier of 0 parties,
                    ///< a key or value over max_key_bytes / max_value_bytes
  mismatch,         ///< compare_and_set: the key did not hold the expected value; nothing changed;
                    ///< txn: a compare failed and the failure branch was applied
  quota_exceeded,   ///< max_keys or max_session_keys reached: nothing changed
  compacted,        ///< compact: the revision is below the compact revision (reply::fencing holds it); nothing changed
  future_revision,  ///< compact: the revision is above the current one (reply::generation holds that); nothing changed
  client_quota_exceeded,  ///< the sending client is at one of its client_quotas: nothing changed; reply::session holds
                          ///< the quota_resource, fencing the client's usage of it, generation its limit
};

struct reply {
  status code = status::ok;
  fencing_token fencing = 0;
  session_id session = 0;
  std::uint64_t generation = 0;  ///< barriers: the generation this enter/leave belongs to;
                                 ///< key-value writes: the store's revision after this command
  template <class A> void serialize(A& ar) { ar(code, fencing, session, generation); }
  // remove: `fencing` holds the number of keys removed.
  // compact: `fencing` holds the compact revision after it (or the one that refused it).
};

/// A client_quota_exceeded reply in words, for the client named `client`:
/// "quota exceeded: client 10.0.0.7:7000 owns 1000 of 1000 keys".
inline std::string quota_message(const reply& r, const std::string& client) {
  const char* what = r.session == static_cast<std::uint64_t>(quota_resource::sessions) ? "sessions"
      : r.session == static_cast<std::uint64_t>(quota_resource::keys)                  ? "keys"
                                                                                       : "bytes of keys and values";
  const char* verb = r.session == static_cast<std::uint64_t>(quota_resource::sessions) ? " has " : " owns ";
  return "quota exceeded: client " + client + verb + std::to_string(r.fencing) + " of " + std::to_string(r.generation) +
      " " + what + " (server_config::quotas; remove keys or close sessions to free some)";
}

/// One key of the store as reads see it (etcd's KeyValue). Which session an
/// ephemeral key is bound to is its owner's business: only `ephemeral` shows.
struct key_value {
  std::string key;
  bytes value;
  std::uint64_t create_revision = 0;  ///< the revision that created it (since its last removal)
  std::uint64_t mod_revision = 0;     ///< the revision of its last write
  std::uint64_t version = 0;          ///< writes since its creation (1 after the first)
  bool ephemeral = false;             ///< bound to a session: removed when the session ends
  template <class A> void serialize(A& ar) { ar(key, value, create_revision, mod_revision, version, ephemeral); }
  bool operator==(const key_value&) const = default;
};

/// A change as a watch reports it (etcd's Event): a put carries the key as
/// written; a remove carries the key and, in mod_revision, the revision
/// that removed it.
struct watch_event {
  enum class kind_t : std::uint8_t { put, remove };
  kind_t kind = kind_t::put;
  key_value kv;
  template <class A> void serialize(A& ar) { ar(kind, kv); }
  bool operator==(const watch_event&) const = default;
};
/// The recent changes the store keeps, each with the key as it was before
/// (etcd's prev_kv): watches resume from them, and a read at a past revision
/// undoes them (etcd's MVCC Range with a revision). Bounded: at most this many
/// events and bytes (values and previous values counted), oldest whole
/// revisions dropped first, except that the newest revision is always kept
/// whole (at most max_txn_ops events, or a session's max_session_keys
/// ephemeral keys). What is dropped is compacted: a read or watch below the
/// compact revision fails with "compacted", as after etcd's Compact, which
/// clients may also ask for (op::compact), and the server's automatic
/// compaction does (server_config::auto_compaction_retention).
inline constexpr std::size_t max_history_events = 4096;
inline constexpr std::size_t max_history_bytes = 2 * 1024 * 1024;

/// A range read's answer: keys in order, the store's revision it reflects,
/// and whether keys were left out (limit, max_range_keys, max_range_bytes).
struct range_result {
  std::vector<key_value> kvs;
  std::uint64_t revision = 0;
  bool more = false;
  template <class A> void serialize(A& ar) { ar(kvs, revision, more); }
};

/// A read at a revision (machine::range_at): `ok` with the keys as they were
/// at that revision (result.revision is it), else `compacted` (below
/// compact_revision: that state is gone) or `future_revision` (above
/// current_revision); never a newer state in place of an older one.
struct revision_read {
  status code = status::ok;
  range_result result;
  std::uint64_t compact_revision = 0;  ///< the oldest revision that can be read
  std::uint64_t current_revision = 0;  ///< the store's revision
  template <class A> void serialize(A& ar) { ar(code, result, compact_revision, current_revision); }
};

/// etcd's Txn: if every compare holds, apply `success`, else `failure`,
/// all at one revision (when anything is written).
struct txn_compare {
  enum class target : std::uint8_t { value, version, create_revision, mod_revision };
  enum class result : std::uint8_t { equal, not_equal, less, greater };
  std::string key;
  target what = target::value;
  result cmp = result::equal;
  bytes value;               ///< target value (a missing key's value compares false, as in etcd)
  std::uint64_t number = 0;  ///< target version / create_revision / mod_revision (0 for a missing key)
  template <class A> void serialize(A& ar) { ar(key, what, cmp, value, number); }
};
struct txn_op {
  enum class kind_t : std::uint8_t { put, remove };
  kind_t kind = kind_t::put;
  std::string key;
  bytes value;             ///< put
  std::string range_end;   ///< remove: empty for one key
  bool ephemeral = false;  ///< put: bind the key to the request's session
  template <class A> void serialize(A& ar) { ar(kind, key, value, range_end, ephemeral); }
};
struct txn_request {
  std::vector<txn_compare> compares;
  std::vector<txn_op> success, failure;
  template <class A> void serialize(A& ar) { ar(compares, success, failure); }
};

/// The end of the range holding every key that starts with `prefix` (etcd's
/// prefix end: the prefix with its last byte below 0xff incremented; "\0",
/// every key, when there is none).
inline std::string prefix_end(std::string prefix) {
  while (!prefix.empty()) {
    auto& c = reinterpret_cast<unsigned char&>(prefix.back());
    if (c < 0xff) {
      ++c;
      return prefix;
    }
    prefix.pop_back();
  }
  return std::string(1, '\0');
}

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
  std::map<std::string, std::uint64_t>
      barriers_passed;  ///< barrier name -> last generation passed (enter: 2g+1, leave: 2g+2)
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
    trimmed_ = false;
    request r;
    reply out;
    if (storage::detail::decode_value(in, r))
      out.code = status::bad_request;
    else
      out = execute(r);
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
      DCP_ASSERT(id != 0, "session 0 is no session");
      for (const auto& key : session.keys) {
        auto k = kv_.find(key);
        DCP_ASSERT(k != kv_.end() && k->second.session == id, "a session's ephemeral key is bound to it");
      }
      DCP_ASSERT(session.keys.size() <= max_session_keys, "a session's ephemeral keys are bounded");
      for (const auto& [name, f] : session.holds) {
        auto it = sems_.find(name);
        DCP_ASSERT(it != sems_.end() &&
                       std::count_if(it->second.holders.begin(), it->second.holders.end(),
                                     [&](const holder& h) { return h.session == id; }) == 1,
                   "a session holds a semaphore once");
        (void)f;  // its token is checked from the holder's side below
      }
    }
    for (const auto& [name, sem] : sems_) {
      DCP_ASSERT(!sem.idle(), "an idle semaphore is forgotten");
      DCP_ASSERT(sem.taken() <= sem.permits, "no more permits taken than the semaphore has");
      DCP_ASSERT(sem.waiters.empty() || sem.taken() == sem.permits,
                 "no one waits while a permit is free (FIFO grants)");
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
        DCP_ASSERT(std::count_if(sem.waiters.begin(), sem.waiters.end(),
                                 [&](const waiter& o) { return o.session == w.session; }) == 1,
                   "a session waits once per semaphore");
      }
    }
    for (const auto& [name, b] : barriers_) {
      DCP_ASSERT(b.parties == 0 || b.entered.size() < b.parties, "a full barrier has passed its enter phase");
      for (auto s : b.left) DCP_ASSERT(b.inside.contains(s), "only a session inside the barrier leaves it");
    }
    DCP_ASSERT(kv_.size() <= max_keys, "the store's keys are bounded");
    for (const auto& [key, e] : kv_) {
      DCP_ASSERT(!key.empty() && key.size() <= max_key_bytes && e.value.size() <= max_value_bytes,
                 "keys and values within bounds");
      DCP_ASSERT(
          e.version >= 1 && 0 < e.create_revision && e.create_revision <= e.mod_revision && e.mod_revision <= revision_,
          "revisions come from the counter: created, then modified, never ahead of it");
      if (e.session) {
        auto it = sessions_.find(e.session);
        DCP_ASSERT(it != sessions_.end() && it->second.keys.contains(key),
                   "an ephemeral key's session lives and lists it");
      }
    }
    DCP_ASSERT(history_.size() <= max_history_events, "the history is bounded");
    DCP_ASSERT(compacted_ <= revision_, "compaction never runs ahead of the revision");
    DCP_ASSERT(mvcc_floor_ <= revision_, "reads at a revision start no later than the current revision");
    std::size_t bytes_counted = 0;
    for (std::size_t i = 0; i < history_.size(); ++i) {
      const auto& e = history_[i];
      DCP_ASSERT(e.event.kv.mod_revision > compacted_ && e.event.kv.mod_revision <= revision_,
                 "history events are newer than the compaction and not ahead of the revision");
      DCP_ASSERT(i == 0 || history_[i - 1].event.kv.mod_revision <= e.event.kv.mod_revision,
                 "history is in revision order");
      DCP_ASSERT(!e.prev || (e.prev->key == e.event.kv.key && e.prev->mod_revision < e.event.kv.mod_revision),
                 "an event's previous key is the same key, written before it");
      DCP_ASSERT(e.event.kind == watch_event::kind_t::put || e.event.kv.mod_revision <= mvcc_floor_ || e.prev,
                 "a remove (after the read floor) removed a key that existed");
      DCP_ASSERT(e.event.kind != watch_event::kind_t::put || !e.prev || e.prev->version + 1 == e.event.kv.version,
                 "a put over a key adds one to its version");
      DCP_ASSERT(e.event.kind != watch_event::kind_t::put || e.event.kv.mod_revision <= mvcc_floor_ ||
                     (e.event.kv.version == 1) == !e.prev,
                 "a put creates its key (version 1) exactly when the key did not exist before it");
      bytes_counted += entry_bytes(e);
    }
    DCP_ASSERT(bytes_counted == history_bytes_, "the history's byte count is its entries'");
    for (const auto& [client, c] : clients_)
      DCP_ASSERT(client != 0 && c.last_index >= client, "a command client is used after its registration");
    // Quota accounting: each client's usage is what it holds, recounted from
    // the state, and so the sums over clients are the store's totals.
    DCP_ASSERT(recount_usage() == usage_, "per-client usage is what each client holds");
    client_usage sum;
    std::size_t kv_bytes = 0;
    for (const auto& [client, u] : usage_) {
      DCP_ASSERT(!u.empty(), "a client that holds nothing has no usage entry");
      sum.sessions += u.sessions;
      sum.keys += u.keys;
      sum.bytes += u.bytes;
    }
    for (const auto& [key, e] : kv_) kv_bytes += key.size() + e.value.size();
    DCP_ASSERT(sum.sessions == sessions_.size() && sum.keys == kv_.size() && sum.bytes == kv_bytes,
               "the sums of per-client usage are the store's totals");
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
    return it == kv_.end() ? nullptr : &it->second.value;
  }
  /// Key `key` with its revisions, or nullopt if it does not exist.
  std::optional<key_value> entry(const std::string& key) const {
    auto it = kv_.find(key);
    if (it == kv_.end()) return std::nullopt;
    return view_of(*it);
  }
  /// Keys in [key, range_end) in order (range_end empty: `key` alone; "\0":
  /// every key from `key` on), at most `limit` of them (0: no limit) and
  /// within max_range_keys / max_range_bytes; `more` when some were left out.
  range_result range(const std::string& key, const std::string& range_end, std::size_t limit = 0) const {
    range_result out;
    out.revision = revision_;
    if (limit == 0 || limit > max_range_keys) limit = max_range_keys;
    std::size_t bytes_out = 0;
    for (auto it = kv_.lower_bound(key); it != kv_.end() && in_range(it->first, key, range_end); ++it)
      if (!take(out, view_of(*it), limit, bytes_out)) break;
    return out;
  }
  /// Revisions at or below this one have left the history (0: none has).
  std::uint64_t compacted() const noexcept { return compacted_; }
  /// The oldest revision a read at a revision is answered for (etcd's
  /// compact revision): compacted() + 1, or later after a format-2 snapshot
  /// (its history kept no previous values); never above the current revision.
  std::uint64_t compact_revision() const noexcept {
    return std::min(std::max(compacted_ + 1, mvcc_floor_), std::max<std::uint64_t>(revision_, 1));
  }
  /// Keys in [key, range_end) as they were at revision `at` (0: the current
  /// one), as range() reads them now (same limits). `at` below
  /// compact_revision(): compacted; above revision(): future_revision. The
  /// state at `at` is the current one with every later change undone, each
  /// history event carrying the key as it was before it: O(history + keys
  /// read).
  revision_read range_at(const std::string& key, const std::string& range_end, std::size_t limit,
                         std::uint64_t at) const {
    revision_read out{status::ok, {}, compact_revision(), revision_};
    if (at == 0 || at == revision_) {
      out.result = range(key, range_end, limit);
      return out;
    }
    if (at > revision_) {
      out.code = status::future_revision;
      return out;
    }
    if (at < out.compact_revision) {
      out.code = status::compacted;
      return out;
    }
    // Each key changed after `at` was, at `at`, as its earliest later event found it.
    std::map<std::string, const std::optional<key_value>*> then;
    for (auto it = history_.rbegin(); it != history_.rend() && it->event.kv.mod_revision > at; ++it)
      if (in_range(it->event.kv.key, key, range_end)) then[it->event.kv.key] = &it->prev;
    out.result.revision = at;
    if (limit == 0 || limit > max_range_keys) limit = max_range_keys;
    std::size_t bytes_out = 0;
    auto now = kv_.lower_bound(key);
    auto old = then.begin();
    while (true) {
      const bool now_in = now != kv_.end() && in_range(now->first, key, range_end);
      if (!now_in && old == then.end()) break;
      const key_value* kv = nullptr;
      key_value current;
      if (old != then.end() && (!now_in || old->first <= now->first)) {
        if (now_in && now->first == old->first) ++now;
        if (*old->second) kv = &**old->second;
        ++old;
      } else {
        current = view_of(*now);
        kv = &current;
        ++now;
      }
      if (kv && !take(out.result, *kv, limit, bytes_out)) break;
    }
    return out;
  }
  /// Events with revision >= `from` on keys in [key, range_end), oldest
  /// first, whole revisions only, up to about `max_bytes` (at least one
  /// revision). nullopt: `from` is at or below compacted() (those events are
  /// gone). `through` is set to the last revision the answer covers (events
  /// or not): the caller resumes from through + 1.
  std::optional<std::vector<watch_event>> events(std::uint64_t from, const std::string& key,
                                                 const std::string& range_end, std::size_t max_bytes,
                                                 std::uint64_t& through) const {
    if (from == 0 || from <= compacted_) return std::nullopt;
    std::vector<watch_event> out;
    through = std::max(revision_, from - 1);
    std::size_t bytes_out = 0;
    std::uint64_t current = 0;  // the revision being read
    auto it = std::lower_bound(history_.begin(), history_.end(), from,
                               [](const history_entry& e, std::uint64_t r) { return e.event.kv.mod_revision < r; });
    for (; it != history_.end(); ++it) {
      if (it->event.kv.mod_revision != current) {
        if (bytes_out > max_bytes) {  // whole revisions only: stop before this one
          through = current;
          break;
        }
        current = it->event.kv.mod_revision;
      }
      if (!in_range(it->event.kv.key, key, range_end)) continue;
      bytes_out += event_bytes(it->event);
      out.push_back(it->event);
    }
    return out;
  }
  std::size_t history_size() const noexcept { return history_.size(); }

  /// The store's revision: the number of writes that changed it.
  std::uint64_t revision() const noexcept { return revision_; }
  std::size_t key_count() const noexcept { return kv_.size(); }

  // ---- per-client quotas (client_quotas) ----

  /// The quotas in force (set by the log's last set_quotas; all 0 before one).
  const client_quotas& quotas() const noexcept { return quotas_; }
  /// What `client` holds now.
  client_usage usage(const address& client) const {
    auto it = usage_.find(client);
    return it == usage_.end() ? client_usage{} : it->second;
  }
  /// Every client that holds anything, with what it holds.
  const std::map<address, client_usage>& usage() const noexcept { return usage_; }

  // ---- the log's command clients (raft's client sessions, mirrored) ----
  //
  // Raft keeps a table of client sessions (register_client), bounded by
  // raft_config::max_sessions, evicting the least recently used one; a
  // flood of registrations evicts live clients (issue 11). The coord server
  // mirrors that table here from raft's apply hook, on every replica in log
  // order (so it is replicated, and in the snapshot), and its leader refuses
  // a registration that would evict a client it has seen lately.
  void note_registered(std::uint64_t index, std::size_t max_sessions) {
    clients_[index] = command_client{0, index};
    while (clients_.size() > max_sessions) clients_.erase(least_recent_client());
  }
  void note_unregistered(std::uint64_t client) { clients_.erase(client); }
  /// A command of `client` at log index `index`: `applied`, or else a
  /// duplicate (same seq: raft moves its last use), stale or unknown.
  void note_command(std::uint64_t client, std::uint64_t seq, std::uint64_t index, bool applied) {
    auto it = clients_.find(client);
    if (it == clients_.end()) return;
    if (applied)
      it->second = command_client{seq, index};
    else if (seq == it->second.seq)
      it->second.last_index = index;
  }
  std::size_t command_clients() const noexcept { return clients_.size(); }
  /// The client raft would evict next (0: none).
  std::uint64_t least_recent_client() const {
    auto it = std::min_element(clients_.begin(), clients_.end(),
                               [](auto& a, auto& b) { return a.second.last_index < b.second.last_index; });
    return it == clients_.end() ? 0 : it->first;
  }
  bool has_command_client(std::uint64_t client) const { return clients_.contains(client); }
  /// The command client that last acted under session `s` (from the apply
  /// hook, as note_command): while the session lives, its client is live.
  void note_session_client(session_id s, std::uint64_t client) {
    if (auto it = sessions_.find(s); it != sessions_.end()) it->second.command_client = client;
  }
  /// Command clients that act for a live session.
  std::set<std::uint64_t> clients_with_sessions() const {
    std::set<std::uint64_t> out;
    for (auto& [id, s] : sessions_)
      if (s.command_client) out.insert(s.command_client);
    return out;
  }
  std::vector<std::uint64_t> command_client_ids() const {
    std::vector<std::uint64_t> out;
    for (auto& [id, c] : clients_) out.push_back(id);
    return out;
  }
  std::uint64_t command_client_last_index(std::uint64_t client) const {
    auto it = clients_.find(client);
    return it == clients_.end() ? 0 : it->second.last_index;
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
  /// The last apply() dropped history beyond its bounds (max_history_*), so
  /// the compact revision moved without a compact command (not part of the
  /// replicated state: for the server's counter).
  bool trimmed_history() const noexcept { return trimmed_; }

  /// The snapshot. Format 1 (before revisions) began with the fencing
  /// counter; formats 2 and 3 begin with a tag, a value the counter never
  /// reaches, so a replica reads all three (a format-1 snapshot's keys get
  /// revisions 1..n in key order, version 1). Format 3 adds each history
  /// event's previous key and the read floor, so a replica restored from it
  /// answers reads at past revisions as the others do; a format-2 history
  /// has no previous values: its events still serve watches, and reads at a
  /// revision start at the snapshot's revision (mvcc_floor_).
  static constexpr std::uint64_t snapshot_format_2 = 0xDC0C'F0F0'0000'0002ull;
  static constexpr std::uint64_t snapshot_format_3 = 0xDC0C'F0F0'0000'0003ull;
  /// Format 4 adds the per-client quotas in force and, for each key, the
  /// client charged for it (its last writer). Usage is not stored: it is
  /// recounted from the sessions' and keys' owners on restore, so a snapshot
  /// cannot carry counts that disagree with its state. Formats 1 to 3
  /// restore with no quotas in force and every key charged to no client
  /// (the empty address), as they applied then.
  static constexpr std::uint64_t snapshot_format_4 = 0xDC0C'F0F0'0000'0004ull;
  template <class A> void save(A& ar) const {
    ar(snapshot_format_4, fencing_, next_session_, sessions_, sems_, barriers_, kv_, revision_, clients_, history_,
       compacted_, mvcc_floor_, quotas_);
  }
  template <class A> void load(A& ar) {
    std::uint64_t first = 0;
    ar(first);
    usage_.clear();
    if (first == snapshot_format_4) {
      ar(fencing_, next_session_, sessions_, sems_, barriers_, kv_, revision_, clients_, history_, compacted_,
         mvcc_floor_, quotas_);
      history_bytes_ = 0;
      for (auto& e : history_) history_bytes_ += entry_bytes(e);
      usage_ = recount_usage();
      return;
    }
    if (first == snapshot_format_3 || first == snapshot_format_2) {
      std::map<std::string, kv_entry_v3> kv;
      ar(fencing_, next_session_, sessions_, sems_, barriers_, kv, revision_, clients_);
      for (auto& [key, e] : kv)
        kv_[key] = kv_entry{std::move(e.value), e.create_revision, e.mod_revision, e.version, e.session, {}};
      usage_ = recount_usage();
      if (first == snapshot_format_3) {
        ar(history_, compacted_, mvcc_floor_);
      } else {
        std::deque<watch_event> events;
        ar(events, compacted_);
        for (auto& e : events) history_.push_back({std::move(e), std::nullopt});
        mvcc_floor_ = revision_;
      }
      history_bytes_ = 0;
      for (auto& e : history_) history_bytes_ += entry_bytes(e);
      return;
    }
    fencing_ = first;
    std::map<session_id, session_state_v1> sessions;
    std::map<std::string, bytes> kv;
    ar(next_session_, sessions, sems_, barriers_, kv);
    for (auto& [id, s] : sessions)
      sessions_[id] = session_state{s.ttl_ms, s.secret, std::move(s.holds), std::move(s.passed), s.owner, {}, 0};
    for (auto& [key, v] : kv) {
      ++revision_;
      kv_[key] = kv_entry{std::move(v), revision_, revision_, 1, 0, {}};
    }
    compacted_ = mvcc_floor_ = revision_;  // no history before format 2
    usage_ = recount_usage();
  }

 private:
  struct session_state {
    std::uint64_t ttl_ms = 0;
    std::uint64_t secret = 0;
    std::map<std::string, fencing_token> holds;
    std::map<std::string, std::uint64_t> passed;
    address owner;
    std::set<std::string> keys;        ///< its ephemeral keys (removed when it ends)
    std::uint64_t command_client = 0;  ///< the log's client that last sent a command under it (0: none known)
    template <class A> void serialize(A& ar) { ar(ttl_ms, secret, holds, passed, owner, keys, command_client); }
  };
  struct session_state_v1 {  // snapshot format 1
    std::uint64_t ttl_ms = 0;
    std::uint64_t secret = 0;
    std::map<std::string, fencing_token> holds;
    std::map<std::string, std::uint64_t> passed;
    address owner;
    template <class A> void serialize(A& ar) { ar(ttl_ms, secret, holds, passed, owner); }
  };
  struct kv_entry {
    bytes value;
    std::uint64_t create_revision = 0, mod_revision = 0, version = 0;
    session_id session = 0;  ///< ephemeral: bound to this session (0: not)
    address owner;           ///< the client charged for it (client_quotas): its last writer
    template <class A> void serialize(A& ar) { ar(value, create_revision, mod_revision, version, session, owner); }
  };
  struct kv_entry_v3 {  // snapshot formats 2 and 3
    bytes value;
    std::uint64_t create_revision = 0, mod_revision = 0, version = 0;
    session_id session = 0;
    template <class A> void serialize(A& ar) { ar(value, create_revision, mod_revision, version, session); }
  };
  /// A change, and the key as it was before it (nullopt: it did not exist).
  struct history_entry {
    watch_event event;
    std::optional<key_value> prev;
    template <class A> void serialize(A& ar) { ar(event, prev); }
  };
  struct command_client {
    std::uint64_t seq = 0, last_index = 0;
    template <class A> void serialize(A& ar) { ar(seq, last_index); }
  };

  static key_value view_of(const std::pair<const std::string, kv_entry>& kv) {
    return {kv.first,          kv.second.value,       kv.second.create_revision, kv.second.mod_revision,
            kv.second.version, kv.second.session != 0};
  }
  /// Adds `kv` to a range's answer unless a bound is reached (then `more`, and false).
  static bool take(range_result& out, const key_value& kv, std::size_t limit, std::size_t& bytes_out) {
    const auto size = kv.key.size() + kv.value.size() + 32;
    if (out.kvs.size() >= limit || bytes_out + size > max_range_bytes) {
      out.more = true;
      return false;
    }
    bytes_out += size;
    out.kvs.push_back(kv);
    return true;
  }
  static bool in_range(const std::string& k, const std::string& key, const std::string& range_end) {
    if (range_end.empty()) return k == key;
    if (range_end == std::string(1, '\0')) return k >= key;
    return k >= key && k < range_end;
  }
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
      if (auto why = over_quota(r.owner, 1, 0, 0)) return *why;
      const session_id id = new_session_id(r.session);
      sessions_[id].ttl_ms = r.ttl_ms;
      sessions_[id].secret = r.secret;
      sessions_[id].owner = r.owner;
      ++usage_[r.owner].sessions;
      return {status::ok, 0, id};
    }
    if (r.kind == op::set_quotas) {
      client_quotas q;
      if (storage::detail::decode_value(r.value, q)) return {status::bad_request};
      quotas_ = q;  // usage above a lowered quota stays; it may only shrink from here
      return {status::ok};
    }
    const bool kv_write = r.kind == op::put || r.kind == op::append || r.kind == op::compare_and_set ||
        r.kind == op::remove || r.kind == op::txn;
    if (kv_write && r.session == 0) return write(r, 0);
    if (r.kind == op::reclaim) return reclaim(r);
    if (r.kind == op::compact) return compact(r.fencing);
    auto sit = sessions_.find(r.session);
    // Another's session, named without its secret, looks like none at all
    // (expire_session is the leader's own, refused from clients by the server).
    if (sit == sessions_.end() || (r.kind != op::expire_session && sit->second.secret != r.secret))
      return {status::no_session};
    switch (r.kind) {
      case op::open_session:
        break;
      case op::close_session:
        end_session(r.session, true);
        return {status::ok};
      case op::expire_session:
        end_session(r.session, false);
        return {status::ok};
      case op::lease_issued: {
        auto h = sit->second.holds.find(r.name);
        if (h == sit->second.holds.end() || h->second != r.fencing) return {status::not_held};
        sems_[r.name].leased.insert(r.fencing);
        return {status::ok};
      }
      case op::reclaim:
        break;  // handled above (the session may be gone)
      case op::compact:
        break;  // handled above (no session)
      case op::set_quotas:
        break;  // handled above (no session)
      case op::acquire:
        return acquire(r, sit->second);
      case op::release:
        return release(r, sit->second);
      case op::barrier_enter:
        return enter(r);
      case op::barrier_leave:
        return leave(r);
      case op::put:
      case op::append:
      case op::compare_and_set:
      case op::remove:
      case op::txn:
        return write(r, r.session);  // under a session: puts bind their keys to it
    }
    return {status::bad_request};
  }

  /// The leader draws a session's id from a CSPRNG (server: unguessable ids,
  /// issue 11) and puts it in the command; every replica takes it. A
  /// command without one (a log written before) takes the counter's next,
  /// and a taken id (a collision, or a replayed command) the next free one
  /// along a fixed sequence: the same on every replica.
  session_id new_session_id(session_id proposed) {
    session_id id = proposed != 0 ? proposed : ++next_session_;
    while (id == 0 || sessions_.contains(id)) id = id * 6364136223846793005ull + 1442695040888963407ull;
    return id;
  }

  reply acquire(const request& r, session_state& s) {
    if (r.permits == 0 || r.name.empty()) return {status::bad_request};
    auto& sem = sems_[r.name];
    if (sem.idle()) sem.permits = r.permits;
    if (sem.permits != r.permits) return {status::bad_request};
    if (auto h = s.holds.find(r.name); h != s.holds.end()) return {status::granted, h->second};  // re-entrant
    for (auto& w : sem.waiters)
      if (w.session == r.session) return {status::queued};
    if (sem.taken() < sem.permits && sem.waiters.empty())
      return {status::granted, give(sem, r.name, r.session, r.value)};
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

  // ---- the key-value store ----

  static bool valid_key(const std::string& k) { return !k.empty() && k.size() <= max_key_bytes; }

  /// A key-value write; `session` (0: none) binds the keys it puts.
  reply write(const request& r, session_id session) {
    switch (r.kind) {
      case op::put:
      case op::append:
      case op::compare_and_set: {
        if (!valid_key(r.name) || r.value.size() > max_value_bytes) return {status::bad_request};
        auto it = kv_.find(r.name);
        if (r.kind == op::compare_and_set) {
          const bool matches = it == kv_.end() ? r.expected.empty() : it->second.value == r.expected;
          if (!matches) return {status::mismatch, 0, 0, revision_};
        }
        bytes v = r.value;
        if (r.kind == op::append && it != kv_.end()) {
          if (it->second.value.size() + r.value.size() > max_value_bytes) return {status::bad_request};
          v = it->second.value;
          v.insert(v.end(), r.value.begin(), r.value.end());
        }
        if (auto why = quota_for_put(r.owner, r.name, v.size())) return *why;
        if (auto why = can_put(r.name, session)) return {*why};
        ++revision_;
        put_key(r.name, std::move(v), session, r.owner);
        return {status::ok, 0, 0, revision_};
      }
      case op::remove: {
        const std::string end(r.expected.begin(), r.expected.end());
        if (!valid_key(r.name) || end.size() > max_key_bytes) return {status::bad_request};
        const auto keys = keys_in(r.name, end);
        if (!keys.empty()) ++revision_;  // as etcd: removing nothing is no revision
        for (auto& k : keys) remove_key(k);
        return {status::ok, static_cast<std::uint64_t>(keys.size()), 0, revision_};
      }
      case op::txn:
        return transaction(r, session);
      default:
        return {status::bad_request};
    }
  }

  std::vector<std::string> keys_in(const std::string& key, const std::string& end) const {
    std::vector<std::string> out;
    for (auto it = kv_.lower_bound(key); it != kv_.end() && in_range(it->first, key, end); ++it)
      out.push_back(it->first);
    return out;
  }
  /// Why key `k` cannot be put (bound to `session`), if it cannot.
  std::optional<status> can_put(const std::string& k, session_id session) const {
    auto it = kv_.find(k);
    if (it == kv_.end() && kv_.size() >= max_keys) return status::quota_exceeded;
    if (session && (it == kv_.end() || it->second.session != session) &&
        sessions_.at(session).keys.size() >= max_session_keys)
      return status::quota_exceeded;
    return std::nullopt;
  }
  /// Refuses (client_quota_exceeded) a change of `client`'s usage by these
  /// amounts that would take it over a quota in force; a change that does
  /// not grow a resource always passes, even above a lowered quota.
  std::optional<reply> over_quota(const address& client, std::int64_t sessions, std::int64_t keys,
                                  std::int64_t bytes_) const {
    const auto u = usage(client);
    const auto over = [](std::uint64_t used, std::int64_t add, std::uint64_t limit) {
      return limit != 0 && add > 0 && used + static_cast<std::uint64_t>(add) > limit;
    };
    if (over(u.sessions, sessions, quotas_.sessions))
      return reply{status::client_quota_exceeded, u.sessions, static_cast<std::uint64_t>(quota_resource::sessions),
                   quotas_.sessions};
    if (over(u.keys, keys, quotas_.keys))
      return reply{status::client_quota_exceeded, u.keys, static_cast<std::uint64_t>(quota_resource::keys),
                   quotas_.keys};
    if (over(u.bytes, bytes_, quotas_.bytes))
      return reply{status::client_quota_exceeded, u.bytes, static_cast<std::uint64_t>(quota_resource::bytes),
                   quotas_.bytes};
    return std::nullopt;
  }
  /// What writing `size` value bytes to key `k` changes in `client`'s usage,
  /// added to (keys, bytes_): a key it last wrote changes by the value's
  /// growth, another's (or a new one) becomes its own, whole.
  void put_delta(const address& client, const std::string& k, std::size_t size, std::int64_t& keys,
                 std::int64_t& bytes_) const {
    auto it = kv_.find(k);
    bytes_ += static_cast<std::int64_t>(size);
    if (it != kv_.end() && it->second.owner == client) {
      bytes_ -= static_cast<std::int64_t>(it->second.value.size());
    } else {
      ++keys;
      bytes_ += static_cast<std::int64_t>(k.size());
    }
  }
  std::optional<reply> quota_for_put(const address& client, const std::string& k, std::size_t size) const {
    std::int64_t keys = 0, bytes_ = 0;
    put_delta(client, k, size, keys, bytes_);
    return over_quota(client, 0, keys, bytes_);
  }
  /// Takes key `k` (as it is) off its owner's usage.
  void uncharge(const std::string& k, const kv_entry& e) {
    auto it = usage_.find(e.owner);
    DCP_ASSERT(it != usage_.end() && it->second.keys > 0, "a key's owner is charged for it");
    --it->second.keys;
    it->second.bytes -= k.size() + e.value.size();
    if (it->second.empty()) usage_.erase(it);
  }
  /// Every client's usage, counted from the state (restore; the invariants).
  std::map<address, client_usage> recount_usage() const {
    std::map<address, client_usage> out;
    for (const auto& [id, s] : sessions_) ++out[s.owner].sessions;
    for (const auto& [k, e] : kv_) {
      auto& u = out[e.owner];
      ++u.keys;
      u.bytes += k.size() + e.value.size();
    }
    return out;
  }

  /// Writes at revision_ (already advanced): a key removed and put again is
  /// created anew. The key is charged to `client`, its writer, from now on.
  void put_key(const std::string& k, bytes v, session_id session, const address& client) {
    auto [it, fresh] = kv_.try_emplace(k);
    std::optional<key_value> prev;
    if (!fresh) prev = view_of(*it);
    auto& e = it->second;
    if (fresh) {
      e.create_revision = revision_;
      e.version = 0;
    } else {
      uncharge(k, e);
    }
    e.value = std::move(v);
    e.owner = client;
    auto& u = usage_[client];
    ++u.keys;
    u.bytes += k.size() + e.value.size();
    e.mod_revision = revision_;
    ++e.version;
    if (e.session != session) {  // as etcd: a put names the key's lease, or none
      if (e.session) sessions_[e.session].keys.erase(k);
      if (session) sessions_[session].keys.insert(k);
      e.session = session;
    }
    record({watch_event::kind_t::put, view_of(*it)}, std::move(prev));
  }
  static std::size_t event_bytes(const watch_event& e) { return e.kv.key.size() + e.kv.value.size() + 40; }
  static std::size_t entry_bytes(const history_entry& e) {
    return event_bytes(e.event) + (e.prev ? e.prev->key.size() + e.prev->value.size() + 40 : 0);
  }
  /// Appends to the bounded history (revision_ is the event's); the oldest
  /// whole revisions go beyond the bounds, and compacted_ says which.
  void record(watch_event e, std::optional<key_value> prev) {
    e.kv.mod_revision = revision_;
    history_.push_back({std::move(e), std::move(prev)});
    history_bytes_ += entry_bytes(history_.back());
    while (history_.size() > max_history_events || history_bytes_ > max_history_bytes) {
      const auto rev = history_.front().event.kv.mod_revision;
      if (rev == revision_) break;  // never the revision being written
      drop_history_through(rev);
      trimmed_ = true;
    }
  }
  /// Forgets every change at or below revision `rev`.
  void drop_history_through(std::uint64_t rev) {
    while (!history_.empty() && history_.front().event.kv.mod_revision <= rev) {
      history_bytes_ -= entry_bytes(history_.front());
      history_.pop_front();
    }
    compacted_ = std::max(compacted_, rev);
  }
  /// etcd's Compact(rev): reads and watches from `rev` on still work, from
  /// below it fail with compacted. Compacting below the compact revision is
  /// refused (compacted), as is a revision above the current one; at the
  /// compact revision again it changes nothing.
  reply compact(std::uint64_t rev) {
    if (rev > revision_) return {status::future_revision, compact_revision(), 0, revision_};
    if (rev < compact_revision()) return {status::compacted, compact_revision(), 0, revision_};
    drop_history_through(rev - 1);
    return {status::ok, compact_revision(), 0, revision_};
  }
  void remove_key(const std::string& k) {
    auto it = kv_.find(k);
    if (it == kv_.end()) return;
    if (it->second.session)
      if (auto s = sessions_.find(it->second.session); s != sessions_.end()) s->second.keys.erase(k);
    std::optional<key_value> prev = view_of(*it);
    uncharge(k, it->second);
    kv_.erase(it);
    record({watch_event::kind_t::remove, key_value{k, {}, 0, revision_, 0, false}}, std::move(prev));
  }

  bool compare_holds(const txn_compare& c) const {
    auto it = kv_.find(c.key);
    if (c.what == txn_compare::target::value) {
      if (it == kv_.end()) return false;  // as etcd: a missing key's value compares false
      const auto& v = it->second.value;
      switch (c.cmp) {
        case txn_compare::result::equal:
          return v == c.value;
        case txn_compare::result::not_equal:
          return v != c.value;
        case txn_compare::result::less:
          return std::lexicographical_compare(v.begin(), v.end(), c.value.begin(), c.value.end());
        case txn_compare::result::greater:
          return std::lexicographical_compare(c.value.begin(), c.value.end(), v.begin(), v.end());
      }
      return false;
    }
    std::uint64_t n = 0;  // a missing key: version and revisions 0
    if (it != kv_.end())
      n = c.what == txn_compare::target::version           ? it->second.version
          : c.what == txn_compare::target::create_revision ? it->second.create_revision
                                                           : it->second.mod_revision;
    switch (c.cmp) {
      case txn_compare::result::equal:
        return n == c.number;
      case txn_compare::result::not_equal:
        return n != c.number;
      case txn_compare::result::less:
        return n < c.number;
      case txn_compare::result::greater:
        return n > c.number;
    }
    return false;
  }

  /// etcd's Txn: every compare against the state before it; the branch's
  /// writes all at one revision (each key written at most once, as etcd
  /// requires), checked whole before anything changes.
  reply transaction(const request& r, session_id session) {
    txn_request t;
    if (storage::detail::decode_value(r.value, t)) return {status::bad_request};
    if (t.compares.size() > max_txn_ops || t.success.size() > max_txn_ops || t.failure.size() > max_txn_ops)
      return {status::bad_request};
    for (auto& c : t.compares)
      if (!valid_key(c.key) || c.value.size() > max_value_bytes) return {status::bad_request};
    for (auto* branch : {&t.success, &t.failure}) {
      std::set<std::string> written;
      for (auto& o : *branch) {
        if (!valid_key(o.key) || o.value.size() > max_value_bytes || o.range_end.size() > max_key_bytes)
          return {status::bad_request};
        if (o.ephemeral && session == 0) return {status::bad_request};
        if (o.kind == txn_op::kind_t::put && !written.insert(o.key).second) return {status::bad_request};
      }
      for (auto& o : *branch)  // as etcd: a key is not both put and removed in one transaction
        if (o.kind == txn_op::kind_t::remove)
          for (auto& k : written)
            if (in_range(k, o.key, o.range_end)) return {status::bad_request};
    }
    const bool ok =
        std::all_of(t.compares.begin(), t.compares.end(), [this](const txn_compare& c) { return compare_holds(c); });
    auto& ops = ok ? t.success : t.failure;
    // Quotas first: a branch applies whole or not at all.
    std::size_t fresh = 0;
    std::set<std::string> removed;
    for (auto& o : ops) {
      if (o.kind == txn_op::kind_t::remove)
        for (auto& k : keys_in(o.key, o.range_end)) removed.insert(k);
      else
        fresh += !kv_.contains(o.key);
    }
    if (kv_.size() + fresh > max_keys + removed.size()) return {status::quota_exceeded};
    std::size_t bound = 0;
    for (auto& o : ops)
      if (o.kind == txn_op::kind_t::put && o.ephemeral) {
        auto it = kv_.find(o.key);
        bound += it == kv_.end() || it->second.session != session;
      }
    if (bound && sessions_.at(session).keys.size() + bound > max_session_keys) return {status::quota_exceeded};
    std::int64_t my_keys = 0, my_bytes = 0;  // the sender's usage after the branch, less before
    for (auto& k : removed)
      if (auto& e = kv_.at(k); e.owner == r.owner) {
        --my_keys;
        my_bytes -= static_cast<std::int64_t>(k.size() + e.value.size());
      }
    for (auto& o : ops)  // (no key is both put and removed: checked above)
      if (o.kind == txn_op::kind_t::put) put_delta(r.owner, o.key, o.value.size(), my_keys, my_bytes);
    if (auto why = over_quota(r.owner, 0, my_keys, my_bytes)) return *why;
    bool changes = false;
    for (auto& o : ops) changes |= o.kind == txn_op::kind_t::put || !keys_in(o.key, o.range_end).empty();
    if (changes) ++revision_;
    for (auto& o : ops) {
      if (o.kind == txn_op::kind_t::put)
        put_key(o.key, o.value, o.ephemeral ? session : 0, r.owner);
      else
        for (auto& k : keys_in(o.key, o.range_end)) remove_key(k);
    }
    return {ok ? status::ok : status::mismatch, 0, 0, revision_};
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
    // Its ephemeral keys go in the same step, at one revision (etcd's lease revoke).
    if (!s.keys.empty()) {
      ++revision_;
      for (auto& k : std::vector<std::string>(s.keys.begin(), s.keys.end())) remove_key(k);
    }
    if (auto u = usage_.find(s.owner); u != usage_.end()) {
      DCP_ASSERT(u->second.sessions > 0, "a session's owner is charged for it");
      if (--u->second.sessions, u->second.empty()) usage_.erase(u);
    }
    sessions_.erase(id);
    std::erase_if(sems_, [](auto& kv) { return kv.second.idle(); });
  }

  fencing_token fencing_ = 0;
  session_id next_session_ = 0;
  std::map<session_id, session_state> sessions_;
  std::map<std::string, semaphore> sems_;
  std::map<std::string, barrier> barriers_;
  std::map<std::string, kv_entry> kv_;
  std::uint64_t revision_ = 0;
  std::deque<history_entry> history_;  // the latest changes, in revision order (bounded: max_history_*)
  std::uint64_t compacted_ = 0;        // revisions up to this one have left history_
  std::uint64_t mvcc_floor_ = 0;   // reads at a revision start here at the earliest (a format-2 snapshot's revision)
  std::size_t history_bytes_ = 0;  // not serialized: recomputed on restore
  std::map<std::uint64_t, command_client> clients_;  // raft's client sessions, mirrored (see note_registered)
  client_quotas quotas_;                             // in force (op::set_quotas); all 0, no limit, before the first
  std::map<address, client_usage> usage_;  // not serialized: recounted on restore (clients holding nothing absent)
  std::vector<session_id> touched_;
  bool trimmed_ = false;
};

}  // namespace dcp::coord
