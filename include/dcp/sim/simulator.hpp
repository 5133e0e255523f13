#pragma once
// dcp::sim::simulator: a deterministic discrete-event world of nodes.
//
// Virtual time, an event queue, nodes addressed by small integers, and every
// fault a protocol must survive: per-link delay models, loss, duplication,
// reordering, partitions between arbitrary groups, crashes that lose
// volatile state and unsynced writes, restarts that keep durable state, and
// per-node clock skew and drift. One seed drives every random choice, so one
// seed gives one trace: trace_hash() is the same on every run, and a failing
// seed is a bug report that replays exactly.
//
//     dcp::sim::simulator world(seed);
//     world.add_nodes(100, [](dcp::sim::node_context& n) {
//       n.add<my_protocol<dcp::sim::env>>(7, my_config{});
//     });
//     world.run_for(10s);
//     auto* p = world.find<my_protocol<dcp::sim::env>>(3, 7);
//
// Single-threaded: call it from one thread. Protocols run inside its calls.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "dcp/core/detail/platform.hpp"
#include "dcp/core/detail/sha1.hpp"
#include "dcp/core/disk.hpp"
#include "dcp/core/host.hpp"
#include "dcp/core/log.hpp"
#include "dcp/core/metrics.hpp"
#include "dcp/core/rng.hpp"
#include "dcp/sim/detail/event_queue.hpp"
#include "dcp/sim/env.hpp"
#include "dcp/sim/latency.hpp"
#include "dcp/wire/limits.hpp"

namespace dcp::sim {

struct config {
  /// Every link's behaviour unless set_link() overrides it.
  link network{};
  /// Deliver each link's messages in the order they were sent (as TCP does).
  /// With fifo, `reorder` is ignored and a duplicate follows its original.
  bool fifo = false;
  /// A message sent to a crashed node makes the sender's transport give up on
  /// it one round trip later (on_unreachable), as a refused TCP connection
  /// would. Partitions are silent, as real ones are.
  bool report_unreachable = true;
  /// Probability that a crash keeps a random prefix of each file's unsynced
  /// tail (a torn write) rather than losing all of it.
  double torn_write = 0.5;
  /// How long the I/O a protocol asks for (env.perform: an fsync) takes. Zero
  /// (the default) runs it right after the event that asked; a delay lets
  /// the events in between (more appends, a truncation, a crash) happen
  /// while it is under way, as they do over a real disk.
  latency sync_latency = latency::constant(duration::zero());
  /// Frame size limit, as on the real wire.
  wire::limits limits{};

