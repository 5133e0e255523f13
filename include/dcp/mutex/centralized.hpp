#pragma once
// Centralized mutual exclusion: one coordinator grants the lock in FIFO order.
//
// A client sends REQUEST to the coordinator, which answers GRANT when the lock
// is free (at once, or when the holder's RELEASE arrives). Three messages per
// critical section, synchronization delay 2T (release, then grant).
//
// Faults tolerated:
//   - delay, reordering and duplication: every message names its request
//     (session, seq); the coordinator ignores requests it has already seen or
//     released, and a client sends RELEASE back for any GRANT it no longer
//     wants, so a stale grant never blocks the lock.
//   - a client crash (crash-stop, reported by the transport): the coordinator
//     probes a holder every probe_interval, and a holder the transport reports
//     unreachable is released; its queued requests are dropped.
//   - message loss, eventually: a waiter whose REQUEST or GRANT is lost times
//     out; a grant the coordinator believes held (a lost RELEASE, a lost
//     GRANT) is returned when the probe reaches a client not holding it.
// Not tolerated: the coordinator's crash (waiters get member_failed when the
// transport reports it, timed_out after request_timeout otherwise), and
// partitions (a cut-off holder keeps the lock; waiters time out).
#include <algorithm>
#include <cstdint>
#include <deque>
#include <optional>
#include <string_view>
#include <unordered_map>

#include "dcp/core/assert.hpp"
#include "dcp/core/env.hpp"
#include "dcp/core/protocol.hpp"
#include "dcp/group/static_group.hpp"
#include "dcp/mutex/api.hpp"
#include "dcp/mutex/detail/loopback.hpp"
#include "dcp/mutex/detail/request.hpp"

