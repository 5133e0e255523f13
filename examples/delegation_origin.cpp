// delegation_origin: a resource server that delegates the coordination of its
// capacity to its clients (dcp::delegation::origin over TCP), and the auditor
// that checks its record afterwards.
//
//   delegation_origin --listen 127.0.0.1:7000 --record FILE
//       [--capacity 20] [--shards 4] [--work 20ms] [--seats 150] [--seat-shards 2]
//       [--validity 3s] [--drift 50ms] [--key-seed HEX64] [--work-tokens single|quorum]
//
// It serves work: C units at once (--capacity, resource "work"), each taking
// --work, and refuses any unit without a valid token presented by its holder
// (admission is offline: a table look-up and one signature check). It also
// sells --seats seats (resource "seats", a stock). It prints
//   LISTEN <address>
//   KEY <origin public key, hex>       the root of trust clients are given
//   COORDINATOR <shard> <epoch> <address>...  the first token seen of each epoch: its coordinator (a group's members)
//   STATS ...                          at exit (SIGINT, SIGTERM)
// and writes its record of admissions to FILE:
//   ORIGIN <key hex> <capacity> <work us> <drift us> <seats>
//   TOKEN <n> <presenter> <token hex> <certificate hex>   each distinct token admitted
//   START <wall us> <n> <load>          a unit of work begins under token n
//   END <wall us> <n> <load>
//   ALLOC <holder> <request id> <units> every seat allocated (written at exit)
//
//   delegation_origin --audit FILE [--claims FILE] [--busy-until UNIX_US]
//
// With --entry the origin is also the overlay's entry point: a HyParView and
// Kademlia node (delegation_overlay.hpp, the clients' configuration) that
// founds the overlay, so clients need no address but the origin's; clients'
// locate never names it a coordinator.
//
// The audit checks a record from outside, with its own code path: every token admitted
// was signed by a coordinator the origin had delegated that shard to (the
// certificate under the origin's key), presented by its holder, for a unit of
// work that ended before the token and its delegation did; epochs of a shard
// never overlapped; the load never exceeded the capacity; and every seat a
// client was told it has (CLAIMS: "SEAT <holder> <request id>" lines) exists
// at the origin exactly once, never more seats than there are. Prints
// "AUDIT ok ...", then per shard and epoch "EPOCH <shard> <epoch> <first
// start us>" and per shard "GAP <shard> <longest gap between unit starts, us>
// <when it began, us> <last start, us>" (with --busy-until, only gaps that
// began before it, and none past it: the crowd's leaving is no outage), and exits 0; or "AUDIT FAIL <why>"
// and exits 1.
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <map>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include <asio/io_context.hpp>
#include <asio/signal_set.hpp>

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

[[noreturn]] void usage(const std::string& why) {
  std::cerr
      << "delegation_origin: " << why << "\n"
      << "usage: delegation_origin --listen HOST:PORT --record FILE [--capacity C] [--shards S] [--work DURATION]\n"
         "                         [--seats N] [--seat-shards K] [--validity DURATION] [--drift DURATION] [--key-seed HEX64]\n"
         "                         [--work-tokens single|quorum]   (quorum: a group's work tokens need a quorum of its members' signatures)\n"
         "                         [--entry]   (the overlay's entry point: a HyParView and Kademlia node clients join through)\n"
         "       delegation_origin --audit FILE [--claims FILE] [--busy-until UNIX_US]\n";
  std::cerr << "       --transport " << dcp::net::transport_spec_forms
            << "   (required, or DCP_TRANSPORT: how nodes authenticate)\n";
  std::exit(2);
}

std::int64_t micros(dcp::wall_time t) {
  return std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch()).count();
}

