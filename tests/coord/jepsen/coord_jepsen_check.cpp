// coord_jepsen_check: checks the histories of the Jepsen-style test
// (history.hpp) for linearizability, split by key, with dcp::check
// (Wing & Gong's search with Lowe's memo; check/linearizability.hpp).
//
//   coord_jepsen_check FILE... [--min-ok N] [--min-ok-in-last S N] [--max-steps N]
//
// Several files may be given (histories of several workload processes on
// one machine: CLOCK_MONOTONIC is system-wide); they are merged.
// An operation whose status is fail is left out (it did not take effect);
// one whose status is unknown may have taken effect at any time after its
// invocation, or never (the checker's pending operations).
//
// Prints `CHECK ops=<n> ok=<n> fail=<n> unknown=<n> keys=<n> steps=<n> ms=<t> verdict=<v>`;
// when not linearizable, the window where the search got stuck (as
// Porcupine and Knossos report it; not minimized): the end of the longest
// linearization found on the failing key, the value the key then holds, the
// operations that could come next, the first of which to return could not
// be placed, and, when that is a read, the operations that wrote the value
// it read.
// --min-ok N: fail unless at least N operations completed ok (a cluster that
// answered nothing must not pass); --min-ok-in-last S N: and at least N in
// the last S seconds of the run (it recovered after the last fault).
// Exit status: 0 linearizable (and progress as asked), 1 not linearizable,
// 2 bad usage or an unreadable history, 3 the search budget ran out
// (unknown), 4 too little progress.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "history.hpp"

