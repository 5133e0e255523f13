#include <doctest/doctest.h>

#include <algorithm>
#include <numeric>
#include <string>

#include "dcp/check.hpp"
#include "dcp/core/rng.hpp"

using namespace dcp;
using namespace dcp::check;

namespace {

using reg = register_model;
using reg_op = operation<reg::input, reg::output>;
using kv_op = operation<kv_model::input, kv_model::output>;

time_point at(std::int64_t t) { return time_point(duration(t)); }

reg_op wr(std::uint64_t c, std::int64_t call, std::int64_t ret, std::int64_t v) {
  return {c, at(call), at(ret), reg::write(v), reg::output{}};
}
reg_op rd(std::uint64_t c, std::int64_t call, std::int64_t ret, std::int64_t v) {
  return {c, at(call), at(ret), reg::read(), reg::output{v, true}};
}
// a read that found the register empty (no value written yet)
reg_op rd_none(std::uint64_t c, std::int64_t call, std::int64_t ret) {
  return {c, at(call), at(ret), reg::read(), reg::output{std::nullopt, true}};
}
reg_op cas(std::uint64_t c, std::int64_t call, std::int64_t ret, std::int64_t from, std::int64_t to, bool ok) {
  return {c, at(call), at(ret), reg::cas(from, to), reg::output{0, ok}};
}
reg_op pending(reg_op o) {
  o.output.reset();
  return o;
}

bool linearizable(const history<reg>& h) { return static_cast<bool>(check_linearizability<reg>(h)); }
// Porcupine's and Knossos' examples use a register that starts at 0
using reg0 = register_model_initially<0>;
bool linearizable0(const history<reg>& h) { return static_cast<bool>(check_linearizability<reg0>(h)); }

// The reference: every order of the operations that respects real time
// (a before b whenever a returned strictly before b was called; an operation
// that never returned precedes nothing), replayed through the model.
template <Model M> bool brute_force(const history<M>& h) {
  std::vector<std::size_t> order(h.size());
  std::iota(order.begin(), order.end(), std::size_t{0});
  auto precedes = [&](std::size_t a, std::size_t b) { return !h[a].pending() && h[a].ret < h[b].call; };
  do {
    bool respects = true;
    for (std::size_t i = 0; i < order.size() && respects; ++i)
      for (std::size_t j = i + 1; j < order.size() && respects; ++j)
        if (precedes(order[j], order[i])) respects = false;
    if (!respects) continue;
    std::optional<typename M::state> s = M::init();
    for (std::size_t i = 0; i < order.size() && s; ++i) s = M::step(*s, h[order[i]].input, h[order[i]].output);
    if (s) return true;
  } while (std::next_permutation(order.begin(), order.end()));
  return false;
}

history<reg> generate_register(rng& r, std::size_t n, std::size_t clients, double pending_p, std::int64_t spread = 20) {
  return random_register_history(r, {.operations = n, .clients = clients, .pending = pending_p, .spread = spread});
}

// Changes one completed operation's output: a read sees another value, or a
// cas reports the other outcome. The result may or may not still be linearizable.
void mutate(history<reg>& h, rng& r) {
  for (int tries = 0; tries < 100; ++tries) {
    auto& o = h[r.below(h.size())];
    if (o.pending() || o.input.kind == reg::op::write) continue;
    if (o.input.kind == reg::op::read)
      o.output->value = r.between(0, 10);
    else
      o.output->ok = !o.output->ok;
    return;
  }
}

}  // namespace

TEST_CASE("linearizability: Porcupine's register examples (6.824 quiz 2017, VII)") {
  // put(100) over [0,100]; get()->100 over [25,75]; get()->0 over [30,60]
  CHECK(linearizable0({wr(0, 0, 100, 100), rd(1, 25, 75, 100), rd(2, 30, 60, 0)}));
  // put(200) over [0,100]; get()->200 over [10,30]; get()->0 over [40,90]: the
  // second read sees the old value after the first saw the new one
  CHECK_FALSE(linearizable0({wr(0, 0, 100, 200), rd(1, 10, 30, 200), rd(2, 40, 90, 0)}));
  // TestZeroDuration: zero-length operations at the same instant
  CHECK(linearizable0({wr(0, 0, 100, 100), rd(1, 25, 75, 100), rd(2, 30, 30, 0), rd(3, 30, 30, 0)}));
  CHECK_FALSE(linearizable0({wr(0, 0, 100, 200), rd(1, 10, 10, 200), rd(2, 10, 10, 200), rd(3, 40, 90, 0)}));
}

