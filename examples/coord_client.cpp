// coord_client: a client of the coordination service run by coord_replica
// processes, over TCP (dcp::net). Three modes:
//
// Workload (default): one session; `--ops N` rounds of lock(L), hold,
// unlock, then (with --sem) acquire(S, K permits), hold, release. Every
// acknowledged operation is printed with its fencing token and times, so a
// checker outside can verify the service (tests/coord/multiprocess_failover.sh):
//
//   coord_client --server 127.0.0.1:7201 --server ... --id c1 --ops 50 --lock L
//                [--sem S --permits 2] [--hold-ms 2] [--hold-final] [--ttl-ms 6000]
//
//   SESSION client=<id> session=<s> at_us=<t>
//   GRANT client=<id> session=<s> name=<n> permits=<k> token=<f> req_us=<t> ack_us=<t>
//                     req_us: acquire called; ack_us: the grant arrived (the grant is used from here)
//   RELEASE client=<id> session=<s> name=<n> token=<f> sent_us=<t> ack_us=<t> ok=<0|1>
//                     sent_us: release called (the grant is no longer used from here)
//   LOST client=<id> session=<s> name=<n> token=<f> at_us=<t>   the lease ran out: stopped using it
//   ERROR client=<id> op=<op> name=<n> what=<reason> at_us=<t> why="<words>"  the operation failed; it is retried
//   HOLD client=<id> session=<s> name=held-<id> token=<f> at_us=<t>   with --hold-final: a lock kept
//   TOKEN client=<id> name=<n> token=<f> sealed=<hex> at_us=<t>   with --tokens: the sealed lease token
//                     the leader issued for the grant (coord_replica --lease-seed), for a resource
//                     server in another process to verify (lease_check)
//   DONE client=<id> grants=<n> errors=<n> at_us=<t>
// With --hold-final the client then keeps its session (and the lock) until
// SIGTERM; otherwise it closes its session and exits.
// Times are microseconds of the system clock: comparable across processes.
//
// Probe (--probe NAME [--query NAME]...): opens a session, takes NAME and
// prints `PROBE name=<n> token=<f> session=<s>`, then asks the leader who
// holds each --query name (a linearizable read) and prints
// `HOLDER name=<n> session=<s> token=<f>` or `HOLDER name=<n> none`.
//
// Bench (--bench): lock+unlock latency (p50, p99) and throughput, with
// --clients C concurrent sessions (one dcp::net node each) in closed loops
// on C distinct locks; with --lease, session open+close (the service's lease
// grant and revoke); with --failover-cmd CMD, the time from running CMD
// (which kills the leader) to the next successful lock; with --waiter too
// (and --clients 2), the case: session 0 holds a lock, session 1
// waits for it, CMD kills the leader, session 0 releases; the time from CMD
// to session 1's grant (which must come under its first session, without an
// error); with --watchers W, the watch benchmark (the same definition as
// bench.js): --clients C writers put keys under one prefix in closed loops
// (--ops puts in all) while W other clients (one dcp::net node each) watch
// the prefix; each (put, watcher) pair is one latency sample, from the put
// call to the watcher's delivery on this process's clock, and the throughput
// is events delivered to all watchers per second. Prints CSV rows
// `dcp,<operation>,<clients>,<p50_ms>,<p99_ms>,<ops_per_s>` like
// benchmarks/peers/bench.js.
//
// Exit status: 0 done, 1 failed (no session within --give-up-ms, a probe that
// cannot finish), 2 bad usage.
#include <algorithm>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unistd.h>
#include <vector>

#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <asio/signal_set.hpp>
#include <asio/steady_timer.hpp>

#include "dcp/coord.hpp"
#include "dcp/net.hpp"
#include "dcp/net/transport_spec.hpp"  // --transport (links dcp::tls)

