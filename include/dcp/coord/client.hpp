#pragma once
// coord::client: one session with the coordination service, and the
// primitives on it: mutex, counting semaphore, leader election, barrier and
// double barrier; and the service's key-value store, etcd's model (put,
// append, compare_and_set, remove, get, range, prefix reads, transactions,
// watches from a revision; revisions on every key), which needs no session
// except for keys bound to one (put_ephemeral).
//
//   client.open_session([](result<session_id>) {...});
//   client.lock("db", [](result<grant> g) { use g->fencing with the resource });
//   client.unlock(g, [](result<void_t>) {});
//   client.on_lost([](const grant& g) { stop using g at once });
//
// The session is a lease. The client counts TTL * (1 - 2 * drift_bound) from
// the *sending* of its last acknowledged keepalive, in its own clock; when
// that runs out (or a replica says the session is gone) every grant is lost:
// on_lost fires for each, and holds() stops listing them. The replicas never
// expire the session earlier (see coord/server.hpp for the argument), so two
// clients never both believe they hold one permit too many, provided clocks
// drift by at most drift_bound. Even so, a pause between checking holds() and
// touching the resource cannot be excluded by any lease: present the grant's
// fencing token to the resource, which rejects tokens older than the newest
// it has seen.
//
// The lease runs out at an instant, not at the next tick: a timer is armed
// for it, so on_lost fires when the client's clock reads the end of the
// lease (the margin the timing argument leaves can be well under 1 ms).
//
// Waiting: a blocked lock/acquire/barrier completes when a keepalive answer
// shows the grant or the barrier passed; replicas send a notification when
// something changes so the client asks at once. Every operation of a session
// is judged against that session: when it is lost, its queued and in-flight
// operations fail with cancelled at once, and an answer that arrives later
// for them is ignored (a grant made to a lost session died with it).
//
// Failover: the client talks to one replica at a time. It moves to another
// (never the same one again, when there is another) when that replica says
// it does not lead (to the leader it names, if any), when a request or a
// keepalive goes unanswered for request_timeout, and at once when the
// transport reports the replica unreachable (on_unreachable: a refused or
// failed connection). A failover changes nothing else: the session, its
// grants and its waits live in the replicated state and survive a change of
// leader (a new leader gives every session a full TTL from its election), so
// a waiter keeps its place in the queue and is granted by the new leader.
// Only the session's end (its lease running out here, or the service saying
// it is gone) cancels its waits.
//
// Errors carry words (result::message()): "session expired: keepalives
// unanswered for 1180 ms", "no leader reachable: 3 of 3 replicas refused";
// error() is the code to test (cancelled, timed_out, ...).
//
// Commands: the client first registers a command session in the log
// (register_client; its id is a log index, never reused); one command is in
// flight at a time (the others queue), each with a sequence number so a
// retry applies once. A request unanswered after request_timeout is resent
// to another replica; one unanswered after `give_up_after` fails with
// timed_out: its outcome is then unknown (it may still take effect later,
// once). If the log has evicted the command session, the command fails with
// outcome_unknown (it may have applied once; never twice) and the next one
// registers a new session. A grant this client may hold without knowing it
// (an acquire whose outcome is unknown) is released when a keepalive shows
// it. Gets are linearizable reads, independent of the command queue, resent
// the same way.
#include <algorithm>
#include <deque>
#include <functional>
#include <iterator>
#include <map>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "dcp/coord/errors.hpp"
#include "dcp/coord/machine.hpp"
#include "dcp/coord/messages.hpp"
#include "dcp/coord/secure_random.hpp"
#include "dcp/core/env.hpp"
#include "dcp/core/result.hpp"

namespace dcp::coord {

/// The calls that return nothing complete with result<void> (callback<void>);
/// done_t is their old name, kept so that code written as result<done_t> compiles.
using done_t = void;

struct client_config {
  std::vector<address> servers;      ///< the replicas
  duration ttl = 2s;                 ///< session TTL
  duration keepalive_every = 500ms;  ///< at most ttl / 3 so one lost keepalive does not lose the session
  duration request_timeout = 200ms;  ///< resend to another replica after this
  duration give_up_after = 10s;      ///< a command fails with timed_out after this
  double drift_bound = 0.01;         ///< ρ: the largest clock rate error of any node (1% by default)
  /// Where session secrets come from: the OS's CSPRNG by default
  /// (secure_random.hpp; env.rng() is predictable from its seed).
  entropy_source entropy = secure_random;

  void validate() const {
    if (!entropy) throw error(dcp::errc::invalid_config, "coord::client: no entropy source");
    if (servers.empty()) throw error(dcp::errc::invalid_config, "coord::client: no servers");
    if (ttl <= duration::zero() || keepalive_every * 3 > ttl)
      throw error(dcp::errc::invalid_config, "coord::client: keepalive_every must be at most ttl / 3");
    if (drift_bound < 0 || drift_bound >= 0.25)
      throw error(dcp::errc::invalid_config, "coord::client: drift_bound must be in [0, 0.25)");
    if (request_timeout <= duration::zero() || give_up_after < request_timeout)
      throw error(dcp::errc::invalid_config, "coord::client: need 0 < request_timeout <= give_up_after");
  }
};

template <Env E> class client {
 public:
  using messages = msg::all;
  /// What it counts (env.count), declared: dcp/core/counter_set.hpp.
  static constexpr dcp::counter_set counters{{"malformed_range_at", "command_session_unknown", "orphan_grant_released",
                                              "malformed_member_change", "watch_gap", "malformed_status",
                                              "failover_unreachable", "unexpected_message", "session_lost"}};
  static constexpr std::string_view name = "coord_client";
  static constexpr protocol_id default_id = default_protocol_id;

  template <class T> using callback = std::function<void(result<T>)>;

  client(E env, client_config cfg) : env_(std::move(env)), cfg_(std::move(cfg)) { cfg_.validate(); }
  client(const client&) = delete;
  client& operator=(const client&) = delete;
  ~client() {
    if (expiry_timer_) env_.cancel(expiry_timer_);
  }

  void start() {
    ticker_.start(env_, std::min<duration>(cfg_.request_timeout, 20ms), [this] { tick(); });
  }

  // ---- session ----

  void open_session(callback<session_id> done) {
    if (session_ && !opening_) return done(session_);
    if (opening_) return done(dcp::make_error_code(dcp::errc::busy));
    // The session's secret: every request under it carries it, so nobody else
    // can act for this session, renew it, or learn what it holds.
    secret_ = cfg_.entropy() | 1;
    request req{op::open_session,
                0,
                {},
                1,
                true,
                0,
                static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(cfg_.ttl).count())};
    req.secret = secret_;
    submit(std::move(req), [this, done = std::move(done)](result<reply> r, time_point) {
      if (!r) return done(r.explained());
      if (r->code == status::client_quota_exceeded) return done(quota_error(*r));
      // bad_request: the TTL is outside what the replicas allow (server_config::min/max_session_ttl)
      if (r->code != status::ok) return done(dcp::make_error_code(dcp::errc::invalid_argument));
      // The lease starts with the first acknowledged keepalive: the session
      // may have been created by any earlier send of this command.
      session_ = r->session;
      valid_until_ = {};
      opening_ = std::move(done);
      opening_since_ = env_.now();
      send_keepalive();
    });
  }
  void close_session(callback<void> done) {
    if (!session_) return done({});
    request req{op::close_session, session_};
    lose_session(false);
    submit(req, [done = std::move(done)](result<reply> r, time_point) { r ? done({}) : done(r.explained()); });
  }
  session_id session() const noexcept { return session_; }
  /// The session's secret: whoever holds (session, secret) is its owner.
  std::uint64_t secret() const noexcept { return secret_; }
  /// Sends a keepalive now (it also fetches grants and barrier passes).
  void refresh() { send_keepalive(); }
  /// Why the last session ended, in words ("session expired: keepalives
  /// unanswered for 1180 ms (...)"; empty: none has ended).
  const std::string& last_loss() const noexcept { return last_loss_; }
  /// The session is believed alive: its lease has not run out.
  bool session_valid() const { return session_ && env_.now() < valid_until_; }

  // ---- mutex, semaphore, election ----

  void lock(std::string name, callback<grant> done) { acquire(std::move(name), 1, std::move(done)); }
  void try_lock(std::string name, callback<grant> done) { try_acquire(std::move(name), 1, std::move(done)); }
  void unlock(const grant& g, callback<void> done) { release(g, std::move(done)); }

