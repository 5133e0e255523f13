#include <set>

#include "../seeds.hpp"  // fewer seeds under sanitizers
#include "harness.hpp"

namespace test_maekawa {

using namespace dcp;
using mk = mutex::maekawa<sim::env>;

TEST_CASE("maekawa: grid quorums pairwise intersect and contain their owner") {
  for (std::size_t n = 1; n <= 70; ++n) {
    for (std::size_t a = 0; a < n; ++a) {
      auto qa = mutex::grid_quorum(a, n);
      REQUIRE(std::binary_search(qa.begin(), qa.end(), a));
      REQUIRE(qa.size() <= 2 * static_cast<std::size_t>(std::ceil(std::sqrt(double(n)))) - 1);
      for (std::size_t b = 0; b < n; ++b) {
        auto qb = mutex::grid_quorum(b, n);
        std::vector<std::size_t> both;
        std::set_intersection(qa.begin(), qa.end(), qb.begin(), qb.end(), std::back_inserter(both));
        INFO("n " << n << " a " << a << " b " << b);
        REQUIRE(!both.empty());
      }
    }
  }
  CHECK(mutex::grid_quorum(5, 9) == std::vector<std::size_t>{2, 3, 4, 5, 8});
}

TEST_CASE("maekawa: one holder, all granted (no deadlock); 1000 seeds on FIFO channels") {
  harness::fault_free_property<mk>(mutex::maekawa_config{}, true);
}

TEST_CASE("maekawa: heavy contention, 9 and 16 members, no deadlock") {
  for (std::uint64_t seed = 1; seed <= dcp::test::last_seed(1, 100); ++seed) {
    harness::simulator w(seed, harness::random_network(nullptr, 0, true));
    const std::uint32_t n = seed % 2 ? 9 : 16;
    harness::build<mk>(w, n, mutex::maekawa_config{});
    auto out = harness::run<mk>(w, mk::default_id, {.nodes = n, .rounds = 4, .think_max = 1ms, .hold_max = 2ms});
    INFO("seed " << seed);
    REQUIRE(out.max_holders <= 1);
    REQUIRE(out.errors == 0);
    REQUIRE(out.granted == static_cast<int>(n) * 4);
  }
}

TEST_CASE("maekawa: a crashed quorum member makes waiters fail, never hang, never two holders") {
  harness::crash_property<mk>(mutex::maekawa_config{.request_timeout = 2s}, true);
}

TEST_CASE("maekawa: under message loss, still one holder; waiters time out instead of hanging") {
  harness::loss_property<mk>(mutex::maekawa_config{.request_timeout = 1s}, true);
}

TEST_CASE("maekawa: a quorum of one votes through its loopback after the call; the handler runs after that vote") {
  harness::simulator w(1, harness::random_network());
  harness::build<mk>(w, 1, mutex::maekawa_config{});
  auto& m = w.get<mk>(0, mk::default_id);
  std::vector<std::error_code> got;
  m.lock([&](std::error_code ec) {
    got.push_back(ec);
    CHECK(m.holding());  // the state was settled before the handler ran
  });
  CHECK(got.empty());  // the vote to itself is never handled inside lock()
  CHECK(m.state() == mutex::lock_state::waiting);
  w.run_posted();  // the end of the event the test played: its own vote, then the handler
  REQUIRE(got.size() == 1);
  CHECK(!got[0]);
  m.unlock();
}

}  // namespace test_maekawa
