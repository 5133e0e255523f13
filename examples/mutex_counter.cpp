// mutex_counter: one process of a group that takes turns incrementing a
// counter kept in a shared file, under any dcp mutual-exclusion algorithm,
// over TCP (dcp::net).
//
//   mutex_counter --algorithm ricart_agrawala --listen 127.0.0.1:7101
//                 --peer 127.0.0.1:7102 ... --file /tmp/counter --increments 20
//
// Inside the critical section the process creates FILE.inside with O_EXCL
// (so that a second process inside at the same time is caught: it prints
// OVERLAP and exits 3), reads the counter, writes it back plus one, syncs,
// and removes FILE.inside. It prints DONE after its increments and keeps
// serving the others (the permission algorithms need every member) until
// SIGINT/SIGTERM. A request that fails (a peer not up yet) is retried.
// Algorithms: centralized, ricart_agrawala, lamport, suzuki_kasami, raymond,
// maekawa, token_ring.
#include <fcntl.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <iostream>
#include <string>
#include <string_view>
#include <vector>

#include <asio/io_context.hpp>
#include <asio/signal_set.hpp>
#include <asio/steady_timer.hpp>

#include "dcp/group.hpp"
#include "dcp/mutex.hpp"
#include "dcp/net.hpp"
#include "dcp/net/transport_spec.hpp"  // --transport (links dcp::tls)

namespace {

[[noreturn]] void usage(const std::string& why) {
  std::cerr << "mutex_counter: " << why << "\n"
            << "usage: mutex_counter --algorithm NAME --listen HOST:PORT [--peer HOST:PORT]... --file PATH "
               "[--increments N]\n";
  std::cerr << "       --transport " << dcp::net::transport_spec_forms
            << "   (required, or DCP_TRANSPORT: how nodes authenticate)\n";
  std::exit(2);
}

/// The critical section: read, increment, write, with an overlap detector.
void increment(const std::string& file) {
  const std::string inside = file + ".inside";
  const int fd = ::open(inside.c_str(), O_CREAT | O_EXCL | O_WRONLY, 0644);
  if (fd < 0) {
    std::cout << "OVERLAP" << std::endl;
    std::_Exit(3);
  }
  long value = 0;
  {
    std::ifstream in(file);
    in >> value;
  }
  {
    std::ofstream out(file, std::ios::trunc);
    out << value + 1 << '\n';
  }
  const int cfd = ::open(file.c_str(), O_RDONLY);
  if (cfd >= 0) ::fsync(cfd), ::close(cfd);
  ::close(fd);
  ::unlink(inside.c_str());
}

template <class Mutex, class Config> int run(dcp::net::config cfg, dcp::group::static_group group, Config mcfg,
                                             const std::string& file, int increments,
                                             const dcp::net::transport_spec& transport) {
  asio::io_context io;
  dcp::net::any_node node(io, cfg, dcp::net::transport_options(transport));
  auto& m = node.add<Mutex>(Mutex::default_id, group, mcfg);
  asio::steady_timer pause(io);
  int done = 0;
  std::function<void()> next = [&] {
    m.lock([&](std::error_code ec) {
      if (ec) {  // a peer not up yet, or gone: try again a little later
        std::cout << "RETRY " << ec.message() << std::endl;
        pause.expires_after(std::chrono::milliseconds(200));
        pause.async_wait([&](std::error_code e) {
          if (!e) next();
        });
        return;
      }
      {
        dcp::mutex::guard held(m);
        increment(file);
      }
      if (++done == increments) {
        std::cout << "DONE " << done << std::endl;
        return;
      }
      pause.expires_after(std::chrono::milliseconds(1));
      pause.async_wait([&](std::error_code e) {
        if (!e) next();
      });
    });
  };
  asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&](const std::error_code& ec, int) {
    if (ec) return;
    pause.cancel();
    node.stop();
  });
  node.start();
  std::cout << "LISTEN " << node.self() << std::endl;
  pause.expires_after(std::chrono::milliseconds(500));  // let the others come up
  pause.async_wait([&](std::error_code e) {
    if (!e) next();
  });
  io.run();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace std::chrono_literals;
  dcp::net::config cfg;
  std::vector<dcp::address> members;
  std::string algorithm, file;
  int increments = 20;
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
    if (arg == "--listen" || arg == "--peer") {
      auto a = dcp::address::parse(value);
      if (!a || !a->is_network()) usage("not an address: " + std::string(value));
      if (arg == "--listen") cfg.listen = *a, have_listen = true;
      members.push_back(*a);
    } else if (arg == "--algorithm") {
      algorithm = value;
    } else if (arg == "--file") {
      file = value;
    } else if (arg == "--increments") {
      increments = std::atoi(std::string(value).c_str());
      if (increments <= 0) usage("--increments must be a positive number");
    } else {
      usage("unknown option " + std::string(arg));
    }
  }
  if (!have_listen) usage("--listen is required");
  if (auto e = transport.parse_environment()) usage(*e);
  if (!transport.chosen()) usage("--transport (or DCP_TRANSPORT) is required");
  if (file.empty()) usage("--file is required");
  try {
    cfg.log = [](const dcp::log_record& r) {
      std::cerr << r.node << ' ' << to_string(r.level) << ": " << r.text << '\n';
    };
    cfg.level = dcp::log_level::warn;
    const dcp::group::static_group group(members);
    using E = dcp::net::env;
    namespace mx = dcp::mutex;
    if (algorithm == "centralized")
      return run<mx::centralized<E>>(cfg, group, mx::centralized_config{.request_timeout = 5s}, file, increments,
                                     transport);
    if (algorithm == "ricart_agrawala")
      return run<mx::ricart_agrawala<E>>(cfg, group, mx::ricart_agrawala_config{.request_timeout = 5s}, file,
                                         increments, transport);
    if (algorithm == "lamport")
      return run<mx::lamport<E>>(cfg, group, mx::lamport_config{.request_timeout = 5s}, file, increments, transport);
    if (algorithm == "suzuki_kasami")
      return run<mx::suzuki_kasami<E>>(cfg, group, mx::suzuki_kasami_config{.request_timeout = 5s}, file, increments,
                                       transport);
    if (algorithm == "raymond")
      return run<mx::raymond<E>>(cfg, group, mx::raymond_config{.request_timeout = 5s}, file, increments, transport);
    if (algorithm == "maekawa")
      return run<mx::maekawa<E>>(cfg, group, mx::maekawa_config{.request_timeout = 5s}, file, increments, transport);
    if (algorithm == "token_ring") {
      mx::token_ring_config c;
      c.request_timeout = 10s;
      c.token_timeout = 3s;
      c.pass_delay = 2ms;  // an idle ring does not spin the CPU
      return run<mx::token_ring<E>>(cfg, group, c, file, increments, transport);
    }
    usage("unknown --algorithm " + algorithm);
  } catch (const std::exception& e) {
    std::cerr << "mutex_counter: " << e.what() << '\n';
    return 1;
  }
}