  void validate() const {
    network.validate();
    limits.validate();
    if (torn_write < 0 || torn_write > 1) throw error(errc::invalid_config, "sim::config: torn_write is a probability");
  }
};

/// What one event, or one fault, was. The trace hook sees every one.
struct trace_event {
  enum class kind : std::uint8_t { send, deliver, drop, timer, action, unreachable, crash, restart, partition, heal };
  kind what;
  time_point time;
  node_index from = npos, to = npos;
  protocol_id protocol = 0;
  message_type type = 0;
  std::size_t bytes = 0;
  std::string_view reason = {};  ///< why a message was dropped
  static constexpr node_index npos = std::numeric_limits<node_index>::max();
};

constexpr std::string_view to_string(trace_event::kind k) noexcept {
  constexpr std::string_view n[] = {"send",        "deliver", "drop",    "timer",     "action",
                                    "unreachable", "crash",   "restart", "partition", "heal"};
  return n[static_cast<int>(k)];
}

/// One event as a line for a person replaying a seed (on_trace): virtual
/// time in seconds, what, the nodes, and for a message its protocol, type
/// (`message`: its name, when the caller knows it: message_set::name_of),
/// size and, if dropped, why. "0.123456 deliver 2->0 p100 append 96B".
inline std::string to_string(const trace_event& e, std::string_view message = {}) {
  char head[64];
  const auto ns = e.time.time_since_epoch().count();
  std::snprintf(head, sizeof head, "%lld.%06lld ", static_cast<long long>(ns / 1'000'000'000),
                static_cast<long long>((ns < 0 ? -ns : ns) % 1'000'000'000 / 1000));
  std::string out = head;
  out += to_string(e.what);
  auto node = [](node_index i) { return i == trace_event::npos ? std::string("-") : std::to_string(i); };
  if (e.from != trace_event::npos || e.to != trace_event::npos) out += " " + node(e.from) + "->" + node(e.to);
  if (e.protocol != 0 || e.type != 0) {
    out += " p" + std::to_string(e.protocol) + " ";
    out += message.empty() ? "#" + std::to_string(e.type) : std::string(message);
    out += " " + std::to_string(e.bytes) + "B";
  }
  if (!e.reason.empty()) out += " (" + std::string(e.reason) + ")";
  return out;
}

enum class stop_reason { time_limit, predicate, quiet, no_events, event_limit };

struct run_result {
  stop_reason reason;
  time_point time;
  std::uint64_t events = 0;  ///< events processed by this call
};

class node_context;
using setup_function = std::function<void(node_context&)>;

class simulator {
 public:
  /// Virtual time zero read as wall-clock time (2026-01-01 00:00 UTC): a
  /// plausible date, so wall times in traces and tokens look like real ones.
  static constexpr duration wall_epoch = std::chrono::seconds(1'767'225'600);

  explicit simulator(std::uint64_t seed, config cfg = {}) : cfg_(std::move(cfg)), seed_(seed), rng_(seed) {
    cfg_.validate();
  }
  simulator(const simulator&) = delete;
  simulator& operator=(const simulator&) = delete;
  ~simulator() {
    for (auto& n : nodes_) n.host.clear();  // protocols cancel timers in their destructors
  }

  // ---- nodes ----

  /// Adds a node and runs `setup` to give it its protocols; `setup` runs again
  /// at every restart. Returns the node's index.
  node_index add_node(setup_function setup) {
    return add_node(std::make_shared<const setup_function>(std::move(setup)));
  }
  /// Adds n nodes sharing one setup (cheaper than n copies at 10^5 nodes).
  node_index add_nodes(std::size_t n, setup_function setup) {
    auto shared = std::make_shared<const setup_function>(std::move(setup));
    nodes_.reserve(nodes_.size() + n);
    group_.reserve(nodes_.size() + n);
    up_.reserve(nodes_.size() + n);
    node_index first = static_cast<node_index>(nodes_.size());
    for (std::size_t i = 0; i < n; ++i) add_node(shared);
    return first;
  }
  std::size_t size() const noexcept { return nodes_.size(); }
  static address address_of(node_index i) noexcept { return address::sim(i); }
  std::optional<node_index> index_of(const address& a) const noexcept {
    if (!a.is_sim() || a.sim_index() >= nodes_.size()) return std::nullopt;
    return a.sim_index();
  }
  bool is_up(node_index i) const { return up_[node_at(i)] != 0; }

  /// Protocol `id` of node i if it is up and of type P; nullptr otherwise.
  template <class P> P* find(node_index i, protocol_id id) {
    auto& n = node(i);
    return up_[i] ? n.host.template find<P>(id) : nullptr;
  }
  /// The first protocol of type P on node i.
  template <class P> P* find(node_index i) {
    auto& n = node(i);
    return up_[i] ? n.host.template find<P>() : nullptr;
  }
  template <class P> P& get(node_index i, protocol_id id) {
    if (P* p = find<P>(i, id)) return *p;
    throw error(errc::not_found,
                "sim: node " + std::to_string(i) + " has no such protocol " + std::to_string(id) +
                    (up_[i] ? "" : " (node is down)"));
  }

  // ---- faults ----

  /// Crashes node i: its protocols are destroyed, its timers die, messages to
  /// it are lost until restart, and its disk keeps only what was synced (and
  /// perhaps a torn prefix of the rest).
  void crash(node_index i) {
    auto& n = node(i);
    if (!up_[i]) return;
    up_[i] = 0;
    ++n.incarnation;
    n.host.clear();
    if (n.disk)
      n.disk->crash([this](std::size_t unsynced) -> std::size_t {
        return rng_.chance(cfg_.torn_write) ? rng_.below(unsynced + 1) : 0;
      });
    trace({trace_event::kind::crash, now_, trace_event::npos, i});
  }
  /// Restarts a crashed node: setup runs again over the surviving disk.
  void restart(node_index i) {
    node(i);
    if (up_[i]) return;
    up_[i] = 1;
    trace({trace_event::kind::restart, now_, trace_event::npos, i});
    setup_node(i);
  }

  /// Splits the network: nodes in groups[k] reach only nodes of the same
  /// group; nodes in no group form one more group together.
  void partition(const std::vector<std::vector<node_index>>& groups) {
    std::fill(group_.begin(), group_.end(), 0);
    for (std::size_t g = 0; g < groups.size(); ++g)
      for (node_index i : groups[g]) group_.at(i) = static_cast<std::uint32_t>(g + 1);
    partitioned_ = true;
    trace({trace_event::kind::partition, now_});
  }
  /// Cuts node i off from every other node.
  void isolate(node_index i) { partition({{i}}); }
  /// Ends every partition and one-way block.
  void heal() {
    std::fill(group_.begin(), group_.end(), 0);
    partitioned_ = false;
    blocked_.clear();
    trace({trace_event::kind::heal, now_});
  }
  /// Drops every message from `from` to `to` (one direction only) until heal().
  void block(node_index from, node_index to) { blocked_.insert(link_key(from, to)); }
  bool reachable(node_index from, node_index to) const noexcept {
    if (partitioned_ && group_[from] != group_[to]) return false;
    return blocked_.empty() || !blocked_.contains(link_key(from, to));
  }

  /// Overrides the behaviour of the link from `from` to `to` (one direction).
  void set_link(node_index from, node_index to, link l) {
    l.validate();
    links_.insert_or_assign(link_key(from, to), std::move(l));
  }
  void clear_links() { links_.clear(); }
  /// Changes the default link of the whole network.
  void set_network(link l) {
    l.validate();
    cfg_.network = std::move(l);
  }

  /// Node i's clock: offset `skew` from true time, and running (1 + drift)
  /// times as fast (drift 1e-4 = 100 ppm). Applies from now on.
  void set_clock(node_index i, duration skew, double drift = 0) {
    if (drift <= -1) throw error(errc::invalid_config, "sim::set_clock: drift must be > -1");
    auto& n = node(i);
    n.clock_anchor = now_;
    n.clock_offset = skew;
    n.drift = drift;
  }
  /// Node i's local time.
  time_point local_now(node_index i) const noexcept {
    const auto& n = nodes_[i];
    if (n.drift == 0) return now_ + n.clock_offset;
    const auto since = static_cast<double>((now_ - n.clock_anchor).count());
    return n.clock_anchor + n.clock_offset + duration(static_cast<std::int64_t>(since * (1 + n.drift)));
  }
  /// Node i's wall clock: its local time read from wall_epoch (what its Env's wall_now() says).
  wall_time local_wall_now(node_index i) const noexcept {
    return wall_time(wall_epoch + local_now(i).time_since_epoch());
  }

  // ---- time ----

  time_point now() const noexcept { return now_; }

  /// Runs `fn` at virtual time t (now if t is past): a scheduled user action.
  void at(time_point t, std::function<void()> fn) {
    const auto s = alloc_timer(trace_event::npos, std::move(fn));
    push(std::max(t, now_), event_kind::action, s, timers_[s].gen);  // fire() checks the slot's generation
  }
  void after(duration d, std::function<void()> fn) { at(now_ + d, std::move(fn)); }

  /// Runs the work posted (env.post) since the last event: what a call made
  /// from outside any event (a test calling a protocol directly) left to run
  /// after it, its completions. step() and run*() begin with it too.
  void run_posted() {
    // Index, not iterators: what runs may post more, which runs in this same
    // pass. What follows work that throws stays for the next pass.
    struct consume {
      std::vector<posted_work>& p;
      std::size_t ran = 0;
      ~consume() { p.erase(p.begin(), p.begin() + static_cast<std::ptrdiff_t>(std::min(ran, p.size()))); }
    } done{posted_};
    while (done.ran < posted_.size()) {
      auto& w = posted_[done.ran++];
      if (!up_[w.node] || nodes_[w.node].incarnation != w.incarnation) continue;  // a life that crashed
      auto fn = std::move(w.fn);
      fn();
    }
  }

  /// Processes one event; false when there is none.
  bool step() {
    run_posted();  // work posted from outside any event (a test's direct call) comes first
    if (queue_.empty()) return false;
    const queued e = queue_.pop();
    now_ = e.when();
    prefetch_ahead();
    ++events_;
    dispatch(e);
    run_posted();  // the event's completions are part of it: nothing else happens in between
    if (after_event_) after_event_();
    return true;
  }

  run_result run_until(time_point limit, std::uint64_t max_events = std::numeric_limits<std::uint64_t>::max()) {
    return run([] { return false; }, limit, max_events, false);
  }
  run_result run_for(duration d, std::uint64_t max_events = std::numeric_limits<std::uint64_t>::max()) {
    return run_until(now_ + d, max_events);
  }
  /// Runs until `done()` holds (checked after every event), at most until `limit`.
  run_result run_until(const std::function<bool()>& done, time_point limit,
                       std::uint64_t max_events = std::numeric_limits<std::uint64_t>::max()) {
    return run(done, limit, max_events, false);
  }
  /// Runs until, after some event, no message is in flight (timers may remain
  /// pending), at most until `limit`. At least one event is processed.
  run_result run_until_quiet(time_point limit, std::uint64_t max_events = std::numeric_limits<std::uint64_t>::max()) {
    return run([] { return false; }, limit, max_events, true);
  }

  // ---- observation ----

  /// Called with every event and fault; the place for invariant checks.
  void on_trace(std::function<void(const trace_event&)> hook) { trace_hook_ = std::move(hook); }
  /// Called after every processed event (cheaper than a trace hook when only the state matters).
  void after_event(std::function<void()> hook) { after_event_ = std::move(hook); }
  /// A hash of everything that happened: equal seeds and inputs give equal hashes.
  std::uint64_t trace_hash() const noexcept { return hash_; }
  std::uint64_t seed() const noexcept { return seed_; }
  std::uint64_t events() const noexcept { return events_; }
  std::size_t in_flight() const noexcept { return in_flight_; }
  std::size_t pending_events() const noexcept { return queue_.size(); }
  dcp::metrics& metrics() noexcept { return metrics_; }
  const config& settings() const noexcept { return cfg_; }
  /// The simulator's own random source (for tests choosing victims, say).
  dcp::rng& rng() noexcept { return rng_; }
  void set_log_sink(log_sink sink, log_level level = log_level::info) {
    log_sink_ = std::move(sink);
    log_level_ = log_sink_ ? level : log_level::off;
  }
  /// Node i's disk (created on first use).
  memory_disk& disk_of(node_index i) {
    auto& n = node(i);
    if (!n.disk) n.disk = std::make_unique<memory_disk>();
    return *n.disk;
  }

 private:
  friend class env;
  friend class node_context;

  enum class event_kind : std::uint8_t { message, timer, action, unreachable };

  using queued = detail::queued_event;

  struct message {
    node_index from = 0, to = 0;
    protocol_id protocol = 0;
    message_type type = 0;
    std::uint32_t to_incarnation = 0;  // unreachable notices: for this life of the node only
    bytes payload;
  };
  struct timer_slot {
    std::function<void()> fn;
    node_index node = 0;  // npos for user actions
    std::uint32_t incarnation = 0;
    std::uint32_t gen = 1;
    bool live = false;
  };
  struct posted_work {
    std::function<void()> fn;
    node_index node = 0;
    std::uint32_t incarnation = 0;
  };
  struct node_state {
    dcp::host host;
    std::shared_ptr<const setup_function> setup;
    std::unique_ptr<memory_disk> disk;
    dcp::rng rng;
    time_point clock_anchor{};
    duration clock_offset{};
    double drift = 0;
    std::uint32_t incarnation = 0;
  };

  node_index add_node(std::shared_ptr<const setup_function> setup) {
    const auto i = static_cast<node_index>(nodes_.size());
    if (nodes_.size() >= std::numeric_limits<node_index>::max() - 1)
      throw error(errc::invalid_argument, "sim: too many nodes");
    nodes_.push_back(node_state{dcp::host(&metrics_), std::move(setup), nullptr,
                                dcp::rng(dcp::detail::mix64(seed_ ^ (0x9E3779B97F4A7C15ull * (i + 1))))});
    group_.push_back(0);
    up_.push_back(1);
    setup_node(i);
    return i;
  }
  void setup_node(node_index i);

  node_index node_at(node_index i) const {
    if (i >= nodes_.size()) throw error(errc::invalid_argument, "sim: no node " + std::to_string(i));
    return i;
  }
  node_state& node(node_index i) {
    if (i >= nodes_.size()) throw error(errc::invalid_argument, "sim: no node " + std::to_string(i));
    return nodes_[i];
  }
  const node_state& node(node_index i) const {
    if (i >= nodes_.size()) throw error(errc::invalid_argument, "sim: no node " + std::to_string(i));
    return nodes_[i];
  }

  static std::uint64_t link_key(node_index a, node_index b) noexcept { return std::uint64_t{a} << 32 | b; }
  const link& link_of(node_index from, node_index to) const noexcept {
    if (links_.empty()) return cfg_.network;
    auto it = links_.find(link_key(from, to));
    return it == links_.end() ? cfg_.network : it->second;
  }

  // At 10^5 nodes every event misses the cache on a chain of loads: its
  // message or timer slot, then the node, then the node's protocol table and
  // the message's payload, then the protocol object. The event queue knows
  // the next few events in order (detail::event_queue::ahead), so the chain
  // is loaded as a pipeline, one link per event: two events ahead the slot
  // and the node, one ahead the table and the payload (their addresses are
  // in the lines loaded the step before), for the next event the protocol.
  //
  // always_inline: a call to a function that only prefetches has no effect
  // GCC can see, so GCC drops the call (ipa-pure-const); before this was
  // inlined by force, no prefetch of this simulator ever ran.
  [[gnu::always_inline]] void prefetch_ahead() const noexcept {
    if (queue_.empty()) return;
    if (const queued* far = queue_.ahead(2)) {
      if (static_cast<event_kind>(far->kind()) == event_kind::message) {
        prefetch_object(&messages_[far->slot]);
        prefetch_object(&nodes_[far->gen]);
      } else if (far->slot < timers_.size()) {
        prefetch_object(&timers_[far->slot]);
      }
    }
    if (const queued* near = queue_.ahead(1)) {
      if (static_cast<event_kind>(near->kind()) == event_kind::message) {
        const message& m = messages_[near->slot];
        nodes_[near->gen].host.prefetch();
        if (!m.payload.empty()) dcp::detail::prefetch(m.payload.data());
      } else if (near->slot < timers_.size()) {
        const node_index n = timers_[near->slot].node;
        if (n < nodes_.size()) prefetch_object(&nodes_[n]);
      }
    }
    const queued& next = queue_.top();
    if (static_cast<event_kind>(next.kind()) == event_kind::message) nodes_[next.gen].host.prefetch_protocols();
  }
  template <class T> [[gnu::always_inline]] static void prefetch_object(const T* p) noexcept {
    // Both ends: an object that straddles a cache line boundary needs two.
    dcp::detail::prefetch(p);
    dcp::detail::prefetch(reinterpret_cast<const char*>(p) + sizeof(T) - 1);
  }

  void push(time_point t, event_kind k, std::uint32_t slot, std::uint32_t gen = 0) {
    queue_.push({t.time_since_epoch().count(), next_seq_++ << 2 | static_cast<std::uint64_t>(k), slot, gen});
  }

  // ---- messages ----

  bytes take_buffer() {
    if (pool_.empty()) return {};
    bytes b = std::move(pool_.back());
    pool_.pop_back();
    b.clear();
    return b;
  }
  void give_buffer(bytes&& b) {
    if (pool_.size() < 4096 && b.capacity() <= 65536) pool_.push_back(std::move(b));
  }
  std::uint32_t alloc_message() {
    if (!free_messages_.empty()) {
      auto s = free_messages_.back();
      free_messages_.pop_back();
      return s;
    }
    messages_.emplace_back();
    return static_cast<std::uint32_t>(messages_.size() - 1);
  }
  void free_message(std::uint32_t s) {
    give_buffer(std::move(messages_[s].payload));
    free_messages_.push_back(s);
  }

  template <wire::Message M> bool transmit(node_index from, protocol_id protocol, const address& to, const M& m) {
    const auto target = index_of(to);
    if (!target) {
      metrics_.dropped(protocol, errc::bad_address);
      return false;
    }
    bytes payload = take_buffer();
    wire::encode(m, payload);
    if (payload.size() > cfg_.limits.max_frame_size) {
      metrics_.dropped(protocol, errc::frame_too_large);
      give_buffer(std::move(payload));
      return false;
    }
    const auto type = static_cast<message_type>(M::wire_id);
    metrics_.sent(protocol, type, wire::header_size + payload.size());
    hash_event(trace_event::kind::send, from, *target, protocol, type, payload);
    if (trace_hook_) trace({trace_event::kind::send, now_, from, *target, protocol, type, payload.size()});

    const link& l = link_of(from, *target);
    auto drop = [&](std::string_view why) {
      if (trace_hook_) trace({trace_event::kind::drop, now_, from, *target, protocol, type, payload.size(), why});
      give_buffer(std::move(payload));
      return true;  // a lost message is not the sender's error
    };
    if (!reachable(from, *target)) return drop("partition");
    if (!up_[*target] && cfg_.report_unreachable) {
      auto s = alloc_message();
      messages_[s].from = *target;
      messages_[s].to = from;
      messages_[s].to_incarnation = nodes_[from].incarnation;
      push(now_ + 2 * l.delay.sample(rng_), event_kind::unreachable, s);
    }
    if (rng_.chance(l.loss)) return drop("loss");
    const int copies = rng_.chance(l.duplicate) ? 2 : 1;
    for (int c = 0; c < copies; ++c) {
      time_point at = now_ + l.delay.sample(rng_);
      if (cfg_.fifo) {
        auto& last = fifo_last_[link_key(from, *target)];
        at = std::max(at, last);
        last = at;
      } else if (rng_.chance(l.reorder)) {
        at += duration(rng_.between(0, l.reorder_delay.count()));
      }
      auto s = alloc_message();
      auto& msg = messages_[s];
      msg.from = from;
      msg.to = *target;
      msg.protocol = protocol;
      msg.type = type;
      if (c + 1 == copies)
        msg.payload = std::move(payload);
      else
        msg.payload.assign(payload.begin(), payload.end());
      push(at, event_kind::message, s, *target);  // gen carries the target, for prefetching
      ++in_flight_;
    }
    return true;
  }

  void deliver(std::uint32_t s) {
    --in_flight_;
    auto& msg = messages_[s];
    if (!up_[msg.to]) {
      if (trace_hook_)
        trace(
            {trace_event::kind::drop, now_, msg.from, msg.to, msg.protocol, msg.type, msg.payload.size(), "node down"});
      free_message(s);
      return;
    }
    hash_event(trace_event::kind::deliver, msg.from, msg.to, msg.protocol, msg.type, msg.payload);
    if (trace_hook_)
      trace({trace_event::kind::deliver, now_, msg.from, msg.to, msg.protocol, msg.type, msg.payload.size()});
    // The payload must outlive the handler, which may send (and so grow messages_).
    bytes payload = std::move(msg.payload);
    const node_index from = msg.from, to = msg.to;
    const protocol_id protocol = msg.protocol;
    const message_type type = msg.type;
    free_message(s);
    nodes_[to].host.deliver(address::sim(from), protocol, type, payload);
    give_buffer(std::move(payload));
  }

  // ---- timers ----

  std::uint32_t alloc_timer(node_index n, std::function<void()> fn) {
    std::uint32_t s;
    if (!free_timers_.empty()) {
      s = free_timers_.back();
      free_timers_.pop_back();
    } else {
      timers_.emplace_back();
      s = static_cast<std::uint32_t>(timers_.size() - 1);
    }
    auto& t = timers_[s];
    t.fn = std::move(fn);
    t.node = n;
    t.incarnation = n == trace_event::npos ? 0 : nodes_[n].incarnation;
    t.live = true;
    return s;
  }
  void free_timer(std::uint32_t s) {
    auto& t = timers_[s];
    t.fn = nullptr;
    t.live = false;
    ++t.gen;
    free_timers_.push_back(s);
  }
  timer_id arm(node_index n, duration after, std::function<void()> fn) {
    if (after < duration::zero()) after = duration::zero();
    const auto& ns = nodes_[n];
    if (ns.drift != 0) after = duration(static_cast<std::int64_t>(static_cast<double>(after.count()) / (1 + ns.drift)));
    const auto s = alloc_timer(n, std::move(fn));
    push(now_ + after, event_kind::timer, s, timers_[s].gen);
    return timer_id{std::uint64_t{s + 1} << 32 | timers_[s].gen};
  }
  /// env.post: runs once the current event is handled (run_posted), in the
  /// order posted, unless the node crashes first.
  void post(node_index n, std::function<void()> fn) { posted_.push_back({std::move(fn), n, nodes_[n].incarnation}); }
  void perform(node_index n, io_work io, std::function<void(std::error_code)> done) {
    auto run = [io = std::move(io), done = std::move(done)]() mutable { done(io()); };
    const duration d = cfg_.sync_latency.sample(rng_);  // a constant draws nothing from the world's rng
    if (d == duration::zero())
      post(n, std::move(run));
    else
      arm(n, d, std::move(run));
  }
  bool cancel(node_index n, timer_id id) noexcept {
    if (!id) return false;
    const auto s = static_cast<std::uint32_t>((id.value >> 32) - 1);
    const auto gen = static_cast<std::uint32_t>(id.value);
    if (s >= timers_.size()) return false;
    auto& t = timers_[s];
    if (!t.live || t.gen != gen || t.node != n) return false;
    free_timer(s);
    return true;
  }
  void fire(const queued& e) {
    auto& t = timers_[e.slot];
    if (!t.live || t.gen != e.gen) return;  // cancelled
    const node_index n = t.node;
    if (n != trace_event::npos && (!up_[n] || nodes_[n].incarnation != t.incarnation)) {
      free_timer(e.slot);  // armed by a life of the node that crashed
      return;
    }
    auto fn = std::move(t.fn);
    free_timer(e.slot);
    const bool is_timer = static_cast<event_kind>(e.kind()) == event_kind::timer;
    hash_event(is_timer ? trace_event::kind::timer : trace_event::kind::action, n, n, 0, 0, {});
    if (trace_hook_) trace({is_timer ? trace_event::kind::timer : trace_event::kind::action, now_, n, n});
    fn();
  }

  void dispatch(const queued& e) {
    switch (static_cast<event_kind>(e.kind())) {
      case event_kind::message:
        deliver(e.slot);
        break;
      case event_kind::timer:
      case event_kind::action:
        fire(e);
        break;
      case event_kind::unreachable: {
        auto& msg = messages_[e.slot];
        const node_index peer = msg.from, n = msg.to;
        const auto inc = msg.to_incarnation;
        free_message(e.slot);
        if (up_[n] && nodes_[n].incarnation == inc) {
          hash_event(trace_event::kind::unreachable, peer, n, 0, 0, {});
          if (trace_hook_) trace({trace_event::kind::unreachable, now_, peer, n});
          nodes_[n].host.unreachable(address::sim(peer));
        }
        break;
      }
    }
  }

  run_result run(const std::function<bool()>& done, time_point limit, std::uint64_t max_events, bool until_quiet) {
    const std::uint64_t start = events_;
    auto result = [&](stop_reason r) { return run_result{r, now_, events_ - start}; };
    // Work a direct call posted is the rest of that call's event: done() is
    // checked after it, as after every event (a grant posted by lock() ends
    // the wait here, not at the next event).
    const bool posted = !posted_.empty();
    run_posted();
    if (posted && done()) return result(stop_reason::predicate);
    while (true) {
      if (until_quiet && in_flight_ == 0 && events_ != start) return result(stop_reason::quiet);
      if (queue_.empty()) {
        if (!until_quiet && now_ < limit) now_ = limit;  // time passes even when nothing happens
        return result(stop_reason::no_events);
      }
      if (queue_.top().when() > limit) {
        now_ = std::max(now_, limit);
        return result(stop_reason::time_limit);
      }
      if (events_ - start >= max_events) return result(stop_reason::event_limit);
      step();
      if (done()) return result(stop_reason::predicate);
    }
  }

  void hash_event(trace_event::kind k, node_index from, node_index to, protocol_id p, message_type t,
                  byte_view payload) noexcept {
    std::uint64_t h = hash_ ^ static_cast<std::uint64_t>(now_.time_since_epoch().count());
    h = dcp::detail::mix64(h ^ (std::uint64_t{from} << 32 | to));
    h = dcp::detail::mix64(h ^ (std::uint64_t{p} << 24 | std::uint64_t{t} << 8 | static_cast<std::uint8_t>(k)));
    hash_ = dcp::detail::fnv1a(payload, h);
  }
  void trace(const trace_event& e) {
    if (e.what >= trace_event::kind::crash) hash_event(e.what, e.from, e.to, 0, 0, {});
    if (trace_hook_) trace_hook_(e);
  }

  config cfg_;
  std::uint64_t seed_;
  dcp::rng rng_;
  time_point now_{};
  std::uint64_t next_seq_ = 0, events_ = 0, hash_ = 0xcbf29ce484222325ull;
  std::size_t in_flight_ = 0;
  std::vector<node_state> nodes_;
  std::vector<std::uint32_t> group_;
  std::vector<std::uint8_t> up_;  // apart from nodes_: a send checks its target's, and 10^5 bytes stay in cache
  bool partitioned_ = false;
  std::unordered_set<std::uint64_t> blocked_;
  std::unordered_map<std::uint64_t, link> links_;
  std::unordered_map<std::uint64_t, time_point> fifo_last_;
  detail::event_queue queue_;
  std::vector<message> messages_;
  std::vector<std::uint32_t> free_messages_;
  std::vector<timer_slot> timers_;
  std::vector<std::uint32_t> free_timers_;
  std::vector<posted_work> posted_;
  std::vector<bytes> pool_;
  dcp::metrics metrics_;
  std::function<void(const trace_event&)> trace_hook_;
  std::function<void()> after_event_;
  log_sink log_sink_;
  log_level log_level_ = log_level::off;
};

/// What a node's setup function sees: the node, and a way to add protocols.
class node_context {
 public:
  node_context(simulator& s, node_index i) noexcept : sim_(s), index_(i) {}

  /// Constructs P(env, args...) as protocol `id` on this node.
  template <class P, class... Args> P& add(protocol_id id, Args&&... args) {
    return sim_.nodes_[index_].host.template emplace<P>(id, env(sim_, index_, id), std::forward<Args>(args)...);
  }
  node_index index() const noexcept { return index_; }
  address self() const noexcept { return address::sim(index_); }
  simulator& world() const noexcept { return sim_; }
  dcp::rng& rng() noexcept { return sim_.nodes_[index_].rng; }

 private:
  simulator& sim_;
  node_index index_;
};

inline void simulator::setup_node(node_index i) {
  node_context ctx(*this, i);
  (*nodes_[i].setup)(ctx);
  nodes_[i].host.start();
}

// ---- env's members ----

inline time_point env::now() const noexcept { return sim_->local_now(node_); }
inline wall_time env::wall_now() const noexcept { return sim_->local_wall_now(node_); }
template <wire::Message M> bool env::send(const address& to, const M& m) {
  return sim_->transmit(node_, protocol_, to, m);
}
inline timer_id env::arm(duration after, timer_callback fn) { return sim_->arm(node_, after, std::move(fn)); }
inline bool env::cancel(timer_id id) noexcept { return sim_->cancel(node_, id); }
inline void env::post(timer_callback fn) { sim_->post(node_, std::move(fn)); }
inline void env::perform(io_work io, std::function<void(std::error_code)> done) {
  sim_->perform(node_, std::move(io), std::move(done));
}
inline dcp::rng& env::rng() noexcept { return sim_->nodes_[node_].rng; }
inline dcp::disk& env::disk() { return sim_->disk_of(node_); }
inline bool env::logs(log_level level) const noexcept { return level >= sim_->log_level_ && sim_->log_sink_; }
inline void env::log(log_level level, std::string_view text) {
  if (logs(level)) sim_->log_sink_(log_record{now(), self(), protocol_, level, text});
}
inline void env::count(std::string_view name, std::int64_t delta) { sim_->metrics_.add(protocol_, name, delta); }

static_assert(Env<env>, "dcp::sim::env must model dcp::Env");

}  // namespace dcp::sim
