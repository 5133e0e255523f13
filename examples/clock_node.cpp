// clock_node: one process of a clock synchronization group over TCP (dcp::net).
//
//   clock_node --algorithm cristian --listen 127.0.0.1:7201                 (the reference server)
//   clock_node --algorithm cristian --listen 127.0.0.1:7202 --server 127.0.0.1:7201
//   clock_node --algorithm berkeley --listen 127.0.0.1:7301 --peer 127.0.0.1:7302 ...
//
// Every 200 ms it prints one line:
//
//   SYNC synced=1 offset_ns=-1234 bound_ns=560000 daemon=127.0.0.1:7302 round_daemon=127.0.0.1:7302
//
// offset_ns is the synchronized clock minus this process's own clock, and
// bound_ns the bound the algorithm reports (Cristian: against the server;
// Berkeley: against the group's average). Processes on one host share one
// steady clock, so for Cristian the true offset is zero: |offset_ns| <=
// bound_ns is checked from outside by tests/clock/multiprocess_sync.sh.
// Berkeley's daemon is the Bully leader: kill it and another takes over.
// Runs until SIGINT/SIGTERM.
#include <csignal>
#include <cstdlib>
#include <functional>
#include <iostream>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <asio/io_context.hpp>
#include <asio/signal_set.hpp>
#include <asio/steady_timer.hpp>

#include "dcp/clock.hpp"
#include "dcp/election.hpp"
#include "dcp/group.hpp"
#include "dcp/net.hpp"
#include "dcp/net/transport_spec.hpp"  // --transport (links dcp::tls)

namespace {

[[noreturn]] void usage(const std::string& why) {
  std::cerr << "clock_node: " << why << "\n"
            << "usage: clock_node --algorithm cristian|berkeley --listen HOST:PORT [--server HOST:PORT] "
               "[--peer HOST:PORT]...\n";
  std::cerr << "       --transport " << dcp::net::transport_spec_forms
            << "   (required, or DCP_TRANSPORT: how nodes authenticate)\n";
  std::exit(2);
}

using E = dcp::net::env;
using bully = dcp::election::bully<E>;
using berkeley = dcp::clock::berkeley<E, bully>;
using cristian = dcp::clock::cristian<E>;

/// Prints a SYNC line every 200 ms until stopped.
void report_every(asio::io_context& io, asio::steady_timer& timer, std::function<void()> line) {
  timer.expires_after(std::chrono::milliseconds(200));
  timer.async_wait([&io, &timer, line = std::move(line)](std::error_code ec) {
    if (ec) return;
    line();
    report_every(io, timer, line);
  });
}

}  // namespace

int main(int argc, char** argv) {
  using namespace std::chrono_literals;
  dcp::net::config cfg;
  std::vector<dcp::address> members;
  std::optional<dcp::address> server;
  std::string algorithm;
  bool have_listen = false;
  dcp::net::transport_spec transport;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (i + 1 >= argc) usage("missing value after " + std::string(arg));
    const std::string_view value = argv[++i];
    if (arg == "--transport") {
      if (auto e = transport.parse(value)) usage(*e);
      continue;
    }
    if (arg == "--listen" || arg == "--peer" || arg == "--server") {
      auto a = dcp::address::parse(value);
      if (!a || !a->is_ip()) usage("not an address: " + std::string(value));
      if (arg == "--server")
        server = *a;
      else
        members.push_back(*a);
      if (arg == "--listen") cfg.listen = *a, have_listen = true;
    } else if (arg == "--algorithm") {
      algorithm = value;
    } else {
      usage("unknown option " + std::string(arg));
    }
  }
  if (!have_listen) usage("--listen is required");
  if (auto e = transport.parse_environment()) usage(*e);
  if (!transport.chosen()) usage("--transport (or DCP_TRANSPORT) is required");
  try {
    cfg.log = [](const dcp::log_record& r) {
      std::cerr << r.node << ' ' << to_string(r.level) << ": " << r.text << '\n';
    };
    cfg.level = dcp::log_level::warn;
    asio::io_context io;
    dcp::net::any_node node(io, cfg, dcp::net::transport_options(transport));
    asio::steady_timer timer(io);
    std::function<void()> line;
    if (algorithm == "cristian") {
      auto& c = node.add<cristian>(cristian::default_id,
                                   dcp::clock::cristian_config{.server = server, .poll_interval = 200ms});
      line = [&node, &c] {
        const auto local = dcp::net::detail::steady_now();
        const auto offset = c.synchronized_now() - local;
        std::cout << "SYNC synced=" << c.synchronized() << " offset_ns=" << offset.count()
                  << " bound_ns=" << c.error_bound().count() << " daemon=- round_daemon=-" << std::endl;
        (void)node;
      };
    } else if (algorithm == "berkeley") {
      const dcp::group::static_group group(members);
      auto& e = node.add<bully>(
          bully::default_id, group,
          dcp::election::bully_config{
              .answer_timeout = 200ms, .coordinator_timeout = 600ms, .probe_interval = 200ms, .probe_timeout = 800ms});
      auto& b = node.add<berkeley>(
          berkeley::default_id, e, group,
          dcp::clock::berkeley_config{
              .poll_interval = 500ms, .reply_window = 200ms, .max_round_trip = 100ms, .fta_width = 10ms});
      line = [&e, &b] {
        const auto local = dcp::net::detail::steady_now();
        const auto offset = b.synchronized_now() - local;
        std::cout << "SYNC synced=" << b.clock().synchronized() << " offset_ns=" << offset.count()
                  << " bound_ns=" << (b.clock().synchronized() ? b.error_bound().count() : -1)
                  << " daemon=" << (e.leader() ? e.leader()->to_string() : "-")
                  << " round_daemon=" << (b.applied_round() ? b.applied_round()->daemon.to_string() : "-") << std::endl;
      };
    } else {
      usage("unknown --algorithm " + algorithm);
    }
    asio::signal_set signals(io, SIGINT, SIGTERM);
    signals.async_wait([&](const std::error_code& ec, int) {
      if (ec) return;
      timer.cancel();
      node.stop();
    });
    node.start();
    std::cout << "LISTEN " << node.self() << std::endl;
    report_every(io, timer, line);
    io.run();
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "clock_node: " << e.what() << '\n';
    return 1;
  }
}
