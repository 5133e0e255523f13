// Issue 12, bug 5: snapshots larger than one frame were never sent, and a
// lagging or restarted follower stayed behind for ever (100 puts of 60 KiB
// wedged it; the only sign was a counter). InstallSnapshot now streams the
// snapshot in chunks (offset / done, as in the Raft paper, section 7), each
// bounded by raft_config::snapshot_chunk_bytes, and the replicated state is
// held to a quota (max_snapshot_bytes) that a proposal may not exceed.
#include "raft_harness.hpp"

#include "dcp/wire/limits.hpp"

namespace test_raft_snapshot {

using namespace raft_test;

namespace {

/// A state machine that keeps every payload it applied: its snapshot is as
/// large as everything written to it.
struct blob_store {
  std::vector<bytes> blobs;
  bytes apply(byte_view cmd) {
    blobs.emplace_back(cmd.begin(), cmd.end());
    bytes out;
    storage::detail::encode_value(std::uint64_t{blobs.size()}, out);
    return out;
  }
  bytes snapshot() const {
    bytes out;
    storage::detail::encode_value(blobs, out);
    return out;
  }
  std::error_code restore(byte_view s) {
    std::vector<bytes> b;
    if (storage::detail::decode_value(s, b)) return dcp::make_error_code(dcp::errc::malformed_payload);
    blobs = std::move(b);
    return {};
  }
};
using blob_node = raft<sim::env, blob_store, storage::durable_storage>;

struct blob_cluster {
  sim::simulator w;
  std::uint32_t n;
  blob_cluster(std::uint64_t seed, std::uint32_t nodes, std::function<void(raft_config&)> tweak = {})
      : w(seed, make_config()), n(nodes) {
    raft_config rc;
    for (std::uint32_t i = 0; i < nodes; ++i) rc.members.push_back(address::sim(i));
    rc.election_timeout_min = 100ms;
    rc.election_timeout_max = 200ms;
    rc.heartbeat_interval = 30ms;
    rc.snapshot_every = 16;
    rc.max_entries_per_message = 16;
    if (tweak) tweak(rc);
    w.add_nodes(nodes, [rc](sim::node_context& nc) {
      nc.add<blob_node>(pid, rc, storage::durable_storage(nc.world().disk_of(nc.index())), blob_store{});
    });
  }
  static sim::config make_config() {
    sim::config c;
    c.network.delay = sim::latency::uniform(1ms, 5ms);
    c.network.loss = 0;
    c.network.duplicate = 0;
    c.network.reorder = 0;
    return c;
  }
  blob_node* node(std::uint32_t i) { return w.find<blob_node>(i, pid); }
  std::uint32_t leader() {
    for (std::uint32_t i = 0; i < n; ++i)
      if (auto* r = node(i); r && r->is_leader()) return i;
    FAIL("no leader");
    return 0;
  }
  std::int64_t counter(std::string_view name) { return w.metrics().counter(pid, name); }
};

}  // namespace

TEST_CASE("raft: lagging and restarted followers catch up with a snapshot of several MiB, in chunks") {
  blob_cluster c(31, 5);
  c.w.run_for(1s);
  const auto L = c.leader();
  std::vector<std::uint32_t> followers;
  for (std::uint32_t i = 0; i < 5; ++i)
    if (i != L) followers.push_back(i);
  const auto lagging = followers[0], restarted = followers[1];
  c.w.isolate(lagging);
  c.w.crash(restarted);
  // 100 puts of 60 KiB: the leader's snapshot outgrows one frame
  int acked = 0;
  for (int i = 0; i < 100; ++i) {
    c.node(L)->propose(bytes(60 * 1024, static_cast<std::uint8_t>(i)),
                       [&](result<bytes> r) { acked += r.has_value(); });
    if (i % 10 == 9) c.w.run_for(20ms);
  }
  c.w.run_until([&] { return acked == 100; }, c.w.now() + 5s);
  REQUIRE(acked == 100);
  auto* leader = c.node(L);
  const auto frame = wire::limits{}.max_frame_size;
  REQUIRE(leader->store().snapshot().data.size() > frame);
  REQUIRE(leader->store().snapshot().index > c.node(lagging)->store().last_index());
  c.w.heal();
  c.w.restart(restarted);
  // A forged acknowledgement of bytes never sent moves nothing on the leader.
  c.w.run_until([&] { return c.counter("snapshot_chunks_sent") > 0; }, c.w.now() + 1s);
  leader->on_message(
      address::sim(lagging),
      raft_msg::snapshot_reply{leader->current_term(), 0, 0, leader->store().snapshot().index, 1u << 30});
  CHECK(c.counter("match_beyond_sent") == 1);
  c.w.run_until(
      [&] {
        for (auto f : {lagging, restarted})
          if (c.node(f)->applied_index() < leader->commit_index()) return false;
        return true;
      },
      c.w.now() + 5s);
  for (auto f : {lagging, restarted}) {
    CAPTURE(f);
    auto* r = c.node(f);
    CHECK(r->applied_index() == leader->applied_index());
    CHECK(r->store().snapshot().index >= leader->store().snapshot().index - 16);
    CHECK(r->state_machine().blobs == leader->state_machine().blobs);
  }
  CHECK(c.counter("snapshot_installed") >= 2);
  CHECK(c.counter("snapshot_too_large") == 0);
  CHECK(c.counter("snapshot_chunks_sent") >= 2 * (leader->store().snapshot().data.size() / frame + 1));
}

TEST_CASE("raft: hostile snapshot chunks change nothing, and are counted") {
  blob_cluster c(32, 3, [](raft_config& rc) { rc.snapshot_chunk_bytes = 64 * 1024; });
  c.w.run_for(1s);
  const auto first = c.leader();  // a second term, so that an earlier one exists
  c.w.crash(first);
  c.w.run_for(1s);
  c.w.restart(first);
  c.w.run_for(500ms);
  const auto L = c.leader();
  const auto F = (L + 1) % 3;
  for (int i = 0; i < 5; ++i) c.node(L)->propose(bytes(100, std::uint8_t{1}), [](result<bytes>) {});
  c.w.run_for(200ms);
  auto* f = c.node(F);
  const auto from = address::sim(L);
  const auto term = f->current_term();
  REQUIRE(term >= 2);
  const auto commit = f->commit_index(), applied = f->applied_index(), last = f->store().last_index();
  const auto snap_index = f->store().snapshot().index;
  const auto far = commit + 1000;  // a snapshot far ahead: it would be installed if accepted
  auto chunk = [&](std::uint64_t t, std::uint64_t index, std::uint64_t offset, std::uint64_t total, std::size_t size,
                   bool done) {
    raft_msg::install_snapshot m;
    m.term = t;
    m.index = index;
    m.last_term = t;
    m.offset = offset;
    m.total = total;
    m.data = bytes(size, std::uint8_t{0x5A});
    m.done = done;
    return m;
  };
  // a middle chunk with no transfer begun
  f->on_message(from, chunk(term, far, 4096, 8192, 4096, true));
  CHECK(c.counter("snapshot_chunk_out_of_order") == 1);
  // a total beyond the quota: refused before anything is buffered
  f->on_message(from, chunk(term, far, 0, std::uint64_t{1} << 50, 1024, false));
  CHECK(c.counter("snapshot_too_large") == 1);
  // a chunk larger than a chunk may be, a chunk past the total, done at the wrong place
  f->on_message(from, chunk(term, far, 0, 1 << 20, 64 * 1024 + 1, false));
  f->on_message(from, chunk(term, far, 0, 100, 200, true));
  f->on_message(from, chunk(term, far, 0, 8192, 4096, true));
  f->on_message(from, chunk(term, far, 0, 4096, 4096, false));
  f->on_message(from, chunk(term, far, ~std::uint64_t{0} - 10, 100, 50, false));
  CHECK(c.counter("malformed_snapshot") == 5);
  // a stale term's chunk
  f->on_message(from, chunk(term - 1, far, 0, 8192, 4096, false));
  CHECK(c.counter("stale_snapshot_chunk") == 1);
  // a first chunk, then one of another snapshot, one that skips ahead, and a
  // duplicate; then the last chunk, whose bytes are not a snapshot
  f->on_message(from, chunk(term, far, 0, 8192, 4096, false));
  f->on_message(from, chunk(term, far + 1, 4096, 8192, 4096, true));
  f->on_message(from, chunk(term, far, 6000, 8192, 2192, true));
  CHECK(c.counter("snapshot_chunk_out_of_order") == 3);
  f->on_message(from, chunk(term, far, 0, 8192, 4096, false));
  CHECK(c.counter("snapshot_chunk_duplicate") == 1);
  f->on_message(from, chunk(term, far, 4096, 8192, 4096, true));
  CHECK(c.counter("bad_snapshot") == 1);
  // nothing changed
  CHECK(f->current_term() == term);
  CHECK(f->commit_index() == commit);
  CHECK(f->applied_index() == applied);
  CHECK(f->store().last_index() == last);
  CHECK(f->store().snapshot().index == snap_index);
  CHECK_FALSE(f->failed());
  CHECK(c.counter("snapshot_installed") == 0);
  // and the follower still follows
  bool done = false;
  c.node(L)->propose(bytes(10, std::uint8_t{2}), [&](result<bytes> r) { done = r.has_value(); });
  c.w.run_for(200ms);
  CHECK(done);
  CHECK(c.node(F)->applied_index() == c.node(L)->applied_index());
}

TEST_CASE("raft: a proposal that would take the state past max_snapshot_bytes fails with a clear error") {
  blob_cluster c(33, 3, [](raft_config& rc) {
    rc.max_snapshot_bytes = 1 << 20;
    rc.snapshot_chunk_bytes = 256 * 1024;
  });
  c.w.run_for(1s);
  auto* leader = c.node(c.leader());
  int acked = 0;
  std::optional<std::error_code> refused;
  for (int i = 0; i < 40 && !refused; ++i) {
    leader->propose(bytes(60 * 1024, std::uint8_t{3}), [&](result<bytes> r) {
      if (r)
        ++acked;
      else
        refused = r.error();
    });
    c.w.run_for(20ms);
  }
  REQUIRE(refused);
  CHECK(*refused == consensus::errc::snapshot_too_large);
  CHECK(refused->message().find("max_snapshot_bytes") != std::string::npos);
  CHECK(acked >= 14);                     // about 1 MiB went in ...
  CHECK(acked * 60 * 1024 <= (1 << 20));  // ... and no more
  CHECK(c.counter("state_quota_exceeded") >= 1);
  // every replica's snapshot stays within the quota, so any of them can be sent
  c.w.run_for(500ms);
  for (std::uint32_t i = 0; i < 3; ++i) CHECK(c.node(i)->store().snapshot().data.size() <= (1u << 20));
}

// Found beside bug 5: AppendEntries batches were bounded by entry count only
// (max_entries_per_message = 64), so 64 entries of 65 KiB made a message over
// the 4 MiB frame; the transport dropped it, every resend too, and a lagging
// follower never caught up. A batch now also stops at snapshot_chunk_bytes of
// entry data (always at least one entry), and a proposal larger than one
// chunk is refused (it could never be sent).
TEST_CASE("raft: a lagging follower catches up through appends of large entries, batched by bytes") {
  blob_cluster c(34, 3, [](raft_config& rc) {
    rc.snapshot_every = 100'000;  // appends only, no snapshot
    rc.max_entries_per_message = 64;
  });
  c.w.run_for(1s);
  const auto L = c.leader();
  const auto lagging = (L + 1) % 3;
  c.w.isolate(lagging);
  int acked = 0;
  for (int i = 0; i < 100; ++i) {
    c.node(L)->propose(bytes(65 * 1024, static_cast<std::uint8_t>(i)),
                       [&](result<bytes> r) { acked += r.has_value(); });
    if (i % 10 == 9) c.w.run_for(20ms);
  }
  c.w.run_until([&] { return acked == 100; }, c.w.now() + 5s);
  REQUIRE(acked == 100);
  c.w.heal();
  auto* leader = c.node(L);
  c.w.run_until([&] { return c.node(lagging)->applied_index() == leader->commit_index(); }, c.w.now() + 5s);
  CHECK(c.node(lagging)->applied_index() == leader->applied_index());
  CHECK(c.node(lagging)->state_machine().blobs == leader->state_machine().blobs);
  CHECK(c.w.metrics().drops(pid, dcp::make_error_code(dcp::errc::frame_too_large)) == 0);
  // an entry larger than a chunk could never be sent: refused at once
  std::optional<std::error_code> refused;
  leader->propose(bytes(leader->config().snapshot_chunk_bytes + 1, 0), [&](result<bytes> r) {
    if (!r) refused = r.error();
  });
  c.w.run_for(10ms);
  REQUIRE(refused);
  CHECK(*refused == dcp::errc::invalid_argument);
}

}  // namespace test_raft_snapshot
