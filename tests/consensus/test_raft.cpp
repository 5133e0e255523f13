#include "raft_harness.hpp"

using namespace raft_test;

TEST_CASE("raft: a quiet cluster elects one leader and commits") {
  options o;
  o.loss = o.duplicate = o.reorder = 0;
  o.drift = 0;
  o.fault_every = 1h;  // no faults
  cluster c(1, o);
  auto out = c.run();
  CHECK(out.live);
  CHECK(out.acked > 100);
  CHECK(out.reads_ok > 0);
}

TEST_CASE("raft: safety and liveness under crashes, partitions, loss, duplication, reordering and drift") {
  std::uint64_t acked = 0, reads = 0, elections = 0, installs = 0, live = 0;
  const std::uint64_t seeds = 1000;
  for (std::uint64_t seed = 1; seed <= seeds; ++seed) {
    options o;
    o.nodes = seed % 3 == 0 ? 5 : 3;
    CAPTURE(seed);
    cluster c(seed, o);
    auto out = c.run();
    acked += out.acked;
    reads += out.reads_ok;
    elections += out.elections;
    installs += out.snapshots_installed;
    live += out.live;
  }
  MESSAGE("acked " << acked << ", reads " << reads << ", elections " << elections << ", snapshot installs "
                   << installs << ", live " << live << "/" << seeds);
  CHECK(live == seeds);  // after healing, every seed made progress
  CHECK(installs > 0);   // lagging replicas were brought up by InstallSnapshot
}
