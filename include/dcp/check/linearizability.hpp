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
// The search is exponential in the worst case, in time and in memory (the
// memo holds one entry per configuration visited). Two budgets bound it and
// the verdict is then `unknown`, never a hang nor an exhausted machine:
// `check_options::max_steps` bounds the steps, `max_memory_bytes` the memory
// the memo and the backtracking stacks hold, over all parts at once (an
// estimate from the sizes of the entries; a model with heap-allocated state
// reports its size with `bytes(state)`, see model.hpp).
//
// Parts are searched interleaved, not one after another: each live part runs
// a slice of `slice_steps` steps in turn, and the check stops at the first
// part found not linearizable. A part that cannot be finished (a violation
// buried under thousands of pending writes) therefore does not hide a plain
// violation in another part, whatever their key order. When the memory budget
// is reached, the part holding the most memory is abandoned (its part is
// `unknown`, its memory freed) and the others go on; the answer is then
// `not_linearizable` if another part fails, else `unknown`.
// Figures: benchmarks/linearizability_checker.cpp.
#include <algorithm>
#include <cstdint>
#include <map>
#include <memory>
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
template <class Input, class Output> struct operation {
  std::uint64_t client = 0;
  time_point call{};
  time_point ret{};  ///< ignored when the operation never returned
  Input input{};
  std::optional<Output> output;  ///< nullopt: never returned (may or may not have taken effect)

  bool pending() const noexcept { return !output.has_value(); }
};

template <class M> using history = std::vector<operation<typename M::input, typename M::output>>;

enum class verdict { linearizable, not_linearizable, unknown };

struct check_options {
  /// Search steps (call or return entries visited), over all parts, before
  /// giving up with `unknown`.
  std::uint64_t max_steps = 200'000'000;
  /// Memory the searches may hold at once (memo entries and backtracking
  /// stacks, estimated: about 100 to 200 bytes per configuration visited).
  /// Reaching it abandons the part holding most; its verdict is `unknown`.
  std::size_t max_memory_bytes = std::size_t{1} << 30;
  /// Steps a part runs before the next live part gets its turn.
  std::uint64_t slice_steps = 20'000;
};

struct check_result {
  verdict outcome = verdict::linearizable;
  /// When not linearizable: the longest legal linearization the search found
  /// in the part of the history that failed, as indices into the history.
  /// The operation that could not follow it is where to start looking.
  std::vector<std::size_t> longest_linearization;
  std::uint64_t steps = 0;            ///< search steps taken, over all parts
  std::size_t partitions = 0;         ///< parts the history was split into
  std::size_t abandoned = 0;          ///< parts given up (step or memory budget): their verdict is unknown
  std::size_t peak_memory_bytes = 0;  ///< the most the searches held at once (estimated)
  /// When unknown: which budget ran out, in words.
  std::string reason;

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

/// Memory and steps shared by the searches of all parts.
struct search_budget {
  std::uint64_t steps_left = 0;
  std::uint64_t steps_taken = 0;
  std::size_t max_memory = 0;
  std::size_t memory_used = 0;
  std::size_t peak_memory = 0;
  bool reserve(std::size_t bytes) noexcept {
    if (bytes > max_memory || memory_used > max_memory - bytes) return false;
    memory_used += bytes;
    peak_memory = std::max(peak_memory, memory_used);
    return true;
  }
  void release(std::size_t bytes) noexcept { memory_used -= std::min(bytes, memory_used); }
};

template <Model M> std::size_t state_bytes(const typename M::state& s) {
  if constexpr (requires { M::bytes(s); })
    return static_cast<std::size_t>(M::bytes(s));
  else
    return sizeof(typename M::state);
}

/// Where a search stands after a slice.
enum class progress { running, linearizable, not_linearizable, out_of_memory };

template <Model M> class wgl_search {
 public:
  using op_t = operation<typename M::input, typename M::output>;

  /// `ops`: indices into `h` of the operations of one part.
  wgl_search(const std::vector<op_t>& h, const std::vector<std::size_t>& ops, search_budget& budget)
      : h_(h), ops_(ops), budget_(budget), state_(M::init()), done_(ops.size()), pending_(ops.size()) {
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
      if (n.is_call)
        call_node[n.local] = static_cast<int>(i + 1);
      else {
        n.match = call_node[n.local];
        nodes_[static_cast<std::size_t>(n.match)].match = static_cast<int>(i + 1);
      }
    }
    nodes_[0].next = events.empty() ? -1 : 1;
    entry_ = nodes_[0].next;
    // Once every completed operation is linearized, the pending ones left can
    // go last (any output is accepted from them): that is success, and it is
    // also what makes the dominance in first_visit sound.
    for (auto i : ops_) completed_left_ += !h_[i].pending();
    fixed_bytes_ = nodes_.size() * sizeof(node) + 2 * done_.words.size() * 8;
    held_ = fixed_bytes_;
    budget_.memory_used += fixed_bytes_;  // not refused: the history itself is already in memory
    budget_.peak_memory = std::max(budget_.peak_memory, budget_.memory_used);
  }
  wgl_search(const wgl_search&) = delete;
  wgl_search& operator=(const wgl_search&) = delete;
  ~wgl_search() { budget_.release(held_); }

