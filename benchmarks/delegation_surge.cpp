// The surge, four ways (examples/surge_scenario.hpp: the modes, the
// workload and what each column means), and the origin's CPU per admission.
//
// Usage: delegation_surge [--quick] [--clients N] [--capacity C] [--seconds T] [--mode M] [--calm | --faults] [--csv FILE] [--seed N]
//        (both tables by default: calm, then with churn, skewed clocks and a partition; --quick: faults only)
//        delegation_surge --realloc [N ...]   time to move 95% of C after a shift in demand, as N grows
#include <chrono>
#include <cstdio>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "dcp/delegation.hpp"
#include "dcp/lease.hpp"  // links libcrypto (dcp::lease)
#include "dcp/sim.hpp"
#include "../examples/surge_scenario.hpp"  // the modes and the workload, shared with the demo

using namespace dcp;
using surge::params;
using surge::result_row;

/// A coordinator reduced to its key: asks the origin for a shard and signs
/// tokens itself, so the admission benchmark can present many distinct ones.
struct key_holder {
  using messages = delegation::msg::all;
  static constexpr std::string_view name = "key_holder";
  sim::env env;
  lease::ed25519_private_key key = lease::ed25519_private_key::from_seed(bytes(32, 5)).value();
  std::optional<delegation::certificate> cert;
  lease::verification_key origin_key;
  key_holder(sim::env e, lease::verification_key ok) : env(e), origin_key(std::move(ok)) {}
  void start() {
    delegation::msg::delegate_request m{"db", 0, key.public_key().raw(), 1u << 20};
    if (delegation::sign(m, env.self(), key, env.wall_now()))
      throw std::runtime_error("cannot sign the delegate request");
    env.send(address::sim(0), m);
  }
  void on_message(const address&, const delegation::msg::delegate_reply& m) {
    if (m.code == delegation::status::ok) cert = delegation::open_certificate(m.certificate, origin_key).value();
  }
  template <class M> void on_message(const address&, const M&) {}
};

/// A group of 4 reduced to its keys, asking (as member 0) for a shard whose
/// tokens are quorum-signed: the admission benchmark signs with 3 of them.
struct group_keys {
  using messages = delegation::msg::all;
  static constexpr std::string_view name = "group_keys";
  sim::env env;
  std::vector<lease::ed25519_private_key> keys;
  std::optional<delegation::certificate> cert;
  lease::verification_key origin_key;
  group_keys(sim::env e, lease::verification_key ok) : env(e), origin_key(std::move(ok)) {
    for (std::uint8_t i = 0; i < 4; ++i)
      keys.push_back(lease::ed25519_private_key::from_seed(bytes(32, 40 + i)).value());
  }
  void start() {
    delegation::msg::group_delegate_request m{"db", 0, {}, 1u << 20};
    for (std::uint32_t i = 0; i < 4; ++i) m.members.push_back({address::sim(1 + i), keys[i].public_key().raw()});
    if (delegation::sign(m, keys[0], env.wall_now()))
      throw std::runtime_error("cannot sign the group's delegate request");
    env.send(address::sim(0), m);
  }
  void on_message(const address&, const delegation::msg::delegate_reply& m) {
    if (m.code == delegation::status::ok) cert = delegation::open_certificate(m.certificate, origin_key).value();
  }
  template <class M> void on_message(const address&, const M&) {}
};

/// origin::admit's median time (us) for quorum-signed tokens of a group of 4
/// (3 signatures each), n distinct tokens.
double quorum_admission_us(std::size_t n) {
  const auto okey = lease::ed25519_private_key::from_seed(bytes(32, 9)).value();
  sim::simulator w(1);
  delegation::origin_config oc;
  oc.resources = {{"db", delegation::capacity_kind::concurrency, 1u << 20, 1, true}};
  w.add_node([&](sim::node_context& c) {
    c.add<delegation::origin<sim::env>>(delegation::default_protocol_id, lease::signing_key(okey), oc);
  });
  const auto ovk = lease::signing_key(okey).to_verification_key();
  w.add_node([&](sim::node_context& c) { c.add<group_keys>(delegation::default_protocol_id, ovk); });
  w.run_for(100ms);
  auto& org = w.get<delegation::origin<sim::env>>(0, delegation::default_protocol_id);
  auto& g = w.get<group_keys>(1, delegation::default_protocol_id);
  if (!g.cert || g.cert->signers != 3) return std::printf("quorum admission: no quorum-signed certificate\n"), 0.0;
  const auto now = w.local_wall_now(0);
  std::vector<double> us;
  for (std::uint32_t seq = 1; seq <= n; ++seq) {
    const delegation::quorum_grant q{
        {"db#0", address::sim(100), 1, delegation::fencing_of(g.cert->epoch, seq), g.cert->not_after - 1s}, {seq}};
    std::vector<delegation::cosignature> sigs;
    for (std::uint8_t m = 0; m < 3; ++m)
      sigs.push_back({m, delegation::cosign(q, g.cert->epoch, m, g.keys[m]).value()});
    const auto token = delegation::seal_quorum_token(q, g.cert->epoch, sigs).value();
    const auto t0 = std::chrono::steady_clock::now();
    const bool admitted = org.admit(token, now).has_value();
    us.push_back(std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count());
    if (!admitted) return std::printf("quorum admission: token %u refused\n", seq), 0.0;
  }
  std::nth_element(us.begin(), us.begin() + static_cast<std::ptrdiff_t>(us.size() / 2), us.end());
  return us[us.size() / 2];
}

