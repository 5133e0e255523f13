// delegation_clients: many client nodes of a delegating origin in one
// process, each a dcp::net node of its own (HyParView + Kademlia +
// delegation::peer + the work protocol), for a flash crowd over real TCP.
//
//   delegation_clients --origin 127.0.0.1:7000 --origin-key HEX --listen 127.0.0.1:7100 --nodes 50
//       --bootstrap 127.0.0.1:7100 [--surge-at UNIX_MS] [--spread 1s] [--run-for 10s]
//       [--shards 4] [--seat-shards 2] [--seed N] [--group HOST:PORT,...] [--group-resources work,...]
//       [--overlay-groups R]
//
// Node i listens on the --listen port + i and joins the overlay (HyParView,
// and Kademlia through its HyParView neighbours: delegation_overlay.hpp)
// through --bootstrap: the origin, when it is the overlay's entry point
// (delegation_origin --entry), or a node of its own that founds it. The surge begins at
// --surge-at or, without it, 200 ms after the process gets SIGUSR1. Every
// node, at a moment drawn in [surge, surge + spread):
//   - asks the coordinator of a random shard of "work" (the DHT owner of its
//     key, found by a Kademlia lookup) for a token, then presents it to the
//     origin with each unit of work, a few units per token, releasing it
//     after the last (at the origin, then at its coordinator), and again
//     until --run-for is over;
//   - asks for one seat of "seats" (a stock), once: from any of its shards.
// Nodes are also the coordinators: whichever the DHT names for a shard asks
// the origin for its delegation. With --group, the shards of the resources
// in --group-resources ("work" unless given; "work,seats" for both) are
// coordinated by that group of delegation_group processes instead (multi-
// delegation): a node asks a member drawn at random, and a follower names
// the leader. With --overlay-groups R, every shard is coordinated by the R
// nodes closest to its key in the overlay, a group formed on the first
// request (delegation::group_host). It prints
//   READY <nodes> in <ms> ms            once every node has joined the overlay
//   SEAT <holder> <request id>          each seat the origin confirmed (through a coordinator)
//   DONE units=... grants=... refused=... lost=... seats=... sold_out=... errors=...
// and keeps serving (its nodes coordinate for others) until SIGINT/SIGTERM.
#include <algorithm>
#include <csignal>
#include <cstdlib>
#include <functional>
#include <optional>
#include <iostream>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <asio/io_context.hpp>
#include <asio/signal_set.hpp>
#include <asio/steady_timer.hpp>

#include "dcp/delegation.hpp"
#include "dcp/dht.hpp"
#include "dcp/net.hpp"
#include "dcp/net/transport_spec.hpp"  // --transport (links dcp::tls)
#include "delegation_overlay.hpp"
#include "delegation_work.hpp"