  void acquire(std::string name, std::uint32_t permits, callback<grant> done, bytes value = {}) {
    take(std::move(name), permits, true, std::move(value), std::move(done));
  }
  void try_acquire(std::string name, std::uint32_t permits, callback<grant> done) {
    take(std::move(name), permits, false, {}, std::move(done));
  }
  /// Releases a grant: it stops being held here at once; the release names
  /// its fencing token, so a late or repeated release never frees a newer grant.
  void release(const grant& g, callback<void> done) {
    if (auto it = held_.find(g.name); it != held_.end() && it->second.fencing == g.fencing) held_.erase(it);
    if (!session_) return done(no_session());
    submit({op::release, session_, g.name, 1, true, g.fencing}, [done = std::move(done)](result<reply> r, time_point) {
      if (!r && r.error() == dcp::errc::cancelled) return done({});  // the session ended: so did the grant
      if (!r) return done(r.explained());
      if (r->code == status::ok || r->code == status::not_held || r->code == status::no_session)
        return done({});  // released, or already gone
      done(dcp::make_error_code(dcp::errc::invalid_argument));
    });
  }

  /// Campaigns for leadership of `election`: completes when this client leads.
  void campaign(std::string election, bytes value, callback<grant> done) {
    acquire(std::move(election), 1, std::move(done), std::move(value));
  }
  void resign(const grant& g, callback<void> done) { release(g, std::move(done)); }
  /// Calls `fn` with the current leader (nullopt: none) now and at every
  /// change, polling every keepalive period, until unobserve(election).
  void observe(std::string election, std::function<void(std::optional<holder>)> fn) {
    observers_[election] = observer{std::move(fn), std::nullopt, {}, 0};
    query(election);
  }
  void unobserve(const std::string& election) { observers_.erase(election); }

  // ---- barriers ----

  /// Completes when `parties` sessions have entered `name`.
  void barrier_wait(std::string name, std::uint32_t parties, callback<void> done) {
    enter_or_leave(op::barrier_enter, std::move(name), parties, std::move(done));
  }
  /// A double barrier: enter completes when `parties` sessions have entered,
  /// leave when every session that entered has left.
  void double_barrier_enter(std::string name, std::uint32_t parties, callback<void> done) {
    barrier_wait(std::move(name), parties, std::move(done));
  }
  void double_barrier_leave(std::string name, callback<void> done) {
    enter_or_leave(op::barrier_leave, std::move(name), 1, std::move(done));
  }

  // ---- key-value store ----

  /// Sets `key` to `value`. Errors: invalid_argument (empty or oversized key
  /// or value: see max_key_bytes, max_value_bytes), busy (max_keys reached,
  /// or this client's quota, server_config::quotas: the words say which),
  /// timed_out (outcome unknown), cancelled (not applied).
  void put(std::string key, bytes value, callback<void> done) {
    write_value(op::put, std::move(key), std::move(value), std::move(done));
  }
  /// Appends `value` to the value of `key` (empty if missing), once per call
  /// even when the command is resent.
  void append(std::string key, bytes value, callback<void> done) {
    write_value(op::append, std::move(key), std::move(value), std::move(done));
  }
  /// Sets `key` to `value` if it holds `expected` (a missing key holds the
  /// empty value): true if it did and was set, false if not (nothing
  /// changed). Once per call even when resent. Errors: as put.
  void compare_and_set(std::string key, bytes expected, bytes value, callback<bool> done) {
    if (key.empty() || key.size() > max_key_bytes || value.size() > max_value_bytes)
      return done(dcp::make_error_code(dcp::errc::invalid_argument));
    request req{op::compare_and_set, 0, std::move(key), 1, true, 0, 0, std::move(value)};
    req.expected = std::move(expected);
    submit(std::move(req), [this, done = std::move(done)](result<reply> r, time_point) {
      if (!r) return done(r.explained());
      if (r->code == status::ok || r->code == status::mismatch) return done(r->code == status::ok);
      if (r->code == status::quota_exceeded) return done(dcp::make_error_code(dcp::errc::busy));
      if (r->code == status::client_quota_exceeded) return done(quota_error(*r));
      done(dcp::make_error_code(dcp::errc::invalid_argument));
    });
  }
  /// Reads `key` linearizably: nullopt if it was never written. Errors:
  /// invalid_argument, timed_out.
  void get(std::string key, callback<std::optional<bytes>> done) {
    if (key.empty() || key.size() > max_key_bytes) return done(dcp::make_error_code(dcp::errc::invalid_argument));
    read(msg::get{std::move(key), 0}, std::move(done));
  }

  /// Sets `key` to `value`, bound to this client's session: the key is
  /// removed when the session ends or expires (an ephemeral key; a later put
  /// without a session unbinds it). Completes with the store's revision.
  /// Errors: as put; cancelled (no session, or it ended first: the key, if
  /// written, goes with it); busy (max_keys or max_session_keys reached).
  void put_ephemeral(std::string key, bytes value, callback<std::uint64_t> done) {
    if (!session_valid()) return done(no_session());
    if (key.empty() || key.size() > max_key_bytes || value.size() > max_value_bytes)
      return done(dcp::make_error_code(dcp::errc::invalid_argument));
    submit({op::put, session_, std::move(key), 1, true, 0, 0, std::move(value)}, kv_reply(std::move(done), false));
  }
  /// Removes `key`; completes with the number of keys removed (0 or 1).
  void remove(std::string key, callback<std::uint64_t> done) { remove_range(std::move(key), {}, std::move(done)); }
  /// Removes every key in [key, range_end) (range_end empty: `key` alone).
  void remove_range(std::string key, std::string range_end, callback<std::uint64_t> done) {
    if (key.empty() || key.size() > max_key_bytes || range_end.size() > max_key_bytes)
      return done(dcp::make_error_code(dcp::errc::invalid_argument));
    submit({op::remove, 0, std::move(key), 1, true, 0, 0, {}, bytes(range_end.begin(), range_end.end())},
           kv_reply(std::move(done), true));
  }
  /// Removes every key that starts with `prefix`.
  void remove_prefix(std::string prefix, callback<std::uint64_t> done) {
    auto end = prefix_end(prefix);
    remove_range(std::move(prefix), std::move(end), std::move(done));
  }
  /// A multi-key transaction (etcd's Txn): if every compare holds, the
  /// success writes apply, else the failure writes, at one revision.
  /// Ephemeral puts bind to this client's session (it must have one; if it
  /// ends meanwhile, the transaction still completes with its result, and
  /// its ephemeral keys go with the session). Errors: invalid_argument (bad keys, over max_txn_ops, a key put twice
  /// or put and removed), busy (quotas), timed_out (outcome unknown).
  struct txn_result {
    bool succeeded = false;      ///< the compares held: the success branch applied
    std::uint64_t revision = 0;  ///< the store's revision after it
  };
  void txn(const txn_request& t, callback<txn_result> done) {
    const bool ephemeral = std::any_of(t.success.begin(), t.success.end(), [](auto& o) { return o.ephemeral; }) ||
        std::any_of(t.failure.begin(), t.failure.end(), [](auto& o) { return o.ephemeral; });
    if (ephemeral && !session_valid()) return done(no_session());
    request req{op::txn, ephemeral ? session_ : 0};
    storage::detail::encode_value(t, req.value);
    if (req.value.size() > max_txn_bytes) return done(dcp::make_error_code(dcp::errc::invalid_argument));
    submit(std::move(req), [this, done = std::move(done)](result<reply> r, time_point) {
      if (!r) return done(r.explained());
      switch (r->code) {
        case status::ok:
        case status::mismatch:
          return done(txn_result{r->code == status::ok, r->generation});
        default:
          return done(write_refused(*r));
      }
    });
  }
  /// Reads keys in [key, range_end) linearizably, with their revisions (at
  /// most `limit`, 0: up to max_range_keys; result.more says keys were left
  /// out: read on from the last key + '\0').
  void range(std::string key, std::string range_end, std::size_t limit, callback<range_result> done) {
    if (key.empty() || key.size() > max_key_bytes || range_end.size() > max_key_bytes)
      return done(dcp::make_error_code(dcp::errc::invalid_argument));
    read(msg::range{std::move(key), std::move(range_end), limit, 0},
         [done = std::move(done)](result<std::optional<bytes>> r) {
           if (!r) return done(r.explained());
           range_result out;
           if (!*r || storage::detail::decode_value(**r, out)) return done(dcp::make_error_code(dcp::errc::io_error));
           done(std::move(out));
         });
  }
  /// Every key that starts with `prefix` (up to the range bounds).
  void get_prefix(std::string prefix, callback<range_result> done) {
    auto end = prefix_end(prefix);
    range(std::move(prefix), std::move(end), 0, std::move(done));
  }
  /// One key with its revisions (nullopt: it does not exist).
  void get_entry(std::string key, callback<std::optional<key_value>> done) {
    range(std::move(key), {}, 1, [done = std::move(done)](result<range_result> r) {
      if (!r) return done(r.explained());
      if (r->kvs.empty()) return done(std::optional<key_value>{});
      done(std::optional<key_value>(std::move(r->kvs.front())));
    });
  }

