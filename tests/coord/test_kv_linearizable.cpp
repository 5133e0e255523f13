// Linearizability of the replicated log, end to end: clients on their own
// simulated nodes put, append, compare-and-set, remove and get keys of the coordination service's
// key-value store (commands through the Raft log with client sessions and
// retries; gets by ReadIndex at the leader), while replicas crash and restart
// from their disks (what was not synced is lost or torn), the network
// partitions, loses, duplicates and reorders messages, and every clock is
// skewed and drifts. Each operation is recorded with the true (simulator)
// time of its call and of its answer; one that times out or whose client
// crashes is recorded as never having returned, since it may still take
// effect. Every history is then checked against a key-value model with
// compare-and-set (dcp::check's kv_model plus cas), split by key.
//
// At most one leader per term and the durability of committed entries are
// checked after every event by tests/consensus (the same faults on the same
// Raft); here the subject is what a client observes.
#include <doctest/doctest.h>

#include <functional>
#include <string>
#include <vector>

#include "../seeds.hpp"  // fewer seeds under sanitizers
#include "dcp/check.hpp"
#include "dcp/coord.hpp"
#include "dcp/sim.hpp"
#include "dcp/storage.hpp"

namespace test_kv_linearizable {

using namespace dcp;
using namespace dcp::coord;

namespace {

using raft_t = consensus::raft<sim::env, machine, storage::durable_storage>;
using server_t = server<sim::env, raft_t>;
using client_t = client<sim::env>;
// Porcupine's key-value model with compare-and-set. The history is split by
// key, so a state is the value of one key (missing = empty).
struct kv_cas_model {
  enum class op : std::uint8_t { get, put, append, cas, remove };
  struct input {
    op kind = op::get;
    std::string key, value, expected;
  };
  struct output {
    std::string value;  ///< get: the value read
    bool ok = true;     ///< cas: whether it swapped; remove: whether a key was removed
  };
  using state = std::string;
  static state init() { return {}; }
  static std::optional<state> step(const state& s, const input& in, const std::optional<output>& out) {
    switch (in.kind) {
      case op::get:
        if (out && out->value != s) return std::nullopt;
        return s;
      case op::put:
        return in.value;
      case op::append:
        return s + in.value;
      case op::cas: {
        const bool swaps = s == in.expected;
        if (out && out->ok != swaps) return std::nullopt;
        return swaps ? in.value : s;
      }
      case op::remove:  // values written are never empty: empty is missing
        if (out && out->ok != !s.empty()) return std::nullopt;
        return state{};
    }
    return std::nullopt;
  }
  static bool read_only(const input& in) { return in.kind == op::get; }
  static const std::string& partition_key(const input& in) { return in.key; }
};
static_assert(check::PartitionedModel<kv_cas_model> && check::ReadOnlyAwareModel<kv_cas_model>);
using kv = kv_cas_model;

constexpr protocol_id raft_id = raft_t::default_id, coord_id = default_protocol_id;

struct kv_options {
  std::uint32_t replicas = 3, clients = 3;
  duration faults_for = 2s;
  duration fault_every = 200ms;
  double loss = 0.05, duplicate = 0.02, reorder = 0.1;
  double drift = 0.01;              ///< clock rates within +-1% (the coord client's default bound)
  std::size_t ops_per_client = 30;  ///< during the faults; a few more once healed
  std::vector<std::string> keys{"x", "y"};
  /// Negative control: this fraction of gets reads a random replica's state
  /// machine directly (no ReadIndex), as a follower read would.
  double local_reads = 0;
};

struct kv_outcome {
  std::size_t ops = 0, pending = 0, failovers = 0, reads_seeing_writes = 0, swaps = 0, failed_swaps = 0, removes = 0;
  bool live = false;
  check::check_result verdict;
};

class kv_world {
 public:
  kv_world(std::uint64_t seed, kv_options o) : w_(seed, config(o)), opt_(o), rng_(seed ^ 0x5EED) {
    for (std::uint32_t i = 0; i < o.replicas; ++i) servers_.push_back(address::sim(i));
    consensus::raft_config rc;
    rc.members = servers_;
    rc.election_timeout_min = 100ms;
    rc.election_timeout_max = 200ms;
    rc.heartbeat_interval = 30ms;
    rc.snapshot_every = 24;  // compaction and InstallSnapshot happen within a seed
    w_.add_nodes(o.replicas, [rc](sim::node_context& n) {
      auto& r = n.add<raft_t>(raft_id, rc, storage::durable_storage(n.world().disk_of(n.index())), machine{});
      n.add<server_t>(coord_id, r);
    });
    client_config cc;
    cc.servers = servers_;
    cc.request_timeout = 100ms;
    cc.give_up_after = 1s;
    w_.add_nodes(o.clients, [cc](sim::node_context& n) { n.add<client_t>(coord_id, cc); });
    for (std::uint32_t i = 0; i < o.replicas + o.clients; ++i)
      w_.set_clock(i, duration(rng_.between(-200'000'000, 200'000'000)), (rng_.uniform() * 2 - 1) * o.drift);
    life_.assign(o.clients, 0);
    done_after_heal_.assign(o.clients, 0);
    issued_.assign(o.clients, 0);
  }

