#pragma once
// metrics: counters per protocol and message type, readable at run time.
//
// Every runtime counts each message sent and received (and its bytes) per
// (protocol id, message type), each frame dropped per (protocol id, error),
// and the named counters protocols add through Env::count(). dcp::sim keeps
// one metrics for the whole simulated world (what benchmarks want: messages
// per operation); the Asio runtime keeps one per node.
#include <cstdint>
#include <functional>
#include <map>
#include <ostream>
#include <string>
#include <string_view>
#include <system_error>
#include <unordered_map>

#include "dcp/wire/frame.hpp"

namespace dcp {

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
    sent += o.sent; sent_bytes += o.sent_bytes; received += o.received; received_bytes += o.received_bytes;
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
  void add(protocol_id p, std::string_view name, std::int64_t delta) {
    auto& m = custom_[p];
    auto it = m.find(name);
    if (it == m.end()) it = m.emplace(std::string(name), 0).first;
    it->second += delta;
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
  std::int64_t counter(protocol_id p, std::string_view name) const noexcept {
    auto it = custom_.find(p);
    if (it == custom_.end()) return 0;
    auto jt = it->second.find(name);
    return jt == it->second.end() ? 0 : jt->second;
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
  template <class F>
  void for_each_drop(F&& f) const {
    for (auto& [k, v] : drops_) f(k.first, std::string_view(k.second), v);
  }
  /// Every named counter (env.count) in a stable order: F(protocol_id, std::string_view name, std::int64_t value).
  template <class F>
  void for_each_counter(F&& f) const {
    for (auto& [p, names] : custom_)
      for (auto& [n, v] : names) f(p, std::string_view(n), v);
  }

  void reset() {
    messages_.clear();
    drops_.clear();
    custom_.clear();
  }

  friend std::ostream& operator<<(std::ostream& os, const metrics& m) {
    m.for_each_message([&](protocol_id p, message_type t, const message_counters& c) {
      os << "protocol " << p << " type " << t << ": sent " << c.sent << " (" << c.sent_bytes << " B), received "
         << c.received << " (" << c.received_bytes << " B)\n";
    });
    for (auto& [k, v] : m.drops_) os << "protocol " << k.first << " dropped " << v << ": " << k.second << '\n';
    for (auto& [p, names] : m.custom_)
      for (auto& [n, v] : names) os << "protocol " << p << ' ' << n << " = " << v << '\n';
    return os;
  }

 private:
  static constexpr std::uint32_t key(protocol_id p, message_type t) noexcept { return std::uint32_t{p} << 16 | t; }
  std::unordered_map<std::uint32_t, message_counters> messages_;
  std::map<std::pair<protocol_id, std::string>, std::uint64_t> drops_;
  std::map<protocol_id, std::map<std::string, std::int64_t, std::less<>>> custom_;
};

}  // namespace dcp
