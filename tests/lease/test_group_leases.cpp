// Lease tokens issued by the coordination group and checked offline by
// resource servers, in the simulator: replicas (Raft + coord::server sealing
// with coord::lease_issuer) crash, restart and fail over; clients hold
// permits of a k-permit semaphore, fetch and renew sealed tokens, present them
// (sometimes after a long pause), and are cut off or crash while holding;
// messages are lost, duplicated and reordered; every clock is skewed and
// drifts. Two resource servers with their own clocks judge every token:
//   - a fencing server (lease::verifier, k = 1): the fencing tokens it accepts
//     never decrease;
//   - a capacity server (lease::permit_gate of capacity k): it never has to
//     refuse a holder's token for lack of capacity, i.e. the group never
//     hands out a permit whose previous holder's token the server still
//     honours; and it never honours more than k permits.
#include <doctest/doctest.h>

#include "../seeds.hpp"  // fewer seeds under sanitizers

#include <functional>
#include <map>
#include <optional>
#include <vector>

#include "dcp/coord.hpp"
#include "dcp/coord/lease_issuer.hpp"
#include "dcp/lease.hpp"
#include "dcp/sim.hpp"
#include "dcp/storage.hpp"

namespace test_group_leases {

using namespace dcp;
using namespace dcp::coord;

namespace {

using raft_t = consensus::raft<sim::env, machine, storage::durable_storage>;
using server_t = server<sim::env, raft_t>;
using client_t = client<sim::env>;
constexpr protocol_id raft_id = raft_t::default_id, coord_id = default_protocol_id;

struct lease_options {
  std::uint32_t k = 1;
  bool ed25519 = false;
  duration skew = 15ms;         ///< clock offsets uniform in [-skew, skew]
  double drift = 1e-3;          ///< clock rates within +-0.1% (the service assumes 1%)
  duration max_drift = 50ms;    ///< the resource servers' bound on |their clock - the issuer's|
  duration resource_lag = 0ms;  ///< the resource servers' clock runs this much behind (beyond skew)
  int faults = 12;
};

struct lease_outcome {
  std::uint64_t issued = 0, accepted = 0, admitted = 0, over_capacity = 0, stale = 0, expired = 0, failovers = 0;
  std::uint64_t grants_after_heal = 0;
};

constexpr std::uint32_t replicas = 3, clients = 4;
constexpr sim::node_index resource_node = replicas + clients;  // a node with no protocol: its clock only

lease::signing_key key_for(bool ed25519) {
  if (ed25519) return {lease::ed25519_private_key::from_seed(bytes(32, 7)).value(), 2};
  return {lease::hmac_key::from_bytes(bytes(32, 9)).value(), 1};
}

class lease_world {
 public:
  lease_world(std::uint64_t seed, lease_options o)
      : w_(seed, config()),
        opt_(o),
        key_(key_for(o.ed25519)),
        fencing_server_(key_.to_verification_key(), {"sem"}, {.max_drift = o.max_drift}),
        capacity_server_(key_.to_verification_key(), "sem", o.k, {.max_drift = o.max_drift}) {
    std::vector<address> servers;
    for (std::uint32_t i = 0; i < replicas; ++i) servers.push_back(address::sim(i));
    consensus::raft_config rc;
    rc.members = servers;
    rc.election_timeout_min = 100ms;
    rc.election_timeout_max = 200ms;
    rc.heartbeat_interval = 30ms;
    rc.snapshot_every = 32;
    const lease_issuer issuer(key_);
    w_.add_nodes(replicas, [rc, issuer](sim::node_context& n) {
      auto& r = n.add<raft_t>(raft_id, rc, storage::durable_storage(n.world().disk_of(n.index())), machine{});
      n.add<server_t>(coord_id, r).issue_leases(issuer);
    });
    client_config cc;
    cc.servers = servers;
    cc.ttl = 1s;
    cc.keepalive_every = 200ms;
    cc.request_timeout = 100ms;
    w_.add_nodes(clients, [cc](sim::node_context& n) { n.add<client_t>(coord_id, cc); });
    w_.add_node([](sim::node_context&) {});
    auto& rng = w_.rng();
    for (sim::node_index i = 0; i <= resource_node; ++i)
      w_.set_clock(i,
                   duration(rng.between(-o.skew.count(), o.skew.count())) - (i == resource_node ? o.resource_lag : 0ms),
                   (rng.uniform() * 2 - 1) * o.drift);
    life_.assign(clients, 0);
    holding_.resize(clients);
    landed_by_.resize(clients);
  }

