// Simulator speed and footprint.
//
//   events/s  delivered events per second on one core: N nodes pass tokens to
//             random peers (every event a message delivery through the whole
//             path: encode, queue, decode, dispatch, handler);
//   timers/s  the same with a timer per hop (a protocol that waits before forwarding);
//   B/node    heap bytes per idle node at 10^5 nodes: bare, and with an idle
//             heartbeat failure detector; and per node while N tokens are in
//             flight (the event queue, messages and their payloads included).
//
// Usage: sim_throughput [--quick] [--csv FILE]
#include <malloc.h>

#include <chrono>
#include <ctime>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>

#include "dcp/failure.hpp"
#include "dcp/sim.hpp"

using namespace dcp;

namespace {
struct token {
  static constexpr message_type wire_id = 1;
  std::uint64_t hops = 0;
  template <class A> void serialize(A& ar) { ar(hops); }
};

template <Env E> struct passer {
  using messages = wire::message_set<token>;
  passer(E env, std::uint32_t n, bool wait) : env(env), n(n), wait(wait) {}
  void on_message(const address&, const token& t) {
    if (wait)
      env.arm(1ms, [this, h = t.hops] { forward(h + 1); });
    else
      forward(t.hops + 1);
  }
  void forward(std::uint64_t hops) {
    env.send(address::sim(static_cast<std::uint32_t>(env.rng().below(n))), token{hops});
  }
  E env;
  std::uint32_t n;
  bool wait;
};

template <Env E> struct idle {
  using messages = wire::message_set<token>;
  explicit idle(E) {}
  void on_message(const address&, const token&) {}
};

// CPU time of this process: on a shared machine, wall time measures the
// neighbours; "events per second on one core" is events per CPU second.
double cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

std::size_t heap_in_use() {
  const auto m = mallinfo2();
  return m.uordblks + m.hblkhd;  // small blocks and mmapped ones (the big vectors)
}

struct rate {
  double events_per_s;
  std::uint64_t events;
  double seconds;
  double bytes_per_node;  // heap in use at the end of the run
};

rate run_tokens(std::uint32_t n, std::uint64_t events, bool wait) {
  sim::config c;
  c.network.delay = sim::latency::uniform(1ms, 10ms);
  const auto heap_before = heap_in_use();
  sim::simulator w(1, c);
  w.add_nodes(n, [=](sim::node_context& ctx) { ctx.add<passer<sim::env>>(1, n, wait); });
  for (std::uint32_t i = 0; i < n; ++i) w.get<passer<sim::env>>(i, 1).forward(0);
  const double t0 = cpu_seconds();
  auto r = w.run_until(time_point::max(), events);
  const double s = cpu_seconds() - t0;
  const double per_node = static_cast<double>(heap_in_use() - heap_before) / n;
  return {static_cast<double>(r.events) / s, r.events, s, per_node};
}

template <class Setup> double bytes_per_node(std::uint32_t n, Setup setup) {
  const auto before = mallinfo2().uordblks;
  double per;
  {
    sim::simulator w(1);
    w.add_nodes(n, setup);
    per = static_cast<double>(mallinfo2().uordblks - before) / n;
  }
  return per;
}
}  // namespace

int main(int argc, char** argv) {
  bool quick = false;
  std::string csv;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--quick"))
      quick = true;
    else if (!std::strcmp(argv[i], "--csv") && i + 1 < argc)
      csv = argv[++i];
    else {
      std::fprintf(stderr, "usage: %s [--quick] [--csv FILE]\n", argv[0]);
      return 2;
    }
  }
  const std::uint64_t events = quick ? 200000 : 5000000;
  const std::uint32_t mem_nodes = quick ? 10000 : 100000;

  std::printf("%-44s %14s %10s %8s\n", "simulator workload", "events/s", "CPU s", "B/node");
  std::ofstream out;
  if (!csv.empty()) {
    out.open(csv);
    out << "workload,nodes,events,seconds,events_per_second,bytes_per_node_running\n";
  }
  for (std::uint32_t n : {1000u, 10000u, 100000u}) {
    for (bool wait : {false, true}) {
      const rate r = run_tokens(n, events, wait);
      const std::string name =
          std::string(wait ? "token passing + timer per hop" : "token passing") + ", N=" + std::to_string(n);
      std::printf("%-44s %14.0f %10.2f %8.0f\n", name.c_str(), r.events_per_s, r.seconds, r.bytes_per_node);
      if (out)
        out << '"' << name << "\"," << n << ',' << r.events << ',' << r.seconds << ',' << r.events_per_s << ','
            << r.bytes_per_node << '\n';
    }
  }
  const double bare = bytes_per_node(mem_nodes, [](sim::node_context&) {});
  const double with_idle = bytes_per_node(mem_nodes, [](sim::node_context& c) { c.add<idle<sim::env>>(1); });
  const double with_hb = bytes_per_node(
      mem_nodes, [](sim::node_context& c) { c.add<failure::heartbeat<sim::env>>(1, failure::heartbeat_config{}); });
  std::printf("\nheap bytes per idle node at N=%u\n", mem_nodes);
  std::printf("  %-40s %8.0f\n  %-40s %8.0f\n  %-40s %8.0f\n", "node with no protocol", bare,
              "node with an idle protocol", with_idle, "node with a heartbeat detector (no peers)", with_hb);
  if (out) {
    out << "bytes_per_node_bare," << mem_nodes << ",,," << bare << ",\n";
    out << "bytes_per_node_idle_protocol," << mem_nodes << ",,," << with_idle << ",\n";
    out << "bytes_per_node_heartbeat," << mem_nodes << ",,," << with_hb << ",\n";
  }
  return 0;
}