/// The service: C units of work at once, each under a valid token.
template <dcp::Env Env> class work_server {
 public:
  using messages = work::all;
  static constexpr dcp::counter_set counters{{{"unexpected_message", "a reply sent to the server, dropped"}}};
  static constexpr std::string_view name = "work_server";
  static constexpr dcp::protocol_id default_id = work::protocol;

  work_server(Env env, dlg::origin<Env>& origin, dcp::duration work_time, dcp::duration drift, std::ostream& record)
      : env_(std::move(env)), origin_(origin), work_(work_time), drift_(drift), record_(record) {}
  void start() {}

  void on_message(const dcp::address& from, const work::request& m) {
    const auto now = env_.wall_now();
    auto t = origin_.admit(m.token, now, from);
    if (!t) return refuse(from, m.id, t.error().message());
    const auto key = std::pair{t->resource, t->fencing};
    // The unit must end while the token is honoured: a unit that outlived its
    // token would overlap the next holder's.
    if (now + work_ > dcp::lease::verifier_deadline(*t, drift_))
      return refuse(from, m.id, "token expires before the work would end: renew it");
    if (inflight_[key] >= t->permits) return refuse(from, m.id, "more units at once than the token's permits");
    const auto n = token_number(from, m);
    ++inflight_[key];
    ++load_;
    max_load_ = std::max(max_load_, load_);
    record_ << "START " << micros(now) << ' ' << n << ' ' << load_ << '\n';
    env_.arm(work_, [this, from, id = m.id, last = m.last, n, key, tok = std::move(*t)] {
      --load_;
      if (--inflight_[key] == 0) inflight_.erase(key);
      record_ << "END " << micros(env_.wall_now()) << ' ' << n << ' ' << load_ << '\n';
      if (last) origin_.release(tok);  // after its last unit: the permits are free here at once
      env_.send(from, work::reply{id, true, {}});
    });
  }
  void on_message(const dcp::address&, const work::reply&) { env_.count("unexpected_message"); }

  std::uint64_t units() const { return units_; }
  std::uint64_t refused() const { return refused_; }
  std::uint64_t max_load() const { return max_load_; }

 private:
  void refuse(const dcp::address& to, std::uint64_t id, std::string why) {
    ++refused_;
    ++reasons_[why];
    env_.send(to, work::reply{id, false, std::move(why)});
  }
  std::uint64_t token_number(const dcp::address& from, const work::request& m) {
    ++units_;
    auto [it, fresh] = numbers_.try_emplace(m.token, numbers_.size() + 1);
    if (fresh) {
      record_ << "TOKEN " << it->second << ' ' << from << ' ' << dcp::to_hex(m.token) << ' '
              << dcp::to_hex(m.certificate) << '\n';
      if (auto c = dlg::open_certificate(m.certificate, origin_.public_key());
          c && seen_epochs_.insert({c->key(), c->epoch}).second) {
        std::cout << "COORDINATOR " << c->key() << ' ' << c->epoch;
        for (auto& member : c->coordinators) std::cout << ' ' << member.addr;  // the first, then the rest of a group
        std::cout << std::endl;
      }
    }
    return it->second;
  }

 public:
  std::map<std::string, std::uint64_t> reasons_;

 private:
  Env env_;
  dlg::origin<Env>& origin_;
  dcp::duration work_, drift_;
  std::ostream& record_;
  std::map<std::pair<std::string, std::uint64_t>, std::uint32_t> inflight_;  // units in progress per token
  std::map<dcp::bytes, std::uint64_t> numbers_;  // a test program: every distinct token, for the record
  std::set<std::pair<std::string, std::uint32_t>> seen_epochs_;
  std::uint64_t load_ = 0, max_load_ = 0, units_ = 0, refused_ = 0;
};

struct serve_options {
  dcp::net::transport_spec transport;
  dcp::net::config net;
  std::string record;
  std::uint64_t capacity = 20, seats = 150;
  std::uint32_t shards = 4, seat_shards = 2;
  dcp::duration work = 20ms, validity = 3s, drift = 50ms;
  std::optional<dcp::bytes> key_seed;
  bool quorum_signed = false;  // work tokens of a group signed by a quorum of it (dcp/delegation/token.hpp)
  bool entry = false;  // a node of the overlay too (HyParView + Kademlia), founding it: clients join through the origin
};

