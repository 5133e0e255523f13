#pragma once
// Superpeer selection by identifier prefix in a DHT (van Steen & Tanenbaum,
// Distributed Systems, §6.5 "Elections in large-scale systems"; the notes'
// "SuperPeer selection with DHT").
//
// Reserve the k leftmost bits of the m-bit identifier space for superpeers:
// the superpeer of node p is the node responsible for the key
//     p AND 11..1 00..0    (k ones)
// so there are 2^k superpeer keys j * 2^(m-k), one per prefix, and a node is
// a superpeer exactly when it is responsible for one of them. In Chord that
// is the first node of each prefix group (the successor of the group's
// lowest key); in Pastry the numerically closest. With k chosen as
// round(log2(N / ratio)) one node in `ratio` is a superpeer (requirement 3),
// which is the notes' "1 in 8" for ratio 8. Every node finds its superpeer by
// a lookup of its own masked id, whatever Router it runs over.
//
// Requirement 4 (a superpeer serves at most `cap` nodes): a full superpeer
// refuses, and the node asks the superpeer of the next prefix (key + 2^(m-k)),
// up to max_overflow prefixes on (detail/superpeer_clients.hpp).
//
// What it does not give: low latency (requirement 1) or spread in the
// network (requirement 2): identifiers are random, so a node's superpeer is
// as far as a random node; benchmarks/superpeer_selection.cpp measures it
// against the repulsion tokens of superpeer_repulsion.hpp.
//
// Faults tolerated: whatever the Router tolerates (a lookup that fails or
// times out is retried next refresh); loss, duplication and reordering of
// ATTACH and its reply (nonce-matched, timed out, renewed each refresh); a
// superpeer's crash (its nodes time out, and the next refresh finds the new
// owner of the key, the crashed node's successor). While the overlay is not
// yet stable two nodes may both believe they own a key for a refresh period:
// each serves its own nodes and the next refresh, after stabilization,
// leaves one. A message from a node not in the overlay cannot be told apart
// (a DHT admits anyone who joins); ATTACH to a non-superpeer is refused and
// counted.
#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <functional>
#include <optional>
#include <string_view>
#include <vector>

#include "dcp/core/env.hpp"
#include "dcp/core/error.hpp"
#include "dcp/core/node_id.hpp"
#include "dcp/dht/router.hpp"
#include "dcp/election/detail/superpeer_clients.hpp"

namespace dcp::election {

struct superpeer_prefix_config {
  unsigned prefix_bits = 3;         ///< k: 2^k superpeer keys (the notes' example: 3, "1 in 8" of the space)
  std::size_t cap = 32;             ///< normal nodes one superpeer serves, at most
  std::size_t max_overflow = 4;     ///< prefixes on to try when a superpeer is full
  duration refresh = 2s;            ///< re-find the superpeer and renew the lease this often
  duration attach_timeout = 500ms;  ///< an ATTACH unanswered this long goes to the next candidate
  duration lease = 6s;              ///< a superpeer forgets a node not renewed for this long

