#pragma once
// dht::store: a replicated key-value store over any Router.
//
//   dcp::dht::store<Env, dcp::dht::kademlia<Env>> s(env, router, cfg);
//   s.put("key", value, ttl, [](dcp::result<std::uint64_t> version) {...});
//   s.get("key", [](dcp::result<dcp::dht::stored_value> v) {...});
//   s.remove("key", [](dcp::result<std::uint64_t> version) {...});
//
// Every completion gets the value or the error (dcp/dht/error.hpp), and runs
// after the call has returned.
//
// A key lives on the r nodes responsible for it (Router::lookup(hash(key), r):
// Chord's successors, Pastry's numerically closest, Kademlia's XOR-closest).
//   - Versions: every write carries (version, writer); the larger pair wins
//     everywhere (last-writer-wins). The version defaults to the writer's
//     wall clock in nanoseconds since the Unix epoch, so writers with skewed
//     clocks can lose to older writes; callers with a better order (a
//     counter, a lease epoch) pass it.
//   - Versions are bounded: a write whose version is more than
//     `max_version_lead` (default 1 h) ahead of the receiving node's wall
//     clock, in nanoseconds since the epoch, is refused (put: errc::
//     version_too_far_ahead; from the network: "version_too_far_ahead").
//     Without the rule one write at version 2^64-1 would win forever. Counter
//     versions are far below any clock reading and always pass; clocks more
//     than max_version_lead apart refuse each other's default versions.
//   - put completes when write_quorum replicas acknowledged (the put is
//     sent again every request_timeout / 4 to the replicas that have not:
//     a lost put or ack must not fail it; applying a put twice is harmless,
//     an item as new as the one held is kept); get asks all r
//     and returns the newest answer, writing it back to replicas that were
//     behind (read repair). When none of the r holds the key (under churn, a
//     node that just joined next to it is responsible before re-replication
//     reached it), get asks the next r nodes before it says not_found. With write_quorum + read answers > r a get
//     sees the latest acknowledged put, and values survive r-1 crashes.
//   - TTL: a value expires ttl after it was written (each replica counts
//     from its own receipt). TTLs are at most `max_ttl` (put: errc::
//     ttl_too_large; from the network: "ttl_too_large"), so no value outlives
//     the store's configuration. remove() writes a tombstone that hides older
//     values and itself expires after tombstone_ttl.
//   - Re-replication: every sync_interval each node offers summaries of its
//     items to the nodes now responsible for them (Router::closest, r + 1 of
//     them, as a replica that crashed may not have been noticed yet); they ask
//     for what they lack or hold older, so responsibility that moved under
//     churn is repaired. A node that is no longer responsible hands its items
//     over the same way and keeps them until they expire (its view may be the
//     stale one, and the copy may be the last).
//   - Responsibility: a node keeps a put, and pulls an offered item, only at a
//     place it is among the 2r nodes closest to in its router's view
//     (responsible(); "not_responsible"), so no sender fills a node with keys
//     it has no part in. The r of slack covers views that differ under churn,
//     so handoff, repair and read repair still reach a new replica.
//   - Limits: keys, values and the number of items per node are bounded;
//     oversize user input fails with key_too_large / value_too_large, and
//     oversize network input is dropped and counted.
//   - Signed values (BEP 44's mutable items; dcp/dht/signature.hpp): with a
//     SignatureVerifier V (dht::ed25519_verifier, dcp/dht/ed25519.hpp) a
//     value may carry {public key, salt <= 64 bytes, seq, signature over
//     (salt, seq, value)}; it lives at SHA-1(public key || salt). A replica
//     stores it only if the signature verifies (bad_signature), replaces a
//     stored signed value only with a higher seq (seq_not_newer; the same
//     seq and value again only extends its lifetime), and refuses every
//     unsigned write or tombstone to a place holding a signed value
//     (key_is_signed): an owner's value cannot be overwritten, deleted or
//     rolled back by anyone else while it lives. A signed value displaces an
//     unsigned item squatting its place (an unsigned key whose hash is the
//     target). Refusals are counted and sent back in the put's
//     acknowledgement; a put that too many replicas refuse fails with the
//     reason. Re-replication, handoff and read repair carry the signature,
//     and a get verifies every answer, so a replica cannot forge one either.
//     The seq is bounded like a version (wall clock + max_version_lead); the
//     TTL is not signed and is bounded by max_ttl. Not protected: replaying
//     an owner's older value once every replica's copy has expired, keeping
//     the owner's latest value alive by putting it again (both as in BEP 44),
//     and an owner signing two values with one seq (the replicas keep
//     whichever they saw first).
#include <algorithm>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "dcp/core/env.hpp"
#include "dcp/core/error.hpp"
#include "dcp/core/node_id.hpp"
#include "dcp/core/protocol.hpp"
#include "dcp/dht/contact.hpp"
#include "dcp/dht/error.hpp"
#include "dcp/dht/router.hpp"
#include "dcp/dht/signature.hpp"
#include "dcp/wire/message.hpp"

