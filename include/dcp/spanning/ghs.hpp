#pragma once
// The minimum spanning tree of a network, found by the network itself:
// Gallager, Humblet and Spira, "A Distributed Algorithm for Minimum-Weight
// Spanning Trees", ACM TOPLAS 5(1), 1983 (GHS).
//
// Each node knows only its incident edges and their weights. Nodes group into
// fragments (subtrees of the MST), each with a level and a name (the weight of
// its core edge). A fragment finds its minimum-weight outgoing edge (MWOE):
// INITIATE floods the fragment from the core; every node TESTs its cheapest
// Basic edge (ACCEPT: the other end is in another fragment; REJECT: the same
// one, the edge is never used); REPORTs converge back to the core with the
// best weight of each subtree; CHANGEROOT walks to the node with the MWOE,
// which sends CONNECT over it. Two fragments of equal level that CONNECT over
// the same edge merge into one of level L+1 whose core is that edge; a lower
// fragment that CONNECTs to a higher one is absorbed at the higher level. A
// fragment at level L has at least 2^L nodes, so levels stay <= log2 N and the
// algorithm sends at most 5 N log2 N + 2 E messages (the paper's bound, which
// tests/spanning/test_ghs.cpp checks on every run). When the two core nodes
// both report "no outgoing edge" the tree is the MST; GHS ends there, at the
// core. Here the core then sends DONE down the tree (N-2 more messages) so
// every node learns that it is finished, its branch edges, its parent and the
// root (the core node with the higher address).
//
// Weights. Each edge's weight is configured at both ends and must be the same
// at both (the node cannot check it: a mismatch is a configuration error that
// can build a wrong tree). Equal weights are made distinct as the paper says:
// an edge is ranked by (weight, lower address, higher address), edge_key.
//
// Deferred messages. A node may not answer yet: TEST(L) from a fragment of a
// higher level than its own (it does not yet know whether it is in that
// fragment), CONNECT(L) at its own level over an edge it has not chosen itself
// (merge or absorb is decided later), and REPORT over the core edge while its
// own half of the search is still running. Such a message waits in the
// deferred queue (GHS: "place received message on end of queue"), bounded to
// one message of each kind per edge: an honest neighbour never has more.
//
// The deadlock, and how this code avoids it. The paper's queue re-examines a
// deferred message after every message the node handles, in arrival order.
// Implementations that re-examine deferred messages only when the node's
// level rises (the event that unblocks a TEST, and the natural reading of
// "deferred until the fragment catches up") deadlock; the testbed thesis this
// chapter comes from (background 004, §4.2) hit a GHS deadlock in its Go
// implementation and points to Chou 1988 and Moses and Shimony 2006 (DISC).
// We could not read Chou's unpublished note, so we do not claim this is his
// exact schedule; it is the one a lazy retry reaches, and it is subtle:
//
//   fragments A and B, both at level L, both have MWOE j = (a, b).
//   1. A's CONNECT(L) reaches b while B is still searching: deferred
//      (L == LN and SE(j) = Basic).
//   2. B's search ends; b sends its own CONNECT(L) over j, SE(j) = Branch.
//      The deferred CONNECT is now a merge, but a lazy retry does not look.
//   3. a, having sent CONNECT over j, reads b's CONNECT as the merge and sends
//      INITIATE(L+1, w(j), Find); b takes it, its level rises, and only now
//      re-examines A's CONNECT(L): L < LN, so it *absorbs* A: counts j as a
//      child (find-count + 1) although j is now its in-branch.
//   4. a's REPORT over j is read as the core's report and waits for b to
//      finish; b waits for a REPORT from j as a child: nobody moves again.
//
// Here every handled message (and every local call) is followed by a pass
// over the deferred queue, oldest first, until nothing more can be handled,
// so a deferred message is handled in the state that the paper's queue would
// give it: the CONNECT of step 1 becomes the merge right after step 2.
// tests/spanning/test_ghs.cpp scripts this schedule (one slow link) and checks
// that the tree completes; with the retry made lazy it stalls.
//
// Channels. GHS needs reliable FIFO channels. Each message carries a per-link
// sequence number and the receiver restores each link's order (bounded window
// of `reorder_window` messages ahead), dropping duplicates, so reordering and
// duplication by the network are tolerated. Loss is not: a lost message
// stalls the algorithm (done() stays false; there is no retransmission), and
// neither are crashes or edges that change during the run. A neighbour that
// lies (forged fragment names, reports) can make the tree wrong: GHS trusts
// its neighbours; what is bounded here is the damage of malformed, stale or
// out-of-place messages, which are dropped and counted, never applied.
//
// Completion (on_done) runs after the event, never inside a call (DESIGN §10;
// an outbox, dcp/core/outbox.hpp, dropped with the node).
// Not thread-safe, like every core: its node calls it from one executor.
#include <algorithm>
#include <compare>
#include <cstdint>
#include <functional>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <string_view>
#include <variant>
#include <vector>

