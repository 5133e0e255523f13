#pragma once
// Search in an unstructured overlay (Lv, Cao, Cohen, Li, Shenker, ICS 2002):
// find a node holding a key when r of the N nodes hold it and nothing says
// which.
//
//   random walks   k walkers leave the origin; each step a walker moves to a
//                  random neighbour (not the one it came from, when there is
//                  another) until it meets a holder or its TTL runs out.
//                  Expected probes about N / r for one walker; k walkers cut
//                  the delay by about k at the same message cost.
//   flooding       the query goes to every neighbour but the sender, each
//                  node forwarding it once (duplicates suppressed by query id),
//                  until the TTL runs out: d(d-1)^(k-1) new nodes at hop k on a
//                  tree-like d-regular overlay, so cost grows exponentially
//                  with the TTL and duplicates dominate once it exceeds the
//                  overlay's diameter.
//
// A holder answers the origin directly (HIT). The origin calls the user's
// callback once: with the first hit, or with errc::timed_out after
// `query_timeout` when no walker or flood found a holder (the key may still
// exist: both methods are probabilistic and bounded by their TTL).
//
// Hostile input (issue 11). A query's TTL comes from the message, so every
// node caps it at its own `walk_ttl` / `flood_ttl` ("ttl_capped"): an
// injected walk cannot walk for ever, nor a flood reach further than this
// node's configuration allows. Walks and floods are taken only from peers
// the membership admits ("query_not_member"), so a process outside the
// overlay cannot make members probe, nor have hits sent to an origin of its
// choosing. Hits are matched to an outstanding query by its random 64-bit id.
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <system_error>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "dcp/core/detail/sha1.hpp"
#include "dcp/core/env.hpp"
#include "dcp/core/error.hpp"
#include "dcp/core/result.hpp"
#include "dcp/gossip/detail/seen_cache.hpp"
#include "dcp/membership/membership.hpp"
#include "dcp/wire/message.hpp"

namespace dcp::search {

struct unstructured_config {
  std::uint32_t walkers = 1;      ///< k random walkers per query
  std::uint32_t walk_ttl = 1024;  ///< steps a walker may take
  std::uint32_t flood_ttl = 6;    ///< hops a flood may travel
  duration query_timeout = 30s;
  std::size_t seen_capacity = 1 << 14;  ///< flood query ids remembered per node
  std::size_t max_key = 1024;

