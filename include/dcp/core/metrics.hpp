#pragma once
// metrics: counters per protocol and message type, readable at run time.
//
// Every runtime counts each message sent and received (and its bytes) per
// (protocol id, message type), each frame dropped per (protocol id, error),
// and the named counters protocols add through Env::count(). A protocol's
// named counters are declared (dcp/core/counter_set.hpp): once its set is
// registered for its id, every declared name is listed at 0, and counting or
// reading a name the id does not declare fails a DCP_ASSERT. dcp::sim keeps
// one metrics for the whole simulated world (what benchmarks want: messages
// per operation); the Asio runtime keeps one per node.
#include <cstdint>
#include <cstdio>
#include <functional>
#include <map>
#include <ostream>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <unordered_map>

#include "dcp/core/assert.hpp"
#include "dcp/core/counter_set.hpp"
#include "dcp/wire/frame.hpp"

namespace dcp {

namespace detail {
/// A name that protocol `p` does not declare was counted or read: a typo, or a
/// counter missing from the protocol's counter_set. Says which, then asserts.
[[noreturn, gnu::cold, gnu::noinline]] inline void undeclared_counter(protocol_id p, std::string_view name,
                                                                      const char* what) noexcept {
  std::fprintf(stderr, "dcp: %s counter \"%.*s\" of protocol %u, which it does not declare\n", what,
               static_cast<int>(name.size()), name.data(), static_cast<unsigned>(p));
  assertion_failed(__FILE__, __LINE__, "declared(name)", "a counter is in its protocol's counter_set");
}
}  // namespace detail

/// Where a protocol reports its gauges (values that go up and down: a role,
/// a term, a view size): emit(name, value). A protocol that has
///     void gauges(const dcp::gauge_sink& emit) const;
/// is asked for them by node status and metrics expositions (dcp::net::node).
/// Names are snake_case, unique within the protocol.
using gauge_sink = std::function<void(std::string_view name, double value)>;

struct message_counters {
  std::uint64_t sent = 0, sent_bytes = 0;
  std::uint64_t received = 0, received_bytes = 0;
  message_counters& operator+=(const message_counters& o) noexcept {
    sent += o.sent;
    sent_bytes += o.sent_bytes;
    received += o.received;
    received_bytes += o.received_bytes;
    return *this;
  }
};

class metrics {
 public:
  void sent(protocol_id p, message_type t, std::size_t size) noexcept {
    auto& c = messages_[key(p, t)];
    ++c.sent;
    c.sent_bytes += size;
  }
  void received(protocol_id p, message_type t, std::size_t size) noexcept {
    auto& c = messages_[key(p, t)];
    ++c.received;
    c.received_bytes += size;
  }
  /// A frame for protocol `p` dropped for reason `ec`.
  void dropped(protocol_id p, std::error_code ec) { ++drops_[{p, ec.message()}]; }
  /// Registers the counters of a protocol hosted at `p`, at 0 (the union, when
  /// nodes host different protocols at one id, or one protocol twice).
  void declare(protocol_id p, std::span<const counter_info> set) {
    auto& m = custom_[p];
    m.declared = true;
    for (const auto& c : set) m.names.try_emplace(std::string(c.name), named{0, c.help});
  }
  /// Whether protocol `p` has declared its counters (then only those may be used).
  bool declared(protocol_id p) const noexcept {
    auto it = custom_.find(p);
    return it != custom_.end() && it->second.declared;
  }
  void add(protocol_id p, std::string_view name, std::int64_t delta) {
    auto& m = custom_[p];
    auto it = m.names.find(name);
    if (it == m.names.end()) {
#if DCP_ASSERTIONS
      if (m.declared) detail::undeclared_counter(p, name, "counted");
#endif
      it = m.names.emplace(std::string(name), named{}).first;
    }
    it->second.value += delta;
  }

