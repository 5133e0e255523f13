#pragma once
// keyring_transport and keyring_node: dcp frames over TCP, every one sealed
// with AES-256-GCM under a key the group shares, as hashicorp/memberlist
// does for its gossip (a "keyring": several keys installed, one primary).
// Needs OpenSSL's libcrypto: link dcp::lease.
//
//   auto ring = dcp::net::keyring(key);          // 32 bytes, e.g. keyring::generate()
//   dcp::net::keyring_node n(io, cfg, ring);
//
// What it buys (docs/security.md): a process without an installed key can
// neither connect (its opening names no key we hold, or its hello does not
// authenticate), nor read a frame, nor alter, replay, reorder, drop or cut
// one on a connection without the connection closing. The hello's address is
// then as trustworthy as the key holders: a key is a group membership, not
// an identity, so a holder of the key can still claim another member's
// address (mutual TLS with per-node certificates is the answer to that).
//
// The connection, after TCP connects:
//
//   1. Openings, one each way at once (48 bytes, plaintext): "DCPK", version
//      1, role (caller / acceptor), the caller's key id (the acceptor sends
//      0), and 32 fresh random bytes (RAND_bytes). An acceptor that holds no
//      key with the caller's id closes the connection.
//   2. Keys: for each direction, HKDF-SHA256 (RFC 5869) of the keyring key,
//      salt = caller nonce || acceptor nonce, info = "dcp keyring v1" and the
//      direction. Both nonces are fresh per connection, so nothing recorded
//      on another connection (in either direction) opens on this one; the
//      directions have different keys, so nothing reflects.
//   3. Frames: the 12-byte dcp header stays in clear (its length counts the
//      16-byte tag) and is the additional data; the payload is encrypted and
//      followed by the GCM tag. The 96-bit nonce is the frame's number in its
//      direction (0, 1, 2, ...), never sent: the receiver expects the next
//      number, so a replayed, reordered or dropped frame does not open. A cut
//      connection loses its tail, as any lost connection does.
//   4. The caller's first frame is the hello (its address); the acceptor
//      attributes nothing to a connection before a hello that opened.
//
// Any failure (an unknown key id, a bad opening, a frame that does not open,
// a rekey to a key we lack) closes that connection, counts a drop of
// protocol 0 as errc::authentication_failed (and "keyring_auth_failures"),
// delivers nothing and changes nothing else. What is leaked: frame sizes and
// the header (protocol id, message type), timing, and which key a caller uses.
//
// Rotation without downtime (what memberlist calls install / use / remove):
//   1. install the new key on every node (n.transport().security().ring().install(k)):
//      nodes now accept callers under either key;
//   2. make it primary on every node (n.transport().use_key(id)): each open
//      connection sends a sealed "rekey" frame under the old key and seals
//      under the new one after it (the peer switches at that frame), new
//      connections open under it;
//   3. remove the old key everywhere (n.transport().remove_key(old)):
//      connections still using it either way close (counted,
//      "keyring_sessions_closed"). None should be left if step 2 finished.
// Frames keep flowing on the same connections all along: nothing is lost.
//
// Not here: forward secrecy (a stolen key decrypts recorded traffic),
// per-node identity, protection of the frame sizes and protocol ids.
#include <array>
#include <cstdint>
#include <cstring>
#include <memory>
#include <span>
#include <string_view>
#include <system_error>
#include <vector>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "dcp/core/bytes.hpp"
#include "dcp/core/error.hpp"
#include "dcp/net/detail/aead.hpp"
#include "dcp/net/detail/connection.hpp"
#include "dcp/net/node.hpp"
#include "dcp/net/tcp_transport.hpp"
#include "dcp/net/transport.hpp"
#include "dcp/wire/frame.hpp"

namespace dcp::net {

/// One AES-256 key of a keyring.
using keyring_key = std::array<std::uint8_t, 32>;

/// The keys a keyring transport accepts, and the one it seals with.
class keyring {
 public:
  static constexpr std::size_t max_keys = 16;  // a rotation needs two; bound what a caller may make us try

  /// A fresh key from OpenSSL's generator; throws dcp::error if it fails.
  static keyring_key generate() {
    keyring_key k;
    if (RAND_bytes(k.data(), static_cast<int>(k.size())) != 1)
      throw error(errc::invalid_config, "dcp::net::keyring: RAND_bytes failed");
    return k;
  }

