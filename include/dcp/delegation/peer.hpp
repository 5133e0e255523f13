#pragma once
// delegation::peer: a client node of a delegating origin, in both its roles.
//
// As a client it obtains tokens for a shard of a resource from the shard's
// coordinator (located by `peer_config::locate`, the DHT owner of
// shard_key(resource, shard) in a deployment: locate.hpp; the answer is
// cached per shard and asked again when that coordinator stops answering), checks the coordinator's
// certificate against the origin's public key, checks that the token was
// signed by that coordinator for that shard, renews held tokens at half
// their life, and releases them. Stock: acquire() allocates units for good
// and completes once the origin has confirmed them.
//
// As a coordinator it takes on a shard when asked for a token of it: it asks
// the origin for a certificate (the origin grants it if the shard is free),
// grants within the certificate's share (shard_coordinator), renews the
// certificate every third of its validity reporting its demand, and commits
// stock allocations to the origin in batches. When the share is in use, new
// requests wait in a FIFO queue (bounded: 4 x share + 16; beyond it they are
// told to retry later) and are granted in arrival order as permits free, so
// permits do not idle while clients back off and nobody is passed over.
// A waiting client keeps its place by resending its request (same nonce)
// within 5 x request_timeout.
// With peer_config::groups set it coordinates as a member of groups instead:
// a shard's group is the r nodes closest to its key, formed from the overlay
// on the first request and certified by the origin (group_host.hpp), and
// each acts as one by quorum (group.hpp).
//
// Policy when no coordinator answers: the request is resent every
// request_timeout (after an unanswered send, to whoever `locate` names then), and a coordinator's "retry
// after" is honoured; after give_up_after the call fails with timed_out.
// Never a silent unbounded wait. Refusals fail at once with their reason.
//
// Completions (acquire's callback, on_lost) run after the event that decides
// them (DESIGN §10; an outbox, dcp/core/outbox.hpp), never inside a call or
// half-way through a handler or the tick, and are dropped with the peer.
//
// Message ids 1-16, default protocol id 140 (messages.hpp).
#include <algorithm>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "dcp/core/env.hpp"
#include "dcp/core/outbox.hpp"
#include "dcp/core/result.hpp"
#include "dcp/delegation/certificate.hpp"
#include "dcp/delegation/token.hpp"
#include "dcp/delegation/coordinator.hpp"
#include "dcp/delegation/detail/wait_line.hpp"
#include "dcp/delegation/group_host.hpp"
#include "dcp/delegation/locate.hpp"
#include "dcp/delegation/messages.hpp"
#include "dcp/delegation/request_signature.hpp"

namespace dcp::delegation {

struct peer_config {
  address origin;           ///< the origin: where certificates come from and stock is committed
  bytes origin_public_key;  ///< the root of trust: the origin's Ed25519 key (32 bytes)
  /// Who coordinates a shard now (the DHT owner of its key): dht_locator or fixed_locator.
  locate_function locate;
  duration token_ttl = 2s;  ///< a token's life; renewed at half of it
  duration request_timeout = 200ms;
  duration give_up_after = 10s;
  duration batch_every = 20ms;  ///< stock: how often a coordinator commits a batch
  std::size_t max_batch = 1024;
  /// Shards this node will keep state for as a coordinator: requests for
  /// more (any client may name any shard) are refused and counted.
  std::size_t max_shards = 1024;
  /// Set: this node coordinates as a member of groups of the r nodes closest
  /// to a shard's key (multi-delegation formed from the overlay,
  /// group_host.hpp) instead of alone. Every peer of a deployment sets it
  /// alike.
  std::optional<group_hosting> groups;

