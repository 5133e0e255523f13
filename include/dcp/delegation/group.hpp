#pragma once
// delegation::group: multi-delegation. r coordinators act as one virtual
// coordinator of a set of shards, by quorum: their grants live in a Raft
// log (ledger.hpp) before any token leaves, so a coordinator crash, the
// leader's included, costs no grant while a majority of them lives.
//
//   node i of the group:  auto& r = n.add<raft<E, ledger, Store>>(raft_id, {members...}, store);
//                         n.add<group<E, decltype(r)>>(delegation::default_protocol_id, r, cfg, key_i);
//   clients:              delegation::peer, whose locate names any member
//
// The design, and why not the alternatives:
//   - One certificate per shard names every member and its key; a member at
//     position i signs with key id group_key_id(epoch, i). The origin checks
//     one signature per token, as in single delegation, and honours tokens
//     from whichever member led when they were signed; a new leader renews
//     the same epoch, so a failover costs neither an epoch nor a token.
//   - The book of grants is replicated (Raft): it bounds the total, and the
//     origin's back-stop still bounds what a lying member could grant to the
//     shard's share. Where no such back-stop stands behind the tokens, the
//     origin makes them quorum-signed (below): then lying members cannot
//     over-grant either.
//   - Any member the DHT (or a fixed rule) names takes a client's request; a
//     follower redirects it to the leader (token_reply.coordinator), which
//     delegation::peer already follows.
//   - A client sends a release to every member: the leader logs it; a
//     follower keeps it for a token's life and logs it if it comes to lead,
//     so a release sent as the leader dies frees its permits under the next
//     one, not when the token expires.
//
// The leader asks the origin for the certificate (group_delegate_request)
// and renews it every third of what is left of it, reporting demand; it
// logs each certificate (ledger op certify), so the next leader has it at
// once. Grants: a request is proposed with its (holder, nonce) and answered
// with a token only once committed; a resend gets the same grant back.
// When the share is in use, requests wait in a FIFO line (bounded: 4 x share
// + 16) and are proposed in arrival order as permits free, as a single
// coordinator does (detail/wait_line.hpp).
//
// Stock (units consumed for good): the leader logs each allocation
// (ledger op reserve), then gathers those not yet sent into the shard's one
// open batch by an entry of its own, so the batch's id and contents are the
// same under any leader; it sends the batch to the origin (resending it
// until answered) and logs the answer. A client's receipt is signed only
// once the origin's confirmation is committed. So a confirmed allocation
// survives any leader's crash, the origin applies each batch once (by id)
// and each allocation once (by holder and request id), and sees one message
// per batch.
//
// Quorum-signed tokens (resource_spec::quorum_signed; token.hpp): the
// origin's certificate asks for signing_quorum(n) signatures per token. Once
// a grant or renewal is committed, the leader signs it and asks every other
// member to sign the grant as its own book holds it (cosign_request); each
// signs only what its cosign_guard allows (no slot of a live grant it signed
// for another), so f = 2q - n - 1 lying members, the leader among them,
// cannot make two live tokens share a permit. A member that has not applied
// the entry yet answers when it has (it learns the commit index with the
// next heartbeat: a quorum-signed grant costs about one heartbeat more).
// The leader checks each signature and answers the client with the token
// once it has q; a member that will not sign (slot_held) is counted, and
// asks the holder of the grant that keeps the slot whether it is done with
// it (release_query): a release lost on its way to a member then costs a
// round trip, not that grant's life.
//
// Faults: crashes and restarts of members (with durable Raft storage),
// loss, duplication, reordering, partitions: a minority side grants nothing
// new (it cannot commit); tokens it signed before stay valid until they
// expire. When the group loses its majority for longer than the certificate
// lasts, the shard goes back to the origin and is delegated anew after the
// certificate's end plus twice the drift bound, as in single delegation.
// Not built: a group that changes its members within an epoch (a new
// membership is a new epoch).
//
// Message ids 1-16, default protocol id 140 (messages.hpp).
#include <algorithm>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "dcp/core/condition.hpp"
#include "dcp/core/env.hpp"
#include "dcp/core/result.hpp"
#include "dcp/delegation/certificate.hpp"
#include "dcp/delegation/cosign_guard.hpp"
#include "dcp/delegation/token.hpp"
#include "dcp/delegation/detail/wait_line.hpp"
#include "dcp/delegation/ledger.hpp"
#include "dcp/delegation/messages.hpp"
#include "dcp/delegation/request_signature.hpp"
#include "dcp/lease/keys.hpp"
#include "dcp/lease/token.hpp"

namespace dcp::delegation {

struct group_config {
  address origin;
  bytes origin_public_key;                 ///< the root of trust (32 bytes)
  std::vector<coordinator_entry> members;  ///< every member and its key, the same list (and order) on each
  std::vector<std::pair<std::string, std::uint32_t>> shards;  ///< (resource, shard) this group coordinates
  duration token_ttl = 2s;                                    ///< a token's life; clients renew at half of it
  duration max_drift = 100ms;                                 ///< bound on |any two wall clocks| (the origin's too)
  duration request_timeout = 200ms;                           ///< resend to the origin after this
  duration tick = 20ms;
  duration batch_every = 20ms;   ///< stock: how often the leader gathers a batch for the origin
  std::size_t max_batch = 1024;  ///< stock: allocations in one batch (the origin's limit)
  /// Requests whose entries may be in the log at once; beyond, clients are
  /// told to retry (a flood costs them a round trip, not this node memory).
  std::size_t max_in_flight = 4096;