  /// The id a key is known by on the wire: 8 bytes of SHA-256 over a domain
  /// tag and the key (never 0). Reveals nothing of the key.
  static std::uint64_t id_of(const keyring_key& k) {
    static constexpr std::string_view tag = "dcp keyring v1 key id";
    std::array<std::uint8_t, 32> digest{};
    unsigned int n = 0;
    if (!HMAC(EVP_sha256(), tag.data(), static_cast<int>(tag.size()), k.data(), k.size(), digest.data(), &n))
      throw error(errc::invalid_config, "dcp::net::keyring: SHA-256 failed");
    std::uint64_t id = 0;
    for (int i = 0; i < 8; ++i) id |= std::uint64_t{digest[static_cast<std::size_t>(i)]} << (8 * i);
    return id == 0 ? 1 : id;
  }

  explicit keyring(const keyring_key& primary) {
    keys_.push_back({id_of(primary), primary});
    primary_ = keys_.front().id;
  }
  keyring(const keyring&) = default;
  keyring& operator=(const keyring&) = default;
  keyring(keyring&&) noexcept = default;
  keyring& operator=(keyring&&) noexcept = default;
  ~keyring() {
    for (auto& e : keys_) OPENSSL_cleanse(e.key.data(), e.key.size());
  }

  /// Adds a key (accepted from now on, not yet used to seal). Returns its id;
  /// installing a key twice is harmless. Throws past max_keys.
  std::uint64_t install(const keyring_key& k) {
    const auto id = id_of(k);
    if (find(id)) return id;
    if (keys_.size() >= max_keys) throw error(errc::invalid_argument, "dcp::net::keyring: max_keys keys installed");
    keys_.push_back({id, k});
    return id;
  }
  /// Seal with key `id` from now on. not_found if it is not installed.
  std::error_code use(std::uint64_t id) {
    if (!find(id)) return errc::not_found;
    primary_ = id;
    return {};
  }
  /// Forgets key `id`. not_found, or invalid_argument for the primary.
  std::error_code remove(std::uint64_t id) {
    if (id == primary_) return errc::invalid_argument;
    for (auto it = keys_.begin(); it != keys_.end(); ++it)
      if (it->id == id) {
        OPENSSL_cleanse(it->key.data(), it->key.size());
        keys_.erase(it);
        return {};
      }
    return errc::not_found;
  }

  std::uint64_t primary_id() const noexcept { return primary_; }
  const keyring_key* find(std::uint64_t id) const noexcept {
    for (auto& e : keys_)
      if (e.id == id) return &e.key;
    return nullptr;
  }
  std::vector<std::uint64_t> ids() const {
    std::vector<std::uint64_t> out;
    for (auto& e : keys_) out.push_back(e.id);
    return out;
  }

 private:
  struct entry {
    std::uint64_t id;
    keyring_key key;
  };
  std::vector<entry> keys_;
  std::uint64_t primary_ = 0;
};

/// The Security policy of keyring_transport (see the top of this header).
class keyring_security {
 public:
  using options = keyring;
  static constexpr bool authenticated = true;
  static constexpr bool sealed = true;
  static constexpr bool layered = false;
  static constexpr std::size_t overhead = 16;  // the GCM tag
  static constexpr std::string_view name = "keyring";

  explicit keyring_security(keyring ring) : ring_(std::move(ring)) {}

  keyring& ring() noexcept { return ring_; }
  const keyring& ring() const noexcept { return ring_; }

  /// Fills st.mine: the caller names its primary key.
  void make_opening(detail::seal_state& st, bool caller) {
    auto& o = st.mine;
    o.fill(0);
    std::memcpy(o.data(), "DCPK", 4);
    o[4] = 1;
    o[5] = caller ? role_caller : role_acceptor;
    if (caller) {
      put64(o.data() + 8, ring_.primary_id());
      st.send_key_id = st.recv_key_id = ring_.primary_id();
    }
    if (RAND_bytes(o.data() + 16, 32) != 1) throw error(errc::invalid_config, "dcp::net::keyring: RAND_bytes failed");
  }

  /// Checks st.theirs and derives the connection's keys. nullptr when it
  /// worked, else why not.
  const char* accept_opening(detail::seal_state& st, bool caller) {
    const auto& o = st.theirs;
    if (std::memcmp(o.data(), "DCPK", 4) != 0 || o[4] != 1) return "an opening that is not a keyring's";
    if (o[5] != (caller ? role_acceptor : role_caller)) return "an opening with the wrong role";
    if (!caller) {
      const std::uint64_t id = get64(o.data() + 8);
      if (!ring_.find(id)) return "an opening under a key this node does not hold";
      st.send_key_id = st.recv_key_id = id;
    }
    if (!ring_.find(st.send_key_id)) return "the key of this connection was removed";
    derive(st, *ring_.find(st.send_key_id), caller, /*sending=*/true, st.send_key);
    derive(st, *ring_.find(st.recv_key_id), caller, /*sending=*/false, st.recv_key);
    schedule(st, true);
    schedule(st, false);
    st.send_counter = st.recv_counter = 0;
    st.ready = true;
    return nullptr;
  }

