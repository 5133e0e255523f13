#pragma once
// tls_transport and tls_node: dcp frames over TLS 1.3 with mutual
// authentication (asio::ssl over OpenSSL), as etcd's peer transport does.
// Needs OpenSSL's libssl and libcrypto: link dcp::tls.
//
//   auto tls = dcp::net::tls_options::from_files("ca.pem", "node.pem", "node.key");
//   dcp::net::tls_node n(io, cfg, tls);
//
// Trust. The group has a certificate authority of its own (tls_options' CA:
// only it is trusted, never the system's store). Every node holds a
// certificate from it, with its private key, and each certificate binds the
// node's dcp address: a subjectAltName URI
//
//     dcp://<address>          e.g. dcp://10.0.0.7:7000, dcp://[fd00::7]:7000,
//                              dcp://node-3.dcp.internal:7000
//
// where <address> is what dcp::address::parse reads and the node calls
// itself (config::listen, or config::advertise when set); a certificate may
// carry several. A connection is then refused, counted, and changes nothing
// else, when:
//   - the peer presents no certificate, or one that does not chain to the CA
//     (expired, another CA's, self-signed), or speaks anything but TLS 1.3
//     (plaintext dcp included): a failed handshake, "tls_auth_failures";
//   - the caller's hello claims an address its certificate does not bind
//     (a member speaking as another member), or the acceptor's certificate
//     does not bind the address the caller dialled (a redirected connection,
//     a member answering for another): "tls_address_mismatch".
// Both are also drops of protocol 0 as errc::authentication_failed. A refused
// caller backs off and gives up as for an unreachable peer (it is up only
// once the acceptor's own hello arrives over the verified session). There is
// no fallback to plaintext: tls_options has no default, and a node whose own
// certificate does not bind its address refuses to start (listen throws).
//
// What TLS adds over the keyring (dcp/net/keyring.hpp): per-node identity
// (a key holder can claim any member's address; a certificate holder only
// its own), forward secrecy (ephemeral (EC)DHE per connection: a stolen key
// does not read recorded traffic), and the protocol ids and message types
// encrypted too. What it does not: revocation (no CRL or OCSP is consulted:
// rotate the CA, or keep certificates short-lived), hiding frame sizes and
// timing, or anything against a member that lies (dcp's protocols are
// crash-stop). Node certificates must allow both TLS roles: no extended key
// usage, or both serverAuth and clientAuth (a node both calls and accepts).
//
// Session details: TLS 1.3 only (min = max version), certificate requested
// and required both ways, no session tickets or resumption (every connection
// runs a full handshake and certificate check), no close_notify (dcp's frames
// delimit themselves: a connection cut inside a frame is a truncated frame,
// as over TCP). Every read and write of the TCP transport goes through the
// TLS stream; its framing, limits, time-outs, slots and queues are the same
// code (dcp/net/tcp_transport.hpp). The handshake counts against
// handshake_timeout (inbound) and read_timeout (both sides).
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include <asio/ip/tcp.hpp>
#include <asio/ssl.hpp>
#include <openssl/crypto.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "dcp/core/address.hpp"
#include "dcp/core/error.hpp"
#include "dcp/net/detail/connection.hpp"
#include "dcp/net/node.hpp"
#include "dcp/net/tcp_transport.hpp"
#include "dcp/net/transport.hpp"

namespace dcp::net {

/// The certificates of a TLS node: the group's CA (the only one trusted),
/// this node's certificate chain (leaf first) and its private key, each as
/// PEM text or a PEM file. No default: build one with from_files or from_pem.
class tls_options {
 public:
  static tls_options from_files(std::string ca_file, std::string chain_file, std::string key_file) {
    tls_options o;
    o.files_ = true;
    o.ca_ = std::move(ca_file);
    o.chain_ = std::move(chain_file);
    o.key_ = std::move(key_file);
    return o;
  }
  static tls_options from_pem(std::string ca_pem, std::string chain_pem, std::string key_pem) {
    tls_options o;
    o.ca_ = std::move(ca_pem);
    o.chain_ = std::move(chain_pem);
    o.key_ = std::move(key_pem);
    return o;
  }

  tls_options(const tls_options&) = default;
  tls_options& operator=(const tls_options&) = default;
  tls_options(tls_options&&) noexcept = default;
  tls_options& operator=(tls_options&&) noexcept = default;
  ~tls_options() {
    if (!files_ && !key_.empty()) OPENSSL_cleanse(key_.data(), key_.size());
  }

  bool files() const noexcept { return files_; }
  const std::string& ca() const noexcept { return ca_; }
  const std::string& chain() const noexcept { return chain_; }
  const std::string& key() const noexcept { return key_; }

 private:
  tls_options() = default;
  bool files_ = false;
  std::string ca_, chain_, key_;  // file names, or PEM text
};

/// The Security policy of tls_transport (see the top of this header).
class tls_security {
 public:
  using options = tls_options;
  using stream_type = asio::ssl::stream<asio::ip::tcp::socket&>;
  static constexpr bool authenticated = true;
  static constexpr bool sealed = false;  // the stream seals, not the policy
  static constexpr bool layered = true;
  static constexpr std::size_t overhead = 0;  // TLS records are below dcp's frames
  static constexpr std::string_view name = "TLS";
  static constexpr const char* auth_failure_counter = "tls_auth_failures";
  static constexpr const char* address_mismatch_counter = "tls_address_mismatch";
  /// subjectAltNames looked at in one certificate: bounds the work a peer's
  /// certificate can cause (the CA signed it, but a bound costs nothing).
  static constexpr std::size_t max_names = 64;

