#pragma once
// durable_storage: a Storage over a dcp::disk, built to lose nothing that
// was acknowledged.
//
// Three files per store (names from `prefix`):
//   <prefix>.log    append-only records, one per entry: [len][crc32c][entry].
//                   A crash may tear the unsynced tail; recovery keeps the
//                   longest prefix of intact, consecutive records and cuts
//                   the rest (durably) before the store is used.
//   <prefix>.state  the hard state, one record, replaced atomically
//                   (disk::write) and synced before save_state() returns.
//   <prefix>.snap   the snapshot, one record, replaced atomically and
//                   synced before the log is compacted.
//
// The fsync policy (sync_policy) says when the log is synced:
//   every_append  each append() and truncate_suffix() syncs;
//   batched       nothing until sync(): the consensus layer calls it once
//                 per batch, before it acknowledges (group commit);
//   never         no sync at all, ever (tests and throughput experiments;
//                 a crash then loses the store, as the tests show).
// The hard state and the snapshot are synced under every policy but `never`.
//
// Snapshot installation writes the snapshot first, then rewrites the log with
// the entries it keeps. A crash between the two leaves an old log beside the
// new snapshot; recovery applies the same rule as install_snapshot (keep the
// entries after the snapshot's index only if the log has the snapshot's
// entry with the snapshot's term), so the result is the same either way.
//
// Memory: every live entry is also held in memory (the log is bounded by
// compaction). Not thread-safe: one replica, one strand.
#include <algorithm>
#include <cstdint>
#include <deque>
#include <string>
#include <system_error>
#include <utility>

#include "dcp/core/disk.hpp"
#include "dcp/core/error.hpp"
#include "dcp/storage/detail/record.hpp"
#include "dcp/storage/storage.hpp"
#include "dcp/storage/detail/codec.hpp"

namespace dcp::storage {

struct durable_options {
  std::string prefix = "raft";  ///< file names: <prefix>.log, <prefix>.state, <prefix>.snap
  sync_policy policy = sync_policy::batched;

  void validate() const {
    if (!disk::valid_name(prefix + ".state"))
      throw error(errc::invalid_config,
                  "durable_storage: prefix '" + prefix + "' is not a valid file name ([A-Za-z0-9._-])");
  }
};

/// What recovery found when the store was opened.
struct recovery_report {
  std::uint64_t entries = 0;          ///< log entries recovered
  std::uint64_t torn_bytes = 0;       ///< bytes cut from the log's tail (torn or corrupt)
  std::uint64_t dropped_entries = 0;  ///< intact entries dropped by the snapshot rule
};

class durable_storage {
 public:
  /// Opens (recovers) the store on `d`. Throws dcp::error(io_error) when the
  /// state or snapshot file is corrupt (they are replaced atomically, so that
  /// is damage, not a crash) or the disk fails.
  explicit durable_storage(disk& d, durable_options opts = {})
      : disk_(&d),
        opts_(std::move(opts)),
        log_name_(opts_.prefix + ".log"),
        state_name_(opts_.prefix + ".state"),
        snap_name_(opts_.prefix + ".snap") {
    opts_.validate();
    recover();
  }
  durable_storage(durable_storage&&) noexcept = default;
  durable_storage& operator=(durable_storage&&) noexcept = default;

  const hard_state& state() const noexcept { return state_; }
  std::error_code save_state(const hard_state& hs) {
    if (auto ec = write_single(state_name_, hs)) return ec;
    state_ = hs;
    return {};
  }

  std::uint64_t first_index() const noexcept { return snap_.index + 1; }
  std::uint64_t last_index() const noexcept { return snap_.index + entries_.size(); }
  /// Entries up to here survive a crash.
  std::uint64_t durable_index() const noexcept { return durable_index_; }
  std::optional<std::uint64_t> term_at(std::uint64_t i) const noexcept {
    if (i == snap_.index) return snap_.term;
    if (i < first_index() || i > last_index()) return std::nullopt;
    return entries_[i - first_index()].term;
  }
  const log_entry& entry(std::uint64_t i) const {
    if (i < first_index() || i > last_index())
      throw error(errc::invalid_argument, "durable_storage: entry " + std::to_string(i) + " is not in the log");
    return entries_[i - first_index()];
  }

