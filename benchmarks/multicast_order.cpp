// Ordered multicast: messages per delivered multicast and delivery latency,
// as the group grows and links lose messages, beside the textbook cost.
//
//   total   totally ordered multicast (Lamport clocks + acknowledgements):
//           the textbook cost is N−1 data messages + N(N−1) acknowledgements
//           = N²−1 per multicast (van Steen & Tanenbaum ch. 6).
//   causal  causally ordered multicast (vector clocks): N−1 per multicast.
//
// Both run over dcp's reliable links (sequence numbers, cumulative
// acknowledgements, retransmission), which add what the textbook leaves to
// its "reliable FIFO channels": stand-alone link acknowledgements (when no
// frame goes back to carry one within ack_delay = 2 ms) and retransmissions
// (every 20 ms while unacknowledged). Columns, per multicast:
//   proto     protocol frames sent once (data + acknowledgements): the
//             textbook's count, which it must equal
//   retx      retransmitted frames (loss, and spurious ones when a link ack
//             is slower than the retransmission interval)
//   link_acks stand-alone link acknowledgements
//   total     everything on the wire
// Latency: from multicast() to delivery at each member (the sender included),
// p50 and p99 over all (message, member) pairs, in ms.
//
// Workload: every member multicasts at exponential intervals (mean 20 ms per
// member) for 2 s (--quick: 0.5 s); delays uniform in [1, 10] ms; loss as
// given, 5% duplication and 20% reordering (held back up to 10 ms) whenever
// loss > 0. 3 seeds per point (--quick: 1).
//
// Usage: multicast_order [--quick] [--csv FILE]
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "dcp/group.hpp"
#include "dcp/multicast.hpp"
#include "dcp/sim.hpp"

using namespace dcp;

namespace {
struct row {
  std::string protocol;
  std::uint32_t n;
  double loss;
  double proto, retx, link_acks, total, textbook;
  double p50, p99;
  std::uint64_t multicasts, deliveries, expected;
};

sim::config network(double loss) {
  sim::config c;
  c.network.delay = sim::latency::uniform(1ms, 10ms);
  c.network.loss = loss;
  if (loss > 0) {
    c.network.duplicate = 0.05;
    c.network.reorder = 0.2;
    c.network.reorder_delay = 10ms;
  }
  return c;
}

double percentile(std::vector<double>& v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<std::size_t>(p * static_cast<double>(v.size())))];
}

bytes encode(std::uint64_t id) {
  bytes b(8);
  std::memcpy(b.data(), &id, 8);
  return b;
}
std::uint64_t decode(byte_view b) {
  std::uint64_t id = 0;
  if (b.size() == 8) std::memcpy(&id, b.data(), 8);
  return id;
}

