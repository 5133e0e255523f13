#include <doctest/doctest.h>

#include <memory>
#include <vector>

#include "dcp/core/outbox.hpp"
#include "dcp/sim.hpp"

namespace test_outbox {

using namespace dcp;
using sim::simulator;

namespace {
// A core that completes every call through its outbox, as DESIGN §10 asks.
struct core {
  explicit core(sim::env e) : out(e) {}
  void call(int v, std::function<void(int)> done) {
    ++calls_inside;
    out.complete(std::move(done), v);
    --calls_inside;
  }
  int calls_inside = 0;
  outbox<sim::env> out;
};
}  // namespace

TEST_CASE("outbox: completions run after the call, in order, in one pass, and may call back in") {
  simulator w(1);
  w.add_node([](sim::node_context&) {});
  core c(sim::env(w, 0, 0));
  std::vector<int> got;
  bool inside = false;
  w.at(time_point(1ms), [&] {
    c.call(1, [&](int v) {
      inside = inside || c.calls_inside > 0;
      got.push_back(v);
      c.call(3, [&](int v) { got.push_back(v); });  // a completion that calls again: same pass
    });
    c.call(2, [&](int v) {
      inside = inside || c.calls_inside > 0;
      got.push_back(v);
    });
    CHECK(got.empty());  // nothing ran inside the calls, nor before the event ended
    CHECK(c.out.size() == 2);
  });
  w.at(time_point(1ms), [&] { got.push_back(4); });  // the next event
  w.run_for(2ms);
  CHECK_FALSE(inside);
  CHECK(got == std::vector<int>{1, 2, 3, 4});
  CHECK(c.out.size() == 0);
}

TEST_CASE("outbox: a core destroyed with completions queued drops them; one destroyed by a completion stops") {
  simulator w(2);
  w.add_node([](sim::node_context&) {});
  std::vector<int> got;
  w.at(time_point(1ms), [&] {
    auto c = std::make_unique<core>(sim::env(w, 0, 0));
    c->call(1, [&](int v) { got.push_back(v); });
  });  // destroyed at the end of the event, before its completions
  w.run_for(2ms);
  CHECK(got.empty());

  auto owner = std::make_unique<core>(sim::env(w, 0, 0));
  w.at(w.now() + 1ms, [&] {
    owner->call(1, [&](int v) {
      got.push_back(v);
      owner.reset();  // the rest may refer to what is gone: they do not run
    });
    owner->call(2, [&](int v) { got.push_back(v); });
  });
  w.run_for(2ms);
  CHECK(got == std::vector<int>{1});
}

TEST_CASE("outbox: a completion that throws leaves the rest for a later drain") {
  simulator w(3);
  w.add_node([](sim::node_context&) {});
  core c(sim::env(w, 0, 0));
  std::vector<int> got;
  c.call(1, [&](int) { throw std::runtime_error("a user's bug"); });
  c.call(2, [&](int v) { got.push_back(v); });
  CHECK_THROWS_AS(w.run_for(1ms), std::runtime_error);
  CHECK(got.empty());
  w.run_for(1ms);
  CHECK(got == std::vector<int>{2});
  c.call(3, [&](int v) { got.push_back(v); });  // and it drains again afterwards
  w.run_for(1ms);
  CHECK(got == std::vector<int>{2, 3});
}

}  // namespace test_outbox
