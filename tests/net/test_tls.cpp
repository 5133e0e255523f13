// tls_node: TLS 1.3 with mutual authentication, certificates binding node
// addresses (dcp/net/tls.hpp). Real sockets on loopback; certificates made
// in the test (tls_certs.hpp); raw TCP and TLS clients play the attackers.
#if DCP_TEST_TLS
#include <doctest/doctest.h>

#include <algorithm>
#include <array>
#include <functional>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include <asio/connect.hpp>
#include <asio/read.hpp>
#include <asio/ssl.hpp>
#include <asio/write.hpp>

#include "dcp/net.hpp"
#include "dcp/net/tls.hpp"
#include "echo.hpp"
#include "node_config.hpp"
#include "raw_client.hpp"
#include "tls_certs.hpp"

namespace test_tls {

using namespace dcp;
using dcp::test::run_until;
using echo = dcp::test::echo<net::env>;
using dcp::test::raw_client;

namespace {
constexpr protocol_id echo_id = 7;

const dcp::test::tls_authority& group_ca() {
  static const dcp::test::tls_authority ca("dcp test group CA");
  return ca;
}
const dcp::test::tls_authority& other_ca() {
  static const dcp::test::tls_authority ca("another CA");
  return ca;
}

net::config config_at(const address& a) { return dcp::test::node_config(a); }

/// A node of `ca` on a fresh loopback port (its certificate names it), or on `at`.
std::unique_ptr<net::tls_node> make_tls(asio::io_context& io, const dcp::test::tls_authority& ca = group_ca(),
                                        address at = {}) {
  if (!at) at = dcp::test::free_loopback_address();
  return std::make_unique<net::tls_node>(io, config_at(at), ca.options_for(at));
}

std::uint64_t drops_auth(const net::tls_node& n) { return n.metrics().drops(0, errc::authentication_failed); }
std::uint64_t counter(const net::tls_node& n, const char* name) { return n.metrics().counter(0, name); }

bytes frames(const std::vector<bytes>& parts) {
  bytes out;
  for (auto& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}
bytes hello_frame(const address& claimed) {
  bytes f;
  REQUIRE(!wire::encode_frame(0, net::detail::hello{claimed}, f));
  return f;
}
bytes note_frame(const std::string& body) {
  bytes f;
  REQUIRE(!wire::encode_frame(echo_id, dcp::test::echo_msg::note{body}, f));
  return f;
}

/// A TCP relay: accepts connections and pumps bytes both ways to `target`,
/// keeping a copy of what went towards it. Plays a redirect, and lets a
/// test look at the wire.
struct relay {
  struct pair {
    explicit pair(asio::io_context& io) : up(io), down(io) {}
    asio::ip::tcp::socket up, down;
    std::array<std::uint8_t, 8192> down_buf{}, up_buf{};
  };
  relay(asio::io_context& io, const address& target)
      : io_(io), acceptor(io, net::detail::to_endpoint(address::loopback(0))), target_(target) {
    accept();
  }
  address self() const { return net::detail::to_address(acceptor.local_endpoint()); }
  void accept() {
    auto& p = *pairs.emplace_back(std::make_unique<pair>(io_));
    acceptor.async_accept(p.down, [this, &p](std::error_code ec) {
      if (ec) return;
      p.up.async_connect(net::detail::to_endpoint(target_), [this, &p](std::error_code e) {
        REQUIRE(!e);
        pump(p.down, p.up, p.down_buf, &seen);
        pump(p.up, p.down, p.up_buf, nullptr);
      });
      accept();
    });
  }
  void pump(asio::ip::tcp::socket& from, asio::ip::tcp::socket& to, std::array<std::uint8_t, 8192>& buf, bytes* copy) {
    from.async_read_some(asio::buffer(buf), [this, &from, &to, &buf, copy](std::error_code ec, std::size_t n) {
      std::error_code ignored;
      if (ec) {
        to.close(ignored);
        from.close(ignored);
        return;
      }
      if (copy) copy->insert(copy->end(), buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(n));
      if (copy && tamper) {  // the attacker on path, towards the target
        bytes chunk(buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(n));
        if (!tamper(chunk)) {
          to.shutdown(asio::socket_base::shutdown_send, ignored);  // and cut the stream where it stands
          return;
        }
        asio::write(to, asio::buffer(chunk), ignored);
      } else {
        asio::write(to, asio::buffer(buf.data(), n), ignored);
      }
      pump(from, to, buf, copy);
    });
  }
  asio::io_context& io_;
  asio::ip::tcp::acceptor acceptor;
  address target_;
  std::vector<std::unique_ptr<pair>> pairs;
  bytes seen;  // callers -> target
  // Set: sees (and may change) every chunk towards the target before it is
  // forwarded; false ends the stream after it.
  std::function<bool(bytes&)> tamper;
};

/// A TLS client with a certificate of its own: handshakes, writes `data`
/// (dcp frames of its choosing), reads until the node closes.
struct tls_client {
  tls_client(asio::io_context& io, const net::tls_options& opts, const address& to, bytes data)
      : sec(opts), stream(io, sec.context()), data_(std::move(data)) {
    stream.next_layer().async_connect(net::detail::to_endpoint(to), [this](std::error_code ec) {
      REQUIRE(!ec);
      stream.async_handshake(asio::ssl::stream_base::client, [this](std::error_code e) {
        if (e) {
          closed_by_peer = true;
          return;
        }
        handshaken = true;
        asio::async_write(stream, asio::buffer(data_), [this](std::error_code, std::size_t) { read(); });
      });
    });
  }
  void read() {
    stream.async_read_some(asio::buffer(buf_), [this](std::error_code ec, std::size_t n) {
      if (ec) {
        closed_by_peer = true;
        return;
      }
      received += n;
      read();
    });
  }
  /// More frames on the same session.
  void send(bytes more) {
    more_ = std::move(more);
    asio::async_write(stream, asio::buffer(more_), [](std::error_code, std::size_t) {});
  }
  net::tls_security sec;
  asio::ssl::stream<asio::ip::tcp::socket> stream;
  bool handshaken = false, closed_by_peer = false;
  std::size_t received = 0;

 private:
  bytes data_, more_;
  std::array<std::uint8_t, 256> buf_{};
};
}  // namespace

TEST_CASE("tls: two nodes talk over mutually authenticated TLS 1.3, both ways, nothing in clear on the wire") {
  static_assert(net::tls_node::authenticated);
  static_assert(!std::is_constructible_v<net::tls_node, asio::io_context&, net::config>,
                "an authenticated node cannot be built without its certificates");
  static_assert(!std::is_default_constructible_v<net::tls_options>);
  asio::io_context io;
  auto a = make_tls(io), b = make_tls(io);
  auto& ea = a->add<echo>(echo_id);
  auto& eb = b->add<echo>(echo_id);
  a->start();
  b->start();
  for (int i = 0; i < 50; ++i) REQUIRE(ea.tell(b->self(), "a" + std::to_string(i)));
  for (int i = 0; i < 50; ++i) REQUIRE(eb.tell(a->self(), "b" + std::to_string(i)));
  std::string answer;
  ea.call(b->self(), std::string(100000, 'x'), [&](std::error_code ec, std::string body) {
    REQUIRE(!ec);
    answer = std::move(body);
  });
  REQUIRE(run_until(io, [&] { return eb.notes.size() == 50 && ea.notes.size() == 50 && !answer.empty(); }));
  for (int i = 0; i < 50; ++i) {
    CHECK(eb.notes[static_cast<std::size_t>(i)].body == "a" + std::to_string(i));
    CHECK(eb.notes[static_cast<std::size_t>(i)].from == a->self());
    CHECK(ea.notes[static_cast<std::size_t>(i)].body == "b" + std::to_string(i));
    CHECK(ea.notes[static_cast<std::size_t>(i)].from == b->self());
  }
  CHECK(answer == std::string(100000, 'x'));
  CHECK(a->metrics().drops() == 0);
  CHECK(b->metrics().drops() == 0);

  // What crosses the wire is not the plaintext: a member (m) sends a note
  // to b through a relay that records it.
  const std::string secret = "the plaintext must not appear on the wire";
  const address m = dcp::test::free_loopback_address();
  relay r(io, b->self());
  tls_client c(io, group_ca().options_for(m), r.self(), frames({hello_frame(m), note_frame(secret)}));
  REQUIRE(run_until(io, [&] { return eb.notes.size() == 51; }));
  CHECK(eb.notes.back().body == secret);
  CHECK(eb.notes.back().from == m);
  CHECK(r.seen.size() > secret.size());
  CHECK(std::search(r.seen.begin(), r.seen.end(), secret.begin(), secret.end()) == r.seen.end());
  CHECK(b->metrics().drops() == 0);
}

TEST_CASE("tls: a node with a certificate from another CA is refused both ways, counted, and gives up") {
  asio::io_context io;
  auto b = make_tls(io);
  auto stranger = make_tls(io, other_ca());
  auto& eb = b->add<echo>(echo_id);
  auto& es = stranger->add<echo>(echo_id);
  b->start();
  stranger->start();
  REQUIRE(es.tell(b->self(), "let me in"));
  REQUIRE(run_until(io, [&] { return !es.unreachable.empty(); }));
  CHECK(es.unreachable.front() == b->self());
  CHECK(eb.notes.empty());
  CHECK(counter(*b, "tls_auth_failures") >= 1);
  CHECK(drops_auth(*b) >= 1);
  CHECK(counter(*stranger, "tls_auth_failures") >= 1);            // b's certificate does not verify for it either
  REQUIRE(run_until(io, [&] { return b->connections() == 0; }));  // nothing kept open for it

  // b calling the stranger fails the same way, and b gives up on it.
  const auto before = counter(*b, "tls_auth_failures");
  REQUIRE(eb.tell(stranger->self(), "are you one of us?"));
  REQUIRE(run_until(io, [&] { return !eb.unreachable.empty(); }));
  CHECK(eb.unreachable.front() == stranger->self());
  CHECK(es.notes.empty());
  CHECK(counter(*b, "tls_auth_failures") > before);
  CHECK(counter(*b, "tls_address_mismatch") == 0);
}

TEST_CASE("tls: a member's certificate binds its own address only: another's hello or a redirect is refused") {
  asio::io_context io;
  auto a = make_tls(io), b = make_tls(io);
  auto& ea = a->add<echo>(echo_id);
  auto& eb = b->add<echo>(echo_id);
  a->start();
  b->start();
  REQUIRE(ea.tell(b->self(), "hello from a"));
  REQUIRE(run_until(io, [&] { return eb.notes.size() == 1; }));

  SUBCASE("a valid certificate for m, a hello claiming a") {
    const address m = dcp::test::free_loopback_address();
    const auto before = counter(*b, "tls_address_mismatch");
    tls_client impostor(io, group_ca().options_for(m), b->self(),
                        frames({hello_frame(a->self()), note_frame("I am a, honestly")}));
    REQUIRE(run_until(io, [&] { return impostor.closed_by_peer; }));
    CHECK(impostor.handshaken);  // the CA is right: it is the address that is refused
    CHECK(counter(*b, "tls_address_mismatch") == before + 1);
    CHECK(drops_auth(*b) == 1);
    CHECK(impostor.received == 0);  // no welcome, nothing of b's
    CHECK(eb.notes.size() == 1);
    // b's frames for a still reach a.
    REQUIRE(eb.tell(a->self(), "for a"));
    REQUIRE(run_until(io, [&] { return ea.notes.size() == 1; }));
    // The same client claiming its own address is let in: the refusal was the binding.
    tls_client honest(io, group_ca().options_for(m), b->self(), frames({hello_frame(m), note_frame("I am m")}));
    REQUIRE(run_until(io, [&] { return eb.notes.size() == 2; }));
    CHECK(eb.notes.back().from == m);
    CHECK(counter(*b, "tls_address_mismatch") == before + 1);
  }
  SUBCASE("a certificate with no dcp address, or a malformed one, binds nothing") {
    const address m = dcp::test::free_loopback_address();
    auto pem = group_ca().issue("no address", {}, {"dcp://not an address", "https://" + m.to_string()});
    tls_client c(io, group_ca().options_for(pem), b->self(), frames({hello_frame(m), note_frame("anyone")}));
    REQUIRE(run_until(io, [&] { return c.closed_by_peer; }));
    CHECK(counter(*b, "tls_address_mismatch") == 1);
    CHECK(eb.notes.size() == 1);
  }
  SUBCASE("a caller redirected to another member refuses it: its certificate does not bind the address dialled") {
    relay redirect(io, b->self());  // a dials the relay's address; b answers
    REQUIRE(ea.tell(redirect.self(), "for whoever listens there"));
    REQUIRE(run_until(io, [&] { return !ea.unreachable.empty(); }));
    CHECK(ea.unreachable.front() == redirect.self());
    CHECK(counter(*a, "tls_address_mismatch") >= 1);
    CHECK(eb.notes.size() == 1);
  }
}

TEST_CASE("tls: a record altered or cut on path, or a whole session replayed, delivers nothing and closes") {
  asio::io_context io;
  auto b = make_tls(io);
  auto& eb = b->add<echo>(echo_id);
  b->start();
  const address m = dcp::test::free_loopback_address();
  // A session through the relay: the hello, then b's welcome back.
  relay r(io, b->self());
  tls_client c(io, group_ca().options_for(m), r.self(), hello_frame(m));
  REQUIRE(run_until(io, [&] { return c.received > 0; }));  // welcomed: the session is up
  const bytes recorded = r.seen;
  SUBCASE("one bit of a record flipped") {
    r.tamper = [](bytes& chunk) {
      chunk.back() ^= 1;  // the record's AEAD tag
      return true;
    };
    c.send(note_frame("altered on the way"));
    REQUIRE(run_until(io, [&] { return c.closed_by_peer; }));
    CHECK(counter(*b, "tls_auth_failures") == 1);  // bad record MAC: counted as a refusal
    CHECK(drops_auth(*b) == 1);
  }
  SUBCASE("the stream cut inside a record") {
    r.tamper = [](bytes& chunk) {
      chunk.resize(chunk.size() / 2);
      return false;
    };
    c.send(note_frame("cut on the way"));
    REQUIRE(run_until(io, [&] { return b->connections() == 0; }));
    CHECK(counter(*b, "tls_auth_failures") == 0);  // a cut is a lost connection, not a forgery
  }
  SUBCASE("the recorded session replayed on a new connection") {
    raw_client replay(io, b->self(), recorded);  // b's fresh key share: the recorded Finished does not verify
    REQUIRE(run_until(io, [&] { return replay.closed_by_peer; }));
    CHECK(counter(*b, "tls_auth_failures") == 1);
    CHECK(b->connections() == 1);  // the live session only
  }
  CHECK(eb.notes.empty());
  CHECK(b->metrics().drops(echo_id, errc::malformed_payload) == 0);
}

TEST_CASE("tls: a plaintext client on a TLS port is refused, counted, and changes nothing") {
  asio::io_context io;
  auto a = make_tls(io), b = make_tls(io);
  auto& ea = a->add<echo>(echo_id);
  auto& eb = b->add<echo>(echo_id);
  a->start();
  b->start();
  REQUIRE(ea.tell(b->self(), "before"));
  REQUIRE(run_until(io, [&] { return eb.notes.size() == 1; }));

  raw_client raw(io, b->self(), frames({hello_frame(a->self()), note_frame("plaintext, claiming to be a")}));
  REQUIRE(run_until(io, [&] { return raw.closed_by_peer; }));
  CHECK(counter(*b, "tls_auth_failures") == 1);
  CHECK(drops_auth(*b) == 1);
  CHECK(raw.received < 64);  // at most an alert: no frame of b's

  net::node plain(io, config_at(address::loopback(0)));  // a plaintext dcp node
  auto& ep = plain.add<echo>(echo_id);
  plain.start();
  REQUIRE(ep.tell(b->self(), "a plaintext node's note"));
  REQUIRE(run_until(io, [&] { return counter(*b, "tls_auth_failures") == 2; }));
  CHECK(eb.notes.size() == 1);
  CHECK(b->metrics().drops(echo_id, errc::malformed_payload) == 0);
  // The session with a is untouched, both ways.
  REQUIRE(ea.tell(b->self(), "after"));
  REQUIRE(eb.tell(a->self(), "back"));
  REQUIRE(run_until(io, [&] { return eb.notes.size() == 2 && ea.notes.size() == 1; }));
  CHECK(eb.notes.back().body == "after");
  CHECK(counter(*a, "tls_auth_failures") == 0);
}

TEST_CASE("tls: bad certificates are refused at construction, never run as plaintext") {
  asio::io_context io;
  const address at = dcp::test::free_loopback_address();
  const address elsewhere = dcp::test::free_loopback_address();
  auto throws_invalid_config = [&](const net::tls_options& o) {
    try {
      net::tls_node n(io, config_at(at), o);
    } catch (const dcp::error& e) { return e.code() == make_error_code(errc::invalid_config); }
    return false;
  };
  CHECK(throws_invalid_config(group_ca().options_for(elsewhere)));  // its own certificate names another address
  const auto pem = group_ca().issue("n", {at});
  const auto other = group_ca().issue("o", {at});
  CHECK(throws_invalid_config(net::tls_options::from_pem(group_ca().cert_pem(), pem.cert, other.key)));  // key mismatch
  CHECK(throws_invalid_config(net::tls_options::from_pem("not a certificate", pem.cert, pem.key)));
  CHECK(throws_invalid_config(net::tls_options::from_pem(group_ca().cert_pem(), "", pem.key)));
  CHECK(throws_invalid_config(
      net::tls_options::from_files("/nonexistent/ca.pem", "/nonexistent/n.pem", "/nonexistent/n.key")));
  // The same certificates from PEM files work.
  const auto dir = std::filesystem::temp_directory_path() / ("dcp_tls_" + std::to_string(at.port()));
  std::filesystem::create_directories(dir);
  auto put = [&](const char* name, const std::string& text) {
    std::ofstream(dir / name) << text;
    return (dir / name).string();
  };
  {
    net::tls_node from_files(io, config_at(at),
                             net::tls_options::from_files(put("ca.pem", group_ca().cert_pem()), put("n.pem", pem.cert),
                                                          put("n.key", pem.key)));
    CHECK(from_files.self() == at);
  }
  std::filesystem::remove_all(dir);
  // advertise: the certificate binds the address the node calls itself.
  auto cfg = config_at(address::loopback(0));
  cfg.advertise = at;
  net::tls_node advertised(io, cfg, group_ca().options_for(pem));
  CHECK(advertised.self() == at);
}

TEST_CASE("tls: a caller must finish its handshake and hello in time, and send only a small frame before it") {
  asio::io_context io;
  const address at = dcp::test::free_loopback_address();
  auto cfg = config_at(at);
  cfg.handshake_timeout = 300ms;
  net::tls_node b(io, cfg, group_ca().options_for(at));
  b.start();
  raw_client silent(io, b.self(), {});  // connects, says nothing
  REQUIRE(run_until(
      io, [&] { return silent.closed_by_peer; }, 2s));
  CHECK(b.metrics().drops(0, errc::timed_out) == 1);
  // A member that handshakes and then announces a 100 KiB first frame.
  bytes big(wire::header_size + 64, 0x55);
  wire::write_header(big.data(), {0, 1, 100 * 1024});
  const address m = dcp::test::free_loopback_address();
  tls_client c(io, group_ca().options_for(m), b.self(), big);
  REQUIRE(run_until(
      io, [&] { return c.closed_by_peer; }, 2s));
  CHECK(c.handshaken);
  CHECK(b.metrics().drops(0, errc::frame_too_large) == 1);
  REQUIRE(run_until(
      io, [&] { return b.connections() == 0; }, 2s));
}

TEST_CASE("tls: in order both ways, answers on the caller's connection, restarts and unreachable peers") {
  asio::io_context io;
  auto a = make_tls(io);
  auto b = make_tls(io);
  auto& ea = a->add<echo>(echo_id);
  auto& eb = b->add<echo>(echo_id);
  a->start();
  b->start();
  const address b_addr = b->self();
  for (int i = 0; i < 200; ++i) REQUIRE(ea.tell(b_addr, std::to_string(i)));
  REQUIRE(run_until(io, [&] { return eb.notes.size() == 200; }));
  int answers = 0;  // b calls a once a's connection is up: on that connection
  for (int i = 0; i < 20; ++i)
    eb.call(a->self(), "q" + std::to_string(i), [&, i](std::error_code ec, std::string body) {
      CHECK(!ec);
      CHECK(body == "q" + std::to_string(i));
      ++answers;
    });
  REQUIRE(run_until(io, [&] { return answers == 20; }));
  for (int i = 0; i < 200; ++i) CHECK(eb.notes[static_cast<std::size_t>(i)].body == std::to_string(i));
  CHECK(a->connections() == 1);  // b answered and called on a's connection
  CHECK(b->connections() == 1);

  // b restarts on its port: frames sent after it is back arrive (a new handshake).
  b.reset();
  REQUIRE(run_until(io, [&] { return a->connections() == 0; }));
  b = make_tls(io, group_ca(), b_addr);
  auto& eb2 = b->add<echo>(echo_id);
  b->start();
  REQUIRE(ea.tell(b_addr, "after the restart"));
  REQUIRE(run_until(io, [&] { return eb2.notes.size() == 1; }));
  CHECK(eb2.notes[0].from == a->self());

  // b gone for good: a gives up and says so.
  b.reset();
  REQUIRE(run_until(io, [&] { return a->connections() == 0; }));
  REQUIRE(ea.tell(b_addr, "anyone?"));
  REQUIRE(run_until(
      io, [&] { return !ea.unreachable.empty(); }, 5000ms));
  CHECK(ea.unreachable.front() == b_addr);
  CHECK(a->metrics().drops(0, errc::authentication_failed) == 0);
}
}  // namespace test_tls

#endif
