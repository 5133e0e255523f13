#pragma once
// delegation::group_host: multi-delegation over the overlay. A shard's group
// is the r nodes closest to its key in the DHT, formed when a client first
// asks for the shard, and each node serves in the groups the origin has
// certified it into (one Raft and one delegation::group per shard it serves).
// delegation::peer owns one when peer_config::groups is set; it is not a
// protocol of its own (clients, coordinators and the origin share one
// protocol id and message set, messages.hpp).
//
// Forming a group (the founder is the node a client's locate named, the
// DHT owner of the key):
//   1. it looks up the r nodes closest to the key, and r/2 more in case some
//      are gone (group_hosting::locate, dht_group_locator). If it is not the
//      closest itself, it sends the client to the one that is.
//   2. it asks each (group_invite, again every half request timeout) whether
//      it will serve, and for its key (group_accept). The members are the
//      first r, closest first, that said yes within two request timeouts
//      (all of them, once all answered), the founder among them.
//   3. it asks the origin for the group's certificate (the group_delegate_
//      request a group's leader renews with; signed by its key). If the
//      shard is held by a group of an earlier epoch, the origin says so,
//      with that group's certificate: clients are sent to its members, one
//      drawn at random each time (so a dead one costs a client a timeout,
//      not the shard its clients).
//   4. with the certificate, it starts serving and sends the certificate to
//      the members (group_form). A node starts serving in a group only on a
//      certificate the origin signed that names it at its own key, so no
//      one else can enlist it; one that missed the form asks the first
//      member it hears from for it (group_form_query).
// From then on the group is delegation::group's (group.hpp): its leader
// renews the same certificate, grants from the replicated book, and the
// group tolerates the crash of a minority, the leader's included.
//
// Why memory logs: a hosted group's Raft keeps its log in memory, and a
// node's key is drawn anew at each boot (delegation::peer). A member that
// restarts therefore cannot come back into its old group (the certificate
// names its old key): it lost its log, and Raft is safe only if no member
// forgets what it acknowledged. The group goes on with the rest, and when a
// majority is gone it grants nothing; its certificate then ends, and the
// nodes closest to the key now form the next epoch's group (after the old
// certificate's end plus twice the drift bound, as for a single
// coordinator). Confirmed stock allocations live at the origin, so they
// survive whatever the group loses.
//
// Members do not change within an epoch: a node that joins closer to the key
// than a member is sent to the group (the origin names it) until the epoch
// ends. Groups a node serves in are bounded (max_groups), as are groups it
// is forming; a group whose certificate ended (plus a token's life and the
// drift bound: its tokens may still be renewed under a later one) is
// dropped. Bad input (forged or foreign certificates, Raft messages from
// non-members or for groups it does not serve in, invites past the bound)
// is refused and counted, and changes nothing.
#include <algorithm>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "dcp/consensus/raft.hpp"
#include "dcp/core/env.hpp"
#include "dcp/delegation/certificate.hpp"
#include "dcp/delegation/detail/group_raft_env.hpp"
#include "dcp/delegation/group.hpp"
#include "dcp/delegation/ledger.hpp"
#include "dcp/delegation/locate.hpp"
#include "dcp/delegation/messages.hpp"
#include "dcp/delegation/request_signature.hpp"
#include "dcp/storage/memory_storage.hpp"

namespace dcp::delegation {

/// How a peer serves in groups formed from the overlay (peer_config::groups).
struct group_hosting {
  std::size_t size = 3;          ///< r: members of a group (3 or 5 tolerate 1 or 2 crashes)
  group_locate_function locate;  ///< the nodes closest to a key, closest first: dht_group_locator
  consensus::raft_config raft;   ///< the hosted groups' Raft timing (members are each group's own)
  duration max_drift = 100ms;    ///< bound on |any two wall clocks| (the origin's too)
  duration tick = 20ms;
  std::size_t max_groups = 64;  ///< groups this node serves in, or forms, at once

