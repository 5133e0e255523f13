// coord_jepsen_workload: the client side of the Jepsen-style test
// (tests/coord/multiprocess_jepsen.sh). K logical clients, each a
// coord::client on its own dcp::net node, run one operation at a time
// against the coordination service for T seconds: a random mix of get, put,
// compare-and-set and remove on a few keys, each put and cas writing a value
// never written before. Every operation is recorded (history.hpp): invoked
// and completed at CLOCK_MONOTONIC, with its result, or "unknown" when the
// client could not tell whether it took effect (a timeout, an outcome the
// service calls unknown, or still in flight when the run ends: Jepsen's
// :info). The history is written at the end, and checked by
// coord_jepsen_check.
//
//   coord_jepsen_workload --server HOST:PORT... --out FILE [--clients 6] [--seconds 20]
//                         [--keys 3] [--think-ms 2] [--request-timeout-ms 200] [--give-up-ms 2000]
//                         [--patient-timeout-ms 0 [--op-timeout-ms 2000]] [--seed N] [--transport SPEC]
//
// With --patient-timeout-ms P, the odd-numbered clients wait P ms (instead of
// --request-timeout-ms) before resending a request to another replica, and
// give up after max(give-up, 2P); and they stop waiting for an operation
// after a time drawn between a tenth of --op-timeout-ms and all of it
// (recorded unknown, as a Jepsen client's timeout) and go on with the next,
// on the same coord::client. Set P above the nemesis's
// pause of a leader: those clients then keep sending to the paused leader
// (gets go out at once; commands queue behind the one in flight) and take
// its answers when it wakes, still believing it leads, while the impatient
// clients have moved on to the new leader and written meanwhile. That is
// Jepsen's GC-pause case: a replica that served reads on the strength of
// being leader (a lease, or nothing) would answer stale the gets invoked
// after those writes. (A client that resends quickly never sees such an
// answer: the new leader has answered long before the old one wakes; and a
// get invoked before the pause may be linearized before the writes.)
//
// Prints a summary line: `WORKLOAD ops=<n> ok=<n> fail=<n> unknown=<n> ...`.
// Exit status 0 when the history was written, 1 on failure, 2 on bad usage.
#include <time.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include <asio/io_context.hpp>
#include <asio/signal_set.hpp>
#include <asio/steady_timer.hpp>

#include "dcp/coord.hpp"
#include "dcp/net.hpp"
#include "dcp/net/transport_spec.hpp"  // --transport (links dcp::tls)
#include "history.hpp"

