#pragma once
// transport_spec: a node's transport named in one string, as a program reads
// it from its command line or configuration (dcp's examples and dcpctl take
// it as --transport), for a dcp::net::any_node. Needs libssl: link dcp::tls.
//
//   keyring:FILE                    the keyring transport (dcp/net/keyring.hpp):
//                                   FILE holds keys of 64 hex digits, one a
//                                   line; the first seals, all are accepted
//                                   (install a new key second everywhere, then
//                                   first, then drop the old: a rotation)
//   tls:CA,CERT,KEY                 TLS 1.3, mutual (dcp/net/tls.hpp): PEM
//                                   files; CERT must bind dcp://<listen address>
//   plaintext                       nothing: whoever reaches the port may speak
//                                   for any address. Chosen by name only.
//   udp:plaintext                   UDP datagrams (dcp/net/udp_transport.hpp),
//                                   one frame each, nothing authenticated: a
//                                   source address is the sender's word. Only
//                                   in programs whose messages fit a datagram,
//                                   which say so (datagrams_allowed).
//   udp:keyring:FILE                UDP datagrams, each sealed under the keyring
//                                   of FILE (as keyring:FILE) with a replay window
//                                   per sender (dcp/net/udp_keyring.hpp). Same
//                                   programs as udp:plaintext.
//
// A spec left unset names nothing: transport_options() throws rather than
// fall back to plaintext. parse_environment() reads DCP_TRANSPORT, so that a
// deployment (or a test) names the transport once for all its processes.

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "dcp/core/bytes.hpp"
#include "dcp/core/error.hpp"
#include "dcp/net/any_transport.hpp"
#include "dcp/net/keyring.hpp"
#include "dcp/net/tls.hpp"
#include "dcp/net/udp_keyring.hpp"
#include "dcp/net/udp_transport.hpp"

namespace dcp::net {

/// The forms a spec takes, for a program's usage text.
inline constexpr std::string_view transport_spec_forms = "keyring:KEYFILE | tls:CA,CERT,KEY | plaintext";
/// ... and the datagram form, for the programs that allow it.
inline constexpr std::string_view datagram_transport_forms = "udp:keyring:KEYFILE | udp:plaintext";

struct transport_spec {
  enum class kind { unset, plaintext, keyring, tls, udp_plaintext, udp_keyring } how = kind::unset;
  std::string key_file, ca, cert, key;
  /// Set by a program whose protocols fit in datagrams (Kademlia, SWIM)
  /// before it parses: only then are "udp:..." transports. Elsewhere a
  /// message larger than a datagram would be refused at every send.
  bool datagrams_allowed = false;

  /// Reads a spec; an error in words, or nothing (and *this unchanged on error).
  std::optional<std::string> parse(std::string_view v) {
    auto after = [&](std::string_view prefix) { return std::string(v.substr(prefix.size())); };
    if (v == "plaintext") {
      how = kind::plaintext;
    } else if (v == "udp:plaintext") {
      if (!datagrams_allowed)
        return "udp:plaintext: this program's messages need a stream transport (keyring, tls or plaintext)";
      how = kind::udp_plaintext;
    } else if (v.starts_with("udp:keyring:") && v.size() > 12) {
      if (!datagrams_allowed)
        return "udp:keyring: this program's messages need a stream transport (keyring, tls or plaintext)";
      how = kind::udp_keyring;
      key_file = after("udp:keyring:");
    } else if (v.starts_with("udp")) {
      return "udp: name what protects it: udp:keyring:KEYFILE (sealed under a keyring) or udp:plaintext (datagrams "
             "neither authenticated nor encrypted): " +
          std::string(v);
    } else if (v.starts_with("keyring:") && v.size() > 8) {
      how = kind::keyring;
      key_file = after("keyring:");
    } else if (v.starts_with("tls:")) {
      const std::string files = after("tls:");
      const auto a = files.find(','), b = files.find(',', a == std::string::npos ? a : a + 1);
      if (a == std::string::npos || b == std::string::npos || files.find(',', b + 1) != std::string::npos)
        return "tls: wants three files, CA,CERT,KEY: " + std::string(v);
      how = kind::tls;
      ca = files.substr(0, a);
      cert = files.substr(a + 1, b - a - 1);
      key = files.substr(b + 1);
    } else {
      return "not a transport (keyring:KEYFILE, tls:CA,CERT,KEY or plaintext): " + std::string(v);
    }
    return std::nullopt;
  }
  bool chosen() const noexcept { return how != kind::unset; }

  /// Unless a spec was read already, the one in the environment variable
  /// (as etcd reads ETCD_* for its flags): an error in words, or nothing.
  std::optional<std::string> parse_environment(const char* variable = "DCP_TRANSPORT") {
    if (chosen()) return std::nullopt;
    const char* v = std::getenv(variable);
    if (!v || !*v) return std::nullopt;
    if (auto e = parse(v)) return std::string(variable) + ": " + *e;
    return std::nullopt;
  }
};

/// The keys of a key file: 64 hex digits a line (blank lines and lines from
/// '#' ignored), the first the primary. Throws dcp::error (invalid_config) in words.
inline keyring read_keyring(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw error(errc::invalid_config, "cannot read the key file " + path);
  std::vector<keyring_key> keys;
  std::string line;
  for (int n = 1; std::getline(in, line); ++n) {
    if (auto hash = line.find('#'); hash != std::string::npos) line.resize(hash);
    std::string hex;
    for (char c : line)
      if (!std::isspace(static_cast<unsigned char>(c))) hex += c;
    if (hex.empty()) continue;
    auto raw = dcp::from_hex(hex);
    if (!raw || raw->size() != 32)
      throw error(errc::invalid_config, path + ":" + std::to_string(n) + ": a key is 64 hex digits (32 bytes)");
    keyring_key k{};
    std::copy(raw->begin(), raw->end(), k.begin());
    keys.push_back(k);
  }
  if (keys.empty()) throw error(errc::invalid_config, "the key file " + path + " holds no key");
  keyring ring(keys.front());
  for (std::size_t i = 1; i < keys.size(); ++i) ring.install(keys[i]);
  return ring;
}

/// What `t` names, for a dcp::net::any_node. Throws dcp::error
/// (invalid_config) in words: nothing named, a key file or certificates that
/// cannot be read.
inline any_transport::options transport_options(const transport_spec& t) {
  switch (t.how) {
    case transport_spec::kind::keyring:
      return any_transport::options::of<keyring_transport>(read_keyring(t.key_file));
    case transport_spec::kind::tls:
      return any_transport::options::of<tls_transport>(tls_options::from_files(t.ca, t.cert, t.key));
    case transport_spec::kind::plaintext:
      return any_transport::options::plaintext();
    case transport_spec::kind::udp_plaintext:
      return any_transport::options::of<udp_transport>(udp_options{});
    case transport_spec::kind::udp_keyring:
      return any_transport::options::of<keyring_udp_transport>(udp_keyring_options(read_keyring(t.key_file)));
    case transport_spec::kind::unset:
      break;
  }
  throw error(errc::invalid_config, "no transport named: " + std::string(transport_spec_forms));
}

}  // namespace dcp::net