int serve(const serve_options& opt) {
  dcp::bytes seed(32);
  if (opt.key_seed) {
    seed = *opt.key_seed;
  } else {
    std::random_device rd;
    for (auto& b : seed) b = static_cast<std::uint8_t>(rd());
  }
  auto key = dcp::lease::ed25519_private_key::from_seed(seed).value();
  const auto pub = key.public_key().raw();

  dlg::origin_config oc;
  oc.resources = {{"work", dlg::capacity_kind::concurrency, opt.capacity, opt.shards, opt.quorum_signed},
                  {"seats", dlg::capacity_kind::stock, opt.seats, opt.seat_shards}};
  oc.certificate_validity = opt.validity;
  oc.max_drift = opt.drift;

  std::ofstream record(opt.record, std::ios::trunc);
  if (!record) throw std::runtime_error("cannot write " + opt.record);
  record << "ORIGIN " << dcp::to_hex(pub) << ' ' << opt.capacity << ' '
         << std::chrono::duration_cast<std::chrono::microseconds>(opt.work).count() << ' '
         << std::chrono::duration_cast<std::chrono::microseconds>(opt.drift).count() << ' ' << opt.seats << '\n';

  asio::io_context io;
  dcp::net::any_node node(io, opt.net, dcp::net::transport_options(opt.transport));
  auto& org = node.add<dlg::origin<E>>(dlg::default_protocol_id, dcp::lease::signing_key(std::move(key)), oc);
  auto& server = node.add<work_server<E>>(work::protocol, org, opt.work, opt.drift, record);
  // The entry point founds the clients' overlay (delegation_overlay.hpp); they
  // never name the origin as a coordinator.
  std::optional<overlay::parts<E>> entry;
  if (opt.entry) entry = overlay::add<E>(node, std::nullopt);

  asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&](const std::error_code& ec, int) {
    if (ec) return;
    for (auto& [holder_request, units] : org.allocations("seats"))
      record << "ALLOC " << holder_request.first << ' ' << holder_request.second << ' ' << units << '\n';
    record.flush();
    auto& s = org.stats();
    std::cout << "STATS units=" << server.units() << " refused=" << server.refused()
              << " max_load=" << server.max_load() << " certificates=" << s.certificates << " renewals=" << s.renewals
              << " batches=" << s.batches << " seats=" << org.allocated("seats") << " messages_in=" << s.messages_in
              << std::endl;
    for (auto& [why, n] : server.reasons_) std::cout << "REFUSED " << n << ' ' << why << std::endl;
    node.stop();
  });
  node.start();
  if (entry) overlay::found(*entry);
  std::cout << "LISTEN " << node.self() << '\n' << "KEY " << dcp::to_hex(pub) << std::endl;
  io.run();
  return 0;
}

// ---- the audit ----

struct audit_failure : std::runtime_error {
  using std::runtime_error::runtime_error;
};

std::vector<std::string> words(const std::string& line) {
  std::istringstream in(line);
  std::vector<std::string> out;
  for (std::string w; in >> w;) out.push_back(w);
  return out;
}

