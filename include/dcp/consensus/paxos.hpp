#pragma once
// Single-decree Paxos (Lamport, "Paxos Made Simple", 2001): a group of
// acceptors chooses at most one value, whatever the proposers do.
//
// Every node plays all three roles. A proposer picks a ballot (round, own
// address) above any it has seen, and
//   phase 1: prepare(b) to every acceptor; an acceptor that has promised
//            nothing higher promises b and returns what it last accepted;
//   phase 2: with promises from a quorum, accept(b, v) where v is the value
//            of the highest-ballot acceptance reported, or its own value if
//            none; an acceptor that has promised nothing higher accepts.
// With acceptances from a quorum the value is chosen; the proposer tells
// every node (decided), and a node that proposes after learning answers
// with the chosen value at once.
//
// Durability: an acceptor syncs its promise and acceptance before it
// answers, and a proposer syncs the highest round it has used before it
// sends a prepare, so a restarted node neither forgets a promise nor reuses
// a ballot with another value. Both live in one small file, replaced
// atomically, checksummed (<prefix>.acceptor).
//
// Whom it believes (issue 11). Prepares, accepts and decisions only from
// the configured proposers (by default the acceptors: every node plays every
// role), and only in a ballot that names their sender; promises and
// acceptances only from acceptors. A round more than 2^32 above any this
// node has seen is refused even from a member: honest rounds grow by one per
// attempt, and a promise of round 2^64 - 1 would leave no round to propose
// in (the next one wrapped to 0). Should the space run out all the same, the
// proposal fails (invalid_argument) rather than wrap. Refusals are counted
// (not_an_acceptor, not_a_proposer, ballot_not_senders, absurd_round,
// rounds_exhausted). These checks keep out a stranger; an impostor that
// claims a member's address is the transport's to refuse.
//
// Liveness needs one proposer to run alone for a while: duelling proposers
// back off for a random time (FLP allows no better). A proposal that has not
// succeeded within `give_up_after` fails with timed_out.
//
// Message ids: 1-5. Default protocol id: 101.
#include <algorithm>
#include <functional>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "dcp/consensus/quorum_rule.hpp"
#include "dcp/core/assert.hpp"
#include "dcp/core/env.hpp"
#include "dcp/core/error.hpp"
#include "dcp/core/log.hpp"
#include "dcp/core/result.hpp"
#include "dcp/storage/detail/codec.hpp"
#include "dcp/storage/detail/record.hpp"
#include "dcp/wire/message.hpp"

namespace dcp::consensus {

struct ballot {
  std::uint64_t round = 0;
  address proposer;
  auto operator<=>(const ballot&) const = default;
  bool operator==(const ballot&) const = default;
  template <class A> void serialize(A& ar) { ar(round, proposer); }
};

namespace paxos_msg {
struct prepare {
  static constexpr message_type wire_id = 1;
  static constexpr std::string_view wire_name = "prepare";
  ballot b;
  template <class A> void serialize(A& ar) { ar(b); }
};
struct promise {
  static constexpr message_type wire_id = 2;
  static constexpr std::string_view wire_name = "promise";
  ballot b;  ///< the prepare this answers
  bool ok = false;
  ballot promised;  ///< the acceptor's promise (higher than b when !ok)
  std::optional<ballot> accepted_ballot;
  bytes accepted_value;
  template <class A> void serialize(A& ar) { ar(b, ok, promised, accepted_ballot, accepted_value); }
};
struct accept {
  static constexpr message_type wire_id = 3;
  static constexpr std::string_view wire_name = "accept";
  ballot b;
  bytes value;
  template <class A> void serialize(A& ar) { ar(b, value); }
};
struct accepted {
  static constexpr message_type wire_id = 4;
  static constexpr std::string_view wire_name = "accepted";
  ballot b;
  bool ok = false;
  ballot promised;
  template <class A> void serialize(A& ar) { ar(b, ok, promised); }
};
struct decided {
  static constexpr message_type wire_id = 5;
  static constexpr std::string_view wire_name = "decided";
  bytes value;
  template <class A> void serialize(A& ar) { ar(value); }
};
}  // namespace paxos_msg

struct paxos_config {
  std::vector<address> acceptors;
  /// Who may prepare, accept and announce a decision; empty: the acceptors.
  std::vector<address> proposers;
  duration retry_after = 50ms;  ///< a phase unanswered this long starts over (with random backoff)
  duration give_up_after = 10s;
  std::string file_prefix = "paxos";

