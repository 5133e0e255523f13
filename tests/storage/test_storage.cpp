#include <doctest/doctest.h>

#include <array>
#include <filesystem>
#include <fstream>

#include "dcp/core/file_disk.hpp"
#include "dcp/core/rng.hpp"
#include "dcp/storage.hpp"
#include "../seeds.hpp"

using namespace dcp;
using namespace dcp::storage;

namespace {
log_entry make_entry(std::uint64_t index, std::uint64_t term, std::uint64_t salt) {
  log_entry e{index, term, entry_kind::command, {}};
  const std::size_t len = salt % 40;  // some empty, some a few dozen bytes
  for (std::size_t k = 0; k < len; ++k) e.data.push_back(static_cast<std::uint8_t>(salt * 31 + k));
  return e;
}

template <class S> std::vector<log_entry> entries_of(const S& s) {
  std::vector<log_entry> out;
  for (auto i = s.first_index(); i <= s.last_index(); ++i) out.push_back(s.entry(i));
  return out;
}
}  // namespace

TEST_CASE("crc32c: the standard check value and incremental use") {
  CHECK(storage::detail::crc32c(as_bytes("123456789")) == 0xE3069283u);
  CHECK(storage::detail::crc32c(as_bytes("")) == 0u);
  CHECK(storage::detail::crc32c(as_bytes("56789"), storage::detail::crc32c(as_bytes("1234"))) == 0xE3069283u);
}

// The eight-bytes-at-a-time walk is the one-byte definition, over every
// length (the 0-7 byte tail, whole blocks, both), any starting CRC (records
// chain two calls), and at compile time.
TEST_CASE("crc32c: slicing by 8 computes the byte-at-a-time CRC, for every length, start and seed") {
  static_assert(storage::detail::crc32c(std::array<std::uint8_t, 9>{'1', '2', '3', '4', '5', '6', '7', '8', '9'}) ==
                0xE3069283u);
  auto one_byte = [](byte_view data, std::uint32_t crc) {
    crc = ~crc;
    for (std::uint8_t b : data) crc = storage::detail::crc32c_table[(crc ^ b) & 0xFF] ^ (crc >> 8);
    return ~crc;
  };
  for (std::uint64_t seed = 1; seed <= dcp::test::last_seed(1, 30); ++seed) {
    dcp::rng r(seed);
    bytes data(300);
    for (auto& b : data) b = static_cast<std::uint8_t>(r.below(256));
    const auto start = static_cast<std::uint32_t>(r.below(1ull << 32));
    for (std::size_t len = 0; len <= data.size(); ++len) {
      const std::size_t off = r.below(data.size() - len + 1);
      const byte_view v(data.data() + off, len);
      REQUIRE(storage::detail::crc32c(v, start) == one_byte(v, start));
      REQUIRE(storage::detail::crc32c(v) == one_byte(v, 0));
    }
  }
}

TEST_CASE("record framing: intact records read back, any damage is refused") {
  bytes buf;
  storage::detail::frame_record(as_bytes("hello"), buf);
  storage::detail::frame_record(as_bytes(""), buf);
  auto r = storage::detail::read_record(buf, 0);
  REQUIRE(r);
  CHECK(as_string(*r) == "hello");
  auto r2 = storage::detail::read_record(buf, storage::detail::record_header + 5);
  REQUIRE(r2);
  CHECK(r2->empty());
  for (std::size_t cut = 0; cut < storage::detail::record_header + 5; ++cut)  // every torn prefix fails
    CHECK_FALSE(storage::detail::read_record(byte_view(buf.data(), cut), 0));
  for (std::size_t flip = 0; flip < storage::detail::record_header + 5; ++flip) {  // every single-byte corruption fails
    bytes bad = buf;
    bad[flip] ^= 0x40;
    CHECK_FALSE(storage::detail::read_record(bad, 0));
  }
}

