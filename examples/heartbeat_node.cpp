// heartbeat_node: one process, one dcp::net::node, the heartbeat failure
// detector watching the peers named on the command line; or, with
// --protocol swim, a SWIM member (dcp/membership/swim.hpp) joining through
// them (the peers are its seeds).
//
//   heartbeat_node --listen 127.0.0.1:7101 --peer 127.0.0.1:7102
//                  --peer 127.0.0.1:7103 --interval 100ms --timeout 500ms
//                  --transport keyring:cluster.keys [--metrics 127.0.0.1:9464]
//
// --transport says how the nodes authenticate (dcp/net/transport_spec.hpp).
// SWIM also runs over UDP datagrams, as it is deployed: --transport
// udp:keyring:FILE (each datagram sealed) or udp:plaintext. With SWIM,
// --interval is the protocol period and --timeout the direct-probe timeout
// (below the period); --suspicion-mult and --suspicion-max-mult set the
// suspicion timeout (swim_config). The heartbeat runs over streams only.
//
// With --metrics, the node's counters and gauges are served in Prometheus
// text format: curl http://127.0.0.1:9464/metrics (dcp/net/metrics_server.hpp).
//
// Prints one line per event, flushed at once so that another program can
// follow it through a pipe:
//   LISTEN <addr>   the node is up
//   METRICS <addr>  where /metrics is served (with --metrics)
//   UP <addr>       first heard from the peer, or heard again after DOWN
//   DOWN <addr>     the peer is suspected (silent for --timeout, or unreachable);
//                   with SWIM: declared dead (a suspicion not refuted in time)
//   LEFT <addr>     with SWIM: the member left gracefully
//   STOP            SIGINT/SIGTERM received; the process then exits with 0
// Errors (bad arguments, a port in use) go to stderr with exit code 2 or 1.
#include <csignal>
#include <cstdlib>
#include <iostream>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <asio/io_context.hpp>
#include <asio/signal_set.hpp>

#include "dcp/failure.hpp"
#include "dcp/membership/swim.hpp"
#include "dcp/net.hpp"
#include "dcp/net/transport_spec.hpp"  // --transport (links dcp::tls)

using namespace std::chrono_literals;

namespace {

using base_detector = dcp::failure::heartbeat<dcp::net::env>;

// The detector counts a peer as alive from the moment it is monitored; this
// program wants to say UP only once the peer has really answered. Protocols
// compose: this one is the heartbeat, plus a note of who was ever heard from.
class detector : public base_detector {
 public:
  using base_detector::base_detector;
  void on_message(const dcp::address& from, const dcp::failure::heartbeat_msg::ping& m) {
    base_detector::on_message(from, m);
    contact(from);
  }
  void on_message(const dcp::address& from, const dcp::failure::heartbeat_msg::ack& m) {
    base_detector::on_message(from, m);
    contact(from);
  }
  bool heard(const dcp::address& peer) const { return heard_.contains(peer); }

 private:
  void contact(const dcp::address& from) {
    if (monitors(from) && heard_.insert(from).second) print("UP", from);
  }
  std::set<dcp::address> heard_;

