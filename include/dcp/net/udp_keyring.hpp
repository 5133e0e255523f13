#pragma once
// keyring_udp_transport and keyring_udp_node: dcp frames over UDP, every
// datagram sealed with AES-256-GCM under the group's keyring (the keyring of
// dcp/net/keyring.hpp: the same keys, key ids and rotation), as
// hashicorp/memberlist seals its gossip; with a replay window per sender as
// IPsec and WireGuard keep one. Needs OpenSSL's libcrypto: link dcp::lease.
//
//   dcp::net::keyring_udp_node n(io, cfg, dcp::net::keyring(key));
//   dcp::net::keyring_udp_node n(io, cfg, {ring, {.max_datagram_size = 8192}});
//   // or at run time: transport_spec "udp:keyring:KEYFILE" (dcp/net/transport_spec.hpp)
//
// A datagram (everything but the payload in clear; little-endian):
//
//   0   4  "DCPU"           magic (a plaintext frame starts 0xDC 0x50: told apart)
//   4   1  version 1, then 3 zero bytes
//   8   8  key id           which key of the ring sealed it (keyring::id_of)
//   16  8  boot time        the sender's wall clock (ns) when its transport was made,
//                           strictly increasing across its restarts
//   24  8  boot nonce       8 random bytes (RAND_bytes) of that boot
//   32  8  number           the sender's datagram count in this boot (0, 1, 2, ...)
//   40 12  frame header     the dcp frame's header; its length is the payload's
//   52  n  payload          encrypted
//   ..  16 GCM tag
//
// Keys: each boot of a sender seals under HKDF-SHA256(ring key, salt = boot
// time || boot nonce, info "dcp keyring v1 udp datagrams"), with nonce =
// the number: a nonce is never used twice under one key (a fresh key per
// boot; the number only grows). Additional data: bytes 0-51, and the
// sender's and the receiver's addresses (family, IP, port), which are not
// sent: the receiver puts in the datagram's source address and its own. So a
// datagram opens only as sent by the address it comes from, to the node it
// reaches: recorded and sent again from another source, or to another node,
// it does not authenticate.
//
// Replay. The receiver keeps, per sender address (at most
// options::max_peers, the least recently heard evicted and counted
// "udp_keyring_peers_evicted"), the boot it hears from and a window of the
// numbers accepted in it (detail::replay_window: 960 numbers back). A
// datagram of that boot already accepted is a replay; one more than 960
// numbers below the highest accepted, or of an earlier boot (a smaller boot
// time), is stale. A datagram of a later boot that authenticates starts that
// boot afresh ("udp_keyring_peer_restarts"): a restarted sender is heard at
// once. Nothing changes before a datagram authenticates.
//
// Drops, each of protocol 0, nothing delivered, nothing else changed:
//   shorter than the seal (52 + 16 bytes)        truncated_frame
//   not "DCPU" (a plaintext frame, noise)        bad_magic
//   another version, reserved bytes set          unsupported_version, bad_flags
//   a key id the ring does not hold              authentication_failed, "udp_keyring_unknown_key"
//   a tag that does not verify (forged, altered,
//     sent again from or to another address)     authentication_failed, "udp_keyring_auth_failures"
//   a number already accepted                    authentication_failed, "udp_keyring_replays"
//   below the window, or an earlier boot         authentication_failed, "udp_keyring_stale"
// (A forgery and an alteration are the same event to AES-GCM: the tag does
// not verify; they cannot be told apart, so they share a counter.)
//
// Rotation without downtime, as over TCP: install the new key on every node
// (n.transport().security().ring().install(k)); make it primary everywhere
// (n.transport().use_key(id)): the next datagram is sealed under it, and
// every peer opens it since it holds it; remove the old one
// (n.transport().remove_key(old)): datagrams still under it are dropped as
// "udp_keyring_unknown_key". No session to switch: nothing is lost.
//
// What it does not do (docs/security.md): hide sizes, protocol ids, message
// types or the key id; forward secrecy; tell key holders apart (a key is a
// group membership: a holder can send as any address it can spoof); survive
// a sender's wall clock stepping back across its restart (its new boot looks
// older and is refused as stale until the clock passes the old boot time, or
// the receiver forgets it); remember a sender it evicted (an evicted
// sender's recent datagrams, replayed, are accepted once again: the bound is
// what keeps memory fixed; count "udp_keyring_peers_evicted").
// A datagram overtaken by more than 960 of the same sender's later ones (to
// any node: one count per sender) is refused as stale.
#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <memory>
#include <span>
#include <string_view>
#include <system_error>
#include <unordered_map>

