// How an example's nodes authenticate (docs/security.md), from one option
// every network example takes:
//
//   --transport keyring:FILE        the keyring transport (dcp/net/keyring.hpp):
//                                   FILE holds keys of 64 hex digits, one a
//                                   line; the first seals, all are accepted
//                                   (install a new key second everywhere, then
//                                   first, then drop the old: a rotation)
//   --transport tls:CA,CERT,KEY     TLS 1.3, mutual (dcp/net/tls.hpp): PEM
//                                   files; CERT must bind dcp://<listen address>
//   --transport plaintext           nothing: whoever reaches the port may speak
//                                   for any address. Chosen by name only.
//
// With no --transport an example refuses to start: it never falls back to
// plaintext. The node is a dcp::net::any_node (dcp/net/any_transport.hpp):
// one type, whichever transport the command line names.
#pragma once

#include <cctype>
#include <fstream>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "dcp/net/any_transport.hpp"
#include "dcp/net/keyring.hpp"
#include "dcp/net/tls.hpp"

namespace example {

inline constexpr std::string_view transport_usage =
    "--transport keyring:KEYFILE | tls:CA,CERT,KEY | plaintext   (required: how nodes authenticate)";

struct transport_choice {
  enum class kind { unset, plaintext, keyring, tls } how = kind::unset;
  std::string key_file, ca, cert, key;

  /// Reads a --transport value; an error in words, or nothing.
  std::optional<std::string> parse(std::string_view v) {
    auto after = [&](std::string_view prefix) { return std::string(v.substr(prefix.size())); };
    if (v == "plaintext") {
      how = kind::plaintext;
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
};

/// The keys of a key file: 64 hex digits a line (blank lines and lines from
/// '#' ignored), the first the primary. Throws std::runtime_error in words.
inline dcp::net::keyring read_keyring(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot read the key file " + path);
  std::vector<dcp::net::keyring_key> keys;
  std::string line;
  for (int n = 1; std::getline(in, line); ++n) {
    if (auto hash = line.find('#'); hash != std::string::npos) line.resize(hash);
    std::string hex;
    for (char c : line)
      if (!std::isspace(static_cast<unsigned char>(c))) hex += c;
    if (hex.empty()) continue;
    auto raw = dcp::from_hex(hex);
    if (!raw || raw->size() != 32)
      throw std::runtime_error(path + ":" + std::to_string(n) + ": a key is 64 hex digits (32 bytes)");
    dcp::net::keyring_key k{};
    std::copy(raw->begin(), raw->end(), k.begin());
    keys.push_back(k);
  }
  if (keys.empty()) throw std::runtime_error("the key file " + path + " holds no key");
  dcp::net::keyring ring(keys.front());
  for (std::size_t i = 1; i < keys.size(); ++i) ring.install(keys[i]);
  return ring;
}

/// What `t` names, for a dcp::net::any_node. Throws std::runtime_error (a
/// key file that cannot be read) or dcp::error (certificates), in words.
inline dcp::net::any_transport::options transport_options(const transport_choice& t) {
  using dcp::net::any_transport;
  switch (t.how) {
    case transport_choice::kind::keyring:
      return any_transport::options::of<dcp::net::keyring_transport>(read_keyring(t.key_file));
    case transport_choice::kind::tls:
      return any_transport::options::of<dcp::net::tls_transport>(dcp::net::tls_options::from_files(t.ca, t.cert, t.key));
    case transport_choice::kind::plaintext:
      return any_transport::options::plaintext();
    case transport_choice::kind::unset:
      break;
  }
  throw std::runtime_error(std::string("no transport chosen: ") + std::string(transport_usage));
}

}  // namespace example