 public:
  static void print(std::string_view what, const dcp::address& a) { std::cout << what << ' ' << a << std::endl; }
};

[[noreturn]] void usage(const std::string& why) {
  std::cerr << "heartbeat_node: " << why << "\n"
            << "usage: heartbeat_node --listen HOST:PORT [--peer HOST:PORT]... [--interval 100ms] [--timeout 500ms]\n"
            << "                      [--metrics HOST:PORT] [--protocol heartbeat|swim]\n"
            << "                      [--suspicion-mult 4] [--suspicion-max-mult 6]   (swim)\n";
  std::cerr << "       --transport " << dcp::net::transport_spec_forms
            << "   (required, or DCP_TRANSPORT: how nodes authenticate)\n";
  std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
  dcp::net::config cfg;
  dcp::failure::heartbeat_config hb{100ms, 500ms};
  std::vector<dcp::address> peers;
  bool have_listen = false;
  std::optional<dcp::address> metrics_at;
  dcp::net::transport_spec transport;
  transport.datagrams_allowed = true;  // refused below unless --protocol swim, whose messages fit a datagram
  bool swim = false;
  dcp::membership::swim_config sw;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (i + 1 >= argc) usage("missing value after " + std::string(arg));
    const std::string_view value = argv[++i];
    if (arg == "--listen" || arg == "--peer") {
      auto a = dcp::address::parse(value);
      if (!a || !a->is_network()) usage("not an address: " + std::string(value));
      if (arg == "--listen")
        cfg.listen = *a, have_listen = true;
      else
        peers.push_back(*a);
    } else if (arg == "--transport") {
      if (auto e = transport.parse(value)) usage(*e);
    } else if (arg == "--protocol") {
      if (value != "heartbeat" && value != "swim") usage("--protocol is heartbeat or swim, not " + std::string(value));
      swim = value == "swim";
    } else if (arg == "--suspicion-mult" || arg == "--suspicion-max-mult") {
      const std::string v(value);
      char* end = nullptr;
      const unsigned long n = std::strtoul(v.c_str(), &end, 10);
      if (v.empty() || *end != '\0' || n < 1 || n > 100) usage(std::string(arg) + " is a whole number in [1, 100]");
      (arg == "--suspicion-mult" ? sw.suspicion_mult : sw.suspicion_max_mult) = n;
    } else if (arg == "--metrics") {
      auto a = dcp::address::parse(value);
      if (!a || !a->is_ip()) usage("not an IP address: " + std::string(value));
      metrics_at = *a;
    } else if (arg == "--interval" || arg == "--timeout") {
      auto d = dcp::parse_duration(value);
      if (!d) usage("not a duration (like 100ms, 2s): " + std::string(value));
      (arg == "--interval" ? hb.interval : hb.timeout) = *d;
    } else {
      usage("unknown option " + std::string(arg));
    }
  }
  if (!have_listen) usage("--listen is required");
  if (auto e = transport.parse_environment()) usage(*e);
  if (!transport.chosen()) usage("--transport (or DCP_TRANSPORT) is required");
  const bool udp = transport.how == dcp::net::transport_spec::kind::udp_plaintext ||
      transport.how == dcp::net::transport_spec::kind::udp_keyring;
  if (udp && !swim) usage("--transport udp:... runs --protocol swim only (the heartbeat runs over streams)");
  if (swim && hb.timeout >= hb.interval)
    usage("with --protocol swim, --timeout (the probe timeout) must be below --interval");

  try {
    asio::io_context io;
    cfg.log = [](const dcp::log_record& r) {
      std::cerr << r.node << ' ' << to_string(r.level) << ": " << r.text << '\n';
    };
    cfg.level = dcp::log_level::warn;
    dcp::net::any_node node(io, cfg, dcp::net::transport_options(transport));
    if (swim) {
      // Over UDP every message must fit one datagram: bound SWIM's messages
      // by the transport's frame bound (the 1,400-byte default datagram less
      // the frame header and, sealed, the seal); piggybacked updates and
      // push-pull tables are then cut to fit (swim_config::max_message_size).
      if (udp) {
        const std::size_t seal = transport.how == dcp::net::transport_spec::kind::udp_keyring
            ? dcp::net::udp_keyring_security::overhead
            : dcp::net::udp_plaintext::overhead;
        sw.max_message_size = dcp::net::udp_options{}.max_datagram_size - dcp::wire::header_size - seal;
      }
      sw.probe_interval = hb.interval;
      sw.probe_timeout = hb.timeout;
      sw.seeds = peers;
      auto& s = node.add<dcp::membership::swim<dcp::net::env>>(dcp::membership::swim<dcp::net::env>::default_id, sw);
      s.on_event([](const dcp::membership::member_event& e) {
        using k = dcp::membership::member_event::kind;
        if (e.what == k::join)
          detector::print("UP", e.member.node);
        else if (e.what == k::failed)
          detector::print("DOWN", e.member.node);
        else if (e.what == k::leave)
          detector::print("LEFT", e.member.node);
      });
    } else {
      auto& d = node.add<detector>(detector::default_id, hb);
      d.on_down([](const dcp::address& p) { detector::print("DOWN", p); });
      d.on_up([&d](const dcp::address& p) {
        if (d.heard(p)) detector::print("UP", p);  // restored; a first contact is printed by the detector
      });
      for (auto& p : peers) d.monitor(p);
    }

    std::optional<dcp::net::metrics_http_server> http;
    if (metrics_at) http.emplace(io.get_executor(), *metrics_at, [&node] { return dcp::net::prometheus_text(node); });

    asio::signal_set signals(io, SIGINT, SIGTERM);
    signals.async_wait([&](const std::error_code& ec, int) {
      if (ec) return;
      std::cout << "STOP" << std::endl;
      node.stop();  // closes sockets and timers: io.run() returns
      if (http) http->stop();
    });
    node.start();
    std::cout << "LISTEN " << node.self() << std::endl;
    if (http) std::cout << "METRICS " << http->self() << std::endl;
    io.run();
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "heartbeat_node: " << e.what() << '\n';
    return 1;
  }
}
