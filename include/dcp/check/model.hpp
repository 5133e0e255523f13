#pragma once
// Model: the sequential specification a concurrent history is checked against.
//
// A model is a type with
//
//     using state = ...;    // equality-comparable, hashable (std::hash<state> or M::hash)
//     using input = ...;    // what a client asked
//     using output = ...;   // what it was told
//     static state init();
//     static std::optional<state> step(const state&, const input&, const std::optional<output>&);
//
// step() answers "starting from this state, could this input have produced
// this output, and what is the state afterwards?": nullopt means no. The
// output is nullopt for an operation that never returned (a timeout, a crash):
// the model must then accept any outcome and return the state as if the
// operation took effect. (Whether it took effect at all is the checker's
// business: it may place such an operation after everything else, where its
// effect is observed by nobody.)
//
// Optionally, `static std::size_t bytes(const state&)` says how much memory
// a state holds with what it points to (a map, strings): the checker counts
// it against its memory budget (check_options::max_memory_bytes); without it,
// sizeof(state) is counted.
//
// Optionally, `static Key partition_key(const input&)` splits a history into
// independent sub-histories (one per key of a key-value store) that are
// checked separately: linearizability is local (Herlihy & Wing), so the
// whole history is linearizable iff every part is, and the search space
// shrinks from the product to the sum.
#include <concepts>
#include <cstddef>
#include <functional>
#include <optional>

namespace dcp::check {

template <class M>
concept Model = requires {
  typename M::state;
  typename M::input;
  typename M::output;
}
&&std::equality_comparable<typename M::state>&& std::copy_constructible<typename M::state>&& requires(
    const typename M::state& s, const typename M::input& in, const std::optional<typename M::output>& out) {
  { M::init() } -> std::convertible_to<typename M::state>;
  { M::step(s, in, out) } -> std::same_as<std::optional<typename M::state>>;
}
&&(
    requires(const typename M::state& s) {
      { M::hash(s) } -> std::convertible_to<std::size_t>;
    } ||
    requires(const typename M::state& s) {
      { std::hash<typename M::state>{}(s) } -> std::convertible_to<std::size_t>;
    });

/// Optionally, `static bool read_only(const input&)` marks inputs that never
/// change the state (a read, a get). An operation that never returned and is
/// read-only constrains nothing, so the checker drops it before searching:
/// each pending operation otherwise doubles the configurations the search
/// may have to visit.
template <class M>
concept ReadOnlyAwareModel = Model<M> && requires(const typename M::input& in) {
  { M::read_only(in) } -> std::convertible_to<bool>;
};

template <class M>
concept PartitionedModel = Model<M> && requires(const typename M::input& in) {
  M::partition_key(in);
};

namespace detail {
template <Model M> std::size_t hash_state(const typename M::state& s) {
  if constexpr (requires { M::hash(s); })
    return M::hash(s);
  else
    return std::hash<typename M::state>{}(s);
}
}  // namespace detail

}  // namespace dcp::check