  kv_outcome run() {
    kv_outcome out;
    for (std::uint32_t c = 0; c < opt_.clients; ++c)
      w_.after(duration(rng_.between(0, 20'000'000)), [this, c] { step(c, 0); });
    for (auto t = opt_.fault_every; t < opt_.faults_for; t += opt_.fault_every)
      w_.after(t, [this, &out] { fault(out); });
    w_.run_for(opt_.faults_for);
    // Heal: every replica and client back up, the network whole again.
    w_.heal();
    for (std::uint32_t i = 0; i < opt_.replicas + opt_.clients; ++i) {
      if (w_.is_up(i)) continue;
      w_.restart(i);
      if (i >= opt_.replicas) restart_client(i - opt_.replicas);
    }
    healed_ = true;
    for (std::uint32_t c = 0; c < opt_.clients; ++c) kick(c);  // clients idle after their quota start again
    w_.run_until([&] { return all_progressed(); }, w_.now() + 5s);
    out.live = all_progressed();
    stopped_ = true;
    w_.run_for(1500ms);  // let operations in flight finish (or time out)
    out.ops = history_.size();
    for (auto& op : history_) {
      out.pending += op.pending();
      out.reads_seeing_writes += op.input.kind == kv::op::get && op.output && !op.output->value.empty();
      if (op.input.kind == kv::op::cas && op.output) ++(op.output->ok ? out.swaps : out.failed_swaps);
      if (op.input.kind == kv::op::remove && op.output) out.removes += op.output->ok;
    }
    out.verdict = check::check_linearizability<kv>(history_, {.max_steps = 20'000'000});
    return out;
  }

  const check::history<kv>& history() const { return history_; }

 private:
  static sim::config config(const kv_options& o) {
    sim::config c;
    c.network.delay = sim::latency::uniform(1ms, 8ms);
    c.network.loss = o.loss;
    c.network.duplicate = o.duplicate;
    c.network.reorder = o.reorder;
    c.network.reorder_delay = 20ms;
    return c;
  }
  client_t* client(std::uint32_t c) { return w_.find<client_t>(opt_.replicas + c, coord_id); }
  raft_t* replica(std::uint32_t i) { return w_.find<raft_t>(i, raft_id); }

  bool all_progressed() const {
    for (auto n : done_after_heal_)
      if (n < 3) return false;
    return true;
  }

