// Declared counters (include/dcp/core/counter_set.hpp): once a runtime hosts
// a protocol, its declared counters are listed at 0, and counting or reading
// a name it does not declare -- a typo, which used to read 0 for ever --
// aborts with a message that names the counter and the protocol.
#include <doctest/doctest.h>

#include <string>
#include <string_view>
#include <vector>

#include "../death_test.hpp"
#include "dcp/core/counter_set.hpp"
#include "dcp/core/metrics.hpp"
#include "dcp/failure/heartbeat.hpp"
#include "dcp/sim.hpp"

namespace test_counters {

using namespace dcp;
using namespace std::chrono_literals;
using dcp::test::in_child;

namespace {

inline constexpr counter_set helper_counters{{"helper_event"}};

/// A protocol that counts what it is told to, and declares two names (one
/// through a helper's set).
template <Env E> class counting {
 public:
  struct poke {
    static constexpr message_type wire_id = 1;
    template <class A> void serialize(A&) {}
  };
  using messages = wire::message_set<poke>;
  static constexpr auto counters = join(helper_counters, counter_set{{{"pokes", "a poke received"}}});
  static constexpr std::string_view name = "counting";

  explicit counting(E env) : env_(std::move(env)) {}
  void on_message(const address&, const poke&) {}
  void count(std::string_view what) { env_.count(what); }

 private:
  E env_;
};

/// A protocol that declares no counters, and counts anyway.
template <Env E> class undeclared {
 public:
  using messages = typename counting<E>::messages;
  static constexpr std::string_view name = "undeclared";
  explicit undeclared(E env) : env_(std::move(env)) {}
  void on_message(const address&, const typename counting<E>::poke&) {}
  void count(std::string_view what) { env_.count(what); }

 private:
  E env_;
};

constexpr protocol_id counting_id = 5, undeclared_id = 6, heartbeat_id = 1;

void host(sim::simulator& w) {
  w.add_nodes(2, [](sim::node_context& n) {
    n.add<counting<sim::env>>(counting_id);
    n.add<undeclared<sim::env>>(undeclared_id);
    n.add<failure::heartbeat<sim::env>>(heartbeat_id);
  });
}

}  // namespace

TEST_CASE("counter_set: names are checked when the set is built, and a join is the union of its parts") {
  static_assert(counting<sim::env>::counters.size() == 2);
  static_assert(counting<sim::env>::counters.contains("pokes") &&
                counting<sim::env>::counters.contains("helper_event"));
  static_assert(!counting<sim::env>::counters.contains("poke"));
  static_assert(counters_of<undeclared<sim::env>>().empty());
  static_assert(detail::counter_name_ok("walker_duplicates") && detail::counter_name_ok("p99_hops"));
  static_assert(!detail::counter_name_ok("") && !detail::counter_name_ok("Bad") && !detail::counter_name_ok("a-b") &&
                !detail::counter_name_ok("_x") && !detail::counter_name_ok("9x"));
  // A name in two parts is one counter.
  constexpr auto both = join(helper_counters, counter_set{{"helper_event", "own"}});
  static_assert(both.size() == 3 && both.contains("own"));
  metrics m;
  m.declare(1, both);
  std::vector<std::string> listed;
  m.for_each_counter([&](protocol_id, std::string_view n, std::int64_t v) {
    CHECK(v == 0);
    listed.emplace_back(n);
  });
  CHECK(listed == std::vector<std::string>{"helper_event", "own"});
}

TEST_CASE("counters: a hosted protocol's declared counters are listed at 0, with what they mean, and count") {
  sim::simulator w(1);
  host(w);
  bool listed = false;
  w.metrics().for_each_counter([&](protocol_id p, std::string_view n, std::int64_t v) {
    if (p == counting_id && n == "pokes") listed = v == 0;
  });
  CHECK(listed);
  CHECK(w.metrics().help(counting_id, "pokes") == "a poke received");
  CHECK(w.metrics().counter(heartbeat_id, "suspected") == 0);  // declared by heartbeat, never counted yet
  w.get<counting<sim::env>>(0, counting_id).count("pokes");
  w.get<counting<sim::env>>(1, counting_id).count("helper_event");
  CHECK(w.metrics().counter(counting_id, "pokes") == 1);
  CHECK(w.metrics().counter(counting_id, "helper_event") == 1);
  w.metrics().reset();  // values go, declarations stay
  CHECK(w.metrics().counter(counting_id, "pokes") == 0);
  CHECK(w.metrics().declared(counting_id));
  // Restarting a node hosts its protocols again: the same declarations.
  w.crash(0);
  w.restart(0);
  w.get<counting<sim::env>>(0, counting_id).count("pokes");
  CHECK(w.metrics().counter(counting_id, "pokes") == 1);
}

TEST_CASE("counters: reading a name the protocol does not declare (a typo) fails, naming it") {
  const auto d = in_child([] {
    sim::simulator w(1);
    host(w);
    (void)w.metrics().counter(heartbeat_id, "suspects");  // heartbeat counts "suspected"
  });
  CHECK(d.aborted);
  CHECK(d.stderr_text.find("read counter \"suspects\" of protocol 1") != std::string::npos);
  CHECK(d.stderr_text.find("counter_set") != std::string::npos);
}

TEST_CASE("counters: counting a name the protocol does not declare fails, naming it") {
  const auto d = in_child([] {
    sim::simulator w(1);
    host(w);
    w.get<counting<sim::env>>(0, counting_id).count("poke");
  });
  CHECK(d.aborted);
  CHECK(d.stderr_text.find("counted counter \"poke\" of protocol 5") != std::string::npos);
}

TEST_CASE("counters: a protocol that declares no counters may not count") {
  const auto d = in_child([] {
    sim::simulator w(1);
    host(w);
    w.get<undeclared<sim::env>>(0, undeclared_id).count("anything");
  });
  CHECK(d.aborted);
  CHECK(d.stderr_text.find("\"anything\" of protocol 6") != std::string::npos);
}

TEST_CASE("counters: metrics used without declarations count any name, as before") {
  metrics m;
  m.add(9, "free_form", 2);
  CHECK(m.counter(9, "free_form") == 2);
  CHECK(m.counter(9, "never_counted") == 0);
  CHECK_FALSE(m.declared(9));
}

}  // namespace test_counters
