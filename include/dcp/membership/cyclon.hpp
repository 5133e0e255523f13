#pragma once
// Cyclon (Voulgaris, Gavidia, van Steen, J. Network Syst. Manage. 2005): a
// partial view of c (address, age) entries renewed by age-based shuffles.
//
//   round          every `shuffle_period` a node ages every entry by one,
//                  picks the oldest, Q, takes it out of its view, and sends Q
//                  l - 1 random entries plus itself with age 0.
//   answer         Q sends back l random entries of its own and merges what
//                  it got: entries for itself or already known are skipped,
//                  empty slots are used first, then the slots of the entries
//                  it sent away.
//   failure        a dead Q simply never answers: it left the initiator's view
//                  when it was picked, so dead entries vanish as they age.
//   join           the contact launches c random walks of `join_ttl` hops; the
//                  node where each ends swaps one of its entries for the joiner
//                  and gives the entry it gave up to the joiner. In-degrees stay
//                  balanced.
//
// Unlike HyParView, links are one-way and unacknowledged: a neighbour may be
// long dead. Defaults give Cyclon the state HyParView keeps (5 + 30 entries)
// so the two compare fairly; the shuffle length is 40% of the view.
//
// Hostile input: a shuffle reply is merged only from the peer this node is
// waiting for ("late_shuffle_reply" otherwise), and a JOIN_SWAP (which
// replaces a random entry) only within `join_window` of this node's own join
// and at most view_size of them, one per walk its contact launched
// ("join_swap_unsolicited" otherwise). Walks end at nodes the joiner cannot
// name, so the window, not the sender, is what can be checked.
#include <algorithm>
#include <cstdint>
#include <limits>
#include <string_view>
#include <vector>

#include "dcp/core/address.hpp"
#include "dcp/core/assert.hpp"
#include "dcp/core/env.hpp"
#include "dcp/core/error.hpp"
#include "dcp/membership/detail/distinct.hpp"
#include "dcp/membership/membership.hpp"
#include "dcp/wire/message.hpp"

namespace dcp::membership {

struct cyclon_config {
  std::size_t view_size = 35;       ///< c
  std::size_t shuffle_length = 14;  ///< l
  std::uint8_t join_ttl = 5;        ///< hops of each join walk
  duration shuffle_period = 1s;     ///< one membership round
  address contact{};                ///< joined through on start(); empty for the first node
  duration join_window = 5s;        ///< how long after a join its walks' JOIN_SWAPs are taken