/// One run; P is total_order or causal_order over sim::env.
template <class P> row run(const char* label, std::uint32_t n, double loss, duration period, int seeds) {
  const protocol_id pid = P::default_id;
  double frames = 0, retx = 0, acks = 0;
  std::uint64_t multicasts = 0, deliveries = 0;
  std::vector<double> latency;
  for (int s = 1; s <= seeds; ++s) {
    sim::simulator w(static_cast<std::uint64_t>(s) * 7919 + n, network(loss));
    w.add_nodes(n, [=](sim::node_context& c) { c.add<P>(pid, group::static_group::sim(n)); });
    auto sent_at = std::make_shared<std::vector<time_point>>();
    for (std::uint32_t i = 0; i < n; ++i)
      w.get<P>(i, pid).on_deliver([&w, sent_at, &latency, &deliveries](const auto& d) {
        const auto id = decode(d.payload);
        ++deliveries;
        latency.push_back(to_millis(w.now() - (*sent_at)[id]));
      });
    const time_point end = w.now() + period;
    for (std::uint32_t i = 0; i < n; ++i) {
      // exponential gaps, mean 20 ms
      time_point t = w.now();
      for (;;) {
        t += duration(static_cast<std::int64_t>(w.rng().exponential(static_cast<double>(duration(20ms).count()))));
        if (t >= end) break;
        w.at(t, [&w, sent_at, i, pid] {
          const auto id = sent_at->size();
          sent_at->push_back(w.now());
          if constexpr (requires { w.get<P>(i, pid).multicast(byte_view{}).has_value(); }) {
            if (!w.get<P>(i, pid).multicast(encode(id))) sent_at->back() = time_point::max();  // busy: not sent
          } else {
            w.get<P>(i, pid).multicast(encode(id));
          }
        });
      }
    }
    w.run_for(period + 30s);
    std::uint64_t mine = 0;
    for (auto t : *sent_at) mine += t != time_point::max();
    multicasts += mine;
    const auto& m = w.metrics();
    frames += static_cast<double>(m.of(pid, 1).sent);
    acks += static_cast<double>(m.of(pid, 2).sent);
    retx += static_cast<double>(m.counter(pid, "retransmissions"));
  }
  const double k = static_cast<double>(multicasts), N = n;
  const bool total = std::string(label) == "total";
  return {label,
          n,
          loss,
          (frames - retx) / k,
          retx / k,
          acks / k,
          (frames + acks) / k,
          total ? N * N - 1 : N - 1,
          percentile(latency, 0.5),
          percentile(latency, 0.99),
          multicasts,
          deliveries,
          multicasts * n};
}
}  // namespace

int main(int argc, char** argv) {
  bool quick = false;
  std::string csv = "multicast_order.csv";
  for (int a = 1; a < argc; ++a) {
    if (!std::strcmp(argv[a], "--quick"))
      quick = true;
    else if (!std::strcmp(argv[a], "--csv") && a + 1 < argc)
      csv = argv[++a];
    else {
      std::fprintf(stderr, "usage: %s [--quick] [--csv FILE]\n", argv[0]);
      return 2;
    }
  }
  const std::vector<std::uint32_t> sizes =
      quick ? std::vector<std::uint32_t>{3, 8} : std::vector<std::uint32_t>{3, 5, 8, 16};
  const std::vector<double> losses = quick ? std::vector<double>{0, 0.1} : std::vector<double>{0, 0.01, 0.1, 0.3};
  const duration period = quick ? duration(500ms) : duration(2s);
  const int seeds = quick ? 1 : 3;
  std::vector<row> rows;
  for (auto n : sizes)
    for (auto loss : losses) {
      rows.push_back(run<multicast::total_order<sim::env>>("total", n, loss, period, seeds));
      rows.push_back(run<multicast::causal_order<sim::env>>("causal", n, loss, period, seeds));
      std::fprintf(stderr, "  N=%u loss=%.2f done\n", n, loss);
    }
  std::printf("%-7s %3s %5s | %8s %8s %6s %9s %8s | %7s %7s | %s\n", "order", "N", "loss", "textbook", "proto", "retx",
              "link_acks", "total", "p50 ms", "p99 ms", "delivered/expected");
  for (auto& r : rows)
    std::printf("%-7s %3u %5.2f | %8.0f %8.2f %6.2f %9.2f %8.2f | %7.1f %7.1f | %llu/%llu\n", r.protocol.c_str(), r.n,
                r.loss, r.textbook, r.proto, r.retx, r.link_acks, r.total, r.p50, r.p99,
                static_cast<unsigned long long>(r.deliveries), static_cast<unsigned long long>(r.expected));
  std::printf("(messages per multicast; proto = first transmissions of protocol frames, the textbook's count)\n");
  std::ofstream f(csv);
  f << "order,n,loss,textbook,proto,retx,link_acks,total,p50_ms,p99_ms,multicasts,deliveries\n";
  for (auto& r : rows)
    f << r.protocol << ',' << r.n << ',' << r.loss << ',' << r.textbook << ',' << r.proto << ',' << r.retx << ','
      << r.link_acks << ',' << r.total << ',' << r.p50 << ',' << r.p99 << ',' << r.multicasts << ',' << r.deliveries
      << '\n';
  std::fprintf(stderr, "wrote %s\n", csv.c_str());
}