  /// Reads keys in [key, range_end) as they were at `revision` (etcd's
  /// Range with a revision; 0: now, as range()), linearizably: the answer
  /// comes from the leader after a ReadIndex, and result.revision is
  /// `revision`. Errors: coord::errc::compacted when `revision` is below the
  /// store's compact revision (its state is gone; the words say which is the
  /// oldest still readable, and last_compact_revision() holds it),
  /// coord::errc::future_revision when it is above the store's current
  /// revision; never a newer state in place of the one asked for.
  /// invalid_argument, timed_out as range().
  void range_at(std::string key, std::string range_end, std::size_t limit, std::uint64_t revision,
                callback<range_result> done) {
    if (key.empty() || key.size() > max_key_bytes || range_end.size() > max_key_bytes)
      return done(dcp::make_error_code(dcp::errc::invalid_argument));
    if (revision == 0) return range(std::move(key), std::move(range_end), limit, std::move(done));
    read(msg::range_at{std::move(key), std::move(range_end), limit, revision, 0},
         [this, revision, done = std::move(done)](result<std::optional<bytes>> r) {
           if (!r) return done(r.explained());
           revision_read out;
           if (!*r || storage::detail::decode_value(**r, out)) return done(dcp::make_error_code(dcp::errc::io_error));
           if (out.code == status::compacted) {
             last_compact_revision_ = std::max(last_compact_revision_, out.compact_revision);
             return done(explained_error{make_error_code(errc::compacted),
                                         "compacted: revision " + std::to_string(revision) +
                                             " is below the compact revision " + std::to_string(out.compact_revision) +
                                             " (the oldest the service still reads at)"});
           }
           if (out.code == status::future_revision)
             return done(explained_error{make_error_code(errc::future_revision),
                                         "future revision: " + std::to_string(revision) +
                                             " is above the store's current revision " +
                                             std::to_string(out.current_revision)});
           if (out.result.revision != revision) {  // a newer (or older) state than asked for: never passed on
             env_.count("malformed_range_at");
             return done(explained_error{dcp::make_error_code(dcp::errc::malformed_payload),
                                         "malformed answer: a read at revision " + std::to_string(revision) +
                                             " answered for revision " + std::to_string(out.result.revision)});
           }
           done(std::move(out.result));
         });
  }
  /// Key `key` as it was at `revision` (nullopt: it did not exist then). Errors: as range_at.
  void get_at(std::string key, std::uint64_t revision, callback<std::optional<key_value>> done) {
    range_at(std::move(key), {}, 1, revision, [done = std::move(done)](result<range_result> r) {
      if (!r) return done(r.explained());
      if (r->kvs.empty()) return done(std::optional<key_value>{});
      done(std::optional<key_value>(std::move(r->kvs.front())));
    });
  }
  /// Discards the store's history below `revision` (etcd's Compact), on
  /// every replica at the same point of the log: reads and watches from
  /// `revision` on still work, older ones fail with coord::errc::compacted.
  /// Completes with the compact revision after it. Errors: compacted
  /// (`revision` is below the compact revision already), future_revision
  /// (above the current one), invalid_argument (0), timed_out (outcome unknown).
  void compact(std::uint64_t revision, callback<std::uint64_t> done) {
    if (revision == 0) return done(dcp::make_error_code(dcp::errc::invalid_argument));
    request req{op::compact};
    req.fencing = revision;
    submit(std::move(req), [this, revision, done = std::move(done)](result<reply> r, time_point) {
      if (!r) return done(r.explained());
      switch (r->code) {
        case status::ok:
          last_compact_revision_ = std::max(last_compact_revision_, r->fencing);
          return done(r->fencing);
        case status::compacted:
          last_compact_revision_ = std::max(last_compact_revision_, r->fencing);
          return done(explained_error{make_error_code(errc::compacted),
                                      "compacted: revision " + std::to_string(revision) +
                                          " is below the compact revision " + std::to_string(r->fencing) + " already"});
        case status::future_revision:
          return done(explained_error{make_error_code(errc::future_revision),
                                      "future revision: " + std::to_string(revision) +
                                          " is above the store's current revision " + std::to_string(r->generation)});
        default:
          return done(dcp::make_error_code(dcp::errc::invalid_argument));
      }
    });
  }
  /// The newest compact revision this client has heard of (from a read, a
  /// compaction or a watch that was told "compacted"; 0: none).
  std::uint64_t last_compact_revision() const noexcept { return last_compact_revision_; }

  // ---- watches ----

  /// Calls `fn` with every change on keys in [key, range_end) (range_end
  /// empty: `key` alone) from revision `start` on (0: from the next change),
  /// once each, in revision order, in batches of whole revisions, until
  /// cancel_watch. Pushed by the leader as changes apply; across a lost push,
  /// a leader change or a reconnect the client asks again from the revision
  /// after the last it delivered (every keepalive period, and at once when it
  /// sees a gap). Ends with an error, after which `fn` is not called again:
  /// coord::errc::compacted when the revisions it needs have left the
  /// service's history (its bounds, or a compaction: read the range, then
  /// watch from its revision + 1; last_compact_revision() says from where it could),
  /// busy when the leader refuses more watches. Returns the watch's id.
  using watch_callback = std::function<void(result<std::vector<watch_event>>)>;
  std::uint64_t watch(std::string key, std::string range_end, std::uint64_t start, watch_callback fn) {
    const auto id = ++nonce_;
    if (key.empty() || key.size() > max_key_bytes || range_end.size() > max_key_bytes) {
      fn(dcp::make_error_code(dcp::errc::invalid_argument));
      return id;
    }
    watches_[id] = watch_state{std::move(key), std::move(range_end), start, std::move(fn), {}};
    send_watch(id);
    return id;
  }
  std::uint64_t watch_prefix(std::string prefix, std::uint64_t start, watch_callback fn) {
    auto end = prefix_end(prefix);
    return watch(std::move(prefix), std::move(end), start, std::move(fn));
  }
  void cancel_watch(std::uint64_t id) {
    if (watches_.erase(id)) env_.send(target(), msg::watch{id, {}, {}, 0, true});
  }
  /// The revision from which watch `id` resumes (the one after the last it delivered; 0: not known yet).
  std::uint64_t watch_next(std::uint64_t id) const {
    auto it = watches_.find(id);
    return it == watches_.end() ? 0 : it->second.next;
  }

  // ---- lease tokens ----

  /// Asks the service for a sealed lease token for grant `g` (a resource
  /// server checks it offline: dcp::lease). It also renews the session. The
  /// token expires within the session's TTL; ask again for a fresh one while
  /// holding. Errors: cancelled (the grant or the session is gone),
  /// io_error (the replicas do not issue leases), timed_out.
  void lease(const grant& g, callback<bytes> done) {
    if (!session_valid()) return done(no_session());
    read(msg::lease_request{session_, g, 0, secret_}, [done = std::move(done)](result<std::optional<bytes>> r) {
      if (!r) return done(r.explained());
      done(std::move(**r));
    });
  }

  // ---- replica status ----

  /// One replica's own view of the group (msg::status). Not a linearizable
  /// read: a replica cut off may still say it leads; compare the terms.
  struct replica_status {
    address replica;   ///< who answered
    std::string role;  ///< follower, pre_candidate, candidate or leader
    std::uint64_t term = 0;
    std::optional<address> leader;          ///< the leader it knows of in `term`
    std::uint64_t commit = 0, applied = 0;  ///< its Raft commit and applied indexes
    std::uint64_t revision = 0;             ///< the store's revision in its applied state
    std::vector<address> members;           ///< its configuration's voters
    std::vector<address> learners;          ///< and its learners (non-voting members)
  };
  /// At most this many status requests at once (busy beyond), and members in an answer (beyond: malformed).
  static constexpr std::size_t max_pending_statuses = 256, max_status_members = 1024;
  /// Asks `replica` (not necessarily one of the servers) for its status,
  /// resent to it every request_timeout. Errors, in words: timed_out after
  /// give_up_after; peer_unreachable as soon as the transport reports the
  /// replica unreachable; busy beyond max_pending_statuses; malformed_payload
  /// for an answer with a role no replica has or too many members.
  void status(address replica, callback<replica_status> done) {
    if (statuses_.size() >= max_pending_statuses) return done(dcp::make_error_code(dcp::errc::busy));
    const auto nonce = ++nonce_;
    statuses_[nonce] = pending_status{replica, std::move(done), env_.now(), env_.now() + cfg_.request_timeout};
    env_.send(replica, msg::status{nonce});
  }