  /// The prefix length that makes one node in `ratio` a superpeer in a network of `n`.
  static unsigned bits_for(std::size_t n, std::size_t ratio) {
    if (ratio == 0) throw error(errc::invalid_config, "superpeer_prefix: ratio must be > 0");
    const double groups = static_cast<double>(n) / static_cast<double>(ratio);
    return groups <= 1 ? 0u : static_cast<unsigned>(std::lround(std::log2(groups)));
  }
  void validate() const {
    if (prefix_bits > 20)
      throw error(errc::invalid_config,
                  "superpeer_prefix: prefix_bits above 20 (a million superpeers) is not a selection");
    if (cap == 0) throw error(errc::invalid_config, "superpeer_prefix: cap must be > 0");
    if (refresh <= duration::zero() || attach_timeout <= duration::zero() || lease <= refresh)
      throw error(errc::invalid_config, "superpeer_prefix: time-outs must be > 0 and lease longer than refresh");
  }
};

/// The key whose owner is the superpeer of `id`: id AND (k ones, then zeros).
inline node_id superpeer_key(const node_id& id, unsigned k) noexcept {
  auto b = id.bytes();
  for (std::size_t i = 0; i < b.size(); ++i) {
    const std::size_t first = i * 8;  // bit index of this byte's top bit
    if (first >= k)
      b[i] = 0;
    else if (first + 8 > k)
      b[i] = static_cast<std::uint8_t>(b[i] & (0xFF << (8 - (k - first))));
  }
  return *node_id::from_bytes(byte_view(b.data(), b.size()));
}
/// The key of the prefix `steps` after `key`'s (modulo 2^k): where an overflow goes.
inline node_id next_superpeer_key(const node_id& key, unsigned k, std::size_t steps) noexcept {
  if (k == 0) return key;
  node_id::value_type one{};
  one[(k - 1) / 8] = static_cast<std::uint8_t>(1u << (7 - (k - 1) % 8));  // 2^(160-k)
  node_id step = *node_id::from_bytes(byte_view(one.data(), one.size()));
  node_id out = key;
  for (std::size_t s = 0; s < steps; ++s) out = out + step;
  return out;
}

template <Env E, class Router> class superpeer_prefix {
  static_assert(dht::Router<Router>,
                "dcp: superpeer_prefix needs a dht Router (chord, pastry, kademlia): see dcp/dht/router.hpp");

 public:
  using messages = wire::message_set<superpeer_msg::attach, superpeer_msg::attach_reply, superpeer_msg::detach>;
  /// What it counts (env.count), declared: dcp/core/counter_set.hpp.
  static constexpr auto counters =
      dcp::join(detail::superpeer_clients_counters,
                dcp::counter_set{{"superpeer_lookup_superseded", "superpeer_lookup_failed", "superpeer_bad_attach",
                                  "superpeer_attach_refused_not_superpeer", "superpeer_attach_refused_full",
                                  "became_superpeer", "stopped_being_superpeer"}});
  static constexpr std::string_view name = "election.superpeer_prefix";
  static constexpr protocol_id default_id = 73;

  superpeer_prefix(E env, Router& router, superpeer_prefix_config cfg = {})
      : env_(std::move(env)),
        router_(router),
        cfg_((cfg.validate(), cfg)),
        clients_(cfg_.cap),
        attachment_(env_, cfg_.attach_timeout) {}
  superpeer_prefix(const superpeer_prefix&) = delete;
  superpeer_prefix& operator=(const superpeer_prefix&) = delete;

  void start() {
    refresher_.start(
        env_, cfg_.refresh, [this] { refresh(); },
        duration(1 + static_cast<std::int64_t>(env_.rng().below(static_cast<std::uint64_t>(cfg_.refresh.count())))));
  }

  /// True when this node owns its prefix's key (as of the last refresh).
  bool is_superpeer() const noexcept { return superpeer_; }
  /// The superpeer serving this node, if it is a normal node with one.
  const std::optional<address>& superpeer() const noexcept { return attachment_.current(); }
  /// The normal nodes this superpeer serves (at most cap).
  std::vector<address> served() const { return clients_.served(); }
  std::size_t load() const noexcept { return clients_.size(); }
  /// This node's prefix key.
  node_id key() const { return superpeer_key(router_.self().id, cfg_.prefix_bits); }

  /// Finds the owner of this node's prefix key now (also done every refresh).
  void refresh() {
    if (!router_.joined()) return;
    clients_.expire(env_.now());
    const std::uint64_t round = ++round_;
    const node_id k = key();
    // The owners of this prefix's key and of the next max_overflow prefixes'
    // (where a full superpeer's nodes go), looked up at once: one lookup's
    // time, not a chain of them.
    const std::size_t want = 1 + std::min<std::size_t>(cfg_.max_overflow, (std::size_t{1} << cfg_.prefix_bits) - 1);
    found_.assign(want, std::nullopt);
    pending_lookups_ = want;
    for (std::size_t step = 0; step < want; ++step)
      router_.lookup(next_superpeer_key(k, cfg_.prefix_bits, step), 1,
                     [this, round, step](result<dht::lookup_result> r) {
                       if (round != round_)
                         return env_.count("superpeer_lookup_superseded");  // a newer refresh is under way
                       if (!r || r->owners.empty())
                         env_.count("superpeer_lookup_failed");
                       else
                         found_[step] = r->owners.front().addr;
                       if (--pending_lookups_ == 0) lookups_done();
                     });
  }

  void on_message(const address& from, const superpeer_msg::attach& m) {
    if (from == env_.self()) return env_.count("superpeer_bad_attach");
    if (!superpeer_) {
      env_.count("superpeer_attach_refused_not_superpeer");
      return void(env_.send(from, superpeer_msg::attach_reply{m.nonce, false}));
    }
    const bool ok = clients_.admit(from, m.nonce, env_.now(), cfg_.lease);
    if (!ok) env_.count("superpeer_attach_refused_full");
    env_.send(from, superpeer_msg::attach_reply{m.nonce, ok});
  }
  void on_message(const address& from, const superpeer_msg::attach_reply& m) { attachment_.on_reply(from, m); }
  void on_message(const address& from, const superpeer_msg::detach& m) {
    clients_.remove(from, m.nonce);
    attachment_.on_detach(from, m);
  }
  void on_unreachable(const address& peer) {
    clients_.remove(peer);
    attachment_.on_unreachable(peer);
  }

  void check_invariants() const {
    clients_.check_invariants();
    DCP_ASSERT(!superpeer_ || !attachment_.current(), "superpeer_prefix: a superpeer is attached to another");
  }

 private:
  void become_superpeer() {
    if (!superpeer_) env_.count("became_superpeer");
    superpeer_ = true;
    attachment_.drop();
  }
  void become_normal() {
    if (superpeer_) {
      env_.count("stopped_being_superpeer");
      clients_.release_all(env_);
    }
    superpeer_ = false;
  }
  void lookups_done() {
    if (!found_[0]) return;  // our own prefix's owner is unknown: next refresh
    if (*found_[0] == env_.self()) return become_superpeer();
    become_normal();
    std::vector<address> ranked;
    for (const auto& a : found_)
      if (a && *a != env_.self() && std::find(ranked.begin(), ranked.end(), *a) == ranked.end()) ranked.push_back(*a);
    attachment_.seek(std::move(ranked));
  }

  E env_;
  Router& router_;
  superpeer_prefix_config cfg_;
  bool superpeer_ = false;
  detail::client_table clients_;
  detail::attachment<E> attachment_;
  std::vector<std::optional<address>> found_;  ///< owners of this prefix's key and the next ones
  std::size_t pending_lookups_ = 0;
  std::uint64_t round_ = 0;
  periodic<E> refresher_;
};

}  // namespace dcp::election
