// Push-Sum (Kempe, Dobra, Gehrke, FOCS 2003): rounds until every node's
// estimate of the average is within relative error eps = 1e-6 of the truth,
// at N = 10^3 .. 10^6, with 0% and 10% message loss, gossip targets drawn
// uniformly (a static_group over all nodes: the paper's model) or from
// HyParView's active view. Beside log2 N and the goal 1.5 (log2 N + log2 1/eps).
//
// Rounds are the push_sum period (1 s); links take 1-20 ms, so a round's
// messages land before the next. Under loss the estimates still agree with
// each other (the "consensus" column: max - min within eps of the mean) but on
// a value biased by the lost mass: the "bias" column is the final error
// against the true average. Heap bytes per node are measured at every N.
//
// Usage: push_sum [--quick] [--csv FILE] [--seed N] [--targets uniform|hyparview|both]
//                 [--sizes N,N,...] [--loss 0|0.1|both] [--max-rounds R]
// (HyParView targets stop at 10^4 nodes: over a 5-regular overlay Push-Sum
// needs hundreds of rounds, and each costs the overlay's own keep-alives and
// shuffles too). --sizes and --loss pick rows, so the heavy ones (10^6 nodes
// take minutes each) can be run on their own.
#include <cmath>
#include <sstream>

#include "gossip_common.hpp"

using namespace dcp;
using sim::simulator;
using fixed_group = membership::static_group<sim::env>;
using hpv = membership::hyparview<sim::env>;
constexpr protocol_id mid = 10, aid = 30;
constexpr double eps = 1e-6;

namespace {
double input_of(std::uint32_t i) { return static_cast<double>(detail::mix64(i + 1) % 100000) / 1000.0; }

struct outcome {
  int rounds_to_eps = -1;        ///< max error against the truth <= eps
  int rounds_to_consensus = -1;  ///< (max - min) / truth <= eps
  double final_error = 0;
  double bytes_per_node = 0;
  double seconds = 0;
};

template <class M, class P>
outcome measure(simulator& w, std::uint32_t n, double truth, int max_rounds, time_point start) {
  outcome o;
  for (int r = 1; r <= max_rounds; ++r) {
    w.run_until(start + r * 1s + 500ms);  // mid-round: this round's messages have landed
    double worst = 0, lo = INFINITY, hi = -INFINITY;
    for (std::uint32_t i = 0; i < n; ++i) {
      auto e = w.get<P>(i, aid).estimate();
      const double v = e ? *e : INFINITY;
      worst = std::max(worst, std::abs(v - truth) / truth);
      lo = std::min(lo, v);
      hi = std::max(hi, v);
    }
    if (o.rounds_to_eps < 0 && worst <= eps) o.rounds_to_eps = r;
    if (o.rounds_to_consensus < 0 && (hi - lo) / truth <= eps) o.rounds_to_consensus = r;
    o.final_error = worst;
    if (o.rounds_to_consensus >= 0 && (o.rounds_to_eps >= 0 || r >= o.rounds_to_consensus + 10)) break;
    if (n >= 100000) std::fprintf(stderr, "  round %d error %.3g\r", r, worst);
  }
  return o;
}

outcome uniform(std::uint32_t n, double loss, std::uint64_t seed, int max_rounds) {
  const auto t0 = std::chrono::steady_clock::now();
  const auto heap0 = bench::heap_bytes();
  double truth = 0;
  for (std::uint32_t i = 0; i < n; ++i) truth += input_of(i) / n;
  using ps = aggregate::push_sum<sim::env, fixed_group>;
  outcome o;
  {
    simulator w(seed, bench::network(loss));
    membership::static_group_config gc{
        std::make_shared<const dcp::group::static_group>(dcp::group::static_group::sim(n))};
    w.add_nodes(n, [gc](sim::node_context& c) {
      auto& g = c.add<fixed_group>(mid, gc);
      aggregate::push_sum_config k;
      k.input = aggregate::push_sum_input::average(input_of(c.index()));
      c.add<ps>(aid, g, k);
    });
    const double per_node = double(bench::heap_bytes() - heap0) / n;
    o = measure<fixed_group, ps>(w, n, truth, max_rounds, time_point{});
    o.bytes_per_node = per_node;
  }
  o.seconds = bench::seconds_since(t0);
  return o;
}

outcome overlay(std::uint32_t n, double loss, std::uint64_t seed, int max_rounds) {
  const auto t0 = std::chrono::steady_clock::now();
  const auto heap0 = bench::heap_bytes();
  double truth = 0;
  for (std::uint32_t i = 0; i < n; ++i) truth += input_of(i) / n;
  using ps = aggregate::push_sum<sim::env, hpv>;
  outcome o;
  {
    simulator w(seed, bench::network(loss));
    bench::join_all(w, n, std::chrono::milliseconds(1), [](sim::node_context& c, const address& contact) {
      membership::hyparview_config hk;
      hk.contact = contact;
      auto& m = c.add<hpv>(mid, hk);
      aggregate::push_sum_config k;
      k.input = aggregate::push_sum_input::average(input_of(c.index()));
      c.add<ps>(aid, m, k);
    });
    w.run_for(10s);  // the overlay settles
    const double per_node = double(bench::heap_bytes() - heap0) / n;
    for (std::uint32_t i = 0; i < n; ++i) w.get<ps>(i, aid).restart();  // everyone starts epoch 1 now
    o = measure<hpv, ps>(w, n, truth, max_rounds, w.now());
    o.bytes_per_node = per_node;
  }
  o.seconds = bench::seconds_since(t0);
  return o;
}

std::string rounds(int r) { return r < 0 ? "-" : std::to_string(r); }
}  // namespace

