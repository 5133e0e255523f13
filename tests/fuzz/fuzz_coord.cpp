// libFuzzer target: the coordination service's message set (coord/messages.hpp)
// at its servers: three replicas of raft + coord::server + coord::machine in
// the simulator, receiving forged client messages (commands of every kind,
// keepalives, lease requests, queries, gets, ranges, reads at a revision,
// compactions, watches, registrations)
// from strangers and from addresses that are the replicas', with session ids,
// client ids, fencing tokens and revisions near what the replicas hold,
// interleaved with time in which they elect, replicate, expire sessions and
// answer. Every command that passes goes through the log into the machine on
// every replica, so the machine's apply path is fuzzed too.
//
// Checked after every step: each replica's raft and machine invariants (the
// machine's bounds: keys, session keys, history; grants within permits), and
// across replicas one leader per term and equal committed entries (client
// messages, whoever sends them, cannot touch Raft's safety). Memory: the heap
// may rise by at most 8 MiB + 64 bytes per input byte while an input runs.
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>

#include "dcp/consensus.hpp"
#include "dcp/coord/machine.hpp"
#include "dcp/coord/server.hpp"
#include "dcp/sim.hpp"
#include "dcp/storage.hpp"
#include "fuzz_support.hpp"

namespace {
using namespace dcp;
using raft_t = consensus::raft<sim::env, coord::machine, storage::memory_storage>;
using server_t = coord::server<sim::env, raft_t>;
constexpr std::uint32_t n = 3;
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  fuzz::memory_bound bound(8u << 20, 64, size);
  fuzz::input in(data, size);
  sim::simulator w(1);
  consensus::raft_config rc;
  for (std::uint32_t i = 0; i < n; ++i) rc.members.push_back(address::sim(i));
  rc.election_timeout_min = std::chrono::milliseconds(100);
  rc.election_timeout_max = std::chrono::milliseconds(200);
  rc.heartbeat_interval = std::chrono::milliseconds(30);
  rc.snapshot_every = 16;
  rc.max_sessions = 8;
  coord::server_config sc;
  sc.max_watches = 64;
  sc.max_watches_per_client = 8;
  // Session ids from a seeded generator (reproducible), remembered as hints.
  auto drawn = std::make_shared<std::vector<std::uint64_t>>();
  auto gen = std::make_shared<dcp::rng>(0xC0);
  sc.entropy = [gen, drawn] {
    const auto v = (*gen)();
    if (drawn->size() < 64) drawn->push_back(v);
    return v;
  };
  w.add_nodes(n, [&](sim::node_context& c) {
    auto& r = c.add<raft_t>(raft_t::default_id, rc, storage::memory_storage{}, coord::machine{});
    c.add<server_t>(server_t::default_id, r, sc);
  });
  w.run_for(std::chrono::milliseconds(300));
  auto replica = [&](std::uint32_t i) { return w.find<raft_t>(i, raft_t::default_id); };
  std::map<std::uint64_t, std::uint32_t> leader_of_term;
  fuzz::cluster_shape shape;
  shape.members = shape.receivers = n;
  fuzz::drive<server_t>(
      in, w, server_t::default_id, shape,
      [&](fuzz::hints& h) {
        h.numbers = *drawn;
        for (std::uint32_t i = 0; i < n; ++i) {
          const auto& r = *replica(i);
          h.numbers.insert(h.numbers.end(), {r.commit_index(), r.store().last_index()});
          for (auto c : r.state_machine().clients_with_sessions()) h.numbers.push_back(c);
          // Revisions to read at and compact to (range_at, op::compact): around the compact and current ones.
          const auto& sm = r.state_machine();
          h.numbers.insert(h.numbers.end(),
                           {sm.revision(), sm.revision() + 1, sm.compact_revision(), sm.compact_revision() - 1});
        }
      },
      [&](std::uint8_t) {},
      [&](bool) {
        for (std::uint32_t i = 0; i < n; ++i) {
          const auto& r = *replica(i);
          r.check_invariants();
          r.state_machine().check_invariants();
          if (r.is_leader()) {
            auto [it, fresh] = leader_of_term.emplace(r.current_term(), i);
            if (!fresh && it->second != i) fuzz::fail("coord: two leaders in one term");
          }
          for (std::uint32_t j = i + 1; j < n; ++j) {
            const auto& o = *replica(j);
            const auto upto = std::min(r.commit_index(), o.commit_index());
            for (auto k = std::max(r.store().first_index(), o.store().first_index()); k <= upto; ++k)
              if (r.store().term_at(k) != o.store().term_at(k)) fuzz::fail("coord: committed entries differ");
          }
        }
      });
  return 0;
}