  void validate() const {
    if (origin_public_key.size() != lease::ed25519_key_size)
      throw error(dcp::errc::invalid_config,
                  "delegation::peer: origin_public_key must be the origin's 32-byte Ed25519 key");
    if (!locate)
      throw error(dcp::errc::invalid_config, "delegation::peer: locate (who coordinates a shard) is required");
    if (token_ttl <= 4 * request_timeout)
      throw error(dcp::errc::invalid_config,
                  "delegation::peer: token_ttl must exceed 4 x request_timeout (renewals need room)");
    if (request_timeout <= duration::zero() || give_up_after < request_timeout)
      throw error(dcp::errc::invalid_config, "delegation::peer: need 0 < request_timeout <= give_up_after");
    if (batch_every <= duration::zero() || max_batch == 0 || max_shards == 0)
      throw error(dcp::errc::invalid_config, "delegation::peer: batch_every and max_batch must be > 0");
  }
};

/// A token held, with the certificate that vouches for it.
struct grant {
  std::string resource;
  std::uint32_t shard = 0;
  lease::token token;  ///< checked: signed by the shard's coordinator, for this node
  bytes sealed;        ///< what to present to the origin with each request
  certificate cert;
  bytes sealed_certificate;      ///< `cert` as the origin sealed it (for an auditor, or an origin that wants it shown)
  std::uint64_t request_id = 0;  ///< stock: the allocation's id, as the origin records it (holder, request_id)
};

template <Env E> class peer {
 public:
  using messages = msg::all;
  /// What it counts (env.count), declared: dcp/core/counter_set.hpp.
  static constexpr auto counters =
      dcp::join(group_host<E>::counters,
                dcp::counter_set{{"bad_token_request", "too_many_shards", "release_for_unknown_shard",
                                  "delegate_reply_not_from_origin", "unsolicited_delegate_reply",
                                  "bad_certificate_from_origin", "stock_ack_not_from_origin", "unsolicited_stock_ack",
                                  "unsolicited_token_reply", "unexpected_message", "bad_release_query",
                                  "release_query_held", "release_query_pending", "release_query_answered",
                                  "wait_queue_full", "delegate_request_unsigned", "stock_commit_unsigned"}});
  static constexpr std::string_view name = "delegation_peer";
  static constexpr protocol_id default_id = default_protocol_id;
  template <class T> using callback = std::function<void(result<T>)>;

  peer(E env, peer_config cfg) : env_(std::move(env)), out_(env_), cfg_(std::move(cfg)) {
    cfg_.validate();
    origin_key_.emplace(lease::ed25519_public_key::from_bytes(cfg_.origin_public_key).value(), 0);
    bytes seed(lease::ed25519_key_size);
    for (auto& b : seed) b = static_cast<std::uint8_t>(env_.rng()());
    auto k = lease::ed25519_private_key::from_seed(seed).value();
    public_key_ = k.public_key().raw();
    private_key_.emplace(std::move(k));
    if (cfg_.groups) {
      group_config base;
      base.origin = cfg_.origin;
      base.origin_public_key = cfg_.origin_public_key;
      base.token_ttl = cfg_.token_ttl;
      base.max_drift = cfg_.groups->max_drift;
      base.request_timeout = cfg_.request_timeout;
      base.tick = cfg_.groups->tick;
      base.batch_every = cfg_.batch_every;
      base.max_batch = cfg_.max_batch;
      host_ = std::make_unique<group_host<E>>(env_, *cfg_.groups, std::move(base), *private_key_, *origin_key_);
    }
  }
  peer(const peer&) = delete;
  peer& operator=(const peer&) = delete;

  void start() {
    tick_.start(env_, [this] { tick(); });
    tick_.wake_by(env_.now() + tick_period());
    if (host_) host_->start();
  }

  // ---- the client's side ----

  /// A token for `permits` of shard `shard` (concurrency: held at once; rate:
  /// per second), renewed while held; or, for a stock resource, `permits`
  /// units allocated for good (completes once the origin confirmed them).
  /// Errors: timed_out (no coordinator answered within give_up_after),
  /// delegation errc (share_exhausted after retrying until give_up_after,
  /// stock_exhausted, unknown_shard), bad_certificate / certificate_mismatch
  /// (a coordinator the origin does not vouch for), dcp::errc::cancelled.
  /// Returns a handle for cancel() (0 for a request refused at once).
  std::uint64_t acquire(std::string resource, std::uint32_t shard, std::uint32_t permits, callback<grant> done) {
    if (resource.empty() || permits == 0) {
      later([done = std::move(done)] { done(dcp::make_error_code(dcp::errc::invalid_argument)); });
      return 0;
    }
    pending_request p;
    p.req = msg::token_request{++nonce_, std::move(resource), shard, permits, 0, env_.rng()() | 1};
    p.done = std::move(done);
    p.first_sent = env_.now();
    const auto handle = p.req.nonce;
    send_request(requests_.emplace(handle, std::move(p)).first->second);
    return handle;
  }
  /// Stock split over `shards` shards (the origin's resource_spec::shards):
  /// `units` from whichever shard still has them. Each shard sells only its
  /// share of the stock, so one may have sold out while another still has
  /// seats: the request walks the shards from a random one (spreading the
  /// crowd), moves on when a shard answers stock_exhausted, and fails with
  /// stock_exhausted only once every shard has. (The origin never lowers a
  /// stock shard's share, so units do not move behind the walk's back.)
  /// Other errors end the walk (a request with an unknown outcome is not
  /// sent again elsewhere: that could allocate twice).
  /// Returns a handle for cancel() (0 for a request refused at once).
  std::uint64_t acquire_stock(std::string resource, std::uint32_t shards, std::uint32_t units, callback<grant> done) {
    if (shards == 0) {
      later([done = std::move(done)] { done(dcp::make_error_code(dcp::errc::invalid_argument)); });
      return 0;
    }
    const auto first = static_cast<std::uint32_t>(env_.rng().below(shards));
    auto walk =
        std::make_shared<stock_walk>(stock_walk{std::move(resource), shards, units, first, 0, 0, std::move(done)});
    walk->id = step(walk);
    if (walk->id != 0) walks_[walk->id] = walk->id;
    return walk->id;
  }
  /// Withdraws an acquire not yet completed: its callback completes with
  /// dcp::errc::cancelled (after this call returns), and the request is sent
  /// no more, so its coordinator drops it from its line once it stops
  /// hearing it. A grant already on its way is handed back on arrival. A
  /// client whose work moved elsewhere withdraws, and the demand it left
  /// behind stops holding capacity there. False if there is nothing to cancel.
  bool cancel(std::uint64_t handle) {
    if (auto w = walks_.find(handle); w != walks_.end()) handle = w->second;  // the walk's current step
    auto it = requests_.find(handle);
    if (handle == 0 || it == requests_.end() || it->second.req.renew_fencing != 0) return false;
    auto done = std::move(it->second.done);
    requests_.erase(it);
    later([done = std::move(done)] { done(dcp::make_error_code(dcp::errc::cancelled)); });
    return true;
  }
  /// Stops renewing `g` and tells its coordinator, which grants the permits
  /// again at once: release the token at the origin first (after the last
  /// request), or the origin refuses the next holder until `g` expires.
  void release(const grant& g) {
    auto it = held_.find(held_key(g));
    if (it == held_.end()) return;
    if (auto c = located_.find(shard_key(g.resource, g.shard)); c != located_.end() || g.cert.coordinators.size() > 1)
      send_release(g.cert, g.token.fencing, c != located_.end() ? c->second : address{});
    held_.erase(it);
    // Renewals still in flight are moot: their answers are dropped as unsolicited.
    std::erase_if(requests_, [&](auto& kv) {
      return kv.second.req.renew_fencing == g.token.fencing && kv.second.req.resource == g.resource &&
          kv.second.req.shard == g.shard;
    });
  }
  /// Tokens held now (unexpired), each with its latest renewal.
  std::vector<grant> holds() const {
    std::vector<grant> out;
    const auto now = env_.wall_now();
    for (auto& [f, h] : held_)
      if (now < h.g.token.expiry) out.push_back(h.g);
    return out;
  }
  /// A held token expired without a renewal (its coordinator is gone, or its
  /// delegation ended): stop presenting it.
  void on_lost(std::function<void(const grant&)> fn) { on_lost_ = std::move(fn); }

  // ---- the coordinator's side ----

  /// Does this node coordinate the shard now (a valid certificate)?
  bool coordinates(const std::string& resource, std::uint32_t shard) const {
    auto it = slots_.find(shard_key(resource, shard));
    return it != slots_.end() && it->second.active && it->second.active->cert().valid_at(env_.wall_now());
  }
  const shard_coordinator* coordinator_of(const std::string& resource, std::uint32_t shard) const {
    auto it = slots_.find(shard_key(resource, shard));
    return it == slots_.end() || !it->second.active ? nullptr : &*it->second.active;
  }
  const bytes& public_key() const noexcept { return public_key_; }
  /// The groups this node serves in (peer_config::groups), or null.
  const group_host<E>* groups() const noexcept { return host_.get(); }

  // ---- messages ----

  void on_message(const address& from, const msg::token_request& m) {
    if (host_) return host_->on_message(from, m);
    if (m.resource.empty() || m.resource.size() > max_resource_name || m.permits == 0) return drop("bad_token_request");
    msg::token_reply out{m.nonce, status::retry, static_cast<std::uint32_t>(errc::not_coordinator), {}, {}, 0};
    if (slots_.size() >= cfg_.max_shards && !slots_.contains(shard_key(m.resource, m.shard))) {
      drop("too_many_shards");
      out.code = status::refused;
      out.error = static_cast<std::uint32_t>(errc::unknown_shard);
      return void(env_.send(from, out));
    }
    auto& slot = slot_for(m.resource, m.shard);
    const auto now = env_.wall_now();
    if (!slot.active || !slot.active->cert().valid_at(now)) {
      if (slot.refused) {  // the origin's word, passed on (no such shard, or this node may not coordinate)
        out.code = status::refused;
        out.error = slot.refusal;
      } else {
        slot.unmet += m.permits;
        ask_origin(slot);
        if (slot.held_elsewhere && *slot.held_elsewhere != env_.self()) out.coordinator = slot.held_elsewhere;
      }
      out.retry_after_ms = not_coordinating_retry_ms();
      return void(env_.send(from, out));
    }
    auto& sc = *slot.active;
    out.certificate = sc.sealed_certificate();
    if (sc.cert().kind == capacity_kind::stock) {
      const msg::allocation a{from, m.request_id, m.permits};
      using st = shard_coordinator::allocation_state;
      if (sc.state_of(a) == st::confirmed) return reply_receipt(from, m.nonce, sc, a);
      if (auto ec = sc.reserve(a)) {
        out.code = status::refused;
        out.error = static_cast<std::uint32_t>(ec.value());
        return void(env_.send(from, out));
      }
      slot.awaiting[{from, m.request_id}] = m.nonce;  // answered when the origin confirms the batch
      return;
    }
    if (!m.renew_fencing && wait_in_line(slot, from, m, out)) return;
    auto t = m.renew_fencing ? sc.renew_grant(from, m.renew_fencing, cfg_.token_ttl, now)
                             : sc.grant(from, m.permits, cfg_.token_ttl, now);
    if (!t && t.error() == errc::share_exhausted && !m.renew_fencing && enqueue(slot, from, m, out)) return;
    if (!t) {
      const bool retry = t.error() == errc::share_exhausted;
      out.code = retry ? status::retry : status::refused;
      out.error = static_cast<std::uint32_t>(t.error().value());
      out.retry_after_ms =
          static_cast<std::uint32_t>(std::chrono::duration_cast<std::chrono::milliseconds>(cfg_.token_ttl / 4).count());
      return void(env_.send(from, out));
    }
    out.code = status::ok;
    out.error = 0;
    out.token = std::move(*t);
    out.fencing = m.renew_fencing ? m.renew_fencing : sc.last_fencing();
    env_.send(from, out);
  }

  void on_message(const address& from, const msg::token_release& m) {
    if (host_) return host_->on_message(from, m);
    auto it = slots_.find(shard_key(m.resource, m.shard));
    if (it == slots_.end() || !it->second.active) return drop("release_for_unknown_shard");
    it->second.active->release(from, m.fencing);
    serve_waiters(it->second);
  }

  void on_message(const address& from, const msg::delegate_reply& m) {
    if (host_) return host_->on_message(from, m);
    if (from != cfg_.origin) return drop("delegate_reply_not_from_origin");
    auto it = slots_.find(shard_key(m.resource, m.shard));
    if (it == slots_.end() || !it->second.asking) return drop("unsolicited_delegate_reply");
    auto& slot = it->second;
    slot.asking = false;
    const auto now_steady = env_.now();
    if (m.code == status::refused) {
      slot.refused = true;
      slot.refusal = m.error == static_cast<std::uint32_t>(errc::not_allowed)
          ? m.error
          : static_cast<std::uint32_t>(errc::unknown_shard);
      return;
    }
    if (m.code == status::retry) {
      slot.next_ask = now_steady + std::chrono::milliseconds(std::min<std::uint32_t>(m.retry_after_ms, 60'000));
      slot.held_elsewhere = m.coordinator;
      return;
    }
    slot.held_elsewhere.reset();
    auto c = open_certificate(m.certificate, *origin_key_);
    if (!c || c->resource != m.resource || c->shard != m.shard || !c->coordinator(env_.self()) ||
        c->coordinator(env_.self())->public_key != public_key_)
      return drop("bad_certificate_from_origin");
    // Renew after a third of what is left of it (not of its whole span since
    // the epoch began, which grows with every renewal until it lapses).
    const auto left = c->not_after - env_.wall_now();
    slot.next_ask = now_steady + std::max<duration>(std::chrono::duration_cast<duration>(left / 3), 1ms);
    if (slot.active && slot.active->cert().epoch == c->epoch) {
      slot.active->renew(std::move(*c), m.certificate);
    } else {
      slot.active.emplace(std::move(*c), m.certificate, lease::signing_key(*private_key_, c->epoch));
      slot.inflight_batch.reset();
    }
  }

  void on_message(const address& from, const msg::stock_ack& m) {
    if (host_) return host_->on_message(from, m);
    if (from != cfg_.origin) return drop("stock_ack_not_from_origin");
    auto it = slots_.find(shard_key(m.resource, m.shard));
    if (it == slots_.end() || !it->second.active || !it->second.inflight_batch ||
        it->second.inflight_batch->first != m.batch)
      return drop("unsolicited_stock_ack");
    auto& slot = it->second;
    auto batch = std::move(slot.inflight_batch->second);
    slot.inflight_batch.reset();
    if (m.code != status::ok) {
      slot.active->unreserve(batch);
      for (auto& a : batch)
        if (auto w = slot.awaiting.find({a.holder, a.request_id}); w != slot.awaiting.end()) {
          env_.send(a.holder, msg::token_reply{w->second, status::refused, m.error, {}, {}, 0});
          slot.awaiting.erase(w);
        }
      return;
    }
    slot.active->confirmed(batch);
    for (auto& a : batch)
      if (auto w = slot.awaiting.find({a.holder, a.request_id}); w != slot.awaiting.end()) {
        reply_receipt(a.holder, w->second, *slot.active, a);
        slot.awaiting.erase(w);
      }
  }

  void on_message(const address& from, const msg::token_reply& m) {
    auto it = requests_.find(m.nonce);
    if (it == requests_.end()) {
      // A grant for a request given up on (it waited in line too long): hand it back.
      if (m.code == status::ok && m.fencing)
        if (auto c = open_certificate(m.certificate, *origin_key_); c && !held_.contains({c->key(), m.fencing}))
          send_release(*c, m.fencing, from);
      return drop("unsolicited_token_reply");
    }
    auto& p = it->second;
    p.answered = true;
    if (m.code == status::retry) {
      p.resend_at = env_.now() + std::chrono::milliseconds(std::clamp<std::uint32_t>(m.retry_after_ms, 5, 5'000));
      tick_.wake_by(p.resend_at);
      p.last_error = static_cast<errc>(m.error);
      // Not the coordinator, and it knows who is (the origin told it, or it
      // is a group's follower naming its leader): go there next, at once the
      // first time (a round trip, not a retry delay). A lie costs a detour:
      // certificates are checked anyway.
      if (m.error == static_cast<std::uint32_t>(errc::not_coordinator) && m.coordinator && *m.coordinator != from) {
        located_[shard_key(p.req.resource, p.req.shard)] = *m.coordinator;
        if (!p.redirected) {
          p.redirected = true;  // once per request: two nodes naming each other cannot make a storm
          send_request(p);
        }
      }
      return;
    }
    if (m.code == status::refused) return finish(it, make_error_code(static_cast<errc>(m.error)));
    auto c = open_certificate(m.certificate, *origin_key_);
    if (!c) return finish(it, c.error());
    // Only the end counts here: a certificate just issued may start in this
    // node's future by up to the clocks' skew, and the origin (whose clock
    // set not_before) decides admission anyway.
    if (env_.wall_now() >= c->not_after) return finish(it, make_error_code(errc::certificate_expired));
    if (!c->coordinator(from)) return finish(it, make_error_code(errc::certificate_mismatch));
    auto t = check_token(m.token, *c);
    if (!t) return finish(it, t.error());
    if (t->holder != env_.self() || t->resource != shard_key(p.req.resource, p.req.shard) ||
        t->permits != p.req.permits)
      return finish(it, make_error_code(errc::certificate_mismatch));
    grant g{p.req.resource, p.req.shard, std::move(*t), m.token, std::move(*c), m.certificate, p.req.request_id};
    if (g.cert.coordinators.size() > 1) {  // a group: its members are where to turn when the one asked falls silent
      auto& members = groups_[held_key(g).first];
      members.clear();
      for (auto& c : g.cert.coordinators) members.push_back(c.addr);
    }
    // A new grant is held from now on; a renewal only updates a token still held.
    if (g.cert.kind != capacity_kind::stock && (!p.req.renew_fencing || held_.contains(held_key(g)))) {
      auto& h = held_[held_key(g)] = held_token{g, env_.now()};
      tick_.wake_by(due(h, env_.now(), env_.wall_now()));
    }
    finish(it, std::move(g));
  }

  void on_message(const address&, const msg::delegate_request&) { drop("unexpected_message"); }
  void on_message(const address&, const msg::stock_commit&) { drop("unexpected_message"); }
  void on_message(const address&, const msg::group_delegate_request&) { drop("unexpected_message"); }
  /// A group's own traffic: for the groups this node serves in, if it does.
  template <class M>
  requires(std::is_same_v<M, msg::cosign_request> || std::is_same_v<M, msg::cosign_reply> ||
           std::is_same_v<M, msg::group_invite> || std::is_same_v<M, msg::group_accept> ||
           std::is_same_v<M, msg::group_form> || std::is_same_v<M, msg::group_form_query> ||
           std::is_same_v<M, msg::group_raft>) void on_message(const address& from, const M& m) {
    if (host_) return host_->on_message(from, m);
    drop("unexpected_message");
  }
  /// A group member asks whether this node is done with a grant: yes (a
  /// release, to the asker alone) if it does not hold it and waits for no
  /// grant of that shard, so that the grant can never come to be held here
  /// (a late reply carrying it is handed back); else no answer.
  void on_message(const address& from, const msg::release_query& m) {
    if (m.resource.empty() || m.resource.size() > max_resource_name) return drop("bad_release_query");
    if (held_.contains({shard_key(m.resource, m.shard), m.fencing})) return drop("release_query_held");
    for (auto& [n, p] : requests_)
      if (p.req.resource == m.resource && p.req.shard == m.shard) return drop("release_query_pending");
    env_.count("release_query_answered");
    env_.send(from, msg::token_release{m.resource, m.shard, m.fencing});
  }

 private:
  struct pending_request {
    msg::token_request req;
    callback<grant> done;
    time_point first_sent{}, resend_at{};
    duration backoff{};
    std::optional<errc> last_error;
    bool answered = true;     // the last send was answered (false: its coordinator may be gone)
    bool redirected = false;  // sent on at once to a coordinator another node named
  };
  /// acquire_stock's progress: the shard it asks now is (first + tried) mod shards.
  struct stock_walk {
    std::string resource;
    std::uint32_t shards = 0, units = 0, first = 0, tried = 0;
    std::uint64_t id = 0;  // the walk's handle: its first step's
    callback<grant> done;
  };
  /// Asks the walk's current shard; returns that request's handle.
  std::uint64_t step(std::shared_ptr<stock_walk> walk) {
    const auto shard = (walk->first + walk->tried) % walk->shards;
    return acquire(walk->resource, shard, walk->units, [this, walk](result<grant> r) {
      if (!r && r.error() == errc::stock_exhausted && ++walk->tried < walk->shards) {
        if (const auto next = step(walk); walk->id != 0) walks_[walk->id] = next;
        return;
      }
      walks_.erase(walk->id);
      walk->done(std::move(r));
    });
  }
  struct held_token {
    grant g;
    time_point renewed{};  // when the last renewal was sent
  };
  struct slot {
    std::string resource;
    std::uint32_t shard = 0;
    std::optional<shard_coordinator> active;
    bool asking = false, refused = false;
    std::uint32_t refusal = 0;              // the origin's reason, when refused
    std::optional<address> held_elsewhere;  // the origin says this node coordinates the shard now
    time_point next_ask{}, asked_at{};
    std::uint64_t unmet = 0;
    std::optional<std::pair<std::uint64_t, std::vector<msg::allocation>>> inflight_batch;
    time_point batch_sent{};
    std::map<std::pair<address, std::uint64_t>, std::uint64_t> awaiting;  // (holder, request id) -> nonce
    detail::wait_line waiting;  // token requests the share could not serve yet
  };

  /// A request while others wait ahead of it (or a resend of a waiting one):
  /// it waits its turn. True if answered.
  bool wait_in_line(slot& s, const address& from, const msg::token_request& m, msg::token_reply& out) {
    if (s.waiting.refresh(from, m.nonce, env_.now())) return hold_on(from, out);
    if (s.waiting.empty()) return false;
    return enqueue(s, from, m, out);
  }
  bool enqueue(slot& s, const address& from, const msg::token_request& m, msg::token_reply& out) {
    if (!s.waiting.join({from, m.nonce, m.permits, env_.now()}, 4 * s.active->cert().share + 16)) {
      env_.count("wait_queue_full");
      return false;
    }
    return hold_on(from, out);
  }
  bool hold_on(const address& from, msg::token_reply& out) {
    out.code = status::retry;
    out.error = static_cast<std::uint32_t>(errc::share_exhausted);
    out.retry_after_ms = static_cast<std::uint32_t>(
        std::chrono::duration_cast<std::chrono::milliseconds>(2 * cfg_.request_timeout).count());
    out.certificate.clear();
    env_.send(from, out);
    return true;
  }
  /// Grants to the waiters at the head of the line while the share allows.
  void serve_waiters(slot& s) {
    if (!s.active) return;
    const auto now = env_.now();
    const auto wall = env_.wall_now();
    while (auto* w = s.waiting.head(now, 5 * cfg_.request_timeout)) {
      auto t = s.active->grant(w->from, w->permits, cfg_.token_ttl, wall);
      if (!t) return;
      env_.send(w->from,
                msg::token_reply{w->nonce, status::ok, 0, s.active->sealed_certificate(), std::move(*t), 0,
                                 s.active->last_fencing()});
      s.waiting.pop();
    }
  }

  /// Tells the grant's coordinator (`to`) that its permits are free; in a
  /// group, every member, so that whichever leads next (the leader may have
  /// just died) frees them at once, and every member that signed them (a
  /// quorum-signed token, cosign_guard.hpp) may sign them for the next holder.
  void send_release(const certificate& c, std::uint64_t fencing, const address& to) {
    const msg::token_release out{c.resource, c.shard, fencing};
    if (c.coordinators.size() > 1) {
      for (auto& m : c.coordinators) env_.send(m.addr, out);
    } else {
      env_.send(to, out);
    }
  }
  void drop(std::string_view why) { env_.count(why); }
  void later(std::function<void()> fn) { out_.push(std::move(fn)); }

  /// While this node is not (yet) coordinating a shard: ask again soon, the
  /// origin usually answers within a round trip.
  std::uint32_t not_coordinating_retry_ms() const {
    return static_cast<std::uint32_t>(
               std::chrono::duration_cast<std::chrono::milliseconds>(cfg_.request_timeout / 2).count()) +
        1;
  }

  slot& slot_for(const std::string& resource, std::uint32_t shard) {
    auto [it, fresh] = slots_.try_emplace(shard_key(resource, shard));
    if (fresh) {
      it->second.resource = resource;
      it->second.shard = shard;
      tick_.wake_by(env_.now() + tick_period());  // a coordinator's duties are periodic
    }
    return it->second;
  }

  void ask_origin(slot& s) {
    const auto now = env_.now();
    if (s.asking && now - s.asked_at < cfg_.request_timeout) return;
    if (!s.asking && now < s.next_ask) return;
    s.asking = true;
    s.asked_at = now;
    std::uint64_t demand = s.unmet;
    s.unmet = 0;
    if (s.active) demand += s.active->take_demand();
    msg::delegate_request req{s.resource, s.shard, public_key_, demand};
    if (auto ec = sign(req, env_.self(), *private_key_, env_.wall_now())) return drop("delegate_request_unsigned");
    env_.send(cfg_.origin, req);
  }

  void send_request(pending_request& p) {
    p.resend_at = env_.now() + cfg_.request_timeout;
    tick_.wake_by(p.resend_at);
    const auto key = shard_key(p.req.resource, p.req.shard);
    if (!p.answered) other_member(key);  // unanswered: another member of its group, or ask who coordinates now
    p.answered = false;
    if (auto c = located_.find(key); c != located_.end()) return void(env_.send(c->second, p.req));
    locate(key);
  }
  /// The coordinator last asked for `key` is silent. If it is a member of
  /// the shard's group (as the last certificate seen names it), a member not
  /// yet found silent is asked next, at once: the lookup `locate` makes may
  /// itself wait out the dead node (a DHT's view lags a crash). Once every
  /// member was silent, or for a single coordinator, `locate` is asked.
  void other_member(const std::string& key) {
    auto c = located_.find(key);
    auto g = groups_.find(key);
    if (c != located_.end() && g != groups_.end()) {
      std::erase(g->second, c->second);
      if (!g->second.empty()) return void(c->second = g->second[env_.rng().below(g->second.size())]);
      groups_.erase(g);
    }
    if (c != located_.end()) located_.erase(c);
  }
  /// Asks `locate` once per shard at a time; sends the shard's waiting requests when it answers.
  void locate(const std::string& key) {
    if (!locating_.insert(key).second) return;
    cfg_.locate(key, [this, key](std::optional<address> a) {
      locating_.erase(key);
      if (!a) return;  // unknown for now: the next resend asks again
      located_[key] = *a;
      for (auto& [n, p] : requests_)
        if (shard_key(p.req.resource, p.req.shard) == key) env_.send(*a, p.req);
    });
  }

  /// The request is over here at once; its callback runs after the event.
  void finish(typename std::map<std::uint64_t, pending_request>::iterator it, result<grant> r) {
    auto done = std::move(it->second.done);
    requests_.erase(it);
    out_.complete(std::move(done), std::move(r));
  }

  void reply_receipt(const address& to, std::uint64_t nonce, shard_coordinator& sc, const msg::allocation& a) {
    msg::token_reply out{nonce, status::ok, 0, sc.sealed_certificate(), {}, 0};
    auto r = sc.receipt(a);
    if (!r) {
      out.code = status::refused;
      out.error = static_cast<std::uint32_t>(errc::bad_certificate);
    } else {
      out.token = std::move(*r);
    }
    env_.send(to, out);
  }

  void tick() {
    const auto now = env_.now();
    const auto wall = env_.wall_now();
    // Client: resend what is unanswered; give up after give_up_after.
    for (auto it = requests_.begin(); it != requests_.end();) {
      auto& p = it->second;
      auto next = std::next(it);
      if (now - p.first_sent > cfg_.give_up_after) {
        auto ec = p.last_error ? make_error_code(*p.last_error) : dcp::make_error_code(dcp::errc::timed_out);
        finish(it, ec);
      } else if (now >= p.resend_at) {
        send_request(p);
      }
      it = next;
    }
    // Client: renew held tokens at half their life; report the lost (after the event).
    for (auto it = held_.begin(); it != held_.end();) {
      auto& h = it->second;
      if (wall >= h.g.token.expiry) {
        out_.push([this, g = std::move(h.g)] {
          if (on_lost_) on_lost_(g);
        });
        it = held_.erase(it);
        continue;
      }
      if (wall >= h.g.token.expiry - cfg_.token_ttl / 2 && now - h.renewed >= cfg_.request_timeout) {
        h.renewed = now;
        renew(h.g);
      }
      ++it;
    }
    // Coordinator: renew certificates, commit stock batches, drop ended delegations.
    for (auto& [key, s] : slots_) {
      if (s.active && wall >= s.active->cert().not_after) {
        s.active.reset();
        s.inflight_batch.reset();
        for (auto& [who, nonce] : s.awaiting)
          env_.send(
              who.first,
              msg::token_reply{nonce, status::retry, static_cast<std::uint32_t>(errc::not_coordinator), {}, {}, 0});
        s.awaiting.clear();
      }
      if (s.active && now >= s.next_ask)
        ask_origin(s);
      else if (s.asking && now - s.asked_at >= cfg_.request_timeout)
        ask_origin(s);
      if (s.active && s.active->cert().kind == capacity_kind::stock) flush_batch(s, now);
      if (s.active) {
        s.active->expire(wall);
        serve_waiters(s);
      } else {
        s.waiting.clear();
      }
    }
    schedule_tick(now, wall);
  }

  /// When the next tick is due: a coordinator ticks every period (batches,
  /// certificate renewals, its wait line); a client only sleeps until its
  /// next resend, give-up, renewal or expiry, at most request_timeout (so a
  /// wall clock stepped forward is noticed in time: a renewal has 2 x
  /// request_timeout of room), and an idle client not at all.
  void schedule_tick(time_point now, wall_time wall) {
    if (!slots_.empty()) return tick_.wake_by(now + tick_period());
    auto next = time_point::max();
    for (auto& [n, p] : requests_) next = std::min({next, p.resend_at, p.first_sent + cfg_.give_up_after + 1ns});
    for (auto& [k, h] : held_) next = std::min(next, due(h, now, wall));
    if (next == time_point::max()) return;
    tick_.wake_by(std::clamp(next, now + tick_period(), now + cfg_.request_timeout));
  }
  /// A held token's next duty: its renewal at half its life (once per
  /// request_timeout while unanswered), or its loss at expiry.
  time_point due(const held_token& h, time_point now, wall_time wall) const {
    const auto renew_at =
        std::max(now + (h.g.token.expiry - cfg_.token_ttl / 2 - wall), h.renewed + cfg_.request_timeout);
    return std::min(renew_at, now + (h.g.token.expiry - wall));
  }
  duration tick_period() const { return std::min<duration>(cfg_.request_timeout / 2, 20ms); }

  void renew(const grant& g) {
    pending_request p;
    p.req = msg::token_request{++nonce_, g.resource, g.shard, g.token.permits, g.token.fencing, 0};
    p.first_sent = env_.now();
    p.done = [this, key = held_key(g)](result<grant> r) {
      auto it = held_.find(key);
      if (it == held_.end()) return;  // released meanwhile
      if (r) it->second.g = std::move(*r);
    };
    send_request(requests_.emplace(p.req.nonce, std::move(p)).first->second);
  }

  void flush_batch(slot& s, time_point now) {
    if (s.inflight_batch) {
      if (now - s.batch_sent >= cfg_.request_timeout) {  // unanswered: the same batch again (idempotent)
        s.batch_sent = now;
        send_batch(s, s.inflight_batch->first, s.inflight_batch->second);
      }
      return;
    }
    if (now - s.batch_sent < cfg_.batch_every) return;
    auto b = s.active->next_batch(cfg_.max_batch);
    if (b.second.empty()) return;
    s.batch_sent = now;
    send_batch(s, b.first, b.second);
    s.inflight_batch = std::move(b);
  }
  void send_batch(slot& s, std::uint64_t batch, const std::vector<msg::allocation>& allocations) {
    msg::stock_commit m{s.resource, s.shard, s.active->cert().epoch, batch, allocations};
    if (auto ec = sign(m, env_.self(), *private_key_)) return drop("stock_commit_unsigned");
    env_.send(cfg_.origin, m);
  }

  E env_;
  outbox<E> out_;  ///< completions owed (acquire's, on_lost), run after the event; dropped with the peer
  peer_config cfg_;
  std::optional<lease::verification_key> origin_key_;
  std::optional<lease::ed25519_private_key> private_key_;
  bytes public_key_;
  std::uint64_t nonce_ = 0;
  std::map<std::uint64_t, pending_request> requests_;  // by nonce
  std::map<std::uint64_t, std::uint64_t> walks_;       // acquire_stock: a walk's handle -> its current request's
  // Fencing tokens are unique within a shard, not across shards.
  static std::pair<std::string, std::uint64_t> held_key(const grant& g) {
    return {shard_key(g.resource, g.shard), g.token.fencing};
  }
  std::map<std::pair<std::string, std::uint64_t>, held_token> held_;  // by (shard key, fencing)
  std::map<std::string, slot> slots_;                                 // by shard key
  std::map<std::string, address> located_;                            // shard key -> its coordinator, as last located
  std::map<std::string, std::vector<address>>
      groups_;                      // shard key -> its group's members not found silent (last certificate)
  std::set<std::string> locating_;  // shard keys being located
  std::function<void(const grant&)> on_lost_;
  wakeup<E> tick_;                       // armed at the next tick due (schedule_tick)
  std::unique_ptr<group_host<E>> host_;  // peer_config::groups: the groups this node serves in
};

}  // namespace dcp::delegation