#include <openssl/rand.h>

#include "dcp/core/address.hpp"
#include "dcp/core/bytes.hpp"
#include "dcp/core/error.hpp"
#include "dcp/core/metrics.hpp"
#include "dcp/net/detail/aead.hpp"
#include "dcp/net/detail/connection.hpp"
#include "dcp/net/detail/replay_window.hpp"
#include "dcp/net/keyring.hpp"
#include "dcp/net/node.hpp"
#include "dcp/net/udp_transport.hpp"
#include "dcp/wire/frame.hpp"

namespace dcp::net {

/// What keyring_udp_transport needs: the keyring (no default: a node is never
/// silently plaintext), the datagram bounds, and how many senders it tracks.
struct udp_keyring_options {
  keyring ring;
  udp_options udp{};
  /// Senders whose replay windows are kept: about 1.3 KB each, most of it
  /// the sender's scheduled AES-GCM key (some 5 MB at the default). Past it
  /// the least recently heard is forgotten and counted.
  std::size_t max_peers = 4096;

  udp_keyring_options(keyring r, udp_options u = {}, std::size_t peers = 4096)
      : ring(std::move(r)), udp(u), max_peers(peers) {}
};

/// The Security policy of keyring_udp_transport (see the top of this header).
class udp_keyring_security {
 public:
  using options = udp_keyring_options;
  static constexpr bool authenticated = true;
  static constexpr bool sealed = true;
  static constexpr std::size_t prefix_size = 40;  // magic .. number, before the frame header
  static constexpr std::size_t overhead = prefix_size + detail::aead::tag_size;
  static constexpr std::string_view name = "udp-keyring";

  static const udp_options& datagram_options(const options& o) noexcept { return o.udp; }

  explicit udp_keyring_security(const options& o) : ring_(o.ring), max_peers_(o.max_peers) {
    if (max_peers_ == 0) throw error(errc::invalid_config, "net::udp_keyring_options: max_peers must be > 0");
    boot_time_ = next_boot_time();
    if (RAND_bytes(boot_nonce_.data(), static_cast<int>(boot_nonce_.size())) != 1)
      throw error(errc::invalid_config, "dcp::net::udp_keyring: RAND_bytes failed");
  }

  keyring& ring() noexcept { return ring_; }
  const keyring& ring() const noexcept { return ring_; }
  /// Senders tracked now (at most options::max_peers).
  std::size_t peers_tracked() const noexcept { return peers_.size(); }
  /// This boot's time and nonce (what a restarted sender changes).
  std::uint64_t boot_time() const noexcept { return boot_time_; }

  /// The address datagrams are sealed from and opened at (the socket's).
  /// Throws when it is a wildcard (0.0.0.0, ::): peers seal to the address
  /// they send to, which must be the one this node opens with.
  void bind(const address& self) {
    if (!self.is_ip() || self.ip_address().is_unspecified())
      throw error(errc::invalid_config,
                  "dcp::net::udp_keyring: datagrams are sealed to the receiver's address, so "
                  "listen on the address peers send to, not " +
                      self.to_string());
    self_ = address_bytes(self);
  }