namespace {

using client_t = dcp::coord::client<dcp::net::env>;
using std::chrono::milliseconds;
namespace jepsen = dcp::jepsen;

[[noreturn]] void usage(const std::string& why) {
  std::cerr
      << "coord_jepsen_workload: " << why << "\n"
      << "usage: coord_jepsen_workload --server HOST:PORT... --out FILE [--clients K] [--seconds T] [--keys N]\n"
         "           [--think-ms MS] [--request-timeout-ms MS] [--give-up-ms MS] [--patient-timeout-ms MS [--op-timeout-ms MS]]\n"
         "           [--seed N]\n";
  std::cerr << "       --transport " << dcp::net::transport_spec_forms << "   (required, or DCP_TRANSPORT)\n";
  std::exit(2);
}

std::int64_t monotonic_ns() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return std::int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

struct options {
  dcp::net::transport_spec transport;
  std::vector<dcp::address> servers;
  std::string out;
  int clients = 6, seconds = 20, keys = 3, think_ms = 2, request_timeout_ms = 200, give_up_ms = 2000,
      patient_timeout_ms = 0, op_timeout_ms = 2000;
  std::uint64_t seed = 0;
};

int positive(std::string_view flag, std::string_view value, bool zero_ok = false) {
  const int v = std::atoi(std::string(value).c_str());
  if (v < 0 || (v == 0 && !zero_ok)) usage(std::string(flag) + " must be a positive number");
  return v;
}

/// Errors after which a write certainly did not take effect (the client
/// refused it, or the service said "not applied"); any other error leaves
/// the outcome unknown.
bool certainly_not_applied(std::error_code ec) {
  return ec == dcp::errc::invalid_argument || ec == dcp::errc::busy || ec == dcp::errc::cancelled;
}

class logical_client {
 public:
  logical_client(asio::io_context& io, const options& o, int index, std::vector<jepsen::record>& history,
                 std::uint64_t seed)
      : io_(io), o_(o), index_(index), history_(history), timer_(io), op_timer_(io), rng_(seed) {
    dcp::net::config nc;
    nc.listen = dcp::address::loopback(0);
    nc.level = dcp::log_level::warn;
    nc.reconnect.give_up_after_attempts = 1;  // fail over at once on a refused connection (as coord_client)
    nc.log = [](const dcp::log_record& r) {
      std::cerr << r.node << ' ' << to_string(r.level) << ": " << r.text << '\n';
    };
    node_ = std::make_unique<dcp::net::any_node>(io, nc, dcp::net::transport_options(o.transport));
    dcp::coord::client_config cc;
    cc.servers = o.servers;
    const bool patient = o.patient_timeout_ms > 0 && index % 2 == 1;
    if (patient) op_timeout_ms_ = o.op_timeout_ms;
    cc.request_timeout = milliseconds(patient ? o.patient_timeout_ms : o.request_timeout_ms);
    cc.give_up_after = milliseconds(patient ? std::max(o.give_up_ms, 2 * o.patient_timeout_ms) : o.give_up_ms);
    client_ = &node_->add<client_t>(dcp::coord::default_protocol_id, cc);
    node_->start();
    process_ = static_cast<std::uint64_t>(index_);
  }

  void start(std::int64_t stop_at_ns) {
    stop_at_ns_ = stop_at_ns;
    next();
  }
  bool idle() const { return !inflight_; }
  /// The run is over: the operation in flight, if any, is recorded as unknown.
  void abandon() {
    if (inflight_) history_.push_back(std::move(*inflight_));
    inflight_.reset();
    timer_.cancel();
  }
  void stop_node() { node_->stop(); }

 private:
  void next() {
    if (monotonic_ns() >= stop_at_ns_) return;
    const int think = o_.think_ms == 0 ? 0 : static_cast<int>(rng_() % static_cast<unsigned>(o_.think_ms + 1));
    timer_.expires_after(milliseconds(think));
    timer_.async_wait([this](std::error_code ec) {
      if (!ec) issue();
    });
  }

