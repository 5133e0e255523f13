// Drives the delegation fuzz entry point without libFuzzer: random bytes,
// and mutations of well-formed messages of every type, so every CI run
// feeds the origin, a peer and a group member hostile input.
#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "dcp/core/rng.hpp"
#include "dcp/delegation.hpp"
#include "dcp/sim.hpp"
#include "dcp/wire.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

namespace {
namespace dlg = dcp::delegation;
template <class M> void append(dcp::bytes& out, const M& m) {
  dcp::wire::output_archive ar(out);
  ar(m);
}
/// The wall clock the fuzz entry's simulated origin reads (its world never
/// runs, so it stays at this instant): signed requests must be fresh then.
dcp::wall_time fuzz_world_now() {
  static const dcp::wall_time t = [] {
    dcp::sim::simulator w(1);
    w.add_nodes(1, [](dcp::sim::node_context&) {});
    return w.local_wall_now(0);
  }();
  return t;
}
/// A well-formed message of type `type` (1..8), with fields drawn from `r`.
dcp::bytes message(std::uint32_t type, dcp::rng& r) {
  dcp::bytes out;
  const std::string res = r.chance(0.7) ? "db" : std::string(r.below(300), 'x');
  const auto shard = static_cast<std::uint32_t>(r.below(4));
  const dcp::address who = dcp::address::sim(static_cast<std::uint32_t>(r.below(10)));
  switch (type) {
    case 1: {
      dlg::msg::delegate_request m{res, shard, dcp::bytes(r.chance(0.8) ? 32 : r.below(64), 3), r()};
      if (r.chance(0.5)) {  // signed, by a stranger (sim 9) with a real key: past the signature check
        static const auto key = dcp::lease::ed25519_private_key::from_seed(dcp::bytes(32, 3)).value();
        m.public_key = key.public_key().raw();
        (void)dlg::sign(m, dcp::address::sim(9), key,
                        fuzz_world_now() + std::chrono::milliseconds(r.below(200)) - std::chrono::seconds(r.below(8)));
      }
      append(out, m);
      break;
    }
    case 2:
      append(out,
             dlg::msg::delegate_reply{res, shard, static_cast<dlg::status>(r.below(4)),
                                      static_cast<std::uint32_t>(r.below(20)), dcp::bytes(r.below(200), 1),
                                      static_cast<std::uint32_t>(r()), who});
      break;
    case 3:
      append(out,
             dlg::msg::token_request{r(), res, shard, static_cast<std::uint32_t>(r()), r.chance(0.5) ? r() : 0, r()});
      break;
    case 4:
      append(out,
             dlg::msg::token_reply{r(), static_cast<dlg::status>(r.below(4)), static_cast<std::uint32_t>(r.below(20)),
                                   dcp::bytes(r.below(200), 2), dcp::bytes(r.below(200), 3),
                                   static_cast<std::uint32_t>(r()), r(), who});
      break;
    case 5:
      append(out, dlg::msg::token_release{res, shard, r()});
      break;
    case 6:
      append(out,
             dlg::msg::stock_commit{
                 res, shard, static_cast<std::uint32_t>(r()), r(), {{who, r(), static_cast<std::uint32_t>(r())}}});
      break;
    case 7:
      append(
          out,
          dlg::msg::stock_ack{res, shard, r(), static_cast<dlg::status>(r.below(4)), static_cast<std::uint32_t>(r())});
      break;
    default: {
      std::vector<dlg::coordinator_entry> members(r.below(20), {who, dcp::bytes(32, 4)});
      append(out, dlg::msg::group_delegate_request{res, shard, members, r()});
    }
  }
  return out;
}
}  // namespace

int main(int argc, char** argv) {
  const long runs = argc > 1 ? std::atol(argv[1]) : 10000;
  dcp::rng r(0xDE1E);
  for (long i = 0; i < runs; ++i) {
    dcp::bytes in{static_cast<std::uint8_t>(r()), static_cast<std::uint8_t>(r()), static_cast<std::uint8_t>(r())};
    if (r.chance(0.2)) {
      for (auto n = r.below(300); n-- > 0;) in.push_back(static_cast<std::uint8_t>(r()));
    } else {
      const auto type = static_cast<std::uint32_t>(in[1] % 8 + 1);
      if (type == 1 && r.chance(0.5)) in[0] = 0, in[2] = 2;  // to the origin, from sim 9 (what the signature names)
      const auto body = message(type, r);
      in.insert(in.end(), body.begin(), body.end());
      for (auto k = r.below(4); k-- > 0 && in.size() > 3;)
        in[3 + r.below(in.size() - 3)] = static_cast<std::uint8_t>(r());
      if (r.chance(0.3)) in.resize(3 + r.below(in.size() - 2));
    }
    LLVMFuzzerTestOneInput(in.data(), in.size());
  }
  std::printf("%ld inputs replayed\n", runs);
  return 0;
}
