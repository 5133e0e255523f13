// Signed (mutable) values, BEP 44 style: only the owner of a key pair writes
// at SHA-1(public key || salt), only forward in seq, and the signature
// survives every path a value takes (re-replication, handoff, read repair).
// Needs libcrypto (DCP_TEST_SIGNED is set when dcp::lease is linked).
#if DCP_TEST_SIGNED
#include <doctest/doctest.h>

#include "../seeds.hpp"  // fewer seeds under sanitizers

#include <chrono>
#include <map>
#include <optional>

#include "dcp/dht/ed25519.hpp"
#include "harness.hpp"
#include "store_world.hpp"

namespace test_signed_values {

using namespace dcp;
using dht_test::overlay;

namespace {

lease::ed25519_private_key key_from(std::uint8_t b) {
  return lease::ed25519_private_key::from_seed(bytes(32, b)).value();
}

template <class R> struct world : dht_test::store_world<R, dht::ed25519_verifier> {
  using base = dht_test::store_world<R, dht::ed25519_verifier>;
  using base::at;
  using base::get;
  using base::o;
  using base::sid;
  world(std::uint64_t seed, std::size_t n, bool silent = false) : base(seed, n, base::fast_store(), 0.0, silent) {}
  std::int64_t counter(std::string_view name) { return o.world.metrics().counter(sid, name); }

  std::error_code put(sim::node_index from, const dht::signed_value& v, duration ttl = std::chrono::minutes(10)) {
    std::optional<std::error_code> out;
    at(from).put(v, ttl, [&](const dcp::result<std::uint64_t>& r) { out = r.error(); });
    o.world.run_until([&] { return out.has_value(); }, o.world.now() + 30s);
    REQUIRE(out);
    return *out;
  }
  std::error_code put(sim::node_index from, const std::string& k, const std::string& v) {
    return base::put(from, k, v).first;
  }
  std::pair<std::error_code, dht::stored_value> get(sim::node_index from, const lease::ed25519_private_key& owner,
                                                    const std::string& salt) {
    std::optional<std::pair<std::error_code, dht::stored_value>> out;
    at(from).get(owner.public_key().raw(), as_bytes(salt),
                 [&](dcp::result<dht::stored_value> r) { out.emplace(r.error(), r ? *r : dht::stored_value{}); });
    o.world.run_until([&] { return out.has_value(); }, o.world.now() + 30s);
    REQUIRE(out);
    return *out;
  }
  /// Live nodes holding a copy of the signed value at `place` with this seq and value.
  std::size_t copies(const node_id& place, std::uint64_t seq, const std::string& value) {
    std::size_t n = 0;
    for (auto i : o.live())
      if (auto* it = at(i).local_at(place);
          it && it->is_signed() && it->version == seq && as_string(it->value) == value)
        ++n;
    return n;
  }
};

dht::signed_value sign(const lease::ed25519_private_key& k, const std::string& salt, std::uint64_t seq,
                       const std::string& v) {
  return dht::sign_value(k, to_bytes(salt), seq, to_bytes(v)).value();
}

}  // namespace

TEST_CASE("signed values: BEP 44's message and target, and its test vector verifies") {
  // BEP 44, test vector 1 (mutable, no salt): value "Hello World!" (bencoded 12:Hello World!), seq 1
  const bytes m = dht::signed_message({}, 1, as_bytes("Hello World!"));
  CHECK(as_string(m) == "3:seqi1e1:v12:Hello World!");
  const bytes ms = dht::signed_message(as_bytes("foobar"), 1, as_bytes("Hello World!"));
  CHECK(as_string(ms) == "4:salt6:foobar3:seqi1e1:v12:Hello World!");
  auto unhex = [](std::string_view h) {
    bytes b;
    for (std::size_t i = 0; i + 1 < h.size(); i += 2)
      b.push_back(static_cast<std::uint8_t>(std::stoi(std::string(h.substr(i, 2)), nullptr, 16)));
    return b;
  };
  const bytes key = unhex("77ff84905a91936367c01360803104f92432fcd904a43511876df5cdf3e7e548");
  const bytes sig = unhex(
      "305ac8aeb6c9c151fa120f120ea2cfb923564e11552d06a5d856091e5e853cff1260d3f39e4999684aa92eb73ffd136e6f4f3ecbfda0ce53a1608ecd7ae21f01");
  dht::ed25519_verifier v;
  CHECK(v.verify(key, m, sig));
  CHECK_FALSE(v.verify(key, ms, sig));  // the same signature does not cover another salt
  CHECK(dht::signed_target(key, {}).to_string() == "4a533d47ec9c7d95b1ad75f576cffc641853b750");
  CHECK(dht::signed_target(key, as_bytes("foobar")).to_string() == "411eba73b6f087ca51a3795d9c8c938d365e32c1");
}

TEST_CASE(
    "signed values: a stranger cannot overwrite, delete, roll back or forge an owner's value (the hijack, then the fix)") {
  using W = world<dht::kademlia<sim::env>>;
  W w(61, 25);
  const auto owner = key_from(1), mallory = key_from(2);
  const std::string salt = "profile";
  const node_id place = dht::signed_target(owner.public_key().raw(), as_bytes(salt));

  // The hijack on unsigned keys (all the store had before): anyone's later write wins.
  REQUIRE_FALSE(w.put(0, "alice/profile", "alice's"));
  w.o.world.run_for(1ms);
  REQUIRE_FALSE(w.put(5, "alice/profile", "mallory's"));
  CHECK(w.get(9, "alice/profile").second == "mallory's");
  CHECK_FALSE(w.remove(5, "alice/profile"));
  CHECK(w.get(9, "alice/profile").first == dht::errc::not_found);

  // A signed value: only its owner moves it forward.
  REQUIRE_FALSE(w.put(0, sign(owner, salt, 1, "v1")));
  REQUIRE_FALSE(w.put(0, sign(owner, salt, 2, "v2")));
  w.o.world.run_for(3s);
  CHECK(w.copies(place, 2, "v2") >= 3);
  // the signed values every node holds at the owner's place: the attacks below must leave them as they are
  // (a node that holds nothing there, not responsible for the place, may take an unsigned squatter
  // from a stranger: a signed get never returns it, and the owner's value displaces it, below)
  auto snapshot = [&] {
    std::map<sim::node_index, std::pair<std::uint64_t, std::string>> held;
    for (auto i : w.o.live())
      if (auto* it = w.at(i).local_at(place); it && it->is_signed())
        held[i] = {it->version, std::string(as_string(it->value))};
    return held;
  };
  const auto before = snapshot();

  // 1. an unsigned write to the same place: the key string whose hash is the target
  std::string squat(as_string(owner.public_key().raw()));
  squat += salt;
  REQUIRE(node_id::hash(squat) == place);
  CHECK(w.put(5, squat, "mallory's") == dht::errc::key_is_signed);
  CHECK(w.remove(5, squat) == dht::errc::key_is_signed);
  // 2. a value under the owner's key with Mallory's signature, and the owner's signature on another value
  auto forged = sign(mallory, salt, 3, "mallory's");
  forged.public_key = owner.public_key().raw();
  CHECK(w.put(5, forged) == dht::errc::bad_signature);  // refused by the writer itself, before sending
  auto tampered = sign(owner, salt, 3, "v3");
  tampered.value = to_bytes("mallory's");
  CHECK(w.put(5, tampered) == dht::errc::bad_signature);
  // 3. a replay of the owner's older value, and the same seq with another value
  CHECK(w.put(5, sign(owner, salt, 1, "v1")) == dht::errc::seq_not_newer);
  // 4. straight from the network, bypassing the writer's own checks, to every node
  dht::store_msg::item raw;
  raw.value = to_bytes("mallory's");
  raw.version = 9;
  raw.ttl_ms = 60'000;
  raw.signer = owner.public_key().raw();
  raw.salt = to_bytes(salt);
  raw.signature = forged.signature;
  dht::store_msg::item unsigned_squat{squat, to_bytes("mallory's"), ~std::uint64_t{0} >> 8, 1, 60'000, false, {}, {},
                                      {}};
  auto oversalted = sign(owner, std::string(65, 's'), 3, "v3");
  dht::store_msg::item salty;
  salty.value = oversalted.value;
  salty.version = 3;
  salty.ttl_ms = 60'000;
  salty.signer = oversalted.public_key;
  salty.salt = oversalted.salt;
  salty.signature = oversalted.signature;
  const address stranger = address::sim(999);
  for (auto i : w.o.live()) {
    w.at(i).on_message(stranger, dht::store_msg::put{0, raw});
    w.at(i).on_message(stranger, dht::store_msg::put{0, unsigned_squat});
    w.at(i).on_message(stranger, dht::store_msg::put{0, salty});
  }
  w.o.world.run_for(3s);                 // re-replication rounds: nothing forged travels
  CHECK(snapshot() == before);           // nothing changed anywhere
  for (auto& c : w.o.truth(place, 3)) {  // the replicas hold the owner's value, never a squatter
    auto* it = w.at(c.addr.sim_index()).local_at(place);
    CHECK((it && it->is_signed() && as_string(it->value) == "v2"));
  }
  // a squatter does not keep the owner's value out where repair brings it (the node becomes responsible)
  sim::node_index squatted = 0;
  while (!w.at(squatted).local_at(place) || w.at(squatted).local_at(place)->is_signed()) ++squatted;
  const address holder = w.o.truth(place, 1).front().addr;
  w.at(squatted).on_message(holder, dht::store_msg::sync_offer{{{place, 2, 0, true}}});
  w.o.world.run_for(200ms);
  REQUIRE(w.at(squatted).local_at(place));
  CHECK(w.at(squatted).local_at(place)->is_signed());
  CHECK(w.counter("signed_over_unsigned") >= 1);
  CHECK(w.counter("bad_signature") >= 2 * static_cast<std::int64_t>(w.o.live().size()));
  CHECK(w.counter("unsigned_over_signed") >= 3);
  CHECK(w.counter("seq_not_newer") >= 2);
  auto [ec, got] = w.get(9, owner, salt);
  CHECK_FALSE(ec);
  CHECK(as_string(got.value) == "v2");
  CHECK(got.version == 2);
  CHECK(w.copies(place, 2, "v2") >= 3);

  // 5. a replica that answers a get with a forged value is not believed
  const auto replicas = w.o.truth(place, 3);
  for (auto& c : replicas) {
    // overwrite the replica's copy behind the store's back (as a compromised node would answer)
    auto* it = const_cast<dht::store_msg::item*>(w.at(c.addr.sim_index()).local_at(place));
    REQUIRE(it);
    it->value = to_bytes("mallory's");
    it->version = 7;
  }
  {
    // no forged answer verifies: the get returns nothing, or the genuine value from a node beyond the r
    auto [fec, fgot] = w.get(9, owner, salt);
    const std::string why = fec.message();
    CHECK_MESSAGE((fec == dht::errc::not_found || (!fec && as_string(fgot.value) == "v2" && fgot.version == 2)), why);
  }
  // and the owner still writes forward
  CHECK_FALSE(w.put(0, sign(owner, salt, 8, "v8")));
  CHECK(as_string(w.get(9, owner, salt).second.value) == "v8");
}

TEST_CASE("signed values: the owner's updates, bounds and TTL refresh") {
  using W = world<dht::chord<sim::env>>;
  W w(62, 12);
  const auto owner = key_from(3);
  CHECK_FALSE(w.put(1, sign(owner, "", 5, "five")));
  CHECK(w.put(2, sign(owner, "", 5, "other five")) == dht::errc::seq_not_newer);  // one seq, one value
  CHECK_FALSE(w.put(2, sign(owner, "", 5, "five")));  // the same again: accepted, lives longer
  CHECK_FALSE(w.put(2, sign(owner, "", 6, "six")));
  CHECK(as_string(w.get(3, owner, "").second.value) == "six");
  // distinct salts are distinct places
  CHECK_FALSE(w.put(1, sign(owner, "a", 1, "A")));
  CHECK(as_string(w.get(3, owner, "a").second.value) == "A");
  CHECK(as_string(w.get(3, owner, "").second.value) == "six");
  CHECK(w.get(3, key_from(4), "").first == dht::errc::not_found);
  // bounds, as clear errors
  CHECK(w.put(1, sign(owner, std::string(65, 's'), 1, "x")) == dht::errc::bad_signature);
  CHECK(w.put(1, sign(owner, "", 7, std::string(w.scfg.max_value_size + 1, 'x'))) == dht::errc::value_too_large);
  CHECK(w.put(1, sign(owner, "", ~std::uint64_t{0}, "x")) == dht::errc::version_too_far_ahead);
  CHECK(w.put(1, sign(owner, "", 7, "x"), std::chrono::hours(25)) == dht::errc::ttl_too_large);
  std::optional<std::error_code> bad;
  w.at(1).get(bytes(31, 0), {}, [&](const dcp::result<dht::stored_value>& r) { bad = r.error(); });
  w.o.world.run_for(1ms);
  CHECK(bad == std::optional<std::error_code>(dht::errc::bad_argument));
  // a TTL ends a signed value like any other
  CHECK_FALSE(w.put(1, sign(owner, "short", 1, "x"), 2s));
  CHECK_FALSE(w.get(3, owner, "short").first);
  w.o.world.run_for(3s);
  CHECK(w.get(3, owner, "short").first == dht::errc::not_found);
}

TEST_CASE("signed values: a store without a verifier refuses them, and unsigned use is unchanged") {
  overlay<dht::kademlia<sim::env>, dht::kademlia_config> o(63,
                                                           dht_test::router_setup<dht::kademlia<sim::env>>::config());
  using S = dht::store<sim::env, dht::kademlia<sim::env>>;
  o.extra = [](sim::node_context& ctx, dht::kademlia<sim::env>& r) { ctx.add<S>(S::default_id, r); };
  o.add(3);
  o.world.run_for(5s);
  auto v = sign(key_from(5), "", 1, "x");
  dht::store_msg::item it;
  it.value = v.value;
  it.version = 1;
  it.ttl_ms = 1000;
  it.signer = v.public_key;
  it.signature = v.signature;
  auto& s = o.world.get<S>(1, S::default_id);
  s.on_message(address::sim(0), dht::store_msg::put{0, it});
  CHECK(s.size() == 0);
  CHECK(o.world.metrics().counter(S::default_id, "signature_unverifiable") == 1);
}

TEST_CASE_TEMPLATE("signed values survive churn: every get returns the owner's latest acknowledged seq (many seeds)", R,
                   dht::kademlia<sim::env>, dht::chord<sim::env>) {
  // as test_store's churn test: every 1.5 s a random node crashes silently and a fresh
  // one joins; values move between replicas only through re-replication, handoff and
  // read repair, and each copy must still verify where it lands
  for (std::uint64_t seed = 71; seed <= dcp::test::last_seed(71, 74); ++seed) {
    CAPTURE(seed);
    world<R> w(seed, 24, true);
    std::vector<lease::ed25519_private_key> owners{key_from(11), key_from(12), key_from(13)};
    std::map<std::size_t, std::pair<std::uint64_t, std::string>> latest;  // owner -> newest acknowledged (seq, value)
    std::map<std::size_t, std::uint64_t> next_seq;
    std::map<std::pair<std::size_t, std::uint64_t>, std::string> signed_by;  // (owner, seq) -> the value it signed
    std::size_t gets = 0, right = 0;
    for (int step = 0; step < 24; ++step) {
      auto nodes = w.o.live();
      w.o.world.crash(nodes[w.o.world.rng().below(nodes.size())]);
      w.o.add(1);
      const std::size_t who = w.o.world.rng().below(owners.size());
      const std::uint64_t seq = ++next_seq[who];
      const std::string value = "v" + std::to_string(step);
      signed_by[{who, seq}] = value;
      if (!w.put(w.any(), sign(owners[who], "s", seq, value))) latest[who] = {seq, value};
      w.o.world.run_for(750ms);
      for (auto& [o, want] : latest) {
        auto [gec, got] = w.get(w.any(), owners[o], "s");
        ++gets;
        // at least the latest acknowledged seq (a put that failed may still have landed), and only what the owner signed
        const auto signed_it = signed_by.find({o, got.version});
        if (!gec && got.version >= want.first && signed_it != signed_by.end() &&
            as_string(got.value) == signed_it->second)
          ++right;
        else
          MESSAGE("owner " << o << " at step " << step << ": "
                           << (gec ? gec.message() : std::string(as_string(got.value))));
      }
      w.o.world.run_for(750ms);
    }
    CHECK(latest.size() == owners.size());
    w.o.world.run_for(5s);  // churn stops: repair completes
    CHECK(right == gets);
    CHECK(w.counter("bad_signature") == 0);  // honest traffic never fails verification
    for (auto& [o, want] : latest) {         // and repair has put each (or a later one) on its replicas again
      std::size_t held = 0;
      for (std::uint64_t seq = want.first; seq <= next_seq[o]; ++seq)
        held += w.copies(dht::signed_target(owners[o].public_key().raw(), as_bytes("s")), seq, signed_by[{o, seq}]);
      CHECK(held >= 2);
    }
  }
}

}  // namespace test_signed_values
#endif
