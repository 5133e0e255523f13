#pragma once
// Chang–Roberts ring election (1979).
//
// Members sit on a unidirectional ring (by default in rank order; `ring`
// gives another order). An initiator marks itself a participant and sends
// ELECTION(its id) to its successor. A node forwards a larger id, replaces a
// smaller one by its own if it is not yet a participant (and drops it if it
// is), and recognises its own id coming back: it is the largest, the leader,
// and sends ELECTED around the ring, which stops at the leader's predecessor.
// Ids are ranks in the group (the highest address wins). Messages: best 2N−1
// (the highest alone initiates), worst N(N+1)/2 + N−1 (everyone initiates and
// ids decrease along the ring), ≈ N·H_N + N−1 on average over random rings.
//
// Each election has a round: a node that has seen its round decided starts a
// new one at start_election(), and messages of older rounds are dropped, so a
// reordered ELECTION never restarts an election that has ended. A node that
// gets a stale message tells its sender the outcome of its own round (an
// ELECTED), so a member that restarted (in round 0) catches up, and a
// candidacy overtaken by a newer round stands again in the round after it.
// A decided node that sees a candidate above its round's leader (a member
// that was down when the round ran, and is back) starts the next round for it.
// What a node learns of crashed members holds for a round: each new round
// tries the whole ring again, so a member that came back is not skipped for
// ever (one still down costs one bounced send).
//
// Faults tolerated: delay, reordering, and crash-stop of members that the transport
// reports unreachable: a node whose successor is reported unreachable skips it
// and re-sends what it had sent it; its restart (it stands, and is heard in
// a new round). Not tolerated: loss (an election can stall:
// call start_election() again) and a crash of the leader after the election
// (Chang–Roberts detects no failures: run start_election() when yours does).
#include <algorithm>
#include <cstdint>
#include <optional>
#include <set>
#include <string_view>
#include <type_traits>
#include <variant>
#include <vector>

#include "dcp/core/assert.hpp"
#include "dcp/core/env.hpp"
#include "dcp/core/protocol.hpp"
#include "dcp/election/api.hpp"
#include "dcp/group/static_group.hpp"