  lease_outcome run() {
    for (std::uint32_t c = 0; c < clients; ++c) {
      watch(c);
      w_.after(5ms, [this, c] { cycle(c, 0); });
    }
    present_loop();
    auto& rng = w_.rng();
    for (int f = 0; f < opt_.faults; ++f) {
      w_.run_for(duration(rng.between(150'000'000, 450'000'000)));
      fault();
    }
    w_.heal();
    for (std::uint32_t i = 0; i < replicas; ++i) w_.restart(i);
    healed_ = true;
    w_.run_for(4s);
    out_.issued = static_cast<std::uint64_t>(w_.metrics().counter(coord_id, "leases_issued"));
    return out_;
  }

 private:
  struct held {
    grant g;
    std::optional<bytes> token;
    time_point token_at{};  // true time the token arrived
    bool asking = false;
  };

  static sim::config config() {
    sim::config c;
    c.network.delay = sim::latency::uniform(1ms, 6ms);
    c.network.loss = 0.02;
    c.network.duplicate = 0.02;
    c.network.reorder = 0.05;
    return c;
  }
  client_t* client(std::uint32_t c) { return w_.find<client_t>(replicas + c, coord_id); }
  raft_t* replica(std::uint32_t i) { return w_.find<raft_t>(i, raft_id); }
  wall_time resource_now() const { return w_.local_wall_now(resource_node); }

  void watch(std::uint32_t c) {
    client(c)->on_lost([this, c](const grant& g) {
      if (holding_[c] && holding_[c]->g == g) holding_[c].reset();  // stop using it (the server is not told)
    });
  }

