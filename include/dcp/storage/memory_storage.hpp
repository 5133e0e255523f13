#pragma once
// memory_storage: a Storage in memory. Durable only as long as the process:
// for unit tests, and for replicas that never restart (a crashed replica
// must then rejoin as a new member, never with its old identity).
#include <deque>
#include <system_error>

#include "dcp/core/error.hpp"
#include "dcp/storage/storage.hpp"

namespace dcp::storage {

class memory_storage {
 public:
  const hard_state& state() const noexcept { return state_; }
  std::error_code save_state(const hard_state& hs) {
    state_ = hs;
    return {};
  }
  std::uint64_t first_index() const noexcept { return snap_.index + 1; }
  std::uint64_t last_index() const noexcept { return snap_.index + entries_.size(); }
  std::optional<std::uint64_t> term_at(std::uint64_t i) const noexcept {
    if (i == snap_.index) return snap_.term;
    if (i < first_index() || i > last_index()) return std::nullopt;
    return entries_[i - first_index()].term;
  }
  const log_entry& entry(std::uint64_t i) const {
    if (i < first_index() || i > last_index())
      throw error(errc::invalid_argument, "memory_storage: entry " + std::to_string(i) + " is not in the log");
    return entries_[i - first_index()];
  }
  std::error_code append(const log_entry& e) {
    if (e.index != last_index() + 1) return errc::invalid_argument;
    entries_.push_back(e);
    return {};
  }
  std::error_code truncate_suffix(std::uint64_t i) {
    if (i <= snap_.index) return errc::invalid_argument;  // cannot cut into the snapshot
    while (last_index() >= i) entries_.pop_back();
    return {};
  }
  std::error_code sync() { return {}; }
  log_sync sync_later() const noexcept { return {last_index(), {}}; }
  void synced(std::uint64_t) noexcept {}
  const storage::snapshot& snapshot() const noexcept { return snap_; }
  std::error_code install_snapshot(const storage::snapshot& s) {
    if (s.index < snap_.index) return errc::invalid_argument;  // never go back
    const bool keep = term_at(s.index) == s.term;
    std::deque<log_entry> rest;
    if (keep)
      for (std::uint64_t i = s.index + 1; i <= last_index(); ++i) rest.push_back(entry(i));
    entries_ = std::move(rest);
    snap_ = s;
    return {};
  }

 private:
  hard_state state_;
  storage::snapshot snap_;
  std::deque<log_entry> entries_;
};

static_assert(Storage<memory_storage>);

}  // namespace dcp::storage
