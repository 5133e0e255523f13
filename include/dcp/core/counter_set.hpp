#pragma once
// counter_set: the named counters a protocol declares.
//
// A protocol counts events by name (env.count("walker_duplicates")) and a test
// reads them by name (metrics.counter(id, "walker_duplicates")). Names looked
// up as free strings let a typo read 0 forever; so each protocol declares the
// names it counts, once, next to its message set:
//
//   static constexpr dcp::counter_set counters{{
//       "walker_duplicates",                                   // a name
//       {"walker_expired", "a walker that ran out of hops"},   // or a name and what it means
//   }};
//
// The runtime registers the set when it hosts the protocol (dcp::host), and
// from then on counting or reading a name the set does not hold fails a
// DCP_ASSERT that names it; and every declared counter is listed by
// metrics::for_each_counter, at 0 until it first counts (so a metrics
// exposition shows it before the event has ever happened). What a counter
// means is its # HELP line in the Prometheus text (dcp/net/metrics_exposition.hpp).
//
// A protocol without a `counters` member declares none: it may not count.
// A helper shared by several protocols (dcp/<chapter>/detail/) declares the
// names it counts as its own counter_set, and each host protocol includes it:
//
//   static constexpr auto counters = dcp::join(detail::reliable_links_counters, dcp::counter_set{{...}});
//
// A set is checked at compile time: names are snake_case and unique.
#include <array>
#include <cstddef>
#include <span>
#include <string_view>

namespace dcp {

/// One declared counter: its name and, optionally, what one count means.
struct counter_info {
  std::string_view name;
  std::string_view help;
  constexpr counter_info() = default;
  constexpr counter_info(const char* n) : name(n) {}  // NOLINT: a bare name is the common case
  constexpr counter_info(std::string_view n, std::string_view h) : name(n), help(h) {}
};

namespace detail {
// Not constexpr on purpose: reached while a set is built at compile time, it
// makes the declaration a compile error that shows this message.
inline void counter_set_invalid(const char* /*why*/) {}

constexpr bool counter_name_ok(std::string_view n) {
  if (n.empty() || n.front() == '_' || (n.front() >= '0' && n.front() <= '9')) return false;
  for (char c : n)
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')) return false;
  return true;
}
}  // namespace detail

template <std::size_t N> class counter_set {
 public:
  constexpr counter_set() requires(N == 0) = default;
  // (N == 0 ? 1 : N): an array of 0 is no type; the empty set is counter_set{}.
  constexpr counter_set(const counter_info (&list)[N == 0 ? 1 : N]) requires(N > 0) {  // NOLINT: braces read as the set
    for (std::size_t i = 0; i < N; ++i) items_[i] = list[i];
    validate();
  }

  constexpr std::size_t size() const noexcept { return N; }
  constexpr const counter_info* begin() const noexcept { return items_.data(); }
  constexpr const counter_info* end() const noexcept { return items_.data() + N; }
  constexpr bool contains(std::string_view name) const noexcept {
    for (const auto& c : items_)
      if (c.name == name) return true;
    return false;
  }
  /// What the runtimes register: the same counters, whatever N.
  constexpr operator std::span<const counter_info>() const noexcept { return {items_.data(), N}; }  // NOLINT

 private:
  template <std::size_t... M> friend constexpr counter_set<(M + ... + 0)> join(const counter_set<M>&...);
  struct union_of {};
  // join's: the parts were checked, and a name in two of them is one counter.
  constexpr counter_set(union_of, const std::array<counter_info, N>& all) : items_(all) {}

  constexpr void validate() const {
    for (std::size_t i = 0; i < N; ++i) {
      if (!detail::counter_name_ok(items_[i].name))
        detail::counter_set_invalid("a counter name is snake_case: [a-z][a-z0-9_]*");
      for (std::size_t j = 0; j < i; ++j)
        if (items_[i].name == items_[j].name) detail::counter_set_invalid("a counter is declared twice");
    }
  }
  std::array<counter_info, N> items_{};
};

counter_set()->counter_set<0>;
template <std::size_t N> counter_set(const counter_info (&)[N]) -> counter_set<N>;

/// The union of sets: a protocol's own counters and those of the helpers it
/// hosts. A name in two parts is one counter (both count the same event
/// under it), listed twice here and once by dcp::metrics.
template <std::size_t... N> constexpr counter_set<(N + ... + 0)> join(const counter_set<N>&... sets) {
  std::array<counter_info, (N + ... + 0)> all{};
  std::size_t i = 0;
  (
      [&] {
        for (const auto& c : sets) all[i++] = c;
      }(),
      ...);
  return counter_set<(N + ... + 0)>(typename counter_set<(N + ... + 0)>::union_of{}, all);
}

/// P's declared counters: P::counters, or none when P declares none.
template <class P> constexpr std::span<const counter_info> counters_of() noexcept {
  if constexpr (requires { P::counters; })
    return P::counters;
  else
    return {};
}

}  // namespace dcp
