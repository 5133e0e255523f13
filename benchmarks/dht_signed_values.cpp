// Signed DHT values (BEP 44 style): what signing and verifying cost, and what
// a replica applies per second, signed beside unsigned, single thread.
//
//   dht_signed_values [--quick] [--csv FILE]    (default CSV: dht_signed_values.csv)
//
// "replica put/s" is dht::store's on_message(put) at one replica, each put a
// new value (a higher seq, or a later version): bounds, signature check, apply.
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "dcp/dht.hpp"
#include "dcp/dht/ed25519.hpp"
#include "dcp/lease/keys.hpp"
#include "dcp/sim.hpp"

using namespace dcp;

namespace {
using clock_type = std::chrono::steady_clock;

template <class F> double per_second(std::size_t n, F&& f) {
  const auto start = clock_type::now();
  for (std::size_t i = 0; i < n; ++i) f(i);
  const double s = std::chrono::duration<double>(clock_type::now() - start).count();
  return static_cast<double>(n) / s;
}
}  // namespace

int main(int argc, char** argv) {
  bool quick = false;
  std::string csv = "dht_signed_values.csv";
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--quick"))
      quick = true;
    else if (!std::strcmp(argv[i], "--csv") && i + 1 < argc)
      csv = argv[++i];
  }
  const std::size_t n = quick ? 500 : 20'000;
  const auto key = lease::ed25519_private_key::generate().value();
  const bytes salt = to_bytes("bench");

  using R = dht::kademlia<sim::env>;
  using S = dht::store<sim::env, R, dht::ed25519_verifier>;
  sim::simulator world(1);
  world.add_nodes(1, [](sim::node_context& ctx) {
    auto& r = ctx.add<R>(R::default_id, dht::kademlia_config{});
    ctx.add<S>(S::default_id, r);
    r.bootstrap({});
  });
  world.run_for(1s);
  auto& replica = world.get<S>(0, S::default_id);

  std::ofstream out(csv);
  out << "value_bytes,sign_per_s,verify_per_s,replica_signed_put_per_s,replica_unsigned_put_per_s\n";
  std::printf("%-12s %12s %12s %20s %22s\n", "value bytes", "sign/s", "verify/s", "replica signed put/s",
              "replica unsigned put/s");
  volatile std::size_t sink = 0;
  std::uint64_t seq = 0;
  for (std::size_t size : {64u, 1024u, 64u * 1024u}) {
    const bytes value(size, 0x5a);
    const double sign_rate =
        per_second(n, [&](std::size_t i) { sink = sink + dht::sign_value(key, salt, i + 1, value)->signature.size(); });
    const auto sv = dht::sign_value(key, salt, 1, value).value();
    const bytes message = dht::signed_message(sv.salt, sv.seq, sv.value);
    dht::ed25519_verifier v;
    const double verify_rate =
        per_second(n, [&](std::size_t) { sink = sink + v.verify(sv.public_key, message, sv.signature); });
    // the replica: each put a newer value (signed beforehand: only the replica's work is timed)
    std::vector<dht::store_msg::put> signed_puts, unsigned_puts;
    for (std::size_t i = 0; i < n; ++i) {
      const auto s = dht::sign_value(key, salt, ++seq, value).value();
      dht::store_msg::item it;
      it.value = s.value;
      it.version = s.seq;
      it.ttl_ms = 60'000;
      it.signer = s.public_key;
      it.salt = s.salt;
      it.signature = s.signature;
      signed_puts.push_back({0, std::move(it)});
      unsigned_puts.push_back({0, {"bench-key", value, seq, 1, 60'000, false, {}, {}, {}}});
    }
    const address from = address::sim(1);
    const double signed_rate = per_second(n, [&](std::size_t i) { replica.on_message(from, signed_puts[i]); });
    const double unsigned_rate = per_second(n, [&](std::size_t i) { replica.on_message(from, unsigned_puts[i]); });
    std::printf("%-12zu %12.0f %12.0f %20.0f %22.0f\n", size, sign_rate, verify_rate, signed_rate, unsigned_rate);
    out << size << "," << sign_rate << "," << verify_rate << "," << signed_rate << "," << unsigned_rate << "\n";
  }
  if (world.metrics().counter(S::default_id, "bad_signature") != 0) {
    std::fprintf(stderr, "a signed put was refused\n");
    return 1;
  }
  std::fprintf(stderr, "wrote %s\n", csv.c_str());
  return sink == 0xFFFFFFFF ? 1 : 0;
}