  // ---- membership (an operator's calls: dcpctl member) ----

  /// A configuration: the voters, and the learners (non-voting members).
  struct membership {
    std::vector<address> voters, learners;
  };
  /// One membership change or leadership transfer (msg::member_op), done
  /// with the configuration after it. add_member, add_learner,
  /// promote_member, remove_member and move_leader below say what each
  /// refuses.
  void change_membership(msg::member_op op, address member, callback<membership> done) {
    change_member(op, std::move(member), std::move(done));
  }
  /// Adds replica `member` as a learner: it receives the log and snapshots
  /// but neither votes nor counts towards commit, so a new replica can
  /// catch up without weakening the group; promote it once caught up.
  /// Errors: as add_member.
  void add_learner(address member, callback<membership> done) {
    change_member(msg::member_op::add_learner, std::move(member), std::move(done));
  }
  /// Makes learner `member` a voter. Errors, in words: busy (another change
  /// or a transfer in progress; or the learner's log lags the leader's:
  /// retry once it has caught up, the words say which), invalid_argument when it
  /// is not a learner, timed_out (outcome unknown).
  void promote_member(address member, callback<membership> done) {
    change_member(msg::member_op::promote, std::move(member), std::move(done));
  }
  /// Hands leadership to voter `member` (Raft's leadership transfer): done
  /// with the new leader once its election deposed the old one (or at once
  /// if it leads already). Errors, in words: invalid_argument when it is not
  /// a voter (a learner: promote it first), timed_out when it did not take
  /// over within an election timeout (cut off or far behind) or no answer
  /// came, busy when another transfer or a membership change is under way.
  void move_leader(address member, callback<address> done) {
    change_member(msg::member_op::move_leader, member, [member, done = std::move(done)](result<membership> r) {
      if (!r) return done(r.explained());
      done(member);
    });
  }

  /// Adds replica `member` to the group (Raft's one-server change: it joins
  /// as a voter at once, so start it, listing the others as peers, and add
  /// one at a time to a healthy group). Completes with the configuration
  /// once it has committed. Errors, in words: invalid_argument when it is
  /// already a member (after a resend, the first send may have added it:
  /// the words list the members), busy when another change has not
  /// committed yet, timed_out (outcome unknown).
  void add_member(address member, callback<std::vector<address>> done) {
    change_member(msg::member_op::add, std::move(member), voters_of(std::move(done)));
  }
  /// Removes replica `member` (a removed leader steps down once the change
  /// commits). Errors: as add_member (invalid_argument: not a member, or the last).
  void remove_member(address member, callback<std::vector<address>> done) {
    change_member(msg::member_op::remove, std::move(member), voters_of(std::move(done)));
  }

  // ---- what is held ----

  /// Grants held now, while the lease lasts.
  std::vector<grant> holds() const {
    std::vector<grant> out;
    if (!session_valid()) return out;
    for (auto& [n, h] : held_) out.push_back({n, h.fencing});
    return out;
  }
  /// A grant was lost (session expired, lease ran out): stop using it.
  void on_lost(std::function<void(const grant&)> fn) { on_lost_ = std::move(fn); }
  void on_session_lost(std::function<void()> fn) { on_session_lost_ = std::move(fn); }

  // ---- messages ----

  void on_message(const address& from, const msg::command_reply& m) {
    if (inflight_.empty() || m.client == 0 || m.client != inflight_.front().client || m.seq != inflight_.front().seq)
      return;  // not for the command in flight
    auto& c = inflight_.front();
    if (m.refused != refusal::none) {
      if (m.refused == refusal::not_leader) note_refusal(from, m.leader);
      auto delay = cfg_.request_timeout / 4;
      if ((m.leader && *m.leader != from) || m.refused == refusal::not_leader) delay = redirect(from, m.leader);
      if (m.refused == refusal::unknown_session) {
        // The log evicted this command session: nothing sent under it can
        // apply again, but an earlier send may have applied. Say so, and
        // register a new session for the next command.
        if (id_ == m.client) id_ = 0;
        env_.count("command_session_unknown");
        return complete(dcp::make_error_code(dcp::errc::outcome_unknown));
      }
      if (m.refused == refusal::failed) return complete(dcp::make_error_code(dcp::errc::io_error));
      if (delay == duration::zero()) return send_front(false);  // to the leader named, now
      c.resend_at = env_.now() + (m.refused == refusal::retry ? duration::zero() : delay);
      c.redirected = true;  // already moved: the resend goes to target_
      return;
    }
    target_ = from;
    complete(m.result);
  }

  void on_message(const address& from, const msg::register_reply& m) {
    if (inflight_.empty() || id_ != 0 || m.nonce == 0 || m.nonce != register_nonce_) return;
    if (m.refused ==
        refusal::failed) {  // the leader will not register one now (its client table is full of live clients)
      register_nonce_ = 0;
      return complete(
          explained_error{dcp::make_error_code(dcp::errc::busy),
                          "busy: the leader refused a command session (its client table is full of live clients, "
                          "or it cannot write); not applied"});
    }
    if (m.refused != refusal::none || m.client == 0) {
      note_refusal(from, m.leader);
      if (redirect(from, m.leader) == duration::zero()) return send_front(false);
      inflight_.front().resend_at = env_.now() + cfg_.request_timeout / 4;
      inflight_.front().redirected = true;
      return;
    }
    target_ = from;
    id_ = m.client;
    seq_ = 0;
    register_nonce_ = 0;
    send_front(false);
  }