  std::error_code append(const log_entry& e) {
    if (e.index != last_index() + 1) return errc::invalid_argument;
    bytes rec;
    encode_record(e, rec);
    if (auto ec = disk_->append(log_name_, rec)) return ec;
    offsets_.push_back(log_size_);
    log_size_ += rec.size();
    entries_.push_back(e);
    dirty_ = true;
    if (opts_.policy == sync_policy::every_append) return sync();
    return {};
  }

  std::error_code truncate_suffix(std::uint64_t i) {
    if (i <= snap_.index) return errc::invalid_argument;  // committed state is never cut
    if (i > last_index()) return {};
    const std::uint64_t at = offsets_[i - first_index()];
    if (auto ec = disk_->truncate(log_name_, at)) return ec;
    log_size_ = at;
    entries_.resize(i - first_index());
    offsets_.resize(i - first_index());
    durable_index_ = std::min(durable_index_, last_index());
    dirty_ = true;
    if (opts_.policy == sync_policy::every_append) return sync();
    return {};
  }

  std::error_code sync() {
    if (!dirty_) return {};
    if (opts_.policy != sync_policy::never) {
      if (auto ec = disk_->sync(log_name_)) return ec;
      ++syncs_;
      durable_index_ = last_index();
    }
    dirty_ = false;
    return {};
  }

  /// sync() as work to perform later (log_sync): nothing when the log has
  /// not changed since the last sync, or under sync_policy::never.
  log_sync sync_later() {
    if (!dirty_ || opts_.policy == sync_policy::never) {
      dirty_ = false;
      return {last_index(), {}};
    }
    dirty_ = false;  // what changes after this call is the next sync's
    return {last_index(), disk_->sync_later(log_name_)};
  }
  /// The work of a sync_later() has run: the log is durable through `upto`.
  void synced(std::uint64_t upto) noexcept {
    if (opts_.policy == sync_policy::never) return;
    ++syncs_;
    durable_index_ = std::max(durable_index_, std::min(upto, last_index()));
  }

  const storage::snapshot& snapshot() const noexcept { return snap_; }

  std::error_code install_snapshot(const storage::snapshot& s) {
    if (s.index < snap_.index) return errc::invalid_argument;  // never go back
    if (auto ec = write_single(snap_name_, s)) return ec;
    const bool keep = term_at(s.index) == s.term;
    std::deque<log_entry> rest;
    if (keep)
      for (std::uint64_t i = s.index + 1; i <= last_index(); ++i)
        rest.push_back(std::move(entries_[i - first_index()]));
    snap_ = s;
    entries_ = std::move(rest);
    return rewrite_log();
  }

  const recovery_report& recovery() const noexcept { return report_; }
  std::uint64_t syncs() const noexcept { return syncs_; }
  const durable_options& options() const noexcept { return opts_; }

 private:
  static void encode_record(const log_entry& e, bytes& out) {
    bytes payload;
    detail::encode_value(e, payload);
    detail::frame_record(payload, out);
  }

  template <class T> std::error_code write_single(const std::string& name, const T& value) {
    bytes payload, rec;
    detail::encode_value(value, payload);
    detail::frame_record(payload, rec);
    if (auto ec = disk_->write(name, rec)) return ec;
    if (opts_.policy != sync_policy::never) {
      if (auto ec = disk_->sync(name)) return ec;
      ++syncs_;
    }
    return {};
  }

