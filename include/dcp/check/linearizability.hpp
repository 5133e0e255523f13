#pragma once
// A linearizability checker: Wing & Gong's search with Lowe's memoization,
// as Porcupine implements it (Lowe, "Testing for linearizability", 2017;
// Horn & Kroening, "Faster linearizability checking via P-compositionality",
// 2015).
//
// A history is linearizable if each operation can be given a single instant,
// between its call and its return, at which it takes effect, so that the
// operations in that order are a legal sequential run of the model. The
// search walks the history's calls and returns in time order, keeping the
// operations not yet linearized in a linked list:
//
//   - at a call, try to linearize that operation now: if the model accepts
//     its output from the current state, remove the operation from the list
//     and restart from the first remaining entry;
//   - at a return, the operation returning cannot be placed any later, so
//     undo the last choice and try the next candidate.
//
// The list is empty exactly when every operation got an instant: linearizable.
// Undoing past the first choice means no order works: not linearizable. The
// memo of (set of linearized operations, model state) pairs already explored
// cuts the search from factorial to, for the usual store histories, roughly
// linear in their length.
//
// Conventions:
//   - an operation whose return time equals another's call time is treated
//     as overlapping it (as Porcupine does): timestamps from different
//     clients rarely justify a strict order at equal readings;
//   - an operation that never returned (output nullopt: a timeout, a client
//     crash) may or may not have taken effect. It is given a return time of
//     +infinity and the model is asked to accept any output for it; placed
//     after every other operation its effect is unobserved, which covers
//     "did not happen";
//   - with a PartitionedModel the history is split by key and each part is
//     checked on its own (linearizability is local).
//
// Cost. A linearizable history is usually accepted in close to one step per
// entry. A history that is not linearizable makes the search exhaust every
// configuration of (linearized set, state) reachable before the violation,
// and each pending write multiplies those (it may be linearized at any later
// point, or never). Two reductions keep that in check: pending read-only
// operations are dropped, and a configuration that has linearized a superset
// of the pending operations of an already visited one (same completed set,
// same state) is not explored again (see first_visit).
// The search is exponential in the worst case; `check_options::max_steps`
// bounds it and the verdict is then `unknown`, never a hang. Figures:
// benchmarks/linearizability_checker.cpp.
#include <algorithm>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "dcp/check/model.hpp"
#include "dcp/core/error.hpp"
#include "dcp/core/time.hpp"

namespace dcp::check {

/// One client operation as recorded: who, when, what, and what came back.
template <class Input, class Output>
struct operation {
  std::uint64_t client = 0;
  time_point call{};
  time_point ret{};               ///< ignored when the operation never returned
  Input input{};
  std::optional<Output> output;   ///< nullopt: never returned (may or may not have taken effect)

  bool pending() const noexcept { return !output.has_value(); }
};

template <class M>
using history = std::vector<operation<typename M::input, typename M::output>>;

enum class verdict { linearizable, not_linearizable, unknown };

struct check_options {
  /// Search steps (call or return entries visited) before giving up with `unknown`.
  std::uint64_t max_steps = 200'000'000;
};

struct check_result {
  verdict outcome = verdict::linearizable;
  /// When not linearizable: the longest legal linearization the search found
  /// in the part of the history that failed, as indices into the history.
  /// The operation that could not follow it is where to start looking.
  std::vector<std::size_t> longest_linearization;
  std::uint64_t steps = 0;         ///< search steps taken, over all parts
  std::size_t partitions = 0;      ///< parts checked

  explicit operator bool() const noexcept { return outcome == verdict::linearizable; }
};

namespace detail {

struct bitset {
  std::vector<std::uint64_t> words;
  explicit bitset(std::size_t n) : words((n + 63) / 64, 0) {}
  void set(std::size_t i) noexcept { words[i / 64] |= std::uint64_t{1} << (i % 64); }
  void reset(std::size_t i) noexcept { words[i / 64] &= ~(std::uint64_t{1} << (i % 64)); }
  std::size_t hash() const noexcept {
    std::uint64_t h = 0xCBF29CE484222325ull;
    for (auto w : words) h = (h ^ w) * 0x100000001B3ull ^ (h >> 29);
    return static_cast<std::size_t>(h);
  }
  bool subset_of(const bitset& o) const noexcept {
    for (std::size_t i = 0; i < words.size(); ++i)
      if (words[i] & ~o.words[i]) return false;
    return true;
  }
  friend bool operator==(const bitset&, const bitset&) = default;
};

template <Model M>
class wgl_search {
 public:
  using op_t = operation<typename M::input, typename M::output>;