  // One client: one operation at a time, a short pause between them.
  void step(std::uint32_t c, int life) {
    auto* cl = client(c);
    if (!cl || life != life_[c] || stopped_ || busy_[c]) return;
    if (!healed_ && issued_[c] >= opt_.ops_per_client) return;  // the quota: keeps histories small
    ++issued_[c];
    busy_[c] = true;
    const std::string key = opt_.keys[rng_.below(opt_.keys.size())];
    const std::uint64_t who = c * 1000 + static_cast<std::uint64_t>(life);
    const std::size_t at = history_.size();
    auto finish = [this, c, life, at](std::optional<kv::output> out) {
      auto& op = history_[at];
      if (out) {
        op.ret = w_.now();
        op.output = std::move(out);
        if (healed_) ++done_after_heal_[c];
      }  // else: timed out or refused: outcome unknown, recorded as never returned
      busy_[c] = false;
      w_.after(duration(rng_.between(0, 20'000'000)), [this, c, life] { step(c, life); });
    };
    const auto kind = rng_.below(10);
    if (kind < 4) {  // get
      history_.push_back({who, w_.now(), {}, {kv::op::get, key, {}, {}}, std::nullopt});
      if (rng_.chance(opt_.local_reads)) {  // the negative control: no ReadIndex
        const auto i = static_cast<std::uint32_t>(rng_.below(opt_.replicas));
        if (auto* r = replica(i)) {
          const bytes* v = r->state_machine().value(key);
          history_[at].ret = w_.now();
          history_[at].output = kv::output{v ? std::string(as_string(*v)) : std::string{}};
        }
        busy_[c] = false;
        w_.after(duration(rng_.between(1'000'000, 20'000'000)), [this, c, life] { step(c, life); });
        return;
      }
      cl->get(key, [this, c, key, finish](result<std::optional<bytes>> r) {
        if (!r) return finish(std::nullopt);
        std::string v = *r ? std::string(as_string(**r)) : std::string{};
        last_seen_[{c, key}] = v;
        finish(kv::output{std::move(v)});
      });
    } else if (kind == 7 && rng_.chance(0.5)) {  // remove
      history_.push_back({who, w_.now(), {}, {kv::op::remove, key, {}, {}}, std::nullopt});
      cl->remove(key, [finish](result<std::uint64_t> r) {
        r ? finish(kv::output{{}, *r == 1}) : finish(std::nullopt);
      });
    } else {  // put, append or compare-and-set, each value unique so a double apply would show
      const std::string value = "<" + std::to_string(who) + "." + std::to_string(++written_) + ">";
      if (kind >= 8) {  // cas from the value this client last read (often stale under faults)
        const std::string expected = last_seen_[{c, key}];
        history_.push_back({who, w_.now(), {}, {kv::op::cas, key, value, expected}, std::nullopt});
        cl->compare_and_set(key, to_bytes(expected), to_bytes(value), [finish](result<bool> r) {
          r ? finish(kv::output{{}, *r}) : finish(std::nullopt);
        });
        return;
      }
      const bool is_put = kind < 6;
      history_.push_back({who, w_.now(), {}, {is_put ? kv::op::put : kv::op::append, key, value, {}}, std::nullopt});
      auto cb = [finish](result<done_t> r) { r ? finish(kv::output{}) : finish(std::nullopt); };
      if (is_put)
        cl->put(key, to_bytes(value), cb);
      else
        cl->append(key, to_bytes(value), cb);
    }
  }
  void kick(std::uint32_t c) {
    if (!busy_[c]) step(c, life_[c]);
  }
  void restart_client(std::uint32_t c) {
    ++life_[c];
    busy_[c] = false;  // its operation in flight died with it: recorded as never returned
    kick(c);
  }

  void fault(kv_outcome& out) {
    const auto n = opt_.replicas + opt_.clients;
    switch (rng_.below(8)) {
      case 0:
      case 1:  // crash a replica, the leader half of the time
        for (std::uint32_t i = 0; i < opt_.replicas; ++i)
          if (auto* r = replica(i); r && r->is_leader() && rng_.chance(0.5)) {
            w_.crash(i);
            ++out.failovers;
            return;
          }
        w_.crash(static_cast<sim::node_index>(rng_.below(opt_.replicas)));
        break;
      case 2:  // restart the crashed replicas (durable state back, unsynced writes lost or torn)
        for (std::uint32_t i = 0; i < opt_.replicas; ++i) w_.restart(i);
        break;
      case 3: {  // a random partition of replicas and clients into two sides
        std::vector<sim::node_index> side;
        for (std::uint32_t i = 0; i < n; ++i)
          if (rng_.chance(0.5)) side.push_back(i);
        w_.partition({side});
        break;
      }
      case 4:
        w_.heal();
        break;
      case 5:
        w_.isolate(static_cast<sim::node_index>(rng_.below(n)));
        break;
      case 6: {  // a client crashes mid-operation and comes back as a new client
        const auto c = static_cast<std::uint32_t>(rng_.below(opt_.clients));
        if (!w_.is_up(opt_.replicas + c)) break;
        w_.crash(opt_.replicas + c);
        w_.after(duration(rng_.between(50'000'000, 300'000'000)), [this, c] {
          if (w_.is_up(opt_.replicas + c)) return;
          w_.restart(opt_.replicas + c);
          restart_client(c);
        });
        break;
      }
      case 7:  // a burst of heavy loss
        w_.set_network({sim::latency::uniform(1ms, 30ms), 0.3, opt_.duplicate, opt_.reorder, 40ms});
        w_.after(opt_.fault_every / 2, [this] { w_.set_network(config(opt_).network); });
        break;
    }
  }

