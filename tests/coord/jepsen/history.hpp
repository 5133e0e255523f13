#pragma once
// The history file of the Jepsen-style test (tests/coord/multiprocess_jepsen.sh):
// written by coord_jepsen_workload, read by coord_jepsen_check. One line per
// operation, nine fields separated by spaces:
//
//   invoke_ns complete_ns process op key arg1 arg2 status result
//
//   invoke_ns, complete_ns  CLOCK_MONOTONIC in nanoseconds (system-wide on
//                           Linux, so histories of several processes on one
//                           machine compare); complete_ns is "-" when the
//                           operation never completed
//   process                 the logical client (a new number after an
//                           operation whose outcome is unknown, as Jepsen does)
//   op                      put | get | cas | remove
//   arg1, arg2              put: value, -; cas: expected (nil: the key is
//                           missing), new value; get and remove: -, -
//   status                  ok: completed with the result given;
//                           fail: certainly did not take effect (Jepsen's :fail);
//                           unknown: may or may not have taken effect, at any
//                           time after its invocation (Jepsen's :info)
//   result                  get: the value read, or nil; cas: swapped or
//                           mismatch; remove: removed or absent; put: -
//
// Lines starting with '#' are comments. Values are single words and never
// "nil" or "-" (the workload writes unique words such as c3.17).
#include <cstdint>
#include <istream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "dcp/check.hpp"

namespace dcp::jepsen {

/// A key of the coordination service's store, checked on its own (the
/// history is split by key): get, put, compare-and-set and remove, a missing
/// key read as nil. A compare-and-set from nil succeeds on a missing key,
/// as coord::client::compare_and_set does (a missing key holds the empty
/// value, and the workload never writes an empty one).
struct kv_cas_model {
  enum class op : std::uint8_t { get, put, cas, remove };
  struct input {
    op kind = op::get;
    std::string key, value, expected;  ///< value: put and cas; expected: cas
  };
  struct output {
    std::optional<std::string> value;  ///< get: the value read (nullopt: missing)
    bool ok = true;                    ///< cas: swapped; remove: a key was removed
  };
  using state = std::optional<std::string>;  ///< nullopt: missing
  static state init() { return std::nullopt; }
  static std::optional<state> step(const state& s, const input& in, const std::optional<output>& out) {
    switch (in.kind) {
      case op::get:
        if (out && out->value != s) return std::nullopt;
        return s;
      case op::put:
        return state{in.value};
      case op::cas: {
        const bool swaps = s.value_or(std::string{}) == in.expected;
        if (out && out->ok != swaps) return std::nullopt;
        return swaps ? state{in.value} : s;
      }
      case op::remove:
        if (out && out->ok != s.has_value()) return std::nullopt;
        return state{};
    }
    return std::nullopt;
  }
  static std::size_t hash(const state& s) { return s ? std::hash<std::string>{}(*s) : 0x5bd1e995u; }
  static bool read_only(const input& in) { return in.kind == op::get; }
  static const std::string& partition_key(const input& in) { return in.key; }
};
static_assert(check::PartitionedModel<kv_cas_model> && check::ReadOnlyAwareModel<kv_cas_model>);

enum class status { ok, fail, unknown };

/// One line of a history file.
struct record {
  std::int64_t invoke_ns = 0;
  std::optional<std::int64_t> complete_ns;
  std::uint64_t process = 0;
  std::string op, key, arg1 = "-", arg2 = "-";
  jepsen::status status = status::unknown;
  std::string result = "-";
};

inline const char* to_string(status s) { return s == status::ok ? "ok" : s == status::fail ? "fail" : "unknown"; }

inline std::string format(const record& r) {
  std::ostringstream o;
  o << r.invoke_ns << ' ';
  if (r.complete_ns)
    o << *r.complete_ns;
  else
    o << '-';
  o << ' ' << r.process << ' ' << r.op << ' ' << r.key << ' ' << r.arg1 << ' ' << r.arg2 << ' ' << to_string(r.status)
    << ' ' << r.result;
  return o.str();
}

/// Parses one line; on error returns nullopt and says why in `why`.
inline std::optional<record> parse(const std::string& line, std::string& why) {
  std::istringstream in(line);
  record r;
  std::string complete, st, extra;
  if (!(in >> r.invoke_ns >> complete >> r.process >> r.op >> r.key >> r.arg1 >> r.arg2 >> st >> r.result)) {
    why = "expected 9 fields";
    return std::nullopt;
  }
  if (in >> extra) {
    why = "more than 9 fields";
    return std::nullopt;
  }
  if (complete != "-") {
    try {
      std::size_t used = 0;
      r.complete_ns = std::stoll(complete, &used);
      if (used != complete.size()) throw std::invalid_argument("trailing");
    } catch (const std::exception&) {
      why = "complete_ns is neither a number nor -";
      return std::nullopt;
    }
  }
  if (st == "ok")
    r.status = status::ok;
  else if (st == "fail")
    r.status = status::fail;
  else if (st == "unknown")
    r.status = status::unknown;
  else {
    why = "status must be ok, fail or unknown";
    return std::nullopt;
  }
  if (r.op != "put" && r.op != "get" && r.op != "cas" && r.op != "remove") {
    why = "op must be put, get, cas or remove";
    return std::nullopt;
  }
  if (r.status == status::ok && !r.complete_ns) {
    why = "an ok operation needs its completion time";
    return std::nullopt;
  }
  if (r.complete_ns && *r.complete_ns < r.invoke_ns) {
    why = "completes before it is invoked";
    return std::nullopt;
  }
  if (r.status == status::ok) {
    const bool fine = r.op == "put" ? true
        : r.op == "get"             ? r.result != "-"
        : r.op == "cas"             ? r.result == "swapped" || r.result == "mismatch"
                                    : r.result == "removed" || r.result == "absent";
    if (!fine) {
      why = "result does not fit the op";
      return std::nullopt;
    }
  }
  if ((r.op == "put" && r.arg1 == "-") || (r.op == "cas" && (r.arg1 == "-" || r.arg2 == "-" || r.arg2 == "nil"))) {
    why = "missing argument";
    return std::nullopt;
  }
  return r;
}

/// The operation a record stands for in dcp::check's terms; nullopt for one
/// that certainly did not take effect (status fail): it is left out.
inline std::optional<check::operation<kv_cas_model::input, kv_cas_model::output>> to_operation(const record& r) {
  using M = kv_cas_model;
  if (r.status == status::fail) return std::nullopt;
  check::operation<M::input, M::output> o;
  o.client = r.process;
  o.call = time_point(duration(r.invoke_ns));
  if (r.complete_ns) o.ret = time_point(duration(*r.complete_ns));
  o.input.key = r.key;
  if (r.op == "get")
    o.input.kind = M::op::get;
  else if (r.op == "put")
    o.input.kind = M::op::put, o.input.value = r.arg1;
  else if (r.op == "cas")
    o.input.kind = M::op::cas, o.input.expected = r.arg1 == "nil" ? "" : r.arg1, o.input.value = r.arg2;
  else
    o.input.kind = M::op::remove;
  if (r.status == status::ok) {
    M::output out;
    if (r.op == "get" && r.result != "nil") out.value = r.result;
    if (r.op == "cas") out.ok = r.result == "swapped";
    if (r.op == "remove") out.ok = r.result == "removed";
    o.output = out;
  }
  return o;
}

}  // namespace dcp::jepsen