TEST_CASE_TEMPLATE("storage: the log, hard state and snapshot rules", T, memory_storage, durable_storage) {
  memory_disk d;
  auto make = [&] {
    if constexpr (std::is_same_v<T, durable_storage>)
      return durable_storage(d);
    else
      return memory_storage{};
  };
  T s = make();
  CHECK(s.first_index() == 1);
  CHECK(s.last_index() == 0);
  CHECK(s.term_at(0) == 0u);
  CHECK_FALSE(s.term_at(1));
  CHECK(s.append(make_entry(2, 1, 0)) == make_error_code(errc::invalid_argument));  // a gap
  for (std::uint64_t i = 1; i <= 10; ++i) REQUIRE_FALSE(s.append(make_entry(i, i < 6 ? 1 : 2, i)));
  REQUIRE_FALSE(s.sync());
  CHECK(s.last_index() == 10);
  CHECK(s.term_at(7) == 2u);
  REQUIRE_FALSE(s.truncate_suffix(8));
  CHECK(s.last_index() == 7);
  REQUIRE_FALSE(s.append(make_entry(8, 3, 99)));
  CHECK(s.entry(8) == make_entry(8, 3, 99));
  REQUIRE_FALSE(s.save_state({3, address::sim(2)}));
  CHECK(s.state() == hard_state{3, address::sim(2)});

  SUBCASE("a snapshot that agrees with the log keeps the entries after it") {
    REQUIRE_FALSE(s.install_snapshot({5, 1, to_bytes("state@5")}));
    CHECK(s.first_index() == 6);
    CHECK(s.last_index() == 8);
    CHECK(s.term_at(5) == 1u);
    CHECK_FALSE(s.term_at(4));
    CHECK(s.truncate_suffix(5) == make_error_code(errc::invalid_argument));            // never into the snapshot
    CHECK(s.install_snapshot({4, 1, {}}) == make_error_code(errc::invalid_argument));  // never back
  }
  SUBCASE("a snapshot that disagrees with the log discards all of it") {
    REQUIRE_FALSE(s.install_snapshot({6, 9, to_bytes("other history")}));
    CHECK(s.first_index() == 7);
    CHECK(s.last_index() == 6);
    CHECK(s.term_at(6) == 9u);
  }
  SUBCASE("a snapshot beyond the log discards all of it") {
    REQUIRE_FALSE(s.install_snapshot({20, 4, {}}));
    CHECK(s.last_index() == 20);
    REQUIRE_FALSE(s.append(make_entry(21, 4, 1)));
  }
  if constexpr (std::is_same_v<T, durable_storage>) {  // and all of it survives a reopen
    const auto before = entries_of(s);
    const auto snap = s.snapshot();
    REQUIRE_FALSE(s.sync());
    d.crash();
    durable_storage again(d);
    CHECK(entries_of(again) == before);
    CHECK(again.snapshot() == snap);
    CHECK(again.state() == hard_state{3, address::sim(2)});
    CHECK(again.recovery().torn_bytes == 0);
  }
}

// The property the issue asks for: whatever the crash and however the tail
// tears, a restarted store holds every entry that was synced, the last saved
// hard state and the last installed snapshot; anything after the synced
// prefix is an intact prefix of what was written since; nothing is invented.
TEST_CASE("durable_storage: no synced write is lost across crashes with torn tails, over 400 seeds") {
  std::size_t torn_seen = 0, crashes = 0;
  for (std::uint64_t seed = 1; seed <= 400; ++seed) {
    dcp::rng r(seed);
    memory_disk d;
    const sync_policy policy = seed % 2 ? sync_policy::batched : sync_policy::every_append;
    std::optional<durable_storage> s;
    s.emplace(d, durable_options{"raft", policy});
    std::vector<log_entry> durable;  // the acknowledged log (model), including the snapshot's prefix
    hard_state state;
    snapshot snap;
    std::uint64_t term = 1;
    for (int step = 0; step < 300; ++step) {
      const auto op = r.below(100);
      if (op < 45) {  // append a few
        for (auto k = r.below(4) + 1; k > 0; --k) {
          auto e = make_entry(s->last_index() + 1, term, r());
          REQUIRE_FALSE(s->append(e));
        }
        if (policy == sync_policy::every_append) { durable = entries_of(*s); }
      } else if (op < 65) {  // acknowledge: sync
        REQUIRE_FALSE(s->sync());
        durable = entries_of(*s);
      } else if (op < 72 && s->last_index() > s->first_index()) {  // a new leader overwrites a suffix
        const auto from = s->first_index() + 1 + r.below(s->last_index() - s->first_index());
        REQUIRE_FALSE(s->truncate_suffix(from));
        ++term;
        if (policy == sync_policy::every_append) durable = entries_of(*s);
      } else if (op < 78) {
        state = hard_state{++term, address::sim(static_cast<std::uint32_t>(r.below(5)))};
        REQUIRE_FALSE(s->save_state(state));
      } else if (op < 83 && s->last_index() > s->snapshot().index) {  // compact
        REQUIRE_FALSE(s->sync());
        const auto at = s->snapshot().index + 1 + r.below(s->last_index() - s->snapshot().index);
        snap = snapshot{at, *s->term_at(at), to_bytes("sm@" + std::to_string(at))};
        REQUIRE_FALSE(s->install_snapshot(snap));
        durable = entries_of(*s);
      } else if (op < 93) {  // power cut, torn tails likely
        ++crashes;
        const auto before = entries_of(*s);  // what this life wrote, synced or not
        s.reset();
        d.crash([&](std::size_t unsynced) -> std::size_t { return r.chance(0.7) ? r.below(unsynced + 1) : 0; });
        s.emplace(d, durable_options{"raft", policy});
        if (s->recovery().torn_bytes) ++torn_seen;
        auto got = entries_of(*s);
        INFO("seed " << seed << " step " << step << " got " << got.size() << " durable " << durable.size() << " first "
                     << s->first_index());
        REQUIRE(got.size() >= durable.size());
        for (std::size_t k = 0; k < durable.size(); ++k) REQUIRE(got[k] == durable[k]);
        for (std::size_t k = durable.size(); k < got.size(); ++k) REQUIRE(got[k] == before.at(k));
        REQUIRE(s->state() == state);
        REQUIRE(s->snapshot() == snap);
        REQUIRE(s->first_index() == snap.index + 1);
        durable = got;  // what survived is on disk now (recovery syncs its repairs)
        REQUIRE_FALSE(s->sync());
      }
    }
  }
  CHECK(crashes > 1000);
  CHECK(torn_seen > 100);  // the property was exercised on torn tails, not only clean cuts
}

