// gossip_node: one process, one dcp::net::node, three protocols composed on
// it over TCP: HyParView (membership), Plumtree (broadcast) over HyParView's
// active view, and Push-Sum (the average of one value per process) over the
// same view. Run many, all joining through one contact:
//
//   gossip_node --listen 127.0.0.1:0 --value 3.5                      # the contact
//   gossip_node --listen 127.0.0.1:0 --contact 127.0.0.1:PORT --value 7
//
// It is driven by signals, so that a script (tests/gossip/multiprocess_gossip.sh)
// can steer a cluster and check it from outside:
//   SIGUSR1          broadcast "bcast-K@<this address>" (K = 1, 2, ... per process)
//   SIGUSR2          start a new Push-Sum epoch from every process's own value
//                    (it spreads with the epoch's messages: mass of older
//                    epochs, including what the dead held, is dropped)
//   SIGINT, SIGTERM  print FINAL and exit with 0
//
// It prints one line per event, flushed at once:
//   LISTEN <addr>                  up (with --listen port 0 the port the OS chose)
//   JOINED                         a JOIN_ACCEPT arrived (the contact prints it at once)
//   VIEW [<addr>...]               the active view after every change
//   DELIVER <payload> <hops>       a broadcast delivered here (once per message)
//   CONVERGED <epoch> <estimate>   Push-Sum's estimate settled in this epoch
//   FINAL <epoch> <estimate>       the estimate when the process was told to stop
//   STATS name=count ...           then what happened on the way: neighbours
//                                  dropped on a transport error or on keep-alive
//                                  silence, repair requests, Plumtree grafts
// Errors (bad arguments, a port in use) go to stderr with exit code 2 or 1.
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <iostream>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>

#include <asio/io_context.hpp>
#include <asio/signal_set.hpp>

#include "dcp/aggregate.hpp"
#include "dcp/gossip.hpp"
#include "dcp/membership.hpp"
#include "dcp/net.hpp"
#include "dcp/net/transport_spec.hpp"  // --transport (links dcp::tls)

using namespace std::chrono_literals;

namespace {

using E = dcp::net::env;
using overlay_t = dcp::membership::hyparview<E>;
using broadcast_t = dcp::gossip::plumtree<E, overlay_t>;
using average_t = dcp::aggregate::push_sum<E, overlay_t>;

[[noreturn]] void usage(const std::string& why) {
  std::cerr << "gossip_node: " << why << "\n"
            << "usage: gossip_node --listen HOST:PORT [--contact HOST:PORT] --value X [--round 50ms]\n"
               "  --round is the Push-Sum round; HyParView shuffles every 10 rounds and sends\n"
               "  keep-alives every 5, and takes a neighbour silent for 40 rounds as failed.\n";
  std::cerr << "       --transport " << dcp::net::transport_spec_forms
            << "   (required, or DCP_TRANSPORT: how nodes authenticate)\n";
  std::exit(2);
}

std::string estimate_text(const std::optional<double>& e) {
  if (!e) return "none";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.17g", *e);
  return buf;
}

}  // namespace

