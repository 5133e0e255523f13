#pragma once
// Two models every replicated store can be checked against: a register with
// compare-and-set (Knossos' cas-register) and a key-value map with get, put
// and append (Porcupine's kv model), partitioned by key.
#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include "dcp/check/model.hpp"

namespace dcp::check {

/// A register holding an integer, with read, write and compare-and-set.
/// It starts with no value, distinct from every integer: Jepsen's registers
/// start at nil and its clients write real zeros, so a read of 0 before any
/// write of 0 is a violation, and a read that found nothing reports "no
/// value" (output::value nullopt). A cas on a register with no value fails.
/// For a register that starts at a value (Porcupine's examples start at 0),
/// use register_model_initially<V>.
struct register_model {
  enum class op : std::uint8_t { read, write, cas };
  struct input {
    op kind = op::read;
    std::int64_t value = 0;    ///< write: the value; cas: the expected value
    std::int64_t swap_to = 0;  ///< cas: the new value
  };
  struct output {
    std::optional<std::int64_t> value;  ///< read: the value read; nullopt: the register had no value
    bool ok = true;                     ///< cas: whether it swapped
  };
  using state = std::optional<std::int64_t>;  ///< nullopt: no value yet

  static state init() { return std::nullopt; }
  static std::optional<state> step(const state& s, const input& in, const std::optional<output>& out) {
    switch (in.kind) {
      case op::read:
        if (out && out->value != s) return std::nullopt;
        return s;
      case op::write:
        return state{in.value};
      case op::cas: {
        const bool swaps = s == in.value;
        if (out && out->ok != swaps) return std::nullopt;
        return swaps ? state{in.swap_to} : s;
      }
    }
    return std::nullopt;
  }
  static std::size_t hash(const state& s) {
    return s ? std::hash<std::int64_t>{}(*s) * 0x9E3779B97F4A7C15ull : 0x5bd1e995u;
  }

  static bool read_only(const input& in) { return in.kind == op::read; }
  static input read() { return {op::read}; }
  static input write(std::int64_t v) { return {op::write, v}; }
  static input cas(std::int64_t expected, std::int64_t to) { return {op::cas, expected, to}; }
};

/// The same register, starting at `Initial` instead of no value.
template <std::int64_t Initial> struct register_model_initially : register_model {
  static state init() { return state{Initial}; }
};

/// A map from string keys to string values (missing = ""), with get, put and
/// append; partitioned by key.
struct kv_model {
  enum class op : std::uint8_t { get, put, append };
  struct input {
    op kind = op::get;
    std::string key;
    std::string value;  ///< put / append
  };
  struct output {
    std::string value;  ///< get: the value read
  };
  using state = std::map<std::string, std::string>;

  static state init() { return {}; }
  static std::optional<state> step(const state& s, const input& in, const std::optional<output>& out) {
    auto it = s.find(in.key);
    const std::string current = it == s.end() ? std::string{} : it->second;
    switch (in.kind) {
      case op::get:
        if (out && out->value != current) return std::nullopt;
        return s;
      case op::put: {
        state next = s;
        next[in.key] = in.value;
        return next;
      }
      case op::append: {
        state next = s;
        next[in.key] = current + in.value;
        return next;
      }
    }
    return std::nullopt;
  }
  static std::size_t hash(const state& s) {
    std::size_t h = 0x9E3779B97F4A7C15ull;
    for (const auto& [k, v] : s)
      h = (h ^ std::hash<std::string>{}(k)) * 0x100000001B3ull ^ std::hash<std::string>{}(v)*31;
    return h;
  }
  /// Memory the state holds, for the checker's memory budget.
  static std::size_t bytes(const state& s) {
    std::size_t b = sizeof(state);
    for (const auto& [k, v] : s)
      b += 4 * sizeof(void*) + 16 + 2 * sizeof(std::string) + (k.size() > 15 ? k.capacity() + 16 : 0) +
          (v.size() > 15 ? v.capacity() + 16 : 0);  // a node; strings past the small-string buffer
    return b;
  }
  static bool read_only(const input& in) { return in.kind == op::get; }
  static const std::string& partition_key(const input& in) { return in.key; }

  static input get(std::string key) { return {op::get, std::move(key), {}}; }
  static input put(std::string key, std::string value) { return {op::put, std::move(key), std::move(value)}; }
  static input append(std::string key, std::string value) { return {op::append, std::move(key), std::move(value)}; }
};

static_assert(ReadOnlyAwareModel<register_model>);
static_assert(ReadOnlyAwareModel<register_model_initially<0>>);
static_assert(PartitionedModel<kv_model>);

}  // namespace dcp::check
