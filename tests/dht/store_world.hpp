#pragma once
// A simulated overlay of any Router with a dht::store on every node, and
// calls that wait for the store's answer: what the store tests share
// (test_store.cpp, test_signed_values.cpp).
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <system_error>
#include <utility>

#include <doctest/doctest.h>

#include "harness.hpp"

namespace dht_test {

/// Each router's settings, quick enough for a simulated overlay to settle in seconds.
template <class R> struct router_setup;
template <> struct router_setup<dht::chord<sim::env>> {
  static dht::chord_config config() {
    dht::chord_config c;
    c.stabilize_interval = 200ms;
    c.fix_fingers_interval = 100ms;
    c.check_predecessor_interval = 300ms;
    c.rpc_timeout = 150ms;
    c.successors = 6;
    return c;
  }
};
template <> struct router_setup<dht::kademlia<sim::env>> {
  static dht::kademlia_config config() {
    dht::kademlia_config c;
    c.k = 8;
    c.rpc_timeout = 150ms;
    c.refresh_interval = 10s;
    return c;
  }
};
template <> struct router_setup<dht::pastry<sim::env>> {
  static dht::pastry_config config() {
    dht::pastry_config c;
    c.leaf_set = 8;
    c.rpc_timeout = 150ms;
    c.leaf_interval = 200ms;
    return c;
  }
};
template <> struct router_setup<dht::tapestry<sim::env>> {
  static dht::tapestry_config config() {
    dht::tapestry_config c;
    c.rpc_timeout = 150ms;
    c.maintain_interval = 200ms;
    c.failure_threshold = 5;
    return c;
  }
};

/// `n` nodes joined one by one (30 ms apart), then 15 s to settle, each with
/// a store of verifier `V`.
template <class R, class V = dht::no_signatures> struct store_world {
  using S = dht::store<sim::env, R, V>;
  static constexpr protocol_id sid = S::default_id;
  overlay<R, decltype(router_setup<R>::config())> o;
  dht::store_config scfg;

  /// `silent`: crashed nodes are found by timeouts only (no transport error).
  store_world(std::uint64_t seed, std::size_t n, dht::store_config sc = fast_store(), double loss = 0.0,
              bool silent = false)
      : o(seed, router_setup<R>::config(), network(loss, silent)), scfg(sc) {
    o.extra = [this](sim::node_context& ctx, R& r) { ctx.add<S>(sid, r, scfg); };
    o.add(1);
    for (std::size_t i = 1; i < n; ++i) {
      o.world.run_for(30ms);
      o.add(1);
    }
    o.world.run_for(15s);
  }
  static sim::config network(double loss, bool silent) {
    sim::config c = decltype(o)::lossy(loss);
    c.report_unreachable = !silent;
    return c;
  }
  /// Three replicas that answer within 2 s and sync every second.
  static dht::store_config fast_store() {
    dht::store_config c;
    c.replicas = 3;
    c.request_timeout = 2s;
    c.sync_interval = 1s;
    return c;
  }
  S& at(sim::node_index i) { return o.world.template get<S>(i, sid); }
  sim::node_index any() {
    auto l = o.live();
    return l[o.world.rng().below(l.size())];
  }
  std::pair<std::error_code, std::uint64_t> put(sim::node_index from, const std::string& k, const std::string& v,
                                                duration ttl = std::chrono::minutes(10)) {
    std::optional<std::pair<std::error_code, std::uint64_t>> out;
    at(from).put(k, to_bytes(v), ttl, [&](dcp::result<std::uint64_t> r) { out.emplace(r.error(), r ? *r : 0); });
    o.world.run_until([&] { return out.has_value(); }, o.world.now() + 30s);
    REQUIRE(out);
    return *out;
  }
  std::pair<std::error_code, std::string> get(sim::node_index from, const std::string& k) {
    std::optional<std::pair<std::error_code, std::string>> out;
    at(from).get(k, [&](dcp::result<dht::stored_value> r) {
      out.emplace(r.error(), r ? std::string(as_string(r->value)) : std::string{});
    });
    o.world.run_until([&] { return out.has_value(); }, o.world.now() + 30s);
    REQUIRE(out);
    return *out;
  }
  std::error_code remove(sim::node_index from, const std::string& k) {
    std::optional<std::error_code> out;
    at(from).remove(k, [&](const dcp::result<std::uint64_t>& r) { out = r.error(); });
    o.world.run_until([&] { return out.has_value(); }, o.world.now() + 30s);
    REQUIRE(out);
    return *out;
  }
};

}  // namespace dht_test
