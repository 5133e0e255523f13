#pragma once
// coord::server: the coordination service on one replica, over a Raft log
// whose state machine is coord::machine.
//
// Commands (open/close session, acquire, release, barriers, put, append) go
// through the log, with the client's (id, sequence) so a retry applies once;
// the id is a command session the client registered in the log first
// (register_client), so it is never reused and never silently recreated.
// Keepalives, queries, gets and ranges are linearizable reads (ReadIndex)
// and are not logged; so are reads at a past revision (range_at: the
// machine undoes its history, machine.hpp). Compaction is a command (every
// replica compacts at the same point of the log); the leader proposes it
// itself when server_config::auto_compaction_retention is set.
//
// Watches (leader only; machine.hpp keeps the bounded history they resume
// from). A watch request is answered after a ReadIndex with every change on
// its keys since its start revision still in the history, in pushes of whole
// revisions, each covering (after, through]; after that, each applied change
// on its keys is pushed at once. The leader keeps per watch only what its
// client can rebuild: the client renews every keepalive period from the
// revision after the last it delivered, which re-creates it on a new leader
// and resends what a lost push carried (client.hpp).
//
// Session ids are drawn here, by the leader, from server_config::entropy (the
// OS's CSPRNG) and travel in the open_session command, so they cannot be
// guessed (a counter could). Command clients: see command_client_idle.
//
// Session expiry and its clock assumption. Only the leader tracks TTLs, in
// its own clock: a keepalive received at t moves the session's deadline to
// t + TTL; past its deadline the leader proposes expire_session, and from
// then on answers that session's keepalives with "expired". A keepalive is
// acknowledged only after a ReadIndex round, so the leader that acknowledges
// it was still leader after t, and a leader elected later restarts every
// session's TTL from its own election, which comes after that round. The
// ReadIndex also waits for the leader's first commit of its term, which
// settles any expiry an earlier leader left uncommitted. So a session never
// expires before TTL (in the server's clock) after the receipt of its last
// acknowledged keepalive. A client that counts TTL * (1 - 2ρ) from the
// *sending* of that keepalive, in its own clock, has stopped using its grants
// before the session can expire, if no clock runs faster or slower than real
// time by more than ρ (a rate bound; offsets do not matter). coord::client
// does exactly that; ρ is its configured drift_bound.
//
// Lease tokens (issue_leases). A client may ask the leader for a sealed token
// for a grant it holds, to show a resource server that checks it offline
// (dcp::lease). The request renews the session exactly as a keepalive does
// (received at t, confirmed by ReadIndex, deadline t + TTL), so by the same
// argument the permit cannot be handed to anyone else before TTL after t on
// any replica's clock, i.e. not before real time t + TTL / (1 + ρ). The token
// expires at w + TTL * (1 - 2ρ), w being the leader's *wall* clock at t
// (Env::wall_now(): the expiry crosses hosts, and a steady clock means
// nothing on another host). While the leader's wall clock reads less than
// that, real time is below t + TTL (1 - 2ρ) / (1 - ρ) <= t + TTL / (1 + ρ),
// provided the wall clock runs within ρ of real time over the lease (no step:
// NTP slews). A resource server honours a token only while its own wall clock
// is max_drift short of expiry, so with |its wall clock - the leader's| <=
// max_drift it stops honouring the old holder before the permit can move.
//
// That argument covers a session that expires. A holder may also release
// (or close its session) while its token is valid; the permit must not move
// then either. Before the first token for a grant leaves the leader, the
// leader logs lease_issued for it; a release of such a grant leaves its
// permit taken ("draining", coord/machine.hpp) until the leader proposes
// reclaim: TTL after the latest receipt of a lease request for it, if this
// leader issued the tokens, else TTL after this leader first saw it draining.
// Either is no earlier than TTL after the receipt that any token for it was
// sealed at (a later leader was elected after that receipt, the lease_issued
// entry being in its log), which is what the permit needed on expiry too.
#include <algorithm>
#include <functional>
#include <map>
#include <string>
#include <set>
#include <utility>

#include "dcp/consensus/raft.hpp"
#include "dcp/coord/machine.hpp"
#include "dcp/coord/messages.hpp"
#include "dcp/coord/secure_random.hpp"
#include "dcp/core/condition.hpp"
#include "dcp/core/env.hpp"