namespace {

using client_t = dcp::coord::client<dcp::net::env>;
using dcp::coord::grant;
using std::chrono::milliseconds;

[[noreturn]] void usage(const std::string& why) {
  std::cerr
      << "coord_client: " << why << "\n"
      << "usage: coord_client --server HOST:PORT... [--id NAME] [--ttl-ms MS] [--request-timeout-ms MS]\n"
         "         workload: [--ops N] [--lock NAME] [--sem NAME --permits K] [--hold-ms MS] [--hold-final] [--tokens]\n"
         "         probe:    --probe NAME [--query NAME]...\n"
         "         bench:    --bench [--clients C] [--ops N] [--lease] [--failover-cmd CMD [--waiter]] [--watchers W]\n";
  std::cerr << "       --transport " << dcp::net::transport_spec_forms
            << "   (required, or DCP_TRANSPORT: how nodes authenticate)\n";
  std::exit(2);
}

long long wall_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}
double mono_ms() {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

std::string reason(std::error_code ec) {
  std::string s = ec.message();
  std::replace(s.begin(), s.end(), ' ', '_');
  return s;
}

struct options {
  dcp::net::transport_spec transport;
  std::vector<dcp::address> servers;
  std::string id = "c" + std::to_string(::getpid());
  int ttl_ms = 6000, request_timeout_ms = 500, give_up_ms = 30000;
  int ops = 20, hold_ms = 1;
  std::string lock = "L", sem;
  std::uint32_t permits = 2;
  bool hold_final = false;
  bool tokens = false;
  std::string probe;
  std::vector<std::string> queries;
  bool bench = false, lease = false, waiter = false;
  int clients = 1, watchers = 0;
  std::string failover_cmd;
};

/// One session's node: a dcp::net node on an ephemeral loopback port hosting
/// one coord::client.
struct session_node {
  std::unique_ptr<dcp::net::any_node> node;
  client_t* client = nullptr;

  session_node(asio::io_context& io, const options& o) {
    dcp::net::config nc;
    nc.listen = dcp::address::loopback(0);
    nc.level = dcp::log_level::warn;
    // A client has other replicas to go to: the first failed connection to
    // one is reported (on_unreachable) and the client fails over at once,
    // instead of after the transport's default six attempts (about 1.5 s).
    nc.reconnect.give_up_after_attempts = 1;
    nc.log = [](const dcp::log_record& r) {
      std::cerr << r.node << ' ' << to_string(r.level) << ": " << r.text << '\n';
    };
    node = std::make_unique<dcp::net::any_node>(io, nc, dcp::net::transport_options(o.transport));
    dcp::coord::client_config cc;
    cc.servers = o.servers;
    cc.ttl = milliseconds(o.ttl_ms);
    cc.keepalive_every = milliseconds(o.ttl_ms / 6);
    cc.request_timeout = milliseconds(o.request_timeout_ms);
    cc.give_up_after = milliseconds(std::max(o.give_up_ms, o.request_timeout_ms));
    client = &node->add<client_t>(dcp::coord::default_protocol_id, cc);
    node->start();
  }
};

// ---------------------------------------------------------------- workload

class workload {
 public:
  workload(asio::io_context& io, client_t& c, const options& o) : io_(io), c_(c), o_(o), timer_(io) {
    c_.on_lost([this](const grant& g) {
      std::cout << "LOST client=" << o_.id << " session=" << session_ << " name=" << g.name << " token=" << g.fencing
                << " at_us=" << wall_us() << std::endl;
      if (current_ && current_->fencing == g.fencing) current_.reset();
    });
  }

  void start() { open(); }
  void stop() { timer_.cancel(); }

 private:
  void open() {
    const double since = mono_ms();
    c_.open_session([this, since](dcp::result<dcp::coord::session_id> s) {
      if (!s) {
        error("open_session", "-", s.explained());
        if (mono_ms() - since > o_.give_up_ms && !ever_opened_) {
          std::cerr << "coord_client: no session after " << o_.give_up_ms << " ms\n";
          std::exit(1);
        }
        return later(50, [this] { open(); });
      }
      ever_opened_ = true;
      session_ = *s;
      std::cout << "SESSION client=" << o_.id << " session=" << session_ << " at_us=" << wall_us() << std::endl;
      later(0, [this] { step(); });
    });
  }

  /// The next acquisition: round r takes the lock, then (with --sem) the semaphore.
  void step() {
    if (round_ == o_.ops) return finish();
    if (phase_ == 0)
      take(o_.lock, 1);
    else
      take(o_.sem, o_.permits);
  }

  void take(const std::string& name, std::uint32_t permits) {
    const long long req = wall_us();
    c_.acquire(name, permits, [this, name, permits, req](dcp::result<grant> g) {
      if (!g) return failed("acquire", name, g.explained());
      ++grants_;
      std::cout << "GRANT client=" << o_.id << " session=" << session_ << " name=" << name << " permits=" << permits
                << " token=" << g->fencing << " req_us=" << req << " ack_us=" << wall_us() << std::endl;
      current_ = *g;
      if (!o_.tokens) return later(o_.hold_ms, [this] { release(); });
      c_.lease(*g, [this, g = *g](dcp::result<dcp::bytes> t) {
        if (!t)
          error("lease", g.name, t.explained());
        else
          std::cout << "TOKEN client=" << o_.id << " name=" << g.name << " token=" << g.fencing
                    << " sealed=" << dcp::to_hex(*t) << " at_us=" << wall_us() << std::endl;
        later(o_.hold_ms, [this] { release(); });
      });
    });
  }

  void release() {
    if (!current_) return advance();  // lost meanwhile (printed by on_lost): nothing to release
    const grant g = *current_;
    current_.reset();
    const long long sent = wall_us();
    c_.release(g, [this, g, sent](dcp::result<void> r) {
      std::cout << "RELEASE client=" << o_.id << " session=" << session_ << " name=" << g.name << " token=" << g.fencing
                << " sent_us=" << sent << " ack_us=" << wall_us() << " ok=" << (r ? 1 : 0) << std::endl;
      if (!r) ++errors_;
      advance();
    });
  }

  void advance() {
    if (!o_.sem.empty() && phase_ == 0) {
      phase_ = 1;
    } else {
      phase_ = 0;
      ++round_;
    }
    later(0, [this] { step(); });
  }

  void failed(const char* op, const std::string& name, const dcp::explained_error& ec) {
    error(op, name, ec);
    if (c_.session() == 0) return later(50, [this] { open(); });  // the session is gone: a new one
    later(50, [this] { step(); });
  }

  void finish() {
    if (!o_.hold_final) return done();
    const std::string name = "held-" + o_.id;
    c_.lock(name, [this, name](dcp::result<grant> g) {
      if (!g) {
        error("lock", name, g.explained());
        if (c_.session() == 0) return later(50, [this] { open(); });
        return later(50, [this] { finish(); });
      }
      std::cout << "HOLD client=" << o_.id << " session=" << session_ << " name=" << name << " token=" << g->fencing
                << " at_us=" << wall_us() << std::endl;
      done();
    });
  }

  void done() {
    std::cout << "DONE client=" << o_.id << " grants=" << grants_ << " errors=" << errors_ << " at_us=" << wall_us()
              << std::endl;
    if (o_.hold_final) return;  // keep the session alive until SIGTERM
    c_.close_session([this](dcp::result<void>) { io_.stop(); });
  }

  void error(const char* op, const std::string& name, const dcp::explained_error& e) {
    ++errors_;
    std::cout << "ERROR client=" << o_.id << " op=" << op << " name=" << name << " what=" << reason(e.code)
              << " at_us=" << wall_us() << " why=\"" << (e.what.empty() ? e.code.message() : e.what) << '"'
              << std::endl;
  }

  /// Runs fn after `ms` (0: soon, never inside the caller).
  void later(int ms, std::function<void()> fn) {
    if (ms == 0) return asio::post(io_, std::move(fn));
    timer_.expires_after(milliseconds(ms));
    timer_.async_wait([fn = std::move(fn)](std::error_code ec) {
      if (!ec) fn();
    });
  }

  asio::io_context& io_;
  client_t& c_;
  const options& o_;
  asio::steady_timer timer_;
  dcp::coord::session_id session_ = 0;
  std::optional<grant> current_;
  int round_ = 0, phase_ = 0, grants_ = 0, errors_ = 0;
  bool ever_opened_ = false;
};

int run_workload(const options& o) {
  asio::io_context io;
  session_node s(io, o);
  workload w(io, *s.client, o);
  asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&](const std::error_code& ec, int) {
    if (ec) return;
    w.stop();
    s.node->stop();
  });
  w.start();
  io.run();
  return 0;
}