TEST_CASE("linearizability: textbook register and cas-register cases") {
  // a read that starts after a write returned must see it (or a later write)
  CHECK_FALSE(linearizable0({wr(0, 0, 10, 1), rd(1, 20, 30, 0)}));
  CHECK(linearizable0({wr(0, 0, 10, 1), rd(1, 5, 30, 0)}));  // overlapping: may read before
  // sequential, same client
  CHECK(linearizable0({wr(0, 0, 1, 1), rd(0, 2, 3, 1), wr(0, 4, 5, 2), rd(0, 6, 7, 2)}));
  CHECK_FALSE(linearizable0({wr(0, 0, 1, 1), rd(0, 2, 3, 1), wr(0, 4, 5, 2), rd(0, 6, 7, 1)}));
  // two concurrent writes, then two reads after both: they must agree
  CHECK_FALSE(linearizable0({wr(0, 0, 10, 1), wr(1, 0, 10, 2), rd(2, 20, 30, 1), rd(3, 20, 30, 2)}));
  CHECK(linearizable0({wr(0, 0, 10, 1), wr(1, 0, 10, 2), rd(2, 20, 30, 2), rd(3, 20, 30, 2)}));
  // concurrent reads during a write may disagree, but not flip back afterwards
  CHECK(linearizable0({wr(0, 0, 50, 1), rd(1, 10, 20, 0), rd(2, 10, 20, 1), rd(3, 60, 70, 1)}));
  CHECK_FALSE(linearizable0({wr(0, 0, 50, 1), rd(1, 10, 20, 1), rd(2, 30, 40, 0), rd(3, 60, 70, 1)}));
  // compare-and-set: two cas from the same value cannot both succeed
  CHECK_FALSE(linearizable0({cas(0, 0, 10, 0, 1, true), cas(1, 5, 15, 0, 2, true)}));
  CHECK(linearizable0({cas(0, 0, 10, 0, 1, true), cas(1, 5, 15, 0, 2, false), rd(2, 20, 30, 1)}));
  CHECK(linearizable0({cas(0, 0, 10, 0, 1, true), cas(1, 5, 15, 1, 2, true), rd(2, 20, 30, 2)}));
  CHECK_FALSE(linearizable0({cas(0, 0, 10, 0, 1, true), cas(1, 5, 15, 1, 2, true), rd(2, 20, 30, 1)}));
  CHECK_FALSE(linearizable0({cas(0, 0, 10, 5, 1, true)}));  // expected 5, register held 0
  // the empty history, and one that reads the initial value
  CHECK(linearizable0({}));
  CHECK(linearizable0({rd(0, 0, 1, 0)}));
}

TEST_CASE("linearizability: Knossos' WGL test cases (knossos/test/knossos/wgl_test.clj), written out") {
  // Times are the positions of the events in the Knossos history.
  // crash-test: a write invoked, then :info (it crashed): valid
  CHECK(linearizable0({pending(wr(0, 0, 0, 1))}));
  // sequential-test: read 0 from a register initialised to 0: valid
  CHECK(linearizable0({rd(0, 0, 1, 0)}));
  // preserves-indices-test: write 1 then read 2: invalid
  CHECK_FALSE(linearizable0({wr(0, 0, 1, 1), rd(0, 2, 3, 2)}));
  // read-wrong-initial-value-test: read 1 from a fresh register: invalid
  CHECK_FALSE(linearizable0({rd(0, 0, 1, 1)}));
  // rethink-fail-minimal.edn: value 0; concurrently write 4 and read 3 (could be
  // 0 or 4, not 3); then a read of 4, which must not be blamed
  history<reg> h{wr(0, 0, 1, 0), rd(1, 2, 4, 3), wr(2, 3, 5, 4), rd(3, 6, 7, 4)};
  auto res = check_linearizability<reg0>(h);
  CHECK(res.outcome == verdict::not_linearizable);
  const auto& longest = res.longest_linearization;
  CHECK(std::find(longest.begin(), longest.end(), 1) == longest.end());  // the read of 3 never fits
  CHECK(std::find(longest.begin(), longest.end(), 3) == longest.end());  // the later read is not reached
}

