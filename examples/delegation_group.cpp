// delegation_group: one member of a coordinator group (multi-delegation):
// r of these processes coordinate the shards of a resource together, by
// quorum, over a Raft log kept in a directory (dcp::delegation::group).
//
//   delegation_group --listen 127.0.0.1:7050 --members 127.0.0.1:7050,127.0.0.1:7051,127.0.0.1:7052
//       --origin 127.0.0.1:7000 --origin-key HEX --data DIR
//       [--resource work] [--shards 4] [--stock NAME:SHARDS] [--group-seed N] [--token-ttl 2s] [--drift 50ms]
//       [--election-ms 300]
//
// --stock adds the shards of a stock resource (seats) to what the group
// coordinates: allocations are logged, batched and confirmed by the origin
// before any receipt is signed (delegation/group.hpp).
// --members lists every member in the same order on each (a member's place
// numbers its signing key in the certificate). Member i's key comes from
// --group-seed and i, so that every member knows every other's public key
// without a key exchange: a test program's shortcut; a deployment gives each
// member its own private key and the others its public half, as it gives a
// Raft cluster its addresses. Clients are delegation_clients --group with the
// same member list: they ask any member, and a follower names the leader.
//
// It prints
//   LISTEN <address>
//   LEADER term=<t> at_us=<wall us>      when this member becomes the group's leader
//   FOLLOWER term=<t> at_us=<wall us>    when it stops being
//   COUNTERS name=n ...                  on SIGINT/SIGTERM: what it refused or dropped (quorum signing, flood bounds)
// and runs until SIGINT/SIGTERM.
#include <algorithm>
#include <csignal>
#include <cstdlib>
#include <functional>
#include <iostream>
#include <string>
#include <string_view>
#include <vector>

#include <asio/io_context.hpp>
#include <asio/signal_set.hpp>
#include <asio/steady_timer.hpp>

#include "dcp/consensus.hpp"
#include "dcp/core/file_disk.hpp"
#include "dcp/delegation.hpp"
#include "dcp/net.hpp"
#include "dcp/storage.hpp"
#include "dcp/net/transport_spec.hpp"  // --transport (links dcp::tls)

namespace {

namespace dlg = dcp::delegation;
using raft_t = dcp::consensus::raft<dcp::net::env, dlg::ledger, dcp::storage::durable_storage>;
using group_t = dlg::group<dcp::net::env, raft_t>;

[[noreturn]] void usage(const std::string& why) {
  std::cerr
      << "delegation_group: " << why << "\n"
      << "usage: delegation_group --listen HOST:PORT --members HOST:PORT,... --origin HOST:PORT --origin-key HEX\n"
         "                        --data DIR [--resource NAME] [--shards S] [--stock NAME:SHARDS] [--group-seed N]\n"
         "                        [--token-ttl DURATION] [--drift DURATION] [--election-ms MS]\n";
  std::cerr << "       --transport " << dcp::net::transport_spec_forms
            << "   (required, or DCP_TRANSPORT: how nodes authenticate)\n";
  std::exit(2);
}

long long wall_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

/// Member i's private key, from the group's seed (see the header comment).
dcp::lease::ed25519_private_key member_key(std::uint64_t group_seed, std::size_t i) {
  dcp::bytes seed(32, 0x47);
  for (std::size_t b = 0; b < 8; ++b) seed[b] = static_cast<std::uint8_t>(group_seed >> (8 * b));
  for (std::size_t b = 0; b < 4; ++b) seed[8 + b] = static_cast<std::uint8_t>(i >> (8 * b));
  return dcp::lease::ed25519_private_key::from_seed(seed).value();
}

}  // namespace