// ---------------------------------------------------------------- probe

int run_probe(const options& o) {
  asio::io_context io;
  session_node s(io, o);
  auto& c = *s.client;
  asio::steady_timer deadline(io);
  int status = 1;
  deadline.expires_after(milliseconds(o.give_up_ms));
  deadline.async_wait([&](std::error_code ec) {
    if (ec) return;
    std::cerr << "coord_client: the probe did not finish within " << o.give_up_ms << " ms\n";
    s.node->stop();
  });
  std::size_t answered = 0;
  auto finish = [&] {
    c.close_session([&](dcp::result<void>) {
      status = 0;
      deadline.cancel();
      s.node->stop();
    });
  };
  std::function<void()> open = [&] {
    c.open_session([&](dcp::result<dcp::coord::session_id> sid) {
      if (!sid) return open();
      c.lock(o.probe, [&](dcp::result<grant> g) {
        if (!g) {
          std::cerr << "coord_client: probe lock failed: " << g.message() << '\n';
          s.node->stop();
          return;
        }
        std::cout << "PROBE name=" << o.probe << " token=" << g->fencing << " session=" << c.session() << std::endl;
        if (o.queries.empty()) return finish();
        for (const auto& q : o.queries)
          c.observe(q, [&, q](std::optional<dcp::coord::holder> h) {
            if (h)
              std::cout << "HOLDER name=" << q << " session=" << h->session << " token=" << h->fencing << std::endl;
            else
              std::cout << "HOLDER name=" << q << " none" << std::endl;
            asio::post(io, [&, q] { c.unobserve(q); });
            if (++answered == o.queries.size()) finish();
          });
      });
    });
  };
  open();
  io.run();
  return status;
}