namespace dcp::dht {

struct store_config {
  std::size_t replicas = 3;  ///< r
  /// Acknowledgements a put waits for (0: a majority of r).
  std::size_t write_quorum = 0;
  std::size_t max_key_size = 1024;
  std::size_t max_value_size = 64 * 1024;
  std::size_t max_items = 1'000'000;  ///< per node; puts beyond it are refused (counted)
  duration default_ttl = std::chrono::minutes(10);
  duration tombstone_ttl = std::chrono::minutes(10);
  /// The longest TTL accepted, from users and from peers (>= default_ttl and tombstone_ttl).
  duration max_ttl = std::chrono::hours(24);
  /// How far ahead of the receiver's wall clock a version may be (see the header).
  duration max_version_lead = std::chrono::hours(1);
  duration request_timeout = 2s;
  duration sync_interval = 5s;
  /// Item summaries per sync message (~40 bytes each: 512 make ~20 kB). Over
  /// a datagram transport, what fits one datagram (30 in 1,400 bytes).
  std::size_t sync_batch = 512;

  std::size_t quorum() const noexcept { return write_quorum ? write_quorum : replicas / 2 + 1; }
  void validate() const {
    if (replicas < 1) throw error(dcp::errc::invalid_config, "dht::store: replicas must be >= 1");
    if (write_quorum > replicas)
      throw error(dcp::errc::invalid_config, "dht::store: write_quorum cannot exceed replicas");
    if (max_key_size < 1 || max_value_size < 1 || max_items < 1 || sync_batch < 1)
      throw error(dcp::errc::invalid_config, "dht::store: size limits must be >= 1");
    if (default_ttl <= duration::zero() || tombstone_ttl <= duration::zero() || request_timeout <= duration::zero() ||
        sync_interval <= duration::zero())
      throw error(dcp::errc::invalid_config, "dht::store: TTLs, timeouts and intervals must be > 0");
    if (max_ttl < default_ttl || max_ttl < tombstone_ttl)
      throw error(dcp::errc::invalid_config, "dht::store: max_ttl must cover default_ttl and tombstone_ttl");
    if (max_version_lead < duration::zero())
      throw error(dcp::errc::invalid_config, "dht::store: max_version_lead must be >= 0");
  }
};

/// What get() returns.
struct stored_value {
  bytes value;
  std::uint64_t version = 0;
};

namespace store_msg {
struct item {  // one versioned write, as it travels
  std::string key;
  bytes value;
  std::uint64_t version = 0;
  std::uint64_t writer = 0;  // tie-break between equal versions
  std::int64_t ttl_ms = 0;   // remaining lifetime
  bool tombstone = false;
  // a signed value (signature.hpp): key empty, version is its seq, writer 0
  bytes signer;  // the owner's public key; empty: unsigned
  bytes salt;
  bytes signature;
  bool is_signed() const noexcept { return !signer.empty(); }
  template <class A> void serialize(A& ar) {
    ar(key, value, version, writer, ttl_ms, tombstone, signer, salt, signature);
  }
};
struct put {
  static constexpr message_type wire_id = 1;
  static constexpr std::string_view wire_name = "put";
  std::uint64_t nonce = 0;  // 0: no acknowledgement wanted (repair traffic)
  item it;
  template <class A> void serialize(A& ar) { ar(nonce, it); }
};
struct put_ack {
  static constexpr message_type wire_id = 2;
  static constexpr std::string_view wire_name = "put_ack";
  std::uint64_t nonce = 0;
  bool stored = false;
  std::uint8_t refused = 0;  // why not stored: a dht::errc (bad_signature, seq_not_newer, key_is_signed), 0 otherwise
  template <class A> void serialize(A& ar) { ar(nonce, stored, refused); }
};
struct get {
  static constexpr message_type wire_id = 3;
  static constexpr std::string_view wire_name = "get";
  std::uint64_t nonce = 0;
  std::string key;
  template <class A> void serialize(A& ar) { ar(nonce, key); }
};
struct get_reply {
  static constexpr message_type wire_id = 4;
  static constexpr std::string_view wire_name = "get_reply";
  std::uint64_t nonce = 0;
  bool found = false;  // an item (perhaps a tombstone) is held
  item it;
  template <class A> void serialize(A& ar) { ar(nonce, found, it); }
};
struct summary {
  node_id hash;
  std::uint64_t version = 0, writer = 0;
  bool is_signed = false;  // a signed value (version is its seq) beats any unsigned item at its place
  template <class A> void serialize(A& ar) { ar(hash, version, writer, is_signed); }
};
struct sync_offer {
  static constexpr message_type wire_id = 5;
  static constexpr std::string_view wire_name = "sync_offer";
  std::vector<summary> items;
  template <class A> void serialize(A& ar) { ar(items); }
};
struct sync_want {
  static constexpr message_type wire_id = 6;
  static constexpr std::string_view wire_name = "sync_want";
  std::vector<node_id> hashes;
  template <class A> void serialize(A& ar) { ar(hashes); }
};
struct get_signed {  // the signed value at `target` (answered by get_reply)
  static constexpr message_type wire_id = 7;
  static constexpr std::string_view wire_name = "get_signed";
  std::uint64_t nonce = 0;
  node_id target;
  template <class A> void serialize(A& ar) { ar(nonce, target); }
};
}  // namespace store_msg

template <Env E, class R, class V = no_signatures> class store {
  static_assert(Router<R>, "dcp::dht::store<Env, R>: R must model dcp::dht::Router (see dcp/dht/router.hpp)");
  static_assert(SignatureVerifier<V>,
                "dcp::dht::store<Env, R, V>: V must model dcp::dht::SignatureVerifier (see dcp/dht/signature.hpp)");

 public:
  using messages = wire::message_set<store_msg::put, store_msg::put_ack, store_msg::get, store_msg::get_reply,
                                     store_msg::sync_offer, store_msg::sync_want, store_msg::get_signed>;
  /// What it counts (env.count), declared: dcp/core/counter_set.hpp.
  static constexpr dcp::counter_set counters{{"stray_ack",
                                              "bad_key",
                                              "stray_reply",
                                              "version_too_far_ahead",
                                              "signature_unverifiable",
                                              "bad_item",
                                              "bad_signature",
                                              "ttl_too_large",
                                              "signature_checks",
                                              "not_responsible",
                                              "signer_mismatch",
                                              "unsigned_over_signed",
                                              "seq_not_newer",
                                              "signed_over_unsigned",
                                              "store_full",
                                              "stored",
                                              "put_resent",
                                              "put_below_quorum",
                                              "get_widened",
                                              "expired"}};
  static constexpr std::string_view name = "dht_store";
  static constexpr protocol_id default_id = 90;
  using put_callback = std::function<void(result<std::uint64_t>)>;  ///< the version written, or the error
  using get_callback = std::function<void(result<stored_value>)>;

  store(E env, R& router, store_config cfg = {}, V verifier = {})
      : env_(std::move(env)), router_(router), cfg_(cfg), verifier_(std::move(verifier)) {
    cfg_.validate();
  }
  store(const store&) = delete;
  store& operator=(const store&) = delete;
  ~store() {
    sync_timer_.stop();
    for (auto& [n, op] : ops_) {
      env_.cancel(op.timer);
      env_.cancel(op.resend);
    }
  }

  void start() {
    sync_timer_.start(
        env_, cfg_.sync_interval, [this] { sync(); },
        duration(1 + env_.rng().below(static_cast<std::uint64_t>(cfg_.sync_interval.count()))));
  }

  /// Writes `value` under `key` on the key's r replicas; cb(version or error).
  void put(std::string_view key, bytes value, put_callback cb) {
    put(key, std::move(value), cfg_.default_ttl, std::move(cb));
  }
  void put(std::string_view key, bytes value, duration ttl, put_callback cb, std::uint64_t version = 0) {
    std::error_code ec = check_key(key);
    if (!ec && value.size() > cfg_.max_value_size) ec = make_error_code(errc::value_too_large);
    if (!ec && ttl <= duration::zero()) ec = make_error_code(errc::bad_argument);
    if (!ec && ttl > cfg_.max_ttl) ec = make_error_code(errc::ttl_too_large);
    if (!ec && version > version_limit()) ec = make_error_code(errc::version_too_far_ahead);
    if (ec) return defer(env_, [cb = std::move(cb), ec] { cb(ec); });
    write(std::string(key), std::move(value), ttl, false, version, std::move(cb));
  }
  /// Writes the owner's signed value at signed_target(public key, salt) on its r
  /// replicas; cb(seq or error). Fails with bad_signature if it does not verify here,
  /// seq_not_newer / key_is_signed if too many replicas refuse it.
  void put(const signed_value& sv, duration ttl, put_callback cb) {
    static_assert(V::enabled,
                  "dht::store: signed puts need a SignatureVerifier (dht::ed25519_verifier, dcp/dht/ed25519.hpp)");
    store_msg::item item;
    item.value = sv.value;
    item.version = sv.seq;
    item.ttl_ms = std::max<std::int64_t>(1, std::chrono::duration_cast<std::chrono::milliseconds>(ttl).count());
    item.signer = sv.public_key;
    item.salt = sv.salt;
    item.signature = sv.signature;
    std::error_code ec;
    if (sv.value.size() > cfg_.max_value_size)
      ec = make_error_code(errc::value_too_large);
    else if (ttl <= duration::zero())
      ec = make_error_code(errc::bad_argument);
    else if (ttl > cfg_.max_ttl)
      ec = make_error_code(errc::ttl_too_large);
    else if (sv.seq > version_limit())
      ec = make_error_code(errc::version_too_far_ahead);
    else if (!signature_ok(item))
      ec = make_error_code(errc::bad_signature);
    if (ec) return defer(env_, [cb = std::move(cb), ec] { cb(ec); });
    send_put(std::move(item), std::move(cb));
  }
  /// Reads the signed value of (public key, salt), every answer verified; errc::not_found if none.
  void get(byte_view public_key, byte_view salt, get_callback cb) {
    static_assert(V::enabled,
                  "dht::store: signed gets need a SignatureVerifier (dht::ed25519_verifier, dcp/dht/ed25519.hpp)");
    if (public_key.size() != signed_public_key_size || salt.size() > max_salt_size)
      return defer(env_, [cb = std::move(cb)] { cb(make_error_code(errc::bad_argument)); });
    query q;
    q.signer.assign(public_key.begin(), public_key.end());
    q.salt.assign(salt.begin(), salt.end());
    start_get(std::move(q), std::move(cb));
  }
  /// Deletes `key`: a tombstone that hides older values, itself expiring after tombstone_ttl.
  void remove(std::string_view key, put_callback cb, std::uint64_t version = 0) {
    std::error_code ec = check_key(key);
    if (!ec && version > version_limit()) ec = make_error_code(errc::version_too_far_ahead);
    if (ec) return defer(env_, [cb = std::move(cb), ec] { cb(ec); });
    write(std::string(key), {}, cfg_.tombstone_ttl, true, version, std::move(cb));
  }
  /// Reads the newest live value under `key` from its replicas; errc::not_found if none.
  void get(std::string_view key, get_callback cb) {
    if (auto ec = check_key(key)) return defer(env_, [cb = std::move(cb), ec] { cb(ec); });
    query q;
    q.key = std::string(key);
    start_get(std::move(q), std::move(cb));
  }

  // ---- inspection ----

  const store_config& config() const noexcept { return cfg_; }
  /// Items held here (values and unexpired tombstones).
  std::size_t size() const noexcept { return items_.size(); }
  /// The item this node holds for `key`, if any and unexpired (tests, debugging).
  const store_msg::item* local(std::string_view key) { return local_at(node_id::hash(key)); }
  /// The item this node holds at `place` (a key's hash, or a signed_target), if any and unexpired.
  const store_msg::item* local_at(const node_id& place) {
    auto it = items_.find(place);
    if (it == items_.end() || expired(it->second)) return nullptr;
    return &it->second.it;
  }

  // ---- messages ----

  void on_message(const address& from, const store_msg::put& m) {
    errc why{};
    const bool ok = valid(m.it, why) && responsible(place(m.it)) && apply(m.it, why);
    if (m.nonce)
      env_.send(from, store_msg::put_ack{m.nonce, ok, ok ? std::uint8_t{0} : static_cast<std::uint8_t>(why)});
  }
  void on_message(const address& from, const store_msg::put_ack& m) {
    auto it = ops_.find(m.nonce);
    if (it == ops_.end() || it->second.get_cb) return;
    op& o = it->second;
    // only the replicas asked may answer (nonces are sequential: a stranger could guess them)
    if (std::none_of(o.replicas.begin(), o.replicas.end(), [&](const contact& c) { return c.addr == from; }))
      return env_.count("stray_ack");
    const std::size_t need = std::min(cfg_.quorum(), o.replicas.size());
    if (m.stored) {
      if (std::find(o.acked.begin(), o.acked.end(), from) == o.acked.end()) o.acked.push_back(from);
      if (o.acked.size() >= need) finish_put(m.nonce, {});
      return;
    }
    // refused for a reason the writer must hear: once too many replicas refused for the quorum, fail with it
    const auto why = static_cast<errc>(m.refused);
    if (why != errc::bad_signature && why != errc::seq_not_newer && why != errc::key_is_signed) return;
    if (std::find(o.refused.begin(), o.refused.end(), from) == o.refused.end()) o.refused.push_back(from);
    o.refusal = make_error_code(why);
    if (o.refused.size() > o.replicas.size() - need) finish_put(m.nonce, o.refusal);
  }
  void on_message(const address& from, const store_msg::get& m) {
    if (m.key.size() > cfg_.max_key_size) return env_.count("bad_key");
    store_msg::get_reply rep{m.nonce, false, {}};
    auto it = items_.find(node_id::hash(m.key));
    if (it != items_.end() && !expired(it->second) && !it->second.it.is_signed() && it->second.it.key == m.key) {
      rep.found = true;
      rep.it = outgoing(it->second);
    }
    env_.send(from, rep);
  }
  void on_message(const address& from, const store_msg::get_signed& m) {
    store_msg::get_reply rep{m.nonce, false, {}};
    auto it = items_.find(m.target);
    if (it != items_.end() && !expired(it->second) && it->second.it.is_signed()) {
      rep.found = true;
      rep.it = outgoing(it->second);
    }
    env_.send(from, rep);
  }
  void on_message(const address& from, const store_msg::get_reply& m) {
    auto it = ops_.find(m.nonce);
    if (it == ops_.end() || !it->second.get_cb) return;
    op& o = it->second;
    // only the replicas asked may answer (nonces are sequential: a stranger
    // could guess them, and answer with a newer value, or end the get early)
    if (std::none_of(o.replicas.begin(), o.replicas.end(), [&](const contact& c) { return c.addr == from; }))
      return env_.count("stray_reply");
    if (std::find(o.answered.begin(), o.answered.end(), from) != o.answered.end()) return;  // a duplicate
    o.answered.push_back(from);
    errc why{};
    if (m.found && answers(o.q, m.it) && valid(m.it, why))
      o.answers.push_back({from, m.it});
    else
      o.answers.push_back({from, std::nullopt});
    if (o.answered.size() == o.replicas.size()) finish_get(m.nonce);
  }
  void on_message(const address& from, const store_msg::sync_offer& m) {
    std::vector<node_id> want;
    for (auto& s : m.items) {
      if (s.version > version_limit()) {  // the put it would bring is refused anyway
        env_.count("version_too_far_ahead");
        continue;
      }
      auto it = items_.find(s.hash);
      if (it == items_.end() || expired(it->second)) {
        if (responsible(s.hash)) want.push_back(s.hash);  // (the put would be refused)
        continue;
      }
      const store_msg::item& cur = it->second.it;
      // an unsigned squatter must not keep the owner's signed value out (apply() replaces it);
      // an unsigned offer never replaces a signed value
      if (cur.is_signed() != s.is_signed) {
        if (s.is_signed) want.push_back(s.hash);
      } else if (older(cur, s.version, s.writer)) {
        want.push_back(s.hash);
      }
    }
    if (!want.empty()) env_.send(from, store_msg::sync_want{std::move(want)});
  }
  void on_message(const address& from, const store_msg::sync_want& m) {
    for (auto& h : m.hashes) {
      auto it = items_.find(h);
      if (it != items_.end() && !expired(it->second)) env_.send(from, store_msg::put{0, outgoing(it->second)});
    }
  }

 private:
  struct held {
    store_msg::item it;
    time_point expires;
  };
  /// What a get asks for: an unsigned key, or the signed value of (signer, salt).
  struct query {
    std::string key;
    bytes signer, salt;
    bool is_signed() const noexcept { return !signer.empty(); }
    node_id place() const { return is_signed() ? signed_target(signer, salt) : node_id::hash(key); }
  };
  struct op {
    query q;  // a get
    put_callback put_cb;
    get_callback get_cb;
    std::vector<contact> replicas;
    std::vector<contact> spares;  // a get's next nodes, asked when no replica holds the key
    std::vector<address> acked, answered, refused;
    std::error_code refusal;  // a put: the reason replicas gave for refusing it
    std::vector<std::pair<address, std::optional<store_msg::item>>> answers;
    std::uint64_t version = 0;
    timer_id timer{};
    timer_id resend{};     // a put: sends it again to the replicas that have not acknowledged
    store_msg::item item;  // a put: what it sends
  };

  std::error_code check_key(std::string_view key) const {
    if (key.empty()) return make_error_code(errc::bad_argument);
    if (key.size() > cfg_.max_key_size) return make_error_code(errc::key_too_large);
    return {};
  }
  /// Where an item lives: its key's hash, or a signed value's target.
  static node_id place(const store_msg::item& i) {
    return i.is_signed() ? signed_target(i.signer, i.salt) : node_id::hash(i.key);
  }
  /// Whether `i` is an answer to query `q` (a replica may answer with anything).
  static bool answers(const query& q, const store_msg::item& i) {
    return q.is_signed() ? i.is_signed() && i.signer == q.signer && i.salt == q.salt : !i.is_signed() && i.key == q.key;
  }
  bool signature_ok(const store_msg::item& i) const {
    return i.signer.size() == signed_public_key_size && i.signature.size() == signed_signature_size &&
        i.salt.size() <= max_salt_size && i.key.empty() && !i.tombstone &&
        verifier_.verify(i.signer, signed_message(i.salt, i.version, i.value), i.signature);
  }
  bool valid(const store_msg::item& i, errc& why) {
    why = errc::bad_argument;
    if (i.is_signed() || !i.salt.empty() || !i.signature.empty()) {
      if (!V::enabled) {
        env_.count("signature_unverifiable");
        why = errc::bad_signature;
        return false;
      }
      if (i.value.size() > cfg_.max_value_size || i.ttl_ms <= 0) {
        env_.count("bad_item");
        return false;
      }
      // bounds before the CPU spent on verifying
      if (i.signer.size() != signed_public_key_size || i.salt.size() > max_salt_size ||
          i.signature.size() != signed_signature_size || !i.key.empty() || i.tombstone) {
        env_.count("bad_signature");
        why = errc::bad_signature;
        return false;
      }
    } else if (i.key.empty() || i.key.size() > cfg_.max_key_size || i.value.size() > cfg_.max_value_size ||
               i.ttl_ms <= 0) {
      env_.count("bad_item");
      return false;
    }
    if (i.ttl_ms > std::chrono::duration_cast<std::chrono::milliseconds>(cfg_.max_ttl).count()) {
      env_.count("ttl_too_large");
      return false;
    }
    if (i.version > version_limit()) {
      env_.count("version_too_far_ahead");
      why = errc::version_too_far_ahead;
      return false;
    }
    if (i.is_signed()) {
      env_.count("signature_checks");
      if (!signature_ok(i)) {
        env_.count("bad_signature");
        why = errc::bad_signature;
        return false;
      }
    }
    return true;
  }
  /// The largest version accepted now: the wall clock in ns since the epoch plus max_version_lead.
  std::uint64_t version_limit() const {
    const auto lead = std::chrono::duration_cast<std::chrono::nanoseconds>(cfg_.max_version_lead).count();
    return wall_version() + static_cast<std::uint64_t>(lead);
  }
  std::uint64_t wall_version() const {
    const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(env_.wall_now().time_since_epoch()).count();
    return static_cast<std::uint64_t>(std::max<std::int64_t>(0, ns));
  }
  /// Whether `a` is older than (version, writer); a signed item's order is its seq alone.
  static bool older(const store_msg::item& a, std::uint64_t version, std::uint64_t writer) {
    if (a.is_signed()) return a.version < version;
    return std::pair(a.version, a.writer) < std::pair(version, writer);
  }
  bool expired(const held& h) const { return env_.now() >= h.expires; }
  store_msg::item outgoing(const held& h) const {
    store_msg::item i = h.it;
    i.ttl_ms = std::max<std::int64_t>(
        1, std::chrono::duration_cast<std::chrono::milliseconds>(h.expires - env_.now()).count());
    return i;
  }

  /// Whether this node keeps items at `place`: it is among the 2r nodes closest
  /// to it as its router sees them (the r replicas, and the r after them that a
  /// get widens to). Else a put is refused, counted ("not_responsible"): without
  /// the rule any sender fills any node up to max_items with keys it has no part
  /// in. The slack of r covers views that differ under churn: a node that just
  /// became a replica is among the 2r closest in its own view, so handoff, repair
  /// and read repair still reach it; one that knows r nodes closer does not hold
  /// the key in anyone's correct view. As exact as the router's view: Chord sees
  /// only its predecessor behind it, CAN only its neighbours (docs/dht.md).
  bool responsible(const node_id& place) {
    const auto near = router_.closest(place, 2 * cfg_.replicas);
    if (std::any_of(near.begin(), near.end(), [&](const contact& c) { return c.addr == router_.self().addr; }))
      return true;
    env_.count("not_responsible");
    return false;
  }

  /// Keeps `i` if it is newer than what we hold. True if we now hold it (or, unsigned, newer);
  /// false with `why` when refused.
  bool apply(const store_msg::item& i, errc& why) {
    const node_id h = place(i);
    auto it = items_.find(h);
    if (it != items_.end() && !expired(it->second)) {
      const store_msg::item& cur = it->second.it;
      if (cur.is_signed()) {
        // only the owner writes here, and only forward (BEP 44)
        if (!i.is_signed() || i.signer != cur.signer || i.salt != cur.salt) {
          env_.count(i.is_signed() ? "signer_mismatch" : "unsigned_over_signed");
          why = errc::key_is_signed;
          return false;
        }
        if (i.version == cur.version && i.value == cur.value) {  // the same value again: lives longer
          it->second.expires = std::max(it->second.expires, env_.now() + std::chrono::milliseconds(i.ttl_ms));
          return true;
        }
        if (i.version <= cur.version) {
          env_.count("seq_not_newer");
          why = errc::seq_not_newer;
          return false;
        }
      } else if (i.is_signed()) {
        env_.count("signed_over_unsigned");  // an unsigned squatter on the owner's place loses
      } else if (!older(cur, i.version, i.writer)) {
        return true;  // ours is as new or newer
      }
    } else if (it == items_.end() && items_.size() >= cfg_.max_items) {
      env_.count("store_full");
      return false;
    }
    held& slot = items_[h];
    slot.it = i;
    if (i.is_signed()) slot.it.writer = 0;  // not signed: a relay could set it, so it never counts
    slot.expires = env_.now() + std::chrono::milliseconds(i.ttl_ms);
    env_.count("stored");
    return true;
  }

  std::uint64_t writer_tag() const { return std::hash<node_id>{}(router_.self().id); }

  void write(std::string key, bytes value, duration ttl, bool tombstone, std::uint64_t version, put_callback cb) {
    store_msg::item item;
    item.key = std::move(key);
    item.value = std::move(value);
    item.version = version ? version : wall_version();
    item.writer = writer_tag();
    item.ttl_ms = std::max<std::int64_t>(1, std::chrono::duration_cast<std::chrono::milliseconds>(ttl).count());
    item.tombstone = tombstone;
    send_put(std::move(item), std::move(cb));
  }

  void send_put(store_msg::item item, put_callback cb) {
    const node_id h = place(item);
    router_.lookup(
        h, cfg_.replicas, [this, item = std::move(item), cb = std::move(cb)](result<lookup_result> r) mutable {
          if (!r) return cb(r.explained());
          const std::uint64_t nonce = ++nonce_;
          op o;
          o.put_cb = std::move(cb);
          o.replicas = r->owners;
          o.version = item.version;
          o.timer =
              env_.arm(cfg_.request_timeout, [this, nonce] { finish_put(nonce, make_error_code(errc::no_replica)); });
          for (auto& c : r->owners) env_.send(c.addr, store_msg::put{nonce, item});
          o.item = std::move(item);
          ops_.emplace(nonce, std::move(o));
          arm_resend(nonce);
        });
  }

  void arm_resend(std::uint64_t nonce) {
    auto it = ops_.find(nonce);
    if (it == ops_.end()) return;
    it->second.resend = env_.arm(cfg_.request_timeout / 4, [this, nonce] {
      auto it = ops_.find(nonce);
      if (it == ops_.end()) return;
      it->second.resend = {};
      for (auto& c : it->second.replicas)
        if (std::find(it->second.acked.begin(), it->second.acked.end(), c.addr) == it->second.acked.end()) {
          env_.count("put_resent");
          env_.send(c.addr, store_msg::put{nonce, it->second.item});
        }
      arm_resend(nonce);
    });
  }

  void finish_put(std::uint64_t nonce, std::error_code ec) {
    auto it = ops_.find(nonce);
    if (it == ops_.end()) return;
    op o = std::move(it->second);
    ops_.erase(it);
    env_.cancel(o.timer);
    env_.cancel(o.resend);
    if (ec && !o.acked.empty()) {
      // some replicas have it, fewer than the quorum: say so, the value may still be read
      env_.count("put_below_quorum");
    }
    if (ec)
      o.put_cb(ec);
    else
      o.put_cb(o.version);
  }

  void start_get(query q, get_callback cb) {
    // the r responsible nodes first; the next r are asked only if none of those holds the
    // key: under churn a node that joined next to the key is responsible before
    // re-replication has given it the value
    const node_id where = q.place();
    router_.lookup(where, 2 * cfg_.replicas,
                   [this, q = std::move(q), cb = std::move(cb)](result<lookup_result> r) mutable {
                     if (!r) return cb(r.explained());
                     const std::uint64_t nonce = ++nonce_;
                     op o;
                     o.q = std::move(q);
                     o.get_cb = std::move(cb);
                     const auto first = std::min(r->owners.size(), cfg_.replicas);
                     o.replicas.assign(r->owners.begin(), r->owners.begin() + static_cast<std::ptrdiff_t>(first));
                     o.spares.assign(r->owners.begin() + static_cast<std::ptrdiff_t>(first), r->owners.end());
                     o.timer = env_.arm(cfg_.request_timeout, [this, nonce] { finish_get(nonce); });
                     for (auto& c : o.replicas) ask(c.addr, nonce, o.q);
                     ops_.emplace(nonce, std::move(o));
                   });
  }
  void ask(const address& to, std::uint64_t nonce, const query& q) {
    if (q.is_signed())
      env_.send(to, store_msg::get_signed{nonce, q.place()});
    else
      env_.send(to, store_msg::get{nonce, q.key});
  }

  void finish_get(std::uint64_t nonce) {
    auto it = ops_.find(nonce);
    if (it == ops_.end()) return;
    if (op& w = it->second; !w.spares.empty() &&
        std::none_of(w.answers.begin(), w.answers.end(), [](const auto& a) { return a.second.has_value(); })) {
      env_.count("get_widened");
      env_.cancel(w.timer);
      for (auto& c : w.spares) {
        w.replicas.push_back(c);
        ask(c.addr, nonce, w.q);
      }
      w.spares.clear();
      w.timer = env_.arm(cfg_.request_timeout, [this, nonce] { finish_get(nonce); });
      return;
    }
    op o = std::move(it->second);
    ops_.erase(it);
    env_.cancel(o.timer);
    if (o.answered.empty()) return o.get_cb(make_error_code(errc::no_replica));
    const store_msg::item* best = nullptr;
    for (auto& [a, i] : o.answers)
      if (i && (!best || older(*best, i->version, i->writer))) best = &*i;
    if (!best) return o.get_cb(make_error_code(errc::not_found));
    // read repair: the responsible replicas (not the spares) that answered with nothing or something older get the newest
    const auto primaries = std::min(o.replicas.size(), cfg_.replicas);
    for (auto& [a, i] : o.answers) {
      const bool primary =
          std::any_of(o.replicas.begin(), o.replicas.begin() + static_cast<std::ptrdiff_t>(primaries),
                      [&, &to = a](const contact& c) { return c.addr == to; });  // clang < 16: no binding captures
      if (primary && (!i || older(*i, best->version, best->writer))) env_.send(a, store_msg::put{0, *best});
    }
    if (best->tombstone) return o.get_cb(make_error_code(errc::not_found));
    o.get_cb(stored_value{best->value, best->version});
  }

  /// Expiry, and re-replication to the nodes now responsible.
  void sync() {
    std::map<address, std::vector<store_msg::summary>> offers;
    std::vector<node_id> drop;
    for (auto& [h, held] : items_) {
      if (expired(held)) {
        drop.push_back(h);
        continue;
      }
      if (!router_.joined()) continue;
      // offer to the replicas as we see them; a copy we are no longer responsible for is
      // handed over this way and kept until it expires: our view may be the wrong one
      // (mid-repair), and a dropped last copy would be lost
      // one node beyond the r: a replica that just crashed may still be in our view, and
      // must not hold up the copy its successor in the order needs
      for (auto& c : router_.closest(h, cfg_.replicas + 1))
        if (c.addr != router_.self().addr)
          offers[c.addr].push_back({h, held.it.version, held.it.writer, held.it.is_signed()});
    }
    for (auto& h : drop) items_.erase(h);
    env_.count("expired", static_cast<std::int64_t>(drop.size()));
    for (auto& [peer, list] : offers) {
      // bounded messages: at most sync_batch summaries each
      for (std::size_t at = 0; at < list.size(); at += cfg_.sync_batch) {
        store_msg::sync_offer m;
        m.items.assign(list.begin() + static_cast<std::ptrdiff_t>(at),
                       list.begin() + static_cast<std::ptrdiff_t>(std::min(list.size(), at + cfg_.sync_batch)));
        env_.send(peer, m);
      }
    }
  }

  E env_;
  R& router_;
  store_config cfg_;
  V verifier_;
  std::unordered_map<node_id, held> items_;
  std::unordered_map<std::uint64_t, op> ops_;
  std::uint64_t nonce_ = 0;
  periodic<E> sync_timer_;
};

}  // namespace dcp::dht