  void validate() const {
    if (size == 0 || size > max_coordinators)
      throw error(dcp::errc::invalid_config,
                  "delegation::group_hosting: size must be 1..16 (3 or 5 tolerate 1 or 2 crashes)");
    if (!locate)
      throw error(dcp::errc::invalid_config,
                  "delegation::group_hosting: locate (the nodes closest to a key) is required");
    if (max_drift < duration::zero() || tick <= duration::zero() || max_groups == 0)
      throw error(dcp::errc::invalid_config,
                  "delegation::group_hosting: need max_drift >= 0, tick > 0 and max_groups > 0");
    raft.validate();
  }
};

template <Env E> class group_host {
 public:
  using raft_type = consensus::raft<detail::group_raft_env<E>, ledger, storage::memory_storage>;
  using group_type = group<E, raft_type>;
  /// What it counts under its peer's id: its own, and its groups' (the rafts count
  /// through group_raft_env, the groups through the peer's env).
  static constexpr auto counters = dcp::join(raft_type::counters, group_type::counters,
                                             dcp::counter_set{{"bad_token_request",
                                                               "release_for_unknown_shard",
                                                               "delegate_reply_not_from_origin",
                                                               "unsolicited_delegate_reply",
                                                               "bad_group_invite",
                                                               "group_invite_declined",
                                                               "unsolicited_group_accept",
                                                               "bad_group_accept",
                                                               "bad_group_certificate",
                                                               "expired_group_certificate",
                                                               "group_certificate_not_naming_me",
                                                               "group_form_not_from_member",
                                                               "unanswerable_group_form_query",
                                                               "group_message_of_past_epoch",
                                                               "group_message_not_from_member",
                                                               "bad_group_message",
                                                               "message_for_unknown_group",
                                                               "forming_evicted",
                                                               "group_founding",
                                                               "group_locate_failed",
                                                               "group_owner_elsewhere",
                                                               "delegate_request_unsigned",
                                                               "bad_certificate_from_origin",
                                                               "too_many_groups",
                                                               "group_joined",
                                                               "group_message_for_unknown_group",
                                                               "group_ended"}});

  /// `base`: origin, its key and the timing every hosted group uses (members
  /// and shards are each group's own). `key`: this node's signing key, the
  /// one its group_accept answers name.
  group_host(E env, group_hosting cfg, group_config base, lease::ed25519_private_key key,
             lease::verification_key origin_key)
      : env_(std::move(env)),
        cfg_(std::move(cfg)),
        base_(std::move(base)),
        key_(std::move(key)),
        public_key_(key_.public_key().raw()),
        origin_key_(std::move(origin_key)) {
    cfg_.validate();
  }
  group_host(const group_host&) = delete;
  group_host& operator=(const group_host&) = delete;

  void start() {
    ticker_.start(env_, cfg_.tick, [this] { tick(); });
  }

  /// The group this node serves in for the shard, if any.
  const group_type* group_of(const std::string& resource, std::uint32_t shard) const {
    auto it = hosted_.find(shard_key(resource, shard));
    return it == hosted_.end() ? nullptr : it->second.group.get();
  }
  /// That group's Raft (its term, its leader, its log), if any.
  const raft_type* raft_of(const std::string& resource, std::uint32_t shard) const {
    auto it = hosted_.find(shard_key(resource, shard));
    return it == hosted_.end() ? nullptr : it->second.raft.get();
  }
  /// The certificate the group was formed with (the members, the epoch).
  const certificate* formed_by(const std::string& resource, std::uint32_t shard) const {
    auto it = hosted_.find(shard_key(resource, shard));
    return it == hosted_.end() ? nullptr : &it->second.cert;
  }
  std::size_t groups() const noexcept { return hosted_.size(); }

  // ---- a shard's messages: its group's, once there is one ----

  void on_message(const address& from, const msg::token_request& m) {
    if (m.resource.empty() || m.resource.size() > max_resource_name || m.permits == 0) return drop("bad_token_request");
    if (auto* h = live(m.resource, m.shard)) return h->group->on_message(from, m);
    msg::token_reply out{m.nonce, status::retry, static_cast<std::uint32_t>(errc::not_coordinator), {}, {}, 0};
    out.retry_after_ms = ms(2 * base_.request_timeout);
    auto& f = found(m.resource, m.shard);
    f.demand += m.permits;
    if (f.refusal) {
      out.code = status::refused;
      out.error = *f.refusal;
    } else if (!f.holders.empty()) {  // a random member: one that died costs its client a timeout, not the shard
      out.coordinator = f.holders[env_.rng().below(f.holders.size())];
    } else if (f.elsewhere && *f.elsewhere != env_.self()) {
      out.coordinator = f.elsewhere;
    }
    env_.send(from, out);
  }
  void on_message(const address& from, const msg::token_release& m) {
    if (auto* h = live(m.resource, m.shard)) return h->group->on_message(from, m);
    drop("release_for_unknown_shard");
  }
  void on_message(const address& from, const msg::delegate_reply& m) {
    if (from != base_.origin) return drop("delegate_reply_not_from_origin");
    const auto key = shard_key(m.resource, m.shard);
    if (auto f = forming_.find(key); f != forming_.end() && f->second.step == phase::certifying) return certified(f, m);
    if (auto* h = live(m.resource, m.shard)) return h->group->on_message(from, m);
    drop("unsolicited_delegate_reply");
  }
  void on_message(const address& from, const msg::stock_ack& m) { to_group(from, m); }
  void on_message(const address& from, const msg::cosign_request& m) { to_group(from, m); }
  void on_message(const address& from, const msg::cosign_reply& m) { to_group(from, m); }

  // ---- forming and serving in groups ----

  /// A founder asks: yes, with this node's key, unless it serves in as many
  /// groups as it may (an answer to anyone who asks: it costs no state).
  void on_message(const address& from, const msg::group_invite& m) {
    if (m.resource.empty() || m.resource.size() > max_resource_name) return drop("bad_group_invite");
    msg::group_accept out{m.resource, m.shard, {}};
    if (hosted_.size() < cfg_.max_groups || hosted_.contains(shard_key(m.resource, m.shard)))
      out.public_key = public_key_;
    else
      drop("group_invite_declined");
    env_.send(from, out);
  }
  void on_message(const address& from, const msg::group_accept& m) {
    auto f = forming_.find(shard_key(m.resource, m.shard));
    if (f == forming_.end() || f->second.step != phase::inviting ||
        std::find(f->second.candidates.begin(), f->second.candidates.end(), from) == f->second.candidates.end())
      return drop("unsolicited_group_accept");
    if (m.public_key.empty()) {
      f->second.declined.insert(from);
    } else {
      if (!lease::ed25519_public_key::from_bytes(m.public_key)) return drop("bad_group_accept");
      f->second.keys[from] = m.public_key;
    }
    if (f->second.keys.size() + f->second.declined.size() >= f->second.candidates.size()) invited(f);
  }
  /// The origin's certificate for a group: this node serves in it if it
  /// names this node at its key.
  void on_message(const address& from, const msg::group_form& m) {
    auto c = open_certificate(m.certificate, origin_key_);
    if (!c) return drop("bad_group_certificate");
    if (env_.wall_now() >= c->not_after) return drop("expired_group_certificate");
    const auto* me = c->coordinator(env_.self());
    if (!me || me->public_key != public_key_) return drop("group_certificate_not_naming_me");
    if (!c->coordinator(from)) return drop("group_form_not_from_member");
    serve(std::move(*c), m.certificate);
  }
  void on_message(const address& from, const msg::group_form_query& m) {
    auto it = hosted_.find(shard_key(m.resource, m.shard));
    if (it == hosted_.end() || it->second.cert.epoch != m.epoch || !it->second.cert.coordinator(from))
      return drop("unanswerable_group_form_query");
    env_.send(from, msg::group_form{it->second.sealed});
  }
  /// A message of a hosted group's Raft: to that group, if the sender is one
  /// of its members.
  void on_message(const address& from, const msg::group_raft& m) {
    const auto key = shard_key(m.resource, m.shard);
    auto it = hosted_.find(key);
    if (it == hosted_.end() || it->second.cert.epoch < m.epoch) return ask_for_form(from, m);
    auto& h = it->second;
    if (h.cert.epoch > m.epoch) return drop("group_message_of_past_epoch");
    if (!h.cert.coordinator(from)) return drop("group_message_not_from_member");
    if (raft_type::messages::dispatch(m.type, m.payload, [&](auto&& x) { h.raft->on_message(from, std::move(x)); }))
      drop("bad_group_message");
  }

 private:
  enum class phase { locating, inviting, certifying, settled };
  /// A group this node founds, or the answer it got when it tried.
  struct forming {
    std::string resource;
    std::uint32_t shard = 0;
    phase step = phase::locating;
    time_point started{}, invited_at{}, asked_at{};
    std::vector<address> candidates;  // closest first, this node first
    std::map<address, bytes> keys;    // those who accepted, and their keys
    std::set<address> declined;
    std::vector<coordinator_entry> members;
    std::uint64_t demand = 0;
    std::optional<address> elsewhere;  // who serves the shard instead (the DHT's or the origin's word)
    std::vector<address> holders;      // the members of the group that holds the shard now (the origin's certificate)
    std::optional<std::uint32_t> refusal;  // the origin refused the shard for good (errc)
    time_point until{};                    // when this answer is stale and forming starts over
  };
  using forming_iterator = typename std::map<std::string, forming>::iterator;

  /// One group this node serves in: its Raft and its delegation::group
  /// (declared in that order: the group, which refers to the Raft, goes first).
  struct hosted {
    certificate cert;
    bytes sealed;
    std::unique_ptr<raft_type> raft;
    std::unique_ptr<group_type> group;
  };

  hosted* live(const std::string& resource, std::uint32_t shard) {
    auto it = hosted_.find(shard_key(resource, shard));
    return it == hosted_.end() ? nullptr : &it->second;
  }
  template <class M> void to_group(const address& from, const M& m) {
    if (auto* h = live(m.resource, m.shard)) return h->group->on_message(from, m);
    drop("message_for_unknown_group");
  }

  /// The founding of a shard's group: started on the first request, kept
  /// while it runs or while its answer (another node serves it) stands.
  forming& found(const std::string& resource, std::uint32_t shard) {
    const auto key = shard_key(resource, shard);
    const auto now = env_.now();
    auto it = forming_.find(key);
    if (it != forming_.end() && now < it->second.until) return it->second;
    if (it == forming_.end()) {
      if (forming_.size() >= cfg_.max_groups) {  // any client may name any shard: the oldest attempt gives way
        auto oldest = std::min_element(forming_.begin(), forming_.end(),
                                       [](auto& a, auto& b) { return a.second.started < b.second.started; });
        forming_.erase(oldest);
        drop("forming_evicted");
      }
      it = forming_.emplace(key, forming{}).first;
    }
    auto& f = it->second = forming{};
    f.resource = resource;
    f.shard = shard;
    f.started = now;
    // An attempt that stalls starts over; a lookup is given long enough to
    // time out on dead contacts itself (Kademlia: two rpc timeouts each).
    f.until = now + locate_patience;
    env_.count("group_founding");
    cfg_.locate(key, cfg_.size + cfg_.size / 2 + 1, [this, key](std::vector<address> nodes) {
      auto it = forming_.find(key);
      if (it == forming_.end() || it->second.step != phase::locating) return;  // any attempt's answer will do
      located(it, std::move(nodes));
    });
    return forming_.find(key)->second;
  }
  void located(forming_iterator it, std::vector<address> nodes) {
    auto& f = it->second;
    if (nodes.empty()) {
      drop("group_locate_failed");
      return settle(f, std::nullopt);
    }
    if (nodes.front() != env_.self()) {  // the DHT names another owner: clients go there
      drop("group_owner_elsewhere");
      return settle(f, nodes.front());
    }
    std::vector<address> distinct;
    for (auto& a : nodes)
      if (std::find(distinct.begin(), distinct.end(), a) == distinct.end()) distinct.push_back(a);
    f.candidates = std::move(distinct);
    f.keys[env_.self()] = public_key_;
    f.step = phase::inviting;
    f.invited_at = env_.now();
    f.until = f.invited_at + 6 * base_.request_timeout;
    invite(f);
    if (f.candidates.size() == 1) invited(it);
  }
  /// Asks the candidates that have not answered yet (again, on the tick: a
  /// lost invitation must not cost a close node its place).
  void invite(forming& f) {
    f.asked_at = env_.now();
    for (std::size_t i = 1; i < f.candidates.size(); ++i)
      if (!f.keys.contains(f.candidates[i]) && !f.declined.contains(f.candidates[i]))
        env_.send(f.candidates[i], msg::group_invite{f.resource, f.shard});
  }
  /// Every candidate answered, or the time is up: the first r that accepted
  /// are the group; the origin is asked to certify it.
  void invited(forming_iterator it) {
    auto& f = it->second;
    f.members.clear();
    for (auto& a : f.candidates)
      if (auto k = f.keys.find(a); k != f.keys.end() && f.members.size() < cfg_.size)
        f.members.push_back({a, k->second});
    f.step = phase::certifying;
    ask_origin(f);
  }
  void ask_origin(forming& f) {
    f.asked_at = env_.now();
    msg::group_delegate_request req{f.resource, f.shard, f.members, f.demand};
    if (auto ec = sign(req, key_, env_.wall_now())) return drop("delegate_request_unsigned");
    env_.send(base_.origin, req);
  }
  void certified(forming_iterator it, const msg::delegate_reply& m) {
    auto& f = it->second;
    if (m.code == status::refused) {
      f.refusal = m.error == static_cast<std::uint32_t>(errc::not_allowed)
          ? m.error
          : static_cast<std::uint32_t>(errc::unknown_shard);
      return settle(f, std::nullopt, 10 * base_.request_timeout);
    }
    if (m.code == status::retry) {  // held by a group of an earlier epoch: until it ends, clients go there
      const auto wait = std::chrono::milliseconds(std::clamp<std::uint32_t>(m.retry_after_ms, 1, 60'000));
      if (auto c = open_certificate(m.certificate, origin_key_); c && c->resource == f.resource && c->shard == f.shard)
        for (auto& mem : c->coordinators)
          if (mem.addr != env_.self()) f.holders.push_back(mem.addr);
      return settle(f, m.coordinator, std::min<duration>(wait, 10 * base_.request_timeout));
    }
    auto c = open_certificate(m.certificate, origin_key_);
    if (!c || c->resource != f.resource || c->shard != f.shard || c->coordinators != f.members)
      return drop("bad_certificate_from_origin");
    const bytes sealed = m.certificate;
    const auto members = f.members;
    forming_.erase(it);
    serve(std::move(*c), sealed);
    for (auto& mem : members)
      if (mem.addr != env_.self()) env_.send(mem.addr, msg::group_form{sealed});
  }
  void settle(forming& f, std::optional<address> elsewhere, duration for_how_long = duration::zero()) {
    f.step = phase::settled;
    f.elsewhere = std::move(elsewhere);
    f.until = env_.now() + std::max(for_how_long, base_.request_timeout);
  }

  /// Starts serving in the certified group (or keeps serving: a repeated form).
  void serve(certificate c, const bytes& sealed) {
    const auto key = c.key();
    if (auto it = hosted_.find(key); it != hosted_.end()) {
      if (it->second.cert.epoch >= c.epoch) return;  // serving already (or in a later epoch)
      hosted_.erase(it);  // the origin certified a new epoch only once the old one could honour nothing
    } else if (hosted_.size() >= cfg_.max_groups) {
      return drop("too_many_groups");
    }
    forming_.erase(key);
    auto& h = hosted_[key];
    h.cert = c;
    h.sealed = sealed;
    auto rc = cfg_.raft;
    rc.members.clear();
    for (auto& m : c.coordinators) rc.members.push_back(m.addr);
    h.raft = std::make_unique<raft_type>(detail::group_raft_env<E>(env_, c.resource, c.shard, c.epoch), rc,
                                         storage::memory_storage{}, ledger{});
    auto gc = base_;
    gc.members = c.coordinators;
    gc.shards = {{c.resource, c.shard}};
    h.group = std::make_unique<group_type>(env_, *h.raft, gc, key_);
    h.raft->start();
    h.group->start();
    env_.count("group_joined");
  }
  /// Raft traffic of a group this node does not serve in (yet): it asks the
  /// sender for the certificate, at most once a request timeout per shard.
  void ask_for_form(const address& from, const msg::group_raft& m) {
    drop("group_message_for_unknown_group");
    if (m.resource.empty() || m.resource.size() > max_resource_name) return;
    auto& at = form_asked_[shard_key(m.resource, m.shard)];
    if (at != time_point{} && env_.now() - at < base_.request_timeout) return;
    if (form_asked_.size() > 4 * cfg_.max_groups) form_asked_.clear();  // strangers naming shards: forget, not grow
    at = env_.now();
    env_.send(from, msg::group_form_query{m.resource, m.shard, m.epoch});
  }

  void tick() {
    const auto now = env_.now();
    const auto wall = env_.wall_now();
    for (auto it = forming_.begin(); it != forming_.end();) {
      auto& f = it->second;
      if (f.step == phase::inviting && now - f.invited_at >= 2 * base_.request_timeout)
        invited(it);
      else if (f.step == phase::inviting && now - f.asked_at >= base_.request_timeout / 2)
        invite(f);
      else if (f.step == phase::certifying && now - f.asked_at >= base_.request_timeout)
        ask_origin(f);
      if (now >= f.until)
        it = forming_.erase(it);
      else
        ++it;
    }
    // A group whose certificate ended (and every token it could still renew
    // with it) serves nothing more: the shard's next epoch is another group.
    std::erase_if(hosted_, [&](auto& kv) {
      const auto* b = kv.second.group->book(kv.second.cert.resource, kv.second.cert.shard);
      const auto end = std::max(kv.second.cert.not_after, b ? b->cert.not_after : wall_time{});
      if (wall < end + base_.token_ttl + 2 * cfg_.max_drift) return false;
      env_.count("group_ended");
      return true;
    });
  }

  static constexpr duration locate_patience = 5s;

  static std::uint32_t ms(duration d) {
    return static_cast<std::uint32_t>(std::chrono::duration_cast<std::chrono::milliseconds>(d).count()) + 1;
  }
  void drop(std::string_view why) { env_.count(why); }

  E env_;
  group_hosting cfg_;
  group_config base_;
  lease::ed25519_private_key key_;
  bytes public_key_;
  lease::verification_key origin_key_;
  std::map<std::string, hosted> hosted_;
  std::map<std::string, forming> forming_;
  std::map<std::string, time_point> form_asked_;
  periodic<E> ticker_;
};

}  // namespace dcp::delegation