// ---------------------------------------------------------------- bench

double pct(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[static_cast<std::size_t>(p * static_cast<double>(v.size() - 1))];
}

void row(const std::string& op, int clients, const std::vector<double>& lat, double seconds) {
  std::printf("dcp,%s,%d,%.3f,%.3f,%.0f\n", op.c_str(), clients, pct(lat, 0.5), pct(lat, 0.99),
              seconds > 0 ? static_cast<double>(lat.size()) / seconds : 0.0);
  std::fflush(stdout);
}

/// Opens a session on every node; exits the process if that fails.
void open_all(asio::io_context& io, std::vector<std::unique_ptr<session_node>>& nodes, int give_up_ms) {
  std::size_t opened = 0;
  std::function<void(std::size_t)> open = [&](std::size_t i) {
    nodes[i]->client->open_session([&, i](dcp::result<dcp::coord::session_id> s) {
      if (!s) return open(i);
      if (++opened == nodes.size()) io.stop();
    });
  };
  for (std::size_t i = 0; i < nodes.size(); ++i) open(i);
  io.restart();
  io.run_for(milliseconds(give_up_ms));
  if (opened != nodes.size()) {
    std::cerr << "coord_client: only " << opened << " of " << nodes.size() << " sessions opened\n";
    std::exit(1);
  }
}

/// `clients` closed loops of lock+unlock on their own locks until `total` are done.
std::pair<std::vector<double>, double> lock_loops(asio::io_context& io,
                                                  std::vector<std::unique_ptr<session_node>>& nodes, int clients,
                                                  int total, const std::string& prefix) {
  std::vector<double> lat;
  lat.reserve(static_cast<std::size_t>(total));
  int issued = 0, finished = 0, idle = 0;
  std::function<void(int)> loop = [&](int c) {
    if (issued >= total) {
      if (++idle == clients) io.stop();
      return;
    }
    ++issued;
    const double start = mono_ms();
    auto& cl = *nodes[static_cast<std::size_t>(c)]->client;
    cl.lock(prefix + std::to_string(c), [&, c, start](dcp::result<grant> g) {
      if (!g) {
        std::cerr << "coord_client: lock failed: " << g.message() << '\n';
        --issued;
        return asio::post(io, [&, c] { loop(c); });
      }
      nodes[static_cast<std::size_t>(c)]->client->unlock(*g, [&, c, start](dcp::result<void>) {
        lat.push_back(mono_ms() - start);
        ++finished;
        loop(c);
      });
    });
  };
  const double t0 = mono_ms();
  for (int c = 0; c < clients; ++c) asio::post(io, [&, c] { loop(c); });
  io.restart();
  io.run();
  return {std::move(lat), (mono_ms() - t0) / 1000};
}

