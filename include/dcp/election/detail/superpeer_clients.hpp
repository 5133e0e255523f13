#pragma once
// What both superpeer selections share: how a normal node attaches to a
// superpeer, and how a superpeer bounds the normal nodes it serves (the
// notes' requirement 4: "each superpeer should not need to serve more than a
// fixed number of normal nodes").
//
// A normal node ranks the superpeers it knows (nearest first, by the
// selection's own notion of near) and asks the first to take it (ATTACH). A
// superpeer with room answers yes and holds the node for a lease; a full one
// answers no and the node asks the next (overflow to the next-nearest). The
// node renews by asking again each refresh; a superpeer that stops being one
// tells its nodes (DETACH), and one that crashed simply stops answering (the
// node moves on after attach_timeout).
#include <algorithm>
#include <cstdint>
#include <functional>
#include <optional>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "dcp/core/address.hpp"
#include "dcp/core/assert.hpp"
#include "dcp/core/env.hpp"
#include "dcp/core/time.hpp"
#include "dcp/wire/message.hpp"

namespace dcp::election {

namespace superpeer_msg {
/// normal node -> superpeer: serve me (or renew my lease).
struct attach {
  static constexpr message_type wire_id = 20;
  static constexpr std::string_view wire_name = "attach";
  std::uint64_t nonce = 0;
  template <class A> void serialize(A& ar) { ar(nonce); }
};
/// superpeer -> normal node: yes (you are served until the lease ends) or no (full, or not a superpeer).
struct attach_reply {
  static constexpr message_type wire_id = 21;
  static constexpr std::string_view wire_name = "attach_reply";
  std::uint64_t nonce = 0;
  bool accepted = false;
  template <class A> void serialize(A& ar) { ar(nonce, accepted); }
};
/// Either way: the relation ends (the node moves to a nearer superpeer, or
/// the superpeer stops being one). `nonce` is that of the ATTACH that made the
/// relation: a duplicated or late DETACH then cannot end a newer one.
struct detach {
  static constexpr message_type wire_id = 22;
  static constexpr std::string_view wire_name = "detach";
  std::uint64_t nonce = 0;
  template <class A> void serialize(A& ar) { ar(nonce); }
};
}  // namespace superpeer_msg

namespace detail {

/// A superpeer's normal nodes: at most `cap`, each held for a lease.
class client_table {
 public:
  explicit client_table(std::size_t cap = 0) : cap_(cap) {}
  /// Takes (or renews) `who`, asking with `nonce`, until now + lease; false when full.
  bool admit(const address& who, std::uint64_t nonce, time_point now, duration lease) {
    auto it = clients_.find(who);
    if (it == clients_.end()) {
      if (clients_.size() >= cap_) expire(now);
      if (clients_.size() >= cap_) return false;
      it = clients_.emplace(who, client{}).first;
    }
    it->second = {now + lease, nonce};
    return true;
  }
  /// Ends `who`'s relation if `nonce` is the one it was last admitted with.
  void remove(const address& who, std::uint64_t nonce) {
    if (auto it = clients_.find(who); it != clients_.end() && it->second.nonce == nonce) clients_.erase(it);
  }
  void remove(const address& who) { clients_.erase(who); }
  void expire(time_point now) {
    std::erase_if(clients_, [now](const auto& c) { return c.second.until <= now; });
  }
  /// Every node served now with its nonce, in a stable order (for DETACH and for the benchmark).
  std::vector<std::pair<address, std::uint64_t>> served_with_nonce() const {
    std::vector<std::pair<address, std::uint64_t>> out;
    for (const auto& [a, c] : clients_) out.emplace_back(a, c.nonce);
    std::sort(out.begin(), out.end());
    return out;
  }
  std::vector<address> served() const {
    std::vector<address> out;
    for (const auto& [a, c] : served_with_nonce()) out.push_back(a);
    return out;
  }
  /// Tells every node served that the relation ends, and forgets them.
  template <Env E> void release_all(E& env) {
    for (const auto& [a, nonce] : served_with_nonce()) env.send(a, superpeer_msg::detach{nonce});
    clients_.clear();
  }
  std::size_t size() const noexcept { return clients_.size(); }
  std::size_t cap() const noexcept { return cap_; }
  void clear() { clients_.clear(); }
  void check_invariants() const { DCP_ASSERT(clients_.size() <= cap_, "superpeer: more clients than the cap"); }