  /// Builds the TLS context; throws dcp::error (invalid_config) when a file
  /// or PEM does not load, or the key does not match the certificate.
  explicit tls_security(const tls_options& o) : ctx_(std::make_shared<asio::ssl::context>(asio::ssl::context::tls)) {
    SSL_CTX* c = ctx_->native_handle();
    const bool ok = SSL_CTX_set_min_proto_version(c, TLS1_3_VERSION) == 1 &&
        SSL_CTX_set_max_proto_version(c, TLS1_3_VERSION) == 1 && SSL_CTX_set_num_tickets(c, 0) == 1;
    if (!ok) throw error(errc::invalid_config, "dcp::net::tls: this OpenSSL cannot be limited to TLS 1.3");
    SSL_CTX_set_options(c, SSL_OP_NO_TICKET);
    SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_OFF);
    try {
      ctx_->set_verify_mode(asio::ssl::verify_peer | asio::ssl::verify_fail_if_no_peer_cert);
      if (o.files()) {
        ctx_->load_verify_file(o.ca());
        ctx_->use_certificate_chain_file(o.chain());
        ctx_->use_private_key_file(o.key(), asio::ssl::context::pem);
      } else {
        ctx_->add_certificate_authority(asio::buffer(o.ca()));
        ctx_->use_certificate_chain(asio::buffer(o.chain()));
        ctx_->use_private_key(asio::buffer(o.key()), asio::ssl::context::pem);
      }
    } catch (const std::system_error& e) {
      throw error(errc::invalid_config, std::string("dcp::net::tls: cannot load the certificates: ") + e.what());
    }
    if (SSL_CTX_check_private_key(c) != 1)
      throw error(errc::invalid_config, "dcp::net::tls: the private key does not match the certificate");
  }

  /// The TLS context (to adjust ciphers, say; keep it TLS 1.3 with peer verification).
  asio::ssl::context& context() noexcept { return *ctx_; }

  /// The dcp addresses a certificate binds (its dcp:// subjectAltName URIs that parse).
  static std::vector<address> bound_addresses(X509* cert) {
    std::vector<address> out;
    if (!cert) return out;
    auto* names = static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
    if (!names) return out;
    const int n = sk_GENERAL_NAME_num(names);
    for (int i = 0; i < n && static_cast<std::size_t>(i) < max_names; ++i) {
      const GENERAL_NAME* g = sk_GENERAL_NAME_value(names, i);
      if (g->type != GEN_URI) continue;
      const auto* s = g->d.uniformResourceIdentifier;
      const std::string_view uri(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                                 static_cast<std::size_t>(ASN1_STRING_length(s)));
      static constexpr std::string_view scheme = "dcp://";
      if (uri.size() <= scheme.size() || uri.substr(0, scheme.size()) != scheme) continue;
      if (auto a = address::parse(uri.substr(scheme.size())); a && a->is_network()) out.push_back(*a);
    }
    GENERAL_NAMES_free(names);
    return out;
  }

  // ---- what basic_tcp_transport calls ----

  std::shared_ptr<void> make_layer(asio::ip::tcp::socket& s) { return std::make_shared<stream_type>(s, *ctx_); }
  static stream_type& stream(detail::link& l) noexcept { return *static_cast<stream_type*>(l.layer.get()); }

  template <class Handler> void async_handshake(detail::link& l, Handler&& h) {
    stream(l).async_handshake(l.inbound ? asio::ssl::stream_base::server : asio::ssl::stream_base::client,
                              std::forward<Handler>(h));
  }

  /// The peer of this (handshaken) connection holds a certificate, verified
  /// against the CA, that binds `a`.
  bool binds(detail::link& l, const address& a) const {
    if (!l.layer) return false;
    SSL* ssl = stream(l).native_handle();
    if (SSL_get_verify_result(ssl) != X509_V_OK) return false;  // the handshake checked it; say it again
#if OPENSSL_VERSION_NUMBER >= 0x30000000L
    X509* peer = SSL_get0_peer_certificate(ssl);
    return contains(bound_addresses(peer), a);
#else
    X509* peer = SSL_get_peer_certificate(ssl);
    const bool yes = contains(bound_addresses(peer), a);
    X509_free(peer);
    return yes;
#endif
  }
  /// This node's own certificate binds `self`.
  bool binds_self(const address& self) const {
    return contains(bound_addresses(SSL_CTX_get0_certificate(ctx_->native_handle())), self);
  }
  /// An error that means the TLS layer refused (an alert, a certificate
  /// that does not verify, bytes that are not TLS, a record that does not
  /// authenticate), not a connection that merely ended.
  static bool is_refusal(const std::error_code& ec) noexcept {
    return ec.category() == asio::error::get_ssl_category();
  }

 private:
  static bool contains(const std::vector<address>& v, const address& a) {
    for (auto& b : v)
      if (b == a) return true;
    return false;
  }

  std::shared_ptr<asio::ssl::context> ctx_;  // shared by every connection's stream
};

/// dcp frames over TLS 1.3 with mutual authentication (see the top of this header).
using tls_transport = basic_tcp_transport<tls_security>;
static_assert(Transport<tls_transport>);
static_assert(tls_transport::authenticated);

/// A node whose peers are authenticated by certificates binding their addresses.
using tls_node = basic_node<tls_transport>;

}  // namespace dcp::net
