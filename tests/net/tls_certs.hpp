#pragma once
// Throwaway certificates for the TLS tests and benchmark: a CA and node
// certificates it signs, each binding dcp addresses (subjectAltName URIs
// dcp://host:port), made in memory with OpenSSL's C API. EC P-256 keys,
// valid from an hour ago for a day. Test use only: nothing here is careful
// about key storage.
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "dcp/core/address.hpp"
#include "dcp/net/tls.hpp"
#include "../loopback_ports.hpp"  // free_loopback_address

namespace dcp::test {

struct tls_pem {
  std::string cert, key;
};

class tls_authority {
 public:
  explicit tls_authority(const std::string& name = "dcp test CA") : key_(make_key()), cert_(X509_new(), X509_free) {
    X509* c = cert_.get();
    fill(c, name, key_.get());
    X509_set_issuer_name(c, X509_get_subject_name(c));
    extend(c, c, NID_basic_constraints, "critical,CA:TRUE");
    extend(c, c, NID_key_usage, "critical,keyCertSign,cRLSign");
    sign(c, key_.get());
    pem_.cert = to_pem(c);
    pem_.key = key_pem(key_.get());
  }

  const std::string& cert_pem() const noexcept { return pem_.cert; }

  /// A node certificate for `name`, binding every address in `binds` (as
  /// dcp://<address> URIs; extra raw URIs in `uris`).
  tls_pem issue(const std::string& name, const std::vector<address>& binds,
                const std::vector<std::string>& uris = {}) const {
    key_ptr k = make_key();
    std::unique_ptr<X509, decltype(&X509_free)> cert(X509_new(), X509_free);
    X509* c = cert.get();
    fill(c, name, k.get());
    X509_set_issuer_name(c, X509_get_subject_name(cert_.get()));
    extend(c, cert_.get(), NID_basic_constraints, "critical,CA:FALSE");
    std::string san;
    for (auto& a : binds) san += (san.empty() ? "" : ",") + std::string("URI:dcp://") + a.to_string();
    for (auto& u : uris) san += (san.empty() ? "" : ",") + std::string("URI:") + u;
    if (!san.empty()) extend(c, cert_.get(), NID_subject_alt_name, san);
    sign(c, key_.get());
    return {to_pem(c), key_pem(k.get())};
  }

  /// tls_options for a node: this CA, the node's certificate (and key).
  net::tls_options options_for(const tls_pem& node) const {
    return net::tls_options::from_pem(pem_.cert, node.cert, node.key);
  }
  /// A node of this CA bound to `a`, in one call.
  net::tls_options options_for(const address& a) const { return options_for(issue("node " + a.to_string(), {a})); }

 private:
  using key_ptr = std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)>;

  static void check(bool ok, const char* what) {
    if (!ok) throw std::runtime_error(std::string("tls_certs: ") + what);
  }
  static key_ptr make_key() {
    key_ptr k(EVP_EC_gen("P-256"), EVP_PKEY_free);
    check(k != nullptr, "EVP_EC_gen");
    return k;
  }
  static void fill(X509* c, const std::string& cn, EVP_PKEY* k) {
    check(X509_set_version(c, 2) == 1, "X509_set_version");
    unsigned char serial[16];
    check(RAND_bytes(serial, sizeof serial) == 1, "RAND_bytes");
    serial[0] &= 0x7F;
    BIGNUM* bn = BN_bin2bn(serial, sizeof serial, nullptr);
    BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(c));
    BN_free(bn);
    X509_gmtime_adj(X509_getm_notBefore(c), -3600);
    X509_gmtime_adj(X509_getm_notAfter(c), 24 * 3600);
    X509_NAME* n = X509_get_subject_name(c);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0);
    check(X509_set_pubkey(c, k) == 1, "X509_set_pubkey");
  }
  static void extend(X509* c, X509* issuer, int nid, const std::string& value) {
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, issuer, c, nullptr, nullptr, 0);
    X509_EXTENSION* e = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str());
    check(e != nullptr, "X509V3_EXT_conf_nid");
    X509_add_ext(c, e, -1);
    X509_EXTENSION_free(e);
  }
  static void sign(X509* c, EVP_PKEY* k) { check(X509_sign(c, k, EVP_sha256()) > 0, "X509_sign"); }
  static std::string drain(BIO* b) {
    char* data = nullptr;
    const long n = BIO_get_mem_data(b, &data);
    std::string s(data, static_cast<std::size_t>(n));
    BIO_free(b);
    return s;
  }
  static std::string to_pem(X509* c) {
    BIO* b = BIO_new(BIO_s_mem());
    check(PEM_write_bio_X509(b, c) == 1, "PEM_write_bio_X509");
    return drain(b);
  }
  static std::string key_pem(EVP_PKEY* k) {
    BIO* b = BIO_new(BIO_s_mem());
    check(PEM_write_bio_PrivateKey(b, k, nullptr, nullptr, 0, nullptr, nullptr) == 1, "PEM_write_bio_PrivateKey");
    return drain(b);
  }

  key_ptr key_;
  std::unique_ptr<X509, decltype(&X509_free)> cert_;
  tls_pem pem_;
};

}  // namespace dcp::test
