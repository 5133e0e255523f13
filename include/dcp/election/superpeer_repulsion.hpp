#pragma once
// Superpeer selection by repulsion tokens in an unstructured overlay (van
// Steen & Tanenbaum, Distributed Systems, §6.5, Figure 6-23 "Moving tokens in
// a two-dimensional space using repulsion forces"; after Singh and Haahr,
// 2004), over Vivaldi coordinates so that "near" means a short round trip.
//
// T = N / ratio tokens are spread over the nodes (initial_holders). A node
// holding a token is a superpeer. Every round each holder sends a repulsion
// message (ANNOUNCE: token, epoch, coordinate) to the holders it knows
// within 2 * radius_ms (all, without a radius) and to `fanout` random neighbours; a neighbour that is not a holder answers with
// the holders it knows (HOLDERS), which is how holders find each other. A
// holder feels a force from every holder within radius_ms, inversely
// related to the distance, and passes its token to the neighbour (a node
// whose coordinate it knows, among its `candidates` nearest) in the direction
// of the net force when that lowers the potential sum 1/d by more than
// `hysteresis` (the notes: "a node that receives too much repulsive force
// sends the token to a neighbour in the opposite direction"). Moves lower the
// potential, so tokens stop (the notes: "when tokens stop moving, or after
// a number of rounds": move_rounds ends the selection for good; a token is never handed straight back, and
// each view of the potential is this node's, over coordinates that drift, so
// max_moves bounds what the views' disagreement could otherwise prolong): at a local minimum (the notes' "local maxima
// problem": not the global optimum) or after max_moves. Normal nodes attach
// to the nearest holder with room (cap: requirement 4; overflow to the
// next-nearest: detail/superpeer_clients.hpp).
//
// A token handoff is a transfer, not a message. The holder at epoch e offers
// the token at epoch e+1 to one target (OFFER), keeps it pending (not a
// superpeer for it) and re-sends every `retry` until the target ACKs. The
// target accepts an epoch it has not seen and acks any offer whose epoch it
// has seen (so duplicated, re-sent and reordered offers change nothing); any
// news that the token is at an epoch above e+1 also ends the pending state
// (the target accepted and moved it on). Epochs of one token only grow along
// its chain of holders, so
//   - under loss, duplication, reordering and partitions: at every instant
//     each token is active at most at one node, and no token is lost (a
//     partition only delays a handoff);
//   - under crashes: a token is lost when its holder crashes, or when the
//     target of its handoff crashes (whether it had accepted or not: the
//     sender cannot tell and never takes a token back, which would duplicate
//     it). After max_retries unanswered offers the sender gives up and says so
//     (count "token_handoff_abandoned"); tokens_known() shows what is left.
// Regeneration (regenerate_after > 0, off by default): a holder that has not
// heard of a token for regenerate_after creates it again at the next
// generation (epoch + 2^32), so crashes cost tokens only for a while. This
// trades the first guarantee: a token whose holder was only cut off (a
// partition longer than regenerate_after) exists twice until the two hear of
// each other, when the lower (epoch, holder) yields (count "token_superseded").
//
// The initial tokens are dealt once per node's life (a marker on env.disk()),
// so a restarted initial holder does not create its token a second time.
//
// Hostile input: a token id >= max_tokens, a coordinate that is not finite
// or beyond the Vivaldi bound, a digest longer than max_digest, an age beyond
// holder_timeout, an empty holder address, or any message from outside the
// membership is dropped and counted. Tables are bounded: tokens by
// max_tokens, clients by cap.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "dcp/coordinates/vivaldi.hpp"
#include "dcp/core/assert.hpp"
#include "dcp/core/env.hpp"
#include "dcp/core/error.hpp"
#include "dcp/election/detail/superpeer_clients.hpp"
#include "dcp/membership/membership.hpp"
#include "dcp/wire/message.hpp"