namespace {

using namespace std::chrono_literals;
namespace dlg = dcp::delegation;
using E = dcp::net::env;
using peer_t = dlg::peer<E>;
using work_t = work::client<E>;

[[noreturn]] void usage(const std::string& why) {
  std::cerr
      << "delegation_clients: " << why << "\n"
      << "usage: delegation_clients --origin HOST:PORT --origin-key HEX --listen HOST:PORT --nodes N\n"
         "                          --bootstrap HOST:PORT [--surge-at UNIX_MS] [--spread DURATION] [--run-for DURATION]\n"
         "                          [--shards S] [--seat-shards K] [--seed N] [--group HOST:PORT,...]\n"
         "                          [--group-resources NAME,...] [--overlay-groups R]\n";
  std::cerr << "       --transport " << dcp::net::transport_spec_forms
            << "   (required, or DCP_TRANSPORT: how nodes authenticate)\n";
  std::exit(2);
}

struct options {
  dcp::net::transport_spec transport;
  dcp::address origin, listen, bootstrap;
  dcp::bytes origin_key;
  int nodes = 0;
  std::int64_t surge_at_ms = 0;
  dcp::duration spread = 1s, run_for = 10s;
  std::uint32_t shards = 4, seat_shards = 2;
  std::uint64_t seed = 1;
  std::vector<dcp::address> group;  ///< coordinators of group_resources (multi-delegation); empty: the DHT owners
  std::vector<std::string> group_resources{"work"};
  std::size_t overlay_groups = 0;  ///< R > 0: shards coordinated by groups of the R nodes closest to their keys
};

struct totals {
  std::uint64_t units = 0, grants = 0, refused = 0, lost = 0, seats = 0, sold_out = 0, errors = 0;
};

/// One client node and what it does in the surge.
class client_node {
 public:
  client_node(asio::io_context& io, const options& opt, int index, totals& sum)
      : opt_(opt), sum_(sum), timer_(io), rng_(opt.seed * 1000 + static_cast<std::uint64_t>(index)) {
    dcp::net::config nc;
    nc.listen = opt.listen.with_port(static_cast<std::uint16_t>(opt.listen.port() + index));
    nc.seed = opt.seed * 1000 + static_cast<std::uint64_t>(index);
    nc.log = [](const dcp::log_record& r) {
      std::cerr << r.node << ' ' << to_string(r.level) << ": " << r.text << '\n';
    };
    nc.level = dcp::log_level::error;
    node_ = std::make_unique<dcp::net::any_node>(io, nc, dcp::net::transport_options(opt.transport));
    // Every node joins HyParView through --bootstrap, and Kademlia through its
    // HyParView neighbours; the first node of a process with no other way in
    // founds both.
    const bool founder = opt.bootstrap == nc.listen;
    overlay_ = overlay::add<E>(*node_, founder ? std::nullopt : std::optional(opt.bootstrap));
    dlg::peer_config pc;
    pc.origin = opt.origin;
    pc.origin_public_key = opt.origin_key;
    // The origin may be the overlay's entry point (delegation_origin --entry):
    // it routes, but never coordinates.
    pc.locate = dlg::dht_locator(*overlay_.router, opt.origin);
    if (!opt.group.empty()) {  // the group's resources go to a member; the rest to the DHT owners
      pc.locate = [this, dht = pc.locate](const std::string& key,
                                          std::function<void(std::optional<dcp::address>)> done) {
        const auto resource = key.substr(0, key.find('#'));
        if (std::find(opt_.group_resources.begin(), opt_.group_resources.end(), resource) == opt_.group_resources.end())
          return dht(key, std::move(done));
        done(opt_.group[rng_.below(opt_.group.size())]);
      };
    }
    if (opt.overlay_groups > 0) {
      dlg::group_hosting gh;
      gh.size = opt.overlay_groups;
      gh.locate = dlg::dht_group_locator(*overlay_.router, opt.origin);
      pc.groups = gh;
    }
    pc.token_ttl = 2s;
    pc.request_timeout = 300ms;
    pc.give_up_after = 8s;
    peer_ = &node_->add<peer_t>(dlg::default_protocol_id, pc);
    work_ = &node_->add<work_t>(work::protocol, opt.origin, 2s);
    peer_->on_lost([this](const dlg::grant&) { ++sum_.lost; });
  }

  void start() {
    node_->start();
    if (opt_.bootstrap == node_->self()) overlay::found(overlay_);  // no other way in: it founds the overlay
  }
  /// The crowd arrives: this node at a moment drawn in [at, at + spread).
  void surge(dcp::wall_time at) {
    end_ = at + opt_.run_for;
    after(at + std::chrono::duration_cast<dcp::duration>(opt_.spread * rng_.uniform()) - dcp::system_wall_now(),
          [this] {
            acquire_work();
            acquire_seat();
          });
  }
  bool joined() const { return overlay_.router->joined(); }
  bool done() const { return done_; }
  void stop() {
    timer_.cancel();
    node_->stop();
  }

 private:
  void after(dcp::duration d, std::function<void()> fn) {
    timer_.expires_after(std::max(d, dcp::duration::zero()));
    timer_.async_wait([fn = std::move(fn)](std::error_code ec) {
      if (!ec) fn();
    });
  }
  bool over() const { return dcp::system_wall_now() >= end_; }

  void acquire_work() {
    if (over()) return void(done_ = true);
    const auto shard = static_cast<std::uint32_t>(rng_.below(opt_.shards));
    peer_->acquire("work", shard, 1, [this](dcp::result<dlg::grant> g) {
      if (!g) {
        if (++sum_.errors <= 5) std::cerr << "acquire: " << g.error().message() << '\n';
        return after(std::chrono::milliseconds(100 + rng_.below(200)), [this] { acquire_work(); });
      }
      ++sum_.grants;
      held_ = std::move(*g);
      units_left_ = 3 + static_cast<int>(rng_.below(6));
      next_unit();
    });
  }