  void on_message(const address& from, const msg::keepalive_ack& m) {
    auto it = keepalives_.find(m.nonce);
    if (it == keepalives_.end() || m.session != session_) return;
    const time_point sent = it->second;
    keepalives_.erase(keepalives_.begin(), std::next(it));
    if (m.refused != refusal::none) {
      note_refusal(from, m.leader);
      if (redirect(from, m.leader) == duration::zero()) return send_keepalive();
      // Ask the next replica soon, not a keepalive period later.
      keepalive_retry_at_ = std::min(keepalive_retry_at_, env_.now() + cfg_.request_timeout / 4);
      keepalive_redirected_ = true;
      return;
    }
    target_ = from;
    keepalive_retry_at_ = time_point::max();
    last_answered_ = std::max(last_answered_, sent);
    if (!m.view.alive)
      return lose_session(true,
                          "session expired: the service ended it (no keepalive reached a leader within its TTL of " +
                              std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(cfg_.ttl).count()) +
                              " ms)");
    if (sent + lease_span() > valid_until_) {
      valid_until_ = sent + lease_span();
      arm_expiry();
    }
    if (opening_) {
      auto done = std::move(opening_);
      opening_ = nullptr;
      done(session_);
    }
    // Grants this view should know of (obtained before the keepalive left) and does not: lost.
    std::vector<grant> lost;
    for (auto& [n, h] : held_) {
      const bool there = std::find(m.view.holds.begin(), m.view.holds.end(), grant{n, h.fencing}) != m.view.holds.end();
      if (!there && h.since < sent) lost.push_back({n, h.fencing});
    }
    for (auto& g : lost) {
      held_.erase(g.name);
      if (on_lost_) on_lost_(g);
    }
    // Waits that the view says are over.
    for (auto& g : m.view.holds) {
      if (held_.contains(g.name)) continue;
      auto w = grant_waits_.find(g.name);
      if (w == grant_waits_.end()) {
        // A grant nobody here waits for: released meanwhile (its release is
        // queued), or won by an acquire whose outcome was unknown. Release
        // the latter, or it would be held until the session ends.
        if (!has_command_for(g.name)) {
          env_.count("orphan_grant_released");
          release(g, [](result<void>) {});
        }
        continue;
      }
      auto done = std::move(w->second);
      grant_waits_.erase(w);
      held_[g.name] = held_grant{g.fencing, env_.now()};
      done(g);
    }
    for (auto w = barrier_waits_.begin(); w != barrier_waits_.end();) {
      auto p = m.view.barriers_passed.find(w->first.first);
      if (p != m.view.barriers_passed.end() && p->second >= w->first.second) {
        auto done = std::move(w->second);
        w = barrier_waits_.erase(w);
        done({});
      } else {
        ++w;
      }
    }
  }

  void on_message(const address& from, const msg::query_reply& m) {
    for (auto& [name, o] : observers_) {
      if (o.nonce != m.nonce) continue;
      if (m.refused != refusal::none) {
        note_refusal(from, m.leader);
        (void)redirect(from, m.leader);
        return;
      }
      std::optional<holder> leader;
      if (!m.holders.empty()) leader = m.holders.front();
      if (!o.seen || *o.seen != leader) {
        o.seen = leader;
        o.fn(leader);
      }
      return;
    }
  }

  void on_message(const address& from, const msg::get_reply& m) { answer(from, m.nonce, m.refused, m.leader, m.value); }
  void on_message(const address& from, const msg::range_reply& m) {
    bytes b;  // the read machinery carries bytes; range() decodes them
    if (m.refused == refusal::none) storage::detail::encode_value(m.result, b);
    answer(from, m.nonce, m.refused, m.leader, std::optional<bytes>(std::move(b)));
  }
  /// Passed to range_at() as bytes; an answer no replica gives is refused here.
  void on_message(const address& from, const msg::range_at_reply& m) {
    if (m.refused == refusal::failed)
      return answer(from, m.nonce, m.refused, m.leader, dcp::make_error_code(dcp::errc::io_error));
    if (m.refused != refusal::none) return answer(from, m.nonce, m.refused, m.leader, std::optional<bytes>{});
    const bool known = m.code == status::ok || m.code == status::compacted || m.code == status::future_revision;
    if (!known || m.result.kvs.size() > max_range_keys) {
      env_.count("malformed_range_at");
      return answer(
          from, m.nonce, m.refused, m.leader,
          explained_error{dcp::make_error_code(dcp::errc::malformed_payload),
                          "malformed answer from " + from.to_string() + " (unknown status or too many keys)"});
    }
    bytes b;
    storage::detail::encode_value(revision_read{m.code, m.result, m.compact_revision, m.current_revision}, b);
    answer(from, m.nonce, m.refused, m.leader, std::optional<bytes>(std::move(b)));
  }
  void on_message(const address& from, const msg::member_change_reply& m) {
    if (m.refused == refusal::failed)
      return answer(from, m.nonce, m.refused, m.leader, dcp::make_error_code(dcp::errc::io_error));
    if (m.refused != refusal::none) return answer(from, m.nonce, m.refused, m.leader, std::optional<bytes>{});
    if (m.outcome > msg::member_outcome::wrong_role || m.members.size() > max_status_members ||
        m.learners.size() > max_status_members) {
      env_.count("malformed_member_change");
      return answer(
          from, m.nonce, m.refused, m.leader,
          explained_error{dcp::make_error_code(dcp::errc::malformed_payload),
                          "malformed answer from " + from.to_string() + " (unknown outcome or too many members)"});
    }
    bytes b;
    storage::detail::encode_value(m, b);
    answer(from, m.nonce, m.refused, m.leader, std::optional<bytes>(std::move(b)));
  }
  void on_message(const address& from, const msg::lease_reply& m) {
    if (m.refused == refusal::failed)
      return answer(from, m.nonce, m.refused, m.leader, dcp::make_error_code(dcp::errc::io_error));
    if (m.refused == refusal::none && m.code == status::no_session) {
      auto it = reads_.find(m.nonce);
      if (it != reads_.end() && std::get<msg::lease_request>(it->second.request).session == session_)
        lose_session(true, "session expired: the service says it is gone");  // fails this request too (cancelled)
      return answer(from, m.nonce, m.refused, m.leader, dcp::make_error_code(dcp::errc::cancelled));
    }
    if (m.refused == refusal::none && m.code != status::granted)
      return answer(from, m.nonce, m.refused, m.leader, dcp::make_error_code(dcp::errc::cancelled));
    answer(from, m.nonce, m.refused, m.leader, std::optional<bytes>(m.token));
  }

  void on_message(const address& from, const msg::watch_events& m) {
    auto it = watches_.find(m.watch_id);
    if (it == watches_.end()) return;
    auto& w = it->second;
    if (m.refused == refusal::not_leader || m.refused == refusal::retry) {
      note_refusal(from, m.leader);
      w.renew_at = env_.now() + redirect(from, m.leader);
      return;
    }
    if (m.refused != refusal::none || m.compacted) {
      auto fn = std::move(w.fn);
      watches_.erase(it);
      if (m.compacted) {
        last_compact_revision_ = std::max(last_compact_revision_, m.compact_revision + 1);
        return fn(
            explained_error{make_error_code(errc::compacted),
                            "compacted: revisions up to " + std::to_string(m.compact_revision) +
                                " have left the service's history; read the keys, then watch from their revision + 1"});
      }
      return fn(explained_error{dcp::make_error_code(dcp::errc::busy),
                                "busy: the leader refused the watch (too many watches)"});
    }
    if (w.next != 0 && m.after + 1 > w.next) {  // a push before this one was lost: ask from where we are
      env_.count("watch_gap");
      w.renew_at = env_.now();
      return;
    }
    if (w.next != 0 && m.through < w.next) return;  // a copy of what was delivered
    std::vector<watch_event> fresh;
    for (auto& e : m.events)
      if (w.next == 0 || e.kv.mod_revision >= w.next) fresh.push_back(e);
    w.next = m.through + 1;
    target_ = from;
    if (!fresh.empty()) w.fn(std::move(fresh));  // (it may cancel this watch: nothing follows)
  }

  void on_message(const address& from, const msg::status_reply& m) {
    auto it = statuses_.find(m.nonce);
    if (it == statuses_.end() || it->second.to != from)
      return;  // answered already, given up, or not from whom we asked
    auto done = std::move(it->second.done);
    statuses_.erase(it);
    constexpr std::string_view roles[] = {"follower", "pre_candidate", "candidate", "leader"};
    if (std::find(std::begin(roles), std::end(roles), m.role) == std::end(roles) ||
        m.members.size() > max_status_members || m.learners.size() > max_status_members) {
      env_.count("malformed_status");
      return done(explained_error{dcp::make_error_code(dcp::errc::malformed_payload),
                                  "malformed status from " + from.to_string() + " (unknown role or too many members)"});
    }
    done(replica_status{from, m.role, m.term, m.leader, m.commit, m.applied, m.revision, m.members, m.learners});
  }

  void on_message(const address& from, const msg::notify& m) {
    if (m.session != session_) return;
    // Only a leader notifies: a new one may tell a waiter of its grant before
    // the waiter has found it. (Only the replicas are believed.)
    if (std::find(cfg_.servers.begin(), cfg_.servers.end(), from) != cfg_.servers.end()) target_ = from;
    send_keepalive();
  }
  /// The transport gave up on a replica (a refused or failed connection; in
  /// the simulator, a send to a crashed node). If it is the one this client
  /// talks to, move on now and resend what was outstanding there, instead of
  /// waiting for request_timeout. With notices coming faster than a quarter
  /// request timeout apart (every replica down), the resends wait for that
  /// long, so the client does not spin through the replicas at the speed of
  /// refusals.
  void on_unreachable(const address& peer) {
    std::vector<callback<replica_status>> refused_statuses;  // status requests to it fail at once
    for (auto it = statuses_.begin(); it != statuses_.end();) {
      if (it->second.to == peer) {
        refused_statuses.push_back(std::move(it->second.done));
        it = statuses_.erase(it);
      } else {
        ++it;
      }
    }
    for (auto& fn : refused_statuses)
      fn(explained_error{dcp::make_error_code(dcp::errc::peer_unreachable),
                         "unreachable: " + peer.to_string() + " (connection refused or failed)"});
    if (std::find(cfg_.servers.begin(), cfg_.servers.end(), peer) == cfg_.servers.end()) return;
    refused_[peer] = unreachable_[peer] = env_.now();  // bounded: one entry per replica
    if (!target_ || *target_ != peer) return;
    env_.count("failover_unreachable");
    next_server();
    const auto now = env_.now();
    const auto at = std::max(now, last_failover_ + cfg_.request_timeout / 4);
    last_failover_ = at;
    if (at == now) {
      if (!inflight_.empty()) send_front(false);
      if (session_) send_keepalive();
    } else {
      if (!inflight_.empty()) {
        auto& c = inflight_.front();
        c.resend_at = std::min(c.resend_at, at);
        c.redirected = true;  // already moved: resend to target_
      }
      if (session_) {
        keepalive_retry_at_ = std::min(keepalive_retry_at_, at);
        keepalive_redirected_ = true;
      }
    }
    for (auto& [nonce, r] : reads_) {
      r.resend_at = std::min(r.resend_at, at);
      r.redirected = true;
    }
    for (auto& [name, o] : observers_) o.asked_at = {};
    for (auto& [id, w] : watches_) w.renew_at = std::min(w.renew_at, at);
  }

  void on_message(const address&, const msg::command&) { env_.count("unexpected_message"); }
  void on_message(const address&, const msg::keepalive&) { env_.count("unexpected_message"); }
  void on_message(const address&, const msg::query&) { env_.count("unexpected_message"); }
  void on_message(const address&, const msg::get&) { env_.count("unexpected_message"); }
  void on_message(const address&, const msg::lease_request&) { env_.count("unexpected_message"); }
  void on_message(const address&, const msg::register_client&) { env_.count("unexpected_message"); }
  void on_message(const address&, const msg::range&) { env_.count("unexpected_message"); }
  void on_message(const address&, const msg::watch&) { env_.count("unexpected_message"); }
  void on_message(const address&, const msg::status&) { env_.count("unexpected_message"); }
  void on_message(const address&, const msg::range_at&) { env_.count("unexpected_message"); }
  void on_message(const address&, const msg::member_change&) { env_.count("unexpected_message"); }

  std::uint64_t id() const noexcept { return id_; }

 private:
  using reply_fn = std::function<void(result<reply>, time_point first_sent)>;
  struct pending_command {
    request req;
    reply_fn done;
    time_point first_sent{}, resend_at{};
    std::uint64_t client = 0, seq = 0;  ///< the command session and number it was sent under (0: not yet)
    bool redirected = false;  ///< refused (or its replica unreachable): resend to target_, not to the next replica
  };
  struct held_grant {
    fencing_token fencing = 0;
    time_point since{};
  };
  /// A request answered by a ReadIndex at the leader (get, lease): resent
  /// until answered or given up; any answer to any of its sends is valid.
  struct pending_read {
    std::variant<msg::get, msg::lease_request, msg::range, msg::range_at, msg::member_change>
        request;  ///< its nonce names it
    callback<std::optional<bytes>> done;
    time_point first_sent{}, resend_at{};
    bool redirected = false;  ///< refused with a hint: resend to target_, not to another replica
    bool maybe_applied =
        false;  ///< an earlier send went unanswered or was refused with retry: it may have done what it asked
  };
  struct pending_status {
    address to;
    callback<replica_status> done;
    time_point first_sent{}, resend_at{};
  };
  struct watch_state {
    std::string key, range_end;
    std::uint64_t next = 0;  ///< the revision to resume from (0: from the leader's next change)
    watch_callback fn;
    time_point renew_at{};
  };
  void send_watch(std::uint64_t id) {
    auto& w = watches_.at(id);
    w.renew_at = env_.now() + cfg_.keepalive_every;
    env_.send(target(), msg::watch{id, w.key, w.range_end, w.next, false});
  }

  struct observer {
    std::function<void(std::optional<holder>)> fn;
    std::optional<std::optional<holder>> seen;
    time_point asked_at{};
    std::uint64_t nonce = 0;
  };

  duration lease_span() const { return std::chrono::duration_cast<duration>(cfg_.ttl * (1.0 - 2 * cfg_.drift_bound)); }

  static std::string list_of(const std::vector<address>& members) {
    std::string out;
    for (auto& a : members) out += (out.empty() ? "" : ",") + a.to_string();
    return out;
  }
  static callback<membership> voters_of(callback<std::vector<address>> done) {
    return [done = std::move(done)](result<membership> r) {
      if (!r) return done(r.explained());
      done(std::move(r->voters));
    };
  }
  void change_member(msg::member_op op, address member, callback<membership> done) {
    if (member == address{} || op > msg::member_op::move_leader)
      return done(dcp::make_error_code(dcp::errc::invalid_argument));
    const auto who = member.to_string();
    read(msg::member_change{0, op, std::move(member)},
         [this, op, who, done = std::move(done)](result<std::optional<bytes>> r) {
           using o = msg::member_op;
           if (!r) return done(r.explained());
           msg::member_change_reply m;
           if (!*r || storage::detail::decode_value(**r, m)) return done(dcp::make_error_code(dcp::errc::io_error));
           const auto config = " (voters: " + list_of(m.members) +
               (m.learners.empty() ? "" : "; learners: " + list_of(m.learners)) + ")";
           auto refuse = [&](dcp::errc ec, std::string why) {
             done(explained_error{dcp::make_error_code(ec), std::move(why)});
           };
           switch (m.outcome) {
             case msg::member_outcome::done:
               return done(membership{std::move(m.members), std::move(m.learners)});
             case msg::member_outcome::already:
               // What was asked is so: a move to the leader; or an earlier send
               // went unanswered (its answer lost or late) or was refused with
               // retry, so it may have made the change itself. (After a
               // not_leader refusal alone it did not.)
               if (op == o::move_leader || op == o::promote || answered_maybe_applied_)
                 return done(membership{std::move(m.members), std::move(m.learners)});
               return refuse(dcp::errc::invalid_argument,
                             who + (op == o::remove ? " is not a member" : " is already a member") + config);
             case msg::member_outcome::pending:
               return refuse(
                   dcp::errc::busy,
                   "busy: a membership change or leadership transfer is still in progress; retry when it ends");
             case msg::member_outcome::not_ready:
               if (op == o::move_leader)
                 return refuse(dcp::errc::timed_out,
                               "leadership did not move: " + who +
                                   " did not take over within an election timeout (cut off, or far behind); retry");
               return refuse(
                   dcp::errc::busy,
                   "cannot promote " + who + ": its log lags the leader's; wait until it has caught up and retry");
             case msg::member_outcome::wrong_role:
               if (op == o::move_leader)
                 return refuse(dcp::errc::invalid_argument,
                               "cannot move leadership to " + who + ": not a voter (promote a learner first)" + config);
               return refuse(dcp::errc::invalid_argument,
                             "cannot promote " + who + ": not a learner (add it with --learner first)" + config);
             case msg::member_outcome::invalid:
               break;
           }
           refuse(dcp::errc::invalid_argument, "cannot change " + who + ": the last voter, or not a replica's address");
         });
  }

  void take(std::string name, std::uint32_t permits, bool wait, bytes value, callback<grant> done) {
    if (!session_valid()) return done(no_session());
    if (name.empty() || permits == 0) return done(dcp::make_error_code(dcp::errc::invalid_argument));
    if (grant_waits_.contains(name)) return done(dcp::make_error_code(dcp::errc::busy));
    submit({op::acquire, session_, name, permits, wait, 0, 0, std::move(value)},
           [this, name, issued = session_, done = std::move(done)](result<reply> r, time_point) {
             if (!r) return done(r.explained());
             if (session_ != issued) return done(no_session());  // judged by its session
             switch (r->code) {
               case status::granted:
                 held_[name] = held_grant{r->fencing, env_.now()};
                 return done(grant{name, r->fencing});
               case status::queued:
                 grant_waits_[name] = std::move(done);
                 return;
               case status::busy:
                 return done(dcp::make_error_code(dcp::errc::busy));
               case status::no_session:
                 return done(explained_error{dcp::make_error_code(dcp::errc::cancelled),
                                             "cancelled: the service does not know the session"});
               default:
                 return done(dcp::make_error_code(dcp::errc::invalid_argument));
             }
           });
  }

  /// A key-value write's answer: the revision (put_ephemeral), or the number removed (remove).
  reply_fn kv_reply(callback<std::uint64_t> done, bool removed) {
    return [this, issued = session_, removed, done = std::move(done)](result<reply> r, time_point) {
      if (!r) return done(r.explained());
      if (!removed && session_ != issued) return done(no_session());
      switch (r->code) {
        case status::ok:
          return done(removed ? r->fencing : r->generation);
        default:
          return done(write_refused(*r));
      }
    };
  }

  void write_value(op kind, std::string key, bytes value, callback<void> done) {
    if (key.empty() || key.size() > max_key_bytes || value.size() > max_value_bytes)
      return done(dcp::make_error_code(dcp::errc::invalid_argument));
    submit({kind, 0, std::move(key), 1, true, 0, 0, std::move(value)},
           [this, done = std::move(done)](result<reply> r, time_point) {
             if (!r) return done(r.explained());
             if (r->code == status::quota_exceeded) return done(dcp::make_error_code(dcp::errc::busy));
             if (r->code == status::client_quota_exceeded) return done(quota_error(*r));
             if (r->code != status::ok) return done(dcp::make_error_code(dcp::errc::invalid_argument));
             done({});
           });
  }

  bool has_command_for(const std::string& name) const {
    return std::any_of(inflight_.begin(), inflight_.end(),
                       [&](const pending_command& c) { return c.req.name == name; });
  }

  void enter_or_leave(op kind, std::string name, std::uint32_t parties, callback<void> done) {
    if (!session_valid()) return done(no_session());
    if (name.empty() || parties == 0) return done(dcp::make_error_code(dcp::errc::invalid_argument));
    submit({kind, session_, name, parties}, [this, name, done = std::move(done)](result<reply> r, time_point) {
      if (!r) return done(r.explained());
      if (r->code != status::queued)
        return done(
            dcp::make_error_code(r->code == status::no_session ? dcp::errc::cancelled : dcp::errc::invalid_argument));
      barrier_waits_.emplace(std::pair{name, r->generation}, std::move(done));
      send_keepalive();
    });
  }

  void submit(request req, reply_fn done) {
    if (req.session) req.secret = secret_;  // (the lost session's, for its close: kept until the next open)
    inflight_.push_back(pending_command{std::move(req), std::move(done)});
    if (inflight_.size() == 1) send_front(true);
  }
  void send_front(bool first) {
    auto& c = inflight_.front();
    if (first) c.first_sent = env_.now();
    c.resend_at = env_.now() + cfg_.request_timeout;
    c.redirected = false;
    if (id_ == 0) {  // no command session yet: register one first (the same nonce until answered)
      if (!register_nonce_) register_nonce_ = env_.rng()() | 1;
      env_.send(target(), msg::register_client{register_nonce_});
      return;
    }
    if (c.client != id_) {
      c.client = id_;
      c.seq = ++seq_;
    }
    env_.send(target(), msg::command{c.client, c.seq, c.req});
  }
  void complete(result<reply> r) {
    auto c = std::move(inflight_.front());
    inflight_.pop_front();
    if (!inflight_.empty()) send_front(true);
    c.done(std::move(r), c.first_sent);
  }

  void tick() {
    const auto now = env_.now();
    if (opening_ && now - opening_since_ > cfg_.give_up_after)
      lose_session(true, "session not confirmed: " + unreachable_words(opening_since_));
    if (session_ && !opening_ && now >= valid_until_) lose_session(true, expiry_words());
    if (!inflight_.empty()) {
      auto& c = inflight_.front();
      if (now - c.first_sent > cfg_.give_up_after) {
        complete(explained_error{dcp::make_error_code(dcp::errc::timed_out),
                                 "timed out, outcome unknown: " + unreachable_words(c.first_sent)});
      } else if (now >= c.resend_at) {
        // Unanswered: that replica may be down or cut off. (Refused: the
        // client already moved, to the leader named if any; moving again
        // would walk away from the leader.)
        if (!c.redirected && now - c.first_sent >= cfg_.request_timeout) next_server();
        send_front(false);
      }
    }
    if (session_ && now >= keepalive_retry_at_) {  // unanswered (or refused): ask another replica, or the one named
      if (!keepalive_redirected_) next_server();
      send_keepalive();
    } else if (session_ && now - last_keepalive_ >= (opening_ ? cfg_.request_timeout : cfg_.keepalive_every)) {
      send_keepalive();
    }
    for (auto& [name, o] : observers_)
      if (now - o.asked_at >= cfg_.keepalive_every) query(name);
    std::vector<std::uint64_t> renew;
    for (auto& [id, w] : watches_)
      if (now >= w.renew_at) renew.push_back(id);
    for (auto id : renew) send_watch(id);
    tick_reads(now);
    tick_statuses(now);
  }

  void tick_statuses(time_point now) {
    std::vector<std::pair<callback<replica_status>, pending_status>> expired;
    for (auto it = statuses_.begin(); it != statuses_.end();) {
      auto& p = it->second;
      if (now - p.first_sent > cfg_.give_up_after) {
        auto done = std::move(p.done);
        expired.emplace_back(std::move(done), std::move(p));
        it = statuses_.erase(it);
        continue;
      }
      if (now >= p.resend_at) {
        p.resend_at = now + cfg_.request_timeout;
        env_.send(p.to, msg::status{it->first});
      }
      ++it;
    }
    for (auto& [done, p] : expired) {
      const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now - p.first_sent).count();
      done(explained_error{dcp::make_error_code(dcp::errc::timed_out),
                           "timed out: no status from " + p.to.to_string() + " in " + std::to_string(ms) + " ms"});
    }
  }

  template <class Request> void read(Request req, callback<std::optional<bytes>> done) {
    req.nonce = ++nonce_;
    const auto nonce = req.nonce;
    reads_[nonce] = pending_read{req, std::move(done), env_.now(), env_.now() + cfg_.request_timeout};
    env_.send(target(), req);
  }
  void answer(const address& from, std::uint64_t nonce, refusal refused, const std::optional<address>& leader,
              result<std::optional<bytes>> r) {
    auto it = reads_.find(nonce);
    if (it == reads_.end()) return;  // answered already, or given up
    if (refused == refusal::not_leader || refused == refusal::retry) {
      if (refused == refusal::not_leader)
        note_refusal(from, leader);
      else
        it->second.maybe_applied = true;                           // outcome unknown (not_leader: it was not acted on)
      it->second.resend_at = env_.now() + redirect(from, leader);  // resent by tick_reads
      it->second.redirected = true;
      return;
    }
    target_ = from;
    auto done = std::move(it->second.done);
    answered_maybe_applied_ = it->second.maybe_applied;
    reads_.erase(it);
    done(std::move(r));
  }

  void tick_reads(time_point now) {
    std::vector<std::pair<callback<std::optional<bytes>>, time_point>> expired;
    for (auto it = reads_.begin(); it != reads_.end();) {
      auto& g = it->second;
      if (now - g.first_sent > cfg_.give_up_after) {
        expired.emplace_back(std::move(g.done), g.first_sent);
        it = reads_.erase(it);
        continue;
      }
      if (now >= g.resend_at) {
        if (!g.redirected) {  // unanswered: that replica may be down or cut off, or its answer lost
          next_server();
          g.maybe_applied = true;
        }
        g.redirected = false;
        g.resend_at = now + cfg_.request_timeout;
        std::visit([&](const auto& req) { env_.send(target(), req); }, g.request);  // same nonce
      }
      ++it;
    }
    for (auto& [done, since] : expired)
      done(explained_error{dcp::make_error_code(dcp::errc::timed_out), "timed out: " + unreachable_words(since)});
  }

  void send_keepalive() {
    if (!session_) return;
    last_keepalive_ = env_.now();
    keepalive_retry_at_ = env_.now() + cfg_.request_timeout;
    keepalive_redirected_ = false;
    keepalives_[++nonce_] = env_.now();
    while (keepalives_.size() > 64) keepalives_.erase(keepalives_.begin());
    env_.send(target(), msg::keepalive{session_, nonce_, secret_});
  }
  void query(const std::string& name) {
    auto& o = observers_[name];
    o.asked_at = env_.now();
    o.nonce = ++nonce_;
    env_.send(target(), msg::query{name, o.nonce});
  }

  /// The lease ends at valid_until_ in this client's clock: a timer for that
  /// instant, so on_lost is not a tick late.
  void arm_expiry() {
    if (expiry_timer_) env_.cancel(expiry_timer_);
    expiry_timer_ = {};
    if (!session_ || opening_) return;
    const auto deadline = valid_until_;
    expiry_timer_ = env_.arm(std::max(deadline - env_.now(), duration::zero()), [this, deadline] {
      expiry_timer_ = {};
      // Armed for exactly this deadline: the lease has run out, whatever a
      // rounding of the clock says (a later keepalive would have re-armed).
      if (session_ && !opening_ && valid_until_ == deadline) lose_session(true, expiry_words());
    });
  }

  void lose_session(bool signal, std::string why = "session closed") {
    if (!session_) return;
    const session_id lost_session = session_;
    session_ = 0;
    last_loss_ = why;  // (before on_lost fires: its handler may ask why)
    if (expiry_timer_) env_.cancel(expiry_timer_);
    expiry_timer_ = {};
    auto held = std::move(held_);
    held_.clear();
    auto gw = std::move(grant_waits_);
    grant_waits_.clear();
    auto bw = std::move(barrier_waits_);
    barrier_waits_.clear();
    keepalives_.clear();
    if (signal) {
      env_.count("session_lost");
      for (auto& [n, h] : held)
        if (on_lost_) on_lost_(grant{n, h.fencing});
    }
    std::vector<callback<std::optional<bytes>>> leases;  // lease requests die with the session; gets do not
    for (auto it = reads_.begin(); it != reads_.end();) {
      if (std::holds_alternative<msg::lease_request>(it->second.request)) {
        leases.push_back(std::move(it->second.done));
        it = reads_.erase(it);
      } else {
        ++it;
      }
    }
    // The session's queued and in-flight commands end with it: an answer that
    // comes later (a grant to the lost session, say) must not reach the user.
    std::vector<reply_fn> orphaned;
    const bool front_lost = !inflight_.empty() && inflight_.front().req.session == lost_session;
    for (auto it = inflight_.begin(); it != inflight_.end();) {
      // (A transaction goes on: its plain writes stand whatever becomes of the
      // session; its ephemeral ones go with the session.)
      if (it->req.session == lost_session && it->req.kind != op::close_session && it->req.kind != op::txn) {
        orphaned.push_back(std::move(it->done));
        it = inflight_.erase(it);
      } else {
        ++it;
      }
    }
    if (front_lost && !inflight_.empty()) send_front(true);
    const explained_error ended{dcp::make_error_code(dcp::errc::cancelled), "cancelled: " + why};
    for (auto& fn : orphaned) fn(ended, time_point{});
    for (auto& [n, fn] : gw) fn(ended);
    for (auto& [k, fn] : bw) fn(ended);
    for (auto& fn : leases) fn(ended);
    if (opening_) {
      auto done = std::move(opening_);
      opening_ = nullptr;
      done(explained_error{dcp::make_error_code(dcp::errc::timed_out), why});
    }
    if (signal && on_session_lost_) on_session_lost_();
  }

  const address& target() {
    if (!target_) target_ = cfg_.servers[env_.rng().below(cfg_.servers.size())];
    return *target_;
  }
  /// Moves to another replica, never the current one (when there is another):
  /// drawing among all n stayed on a dead replica one time in n.
  /// Replicas the transport reported unreachable within the last request
  /// timeout are passed over while another is left (a follower's hint may
  /// still name the leader that just died).
  void next_server() {
    const auto n = cfg_.servers.size();
    auto it = std::find(cfg_.servers.begin(), cfg_.servers.end(), target());
    const auto at = it == cfg_.servers.end() ? 0 : static_cast<std::size_t>(it - cfg_.servers.begin());
    if (n < 2) return void(target_ = cfg_.servers[0]);
    std::size_t candidates = 0;
    for (std::size_t i = 1; i < n; ++i) candidates += !recently_unreachable(cfg_.servers[(at + i) % n]);
    if (candidates == 0) return void(target_ = cfg_.servers[(at + 1 + env_.rng().below(n - 1)) % n]);
    auto pick = env_.rng().below(candidates);
    for (std::size_t i = 1; i < n; ++i) {
      const auto& s = cfg_.servers[(at + i) % n];
      if (recently_unreachable(s)) continue;
      if (pick-- == 0) return void(target_ = s);
    }
  }
  bool recently_unreachable(const address& a) const {
    auto it = unreachable_.find(a);
    return it != unreachable_.end() && env_.now() - it->second < cfg_.request_timeout;
  }
  /// A refusal from `from`: go to the leader it names (unless the transport
  /// just reported that one unreachable), or to another replica.
  /// A refusal from a replica the client has already left (several requests
  /// were outstanding there) changes nothing: moving again from the current
  /// one would walk away from where the first refusal sent it.
  /// Returns how long to wait before resending: nothing when it follows a
  /// named leader (at most once a quarter request timeout, in case two
  /// replicas name each other for a while), else a quarter request timeout
  /// (an election is under way; do not spin through the replicas).
  duration redirect(const address& from, const std::optional<address>& leader) {
    if (target_ && *target_ != from) return cfg_.request_timeout / 4;
    if (leader && *leader != from && !recently_unreachable(*leader)) {
      target_ = *leader;
      if (env_.now() >= last_followed_ + cfg_.request_timeout / 4) {  // (no subtraction: it starts at min)
        last_followed_ = env_.now();
        return duration::zero();
      }
      return cfg_.request_timeout / 4;
    }
    next_server();
    return cfg_.request_timeout / 4;
  }
  /// `from` said it does not lead and named no other: it counts as refusing.
  void note_refusal(const address& from, const std::optional<address>& leader) {
    if (leader && *leader != from) return;
    if (std::find(cfg_.servers.begin(), cfg_.servers.end(), from) != cfg_.servers.end()) refused_[from] = env_.now();
  }
  /// Why nothing answered since `since`, in words.
  std::string unreachable_words(time_point since) const {
    std::size_t k = 0;
    for (auto& [peer, at] : refused_) k += at >= since;
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(env_.now() - since).count();
    if (k > 0)
      return "no leader reachable: " + std::to_string(k) + " of " + std::to_string(cfg_.servers.size()) +
          " replicas refused (unreachable or not leading) in " + std::to_string(ms) + " ms";
    return "no answer from any of " + std::to_string(cfg_.servers.size()) + " replicas in " + std::to_string(ms) +
        " ms";
  }
  /// This client is at one of its per-client quotas (server_config::quotas):
  /// busy, saying which, how much it holds and the limit.
  explained_error quota_error(const reply& r) const {
    return {dcp::make_error_code(dcp::errc::busy), quota_message(r, env_.self().to_string())};
  }
  /// Why a write was refused, for each write's answer: no session, the
  /// store's or this client's quota, or a request the service calls bad.
  explained_error write_refused(const reply& r) const {
    switch (r.code) {
      case status::no_session:
        return no_session();
      case status::quota_exceeded:
        return {dcp::make_error_code(dcp::errc::busy), {}};
      case status::client_quota_exceeded:
        return quota_error(r);
      default:
        return {dcp::make_error_code(dcp::errc::invalid_argument), {}};
    }
  }
  explained_error no_session() const {
    return {
        dcp::make_error_code(dcp::errc::cancelled),
        last_loss_.empty() ? "cancelled: no session (open one first)" : "cancelled: no session (" + last_loss_ + ")"};
  }
  std::string expiry_words() const {
    const auto since = last_answered_ == time_point{} ? opening_since_ : last_answered_;
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(env_.now() - since).count();
    return "session expired: keepalives unanswered for " + std::to_string(ms) + " ms (" + unreachable_words(since) +
        ")";
  }

  E env_;
  client_config cfg_;
  std::uint64_t id_ = 0, seq_ = 0, nonce_ = 0;  // id_: the command session (0: none; register first)
  bool answered_maybe_applied_ =
      false;  // the read answered last may have been acted on by an earlier send (change_member)
  std::uint64_t register_nonce_ = 0;         // the registration under way (0: none)
  std::uint64_t last_compact_revision_ = 0;  // the newest compact revision heard of
  std::uint64_t secret_ = 0;                 // the session's secret (its owner's proof)
  timer_id expiry_timer_{};
  session_id session_ = 0;
  time_point valid_until_{}, last_keepalive_{}, opening_since_{};
  time_point last_answered_{};                         // when the last acknowledged keepalive was sent
  time_point keepalive_retry_at_ = time_point::max();  // a keepalive unanswered (or refused) by then: ask again
  bool keepalive_redirected_ = false;                  // refused with a hint: ask target_, not the next replica
  time_point last_followed_ = time_point::min();       // the last immediate resend to a named leader
  time_point last_failover_ = time_point::min();  // the last move on an unreachable notice (clocks may read below 0)
  std::map<address, time_point> refused_;         // replica -> its last refusal or unreachable notice (one per replica)
  std::map<address, time_point> unreachable_;  // replica -> the transport's last unreachable notice (one per replica)
  std::string last_loss_;                      // why the last session ended, in words
  callback<session_id> opening_;               // open_session waits for the first keepalive answer
  std::optional<address> target_;
  std::deque<pending_command> inflight_;
  std::map<std::string, held_grant> held_;
  std::map<std::string, callback<grant>> grant_waits_;
  std::map<std::pair<std::string, std::uint64_t>, callback<void>> barrier_waits_;
  std::map<std::uint64_t, time_point> keepalives_;  // nonce -> when sent
  std::map<std::string, observer> observers_;
  std::map<std::uint64_t, watch_state> watches_;
  std::map<std::uint64_t, pending_read> reads_;       // by nonce
  std::map<std::uint64_t, pending_status> statuses_;  // by nonce (bounded: max_pending_statuses)
  std::function<void(const grant&)> on_lost_;
  std::function<void()> on_session_lost_;
  periodic<E> ticker_;
};

}  // namespace dcp::coord
