#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <set>
#include <string>

#include "dcp/quorum.hpp"

using namespace dcp;
using namespace dcp::quorum;

namespace {

std::vector<address> nodes(std::uint32_t n) {
  std::vector<address> out;
  for (std::uint32_t i = 0; i < n; ++i) out.push_back(address::sim(i));
  return out;
}

std::vector<weighted_member> weighted(std::uint32_t n, rng& r, std::uint32_t max_weight) {
  std::vector<weighted_member> out;
  for (std::uint32_t i = 0; i < n; ++i)
    out.push_back({address::sim(i), static_cast<std::uint32_t>(r.between(1, max_weight))});
  return out;
}

std::vector<address> random_subset(std::span<const address> all, rng& r, double p) {
  std::vector<address> out;
  for (const auto& a : all)
    if (r.chance(p)) out.push_back(a);
  return out;
}

bool subset_of(const std::vector<address>& a, std::span<const address> b) {
  return std::all_of(a.begin(), a.end(), [&](const address& x) { return std::find(b.begin(), b.end(), x) != b.end(); });
}

// choose() must return a quorum with no redundant member, taken from the
// preferred set whenever the preferred set contains a quorum.
template <QuorumSystem Q> void check_choose(const Q& q, std::span<const address> preferred) {
  const auto chosen = q.choose(preferred);
  REQUIRE(q.is_quorum(chosen));
  std::set<address> distinct(chosen.begin(), chosen.end());
  CHECK(distinct.size() == chosen.size());
  CHECK(subset_of(chosen, q.members()));
  for (std::size_t i = 0; i < chosen.size(); ++i) {
    auto less = chosen;
    less.erase(less.begin() + static_cast<std::ptrdiff_t>(i));
    CHECK_MESSAGE(!q.is_quorum(less), "choose() returned a non-minimal quorum: " << chosen[i] << " is redundant");
  }
  if (q.is_quorum(preferred)) CHECK(subset_of(chosen, preferred));
}

// is_quorum means "contains a quorum", so it must be monotone.
template <QuorumSystem Q> void check_monotone_exhaustive(const Q& q) {
  const auto all = q.members();
  const std::size_t n = all.size();
  for (std::uint64_t bits = 0; bits < (std::uint64_t{1} << n); ++bits) {
    std::vector<address> s;
    for (std::size_t i = 0; i < n; ++i)
      if (bits >> i & 1) s.push_back(all[i]);
    if (!q.is_quorum(s)) continue;
    for (std::size_t i = 0; i < n; ++i)
      if (!(bits >> i & 1)) {
        auto more = s;
        more.push_back(all[i]);
        REQUIRE(q.is_quorum(more));
      }
  }
}

// A system that is *not* a quorum system: any half of the members. For even N
// two halves are disjoint; the checker must say so.
struct any_half {
  std::vector<address> all;
  std::span<const address> members() const { return all; }
  bool is_quorum(std::span<const address> set) const {
    std::set<address> in;
    for (const auto& a : set)
      if (std::find(all.begin(), all.end(), a) != all.end()) in.insert(a);
    return in.size() * 2 >= all.size();
  }
  std::vector<address> choose(std::span<const address>) const {
    return {all.begin(), all.begin() + static_cast<std::ptrdiff_t>((all.size() + 1) / 2)};
  }
};
static_assert(QuorumSystem<any_half>);

}  // namespace

TEST_CASE("quorum: the intersection checker finds disjoint quorums in a broken system") {
  for (std::uint32_t n : {2u, 4u, 6u, 10u}) {
    any_half broken{nodes(n)};
    auto v = check_intersection(broken);
    REQUIRE(v.has_value());
    CHECK(broken.is_quorum(v->first));
    CHECK(broken.is_quorum(v->second));
    for (const auto& a : v->first) CHECK(std::find(v->second.begin(), v->second.end(), a) == v->second.end());
    rng r(n);
    CHECK(check_intersection_sampled(broken, r, 2000).has_value());
  }
  // odd N: any half rounded up is a majority, which does intersect
  CHECK_FALSE(check_intersection(any_half{nodes(7)}).has_value());
}

TEST_CASE("quorum: majority intersects, exhaustively for N <= 15") {
  for (std::uint32_t n = 1; n <= 15; ++n) {
    majority q(nodes(n));
    CHECK(q.quorum_size() == n / 2 + 1);
    CHECK_FALSE(check_intersection(q).has_value());
    if (n <= 10) check_monotone_exhaustive(q);
    rng r(n);
    for (int t = 0; t < 50; ++t) check_choose(q, random_subset(q.members(), r, r.uniform()));
  }
}

TEST_CASE("quorum: weighted majority intersects, exhaustively for random weights and N <= 12") {
  rng r(7);
  for (std::uint32_t n = 1; n <= 12; ++n)
    for (int trial = 0; trial < 8; ++trial) {
      weighted_majority q(weighted(n, r, trial % 2 ? 3 : 100));
      CHECK_FALSE(check_intersection(q).has_value());
      if (n <= 8) check_monotone_exhaustive(q);
      for (int t = 0; t < 20; ++t) check_choose(q, random_subset(q.members(), r, r.uniform()));
    }
}