  void validate() const {
    if (origin_public_key.size() != lease::ed25519_key_size)
      throw error(dcp::errc::invalid_config,
                  "delegation::group: origin_public_key must be the origin's 32-byte Ed25519 key");
    if (members.empty() || members.size() > max_coordinators)
      throw error(dcp::errc::invalid_config,
                  "delegation::group: a group needs 1..16 members (3 or 5 tolerate 1 or 2 crashes)");
    std::set<address> seen;
    for (auto& m : members) {
      if (m.public_key.size() != lease::ed25519_key_size)
        throw error(dcp::errc::invalid_config, "delegation::group: every member needs its 32-byte Ed25519 public key");
      if (!seen.insert(m.addr).second)
        throw error(dcp::errc::invalid_config, "delegation::group: a member is listed twice");
    }
    if (shards.empty()) throw error(dcp::errc::invalid_config, "delegation::group: no shards to coordinate");
    if (token_ttl <= 4 * request_timeout || max_drift < duration::zero() || tick <= duration::zero() ||
        max_in_flight == 0 || max_batch == 0)
      throw error(
          dcp::errc::invalid_config,
          "delegation::group: token_ttl must exceed 4 x request_timeout; tick, max_in_flight and max_batch must be > 0");
  }
};

/// Requests a shard's line holds while its first certificate is on its way
/// (then the line's bound is 4 x share + 16).
inline constexpr std::size_t max_line_before_certificate = 1024;

template <Env E, class Raft> class group {
  static_assert(std::is_same_v<std::remove_cvref_t<decltype(std::declval<Raft&>().state_machine())>, ledger>,
                "dcp: delegation::group needs a consensus::raft whose state machine is delegation::ledger");

 public:
  using messages = msg::all;
  /// What it counts (env.count), declared: dcp/core/counter_set.hpp.
  static constexpr dcp::counter_set counters{{"bad_token_request",
                                              "release_for_unknown_shard",
                                              "release_of_unknown_grant",
                                              "delegate_reply_not_from_origin",
                                              "unsolicited_delegate_reply",
                                              "delegation_deferred",
                                              "delegation_refused",
                                              "bad_certificate_from_origin",
                                              "stock_ack_not_from_origin",
                                              "unsolicited_stock_ack",
                                              "cosign_request_not_from_member",
                                              "cosign_request_for_unknown_shard",
                                              "too_many_in_flight",
                                              "unsolicited_cosign_reply",
                                              "cosign_refused_slot_held",
                                              "cosign_refused",
                                              "bad_cosignature",
                                              "unexpected_message",
                                              "token_seal_failed",
                                              "stock_commit_unsigned",
                                              "cosign_refused_here",
                                              "release_query_sent",
                                              "wait_queue_full",
                                              "delegate_request_unsigned"}};
  static constexpr std::string_view name = "delegation_group";
  static constexpr protocol_id default_id = default_protocol_id;

  /// `key`: this member's private key; its public half must be in
  /// cfg.members at this node's address.
  group(E env, Raft& raft, group_config cfg, lease::ed25519_private_key key)
      : env_(std::move(env)),
        raft_(raft),
        cfg_(std::move(cfg)),
        key_(std::move(key)),
        // A member with a log may have signed before it restarted: it signs
        // nothing until every token it could have signed has expired.
        guard_(cfg_.token_ttl, cfg_.max_drift,
               raft.current_term() == 0
                   ? std::nullopt
                   : std::optional<wall_time>(env_.wall_now() + cfg_.token_ttl + 2 * cfg_.max_drift)) {
    cfg_.validate();
    for (auto& m : cfg_.members) member_keys_.push_back(lease::ed25519_public_key::from_bytes(m.public_key).value());
    origin_key_.emplace(lease::ed25519_public_key::from_bytes(cfg_.origin_public_key).value(), 0);
    const auto me =
        std::find_if(cfg_.members.begin(), cfg_.members.end(), [&](auto& m) { return m.addr == env_.self(); });
    if (me == cfg_.members.end() || me->public_key != key_.public_key().raw())
      throw error(dcp::errc::invalid_config,
                  "delegation::group: this node and its public key must be among the members");
    position_ = static_cast<std::size_t>(me - cfg_.members.begin());
    for (auto& [r, s] : cfg_.shards) shards_[shard_key(r, s)] = {r, s};
  }
  group(const group&) = delete;
  group& operator=(const group&) = delete;

  void start() {
    ticker_.start(env_, cfg_.tick, [this] { tick(); });
  }

  bool leads() const noexcept { return raft_.is_leader(); }
  /// The shard's book as this member has applied it.
  const ledger::shard_book* book(const std::string& resource, std::uint32_t shard) const {
    return raft_.state_machine().book(shard_key(resource, shard));
  }

  void on_message(const address& from, const msg::token_request& m) {
    if (m.resource.empty() || m.resource.size() > max_resource_name || m.permits == 0) return drop("bad_token_request");
    msg::token_reply out{m.nonce, status::retry, static_cast<std::uint32_t>(errc::not_coordinator), {}, {}, 0};
    out.retry_after_ms = retry_ms(cfg_.request_timeout / 2);
    const auto key = shard_key(m.resource, m.shard);
    auto sh = shards_.find(key);
    if (sh == shards_.end()) {
      out.code = status::refused;
      out.error = static_cast<std::uint32_t>(errc::unknown_shard);
      return void(env_.send(from, out));
    }
    if (!raft_.is_leader()) {  // the leader decides; say who it is
      if (auto l = raft_.leader(); l && *l != env_.self()) out.coordinator = l;
      return void(env_.send(from, out));
    }
    const auto now = env_.wall_now();
    const auto* b = raft_.state_machine().book(key);
    if (!b || !b->cert.valid_at(now)) {  // not delegated yet: ask the origin, and wait in line for it
      auto& s = sh->second;
      s.unmet += m.permits;
      ask_origin(s);
      if (m.renew_fencing) return void(env_.send(from, out));
      if (s.waiting.refresh(from, m.nonce, env_.now()) ||
          s.waiting.join({from, m.nonce, m.permits, env_.now()}, max_line_before_certificate))
        return hold_on(from, out);
      return void(env_.send(from, out));
    }
    if (b->cert.kind == capacity_kind::stock) return reserve_stock(from, m, std::move(out));
    auto& s = sh->second;
    if (!m.renew_fencing) {  // in arrival order: behind those already waiting, or in line if the share is in use
      if (s.waiting.refresh(from, m.nonce, env_.now())) return hold_on(from, out);
      if (!s.waiting.empty() || !fits(s, *b, m.permits)) return wait_in_line(s, *b, from, m, out);
    }
    propose_grant(from, m, std::move(out));
  }

  /// Clients send a release to every member: the leader applies it; a
  /// follower keeps it for a token's life, and applies it if it becomes the
  /// leader (the one the client sent it to may have just died).
  void on_message(const address& from, const msg::token_release& m) {
    const auto key = shard_key(m.resource, m.shard);
    if (!shards_.contains(key)) return drop("release_for_unknown_shard");
    guard_.released(key, m.fencing, from,
                    env_.wall_now());  // its holder said so to this member: the slots it signed are free
    if (raft_.is_leader()) {           // only a grant the book holds for the sender is worth an entry in the log
      const auto* b = raft_.state_machine().book(key);
      if (!b || !b->grants.contains(m.fencing) || b->grants.at(m.fencing).holder != from)
        return drop("release_of_unknown_grant");
      return release(key, from, m.fencing);
    }
    if (held_releases_.size() >= cfg_.max_in_flight) held_releases_.erase(held_releases_.begin());  // the oldest goes
    held_releases_.push_back({key, from, m.fencing, env_.now()});
  }

  void on_message(const address& from, const msg::delegate_reply& m) {
    if (from != cfg_.origin) return drop("delegate_reply_not_from_origin");
    auto sh = shards_.find(shard_key(m.resource, m.shard));
    if (sh == shards_.end() || !sh->second.asking) return drop("unsolicited_delegate_reply");
    auto& s = sh->second;
    s.asking = false;
    if (m.code != status::ok) {
      s.next_ask = env_.now() +
          std::chrono::milliseconds(
                       std::min<std::uint32_t>(m.code == status::retry ? m.retry_after_ms : 10'000, 60'000));
      return drop(m.code == status::retry ? "delegation_deferred" : "delegation_refused");
    }
    auto c = open_certificate(m.certificate, *origin_key_);
    if (!c || c->resource != m.resource || c->shard != m.shard || c->coordinators != cfg_.members)
      return drop("bad_certificate_from_origin");
    const auto left = c->not_after - env_.wall_now();
    s.next_ask = env_.now() + std::max<duration>(std::chrono::duration_cast<duration>(left / 3), cfg_.tick);
    ledger::command cmd;
    cmd.kind = ledger::op::certify;
    cmd.key = c->key();
    cmd.sealed_certificate = m.certificate;
    cmd.cert = std::move(*c);
    propose(cmd, [this, key = cmd.key](result<ledger::outcome>) { serve_waiters(shards_[key]); });
  }

  /// The origin's answer to the open stock batch: logged, and only then are
  /// the batch's holders told (a receipt, or the refusal).
  void on_message(const address& from, const msg::stock_ack& m) {
    if (from != cfg_.origin) return drop("stock_ack_not_from_origin");
    const auto key = shard_key(m.resource, m.shard);
    auto sh = shards_.find(key);
    const auto* b = sh == shards_.end() ? nullptr : raft_.state_machine().book(key);
    if (!b || !raft_.is_leader() || b->open_batch != m.batch || sh->second.sent_batch != m.batch)
      return drop("unsolicited_stock_ack");
    if (m.code == status::retry || sh->second.answering == m.batch) return;  // resent on the timer; or being logged
    sh->second.answering = m.batch;
    ledger::command c;
    c.kind = m.code == status::ok ? ledger::op::confirm : ledger::op::unreserve;
    c.key = key;
    c.batch = m.batch;
    propose(c,
            [this, key, contents = b->open_batch_contents(), confirm = c.kind == ledger::op::confirm,
             error = m.error](result<ledger::outcome> r) {
              auto& s = shards_[key];
              s.answering = 0;
              if (!r || r->code != 0) return;  // not logged here (leadership moved), or answered already
              for (auto& a : contents) {
                auto w = s.awaiting.find({a.holder, a.request_id});
                if (w == s.awaiting.end()) continue;  // its holder asks again and is answered from the book
                if (confirm)
                  reply_receipt(key, a, w->second);
                else
                  env_.send(a.holder, msg::token_reply{w->second, status::refused, error, {}, {}, 0});
                s.awaiting.erase(w);
              }
            });
  }

  /// Quorum-signed: the leader asks this member to sign a committed grant.
  void on_message(const address& from, const msg::cosign_request& m) {
    if (!member_at(from) || from == env_.self()) return drop("cosign_request_not_from_member");
    if (!shards_.contains(shard_key(m.resource, m.shard))) return drop("cosign_request_for_unknown_shard");
    if (answer_cosign(from, m, true)) return;
    // Not applied here yet, or a slot still held (its release may be on its
    // way): answered on the tick once it can be, or when its time is up.
    auto waiting = std::find_if(cosign_waiting_.begin(), cosign_waiting_.end(),
                                [&](auto& w) { return w.from == from && w.request.fencing == m.fencing; });
    if (waiting != cosign_waiting_.end()) return void(waiting->request = m);  // asked again: its wait goes on
    if (cosign_waiting_.size() >= cfg_.max_in_flight) return drop("too_many_in_flight");
    cosign_waiting_.push_back({from, m, env_.now()});
  }

  /// Quorum-signed: a member's signature (or refusal) for a grant the leader gathers.
  void on_message(const address& from, const msg::cosign_reply& m) {
    const auto member = member_at(from);
    auto p = gathering_.find(m.fencing);
    if (!member || p == gathering_.end() || p->second.grant.token.resource != shard_key(m.resource, m.shard) ||
        ledger::ns(p->second.grant.token.expiry) != m.expiry_ns)
      return drop("unsolicited_cosign_reply");
    auto& g = p->second;
    if (m.error != 0) {
      drop(static_cast<errc>(m.error) == errc::slot_held ? "cosign_refused_slot_held" : "cosign_refused");
      g.refused.insert(*member);
      if (g.refused.size() > cfg_.members.size() - g.needed) give_up(p, static_cast<errc>(m.error));
      return;
    }
    if (std::any_of(g.sigs.begin(), g.sigs.end(), [&](auto& c) { return c.member == *member; })) return;  // a duplicate
    if (!cosignature_valid(g.grant, g.epoch, *member, m.signature, member_keys_[*member]))
      return drop("bad_cosignature");
    g.sigs.push_back({static_cast<std::uint8_t>(*member), m.signature});
    finish_if_signed(p);
  }

  void on_message(const address&, const msg::token_reply&) { drop("unexpected_message"); }
  void on_message(const address&, const msg::delegate_request&) { drop("unexpected_message"); }
  void on_message(const address&, const msg::group_delegate_request&) { drop("unexpected_message"); }
  void on_message(const address&, const msg::stock_commit&) { drop("unexpected_message"); }
  void on_message(const address&, const msg::release_query&) { drop("unexpected_message"); }
  // Forming groups from the overlay is group_host's (a configured group's members are fixed).
  void on_message(const address&, const msg::group_invite&) { drop("unexpected_message"); }
  void on_message(const address&, const msg::group_accept&) { drop("unexpected_message"); }
  void on_message(const address&, const msg::group_form&) { drop("unexpected_message"); }
  void on_message(const address&, const msg::group_form_query&) { drop("unexpected_message"); }
  void on_message(const address&, const msg::group_raft&) { drop("unexpected_message"); }

 private:
  struct shard_state {
    std::string resource;
    std::uint32_t shard = 0;
    bool asking = false;
    time_point asked_at{}, next_ask{};
    std::uint64_t unmet = 0;     // refused or unserved permits since the last report
    std::uint64_t granting = 0;  // permits of grants proposed and not yet applied
    std::map<std::uint64_t, std::uint32_t>
        releasing;              // grants whose release is proposed, not yet applied: their permits
    detail::wait_line waiting;  // grant requests the share could not serve yet
    // Stock, as the leader: who waits for which allocation's confirmation
    // ((holder, request id) -> request nonce), and the open batch's sending.
    std::map<std::pair<address, std::uint64_t>, std::uint64_t> awaiting;
    bool sealing = false;          // a seal_batch entry is in the log
    std::uint64_t sent_batch = 0;  // the open batch, once sent by this leader
    std::uint64_t answering = 0;   // the batch whose answer is being logged
    time_point batch_sent{};
  };

  /// Stock: logs the allocation (once per (holder, request id)); its holder
  /// is answered when the origin's confirmation of its batch is logged, or
  /// at once if it was confirmed already (a resend).
  void reserve_stock(const address& from, const msg::token_request& m, msg::token_reply out) {
    const auto key = shard_key(m.resource, m.shard);
    auto& s = shards_[key];
    const std::pair<address, std::uint64_t> who{from, m.request_id};
    if (!s.awaiting.contains(who) && s.awaiting.size() >= cfg_.max_in_flight) {
      drop("too_many_in_flight");
      return void(env_.send(from, out));
    }
    s.awaiting[who] = m.nonce;
    if (!proposing_.insert({from, m.nonce}).second) return;  // a resend while its entry is in the log
    ledger::command c;
    c.kind = ledger::op::reserve;
    c.key = key;
    c.holder = from;
    c.request_id = m.request_id;
    c.permits = m.permits;
    c.cutoff_ns = ledger::ns(env_.wall_now() - 2 * cfg_.max_drift);
    propose(c, [this, key, who, nonce = m.nonce, out](result<ledger::outcome> r) mutable {
      proposing_.erase({who.first, nonce});
      auto& s = shards_[key];
      auto w = s.awaiting.find(who);
      if (w == s.awaiting.end()) return;  // answered meanwhile (its batch was)
      if (!r) {                           // not logged here (leadership moved): the client asks again
        s.awaiting.erase(w);
        return void(env_.send(who.first, out));
      }
      if (r->code != 0) {
        s.awaiting.erase(w);
        const auto why = static_cast<errc>(r->code);
        out.code = why == errc::certificate_expired ? status::retry : status::refused;
        out.error = r->code;
        return void(env_.send(who.first, out));
      }
      if (r->confirmed) {
        reply_receipt(key, {who.first, who.second, r->permits}, w->second);
        s.awaiting.erase(w);
      }  // otherwise it waits for its batch's confirmation
    });
  }
  /// A receipt for a confirmed allocation, signed as a token of this epoch.
  void reply_receipt(const std::string& key, const msg::allocation& a, std::uint64_t nonce) {
    const auto* b = raft_.state_machine().book(key);
    if (!b) return;
    msg::token_reply out{nonce, status::ok, 0, b->sealed_certificate, {}, 0};
    auto sealed = lease::seal(stock_receipt(b->cert, a.holder, a.request_id, a.units),
                              lease::signing_key(key_, group_key_id(b->cert.epoch, position_)));
    if (!sealed) {
      drop("token_seal_failed");
      out.code = status::refused;
      out.error = static_cast<std::uint32_t>(errc::bad_certificate);
    } else {
      out.token = std::move(*sealed);
    }
    env_.send(a.holder, out);
  }

  /// Stock, as the leader: sends the open batch (again, when unanswered for
  /// a request timeout), or logs the next one.
  void flush_stock(shard_state& s, const ledger::shard_book& b) {
    const auto now = env_.now();
    if (b.open_batch != 0) {
      if (s.sent_batch != b.open_batch || now - s.batch_sent >= cfg_.request_timeout) send_batch(s, b);
      return;
    }
    if (s.sealing || now - s.batch_sent < cfg_.batch_every) return;
    if (b.unbatched.empty()) return;
    s.sealing = true;
    ledger::command c;
    c.kind = ledger::op::seal_batch;
    c.key = shard_key(s.resource, s.shard);
    c.permits =
        static_cast<std::uint32_t>(std::min<std::size_t>(cfg_.max_batch, std::numeric_limits<std::uint32_t>::max()));
    propose(c, [this, key = c.key](result<ledger::outcome> r) {
      auto& s = shards_[key];
      s.sealing = false;
      const auto* b = raft_.state_machine().book(key);
      if (r && r->batch && b && raft_.is_leader()) send_batch(s, *b);
    });
  }
  void send_batch(shard_state& s, const ledger::shard_book& b) {
    msg::stock_commit m{s.resource, s.shard, b.cert.epoch, b.open_batch, b.open_batch_contents(), {}};
    if (auto ec = sign(m, env_.self(), key_)) return drop("stock_commit_unsigned");
    s.sent_batch = b.open_batch;
    s.batch_sent = env_.now();
    env_.send(cfg_.origin, m);
  }

  /// Proposes the grant (or renewal) `m` asks for, and answers once it is applied.
  void propose_grant(const address& from, const msg::token_request& m, msg::token_reply out) {
    if (proposing_.size() >= cfg_.max_in_flight) {
      drop("too_many_in_flight");
      return void(env_.send(from, out));
    }
    if (!proposing_.insert({from, m.nonce}).second) return;  // a resend while its entry is in the log: one answer
    const auto key = shard_key(m.resource, m.shard);
    const auto now = env_.wall_now();
    const std::uint32_t taking = m.renew_fencing ? 0 : m.permits;
    shards_[key].granting += taking;
    ledger::command c;
    c.kind = m.renew_fencing ? ledger::op::renew : ledger::op::grant;
    c.key = key;
    c.holder = from;
    c.permits = m.permits;
    c.nonce = m.nonce;
    c.fencing = m.renew_fencing;
    c.expiry_ns = ledger::ns(now + cfg_.token_ttl);
    c.cutoff_ns = ledger::ns(now - 2 * cfg_.max_drift);
    propose(c, [this, from, m, key, out, taking](result<ledger::outcome> r) mutable {
      proposing_.erase({from, m.nonce});
      auto& s = shards_[key];
      s.granting -= taking;
      const auto* book = raft_.state_machine().book(key);
      if (!r || !book)
        return void(env_.send(from, out));  // not committed here (leadership moved): the client asks again
      if (r->code != 0) {
        const auto why = static_cast<errc>(r->code);
        if (why == errc::share_exhausted && !m.renew_fencing) {  // outrun by the book: back to the head of the line
          s.unmet += m.permits;
          s.waiting.rejoin_front({from, m.nonce, m.permits, env_.now()});
          return hold_on(from, out);
        }
        out.code = make_error_code(why) == condition::retryable ? status::retry : status::refused;
        out.error = r->code;
        out.retry_after_ms = retry_ms(why == errc::share_exhausted ? cfg_.token_ttl / 4 : cfg_.request_timeout / 2);
        return void(env_.send(from, out));
      }
      const lease::token t{key, from, r->permits, r->fencing, wall_time(duration(r->expiry_ns))};
      if (book->cert.signers > 1) return gather(*book, t, out);
      auto sealed = lease::seal(t, lease::signing_key(key_, group_key_id(book->cert.epoch, position_)));
      if (!sealed) return drop("token_seal_failed");
      out.code = status::ok;
      out.error = 0;
      out.certificate = book->sealed_certificate;
      out.token = std::move(*sealed);
      out.fencing = r->fencing;
      env_.send(from, out);
    });
  }

  // ---- quorum-signed tokens (token.hpp) ----

  /// A grant the leader gathers signatures for.
  struct gathering {
    address holder;
    msg::token_reply reply;  // what the holder hears if no token comes of it (retry)
    quorum_grant grant;
    std::uint32_t epoch = 0;
    std::size_t needed = 0;
    std::vector<cosignature> sigs;
    std::set<std::size_t> refused;
    time_point started{}, asked{};
    bool signed_here = false;
  };
  using gathering_iterator = typename std::map<std::uint64_t, gathering>::iterator;

  std::optional<std::size_t> member_at(const address& a) const {
    for (std::size_t i = 0; i < cfg_.members.size(); ++i)
      if (cfg_.members[i].addr == a) return i;
    return std::nullopt;
  }

  /// The committed grant `t` (or its renewal) is signed here, then by the
  /// others; the holder gets the token once a quorum signed it.
  void gather(const ledger::shard_book& book, const lease::token& t, msg::token_reply out) {
    auto e = book.grants.find(t.fencing);
    if (e == book.grants.end()) return void(env_.send(t.holder, out));  // gone meanwhile: it asks again
    if (!gathering_.contains(t.fencing) && gathering_.size() >= cfg_.max_in_flight) {
      drop("too_many_in_flight");
      return void(env_.send(t.holder, out));
    }
    auto& g = gathering_[t.fencing];  // a renewal's replaces the last one's
    g = {t.holder, out, {t, e->second.slots}, book.cert.epoch, book.cert.signers, {}, {}, env_.now(), env_.now()};
    auto p = gathering_.find(t.fencing);
    if (!sign_here(p, true)) return;
    ask_cosigners(g);
    finish_if_signed(p);
  }
  /// This member's own signature on a grant it gathers; a slot still held
  /// may wait (a release on its way), as for any member. False if it gave up.
  bool sign_here(gathering_iterator p, bool may_wait) {
    auto& g = p->second;
    const auto* b = raft_.state_machine().book(g.grant.token.resource);
    if (!b) return give_up(p, errc::not_coordinator), false;
    cosign_guard::holder_of_slot blocker;
    if (auto ec = guard_.sign_off(b->cert, g.grant, env_.wall_now(), &blocker)) {
      if (ec == errc::slot_held) ask_if_released(g.grant.token.resource, blocker);
      if (ec == errc::slot_held && may_wait) return true;  // tried again on the tick
      drop("cosign_refused_here");
      return give_up(p, ec.category() == error_category() ? static_cast<errc>(ec.value()) : errc::certificate_mismatch),
             false;
    }
    auto sig = cosign(g.grant, g.epoch, position_, key_);
    if (!sig) return give_up(p, errc::bad_certificate), false;
    g.sigs.push_back({static_cast<std::uint8_t>(position_), std::move(*sig)});
    g.signed_here = true;
    return true;
  }
  void ask_cosigners(gathering& g) {
    g.asked = env_.now();
    const auto epoch_key = split_key(g.grant.token.resource);
    const msg::cosign_request req{epoch_key.first, epoch_key.second, g.grant.token.fencing,
                                  ledger::ns(g.grant.token.expiry)};
    for (std::size_t i = 0; i < cfg_.members.size(); ++i)
      if (i != position_ && !g.refused.contains(i) &&
          std::none_of(g.sigs.begin(), g.sigs.end(), [&](auto& c) { return c.member == i; }))
        env_.send(cfg_.members[i].addr, req);
  }
  void finish_if_signed(gathering_iterator p) {
    auto& g = p->second;
    if (g.sigs.size() < g.needed) return;
    auto sealed = seal_quorum_token(g.grant, g.epoch, g.sigs);
    if (!sealed) return give_up(p, errc::bad_certificate);
    auto out = g.reply;
    out.code = status::ok;
    out.error = 0;
    out.token = std::move(*sealed);
    out.fencing = g.grant.token.fencing;
    if (const auto* b = raft_.state_machine().book(g.grant.token.resource)) out.certificate = b->sealed_certificate;
    env_.send(g.holder, out);
    gathering_.erase(p);
  }
  /// No quorum will sign: the holder is told to retry (a slot held by a
  /// grant some member signed frees when that grant expires).
  void give_up(gathering_iterator p, errc why) {
    auto out = p->second.reply;
    out.code = status::retry;
    out.error = static_cast<std::uint32_t>(why);
    out.retry_after_ms = retry_ms(why == errc::slot_held ? cfg_.token_ttl / 4 : cfg_.request_timeout / 2);
    env_.send(p->second.holder, out);
    gathering_.erase(p);
  }
  /// As a member: signs grant m.fencing as this member's book holds it, if
  /// the book has applied the entry the leader asks about (false if not
  /// yet, or if a slot is still held and `may_wait`: the holder's release
  /// may still be on its way, or its expiry a clock's difference away).
  bool answer_cosign(const address& to, const msg::cosign_request& m, bool may_wait) {
    const auto key = shard_key(m.resource, m.shard);
    const auto* b = raft_.state_machine().book(key);
    msg::cosign_reply out{m.resource, m.shard, m.fencing, m.expiry_ns, 0, {}};
    const auto epoch = static_cast<std::uint32_t>(m.fencing >> 32);
    if (!b || epoch > b->cert.epoch) return false;  // its certificate is not applied here yet
    auto refuse = [&](errc why) {
      out.error = static_cast<std::uint32_t>(why);
      env_.send(to, out);
      return true;
    };
    if (b->cert.signers <= 1 || epoch < b->cert.epoch) return refuse(errc::wrong_epoch);
    auto e = b->grants.find(m.fencing);
    if (e == b->grants.end()) {
      if ((m.fencing & 0xffffffffu) > b->sequence) return false;  // granted in an entry not applied here yet
      return refuse(errc::delegation_ended);                      // released or expired here
    }
    if (e->second.expiry_ns < m.expiry_ns) return false;                           // a renewal not applied here yet
    if (e->second.expiry_ns > m.expiry_ns) return refuse(errc::delegation_ended);  // asked about an older renewal
    const quorum_grant g{
        {key, e->second.holder, e->second.permits, m.fencing, wall_time(duration(e->second.expiry_ns))},
        e->second.slots};
    cosign_guard::holder_of_slot blocker;
    if (auto ec = guard_.sign_off(b->cert, g, env_.wall_now(), &blocker)) {
      if (ec == errc::slot_held) ask_if_released(key, blocker);
      if (ec == errc::slot_held && may_wait) return false;
      drop(ec == errc::slot_held ? "cosign_refused_slot_held" : "cosign_refused");
      return refuse(ec.category() == error_category() ? static_cast<errc>(ec.value()) : errc::certificate_mismatch);
    }
    auto sig = cosign(g, epoch, position_, key_);
    if (!sig) return refuse(errc::bad_certificate);
    out.signature = std::move(*sig);
    env_.send(to, out);
    return true;
  }
  /// A permit this member signed for `blocker` is wanted for another grant,
  /// and the release of `blocker` never reached this member (lost, or sent
  /// while it was down): ask its holder, at most once a request timeout
  /// per grant. The holder's answer is a release like any other.
  void ask_if_released(const std::string& key, const cosign_guard::holder_of_slot& blocker) {
    const auto now = env_.now();
    if (auto q = release_queries_.find(blocker.fencing);
        q != release_queries_.end() && now - q->second < cfg_.request_timeout)
      return;
    if (release_queries_.size() >= cfg_.max_in_flight)
      std::erase_if(release_queries_, [&](auto& kv) { return now - kv.second >= cfg_.request_timeout; });
    if (release_queries_.size() >= cfg_.max_in_flight) return drop("too_many_in_flight");
    release_queries_[blocker.fencing] = now;
    const auto [resource, shard] = split_key(key);
    env_.count("release_query_sent");
    env_.send(blocker.holder, msg::release_query{resource, shard, blocker.fencing});
  }
  /// (resource, shard) of a shard key this group coordinates.
  std::pair<std::string, std::uint32_t> split_key(const std::string& key) const {
    auto it = shards_.find(key);
    return it == shards_.end() ? std::pair<std::string, std::uint32_t>{}
                               : std::pair{it->second.resource, it->second.shard};
  }
  /// On the tick: members answer requests whose entries they have applied
  /// since; the leader asks again those that have not answered, and gives
  /// up on a grant no quorum signed within two request timeouts.
  void tick_cosigning() {
    const auto now = env_.now();
    std::erase_if(cosign_waiting_, [&](auto& w) {
      const bool late = now - w.at > cfg_.request_timeout;
      return answer_cosign(w.from, w.request, !late) ||
          late;  // late: a held slot is refused, an entry never applied dropped
    });
    for (auto p = gathering_.begin(); p != gathering_.end();) {
      auto next = std::next(p);
      const bool late = now - p->second.started > cfg_.request_timeout;
      if (!raft_.is_leader() || now - p->second.started > 2 * cfg_.request_timeout)
        give_up(p, errc::not_coordinator);
      else if (!p->second.signed_here && !sign_here(p, !late)) {
      }  // gave up
      else if (p->second.signed_here && p->second.sigs.size() >= p->second.needed)
        finish_if_signed(p);
      else if (now - p->second.asked >= cfg_.request_timeout / 2)
        ask_cosigners(p->second);
      p = next;
    }
  }

  /// Permits held now by the book's grants (those past the cutoff no longer
  /// count, whether or not an entry has collected them yet).
  std::uint64_t in_use(const ledger::shard_book& b) const {
    return b.live_permits(ledger::ns(env_.wall_now() - 2 * cfg_.max_drift));
  }
  /// Permits released in entries not applied yet: still in the book's
  /// grants, but free to grant again (not those whose grants expired
  /// meanwhile: in_use no longer counts them).
  std::uint64_t freeing(const shard_state& s, const ledger::shard_book& b) const {
    std::uint64_t n = 0;
    const auto cutoff = ledger::ns(env_.wall_now() - 2 * cfg_.max_drift);
    for (auto& [fencing, permits] : s.releasing)
      if (auto g = b.grants.find(fencing); g != b.grants.end() && g->second.expiry_ns > cutoff) n += permits;
    return n;
  }
  /// `in_use_now` and `freeing_now`: in_use(b) and freeing(s, b), which a
  /// caller asking for many waiters in one event computes once.
  bool fits(const shard_state& s, const ledger::shard_book& b, std::uint32_t permits, std::uint64_t in_use_now,
            std::uint64_t freeing_now) const {
    return in_use_now + s.granting + permits <= b.cert.share + freeing_now;
  }
  bool fits(const shard_state& s, const ledger::shard_book& b, std::uint32_t permits) const {
    return fits(s, b, permits, in_use(b), freeing(s, b));
  }

  void wait_in_line(shard_state& s, const ledger::shard_book& b, const address& from, const msg::token_request& m,
                    msg::token_reply& out) {
    s.unmet += m.permits;
    if (s.waiting.join({from, m.nonce, m.permits, env_.now()}, 4 * b.cert.share + 16)) return hold_on(from, out);
    drop("wait_queue_full");
    out.error = static_cast<std::uint32_t>(errc::share_exhausted);
    out.retry_after_ms = retry_ms(cfg_.token_ttl / 4);
    env_.send(from, out);
  }
  void hold_on(const address& from, msg::token_reply& out) {
    out.code = status::retry;
    out.error = static_cast<std::uint32_t>(errc::share_exhausted);
    out.retry_after_ms = retry_ms(2 * cfg_.request_timeout);
    out.certificate.clear();
    env_.send(from, out);
  }
  /// Proposes grants for the waiters at the head of the line while the share allows.
  void serve_waiters(shard_state& s) {
    if (!raft_.is_leader()) return s.waiting.clear();  // they resend, and are redirected to the leader
    const auto* b = raft_.state_machine().book(shard_key(s.resource, s.shard));
    if (!b || !b->cert.valid_at(env_.wall_now())) return;
    if (b->cert.kind == capacity_kind::stock) return s.waiting.clear();  // they resend, with their request ids
    // The book does not change within this event (grants are proposed, not
    // applied; s.granting counts them), so what it holds is summed once.
    const auto held = in_use(*b), released = freeing(s, *b);
    while (auto* w = s.waiting.head(env_.now(), 5 * cfg_.request_timeout)) {
      if (!fits(s, *b, w->permits, held, released)) return;
      const msg::token_request req{w->nonce, s.resource, s.shard, w->permits, 0, 0};
      const auto to = w->from;
      s.waiting.pop();
      propose_grant(to, req, {req.nonce, status::retry, static_cast<std::uint32_t>(errc::not_coordinator), {}, {}, 0});
    }
  }

  /// Logs the release, and at once proposes grants for the waiters its
  /// permits make room for: their entries follow the release in the log, so
  /// the book applies the release first, and a handover costs one commit,
  /// not two. (If the release is not committed, neither is what follows it;
  /// the book refuses a grant that does not fit, and its waiter goes back to
  /// the head of the line.)
  void release(const std::string& key, const address& holder, std::uint64_t fencing) {
    auto& s = shards_[key];
    const auto* b = raft_.state_machine().book(key);
    const auto g = b ? b->grants.find(fencing) : decltype(b->grants.end()){};
    const bool counted = b && g != b->grants.end() && g->second.holder == holder && !s.releasing.contains(fencing);
    if (counted) s.releasing[fencing] = g->second.permits;
    ledger::command c;
    c.kind = ledger::op::release;
    c.key = key;
    c.holder = holder;
    c.fencing = fencing;
    propose(c, [this, key, fencing, counted](result<ledger::outcome>) {
      auto& s = shards_[key];
      if (counted) s.releasing.erase(fencing);
      serve_waiters(s);
    });
    if (counted) serve_waiters(s);
  }

  void propose(const ledger::command& c, std::function<void(result<ledger::outcome>)> done) {
    bytes payload;
    storage::detail::encode_value(c, payload);
    raft_.propose(std::move(payload), [done = std::move(done)](result<bytes> r) {
      if (!r) return done(r.error());
      ledger::outcome o;
      if (auto ec = storage::detail::decode_value(*r, o)) return done(ec);
      done(o);
    });
  }

  void ask_origin(shard_state& s) {
    const auto now = env_.now();
    if (s.asking && now - s.asked_at < cfg_.request_timeout) return;
    s.asking = true;
    s.asked_at = now;
    std::uint64_t demand = std::exchange(s.unmet, 0);
    if (auto* b = raft_.state_machine().book(shard_key(s.resource, s.shard)))
      demand += b->cert.kind == capacity_kind::stock ? b->stock_units : in_use(*b);
    msg::group_delegate_request req{s.resource, s.shard, cfg_.members, demand};
    if (auto ec = sign(req, key_, env_.wall_now())) return drop("delegate_request_unsigned");
    env_.send(cfg_.origin, req);
  }

  void tick() {
    tick_cosigning();
    const bool leading = raft_.is_leader();
    std::erase_if(held_releases_, [&](auto& r) { return env_.now() - r.at > cfg_.token_ttl; });  // moot: expired
    if (leading && !led_) {  // a new leader renews at once: the last leader's schedule died with it
      for (auto& [k, s] : shards_) {
        s.next_ask = env_.now();
        s.sent_batch = 0;  // the open batch goes out at once
      }
      for (auto& r : held_releases_)
        release(r.key, r.holder, r.fencing);  // releases its predecessor may never have logged
      held_releases_.clear();
    }
    led_ = leading;
    if (!leading) {
      for (auto& [k, s] : shards_) {
        s.waiting.clear();
        s.awaiting.clear();  // they resend to the leader, which answers from the book
      }
      return;
    }
    const auto now = env_.now();
    for (auto& [k, s] : shards_) {
      if ((!s.asking && now >= s.next_ask) || (s.asking && now - s.asked_at >= cfg_.request_timeout)) ask_origin(s);
      serve_waiters(s);  // grants expired meanwhile have freed permits
      if (auto* b = raft_.state_machine().book(k);
          b && b->cert.kind == capacity_kind::stock && b->cert.valid_at(env_.wall_now()))
        flush_stock(s, *b);
    }
  }

  static std::uint32_t retry_ms(duration d) {
    return static_cast<std::uint32_t>(std::chrono::duration_cast<std::chrono::milliseconds>(d).count()) + 1;
  }
  void drop(std::string_view why) { env_.count(why); }

  E env_;
  Raft& raft_;
  group_config cfg_;
  lease::ed25519_private_key key_;
  std::size_t position_ = 0;
  std::optional<lease::verification_key> origin_key_;
  std::map<std::string, shard_state> shards_;
  std::set<std::pair<address, std::uint64_t>> proposing_;  // (client, nonce) whose entry is in the log
  // Quorum-signed tokens: every member's key, what this member signed, the
  // grants this leader gathers signatures for (by fencing), and the
  // requests to sign entries not applied here yet.
  std::vector<lease::ed25519_public_key> member_keys_;
  cosign_guard guard_;
  std::map<std::uint64_t, gathering> gathering_;
  std::map<std::uint64_t, time_point> release_queries_;  // grant -> when its holder was last asked (ask_if_released)
  struct cosign_wait {
    address from;
    msg::cosign_request request;
    time_point at{};
  };
  std::vector<cosign_wait> cosign_waiting_;
  struct held_release {
    std::string key;
    address holder;
    std::uint64_t fencing = 0;
    time_point at{};
  };
  std::vector<held_release> held_releases_;  // as a follower: releases to apply if this member comes to lead
  bool led_ = false;
  periodic<E> ticker_;
};

}  // namespace dcp::delegation
