#include <doctest/doctest.h>

#include <algorithm>
#include <set>
#include <string>

#include "dcp/failure.hpp"
#include "dcp/net.hpp"
#include "echo.hpp"

namespace test_node {

using namespace dcp;
using dcp::test::run_until;
using echo = dcp::test::echo<net::env>;

namespace {
// "a7": built without "a" + std::to_string(...), on which GCC 12 warns falsely (-Wrestrict).
std::string tagged(char c, int i) {
  std::string s(1, c);
  s += std::to_string(i);
  return s;
}
}  // namespace
using detector = failure::heartbeat<net::env>;

namespace {
constexpr protocol_id echo_id = 7;

net::config loopback_config(std::uint16_t port = 0) {
  net::config c;
  c.listen = address::loopback(port);
  c.seed = 42;
  return c;
}
}  // namespace

TEST_CASE("net: config errors are caught at construction, with the field named") {
  asio::io_context io;
  auto fails = [&](net::config c, std::string_view field) {
    try {
      net::node n(io, c);
      FAIL("accepted a bad config: " << field);
    } catch (const dcp::error& e) {
      CHECK(e.code() == make_error_code(errc::invalid_config));
      CHECK(std::string(e.what()).find(field) != std::string::npos);
    }
  };
  auto c = loopback_config();
  c.listen = address::sim(1);
  fails(c, "listen");
  c = loopback_config();
  c.listen = address::ipv4({0, 0, 0, 0}, 0);
  fails(c, "unspecified");
  c = loopback_config();
  c.reconnect.give_up_after_attempts = 0;
  fails(c, "give_up");
  c = loopback_config();
  c.reconnect.max = 1ms;
  fails(c, "max");
  c = loopback_config();
  c.limits.max_queued_bytes_per_peer = 10;
  fails(c, "max_queued_bytes_per_peer");
  c = loopback_config();
  c.connect_timeout = 0s;
  fails(c, "connect_timeout");

  // A port in use is a clear error too.
  net::node a(io, loopback_config());
  try {
    net::node b(io, loopback_config(a.self().port()));
    FAIL("bound a port in use");
  } catch (const dcp::error& e) { CHECK(std::string(e.what()).find(a.self().to_string()) != std::string::npos); }
  // Protocol id 0 is the transport's.
  CHECK_THROWS_AS(a.add<echo>(0), dcp::error);
}

TEST_CASE("net: two nodes exchange messages in order, attributed to the sender's listen address") {
  asio::io_context io;
  net::node a(io, loopback_config()), b(io, loopback_config());
  CHECK(a.self().port() != 0);
  auto& ea = a.add<echo>(echo_id);
  auto& eb = b.add<echo>(echo_id);
  a.start();
  b.start();
  constexpr int n = 500;
  for (int i = 0; i < n; ++i) {
    REQUIRE(ea.tell(b.self(), tagged('a', i)));
    REQUIRE(eb.tell(a.self(), tagged('b', i)));
  }
  REQUIRE(run_until(io, [&] { return ea.notes.size() == n && eb.notes.size() == n; }));
  for (int i = 0; i < n; ++i) {  // one TCP connection per direction: FIFO
    CHECK(eb.notes[i].body == tagged('a', i));
    CHECK(eb.notes[i].from == a.self());
    CHECK(ea.notes[i].body == tagged('b', i));
    CHECK(ea.notes[i].from == b.self());
  }
  // request/reply in both directions
  std::string got_a, got_b;
  ea.call(b.self(), "ping from a", [&](std::error_code ec, std::string body) {
    CHECK(!ec);
    got_a = body;
  });
  eb.call(a.self(), "ping from b", [&](std::error_code ec, std::string body) {
    CHECK(!ec);
    got_b = body;
  });
  REQUIRE(run_until(io, [&] { return !got_a.empty() && !got_b.empty(); }));
  CHECK(got_a == "ping from a");
  CHECK(got_b == "ping from b");

  // metrics: what one sent, the other received, bytes included
  constexpr message_type note = dcp::test::echo_msg::note::wire_id;
  CHECK(a.metrics().of(echo_id, note).sent == n);
  CHECK(b.metrics().of(echo_id, note).received == n);
  CHECK(a.metrics().of(echo_id, note).sent_bytes == b.metrics().of(echo_id, note).received_bytes);
  CHECK(b.metrics().of(echo_id, note).sent_bytes == a.metrics().of(echo_id, note).received_bytes);
  CHECK(a.metrics().drops() == 0);
  CHECK(b.metrics().drops() == 0);
  CHECK(a.connections() == 2);  // one outbound, one inbound
}

TEST_CASE("net: a node answers on the connection its peer opened (one TCP connection per request/answer pair)") {
  asio::io_context io;
  net::node a(io, loopback_config()), b(io, loopback_config());
  auto& ea = a.add<echo>(echo_id);
  b.add<echo>(echo_id);
  a.start();
  b.start();
  std::vector<std::string> answers;
  for (int i = 0; i < 50; ++i)
    ea.call(b.self(), std::to_string(i), [&](std::error_code ec, std::string body) {
      CHECK(!ec);
      answers.push_back(body);
    });
  REQUIRE(run_until(io, [&] { return answers.size() == 50; }));
  for (int i = 0; i < 50; ++i) CHECK(answers[i] == std::to_string(i));
  CHECK(a.connections() == 1);  // b never connected to a: it answered on a's connection
  CHECK(b.connections() == 1);

  // If that connection goes away, b opens its own to reach a.
  auto& eb = *b.find<echo>(echo_id);
  a.stop();
  net::node a2(io, loopback_config(a.self().port()));
  auto& ea2 = a2.add<echo>(echo_id);
  a2.start();
  REQUIRE(run_until(io, [&] { return b.connections() == 0; }));
  REQUIRE(eb.tell(a2.self(), "b calls back"));
  REQUIRE(run_until(io, [&] { return ea2.notes.size() == 1; }));
  CHECK(ea2.notes[0].from == b.self());
}

TEST_CASE("net: three nodes, all pairs, and sends to self are delivered locally") {
  asio::io_context io;
  std::vector<std::unique_ptr<net::node>> nodes;
  std::vector<echo*> echos;
  for (int i = 0; i < 3; ++i) {
    nodes.push_back(std::make_unique<net::node>(io, loopback_config()));
    echos.push_back(&nodes.back()->add<echo>(echo_id));
  }
  for (auto& n : nodes) n->start();
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) REQUIRE(echos[i]->tell(nodes[j]->self(), std::to_string(i) + "->" + std::to_string(j)));
  REQUIRE(run_until(
      io, [&] { return echos[0]->notes.size() == 3 && echos[1]->notes.size() == 3 && echos[2]->notes.size() == 3; }));
  for (int j = 0; j < 3; ++j) {
    std::set<std::string> got;
    for (auto& r : echos[j]->notes) {
      got.insert(r.body);
      CHECK(r.body ==
            std::to_string(std::find_if(nodes.begin(), nodes.end(), [&](auto& n) { return n->self() == r.from; }) -
                           nodes.begin()) +
                "->" + std::to_string(j));
    }
    CHECK(got.size() == 3);
    CHECK(nodes[j]->connections() == 4);  // two peers, one connection each way; none to self
  }
}

