// Plumtree against eager push (flooding HyParView's active view), the
// experiment of Leitão et al., "Epidemic broadcast trees" (SRDS 2007):
//   RMR  = payload messages / (nodes delivered - 1) - 1   (0 is a perfect tree)
//   LDH  = last delivery hop: the largest hop count of any delivery
//   reliability = live nodes delivered / live nodes
// in a stable overlay (after one warm-up broadcast, which floods and prunes)
// and after 20% of the nodes crash at once (the first broadcast after the
// crash, and the mean over the next ones while the overlay heals).
// "plumtree_opt" is Plumtree with the paper's optional tree optimisation
// (optimization_threshold = 3 hops): the tree grafted together after the
// crash should get shallower again (LDH) at no cost in RMR.
//
// Usage: plumtree_vs_eager [--quick] [--csv FILE] [--seed N] [--only plumtree|plumtree_opt|eager_push]
#include <unordered_map>

#include "gossip_common.hpp"

using namespace dcp;
using sim::simulator;
using hpv = membership::hyparview<sim::env>;
constexpr protocol_id mid = 11, bid = 20;

namespace {
struct per_message {
  std::uint32_t delivered = 0, ldh = 0;
};
struct figures {
  double rmr = 0, ldh = 0, reliability = 0;
  int messages = 0;
  void add(double r, double l, double rel) {
    rmr += r;
    ldh += l;
    reliability += rel;
    ++messages;
  }
  figures mean() const {
    return messages ? figures{rmr / messages, ldh / messages, reliability / messages, messages} : *this;
  }
};

template <class B> std::vector<std::pair<std::string, figures>> run(std::uint32_t n, std::uint64_t seed, int messages,
                                                                    std::uint32_t threshold = 0) {
  simulator w(seed, bench::network());
  auto stats = std::make_shared<std::unordered_map<gossip::message_id, per_message>>();
  bench::join_all(w, n, 1ms, [stats, threshold](sim::node_context& c, const address& contact) {
    membership::hyparview_config k;
    k.contact = contact;
    auto& m = c.add<hpv>(mid, k);
    auto& b = [&]() -> B& {
      if constexpr (std::is_same_v<B, gossip::eager_push<sim::env, hpv>>)
        return c.add<B>(bid, m, gossip::eager_push_config{0});
      else {
        gossip::plumtree_config k;
        k.optimization_threshold = threshold;
        return c.add<B>(bid, m, k);
      }
    }();
    b.on_deliver([stats](const gossip::delivery& d) {
      auto& s = (*stats)[d.id];
      ++s.delivered;
      s.ldh = std::max(s.ldh, d.hops);
    });
  });
  w.run_for(20s);
  auto live = [&] {
    std::uint32_t c = 0;
    for (std::uint32_t i = 0; i < n; ++i) c += w.is_up(i);
    return c;
  };
  auto one = [&](figures& into) {
    std::uint32_t origin;
    do origin = static_cast<std::uint32_t>(w.rng().below(n));
    while (!w.is_up(origin));
    const auto before = w.metrics().of(bid, 1).sent;
    const auto id = w.get<B>(origin, bid).broadcast(as_bytes("payload"));
    w.run_for(3s);  // longer than Plumtree's graft timers
    const auto& s = (*stats)[id];
    const double payloads = double(w.metrics().of(bid, 1).sent - before);
    into.add(s.delivered > 1 ? payloads / (s.delivered - 1) - 1 : 0, s.ldh, double(s.delivered) / live());
  };
  figures warm, stable, first_after, healing;
  one(warm);
  for (int k = 0; k < messages; ++k) one(stable);
  std::vector<std::uint32_t> order(n);
  for (std::uint32_t i = 0; i < n; ++i) order[i] = i;
  w.rng().shuffle(std::span<std::uint32_t>(order));
  for (std::uint32_t k = 0; k < n / 5; ++k) w.crash(order[k]);
  one(first_after);
  for (int k = 0; k < messages; ++k) one(healing);
  return {{"first (warm-up)", warm.mean()},
          {"stable", stable.mean()},
          {"first after 20% crash", first_after.mean()},
          {"healing after 20% crash", healing.mean()}};
}
}  // namespace

int main(int argc, char** argv) {
  std::string only;
  std::vector<char*> rest{argv[0]};
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--only") && i + 1 < argc)
      only = argv[++i];
    else
      rest.push_back(argv[i]);
  }
  if (!only.empty() && only != "plumtree" && only != "plumtree_opt" && only != "eager_push") {
    std::fprintf(stderr, "plumtree_vs_eager: --only is plumtree, plumtree_opt or eager_push\n");
    return 2;
  }
  auto a = bench::args::parse(static_cast<int>(rest.size()), rest.data(), "plumtree_vs_eager.csv");
  const std::uint32_t n = a.quick ? 1000 : 10000;
  const int messages = a.quick ? 10 : 50;
  std::ofstream csv(a.csv);
  csv << "protocol,nodes,phase,messages,rmr,ldh,reliability\n";
  std::printf("Plumtree vs eager push over HyParView, N=%u (%d messages per phase)\n", n, messages);
  std::printf("%-12s %-26s %8s %8s %12s\n", "protocol", "phase", "RMR", "LDH", "reliability");
  for (const char* name : {"plumtree", "plumtree_opt", "eager_push"}) {
    if (!only.empty() && only != name) continue;
    const auto t0 = std::chrono::steady_clock::now();
    const std::string_view v = name;
    auto rows = v == "plumtree" ? run<gossip::plumtree<sim::env, hpv>>(n, a.seed, messages)
        : v == "plumtree_opt"   ? run<gossip::plumtree<sim::env, hpv>>(n, a.seed, messages, 3)
                                : run<gossip::eager_push<sim::env, hpv>>(n, a.seed, messages);
    for (auto& [phase, f] : rows) {
      std::printf("%-12s %-26s %8.3f %8.1f %11.3f%%\n", name, phase.c_str(), f.rmr, f.ldh, f.reliability * 100);
      csv << name << ',' << n << ",\"" << phase << "\"," << f.messages << ',' << f.rmr << ',' << f.ldh << ','
          << f.reliability << '\n';
    }
    std::fprintf(stderr, "  %s: %.1f s\n", name, bench::seconds_since(t0));
  }
}