TEST_CASE("durable_storage: with sync_policy::never a crash loses acknowledged entries (the check can fail)") {
  memory_disk d;
  {
    durable_storage s(d, {"raft", sync_policy::never});
    for (std::uint64_t i = 1; i <= 5; ++i) REQUIRE_FALSE(s.append(make_entry(i, 1, i)));
    REQUIRE_FALSE(s.sync());
  }
  d.crash();
  durable_storage again(d, {"raft", sync_policy::never});
  CHECK(again.last_index() == 0);
}

TEST_CASE("durable_storage: sync_later is sync() as work: durable once it ran and synced() says so, not before") {
  memory_disk d;
  durable_storage s(d);
  for (std::uint64_t i = 1; i <= 3; ++i) REQUIRE_FALSE(s.append(make_entry(i, 1, i)));
  auto job = s.sync_later();
  CHECK(job.upto == 3);
  REQUIRE(job.io);
  CHECK(s.durable_index() == 0);
  REQUIRE_FALSE(s.append(make_entry(4, 1, 4)));  // written while the sync is under way: the next one's
  REQUIRE_FALSE(job.io());
  s.synced(job.upto);
  CHECK(s.durable_index() == 3);
  auto next = s.sync_later();
  CHECK(next.upto == 4);
  REQUIRE(next.io);
  CHECK_FALSE(s.sync_later().io);  // nothing changed since: nothing to do
  d.crash();                       // what ran covered 1-3 at least
  CHECK(durable_storage(d).last_index() >= 3);
  // A sync asked for but never run (the node crashed first) made nothing durable.
  memory_disk fresh;
  {
    durable_storage t(fresh);
    for (std::uint64_t i = 1; i <= 3; ++i) REQUIRE_FALSE(t.append(make_entry(i, 1, i)));
    REQUIRE(t.sync_later().io);
  }
  fresh.crash();
  CHECK(durable_storage(fresh).last_index() == 0);
  memory_disk n;
  durable_storage never(n, {"raft", sync_policy::never});
  REQUIRE_FALSE(never.append(make_entry(1, 1, 1)));
  CHECK_FALSE(never.sync_later().io);
  never.synced(1);
  CHECK(never.durable_index() == 0);
}

TEST_CASE("durable_storage: a crash between snapshot and log rewrite recovers to the same store") {
  memory_disk d;
  durable_storage s(d);
  for (std::uint64_t i = 1; i <= 10; ++i) REQUIRE_FALSE(s.append(make_entry(i, 1 + i / 4, i)));
  REQUIRE_FALSE(s.sync());
  // The snapshot file lands, the rewrite of the log does not: simulate by writing it alone.
  bytes payload, rec;
  storage::detail::encode_value(snapshot{6, *s.term_at(6), to_bytes("sm")}, payload);
  storage::detail::frame_record(payload, rec);
  REQUIRE_FALSE(d.write("raft.snap", rec));
  REQUIRE_FALSE(d.sync("raft.snap"));
  d.crash();
  durable_storage a(d);
  CHECK(a.first_index() == 7);
  CHECK(a.last_index() == 10);
  CHECK(a.entry(9) == make_entry(9, 1 + 9 / 4, 9));
  CHECK(a.recovery().dropped_entries == 6);
  // A snapshot of another history: the old log is dropped whole.
  storage::detail::encode_value(snapshot{8, 99, {}}, payload = {});
  rec.clear();
  storage::detail::frame_record(payload, rec);
  REQUIRE_FALSE(d.write("raft.snap", rec));
  REQUIRE_FALSE(d.sync("raft.snap"));
  d.crash();
  durable_storage b(d);
  CHECK(b.first_index() == 9);
  CHECK(b.last_index() == 8);
}