int main(int argc, char** argv) {
  // --targets uniform|hyparview|both (both by default), --sizes, --loss
  std::string targets = "both", losses = "both";
  std::vector<std::uint32_t> chosen_sizes;
  int max_rounds_override = 0;
  std::vector<char*> rest{argv[0]};
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--targets") && i + 1 < argc)
      targets = argv[++i];
    else if (!std::strcmp(argv[i], "--loss") && i + 1 < argc)
      losses = argv[++i];
    else if (!std::strcmp(argv[i], "--max-rounds") && i + 1 < argc) {
      max_rounds_override = std::atoi(argv[++i]);
      if (max_rounds_override < 1) {
        std::fprintf(stderr, "push_sum: --max-rounds wants a positive number of rounds\n");
        return 2;
      }
    } else if (!std::strcmp(argv[i], "--sizes") && i + 1 < argc) {
      std::istringstream in(argv[++i]);
      for (std::string item; std::getline(in, item, ',');) {
        const unsigned long v = std::strtoul(item.c_str(), nullptr, 10);
        if (v < 2 || v > 10000000) {
          std::fprintf(stderr, "push_sum: --sizes wants node counts in [2, 10^7], got '%s'\n", item.c_str());
          return 2;
        }
        chosen_sizes.push_back(static_cast<std::uint32_t>(v));
      }
    } else
      rest.push_back(argv[i]);
  }
  if (targets != "uniform" && targets != "hyparview" && targets != "both") {
    std::fprintf(stderr, "push_sum: --targets is uniform, hyparview or both\n");
    return 2;
  }
  if (losses != "0" && losses != "0.1" && losses != "both") {
    std::fprintf(stderr, "push_sum: --loss is 0, 0.1 or both\n");
    return 2;
  }
  auto a = bench::args::parse(static_cast<int>(rest.size()), rest.data(), "push_sum.csv");
  std::vector<std::uint32_t> sizes =
      a.quick ? std::vector<std::uint32_t>{1000, 10000} : std::vector<std::uint32_t>{1000, 10000, 100000, 1000000};
  if (!chosen_sizes.empty()) sizes = chosen_sizes;
  std::ofstream csv(a.csv);
  csv << "targets,nodes,loss,log2n,goal_rounds,rounds_to_eps,rounds_to_consensus,final_error,bytes_per_node,seconds\n";
  std::printf("Push-Sum: rounds to relative error %g (goal at uniform targets: 1.5 (log2 N + log2 1/eps))\n", eps);
  std::printf("%-9s %8s %5s %6s %6s %8s %10s %11s %9s %8s\n", "targets", "N", "loss", "log2N", "goal", "rounds",
              "consensus", "final err", "B/node", "wall s");
  for (auto n : sizes) {
    for (int t = 0; t < 2; ++t) {
      if (t == 1 && (n > 10000 || (a.quick && n > 1000))) continue;  // --quick: HyParView only at 10^3 (CI time)
      if ((t == 0 && targets == "hyparview") || (t == 1 && targets == "uniform")) continue;
      for (double loss : {0.0, 0.1}) {
        if ((loss == 0 && losses == "0.1") || (loss > 0 && losses == "0")) continue;
        const int max_rounds = max_rounds_override ? max_rounds_override : t == 0 ? 120 : (loss > 0 ? 150 : 400);
        auto o = t == 0 ? uniform(n, loss, a.seed, max_rounds) : overlay(n, loss, a.seed, max_rounds);
        const double l2 = std::log2(double(n)), goal = 1.5 * (l2 + std::log2(1 / eps));
        const char* name = t == 0 ? "uniform" : "hyparview";
        std::printf("%-9s %8u %4.0f%% %6.1f %6.1f %8s %10s %11.2e %9.0f %8.1f\n", name, n, loss * 100, l2, goal,
                    rounds(o.rounds_to_eps).c_str(), rounds(o.rounds_to_consensus).c_str(), o.final_error,
                    o.bytes_per_node, o.seconds);
        std::fflush(stdout);
        csv << name << ',' << n << ',' << loss << ',' << l2 << ',' << goal << ',' << o.rounds_to_eps << ','
            << o.rounds_to_consensus << ',' << o.final_error << ',' << o.bytes_per_node << ',' << o.seconds << '\n';
      }
    }
  }
}
