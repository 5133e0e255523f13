#pragma once
// Anti-entropy: periodic push-pull reconciliation of a replicated set of
// messages (Demers et al., "Epidemic algorithms for replicated database
// maintenance", PODC 1987).
//
//   every `period`  a node sends a digest (id, retired?) of everything it holds
//                   to one random neighbour;
//   the neighbour   answers with the items the digest lacks or holds in an
//                   older state, and asks for the ones it lacks itself;
//   the node        sends what was asked for.
//
// A message is delivered once, when it first arrives alive. Removal spreads
// as a death certificate (retire(id)): it beats a live copy everywhere and
// expires after `certificate_ttl`, when its id is forgotten. A node that stays
// away longer than that may bring an expired message back and deliver it
// again: choose the ttl above the longest absence you tolerate.
//
// Used alone it is a slow but sure broadcast (every node converges in
// O(log N) rounds while the overlay is connected); beside Plumtree or eager
// push it repairs whatever they missed. Memory and digest size grow with the
// number of live messages, bounded by `max_items`.
//
// Hostile input (a peer may send anything): the store, death certificates
// included, holds at most `max_items` ids (a certificate for an id not held is
// refused when full: "certificates_refused_full"); a `wanted` list is answered
// once per distinct id ("wanted_duplicates" counts the repeats, which would
// otherwise multiply one payload into a reply of gigabytes); and no reply
// carries more than `max_reply_bytes` of items ("reply_truncated": what is
// left out follows in later rounds, as the digests still differ).
//
// Amplification (issue 11). A digest of a few bytes from a peer that holds
// nothing is rightly answered with everything it lacks, so the answer cannot
// be bounded by the request's size without starving a newcomer; it is bounded
// by rate instead. All answers together (to digests and to wanted lists)
// carry at most `max_answer_bytes_per_period` of items per period
// ("answer_budget_exhausted" when one is cut short; what is left out follows
// in later rounds). In steady state a node answers about one digest and one
// wanted list per period (each node sends one digest per period to a random
// neighbour), so the default, four full replies, leaves room for the peers
// that pick the same node, and a flood of digests draws at most that much.
// Digests and updates are taken only from peers the membership admits
// ("not_member"), so a process outside the overlay draws nothing and plants
// nothing.
#include <algorithm>
#include <map>
#include <string_view>
#include <utility>
#include <vector>

#include "dcp/core/assert.hpp"
#include "dcp/core/env.hpp"
#include "dcp/core/error.hpp"
#include "dcp/gossip/broadcast.hpp"
#include "dcp/membership/membership.hpp"
#include "dcp/wire/message.hpp"

namespace dcp::gossip {

struct anti_entropy_config {
  duration period = 1s;
  duration certificate_ttl = 60s;
  std::size_t max_items = 4096;
  std::size_t max_payload = 1 << 16;
  std::size_t max_reply_bytes = 1 << 20;  ///< items in one update; at least max_payload, below the frame limit
  /// Item bytes all answers together may carry per period (see the header).
  std::size_t max_answer_bytes_per_period = 4 << 20;