TEST_CASE("linearizability: operations that never returned may or may not have taken effect") {
  // a write that timed out, later observed: it took effect
  CHECK(linearizable0({pending(wr(0, 0, 0, 1)), rd(1, 50, 60, 1)}));
  // ... never observed: it did not (or not yet)
  CHECK(linearizable0({pending(wr(0, 0, 0, 1)), rd(1, 50, 60, 0), rd(1, 70, 80, 0)}));
  // ... observed, then unobserved: once it took effect it stays
  CHECK_FALSE(linearizable0({pending(wr(0, 0, 0, 1)), rd(1, 50, 60, 1), rd(1, 70, 80, 0)}));
  // ... but it cannot take effect before it was called
  CHECK_FALSE(linearizable0({rd(1, 0, 10, 1), pending(wr(0, 20, 0, 1))}));
  // a cas that timed out: its effect is what later reads decide
  CHECK(linearizable0({pending(cas(0, 0, 0, 0, 7, true)), rd(1, 10, 20, 7)}));
  CHECK(linearizable0({pending(cas(0, 0, 0, 3, 7, true)), rd(1, 10, 20, 0)}));
  CHECK_FALSE(linearizable0({pending(cas(0, 0, 0, 3, 7, true)), rd(1, 10, 20, 7)}));  // it could not have swapped
}

TEST_CASE("linearizability: a failing check says where, and a bad history is refused") {
  history<reg> h{wr(0, 0, 10, 1), rd(1, 20, 30, 1), wr(0, 40, 50, 2), rd(1, 60, 70, 1)};
  auto res = check_linearizability<reg>(h);
  CHECK(res.outcome == verdict::not_linearizable);
  CHECK(res.longest_linearization.size() == 3);  // w1, r1, w2; r->1 cannot follow
  CHECK(res.longest_linearization[0] == 0);
  CHECK_THROWS_AS(check_linearizability<reg>(history<reg>{rd(0, 10, 5, 0)}), dcp::error);
  // a budget too small for the search gives `unknown`, not a wrong answer
  rng r(3);
  auto big = generate_register(r, 200, 8, 0.05);
  CHECK(check_linearizability<reg>(big, {.max_steps = 10}).outcome == verdict::unknown);
}

TEST_CASE("linearizability: agrees with brute force on small random and mutated histories") {
  std::size_t mutated_rejected = 0, mutated_total = 0;
  for (std::uint64_t seed = 1; seed <= 3000; ++seed) {
    rng r(seed);
    const std::size_t n = 2 + r.below(6);  // up to 7 operations: 5040 orders
    auto h = generate_register(r, n, 1 + r.below(4), seed % 2 ? 0.2 : 0.6, 6);
    REQUIRE_MESSAGE(linearizable(h), "seed " << seed);  // by construction
    CHECK(brute_force<reg>(h));
    mutate(h, r);
    const bool expected = brute_force<reg>(h);
    CHECK_MESSAGE(linearizable(h) == expected, "seed " << seed);
    ++mutated_total;
    mutated_rejected += !expected;
  }
  // the mutations must actually produce violations for this test to mean anything
  CHECK(mutated_rejected > mutated_total / 4);
}

