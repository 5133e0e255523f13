#pragma once
// file_disk: a dcp::disk over a directory of real files (POSIX).
//
// append() writes with O_APPEND; sync() is fsync(2) on the file (and on the
// directory after this process created a name, so the name is durable too);
// write() goes through a temporary file, fsync and rename(2), then syncs the
// directory, so the replacement is atomic and durable.
//
// A file's name lives in its directory, and fsync of the file does not make
// the name durable (fsync(2); ext4 and XFS lose a new name on a crash until
// the directory is synced). Opening the disk syncs the directory and its
// parent once, so names created by an earlier life that crashed before
// syncing them (and the data directory's own entry, whoever created it) are
// durable before this process relies on them.
// Not thread-safe: one node, one strand.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <map>
#include <memory>
#include <string>

#include "dcp/core/detail/platform.hpp"
#include "dcp/core/disk.hpp"

namespace dcp {

class file_disk final : public disk {
 public:
  /// Creates `dir` if needed. Throws dcp::error(io_error) when it cannot.
  explicit file_disk(std::filesystem::path dir) : dir_(std::move(dir)) {
    std::error_code ec;
    std::filesystem::create_directories(dir_, ec);
    if (ec) throw error(errc::io_error, "file_disk: cannot create " + dir_.string() + ": " + ec.message());
    // Whoever created the directory and the files in it: their names are durable from here on.
    auto parent = std::filesystem::absolute(dir_, ec).parent_path();
    if (ec || sync_dir(dir_) || sync_dir(parent))
      throw error(errc::io_error, "file_disk: cannot sync the directory " + dir_.string() + " or its parent");
  }
  ~file_disk() override {
    for (auto& [n, fd] : fds_) ::close(fd);
  }
  file_disk(const file_disk&) = delete;
  file_disk& operator=(const file_disk&) = delete;