  /// Memory this search holds (estimated), given back when it is destroyed.
  std::size_t held_bytes() const noexcept { return held_; }
  /// The longest legal linearization found so far, as indices into the history.
  const std::vector<std::size_t>& longest() const noexcept { return longest_; }

  /// Runs at most `slice` steps (each also taken from the shared budget).
  /// `out_of_memory` leaves the search as it was: it may run again once
  /// memory has been freed.
  progress run(std::uint64_t slice) {
    auto record_longest = [&] {
      if (stack_.size() <= longest_.size()) return;
      longest_.clear();
      for (const auto& f : stack_) longest_.push_back(ops_[nodes_[static_cast<std::size_t>(f.call)].local]);
    };
    while (completed_left_ != 0) {
      if (slice == 0 || budget_.steps_left == 0) return record_longest(), progress::running;
      const auto& n = nodes_[static_cast<std::size_t>(entry_)];
      if (n.is_call) {
        const auto& o = h_[ops_[n.local]];
        if (auto next = M::step(state_, o.input, o.output)) {
          bitset& set = o.pending() ? pending_ : done_;
          set.set(n.local);
          const visit v = first_visit(*next, sizeof(frame) + state_bytes<M>(state_));
          if (v == visit::no_memory) {
            set.reset(n.local);
            return record_longest(), progress::out_of_memory;
          }
          if (v == visit::fresh) {
            completed_left_ -= !o.pending();
            stack_.push_back({entry_, std::move(state_)});
            state_ = std::move(*next);
            lift(entry_);
            entry_ = nodes_[0].next;
            take_step(slice);
            continue;
          }
          set.reset(n.local);
        }
        entry_ = n.next;
      } else {
        // an operation returns before we could place it: backtrack
        record_longest();
        if (stack_.empty()) return progress::not_linearizable;
        frame f = std::move(stack_.back());
        stack_.pop_back();
        give_back(sizeof(frame) + state_bytes<M>(f.state));
        state_ = std::move(f.state);
        const std::size_t local = nodes_[static_cast<std::size_t>(f.call)].local;
        (h_[ops_[local]].pending() ? pending_ : done_).reset(local);
        completed_left_ += !h_[ops_[local]].pending();
        unlift(f.call);
        entry_ = nodes_[static_cast<std::size_t>(f.call)].next;
      }
      take_step(slice);
    }
    return progress::linearizable;
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
  enum class visit { fresh, seen, no_memory };
  // Also reserves `extra` bytes (the stack frame pushed on a fresh visit).
  visit first_visit(const typename M::state& s, std::size_t extra) {
    constexpr std::size_t per_allocation = 16;  // what malloc adds to each block
    const std::size_t set_bytes = sizeof(bitset) + pending_.words.size() * 8 + per_allocation;
    memo_key key{done_, s};
    auto it = memo_.find(key);
    std::size_t cost = extra + set_bytes;
    if (it != memo_.end()) {
      for (const auto& p : it->second)
        if (p.subset_of(pending_)) return visit::seen;
    } else {
      // the node (key, vector, hash links), its bucket, the bitset's words,
      // the vector's buffer, the state's heap
      cost += sizeof(std::pair<const memo_key, std::vector<bitset>>) + 4 * sizeof(void*) + 3 * per_allocation +
          done_.words.size() * 8 + state_bytes<M>(s) - sizeof(typename M::state);
    }
    if (!budget_.reserve(cost)) return visit::no_memory;
    held_ += cost;
    if (it == memo_.end()) {
      it = memo_.emplace(std::move(key), std::vector<bitset>{}).first;
    } else {
      const auto dropped = std::erase_if(it->second, [&](const bitset& p) { return pending_.subset_of(p); });
      give_back(dropped * set_bytes);  // now dominated
    }
    it->second.push_back(pending_);
    return visit::fresh;
  }
  void give_back(std::size_t bytes) noexcept {
    bytes = std::min(bytes, held_);
    held_ -= bytes;
    budget_.release(bytes);
  }
  void take_step(std::uint64_t& slice) noexcept {
    --slice;
    --budget_.steps_left;
    ++budget_.steps_taken;
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
  const std::vector<std::size_t> ops_;
  search_budget& budget_;
  std::vector<node> nodes_;
  typename M::state state_;
  bitset done_;     // completed operations linearized so far
  bitset pending_;  // operations that never returned, linearized so far
  std::unordered_map<memo_key, std::vector<bitset>, memo_hash> memo_;
  std::vector<frame> stack_;
  std::vector<std::size_t> longest_;
  std::size_t completed_left_ = 0;
  int entry_ = -1;
  std::size_t fixed_bytes_ = 0;
  std::size_t held_ = 0;  // bytes reserved in budget_
};

}  // namespace detail

/// Checks `h` against model M. Throws dcp::error(invalid_argument) if a
/// completed operation returns before it is called.
template <class M> check_result check_linearizability(const history<M>& h, const check_options& options = {}) {
  static_assert(Model<M>,
                "dcp: check_linearizability needs a Model: types state, input, output; static state init(); "
                "static std::optional<state> step(const state&, const input&, const std::optional<output>&); "
                "a state with == and std::hash (or static std::size_t hash(const state&))");
  for (std::size_t i = 0; i < h.size(); ++i)
    if (!h[i].pending() && h[i].ret < h[i].call)
      throw error(errc::invalid_argument,
                  "check_linearizability: operation " + std::to_string(i) +
                      " returns before it is called; fix the recorded times");
  // A read-only operation that never returned constrains nothing: drop it.
  auto relevant = [&](std::size_t i) {
    if constexpr (ReadOnlyAwareModel<M>)
      return !(h[i].pending() && M::read_only(h[i].input));
    else
      return true;
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
  result.partitions = parts.size();
  detail::search_budget budget{.steps_left = options.max_steps, .max_memory = options.max_memory_bytes};
  const std::uint64_t slice = std::max<std::uint64_t>(options.slice_steps, 1);
  std::vector<std::unique_ptr<detail::wgl_search<M>>> live;
  live.reserve(parts.size());
  for (const auto& ops : parts) live.push_back(std::make_unique<detail::wgl_search<M>>(h, ops, budget));
  bool out_of_memory = false;
  auto finish = [&](verdict v, std::vector<std::size_t> longest) {
    result.outcome = v;
    result.longest_linearization = std::move(longest);
    result.steps = budget.steps_taken;
    result.peak_memory_bytes = budget.peak_memory;
    return result;
  };
  auto abandon = [&](std::size_t i) {  // its verdict is unknown; its memory goes back to the others
    if (result.longest_linearization.empty()) result.longest_linearization = live[i]->longest();
    live[i].reset();
    ++result.abandoned;
  };
  // Round-robin slices until every part is decided, one fails, or the steps run out.
  while (true) {
    bool any = false;
    for (std::size_t i = 0; i < live.size(); ++i) {
      if (!live[i]) continue;
      if (budget.steps_left == 0) break;
      any = true;
      detail::progress p = live[i]->run(slice);
      while (p == detail::progress::out_of_memory) {
        out_of_memory = true;
        std::size_t biggest = i;
        for (std::size_t j = 0; j < live.size(); ++j)
          if (live[j] && live[j]->held_bytes() > live[biggest]->held_bytes()) biggest = j;
        abandon(biggest);
        if (biggest == i) break;
        p = live[i]->run(slice);
      }
      if (!live[i]) continue;
      if (p == detail::progress::not_linearizable) return finish(verdict::not_linearizable, live[i]->longest());
      if (p == detail::progress::linearizable) live[i].reset();
    }
    if (!any || budget.steps_left == 0) break;
  }
  for (std::size_t i = 0; i < live.size(); ++i)
    if (live[i]) abandon(i);
  if (result.abandoned == 0) return finish(verdict::linearizable, {});
  result.reason = std::to_string(result.abandoned) + " of " + std::to_string(parts.size()) + " parts undecided: " +
      (out_of_memory ? "the memory budget (check_options::max_memory_bytes = " +
               std::to_string(options.max_memory_bytes) + ") was reached"
                     : std::string{}) +
      (out_of_memory && budget.steps_left == 0 ? "; " : "") +
      (budget.steps_left == 0
           ? "the step budget (check_options::max_steps = " + std::to_string(options.max_steps) + ") was spent"
           : std::string{});
  auto longest = std::move(result.longest_linearization);
  return finish(verdict::unknown, std::move(longest));
}

}  // namespace dcp::check
