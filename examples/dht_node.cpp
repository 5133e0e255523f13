// dht_node: one node of a DHT over TCP or UDP (dcp::net), with the replicated
// store on top, driven by commands on its standard input.
//
//   dht_node --router chord|pastry|kademlia|tapestry --listen 127.0.0.1:7001
//            [--contact 127.0.0.1:7000]... [--replicas 3] [--sync 1s] [--seed N]
//            --transport keyring:KEYFILE | tls:CA,CERT,KEY | plaintext | udp:keyring:KEYFILE | udp:plaintext
//
// --transport udp:plaintext runs Kademlia as it is deployed (BitTorrent's
// Mainline DHT, IPFS): every RPC one datagram (dcp/net/udp_transport.hpp),
// unauthenticated, so only on a network nothing else reaches (udp:keyring:KEYFILE
// seals each datagram under a keyring, dcp/net/udp_keyring.hpp); values are then
// bounded to 1 KiB so that a put fits a datagram, sealed or not. Kademlia only: the other
// routers exchange tables that can outgrow a datagram.
//
// Without --contact the node founds a new overlay; with one or more it joins
// through them (retrying with backoff while none answers). It prints
//   LISTEN <address>            once bound
//   JOINED <node id>            once part of the overlay
// and then answers one line per command read from stdin:
//   put KEY VALUE   -> PUT KEY ok VERSION          | PUT KEY error MESSAGE
//   get KEY         -> GET KEY ok VALUE            | GET KEY error MESSAGE
//   remove KEY      -> REMOVE KEY ok VERSION       | REMOVE KEY error MESSAGE
//   owners KEY      -> OWNERS KEY ADDR...  (the r nodes responsible, owner first)
//                                          | OWNERS KEY error MESSAGE
//   watch KEY       -> WATCH KEY VALUE|-   whenever the newest value seen changes
//                      (polled with get every --watch-interval; '-' when absent)
//   sput SALT VALUE -> SPUT SALT ok SEQ | SPUT SALT error MESSAGE
//                      a value signed with this node's Ed25519 key (BEP 44 style: only
//                      the key's owner may replace it; SALT '-' for none; seq from the clock)
//   sget PUBKEY SALT -> SGET SALT ok VALUE SEQ | SGET SALT error MESSAGE
//                      (PUBKEY: the owner's, hex, as `pubkey` prints it; every answer verified)
//   pubkey          -> PUBKEY HEX   this node's signing key (--sign-seed HEX, else random)
//   status          -> STATUS joined|joining ITEMS
//   quit            -> stops the node (as do SIGINT, SIGTERM and end of input)
// Keys and values are single words. A test drives it through a pipe or FIFO
// (see tests/dht/multiprocess_store.sh).
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <asio/io_context.hpp>
#include <asio/posix/stream_descriptor.hpp>
#include <asio/read_until.hpp>
#include <asio/signal_set.hpp>
#include <asio/steady_timer.hpp>
#include <asio/streambuf.hpp>

#include "dcp/dht.hpp"
#include "dcp/dht/ed25519.hpp"  // signed values (links libcrypto through dcp::tls)
#include "dcp/net.hpp"
#include "dcp/net/transport_spec.hpp"  // --transport (links dcp::tls)