/// `busy_until`: when the clients stopped asking for work; gaps after it are
/// the crowd leaving, not outages (wall_time::max(): the whole record).
int audit(const std::string& path, const std::string& claims_path, dcp::wall_time busy_until) {
  std::ifstream in(path);
  if (!in) usage("cannot read " + path);
  std::optional<dcp::lease::verification_key> origin_key;
  std::uint64_t capacity = 0, seats = 0;
  dcp::duration work{}, drift{};
  struct admitted {
    dcp::lease::token token;
    dlg::certificate cert;
  };
  std::map<std::uint64_t, admitted> tokens;
  struct epoch_span {
    dcp::wall_time first_start = dcp::wall_time::max(), last_not_after = dcp::wall_time::min();
  };
  struct shard_service {  // when a shard's units started, across its epochs
    dcp::wall_time last_start = dcp::wall_time::min();
    dcp::duration longest_gap{};
    dcp::wall_time gap_began{};
  };
  std::map<std::string, shard_service> service;
  std::map<std::string, std::map<std::uint32_t, epoch_span>> epochs;  // shard -> epoch -> span
  std::map<std::pair<std::string, std::uint64_t>, std::uint32_t> allocations;
  std::uint64_t load = 0, max_load = 0, units = 0, allocated = 0;
  std::size_t line_no = 0;
  try {
    for (std::string line; std::getline(in, line);) {
      ++line_no;
      auto w = words(line);
      if (w.empty()) continue;
      auto fail = [&](const std::string& why) { throw audit_failure("line " + std::to_string(line_no) + ": " + why); };
      if (w[0] == "ORIGIN" && w.size() == 6) {
        auto pk = dcp::from_hex(w[1]);
        if (!pk) fail("bad origin key");
        auto k = dcp::lease::ed25519_public_key::from_bytes(*pk);
        if (!k) fail("bad origin key");
        origin_key.emplace(*k, 0);
        capacity = std::stoull(w[2]);
        work = std::chrono::microseconds(std::stoll(w[3]));
        drift = std::chrono::microseconds(std::stoll(w[4]));
        seats = std::stoull(w[5]);
      } else if (!origin_key) {
        fail("the record does not start with ORIGIN");
      } else if (w[0] == "TOKEN" && w.size() == 5) {
        auto presenter = dcp::address::parse(w[2]);
        auto tok = dcp::from_hex(w[3]);
        auto cert_bytes = dcp::from_hex(w[4]);
        if (!presenter || !tok || !cert_bytes) fail("unreadable TOKEN line");
        auto c = dlg::open_certificate(*cert_bytes, *origin_key);
        if (!c) fail("token " + w[1] + " admitted under a certificate the origin did not sign: " + c.error().message());
        auto t = dlg::check_token(*tok, *c);
        if (!t) fail("token " + w[1] + " not signed by its certificate's coordinator: " + t.error().message());
        if (t->holder != *presenter) fail("token " + w[1] + " presented by " + w[2] + ", not its holder");
        auto& span = epochs[c->key()][c->epoch];
        span.last_not_after = std::max(span.last_not_after, c->not_after);
        tokens[std::stoull(w[1])] = {std::move(*t), std::move(*c)};
      } else if (w[0] == "START" && w.size() == 4) {
        const dcp::wall_time at{std::chrono::microseconds(std::stoll(w[1]))};
        auto it = tokens.find(std::stoull(w[2]));
        if (it == tokens.end()) fail("work under an unknown token");
        auto& [t, c] = it->second;
        if (at < c.not_before) fail("work before its delegation began");
        const auto honoured_until = std::min(t.expiry, c.not_after) - drift;
        if (at + work > honoured_until) fail("work that outlived its token (token " + w[2] + ")");
        auto& span = epochs[c.key()][c.epoch];
        span.first_start = std::min(span.first_start, at);
        auto& sv = service[c.key()];
        if (sv.last_start != dcp::wall_time::min() && sv.last_start < busy_until &&
            std::min(at, busy_until) - sv.last_start > sv.longest_gap)
          sv.longest_gap = std::min(at, busy_until) - sv.last_start, sv.gap_began = sv.last_start;
        sv.last_start = std::max(sv.last_start, at);
        ++units;
        max_load = std::max(max_load, ++load);
        if (load > capacity) fail("load " + std::to_string(load) + " above the capacity " + std::to_string(capacity));
      } else if (w[0] == "END" && w.size() == 4) {
        if (load == 0) fail("END without START");
        --load;
      } else if (w[0] == "ALLOC" && w.size() == 4) {
        auto holder = dcp::address::parse(w[1]);
        if (!holder) fail("unreadable ALLOC line");
        const auto units_here = static_cast<std::uint32_t>(std::stoul(w[3]));
        if (!allocations.emplace(std::pair{holder->to_string(), std::stoull(w[2])}, units_here).second)
          fail("seat " + w[1] + " " + w[2] + " allocated twice");
        allocated += units_here;
      } else {
        fail("unknown line: " + line);
      }
    }
    if (!origin_key) throw audit_failure("empty record");
    if (allocated > seats)
      throw audit_failure(std::to_string(allocated) + " seats allocated of " + std::to_string(seats));
    // Epochs of a shard never overlap: each begins after every certificate of
    // the one before it ended, plus the drift bound.
    std::size_t epoch_count = 0;
    for (auto& [shard, by_epoch] : epochs) {
      epoch_count += by_epoch.size();
      const epoch_span* before = nullptr;
      for (auto& [e, span] : by_epoch) {
        if (before && span.first_start != dcp::wall_time::max() && span.first_start < before->last_not_after)
          throw audit_failure(shard + " epoch " + std::to_string(e) +
                              " admitted work before the previous epoch's delegation ended");
        before = &span;
      }
    }
    std::uint64_t claims = 0;
    if (!claims_path.empty()) {
      std::ifstream cin_(claims_path);
      if (!cin_) usage("cannot read " + claims_path);
      std::set<std::pair<std::string, std::uint64_t>> claimed;
      for (std::string line; std::getline(cin_, line);) {
        auto w = words(line);
        if (w.size() != 3 || w[0] != "SEAT") continue;
        if (!claimed.insert({w[1], std::stoull(w[2])}).second)
          throw audit_failure("seat " + w[1] + " " + w[2] + " claimed twice");
        if (!allocations.contains({w[1], std::stoull(w[2])}))
          throw audit_failure("seat " + w[1] + " " + w[2] +
                              " was confirmed to its client but the origin has no record of it");
        ++claims;
      }
    }
    std::cout << "AUDIT ok units=" << units << " tokens=" << tokens.size() << " max_load=" << max_load
              << " capacity=" << capacity << " shards=" << epochs.size() << " epochs=" << epoch_count
              << " seats=" << allocated << "/" << seats << " claims=" << claims << std::endl;
    for (auto& [shard, by_epoch] : epochs)
      for (auto& [e, span] : by_epoch)
        if (span.first_start != dcp::wall_time::max())
          std::cout << "EPOCH " << shard << ' ' << e << ' ' << micros(span.first_start) << std::endl;
    for (auto& [shard, sv] : service) {  // the shard's longest time without a unit starting: its worst outage
      if (busy_until != dcp::wall_time::max() && sv.last_start < busy_until &&
          busy_until - sv.last_start > sv.longest_gap)
        sv.longest_gap = busy_until - sv.last_start, sv.gap_began = sv.last_start;  // an outage that lasted to the end
      std::cout << "GAP " << shard << ' '
                << std::chrono::duration_cast<std::chrono::microseconds>(sv.longest_gap).count() << ' '
                << micros(sv.gap_began) << ' ' << micros(sv.last_start) << std::endl;
    }
    return 0;
  } catch (const audit_failure& f) {
    std::cout << "AUDIT FAIL " << f.what() << std::endl;
    return 1;
  } catch (const std::exception& e) {
    std::cout << "AUDIT FAIL line " << line_no << ": unreadable (" << e.what() << ")" << std::endl;
    return 1;
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::signal(SIGPIPE, SIG_IGN);
  serve_options opt;
  std::string audit_path, claims;
  dcp::wall_time busy_until = dcp::wall_time::max();
  bool have_listen = false;
  auto positive = [](std::string_view v, const char* what) {
    const auto n = std::strtoull(std::string(v).c_str(), nullptr, 10);
    if (n == 0 || n > (1ull << 32)) usage(std::string(what) + " must be a positive number");
    return n;
  };
  auto dur = [](std::string_view v, const char* what) {
    auto d = dcp::parse_duration(v);
    if (!d) usage(std::string(what) + " wants a duration such as 20ms or 3s");
    return *d;
  };
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "--entry") {  // a flag, without a value
      opt.entry = true;
      continue;
    }
    if (i + 1 >= argc) usage("missing value after " + std::string(arg));
    const std::string_view value = argv[++i];
    if (arg == "--transport") {
      if (auto e = opt.transport.parse(value)) usage(*e);
      continue;
    }
    if (arg == "--listen") {
      auto a = dcp::address::parse(value);
      if (!a || !a->is_ip()) usage("not an IP address and port: " + std::string(value));
      opt.net.listen = *a;
      have_listen = true;
    } else if (arg == "--record")
      opt.record = value;
    else if (arg == "--audit")
      audit_path = value;
    else if (arg == "--claims")
      claims = value;
    else if (arg == "--busy-until") {
      const auto us = std::strtoll(std::string(value).c_str(), nullptr, 10);
      if (us <= 0) usage("--busy-until wants a Unix time in microseconds");
      busy_until = dcp::wall_time(std::chrono::microseconds(us));
    } else if (arg == "--capacity")
      opt.capacity = positive(value, "--capacity");
    else if (arg == "--shards")
      opt.shards = static_cast<std::uint32_t>(positive(value, "--shards"));
    else if (arg == "--seats")
      opt.seats = positive(value, "--seats");
    else if (arg == "--seat-shards")
      opt.seat_shards = static_cast<std::uint32_t>(positive(value, "--seat-shards"));
    else if (arg == "--work")
      opt.work = dur(value, "--work");
    else if (arg == "--validity")
      opt.validity = dur(value, "--validity");
    else if (arg == "--drift")
      opt.drift = dur(value, "--drift");
    else if (arg == "--work-tokens") {
      if (value != "single" && value != "quorum") usage("--work-tokens wants single or quorum");
      opt.quorum_signed = value == "quorum";
    } else if (arg == "--key-seed") {
      opt.key_seed = dcp::from_hex(value);
      if (!opt.key_seed || opt.key_seed->size() != 32) usage("--key-seed wants 64 hex digits");
    } else
      usage("unknown option " + std::string(arg));
  }
  if (!audit_path.empty()) return audit(audit_path, claims, busy_until);
  if (!have_listen) usage("--listen is required");
  if (auto e = opt.transport.parse_environment()) usage(*e);
  if (!opt.transport.chosen()) usage("--transport (or DCP_TRANSPORT) is required");
  if (opt.record.empty()) usage("--record is required");
  try {
    opt.net.log = [](const dcp::log_record& r) {
      std::cerr << r.node << ' ' << to_string(r.level) << ": " << r.text << '\n';
    };
    opt.net.level = dcp::log_level::warn;
    return serve(opt);
  } catch (const std::exception& e) {
    std::cerr << "delegation_origin: " << e.what() << '\n';
    return 1;
  }
}
