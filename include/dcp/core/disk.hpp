#pragma once
// disk: the durable state an Env gives its protocols.
//
// A node's disk is a flat set of named files with the operations a log and a
// snapshot need, and the one rule that makes durability testable: a write is
// durable only once sync() of that file has returned. Until then a crash may
// lose it, or keep any prefix of it (a torn tail).
//
//   memory_disk  keeps files in memory; crash() forgets what was not synced,
//                keeping a chosen prefix of the unsynced tail. dcp::sim uses
//                it for every node, so restarts see exactly what survived.
//   file_disk    (dcp/core/file_disk.hpp) files in a directory, with fsync.
//
// An fsync may take milliseconds. A protocol need not wait for it on its
// event loop: sync_later(name) gives the sync as work (io_work) that the
// runtime performs (env.perform, dcp/core/env.hpp), off the loop where it
// can, and reports when it is done (etcd's Ready.MustSync).
//
// Names are plain file names: [A-Za-z0-9._-], 1 to 128 characters.
#include <algorithm>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "dcp/core/bytes.hpp"
#include "dcp/core/error.hpp"
#include "dcp/core/result.hpp"

namespace dcp {

/// Blocking I/O as work to run later: the error it met, or none.
using io_work = std::function<std::error_code()>;

class disk {
 public:
  virtual ~disk() = default;

  /// The whole file as it is now (synced or not); not_found if absent.
  virtual result<bytes> read(std::string_view name) = 0;
  /// Appends, creating the file if needed.
  virtual std::error_code append(std::string_view name, byte_view data) = 0;
  /// Replaces the whole content. After sync(name) the new content is durable
  /// as a whole: a crash leaves the old or the new content, never a mix.
  virtual std::error_code write(std::string_view name, byte_view data) = 0;
  /// Cuts the file to `size` bytes (no-op if shorter).
  virtual std::error_code truncate(std::string_view name, std::uint64_t size) = 0;
  /// Makes everything written to the file so far durable.
  virtual std::error_code sync(std::string_view name) = 0;
  /// sync(name) as work to run later: running it makes durable at least what
  /// was written to the file before this call. A disk whose work refers to
  /// nothing of the disk's own (file_disk: a duplicate of the file's
  /// descriptor) says so with off_thread(), and a runtime may run it on
  /// another thread; this default, sync(name) when run, must run on the
  /// disk's own thread, while the disk lives.
  virtual io_work sync_later(std::string_view name) {
    return [this, n = std::string(name)] { return sync(n); };
  }
  /// Whether sync_later's work may run on another thread.
  virtual bool off_thread() const noexcept { return false; }
  /// Removes the file durably; not_found if absent.
  virtual std::error_code remove(std::string_view name) = 0;
  /// The names of the files that exist, sorted.
  virtual std::vector<std::string> list() = 0;

  static bool valid_name(std::string_view n) noexcept {
    if (n.empty() || n.size() > 128 || n == "." || n == "..") return false;
    return std::all_of(n.begin(), n.end(), [](char c) {
      return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
          c == '-';
    });
  }
};

class memory_disk final : public disk {
 public:
  result<bytes> read(std::string_view name) override {
    auto it = files_.find(name);
    if (it == files_.end() || !it->second.exists) return errc::not_found;
    return it->second.data;
  }
  std::error_code append(std::string_view name, byte_view data) override {
    if (!valid_name(name)) return errc::invalid_argument;
    auto& f = files_[std::string(name)];
    f.exists = true;
    f.data.insert(f.data.end(), data.begin(), data.end());
    return {};
  }
  std::error_code write(std::string_view name, byte_view data) override {
    if (!valid_name(name)) return errc::invalid_argument;
    auto& f = files_[std::string(name)];
    f.exists = true;
    f.data.assign(data.begin(), data.end());
    f.replaced = true;
    return {};
  }
  std::error_code truncate(std::string_view name, std::uint64_t size) override {
    auto it = files_.find(name);
    if (it == files_.end() || !it->second.exists) return errc::not_found;
    auto& f = it->second;
    if (size < f.data.size()) {
      f.data.resize(size);
      f.replaced = f.replaced || size < f.durable.size();  // cut into synced bytes: no longer a pure append
    }
    return {};
  }
  std::error_code sync(std::string_view name) override {
    auto it = files_.find(name);
    if (it == files_.end() || !it->second.exists) return errc::not_found;
    auto& f = it->second;
    f.durable = f.data;
    f.durable_exists = true;
    f.replaced = false;
    ++syncs_;
    return {};
  }
  std::error_code remove(std::string_view name) override {
    auto it = files_.find(name);
    if (it == files_.end() || !it->second.exists) return errc::not_found;
    files_.erase(it);  // removal is durable at once (like unlink + fsync of the directory)
    return {};
  }
  std::vector<std::string> list() override {
    std::vector<std::string> names;
    for (auto& [n, f] : files_)
      if (f.exists) names.push_back(n);
    return names;
  }

  /// What a power cut leaves. For each file, `keep(unsynced_bytes)` says how
  /// many of the bytes appended since the last sync survive (0 loses them all,
  /// the default; anything between models a torn write). A file replaced or
  /// cut since its last sync returns to its synced content whole; a file never
  /// synced disappears.
  void crash(const std::function<std::size_t(std::size_t)>& keep = {}) {
    for (auto it = files_.begin(); it != files_.end();) {
      auto& f = it->second;
      if (!f.durable_exists) {
        it = files_.erase(it);
        continue;
      }
      std::size_t kept = 0;
      if (!f.replaced && f.data.size() > f.durable.size() && keep)
        kept = std::min(keep(f.data.size() - f.durable.size()), f.data.size() - f.durable.size());
      f.durable.insert(f.durable.end(), f.data.begin() + static_cast<std::ptrdiff_t>(f.durable.size()),
                       f.data.begin() + static_cast<std::ptrdiff_t>(f.durable.size() + kept));
      f.data = f.durable;
      f.exists = true;
      f.replaced = false;
      ++it;
    }
  }

  std::uint64_t syncs() const noexcept { return syncs_; }
  bool empty() const noexcept { return files_.empty(); }

 private:
  struct file {
    bytes data;     // what reads see
    bytes durable;  // what survives a crash
    bool exists = false;
    bool durable_exists = false;
    bool replaced = false;  // rewritten or cut since the last sync
  };
  std::map<std::string, file, std::less<>> files_;
  std::uint64_t syncs_ = 0;
};

}  // namespace dcp