  // A client: open a session, acquire a permit, hold it for a while (fetching
  // and renewing its token, presenting it), release, again.
  void cycle(std::uint32_t c, int l) {
    auto* cl = client(c);
    if (!cl || l != life_[c]) return;
    if (!cl->session_valid()) {
      cl->open_session([this, c, l](result<session_id> r) { w_.after(r ? 1ms : 50ms, [this, c, l] { cycle(c, l); }); });
      return;
    }
    cl->acquire("sem", opt_.k, [this, c, l](result<grant> g) {
      if (!g) return w_.after(30ms, [this, c, l] { cycle(c, l); });
      if (healed_) ++out_.grants_after_heal;
      holding_[c] = held{*g};
      fetch_token(c, l);
      w_.after(duration(w_.rng().between(5'000'000, 1'500'000'000)), [this, c, l, gr = *g] { release(c, l, gr); });
    });
  }

  void fetch_token(std::uint32_t c, int l) {
    auto* cl = client(c);
    if (!cl || l != life_[c] || !holding_[c] || holding_[c]->asking) return;
    holding_[c]->asking = true;
    cl->lease(holding_[c]->g, [this, c, l, gr = holding_[c]->g](result<bytes> t) {
      if (l != life_[c] || !holding_[c] || holding_[c]->g != gr) return;
      holding_[c]->asking = false;
      if (!t) return;
      holding_[c]->token = std::move(*t);
      holding_[c]->token_at = w_.now();
    });
  }

  // Done with the resource: stop presenting, let the presentations in flight
  // land, tell the capacity server, then give the permit back to the group.
  void release(std::uint32_t c, int l, const grant& g) {
    if (!client(c) || l != life_[c]) return;
    if (holding_[c] && holding_[c]->g == g) holding_[c].reset();
    const auto at = std::max(w_.now(), landed_by_[c]) + 1ms;
    w_.at(at, [this, c, l, g] {
      if (l != life_[c]) return;  // crashed meanwhile
      capacity_server_.release(g.fencing);
      if (auto* cl = client(c))
        cl->release(g, [this, c, l](result<done_t>) { w_.after(5ms, [this, c, l] { cycle(c, l); }); });
    });
  }

  // Every 25 ms each holder that still believes in its grant presents its
  // newest token to both servers; each copy arrives after a network delay,
  // or, 5% of the time, after a pause of up to 800 ms (a holder stalled
  // between its check and its use).
  // A token older than 250 ms is renewed.
  void present_loop() {
    w_.after(25ms, [this] {
      for (std::uint32_t c = 0; c < clients; ++c) {
        auto* cl = client(c);
        auto& h = holding_[c];
        if (!cl || !h || !h->token) continue;
        const auto holds = cl->holds();
        if (std::find(holds.begin(), holds.end(), h->g) == holds.end()) continue;
        auto& rng = w_.rng();
        auto delay = [&] {
          return rng.chance(0.05) ? duration(rng.between(100'000'000, 800'000'000))
                                  : duration(rng.between(1'000'000, 8'000'000));
        };
        // The fencing server copes with requests that arrive after the holder
        // moved on; the capacity server is told of a release only after them.
        if (opt_.k == 1) w_.after(delay(), [this, token = *h->token] { present_fencing(token); });
        const auto d = delay();
        w_.after(d, [this, token = *h->token] { present_capacity(token); });
        landed_by_[c] = std::max(landed_by_[c], w_.now() + d);
        if (w_.now() - h->token_at > 250ms) fetch_token(c, life_[c]);
      }
      present_loop();
    });
  }

  void present_fencing(const bytes& token) {
    const auto now = resource_now();
    {
      auto t = fencing_server_.accept(token, now);
      if (t) {
        INFO("the fencing server accepted " << t->fencing << " after " << newest_accepted_);
        REQUIRE(t->fencing >= newest_accepted_);
        newest_accepted_ = t->fencing;
        ++out_.accepted;
      } else {
        REQUIRE((t.error() == lease::errc::stale_fencing || t.error() == lease::errc::expired));
        out_.stale += t.error() == lease::errc::stale_fencing;
      }
    }
  }

  void present_capacity(const bytes& token) {
    const auto now = resource_now();
    auto a = capacity_server_.admit(token, now);
    if (a) {
      ++out_.admitted;
    } else {
      const auto e = a.error();
      REQUIRE((e == lease::errc::expired || e == lease::errc::over_capacity || e == lease::errc::released ||
               e == lease::errc::stale_fencing));
      out_.over_capacity += e == lease::errc::over_capacity;
      out_.expired += e == lease::errc::expired;
    }
    REQUIRE(capacity_server_.in_use(now) <= opt_.k);
  }

  void fault() {
    auto& rng = w_.rng();
    switch (rng.below(7)) {
      case 0:
      case 1:
        for (std::uint32_t i = 0; i < replicas; ++i)
          if (auto* r = replica(i); r && r->is_leader()) {
            w_.crash(i);
            ++out_.failovers;
            break;
          }
        break;
      case 2:
        for (std::uint32_t i = 0; i < replicas; ++i) w_.restart(i);
        break;
      case 3: {
        std::vector<sim::node_index> side;
        for (std::uint32_t i = 0; i < replicas + clients; ++i)
          if (rng.chance(0.5)) side.push_back(i);
        w_.partition({side});
        break;
      }
      case 4:
        w_.heal();
        break;
      case 5: {  // a client crashes while it may hold a permit; it comes back with a new session
        const auto c = static_cast<std::uint32_t>(rng.below(clients));
        if (!w_.is_up(replicas + c)) break;
        w_.crash(replicas + c);
        ++life_[c];
        holding_[c].reset();
        w_.after(300ms, [this, c] {
          w_.restart(replicas + c);
          watch(c);
          cycle(c, life_[c]);
        });
        break;
      }
      case 6:  // cut a holder off from the group: its session expires, the permit moves on
        for (std::uint32_t c = 0; c < clients; ++c)
          if (holding_[c]) {
            w_.isolate(replicas + c);
            break;
          }
        break;
    }
  }

  sim::simulator w_;
  lease_options opt_;
  lease::signing_key key_;
  lease::verifier fencing_server_;
  lease::permit_gate capacity_server_;
  std::uint64_t newest_accepted_ = 0;
  std::vector<int> life_;
  std::vector<std::optional<held>> holding_;
  std::vector<time_point> landed_by_;  // when a client's presentations in flight have all arrived
  lease_outcome out_;
  bool healed_ = false;
};

}  // namespace

TEST_CASE("group leases: resource servers never accept an older token, nor more than k holders, over 1,000 seeds") {
  lease_outcome total;
  std::uint64_t ed25519_seeds = 0, progressed = 0;
  const std::uint64_t seeds = dcp::test::last_seed(1, 1000);
  for (std::uint64_t seed = 1; seed <= seeds; ++seed) {
    CAPTURE(seed);
    lease_options o;
    o.k = seed % 2 ? 1 : 2;
    o.ed25519 = seed % 20 == 0;  // Ed25519 verifies ~50x slower than HMAC: a sample of seeds
    ed25519_seeds += o.ed25519;
    lease_world world(seed, o);
    auto out = world.run();
    INFO("the capacity server refused a current holder: the group handed out a permit still honoured");
    CHECK(out.over_capacity == 0);
    progressed += out.grants_after_heal > 0;
    total.issued += out.issued;
    total.accepted += out.accepted;
    total.admitted += out.admitted;
    total.stale += out.stale;
    total.expired += out.expired;
    total.failovers += out.failovers;
  }
  MESSAGE(seeds << " seeds (" << ed25519_seeds << " Ed25519, the rest HMAC-SHA256): " << total.issued
                << " tokens issued, " << total.accepted << " accepted by the fencing server (" << total.stale
                << " refused as stale), " << total.admitted << " admitted by the capacity server, " << total.expired
                << " presented too late, " << total.failovers << " leader crashes");
  CHECK(progressed == seeds);  // the group grants again once healed
  // A token refused as stale was still valid when a newer holder's was
  // accepted: its permit had moved while it was honoured. A voluntary release
  // did that until the group drained released permits until their tokens
  // expired (issue 12, bug 7); now paused holders come back with expired
  // tokens only.
  CHECK(total.stale == 0);
  CHECK(total.expired > 0);  // paused holders did come back, too late
  CHECK(total.failovers > seeds / 2);
}

// The check can fail: resource servers whose clock runs 300 ms behind the
// group's, with no drift margin to cover it, keep honouring a cut-off
// holder's token after the group has given its permit to another, and the
// capacity server has to refuse the new holder.
TEST_CASE("group leases: without the drift margin, a lagging resource clock lets two holders overlap") {
  std::uint64_t overlapped = 0, overlapped_with_margin = 0;
  const std::uint64_t seeds = dcp::test::last_seed(1, 200);
  for (std::uint64_t seed = 1; seed <= seeds; ++seed) {
    CAPTURE(seed);
    lease_options o;
    o.k = 1;
    o.resource_lag = 300ms;
    o.max_drift = 0ms;
    overlapped += lease_world(seed, o).run().over_capacity > 0;
    o.max_drift = 350ms;  // the same clocks, with a margin that covers them
    overlapped_with_margin += lease_world(seed, o).run().over_capacity > 0;
  }
  MESSAGE(overlapped << " of " << seeds << " seeds overlapped without the margin, " << overlapped_with_margin
                     << " with it");
  CHECK(overlapped > 0);
  CHECK(overlapped_with_margin == 0);
}

TEST_CASE("group leases: a lease for a grant not held, or from replicas that do not issue leases, is refused") {
  sim::simulator w(11);
  std::vector<address> servers{address::sim(0), address::sim(1), address::sim(2)};
  consensus::raft_config rc;
  rc.members = servers;
  w.add_nodes(3, [rc](sim::node_context& n) {
    auto& r = n.add<raft_t>(raft_id, rc, storage::durable_storage(n.world().disk_of(n.index())), machine{});
    n.add<server_t>(coord_id, r);  // no issue_leases yet
  });
  client_config cc;
  cc.servers = servers;
  w.add_node([cc](sim::node_context& n) { n.add<client_t>(coord_id, cc); });
  auto& cl = w.get<client_t>(3, coord_id);
  std::error_code ec;
  cl.lease(grant{"m", 1}, [&](result<bytes> r) { ec = r.error(); });
  CHECK(ec == dcp::errc::cancelled);  // no session
  bool open = false;
  cl.open_session([&](result<session_id> r) { open = r.has_value(); });
  w.run_until([&] { return open; }, w.now() + 5s);
  REQUIRE(open);
  std::optional<grant> g;
  cl.lock("m", [&](result<grant> r) {
    if (r) g = *r;
  });
  w.run_until([&] { return g.has_value(); }, w.now() + 5s);
  REQUIRE(g);
  std::optional<result<bytes>> got;
  cl.lease(*g, [&](result<bytes> r) { got = std::move(r); });
  w.run_until([&] { return got.has_value(); }, w.now() + 5s);
  REQUIRE(got);
  CHECK(got->error() == dcp::errc::io_error);  // the replicas do not issue leases

  const auto key = key_for(false);
  for (sim::node_index i = 0; i < 3; ++i) w.get<server_t>(i, coord_id).issue_leases(lease_issuer(key));
  got.reset();
  cl.lease(grant{"m", g->fencing + 1}, [&](result<bytes> r) { got = std::move(r); });  // not our grant
  w.run_until([&] { return got.has_value(); }, w.now() + 5s);
  REQUIRE(got);
  CHECK(got->error() == dcp::errc::cancelled);
  got.reset();
  cl.lease(*g, [&](result<bytes> r) { got = std::move(r); });
  w.run_until([&] { return got.has_value(); }, w.now() + 5s);
  REQUIRE(got);
  REQUIRE(got->has_value());
  lease::verifier v(key.to_verification_key(), {"m"}, {.max_drift = 10ms});
  auto t = v.accept(got->value(), w.local_wall_now(0));
  REQUIRE(t);
  CHECK(t->fencing == g->fencing);
  CHECK(t->holder == address::sim(3));
  CHECK(t->permits == 1);
  // Expiry: TTL (2 s) x (1 - 2 x 1%) after the request reached the leader, in its clock.
  CHECK(t->expiry > w.local_wall_now(0));
  CHECK(t->expiry <= w.local_wall_now(0) + 1960ms);
}

}  // namespace test_group_leases
