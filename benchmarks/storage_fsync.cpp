// durable_storage on real files (file_disk): appends per second under each
// fsync policy, with a batch of B entries per sync for `batched` (group
// commit). The directory is $DCP_BENCH_DIR or /tmp; put it on the disk you
// care about (tmpfs makes fsync free).
//
//   storage_fsync [--quick]     prints a table, writes storage_fsync.csv
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <unistd.h>

#include "dcp/core/file_disk.hpp"
#include "dcp/storage.hpp"

using namespace dcp;
using namespace dcp::storage;

int main(int argc, char** argv) {
  const bool quick = argc > 1 && std::strcmp(argv[1], "--quick") == 0;
  const char* base = std::getenv("DCP_BENCH_DIR");
  const auto dir = std::filesystem::path(base ? base : "/tmp") / ("dcp-storage-bench-" + std::to_string(::getpid()));
  const std::size_t entry_bytes = 128;
  struct run {
    const char* name;
    sync_policy policy;
    int batch;
  };
  const run runs[] = {{"every_append", sync_policy::every_append, 1},
                      {"batched", sync_policy::batched, 1},
                      {"batched", sync_policy::batched, 16},
                      {"batched", sync_policy::batched, 128},
                      {"never", sync_policy::never, 1}};
  std::ofstream csv("storage_fsync.csv");
  csv << "policy,batch,entries,seconds,entries_per_s,syncs,recovery_ms\n";
  std::printf("durable_storage over file_disk in %s, %zu-byte entries\n", dir.c_str(), entry_bytes);
  std::printf("%-13s %6s %9s %14s %9s %12s\n", "policy", "batch", "entries", "entries/s", "syncs", "recovery ms");
  for (const auto& r : runs) {
    std::filesystem::remove_all(dir);
    const int entries = quick ? 200 : (r.policy == sync_policy::never || r.batch >= 16 ? 50000 : 3000);
    double secs = 0, rec_ms = 0;
    std::uint64_t syncs = 0;
    {
      file_disk d(dir);
      durable_storage s(d, {"bench", r.policy});
      const auto t0 = std::chrono::steady_clock::now();
      for (int i = 1; i <= entries; ++i) {
        if (auto ec = s.append({static_cast<std::uint64_t>(i), 1, entry_kind::command, bytes(entry_bytes, 7)})) {
          std::fprintf(stderr, "append failed: %s\n", ec.message().c_str());
          return 1;
        }
        if (i % r.batch == 0 && s.sync()) return 1;
      }
      if (s.sync()) return 1;
      secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      syncs = s.syncs();
    }
    {
      const auto t0 = std::chrono::steady_clock::now();
      file_disk d(dir);
      durable_storage s(d, {"bench", r.policy});
      rec_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
      if (s.last_index() != static_cast<std::uint64_t>(entries)) {
        std::fprintf(stderr, "recovered %llu of %d entries\n", static_cast<unsigned long long>(s.last_index()),
                     entries);
        return 1;
      }
    }
    std::printf("%-13s %6d %9d %14.0f %9llu %12.1f\n", r.name, r.batch, entries, entries / secs,
                static_cast<unsigned long long>(syncs), rec_ms);
    csv << r.name << ',' << r.batch << ',' << entries << ',' << secs << ',' << entries / secs << ',' << syncs << ','
        << rec_ms << '\n';
  }
  std::filesystem::remove_all(dir);
}
