// Token-based: Suzuki–Kasami and Raymond.
#include "harness.hpp"

namespace test_token {

using namespace dcp;
using sk = mutex::suzuki_kasami<sim::env>;
using ray = mutex::raymond<sim::env>;

TEST_CASE("suzuki_kasami: one holder, all granted; 1000 seeds with reordering") {
  harness::fault_free_property<sk>(mutex::suzuki_kasami_config{}, false);
}
TEST_CASE("suzuki_kasami: a crash loses the token at worst; waiters time out, never two holders") {
  harness::crash_property<sk>(mutex::suzuki_kasami_config{.request_timeout = 2s}, false);
}
TEST_CASE("raymond: one holder, all granted; 1000 seeds on FIFO channels") {
  harness::fault_free_property<ray>(mutex::raymond_config{}, true);
  harness::fault_free_property<ray>(mutex::raymond_config{.arity = 3}, true);
}
TEST_CASE("raymond: a crash on the path makes waiters time out, never two holders") {
  harness::crash_property<ray>(mutex::raymond_config{.request_timeout = 2s}, true);
}

using ring = mutex::token_ring<sim::env>;

namespace {
mutex::token_ring_config ring_config() {
  mutex::token_ring_config c;
  c.token_timeout = 500ms;
  c.pass_delay = 2ms;
  c.retry_interval = 50ms;
  c.request_timeout = 30s;
  return c;
}
}  // namespace

TEST_CASE("token_ring: one holder, all granted; 1000 seeds with reordering and duplicates") {
  harness::fault_free_property<ring>(ring_config(), false, 0.1);
}

TEST_CASE("token_ring: loss, duplication and reordering: the token is regenerated, one holder, all granted") {
  int regenerated = 0;
  for (std::uint64_t seed = 1; seed <= harness::seeds; ++seed) {
    auto net = harness::random_network(nullptr, 0.05);
    net.network.duplicate = 0.05;
    harness::simulator w(seed, net);
    const auto n = static_cast<std::uint32_t>(3 + seed % 6);
    harness::build<ring>(w, n, ring_config());
    auto out = harness::run<ring>(w, ring::default_id, {.nodes = n});
    INFO("seed " << seed);
    REQUIRE(out.max_holders <= 1);
    REQUIRE(out.errors == 0);
    REQUIRE(out.granted == static_cast<int>(n) * 3);
    regenerated += static_cast<int>(w.metrics().counter(ring::default_id, "tokens_regenerated"));
  }
  CHECK(regenerated > 0);  // losses did hit the token, and regeneration healed them
}

TEST_CASE("token_ring: crashes and restarts: one holder at every step, survivors keep being served") {
  for (std::uint64_t seed = 1; seed <= harness::seeds; ++seed) {
    harness::simulator w(seed, harness::random_network(nullptr, 0.02));
    const auto n = static_cast<std::uint32_t>(3 + seed % 6);
    harness::build<ring>(w, n, ring_config());
    const auto victim = static_cast<std::uint32_t>(w.rng().below(n));
    w.after(duration(w.rng().between(0, 40'000'000)), [&w, victim] { w.crash(victim); });
    if (seed % 2) w.after(300ms, [&w, victim] { w.restart(victim); });
    auto out = harness::run<ring>(w, ring::default_id, {.nodes = n, .run_limit = 20s});
    INFO("seed " << seed << " victim " << victim);
    REQUIRE(out.max_holders <= 1);
    // Every survivor's request is granted: the ring skips the dead, regenerates a lost token.
    REQUIRE(out.errors == 0);
    REQUIRE(out.granted >= out.requests - 1);
  }
}

TEST_CASE("suzuki_kasami and raymond: under message loss, still one holder; waiters time out instead of hanging") {
  harness::loss_property<sk>(mutex::suzuki_kasami_config{.request_timeout = 1s}, false);
  harness::loss_property<ray>(mutex::raymond_config{.request_timeout = 1s}, true);
}

TEST_CASE("token_ring: a partition blocks regeneration (safe), and after heal every request is served") {
  for (std::uint64_t seed = 1; seed <= harness::seeds; ++seed) {
    harness::simulator w(seed, harness::random_network());
    const auto n = static_cast<std::uint32_t>(3 + seed % 6);
    harness::build<ring>(w, n, ring_config());
    const auto cut = static_cast<std::uint32_t>(1 + w.rng().below(n - 1));
    std::vector<std::uint32_t> left, right;
    for (std::uint32_t i = 0; i < n; ++i) (i < cut ? left : right).push_back(i);
    w.after(duration(w.rng().between(0, 30'000'000)), [&w, left, right] { w.partition({left, right}); });
    w.after(2s, [&w] { w.heal(); });
    auto out = harness::run<ring>(w, ring::default_id, {.nodes = n});
    INFO("seed " << seed);
    REQUIRE(out.max_holders <= 1);
    REQUIRE(out.errors == 0);
    REQUIRE(out.granted == static_cast<int>(n) * 3);
  }
}

TEST_CASE("token algorithms: try_lock succeeds only where the idle token is") {
  harness::simulator w(1, harness::random_network());
  harness::build<sk>(w, 4, mutex::suzuki_kasami_config{});
  CHECK_FALSE(w.get<sk>(1, sk::default_id).try_lock());
  auto& m0 = w.get<sk>(0, sk::default_id);
  REQUIRE(m0.try_lock());
  CHECK(m0.holding());
  CHECK_FALSE(m0.try_lock());
  m0.unlock();
  CHECK(m0.has_token());  // nobody asked: the token stays
  harness::simulator w2(1, harness::random_network(nullptr, 0, true));
  harness::build<ray>(w2, 7, mutex::raymond_config{});
  CHECK_FALSE(w2.get<ray>(6, ray::default_id).try_lock());
  bool got = false;
  w2.get<ray>(6, ray::default_id).lock([&](std::error_code ec) { got = !ec; });
  w2.run_for(1s);
  REQUIRE(got);
  w2.get<ray>(6, ray::default_id).unlock();
  CHECK(w2.get<ray>(6, ray::default_id).try_lock());  // the token rests with its last user
}

}  // namespace test_token