/// The origin's CPU per admitted request: origin::admit (look-up, signature
/// check, permit count) beside a raw Ed25519 verification of the same token's
/// signature, timed token by token, interleaved (the machine is shared: both
/// see the same noise). Medians over n tokens.
void admission_cost(std::size_t n) {
  const auto okey = lease::ed25519_private_key::from_seed(bytes(32, 9)).value();
  sim::simulator w(1);
  delegation::origin_config oc;
  oc.resources = {{"db", delegation::capacity_kind::concurrency, 1u << 30, 1}};
  w.add_node([&](sim::node_context& c) {
    c.add<delegation::origin<sim::env>>(delegation::default_protocol_id, lease::signing_key(okey), oc);
  });
  const auto ovk = lease::signing_key(okey).to_verification_key();
  w.add_node([&](sim::node_context& c) { c.add<key_holder>(delegation::default_protocol_id, ovk); });
  w.run_for(100ms);
  auto& org = w.get<delegation::origin<sim::env>>(0, delegation::default_protocol_id);
  auto& kh = w.get<key_holder>(1, delegation::default_protocol_id);
  if (!kh.cert) return void(std::printf("admission: no certificate\n"));
  const lease::signing_key signer(kh.key, kh.cert->epoch);
  const auto now = w.local_wall_now(0);
  const auto vk = signer.to_verification_key();
  std::vector<double> admit_us, verify_us;
  using clock = std::chrono::steady_clock;
  for (std::uint64_t fencing = 1; fencing <= n; ++fencing) {
    auto token = lease::seal({"db#0", address::sim(100), 1, fencing, kh.cert->not_after - 1s}, signer).value();
    // What a signature check alone costs: the same bytes, verified raw.
    auto e = lease::detail::parse_envelope(token, lease::default_max_token_size).value();
    const auto message = lease::detail::signed_message(e.version, e.scheme, e.key_id, e.body);
    const auto t0 = clock::now();
    const bool verified = vk.verify(message, e.signature);
    const auto t1 = clock::now();
    const bool admitted = org.admit(token, now).has_value();
    const auto t2 = clock::now();
    if (!verified || !admitted)
      return void(std::printf("admission: token %llu refused\n", static_cast<unsigned long long>(fencing)));
    verify_us.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
    admit_us.push_back(std::chrono::duration<double, std::micro>(t2 - t1).count());
  }
  auto median = [](std::vector<double>& v) {
    std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(v.size() / 2), v.end());
    return v[v.size() / 2];
  };
  const double a = median(admit_us), v = median(verify_us);
  std::printf("\norigin CPU per admitted request (medians over %zu tokens, interleaved, one core):\n", n);
  std::printf("  origin::admit %.1f us   raw Ed25519 verify %.1f us   ratio %.2f   (%.0f admissions/s per core)\n", a,
              v, a / v, 1e6 / a);
  const double q = quorum_admission_us(n);
  std::printf(
      "  quorum-signed (3 of 4 members' signatures): origin::admit %.1f us   ratio to raw verify %.2f   (%.0f admissions/s per core)\n",
      q, q / v, 1e6 / q);
}

