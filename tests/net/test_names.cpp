// Host names over TCP: a node may introduce itself by a name (config::advertise),
// and peers resolve the name on every connection attempt.
#include <doctest/doctest.h>

#include <memory>
#include <string>

#include "dcp/net.hpp"
#include "echo.hpp"

namespace test_names {

using namespace dcp;
using dcp::test::run_until;
using echo = dcp::test::echo<net::env>;

namespace {
constexpr protocol_id echo_id = 7;

net::config named_config(std::uint16_t port = 0) {
  net::config c;
  c.listen = address::loopback(port);
  c.advertise = address::host("localhost", 0);  // "localhost" through the resolver, not parse()'s shortcut
  c.seed = 1;
  return c;
}
net::config plain_config() {
  net::config c;
  c.seed = 2;
  return c;
}
}  // namespace

TEST_CASE("net: a node known by a host name is reached through the resolver, and its frames carry the name") {
  asio::io_context io;
  net::node a(io, named_config()), b(io, plain_config());
  REQUIRE(a.self().is_name());
  CHECK(a.self().host_name() == "localhost");
  CHECK(a.self().port() != 0);  // advertise port 0: the port bound
  auto& ea = a.add<echo>(echo_id);
  auto& eb = b.add<echo>(echo_id);
  a.start();
  b.start();
  // b connects to the name (resolving it); a answers on that connection.
  std::string got;
  eb.call(a.self(), "to a name", [&](std::error_code ec, std::string body) {
    CHECK_FALSE(ec);
    got = body;
  });
  REQUIRE(run_until(io, [&] { return !got.empty(); }));
  CHECK(got == "to a name");
  // a connects to b by IP; b attributes the frames to a's name.
  REQUIRE(ea.tell(b.self(), "from a"));
  REQUIRE(run_until(io, [&] { return eb.notes.size() == 1; }));
  CHECK(eb.notes[0].from == a.self());
  CHECK(a.metrics().drops() == 0);
  CHECK(b.metrics().drops() == 0);
}

TEST_CASE("net: a name is resolved again on reconnect: the node behind it may be replaced") {
  asio::io_context io;
  net::node b(io, plain_config());
  auto& eb = b.add<echo>(echo_id);
  b.start();
  auto a = std::make_unique<net::node>(io, named_config());
  const address name = a->self();
  a->add<echo>(echo_id);
  a->start();
  REQUIRE(eb.tell(name, "one"));
  REQUIRE(run_until(io, [&] { return a->find<echo>(echo_id)->notes.size() == 1; }));
  const auto port = name.port();
  a.reset();  // the process behind the name goes away...
  REQUIRE(run_until(io, [&] { return b.connections() == 0; }));
  a = std::make_unique<net::node>(io, named_config(port));  // ...and comes back
  REQUIRE(a->self() == name);
  auto& ea2 = a->add<echo>(echo_id);
  a->start();
  REQUIRE(eb.tell(name, "two"));
  REQUIRE(run_until(io, [&] { return ea2.notes.size() == 1; }));
  CHECK(ea2.notes[0].body == "two");
}

TEST_CASE("net: a name that does not resolve is a failed connection attempt, then an unreachable peer") {
  asio::io_context io;
  auto cfg = plain_config();
  cfg.reconnect.initial = 5ms;
  cfg.reconnect.max = 10ms;
  cfg.reconnect.give_up_after_attempts = 3;
  cfg.connect_timeout = 2s;
  net::node b(io, cfg);
  auto& eb = b.add<echo>(echo_id);
  b.start();
  const auto nowhere = *address::parse("no-such-host.invalid:7000");  // RFC 6761: never resolves
  REQUIRE(eb.tell(nowhere, "lost"));
  REQUIRE(run_until(
      io, [&] { return !eb.unreachable.empty(); }, std::chrono::milliseconds(15000)));
  CHECK(eb.unreachable[0] == nowhere);
  CHECK(b.metrics().drops(echo_id, make_error_code(errc::peer_unreachable)) == 1);
  CHECK(b.metrics().counter(0, "peers_unreachable") == 1);
}

}  // namespace test_names
