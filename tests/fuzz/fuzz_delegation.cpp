// libFuzzer target: arbitrary bytes as delegation messages (to an origin, a
// client peer and a member of a coordinator group), as a sealed certificate,
// and as a token presented at the origin. Any crash, sanitizer report or
// exception is a bug; so is a certificate or token that passes without the
// right signature, or a permit the origin counts for one.
//
// Input: byte 0 picks the receiver (origin, peer, group member), byte 1 the
// message type, byte 2 the sender (the origin, a group member, a stranger);
// the rest is the message's payload.
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "dcp/consensus.hpp"
#include "dcp/core/host.hpp"
#include "dcp/delegation.hpp"
#include "dcp/sim.hpp"
#include "dcp/storage.hpp"

namespace {
namespace dlg = dcp::delegation;
using E = dcp::sim::env;
using raft_t = dcp::consensus::raft<E, dlg::ledger, dcp::storage::memory_storage>;

const dcp::lease::ed25519_private_key& origin_key() {
  static const auto k = dcp::lease::ed25519_private_key::from_seed(dcp::bytes(32, 7)).value();
  return k;
}
const dcp::lease::ed25519_private_key& member_key() {
  static const auto k = dcp::lease::ed25519_private_key::from_seed(dcp::bytes(32, 21)).value();
  return k;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static dcp::sim::simulator world(1);
  static bool ready = false;
  if (!ready) {
    world.add_nodes(3, [](dcp::sim::node_context&) {});
    ready = true;
  }
  const dcp::byte_view in(data, size);
  const auto okey = dcp::lease::signing_key(origin_key(), 0);
  // Bytes as a certificate and as a token: never accepted unsigned.
  if (dlg::open_certificate(in, okey.to_verification_key())) std::abort();
  dlg::certificate cert{"db",
                        0,
                        dlg::capacity_kind::concurrency,
                        4,
                        1,
                        dcp::wall_time(std::chrono::seconds(1)),
                        dcp::wall_time(std::chrono::seconds(100)),
                        {{dcp::address::sim(1), member_key().public_key().raw()}},
                        1};
  if (dlg::check_token(in, cert)) std::abort();
  // ...nor as a quorum-signed token (no member's key signs here).
  auto quorum = cert;
  quorum.coordinators.push_back({dcp::address::sim(2), origin_key().public_key().raw()});
  quorum.coordinators.push_back({dcp::address::sim(3), origin_key().public_key().raw()});
  quorum.quorum = quorum.signers = 2;
  if (dlg::check_token(in, quorum)) std::abort();

  dlg::origin_config oc;
  oc.resources = {{"db", dlg::capacity_kind::concurrency, 4, 2}};
  dcp::host h(&world.metrics());
  auto& origin = h.emplace<dlg::origin<E>>(1, E(world, 0, 1), okey, oc);
  dlg::peer_config pc;
  pc.origin = dcp::address::sim(0);
  pc.origin_public_key = origin_key().public_key().raw();
  pc.locate = dlg::fixed_locator([](const std::string&) { return dcp::address::sim(1); });
  auto& peer = h.emplace<dlg::peer<E>>(2, E(world, 2, 2), pc);
  dcp::consensus::raft_config rc;
  rc.members = {dcp::address::sim(1)};
  auto& raft = h.emplace<raft_t>(3, E(world, 1, 3), rc, dcp::storage::memory_storage{});
  dlg::group_config gc;
  gc.origin = dcp::address::sim(0);
  gc.origin_public_key = origin_key().public_key().raw();
  gc.members = {{dcp::address::sim(1), member_key().public_key().raw()}};
  gc.shards = {{"db", 0}};
  h.emplace<dlg::group<E, raft_t>>(4, E(world, 1, 4), raft, gc, member_key());
  (void)peer;

  const dcp::wall_time now(std::chrono::seconds(50));
  if (origin.admit(in, now)) std::abort();  // a token no coordinator signed
  if (size >= 3) {
    const dcp::protocol_id to = static_cast<dcp::protocol_id>(data[0] % 3 == 0 ? 1 : data[0] % 3 == 1 ? 2 : 4);
    const auto type = static_cast<dcp::message_type>(1 + data[1] % 10);
    const dcp::address from = dcp::address::sim(data[2] % 3 == 0 ? 0 : data[2] % 3 == 1 ? 1 : 9);
    (void)h.deliver(from, to, type, in.subspan(3));
  }
  if (origin.in_use("db", now) != 0 || origin.stats().admitted != 0) std::abort();
  return 0;
}