  void validate() const {
    if (view_size < 1) throw error(errc::invalid_config, "cyclon: view_size must be >= 1");
    if (shuffle_length < 1 || shuffle_length > view_size)
      throw error(errc::invalid_config, "cyclon: shuffle_length must be in [1, view_size]");
    if (shuffle_period <= duration::zero() || join_window <= duration::zero())
      throw error(errc::invalid_config, "cyclon: shuffle_period and join_window must be > 0");
  }
};

namespace cyclon_msg {
struct entry {
  address addr;
  std::uint16_t age = 0;
  template <class A> void serialize(A& ar) { ar(addr, age); }
};
struct shuffle {
  static constexpr message_type wire_id = 1;
  static constexpr std::string_view wire_name = "shuffle";
  std::vector<entry> entries;
  template <class A> void serialize(A& ar) { ar(entries); }
};
struct shuffle_reply {
  static constexpr message_type wire_id = 2;
  static constexpr std::string_view wire_name = "shuffle_reply";
  std::vector<entry> entries;
  template <class A> void serialize(A& ar) { ar(entries); }
};
struct join {
  static constexpr message_type wire_id = 3;
  static constexpr std::string_view wire_name = "join";
  template <class A> void serialize(A&) {}
};
struct join_walk {
  static constexpr message_type wire_id = 4;
  static constexpr std::string_view wire_name = "join_walk";
  address joiner;
  std::uint8_t ttl = 0;
  template <class A> void serialize(A& ar) { ar(joiner, ttl); }
};
/// The entry a walk's last node gave up for the joiner.
struct join_swap {
  static constexpr message_type wire_id = 5;
  static constexpr std::string_view wire_name = "join_swap";
  entry given;
  template <class A> void serialize(A& ar) { ar(given); }
};
}  // namespace cyclon_msg

template <Env E> class cyclon {
 public:
  using messages = wire::message_set<cyclon_msg::shuffle, cyclon_msg::shuffle_reply, cyclon_msg::join,
                                     cyclon_msg::join_walk, cyclon_msg::join_swap>;
  /// What it counts (env.count), declared: dcp/core/counter_set.hpp.
  static constexpr dcp::counter_set counters{{"bad_shuffle", "bad_shuffle_reply", "late_shuffle_reply", "bad_join",
                                              "bad_join_walk", "join_swap_unsolicited", "neighbour_failed",
                                              "join_retries", "shuffles"}};
  using entry = cyclon_msg::entry;
  using config_type = cyclon_config;
  static constexpr std::string_view name = "cyclon";
  static constexpr protocol_id default_id = 12;

  explicit cyclon(E env, cyclon_config cfg = {}) : env_(std::move(env)), cfg_(cfg) { cfg_.validate(); }

  void start() {
    const auto phase = duration(1 + static_cast<std::int64_t>(env_.rng().below(cfg_.shuffle_period.count())));
    rounds_.start(
        env_, cfg_.shuffle_period, [this] { round(); }, phase);
    if (cfg_.contact) join(cfg_.contact);
  }

  /// Joins through `contact`; retried every round while the view is empty.
  void join(const address& contact) {
    if (contact.empty()) throw error(errc::invalid_argument, "cyclon::join: empty contact address");
    contact_ = contact;
    if (contact == env_.self()) return;
    join_swaps_left_ = cfg_.view_size;
    join_swaps_until_ = env_.now() + cfg_.join_window;
    // The contact is a first entry for a node that knows nobody; a full view
    // (join() called again) has no slot for it, and the walks bring entries.
    if (!knows(contact) && view_.size() < cfg_.view_size) add({contact, 0});
    env_.send(contact, cyclon_msg::join{});
  }

  // ---- Membership ----
  std::vector<address> neighbours() const {
    std::vector<address> out;
    out.reserve(view_.size());
    for (auto& e : view_) out.push_back(e.addr);
    return out;
  }
  std::vector<address> sample(std::size_t k) {
    auto out = neighbours();
    out.resize(env_.rng().sample(std::span<address>(out), k).size());
    return out;
  }
  void on_neighbour_up(neighbour_callback f) { events_.on_up(std::move(f)); }
  void on_neighbour_down(neighbour_callback f) { events_.on_down(std::move(f)); }

  const std::vector<entry>& view() const noexcept { return view_; }
  bool knows(const address& a) const noexcept { return find(a) != view_.end(); }
  /// Any sender: Cyclon's views are directed (Voulgaris et al. 2005), so a
  /// node is pushed to by peers whose views hold it, which it cannot know; it
  /// cannot tell a member from a stranger. Protocols that must believe only
  /// members should run over HyParView, SWIM or a static group.
  bool admits(const address&) const noexcept { return true; }
  const cyclon_config& config() const noexcept { return cfg_; }

  /// Asserts (DCP_ASSERT) what holds of this node's state between events,
  /// whatever its peers sent: the view bounded by view_size, free of this
  /// node, of empty addresses and of duplicates; the outstanding shuffle's
  /// record (what was sent, to whom) consistent and bounded; the join-swap
  /// budget within a join's. O(view log view); for tests and the simulator.
  void check_invariants() const {
    DCP_ASSERT(view_.size() <= cfg_.view_size, "cyclon: the view exceeds view_size");
    auto peers = neighbours();
    for (auto& a : peers) DCP_ASSERT(!a.empty() && a != env_.self(), "cyclon: the view holds this node or nobody");
    DCP_ASSERT(detail::distinct(peers), "cyclon: a peer is twice in the view");
    DCP_ASSERT(sent_.size() < cfg_.shuffle_length, "cyclon: a shuffle sent more than shuffle_length - 1 entries");
    DCP_ASSERT(sent_.empty() || !awaiting_.empty(), "cyclon: a record of entries sent without the peer awaited");
    DCP_ASSERT(awaiting_ != env_.self(), "cyclon: awaiting a shuffle reply from this node");
    DCP_ASSERT(join_swaps_left_ <= cfg_.view_size, "cyclon: more join swaps expected than a join's walks");
  }

  // ---- messages ----
  void on_message(const address& from, const cyclon_msg::shuffle& m) {
    if (m.entries.size() > cfg_.shuffle_length || from == env_.self()) return env_.count("bad_shuffle");
    std::vector<entry> reply = view_;
    reply.resize(env_.rng().sample(std::span<entry>(reply), cfg_.shuffle_length).size());
    env_.send(from, cyclon_msg::shuffle_reply{reply});
    merge(m.entries, reply);
  }
  void on_message(const address& from, const cyclon_msg::shuffle_reply& m) {
    if (m.entries.size() > cfg_.shuffle_length) return env_.count("bad_shuffle_reply");
    if (from != awaiting_) return env_.count("late_shuffle_reply");  // its slots were reused since
    awaiting_ = {};
    merge(m.entries, sent_);
    sent_.clear();
  }
  void on_message(const address& from, const cyclon_msg::join&) {
    if (from == env_.self()) return env_.count("bad_join");
    // c walks, each through a random neighbour; with no neighbour, take it in directly.
    if (view_.empty()) {
      add({from, 0});
      env_.send(from, cyclon_msg::join_swap{entry{env_.self(), 0}});
      return;
    }
    for (std::size_t i = 0; i < cfg_.view_size; ++i)
      env_.send(view_[env_.rng().below(view_.size())].addr, cyclon_msg::join_walk{from, cfg_.join_ttl});
  }
  void on_message(const address& from, const cyclon_msg::join_walk& m) {
    if (m.joiner.empty() || m.joiner == env_.self()) return env_.count("bad_join_walk");
    std::vector<address> next;
    for (auto& e : view_)
      if (e.addr != from && e.addr != m.joiner) next.push_back(e.addr);
    if (m.ttl > 1 && !next.empty()) {
      env_.send(next[env_.rng().below(next.size())],
                cyclon_msg::join_walk{m.joiner, static_cast<std::uint8_t>(m.ttl - 1)});
      return;
    }
    if (knows(m.joiner)) return;
    if (view_.size() < cfg_.view_size) {
      add({m.joiner, 0});
      env_.send(m.joiner, cyclon_msg::join_swap{entry{env_.self(), 0}});
      return;
    }
    // Full: swap an entry for the joiner, one other than the walk's sender
    // if there is one (with view_size 1 the sender may be the only entry).
    if (next.empty()) next.push_back(from);
    const auto victim = next[env_.rng().below(next.size())];
    const entry given = *find(victim);
    remove(victim);
    add({m.joiner, 0});
    env_.send(m.joiner, cyclon_msg::join_swap{given});
  }
  void on_message(const address&, const cyclon_msg::join_swap& m) {
    if (join_swaps_left_ == 0 || env_.now() > join_swaps_until_) return env_.count("join_swap_unsolicited");
    --join_swaps_left_;
    if (m.given.addr.empty() || m.given.addr == env_.self()) return;
    if (knows(m.given.addr)) return;
    if (view_.size() >= cfg_.view_size) remove(view_[env_.rng().below(view_.size())].addr);
    add(m.given);
  }

  /// The transport gave up on `peer`: forget it.
  void on_unreachable(const address& peer) {
    if (knows(peer)) {
      env_.count("neighbour_failed");
      remove(peer);
    }
  }

 private:
  typename std::vector<entry>::const_iterator find(const address& a) const noexcept {
    return std::find_if(view_.begin(), view_.end(), [&](const entry& e) { return e.addr == a; });
  }
  void add(const entry& e) {
    view_.push_back(e);
    events_.up(e.addr);
  }
  void remove(const address& a) {
    auto it = find(a);
    if (it == view_.end()) return;
    view_.erase(it);
    events_.down(a);
  }

  void round() {
    if (view_.empty()) {
      if (contact_ && contact_ != env_.self()) {
        env_.count("join_retries");
        join(contact_);
      }
      return;
    }
    for (auto& e : view_)
      if (e.age < std::numeric_limits<std::uint16_t>::max()) ++e.age;
    const auto oldest = std::max_element(view_.begin(), view_.end(), [](auto& a, auto& b) { return a.age < b.age; });
    const address q = oldest->addr;
    remove(q);
    std::vector<entry> others = view_;
    others.resize(env_.rng().sample(std::span<entry>(others), cfg_.shuffle_length - 1).size());
    sent_ = others;
    others.push_back({env_.self(), 0});
    awaiting_ = q;
    env_.count("shuffles");
    env_.send(q, cyclon_msg::shuffle{std::move(others)});
  }

  /// Cyclon's merge: skip self and known entries, fill empty slots, then
  /// overwrite the entries that were sent to the peer.
  void merge(const std::vector<entry>& got, const std::vector<entry>& sent) {
    std::vector<address> replaceable;
    for (auto& s : sent)
      if (knows(s.addr)) replaceable.push_back(s.addr);
    for (auto& e : got) {
      if (e.addr.empty() || e.addr == env_.self() || knows(e.addr)) continue;
      if (view_.size() >= cfg_.view_size) {
        if (replaceable.empty()) break;
        remove(replaceable.back());
        replaceable.pop_back();
      }
      add(e);
    }
  }

  E env_;
  cyclon_config cfg_;
  std::vector<entry> view_;
  std::vector<entry> sent_;
  address awaiting_{};
  address contact_{};
  std::size_t join_swaps_left_ = 0;  ///< JOIN_SWAPs still expected from this node's last join
  time_point join_swaps_until_{};
  neighbour_events events_;
  periodic<E> rounds_;
};

}  // namespace dcp::membership
