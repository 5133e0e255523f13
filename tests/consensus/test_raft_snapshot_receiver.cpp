// raft_parts::snapshot_receiver on its own: leaders send chunks of several
// snapshots, lost, duplicated and reordered, and start new transfers
// midway; what the follower holds is always a prefix of the snapshot it is
// receiving, dropped chunks change nothing, and a completed snapshot is
// byte for byte one that was sent.
#include <doctest/doctest.h>

#include <algorithm>
#include <vector>

#include "../seeds.hpp"  // fewer seeds under sanitizers
#include "dcp/consensus/raft/snapshot_receiver.hpp"
#include "dcp/core/rng.hpp"

namespace test_raft_snapshot_receiver {

using namespace dcp;
using dcp::consensus::raft_parts::snapshot_receiver;
using outcome = snapshot_receiver::outcome;

namespace {

struct chunk {
  std::uint64_t term = 0, index = 0, last_term = 0, offset = 0, total = 0;
  bytes data;
  bool done = false;
};

struct sent_snapshot {
  std::uint64_t term, index, last_term;
  bytes data;
};

chunk chunk_of(const sent_snapshot& s, std::uint64_t offset, std::uint64_t size) {
  const auto len = std::min<std::uint64_t>(size, s.data.size() - offset);
  const auto* b = s.data.data() + offset;
  return {s.term, s.index, s.last_term, offset, s.data.size(), bytes(b, b + len), offset + len == s.data.size()};
}

}  // namespace

TEST_CASE("raft snapshot receiver: it holds a prefix of one snapshot, and completes only snapshots that were sent") {
  std::uint64_t completed_total = 0;
  for (std::uint64_t seed = 1; seed <= dcp::test::last_seed(1, 200); ++seed) {
    CAPTURE(seed);
    rng r(seed);
    std::vector<sent_snapshot> snaps;
    for (int k = 0; k < 3; ++k) {
      sent_snapshot s{1 + static_cast<std::uint64_t>(r.between(0, 3)), 10 + static_cast<std::uint64_t>(k) * 10, 1,
                      bytes(static_cast<std::size_t>(1 + r.between(0, 2000)))};
      for (auto& b : s.data) b = static_cast<std::uint8_t>(r.between(0, 255));
      snaps.push_back(std::move(s));
    }
    snapshot_receiver rx;
    std::vector<chunk> in_flight;
    std::uint64_t completed = 0;
    const std::uint64_t chunk_size = 1 + r.between(0, 300);
    const sent_snapshot* current = nullptr;  // what the receiver holds a prefix of
    for (int step = 0; step < 600; ++step) {
      if (r.chance(0.5) ||
          in_flight.empty()) {  // a leader sends a chunk of some snapshot, where it thinks the follower is
        const auto& s = snaps[r.between(0, 2)];
        const auto at = r.chance(0.3) ? 0 : std::min<std::uint64_t>(rx.held(s.index), s.data.size() - 1);
        in_flight.push_back(chunk_of(s, at, chunk_size));
        if (r.chance(0.1)) in_flight.push_back(chunk_of(s, s.data.size() / 2, chunk_size));  // a stray offset
        continue;
      }
      const auto k = static_cast<std::size_t>(r.between(0, static_cast<std::int64_t>(in_flight.size()) - 1));
      const chunk m = in_flight[k];
      if (!r.chance(0.2)) in_flight.erase(in_flight.begin() + static_cast<std::ptrdiff_t>(k));  // else duplicated
      const auto& s = *std::find_if(snaps.begin(), snaps.end(), [&](auto& x) { return x.index == m.index; });
      const auto before = current ? rx.held(current->index) : 0;
      const auto got = rx.take(m);
      if (got == outcome::out_of_order || got == outcome::duplicate) {
        if (current) CHECK(rx.held(current->index) == before);  // dropped: nothing changes
      } else {
        current = &s;  // taken: the transfer is this snapshot's now (a first chunk replaces another)
        CHECK(m.offset + m.data.size() == rx.held(m.index));  // appended exactly at what was held
      }
      if (current) {  // what is held is a prefix of the snapshot being received
        const auto held = rx.received();
        REQUIRE(held.size() == rx.held(current->index));
        REQUIRE(held.size() <= current->data.size());
        CHECK(std::equal(held.begin(), held.end(), current->data.begin()));
      }
      rx.check_invariants(4096);
      if (got == outcome::complete) {
        const auto snap = rx.finish();
        CHECK(snap.index == s.index);
        CHECK(snap.term == s.last_term);
        CHECK(snap.data == s.data);  // byte for byte what was sent
        CHECK(rx.held(s.index) == 0);
        current = nullptr;
        ++completed;
      }
    }
    completed_total += completed;
  }
  CHECK(completed_total > 0);
}

TEST_CASE(
    "raft snapshot receiver: a repeated first chunk keeps the transfer; a new snapshot's first chunk replaces it") {
  sent_snapshot a{2, 10, 1, bytes(100, 1)}, b{2, 20, 1, bytes(100, 2)};
  snapshot_receiver rx;
  CHECK(rx.take(chunk_of(a, 0, 40)) == outcome::partial);
  CHECK(rx.take(chunk_of(a, 0, 40)) == outcome::duplicate);  // not restarted: 40 bytes kept
  CHECK(rx.held(10) == 40);
  CHECK(rx.take(chunk_of(a, 80, 40)) == outcome::out_of_order);
  CHECK(rx.take(chunk_of(b, 40, 40)) == outcome::out_of_order);  // another snapshot's middle
  CHECK(rx.held(10) == 40);
  CHECK(rx.take(chunk_of(b, 0, 40)) == outcome::partial);  // another snapshot's start replaces it
  CHECK(rx.held(10) == 0);
  CHECK(rx.held(20) == 40);
  CHECK(rx.take(chunk_of(b, 40, 60)) == outcome::complete);
  CHECK(rx.finish().data == b.data);
  rx.reset();
  CHECK(rx.held(20) == 0);
}

}  // namespace test_raft_snapshot_receiver
