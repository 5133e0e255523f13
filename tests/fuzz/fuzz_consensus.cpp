// libFuzzer target: the consensus chapter's message sets (Raft, Paxos)
// against a simulated three-node cluster. Byte 0 picks the protocol; the
// rest is the steps of fuzz_support.hpp: forged messages from members and
// strangers (mostly generated from the message structs, with terms, indexes
// and rounds near the receiver's), interleaved with time in which the honest
// nodes elect, replicate and decide, and with client proposals.
//
// Checked after every step: each node's own invariants (check_invariants:
// commit within the log, applied within commit, bounded sessions ...), and,
// while no forged message claimed a member's address (neither protocol
// tolerates a lying member, and says so), the cross-node properties: Raft's
// election safety (one leader per term) and that a commit index never
// passes what a majority stores, committed entries equal on every node;
// Paxos's agreement (one chosen value). Memory: the heap may rise by at most
// 4 MiB + 64 bytes per input byte while an input runs.
#include <cstddef>
#include <cstdint>
#include <map>

#include "dcp/consensus.hpp"
#include "dcp/sim.hpp"
#include "dcp/storage.hpp"
#include "fuzz_support.hpp"

namespace {
using namespace dcp;
using E = sim::env;

/// A state machine that keeps the bytes it applied (bounded: the harness proposes little).
struct applied_bytes {
  std::size_t total = 0;
  bytes apply(byte_view cmd) {
    total += cmd.size();
    return {};
  }
  bytes snapshot() const {
    bytes out;
    storage::detail::encode_value(std::uint64_t{total}, out);
    return out;
  }
  void restore(byte_view s) {
    std::uint64_t t = 0;
    (void)storage::detail::decode_value(s, t);
    total = static_cast<std::size_t>(t);
  }
};
using raft_t = consensus::raft<E, applied_bytes, storage::memory_storage>;
using paxos_t = consensus::paxos<E>;
constexpr std::uint32_t n = 3;

void fuzz_raft(fuzz::input& in) {
  sim::simulator w(1);
  consensus::raft_config rc;
  for (std::uint32_t i = 0; i < n; ++i) rc.members.push_back(address::sim(i));
  rc.snapshot_every = 8;
  rc.max_sessions = 16;
  w.add_nodes(n, [&](sim::node_context& c) { c.add<raft_t>(raft_t::default_id, rc, storage::memory_storage{}); });
  w.run_for(std::chrono::milliseconds(400));  // a leader, usually
  std::map<std::uint64_t, std::uint32_t> leader_of_term;
  fuzz::cluster_shape shape;
  shape.members = shape.receivers = n;
  auto node = [&](std::uint32_t i) { return w.find<raft_t>(i, raft_t::default_id); };
  fuzz::drive<raft_t>(
      in, w, raft_t::default_id, shape,
      [&](fuzz::hints& h) {
        for (std::uint32_t i = 0; i < n; ++i) {
          const auto& r = *node(i);
          h.numbers.insert(h.numbers.end(),
                           {r.current_term(), r.commit_index(), r.store().last_index(), r.store().first_index(),
                            r.store().snapshot().index});
        }
      },
      [&](std::uint8_t b) {
        for (std::uint32_t i = 0; i < n; ++i)
          if (node(i)->is_leader()) {
            if (b % 4 == 0)
              node(i)->register_client([](result<std::uint64_t>) {});
            else
              node(i)->propose(bytes(b % 64, b), [](result<bytes>) {});
          }
      },
      [&](bool forged_member) {
        for (std::uint32_t i = 0; i < n; ++i) node(i)->check_invariants();
        if (forged_member) return;
        for (std::uint32_t i = 0; i < n; ++i) {
          const auto& r = *node(i);
          if (r.is_leader()) {
            auto [it, fresh] = leader_of_term.emplace(r.current_term(), i);
            if (!fresh && it->second != i) fuzz::fail("raft: two leaders in one term");
          }
          std::uint32_t storing = 0;
          for (std::uint32_t j = 0; j < n; ++j) storing += node(j)->store().last_index() >= r.commit_index();
          if (2 * storing <= n) fuzz::fail("raft: a commit index past what a majority stores");
          for (std::uint32_t j = i + 1; j < n; ++j) {
            const auto& o = *node(j);
            const auto upto = std::min(r.commit_index(), o.commit_index());
            for (auto k = std::max(r.store().first_index(), o.store().first_index()); k <= upto; ++k)
              if (r.store().term_at(k) != o.store().term_at(k)) fuzz::fail("raft: committed entries differ");
          }
        }
      });
}

void fuzz_paxos(fuzz::input& in) {
  sim::simulator w(1);
  consensus::paxos_config pc;
  for (std::uint32_t i = 0; i < n; ++i) pc.acceptors.push_back(address::sim(i));
  w.add_nodes(n, [&](sim::node_context& c) { c.add<paxos_t>(paxos_t::default_id, pc); });
  auto node = [&](std::uint32_t i) { return w.find<paxos_t>(i, paxos_t::default_id); };
  fuzz::cluster_shape shape;
  shape.members = shape.receivers = n;
  fuzz::drive<paxos_t>(
      in, w, paxos_t::default_id, shape,
      [&](fuzz::hints& h) {
        for (std::uint32_t i = 0; i < n; ++i) {
          h.numbers.push_back(node(i)->promised().round);
          if (auto b = node(i)->accepted_ballot()) h.numbers.push_back(b->round);
        }
      },
      [&](std::uint8_t b) { node(b % n)->propose(bytes(1 + b % 8, b), [](result<bytes>) {}); },
      [&](bool forged_member) {
        std::optional<bytes> chosen;
        for (std::uint32_t i = 0; i < n; ++i) {
          node(i)->check_invariants();
          auto c = node(i)->chosen();
          if (forged_member || !c) continue;
          if (chosen && *chosen != *c) fuzz::fail("paxos: two values chosen");
          chosen = c;
        }
      });
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  fuzz::memory_bound bound(4u << 20, 64, size);
  fuzz::input in(data, size);
  if (in.byte() % 2 == 0)
    fuzz_raft(in);
  else
    fuzz_paxos(in);
  return 0;
}