  /// Appends `frame` (a whole plaintext frame) to `out`, sealed under the next number.
  void seal(detail::seal_state& st, bytes& out, byte_view frame) {
    wire::frame_header h;
    (void)wire::read_header(frame.first(wire::header_size), h, wire::limits{0xFFFFFFFFu});
    const std::size_t n = frame.size() - wire::header_size;
    const std::size_t at = out.size();
    out.resize(at + wire::header_size + n + overhead);
    std::uint8_t* p = out.data() + at;
    h.length = static_cast<std::uint32_t>(n + overhead);
    wire::write_header(p, h);
    detail::aead::seal(st.send_cipher.get(), detail::aead::nonce_of(st.send_counter++),
                       {byte_view(p, wire::header_size)}, frame.data() + wire::header_size, p + wire::header_size, n,
                       p + wire::header_size + n);
  }

  /// Opens a sealed payload in place; on success h.length is the plaintext's
  /// and the payload's first h.length bytes are it. False: the frame does not
  /// authenticate (the connection must close).
  bool open(detail::seal_state& st, wire::frame_header& h, std::span<std::uint8_t> payload) {
    if (!st.ready || payload.size() < overhead) return false;
    const std::size_t n = payload.size() - overhead;
    std::array<std::uint8_t, wire::header_size> aad{};
    wire::write_header(aad.data(), h);
    if (!detail::aead::open(st.recv_cipher.get(), detail::aead::nonce_of(st.recv_counter), {byte_view(aad)},
                            payload.data(), n, payload.data() + n))
      return false;
    ++st.recv_counter;
    h.length = static_cast<std::uint32_t>(n);
    return true;
  }

  /// After sealing a rekey frame: later frames this way go under key `id`.
  void switch_send_key(detail::seal_state& st, std::uint64_t id) {
    derive(st, *ring_.find(id), st.mine[5] == role_caller, true, st.send_key);
    schedule(st, true);
    st.send_key_id = id;
  }
  /// The peer switched: false if we do not hold its new key.
  bool switch_recv_key(detail::seal_state& st, std::uint64_t id) {
    const keyring_key* k = ring_.find(id);
    if (!k) return false;
    derive(st, *k, st.mine[5] == role_caller, false, st.recv_key);
    schedule(st, false);
    st.recv_key_id = id;
    return true;
  }

 private:
  static constexpr std::uint8_t role_caller = 'C', role_acceptor = 'A';

  /// A cipher context per direction with its key scheduled once.
  static void schedule(detail::seal_state& st, bool sending) {
    (sending ? st.send_cipher : st.recv_cipher) = detail::aead::context(sending ? st.send_key : st.recv_key, sending);
  }

  static void put64(std::uint8_t* p, std::uint64_t v) noexcept {
    for (int i = 0; i < 8; ++i) p[i] = static_cast<std::uint8_t>(v >> (8 * i));
  }
  static std::uint64_t get64(const std::uint8_t* p) noexcept {
    std::uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v |= std::uint64_t{p[i]} << (8 * i);
    return v;
  }

  /// HKDF-SHA256 (RFC 5869), one output block: PRK = HMAC(salt, key),
  /// out = HMAC(PRK, info || 0x01), salt = caller nonce || acceptor nonce.
  static void derive(const detail::seal_state& st, const keyring_key& key, bool caller, bool sending,
                     std::array<std::uint8_t, 32>& out) {
    std::array<std::uint8_t, 64> salt{};
    const auto& caller_opening = caller ? st.mine : st.theirs;
    const auto& acceptor_opening = caller ? st.theirs : st.mine;
    std::memcpy(salt.data(), caller_opening.data() + 16, 32);
    std::memcpy(salt.data() + 32, acceptor_opening.data() + 16, 32);
    const bool to_acceptor = caller == sending;  // the caller sends, or the acceptor receives
    const std::string_view info = to_acceptor ? std::string_view("dcp keyring v1 caller to acceptor\x01", 34)
                                              : std::string_view("dcp keyring v1 acceptor to caller\x01", 34);
    out = detail::aead::hkdf(key, byte_view(salt), info);
  }

  keyring ring_;
};

/// dcp frames over TCP, sealed under a keyring (see the top of this header).
using keyring_transport = basic_tcp_transport<keyring_security>;
static_assert(Transport<keyring_transport>);
static_assert(keyring_transport::authenticated);

/// A node whose every frame is authenticated and encrypted under a keyring.
using keyring_node = basic_node<keyring_transport>;

}  // namespace dcp::net
