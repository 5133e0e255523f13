// coord_replica: one replica of the coordination service (coord::server over
// a Raft log, coord::machine as its state machine) in its own process, over
// TCP (dcp::net), with its durable state in a directory (dcp::file_disk).
//
//   coord_replica --listen 127.0.0.1:7201 --peer 127.0.0.1:7202 --peer 127.0.0.1:7203
//                 --data /var/lib/coord/r1 [--sync batched|every_append|never]
//                 [--election-ms 150] [--heartbeat-ms 50] [--quiet]
//                 [--lease-seed HEX] [--disclose-holders] [--auto-compaction-retention N]
//                 [--quota SESSIONS,KEYS,BYTES]
//
// --quota: what one client may hold (coord::server_config::quotas; 0: no
// limit); give every replica the same (default 64,10000,8388608).
//
// With --lease-seed (32 bytes as 64 hex digits, the same on every replica),
// the leader seals Ed25519 lease tokens for grants (coord::lease_issuer);
// the replica prints `LEASE public_key=<hex>` for resource servers.
//
// Run 3 or 5 of them, each listing the others as --peer; clients
// (examples/coord_client.cpp) name all of them. A replica restarted on the
// same --data directory recovers its term, vote, log and snapshot from there
// and catches up from the leader.
//
// What it prints on stdout, one line each, times in microseconds of the
// system clock (so they compare with other processes on the machine):
//   LISTEN <address>
//   RECOVERED entries=<n> torn_bytes=<n> term=<t>
//   LEADER term=<t> at_us=<time>            this replica became leader (seen within 5 ms)
//   FOLLOWER term=<t> at_us=<time>          it stopped being leader
//   STATE role=<r> term=<t> commit=<i> applied=<i> fencing=<f> sessions=<n> at_us=<time>
//                                           on SIGUSR1, and once at exit
//   STOP                                    after SIGINT/SIGTERM
// Exit status: 0 after a signal, 1 when it cannot start (port in use, data
// directory unusable, corrupt state), 2 on bad usage, 3 when storage failed
// while running (a replica that cannot persist stops: see consensus/raft.hpp).
#include <algorithm>
#include <csignal>
#include <cstdio>
#include <functional>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <asio/io_context.hpp>
#include <asio/signal_set.hpp>
#include <asio/steady_timer.hpp>

#include "dcp/coord.hpp"
#include "dcp/coord/lease_issuer.hpp"
#include "dcp/core/file_disk.hpp"
#include "dcp/net.hpp"
#include "dcp/lease/keys.hpp"  // links dcp::lease (libcrypto)
#include "dcp/storage.hpp"
#include "dcp/net/transport_spec.hpp"  // --transport (links dcp::tls)

namespace {

using raft_t = dcp::consensus::raft<dcp::net::env, dcp::coord::machine, dcp::storage::durable_storage>;
using server_t = dcp::coord::server<dcp::net::env, raft_t>;

[[noreturn]] void usage(const std::string& why) {
  std::cerr
      << "coord_replica: " << why << "\n"
      << "usage: coord_replica --listen HOST:PORT [--peer HOST:PORT]... --data DIR\n"
         "                     [--sync batched|every_append|never] [--election-ms MS] [--heartbeat-ms MS]\n"
         "                     [--quiet] [--lease-seed HEX] [--disclose-holders] [--auto-compaction-retention N]\n"
         "                     [--quota SESSIONS,KEYS,BYTES]\n";
  std::cerr << "       --transport " << dcp::net::transport_spec_forms
            << "   (required, or DCP_TRANSPORT: how nodes authenticate)\n";
  std::exit(2);
}

long long wall_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

int positive(std::string_view flag, std::string_view value) {
  const int v = std::atoi(std::string(value).c_str());
  if (v <= 0) usage(std::string(flag) + " must be a positive number of milliseconds");
  return v;
}

}  // namespace

