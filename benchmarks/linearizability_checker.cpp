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
    if (!std::strcmp(argv[i], "--quick")) quick = true;
    else if (!std::strcmp(argv[i], "--csv") && i + 1 < argc) csv = argv[++i];
  }
  const std::vector<std::size_t> lengths = quick ? std::vector<std::size_t>{100, 200}
                                                 : std::vector<std::size_t>{100, 200, 400, 800, 1600, 3200};
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
          const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
          total_ms += ms;
          max_ms = std::max(max_ms, ms);
          total_steps += static_cast<double>(res.steps);
          ok += res.outcome == (plant ? verdict::not_linearizable : verdict::linearizable);
        }
        std::printf("%6zu %8zu %8.2f %-14s %10.2f %10.2f %12.0f %2d/%d\n", n, clients, pending, which, total_ms / seeds,
                    max_ms, total_steps / seeds, ok, seeds);
        out << n << "," << clients << "," << pending << "," << which << "," << total_ms / seeds << "," << max_ms << ","
            << total_steps / seeds << "," << ok << "\n";
        std::fflush(stdout);
      }
  std::fprintf(stderr, "wrote %s\n", csv.c_str());
  return 0;
}