  message_counters of(protocol_id p, message_type t) const noexcept {
    auto it = messages_.find(key(p, t));
    return it == messages_.end() ? message_counters{} : it->second;
  }
  /// All message types of one protocol added together.
  message_counters of(protocol_id p) const noexcept {
    message_counters total;
    for (auto& [k, c] : messages_)
      if (k >> 16 == p) total += c;
    return total;
  }
  message_counters total() const noexcept {
    message_counters total;
    for (auto& [k, c] : messages_) total += c;
    return total;
  }
  /// A named counter's value. Once `p` has declared its counters, a name it
  /// does not declare fails a DCP_ASSERT (a typo would otherwise read 0).
  std::int64_t counter(protocol_id p, std::string_view name) const noexcept {
    auto it = custom_.find(p);
    if (it == custom_.end()) return 0;
    auto jt = it->second.names.find(name);
    if (jt != it->second.names.end()) return jt->second.value;
#if DCP_ASSERTIONS
    if (it->second.declared) detail::undeclared_counter(p, name, "read");
#endif
    return 0;
  }
  /// What a declared counter means ("" when its protocol did not say).
  std::string_view help(protocol_id p, std::string_view name) const noexcept {
    auto it = custom_.find(p);
    if (it == custom_.end()) return {};
    auto jt = it->second.names.find(name);
    return jt == it->second.names.end() ? std::string_view{} : jt->second.help;
  }
  std::uint64_t drops(protocol_id p, std::error_code ec) const {
    auto it = drops_.find({p, ec.message()});
    return it == drops_.end() ? 0 : it->second;
  }
  std::uint64_t drops() const noexcept {
    std::uint64_t n = 0;
    for (auto& [k, v] : drops_) n += v;
    return n;
  }

  /// Every counter in a stable order, for reports and for a metrics endpoint.
  template <class F>  // F(protocol_id, message_type, const message_counters&)
  void for_each_message(F&& f) const {
    std::map<std::uint32_t, message_counters> sorted(messages_.begin(), messages_.end());
    for (auto& [k, c] : sorted) f(static_cast<protocol_id>(k >> 16), static_cast<message_type>(k & 0xFFFF), c);
  }

  /// Every drop count in a stable order: F(protocol_id, std::string_view reason, std::uint64_t count).
  template <class F> void for_each_drop(F&& f) const {
    for (auto& [k, v] : drops_) f(k.first, std::string_view(k.second), v);
  }
  /// Every named counter (env.count), declared ones at 0 included, in a
  /// stable order: F(protocol_id, std::string_view name, std::int64_t value).
  template <class F> void for_each_counter(F&& f) const {
    for (auto& [p, m] : custom_)
      for (auto& [n, c] : m.names) f(p, std::string_view(n), c.value);
  }

  /// Every count back to 0; declarations stay.
  void reset() {
    messages_.clear();
    drops_.clear();
    for (auto& [p, m] : custom_) {
      if (!m.declared) m.names.clear();
      for (auto& [n, c] : m.names) c.value = 0;
    }
  }

  friend std::ostream& operator<<(std::ostream& os, const metrics& m) {
    m.for_each_message([&](protocol_id p, message_type t, const message_counters& c) {
      os << "protocol " << p << " type " << t << ": sent " << c.sent << " (" << c.sent_bytes << " B), received "
         << c.received << " (" << c.received_bytes << " B)\n";
    });
    for (auto& [k, v] : m.drops_) os << "protocol " << k.first << " dropped " << v << ": " << k.second << '\n';
    for (auto& [p, c] : m.custom_)
      for (auto& [n, v] : c.names)
        if (v.value != 0) os << "protocol " << p << ' ' << n << " = " << v.value << '\n';
    return os;
  }

 private:
  static constexpr std::uint32_t key(protocol_id p, message_type t) noexcept { return std::uint32_t{p} << 16 | t; }
  std::unordered_map<std::uint32_t, message_counters> messages_;
  std::map<std::pair<protocol_id, std::string>, std::uint64_t> drops_;
  struct named {
    std::int64_t value = 0;
    std::string_view help;  // a literal of the protocol's counter_set
  };
  struct protocol_counters {
    bool declared = false;
    std::map<std::string, named, std::less<>> names;
  };
  std::map<protocol_id, protocol_counters> custom_;
};

}  // namespace dcp