  void issue() {
    if (monotonic_ns() >= stop_at_ns_) return;
    jepsen::record r;
    r.process = process_;
    r.key = "k" + std::to_string(rng_() % static_cast<unsigned>(o_.keys));
    const auto dice = rng_() % 10;
    const std::string fresh = "c" + std::to_string(index_) + "." + std::to_string(++written_);
    auto& seen = last_seen_[r.key];
    if (dice < 4)
      r.op = "get";
    else if (dice < 7)
      r.op = "put", r.arg1 = fresh;
    else if (dice < 9)
      r.op = "cas", r.arg1 = seen.empty() ? "nil" : seen, r.arg2 = fresh;  // from what it last read
    else
      r.op = "remove";
    r.invoke_ns = monotonic_ns();
    inflight_ = r;
    const std::string key = r.key;
    const auto serial = ++serial_;
    if (op_timeout_ms_ > 0) {  // the client stops waiting: outcome unknown (the coord::client may still complete it)
      // drawn for each operation, so that some operations are invoked late
      // in a pause and still waiting when the paused replica wakes
      const int wait = op_timeout_ms_ / 10 +
          static_cast<int>(rng_() % static_cast<unsigned>(op_timeout_ms_ - op_timeout_ms_ / 10 + 1));
      op_timer_.expires_after(milliseconds(wait));
      op_timer_.async_wait([this, serial](std::error_code ec) {
        if (!ec) finish(serial, jepsen::status::unknown, "-");
      });
    }
    if (r.op == "get") {
      client_->get(key, [this, key, serial](dcp::result<std::optional<dcp::bytes>> v) {
        if (!v) return finish(serial, jepsen::status::fail, "-");  // a read that failed changed nothing
        std::string s = *v ? std::string(dcp::as_string(**v)) : std::string("nil");
        if (serial == serial_) last_seen_[key] = s == "nil" ? std::string{} : s;
        finish(serial, jepsen::status::ok, s);
      });
    } else if (r.op == "put") {
      client_->put(key, dcp::to_bytes(r.arg1), [this, serial](dcp::result<dcp::coord::done_t> d) {
        if (!d) return failed(serial, d.error());
        finish(serial, jepsen::status::ok, "-");
      });
    } else if (r.op == "cas") {
      const auto expected = r.arg1 == "nil" ? dcp::bytes{} : dcp::to_bytes(r.arg1);
      client_->compare_and_set(key, expected, dcp::to_bytes(r.arg2), [this, serial](dcp::result<bool> d) {
        if (!d) return failed(serial, d.error());
        finish(serial, jepsen::status::ok, *d ? "swapped" : "mismatch");
      });
    } else {
      client_->remove(key, [this, serial](dcp::result<std::uint64_t> d) {
        if (!d) return failed(serial, d.error());
        finish(serial, jepsen::status::ok, *d == 1 ? "removed" : "absent");
      });
    }
  }

  void failed(std::uint64_t serial, std::error_code ec) {
    finish(serial, certainly_not_applied(ec) ? jepsen::status::fail : jepsen::status::unknown, "-");
  }

  void finish(std::uint64_t serial, jepsen::status s, std::string result) {
    if (!inflight_ || serial != serial_) return;  // abandoned: at the end of the run, or after --op-timeout-ms
    op_timer_.cancel();
    auto r = std::move(*inflight_);
    inflight_.reset();
    r.status = s;
    if (s != jepsen::status::unknown) r.complete_ns = monotonic_ns();
    r.result = std::move(result);
    history_.push_back(std::move(r));
    // After an unknown outcome the operation may still take effect at any
    // time: this client goes on as a new process (Jepsen's convention).
    if (s == jepsen::status::unknown) process_ += static_cast<std::uint64_t>(o_.clients);
    next();
  }

  asio::io_context& io_;
  const options& o_;
  int index_;
  std::vector<jepsen::record>& history_;
  asio::steady_timer timer_, op_timer_;
  int op_timeout_ms_ = 0;
  std::uint64_t serial_ = 0;  // of the operation in flight; answers to earlier ones are ignored
  std::mt19937_64 rng_;
  std::unique_ptr<dcp::net::any_node> node_;
  client_t* client_ = nullptr;
  std::uint64_t process_ = 0, written_ = 0;
  std::int64_t stop_at_ns_ = 0;
  std::optional<jepsen::record> inflight_;
  std::map<std::string, std::string> last_seen_;
};

}  // namespace

