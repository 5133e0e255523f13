// A resource server guarding a GPU pool of 4 permits with lease tokens.
//
// The coordinating group (here, one process playing its part) seals tokens
// with its Ed25519 key; the server holds only the public key, admits tokens
// offline, and never honours more than its 4 permits, even when the group
// grants more.
#include <cstdio>

#include "dcp/lease.hpp"

using namespace dcp;
using namespace dcp::lease;

int main() {
  // The group's key pair; the server is configured with the public half only.
  auto group_key = ed25519_private_key::generate();
  if (!group_key) {
    std::fprintf(stderr, "key generation failed: %s\n", group_key.error().message().c_str());
    return 1;
  }
  const signing_key issuer{*group_key, /*key id*/ 1};
  const verification_key server_key{group_key->public_key(), 1};

  // Clocks of group and server agree within 50 ms (NTP on a LAN, say).
  permit_gate gpu_pool(server_key, "gpu-pool", /*capacity*/ 4, {.max_drift = 50ms});
  const wall_time now(1000s);

  std::uint64_t fencing = 0;
  auto grant = [&](std::uint32_t client, std::uint32_t permits) {
    return seal({"gpu-pool", address::sim(client), permits, ++fencing, now + 10s}, issuer).value();
  };

  struct request {
    std::uint32_t client, permits;
  };
  for (auto [client, permits] : {request{1, 2}, request{2, 1}, request{3, 2}, request{4, 1}}) {
    auto token = grant(client, permits);
    auto admitted = gpu_pool.admit(token, now);
    std::printf("client %u asks for %u permit(s), token of %zu bytes: %s (in use %u/4)\n", client, permits,
                token.size(), admitted ? "admitted" : admitted.error().message().c_str(), gpu_pool.in_use(now));
  }

  // A token altered in transit, and one for another resource.
  auto forged = grant(5, 1);
  forged[forged.size() / 2] ^= 1;
  std::printf("altered token: %s\n", gpu_pool.admit(forged, now).error().message().c_str());
  auto other = seal({"disk", address::sim(6), 1, ++fencing, now + 10s}, issuer).value();
  std::printf("token for 'disk': %s\n", gpu_pool.admit(other, now).error().message().c_str());

  // Permits come back on release, or when the lease runs out (50 ms early).
  gpu_pool.release(1);
  std::printf("after client 1 releases: in use %u/4\n", gpu_pool.in_use(now));
  std::printf("9.95 s later: in use %u/4\n", gpu_pool.in_use(now + 9950ms));
  return 0;
}