 private:
  struct client {
    time_point until{};
    std::uint64_t nonce = 0;
  };
  std::size_t cap_;
  std::unordered_map<address, client> clients_;
};

/// A normal node's side: asks ranked candidates in turn until one accepts.
/// Completions (on_change) are the owner's business; this only keeps state
/// and sends through the Env it is given.
/// What attachment counts, under its host protocol's id (each super-peer election joins it).
inline constexpr counter_set superpeer_clients_counters{
    {"superpeer_unexpected_reply", "superpeer_full", "superpeer_detached", "superpeer_none_with_room"}};

template <Env E> class attachment {
 public:
  attachment(E& env, duration timeout) : env_(env), timeout_(timeout) {}
  ~attachment() { cancel(); }
  attachment(const attachment&) = delete;
  attachment& operator=(const attachment&) = delete;

  /// Asks `ranked` (nearest first) in turn. The current superpeer, if first,
  /// is simply renewed.
  void seek(std::vector<address> ranked) {
    cancel();
    ranked_ = std::move(ranked);
    next_ = 0;
    ask_next();
  }
  /// This node became a superpeer itself, or leaves: ends any relation.
  void drop() {
    cancel();
    ranked_.clear();
    if (current_) env_.send(*current_, superpeer_msg::detach{current_nonce_});
    current_.reset();
  }
  const std::optional<address>& current() const noexcept { return current_; }

  void on_reply(const address& from, const superpeer_msg::attach_reply& m) {
    if (!asking_ || m.nonce != nonce_ || from != *asking_) return env_.count("superpeer_unexpected_reply");
    cancel();
    if (!m.accepted) {
      env_.count("superpeer_full");
      if (current_ == from) current_.reset();
      return ask_next();
    }
    if (current_ && *current_ != from) env_.send(*current_, superpeer_msg::detach{current_nonce_});
    current_ = from;
    current_nonce_ = m.nonce;
  }
  void on_detach(const address& from, const superpeer_msg::detach& m) {
    if (current_ != from || m.nonce != current_nonce_) return;
    current_.reset();
    env_.count("superpeer_detached");
  }
  void on_unreachable(const address& peer) {
    if (current_ == peer) current_.reset();
    if (asking_ == peer) {
      cancel();
      ask_next();
    }
  }

 private:
  void ask_next() {
    if (next_ >= ranked_.size()) {
      if (!current_) env_.count("superpeer_none_with_room");
      return;
    }
    asking_ = ranked_[next_++];
    nonce_ = env_.rng()();
    env_.send(*asking_, superpeer_msg::attach{nonce_});
    timer_ = env_.arm(timeout_, [this] {
      timer_ = {};
      if (current_ == asking_) current_.reset();  // our superpeer stopped answering
      asking_.reset();
      ask_next();
    });
  }
  void cancel() {
    if (timer_) env_.cancel(std::exchange(timer_, {}));
    asking_.reset();
  }

  E& env_;
  duration timeout_;
  std::vector<address> ranked_;
  std::size_t next_ = 0;
  std::optional<address> asking_;
  std::optional<address> current_;
  std::uint64_t nonce_ = 0;          ///< of the ATTACH in flight
  std::uint64_t current_nonce_ = 0;  ///< of the ATTACH current_ accepted
  timer_id timer_{};
};

}  // namespace detail
}  // namespace dcp::election