  template <class T> void read_single(const std::string& name, T& out) {
    auto data = disk_->read(name);
    if (!data) {
      if (data.error() == make_error_code(errc::not_found)) return;
      throw error(errc::io_error, "durable_storage: cannot read " + name + ": " + data.error().message());
    }
    auto payload = detail::read_record(*data, 0);
    if (!payload || payload->size() + detail::record_header != data->size() || detail::decode_value(*payload, out))
      throw error(errc::io_error,
                  "durable_storage: " + name +
                      " is corrupt (it is replaced atomically, so this is disk damage); restore the "
                      "replica from a peer or remove its files to rejoin as a new member");
  }

  /// Replaces the log file with the live entries, atomically.
  std::error_code rewrite_log() {
    bytes all;
    offsets_.clear();
    for (auto& e : entries_) {
      offsets_.push_back(all.size());
      encode_record(e, all);
    }
    if (auto ec = disk_->write(log_name_, all)) return ec;
    log_size_ = all.size();
    dirty_ = true;
    return sync();
  }

  void recover() {
    read_single(state_name_, state_);
    read_single(snap_name_, snap_);
    durable_index_ = snap_.index;
    auto data = disk_->read(log_name_);
    if (!data) {
      if (data.error() != make_error_code(errc::not_found))
        throw error(errc::io_error, "durable_storage: cannot read " + log_name_ + ": " + data.error().message());
      return;
    }
    // The longest prefix of intact records with consecutive indices.
    std::deque<log_entry> found;
    std::vector<std::uint64_t> offsets;
    std::size_t at = 0;
    while (auto payload = detail::read_record(*data, at)) {
      log_entry e;
      if (detail::decode_value(*payload, e)) break;
      if (!found.empty() && e.index != found.back().index + 1) break;
      offsets.push_back(at);
      at += detail::record_header + payload->size();
      found.push_back(std::move(e));
    }
    report_.torn_bytes = data->size() - at;
    report_.entries = found.size();
    // The snapshot rule: keep what follows the snapshot only where the log agrees with it.
    const bool agrees = [&] {  // does the log hold the snapshot's last entry, with its term?
      if (found.empty()) return true;
      if (snap_.index == 0) return found.front().index == 1;
      if (found.front().index > snap_.index || found.back().index < snap_.index) return false;
      return found[snap_.index - found.front().index].term == snap_.term;
    }();
    const bool starts_after_snapshot = found.empty() || found.front().index == snap_.index + 1;
    if (starts_after_snapshot) {  // the usual layout: nothing to drop
      entries_ = std::move(found);
      offsets_ = std::move(offsets);
      log_size_ = at;
      if (report_.torn_bytes > 0) repair_tail(at);
    } else {
      // Either the log disagrees with the snapshot, or it still holds entries the
      // snapshot covers (a crash between the snapshot and the log rewrite).
      for (auto& e : found)
        if (agrees && e.index > snap_.index)
          entries_.push_back(std::move(e));
        else
          ++report_.dropped_entries;
      if (auto ec = rewrite_log())
        throw error(errc::io_error, "durable_storage: cannot rewrite " + log_name_ + ": " + ec.message());
    }
    durable_index_ = last_index();
  }

  void repair_tail(std::uint64_t good) {
    // Cut the torn tail before anything is appended after it, and make the cut durable.
    if (auto ec = disk_->truncate(log_name_, good))
      throw error(errc::io_error, "durable_storage: cannot cut the torn tail of " + log_name_ + ": " + ec.message());
    if (opts_.policy != sync_policy::never)
      if (auto ec = disk_->sync(log_name_))
        throw error(errc::io_error, "durable_storage: cannot sync " + log_name_ + ": " + ec.message());
  }

  disk* disk_;
  durable_options opts_;
  std::string log_name_, state_name_, snap_name_;
  hard_state state_;
  storage::snapshot snap_;
  std::deque<log_entry> entries_;
  std::vector<std::uint64_t> offsets_;  // byte offset of each entry's record in the log file
  std::uint64_t log_size_ = 0;
  std::uint64_t durable_index_ = 0;
  std::uint64_t syncs_ = 0;
  bool dirty_ = false;
  recovery_report report_;
};

static_assert(Storage<durable_storage>);

}  // namespace dcp::storage
