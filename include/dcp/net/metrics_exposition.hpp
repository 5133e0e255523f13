#pragma once
// A node's metrics in the Prometheus text exposition format (version 0.0.4),
// for a scraper, a file written on a signal, or a person with curl:
//
//   dcp_up, dcp_uptime_seconds, dcp_connections                      gauges
//   dcp_messages_sent_total / _received_total, dcp_message_bytes_sent_total /
//     _received_total {protocol, protocol_name, type}                counters
//   dcp_frames_dropped_total {protocol, reason}                      counter
//   dcp_<protocol_name>_<counter>_total {protocol, protocol_name}    one family per counter a
//                                                                    protocol declares (env.count),
//                                                                    its HELP the counter's
//                                                                    description; 0 until counted
//   dcp_protocol_gauge {protocol, protocol_name, gauge}              what protocols report
//                                                                    through gauges(emit)
//   dcp_<name>                                                       node::add_gauge
//
// Every sample carries node="<the node's address>". Every family has one
// # HELP and one # TYPE line, before its samples, which stand together. Call
// on the node's executor (metrics_http_server does).
//
// A protocol's counters are a family each, not one family with the counter
// as a label: what one counter counts (a retransmission, an election) has
// nothing to add up with another's, and a family has one HELP, so only a
// family per counter can carry the description its protocol declares. The
// node exporter does the same (node_netstat_Tcp_InSegs, node_vmstat_pgfault:
// one family per kernel counter).
#include <cmath>
#include <cstdint>
#include <map>
#include <sstream>
#include <string>
#include <string_view>

#include "dcp/core/time.hpp"
#include "dcp/net/node.hpp"

namespace dcp::net {

namespace detail {
/// Text escaped as the format wants: a backslash and a line feed everywhere
/// (\\, \n), and a double quote inside a label value's quotes (\").
inline std::string prometheus_escape(std::string_view v, bool in_quotes) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '\n')
      out += "\\n";
    else if (c == '"' && in_quotes)
      out += "\\\"";
    else
      out += c;
  }
  return out;
}
/// A label value: \\, \", \n.
inline std::string prometheus_label(std::string_view v) { return prometheus_escape(v, true); }
/// A # HELP text: \\ and \n (a quote stays as it is there).
inline std::string prometheus_help(std::string_view v) { return prometheus_escape(v, false); }
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
    os << "# HELP " << name << ' ' << detail::prometheus_help(help) << "\n# TYPE " << name << ' ' << type << '\n';
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
  // A family per counter, named by its protocol and itself. Its samples are
  // gathered first: one protocol hosted at two ids gives a family two samples,
  // which must stand together under one HELP (the first id's).
  struct counter_family {
    std::string help, samples;
  };
  std::map<std::string, counter_family> counters;
  n.metrics().for_each_counter([&](protocol_id p, std::string_view event, std::int64_t value) {
    const std::string pname = protocol_name(p);
    auto [it, fresh] =
        counters.try_emplace(detail::prometheus_name("dcp_" + pname + "_" + std::string(event) + "_total"));
    if (fresh) {
      const std::string_view declared = n.metrics().help(p, event);
      it->second.help = declared.empty()
          ? "Counter " + std::string(event) + " of " + pname + " (env.count); its protocol does not say what it counts."
          : std::string(declared);
    }
    std::ostringstream sample;
    sample << it->first << '{' << who << ",protocol=\"" << p << "\",protocol_name=\"" << detail::prometheus_label(pname)
           << "\"} " << value << '\n';
    it->second.samples += sample.str();
  });
  for (const auto& [name, f] : counters) {
    family(name, "counter", f.help);
    os << f.samples;
  }
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