  void validate() const {
    if (period <= duration::zero() || certificate_ttl <= duration::zero())
      throw error(errc::invalid_config, "anti_entropy: period and certificate_ttl must be > 0");
    if (max_items == 0) throw error(errc::invalid_config, "anti_entropy: max_items must be > 0");
    if (max_reply_bytes < max_payload)
      throw error(errc::invalid_config, "anti_entropy: max_reply_bytes must hold one max_payload item");
    if (max_answer_bytes_per_period < max_reply_bytes)
      throw error(errc::invalid_config, "anti_entropy: max_answer_bytes_per_period must hold one full reply");
  }
};

namespace anti_entropy_msg {
struct item {
  message_id id = 0;
  bool retired = false;
  std::int64_t ttl_ns = 0;  ///< certificates: time left before they expire
  bytes payload;            ///< live items only
  template <class A> void serialize(A& ar) { ar(id, retired, ttl_ns, payload); }
};
struct digest {
  static constexpr message_type wire_id = 1;
  static constexpr std::string_view wire_name = "digest";
  std::vector<std::pair<message_id, bool>> entries;  ///< (id, retired)
  template <class A> void serialize(A& ar) { ar(entries); }
};
struct update {
  static constexpr message_type wire_id = 2;
  static constexpr std::string_view wire_name = "update";
  std::vector<item> items;
  std::vector<message_id> wanted;  ///< what the sender lacks (push-pull); empty in the last step
  template <class A> void serialize(A& ar) { ar(items, wanted); }
};
}  // namespace anti_entropy_msg

template <Env E, class Membership> class anti_entropy {
  static_assert(membership::Membership<Membership>,
                "dcp: anti_entropy<Env, M> needs M to model dcp::membership::Membership (neighbours(), sample(k), "
                "on_neighbour_up(f), on_neighbour_down(f)), e.g. dcp::membership::hyparview<Env>");

 public:
  using messages = wire::message_set<anti_entropy_msg::digest, anti_entropy_msg::update>;
  /// What it counts (env.count), declared: dcp/core/counter_set.hpp.
  static constexpr auto counters =
      dcp::join(deliver_own_counters,
                dcp::counter_set{{"not_member", "bad_digest", "bad_update", "wanted_duplicates",
                                  "answer_budget_exhausted", "reply_truncated", "bad_item", "certificates_refused_full",
                                  "items_refused_full", "retired", "delivered"}});
  static constexpr std::string_view name = "anti_entropy";
  static constexpr protocol_id default_id = 22;

  anti_entropy(E env, Membership& m, anti_entropy_config cfg = {}) : env_(std::move(env)), membership_(m), cfg_(cfg) {
    cfg_.validate();
  }

  void start() {
    timer_.start(env_, cfg_.period, [this] { round(); });
  }

  message_id broadcast(byte_view payload) {
    if (payload.size() > cfg_.max_payload)
      throw error(errc::invalid_argument, "anti_entropy::broadcast: payload larger than max_payload");
    if (items_.size() >= cfg_.max_items)
      throw error(errc::busy, "anti_entropy::broadcast: max_items live messages held; retire some first");
    message_id id = 0;
    while (id == 0 || items_.contains(id)) id = env_.rng()();
    items_[id] = entry{bytes(payload.begin(), payload.end()), false, {}};
    deliver_own(env_, deliver_, id, bytes(payload.begin(), payload.end()));
    return id;
  }
  void on_deliver(deliver_callback f) { deliver_ = std::move(f); }

  /// Removes message `id` everywhere: a death certificate replaces it.
  /// Throws errc::busy when `id` is not held and max_items ids are (certificates count against max_items).
  void retire(message_id id) {
    if (!kill(id, env_.now() + cfg_.certificate_ttl))
      throw error(errc::busy, "anti_entropy::retire: max_items ids held; a certificate needs room too");
  }

  bool holds(message_id id) const {
    auto it = items_.find(id);
    return it != items_.end() && !it->second.retired;
  }
  bool retired(message_id id) const {
    auto it = items_.find(id);
    return it != items_.end() && it->second.retired;
  }
  std::size_t size() const noexcept { return items_.size(); }

  /// Asserts (DCP_ASSERT) what holds of the store between events, whatever
  /// peers sent: at most max_items ids, certificates included, never id 0;
  /// a live item within max_payload, a certificate with no payload and
  /// expiring within certificate_ttl from now; this period's answers within
  /// their byte budget. O(items); for tests and the simulator.
  void check_invariants() const {
    DCP_ASSERT(items_.size() <= cfg_.max_items, "anti_entropy: more ids held than max_items");
    DCP_ASSERT(!items_.contains(0), "anti_entropy: id 0 (never a message's) held");
    const time_point now = env_.now();
    for (const auto& kv : items_) {
      const entry& e = kv.second;
      if (e.retired) {
        DCP_ASSERT(e.payload.empty(), "anti_entropy: a death certificate that kept its payload");
        DCP_ASSERT(e.expires <= now + cfg_.certificate_ttl, "anti_entropy: a certificate outliving certificate_ttl");
      } else {
        DCP_ASSERT(e.payload.size() <= cfg_.max_payload, "anti_entropy: a live item larger than max_payload");
      }
    }
    DCP_ASSERT(answered_bytes_ <= cfg_.max_answer_bytes_per_period,
               "anti_entropy: this period's answers exceeded max_answer_bytes_per_period");
  }

  void on_message(const address& from, const anti_entropy_msg::digest& m) {
    if (!membership::admits(membership_, from)) return env_.count("not_member");
    if (m.entries.size() > 2 * cfg_.max_items) return env_.count("bad_digest");
    anti_entropy_msg::update reply;
    std::map<message_id, bool> theirs(m.entries.begin(), m.entries.end());
    const time_point now = env_.now();
    answer_budget budget(*this);
    for (auto& [id, e] : items_) {
      if (e.retired && e.expires <= now) continue;  // expired: not worth spreading
      auto it = theirs.find(id);
      if ((it == theirs.end() || (e.retired && !it->second)) && !add_within(reply, id, e, budget)) break;
    }
    for (auto& [id, dead] : theirs) {
      auto it = items_.find(id);
      if (it == items_.end() || (dead && !it->second.retired)) reply.wanted.push_back(id);
    }
    if (!reply.items.empty() || !reply.wanted.empty()) env_.send(from, reply);
  }

  void on_message(const address& from, const anti_entropy_msg::update& m) {
    if (!membership::admits(membership_, from)) return env_.count("not_member");
    if (m.items.size() > 2 * cfg_.max_items || m.wanted.size() > 2 * cfg_.max_items) return env_.count("bad_update");
    for (auto& it : m.items) absorb(from, it);
    if (m.wanted.empty()) return;
    anti_entropy_msg::update answer;
    std::vector<message_id> wanted = m.wanted;
    std::sort(wanted.begin(), wanted.end());
    const auto distinct = std::unique(wanted.begin(), wanted.end());
    if (auto repeats = wanted.end() - distinct; repeats > 0) env_.count("wanted_duplicates", repeats);
    wanted.erase(distinct, wanted.end());
    answer_budget budget(*this);
    for (auto id : wanted)
      if (auto it = items_.find(id); it != items_.end() && !add_within(answer, id, it->second, budget)) break;
    if (!answer.items.empty()) env_.send(from, answer);
  }

 private:
  struct entry {
    bytes payload;
    bool retired = false;
    time_point expires{};
  };

  anti_entropy_msg::item item_of(message_id id, const entry& e) const {
    if (e.retired) return {id, true, std::max<std::int64_t>(0, (e.expires - env_.now()).count()), {}};
    return {id, false, 0, e.payload};
  }

  /// The bytes one answer may still carry: max_reply_bytes, and what is
  /// left of this period's max_answer_bytes_per_period. What the answer
  /// uses is taken from the period's budget when it is destroyed.
  class answer_budget {
   public:
    explicit answer_budget(anti_entropy& a) : a_(a) {
      const time_point now = a_.env_.now();
      if (now - a_.period_start_ >= a_.cfg_.period) {
        a_.period_start_ = now;
        a_.answered_bytes_ = 0;
      }
      const std::size_t left = a_.cfg_.max_answer_bytes_per_period - a_.answered_bytes_;
      rate_bound_ = left < a_.cfg_.max_reply_bytes;
      left_ = std::min(a_.cfg_.max_reply_bytes, left);
    }
    ~answer_budget() { a_.answered_bytes_ += used_; }
    answer_budget(const answer_budget&) = delete;
    answer_budget& operator=(const answer_budget&) = delete;
    /// False (and counted) when `cost` does not fit.
    bool take(std::size_t cost) {
      if (cost > left_) {
        a_.env_.count(rate_bound_ ? "answer_budget_exhausted" : "reply_truncated");
        return false;
      }
      left_ -= cost;
      used_ += cost;
      return true;
    }

   private:
    anti_entropy& a_;
    std::size_t left_ = 0, used_ = 0;
    bool rate_bound_ = false;
  };

  /// Appends item `id` unless it would take the answer past its byte budget.
  bool add_within(anti_entropy_msg::update& reply, message_id id, const entry& e, answer_budget& budget) const {
    if (!budget.take(e.payload.size() + sizeof(anti_entropy_msg::item))) return false;
    reply.items.push_back(item_of(id, e));
    return true;
  }

  void absorb(const address& from, const anti_entropy_msg::item& it) {
    if (it.id == 0 || it.payload.size() > cfg_.max_payload || it.ttl_ns < 0) return env_.count("bad_item");
    if (it.retired) {
      if (it.ttl_ns == 0) return;  // expired on the way
      // Never extend a certificate past our own ttl: a hostile peer must not make one immortal.
      if (!kill(it.id, env_.now() + std::min(duration(it.ttl_ns), cfg_.certificate_ttl)))
        env_.count("certificates_refused_full");
      return;
    }
    if (items_.contains(it.id)) return;
    if (items_.size() >= cfg_.max_items) return env_.count("items_refused_full");
    auto& e = items_[it.id];
    e.payload = it.payload;
    deliver(it.id, from, e.payload);
  }

  /// False when `id` is not held and there is no room for its certificate.
  bool kill(message_id id, time_point expires) {
    auto it = items_.find(id);
    if (it == items_.end()) {
      if (items_.size() >= cfg_.max_items) return false;
      it = items_.emplace(id, entry{}).first;
    } else if (it->second.retired) {
      return true;
    }
    it->second = entry{{}, true, expires};
    env_.count("retired");
    return true;
  }

  void deliver(message_id id, const address& from, const bytes& payload) {
    env_.count("delivered");
    if (deliver_) deliver_({id, from, 0, payload});
  }

  void round() {
    const time_point now = env_.now();
    std::erase_if(items_, [&](const auto& kv) { return kv.second.retired && kv.second.expires <= now; });
    auto peers = membership_.sample(1);
    if (peers.empty()) return;
    anti_entropy_msg::digest d;
    d.entries.reserve(items_.size());
    for (auto& [id, e] : items_) d.entries.emplace_back(id, e.retired);  // expired ones were just purged
    env_.send(peers.front(), d);
  }

  E env_;
  Membership& membership_;
  anti_entropy_config cfg_;
  std::map<message_id, entry> items_;
  deliver_callback deliver_;
  periodic<E> timer_;
  time_point period_start_{};       ///< the answer budget's current period
  std::size_t answered_bytes_ = 0;  ///< item bytes answered in it
};

}  // namespace dcp::gossip
