#pragma once
// AES-256-GCM and HKDF-SHA256 through OpenSSL's libcrypto (internal): the one
// sealing code the keyring transports share, the stream one
// (dcp/net/keyring.hpp, a nonce per frame number of a connection) and the
// datagram one (dcp/net/udp_keyring.hpp, a nonce per datagram number of a
// sender's boot). Kept in one place so that a fix to how dcp seals reaches
// both.
#include <array>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <span>
#include <string_view>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "dcp/core/bytes.hpp"
#include "dcp/core/error.hpp"

namespace dcp::net::detail::aead {

inline constexpr std::size_t tag_size = 16;
using key256 = std::array<std::uint8_t, 32>;
using nonce96 = std::array<std::uint8_t, 12>;

/// A cipher context with `key` scheduled once: each message then only sets
/// its nonce (initialising AES-GCM with the key per message costs several
/// times the encryption of a small one). Opaque (an EVP_CIPHER_CTX) so that
/// the states holding it need no OpenSSL header. Throws if OpenSSL fails.
inline std::shared_ptr<void> context(const key256& key, bool sealing) {
  std::shared_ptr<void> ctx(EVP_CIPHER_CTX_new(),
                            [](void* c) { EVP_CIPHER_CTX_free(static_cast<EVP_CIPHER_CTX*>(c)); });
  auto* c = static_cast<EVP_CIPHER_CTX*>(ctx.get());
  const bool ok = c &&
      (sealing ? EVP_EncryptInit_ex(c, EVP_aes_256_gcm(), nullptr, key.data(), nullptr)
               : EVP_DecryptInit_ex(c, EVP_aes_256_gcm(), nullptr, key.data(), nullptr)) == 1;
  if (!ok) throw error(errc::invalid_config, "dcp::net: AES-256-GCM initialisation failed");
  return ctx;
}

/// The nonce whose last 8 bytes are `n` (little-endian), the first 4 zero.
inline nonce96 nonce_of(std::uint64_t n) noexcept {
  nonce96 iv{};
  for (int i = 0; i < 8; ++i) iv[static_cast<std::size_t>(4 + i)] = static_cast<std::uint8_t>(n >> (8 * i));
  return iv;
}

/// Encrypts in[0, n) into out[0, n) (the same place, or apart) under `ctx`
/// (from context(k, true)) and nonce `iv`, authenticating the `aad` pieces
/// first, and writes the tag to `tag`. Throws if OpenSSL fails on valid
/// arguments: nothing safe is left to send.
inline void seal(void* ctx, const nonce96& iv, std::initializer_list<byte_view> aad, const std::uint8_t* in,
                 std::uint8_t* out, std::size_t n, std::uint8_t* tag) {
  auto* c = static_cast<EVP_CIPHER_CTX*>(ctx);
  int len = 0;
  bool ok = c && EVP_EncryptInit_ex(c, nullptr, nullptr, nullptr, iv.data()) == 1;
  for (auto& a : aad)
    if (ok && !a.empty()) ok = EVP_EncryptUpdate(c, nullptr, &len, a.data(), static_cast<int>(a.size())) == 1;
  if (ok && n > 0) ok = EVP_EncryptUpdate(c, out, &len, in, static_cast<int>(n)) == 1;
  ok = ok && EVP_EncryptFinal_ex(c, out + n, &len) == 1 &&
      EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, static_cast<int>(tag_size), tag) == 1;
  if (!ok) throw error(errc::invalid_config, "dcp::net: AES-256-GCM sealing failed");
}

/// Decrypts data[0, n) in place and checks `tag` over the `aad` pieces and
/// the ciphertext: false when it does not authenticate (then data[0, n) is
/// garbage and must not be used).
inline bool open(void* ctx, const nonce96& iv, std::initializer_list<byte_view> aad, std::uint8_t* data, std::size_t n,
                 const std::uint8_t* tag) {
  auto* c = static_cast<EVP_CIPHER_CTX*>(ctx);
  int len = 0;
  bool ok = c && EVP_DecryptInit_ex(c, nullptr, nullptr, nullptr, iv.data()) == 1;
  for (auto& a : aad)
    if (ok && !a.empty()) ok = EVP_DecryptUpdate(c, nullptr, &len, a.data(), static_cast<int>(a.size())) == 1;
  if (ok && n > 0) ok = EVP_DecryptUpdate(c, data, &len, data, static_cast<int>(n)) == 1;
  std::array<std::uint8_t, tag_size> t{};
  std::copy(tag, tag + tag_size, t.begin());  // OpenSSL wants a mutable tag
  return ok && EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, static_cast<int>(tag_size), t.data()) == 1 &&
      EVP_DecryptFinal_ex(c, data + n, &len) == 1;
}

/// HKDF-SHA256 (RFC 5869), one output block: PRK = HMAC(salt, key),
/// out = HMAC(PRK, info || 0x01) (`info` ends with the 0x01). Throws if OpenSSL fails.
inline key256 hkdf(const key256& key, byte_view salt, std::string_view info) {
  std::array<std::uint8_t, 32> prk{};
  key256 out{};
  unsigned int n = 0;
  const bool ok =
      HMAC(EVP_sha256(), salt.data(), static_cast<int>(salt.size()), key.data(), key.size(), prk.data(), &n) &&
      HMAC(EVP_sha256(), prk.data(), static_cast<int>(prk.size()), reinterpret_cast<const unsigned char*>(info.data()),
           info.size(), out.data(), &n);
  OPENSSL_cleanse(prk.data(), prk.size());
  if (!ok) throw error(errc::invalid_config, "dcp::net: HKDF-SHA256 failed");
  return out;
}

}  // namespace dcp::net::detail::aead