namespace {

using namespace std::chrono_literals;
using E = dcp::net::env;

[[noreturn]] void usage(const std::string& why) {
  std::cerr << "dht_node: " << why << "\n"
            << "usage: dht_node --router chord|pastry|kademlia|tapestry --listen HOST:PORT [--contact HOST:PORT]... "
               "[--replicas R] [--sync DURATION] [--watch-interval DURATION] [--seed N] [--sign-seed HEX32]\n";
  std::cerr << "       --transport " << dcp::net::transport_spec_forms << " | " << dcp::net::datagram_transport_forms
            << "   (required, or DCP_TRANSPORT: how nodes authenticate; udp: Kademlia's RPCs as\n"
            << "       plaintext datagrams, values up to 1 KiB)\n";
  std::exit(2);
}

struct options {
  dcp::net::config net;
  dcp::net::transport_spec transport;
  std::string router;
  std::vector<dcp::dht::contact> contacts;
  dcp::dht::store_config store;
  dcp::duration watch_interval = 500ms;
  dcp::bytes sign_seed;  // 32 bytes; empty: a random signing key
};

/// Router configurations for a small loopback cluster on a loaded machine:
/// timeouts generous enough that a busy process is not declared dead, and
/// maintenance quick enough that a crash is repaired within seconds.
template <class R> auto router_config();
template <> auto router_config<dcp::dht::chord<E>>() {
  dcp::dht::chord_config c;
  c.stabilize_interval = 500ms;
  c.fix_fingers_interval = 500ms;
  c.check_predecessor_interval = 500ms;
  c.rpc_timeout = 1s;
  return c;
}
template <> auto router_config<dcp::dht::pastry<E>>() {
  dcp::dht::pastry_config c;
  c.leaf_interval = 500ms;
  c.rpc_timeout = 1s;
  c.lookup_timeout = 8s;
  return c;
}
template <> auto router_config<dcp::dht::kademlia<E>>() {
  dcp::dht::kademlia_config c;
  c.rpc_timeout = 1s;
  c.refresh_interval = 30s;
  return c;
}
template <> auto router_config<dcp::dht::tapestry<E>>() {
  dcp::dht::tapestry_config c;
  c.maintain_interval = 500ms;
  c.rpc_timeout = 1s;
  c.lookup_timeout = 8s;
  return c;
}

template <class R> int run(const options& opt) {
  using S = dcp::dht::store<E, R, dcp::dht::ed25519_verifier>;
  const auto signing = opt.sign_seed.empty() ? dcp::lease::ed25519_private_key::generate()
                                             : dcp::lease::ed25519_private_key::from_seed(opt.sign_seed);
  if (!signing) throw std::runtime_error("signing key: " + signing.error().message());
  std::uint64_t last_seq = 0;
  asio::io_context io;
  dcp::net::any_node node(io, opt.net, dcp::net::transport_options(opt.transport));
  auto& router = node.add<R>(R::default_id, router_config<R>());
  auto& kv = node.add<S>(S::default_id, router, opt.store);

  auto say = [](const std::string& line) { std::cout << line << std::endl; };

  // watches: key -> the last value reported ("-" when absent)
  std::map<std::string, std::string> watched;
  asio::steady_timer watch_timer(io);
  std::function<void()> poll_watches = [&] {
    for (auto& watch : watched) {
      const std::string& key = watch.first;  // not a structured binding: clang < 16 cannot capture one
      kv.get(key, [&, key](dcp::result<dcp::dht::stored_value> v) {
        auto it = watched.find(key);
        if (it == watched.end()) return;
        std::string now;
        if (v)
          now = std::string(dcp::as_string(v->value));
        else if (v.error() == dcp::dht::errc::not_found)
          now = "-";
        else
          return;  // unreachable replicas or no route now: keep the last value, poll again
        if (now != it->second) {
          it->second = now;
          say("WATCH " + key + " " + now);
        }
      });
    }
    watch_timer.expires_after(opt.watch_interval);
    watch_timer.async_wait([&](std::error_code e) {
      if (!e) poll_watches();
    });
  };

  auto command = [&](const std::string& line) {
    std::istringstream in(line);
    std::string verb, key, value;
    in >> verb >> key >> value;
    if (verb.empty()) return;
    if (verb == "status") {
      say(std::string("STATUS ") + (router.joined() ? "joined " : "joining ") + std::to_string(kv.size()));
    } else if (verb == "quit") {
      node.stop();
    } else if (verb == "pubkey") {
      say("PUBKEY " + dcp::to_hex(signing->public_key().raw()));
    } else if (verb == "sput" && !key.empty()) {
      const std::string salt = key == "-" ? "" : key;
      const auto now =
          std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch());
      last_seq = std::max(last_seq + 1, static_cast<std::uint64_t>(now.count()));  // a later put, a higher seq
      auto v = dcp::dht::sign_value(*signing, dcp::to_bytes(salt), last_seq, dcp::to_bytes(value));
      if (!v) return say("SPUT " + key + " error " + v.error().message());
      kv.put(*v, opt.store.default_ttl, [say, key](dcp::result<std::uint64_t> seq) {
        say("SPUT " + key + (!seq ? " error " + seq.message() : " ok " + std::to_string(*seq)));
      });
    } else if (verb == "sget" && !key.empty()) {
      const auto pub = dcp::from_hex(key);
      const std::string salt = value == "-" ? "" : value;
      if (!pub) return say("SGET " + value + " error the public key is not hex");
      kv.get(*pub, dcp::as_bytes(salt), [say, value](dcp::result<dcp::dht::stored_value> v) {
        say("SGET " + value +
            (!v ? " error " + v.message()
                : " ok " + std::string(dcp::as_string(v->value)) + " " + std::to_string(v->version)));
      });
    } else if (key.empty()) {
      say("ERROR missing key in: " + line);
    } else if (verb == "put") {
      kv.put(key, dcp::to_bytes(value), [say, key](dcp::result<std::uint64_t> version) {
        say("PUT " + key + (!version ? " error " + version.message() : " ok " + std::to_string(*version)));
      });
    } else if (verb == "get") {
      kv.get(key, [say, key](dcp::result<dcp::dht::stored_value> v) {
        say("GET " + key + (!v ? " error " + v.message() : " ok " + std::string(dcp::as_string(v->value))));
      });
    } else if (verb == "remove") {
      kv.remove(key, [say, key](dcp::result<std::uint64_t> version) {
        say("REMOVE " + key + (!version ? " error " + version.message() : " ok " + std::to_string(*version)));
      });
    } else if (verb == "owners") {
      router.lookup(dcp::node_id::hash(key), opt.store.replicas, [say, key](dcp::result<dcp::dht::lookup_result> r) {
        if (!r) return say("OWNERS " + key + " error " + r.message());
        std::string line = "OWNERS " + key;
        for (auto& c : r->owners) line += " " + c.addr.to_string();
        say(line);
      });
    } else if (verb == "watch") {
      if (watched.emplace(key, "").second && watched.size() == 1) poll_watches();
    } else {
      say("ERROR unknown command: " + verb);
    }
  };