/// The watch benchmark: nodes[0, writers) put `total` keys under `prefix` in
/// closed loops, nodes[writers, writers + watchers) watch the prefix. Returns
/// one latency per (put, watcher) delivered (put call to delivery), the
/// seconds from the first put to the last delivery, and how many deliveries
/// were missing when it gave up.
struct watch_figures {
  std::vector<double> lat;
  double seconds = 0;
  std::size_t missing = 0;
};
watch_figures watch_loops(asio::io_context& io, std::vector<std::unique_ptr<session_node>>& nodes, int writers,
                          int watchers, int total, const std::string& prefix, int give_up_ms) {
  const std::string measured = prefix + "k";
  const dcp::bytes value(16, 'x');
  std::vector<double> put_at(static_cast<std::size_t>(total), -1);
  watch_figures f;
  f.lat.reserve(static_cast<std::size_t>(total) * static_cast<std::size_t>(watchers));
  const std::size_t expected = static_cast<std::size_t>(total) * static_cast<std::size_t>(watchers);
  std::vector<char> warmed(static_cast<std::size_t>(watchers), 0);
  int warm = 0, idle = 0;
  bool failed = false;
  double last_delivery = 0;
  auto finished = [&] { return idle == writers && f.lat.size() == expected; };
  std::vector<std::uint64_t> ids;
  for (int w = 0; w < watchers; ++w) {
    auto& c = *nodes[static_cast<std::size_t>(writers + w)]->client;
    ids.push_back(c.watch_prefix(prefix, 0, [&, w](dcp::result<std::vector<dcp::coord::watch_event>> r) {
      const double now = mono_ms();
      if (!r) {
        std::cerr << "coord_client: a watch ended: " << r.message() << '\n';
        failed = true;
        return io.stop();
      }
      for (const auto& e : *r) {
        if (e.kv.key.compare(0, measured.size(), measured) != 0) {  // a warm-up key: this watcher is in place
          if (!warmed[static_cast<std::size_t>(w)]) warmed[static_cast<std::size_t>(w)] = 1, ++warm;
          continue;
        }
        const auto i = std::strtoul(e.kv.key.c_str() + measured.size(), nullptr, 10);
        if (i >= put_at.size() || put_at[i] < 0) continue;
        f.lat.push_back(now - put_at[i]);
        last_delivery = now;
      }
      if (finished()) io.stop();
    }));
  }
  // Warm-up: a watch from "the next change" starts where the leader is when
  // it registers, so put a warm-up key until every watcher has seen one.
  asio::steady_timer timer(io);
  std::function<void()> warm_put = [&] {
    nodes[0]->client->put(prefix + "warm", value, [&](dcp::result<void>) {
      if (warm == watchers || failed) return io.stop();
      timer.expires_after(milliseconds(20));
      timer.async_wait([&](std::error_code ec) {
        if (!ec) warm_put();
      });
    });
  };
  warm_put();
  io.restart();
  io.run_for(milliseconds(give_up_ms));
  if (warm != watchers || failed) {
    std::cerr << "coord_client: only " << warm << " of " << watchers << " watches in place\n";
    std::exit(1);
  }
  int issued = 0;
  std::function<void(int)> loop = [&](int c) {
    if (issued >= total) {
      if (++idle == writers) {  // the writers are done: wait a while for the last deliveries
        if (finished()) return io.stop();
        timer.expires_after(milliseconds(give_up_ms));
        timer.async_wait([&](std::error_code ec) {
          if (!ec) io.stop();
        });
      }
      return;
    }
    const auto i = static_cast<std::size_t>(issued++);
    put_at[i] = mono_ms();
    nodes[static_cast<std::size_t>(c)]->client->put(measured + std::to_string(i), value, [&, c](dcp::result<void> r) {
      if (!r) std::cerr << "coord_client: put failed: " << r.message() << '\n';
      loop(c);
    });
  };
  const double t0 = mono_ms();
  for (int c = 0; c < writers; ++c) asio::post(io, [&, c] { loop(c); });
  io.restart();
  io.run();
  timer.cancel();
  for (int w = 0; w < watchers; ++w)
    nodes[static_cast<std::size_t>(writers + w)]->client->cancel_watch(ids[static_cast<std::size_t>(w)]);
  io.restart();
  io.poll();  // the cancelled timer's handler, while what it refers to lives
  f.missing = expected - f.lat.size();
  f.seconds = (last_delivery - t0) / 1000;
  return f;
}