int main(int argc, char** argv) {
  dcp::net::config cfg;
  std::optional<dcp::address> contact;
  std::optional<double> value;
  dcp::duration round = 50ms;
  bool have_listen = false;
  dcp::net::transport_spec transport;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (i + 1 >= argc) usage("missing value after " + std::string(arg));
    const std::string_view text = argv[++i];
    if (arg == "--transport") {
      if (auto e = transport.parse(text)) usage(*e);
      continue;
    }
    if (arg == "--listen" || arg == "--contact") {
      auto a = dcp::address::parse(text);
      if (!a || !a->is_network()) usage("not an address: " + std::string(text));
      if (arg == "--listen")
        cfg.listen = *a, have_listen = true;
      else
        contact = *a;
    } else if (arg == "--value") {
      char* end = nullptr;
      const std::string s(text);
      const double v = std::strtod(s.c_str(), &end);
      if (end == s.c_str() || *end != '\0' || !std::isfinite(v)) usage("--value wants a finite number, got " + s);
      value = v;
    } else if (arg == "--round") {
      auto d = dcp::parse_duration(text);
      if (!d || *d < 10ms) usage("--round wants a duration of at least 10ms (like 50ms, 1s), got " + std::string(text));
      round = *d;
    } else {
      usage("unknown option " + std::string(arg));
    }
  }
  if (!have_listen) usage("--listen is required");
  if (auto e = transport.parse_environment()) usage(*e);
  if (!transport.chosen()) usage("--transport (or DCP_TRANSPORT) is required");
  if (!value) usage("--value is required");

  try {
    asio::io_context io;
    cfg.log = [](const dcp::log_record& r) {
      std::cerr << r.node << ' ' << to_string(r.level) << ": " << r.text << '\n';
    };
    cfg.level = dcp::log_level::warn;
    // A killed peer refuses connections at once: give up on it after a few
    // quick attempts (about 0.4 s), so HyParView hears on_unreachable early.
    cfg.reconnect.initial = 25ms;
    cfg.reconnect.max = 250ms;
    cfg.reconnect.give_up_after_attempts = 4;
    cfg.connect_timeout = 2s;
    dcp::net::any_node node(io, cfg, dcp::net::transport_options(transport));

    dcp::membership::hyparview_config mc;
    mc.shuffle_period = 10 * round;
    mc.keepalive_period = 5 * round;
    // Generous against a loaded machine: a live peer stalled this long is
    // dropped from the view (and comes back through repair), never lost.
    mc.suspect_after = 40 * round;
    mc.neighbor_timeout = 10 * round;
    if (contact) mc.contact = *contact;
    auto& overlay = node.add<overlay_t>(overlay_t::default_id, mc);

    dcp::gossip::plumtree_config tc;
    tc.ihave_timeout = 10 * round;
    tc.graft_timeout = 5 * round;
    auto& tree = node.add<broadcast_t>(broadcast_t::default_id, overlay, tc);

    dcp::aggregate::push_sum_config ac;
    ac.period = round;
    ac.input = dcp::aggregate::push_sum_input::average(*value);
    auto& average = node.add<average_t>(average_t::default_id, overlay, ac);

    bool joined = !contact;  // the first node is the overlay
    auto print_view = [&] {
      std::ostringstream line;
      line << "VIEW";
      for (auto& p : overlay.neighbours()) line << ' ' << p;
      std::cout << line.str() << std::endl;
    };
    auto on_change = [&](const dcp::address&) {
      if (!joined && overlay.joined()) {
        joined = true;
        std::cout << "JOINED" << std::endl;
      }
      print_view();
    };
    overlay.on_neighbour_up(on_change);
    overlay.on_neighbour_down(on_change);
    tree.on_deliver([](const dcp::gossip::delivery& d) {
      std::cout << "DELIVER " << dcp::as_string(d.payload) << ' ' << d.hops << std::endl;
    });
    average.on_converged([](double estimate, std::uint64_t epoch) {
      std::cout << "CONVERGED " << epoch << ' ' << estimate_text(estimate) << std::endl;
    });

    int broadcasts = 0;
    asio::signal_set signals(io, SIGINT, SIGTERM, SIGUSR1);
    signals.add(SIGUSR2);
    std::function<void(const std::error_code&, int)> on_signal = [&](const std::error_code& ec, int sig) {
      if (ec) return;
      if (sig == SIGUSR1) {
        std::ostringstream payload;
        payload << "bcast-" << ++broadcasts << '@' << node.self();
        tree.broadcast(dcp::as_bytes(payload.str()));
      } else if (sig == SIGUSR2) {
        average.restart();
      } else {
        std::cout << "FINAL " << average.epoch() << ' ' << estimate_text(average.estimate()) << std::endl;
        const auto& m = node.metrics();
        const auto hv = overlay_t::default_id, pt = broadcast_t::default_id;
        const auto silent = m.counter(hv, "neighbour_silent");
        const auto prunes = m.of(pt, dcp::gossip::plumtree_msg::prune::wire_id).received;
        std::cout << "STATS unreachable=" << m.counter(hv, "neighbour_failed") - silent << " silent=" << silent
                  << " neighbor_requests=" << m.counter(hv, "neighbor_requests")
                  << " grafts=" << m.counter(pt, "grafts") << " prunes_received=" << prunes << std::endl;
        node.stop();  // closes sockets and timers: io.run() returns
        return;
      }
      signals.async_wait(on_signal);
    };
    signals.async_wait(on_signal);  // armed before LISTEN: a signal after it is never fatal

    node.start();
    std::cout << "LISTEN " << node.self() << std::endl;
    if (joined) std::cout << "JOINED" << std::endl;
    io.run();
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "gossip_node: " << e.what() << '\n';
    return 1;
  }
}
