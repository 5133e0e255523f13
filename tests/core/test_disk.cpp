#include <doctest/doctest.h>

#include <filesystem>
#include <thread>

#include "dcp/core/disk.hpp"
#include "dcp/core/file_disk.hpp"

namespace test_disk {

using namespace dcp;

TEST_CASE("memory_disk: a crash keeps synced bytes and loses the rest") {
  memory_disk d;
  REQUIRE_FALSE(d.append("log", as_bytes("abc")));
  REQUIRE_FALSE(d.sync("log"));
  REQUIRE_FALSE(d.append("log", as_bytes("def")));
  CHECK(as_string(*d.read("log")) == "abcdef");
  d.crash();
  CHECK(as_string(*d.read("log")) == "abc");
}

TEST_CASE("memory_disk: torn tails keep a prefix of the unsynced bytes") {
  memory_disk d;
  (void)d.append("log", as_bytes("abc"));
  (void)d.sync("log");
  (void)d.append("log", as_bytes("defgh"));
  d.crash([](std::size_t unsynced) {
    CHECK(unsynced == 5);
    return std::size_t{2};
  });
  CHECK(as_string(*d.read("log")) == "abcde");
}

TEST_CASE("memory_disk: replace is all or nothing; unsynced files vanish") {
  memory_disk d;
  (void)d.write("snap", as_bytes("old"));
  (void)d.sync("snap");
  (void)d.write("snap", as_bytes("new!"));
  (void)d.append("tmp", as_bytes("x"));
  d.crash([](std::size_t n) { return n; });  // keep every torn byte it may
  CHECK(as_string(*d.read("snap")) == "old");
  CHECK(d.read("tmp").error() == errc::not_found);
  (void)d.write("snap", as_bytes("new!"));
  (void)d.sync("snap");
  d.crash();
  CHECK(as_string(*d.read("snap")) == "new!");
  CHECK(d.list() == std::vector<std::string>{"snap"});
}

TEST_CASE("memory_disk: sync_later's work makes durable when it runs; a crash before it loses the bytes") {
  memory_disk d;
  (void)d.append("log", as_bytes("abc"));
  auto work = d.sync_later("log");
  CHECK_FALSE(d.off_thread());  // the runtime runs it on the node's thread
  d.crash();                    // before the work ran: nothing was synced
  CHECK(d.read("log").error() == errc::not_found);
  (void)d.append("log", as_bytes("abc"));
  work = d.sync_later("log");
  CHECK_FALSE(work());
  (void)d.append("log", as_bytes("def"));
  d.crash();
  CHECK(as_string(*d.read("log")) == "abc");
  CHECK(d.sync_later("missing")() == errc::not_found);
}

TEST_CASE("disks refuse bad names") {
  memory_disk d;
  CHECK(d.append("../etc", as_bytes("x")) == errc::invalid_argument);
  CHECK(d.append("", as_bytes("x")) == errc::invalid_argument);
  CHECK(d.read("missing").error() == errc::not_found);
  CHECK(d.remove("missing") == errc::not_found);
}

TEST_CASE("file_disk: append, sync, write, truncate, remove, list") {
  const auto dir = std::filesystem::temp_directory_path() / ("dcp-disk-" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  {
    file_disk d(dir);
    CHECK_FALSE(d.append("log", as_bytes("hello ")));
    CHECK_FALSE(d.append("log", as_bytes("world")));
    CHECK_FALSE(d.sync("log"));
    CHECK(as_string(*d.read("log")) == "hello world");
    CHECK_FALSE(d.truncate("log", 5));
    CHECK(as_string(*d.read("log")) == "hello");
    CHECK_FALSE(d.write("snap", as_bytes("state")));
    CHECK(d.list() == std::vector<std::string>{"log", "snap"});
    CHECK_FALSE(d.remove("snap"));
    CHECK(d.read("snap").error() == errc::not_found);
    CHECK(d.append("a/b", as_bytes("x")) == errc::invalid_argument);
  }
  {
    file_disk again(dir);  // reopening sees what was written
    CHECK(as_string(*again.read("log")) == "hello");
  }
  std::filesystem::remove_all(dir);
}

TEST_CASE("file_disk: sync_later's work runs on another thread, holds its own descriptor, and reports errors") {
  const auto dir = std::filesystem::temp_directory_path() / ("dcp-disk-later-" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  {
    file_disk d(dir);
    CHECK(d.off_thread());
    REQUIRE_FALSE(d.append("log", as_bytes("hello")));
    const auto before = d.directory_syncs();
    auto work = d.sync_later("log");
    CHECK(d.directory_syncs() == before + 1);  // a new name is made durable at once
    REQUIRE_FALSE(d.remove("log"));            // the disk closes its own descriptor ...
    std::error_code ec = errc::io_error;
    std::thread t([&] { ec = work(); });  // ... the work still has one
    t.join();
    CHECK_FALSE(ec);
    CHECK(d.sync_later("missing")() == errc::not_found);
    CHECK(d.sync_later("a/b")() == errc::invalid_argument);
  }
  std::filesystem::remove_all(dir);
}

}  // namespace test_disk