int main(int argc, char** argv) {
  dcp::net::config cfg;
  std::vector<dcp::address> members;
  std::string data;
  auto policy = dcp::storage::sync_policy::batched;
  int election_ms = 150, heartbeat_ms = 50, retention = 0;
  dcp::coord::client_quotas quotas = dcp::coord::server_config{}.quotas;
  bool have_listen = false, quiet = false, disclose = false;
  std::optional<dcp::bytes> lease_seed;
  dcp::net::transport_spec transport;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "--quiet") {
      quiet = true;
      continue;
    }
    if (arg == "--disclose-holders") {  // an operator's view: queries show holders' sessions and tokens
      disclose = true;
      continue;
    }
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
    } else if (arg == "--data") {
      data = value;
    } else if (arg == "--sync") {
      if (value == "batched")
        policy = dcp::storage::sync_policy::batched;
      else if (value == "every_append")
        policy = dcp::storage::sync_policy::every_append;
      else if (value == "never")
        policy = dcp::storage::sync_policy::never;
      else
        usage("--sync must be batched, every_append or never");
    } else if (arg == "--election-ms") {
      election_ms = positive(arg, value);
    } else if (arg == "--heartbeat-ms") {
      heartbeat_ms = positive(arg, value);
    } else if (arg == "--auto-compaction-retention") {  // revisions the leader keeps readable (0: off)
      retention = std::atoi(std::string(value).c_str());
      if (retention <= 0) usage("--auto-compaction-retention must be a positive number of revisions");
    } else if (arg == "--quota") {  // per client: sessions,keys,bytes (0: no limit)
      unsigned long long q[3];
      char tail = 0;
      if (std::sscanf(std::string(value).c_str(), "%llu,%llu,%llu%c", &q[0], &q[1], &q[2], &tail) != 3)
        usage("--quota must be SESSIONS,KEYS,BYTES (three numbers, 0: no limit)");
      quotas = {q[0], q[1], q[2]};
    } else if (arg == "--lease-seed") {
      lease_seed = dcp::from_hex(value);
      if (!lease_seed || lease_seed->size() != dcp::lease::ed25519_key_size)
        usage("--lease-seed must be 64 hex digits (an Ed25519 seed of 32 bytes)");
    } else {
      usage("unknown option " + std::string(arg));
    }
  }
  if (!have_listen) usage("--listen is required");
  if (auto e = transport.parse_environment()) usage(*e);
  if (!transport.chosen()) usage("--transport (or DCP_TRANSPORT) is required");
  if (data.empty()) usage("--data is required (the directory that keeps this replica's log and state)");
  std::sort(members.begin(), members.end());
  if (std::adjacent_find(members.begin(), members.end()) != members.end())
    usage("an address is given twice (--listen and --peer must all differ)");

  try {
    // Raft's own log lines tell us when this replica wins or loses leadership;
    // everything at warn and above goes to stderr.
    cfg.level = dcp::log_level::info;
    cfg.log = [quiet](const dcp::log_record& r) {
      if (r.level >= dcp::log_level::warn)
        std::cerr << r.node << ' ' << to_string(r.level) << ": " << r.text << '\n';
      else if (!quiet)
        std::cerr << r.node << ' ' << r.text << '\n';
    };
    // Bound how long a dead peer's frames are kept: a replica that is down
    // for long is given up on, and retried at the next heartbeat.
    cfg.reconnect.initial = std::chrono::milliseconds(20);
    cfg.reconnect.max = std::chrono::milliseconds(200);

    dcp::file_disk disk(data);
    dcp::storage::durable_storage store(disk, {.prefix = "raft", .policy = policy});
    const auto recovered = store.recovery();
    const auto recovered_term = store.state().term;

    dcp::consensus::raft_config rc;
    rc.members = members;
    rc.election_timeout_min = std::chrono::milliseconds(election_ms);
    rc.election_timeout_max = std::chrono::milliseconds(2 * election_ms);
    rc.heartbeat_interval = std::chrono::milliseconds(heartbeat_ms);
    rc.validate();

    asio::io_context io;
    dcp::net::any_node node(io, cfg, dcp::net::transport_options(transport));
    auto& raft = node.add<raft_t>(raft_t::default_id, rc, std::move(store), dcp::coord::machine{});
    dcp::coord::server_config sc;
    sc.disclose_holders = disclose;
    sc.auto_compaction_retention = static_cast<std::uint64_t>(retention);
    sc.quotas = quotas;
    auto& server = node.add<server_t>(dcp::coord::default_protocol_id, raft, sc);
    if (lease_seed) {
      auto key = dcp::lease::ed25519_private_key::from_seed(*lease_seed);
      if (!key) usage("--lease-seed: " + key.error().message());
      const dcp::lease::signing_key signer{*key, 1};
      server.issue_leases(dcp::coord::lease_issuer(signer));
      std::cout << "LEASE public_key=" << dcp::to_hex(key->public_key().raw()) << std::endl;
    }

    auto print_state = [&] {
      const auto& sm = raft.state_machine();
      std::cout << "STATE role=" << to_string(raft.role()) << " term=" << raft.current_term()
                << " commit=" << raft.commit_index() << " applied=" << raft.applied_index()
                << " fencing=" << sm.last_fencing() << " sessions=" << sm.sessions().size() << " at_us=" << wall_us()
                << std::endl;
    };

    asio::steady_timer watch(io);
    asio::signal_set stop_signals(io, SIGINT, SIGTERM);
    asio::signal_set usr1(io, SIGUSR1);
    auto shutdown = [&] {
      watch.cancel();
      stop_signals.cancel();
      usr1.cancel();
      node.stop();
    };

    // Role changes, seen within 5 ms (a poll costs a comparison; raft has no
    // role-change hook and the program does not need one).
    bool was_leader = false;
    bool storage_failed = false;
    std::function<void()> poll = [&] {
      if (raft.is_leader() != was_leader) {
        was_leader = raft.is_leader();
        std::cout << (was_leader ? "LEADER" : "FOLLOWER") << " term=" << raft.current_term() << " at_us=" << wall_us()
                  << std::endl;
      }
      if (raft.failed()) {
        std::cerr << "coord_replica: storage failed; stopping\n";
        storage_failed = true;
        return shutdown();
      }
      watch.expires_after(std::chrono::milliseconds(5));
      watch.async_wait([&](std::error_code ec) {
        if (!ec) poll();
      });
    };

    stop_signals.async_wait([&](const std::error_code& ec, int) {
      if (!ec) shutdown();
    });
    std::function<void()> on_usr1 = [&] {
      usr1.async_wait([&](const std::error_code& ec, int) {
        if (ec) return;
        print_state();
        on_usr1();
      });
    };
    on_usr1();

    node.start();
    std::cout << "LISTEN " << node.self() << std::endl;
    std::cout << "RECOVERED entries=" << recovered.entries << " torn_bytes=" << recovered.torn_bytes
              << " term=" << recovered_term << std::endl;
    poll();
    io.run();
    print_state();
    std::cout << "STOP" << std::endl;
    return storage_failed ? 3 : 0;
  } catch (const std::exception& e) {
    std::cerr << "coord_replica: " << e.what() << '\n';
    return 1;
  }
}