namespace dcp::coord {

struct server_config {
  duration tick = 20ms;       ///< how often the leader looks for expired sessions
  double drift_bound = 0.01;  ///< ρ: the largest clock rate error of any node; shortens lease tokens (see above)
  /// Session TTLs a client may ask for (ZooKeeper's min/max session timeout):
  /// a TTL shorter than a few ticks expires on jitter; one of a century is a
  /// lock held for ever by a crashed client.
  duration min_session_ttl = 200ms;
  /// Answer queries (observe) with each holder's session id and fencing
  /// token, not just its value: an operator's view, off by default so that a
  /// client learns nothing of others' sessions.
  bool disclose_holders = false;
  duration max_session_ttl = std::chrono::minutes(10);
  /// Registrations of command clients (raft's client sessions, bounded by
  /// raft_config::max_sessions) are refused while the table is full and the
  /// client a registration would evict is live (registrations_refused_full):
  /// it last acted for a session that lives (its keepalives keep it), or it
  /// sent a command within this window. So a flood of registrations cannot
  /// evict a live client (issue 11). A new leader counts every client as
  /// seen at its election.
  duration command_client_idle = std::chrono::minutes(10);
  /// Watches (leader only, re-created by their clients' renewals): at most
  /// this many, and per client address; refused beyond (watches_refused_full).
  /// A watch not renewed within watch_idle is dropped.
  std::size_t max_watches = 10'000;
  std::size_t max_watches_per_client = 256;
  duration watch_idle = std::chrono::minutes(1);
  /// Automatic compaction (etcd's --auto-compaction-mode=revision): every
  /// auto_compaction_every, the leader proposes compact(revision - retention)
  /// when that moves the compact revision, so reads and watches reach back
  /// `retention` revisions at least and history memory follows the write
  /// rate (counted: auto_compactions). 0: off; the history is then bounded
  /// by machine.hpp's max_history_events / max_history_bytes alone (a drop
  /// there is counted as history_trimmed, on every replica).
  std::uint64_t auto_compaction_retention = 0;
  duration auto_compaction_every = std::chrono::seconds(5);
  /// Per-client quotas (machine.hpp: client_quotas; a client is the address
  /// the transport attributes its commands to): live sessions, keys it last
  /// wrote, and their key and value bytes. A command beyond is refused with
  /// client_quota_exceeded (counted: client_quota_exceeded and
  /// client_quota_exceeded_{sessions,keys,bytes}). The leader puts these in
  /// the log when they differ from the ones in force, so every replica
  /// enforces the same: configure them alike on every replica (else each new
  /// leader's win). Defaults: a tenth of max_keys and an eighth of raft's
  /// default max_snapshot_bytes (64 MiB), so that at least eight clients are
  /// needed to fill the store; 64 sessions (a coord::client holds one at a
  /// time). 0: no limit on that resource.
  client_quotas quotas{64, 10'000, std::uint64_t{8} << 20};
  /// Where session ids come from: unguessable by default (secure_random.hpp).
  /// A simulation may name a seeded generator, for reproducible runs.
  entropy_source entropy = secure_random;
  void validate() const {
    if (tick <= duration::zero()) throw error(dcp::errc::invalid_config, "coord::server: tick must be > 0");
    if (min_session_ttl < 2 * tick || max_session_ttl < min_session_ttl)
      throw error(dcp::errc::invalid_config, "coord::server: need 2 x tick <= min_session_ttl <= max_session_ttl");
    if (drift_bound < 0 || drift_bound >= 0.25)
      throw error(dcp::errc::invalid_config, "coord::server: drift_bound must be in [0, 0.25)");
    if (!entropy) throw error(dcp::errc::invalid_config, "coord::server: no entropy source");
    if (auto_compaction_retention && auto_compaction_every <= duration::zero())
      throw error(dcp::errc::invalid_config, "coord::server: auto_compaction_every must be > 0");
  }
};

/// What the leader grants when a holder asks for a lease token: the terms a
/// sealer turns into signed bytes (lease::token, see coord/lease_issuer.hpp).
struct lease_terms {
  std::string resource;       ///< the semaphore / mutex / election name
  address holder;             ///< the client that asked
  std::uint32_t permits = 1;  ///< one permit of the semaphore
  fencing_token fencing = 0;
  wall_time expiry{};  ///< Unix-epoch wall time, in the leader's wall clock
};
using lease_sealer = std::function<result<bytes>(const lease_terms&)>;

template <Env E, class Raft> class server {
  static_assert(std::is_same_v<std::remove_cvref_t<decltype(std::declval<Raft&>().state_machine())>, machine>,
                "dcp: coord::server needs a consensus::raft whose state machine is coord::machine");

 public:
  using messages = msg::all;
  /// What it counts (env.count), declared: dcp/core/counter_set.hpp.
  static constexpr dcp::counter_set counters{{"session_ttl_out_of_bounds",
                                              "kv_quota_exceeded",
                                              "client_quota_exceeded",
                                              "client_quota_exceeded_sessions",
                                              "client_quota_exceeded_keys",
                                              "client_quota_exceeded_bytes",
                                              "compactions",
                                              "compactions_refused",
                                              "bad_range_request",
                                              "reads_compacted",
                                              "member_change_invalid",
                                              "leadership_moved",
                                              "member_changes",
                                              "watches_refused_full",
                                              "registrations_refused_full",
                                              "unexpected_message",
                                              "lease_without_sealer",
                                              "watches_compacted",
                                              "watch_events_sent",
                                              "lease_seal_failed",
                                              "leases_issued",
                                              "quotas_proposed",
                                              "permits_reclaimed",
                                              "sessions_expired",
                                              "auto_compactions",
                                              "history_trimmed"}};
  static constexpr std::string_view name = "coord_server";
  static constexpr protocol_id default_id = default_protocol_id;

  server(E env, Raft& raft, server_config cfg = {}) : env_(std::move(env)), raft_(raft), cfg_(cfg) { cfg_.validate(); }

  void start() {
    raft_.on_apply(
        [this](const storage::log_entry& e, const consensus::command* c, const bytes* r) { applied(e, c, r); });
    ticker_.start(env_, cfg_.tick, [this] { tick(); });
  }

  void on_message(const address& from, const msg::command& m) {
    if (!raft_.is_leader()) return refuse(from, m, refusal::not_leader);
    if (m.client == 0 || m.seq == 0) return refuse(from, m, refusal::failed);
    if (m.req.kind == op::expire_session || m.req.kind == op::lease_issued || m.req.kind == op::reclaim ||
        m.req.kind == op::set_quotas)
      return refuse(from, m, refusal::failed);  // the leader's alone
    if (m.req.kind == op::open_session) {
      const auto ttl = std::chrono::milliseconds(m.req.ttl_ms);
      if (m.req.ttl_ms > static_cast<std::uint64_t>(
                             std::chrono::duration_cast<std::chrono::milliseconds>(cfg_.max_session_ttl).count()) ||
          ttl < cfg_.min_session_ttl) {
        env_.count("session_ttl_out_of_bounds");
        return void(
            env_.send(from, msg::command_reply{m.client, m.seq, refusal::none, raft_.leader(), {status::bad_request}}));
      }
    }
    bytes payload;
    if (m.client && raft_.state_machine().has_command_client(m.client)) seen_[m.client] = env_.now();
    request req = m.req;
    // The transport's word for who sent it, not the client's: where a
    // session's owner is, and who is charged for it (client_quotas).
    req.owner = from;
    // Unguessable (issue 11): a stranger cannot name a session it did not
    // see opened. The leader draws it; the log carries it to every replica.
    if (m.req.kind == op::open_session) req.session = cfg_.entropy();
    storage::detail::encode_value(req, payload);
    propose_quotas();  // (before the command in the log, if the quotas in force are not this leader's)
    raft_.propose(
        m.client, m.seq, std::move(payload),
        [this, from, client = m.client, seq = m.seq, session = m.req.session, kind = m.req.kind](result<bytes> r) {
          msg::command_reply out{client, seq, refusal::none, raft_.leader(), {}};
          if (r) {
            if (storage::detail::decode_value(*r, out.result)) out.refused = refusal::failed;
            if (out.result.code == status::quota_exceeded) env_.count("kv_quota_exceeded");
            if (out.result.code == status::client_quota_exceeded) {
              env_.count("client_quota_exceeded");
              const auto what = static_cast<quota_resource>(out.result.session);
              env_.count(what == quota_resource::sessions   ? "client_quota_exceeded_sessions"
                             : what == quota_resource::keys ? "client_quota_exceeded_keys"
                                                            : "client_quota_exceeded_bytes");
            }
            if (kind == op::compact) env_.count(out.result.code == status::ok ? "compactions" : "compactions_refused");
            if (out.result.code == status::ok && out.result.session && !clients_.contains(out.result.session))
              clients_[out.result.session] = from;
            else if (session && out.result.code != status::no_session && out.result.code != status::bad_request)
              clients_[session] = from;  // the session's owner: applied under its secret
          } else if (r.error() == consensus::errc::unknown_session) {
            out.refused = refusal::unknown_session;
          } else if (r.error() == dcp::errc::not_leader) {
            out.refused = refusal::not_leader;
          } else if (r.error() == condition::retryable || r.error() == condition::outcome_unknown) {
            out.refused =
                refusal::retry;  // same sequence number: applied at most once (a transfer: the new leader takes it)
          } else {
            out.refused = refusal::failed;
          }
          env_.send(from, out);
        });
  }

  void on_message(const address& from, const msg::keepalive& m) {
    if (!raft_.is_leader()) {
      env_.send(from, msg::keepalive_ack{m.session, m.nonce, refusal::not_leader, raft_.leader(), {}});
      return;
    }
    const time_point received = env_.now();
    const auto term = raft_.current_term();
    raft_.read_index([this, from, m, received, term](result<std::uint64_t> idx) {
      msg::keepalive_ack ack{m.session, m.nonce, refusal::none, raft_.leader(), {}};
      if (!idx || !raft_.is_leader() || raft_.current_term() != term) {
        ack.refused = refusal::not_leader;
      } else if (!expiring_.contains(m.session)) {
        ack.view = raft_.state_machine().view(m.session, m.secret);
        if (ack.view.alive) {  // the owner (it knows the secret): renew, and notify it here
          clients_[m.session] = from;
          auto& d = deadlines_[m.session];
          d = std::max(d, received + ttl_of(m.session));
        }
      }  // else: expiry is under way; the view says "not alive"
      env_.send(from, ack);
    });
  }

  void on_message(const address& from, const msg::query& m) {
    if (!raft_.is_leader()) {
      env_.send(from, msg::query_reply{m.nonce, refusal::not_leader, raft_.leader(), {}});
      return;
    }
    raft_.read_index([this, from, m](result<std::uint64_t> idx) {
      msg::query_reply out{m.nonce, refusal::none, raft_.leader(), {}};
      if (!idx)
        out.refused = refusal::not_leader;
      else
        out.holders = raft_.state_machine().holders(m.name);
      if (!cfg_.disclose_holders)
        for (auto& h : out.holders) h.session = h.fencing = 0;  // who holds it is the holder's business
      env_.send(from, out);
    });
  }

  void on_message(const address& from, const msg::get& m) {
    if (!raft_.is_leader()) {
      env_.send(from, msg::get_reply{m.nonce, refusal::not_leader, raft_.leader(), {}});
      return;
    }
    raft_.read_index([this, from, m](result<std::uint64_t> idx) {
      msg::get_reply out{m.nonce, refusal::none, raft_.leader(), {}};
      if (!idx)
        out.refused = refusal::not_leader;
      else if (const bytes* v = raft_.state_machine().value(m.key))
        out.value = *v;
      env_.send(from, out);
    });
  }

  void on_message(const address& from, const msg::range& m) {
    if (!raft_.is_leader())
      return void(env_.send(from, msg::range_reply{m.nonce, refusal::not_leader, raft_.leader(), {}}));
    raft_.read_index([this, from, m](result<std::uint64_t> idx) {
      msg::range_reply out{m.nonce, refusal::none, raft_.leader(), {}};
      if (!idx)
        out.refused = refusal::not_leader;
      else
        out.result = raft_.state_machine().range(
            m.key, m.range_end, static_cast<std::size_t>(std::min<std::uint64_t>(m.limit, max_range_keys)));
      env_.send(from, out);
    });
  }

  void on_message(const address& from, const msg::range_at& m) {
    msg::range_at_reply out{m.nonce, refusal::none, raft_.leader()};
    if (m.key.empty() || m.key.size() > max_key_bytes || m.range_end.size() > max_key_bytes) {
      env_.count("bad_range_request");
      out.refused = refusal::failed;
      return void(env_.send(from, out));
    }
    if (!raft_.is_leader()) {
      out.refused = refusal::not_leader;
      return void(env_.send(from, out));
    }
    raft_.read_index([this, from, m](result<std::uint64_t> idx) {
      msg::range_at_reply out{m.nonce, refusal::none, raft_.leader()};
      if (!idx) {
        out.refused = refusal::not_leader;
        return void(env_.send(from, out));
      }
      auto r = raft_.state_machine().range_at(
          m.key, m.range_end, static_cast<std::size_t>(std::min<std::uint64_t>(m.limit, max_range_keys)), m.revision);
      if (r.code == status::compacted) env_.count("reads_compacted");
      out.code = r.code;
      out.compact_revision = r.compact_revision;
      out.current_revision = r.current_revision;
      out.result = std::move(r.result);
      env_.send(from, out);
    });
  }

  /// One-server membership change (Raft 4.1), answered when it has
  /// committed (or at once when Raft refuses it); or a leadership transfer
  /// (3.10), answered when the target's election has deposed this leader.
  void on_message(const address& from, const msg::member_change& m) {
    msg::member_change_reply out{m.nonce, refusal::none, raft_.leader()};
    if (!raft_.is_leader()) {
      out.refused = refusal::not_leader;
      return void(env_.send(from, out));
    }
    out.members = raft_.members();
    out.learners = raft_.learners();
    const bool voter = std::find(out.members.begin(), out.members.end(), m.member) != out.members.end();
    const bool learner = raft_.is_learner(m.member);
    auto answer = [&](msg::member_outcome o) {
      out.outcome = o;
      env_.send(from, out);
    };
    if (m.op > msg::member_op::move_leader) {
      env_.count("member_change_invalid");
      return answer(msg::member_outcome::invalid);
    }
    if (m.member == address{} || m.member == from) {
      env_.count("member_change_invalid");  // (the requester is a client, never the replica to add)
      return answer(msg::member_outcome::invalid);
    }
    // What is already so is said at once (a resend after a lost answer hears it).
    switch (m.op) {
      case msg::member_op::add:
      case msg::member_op::add_learner:
        if (voter || learner) return answer(msg::member_outcome::already);
        break;
      case msg::member_op::remove:
        if (!voter && !learner) return answer(msg::member_outcome::already);
        break;
      case msg::member_op::promote:
        if (voter) return answer(msg::member_outcome::already);
        if (!learner) return answer(msg::member_outcome::wrong_role);
        break;
      case msg::member_op::move_leader:
        if (m.member == env_.self()) return answer(msg::member_outcome::already);
        break;
    }
    if (m.op == msg::member_op::move_leader) {
      if (raft_.transferring()) {
        if (moving_to_ != m.member || move_waiters_.size() >= max_move_waiters)
          return answer(msg::member_outcome::pending);
        move_waiters_.emplace_back(from, m.nonce);  // a resend, or another operator asking the same
        return;
      }
      moving_to_ = m.member;
      move_waiters_ = {{from, m.nonce}};
      return raft_.transfer_leadership(m.member, [this, target = m.member](std::error_code ec) {
        msg::member_change_reply out{0, refusal::none, raft_.leader()};
        out.members = raft_.members();
        out.learners = raft_.learners();
        if (!ec) {
          env_.count("leadership_moved");
          out.leader = target;  // its election deposed us: it holds every committed entry
        } else {
          out.outcome = member_outcome_of(ec, &out.refused);
        }
        auto waiters = std::move(move_waiters_);
        move_waiters_.clear();
        moving_to_.reset();
        for (const auto& [who, nonce] : waiters) {
          out.nonce = nonce;
          env_.send(who, out);
        }
      });
    }
    auto done = [this, from, nonce = m.nonce](result<bytes> r) {
      msg::member_change_reply out{nonce, refusal::none, raft_.leader()};
      out.members = raft_.members();
      out.learners = raft_.learners();
      if (r)
        env_.count("member_changes");
      else
        out.outcome = member_outcome_of(r.error(), &out.refused);
      env_.send(from, out);
    };
    switch (m.op) {
      case msg::member_op::add:
        return raft_.add_member(m.member, std::move(done));
      case msg::member_op::add_learner:
        return raft_.add_learner(m.member, std::move(done));
      case msg::member_op::promote:
        return raft_.promote_learner(m.member, std::move(done));
      default:
        return raft_.remove_member(m.member, std::move(done));
    }
  }

  void on_message(const address& from, const msg::watch& m) {
    const watch_key key{from, m.watch_id};
    if (m.cancel) return void(watches_.erase(key));
    msg::watch_events out{m.watch_id, refusal::none, raft_.leader()};
    if (!raft_.is_leader()) {
      out.refused = refusal::not_leader;
      return void(env_.send(from, out));
    }
    if (m.key.empty() || m.key.size() > max_key_bytes || m.range_end.size() > max_key_bytes) {
      out.refused = refusal::failed;
      return void(env_.send(from, out));
    }
    if (!watch_room(key)) {
      env_.count("watches_refused_full");
      out.refused = refusal::failed;
      return void(env_.send(from, out));
    }
    const auto term = raft_.current_term();
    raft_.read_index([this, from, m, key, term](result<std::uint64_t> idx) {
      msg::watch_events out{m.watch_id, refusal::none, raft_.leader()};
      if (!idx || !raft_.is_leader() || raft_.current_term() != term) {
        out.refused = refusal::not_leader;
        return void(env_.send(from, out));
      }
      if (!watch_room(key)) {  // (checked again: others may have been added meanwhile)
        env_.count("watches_refused_full");
        out.refused = refusal::failed;
        return void(env_.send(from, out));
      }
      const auto& sm = raft_.state_machine();
      const auto start = m.start == 0 ? sm.revision() + 1 : m.start;
      auto& w = watches_[key];
      w = watcher{m.key, m.range_end, start - 1, start - 1, env_.now()};
      // Everything since `start`, in pushes of whole revisions, then live.
      while (true) {
        if (!push(from, m.watch_id, w, true)) return;
        if (w.told >= sm.revision()) return;
      }
    });
  }

  void on_message(const address& from, const msg::register_client& m) {
    if (!raft_.is_leader())
      return void(env_.send(from, msg::register_reply{m.nonce, refusal::not_leader, raft_.leader(), 0}));
    if (would_evict_live_client()) {
      env_.count("registrations_refused_full");
      return void(env_.send(from, msg::register_reply{m.nonce, refusal::failed, raft_.leader(), 0}));
    }
    ++registering_;
    raft_.register_client([this, from, nonce = m.nonce](result<std::uint64_t> id) {
      --registering_;
      msg::register_reply out{nonce, refusal::none, raft_.leader(), 0};
      if (id) {
        out.client = *id;
        seen_[*id] = env_.now();
      } else if (id.error() == condition::retryable || id.error() == condition::outcome_unknown)
        out.refused = refusal::not_leader;  // the client asks again, at the leader it names
      else
        out.refused = refusal::failed;
      env_.send(from, out);
    });
  }

  /// Any replica answers at once with its own view (messages.hpp: status).
  void on_message(const address& from, const msg::status& m) {
    const auto& sm = raft_.state_machine();
    env_.send(from,
              msg::status_reply{m.nonce, std::string(consensus::to_string(raft_.role())), raft_.current_term(),
                                raft_.leader(), raft_.commit_index(), raft_.applied_index(), sm.revision(),
                                raft_.members(), raft_.learners()});
  }

  /// Raft's refusal of a change or transfer, in the reply's words.
  static msg::member_outcome member_outcome_of(std::error_code ec, refusal* refused) {
    using consensus::errc;
    if (ec == errc::config_change_pending || ec == errc::leadership_transfer_in_progress)
      return msg::member_outcome::pending;
    if (ec == dcp::errc::invalid_argument) return msg::member_outcome::invalid;
    if (ec == errc::learner_not_caught_up || ec == errc::leadership_transfer_failed)
      return msg::member_outcome::not_ready;
    if (ec == errc::not_a_learner || ec == errc::not_a_voter) return msg::member_outcome::wrong_role;
    if (ec == errc::already_leader) return msg::member_outcome::already;
    // Outcome unknown: the client asks again (and may hear "already").
    *refused = ec == condition::retryable || ec == condition::outcome_unknown ? refusal::retry : refusal::failed;
    return msg::member_outcome::done;
  }

  // Replies travel to clients only.
  void on_message(const address&, const msg::command_reply&) { env_.count("unexpected_message"); }
  void on_message(const address&, const msg::keepalive_ack&) { env_.count("unexpected_message"); }
  void on_message(const address&, const msg::query_reply&) { env_.count("unexpected_message"); }
  void on_message(const address&, const msg::notify&) { env_.count("unexpected_message"); }
  void on_message(const address&, const msg::get_reply&) { env_.count("unexpected_message"); }
  void on_message(const address&, const msg::lease_reply&) { env_.count("unexpected_message"); }
  void on_message(const address&, const msg::register_reply&) { env_.count("unexpected_message"); }
  void on_message(const address&, const msg::range_reply&) { env_.count("unexpected_message"); }
  void on_message(const address&, const msg::watch_events&) { env_.count("unexpected_message"); }
  void on_message(const address&, const msg::status_reply&) { env_.count("unexpected_message"); }
  void on_message(const address&, const msg::range_at_reply&) { env_.count("unexpected_message"); }
  void on_message(const address&, const msg::member_change_reply&) { env_.count("unexpected_message"); }

  void on_message(const address& from, const msg::lease_request& m) {
    msg::lease_reply out{m.nonce, refusal::none, raft_.leader(), status::granted, {}};
    if (!sealer_) {
      out.refused = refusal::failed;
      env_.count("lease_without_sealer");
      return void(env_.send(from, out));
    }
    if (!raft_.is_leader()) {
      out.refused = refusal::not_leader;
      return void(env_.send(from, out));
    }
    const time_point received = env_.now();
    const wall_time received_wall = env_.wall_now();
    const auto term = raft_.current_term();
    raft_.read_index([this, from, m, received, received_wall, term](result<std::uint64_t> idx) {
      msg::lease_reply out{m.nonce, refusal::none, raft_.leader(), status::granted, {}};
      if (!idx || !raft_.is_leader() || raft_.current_term() != term) {
        out.refused = refusal::not_leader;
        return void(env_.send(from, out));
      }
      const auto view =
          expiring_.contains(m.session) ? session_view{} : raft_.state_machine().view(m.session, m.secret);
      if (!view.alive) {
        out.code = status::no_session;
        return void(env_.send(from, out));
      }
      const auto ttl = ttl_of(m.session);
      auto& d = deadlines_[m.session];  // renewed as by a keepalive
      d = std::max(d, received + ttl);
      if (std::find(view.holds.begin(), view.holds.end(), m.held) == view.holds.end()) {
        out.code = status::not_held;
        return void(env_.send(from, out));
      }
      auto& issued = issued_[{m.held.name, m.held.fencing}];  // a release drains until TTL after this receipt
      issued = std::max(issued, received + ttl);
      const auto span = std::chrono::duration_cast<duration>(ttl * (1.0 - 2 * cfg_.drift_bound));
      lease_terms terms{m.held.name, from, 1, m.held.fencing, received_wall + span};
      if (raft_.state_machine().leased(m.held.name, m.held.fencing)) return seal(from, std::move(out), terms);
      // The first token for this grant: log that one exists before it leaves,
      // so that a release (here or under a later leader) drains the permit.
      request mark{op::lease_issued, m.session, m.held.name, 1, true, m.held.fencing};
      mark.secret = m.secret;
      bytes payload;
      storage::detail::encode_value(mark, payload);
      raft_.propose(std::move(payload), [this, from, out, terms, term](result<bytes> r) mutable {
        reply applied;
        if (!r || storage::detail::decode_value(*r, applied) || raft_.current_term() != term) {
          out.refused = refusal::not_leader;  // unknown: the client asks again
          return void(env_.send(from, out));
        }
        if (applied.code != status::ok) {
          out.code = applied.code == status::no_session ? status::no_session : status::not_held;
          return void(env_.send(from, out));
        }
        seal(from, std::move(out), terms);
      });
    });
  }

  /// Makes this replica seal lease tokens (when it leads) with `sealer`.
  void issue_leases(lease_sealer sealer) { sealer_ = std::move(sealer); }

  Raft& raft() noexcept { return raft_; }

 private:
  struct watcher {
    std::string key, range_end;
    std::uint64_t told = 0;     ///< the client has been sent every change on its keys through this revision
    std::uint64_t scanned = 0;  ///< and none happened in (told, scanned]
    time_point renewed{};
  };
  using watch_key = std::pair<address, std::uint64_t>;

  /// Is there room for watch `key` (it exists already, or both bounds allow one more)?
  bool watch_room(const watch_key& key) const {
    if (watches_.contains(key)) return true;
    if (watches_.size() >= cfg_.max_watches) return false;
    std::size_t mine = 0;
    for (auto& [k, w] : watches_) mine += k.first == key.first;
    return mine < cfg_.max_watches_per_client;
  }

  /// Sends watcher `w` the changes on its keys after `scanned` (as one push
  /// covering (told, through]) when there are any, or when `always`.
  /// False when the history no longer reaches back (the watch is then told
  /// "compacted" and dropped).
  bool push(const address& to, std::uint64_t id, watcher& w, bool always) {
    const auto& sm = raft_.state_machine();
    std::uint64_t through = 0;
    auto events = sm.events(w.scanned + 1, w.key, w.range_end, max_range_bytes, through);
    msg::watch_events out{id, refusal::none, raft_.leader(), w.told, 0};
    if (!events) {
      env_.count("watches_compacted");
      out.compacted = true;
      out.compact_revision = sm.compacted();
      watches_.erase({to, id});
      env_.send(to, out);
      return false;
    }
    w.scanned = through;
    if (events->empty() && !always) return true;
    out.through = w.told = through;
    out.events = std::move(*events);
    env_.count("watch_events_sent", static_cast<std::int64_t>(out.events.size()));
    env_.send(to, out);
    return true;
  }

  /// Would one more registration make raft evict a client seen within
  /// command_client_idle? Registrations under way count as made.
  bool would_evict_live_client() {
    const auto& sm = raft_.state_machine();
    const auto max = raft_.config().max_sessions;
    const auto after = sm.command_clients() + registering_ + 1;
    if (after <= max) return false;
    if (led_term_ != raft_.current_term()) return true;  // just elected: every client counts as seen now
    const auto now = env_.now();
    // The clients raft would evict, least recent first: the next `after - max`.
    std::vector<std::pair<std::uint64_t, std::uint64_t>> by_use;  // (last index, client)
    for (auto c : sm.command_client_ids()) by_use.emplace_back(sm.command_client_last_index(c), c);
    const auto k = std::min(after - max, by_use.size());
    std::partial_sort(by_use.begin(), by_use.begin() + static_cast<std::ptrdiff_t>(k), by_use.end());
    const auto with_sessions = sm.clients_with_sessions();
    for (std::size_t i = 0; i < k; ++i) {
      if (with_sessions.contains(by_use[i].second)) return true;
      auto it = seen_.find(by_use[i].second);
      const auto seen = std::max(led_since_, it == seen_.end() ? led_since_ : it->second);
      if (now - seen < cfg_.command_client_idle) return true;
    }
    return false;
  }

  duration ttl_of(session_id s) const {
    return std::chrono::duration_cast<duration>(std::chrono::milliseconds(raft_.state_machine().ttl_ms(s)));
  }

  void seal(const address& to, msg::lease_reply out, const lease_terms& terms) {
    auto sealed = sealer_(terms);
    if (!sealed) {
      env_.count("lease_seal_failed");
      out.refused = refusal::failed;
    } else {
      env_.count("leases_issued");
      out.token = std::move(*sealed);
    }
    env_.send(to, out);
  }

  /// Puts server_config::quotas in the log when the machine enforces others
  /// (a fresh log, a changed configuration): one proposal at a time per term.
  void propose_quotas() {
    if (!raft_.is_leader() || quotas_term_ == raft_.current_term() || raft_.state_machine().quotas() == cfg_.quotas)
      return;
    quotas_term_ = raft_.current_term();
    env_.count("quotas_proposed");
    request req{op::set_quotas};
    storage::detail::encode_value(cfg_.quotas, req.value);
    bytes payload;
    storage::detail::encode_value(req, payload);
    raft_.propose(std::move(payload), [this](result<bytes>) { quotas_term_ = 0; });
  }

  void refuse(const address& to, const msg::command& m, refusal why) {
    env_.send(to, msg::command_reply{m.client, m.seq, why, raft_.leader(), {}});
  }

  void tick() {
    if (!raft_.is_leader()) {
      led_term_ = 0;
      return;
    }
    const auto now = env_.now();
    const auto& sm = raft_.state_machine();
    if (led_term_ != raft_.current_term()) {
      // A new leader gives every session a full TTL from now (see the header).
      led_term_ = raft_.current_term();
      led_since_ = now;
      seen_.clear();
      watches_.clear();  // their clients' renewals re-create them here
      deadlines_.clear();
      expiring_.clear();
      drain_deadlines_.clear();
      issued_.clear();
      reclaiming_.clear();
    }
    // Released grants whose tokens may still be honoured: free their permits
    // once no token for them can be (see the header).
    const auto draining = sm.draining();
    std::map<std::pair<std::string, fencing_token>, time_point> still;
    for (auto& d : draining) {
      const std::pair key{d.name, d.fencing};
      auto it = drain_deadlines_.find(key);
      if (it == drain_deadlines_.end()) {
        auto issued = issued_.find(key);
        const auto by = issued != issued_.end() ? issued->second : now + std::chrono::milliseconds(d.ttl_ms);
        it = drain_deadlines_.emplace(key, by).first;
      }
      still.insert(*it);
      if (now < it->second || reclaiming_.contains(key)) continue;
      reclaiming_.insert(key);
      env_.count("permits_reclaimed");
      bytes payload;
      storage::detail::encode_value(request{op::reclaim, 0, d.name, 1, true, d.fencing}, payload);
      raft_.propose(std::move(payload), [this, key](result<bytes>) { reclaiming_.erase(key); });
    }
    drain_deadlines_ = std::move(still);
    // Kept while the grant is held with a token or draining (bounded by the grants), or its TTL runs.
    std::erase_if(issued_, [&](auto& kv) {
      return now > kv.second && !sm.leased(kv.first.first, kv.first.second) && !drain_deadlines_.contains(kv.first);
    });
    std::erase_if(seen_, [&](auto& kv) { return !sm.has_command_client(kv.first); });
    std::erase_if(watches_, [&](auto& kv) { return now - kv.second.renewed > cfg_.watch_idle; });
    const auto live = sm.sessions();
    std::erase_if(deadlines_, [&](auto& kv) { return !sm.has_session(kv.first); });
    std::erase_if(expiring_, [&](session_id s) { return !sm.has_session(s); });
    for (auto s : live) {
      auto [it, fresh] = deadlines_.try_emplace(s, now + ttl_of(s));
      if (now < it->second || expiring_.contains(s)) continue;
      expiring_.insert(s);
      env_.count("sessions_expired");
      bytes payload;
      storage::detail::encode_value(request{op::expire_session, s}, payload);
      raft_.propose(std::move(payload), [](result<bytes>) {});
    }
    propose_quotas();
    auto_compact(now);
  }

  /// server_config::auto_compaction_retention: one compact command at a time, at most one per period.
  void auto_compact(time_point now) {
    const auto& sm = raft_.state_machine();
    if (!cfg_.auto_compaction_retention || auto_compacting_ || now < next_auto_compaction_) return;
    if (sm.revision() <= cfg_.auto_compaction_retention) return;
    const auto target = sm.revision() - cfg_.auto_compaction_retention;
    if (target <= sm.compact_revision()) return;
    next_auto_compaction_ = now + cfg_.auto_compaction_every;
    auto_compacting_ = true;
    env_.count("auto_compactions");
    bytes payload;
    request req{op::compact};
    req.fencing = target;
    storage::detail::encode_value(req, payload);
    raft_.propose(std::move(payload), [this](result<bytes>) { auto_compacting_ = false; });
  }

  void applied(const storage::log_entry& e, const consensus::command* c, const bytes* r) {
    // Every replica mirrors raft's client table in the machine, in log order
    // (machine::note_registered): registrations, forgets and commands.
    if (c) {
      auto& sm = raft_.state_machine();
      if (c->kind == consensus::command_kind::register_client)
        sm.note_registered(e.index, raft_.config().max_sessions);
      else if (c->kind == consensus::command_kind::unregister_client)
        sm.note_unregistered(c->client);
      else if (c->client != 0)
        sm.note_command(c->client, c->seq, e.index, r != nullptr);
    }
    if (!c || !r) return;
    if (raft_.state_machine().trimmed_history()) env_.count("history_trimmed");
    request req;
    if (storage::detail::decode_value(c->payload, req)) return;
    if (c->client != 0) {  // the command client acting for this session (replicated: every replica, in log order)
      reply rep;
      if (!storage::detail::decode_value(*r, rep) && rep.code != status::no_session &&
          rep.code != status::bad_request) {
        if (req.kind == op::open_session)
          raft_.state_machine().note_session_client(rep.session, c->client);
        else if (req.session && req.kind != op::close_session)
          raft_.state_machine().note_session_client(req.session, c->client);
      }
    }
    if (!raft_.is_leader()) return;
    if (!watches_.empty() && raft_.state_machine().revision() != pushed_revision_) {  // push what changed
      pushed_revision_ = raft_.state_machine().revision();
      std::vector<watch_key> keys;
      for (auto& [k, w] : watches_) keys.push_back(k);
      for (auto& k : keys)
        if (auto it = watches_.find(k); it != watches_.end()) push(k.first, k.second, it->second, false);
    }
    // Sessions granted a waiting request or let through a barrier: tell them
    // to look (the requester of this very command hears from its reply).
    // Where: where its owner last spoke to this leader from, or else where it
    // opened the session (replicated: a leader elected while a session waits
    // tells it of its grant at once, before the owner finds the new leader).
    for (auto s : raft_.state_machine().touched()) {
      if (req.kind == op::acquire && s == req.session) continue;
      if (auto it = clients_.find(s); it != clients_.end())
        env_.send(it->second, msg::notify{s});
      else if (const address* owner = raft_.state_machine().owner(s); owner && *owner != address{})
        env_.send(*owner, msg::notify{s});
    }
    if (req.kind == op::close_session || req.kind == op::expire_session) clients_.erase(req.session);
  }

  E env_;
  Raft& raft_;
  server_config cfg_;
  std::map<session_id, time_point> deadlines_;  // leader only, in the leader's clock
  std::set<session_id> expiring_;               // leader only: expiry proposed, keepalives refused
  std::map<session_id, address> clients_;       // where to send notifications
  std::uint64_t led_term_ = 0;
  time_point led_since_{};  // leader only: when this term's leadership was first seen
  std::map<std::uint64_t, time_point>
      seen_;                              // leader only: command client -> its last command here (bounded by the table)
  std::size_t registering_ = 0;           // leader only: registrations proposed, not yet applied
  std::map<watch_key, watcher> watches_;  // leader only (bounded: max_watches)
  std::uint64_t pushed_revision_ = 0;     // leader only: the store's revision at the last push
  lease_sealer sealer_;
  using grant_key = std::pair<std::string, fencing_token>;
  std::map<grant_key, time_point> issued_;           // leader only: TTL after the latest lease request's receipt
  std::map<grant_key, time_point> drain_deadlines_;  // leader only: when a draining grant's permit is free
  std::set<grant_key> reclaiming_;                   // leader only: reclaim proposed, not yet applied
  // A leadership transfer asked for by clients: its target, and who waits
  // for the answer (a client resends before a transfer can end: each send
  // joins the one under way). Bounded: beyond, a request hears "pending".
  std::optional<address> moving_to_;
  std::vector<std::pair<address, std::uint64_t>> move_waiters_;
  static constexpr std::size_t max_move_waiters = 64;
  bool auto_compacting_ = false;       // leader only: an automatic compaction proposed, not yet answered
  time_point next_auto_compaction_{};  // leader only: not before then
  std::uint64_t quotas_term_ = 0;      // leader only: the term of a set_quotas proposed, not yet answered
  periodic<E> ticker_;
};

}  // namespace dcp::coord