#include "dcp/core/env.hpp"
#include "dcp/core/error.hpp"
#include "dcp/core/outbox.hpp"
#include "dcp/core/protocol.hpp"
#include "dcp/wire/message.hpp"

namespace dcp::spanning {

/// One incident edge as this node is configured with it.
struct ghs_edge {
  address neighbour;
  std::uint64_t weight = 0;
};

/// An edge's rank: weight, then the two endpoints (GHS83 §2: ties broken by identities).
struct edge_key {
  std::uint64_t weight = 0;
  address low, high;
  static edge_key of(const address& a, const address& b, std::uint64_t w) {
    return a < b ? edge_key{w, a, b} : edge_key{w, b, a};
  }
  auto operator<=>(const edge_key&) const = default;
  template <class A> void serialize(A& ar) { ar(weight, low, high); }
};

struct ghs_config {
  std::vector<ghs_edge> edges;  ///< this node's links; the graph must be connected, weights equal at both ends
  /// Wake up in start(); otherwise wake_up() or the first message wakes it.
  /// In dcp::sim, where a node starts as it is added and a message to a node
  /// not yet added is lost, set it false and wake nodes once all exist.
  bool wake_on_start = true;
  /// Levels above this are rejected as absurd: a fragment of level L has
  /// >= 2^L nodes, so 32 covers any network addressable by 32-bit indices.
  std::uint32_t max_level = 32;
  /// How far ahead of the next expected message a link's sequence may run.
  std::uint32_t reorder_window = 256;