  // commands, one per line, from stdin (a pipe or FIFO)
  asio::posix::stream_descriptor input(io, ::dup(STDIN_FILENO));
  asio::streambuf buffer(64 * 1024);  // a longer line is refused, not buffered without bound
  std::function<void()> read_line = [&] {
    asio::async_read_until(input, buffer, '\n', [&](std::error_code ec, std::size_t n) {
      if (ec) {  // end of input or an over-long line: stop, as the input can no longer be trusted
        if (ec != asio::error::operation_aborted) node.stop(), watch_timer.cancel();
        return;
      }
      std::string line(asio::buffers_begin(buffer.data()),
                       asio::buffers_begin(buffer.data()) + static_cast<std::ptrdiff_t>(n));
      buffer.consume(n);
      if (!line.empty() && line.back() == '\n') line.pop_back();
      command(line);
      if (!node.stopped()) read_line();
    });
  };

  // JOINED once the router says so
  asio::steady_timer join_timer(io);
  std::function<void()> wait_joined = [&] {
    if (router.joined()) return say("JOINED " + router.self().id.to_string());
    join_timer.expires_after(50ms);
    join_timer.async_wait([&](std::error_code e) {
      if (!e) wait_joined();
    });
  };

  asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&](const std::error_code& ec, int) {
    if (ec) return;
    node.stop();
  });
  // once the node stops, nothing else may keep run() going
  std::function<void()> watch_stop;
  asio::steady_timer stop_timer(io);
  watch_stop = [&] {
    if (node.stopped()) {
      signals.cancel();
      join_timer.cancel();
      watch_timer.cancel();
      input.cancel();
      return;
    }
    stop_timer.expires_after(100ms);
    stop_timer.async_wait([&](std::error_code e) {
      if (!e) watch_stop();
    });
  };

  node.start();
  say("LISTEN " + node.self().to_string());
  router.bootstrap(opt.contacts);
  wait_joined();
  read_line();
  watch_stop();
  io.run();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::signal(SIGPIPE, SIG_IGN);
  options opt;
  opt.transport.datagrams_allowed = true;  // the DHT's messages fit a datagram once values are bounded (below)
  bool have_listen = false;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (i + 1 >= argc) usage("missing value after " + std::string(arg));
    const std::string_view value = argv[++i];
    if (arg == "--transport") {
      if (auto e = opt.transport.parse(value)) usage(*e);
      continue;
    }
    if (arg == "--listen" || arg == "--contact") {
      auto a = dcp::address::parse(value);
      if (!a || !a->is_network()) usage("not an address: " + std::string(value));
      if (arg == "--listen")
        opt.net.listen = *a, have_listen = true;
      else
        opt.contacts.push_back({dcp::node_id{}, *a});  // its id is learned when it answers
    } else if (arg == "--router") {
      opt.router = value;
    } else if (arg == "--replicas") {
      const int r = std::atoi(std::string(value).c_str());
      if (r < 1 || r > 16) usage("--replicas must be in 1..16");
      opt.store.replicas = static_cast<std::size_t>(r);
    } else if (arg == "--sync") {
      auto d = dcp::parse_duration(value);
      if (!d) usage("--sync wants a duration such as 1s or 500ms");
      opt.store.sync_interval = *d;
    } else if (arg == "--watch-interval") {
      auto d = dcp::parse_duration(value);
      if (!d) usage("--watch-interval wants a duration such as 1s or 500ms");
      opt.watch_interval = *d;
    } else if (arg == "--sign-seed") {
      auto seed = dcp::from_hex(value);
      if (!seed || seed->size() != 32) usage("--sign-seed wants 64 hex digits (an Ed25519 seed)");
      opt.sign_seed = *seed;
    } else if (arg == "--seed") {
      opt.net.seed = std::strtoull(std::string(value).c_str(), nullptr, 10);
    } else {
      usage("unknown option " + std::string(arg));
    }
  }
  if (!have_listen) usage("--listen is required");
  if (auto e = opt.transport.parse_environment()) usage(*e);
  if (!opt.transport.chosen()) usage("--transport (or DCP_TRANSPORT) is required");
  opt.store.request_timeout = 3s;  // generous: a loaded machine answers slowly
  if (opt.transport.how == dcp::net::transport_spec::kind::udp_plaintext ||
      opt.transport.how == dcp::net::transport_spec::kind::udp_keyring) {
    if (opt.router != "kademlia") usage("--transport udp:... runs --router kademlia only");
    // One frame per 1,400-byte datagram: a put carries its key and value,
    // a sync message its summaries. Larger ones are refused at put().
    opt.store.max_key_size = 128;
    opt.store.max_value_size = 1024;
    opt.store.sync_batch = 24;
  }
  try {
    opt.net.log = [](const dcp::log_record& r) {
      std::cerr << r.node << ' ' << to_string(r.level) << ": " << r.text << '\n';
    };
    opt.net.level = dcp::log_level::warn;
    if (opt.router == "chord") return run<dcp::dht::chord<E>>(opt);
    if (opt.router == "pastry") return run<dcp::dht::pastry<E>>(opt);
    if (opt.router == "kademlia") return run<dcp::dht::kademlia<E>>(opt);
    if (opt.router == "tapestry") return run<dcp::dht::tapestry<E>>(opt);
    usage("--router must be chord, pastry, kademlia or tapestry, not '" + opt.router + "'");
  } catch (const std::exception& e) {
    std::cerr << "dht_node: " << e.what() << '\n';
    return 1;
  }
}