TEST_CASE("linearizability: accepts long linearizable histories and rejects planted violations") {
  for (std::uint64_t seed = 1; seed <= 10; ++seed) {
    rng r(seed);
    auto h = generate_register(r, 300, 6, 0.02);
    auto res = check_linearizability<reg>(h);
    REQUIRE_MESSAGE(res.outcome == verdict::linearizable, "seed " << seed);
    // a read after everything returned, of a value nobody wrote
    std::int64_t end = 0;
    for (const auto& o : h) end = std::max(end, (o.pending() ? o.call : o.ret).time_since_epoch().count());
    auto bad = h;
    bad.push_back(rd(99, end + 1'000'000, end + 1'000'001, -42));
    CHECK(check_linearizability<reg>(bad).outcome == verdict::not_linearizable);
  }
  // without pending operations the final value is fixed: reading the first
  // written value at the end (when it has been overwritten) is a stale read
  for (std::uint64_t seed = 20; seed <= 30; ++seed) {
    rng r(seed);
    auto h = generate_register(r, 250, 5, 0.0);
    std::int64_t end = 0;
    for (const auto& o : h) end = std::max(end, o.ret.time_since_epoch().count());
    auto first_write = std::find_if(h.begin(), h.end(), [](const reg_op& o) { return o.input.kind == reg::op::write; });
    REQUIRE(first_write != h.end());
    auto with_final = [&](std::int64_t v) {
      auto x = h;
      x.push_back(rd(99, end + 1000, end + 1001, v));
      return check_linearizability<reg>(x).outcome;
    };
    // the first write's value is long overwritten in a 250-op history: a
    // read after everything cannot return it
    CHECK(with_final(first_write->input.value) == verdict::not_linearizable);
  }
}

TEST_CASE("linearizability: key-value histories are checked per key") {
  for (std::uint64_t seed = 1; seed <= 5; ++seed) {
    rng r(seed);
    // sequential execution over 3 keys with appends, then overlapping intervals
    history<kv_model> h;
    kv_model::state s;
    std::vector<std::int64_t> free_at(6, 0);
    struct timed {
      kv_op op;
      std::int64_t point;
    };
    std::vector<timed> plan;
    for (int i = 0; i < 600; ++i) {
      const std::size_t c = r.below(6);
      const std::int64_t call = free_at[c] + r.between(0, 20), point = call + r.between(0, 20),
                         ret = point + r.between(0, 20);
      free_at[c] = ret + 1;
      const std::string key = "k" + std::to_string(r.below(3));
      kv_model::input in = r.chance(0.5) ? kv_model::get(key)
          : r.chance(0.5)                ? kv_model::append(key, std::to_string(i) + ",")
                                         : kv_model::put(key, std::to_string(i) + ",");
      plan.push_back({{c, at(call), at(ret), in, kv_model::output{}}, point});
    }
    std::vector<std::size_t> idx(plan.size());
    std::iota(idx.begin(), idx.end(), std::size_t{0});
    std::stable_sort(idx.begin(), idx.end(), [&](auto a, auto b) { return plan[a].point < plan[b].point; });
    for (auto i : idx) {
      auto& p = plan[i];
      auto it = s.find(p.op.input.key);
      p.op.output->value = it == s.end() ? "" : it->second;
      s = *kv_model::step(s, p.op.input, std::nullopt);
    }
    for (auto& p : plan) h.push_back(p.op);
    auto res = check_linearizability<kv_model>(h);
    CHECK(res.outcome == verdict::linearizable);
    CHECK(res.partitions == 3);
    // corrupt one get that saw a non-empty value: it now misses its last append
    for (auto& o : h)
      if (o.input.kind == kv_model::op::get && o.output->value.size() > 3) {
        o.output->value += "999,";
        break;
      }
    CHECK(check_linearizability<kv_model>(h).outcome == verdict::not_linearizable);
  }
}

namespace {

// Key "a": `writers` concurrent puts of distinct values, then, after all of
// them returned, a get of a value nobody put. Not linearizable, but the
// search only learns that after trying every order of the puts it can reach
// (2^writers configurations of (set, last value)): no budget that fits a
// test finishes it.
void add_hopeless_key(history<kv_model>& h, const std::string& key, int writers) {
  for (int i = 0; i < writers; ++i)
    h.push_back({static_cast<std::uint64_t>(i), at(0), at(100), kv_model::put(key, "v" + std::to_string(i)),
                 kv_model::output{}});
  h.push_back({999, at(200), at(300), kv_model::get(key), kv_model::output{"nobody-wrote-this"}});
}

}  // namespace