  /// `datagram` holds prefix_size bytes, then a whole plaintext frame:
  /// fills the prefix, encrypts the payload in place and appends the tag.
  void seal(bytes& datagram, const address& to) {
    if (!send_ctx_ || send_key_id_ != ring_.primary_id()) {  // first datagram, or the primary changed
      send_key_id_ = ring_.primary_id();
      send_ctx_ = detail::aead::context(boot_key(*ring_.find(send_key_id_), boot_time_, boot_nonce_.data()), true);
    }
    const std::size_t n = datagram.size() - prefix_size - wire::header_size;
    std::uint8_t* p = datagram.data();
    std::memcpy(p, "DCPU", 4);
    p[4] = version;
    p[5] = p[6] = p[7] = 0;
    put64(p + 8, send_key_id_);
    put64(p + 16, boot_time_);
    std::memcpy(p + 24, boot_nonce_.data(), 8);
    const std::uint64_t number = send_number_++;
    put64(p + 32, number);
    datagram.resize(datagram.size() + detail::aead::tag_size);
    p = datagram.data();
    const auto dst = address_bytes(to);
    std::uint8_t* payload = p + prefix_size + wire::header_size;
    detail::aead::seal(send_ctx_.get(), detail::aead::nonce_of(number),
                       {byte_view(p, prefix_size + wire::header_size), byte_view(self_), byte_view(dst)}, payload,
                       payload, n, payload + n);
  }

  /// Opens `datagram`, received from `from`, in place: on success `frame` is
  /// the plaintext frame inside (its header, then its payload). Else the
  /// reason to drop it, counted in `m` (see the top of this header).
  std::error_code open(std::span<std::uint8_t> datagram, const address& from, byte_view& frame, dcp::metrics& m) {
    if (datagram.size() < overhead + wire::header_size) return errc::truncated_frame;
    const std::uint8_t* p = datagram.data();
    if (std::memcmp(p, "DCPU", 4) != 0) return errc::bad_magic;
    if (p[4] != version) return errc::unsupported_version;
    if (p[5] | p[6] | p[7]) return errc::bad_flags;
    const std::uint64_t key_id = get64(p + 8), boot_time = get64(p + 16), number = get64(p + 32);
    const keyring_key* key = ring_.find(key_id);
    if (!key) return refused(m, "udp_keyring_unknown_key");

    // Where this datagram stands against what we know of its sender.
    auto it = peers_.find(from);
    sender* known = it == peers_.end() ? nullptr : &it->second;
    bool same_boot = false;
    if (known) {
      same_boot = boot_time == known->boot_time && std::memcmp(p + 24, known->boot_nonce.data(), 8) == 0;
      if (!same_boot && boot_time <= known->boot_time) return refused(m, "udp_keyring_stale");  // an earlier boot
      if (same_boot) {
        switch (known->window.check(number)) {
          case detail::replay_window::verdict::replayed:
            return refused(m, "udp_keyring_replays");
          case detail::replay_window::verdict::stale:
            return refused(m, "udp_keyring_stale");
          case detail::replay_window::verdict::fresh:
            break;
        }
      }
    }

    // The boot's key: cached for a known sender's boot and key, else derived
    // (an unknown sender, a restart, a rotation) and kept only if it opens.
    std::shared_ptr<void> ctx;
    if (same_boot && known->key_id == key_id)
      ctx = known->ctx;
    else
      ctx = detail::aead::context(boot_key(*key, boot_time, p + 24), false);
    const std::size_t n = datagram.size() - overhead - wire::header_size;
    std::uint8_t* payload = datagram.data() + prefix_size + wire::header_size;
    const auto src = address_bytes(from);
    if (!detail::aead::open(ctx.get(), detail::aead::nonce_of(number),
                            {byte_view(p, prefix_size + wire::header_size), byte_view(src), byte_view(self_)}, payload,
                            n, payload + n))
      return refused(m, "udp_keyring_auth_failures");

    // Authentic: only now does anything change.
    if (!known) {
      if (peers_.size() >= max_peers_) evict(m);
      known = &peers_[from];
    } else if (!same_boot) {
      m.add(detail::transport_protocol, "udp_keyring_peer_restarts", 1);
    }
    if (!same_boot) {
      known->boot_time = boot_time;
      std::memcpy(known->boot_nonce.data(), p + 24, 8);
      known->window.reset();
    }
    known->key_id = key_id;
    known->ctx = std::move(ctx);
    known->window.accept(number);
    known->heard = ++clock_;
    frame = byte_view(datagram.data() + prefix_size, wire::header_size + n);
    return {};
  }