int run_bench(const options& o) {
  asio::io_context io;
  std::vector<std::unique_ptr<session_node>> nodes;
  for (int i = 0; i < o.clients + o.watchers; ++i) nodes.push_back(std::make_unique<session_node>(io, o));
  open_all(io, nodes, o.give_up_ms);
  const std::string prefix = "bench-" + std::to_string(::getpid()) + "-";
  int status = 0;

  if (o.watchers > 0) {
    auto f = watch_loops(io, nodes, o.clients, o.watchers, o.ops, prefix + "watch/", o.give_up_ms);
    if (f.missing) std::cerr << "coord_client: " << f.missing << " deliveries missing\n";
    row("watch put->event (" + std::to_string(o.clients) + (o.clients == 1 ? " writer)" : " writers)"), o.watchers,
        f.lat, f.seconds);
    if (f.missing) status = 1;
  } else if (o.lease) {  // the session is the service's lease: grant (open) and revoke (close)
    auto& c = *nodes[0]->client;
    std::vector<double> lat;
    const double t0 = mono_ms();
    std::function<void()> once = [&] {
      if (static_cast<int>(lat.size()) == o.ops) return io.stop();
      const double start = mono_ms();
      c.close_session([&, start](dcp::result<void>) {
        c.open_session([&, start](dcp::result<dcp::coord::session_id> s) {
          if (s) lat.push_back(mono_ms() - start);
          once();
        });
      });
    };
    once();
    io.restart();
    io.run();
    row("session close+open (lease revoke+grant)", 1, lat, (mono_ms() - t0) / 1000);
  } else if (!o.failover_cmd.empty() && o.waiter) {
    if (nodes.size() < 2) usage("--waiter needs --clients 2");
    lock_loops(io, nodes, 2, 50, prefix);  // warm: both clients have found the leader
    auto& holder = *nodes[0]->client;
    auto& waiter = *nodes[1]->client;
    const auto waiter_session = waiter.session();
    const std::string name = prefix + "waited";
    std::optional<grant> held;
    holder.lock(name, [&](dcp::result<grant> g) {
      if (g) held = *g;
      io.stop();
    });
    io.restart();
    io.run_for(milliseconds(o.give_up_ms));
    if (!held) return std::cerr << "coord_client: the holder's lock failed\n", 1;
    double granted_ms = -1, released_ms = -1;
    std::string failure;
    bool unlocked = false;
    waiter.lock(name, [&](dcp::result<grant> g) {
      if (!g)
        failure = g.message();
      else
        granted_ms = mono_ms();
      if (unlocked || !g) io.stop();
    });
    io.restart();
    io.run_for(milliseconds(300));  // the waiter is queued
    if (granted_ms >= 0 || !failure.empty()) return std::cerr << "coord_client: the waiter did not wait\n", 1;
    const double t0 = mono_ms();
    if (std::system(o.failover_cmd.c_str()) != 0) {
      std::cerr << "coord_client: the failover command failed: " << o.failover_cmd << '\n';
      return 1;
    }
    holder.unlock(*held, [&](dcp::result<void> r) {
      if (!r) std::cerr << "coord_client: the holder's unlock failed: " << r.message() << '\n';
      released_ms = mono_ms() - t0;
      unlocked = true;
      if (granted_ms >= 0 || !failure.empty()) io.stop();
    });
    io.restart();
    io.run_for(milliseconds(o.give_up_ms));
    if (!failure.empty()) return std::cerr << "coord_client: the waiter's lock failed: " << failure << '\n', 1;
    if (granted_ms < 0)
      return std::cerr << "coord_client: the waiter was not granted within " << o.give_up_ms << " ms\n", 1;
    if (waiter.session() != waiter_session) return std::cerr << "coord_client: the waiter's session changed\n", 1;
    std::printf("dcp,failover-waiter,1,%.1f,%.1f,\n", granted_ms - t0, released_ms);
    std::printf("WAITER granted_ms=%.1f holder_release_ack_ms=%.1f\n", granted_ms - t0, released_ms);
  } else if (!o.failover_cmd.empty()) {
    lock_loops(io, nodes, 1, 50, prefix);  // warm: the client has found the leader
    auto& c = *nodes[0]->client;
    const double t0 = mono_ms();
    if (std::system(o.failover_cmd.c_str()) != 0) {
      std::cerr << "coord_client: the failover command failed: " << o.failover_cmd << '\n';
      return 1;
    }
    double ms = -1;
    std::function<void()> attempt = [&] {
      c.lock(prefix + "failover", [&](dcp::result<grant> g) {
        if (!g) return attempt();  // a session lost meanwhile is not the point here: keep trying
        ms = mono_ms() - t0;
        io.stop();
      });
    };
    attempt();
    io.restart();
    io.run_for(milliseconds(o.give_up_ms));
    if (ms < 0) {
      std::cerr << "coord_client: no grant within " << o.give_up_ms << " ms of the failover\n";
      return 1;
    }
    std::printf("dcp,failover,1,%.1f,%.1f,\n", ms, ms);
  } else {
    lock_loops(io, nodes, o.clients, std::min(o.ops, 20 * o.clients), prefix);  // warm-up
    auto [lat, secs] = lock_loops(io, nodes, o.clients, o.ops, prefix);
    row("lock+unlock", o.clients, lat, secs);
  }
  // Close the sessions rather than leave them to expire.
  std::size_t closed = 0;
  for (auto& n : nodes)
    n->client->close_session([&](dcp::result<void>) {
      if (++closed == nodes.size()) io.stop();
    });
  io.restart();
  io.run_for(milliseconds(2000));
  return status;
}