TEST_CASE("linearizability: keys are interleaved, a violation behind a hopeless key is found") {
  // Key "a" sorts first and cannot be finished within the budget; key "b"
  // holds a plain stale read. Checked one key after another, "a" eats the
  // whole budget and the answer is `unknown`; interleaved, "b" is refuted in
  // its first slice and the answer is the violation.
  history<kv_model> h;
  add_hopeless_key(h, "a", 40);
  h.push_back({1, at(0), at(10), kv_model::put("b", "1"), kv_model::output{}});
  h.push_back({2, at(20), at(30), kv_model::put("b", "2"), kv_model::output{}});
  h.push_back({3, at(40), at(50), kv_model::get("b"), kv_model::output{"1"}});  // stale
  auto res = check_linearizability<kv_model>(h, {.max_steps = 1'000'000});
  CHECK(res.outcome == verdict::not_linearizable);
  REQUIRE(!res.longest_linearization.empty());
  CHECK(h[res.longest_linearization.front()].input.key == "b");  // the part that failed
  CHECK(res.steps < 1'000'000);                                  // it stopped at the violation
}

TEST_CASE("linearizability: the register starts with no value, distinct from a written 0") {
  // Jepsen writes real zeros: a read of 0 before any write is not linearizable
  CHECK_FALSE(linearizable({rd(0, 0, 1, 0)}));
  CHECK_FALSE(linearizable({rd(0, 0, 1, 0), wr(1, 5, 10, 0)}));  // the write began after the read returned
  CHECK(linearizable({wr(1, 0, 10, 0), rd(0, 20, 30, 0)}));      // 0 was written
  CHECK(linearizable({rd(0, 0, 20, 0), wr(1, 5, 10, 0)}));       // overlapping a write of 0
  // a read of "no value" is linearizable before any write, and only then
  CHECK(linearizable({rd_none(0, 0, 1)}));
  CHECK(linearizable({wr(0, 0, 10, 1), rd_none(1, 5, 30)}));         // overlapping: may read before
  CHECK_FALSE(linearizable({wr(0, 0, 10, 0), rd_none(1, 20, 30)}));  // after a write of 0: not empty
  CHECK_FALSE(linearizable({pending(wr(0, 0, 0, 1)), rd(1, 50, 60, 1), rd_none(1, 70, 80)}));
  // cas on an empty register fails, whatever it expects
  CHECK_FALSE(linearizable({cas(0, 0, 10, 0, 1, true)}));
  CHECK(linearizable({cas(0, 0, 10, 0, 1, false), rd_none(1, 20, 30)}));
  // with a register that starts at 0 (Porcupine's), reading 0 first is fine
  CHECK(linearizable0({rd(0, 0, 1, 0)}));
  CHECK_FALSE(linearizable0({rd_none(0, 0, 1)}));
}

TEST_CASE("linearizability: a memory budget ends a hopeless search quickly with unknown") {
  history<kv_model> h;
  add_hopeless_key(h, "a", 40);
  const std::size_t budget = std::size_t{4} << 20;                              // 4 MiB
  auto res = check_linearizability<kv_model>(h, {.max_memory_bytes = budget});  // the default 200M steps
  CHECK(res.outcome == verdict::unknown);
  CHECK(res.abandoned == 1);
  CHECK(res.peak_memory_bytes <= budget);
  CHECK(res.peak_memory_bytes > budget / 2);  // it was the memory, not the steps, that ended it
  CHECK(res.steps < 1'000'000);
  CHECK(res.reason.find("max_memory_bytes") != std::string::npos);
  // beside the hopeless key, a linearizable key leaves the answer unknown,
  // and a violating one is still found
  h.push_back({1, at(0), at(10), kv_model::put("b", "1"), kv_model::output{}});
  h.push_back({3, at(40), at(50), kv_model::get("b"), kv_model::output{"1"}});
  res = check_linearizability<kv_model>(h, {.max_memory_bytes = budget});
  CHECK(res.outcome == verdict::unknown);
  CHECK(res.abandoned == 1);
  h.push_back({4, at(60), at(70), kv_model::get("b"), kv_model::output{"2"}});
  res = check_linearizability<kv_model>(h, {.max_memory_bytes = budget});
  CHECK(res.outcome == verdict::not_linearizable);
}
