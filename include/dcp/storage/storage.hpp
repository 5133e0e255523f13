#pragma once
// The Storage concept: what a consensus replica must keep across crashes.
//
// Three things, each with its own durability rule:
//   - the hard state {current term, vote}: saved durably before save_state()
//     returns, because a replica that forgets a vote may vote twice in a term;
//   - the log of entries {index, term, kind, data}: append() and
//     truncate_suffix() change it, and sync() makes everything up to
//     last_index() durable. A replica acknowledges entries only after sync(),
//     or after the work sync_later() gives has run and synced() recorded it:
//     the same sync, performed by the runtime off the event loop (env.perform;
//     etcd's Ready.MustSync);
//   - the snapshot {index, term, data}: the state of everything up to
//     `index`, installed atomically. Entries up to its index are dropped
//     (log compaction); entries after it are kept only if the log agrees with
//     the snapshot at its index (Raft's InstallSnapshot rule).
//
//   memory_storage   (storage/memory_storage.hpp)  for tests and for replicas
//                    that never restart; loses everything in a crash.
//   durable_storage  (storage/durable_storage.hpp) checksummed records over a
//                    dcp::disk, an fsync policy, recovery of a torn tail.
//
// Indices start at 1; index 0 with term 0 is the empty prefix every log shares.
#include <concepts>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>
#include <system_error>

#include "dcp/core/address.hpp"
#include "dcp/core/bytes.hpp"
#include "dcp/core/disk.hpp"

namespace dcp::storage {

enum class entry_kind : std::uint8_t {
  command = 0,  ///< a user command for the state machine
  config = 1,   ///< a membership configuration (consensus decides the format)
  noop = 2,     ///< a new leader's first entry: commits its predecessors' entries
};

struct log_entry {
  std::uint64_t index = 0;
  std::uint64_t term = 0;
  entry_kind kind = entry_kind::command;
  bytes data;

  template <class A> void serialize(A& ar) { ar(index, term, kind, data); }
  bool operator==(const log_entry&) const = default;
};

struct hard_state {
  std::uint64_t term = 0;
  std::optional<address> vote;  ///< whom this replica voted for in `term`

  template <class A> void serialize(A& ar) { ar(term, vote); }
  bool operator==(const hard_state&) const = default;
};

struct snapshot {
  std::uint64_t index = 0;  ///< last log index the snapshot covers
  std::uint64_t term = 0;   ///< term of that entry
  bytes data;               ///< opaque to storage: the replica's state up to `index`

  template <class A> void serialize(A& ar) { ar(index, term, data); }
  bool operator==(const snapshot&) const = default;
};

/// The log's sync as work to perform later (Storage::sync_later): running
/// `io` makes the log durable through `upto`, except entries a truncation
/// has cut since (their replacements may be written after it ran). No `io`:
/// nothing to sync.
struct log_sync {
  std::uint64_t upto = 0;
  io_work io;
};

/// When the durable store calls sync on the log.
enum class sync_policy : std::uint8_t {
  every_append,  ///< each append() is durable on return (slowest, simplest)
  batched,       ///< appends are durable once sync() returns: one fsync per batch (group commit)
  never,         ///< nothing is ever synced: tests and benchmarks only; a crash loses it all
};

template <class S>
concept Storage = requires(S& s, const S& cs, const log_entry& e, std::uint64_t i, const hard_state& hs,
                           const storage::snapshot& snap) {
  { cs.state() } -> std::same_as<const hard_state&>;
  { s.save_state(hs) } -> std::same_as<std::error_code>;
  { cs.first_index() } -> std::same_as<std::uint64_t>;              // snapshot().index + 1
  { cs.last_index() } -> std::same_as<std::uint64_t>;               // snapshot().index when the log is empty
  { cs.term_at(i) } -> std::same_as<std::optional<std::uint64_t>>;  // also for snapshot().index
  { cs.entry(i) } -> std::same_as<const log_entry&>;                // first_index() <= i <= last_index()
  { s.append(e) } -> std::same_as<std::error_code>;                 // e.index == last_index() + 1
  { s.truncate_suffix(i) } -> std::same_as<std::error_code>;        // drops entries >= i
  { s.sync() } -> std::same_as<std::error_code>;
  { s.sync_later() } -> std::same_as<log_sync>;
  s.synced(i);  // the work of a sync_later() ran: the log is durable through i
  { cs.snapshot() } -> std::same_as<const storage::snapshot&>;
  { s.install_snapshot(snap) } -> std::same_as<std::error_code>;
};

}  // namespace dcp::storage