  /// `ops`: indices into `h` of the operations of one part.
  wgl_search(const std::vector<op_t>& h, const std::vector<std::size_t>& ops) : h_(h), ops_(ops) {
    struct event {
      time_point at;
      bool is_return;
      std::size_t local;
    };
    std::vector<event> events;
    events.reserve(2 * ops.size());
    for (std::size_t k = 0; k < ops.size(); ++k) {
      const auto& o = h[ops[k]];
      events.push_back({o.call, false, k});
      events.push_back({o.pending() ? time_point::max() : o.ret, true, k});
    }
    // time order; at equal times calls first (overlap); stable for determinism
    std::stable_sort(events.begin(), events.end(), [](const event& a, const event& b) {
      if (a.at != b.at) return a.at < b.at;
      return !a.is_return && b.is_return;
    });
    nodes_.resize(events.size() + 1);  // node 0 is the head sentinel
    std::vector<int> call_node(ops.size(), -1);
    for (std::size_t i = 0; i < events.size(); ++i) {
      auto& n = nodes_[i + 1];
      n.local = events[i].local;
      n.is_call = !events[i].is_return;
      n.prev = static_cast<int>(i);
      n.next = i + 1 < events.size() ? static_cast<int>(i + 2) : -1;
      if (n.is_call) call_node[n.local] = static_cast<int>(i + 1);
      else {
        n.match = call_node[n.local];
        nodes_[static_cast<std::size_t>(n.match)].match = static_cast<int>(i + 1);
      }
    }
    nodes_[0].next = events.empty() ? -1 : 1;
  }

  /// Runs the search; `steps_left` is the budget shared by all parts.
  verdict run(std::uint64_t& steps_left, std::uint64_t& steps_taken, std::vector<std::size_t>& longest) {
    typename M::state state = M::init();
    bitset done(ops_.size());        // completed operations linearized so far
    bitset pending(ops_.size());     // operations that never returned, linearized so far
    std::unordered_map<memo_key, std::vector<bitset>, memo_hash> memo;
    std::vector<frame> stack;
    auto record_longest = [&] {
      if (stack.size() <= longest.size()) return;
      longest.clear();
      for (const auto& f : stack) longest.push_back(ops_[nodes_[static_cast<std::size_t>(f.call)].local]);
    };
    // Once every completed operation is linearized, the pending ones left can
    // go last (any output is accepted from them): that is success, and it is
    // also what makes the dominance in first_visit sound.
    std::size_t completed_left = 0;
    for (auto i : ops_) completed_left += !h_[i].pending();
    int entry = nodes_[0].next;
    while (completed_left != 0) {
      if (steps_left == 0) return record_longest(), verdict::unknown;
      --steps_left;
      ++steps_taken;
      const auto& n = nodes_[static_cast<std::size_t>(entry)];
      if (n.is_call) {
        const auto& o = h_[ops_[n.local]];
        if (auto next = M::step(state, o.input, o.output)) {
          bitset& set = o.pending() ? pending : done;
          set.set(n.local);
          if (first_visit(memo, done, pending, *next)) {
            completed_left -= !o.pending();
            stack.push_back({entry, std::move(state)});
            state = std::move(*next);
            lift(entry);
            entry = nodes_[0].next;
            continue;
          }
          set.reset(n.local);
        }
        entry = n.next;
      } else {
        // an operation returns before we could place it: backtrack
        record_longest();
        if (stack.empty()) return verdict::not_linearizable;
        frame f = std::move(stack.back());
        stack.pop_back();
        state = std::move(f.state);
        const std::size_t local = nodes_[static_cast<std::size_t>(f.call)].local;
        (h_[ops_[local]].pending() ? pending : done).reset(local);
        completed_left += !h_[ops_[local]].pending();
        unlift(f.call);
        entry = nodes_[static_cast<std::size_t>(f.call)].next;
      }
    }
    return verdict::linearizable;
  }