namespace dcp::election {

struct chang_roberts_config {
  /// The ring order (every member once); empty means rank order.
  std::vector<address> ring;
  bool elect_on_start = false;
};

namespace chang_roberts_msg {
struct election {
  static constexpr message_type wire_id = 1;
  static constexpr std::string_view wire_name = "election";
  std::uint64_t round = 0;
  std::uint64_t candidate = 0;  ///< a rank
  template <class A> void serialize(A& ar) { ar(round, candidate); }
};
struct elected {
  static constexpr message_type wire_id = 2;
  static constexpr std::string_view wire_name = "elected";
  std::uint64_t round = 0;
  std::uint64_t leader = 0;
  template <class A> void serialize(A& ar) { ar(round, leader); }
};
}  // namespace chang_roberts_msg

template <Env E, group::Group G = group::static_group> class chang_roberts {
 public:
  using messages = wire::message_set<chang_roberts_msg::election, chang_roberts_msg::elected>;
  /// What it counts (env.count), declared: dcp/core/counter_set.hpp.
  static constexpr dcp::counter_set counters{{"elections_started", "malformed", "member_returned", "candidate_skipped",
                                              "swallowed", "candidacy_overtaken", "stale_round"}};
  static constexpr std::string_view name = "election.chang_roberts";
  static constexpr protocol_id default_id = 71;

  chang_roberts(E env, G group, chang_roberts_config cfg = {}) : env_(std::move(env)), group_(std::move(group)) {
    rank_ = group::rank_of_self(group_, env_.self(), "chang_roberts");
    if (cfg.ring.empty())
      for (std::size_t r = 0; r < group_.size(); ++r) ring_.push_back(r);
    else
      for (auto& a : cfg.ring) {
        auto r = group_.rank_of(a);
        if (!r)
          throw error(errc::invalid_config, "chang_roberts: ring member " + a.to_string() + " is not in the group");
        ring_.push_back(*r);
      }
    auto sorted = ring_;
    std::sort(sorted.begin(), sorted.end());
    if (sorted.size() != group_.size() || std::adjacent_find(sorted.begin(), sorted.end()) != sorted.end())
      throw error(errc::invalid_config, "chang_roberts: the ring must list every member exactly once");
    position_ = static_cast<std::size_t>(std::find(ring_.begin(), ring_.end(), rank_) - ring_.begin());
    elect_on_start_ = cfg.elect_on_start;
  }

  void start() {
    if (elect_on_start_) start_election();
  }
  /// Starts (or joins) the current round; once a round has elected its
  /// leader here, the next call starts a new round.
  void start_election() {
    if (participant_) return;
    if (decided_) next_round(round_ + 1);
    participant_ = true;
    env_.count("elections_started");
    forward(chang_roberts_msg::election{round_, rank_});
  }
  std::optional<address> leader() const { return leader_.get(); }
  bool electing() const noexcept { return participant_; }
  void on_leader_changed(leader_handler h) { leader_.on_change(std::move(h)); }

  /// Asserts (DCP_ASSERT) what holds between events, whatever peers sent:
  /// the ring lists every member once, this one at its position; a decided
  /// round has a leader; it never takes itself as down; what it keeps for a
  /// re-send went to another member. O(N); for tests and the simulator.
  void check_invariants() const {
    DCP_ASSERT(ring_.size() == group_.size() && position_ < ring_.size() && ring_[position_] == rank_,
               "chang_roberts: the ring lost a member or this node's place");
    DCP_ASSERT(!decided_ || leader_.get(), "chang_roberts: a round decided without a leader");
    DCP_ASSERT(!down_.contains(rank_) && (down_.empty() || *down_.rbegin() < group_.size()),
               "chang_roberts: itself, or a non-member, taken as down");
    DCP_ASSERT(sent_.empty() || (sent_to_ < group_.size()), "chang_roberts: messages kept for no successor");
  }

  void on_message(const address& from, const chang_roberts_msg::election& m) {
    if (!group_.contains(from) || m.candidate >= group_.size()) return env_.count("malformed");
    if (!current(from, m.round)) return;
    if (decided_ && leader_.get() && m.candidate > *group_.rank_of(*leader_.get())) {
      // A candidate above the leader this round elected was down (skipped)
      // when it ran: it is back, and it takes a new round to hear it.
      env_.count("member_returned");
      next_round(round_ + 1);
      participant_ = true;
      return forward(chang_roberts_msg::election{round_, std::max<std::uint64_t>(m.candidate, rank_)});
    }
    if (m.candidate > rank_) {
      participant_ = true;
      // A candidate this node skips as crashed can never see its id come
      // back: forwarded, the message would circle the live nodes for ever.
      // Drop it and stand in its place, as a non-participant does for a
      // smaller id (each such drop starts at most one candidacy).
      if (skipped(m.candidate)) {
        env_.count("candidate_skipped");
        return forward(chang_roberts_msg::election{round_, rank_});
      }
      forward(m);
    } else if (m.candidate < rank_) {
      if (participant_ || decided_) return env_.count("swallowed");
      participant_ = true;
      forward(chang_roberts_msg::election{round_, rank_});
    } else {  // our id went all the way round: nobody is larger
      decide(rank_);
      forward(chang_roberts_msg::elected{round_, rank_});
    }
  }
  void on_message(const address& from, const chang_roberts_msg::elected& m) {
    if (!group_.contains(from) || m.leader >= group_.size()) return env_.count("malformed");
    const bool standing = participant_ && m.round > round_;
    if (!current(from, m.round)) return;
    decide(m.leader);
    if (standing) {  // this node's candidacy was of an older round: it stands again, in the next one
      env_.count("candidacy_overtaken");
      return start_election();
    }
    // It stops at the leader's predecessor, or here if the leader is among
    // the crashed members this node skips (else it would circle for ever).
    if (m.leader != rank_ && successor() != m.leader && !skipped(m.leader)) forward(m);
  }
  void on_unreachable(const address& peer) {
    auto r = group_.rank_of(peer);
    if (!r || *r == rank_) return;
    down_.insert(*r);
    if (sent_to_ != *r) return;
    // What we sent it was lost with it: send it to the next live member.
    auto again = std::exchange(sent_, {});
    for (auto& m : again) std::visit([this](auto& x) { this->forward(x); }, m);
  }

 private:
  using message = std::variant<chang_roberts_msg::election, chang_roberts_msg::elected>;
  /// Messages of older rounds are stale (a reordered ELECTION arriving after
  /// its round's ELECTED would otherwise start a needless new round). Their
  /// sender is behind (a node sends only messages of its own round): it is
  /// told this round's outcome, once decided.
  bool current(const address& from, std::uint64_t round) {
    if (round < round_) {
      env_.count("stale_round");
      if (decided_ && leader_.get())
        env_.send(from, chang_roberts_msg::elected{round_, *group_.rank_of(*leader_.get())});
      return false;
    }
    if (round > round_) next_round(round);
    return true;
  }
  void next_round(std::uint64_t round) {
    round_ = round;
    participant_ = false;
    decided_ = false;
    sent_.clear();
    down_.clear();
  }
  void decide(std::size_t leader) {
    participant_ = false;
    decided_ = true;
    leader_.set(group_.member(leader));
  }
  std::size_t successor() const {
    for (std::size_t k = 1; k < ring_.size(); ++k) {
      const auto r = ring_[(position_ + k) % ring_.size()];
      if (!down_.contains(r)) return r;
    }
    return rank_;
  }
  /// Is rank r one of the members this node skips, as crashed, to reach its successor?
  bool skipped(std::size_t r) const {
    const auto next = successor();
    for (std::size_t k = 1; k < ring_.size(); ++k) {
      const auto at = ring_[(position_ + k) % ring_.size()];
      if (at == next) return false;
      if (at == r) return true;
    }
    return false;
  }
  template <class M> void forward(const M& m) {
    const auto next = successor();
    if (next != sent_to_) sent_.clear();
    sent_to_ = next;
    sent_.push_back(m);
    if (next == rank_) {  // alone in the ring: our own id is the largest
      if constexpr (std::is_same_v<M, chang_roberts_msg::election>) decide(rank_);
      return;
    }
    env_.send(group_.member(next), m);
  }

  E env_;
  G group_;
  std::vector<std::size_t> ring_;
  std::size_t rank_ = 0, position_ = 0;
  bool elect_on_start_ = false;
  bool participant_ = false, decided_ = false;
  std::uint64_t round_ = 0;
  detail::leader_slot leader_;
  std::set<std::size_t> down_;  // members reported unreachable in this round
  std::size_t sent_to_ = static_cast<std::size_t>(-1);
  std::vector<message> sent_;  ///< what the current successor was sent, for a re-send if it dies
};

}  // namespace dcp::election
