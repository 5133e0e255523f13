// HyParView against Cyclon under eager-push broadcast (the experiment of the
// HyParView paper, Leitão et al., DSN 2007, fig. "reliability after failures"):
// N nodes build the overlay; x% of them crash at once; a broadcast is sent
// right away, then one after each of 1..5 membership rounds of healing.
// Reliability = live nodes that delivered / live nodes.
//
// HyParView floods its active view (5 peers: 4 forwards per node); Cyclon
// pushes to 4 random peers of its 35-entry view. Both learn of crashed peers
// from the transport (the simulator reports a send to a crashed node one round
// trip later), as TCP would in the paper.
//
// Usage: membership_reliability [--quick] [--csv FILE] [--seed N]
#include "gossip_common.hpp"

using namespace dcp;
using sim::simulator;
using hpv = membership::hyparview<sim::env>;
using cyc = membership::cyclon<sim::env>;
constexpr protocol_id mid = 10, bid = 20;

namespace {

template <class M> struct run_result {
  double reliability[6];  // 0: right after the failure, k: after k rounds
};

template <class M> run_result<M> run(std::uint32_t n, double failed, std::uint64_t seed) {
  simulator w(seed, bench::network());
  using push = gossip::eager_push<sim::env, M>;
  auto delivered = std::make_shared<std::vector<std::uint64_t>>(n, 0);  // last message id delivered per node
  bench::join_all(w, n, 1ms, [delivered](sim::node_context& c, const address& contact) {
    typename M::config_type k{};
    k.contact = contact;
    auto& m = c.add<M>(mid, k);
    gossip::eager_push_config e;
    e.fanout = std::is_same_v<M, hpv> ? 0 : 4;  // HyParView floods its active view
    auto& b = c.add<push>(bid, m, e);
    const auto i = c.index();
    b.on_deliver([delivered, i](const gossip::delivery& d) { (*delivered)[i] = d.id; });
  });
  w.run_for(20s);  // shuffles settle the views
  std::vector<std::uint32_t> order(n);
  for (std::uint32_t i = 0; i < n; ++i) order[i] = i;
  w.rng().shuffle(std::span<std::uint32_t>(order));
  const auto dead = static_cast<std::uint32_t>(failed * n);
  for (std::uint32_t k = 0; k < dead; ++k) w.crash(order[k]);
  run_result<M> r{};
  for (int round = 0; round <= 5; ++round) {
    const std::uint32_t origin = order[dead + w.rng().below(n - dead)];
    const auto id = w.get<push>(origin, bid).broadcast(as_bytes("m"));
    w.run_for(1s);  // one membership round; the broadcast takes far less
    std::uint32_t got = 0;
    for (std::uint32_t i = 0; i < n; ++i) got += w.is_up(i) && (*delivered)[i] == id;
    r.reliability[round] = double(got) / (n - dead);
  }
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  auto a = bench::args::parse(argc, argv, "membership_reliability.csv");
  const std::uint32_t n = a.quick ? 1000 : 10000;
  std::vector<double> fractions = a.quick ? std::vector<double>{0.2, 0.5, 0.8, 0.95}
                                          : std::vector<double>{0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95};
  std::ofstream csv(a.csv);
  csv << "protocol,nodes,failed_percent,round,reliability\n";
  std::printf("reliability of eager-push broadcast, N=%u, after x%% of nodes crash at once\n", n);
  std::printf("%-10s %7s %8s %8s %8s %8s %8s %8s\n", "protocol", "failed", "now", "1 round", "2", "3", "4", "5");
  for (double f : fractions) {
    for (int p = 0; p < 2; ++p) {
      const auto t0 = std::chrono::steady_clock::now();
      double rel[6];
      if (p == 0) {
        auto r = run<hpv>(n, f, a.seed);
        std::copy(r.reliability, r.reliability + 6, rel);
      } else {
        auto r = run<cyc>(n, f, a.seed);
        std::copy(r.reliability, r.reliability + 6, rel);
      }
      const char* name = p == 0 ? "hyparview" : "cyclon";
      std::printf("%-10s %6.0f%% %7.2f%% %7.2f%% %7.2f%% %7.2f%% %7.2f%% %7.2f%%   (%.1f s)\n", name, f * 100,
                  rel[0] * 100, rel[1] * 100, rel[2] * 100, rel[3] * 100, rel[4] * 100, rel[5] * 100,
                  bench::seconds_since(t0));
      std::fflush(stdout);
      for (int r = 0; r <= 5; ++r) csv << name << ',' << n << ',' << f * 100 << ',' << r << ',' << rel[r] << '\n';
    }
  }
}
