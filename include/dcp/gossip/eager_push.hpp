#pragma once
// Eager push gossip (flooding with a fanout): a node that delivers a message
// for the first time forwards it at once to `fanout` neighbours drawn from
// its membership, other than the one it came from.
//
// Over HyParView (active view 5, fanout 4) this is the paper's flooding of
// the active view; over Cyclon or a uniform sample it is classic epidemic
// push. Reliability is probabilistic: a message dies out when every copy
// reaches nodes that already have it, and it never reaches a node the overlay
// cannot reach. Costs fanout payloads per node per message (RMR ~ fanout - 1).
//
// A payload is delivered and forwarded only when it comes from a peer the
// membership admits (membership::admits; "gossip_not_member" otherwise), so
// a process outside the overlay cannot inject broadcasts. Payloads are not
// authenticated: a member, or an impostor of one, still can.
#include <string_view>
#include <vector>

#include "dcp/core/env.hpp"
#include "dcp/core/error.hpp"
#include "dcp/gossip/broadcast.hpp"
#include "dcp/gossip/detail/seen_cache.hpp"
#include "dcp/membership/membership.hpp"
#include "dcp/wire/message.hpp"

namespace dcp::gossip {

struct eager_push_config {
  /// Neighbours each node forwards to; 0 means all of them (flooding).
  std::size_t fanout = 4;
  /// Message ids remembered to suppress duplicates (at most once per node
  /// holds while a duplicate arrives before this many newer messages).
  std::size_t seen_capacity = 1 << 16;
  std::size_t max_payload = 1 << 20;

  void validate() const {
    if (seen_capacity == 0) throw error(errc::invalid_config, "eager_push: seen_capacity must be > 0");
  }
};

namespace eager_push_msg {
struct gossip {
  static constexpr message_type wire_id = 1;
  static constexpr std::string_view wire_name = "gossip";
  message_id id = 0;
  std::uint32_t hops = 0;
  bytes payload;
  template <class A> void serialize(A& ar) { ar(id, hops, payload); }
};
}  // namespace eager_push_msg

template <Env E, class Membership> class eager_push {
  static_assert(membership::Membership<Membership>,
                "dcp: eager_push<Env, M> needs M to model dcp::membership::Membership (neighbours(), sample(k), "
                "on_neighbour_up(f), on_neighbour_down(f)), e.g. dcp::membership::hyparview<Env>");

 public:
  using messages = wire::message_set<eager_push_msg::gossip>;
  /// What it counts (env.count), declared: dcp/core/counter_set.hpp.
  static constexpr auto counters =
      dcp::join(deliver_own_counters, dcp::counter_set{{"gossip_not_member", "bad_gossip", "duplicates", "delivered"}});
  static constexpr std::string_view name = "eager_push";
  static constexpr protocol_id default_id = 20;

  eager_push(E env, Membership& m, eager_push_config cfg = {})
      : env_(std::move(env)), membership_(m), cfg_(cfg), seen_((cfg_.validate(), cfg_.seen_capacity)) {}

  message_id broadcast(byte_view payload) {
    if (payload.size() > cfg_.max_payload)
      throw error(errc::invalid_argument, "eager_push::broadcast: payload larger than max_payload");
    message_id id = 0;
    while (id == 0 || seen_.contains(id)) id = env_.rng()();
    seen_.insert(id);
    eager_push_msg::gossip g{id, 0, bytes(payload.begin(), payload.end())};
    forward(g, env_.self());
    deliver_own(env_, deliver_, id, std::move(g.payload));
    return id;
  }
  void on_deliver(deliver_callback f) { deliver_ = std::move(f); }

  void on_message(const address& from, const eager_push_msg::gossip& m) {
    if (!membership::admits(membership_, from)) return env_.count("gossip_not_member");
    if (m.payload.size() > cfg_.max_payload) return env_.count("bad_gossip");
    if (!seen_.insert(m.id)) return env_.count("duplicates");
    deliver({m.id, from, m.hops, m.payload});
    forward(m, from);
  }

  bool delivered(message_id id) const { return seen_.contains(id); }
  /// Asserts (DCP_ASSERT) what holds between events: the seen cache within
  /// its capacity (eager push keeps no other state). O(1).
  void check_invariants() const { seen_.check_invariants(); }

 private:
  void deliver(const delivery& d) {
    env_.count("delivered");
    if (deliver_) deliver_(d);
  }
  void forward(const eager_push_msg::gossip& m, const address& from) {
    auto targets = membership_.sample(cfg_.fanout ? cfg_.fanout + 1 : std::size_t(-1));
    std::erase(targets, from);
    if (cfg_.fanout && targets.size() > cfg_.fanout) targets.resize(cfg_.fanout);
    eager_push_msg::gossip out{m.id, m.hops + 1, m.payload};
    for (auto& t : targets) env_.send(t, out);
  }

  E env_;
  Membership& membership_;
  eager_push_config cfg_;
  detail::seen_cache seen_;
  deliver_callback deliver_;
};

}  // namespace dcp::gossip