TEST_CASE("net: the heartbeat detector runs unchanged over TCP, and follows a node replaced on the same port") {
  asio::io_context io;
  // A generous time-out: a loaded CI machine (or a sanitizer build) must not
  // make a live node look dead. Detection speed is the multi-process test's and
  // the simulator's business.
  const failure::heartbeat_config hb{100ms, 1000ms};
  auto make = [&](std::uint16_t port) {
    auto n = std::make_unique<net::node>(io, loopback_config(port));
    n->add<detector>(detector::default_id, hb);
    return n;
  };
  std::vector<std::unique_ptr<net::node>> nodes;
  for (int i = 0; i < 3; ++i) nodes.push_back(make(0));
  std::vector<std::vector<std::string>> events(3);
  for (int i = 0; i < 3; ++i) {
    auto* d = nodes[i]->find<detector>(detector::default_id);
    REQUIRE(d);
    d->on_down([&, i](const address& p) { events[i].push_back("DOWN " + p.to_string()); });
    d->on_up([&, i](const address& p) { events[i].push_back("UP " + p.to_string()); });
    for (int j = 0; j < 3; ++j) d->monitor(nodes[j]->self());
    nodes[i]->start();
  }
  auto det = [&](int i) -> detector& { return *nodes[i]->find<detector>(detector::default_id); };
  // A second of heartbeats: nobody is suspected (accuracy in a healthy network).
  run_until(
      io, [] { return false; }, 1000ms);
  for (int i = 0; i < 3; ++i) CHECK(det(i).suspected().empty());
  CHECK(nodes[0]->metrics().of(detector::default_id).received > 10);

  // Stop node 2: both others suspect it (completeness).
  const address gone = nodes[2]->self();
  nodes[2]->stop();
  REQUIRE(run_until(
      io, [&] { return det(0).suspects(gone) && det(1).suspects(gone); }, 8000ms));
  CHECK(events[0].back() == "DOWN " + gone.to_string());

  // A new node on the same port: the others reconnect and restore it.
  nodes[2].reset();
  nodes[2] = make(gone.port());
  for (int j = 0; j < 2; ++j) det(2).monitor(nodes[j]->self());
  nodes[2]->start();
  REQUIRE(run_until(
      io, [&] { return !det(0).suspects(gone) && !det(1).suspects(gone); }, 8000ms));
  CHECK(events[1].back() == "UP " + gone.to_string());
}

}  // namespace test_node