  void validate(const address& self) const {
    std::set<address> seen;
    for (auto& e : edges) {
      if (e.neighbour == self || e.neighbour.empty())
        throw error(errc::invalid_config, "ghs: an edge leads to this node itself or to an empty address");
      if (!seen.insert(e.neighbour).second) throw error(errc::invalid_config, "ghs: two edges to the same neighbour");
    }
    if (max_level == 0 || max_level > 64) throw error(errc::invalid_config, "ghs: max_level must be in [1, 64]");
    if (reorder_window == 0 || reorder_window > 65536)
      throw error(errc::invalid_config, "ghs: reorder_window must be in [1, 65536]");
  }
};

/// What a node knows once the tree is built.
struct ghs_result {
  std::vector<address> branches;  ///< this node's tree edges (neighbours), in edge order
  std::optional<address> parent;  ///< the next node towards the root; nullopt at the root
  address root;                   ///< the core node with the higher address
  edge_key core;                  ///< the last core edge (the fragment's name); all zero for a lone node
  std::uint32_t level = 0;        ///< the final fragment level (<= log2 N)
};

namespace ghs_msg {
// Every message carries `seq`: its position on its link (see "Channels").
struct connect {
  static constexpr message_type wire_id = 1;
  static constexpr std::string_view wire_name = "connect";
  std::uint32_t seq = 0, level = 0;
  template <class A> void serialize(A& ar) { ar(seq, level); }
};
struct initiate {
  static constexpr message_type wire_id = 2;
  static constexpr std::string_view wire_name = "initiate";
  std::uint32_t seq = 0, level = 0;
  edge_key fragment;
  bool find = false;  ///< the state the fragment is in: Find (search) or Found
  template <class A> void serialize(A& ar) { ar(seq, level, fragment, find); }
};
struct test {
  static constexpr message_type wire_id = 3;
  static constexpr std::string_view wire_name = "test";
  std::uint32_t seq = 0, level = 0;
  edge_key fragment;
  template <class A> void serialize(A& ar) { ar(seq, level, fragment); }
};
struct accept {
  static constexpr message_type wire_id = 4;
  static constexpr std::string_view wire_name = "accept";
  std::uint32_t seq = 0;
  template <class A> void serialize(A& ar) { ar(seq); }
};
struct reject {
  static constexpr message_type wire_id = 5;
  static constexpr std::string_view wire_name = "reject";
  std::uint32_t seq = 0;
  template <class A> void serialize(A& ar) { ar(seq); }
};
struct report {
  static constexpr message_type wire_id = 6;
  static constexpr std::string_view wire_name = "report";
  std::uint32_t seq = 0;
  bool infinite = true;  ///< no outgoing edge below this subtree
  edge_key best;         ///< otherwise its minimum-weight outgoing edge
  template <class A> void serialize(A& ar) { ar(seq, infinite, best); }
};
struct change_root {
  static constexpr message_type wire_id = 7;
  static constexpr std::string_view wire_name = "change_root";
  std::uint32_t seq = 0;
  template <class A> void serialize(A& ar) { ar(seq); }
};
/// Not in GHS83 (which halts at the core): tells the subtree that the tree is final.
struct done {
  static constexpr message_type wire_id = 8;
  static constexpr std::string_view wire_name = "done";
  std::uint32_t seq = 0;
  edge_key core;
  std::uint32_t level = 0;
  template <class A> void serialize(A& ar) { ar(seq, core, level); }
};
}  // namespace ghs_msg

enum class ghs_state : std::uint8_t { sleeping, find, found };

template <Env E> class ghs {
 public:
  using messages = wire::message_set<ghs_msg::connect, ghs_msg::initiate, ghs_msg::test, ghs_msg::accept,
                                     ghs_msg::reject, ghs_msg::report, ghs_msg::change_root, ghs_msg::done>;
  /// What it counts (env.count), declared: dcp/core/counter_set.hpp.
  static constexpr dcp::counter_set counters{{"not_a_neighbour",
                                              "duplicate",
                                              "sequence_out_of_window",
                                              "deferred_twice",
                                              "absurd_level",
                                              "unexpected_connect",
                                              "connect_on_used_edge",
                                              "connect_from_higher_level",
                                              "connect_on_rejected_edge",
                                              "unexpected_initiate",
                                              "initiate_on_non_branch",
                                              "stale_initiate",
                                              "initiate_during_search",
                                              "unexpected_test",
                                              "unexpected_accept",
                                              "unexpected_reject",
                                              "unexpected_report",
                                              "unexpected_change_root",
                                              "unexpected_done",
                                              "done"}};
  static constexpr std::string_view name = "spanning.ghs";
  static constexpr protocol_id default_id = 160;
  using done_handler = std::function<void(const ghs_result&)>;

  ghs(E env, ghs_config cfg) : env_(std::move(env)), out_(env_), cfg_(std::move(cfg)) {
    cfg_.validate(env_.self());
    for (auto& e : cfg_.edges) edges_.push_back(edge{edge_key::of(env_.self(), e.neighbour, e.weight), e.neighbour});
    std::sort(edges_.begin(), edges_.end(), [](const edge& a, const edge& b) { return a.key < b.key; });
    for (std::size_t i = 0; i < edges_.size(); ++i) index_.emplace(edges_[i].neighbour, i);
  }
  ghs(const ghs&) = delete;
  ghs& operator=(const ghs&) = delete;

  void start() {
    if (cfg_.wake_on_start) wake_up();
  }
  /// Spontaneous awakening (GHS83 (1)); any number of nodes may do it, at any time.
  void wake_up() {
    if (state_ != ghs_state::sleeping) return;
    wakeup();
    drain_deferred();
  }

  bool done() const noexcept { return result_.has_value(); }
  /// The tree as this node knows it; nullopt until done().
  const std::optional<ghs_result>& result() const noexcept { return result_; }
  /// Runs once, after the event in which this node learnt that the tree is final.
  void on_done(done_handler h) { on_done_ = std::move(h); }

  ghs_state state() const noexcept { return state_; }
  std::uint32_t level() const noexcept { return level_; }
  const edge_key& fragment() const noexcept { return fragment_; }
  std::size_t deferred() const noexcept { return deferred_.size(); }
  /// Neighbours whose edge is a Branch so far (the final tree once done()).
  std::vector<address> branches() const {
    std::vector<address> out;
    for (auto& e : edges_)
      if (e.state == edge_state::branch) out.push_back(e.neighbour);
    return out;
  }

  /// What must hold after every event (the tests call it).
  bool check_invariants() const {
    if (level_ > cfg_.max_level) return false;
    if (deferred_.size() > max_deferred()) return false;
    if (test_edge_ && edges_[*test_edge_].state == edge_state::rejected) return false;
    if (in_branch_ && edges_[*in_branch_].state != edge_state::branch) return false;
    if (find_count_ > edges_.size()) return false;
    if (state_ == ghs_state::found && (find_count_ != 0 || test_edge_)) return false;
    for (auto& e : edges_)
      if (e.pending.size() > cfg_.reorder_window) return false;
    return true;
  }

  // ---- messages: sequenced per link, then handled in link order ----
  void on_message(const address& from, const ghs_msg::connect& m) { receive(from, m.seq, m); }
  void on_message(const address& from, const ghs_msg::initiate& m) { receive(from, m.seq, m); }
  void on_message(const address& from, const ghs_msg::test& m) { receive(from, m.seq, m); }
  void on_message(const address& from, const ghs_msg::accept& m) { receive(from, m.seq, m); }
  void on_message(const address& from, const ghs_msg::reject& m) { receive(from, m.seq, m); }
  void on_message(const address& from, const ghs_msg::report& m) { receive(from, m.seq, m); }
  void on_message(const address& from, const ghs_msg::change_root& m) { receive(from, m.seq, m); }
  void on_message(const address& from, const ghs_msg::done& m) { receive(from, m.seq, m); }

 private:
  enum class edge_state : std::uint8_t { basic, branch, rejected };
  using any_message = std::variant<ghs_msg::connect, ghs_msg::initiate, ghs_msg::test, ghs_msg::accept, ghs_msg::reject,
                                   ghs_msg::report, ghs_msg::change_root, ghs_msg::done>;
  struct edge {
    edge_key key;
    address neighbour;
    edge_state state = edge_state::basic;
    std::uint32_t next_out = 0, next_in = 0;       // per-link sequence numbers
    std::map<std::uint32_t, any_message> pending;  // arrived ahead of next_in
  };
  struct deferred_message {
    std::size_t edge;
    any_message message;
  };
  enum class outcome { handled, deferred };

  std::size_t max_deferred() const noexcept { return 3 * edges_.size(); }  // one of each deferrable kind per edge

  // ---- the link layer: restore each link's FIFO order ----
  template <class M> void receive(const address& from, std::uint32_t seq, const M& m) {
    const auto it = index_.find(from);
    if (it == index_.end()) return env_.count("not_a_neighbour");
    auto& e = edges_[it->second];
    if (seq < e.next_in) return env_.count("duplicate");
    if (seq - e.next_in >= cfg_.reorder_window) return env_.count("sequence_out_of_window");
    if (seq != e.next_in) {
      if (!e.pending.emplace(seq, m).second) env_.count("duplicate");
      return;
    }
    ++e.next_in;
    dispatch(it->second, any_message{m});
    while (!e.pending.empty() && e.pending.begin()->first == e.next_in) {
      auto node = e.pending.extract(e.pending.begin());
      ++e.next_in;
      dispatch(it->second, std::move(node.mapped()));
    }
  }
  void dispatch(std::size_t j, any_message m) {
    if (std::visit([&](const auto& msg) { return handle(j, msg); }, m) == outcome::deferred) {
      // An honest neighbour has at most one CONNECT, one TEST and (the other
      // core node) one REPORT waiting here at a time: a second is bad input,
      // and a neighbour cannot crowd out the others' deferred messages.
      for (auto& d : deferred_)
        if (d.edge == j && d.message.index() == m.index()) return env_.count("deferred_twice");
      deferred_.push_back({j, std::move(m)});
      return;
    }
    drain_deferred();
  }
  /// GHS83's queue: a deferred message is looked at again after every change,
  /// oldest first, until none can be handled (see "The deadlock" above).
  void drain_deferred() {
    for (std::size_t i = 0; i < deferred_.size();) {
      auto& d = deferred_[i];
      const auto j = d.edge;
      const auto r = std::visit([&](const auto& msg) { return handle(j, msg); }, d.message);
      if (r == outcome::deferred) {
        ++i;
        continue;
      }
      deferred_.erase(deferred_.begin() + static_cast<std::ptrdiff_t>(i));
      i = 0;  // the state changed: the older ones may be ready now
    }
  }

  template <class M> void send(std::size_t j, M m) {
    m.seq = edges_[j].next_out++;
    env_.send(edges_[j].neighbour, m);
  }
  bool level_ok(std::uint32_t l) {
    if (l <= cfg_.max_level) return true;
    env_.count("absurd_level");
    return false;
  }

  // ---- GHS83, numbered as in the paper ----

  // (2) wakeup
  void wakeup() {
    state_ = ghs_state::found;
    level_ = 0;
    find_count_ = 0;
    if (edges_.empty()) {  // a lone node is its own tree
      finish(edge_key{}, std::nullopt);
      return;
    }
    edges_[0].state = edge_state::branch;  // edges_ is sorted: 0 is the minimum-weight edge
    send(0, ghs_msg::connect{.level = 0});
  }

  // (3) Connect(L) on edge j
  outcome handle(std::size_t j, const ghs_msg::connect& m) {
    if (!level_ok(m.level) || done()) return reject_input("unexpected_connect");
    if (state_ == ghs_state::sleeping) wakeup();
    auto& e = edges_[j];
    if (m.level < level_) {  // absorb the lower fragment
      if (e.state != edge_state::basic) return reject_input("connect_on_used_edge");
      e.state = edge_state::branch;
      send(j, ghs_msg::initiate{.level = level_, .fragment = fragment_, .find = state_ == ghs_state::find});
      if (state_ == ghs_state::find) ++find_count_;
      return outcome::handled;
    }
    // A CONNECT(L) with L > LN cannot happen: the sender's TEST was accepted here at level >= L.
    if (m.level > level_) return reject_input("connect_from_higher_level");
    if (e.state == edge_state::basic) return outcome::deferred;
    if (e.state == edge_state::rejected) return reject_input("connect_on_rejected_edge");
    // Both ends chose j at the same level: merge; j is the new core.
    send(j, ghs_msg::initiate{.level = level_ + 1, .fragment = e.key, .find = true});
    return outcome::handled;
  }

  // (4) Initiate(L, F, S) on edge j
  outcome handle(std::size_t j, const ghs_msg::initiate& m) {
    if (!level_ok(m.level) || done()) return reject_input("unexpected_initiate");
    if (edges_[j].state != edge_state::branch) return reject_input("initiate_on_non_branch");
    if (state_ == ghs_state::sleeping || m.level <= level_) return reject_input("stale_initiate");
    if (state_ == ghs_state::find) return reject_input("initiate_during_search");
    level_ = m.level;
    fragment_ = m.fragment;
    state_ = m.find ? ghs_state::find : ghs_state::found;
    in_branch_ = j;
    core_reported_ = false;
    best_edge_.reset();
    best_.reset();
    for (std::size_t i = 0; i < edges_.size(); ++i) {
      if (i == j || edges_[i].state != edge_state::branch) continue;
      send(i, ghs_msg::initiate{.level = m.level, .fragment = m.fragment, .find = m.find});
      if (m.find) ++find_count_;
    }
    if (m.find) test();
    return outcome::handled;
  }

  // (5) procedure test
  void test() {
    for (std::size_t i = 0; i < edges_.size(); ++i)
      if (edges_[i].state == edge_state::basic) {  // sorted: the first Basic edge is the cheapest
        test_edge_ = i;
        send(i, ghs_msg::test{.level = level_, .fragment = fragment_});
        return;
      }
    test_edge_.reset();
    report();
  }

  // (6) Test(L, F) on edge j
  outcome handle(std::size_t j, const ghs_msg::test& m) {
    if (!level_ok(m.level) || done()) return reject_input("unexpected_test");
    if (state_ == ghs_state::sleeping) wakeup();
    if (m.level > level_) return outcome::deferred;  // we may be in that fragment and not know it yet
    if (m.fragment != fragment_) {
      send(j, ghs_msg::accept{});
      return outcome::handled;
    }
    // The same fragment. The edge may already be a Branch here: we absorbed the
    // tester's old fragment over it while its TEST waited for our level.
    auto& e = edges_[j];
    if (e.state == edge_state::basic) e.state = edge_state::rejected;
    if (test_edge_ != j)
      send(j, ghs_msg::reject{});
    else
      test();  // both ends tested each other: neither needs a REJECT
    return outcome::handled;
  }

  // (7) Accept on edge j
  outcome handle(std::size_t j, const ghs_msg::accept&) {
    if (test_edge_ != j || state_ != ghs_state::find) return reject_input("unexpected_accept");
    test_edge_.reset();
    if (!best_ || edges_[j].key < *best_) {
      best_edge_ = j;
      best_ = edges_[j].key;
    }
    report();
    return outcome::handled;
  }

  // (8) Reject on edge j
  outcome handle(std::size_t j, const ghs_msg::reject&) {
    if (test_edge_ != j || state_ != ghs_state::find) return reject_input("unexpected_reject");
    if (edges_[j].state == edge_state::basic) edges_[j].state = edge_state::rejected;
    test();
    return outcome::handled;
  }

  // (9) procedure report
  void report() {
    if (find_count_ != 0 || test_edge_) return;
    state_ = ghs_state::found;
    ghs_msg::report r;
    if (best_) r.infinite = false, r.best = *best_;
    send(*in_branch_, r);
  }

  // (10) Report(w) on edge j
  outcome handle(std::size_t j, const ghs_msg::report& m) {
    if (done()) return reject_input("unexpected_report");
    const std::optional<edge_key> w = m.infinite ? std::nullopt : std::optional<edge_key>(m.best);
    auto less = [](const std::optional<edge_key>& a, const std::optional<edge_key>& b) {
      return a && (!b || *a < *b);  // nullopt is infinity
    };
    if (j != in_branch_) {
      if (edges_[j].state != edge_state::branch || state_ != ghs_state::find || find_count_ == 0)
        return reject_input("unexpected_report");
      --find_count_;
      if (less(w, best_)) {
        best_ = w;
        best_edge_ = j;
      }
      report();
      return outcome::handled;
    }
    if (edges_[j].key != fragment_ || core_reported_) return reject_input("unexpected_report");  // only over the core
    if (state_ == ghs_state::find) return outcome::deferred;  // the other core node reported first
    core_reported_ = true;
    if (less(best_, w)) {
      change_root();
    } else if (!w && !best_) {  // neither half has an outgoing edge: the tree is the MST
      halt();
    }
    return outcome::handled;
  }

  // (11) procedure change-root
  void change_root() {
    auto& b = edges_[*best_edge_];
    if (b.state == edge_state::branch) {
      send(*best_edge_, ghs_msg::change_root{});
    } else {
      send(*best_edge_, ghs_msg::connect{.level = level_});
      b.state = edge_state::branch;
    }
  }

  // (12) Change-root on edge j
  outcome handle(std::size_t j, const ghs_msg::change_root&) {
    if (j != in_branch_ || state_ != ghs_state::found || !best_edge_ || done())
      return reject_input("unexpected_change_root");
    change_root();
    return outcome::handled;
  }

  // GHS83 halts at the core; both core nodes get here. Each tells its half.
  void halt() {
    const address root = std::max(fragment_.low, fragment_.high);
    finish(fragment_, root == env_.self() ? std::nullopt : std::optional<std::size_t>(*in_branch_));
  }
  outcome handle(std::size_t j, const ghs_msg::done& m) {
    if (done() || j != in_branch_ || state_ != ghs_state::found || m.core != fragment_ || m.level != level_)
      return reject_input("unexpected_done");
    finish(fragment_, j);
    return outcome::handled;
  }
  void finish(const edge_key& core, std::optional<std::size_t> parent) {
    ghs_result r;
    r.core = core;
    r.level = level_;
    r.root = edges_.empty() ? env_.self() : std::max(core.low, core.high);
    if (parent) r.parent = edges_[*parent].neighbour;
    for (std::size_t i = 0; i < edges_.size(); ++i) {
      if (edges_[i].state != edge_state::branch) continue;
      r.branches.push_back(edges_[i].neighbour);
      if (in_branch_ && i == *in_branch_) continue;  // towards the core (or the other core node, which has its half)
      send(i, ghs_msg::done{.core = core, .level = level_});
    }
    result_ = std::move(r);
    env_.count("done");
    if (on_done_)
      out_.push([this] {
        if (on_done_) on_done_(*result_);
      });
  }

  outcome reject_input(std::string_view what) {
    env_.count(what);
    return outcome::handled;  // dropped: never deferred, never applied
  }

  E env_;
  outbox<E> out_;  ///< on_done, after the event
  ghs_config cfg_;
  std::vector<edge> edges_;  // sorted by key
  std::map<address, std::size_t> index_;
  ghs_state state_ = ghs_state::sleeping;
  std::uint32_t level_ = 0;
  edge_key fragment_{};
  std::optional<std::size_t> in_branch_, test_edge_, best_edge_;
  std::optional<edge_key> best_;
  std::size_t find_count_ = 0;
  bool core_reported_ = false;  // the other core node's REPORT of this phase was handled
  std::vector<deferred_message> deferred_;
  std::optional<ghs_result> result_;
  done_handler on_done_;
};

}  // namespace dcp::spanning