  result<bytes> read(std::string_view name) override {
    if (!valid_name(name)) return errc::invalid_argument;
    const int fd = ::open(path(name).c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return errno == ENOENT ? errc::not_found : errc::io_error;
    bytes out;
    std::uint8_t buf[65536];
    while (true) {
      const ssize_t n = ::read(fd, buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        ::close(fd);
        return errc::io_error;
      }
      if (n == 0) break;
      out.insert(out.end(), buf, buf + n);
    }
    ::close(fd);
    return out;
  }
  std::error_code append(std::string_view name, byte_view data) override {
    if (!valid_name(name)) return errc::invalid_argument;
    const int fd = open_for_append(name);
    if (fd < 0) return errc::io_error;
    return write_all(fd, data);
  }
  std::error_code write(std::string_view name, byte_view data) override {
    if (!valid_name(name)) return errc::invalid_argument;
    close_cached(name);
    const std::string tmp = path(name) + ".tmp";
    const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return errc::io_error;
    auto ec = write_all(fd, data);
    if (!ec && detail::sync_file(fd) != 0) ec = errc::io_error;
    ::close(fd);
    if (!ec && ::rename(tmp.c_str(), path(name).c_str()) != 0) ec = errc::io_error;
    if (!ec) ec = sync_dir();
    return ec;
  }
  std::error_code truncate(std::string_view name, std::uint64_t size) override {
    if (!valid_name(name)) return errc::invalid_argument;
    struct stat st {};
    if (::stat(path(name).c_str(), &st) != 0) return errno == ENOENT ? errc::not_found : errc::io_error;
    if (static_cast<std::uint64_t>(st.st_size) <= size) return {};
    if (::truncate(path(name).c_str(), static_cast<off_t>(size)) != 0) return errc::io_error;
    return {};
  }
  std::error_code sync(std::string_view name) override {
    if (!valid_name(name)) return errc::invalid_argument;
    int fd = -1;
    if (auto it = fds_.find(name); it != fds_.end())
      fd = it->second;
    else
      fd = open_for_append(name, false);
    if (fd < 0) return errno == ENOENT ? errc::not_found : errc::io_error;
    if (detail::sync_file_data(fd) != 0) return errc::io_error;
    if (new_names_) {
      new_names_ = false;
      return sync_dir();
    }
    return {};
  }
  /// The work holds its own descriptor (dup(2)) of the file, closed with the
  /// work, so it may run on any thread while the disk goes on (fsync(2)
  /// makes durable what was written through any descriptor of the file). A
  /// new name is made durable now, on the caller's thread: it happens once
  /// per file.
  io_work sync_later(std::string_view name) override {
    auto fail = [](std::error_code ec) -> io_work { return [ec] { return ec; }; };
    if (!valid_name(name)) return fail(errc::invalid_argument);
    int fd = -1;
    if (auto it = fds_.find(name); it != fds_.end())
      fd = it->second;
    else
      fd = open_for_append(name, false);
    if (fd < 0) return fail(errno == ENOENT ? errc::not_found : errc::io_error);
    if (new_names_) {
      new_names_ = false;
      if (auto ec = sync_dir()) return fail(ec);
    }
    const int own = ::fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (own < 0) return fail(errc::io_error);
    auto held = std::shared_ptr<int>(new int(own), [](int* p) {
      ::close(*p);
      delete p;
    });
    return [held]() -> std::error_code {
      return detail::sync_file_data(*held) == 0 ? std::error_code{} : make_error_code(errc::io_error);
    };
  }
  bool off_thread() const noexcept override { return true; }

  std::error_code remove(std::string_view name) override {
    if (!valid_name(name)) return errc::invalid_argument;
    close_cached(name);
    if (::unlink(path(name).c_str()) != 0) return errno == ENOENT ? errc::not_found : errc::io_error;
    return sync_dir();
  }
  std::vector<std::string> list() override {
    std::vector<std::string> names;
    for (auto& e : std::filesystem::directory_iterator(dir_)) {
      auto n = e.path().filename().string();
      if (e.is_regular_file() && valid_name(n) && !n.ends_with(".tmp")) names.push_back(n);
    }
    std::sort(names.begin(), names.end());
    return names;
  }

  const std::filesystem::path& directory() const noexcept { return dir_; }
  /// How many times a directory was fsynced (the data directory or, on
  /// opening, its parent): what the tests of name durability look at.
  std::uint64_t directory_syncs() const noexcept { return directory_syncs_; }

 private:
  std::string path(std::string_view name) const { return (dir_ / std::string(name)).string(); }

  int open_for_append(std::string_view name, bool create = true) {
    if (auto it = fds_.find(name); it != fds_.end()) return it->second;
    const int flags = O_WRONLY | O_APPEND | O_CLOEXEC | (create ? O_CREAT : 0);
    const bool existed = ::access(path(name).c_str(), F_OK) == 0;
    const int fd = ::open(path(name).c_str(), flags, 0644);
    if (fd >= 0) {
      fds_.emplace(std::string(name), fd);
      if (!existed) new_names_ = true;
    }
    return fd;
  }
  void close_cached(std::string_view name) {
    if (auto it = fds_.find(name); it != fds_.end()) {
      ::close(it->second);
      fds_.erase(it);
    }
  }
  static std::error_code write_all(int fd, byte_view data) {
    std::size_t done = 0;
    while (done < data.size()) {
      const ssize_t n = ::write(fd, data.data() + done, data.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return errc::io_error;
      done += static_cast<std::size_t>(n);
    }
    return {};
  }
  std::error_code sync_dir() { return sync_dir(dir_); }
  std::error_code sync_dir(const std::filesystem::path& d) {
    const int fd = ::open(d.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return errc::io_error;
    const int rc = detail::sync_file(fd);
    ::close(fd);
    ++directory_syncs_;
    return rc == 0 ? std::error_code{} : make_error_code(errc::io_error);
  }

  std::filesystem::path dir_;
  std::map<std::string, int, std::less<>> fds_;
  bool new_names_ = false;
  std::uint64_t directory_syncs_ = 0;
};

}  // namespace dcp