  void validate() const {
    if (walkers == 0) throw error(errc::invalid_config, "search: walkers must be >= 1");
    if (walk_ttl == 0 || flood_ttl == 0)
      throw error(errc::invalid_config, "search: walk_ttl and flood_ttl must be >= 1");
    if (query_timeout <= duration::zero()) throw error(errc::invalid_config, "search: query_timeout must be > 0");
  }
};

enum class method : std::uint8_t { random_walk, flooding };

struct search_result {
  address holder;          ///< who has the key
  std::uint32_t hops = 0;  ///< hops the query took to reach it
};
using search_callback = std::function<void(result<search_result>)>;  ///< the hit, or timed_out

namespace search_msg {
struct walk {
  static constexpr message_type wire_id = 1;
  static constexpr std::string_view wire_name = "walk";
  std::uint64_t query = 0;
  std::uint32_t walker = 0;
  address origin;
  std::string key;
  std::uint32_t ttl = 0, hops = 0;
  template <class A> void serialize(A& ar) { ar(query, walker, origin, key, ttl, hops); }
};
struct flood {
  static constexpr message_type wire_id = 2;
  static constexpr std::string_view wire_name = "flood";
  std::uint64_t query = 0;
  address origin;
  std::string key;
  std::uint32_t ttl = 0, hops = 0;
  template <class A> void serialize(A& ar) { ar(query, origin, key, ttl, hops); }
};
struct hit {
  static constexpr message_type wire_id = 3;
  static constexpr std::string_view wire_name = "hit";
  std::uint64_t query = 0;
  std::uint32_t hops = 0;
  template <class A> void serialize(A& ar) { ar(query, hops); }
};
}  // namespace search_msg

template <Env E, class Membership> class unstructured {
  static_assert(membership::Membership<Membership>,
                "dcp: search::unstructured<Env, M> needs M to model dcp::membership::Membership (neighbours(), "
                "sample(k), on_neighbour_up(f), on_neighbour_down(f)), e.g. dcp::membership::hyparview<Env>");

 public:
  using messages = wire::message_set<search_msg::walk, search_msg::flood, search_msg::hit>;
  /// What it counts (env.count), declared: dcp/core/counter_set.hpp.
  static constexpr dcp::counter_set counters{{"bad_query", "query_not_member", "walk_duplicates", "probes",
                                              "walks_expired", "walks_stuck", "flood_duplicates", "ttl_capped"}};
  static constexpr std::string_view name = "search";
  static constexpr protocol_id default_id = 40;

  unstructured(E env, Membership& m, unstructured_config cfg = {})
      : env_(std::move(env)),
        membership_(m),
        cfg_(cfg),
        seen_((cfg_.validate(), cfg_.seen_capacity)),
        walk_steps_(cfg_.seen_capacity) {}
  unstructured(const unstructured&) = delete;
  unstructured& operator=(const unstructured&) = delete;
  ~unstructured() {
    for (auto& [q, p] : pending_) env_.cancel(p.timer);
  }

  /// This node holds `key` from now on.
  void store(std::string key) {
    if (key.size() > cfg_.max_key) throw error(errc::invalid_argument, "search::store: key longer than max_key");
    keys_.insert(std::move(key));
  }
  bool holds(const std::string& key) const { return keys_.contains(key); }

  /// Looks for `key`; `done` is called exactly once (a hit, or timed_out),
  /// after this call has returned.
  /// Returns the query id.
  std::uint64_t find(const std::string& key, method how, search_callback done) {
    if (key.size() > cfg_.max_key) throw error(errc::invalid_argument, "search::find: key longer than max_key");
    const std::uint64_t q = env_.rng()() | 1;
    if (keys_.contains(key)) {  // known at once, answered after the call all the same (DESIGN §10)
      defer(env_, [done = std::move(done), r = search_result{env_.self(), 0}] { done(r); });
      return q;
    }
    auto& p = pending_[q];
    p.done = std::move(done);
    p.timer = env_.arm(cfg_.query_timeout, [this, q] { finish(q, make_error_code(errc::timed_out), {}); });
    if (how == method::random_walk) {
      auto first = membership_.neighbours();
      for (std::uint32_t i = 0; i < cfg_.walkers && !first.empty(); ++i)
        env_.send(first[env_.rng().below(first.size())],
                  search_msg::walk{q, i, env_.self(), key, cfg_.walk_ttl - 1, 1});
    } else {
      seen_.insert(q);
      for (auto& n : membership_.neighbours())
        env_.send(n, search_msg::flood{q, env_.self(), key, cfg_.flood_ttl - 1, 1});
    }
    return q;
  }

  void on_message(const address& from, search_msg::walk m) {
    if (m.key.size() > cfg_.max_key || m.origin.empty()) return env_.count("bad_query");
    if (!membership::admits(membership_, from)) return env_.count("query_not_member");
    m.ttl = capped(m.ttl, cfg_.walk_ttl);
    // A duplicated walker step must not become a second walker: copies
    // multiply by (1 + p) per step and would grow exponentially with the TTL.
    const std::uint64_t step = detail::mix64(m.query ^ (std::uint64_t{m.walker} << 32 | m.ttl));
    if (!walk_steps_.insert(step)) return env_.count("walk_duplicates");
    env_.count("probes");
    if (keys_.contains(m.key)) return (void)env_.send(m.origin, search_msg::hit{m.query, m.hops});
    if (m.ttl == 0) return env_.count("walks_expired");
    auto next = membership_.neighbours();
    if (next.size() > 1) std::erase(next, from);  // do not step straight back unless stuck
    if (next.empty()) return env_.count("walks_stuck");
    env_.send(next[env_.rng().below(next.size())],
              search_msg::walk{m.query, m.walker, m.origin, m.key, m.ttl - 1, m.hops + 1});
  }

  void on_message(const address& from, search_msg::flood m) {
    if (m.key.size() > cfg_.max_key || m.origin.empty()) return env_.count("bad_query");
    if (!membership::admits(membership_, from)) return env_.count("query_not_member");
    m.ttl = capped(m.ttl, cfg_.flood_ttl);
    if (!seen_.insert(m.query)) return env_.count("flood_duplicates");
    env_.count("probes");
    if (keys_.contains(m.key)) env_.send(m.origin, search_msg::hit{m.query, m.hops});
    if (m.ttl == 0) return;
    for (auto& n : membership_.neighbours())
      if (n != from && n != m.origin) env_.send(n, search_msg::flood{m.query, m.origin, m.key, m.ttl - 1, m.hops + 1});
  }

  void on_message(const address& from, const search_msg::hit& m) { finish(m.query, {}, {from, m.hops}); }

  std::size_t pending() const noexcept { return pending_.size(); }

 private:
  struct query {
    search_callback done;
    timer_id timer{};
  };
  /// The TTL a message may carry on from here: no more than this node would give a query of its own.
  std::uint32_t capped(std::uint32_t ttl, std::uint32_t max) {
    if (ttl < max) return ttl;  // a query of our own leaves with max - 1
    if (ttl > max) env_.count("ttl_capped");
    return max - 1;  // max >= 1 (validate)
  }
  void finish(std::uint64_t q, std::error_code ec, const search_result& r) {
    auto it = pending_.find(q);
    if (it == pending_.end()) return;  // answered already: later hits are ignored
    env_.cancel(it->second.timer);
    auto done = std::move(it->second.done);
    pending_.erase(it);
    if (!done) return;
    if (ec)
      done(ec);
    else
      done(r);
  }

  E env_;
  Membership& membership_;
  unstructured_config cfg_;
  gossip::detail::seen_cache seen_;        // flood query ids
  gossip::detail::seen_cache walk_steps_;  // (query, walker, ttl) of walker steps
  std::unordered_set<std::string> keys_;
  std::unordered_map<std::uint64_t, query> pending_;
};

}  // namespace dcp::search
