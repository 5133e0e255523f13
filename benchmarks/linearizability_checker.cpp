// Linearizability checker: time to check a register history vs its length
// and concurrency (linearizable histories, the checker's common case, and
// the same histories with a stale read planted at the end, which forces the
// search to exhaust its options), without and with 2% of operations that
// never returned. "ok" counts correct verdicts; a search that ran out of its
// step budget (verdict unknown) is not ok.
//
//   linearizability_checker [--quick] [--csv FILE]  (default CSV: linearizability_checker.csv)
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "dcp/check.hpp"

using namespace dcp;
using namespace dcp::check;

int main(int argc, char** argv) {
  bool quick = false;
  std::string csv = "linearizability_checker.csv";
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--quick"))
      quick = true;
    else if (!std::strcmp(argv[i], "--csv") && i + 1 < argc)
      csv = argv[++i];
  }
  const std::vector<std::size_t> lengths =
      quick ? std::vector<std::size_t>{100, 200} : std::vector<std::size_t>{100, 200, 400, 800, 1600, 3200};
  const std::vector<std::size_t> concurrency = quick ? std::vector<std::size_t>{4} : std::vector<std::size_t>{2, 4, 8};
  const std::vector<double> pendings{0.0, 0.02};
  const int seeds = quick ? 2 : 5;
  const check_options budget{.max_steps = quick ? 2'000'000u : 50'000'000u};

  std::ofstream out(csv);
  out << "ops,clients,pending,case,mean_ms,max_ms,mean_steps,verdicts_ok\n";
  std::printf("%6s %8s %8s %-14s %10s %10s %12s %4s\n", "ops", "clients", "pending", "case", "mean ms", "max ms",
              "mean steps", "ok");
  for (double pending : pendings)
    for (std::size_t clients : concurrency)
      for (std::size_t n : lengths)
        for (const char* which : {"linearizable", "stale-read"}) {
          double total_ms = 0, max_ms = 0, total_steps = 0;
          int ok = 0;
          for (int seed = 1; seed <= seeds; ++seed) {
            rng r(static_cast<std::uint64_t>(seed) * 1000 + n + clients);
            auto h = random_register_history(r, {.operations = n, .clients = clients, .pending = pending});
            const bool plant = which[0] == 's';
            if (plant) {  // a read after everything, of a value no one wrote
              time_point end{};
              for (const auto& o : h) end = std::max(end, o.pending() ? o.call : o.ret);
              h.push_back({999, end + 1s, end + 2s, register_model::read(), register_model::output{-1, true}});
            }
            const auto start = std::chrono::steady_clock::now();
            auto res = check_linearizability<register_model>(h, budget);
            const double ms =
                std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
            total_ms += ms;
            max_ms = std::max(max_ms, ms);
            total_steps += static_cast<double>(res.steps);
            ok += res.outcome == (plant ? verdict::not_linearizable : verdict::linearizable);
          }
          std::printf("%6zu %8zu %8.2f %-14s %10.2f %10.2f %12.0f %2d/%d\n", n, clients, pending, which,
                      total_ms / seeds, max_ms, total_steps / seeds, ok, seeds);
          out << n << "," << clients << "," << pending << "," << which << "," << total_ms / seeds << "," << max_ms
              << "," << total_steps / seeds << "," << ok << "\n";
          std::fflush(stdout);
        }
  // Partitioned histories: key "a" (first in key order) holds n concurrent
  // puts then a read of a value nobody put, which no budget finishes for
  // large n; key "b" a plain stale read. Keys are searched interleaved, so
  // the answer is the violation in "b", found at once; with "b" linearizable
  // the memory budget ends "a" with `unknown`.
  std::printf("\n%8s %-12s %-18s %10s %12s %12s\n", "writers", "key b", "verdict", "ms", "steps", "peak MiB");
  out << "\nwriters,key_b,verdict,ms,steps,peak_bytes\n";
  auto at = [](std::int64_t t) { return time_point(duration(t)); };
  for (int writers : quick ? std::vector<int>{20, 40} : std::vector<int>{10, 20, 30, 40, 60})
    for (bool b_violates : {true, false}) {
      history<kv_model> h;
      for (int i = 0; i < writers; ++i)
        h.push_back(
            {static_cast<std::uint64_t>(i), at(0), at(100), kv_model::put("a", std::to_string(i)), kv_model::output{}});
      h.push_back({999, at(200), at(300), kv_model::get("a"), kv_model::output{"nobody"}});
      h.push_back({1, at(0), at(10), kv_model::put("b", "1"), kv_model::output{}});
      h.push_back({2, at(20), at(30), kv_model::put("b", "2"), kv_model::output{}});
      h.push_back({3, at(40), at(50), kv_model::get("b"), kv_model::output{b_violates ? "1" : "2"}});
      const check_options opts{.max_steps = 200'000'000, .max_memory_bytes = std::size_t{quick ? 16u : 64u} << 20};
      const auto start = std::chrono::steady_clock::now();
      auto res = check_linearizability<kv_model>(h, opts);
      const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
      const char* v = res.outcome == verdict::linearizable ? "linearizable"
          : res.outcome == verdict::not_linearizable       ? "not_linearizable"
                                                           : "unknown";
      std::printf("%8d %-12s %-18s %10.1f %12llu %12.1f\n", writers, b_violates ? "stale read" : "fine", v, ms,
                  static_cast<unsigned long long>(res.steps), static_cast<double>(res.peak_memory_bytes) / (1 << 20));
      out << writers << "," << (b_violates ? "stale" : "fine") << "," << v << "," << ms << "," << res.steps << ","
          << res.peak_memory_bytes << "\n";
      std::fflush(stdout);
    }
  std::fprintf(stderr, "wrote %s\n", csv.c_str());
  return 0;
}