TEST_CASE("durable_storage: damage to the state file is a clear error, not silent loss") {
  memory_disk d;
  {
    durable_storage s(d);
    REQUIRE_FALSE(s.save_state({4, address::sim(1)}));
  }
  auto data = d.read("raft.state");
  REQUIRE(data);
  (*data)[data->size() - 1] ^= 1;
  REQUIRE_FALSE(d.write("raft.state", *data));
  CHECK_THROWS_AS(durable_storage{d}, dcp::error);
  CHECK_THROWS_AS(durable_storage(d, {"bad/name"}), dcp::error);
}

TEST_CASE("durable_storage over file_disk: real files, a torn and a corrupted tail are cut") {
  const auto dir = std::filesystem::temp_directory_path() / ("dcp-storage-test-" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  {
    file_disk d(dir);
    durable_storage s(d);
    for (std::uint64_t i = 1; i <= 20; ++i) REQUIRE_FALSE(s.append(make_entry(i, 1, i)));
    REQUIRE_FALSE(s.sync());
    REQUIRE_FALSE(s.save_state({1, address::sim(0)}));
    REQUIRE_FALSE(s.install_snapshot({5, 1, to_bytes("five")}));
  }
  const auto log = dir / "raft.log";
  const auto size = std::filesystem::file_size(log);
  {  // a torn append: half a record at the end
    std::ofstream f(log, std::ios::binary | std::ios::app);
    f.write("\x30\x00\x00\x00\x01\x02", 6);
  }
  {
    file_disk d(dir);
    durable_storage s(d);
    CHECK(s.recovery().torn_bytes == 6);
    CHECK(s.first_index() == 6);
    CHECK(s.last_index() == 20);
    CHECK(s.snapshot().data == to_bytes("five"));
    CHECK(s.state() == hard_state{1, address::sim(0)});
  }
  CHECK(std::filesystem::file_size(log) == size);  // the cut was made on disk
  {                                                // flip a byte inside the last record
    std::fstream f(log, std::ios::binary | std::ios::in | std::ios::out);
    f.seekp(static_cast<std::streamoff>(size - 3));
    f.put('\x7f');
  }
  {
    file_disk d(dir);
    durable_storage s(d);
    CHECK(s.last_index() == 19);
    CHECK(s.recovery().torn_bytes > 0);
    REQUIRE_FALSE(s.append(make_entry(20, 2, 7)));
    REQUIRE_FALSE(s.sync());
  }
  {
    file_disk d(dir);
    durable_storage s(d);
    CHECK(s.last_index() == 20);
    CHECK(s.entry(20) == make_entry(20, 2, 7));
  }
  std::filesystem::remove_all(dir);
}

// Issue 12, bug 7: a file's name is durable only once its directory has been
// fsynced, and file_disk synced the directory only for names this process
// created. A life that created the log and crashed before syncing it left a
// name the next life synced the data of, never the name. Whether a name
// survives a power cut cannot be observed in a test; what can be is that the
// directory sync is made (file_disk counts them): when a later life opens the
// disk, before it syncs a file an earlier life created, and for the data
// directory's own entry in its parent.
TEST_CASE("file_disk: names an earlier life created, and the data directory's entry, are synced whoever created them") {
  const auto dir = std::filesystem::temp_directory_path() / ("dcp-dirsync-test-" + std::to_string(::getpid())) / "data";
  std::filesystem::remove_all(dir.parent_path());
  {
    file_disk first(dir);                 // creates the directory, and its parent
    CHECK(first.directory_syncs() >= 2);  // the data directory, and its entry in the parent
    REQUIRE_FALSE(first.append("raft.log", to_bytes("first life")));
  }  // ... and crashes before its first sync: neither the data nor the name is durable
  file_disk second(dir);
  const auto opened = second.directory_syncs();
  CHECK(opened >= 2);  // the directory (the earlier life's names) and the parent (the directory's own name)
  REQUIRE_FALSE(second.append("raft.log", to_bytes(", second life")));
  REQUIRE_FALSE(second.sync("raft.log"));
  CHECK(second.directory_syncs() == opened);  // a name it did not create costs no further directory sync
  REQUIRE_FALSE(second.append("raft.state", to_bytes("new")));  // a name this life creates ...
  REQUIRE_FALSE(second.sync("raft.state"));
  CHECK(second.directory_syncs() == opened + 1);  // ... is synced with its first sync
  auto data = second.read("raft.log");
  REQUIRE(data);
  CHECK(*data == to_bytes("first life, second life"));
  std::filesystem::remove_all(dir.parent_path());
}