int main(int argc, char** argv) {
  std::signal(SIGPIPE, SIG_IGN);
  dcp::net::config cfg;
  std::vector<dcp::address> members;
  dcp::address origin;
  dcp::bytes origin_key;
  std::string data, resource = "work";
  std::uint32_t shards = 4;
  std::string stock;
  std::uint32_t stock_shards = 0;
  std::uint64_t group_seed = 1;
  dcp::duration token_ttl = std::chrono::seconds(2), drift = std::chrono::milliseconds(50);
  int election_ms = 300;
  bool have_listen = false, have_origin = false;
  auto dur = [](std::string_view v, const char* what) {
    auto d = dcp::parse_duration(v);
    if (!d) usage(std::string(what) + " wants a duration such as 500ms or 2s");
    return *d;
  };
  dcp::net::transport_spec transport;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (i + 1 >= argc) usage("missing value after " + std::string(arg));
    const std::string_view value = argv[++i];
    if (arg == "--transport") {
      if (auto e = transport.parse(value)) usage(*e);
      continue;
    }
    if (arg == "--listen" || arg == "--origin") {
      auto a = dcp::address::parse(value);
      if (!a || !a->is_ip()) usage("not an IP address and port: " + std::string(value));
      if (arg == "--listen")
        cfg.listen = *a, have_listen = true;
      else
        origin = *a, have_origin = true;
    } else if (arg == "--members") {
      std::string list(value);
      for (std::size_t at = 0; at <= list.size();) {
        const auto comma = std::min(list.find(',', at), list.size());
        auto a = dcp::address::parse(std::string_view(list).substr(at, comma - at));
        if (!a || !a->is_ip()) usage("--members wants HOST:PORT,HOST:PORT,...");
        members.push_back(*a);
        at = comma + 1;
      }
    } else if (arg == "--origin-key") {
      auto k = dcp::from_hex(value);
      if (!k || k->size() != 32) usage("--origin-key wants the origin's public key: 64 hex digits (its KEY line)");
      origin_key = *k;
    } else if (arg == "--data") {
      data = value;
    } else if (arg == "--resource") {
      resource = value;
    } else if (arg == "--shards") {
      shards = static_cast<std::uint32_t>(std::atoi(std::string(value).c_str()));
    } else if (arg == "--stock") {
      const auto colon = value.find(':');
      stock = value.substr(0, colon);
      stock_shards = colon == std::string_view::npos
          ? 0
          : static_cast<std::uint32_t>(std::atoi(std::string(value.substr(colon + 1)).c_str()));
      if (stock.empty() || stock_shards < 1) usage("--stock wants NAME:SHARDS (a stock resource and its shard count)");
    } else if (arg == "--group-seed") {
      group_seed = std::strtoull(std::string(value).c_str(), nullptr, 10);
    } else if (arg == "--token-ttl") {
      token_ttl = dur(value, "--token-ttl");
    } else if (arg == "--drift") {
      drift = dur(value, "--drift");
    } else if (arg == "--election-ms") {
      election_ms = std::atoi(std::string(value).c_str());
      if (election_ms <= 0) usage("--election-ms must be a positive number of milliseconds");
    } else {
      usage("unknown option " + std::string(arg));
    }
  }
  if (!have_listen || !have_origin || origin_key.empty() || data.empty())
    usage("--listen, --origin, --origin-key and --data are required");
  if (auto e = transport.parse_environment()) usage(*e);
  if (!transport.chosen()) usage("--transport (or DCP_TRANSPORT) is required");
  const auto me = std::find(members.begin(), members.end(), cfg.listen);
  if (me == members.end()) usage("--members must include this member's --listen address");
  if (shards < 1) usage("--shards must be positive");
  if (stock == resource) usage("--stock names the same resource as --resource");

  try {
    cfg.level = dcp::log_level::warn;
    cfg.log = [](const dcp::log_record& r) {
      std::cerr << r.node << ' ' << to_string(r.level) << ": " << r.text << '\n';
    };
    cfg.reconnect.initial = std::chrono::milliseconds(20);
    cfg.reconnect.max = std::chrono::milliseconds(200);

    dcp::file_disk disk(data);
    dcp::storage::durable_storage store(disk, {.prefix = "ledger"});
    dcp::consensus::raft_config rc;
    rc.members = members;
    rc.election_timeout_min = std::chrono::milliseconds(election_ms);
    rc.election_timeout_max = std::chrono::milliseconds(2 * election_ms);
    rc.heartbeat_interval = std::chrono::milliseconds(std::max(1, election_ms / 4));

    dlg::group_config gc;
    gc.origin = origin;
    gc.origin_public_key = origin_key;
    for (std::size_t i = 0; i < members.size(); ++i)
      gc.members.push_back({members[i], member_key(group_seed, i).public_key().raw()});
    for (std::uint32_t s = 0; s < shards; ++s) gc.shards.emplace_back(resource, s);
    for (std::uint32_t s = 0; s < stock_shards; ++s) gc.shards.emplace_back(stock, s);
    gc.token_ttl = token_ttl;
    gc.max_drift = drift;
    gc.request_timeout = std::chrono::milliseconds(300);

    asio::io_context io;
    dcp::net::any_node node(io, cfg, dcp::net::transport_options(transport));
    auto& raft = node.add<raft_t>(raft_t::default_id, rc, std::move(store), dlg::ledger{});
    node.add<group_t>(dlg::default_protocol_id, raft, gc,
                      member_key(group_seed, static_cast<std::size_t>(me - members.begin())));

    // Role changes, seen within 5 ms (the test kills whichever member leads).
    asio::steady_timer watch(io);
    bool was_leader = false, stopping = false;
    std::function<void()> poll = [&] {
      if (stopping) return;  // a poll already queued when the stop came must not arm the timer again
      if (raft.is_leader() != was_leader) {
        was_leader = raft.is_leader();
        std::cout << (was_leader ? "LEADER" : "FOLLOWER") << " term=" << raft.current_term() << " at_us=" << wall_us()
                  << std::endl;
      }
      if (raft.failed()) {
        std::cerr << "delegation_group: storage failed; stopping\n";
        return node.stop();
      }
      watch.expires_after(std::chrono::milliseconds(5));
      watch.async_wait([&](std::error_code ec) {
        if (!ec) poll();
      });
    };
    asio::signal_set signals(io, SIGINT, SIGTERM);
    signals.async_wait([&](const std::error_code& ec, int) {
      if (ec) return;
      stopping = true;
      // What the member refused or dropped, for whoever reads the run.
      std::cout << "COUNTERS";
      for (const char* name : {"cosign_refused_slot_held", "cosign_refused", "cosign_refused_here",
                               "unsolicited_cosign_reply", "bad_cosignature", "too_many_in_flight", "wait_queue_full"})
        std::cout << ' ' << name << '=' << node.metrics().counter(dlg::default_protocol_id, name);
      std::cout << std::endl;
      watch.cancel();
      node.stop();
    });
    node.start();
    std::cout << "LISTEN " << node.self() << std::endl;
    poll();
    io.run();
    return raft.failed() ? 3 : 0;
  } catch (const std::exception& e) {
    std::cerr << "delegation_group: " << e.what() << '\n';
    return 1;
  }
}