int positive(std::string_view flag, std::string_view value) {
  const int v = std::atoi(std::string(value).c_str());
  if (v <= 0) usage(std::string(flag) + " must be a positive number");
  return v;
}

}  // namespace

int main(int argc, char** argv) {
  options o;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "--hold-final") {
      o.hold_final = true;
      continue;
    }
    if (arg == "--tokens") {
      o.tokens = true;
      continue;
    }
    if (arg == "--bench") {
      o.bench = true;
      continue;
    }
    if (arg == "--waiter") {
      o.waiter = true;
      continue;
    }
    if (arg == "--lease") {
      o.lease = true;
      continue;
    }
    if (i + 1 >= argc) usage("missing value after " + std::string(arg));
    const std::string_view value = argv[++i];
    if (arg == "--transport") {
      if (auto e = o.transport.parse(value)) usage(*e);
      continue;
    }
    if (arg == "--server") {
      auto a = dcp::address::parse(value);
      if (!a || !a->is_network()) usage("not an address: " + std::string(value));
      o.servers.push_back(*a);
    } else if (arg == "--id") {
      o.id = value;
    } else if (arg == "--ttl-ms") {
      o.ttl_ms = positive(arg, value);
    } else if (arg == "--request-timeout-ms") {
      o.request_timeout_ms = positive(arg, value);
    } else if (arg == "--give-up-ms") {
      o.give_up_ms = positive(arg, value);
    } else if (arg == "--ops") {
      o.ops = positive(arg, value);
    } else if (arg == "--hold-ms") {
      o.hold_ms = std::atoi(std::string(value).c_str());
      if (o.hold_ms < 0) usage("--hold-ms must be >= 0");
    } else if (arg == "--lock") {
      o.lock = value;
    } else if (arg == "--sem") {
      o.sem = value;
    } else if (arg == "--permits") {
      o.permits = static_cast<std::uint32_t>(positive(arg, value));
    } else if (arg == "--probe") {
      o.probe = value;
    } else if (arg == "--query") {
      o.queries.emplace_back(value);
    } else if (arg == "--clients") {
      o.clients = positive(arg, value);
    } else if (arg == "--watchers") {
      o.watchers = positive(arg, value);
    } else if (arg == "--failover-cmd") {
      o.failover_cmd = value;
    } else {
      usage("unknown option " + std::string(arg));
    }
  }
  if (o.servers.empty()) usage("at least one --server is required");
  if (auto e = o.transport.parse_environment()) usage(*e);
  if (!o.transport.chosen()) usage("--transport (or DCP_TRANSPORT) is required");
  if (o.lock.empty()) usage("--lock must not be empty");
  if (o.ttl_ms < 300) usage("--ttl-ms must be at least 300 (keepalives go every ttl/6)");
  if (o.watchers > 0 && (!o.bench || o.lease || !o.failover_cmd.empty()))
    usage("--watchers is a --bench of its own: not with --lease or --failover-cmd, and only with --bench");
  try {
    if (o.bench) return run_bench(o);
    if (!o.probe.empty()) return run_probe(o);
    return run_workload(o);
  } catch (const std::exception& e) {
    std::cerr << "coord_client: " << e.what() << '\n';
    return 1;
  }
}
