// keyring_udp_node: datagrams sealed under a keyring, with a replay window
// per sender (dcp/net/udp_keyring.hpp). What the shared transport suite does
// not show (it runs keyring_udp_node too, in test_transport.cpp and
// test_keyring.cpp): the attacks, one by one, the replay window against its
// specification, restarts, rotation and the bound on senders tracked.
// Real sockets on loopback. The attacker is a raw UDP socket; where it needs
// a genuine datagram it seals one with a udp_keyring_security of its own
// (what any key holder, or a recording of one, can produce).
#if DCP_TEST_KEYRING
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <limits>
#include <random>
#include <set>
#include <string>
#include <type_traits>
#include <vector>

#include <asio/ip/udp.hpp>

#include "dcp/dht/kademlia.hpp"
#include "dcp/dht/store.hpp"
#include "dcp/net.hpp"
#include "dcp/net/transport_spec.hpp"
#include "dcp/net/udp_keyring.hpp"
#include "echo.hpp"
#include "../seeds.hpp"

namespace test_udp_keyring {

using namespace dcp;
using dcp::test::run_until;
using echo = dcp::test::echo<net::env>;

namespace {
constexpr protocol_id echo_id = 7;

const net::keyring_key key1 = net::keyring::generate();
const net::keyring_key key2 = net::keyring::generate();

net::config loopback_config(std::uint16_t port = 0) {
  net::config c;
  c.listen = address::loopback(port);
  c.seed = 17;
  return c;
}

/// A raw UDP socket on loopback (any 127.x.y.z) that may hold a key: it then
/// seals datagrams as a keyring_udp_node at its address would.
struct raw_peer {
  raw_peer(asio::io_context& io, const net::keyring_key& k, const char* from = "127.0.0.1")
      : socket(io), sec(net::udp_keyring_options(net::keyring(k))) {
    socket.open(asio::ip::udp::v4());
    socket.bind({asio::ip::make_address(from), 0});
    sec.bind(self());
  }
  address self() const { return address::ip(socket.local_endpoint().address(), socket.local_endpoint().port()); }
  /// A note `body` sealed as sent from here to `to`.
  bytes seal(const address& to, const std::string& body) {
    bytes d(net::udp_keyring_security::prefix_size);
    REQUIRE(!net::encode_frame(echo_id, net::frame_source::of(dcp::test::echo_msg::note{body}), d, wire::limits{}));
    sec.seal(d, to);
    return d;
  }
  void send(const address& to, const bytes& datagram) {
    socket.send_to(asio::buffer(datagram), asio::ip::udp::endpoint(to.ip_address(), to.port()));
  }
  /// Reads one datagram (blocking): what a node sent here.
  bytes receive() {
    bytes buf(65536);
    asio::ip::udp::endpoint from;
    const std::size_t n = socket.receive_from(asio::buffer(buf), from);
    buf.resize(n);
    last_from = address::ip(from.address(), from.port());
    return buf;
  }
  asio::ip::udp::socket socket;
  net::udp_keyring_security sec;
  address last_from;
};

// Never silently plaintext: a sealed node is not built without its keyring.
static_assert(!std::is_constructible_v<net::keyring_udp_node, asio::io_context&, net::config>);
static_assert(!std::is_default_constructible_v<net::udp_keyring_options>);
static_assert(net::keyring_udp_node::authenticated && !net::plaintext_udp_node::authenticated);

std::int64_t counter(const net::keyring_udp_node& n, std::string_view name) { return n.metrics().counter(0, name); }
std::uint64_t auth_drops(const net::keyring_udp_node& n) { return n.metrics().drops(0, errc::authentication_failed); }

bool contains(const bytes& hay, const std::string& needle) {
  return std::search(hay.begin(), hay.end(), needle.begin(), needle.end()) != hay.end();
}
}  // namespace

TEST_CASE("udp keyring: two nodes talk both ways; every datagram is sealed and opens only where it was sent") {
  asio::io_context io;
  net::keyring_udp_node a(io, loopback_config(), net::keyring(key1)), b(io, loopback_config(), net::keyring(key1));
  auto& ea = a.add<echo>(echo_id);
  auto& eb = b.add<echo>(echo_id);
  a.start();
  b.start();
  CHECK(a.transport().authenticated);
  std::string answer;
  ea.call(b.self(), "ping", [&](std::error_code ec, std::string body) {
    REQUIRE(!ec);
    answer = std::move(body);
  });
  REQUIRE(ea.tell(b.self(), "a secret note"));
  REQUIRE(run_until(io, [&] { return answer == "ping" && eb.notes.size() == 1; }));
  CHECK(eb.notes[0].from == a.self());
  CHECK(eb.notes[0].body == "a secret note");
  CHECK(a.metrics().drops() == 0);
  CHECK(b.metrics().drops() == 0);
  CHECK(b.transport().security().peers_tracked() == 1);

  // On the wire: the magic, no plaintext; a key holder at the address it was
  // sent to opens it, as sent from a.
  raw_peer tap(io, key1);
  REQUIRE(ea.tell(tap.self(), "a secret note"));
  REQUIRE(run_until(io, [&] { return a.queued_bytes(tap.self()) == 0; }));
  bytes d = tap.receive();
  CHECK(std::string(d.begin(), d.begin() + 4) == "DCPU");
  CHECK(!contains(d, "secret"));
  dcp::metrics m;
  bytes copy = d;
  byte_view frame;
  REQUIRE(!tap.sec.open(copy, a.self(), frame, m));
  CHECK(contains(bytes(frame.begin(), frame.end()), "a secret note"));
  // ... and nowhere else: not as from another sender, not at another receiver.
  copy = d;
  CHECK(tap.sec.open(copy, b.self(), frame, m) == make_error_code(errc::authentication_failed));
  raw_peer elsewhere(io, key1);
  copy = d;
  CHECK(elsewhere.sec.open(copy, a.self(), frame, m) == make_error_code(errc::authentication_failed));
  CHECK(m.counter(0, "udp_keyring_auth_failures") == 2);
}

TEST_CASE(
    "udp keyring: forged, altered, replayed, wrong-key, retired-key, misattributed and cut datagrams are dropped, each counted, nothing changed") {
  asio::io_context io;
  net::keyring_udp_node a(io, loopback_config(), net::keyring(key1)), b(io, loopback_config(), net::keyring(key1));
  auto& ea = a.add<echo>(echo_id);
  auto& eb = b.add<echo>(echo_id);
  a.start();
  b.start();
  raw_peer holder(io, key1, "127.0.0.2");    // holds the key: its genuine datagrams are what the attacks start from
  raw_peer attacker(io, key2, "127.0.0.3");  // holds another key
  int round = 0;
  // Sends `datagram` from `from`; it must be dropped with drops(0, reason)
  // and `named` one higher and everything else as it was; a and b still talk.
  auto attack = [&](raw_peer& from, const bytes& datagram, errc reason, std::string_view named) {
    ++round;
    const auto drops = b.metrics().drops(0, reason);
    const auto count = named.empty() ? 0 : counter(b, named);
    const auto total = b.metrics().drops();
    const std::size_t heard = eb.notes.size(), tracked = b.transport().security().peers_tracked();
    from.send(b.self(), datagram);
    REQUIRE(run_until(io, [&] { return b.metrics().drops() == total + 1; }));
    CHECK(b.metrics().drops(0, reason) == drops + 1);
    if (!named.empty()) CHECK(counter(b, named) == count + 1);
    CHECK(eb.notes.size() == heard);
    CHECK(b.transport().security().peers_tracked() == tracked);
    REQUIRE(ea.tell(b.self(), "r" + std::to_string(round)));
    REQUIRE(eb.tell(a.self(), "r" + std::to_string(round)));
    REQUIRE(run_until(
        io, [&] { return eb.notes.size() == heard + 1 && ea.notes.size() == static_cast<std::size_t>(round); }));
    CHECK(eb.notes.back().from == a.self());
  };
  const bytes genuine = holder.seal(b.self(), "genuine");
  holder.send(b.self(), genuine);
  REQUIRE(run_until(io, [&] { return eb.notes.size() == 1; }));
  CHECK(eb.notes[0].from == holder.self());

  SUBCASE("replayed: the same datagram again, and again later") {
    attack(holder, genuine, errc::authentication_failed, "udp_keyring_replays");
    attack(holder, genuine, errc::authentication_failed, "udp_keyring_replays");
  }
  SUBCASE("altered: one byte flipped anywhere (prefix, header, payload, tag)") {
    // Each byte that AES-GCM covers; the magic, version and reserved bytes
    // are refused before it (by their own reasons, below).
    // Where the byte is says which check refuses it first, and so its counter.
    const bytes next = holder.seal(b.self(), "to be altered");
    auto get64 = [](const bytes& d, std::size_t at) {
      std::uint64_t v = 0;
      for (int i = 0; i < 8; ++i) v |= std::uint64_t{d[at + static_cast<std::size_t>(i)]} << (8 * i);
      return v;
    };
    for (std::size_t at = 8; at < next.size(); at += 1 + at / 8) {
      bytes d = next;
      d[at] ^= 0x20;
      std::string_view why = "udp_keyring_auth_failures";  // the tag does not verify
      if (at < 16)
        why = "udp_keyring_unknown_key";  // the key id: one b does not hold
      else if (at < 24 && get64(d, 16) < get64(next, 16))
        why = "udp_keyring_stale";  // an earlier boot time
      else if (at >= 24 && at < 32)
        why = "udp_keyring_stale";  // another boot at the same time
      else if (at >= 32 && at < 40 && get64(d, 32) == 0)
        why = "udp_keyring_replays";  // number 0: accepted already
      attack(holder, d, errc::authentication_failed, why);
    }
    // Not altered, it is still good: nothing above moved b's window.
    holder.send(b.self(), next);
    REQUIRE(run_until(io, [&] { return !eb.notes.empty() && eb.notes.back().body == "to be altered"; }));
  }
  SUBCASE("forged: a well-formed datagram under a key id b holds, without the key") {
    bytes d = holder.seal(b.self(), "forged");
    std::mt19937_64 gen(5);
    for (std::size_t i = net::udp_keyring_security::prefix_size + wire::header_size; i < d.size(); ++i)
      d[i] = static_cast<std::uint8_t>(gen());
    attack(attacker, d, errc::authentication_failed, "udp_keyring_auth_failures");
  }
  SUBCASE("wrong key: sealed under a key b does not hold") {
    attack(attacker, attacker.seal(b.self(), "wrong key"), errc::authentication_failed, "udp_keyring_unknown_key");
  }
  SUBCASE("misattributed: a genuine datagram sent from another address than its sender's") {
    attack(attacker, holder.seal(b.self(), "whose?"), errc::authentication_failed, "udp_keyring_auth_failures");
  }
  SUBCASE("misdirected: a genuine datagram to another node, sent on to b") {
    attack(holder, holder.seal(a.self(), "for a"), errc::authentication_failed, "udp_keyring_auth_failures");
  }
  SUBCASE("cut: shorter than the seal, or its tag cut off") {
    bytes d = holder.seal(b.self(), "cut");
    attack(holder, bytes(d.begin(), d.begin() + 20), errc::truncated_frame, "");
    d.resize(d.size() - 1);
    attack(holder, d, errc::authentication_failed, "udp_keyring_auth_failures");  // the tag does not verify
  }
  SUBCASE("plaintext and noise: not a sealed datagram") {
    bytes plain;
    REQUIRE(!wire::encode_frame(echo_id, dcp::test::echo_msg::note{"in clear: " + std::string(100, 'p')}, plain));
    attack(attacker, plain, errc::bad_magic, "");
    bytes v = holder.seal(b.self(), "v");
    v[4] = 2;
    attack(holder, v, errc::unsupported_version, "");
    bytes f = holder.seal(b.self(), "f");
    f[6] = 1;
    attack(holder, f, errc::bad_flags, "");
  }
  SUBCASE("retired key: after a rotation removed key1 everywhere, key1's datagrams open no more") {
    const auto id2 = b.transport().security().ring().install(key2);
    a.transport().security().ring().install(key2);
    REQUIRE(!a.transport().use_key(id2));
    REQUIRE(!b.transport().use_key(id2));
    REQUIRE(!a.transport().remove_key(net::keyring::id_of(key1)));
    REQUIRE(!b.transport().remove_key(net::keyring::id_of(key1)));
    attack(holder, holder.seal(b.self(), "old key"), errc::authentication_failed, "udp_keyring_unknown_key");
  }
}

TEST_CASE(
    "udp keyring: the replay window accepts each number once, within 960 of the highest, in any order (many seeds)") {
  // The specification, independently: a number is accepted iff it was not
  // accepted before and is less than 960 below the highest accepted.
  for (std::uint64_t seed = 1; seed <= dcp::test::last_seed(1, 60); ++seed) {
    std::mt19937_64 gen(seed);
    net::detail::replay_window w;
    std::set<std::uint64_t> accepted;
    std::uint64_t base = gen() % 4 == 0 ? (std::uint64_t{1} << 63) : 0;
    for (int i = 0; i < 3000; ++i) {
      std::uint64_t n = 0;
      switch (gen() % 5) {
        case 0:
          n = base + gen() % 4096;
          break;  // anywhere near
        case 1:
          n = accepted.empty() ? base : *accepted.rbegin() - std::min<std::uint64_t>(*accepted.rbegin(), gen() % 1100);
          break;  // near the edge
        case 2:
          n = accepted.empty() ? base : *std::next(accepted.begin(), static_cast<long>(gen() % accepted.size()));
          break;  // a replay
        case 3:
          n = accepted.empty() ? base : *accepted.rbegin() + 1 + gen() % 70;
          break;  // the next ones
        default:
          base += gen() % 3000;
          n = base;
          break;  // a jump ahead
      }
      const bool seen = accepted.count(n) > 0;
      const bool in_window =
          accepted.empty() || n > *accepted.rbegin() || *accepted.rbegin() - n < net::detail::replay_window::size;
      const auto v = w.check(n);
      CHECK((v == net::detail::replay_window::verdict::fresh) == (!seen && in_window));
      if (!in_window)
        CHECK(v == net::detail::replay_window::verdict::stale);
      else if (seen)
        CHECK(v == net::detail::replay_window::verdict::replayed);
      if (v == net::detail::replay_window::verdict::fresh) {
        w.accept(n);
        accepted.insert(n);
      }
    }
  }
}

TEST_CASE(
    "udp keyring: datagrams reordered and duplicated on the way: each delivered once, the rest counted (many seeds)") {
  asio::io_context io;
  net::keyring_udp_node b(io, loopback_config(), net::keyring(key1));
  auto& eb = b.add<echo>(echo_id);
  b.start();
  for (std::uint64_t seed = 1; seed <= dcp::test::last_seed(1, 6); ++seed) {
    std::mt19937_64 gen(seed);
    raw_peer sender(io, key1);  // a new sender each seed
    std::vector<bytes> sealed;
    for (int i = 0; i < 1200; ++i)
      sealed.push_back(sender.seal(b.self(), std::to_string(seed) + ":" + std::to_string(i)));
    // Sent in a shuffled order with duplicates, as a hostile network may.
    std::vector<std::size_t> order;
    for (std::size_t i = 0; i < sealed.size(); ++i) {
      order.push_back(i);
      if (gen() % 4 == 0) order.push_back(i);
    }
    for (std::size_t i = 0; i + 1 < order.size(); ++i)  // local shuffles, and a few far ones
      if (gen() % 3 == 0)
        std::swap(order[i], order[std::min(order.size() - 1, i + (gen() % 10 == 0 ? gen() % 2000 : gen() % 8))]);
    // The specification: accepted iff not before and within 960 of the highest.
    std::set<std::size_t> accepted;
    std::size_t replays = 0, stale = 0;
    for (auto i : order) {
      if (!accepted.empty() && i < *accepted.rbegin() && *accepted.rbegin() - i >= 960)
        ++stale;
      else if (accepted.count(i))
        ++replays;
      else
        accepted.insert(i);
    }
    const std::size_t heard = eb.notes.size();
    const auto r0 = counter(b, "udp_keyring_replays"), s0 = counter(b, "udp_keyring_stale");
    for (std::size_t k = 0; k < order.size(); ++k) {
      sender.send(b.self(), sealed[order[k]]);
      if (k % 50 == 49) {  // a batch at a time: loopback loses nothing below the socket buffer
        const std::size_t sent = k + 1;
        REQUIRE(run_until(io, [&] {
          return eb.notes.size() - heard +
              static_cast<std::size_t>(counter(b, "udp_keyring_replays") - r0 + counter(b, "udp_keyring_stale") - s0) ==
              sent;
        }));
      }
    }
    REQUIRE(run_until(io, [&] {
      return eb.notes.size() - heard +
          static_cast<std::size_t>(counter(b, "udp_keyring_replays") - r0 + counter(b, "udp_keyring_stale") - s0) ==
          order.size();
    }));
    CHECK(eb.notes.size() - heard == accepted.size());
    CHECK(static_cast<std::size_t>(counter(b, "udp_keyring_replays") - r0) == replays);
    CHECK(static_cast<std::size_t>(counter(b, "udp_keyring_stale") - s0) == stale);
    std::set<std::string> bodies;
    for (std::size_t i = heard; i < eb.notes.size(); ++i) bodies.insert(eb.notes[i].body);
    CHECK(bodies.size() == accepted.size());  // none twice
  }
  CHECK(counter(b, "udp_keyring_auth_failures") == 0);
}

TEST_CASE("udp keyring: a restarted sender is heard at once; its earlier boot is refused from then on") {
  asio::io_context io;
  net::keyring_udp_node b(io, loopback_config(), net::keyring(key1));
  auto& eb = b.add<echo>(echo_id);
  b.start();
  raw_peer first(io, key1);
  const address at = first.self();
  const bytes before = first.seal(b.self(), "first boot 0"), held = first.seal(b.self(), "first boot 1");
  first.send(b.self(), before);
  REQUIRE(run_until(io, [&] { return eb.notes.size() == 1; }));
  // The same address, a new boot (a process restarted on its port): its
  // numbers start again at 0, and are accepted.
  first.socket.close();
  raw_peer second(io, key1);
  second.socket.close();
  second.socket.open(asio::ip::udp::v4());
  second.socket.bind({at.ip_address(), at.port()});
  second.sec.bind(at);
  second.send(b.self(), second.seal(b.self(), "second boot 0"));
  REQUIRE(run_until(io, [&] { return eb.notes.size() == 2; }));
  CHECK(eb.notes[1].body == "second boot 0");
  CHECK(eb.notes[1].from == at);
  CHECK(counter(b, "udp_keyring_peer_restarts") == 1);
  // A datagram of the first boot, never delivered, now arrives: stale.
  second.send(b.self(), held);
  REQUIRE(run_until(io, [&] { return counter(b, "udp_keyring_stale") == 1; }));
  second.send(b.self(), second.seal(b.self(), "second boot 1"));
  REQUIRE(run_until(io, [&] { return eb.notes.size() == 3; }));
  CHECK(eb.notes[2].body == "second boot 1");
  CHECK(auth_drops(b) == 1);
}

TEST_CASE("udp keyring: rotating the key (install, use, remove) with traffic flowing loses nothing") {
  asio::io_context io;
  net::keyring_udp_node a(io, loopback_config(), net::keyring(key1)), b(io, loopback_config(), net::keyring(key1));
  auto& ea = a.add<echo>(echo_id);
  auto& eb = b.add<echo>(echo_id);
  a.start();
  b.start();
  int sent = 0;
  auto burst = [&] {
    for (int i = 0; i < 20; ++i) {
      REQUIRE(ea.tell(b.self(), "n" + std::to_string(sent)));
      REQUIRE(eb.tell(a.self(), "n" + std::to_string(sent)));
      ++sent;
    }
    io.restart();
    io.poll();
  };
  burst();
  const auto id1 = net::keyring::id_of(key1);
  const auto id2 = a.transport().security().ring().install(key2);
  burst();
  b.transport().security().ring().install(key2);
  burst();
  REQUIRE(!a.transport().use_key(id2));  // a seals under key2 from now on; b already holds it
  burst();
  REQUIRE(!b.transport().use_key(id2));
  burst();
  REQUIRE(run_until(
      io, [&] { return eb.notes.size() == static_cast<std::size_t>(sent) && ea.notes.size() == eb.notes.size(); }));
  REQUIRE(!a.transport().remove_key(id1));
  REQUIRE(!b.transport().remove_key(id1));
  burst();
  REQUIRE(run_until(
      io, [&] { return eb.notes.size() == static_cast<std::size_t>(sent) && ea.notes.size() == eb.notes.size(); }));
  CHECK(a.metrics().drops() == 0);
  CHECK(b.metrics().drops() == 0);
  CHECK(a.transport().security().ring().ids() == std::vector<std::uint64_t>{id2});
}

TEST_CASE(
    "udp keyring: the senders tracked are bounded; the least recently heard is evicted, counted, and heard again") {
  asio::io_context io;
  net::keyring_udp_node b(io, loopback_config(), net::udp_keyring_options(net::keyring(key1), {}, 4));
  auto& eb = b.add<echo>(echo_id);
  b.start();
  std::vector<std::unique_ptr<raw_peer>> peers;
  const char* addrs[] = {"127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5", "127.0.0.6", "127.0.0.7"};
  for (auto* a : addrs) peers.push_back(std::make_unique<raw_peer>(io, key1, a));
  std::size_t n = 0;
  for (auto& p : peers) {
    p->send(b.self(), p->seal(b.self(), "hi"));
    REQUIRE(run_until(io, [&] { return eb.notes.size() == n + 1; }));
    ++n;
    CHECK(b.transport().security().peers_tracked() == std::min<std::size_t>(n, 4));
  }
  CHECK(counter(b, "udp_keyring_peers_evicted") == 2);
  // The first, evicted, is heard again (and evicts another).
  peers[0]->send(b.self(), peers[0]->seal(b.self(), "back"));
  REQUIRE(run_until(io, [&] { return eb.notes.size() == n + 1; }));
  CHECK(counter(b, "udp_keyring_peers_evicted") == 3);
  CHECK(b.transport().security().peers_tracked() == 4);
  // Unauthenticated datagrams from new addresses create no state at all.
  raw_peer stranger(io, key2, "127.0.0.9");
  for (int i = 0; i < 10; ++i) stranger.send(b.self(), stranger.seal(b.self(), "let me in"));
  REQUIRE(run_until(io, [&] { return counter(b, "udp_keyring_unknown_key") == 10; }));
  CHECK(b.transport().security().peers_tracked() == 4);
  CHECK(counter(b, "udp_keyring_peers_evicted") == 3);

  CHECK_THROWS_AS(net::keyring_udp_node(io, loopback_config(), net::udp_keyring_options(net::keyring(key1), {}, 0)),
                  dcp::error);
}

TEST_CASE(
    "udp keyring: chosen by name (udp:keyring:FILE), only where datagrams are allowed; a wildcard listen is refused") {
  const std::string file = "udp_keyring_test_keys.txt";
  {
    std::ofstream out(file);
    out << to_hex(byte_view(key1.data(), key1.size())) << "\n";
  }
  net::transport_spec t;
  CHECK(t.parse("udp:keyring:" + file).has_value());  // a stream program: refused in words
  CHECK(!t.chosen());
  t.datagrams_allowed = true;
  REQUIRE(!t.parse("udp:keyring:" + file));
  CHECK(t.how == net::transport_spec::kind::udp_keyring);
  CHECK(t.parse("udp:keyring").has_value());
  CHECK(t.parse("udp:sealed").has_value());
  asio::io_context io;
  net::any_node a(io, loopback_config(), net::transport_options(t));
  net::keyring_udp_node b(io, loopback_config(), net::keyring(key1));
  auto& ea = a.add<echo>(echo_id);
  auto& eb = b.add<echo>(echo_id);
  a.start();
  b.start();
  CHECK(a.transport().authenticates());
  CHECK(a.transport().as<net::keyring_udp_transport>() != nullptr);
  REQUIRE(ea.tell(b.self(), "by name"));
  REQUIRE(run_until(io, [&] { return eb.notes.size() == 1; }));
  CHECK(eb.notes[0].from == a.self());
  std::remove(file.c_str());

  auto wild = loopback_config();
  wild.listen = *address::parse("0.0.0.0:0");
  CHECK_THROWS_AS(net::keyring_udp_node(io, wild, net::keyring(key1)), dcp::error);
}

TEST_CASE("udp keyring: what dht_node sends over UDP fits one sealed default datagram") {
  // examples/dht_node.cpp bounds keys, values and sync batches for UDP; the
  // seal takes udp_keyring_security::overhead bytes of the 1,400.
  const std::size_t room = 1400 - net::udp_keyring_security::overhead;
  auto frame_size = [](const auto& m) {
    bytes out;
    REQUIRE(!wire::encode_frame(1, m, out));
    return out.size();
  };
  const node_id far = node_id::hash("far");
  const address v6 = *address::parse("[2001:db8:ffff:ffff:ffff:ffff:ffff:ffff]:65535");
  dht::kademlia_msg::nodes reply{~0ull, {far, v6}, {}};
  for (int i = 0; i < 20; ++i) reply.closest.push_back({node_id::hash(std::to_string(i)), v6});
  CHECK(frame_size(reply) <= room);
  dht::store_config sc;
  sc.max_key_size = 128;
  sc.max_value_size = 1024;
  sc.sync_batch = 24;
  dht::store_msg::put put{~0ull,
                          {std::string(sc.max_key_size, 'k'), bytes(sc.max_value_size, 0xCD), ~0ull, ~0ull,
                           std::numeric_limits<std::int64_t>::max(), false}};
  CHECK(frame_size(put) <= room);
  CHECK(frame_size(dht::store_msg::get_reply{~0ull, true, put.it}) <= room);
  dht::store_msg::sync_offer offer;
  for (std::size_t i = 0; i < sc.sync_batch; ++i)
    offer.items.push_back({node_id::hash(std::to_string(i)), ~0ull, ~0ull});
  CHECK(frame_size(offer) <= room);
}

}  // namespace test_udp_keyring
#endif