  void next_unit() {
    // The token as last renewed (same fencing); gone if it expired unrenewed.
    std::optional<dlg::grant> now;
    for (auto& h : peer_->holds())
      if (h.token.fencing == held_->token.fencing && h.resource == held_->resource && h.shard == held_->shard) now = h;
    if (!now) {
      held_.reset();
      return after(50ms, [this] { acquire_work(); });
    }
    const bool last = --units_left_ <= 0 || over();
    work_->submit(now->sealed, now->sealed_certificate, last, [this, last](bool ok, const std::string& why) {
      if (!ok) {
        ++sum_.refused;
        if (sum_.refused <= 5) std::cerr << "refused: " << why << '\n';
      } else {
        ++sum_.units;
      }
      if (ok && !last) return next_unit();
      peer_->release(*held_);  // at the origin first (the last unit), then at its coordinator
      held_.reset();
      after(std::chrono::milliseconds(rng_.below(20)), [this] { acquire_work(); });
    });
  }

  void acquire_seat() {
    peer_->acquire_stock("seats", opt_.seat_shards, 1, [this](dcp::result<dlg::grant> g) {
      if (g) {
        ++sum_.seats;
        std::cout << "SEAT " << node_->self() << ' ' << g->request_id << std::endl;
      } else if (g.error() == dlg::errc::stock_exhausted) {
        ++sum_.sold_out;
      } else {
        ++sum_.errors;  // not retried: a new request would be a new allocation (its outcome is unknown)
      }
    });
  }

  const options& opt_;
  totals& sum_;
  std::unique_ptr<dcp::net::any_node> node_;
  overlay::parts<E> overlay_;
  peer_t* peer_ = nullptr;
  work_t* work_ = nullptr;
  asio::steady_timer timer_;
  dcp::rng rng_;
  dcp::wall_time end_{};
  std::optional<dlg::grant> held_;
  int units_left_ = 0;
  bool done_ = false;
};

}  // namespace