 private:
  static constexpr std::uint8_t version = 1;
  using address_key = std::array<std::uint8_t, 19>;  // family, 16 bytes of IP, port

  struct sender {
    std::uint64_t boot_time = 0;
    std::array<std::uint8_t, 8> boot_nonce{};
    std::uint64_t key_id = 0;
    std::shared_ptr<void> ctx;  // the boot's key under key_id, scheduled
    detail::replay_window window;
    std::uint64_t heard = 0;  // clock_ when last accepted: the least recent is evicted
  };

  static std::error_code refused(dcp::metrics& m, std::string_view counter) {
    m.add(detail::transport_protocol, counter, 1);
    return errc::authentication_failed;
  }

  /// Forgets the sender heard least recently. A scan: it runs only when an
  /// authentic datagram comes from a new sender past max_peers, so only
  /// key holders can make it run.
  void evict(dcp::metrics& m) {
    auto oldest = std::min_element(peers_.begin(), peers_.end(),
                                   [](const auto& a, const auto& b) { return a.second.heard < b.second.heard; });
    if (oldest == peers_.end()) return;
    peers_.erase(oldest);
    m.add(detail::transport_protocol, "udp_keyring_peers_evicted", 1);
  }

  /// The wall clock in ns, strictly above every earlier boot of this process:
  /// a sender's boots are ordered even when two start within a clock tick.
  static std::uint64_t next_boot_time() {
    static std::atomic<std::uint64_t> last{0};
    const auto now = static_cast<std::uint64_t>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch())
            .count());
    std::uint64_t prev = last.load();
    std::uint64_t mine = 0;
    do mine = std::max(now, prev + 1);
    while (!last.compare_exchange_weak(prev, mine));
    return mine;
  }

  static detail::aead::key256 boot_key(const keyring_key& key, std::uint64_t boot_time, const std::uint8_t* nonce) {
    std::array<std::uint8_t, 16> salt{};
    put64(salt.data(), boot_time);
    std::memcpy(salt.data() + 8, nonce, 8);
    return detail::aead::hkdf(key, byte_view(salt), std::string_view("dcp keyring v1 udp datagrams\x01", 29));
  }

  static address_key address_bytes(const address& a) {
    address_key out{};
    if (!a.is_ip()) return out;
    const auto ip = a.ip_address();
    if (ip.is_v4()) {
      out[0] = 4;
      const auto b = ip.to_v4().to_bytes();
      std::copy(b.begin(), b.end(), out.begin() + 1);
    } else {
      out[0] = 6;
      const auto b = ip.to_v6().to_bytes();
      std::copy(b.begin(), b.end(), out.begin() + 1);
    }
    out[17] = static_cast<std::uint8_t>(a.port());
    out[18] = static_cast<std::uint8_t>(a.port() >> 8);
    return out;
  }

  static void put64(std::uint8_t* p, std::uint64_t v) noexcept {
    for (int i = 0; i < 8; ++i) p[i] = static_cast<std::uint8_t>(v >> (8 * i));
  }
  static std::uint64_t get64(const std::uint8_t* p) noexcept {
    std::uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v |= std::uint64_t{p[i]} << (8 * i);
    return v;
  }

  keyring ring_;
  std::size_t max_peers_;
  std::uint64_t boot_time_ = 0;
  std::array<std::uint8_t, 8> boot_nonce_{};
  address_key self_{};
  std::uint64_t send_key_id_ = 0;
  std::shared_ptr<void> send_ctx_;
  std::uint64_t send_number_ = 0;
  std::unordered_map<address, sender> peers_;
  std::uint64_t clock_ = 0;
};

/// dcp frames over UDP, each datagram sealed under a keyring (see the top of this header).
using keyring_udp_transport = basic_udp_transport<udp_keyring_security>;
static_assert(Transport<keyring_udp_transport>);
static_assert(keyring_udp_transport::authenticated);

/// A node whose every datagram is authenticated, encrypted and checked for replay under a keyring.
using keyring_udp_node = basic_node<keyring_udp_transport>;

}  // namespace dcp::net