namespace dcp::election {

struct superpeer_repulsion_config {
  /// Token i starts at initial_holders[i] (the same list on every node).
  std::vector<address> initial_holders;
  std::size_t max_tokens = 4096;    ///< token ids from the network above this are refused
  std::size_t cap = 32;             ///< normal nodes one superpeer serves, at most
  duration round = 1s;              ///< one repulsion round
  std::size_t fanout = 3;           ///< random neighbours told of each token per round
  std::size_t max_digest = 32;      ///< holders in one HOLDERS or OFFER, at most
  std::size_t candidates = 8;       ///< nearest non-holders a token may move to
  double radius_ms = 0;             ///< holders farther than this exert no force (0: every holder)
  double min_distance_ms = 1;       ///< forces are bounded: distances below this count as this
  double hysteresis = 0.1;          ///< a move must lower the potential by this fraction
  std::uint32_t max_moves = 64;     ///< a token stops after this many moves
  std::uint64_t move_rounds = 0;    ///< a node moves tokens only in its first move_rounds rounds (0: always)
  std::size_t warmup_rounds = 5;    ///< no move before the coordinates have settled a little
  duration retry = 300ms;           ///< an unacknowledged OFFER is sent again this often
  std::uint32_t max_retries = 100;  ///< then the handoff is abandoned (the target crashed)
  duration holder_timeout = 30s;    ///< a holder not heard of this long is forgotten
  duration regenerate_after{};      ///< 0: never; else a silent token is created again
  duration refresh = 2s;            ///< normal nodes re-pick their superpeer this often
  duration attach_timeout = 1s;     ///< above a round trip to any superpeer
  duration lease = 6s;              ///< a superpeer forgets a node not renewed for this long