  void validate() const {
    if (acceptors.empty()) throw error(dcp::errc::invalid_config, "paxos: no acceptors");
    if (retry_after <= duration::zero() || give_up_after < retry_after)
      throw error(dcp::errc::invalid_config, "paxos: need 0 < retry_after <= give_up_after");
    if (!disk::valid_name(file_prefix + ".acceptor"))
      throw error(dcp::errc::invalid_config, "paxos: file_prefix must be a valid file name");
  }
};

template <Env E, QuorumRule Quorum = simple_majority> class paxos {
 public:
  using messages = wire::message_set<paxos_msg::prepare, paxos_msg::promise, paxos_msg::accept, paxos_msg::accepted,
                                     paxos_msg::decided>;
  /// What it counts (env.count), declared: dcp/core/counter_set.hpp.
  static constexpr dcp::counter_set counters{{"not_a_proposer", "ballot_not_senders", "absurd_round", "not_an_acceptor",
                                              "storage_failed", "rounds_exhausted", "preempted",
                                              "conflicting_decision"}};
  static constexpr std::string_view name = "paxos";
  static constexpr protocol_id default_id = 101;
  using callback = std::function<void(result<bytes>)>;

  paxos(E env, paxos_config cfg) : env_(std::move(env)), cfg_(std::move(cfg)) {
    cfg_.validate();
    load();
  }
  paxos(const paxos&) = delete;
  paxos& operator=(const paxos&) = delete;
  ~paxos() {
    if (timer_) env_.cancel(timer_);
  }

  /// Proposes `value`; `done` gets the chosen value (which may be another
  /// proposer's), or timed_out / io_error, or invalid_argument
  /// if the round space is exhausted (never in practice: see above).
  void propose(bytes value, callback done) {
    if (chosen_) return done(*chosen_);
    if (failed_) return done(dcp::make_error_code(dcp::errc::io_error));
    waiters_.push_back(std::move(done));
    if (proposing_) return;
    proposing_ = true;
    my_value_ = std::move(value);
    started_ = env_.now();
    start_round();
  }

  std::optional<bytes> chosen() const { return chosen_; }
  /// The acceptor's durable state, for observation.
  const ballot& promised() const noexcept { return st_.promised; }
  const std::optional<ballot>& accepted_ballot() const noexcept { return st_.accepted_ballot; }
  const bytes& accepted_value() const noexcept { return st_.accepted_value; }

  /// Asserts (DCP_ASSERT) what must hold of this node's own state between
  /// events: the simulator's tests call it after every event. A no-op when
  /// assertions are off. Agreement itself spans nodes: the tests check it.
  void check_invariants() const {
    DCP_ASSERT(
        !st_.accepted_ballot || *st_.accepted_ballot <= st_.promised,
        "an acceptor accepts only at or above what it promised, and never promises below (Paxos Made Simple, P1a)");
    DCP_ASSERT(phase_ >= 0 && phase_ <= 2 && (phase_ == 0 || proposing_),
               "a proposer runs a phase only while proposing");
    DCP_ASSERT((phase_ == 0 || current_ == ballot{st_.max_round, env_.self()}),
               "the proposer's ballot is the durable round it last reserved (never reused after a restart)");
    DCP_ASSERT(!chosen_ || !proposing_, "a node that learned the value proposes no more");
    DCP_ASSERT(!failed_ || !proposing_, "a node that cannot persist proposes no more");
    DCP_ASSERT(proposing_ || waiters_.empty(), "every waiter has a proposal under way");
  }

  // ---- acceptor ----

  void on_message(const address& from, const paxos_msg::prepare& m) {
    if (failed_ || !believes_proposal(from, m.b)) return;
    paxos_msg::promise out{m.b, false, st_.promised, st_.accepted_ballot, st_.accepted_value};
    if (m.b >= st_.promised) {
      if (m.b > st_.promised) {
        auto next = st_;
        next.promised = m.b;
        if (!save(next)) return;
      }
      out.ok = true;
      out.promised = st_.promised;
    }
    env_.send(from, out);
  }

  void on_message(const address& from, const paxos_msg::accept& m) {
    if (failed_ || !believes_proposal(from, m.b)) return;
    paxos_msg::accepted out{m.b, false, st_.promised};
    if (m.b >= st_.promised) {
      if (st_.accepted_ballot != m.b) {  // a duplicate accept changes nothing
        auto next = st_;
        next.promised = m.b;
        next.accepted_ballot = m.b;
        next.accepted_value = m.value;
        if (!save(next)) return;
      }
      out.ok = true;
      out.promised = st_.promised;
    }
    env_.send(from, out);
  }

  // ---- proposer ----

  void on_message(const address& from, const paxos_msg::promise& m) {
    if (!believes_answer(from, m.promised)) return;
    if (!proposing_ || phase_ != 1 || m.b != current_) return;
    if (!m.ok) return reject(m.promised);
    promises_.insert(from);
    if (m.accepted_ballot && (!best_ballot_ || *m.accepted_ballot > *best_ballot_)) {
      best_ballot_ = m.accepted_ballot;
      best_value_ = m.accepted_value;
    }
    if (quorum_.is_quorum(cfg_.acceptors, std::vector<address>(promises_.begin(), promises_.end()))) {
      phase_ = 2;
      const bytes& v = best_ballot_ ? best_value_ : my_value_;
      for (const auto& a : cfg_.acceptors) env_.send(a, paxos_msg::accept{current_, v});
      phase2_value_ = v;
      arm_retry();
    }
  }

  void on_message(const address& from, const paxos_msg::accepted& m) {
    if (!believes_answer(from, m.promised)) return;
    if (!proposing_ || phase_ != 2 || m.b != current_) return;
    if (!m.ok) return reject(m.promised);
    accepts_.insert(from);
    if (quorum_.is_quorum(cfg_.acceptors, std::vector<address>(accepts_.begin(), accepts_.end()))) {
      for (const auto& a : cfg_.acceptors) env_.send(a, paxos_msg::decided{phase2_value_});
      learn(phase2_value_);
    }
  }

  // ---- learner ----

  void on_message(const address& from, const paxos_msg::decided& m) {
    if (!is_proposer(from)) return drop("not_a_proposer");
    learn(m.value);
  }

 private:
  struct durable_state {
    ballot promised;
    std::optional<ballot> accepted_ballot;
    bytes accepted_value;
    std::uint64_t max_round = 0;  ///< the proposer's: never reuse a round after a restart
    template <class A> void serialize(A& ar) { ar(promised, accepted_ballot, accepted_value, max_round); }
  };

  std::string file() const { return cfg_.file_prefix + ".acceptor"; }

  static bool contains(const std::vector<address>& v, const address& a) {
    return std::find(v.begin(), v.end(), a) != v.end();
  }
  bool is_proposer(const address& a) const {
    return contains(cfg_.proposers.empty() ? cfg_.acceptors : cfg_.proposers, a);
  }
  void drop(const char* why) { env_.count(why); }

  static constexpr std::uint64_t max_round_step = std::uint64_t{1} << 32;
  /// The highest round this node knows of, as acceptor or proposer.
  std::uint64_t known_round() const { return std::max({st_.max_round, seen_round_, st_.promised.round}); }
  bool absurd(std::uint64_t round) const {
    const auto known = known_round();
    return round > known && round - known > max_round_step;
  }
  /// A prepare or accept: from a proposer, in its own ballot, in a round
  /// that leaves room for more.
  bool believes_proposal(const address& from, const ballot& b) {
    if (!is_proposer(from)) return drop("not_a_proposer"), false;
    if (b.proposer != from) return drop("ballot_not_senders"), false;
    if (absurd(b.round)) return drop("absurd_round"), false;
    return true;
  }
  /// A promise or acceptance: from an acceptor, whose promised round (which
  /// a refusal makes this proposer skip past) is not absurd.
  bool believes_answer(const address& from, const ballot& promised) {
    if (!contains(cfg_.acceptors, from)) return drop("not_an_acceptor"), false;
    if (absurd(promised.round)) return drop("absurd_round"), false;
    return true;
  }

  void load() {
    auto data = env_.disk().read(file());
    if (!data) {
      if (data.error() == make_error_code(dcp::errc::not_found)) return;
      throw error(dcp::errc::io_error, "paxos: cannot read " + file() + ": " + data.error().message());
    }
    auto payload = storage::detail::read_record(*data, 0);
    if (!payload || storage::detail::decode_value(*payload, st_))
      throw error(dcp::errc::io_error, "paxos: " + file() + " is corrupt (it is replaced atomically: disk damage)");
  }

  bool save(const durable_state& next) {
    bytes payload, rec;
    storage::detail::encode_value(next, payload);
    storage::detail::frame_record(payload, rec);
    std::error_code ec = env_.disk().write(file(), rec);
    if (!ec) ec = env_.disk().sync(file());
    if (ec) {
      failed_ = true;
      dcp::log(env_, log_level::error, "paxos: cannot persist acceptor state (", ec.message(), "); stopping");
      env_.count("storage_failed");
      finish(dcp::make_error_code(dcp::errc::io_error));
      return false;
    }
    st_ = next;
    return true;
  }

  void start_round() {
    if (!proposing_ || failed_) return;
    if (env_.now() - started_ > cfg_.give_up_after) return finish(dcp::make_error_code(dcp::errc::timed_out));
    if (known_round() == ~std::uint64_t{0}) {  // never wrap: round 0 would lose to every promise
      env_.count("rounds_exhausted");
      return finish(dcp::make_error_code(dcp::errc::invalid_argument));
    }
    auto next = st_;
    next.max_round = known_round() + 1;
    if (!save(next)) return;
    current_ = ballot{st_.max_round, env_.self()};
    phase_ = 1;
    promises_.clear();
    accepts_.clear();
    best_ballot_.reset();
    best_value_.clear();
    for (const auto& a : cfg_.acceptors) env_.send(a, paxos_msg::prepare{current_});
    arm_retry();
  }

  void reject(const ballot& higher) {
    seen_round_ = std::max(seen_round_, higher.round);
    env_.count("preempted");
    backoff();
  }

  void arm_retry() {
    if (timer_) env_.cancel(timer_);
    timer_ = env_.arm(cfg_.retry_after, [this] {
      timer_ = {};
      backoff();
    });
  }
  /// Duelling proposers: wait a random while before the next round.
  void backoff() {
    if (timer_) env_.cancel(timer_);
    phase_ = 0;
    const auto wait = duration(env_.rng().between(0, 2 * cfg_.retry_after.count()));
    timer_ = env_.arm(wait, [this] {
      timer_ = {};
      start_round();
    });
  }

  void learn(const bytes& v) {
    if (chosen_) {
      if (*chosen_ != v) env_.count("conflicting_decision");  // impossible unless acceptors lost state
      return;
    }
    chosen_ = v;
    finish(v);
  }

  void finish(result<bytes> r) {
    proposing_ = false;
    phase_ = 0;
    if (timer_) env_.cancel(timer_);
    timer_ = {};
    auto ws = std::move(waiters_);
    waiters_.clear();
    for (auto& w : ws) w(r);
  }

  E env_;
  paxos_config cfg_;
  [[no_unique_address]] Quorum quorum_;
  durable_state st_;
  std::optional<bytes> chosen_;
  bool proposing_ = false, failed_ = false;
  int phase_ = 0;
  ballot current_;
  std::uint64_t seen_round_ = 0;
  std::set<address> promises_, accepts_;
  std::optional<ballot> best_ballot_;
  bytes best_value_, my_value_, phase2_value_;
  time_point started_{};
  std::vector<callback> waiters_;
  timer_id timer_{};
};

}  // namespace dcp::consensus