/// Reallocation as N grows: single and multi delegation, no crash; at 10 s
/// every client moves to the first half of the shards.
int realloc_table(std::vector<std::uint32_t> sizes) {
  if (sizes.empty()) sizes = {1000, 4000, 16000};
  std::printf(
      "reallocation: at 10 s all demand moves to 8 of 16 shards; C = 100; time until 95%% of the capacity to move has moved\n");
  std::printf("%-8s %7s %12s %8s %9s %6s\n", "mode", "N", "realloc(ms)", "peak/C", "episodes", "lost");
  for (auto n : sizes)
    for (const char* mode : {"single", "multi"}) {
      params p;
      p.clients = n;
      p.run = 45s;
      p.crash = false;
      p.shift_at = 10s;
      std::fprintf(stderr, "running %s, %u clients ...\n", mode, n);
      auto r = surge::run(mode, p);
      std::printf("%-8s %7u %12.0f %8.2f %9llu %6llu\n", mode, n, r.realloc_ms, r.peak_over_c,
                  static_cast<unsigned long long>(r.episodes), static_cast<unsigned long long>(r.lost));
      std::fflush(stdout);
    }
  return 0;
}

int main(int argc, char** argv) {
  if (argc > 1 && std::string(argv[1]) == "--realloc") {
    std::vector<std::uint32_t> sizes;
    for (int i = 2; i < argc; ++i) sizes.push_back(static_cast<std::uint32_t>(std::stoul(argv[i])));
    return realloc_table(sizes);
  }
  params p;
  std::string csv;
  bool quick = false;
  std::string only;  // one mode, or all
  std::vector<bool> fault_runs = {false, true};
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--quick") {
      quick = true;
      p.clients = 200;
      p.capacity = 20;
      p.run = 8s;
      p.shards = 4;
      fault_runs = {true};
    } else if (a == "--calm") {
      fault_runs = {false};
    } else if (a == "--faults") {
      fault_runs = {true};
    } else if (a == "--clients" && i + 1 < argc) {
      p.clients = static_cast<std::uint32_t>(std::stoul(argv[++i]));
    } else if (a == "--capacity" && i + 1 < argc) {
      p.capacity = static_cast<std::uint32_t>(std::stoul(argv[++i]));
    } else if (a == "--seconds" && i + 1 < argc) {
      p.run = std::chrono::seconds(std::stoul(argv[++i]));
    } else if (a == "--mode" && i + 1 < argc) {
      only = argv[++i];
    } else if (a == "--csv" && i + 1 < argc) {
      csv = argv[++i];
    } else if (a == "--seed" && i + 1 < argc) {  // another draw of the same run: arrivals, delays, churn
      p.seed = std::stoull(argv[++i]);
    } else {
      std::fprintf(
          stderr,
          "usage: delegation_surge [--quick] [--clients N] [--capacity C] [--seconds T] [--mode M] [--calm | --faults] "
          "[--csv FILE] [--seed N]\n");
      return 2;
    }
  }
  std::printf(
      "surge: %u clients arrive within 1 s; capacity C = %u units of %.0f ms at once; %.0f s; %u shards (single, multi)\n",
      p.clients, p.capacity, to_millis(p.work), to_seconds(p.run), p.shards);
  std::vector<result_row> rows;
  for (const bool faults : fault_runs) {
    p.faults = faults;
    std::printf(
        faults
            ? "\nwith faults: churn (sessions of %.0f s on average, then a newcomer), clocks skewed within the 50 ms "
              "bound, shard 1's coordinator (single) or group leader (multi) cut off for 3 s at %.0f s\n"
            : "\ncalm: no churn, no skew, no partition\n",
        to_seconds(p.session), to_seconds(p.run / 4));
    surge::print_header();
    std::vector<std::string> all(std::begin(surge::modes), std::end(surge::modes));
    all.insert(all.end(), std::begin(surge::more_modes), std::end(surge::more_modes));
    for (const auto& mode : all) {
      if (!only.empty() && only != mode) continue;
      std::fprintf(stderr, "running %s%s ...\n", mode.c_str(), faults ? " with faults" : "");
      rows.push_back(surge::run(mode, p));
      surge::print_row(rows.back());
    }
  }
  admission_cost(quick ? 200 : 5000);
  if (!csv.empty()) {
    std::ofstream f(csv);
    f << "mode,faults,clients,capacity,peak_over_c,episodes,above_ms,util,held,msgs_per_admitted,token_p50_ms,token_p99_ms,jain,lost\n";
    for (auto& r : rows)
      f << r.mode << ',' << r.faults << ',' << r.n << ',' << r.C << ',' << r.peak_over_c << ',' << r.episodes << ','
        << r.above_ms << ',' << r.util << ',' << r.held << ',' << r.msgs_per_admitted << ',' << r.token_p50_ms << ','
        << r.token_p99_ms << ',' << r.jain << ',' << r.lost << '\n';
  }
}