int main(int argc, char** argv) {
  std::signal(SIGPIPE, SIG_IGN);
  options opt;
  bool have_origin = false, have_listen = false, have_bootstrap = false;
  auto dur = [](std::string_view v, const char* what) {
    auto d = dcp::parse_duration(v);
    if (!d) usage(std::string(what) + " wants a duration such as 500ms or 10s");
    return *d;
  };
  auto addr = [](std::string_view v) {
    auto a = dcp::address::parse(v);
    if (!a || !a->is_ip()) usage("not an IP address and port: " + std::string(v));
    return *a;
  };
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (i + 1 >= argc) usage("missing value after " + std::string(arg));
    const std::string_view value = argv[++i];
    if (arg == "--transport") {
      if (auto e = opt.transport.parse(value)) usage(*e);
      continue;
    }
    if (arg == "--origin")
      opt.origin = addr(value), have_origin = true;
    else if (arg == "--listen")
      opt.listen = addr(value), have_listen = true;
    else if (arg == "--bootstrap")
      opt.bootstrap = addr(value), have_bootstrap = true;
    else if (arg == "--origin-key") {
      auto k = dcp::from_hex(value);
      if (!k || k->size() != 32) usage("--origin-key wants the origin's public key: 64 hex digits (its KEY line)");
      opt.origin_key = *k;
    } else if (arg == "--nodes")
      opt.nodes = std::atoi(std::string(value).c_str());
    else if (arg == "--surge-at")
      opt.surge_at_ms = std::atoll(std::string(value).c_str());
    else if (arg == "--spread")
      opt.spread = dur(value, "--spread");
    else if (arg == "--run-for")
      opt.run_for = dur(value, "--run-for");
    else if (arg == "--shards")
      opt.shards = static_cast<std::uint32_t>(std::atoi(std::string(value).c_str()));
    else if (arg == "--seat-shards")
      opt.seat_shards = static_cast<std::uint32_t>(std::atoi(std::string(value).c_str()));
    else if (arg == "--seed")
      opt.seed = std::strtoull(std::string(value).c_str(), nullptr, 10);
    else if (arg == "--overlay-groups") {
      opt.overlay_groups = static_cast<std::size_t>(std::atoi(std::string(value).c_str()));
      if (opt.overlay_groups < 1 || opt.overlay_groups > 16)
        usage("--overlay-groups wants a group size in 1..16 (3 or 5)");
    } else if (arg == "--group") {
      std::string list(value);
      for (std::size_t at = 0; at <= list.size();) {
        const auto comma = std::min(list.find(',', at), list.size());
        opt.group.push_back(addr(std::string_view(list).substr(at, comma - at)));
        at = comma + 1;
      }
    } else if (arg == "--group-resources") {
      opt.group_resources.clear();
      std::string list(value);
      for (std::size_t at = 0; at <= list.size();) {
        const auto comma = std::min(list.find(',', at), list.size());
        opt.group_resources.push_back(list.substr(at, comma - at));
        at = comma + 1;
      }
    } else
      usage("unknown option " + std::string(arg));
  }
  if (!have_origin || !have_listen || !have_bootstrap || opt.origin_key.empty())
    usage("--origin, --origin-key, --listen and --bootstrap are required");
  if (auto e = opt.transport.parse_environment()) usage(*e);
  if (!opt.transport.chosen()) usage("--transport (or DCP_TRANSPORT) is required");
  if (opt.nodes < 1 || opt.nodes > 1000) usage("--nodes must be in 1..1000");
  if (opt.listen.port() + opt.nodes > 65536) usage("--listen port + --nodes passes 65535");
  if (opt.surge_at_ms < 0) usage("--surge-at wants a Unix time in milliseconds");
  if (opt.shards < 1 || opt.seat_shards < 1) usage("--shards and --seat-shards must be positive");
  if (opt.overlay_groups > 0 && !opt.group.empty()) usage("--overlay-groups and --group exclude each other");
  try {
    asio::io_context io;
    totals sum;
    std::vector<std::unique_ptr<client_node>> nodes;
    for (int i = 0; i < opt.nodes; ++i) nodes.push_back(std::make_unique<client_node>(io, opt, i, sum));
    // Nodes come up 10 ms apart, as a real crowd's do; the surge is timed by --surge-at.
    asio::steady_timer starter(io);
    std::size_t started = 0;
    std::function<void()> start_next = [&] {
      nodes[started]->start();
      if (++started == nodes.size()) return;
      starter.expires_after(10ms);
      starter.async_wait([&](std::error_code ec) {
        if (!ec) start_next();
      });
    };
    start_next();
    // The surge: at --surge-at, or 200 ms after SIGUSR1 (once a test has seen every process READY).
    auto surge_all = [&](dcp::wall_time at) {
      for (auto& n : nodes) n->surge(at);
    };
    if (opt.surge_at_ms > 0) surge_all(dcp::wall_time(std::chrono::milliseconds(opt.surge_at_ms)));
    asio::signal_set go(io, SIGUSR1);
    go.async_wait([&](const std::error_code& ec, int) {
      if (!ec) surge_all(dcp::system_wall_now() + 200ms);
    });

    const auto began = std::chrono::steady_clock::now();
    asio::steady_timer watch(io);
    bool ready = false, reported = false, stopping = false;
    std::function<void()> check = [&] {
      if (stopping) return;  // a check already queued when the stop came must not arm the timer again
      if (!ready && std::all_of(nodes.begin(), nodes.end(), [](auto& n) { return n->joined(); })) {
        ready = true;
        std::cout
            << "READY " << nodes.size() << " in "
            << std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - began).count()
            << " ms" << std::endl;
      }
      if (!reported && std::all_of(nodes.begin(), nodes.end(), [](auto& n) { return n->done(); })) {
        reported = true;
        std::cout << "DONE units=" << sum.units << " grants=" << sum.grants << " refused=" << sum.refused
                  << " lost=" << sum.lost << " seats=" << sum.seats << " sold_out=" << sum.sold_out
                  << " errors=" << sum.errors << std::endl;
      }
      watch.expires_after(100ms);
      watch.async_wait([&](std::error_code ec) {
        if (!ec) check();
      });
    };
    check();
    asio::signal_set signals(io, SIGINT, SIGTERM);
    signals.async_wait([&](const std::error_code& ec, int) {
      if (ec) return;
      stopping = true;
      watch.cancel();
      starter.cancel();
      go.cancel();
      for (std::size_t i = 0; i < started; ++i) nodes[i]->stop();
    });
    io.run();
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "delegation_clients: " << e.what() << '\n';
    return 1;
  }
}