 private:
  struct node {
    int prev = -1, next = -1, match = -1;
    std::size_t local = 0;
    bool is_call = false;
  };
  struct frame {
    int call;
    typename M::state state;
  };
  // The memo, with dominance for operations that never returned. Such an
  // operation can always be linearized last (it has no return to respect and
  // the model accepts any output for it), so a configuration (done, P, state)
  // can finish whenever (done, P', state) with P' a subset of P can: having
  // linearized fewer pending operations leaves strictly more options. A
  // configuration is therefore explored only if no visited one with the same
  // completed set and state has a subset of its pending set. Without pending
  // operations this is exactly Lowe's memo of (linearized set, state).
  // Why pruning is sound, by induction on the number k of completed
  // operations not yet linearized: at k = 0 the search stops with success
  // before any pruning. For k > 0, a pruned configuration D that could
  // finish is dominated by a visited X (same completed set and state, fewer
  // pending linearized); X can finish by placing D's next completed
  // operation first and its extra pending ones last, through a child with
  // k - 1, which the search enters (or prunes in favour of an already
  // finished configuration that could also finish), so the search succeeds.
  struct memo_key {
    bitset done;
    typename M::state state;
    bool operator==(const memo_key& o) const { return done == o.done && state == o.state; }
  };
  struct memo_hash {
    std::size_t operator()(const memo_key& k) const {
      return k.done.hash() ^ (hash_state<M>(k.state) * 0x9E3779B97F4A7C15ull);
    }
  };
  static bool first_visit(std::unordered_map<memo_key, std::vector<bitset>, memo_hash>& memo, const bitset& done,
                          const bitset& pending, const typename M::state& s) {
    auto [it, fresh] = memo.try_emplace(memo_key{done, s});
    auto& seen = it->second;
    if (!fresh) {
      for (const auto& p : seen)
        if (p.subset_of(pending)) return false;
      std::erase_if(seen, [&](const bitset& p) { return pending.subset_of(p); });  // now dominated
    }
    seen.push_back(pending);
    return true;
  }

  void unlink(int i) {
    auto& n = nodes_[static_cast<std::size_t>(i)];
    nodes_[static_cast<std::size_t>(n.prev)].next = n.next;
    if (n.next != -1) nodes_[static_cast<std::size_t>(n.next)].prev = n.prev;
  }
  void relink(int i) {
    auto& n = nodes_[static_cast<std::size_t>(i)];
    nodes_[static_cast<std::size_t>(n.prev)].next = i;
    if (n.next != -1) nodes_[static_cast<std::size_t>(n.next)].prev = i;
  }
  void lift(int call) {
    unlink(call);
    unlink(nodes_[static_cast<std::size_t>(call)].match);
  }
  void unlift(int call) {  // exact reverse of lift
    relink(nodes_[static_cast<std::size_t>(call)].match);
    relink(call);
  }

  const std::vector<op_t>& h_;
  const std::vector<std::size_t>& ops_;
  std::vector<node> nodes_;
};

}  // namespace detail

/// Checks `h` against model M. Throws dcp::error(invalid_argument) if a
/// completed operation returns before it is called.
template <class M>
check_result check_linearizability(const history<M>& h, const check_options& options = {}) {
  static_assert(Model<M>,
                "dcp: check_linearizability needs a Model: types state, input, output; static state init(); "
                "static std::optional<state> step(const state&, const input&, const std::optional<output>&); "
                "a state with == and std::hash (or static std::size_t hash(const state&))");
  for (std::size_t i = 0; i < h.size(); ++i)
    if (!h[i].pending() && h[i].ret < h[i].call)
      throw error(errc::invalid_argument, "check_linearizability: operation " + std::to_string(i) +
                                              " returns before it is called; fix the recorded times");
  // A read-only operation that never returned constrains nothing: drop it.
  auto relevant = [&](std::size_t i) {
    if constexpr (ReadOnlyAwareModel<M>) return !(h[i].pending() && M::read_only(h[i].input));
    else return true;
  };
  std::vector<std::vector<std::size_t>> parts;
  if constexpr (PartitionedModel<M>) {
    using key_t = std::decay_t<decltype(M::partition_key(h.front().input))>;
    std::map<key_t, std::vector<std::size_t>> by_key;
    for (std::size_t i = 0; i < h.size(); ++i)
      if (relevant(i)) by_key[M::partition_key(h[i].input)].push_back(i);
    for (auto& [k, ops] : by_key) parts.push_back(std::move(ops));
  } else {
    parts.emplace_back();
    for (std::size_t i = 0; i < h.size(); ++i)
      if (relevant(i)) parts[0].push_back(i);
  }
  check_result result;
  std::uint64_t steps_left = options.max_steps;
  for (const auto& ops : parts) {
    ++result.partitions;
    std::vector<std::size_t> longest;
    detail::wgl_search<M> search(h, ops);
    const verdict v = search.run(steps_left, result.steps, longest);
    if (v != verdict::linearizable) {
      result.outcome = v;
      result.longest_linearization = std::move(longest);
      return result;
    }
  }
  return result;
}

}  // namespace dcp::check