int main(int argc, char** argv) {
  options o;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (i + 1 >= argc) usage("missing value after " + std::string(arg));
    const std::string_view value = argv[++i];
    if (arg == "--transport") {
      if (auto e = o.transport.parse(value)) usage(*e);
    } else if (arg == "--server") {
      auto a = dcp::address::parse(value);
      if (!a || !a->is_network()) usage("not an address: " + std::string(value));
      o.servers.push_back(*a);
    } else if (arg == "--out") {
      o.out = value;
    } else if (arg == "--clients") {
      o.clients = positive(arg, value);
    } else if (arg == "--seconds") {
      o.seconds = positive(arg, value);
    } else if (arg == "--keys") {
      o.keys = positive(arg, value);
    } else if (arg == "--think-ms") {
      o.think_ms = positive(arg, value, true);
    } else if (arg == "--request-timeout-ms") {
      o.request_timeout_ms = positive(arg, value);
    } else if (arg == "--give-up-ms") {
      o.give_up_ms = positive(arg, value);
    } else if (arg == "--op-timeout-ms") {
      o.op_timeout_ms = positive(arg, value);
    } else if (arg == "--patient-timeout-ms") {
      o.patient_timeout_ms = positive(arg, value, true);
    } else if (arg == "--seed") {
      o.seed = std::strtoull(std::string(value).c_str(), nullptr, 10);
    } else {
      usage("unknown option " + std::string(arg));
    }
  }
  if (o.servers.empty()) usage("at least one --server is required");
  if (o.out.empty()) usage("--out is required");
  if (o.give_up_ms < o.request_timeout_ms) usage("--give-up-ms must be at least --request-timeout-ms");
  if (auto e = o.transport.parse_environment()) usage(*e);
  if (!o.transport.chosen()) usage("--transport (or DCP_TRANSPORT) is required");
  if (o.seed == 0) o.seed = std::random_device{}();
  try {
    asio::io_context io;
    std::vector<jepsen::record> history;
    std::vector<std::unique_ptr<logical_client>> clients;
    for (int c = 0; c < o.clients; ++c)
      clients.push_back(
          std::make_unique<logical_client>(io, o, c, history, o.seed * 1000 + static_cast<std::uint64_t>(c)));
    const std::int64_t start = monotonic_ns();
    const std::int64_t stop_at = start + std::int64_t{o.seconds} * 1'000'000'000;
    for (auto& c : clients) c->start(stop_at);
    // Run until T, then give the operations in flight up to give_up_ms to
    // complete; what is still in flight then is unknown.
    asio::steady_timer end(io);
    std::function<void()> wait_idle = [&] {
      const bool all_idle = std::all_of(clients.begin(), clients.end(), [](auto& c) { return c->idle(); });
      const auto wait_ms = std::max(o.give_up_ms, 2 * o.patient_timeout_ms) + 500;
      if (all_idle || monotonic_ns() > stop_at + std::int64_t{wait_ms} * 1'000'000) return io.stop();
      end.expires_after(milliseconds(20));
      end.async_wait([&](std::error_code ec) {
        if (!ec) wait_idle();
      });
    };
    end.expires_after(milliseconds(std::int64_t{o.seconds} * 1000));
    end.async_wait([&](std::error_code ec) {
      if (!ec) wait_idle();
    });
    asio::signal_set stop_signals(io, SIGINT, SIGTERM);  // stop early, still writing the history
    stop_signals.async_wait([&](const std::error_code& ec, int) {
      if (!ec) io.stop();
    });
    io.run();
    for (auto& c : clients) c->abandon();
    std::ofstream f(o.out);
    f << "# coord_jepsen_workload: " << o.clients << " clients, " << o.keys << " keys, " << o.seconds << " s, seed "
      << o.seed << "\n# invoke_ns complete_ns process op key arg1 arg2 status result\n";
    std::sort(history.begin(), history.end(), [](auto& a, auto& b) { return a.invoke_ns < b.invoke_ns; });
    std::size_t ok = 0, fail = 0, unknown = 0;
    for (auto& r : history) {
      f << jepsen::format(r) << '\n';
      ok += r.status == jepsen::status::ok;
      fail += r.status == jepsen::status::fail;
      unknown += r.status == jepsen::status::unknown;
    }
    f.close();
    if (!f) {
      std::cerr << "coord_jepsen_workload: cannot write " << o.out << '\n';
      return 1;
    }
    std::cout << "WORKLOAD ops=" << history.size() << " ok=" << ok << " fail=" << fail << " unknown=" << unknown
              << " seconds=" << o.seconds << " clients=" << o.clients << std::endl;
    for (auto& c : clients) c->stop_node();
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "coord_jepsen_workload: " << e.what() << '\n';
    return 1;
  }
}