namespace {

namespace jepsen = dcp::jepsen;
using model = jepsen::kv_cas_model;

[[noreturn]] void usage(const std::string& why) {
  std::cerr << "coord_jepsen_check: " << why << "\n"
            << "usage: coord_jepsen_check FILE... [--min-ok N] [--min-ok-in-last SECONDS N] [--max-steps N]\n";
  std::exit(2);
}

std::string show(const jepsen::record& r, std::int64_t t0) {
  auto ms = [t0](std::int64_t t) {
    char b[32];
    std::snprintf(b, sizeof b, "%.3f", static_cast<double>(t - t0) / 1e6);
    return std::string(b);
  };
  std::string s = "  [" + ms(r.invoke_ns) + ", " + (r.complete_ns ? ms(*r.complete_ns) : std::string("-")) + "] ms  p" +
      std::to_string(r.process) + " " + r.op + "(" + r.key;
  if (r.op == "put") s += ", " + r.arg1;
  if (r.op == "cas") s += ", " + r.arg1 + " -> " + r.arg2;
  s += ") " + std::string(jepsen::to_string(r.status));
  if (r.status == jepsen::status::ok && r.result != "-") s += " " + r.result;
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> files;
  long long min_ok = 0, min_ok_last = 0, last_seconds = 0;
  std::uint64_t max_steps = 200'000'000;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "--min-ok" && i + 1 < argc)
      min_ok = std::atoll(argv[++i]);
    else if (arg == "--min-ok-in-last" && i + 2 < argc)
      last_seconds = std::atoll(argv[++i]), min_ok_last = std::atoll(argv[++i]);
    else if (arg == "--max-steps" && i + 1 < argc)
      max_steps = std::strtoull(argv[++i], nullptr, 10);
    else if (arg.starts_with("--"))
      usage("unknown option or missing value: " + std::string(arg));
    else
      files.emplace_back(arg);
  }
  if (files.empty()) usage("no history file");

  // Read every file; records[i] and ops[i] correspond (fail records are kept
  // in records but have no op).
  std::vector<jepsen::record> records;
  for (const auto& name : files) {
    std::ifstream in(name);
    if (!in) usage("cannot read " + name);
    std::string line;
    for (std::size_t n = 1; std::getline(in, line); ++n) {
      if (line.empty() || line[0] == '#') continue;
      std::string why;
      auto r = jepsen::parse(line, why);
      if (!r) usage(name + ":" + std::to_string(n) + ": " + why + ": " + line);
      records.push_back(std::move(*r));
    }
  }
  if (records.empty()) usage("the histories hold no operation");
  std::int64_t t0 = records.front().invoke_ns, t_end = t0;
  for (auto& r : records) {
    t0 = std::min(t0, r.invoke_ns);
    t_end = std::max(t_end, r.complete_ns.value_or(r.invoke_ns));
  }

  dcp::check::history<model> h;
  std::vector<std::size_t> record_of;  // h[i] is records[record_of[i]]
  std::size_t ok = 0, fail = 0, unknown = 0, ok_last = 0;
  std::set<std::string> keys;
  for (std::size_t i = 0; i < records.size(); ++i) {
    const auto& r = records[i];
    ok += r.status == jepsen::status::ok;
    fail += r.status == jepsen::status::fail;
    unknown += r.status == jepsen::status::unknown;
    if (r.status == jepsen::status::ok && *r.complete_ns >= t_end - last_seconds * 1'000'000'000) ++ok_last;
    keys.insert(r.key);
    if (auto o = jepsen::to_operation(r)) {
      h.push_back(std::move(*o));
      record_of.push_back(i);
    }
  }

  const auto started = std::chrono::steady_clock::now();
  auto result = dcp::check::check_linearizability<model>(h, {.max_steps = max_steps});
  const auto ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started).count();
  const char* verdict = result.outcome == dcp::check::verdict::linearizable ? "linearizable"
      : result.outcome == dcp::check::verdict::not_linearizable             ? "NOT_linearizable"
                                                                            : "unknown";
  std::cout << "CHECK ops=" << records.size() << " ok=" << ok << " fail=" << fail << " unknown=" << unknown
            << " keys=" << keys.size() << " steps=" << result.steps << " ms=" << static_cast<long long>(ms)
            << " span_s=" << (t_end - t0) / 1'000'000'000 << " verdict=" << verdict << std::endl;

  if (result.outcome == dcp::check::verdict::not_linearizable) {
    // The failing key: that of the longest linearization, else of the first op.
    std::cout << "NOT linearizable";
    std::string key;
    if (!result.longest_linearization.empty()) key = h[result.longest_linearization.front()].input.key;
    std::set<std::size_t> placed(result.longest_linearization.begin(), result.longest_linearization.end());
    // The earliest return among the key's completed operations not placed:
    // that operation could not be placed after the linearization found.
    std::optional<std::size_t> stuck;
    for (std::size_t i = 0; i < h.size(); ++i) {
      if (placed.contains(i) || h[i].pending()) continue;
      if (!key.empty() && h[i].input.key != key) continue;
      if (!stuck || h[i].ret < h[*stuck].ret) stuck = i;
    }
    if (key.empty() && stuck) key = h[*stuck].input.key;
    std::cout << " on key " << key << " (times in ms from the first invocation)\n";
    model::state s = model::init();
    for (auto i : result.longest_linearization) s = *model::step(s, h[i].input, std::nullopt);
    const std::size_t n = result.longest_linearization.size();
    std::cout << "the longest linearization found has " << n << " operations; its last ones:\n";
    for (std::size_t k = n > 4 ? n - 4 : 0; k < n; ++k)
      std::cout << show(records[record_of[result.longest_linearization[k]]], t0) << "\n";
    std::cout << "after them " << key << " holds " << s.value_or("nil") << "; none of these can come next:\n";
    if (stuck) {
      for (std::size_t i = 0; i < h.size(); ++i)
        if (!placed.contains(i) && h[i].input.key == key && h[i].call <= h[*stuck].ret &&
            !(h[i].pending() && model::read_only(h[i].input)))
          std::cout << show(records[record_of[i]], t0) << (i == *stuck ? "   <- returns first: cannot be placed" : "")
                    << "\n";
    }
    // A read that cannot be placed: who wrote what it read, and when.
    if (stuck && h[*stuck].input.kind == model::op::get && h[*stuck].output->value) {
      const std::string& v = *h[*stuck].output->value;
      std::cout << "the value it read, " << v << ", was written by:\n";
      bool any = false;
      for (const auto& r : records)
        if (r.key == key && ((r.op == "put" && r.arg1 == v) || (r.op == "cas" && r.arg2 == v)))
          std::cout << show(r, t0) << "\n", any = true;
      if (!any) std::cout << "  no operation in the history\n";
    }
    return 1;
  }
  if (result.outcome == dcp::check::verdict::unknown) {
    std::cout << "UNKNOWN: " << result.reason << "\n";
    return 3;
  }
  if (static_cast<long long>(ok) < min_ok) {
    std::cout << "TOO LITTLE PROGRESS: " << ok << " operations completed ok, fewer than " << min_ok << "\n";
    return 4;
  }
  if (static_cast<long long>(ok_last) < min_ok_last) {
    std::cout << "TOO LITTLE PROGRESS: " << ok_last << " operations completed ok in the last " << last_seconds
              << " s, fewer than " << min_ok_last << "\n";
    return 4;
  }
  std::cout << "linearizable: " << ok << " ok (" << ok_last << " in the last " << last_seconds << " s), " << fail
            << " fail, " << unknown << " unknown, over " << keys.size() << " keys\n";
  return 0;
}
