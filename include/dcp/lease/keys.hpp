#pragma once
// Keys for sealing lease tokens, over OpenSSL's libcrypto.
//
// Two schemes, chosen by who must verify:
//   - HMAC-SHA256 with a group key shared by the group and the resource
//     servers: fast (a few hundred nanoseconds a token), but any holder of
//     the key can also mint tokens, so every server is as trusted as the group;
//   - Ed25519 (RFC 8032): the group signs with a private key, servers verify
//     with the public key alone and cannot mint tokens; about 20x slower to
//     verify than HMAC and still tens of thousands per second per core.
//
// A signing_key / verification_key pairs the key with a key id that travels in
// the token, so that servers can tell "signed under a key I do not have" (a
// rotation in progress) from "forged".
//
// Keys are cheap to copy (the OpenSSL object is shared, immutable) and safe to
// use from several threads at once: every operation takes its own context.
// Linking: these headers need libcrypto; link the CMake target dcp::lease
// (which brings OpenSSL::Crypto) rather than dcp::dcp.
#include <cstdint>
#include <memory>
#include <variant>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "dcp/core/bytes.hpp"
#include "dcp/core/result.hpp"
#include "dcp/lease/error.hpp"

namespace dcp::lease {

/// How a token is signed; the number travels in the token.
enum class scheme : std::uint8_t { hmac_sha256 = 1, ed25519 = 2 };

inline constexpr std::size_t hmac_sha256_size = 32;
inline constexpr std::size_t ed25519_signature_size = 64;
inline constexpr std::size_t ed25519_key_size = 32;
inline constexpr std::size_t min_hmac_key_size = 16;

/// Signature length a scheme produces; 0 for an unknown scheme.
constexpr std::size_t signature_size(scheme s) noexcept {
  switch (s) {
    case scheme::hmac_sha256:
      return hmac_sha256_size;
    case scheme::ed25519:
      return ed25519_signature_size;
  }
  return 0;
}

namespace detail {
struct pkey_free {
  void operator()(EVP_PKEY* k) const noexcept { EVP_PKEY_free(k); }
};
struct md_ctx_free {
  void operator()(EVP_MD_CTX* c) const noexcept { EVP_MD_CTX_free(c); }
};
using pkey_ptr = std::shared_ptr<EVP_PKEY>;
using md_ctx_ptr = std::unique_ptr<EVP_MD_CTX, md_ctx_free>;
}  // namespace detail

/// A shared HMAC-SHA256 group key (at least 16 bytes; 32 random bytes is right).
class hmac_key {
 public:
  static result<hmac_key> from_bytes(byte_view key) {
    if (key.size() < min_hmac_key_size) return make_error_code(errc::invalid_key);
    hmac_key k;
    k.key_.assign(key.begin(), key.end());
    return k;
  }
  /// 32 bytes from OpenSSL's CSPRNG.
  static result<hmac_key> generate() {
    bytes k(32);
    if (RAND_bytes(k.data(), static_cast<int>(k.size())) != 1) return make_error_code(errc::crypto_failure);
    return from_bytes(k);
  }
  byte_view raw() const noexcept { return key_; }

  result<bytes> sign(byte_view message) const {
    bytes mac(hmac_sha256_size);
    unsigned int len = 0;
    if (!HMAC(EVP_sha256(), key_.data(), static_cast<int>(key_.size()), message.data(), message.size(), mac.data(),
              &len) ||
        len != hmac_sha256_size)
      return make_error_code(errc::crypto_failure);
    return mac;
  }
  /// Constant-time comparison: a timing side channel must not leak the MAC byte by byte.
  bool verify(byte_view message, byte_view signature) const {
    if (signature.size() != hmac_sha256_size) return false;
    auto mac = sign(message);
    return mac && CRYPTO_memcmp(mac->data(), signature.data(), hmac_sha256_size) == 0;
  }

 private:
  hmac_key() = default;
  bytes key_;
};

/// An Ed25519 public key: all a resource server needs to verify tokens.
class ed25519_public_key {
 public:
  static result<ed25519_public_key> from_bytes(byte_view raw) {
    if (raw.size() != ed25519_key_size) return make_error_code(errc::invalid_key);
    EVP_PKEY* k = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nullptr, raw.data(), raw.size());
    if (!k) return make_error_code(errc::invalid_key);
    return ed25519_public_key(detail::pkey_ptr(k, detail::pkey_free{}));
  }
  bytes raw() const {
    bytes out(ed25519_key_size);
    std::size_t len = out.size();
    if (EVP_PKEY_get_raw_public_key(key_.get(), out.data(), &len) != 1) out.clear();
    return out;
  }
  bool verify(byte_view message, byte_view signature) const {
    if (signature.size() != ed25519_signature_size) return false;
    detail::md_ctx_ptr ctx(EVP_MD_CTX_new());
    if (!ctx || EVP_DigestVerifyInit(ctx.get(), nullptr, nullptr, nullptr, key_.get()) != 1) return false;
    return EVP_DigestVerify(ctx.get(), signature.data(), signature.size(), message.data(), message.size()) == 1;
  }