namespace dcp::mutex {

struct centralized_config {
  /// The coordinator; empty means the lowest-ranked member of the group.
  address coordinator{};
  duration request_timeout = 10s;
  /// How often the coordinator checks that a holder is still alive.
  duration probe_interval = 1s;
  void validate() const {
    if (request_timeout <= duration::zero())
      throw error(errc::invalid_config, "centralized: request_timeout must be > 0");
    if (probe_interval <= duration::zero())
      throw error(errc::invalid_config, "centralized: probe_interval must be > 0");
  }
};

namespace centralized_msg {
struct request {
  static constexpr message_type wire_id = 1;
  static constexpr std::string_view wire_name = "request";
  std::uint64_t session = 0, seq = 0;
  template <class A> void serialize(A& ar) { ar(session, seq); }
};
struct grant {
  static constexpr message_type wire_id = 2;
  static constexpr std::string_view wire_name = "grant";
  std::uint64_t session = 0, seq = 0;
  template <class A> void serialize(A& ar) { ar(session, seq); }
};
struct release {
  static constexpr message_type wire_id = 3;
  static constexpr std::string_view wire_name = "release";
  std::uint64_t session = 0, seq = 0;
  template <class A> void serialize(A& ar) { ar(session, seq); }
};
struct probe {  ///< "do you still hold grant (session, seq)?"
  static constexpr message_type wire_id = 4;
  static constexpr std::string_view wire_name = "probe";
  std::uint64_t session = 0, seq = 0;
  template <class A> void serialize(A& ar) { ar(session, seq); }
};
}  // namespace centralized_msg

template <Env E, group::Group G = group::static_group> class centralized {
 public:
  using messages = wire::message_set<centralized_msg::request, centralized_msg::grant, centralized_msg::release,
                                     centralized_msg::probe>;
  /// What it counts (env.count), declared: dcp/core/counter_set.hpp.
  static constexpr auto counters =
      dcp::join(detail::request_counters,
                dcp::counter_set{{"stale_grant", "duplicate_grant", "stale_probe", "released_on_probe",
                                  "dropped_request", "dropped_release", "holder_failed", "duplicate_request"}});
  static constexpr std::string_view name = "mutex.centralized";
  static constexpr protocol_id default_id = 50;

  centralized(E env, G group, centralized_config cfg = {})
      : env_(std::move(env)), group_(std::move(group)), cfg_(cfg), request_(env_), self_(env_) {
    cfg_.validate();
    group::rank_of_self(group_, env_.self(), "centralized");
    coordinator_ = cfg_.coordinator.empty() ? group_.member(0) : cfg_.coordinator;
    if (!group_.contains(coordinator_))
      throw error(errc::invalid_config, "centralized: the coordinator is not a member");
    session_ = env_.rng()() | 1;  // a new session per incarnation: a restarted client starts afresh
  }

  void lock(lock_handler h) {
    if (!request_.begin(std::move(h), cfg_.request_timeout, [this] { withdraw(); })) return;
    ++seq_;
    to_coordinator(centralized_msg::request{session_, seq_});
  }
  bool try_lock() {
    // Only the coordinator can know without asking that the lock is free.
    if (!is_coordinator() || !request_.idle() || holder_ || !queue_.empty()) return false;
    ++seq_;
    holder_ = entry{env_.self(), session_, seq_};
    request_.take();
    return true;
  }
  void unlock() {
    request_.release("centralized");
    to_coordinator(centralized_msg::release{session_, seq_});
  }
  void cancel() {
    if (!request_.waiting()) return;
    withdraw();
    request_.fail(errc::cancelled);
  }
  bool holding() const noexcept { return request_.held(); }
  lock_state state() const noexcept { return request_.state(); }
  std::optional<address> holder() const {
    if (holding()) return env_.self();
    if (is_coordinator() && holder_) return holder_->client;
    return std::nullopt;
  }
  const address& coordinator() const noexcept { return coordinator_; }
  bool is_coordinator() const noexcept { return coordinator_ == env_.self(); }

  /// Asserts (DCP_ASSERT) what holds between events, whatever peers sent:
  /// only the coordinator keeps coordinator state; every request it queues
  /// or has granted is a member's, of that client's current session and no
  /// newer than the newest it has seen from it; the grant is not also
  /// queued; and a coordinator inside the critical section is the holder it
  /// recorded. O(queue); for tests and the simulator (dcp/core/assert.hpp).
  void check_invariants() const {
    DCP_ASSERT(session_ % 2 == 1, "centralized: a session id of zero");
    DCP_ASSERT(request_.idle() || seq_ > 0, "centralized: a request without its sequence number");
    if (!is_coordinator()) {
      DCP_ASSERT(!holder_ && queue_.empty() && clients_.empty(), "centralized: coordinator state at a client");
      return;
    }
    for (const auto& e : queue_) {
      DCP_ASSERT(group_.contains(e.client), "centralized: a non-member's request queued");
      const auto c = clients_.find(e.client);
      DCP_ASSERT(c != clients_.end() && c->second.session == e.session && e.seq <= c->second.seq,
                 "centralized: a queued request of an old session, or newer than any seen");
      DCP_ASSERT(!holder_ || !(*holder_ == e), "centralized: the granted request is still queued");
    }
    if (holder_) {
      DCP_ASSERT(group_.contains(holder_->client), "centralized: the lock granted to a non-member");
      const auto c = clients_.find(holder_->client);
      DCP_ASSERT(c == clients_.end() || c->second.session == holder_->session,
                 "centralized: the lock held by a client's old session");
    }
    DCP_ASSERT((!request_.held() || (holder_ && *holder_ == entry{env_.self(), session_, seq_})),
               "centralized: the coordinator in the critical section without its grant recorded");
  }

  // ---- client side ----
  void on_message(const address& from, const centralized_msg::grant& m) {
    if (from != coordinator_ || m.session != session_) return env_.count("stale_grant");
    if (request_.waiting() && m.seq == seq_) return request_.grant();
    if (request_.held() && m.seq == seq_) return env_.count("duplicate_grant");
    // A grant for a request we withdrew: hand it straight back.
    env_.count("stale_grant");
    to_coordinator(centralized_msg::release{m.session, m.seq});
  }
  void on_message(const address& from, const centralized_msg::probe& m) {
    if (from != coordinator_) return env_.count("stale_probe");
    // Holding it, or still waiting for it (its GRANT may be on the way, behind
    // this probe): nothing to return. If the GRANT was lost, our time-out
    // withdraws the request with a RELEASE of its own.
    if (!request_.idle() && m.session == session_ && m.seq == seq_) return;
    // The coordinator thinks we hold a grant we no longer want (our RELEASE
    // was lost, or its GRANT came after we gave up): free it.
    env_.count("released_on_probe");
    env_.send(coordinator_, centralized_msg::release{m.session, m.seq});
  }

  // ---- coordinator side ----
  void on_message(const address& from, const centralized_msg::request& m) {
    if (!is_coordinator() || !group_.contains(from)) return env_.count("dropped_request");
    submit(entry{from, m.session, m.seq});
  }
  void on_message(const address& from, const centralized_msg::release& m) {
    if (!is_coordinator() || !group_.contains(from)) return env_.count("dropped_release");
    release_entry(entry{from, m.session, m.seq});
  }
  void on_unreachable(const address& peer) {
    if (peer == coordinator_ && !is_coordinator() && request_.waiting()) {
      request_.fail(errc::member_failed);
      return;
    }
    if (!is_coordinator()) return;
    // A client that crashed holds nothing and wants nothing any more.
    std::erase_if(queue_, [&](const entry& e) { return e.client == peer; });
    if (holder_ && holder_->client == peer) {
      env_.count("holder_failed");
      holder_.reset();
      grant_next();
    }
  }

 private:
  struct entry {
    address client;
    std::uint64_t session = 0, seq = 0;
    bool operator==(const entry&) const = default;
  };
  struct client_state {
    std::uint64_t session = 0, seq = 0;  // the newest request seen or released
  };

  void to_coordinator(const auto& m) {
    if (!is_coordinator()) {
      env_.send(coordinator_, m);
      return;
    }
    // The coordinator's own requests take the same path as a client's, after
    // the event (the loopback), without the network: lock() and unlock() never
    // reach into the queue half-way through themselves.
    self_.post([this, e = entry{env_.self(), m.session, m.seq}] {
      if constexpr (std::is_same_v<std::decay_t<decltype(m)>, centralized_msg::request>)
        submit(e);
      else
        release_entry(e);
    });
  }
  void withdraw() { to_coordinator(centralized_msg::release{session_, seq_}); }

  /// True if (session, seq) is newer than anything seen from this client; records it.
  bool fresh(const entry& e) {
    auto& c = clients_[e.client];
    if (c.session != e.session) {  // a restarted client: forget its old life
      std::erase_if(queue_, [&](const entry& q) { return q.client == e.client && q.session != e.session; });
      if (holder_ && holder_->client == e.client && holder_->session != e.session) holder_.reset();
      c = {e.session, 0};
    }
    if (e.seq <= c.seq) return false;
    c.seq = e.seq;
    return true;
  }
  void submit(const entry& e) {
    if (!fresh(e)) return env_.count("duplicate_request");
    queue_.push_back(e);
    grant_next();
  }
  void release_entry(const entry& e) {
    fresh(e);  // a release overtaking its request makes the request stale
    if (holder_ && *holder_ == e) {
      holder_.reset();
      grant_next();
    } else {
      std::erase(queue_, e);
    }
  }
  void grant_next() {
    if (holder_ || queue_.empty()) return;
    holder_ = queue_.front();
    queue_.pop_front();
    if (holder_->client != env_.self() && !probe_.running())
      probe_.start(env_, cfg_.probe_interval, [this] { probe_holder(); });
    if (holder_->client == env_.self()) {
      if (request_.waiting() && holder_->seq == seq_ && holder_->session == session_)
        request_.grant();
      else
        release_entry(*holder_);
    } else {
      env_.send(holder_->client, centralized_msg::grant{holder_->session, holder_->seq});
    }
  }
  void probe_holder() {
    if (!holder_ || holder_->client == env_.self()) return probe_.stop();
    env_.send(holder_->client, centralized_msg::probe{holder_->session, holder_->seq});
  }

  E env_;
  G group_;
  centralized_config cfg_;
  detail::request<E> request_;
  detail::loopback<E> self_;
  address coordinator_;
  std::uint64_t session_ = 0, seq_ = 0;
  // coordinator state
  std::optional<entry> holder_;
  std::deque<entry> queue_;
  std::unordered_map<address, client_state> clients_;
  periodic<E> probe_;
};

}  // namespace dcp::mutex