  sim::simulator w_;
  kv_options opt_;
  dcp::rng rng_;
  std::vector<address> servers_;
  check::history<kv> history_;
  std::vector<int> life_;
  std::map<std::uint32_t, bool> busy_;
  std::map<std::pair<std::uint32_t, std::string>, std::string> last_seen_;  // (client, key) -> value it last read
  std::vector<std::size_t> done_after_heal_, issued_;
  std::uint64_t written_ = 0;
  bool healed_ = false, stopped_ = false;
};

std::string show(const check::operation<kv::input, kv::output>& o) {
  auto ms = [](time_point t) { return std::to_string(t.time_since_epoch().count() / 1'000'000); };
  const char* names[] = {"get", "put", "append", "cas", "remove"};
  std::string args = o.input.key;
  if (o.input.kind == kv::op::cas) args += ", '" + o.input.expected + "'";
  if (o.input.kind != kv::op::get && o.input.kind != kv::op::remove) args += ", " + o.input.value;
  std::string outcome = " never answered";
  if (o.output)
    outcome = o.input.kind == kv::op::get ? " -> '" + o.output->value + "'"
        : o.input.kind == kv::op::cas     ? (o.output->ok ? " swapped" : " did not swap")
        : o.input.kind == kv::op::remove  ? (o.output->ok ? " removed" : " removed nothing")
                                          : " ok";
  return "[" + ms(o.call) + ", " + (o.output ? ms(o.ret) : std::string("-")) + "] ms client " +
      std::to_string(o.client) + " " + names[static_cast<int>(o.input.kind)] + "(" + args + ")" + outcome + "\n";
}

// A failing seed as a bug report: the longest order the checker found, then
// every operation on that key in call order.
std::string describe(const check::history<kv>& h, const check::check_result& r) {
  if (r.longest_linearization.empty()) return {};
  std::string s = "longest linearization:\n";
  for (auto i : r.longest_linearization) s += show(h[i]);
  const auto& key = h[r.longest_linearization.front()].input.key;
  s += "every operation on " + key + ":\n";
  for (const auto& o : h)
    if (o.input.key == key) s += show(o);
  return s;
}

}  // namespace

TEST_CASE(
    "coord kv: every client history is linearizable under crashes, restarts, partitions, loss, duplication, "
    "reordering and clock drift, over 1,000 seeds") {
  std::size_t ops = 0, pending = 0, failovers = 0, live = 0, five = 0, seen = 0, swaps = 0, failed_swaps = 0,
              removes = 0;
  std::uint64_t steps = 0;
  const std::uint64_t seeds = dcp::test::last_seed(1, 1000);
  for (std::uint64_t seed = 1; seed <= seeds; ++seed) {
    CAPTURE(seed);
    kv_options o;
    if (seed % 4 == 0) {
      o.replicas = 5;
      ++five;
    }
    kv_world world(seed, o);
    auto out = world.run();
    INFO((out.verdict.outcome == check::verdict::unknown ? "the checker gave up (search budget exhausted); "
                                                         : "not linearizable; ")
         << describe(world.history(), out.verdict));
    REQUIRE(out.verdict.outcome == check::verdict::linearizable);
    ops += out.ops;
    pending += out.pending;
    seen += out.reads_seeing_writes;
    swaps += out.swaps;
    failed_swaps += out.failed_swaps;
    removes += out.removes;
    failovers += out.failovers;
    steps += out.verdict.steps;
    live += out.live;
  }
  MESSAGE(seeds << " seeds (" << five << " with 5 replicas): " << ops << " operations, " << pending
                << " of them never answered, " << seen << " gets that saw a write, " << swaps
                << " cas that swapped and " << failed_swaps << " that did not, " << removes
                << " removes that removed a key, " << failovers << " leader crashes, " << steps
                << " checker steps; every client progressed after healing in " << live << " seeds");
  CHECK(live == seeds);
  CHECK(pending > 0);     // faults did leave operations in doubt
  CHECK(seen > ops / 5);  // reads observed writes (the histories constrain something)
  CHECK(swaps > 0);
  CHECK(failed_swaps > 0);
  CHECK(removes > 0);
  CHECK(failovers > seeds / 2);
}

// The check can fail: gets served from a replica's local state (a follower
// read, no ReadIndex) return stale values under the same faults, and the
// checker rejects those histories.
TEST_CASE("coord kv: reads that skip ReadIndex are caught by the checker") {
  std::size_t rejected = 0;
  const std::uint64_t seeds = dcp::test::last_seed(1, 100);
  for (std::uint64_t seed = 1; seed <= seeds; ++seed) {
    kv_options o;
    o.local_reads = 0.5;
    kv_world world(seed, o);
    auto out = world.run();
    CHECK(out.verdict.outcome != check::verdict::unknown);
    rejected += out.verdict.outcome == check::verdict::not_linearizable;
  }
  MESSAGE(rejected << " of " << seeds << " seeds with follower reads rejected");
  CHECK(rejected > seeds / 10);
}

TEST_CASE("coord kv: bad keys and values are refused with invalid_argument, and a missing key reads as absent") {
  kv_options o;
  o.loss = o.duplicate = o.reorder = 0;
  sim::simulator w(3);
  std::vector<address> servers{address::sim(0), address::sim(1), address::sim(2)};
  consensus::raft_config rc;
  rc.members = servers;
  w.add_nodes(3, [rc](sim::node_context& n) {
    auto& r = n.add<raft_t>(raft_id, rc, storage::durable_storage(n.world().disk_of(n.index())), machine{});
    n.add<server_t>(coord_id, r);
  });
  client_config cc;
  cc.servers = servers;
  w.add_node([cc](sim::node_context& n) { n.add<client_t>(coord_id, cc); });
  auto& cl = w.get<client_t>(3, coord_id);
  std::error_code ec;
  cl.put("", to_bytes("v"), [&](result<done_t> r) { ec = r.error(); });
  CHECK(ec == dcp::errc::invalid_argument);
  cl.append("k", bytes(max_value_bytes + 1), [&](result<done_t> r) { ec = r.error(); });
  CHECK(ec == dcp::errc::invalid_argument);
  cl.get(std::string(max_key_bytes + 1, 'k'), [&](result<std::optional<bytes>> r) { ec = r.error(); });
  CHECK(ec == dcp::errc::invalid_argument);

  std::optional<result<std::optional<bytes>>> got;
  cl.get("missing", [&](result<std::optional<bytes>> r) { got = std::move(r); });
  w.run_until([&] { return got.has_value(); }, w.now() + 5s);
  REQUIRE(got);
  REQUIRE(got->has_value());
  CHECK_FALSE(got->value().has_value());

  // Compare-and-set: from the empty value of a missing key, then only from the current value.
  std::vector<bool> swapped;
  cl.compare_and_set("c", {}, to_bytes("1"), [&](result<bool> r) {
    REQUIRE(r);
    swapped.push_back(*r);
  });
  cl.compare_and_set("c", {}, to_bytes("2"), [&](result<bool> r) {
    REQUIRE(r);
    swapped.push_back(*r);
  });
  cl.compare_and_set("c", to_bytes("1"), to_bytes("3"), [&](result<bool> r) {
    REQUIRE(r);
    swapped.push_back(*r);
  });
  w.run_until([&] { return swapped.size() == 3; }, w.now() + 5s);
  CHECK(swapped == std::vector<bool>{true, false, true});
  got.reset();
  cl.get("c", [&](result<std::optional<bytes>> r) { got = std::move(r); });
  w.run_until([&] { return got.has_value(); }, w.now() + 5s);
  REQUIRE(got);
  REQUIRE(got->has_value());
  REQUIRE(got->value().has_value());
  CHECK(as_string(*got->value()) == "3");

  // Appends that together exceed the bound: the one that would is refused, the value stays whole.
  int answered = 0;
  std::error_code second;
  cl.append("big", bytes(max_value_bytes - 10, 'a'), [&](result<done_t> r) {
    CHECK(r);
    ++answered;
  });
  cl.append("big", bytes(11, 'b'), [&](result<done_t> r) {
    second = r.error();
    ++answered;
  });
  w.run_until([&] { return answered == 2; }, w.now() + 5s);
  CHECK(second == dcp::errc::invalid_argument);
  got.reset();
  cl.get("big", [&](result<std::optional<bytes>> r) { got = std::move(r); });
  w.run_until([&] { return got.has_value(); }, w.now() + 5s);
  REQUIRE(got);
  REQUIRE(got->has_value());
  REQUIRE(got->value().has_value());
  CHECK(got->value()->size() == max_value_bytes - 10);
}

}  // namespace test_kv_linearizable