  void validate() const {
    if (initial_holders.size() > max_tokens)
      throw error(errc::invalid_config, "superpeer_repulsion: more initial holders than max_tokens");
    if (cap == 0 || fanout == 0 || max_digest == 0 || candidates == 0)
      throw error(errc::invalid_config, "superpeer_repulsion: cap, fanout, max_digest and candidates must be > 0");
    if (!(radius_ms >= 0 && min_distance_ms > 0 && hysteresis >= 0 && hysteresis < 1))
      throw error(errc::invalid_config, "superpeer_repulsion: radius >= 0, min_distance > 0, hysteresis in [0, 1)");
    if (round <= duration::zero() || retry <= duration::zero() || refresh <= duration::zero() ||
        attach_timeout <= duration::zero())
      throw error(errc::invalid_config, "superpeer_repulsion: periods must be > 0");
    if (holder_timeout <= 2 * round || lease <= refresh)
      throw error(errc::invalid_config, "superpeer_repulsion: holder_timeout above two rounds, lease above refresh");
    if (regenerate_after < duration::zero() ||
        (regenerate_after > duration::zero() && regenerate_after >= holder_timeout))
      throw error(errc::invalid_config,
                  "superpeer_repulsion: regenerate_after must be below holder_timeout (or 0: off)");
  }
};

namespace superpeer_repulsion_msg {
/// What a node knows of one token's holder.
struct holder_entry {
  std::uint32_t token = 0;
  std::uint64_t epoch = 0;
  address holder;
  coordinates::coordinate coord;
  std::uint32_t age_ms = 0;  ///< how long ago the sender heard of it
  template <class A> void serialize(A& ar) { ar(token, epoch, holder, coord, age_ms); }
};
/// The repulsion message: a holder's token and where it is.
struct announce {
  static constexpr message_type wire_id = 1;
  static constexpr std::string_view wire_name = "announce";
  std::uint32_t token = 0;
  std::uint64_t epoch = 0;
  coordinates::coordinate coord;
  double error = 0;
  template <class A> void serialize(A& ar) { ar(token, epoch, coord, error); }
};
/// A non-holder's answer to ANNOUNCE: the holders it knows.
struct holders {
  static constexpr message_type wire_id = 2;
  static constexpr std::string_view wire_name = "holders";
  std::vector<holder_entry> entries;
  template <class A> void serialize(A& ar) { ar(entries); }
};
/// A token handed over at `epoch`, with the holders the sender knows.
struct offer {
  static constexpr message_type wire_id = 3;
  static constexpr std::string_view wire_name = "offer";
  std::uint32_t token = 0;
  std::uint64_t epoch = 0;
  std::uint32_t moves = 0;
  std::vector<holder_entry> known;
  template <class A> void serialize(A& ar) { ar(token, epoch, moves, known); }
};
struct ack {
  static constexpr message_type wire_id = 4;
  static constexpr std::string_view wire_name = "ack";
  std::uint32_t token = 0;
  std::uint64_t epoch = 0;
  template <class A> void serialize(A& ar) { ar(token, epoch); }
};
}  // namespace superpeer_repulsion_msg

/// One token as a node sees its own: held (active) or being handed over.
struct held_token {
  std::uint32_t id = 0;
  std::uint64_t epoch = 0;
  std::uint32_t moves = 0;
  bool active = true;  ///< false while a handoff awaits its ACK
};

template <Env E, class Membership, class Coordinates = coordinates::vivaldi<E, Membership>> class superpeer_repulsion {
  static_assert(
      membership::Membership<Membership>,
      "dcp: superpeer_repulsion needs a Membership (neighbours(), sample(k), ...): see dcp/membership/membership.hpp");

 public:
  using messages = wire::message_set<superpeer_repulsion_msg::announce, superpeer_repulsion_msg::holders,
                                     superpeer_repulsion_msg::offer, superpeer_repulsion_msg::ack,
                                     superpeer_msg::attach, superpeer_msg::attach_reply, superpeer_msg::detach>;
  /// What it counts (env.count), declared: dcp/core/counter_set.hpp.
  static constexpr auto counters =
      dcp::join(detail::superpeer_clients_counters,
                dcp::counter_set{{"superpeer_digest_too_long", "superpeer_bad_offer", "token_duplicate_offer",
                                  "token_received", "token_unexpected_ack", "superpeer_attach_refused_full",
                                  "superpeer_attach_refused_not_superpeer", "superpeer_not_member",
                                  "superpeer_bad_token", "token_superseded", "superpeer_bad_entry", "token_moved",
                                  "token_handoff_abandoned", "token_handed_off", "token_regenerated"}});
  static constexpr std::string_view name = "election.superpeer_repulsion";
  static constexpr protocol_id default_id = 74;

  superpeer_repulsion(E env, Membership& m, Coordinates& coords, superpeer_repulsion_config cfg)
      : env_(std::move(env)),
        membership_(m),
        coords_(coords),
        cfg_((cfg.validate(), std::move(cfg))),
        clients_(cfg_.cap),
        attachment_(env_, cfg_.attach_timeout) {
    deal_initial_tokens();
  }
  superpeer_repulsion(const superpeer_repulsion&) = delete;
  superpeer_repulsion& operator=(const superpeer_repulsion&) = delete;
  ~superpeer_repulsion() {
    for (auto& [t, o] : mine_)
      if (o.timer) env_.cancel(o.timer);
  }

  void start() {
    const auto first = [this](duration period) {
      return duration(1 + static_cast<std::int64_t>(env_.rng().below(static_cast<std::uint64_t>(period.count()))));
    };
    rounds_timer_.start(
        env_, cfg_.round, [this] { round(); }, first(cfg_.round));
    refresher_.start(
        env_, cfg_.refresh, [this] { pick_superpeer(); }, first(cfg_.refresh));
  }

  /// A superpeer: this node holds at least one token (not one being handed over).
  bool is_superpeer() const noexcept {
    return std::any_of(mine_.begin(), mine_.end(), [](const auto& t) { return !t.second.handoff; });
  }
  /// The tokens this node holds or is handing over.
  std::vector<held_token> tokens() const {
    std::vector<held_token> out;
    for (const auto& [t, o] : mine_) out.push_back({t, o.epoch, o.moves, !o.handoff});
    return out;
  }
  /// Tokens this node has heard of (its own included).
  std::size_t tokens_known() const noexcept {
    return table_.size() +
        std::count_if(mine_.begin(), mine_.end(), [this](const auto& t) { return !table_.contains(t.first); });
  }
  /// The holders of other tokens this node knows of (its table), freshest first.
  std::vector<superpeer_repulsion_msg::holder_entry> known_holders() const { return digest_all(); }
  /// Rounds since this node last moved a token (a holder whose tokens have stopped).
  std::uint64_t rounds_since_move() const noexcept { return rounds_ - last_move_round_; }
  const std::optional<address>& superpeer() const noexcept { return attachment_.current(); }
  std::vector<address> served() const { return clients_.served(); }
  std::size_t load() const noexcept { return clients_.size(); }

  void on_message(const address& from, const superpeer_repulsion_msg::announce& m) {
    if (!admitted(from) || !valid_token(m.token) || !coords_.remember(from, m.coord, m.error)) return;
    learn(m.token, m.epoch, from, m.coord, env_.now());
    if (auto it = table_.find(m.token); it != table_.end() && it->second.holder == from) it->second.direct = true;
    if (mine_.empty()) {  // a neighbour tells the holder what it knows: how holders find each other
      auto d = digest(m.token);
      if (!d.empty()) env_.send(from, superpeer_repulsion_msg::holders{std::move(d)});
    }
  }
  void on_message(const address& from, const superpeer_repulsion_msg::holders& m) {
    if (!admitted(from)) return;
    if (m.entries.size() > cfg_.max_digest) return env_.count("superpeer_digest_too_long");
    learn_all(m.entries);
  }
  void on_message(const address& from, const superpeer_repulsion_msg::offer& m) {
    if (!admitted(from) || !valid_token(m.token)) return;
    if (m.known.size() > cfg_.max_digest) return env_.count("superpeer_digest_too_long");
    if (m.moves > cfg_.max_moves) return env_.count("superpeer_bad_offer");
    if (seen_epoch(m.token) >= m.epoch) {  // a re-sent, duplicated or late offer: it was ours already
      env_.count("token_duplicate_offer");
      return void(env_.send(from, superpeer_repulsion_msg::ack{m.token, m.epoch}));
    }
    supersede(m.token, m.epoch);  // a copy of ours at a lower epoch (regeneration) yields
    auto& o = mine_[m.token];
    o = own_token{m.epoch, m.moves, std::nullopt, {}, from};
    table_.erase(m.token);
    env_.count("token_received");
    learn_all(m.known);
    env_.send(from, superpeer_repulsion_msg::ack{m.token, m.epoch});
    attachment_.drop();
    announce_token(m.token);
  }
  void on_message(const address& from, const superpeer_repulsion_msg::ack& m) {
    if (!admitted(from)) return;
    auto it = mine_.find(m.token);
    if (it == mine_.end() || !it->second.handoff || it->second.handoff->to != from ||
        it->second.handoff->epoch != m.epoch)
      return env_.count("token_unexpected_ack");
    handed_off(it, from);
  }
  void on_message(const address& from, const superpeer_msg::attach& m) {
    if (!admitted(from) || from == env_.self()) return;
    const bool ok = is_superpeer() && clients_.admit(from, m.nonce, env_.now(), cfg_.lease);
    if (!ok) env_.count(is_superpeer() ? "superpeer_attach_refused_full" : "superpeer_attach_refused_not_superpeer");
    env_.send(from, superpeer_msg::attach_reply{m.nonce, ok});
    // A normal node hears of holders only from the few ANNOUNCEs that reach
    // it; what it asks is answered with the holders nearest to it that this
    // node knows (a former holder knows where its tokens went; a holder hears
    // every holder it knows each round), so that it can pick the nearest.
    if (auto d = digest_near(from); !d.empty()) env_.send(from, superpeer_repulsion_msg::holders{std::move(d)});
  }
  void on_message(const address& from, const superpeer_msg::attach_reply& m) {
    if (admitted(from)) attachment_.on_reply(from, m);
  }
  void on_message(const address& from, const superpeer_msg::detach& m) {
    clients_.remove(from, m.nonce);
    const bool had = attachment_.current() == from;
    attachment_.on_detach(from, m);
    if (had && !attachment_.current()) pick_superpeer();  // our superpeer gave its token away: find another now
  }
  void on_unreachable(const address& peer) {
    clients_.remove(peer);
    attachment_.on_unreachable(peer);
  }

  void check_invariants() const {
    clients_.check_invariants();
    DCP_ASSERT(table_.size() <= cfg_.max_tokens && mine_.size() <= cfg_.max_tokens,
               "superpeer_repulsion: token tables exceed max_tokens");
    DCP_ASSERT(!is_superpeer() || clients_.size() <= cfg_.cap, "superpeer_repulsion: over the cap");
    DCP_ASSERT(!is_superpeer() || !attachment_.current(), "superpeer_repulsion: a superpeer is attached to another");
    for (const auto& [t, o] : mine_)
      DCP_ASSERT(!table_.contains(t), "superpeer_repulsion: an own token also listed as another's");
  }

 private:
  struct handoff_state {
    address to;
    std::uint64_t epoch;
    std::uint32_t tries = 0;
  };
  struct own_token {
    std::uint64_t epoch = 0;
    std::uint32_t moves = 0;
    std::optional<handoff_state> handoff;
    timer_id timer{};
    address came_from{};  ///< never handed straight back: two views of drifting coordinates could bounce it for ever
  };
  struct known_holder {
    std::uint64_t epoch = 0;
    address holder;
    coordinates::coordinate coord;
    time_point heard{};
    bool direct = false;  ///< heard from the holder itself, not only through others
  };
  using own_iterator = typename std::map<std::uint32_t, own_token>::iterator;

  /// The initial tokens are dealt once in a node's life: a restarted initial
  /// holder must not create its token again (it went with the crash, or it
  /// moved on long ago). A marker on the node's disk says it was done; a disk
  /// that cannot keep it makes the constructor throw rather than risk a copy.
  void deal_initial_tokens() {
    static constexpr std::string_view marker = "superpeer_repulsion.dealt";
    auto& d = env_.disk();
    if (d.read(marker)) return;
    const bytes one{1};
    if (d.write(marker, byte_view(one.data(), one.size())) || d.sync(marker))
      throw error(errc::io_error, "superpeer_repulsion: cannot record on disk that the initial tokens were dealt");
    for (std::size_t t = 0; t < cfg_.initial_holders.size(); ++t)
      if (cfg_.initial_holders[t] == env_.self()) mine_[static_cast<std::uint32_t>(t)] = own_token{};
  }

  bool admitted(const address& from) {
    if (membership::admits(membership_, from) && from != env_.self()) return true;
    env_.count("superpeer_not_member");
    return false;
  }
  bool valid_token(std::uint32_t t) {
    if (t < cfg_.max_tokens) return true;
    env_.count("superpeer_bad_token");
    return false;
  }
  std::uint64_t seen_epoch(std::uint32_t t) const {
    std::uint64_t e = 0;
    bool any = false;
    if (auto it = mine_.find(t); it != mine_.end())
      e = std::max(e, it->second.handoff ? it->second.handoff->epoch : it->second.epoch), any = true;
    if (auto it = table_.find(t); it != table_.end()) e = std::max(e, it->second.epoch), any = true;
    // A node that never heard of the token has seen no epoch: even epoch 0 (an initial token) is new to it.
    return any ? e : 0;
  }

  /// News that token t is at `epoch`, held by `holder`: our own copy yields to
  /// a higher (epoch, holder), a pending handoff ends, and the table keeps the newest.
  void learn(std::uint32_t t, std::uint64_t epoch, const address& holder, const coordinates::coordinate& c,
             time_point heard) {
    if (holder == env_.self()) return;  // old news of ourselves
    if (auto it = mine_.find(t); it != mine_.end()) {
      auto& o = it->second;
      if (o.handoff && epoch >= o.handoff->epoch) {
        handed_off(it, o.handoff->to);  // the target took it (and maybe moved it on)
      } else if (!o.handoff && (epoch > o.epoch || (epoch == o.epoch && env_.self() < holder))) {
        env_.count("token_superseded");
        drop_own(it);
      } else {
        return;  // ours is newer: the other holder yields when it hears our ANNOUNCE
      }
    }
    auto [it, fresh] = table_.try_emplace(t);
    auto& k = it->second;
    if (fresh || epoch > k.epoch ||
        (epoch == k.epoch && (k.holder < holder || (k.holder == holder && heard > k.heard)))) {
      const bool same = !fresh && k.holder == holder && k.epoch == epoch;
      k = {epoch, holder, c, heard, same && k.direct};
    }
  }
  void learn_all(const std::vector<superpeer_repulsion_msg::holder_entry>& entries) {
    const auto now = env_.now();
    const auto limit = std::chrono::duration_cast<std::chrono::milliseconds>(cfg_.holder_timeout).count();
    for (const auto& e : entries) {
      if (!valid_token(e.token)) continue;
      if (e.holder.empty() || !e.coord.sane(coords_.state().params().max_coordinate) || e.age_ms > limit) {
        env_.count("superpeer_bad_entry");
        continue;
      }
      learn(e.token, e.epoch, e.holder, e.coord, now - std::chrono::milliseconds(e.age_ms));
    }
  }
  std::vector<superpeer_repulsion_msg::holder_entry> digest_all() const {
    auto all = digest_bounded(std::nullopt, cfg_.max_tokens);
    return all;
  }
  std::vector<superpeer_repulsion_msg::holder_entry> digest(std::optional<std::uint32_t> skip = std::nullopt) const {
    return digest_bounded(skip, cfg_.max_digest);
  }
  /// The max_digest holders nearest to `peer` (by coordinates; freshest first when its coordinate is unknown).
  std::vector<superpeer_repulsion_msg::holder_entry> digest_near(const address& peer) const {
    auto all = digest_bounded(std::nullopt, cfg_.max_tokens);
    if (auto c = coords_.known(peer)) {
      std::stable_sort(all.begin(), all.end(), [&](const auto& a, const auto& b) {
        return distance(a.coord, c->coord) < distance(b.coord, c->coord);
      });
    }
    for (const auto& [t, o] : mine_)  // and this node's own tokens, first: it is a holder the peer may not know
      if (!o.handoff) all.insert(all.begin(), {t, o.epoch, env_.self(), coords_.position(), 0});
    if (all.size() > cfg_.max_digest) all.resize(cfg_.max_digest);
    return all;
  }
  std::vector<superpeer_repulsion_msg::holder_entry> digest_bounded(std::optional<std::uint32_t> skip,
                                                                    std::size_t limit) const {
    std::vector<std::pair<time_point, std::uint32_t>> fresh;
    for (const auto& [t, k] : table_)
      if (t != skip && env_.now() - k.heard <= cfg_.holder_timeout) fresh.emplace_back(k.heard, t);
    std::sort(fresh.begin(), fresh.end(), [](const auto& a, const auto& b) {
      return a.first > b.first || (a.first == b.first && a.second < b.second);
    });
    if (fresh.size() > limit) fresh.resize(limit);
    std::vector<superpeer_repulsion_msg::holder_entry> out;
    for (const auto& [heard, t] : fresh) {
      const auto& k = table_.at(t);
      const auto age = std::chrono::duration_cast<std::chrono::milliseconds>(env_.now() - heard).count();
      out.push_back({t, k.epoch, k.holder, k.coord, static_cast<std::uint32_t>(std::max<std::int64_t>(age, 0))});
    }
    return out;
  }

  void round() {
    ++rounds_;
    const auto now = env_.now();
    std::erase_if(table_, [&](const auto& e) { return now - e.second.heard > cfg_.holder_timeout; });
    clients_.expire(now);
    regenerate();
    for (const auto& [t, o] : mine_)
      if (!o.handoff) announce_token(t);
    if (rounds_ > cfg_.warmup_rounds && (cfg_.move_rounds == 0 || rounds_ <= cfg_.move_rounds)) move_one();
  }

  /// ANNOUNCE to `fanout` random neighbours and to every holder this node
  /// knows within twice radius_ms (all of them when radius_ms is 0): a holder
  /// farther away feels no force from this one, and with a radius the
  /// repulsion traffic grows with the holders nearby, not with T².
  void announce_token(std::uint32_t t) {
    const auto& o = mine_.at(t);
    superpeer_repulsion_msg::announce m{t, o.epoch, coords_.position(), coords_.error()};
    std::vector<address> to = membership_.sample(cfg_.fanout);
    for (const auto& [other, k] : table_)
      if (k.holder != env_.self() && (cfg_.radius_ms == 0 || distance(m.coord, k.coord) <= 2 * cfg_.radius_ms) &&
          std::find(to.begin(), to.end(), k.holder) == to.end())
        to.push_back(k.holder);
    for (const auto& a : to) env_.send(a, m);
  }

  /// The potential at `p`: the sum of 1/d over the holders within radius (not `except`).
  double potential(const coordinates::coordinate& p, std::optional<std::uint32_t> except, double* fx = nullptr,
                   double* fy = nullptr) const {
    double u = 0;
    for (const auto& [t, k] : table_) {
      if (t == except || k.holder == env_.self()) continue;
      const double d = std::max(distance(p, k.coord), cfg_.min_distance_ms);
      if (cfg_.radius_ms > 0 && d > cfg_.radius_ms) continue;
      u += 1 / d;
      if (fx) {  // the repulsive force on p: away from the other holder, of size 1/d^2
        const double dx = p.x - k.coord.x, dy = p.y - k.coord.y, planar = std::max(std::hypot(dx, dy), 1e-9);
        *fx += dx / planar / (d * d);
        *fy += dy / planar / (d * d);
      }
    }
    return u;
  }

  /// Moves at most one token a round: a second token held here always goes;
  /// a lone one goes when the neighbour in the force's direction has a lower potential.
  void move_one() {
    std::size_t active = 0;
    for (const auto& [t, o] : mine_) active += !o.handoff;
    for (auto it = mine_.begin(); it != mine_.end(); ++it) {
      auto& o = it->second;
      if (o.handoff || o.moves >= cfg_.max_moves) continue;
      const auto self = coords_.position();
      double fx = 0, fy = 0;
      const double here = potential(self, std::nullopt, &fx, &fy);
      // Candidates: the nearest nodes whose coordinates we know, holding no token we know of.
      std::vector<std::pair<double, address>> near;
      for (const auto& peer : coords_.known_peers()) {
        if (peer == env_.self() || peer == o.came_from || holds_known_token(peer) ||
            !membership::admits(membership_, peer))
          continue;
        if (auto d = coords_.predicted_rtt(peer)) near.emplace_back(*d, peer);
      }
      std::sort(near.begin(), near.end());
      if (near.size() > cfg_.candidates) near.resize(cfg_.candidates);
      std::optional<address> best;
      double best_u = here * (1 - cfg_.hysteresis);
      const bool forced = active > 1;  // two tokens at one node: one superpeer wasted
      if (forced) best_u = std::numeric_limits<double>::infinity();
      const bool directed = std::hypot(fx, fy) > 1e-12;
      for (const auto& [d, peer] : near) {
        const auto c = coords_.known(peer)->coord;
        if (!forced && directed && (c.x - self.x) * fx + (c.y - self.y) * fy <= 0) continue;  // against the force
        const double u = potential(c, std::nullopt);
        if (u < best_u) best_u = u, best = peer;
      }
      if (!best) continue;
      start_handoff(it, *best);
      return;
    }
  }

  bool holds_known_token(const address& peer) const {
    return std::any_of(table_.begin(), table_.end(), [&](const auto& e) { return e.second.holder == peer; });
  }

  void start_handoff(own_iterator it, const address& to) {
    auto& o = it->second;
    o.handoff = handoff_state{to, o.epoch + 1};
    last_move_round_ = rounds_;
    env_.count("token_moved");
    send_offer(it->first);
    if (!is_superpeer()) become_normal();
  }
  void send_offer(std::uint32_t t) {
    auto& o = mine_.at(t);
    if (!o.handoff) return;
    if (++o.handoff->tries > cfg_.max_retries) {
      // The target never answered: it crashed (maybe after accepting). Taking
      // the token back could duplicate it, so it is given up, loudly.
      env_.count("token_handoff_abandoned");
      env_.log(log_level::warn, "superpeer_repulsion: a token handoff went unanswered; the token is given up as lost");
      return drop_own(mine_.find(t));
    }
    env_.send(o.handoff->to, superpeer_repulsion_msg::offer{t, o.handoff->epoch, o.moves + 1, digest(t)});
    o.timer = env_.arm(cfg_.retry, [this, t] {
      if (auto it = mine_.find(t); it != mine_.end()) {
        it->second.timer = {};
        send_offer(t);
      }
    });
  }
  void handed_off(own_iterator it, address to) {  // by value: `to` often lives in the token that is dropped
    const auto t = it->first;
    const auto epoch = it->second.handoff ? it->second.handoff->epoch : it->second.epoch + 1;
    env_.count("token_handed_off");
    drop_own(it);
    coordinates::coordinate c{};
    if (auto k = coords_.known(to)) c = k->coord;
    learn(t, epoch, to, c, env_.now());
  }
  void drop_own(own_iterator it) {
    if (it->second.timer) env_.cancel(it->second.timer);
    mine_.erase(it);
    if (!is_superpeer()) become_normal();
  }
  void supersede(std::uint32_t t, std::uint64_t epoch) {
    auto it = mine_.find(t);
    if (it == mine_.end()) return;
    if (it->second.handoff && it->second.handoff->epoch <= epoch) return handed_off(it, it->second.handoff->to);
    env_.count("token_superseded");
    drop_own(it);
  }
  void become_normal() { clients_.release_all(env_); }

  void regenerate() {
    if (cfg_.regenerate_after <= duration::zero() || !is_superpeer()) return;
    const auto now = env_.now();
    for (auto it = table_.begin(); it != table_.end();) {
      // A jitter of up to one more period, so that the holders who notice do not all regenerate at once.
      const auto silent = now - it->second.heard;
      // Only a token this node has heard from its holder directly: an entry
      // known only through others may be old news of a live token.
      if (it->second.direct && silent > cfg_.regenerate_after && env_.rng().chance(0.25)) {
        const std::uint64_t epoch = ((it->second.epoch >> 32) + 1) << 32;
        env_.count("token_regenerated");
        env_.log(log_level::warn, "superpeer_repulsion: a silent token is regenerated");
        mine_[it->first] = own_token{epoch, 0, std::nullopt, {}, {}};
        const auto t = it->first;
        it = table_.erase(it);
        announce_token(t);
      } else {
        ++it;
      }
    }
  }

  void pick_superpeer() {
    if (is_superpeer()) return attachment_.drop();
    const auto self = coords_.position();
    std::vector<std::pair<double, address>> ranked;
    for (const auto& [t, k] : table_)
      if (k.holder != env_.self()) ranked.emplace_back(distance(self, k.coord), k.holder);
    std::sort(ranked.begin(), ranked.end());
    std::vector<address> order;
    for (const auto& [d, a] : ranked)
      if (std::find(order.begin(), order.end(), a) == order.end()) order.push_back(a);
    if (order.size() > 8) order.resize(8);  // overflow to the next-nearest, within reason
    // A normal node hears of holders only now and then (fanout random ANNOUNCEs
    // a round): the superpeer that serves it stays a candidate, last, after
    // its entry has aged out, so that the lease is renewed.
    if (const auto& cur = attachment_.current(); cur && std::find(order.begin(), order.end(), *cur) == order.end())
      order.push_back(*cur);
    attachment_.seek(std::move(order));
  }

  E env_;
  Membership& membership_;
  Coordinates& coords_;
  superpeer_repulsion_config cfg_;
  std::map<std::uint32_t, own_token> mine_;
  std::unordered_map<std::uint32_t, known_holder> table_;
  detail::client_table clients_;
  detail::attachment<E> attachment_;
  std::uint64_t rounds_ = 0, last_move_round_ = 0;
  periodic<E> rounds_timer_;
  periodic<E> refresher_;
};

}  // namespace dcp::election