 private:
  friend class ed25519_private_key;
  explicit ed25519_public_key(detail::pkey_ptr k) : key_(std::move(k)) {}
  detail::pkey_ptr key_;
};

/// An Ed25519 private key, held by the group that issues tokens.
class ed25519_private_key {
 public:
  static result<ed25519_private_key> generate() {
    EVP_PKEY* k = nullptr;
    std::unique_ptr<EVP_PKEY_CTX, decltype(&EVP_PKEY_CTX_free)> ctx(EVP_PKEY_CTX_new_id(EVP_PKEY_ED25519, nullptr),
                                                                    &EVP_PKEY_CTX_free);
    if (!ctx || EVP_PKEY_keygen_init(ctx.get()) != 1 || EVP_PKEY_keygen(ctx.get(), &k) != 1)
      return make_error_code(errc::crypto_failure);
    return ed25519_private_key(detail::pkey_ptr(k, detail::pkey_free{}));
  }
  /// From the 32-byte seed (RFC 8032's private key), e.g. read from a secret store.
  static result<ed25519_private_key> from_seed(byte_view seed) {
    if (seed.size() != ed25519_key_size) return make_error_code(errc::invalid_key);
    EVP_PKEY* k = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, nullptr, seed.data(), seed.size());
    if (!k) return make_error_code(errc::invalid_key);
    return ed25519_private_key(detail::pkey_ptr(k, detail::pkey_free{}));
  }
  bytes seed() const {
    bytes out(ed25519_key_size);
    std::size_t len = out.size();
    if (EVP_PKEY_get_raw_private_key(key_.get(), out.data(), &len) != 1) out.clear();
    return out;
  }
  ed25519_public_key public_key() const {
    bytes raw(ed25519_key_size);
    std::size_t len = raw.size();
    EVP_PKEY_get_raw_public_key(key_.get(), raw.data(), &len);
    return std::move(ed25519_public_key::from_bytes(raw).value());  // a valid private key always has one
  }
  result<bytes> sign(byte_view message) const {
    detail::md_ctx_ptr ctx(EVP_MD_CTX_new());
    bytes sig(ed25519_signature_size);
    std::size_t len = sig.size();
    if (!ctx || EVP_DigestSignInit(ctx.get(), nullptr, nullptr, nullptr, key_.get()) != 1 ||
        EVP_DigestSign(ctx.get(), sig.data(), &len, message.data(), message.size()) != 1 ||
        len != ed25519_signature_size)
      return make_error_code(errc::crypto_failure);
    return sig;
  }

 private:
  explicit ed25519_private_key(detail::pkey_ptr k) : key_(std::move(k)) {}
  detail::pkey_ptr key_;
};

/// What a resource server checks tokens with.
class verification_key {
 public:
  verification_key(hmac_key k, std::uint32_t key_id = 0) : key_(std::move(k)), id_(key_id) {}
  verification_key(ed25519_public_key k, std::uint32_t key_id = 0) : key_(std::move(k)), id_(key_id) {}

  lease::scheme scheme() const noexcept {
    return std::holds_alternative<hmac_key>(key_) ? scheme::hmac_sha256 : scheme::ed25519;
  }
  std::uint32_t key_id() const noexcept { return id_; }
  bool verify(byte_view message, byte_view signature) const {
    return std::visit([&](const auto& k) { return k.verify(message, signature); }, key_);
  }

 private:
  std::variant<hmac_key, ed25519_public_key> key_;
  std::uint32_t id_;
};

/// What the group seals tokens with: a key, its scheme and its id.
class signing_key {
 public:
  signing_key(hmac_key k, std::uint32_t key_id = 0) : key_(std::move(k)), id_(key_id) {}
  signing_key(ed25519_private_key k, std::uint32_t key_id = 0) : key_(std::move(k)), id_(key_id) {}

  lease::scheme scheme() const noexcept {
    return std::holds_alternative<hmac_key>(key_) ? scheme::hmac_sha256 : scheme::ed25519;
  }
  std::uint32_t key_id() const noexcept { return id_; }
  result<bytes> sign(byte_view message) const {
    return std::visit([&](const auto& k) { return k.sign(message); }, key_);
  }
  /// The key a resource server needs: the public key for Ed25519, the shared key for HMAC.
  lease::verification_key to_verification_key() const {
    if (const auto* h = std::get_if<hmac_key>(&key_)) return {*h, id_};
    return {std::get<ed25519_private_key>(key_).public_key(), id_};
  }

 private:
  std::variant<hmac_key, ed25519_private_key> key_;
  std::uint32_t id_;
};

}  // namespace dcp::lease
