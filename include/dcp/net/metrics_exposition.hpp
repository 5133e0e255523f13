#pragma once
// A node's metrics in the Prometheus text exposition format (version 0.0.4),
// for a scraper, a file written on a signal, or a person with curl:
//
//   dcp_up, dcp_uptime_seconds, dcp_connections                      gauges
//   dcp_messages_sent_total / _received_total, dcp_message_bytes_sent_total /
//     _received_total {protocol, protocol_name, type}                counters
//   dcp_frames_dropped_total {protocol, reason}                      counter
//   dcp_protocol_events_total {protocol, protocol_name, event}       counters (env.count): every
//                                                                    declared one, 0 until counted
//   dcp_protocol_gauge {protocol, protocol_name, gauge}              what protocols report
//                                                                    through gauges(emit)
//   dcp_<name>                                                       node::add_gauge
//
// Every sample carries node="<the node's address>". Call on the node's
// executor (metrics_http_server does).
#include <cmath>
#include <cstdint>
#include <sstream>
#include <string>
#include <string_view>

#include "dcp/core/time.hpp"
#include "dcp/net/node.hpp"

namespace dcp::net {

namespace detail {
/// A label value, escaped as the format wants (\\, \", \n).
inline std::string prometheus_label(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '"')
      out += "\\\"";
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
  return out;
}
/// A metric name: [a-zA-Z_:][a-zA-Z0-9_:]*, anything else becomes '_'.
inline std::string prometheus_name(std::string_view v) {
  std::string out(v);
  for (std::size_t i = 0; i < out.size(); ++i) {
    const char c = out[i];
    const bool ok =
        (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' || (i > 0 && c >= '0' && c <= '9');
    if (!ok) out[i] = '_';
  }
  return out;
}
inline std::string prometheus_value(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  std::ostringstream os;
  os.precision(17);
  os << v;
  return os.str();
}
}  // namespace detail

/// Any node, whatever its transport (node, keyring_node, ...).
template <Transport T> std::string prometheus_text(const basic_node<T>& n) {
  const node_status st = n.status();
  const std::string who = "node=\"" + detail::prometheus_label(st.self.to_string()) + "\"";
  auto protocol_name = [&](protocol_id id) -> std::string {
    for (auto& p : st.protocols)
      if (p.id == id) return p.name;
    return id == 0 ? "transport" : "unknown";
  };
  std::ostringstream os;
  auto family = [&](std::string_view name, std::string_view type, std::string_view help) {
    os << "# HELP " << name << ' ' << help << "\n# TYPE " << name << ' ' << type << '\n';
  };
  family("dcp_up", "gauge", "1 while the node runs.");
  os << "dcp_up{" << who << "} " << (st.running ? 1 : 0) << '\n';
  family("dcp_uptime_seconds", "gauge", "Seconds since the node started.");
  os << "dcp_uptime_seconds{" << who << "} " << detail::prometheus_value(to_seconds(st.uptime)) << '\n';
  family("dcp_connections", "gauge", "Open TCP connections, inbound plus outbound.");
  os << "dcp_connections{" << who << "} " << st.connections << '\n';

  struct per_type {
    std::string_view metric, help;
    std::uint64_t message_counters::*field;
  };
  static constexpr per_type per_types[] = {
      {"dcp_messages_sent_total", "Messages sent, by protocol and message type.", &message_counters::sent},
      {"dcp_messages_received_total", "Messages received and delivered, by protocol and message type.",
       &message_counters::received},
      {"dcp_message_bytes_sent_total", "Frame bytes sent, by protocol and message type.",
       &message_counters::sent_bytes},
      {"dcp_message_bytes_received_total", "Frame bytes received, by protocol and message type.",
       &message_counters::received_bytes},
  };
  for (const auto& t : per_types) {
    family(t.metric, "counter", t.help);
    n.metrics().for_each_message([&](protocol_id p, message_type m, const message_counters& c) {
      os << t.metric << '{' << who << ",protocol=\"" << p << "\",protocol_name=\""
         << detail::prometheus_label(protocol_name(p)) << "\",type=\"" << detail::prometheus_label(n.message_name(p, m))
         << "\"} " << c.*t.field << '\n';
    });
  }
  family("dcp_frames_dropped_total", "counter", "Frames dropped, by protocol (0: the transport) and reason.");
  n.metrics().for_each_drop([&](protocol_id p, std::string_view reason, std::uint64_t count) {
    os << "dcp_frames_dropped_total{" << who << ",protocol=\"" << p << "\",reason=\""
       << detail::prometheus_label(reason) << "\"} " << count << '\n';
  });
  family("dcp_protocol_events_total", "counter", "Named event counters of the protocols (env.count).");
  n.metrics().for_each_counter([&](protocol_id p, std::string_view event, std::int64_t value) {
    os << "dcp_protocol_events_total{" << who << ",protocol=\"" << p << "\",protocol_name=\""
       << detail::prometheus_label(protocol_name(p)) << "\",event=\"" << detail::prometheus_label(event) << "\"} "
       << value << '\n';
  });
  family("dcp_protocol_gauge", "gauge", "What the protocols report of their state (roles, terms, view sizes).");
  for (auto& p : st.protocols)
    for (auto& [g, v] : p.gauges)
      os << "dcp_protocol_gauge{" << who << ",protocol=\"" << p.id << "\",protocol_name=\""
         << detail::prometheus_label(p.name) << "\",gauge=\"" << detail::prometheus_label(g) << "\"} "
         << detail::prometheus_value(v) << '\n';
  for (auto& [g, v] : st.gauges) {
    const std::string name = "dcp_" + detail::prometheus_name(g);
    family(name, "gauge", "A gauge of the application (node::add_gauge).");
    os << name << '{' << who << "} " << detail::prometheus_value(v) << '\n';
  }
  return os.str();
}

}  // namespace dcp::net