TEST_CASE("quorum: weighted majority semantics") {
  // one member with more than half the votes is a quorum on its own
  weighted_majority primary({{address::sim(0), 5}, {address::sim(1), 1}, {address::sim(2), 1}, {address::sim(3), 1}});
  CHECK(primary.total_weight() == 8);
  CHECK(primary.is_quorum(std::vector{address::sim(0)}));
  CHECK_FALSE(primary.is_quorum(std::vector{address::sim(1), address::sim(2), address::sim(3)}));
  CHECK(primary.choose({}) == std::vector{address::sim(0)});
  // exactly half the votes is not enough (ties would allow two disjoint "quorums")
  weighted_majority even({{address::sim(0), 2}, {address::sim(1), 1}, {address::sim(2), 1}});
  CHECK_FALSE(even.is_quorum(std::vector{address::sim(0)}));
  CHECK_FALSE(even.is_quorum(std::vector{address::sim(1), address::sim(2)}));
  CHECK(even.is_quorum(std::vector{address::sim(0), address::sim(2)}));
  // choose prefers the live members even when a heavier one is down
  CHECK(even.choose(std::vector{address::sim(1), address::sim(2)}).size() == 2);
  auto c = even.choose(std::vector{address::sim(1), address::sim(2)});
  CHECK(std::find(c.begin(), c.end(), address::sim(0)) != c.end());  // needs sim:0: {1,2} hold only half
  // non-members and repeats count for nothing
  CHECK_FALSE(even.is_quorum(std::vector{address::sim(1), address::sim(1), address::sim(2), address::sim(9)}));
}

TEST_CASE("quorum: grid intersects, exhaustively for N <= 20") {
  for (std::uint32_t n = 1; n <= 20; ++n) {
    grid q(nodes(n));
    CHECK(q.columns() * q.rows() >= n);
    CHECK((q.columns() - 1) * (q.columns() - 1) < n);
    CHECK_FALSE(check_intersection(q).has_value());
    if (n <= 10) check_monotone_exhaustive(q);
    rng r(n);
    for (int t = 0; t < 50; ++t) check_choose(q, random_subset(q.members(), r, r.uniform()));
  }
}

TEST_CASE("quorum: grid quorums are a row plus a column, about 2*sqrt(N)") {
  grid q(nodes(16));  // 4 x 4
  CHECK(q.rows() == 4);
  CHECK(q.columns() == 4);
  CHECK(q.choose({}).size() == 7);
  auto quorum = q.row(1);
  for (const auto& a : q.column(2)) quorum.push_back(a);
  CHECK(q.is_quorum(quorum));
  CHECK_FALSE(q.is_quorum(q.row(1)));
  // losing a whole column leaves no quorum, even with 12 of 16 members up
  std::vector<address> up;
  for (std::uint32_t i = 0; i < 16; ++i)
    if (i % 4 != 3) up.push_back(address::sim(i));
  CHECK_FALSE(q.is_quorum(up));
  // choose avoids a dead member when it can
  std::vector<address> live = nodes(16);
  live.erase(live.begin() + 5);
  auto c = q.choose(live);
  CHECK(std::find(c.begin(), c.end(), address::sim(5)) == c.end());
  grid big(nodes(400));
  CHECK(big.choose({}).size() == 39);
}

TEST_CASE("quorum: sampled intersection for larger groups") {
  rng r(42);
  CHECK_FALSE(check_intersection_sampled(majority(nodes(101)), r, 300).has_value());
  CHECK_FALSE(check_intersection_sampled(majority(nodes(100)), r, 300).has_value());
  CHECK_FALSE(check_intersection_sampled(weighted_majority(weighted(150, r, 50)), r, 300).has_value());
  CHECK_FALSE(check_intersection_sampled(grid(nodes(300)), r, 300).has_value());
  CHECK_FALSE(check_intersection_sampled(grid(nodes(401)), r, 100).has_value());
  CHECK_THROWS_AS(check_intersection(majority(nodes(40))), dcp::error);
}

TEST_CASE("quorum: bad configurations are refused with a reason") {
  auto message_of = [](auto&& make) -> std::string {
    try {
      make();
    } catch (const dcp::error& e) {
      CHECK(e.code() == make_error_code(errc::invalid_config));
      return e.what();
    }
    return "";
  };
  CHECK(message_of([] { majority q({}); }).find("empty") != std::string::npos);
  CHECK(message_of([] { grid q({}); }).find("empty") != std::string::npos);
  CHECK(message_of([] { weighted_majority q({}); }).find("empty") != std::string::npos);
  CHECK(message_of([] {
          majority q({address::sim(1), address::sim(2), address::sim(1)});
        }).find("listed twice") != std::string::npos);
  CHECK(message_of([] { grid q({address::sim(3), address::sim(3)}); }).find("sim:3") != std::string::npos);
  CHECK(message_of([] {
          weighted_majority q({{address::sim(1), 1}, {address::sim(1), 2}});
        }).find("listed twice") != std::string::npos);
  CHECK(message_of([] {
          weighted_majority q({{address::sim(1), 1}, {address::sim(2), 0}});
        }).find("weight 0") != std::string::npos);
  CHECK(message_of([] { majority q({address::sim(1), address{}}); }).find("empty address") != std::string::npos);
}

TEST_CASE("quorum: members are any dcp::address, not only simulator nodes") {
  majority q({address::loopback(7000), address::loopback(7001), *address::parse("[::1]:7002")});
  CHECK(q.is_quorum(std::vector{address::loopback(7001), *address::parse("[::1]:7002")}));
  CHECK_FALSE(q.is_quorum(std::vector{address::loopback(7001), address::loopback(7999)}));
}
