// Observability: node::status() and the Prometheus text a running node
// serves over HTTP, scraped through a real socket.
#include <doctest/doctest.h>

#include <map>
#include <regex>
#include <sstream>
#include <string>

#include <asio/connect.hpp>
#include <asio/read.hpp>
#include <asio/write.hpp>

#include "dcp/failure.hpp"
#include "dcp/net.hpp"
#include "echo.hpp"

namespace test_metrics {

using namespace dcp;
using dcp::test::run_until;
using echo = dcp::test::echo<net::env>;
using detector = failure::heartbeat<net::env>;

namespace {
constexpr protocol_id echo_id = 7, detector_id = 1;

/// Sends `request` to `server` and reads the whole answer (the server closes).
std::string fetch(asio::io_context& io, const address& server, const std::string& request) {
  asio::ip::tcp::socket s(io);
  std::string answer;
  bool done = false;
  std::array<char, 4096> buf{};
  std::function<void()> read_more;
  s.async_connect({server.ip_address(), server.port()}, [&](const std::error_code& ec) {
    REQUIRE_FALSE(ec);
    asio::async_write(s, asio::buffer(request), [&](const std::error_code& e, std::size_t) {
      REQUIRE_FALSE(e);
      read_more();
    });
  });
  read_more = [&] {
    s.async_read_some(asio::buffer(buf), [&](const std::error_code& e, std::size_t n) {
      answer.append(buf.data(), n);
      if (e)
        done = true;  // eof: the answer is complete
      else
        read_more();
    });
  };
  REQUIRE(run_until(io, [&] { return done; }));
  return answer;
}

/// "name{labels} value" lines of a Prometheus text body, by "name{labels}".
std::map<std::string, double> samples(const std::string& body) {
  std::map<std::string, double> out;
  std::istringstream in(body);
  std::string line;
  const std::regex sample(R"(^([a-zA-Z_:][a-zA-Z0-9_:]*(\{[^}]*\})?) (-?[0-9.e+-]+|NaN|[+-]Inf)$)");
  const std::regex comment(R"(^# (HELP|TYPE) [a-zA-Z_:][a-zA-Z0-9_:]* .+$)");
  while (std::getline(in, line)) {
    std::smatch m;
    if (std::regex_match(line, comment)) continue;
    INFO("line: " << line);
    REQUIRE(std::regex_match(line, m, sample));
    CHECK(out.emplace(m[1].str(), std::stod(m[3].str())).second);  // each series once
  }
  return out;
}

/// The Prometheus text format's rules for families, checked over a whole
/// body: each family has one # HELP and then one # TYPE, before its samples,
/// which stand together; no sample without its family. Returns each family's
/// HELP text, as written (escaped).
std::map<std::string, std::string> families(const std::string& body) {
  std::map<std::string, std::string> help;
  std::map<std::string, std::string> type;
  std::string current;  // the family whose lines these are
  std::istringstream in(body);
  std::string line;
  const std::regex help_line(R"(^# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) (.*)$)");
  const std::regex type_line(R"(^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge)$)");
  const std::regex sample_line(R"(^([a-zA-Z_:][a-zA-Z0-9_:]*)[{ ].*$)");
  while (std::getline(in, line)) {
    INFO("line: " << line);
    std::smatch m;
    if (std::regex_match(line, m, help_line)) {
      CHECK(help.emplace(m[1].str(), m[2].str()).second);  // one HELP per family, and one block
      current = m[1].str();
    } else if (std::regex_match(line, m, type_line)) {
      CHECK(m[1].str() == current);  // right after its HELP
      CHECK(type.emplace(m[1].str(), m[2].str()).second);
    } else {
      REQUIRE(std::regex_match(line, m, sample_line));
      CHECK(m[1].str() == current);  // under its family's HELP and TYPE
      CHECK(type.contains(m[1].str()));
    }
  }
  CHECK(help.size() == type.size());
  return help;
}

/// A protocol whose counters say what they count, one in words that need
/// escaping in a # HELP line.
template <Env E> class described {
 public:
  struct poke {
    static constexpr message_type wire_id = 1;
    template <class A> void serialize(A&) {}
  };
  using messages = wire::message_set<poke>;
  static constexpr counter_set counters{{
      {"pokes", "a poke received"},
      {"odd_pokes", "a poke from C:\\temp, \"quoted\";\nsecond line"},
      "bare",
  }};
  static constexpr std::string_view name = "described";
  explicit described(E env) : env_(std::move(env)) {}
  void on_message(const address&, const poke&) {}
  void count(std::string_view what) { env_.count(what); }

 private:
  E env_;
};
}  // namespace

TEST_CASE("net: a running node's status and its Prometheus metrics, scraped over HTTP") {
  asio::io_context io;
  net::config ca, cb;
  ca.seed = 1;
  cb.seed = 2;
  net::node a(io, ca), b(io, cb);
  auto& ea = a.add<echo>(echo_id);
  b.add<echo>(echo_id);
  auto& da = a.add<detector>(detector_id);
  b.add<detector>(detector_id);
  const address nobody = address::loopback(1);  // nothing listens there
  da.monitor(b.self());
  da.monitor(nobody);
  std::uint64_t term = 3;
  a.add_gauge("raft_term", [&] { return static_cast<double>(term); });
  a.start();
  b.start();
  constexpr int n = 25;
  for (int i = 0; i < n; ++i) REQUIRE(ea.tell(b.self(), "x"));
  REQUIRE(run_until(
      io, [&] { return b.metrics().of(echo_id).received == n && da.suspects(nobody); }, std::chrono::seconds(15)));

  // status(): a snapshot of the same state.
  const auto st = a.status();
  CHECK(st.self == a.self());
  CHECK(st.running);
  CHECK(st.uptime > duration::zero());
  CHECK(st.connections == a.connections());
  REQUIRE(st.protocols.size() == 2);
  CHECK(st.protocols[0].id == echo_id);
  CHECK(st.protocols[0].name == "echo");
  CHECK(st.protocols[0].messages.sent == n);
  CHECK(st.protocols[0].gauges.empty());  // echo reports none
  CHECK(st.protocols[1].name == "heartbeat");
  const std::vector<std::pair<std::string, double>> hb_gauges{{"monitored", 2.0}, {"suspected", 1.0}};
  CHECK(st.protocols[1].gauges == hb_gauges);
  REQUIRE(st.gauges.size() == 1);
  CHECK(st.gauges[0].second == 3.0);

  // Served over HTTP from the node's executor; scraped through a socket.
  net::metrics_http_server http(a.get_executor(), address::loopback(0), [&] { return net::prometheus_text(a); });
  term = 4;
  const std::string answer = fetch(io, http.self(), "GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n");
  const auto split = answer.find("\r\n\r\n");
  REQUIRE(split != std::string::npos);
  const std::string head = answer.substr(0, split), body = answer.substr(split + 4);
  CHECK(head.starts_with("HTTP/1.0 200 OK"));
  CHECK(head.find("Content-Type: text/plain; version=0.0.4") != std::string::npos);
  CHECK(head.find("Content-Length: " + std::to_string(body.size())) != std::string::npos);
  const auto m = samples(body);
  families(body);
  const std::string who = "node=\"" + a.self().to_string() + "\"";
  auto at = [&](const std::string& series) {
    INFO("series: " << series);
    REQUIRE(m.contains(series));
    return m.at(series);
  };
  CHECK(at("dcp_up{" + who + "}") == 1);
  CHECK(at("dcp_connections{" + who + "}") == static_cast<double>(a.connections()));
  CHECK(at("dcp_messages_sent_total{" + who + ",protocol=\"7\",protocol_name=\"echo\",type=\"note\"}") == n);
  CHECK(at("dcp_message_bytes_sent_total{" + who + ",protocol=\"7\",protocol_name=\"echo\",type=\"note\"}") ==
        static_cast<double>(a.metrics().of(echo_id, dcp::test::echo_msg::note::wire_id).sent_bytes));
  CHECK(at("dcp_protocol_gauge{" + who + ",protocol=\"1\",protocol_name=\"heartbeat\",gauge=\"monitored\"}") == 2);
  CHECK(at("dcp_protocol_gauge{" + who + ",protocol=\"1\",protocol_name=\"heartbeat\",gauge=\"suspected\"}") == 1);
  CHECK(at("dcp_raft_term{" + who + "}") == 4);  // read at scrape time
  // every counter of the node is there, with its value at the scrape
  a.metrics().for_each_counter([&](protocol_id p, std::string_view event, std::int64_t) {
    const std::string pname = p == detector_id ? "heartbeat" : p == echo_id ? "echo" : "transport";
    CHECK(m.contains("dcp_" + pname + "_" + std::string(event) + "_total{" + who + ",protocol=\"" + std::to_string(p) +
                     "\",protocol_name=\"" + pname + "\"}"));
  });
  std::size_t drops = 0;
  a.metrics().for_each_drop([&](protocol_id, std::string_view, std::uint64_t c) { drops += c; });
  CHECK(drops == a.metrics().drops());

  // Anything else is refused, and the server keeps serving.
  CHECK(fetch(io, http.self(), "GET / HTTP/1.0\r\n\r\n").starts_with("HTTP/1.0 404"));
  CHECK(fetch(io, http.self(), "POST /metrics HTTP/1.0\r\n\r\n").starts_with("HTTP/1.0 405"));
  CHECK(fetch(io, http.self(), "hello\r\n\r\n").starts_with("HTTP/1.0 400"));
  CHECK(fetch(io, http.self(), std::string(10000, 'x')).starts_with("HTTP/1.0 400"));  // no end of header in 8 KiB
  CHECK(fetch(io, http.self(), "GET /metrics HTTP/1.1\r\n\r\n").starts_with("HTTP/1.0 200"));
}

TEST_CASE("net: prometheus_text escapes label values and sanitizes gauge names") {
  CHECK(net::detail::prometheus_label("a\"b\\c\nd") == "a\\\"b\\\\c\\nd");
  CHECK(net::detail::prometheus_name("raft-term.now") == "raft_term_now");
  CHECK(net::detail::prometheus_name("9lives") == "_lives");
  CHECK(net::detail::prometheus_value(2.5) == "2.5");
}

TEST_CASE("net: the Prometheus text lists every declared counter, at 0 before its first event") {
  asio::io_context io;
  net::config c;
  c.seed = 3;
  net::node a(io, c);
  a.add<detector>(detector_id);
  const auto m = samples(net::prometheus_text(a));
  const std::string labels = "{node=\"" + a.self().to_string() + "\",protocol=\"" + std::to_string(detector_id) +
      "\",protocol_name=\"heartbeat\"}";
  for (const auto& declared : detector::counters) {
    INFO("counter: " << declared.name);
    const std::string series = "dcp_heartbeat_" + std::string(declared.name) + "_total" + labels;
    REQUIRE(m.contains(series));
    CHECK(m.at(series) == 0);
  }
  CHECK(m.contains("dcp_heartbeat_handler_exceptions_total" + labels));  // the node's own, for every protocol
}

TEST_CASE("net: each declared counter is a family of the Prometheus text, its description the family's HELP") {
  asio::io_context io;
  net::config c;
  c.seed = 4;
  net::node a(io, c);
  // one protocol at two ids: one family a counter, with a sample for each id
  constexpr protocol_id first = 20, second = 21;
  auto& d1 = a.add<described<net::env>>(first);
  auto& d2 = a.add<described<net::env>>(second);
  a.add<detector>(detector_id);
  d1.count("pokes");
  d2.count("pokes");
  d2.count("pokes");
  d2.count("odd_pokes");
  const std::string body = net::prometheus_text(a);
  const auto help = families(body);
  const auto m = samples(body);

  // the declared words, escaped as a HELP line wants: \\ and \n, a quote as it is
  CHECK(help.at("dcp_described_pokes_total") == "a poke received");
  CHECK(help.at("dcp_described_odd_pokes_total") == "a poke from C:\\\\temp, \"quoted\";\\nsecond line");
  // said once however many ids host the protocol; each id its own sample
  const std::string who = "node=\"" + a.self().to_string() + "\"";
  auto at = [&](const std::string& family, protocol_id p) {
    const std::string series =
        family + "{" + who + ",protocol=\"" + std::to_string(p) + "\",protocol_name=\"described\"}";
    INFO("series: " << series);
    REQUIRE(m.contains(series));
    return m.at(series);
  };
  CHECK(at("dcp_described_pokes_total", first) == 1);
  CHECK(at("dcp_described_pokes_total", second) == 2);
  CHECK(at("dcp_described_odd_pokes_total", first) == 0);
  CHECK(at("dcp_described_odd_pokes_total", second) == 1);
  // a counter declared without words gets a HELP that says so; the node's own counters have theirs
  CHECK(help.at("dcp_described_bare_total").find("does not say") != std::string::npos);
  CHECK(help.at("dcp_heartbeat_handler_exceptions_total") ==
        "a handler of the protocol threw; the node logged it and went on");
  // every counter of every protocol has its family
  a.metrics().for_each_counter([&](protocol_id p, std::string_view event, std::int64_t) {
    const std::string pname = p == detector_id ? "heartbeat" : p == 0 ? "transport" : "described";
    CHECK(help.contains("dcp_" + pname + "_" + std::string(event) + "_total"));
  });
}

TEST_CASE("net: prometheus_help escapes backslash and line feed, nothing else") {
  CHECK(net::detail::prometheus_help("a\"b\\c\nd") == "a\"b\\\\c\\nd");
  CHECK(net::detail::prometheus_help("plain words: 1/2") == "plain words: 1/2");
}

}  // namespace test_metrics
