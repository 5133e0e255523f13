#pragma once
// Cristian's algorithm with NTP's four timestamps and clock filter: a client
// polls a time server and disciplines its clock to the server's.
//
// (Cristian, "Probabilistic clock synchronization", Distributed Computing
// 1989; Mills, RFC 5905; Tanenbaum & van Steen ch. 6, fig. 6-6.) Every
// poll_interval the client sends REQUEST(id, t1); the server stamps t2 on
// receipt and t3 on reply; the client stamps t4. The sample (see
// time_sample.hpp) gives an offset and an error bound δ/2 + (ρ+σ)(t4-t1) +
// server error; the client keeps the last `filter_window` samples and steers
// its disciplined clock to the best one (least aged bound), by slewing, never
// stepping back. synchronized_now() is that clock, error_bound() its bound
// against the server's clock.
//
// A node with no server is a reference server: it answers with its own
// clock and error zero. A node with a server also answers (stratum 2, 3,
// ... in NTP's terms): its stamps are its synchronized clock, and its error
// bound goes into its replies so that bounds add up along the chain. An
// unsynchronized non-root node does not answer.
//
// Faults tolerated: loss (a request with no reply is forgotten at the next
// poll), delay and jitter (the filter prefers the fastest exchange),
// duplication and reordering (a reply must carry the id and t1 of the one
// request outstanding). Hostile or absurd timestamps (time running
// backwards, delay, turn-around or offset over the limits, a negative or
// huge server error) are counted ("sample_refused" and the fault's name) and
// never applied. Not tolerated: a server whose clock is wrong but
// self-consistent (a falseticker; NTP needs several servers and Marzullo's
// intersection for that), and a server that is down (the client keeps its
// last correction; its bound grows by ρ per second).
//
// Not thread-safe: call from one thread or strand, like the rest of dcp.
#include <cstdint>
#include <optional>
#include <string_view>

#include "dcp/clock/disciplined_clock.hpp"
#include "dcp/clock/time_sample.hpp"
#include "dcp/core/env.hpp"
#include "dcp/core/protocol.hpp"

namespace dcp::clock {

struct cristian_config {
  /// The server to follow; none: this node is a reference server.
  std::optional<address> server;
  duration poll_interval = 1s;  ///< also the request time-out: an unanswered request is dropped at the next poll
  std::size_t filter_window = 8;
  sample_limits limits{};
  disciplined_clock_config clock{};

  void validate() const {
    if (poll_interval <= duration::zero()) throw error(errc::invalid_config, "cristian: poll_interval must be > 0");
    if (filter_window == 0 || filter_window > 64)
      throw error(errc::invalid_config, "cristian: filter_window must be in [1, 64]");
    limits.validate();
    clock.validate();
  }
};

namespace cristian_msg {
struct request {
  static constexpr message_type wire_id = 1;
  static constexpr std::string_view wire_name = "time_request";
  std::uint64_t id = 0;
  std::int64_t t1 = 0;
  template <class A> void serialize(A& ar) { ar(id, t1); }
};
struct reply {
  static constexpr message_type wire_id = 2;
  static constexpr std::string_view wire_name = "time_reply";
  std::uint64_t id = 0;
  std::int64_t t1 = 0, t2 = 0, t3 = 0;
  std::int64_t server_error = 0;  ///< ns: the server's own bound on its clock
  template <class A> void serialize(A& ar) { ar(id, t1, t2, t3, server_error); }
};
}  // namespace cristian_msg

template <Env E> class cristian {
 public:
  using messages = wire::message_set<cristian_msg::request, cristian_msg::reply>;
  /// What it counts (env.count), declared: dcp/core/counter_set.hpp.
  static constexpr dcp::counter_set counters{{"request_while_unsynchronized", "reply_not_from_server",
                                              "unexpected_reply", "bogus_origin", "sample_refused",
                                              "request_unanswered", "time_runs_backwards", "delay_too_large",
                                              "turnaround_too_large", "offset_absurd", "server_error_absurd"}};
  static constexpr std::string_view name = "clock.cristian";
  static constexpr protocol_id default_id = 110;

  cristian(E env, cristian_config cfg = {})
      : env_(std::move(env)),
        cfg_(std::move(cfg)),
        clock_((cfg_.validate(), cfg_.clock)),
        filter_(cfg_.filter_window, cfg_.limits.drift_bound) {
    next_id_ = env_.rng()() >> 1;  // ids differ across restarts: a reply to a past life never matches
  }

  void start() {
    if (cfg_.server)
      polls_.start(
          env_, cfg_.poll_interval, [this] { poll(); }, duration(1));
  }

  /// This node's synchronized clock (the server's time, to within error_bound()).
  time_point synchronized_now() { return clock_.now(env_.now()); }
  /// |synchronized_now() - server clock|; duration::max() until the first sample.
  duration error_bound() const {
    if (!cfg_.server) return duration::zero();
    return clock_.error_bound(env_.now());
  }
  bool synchronized() const noexcept { return !cfg_.server || clock_.synchronized(); }
  const disciplined_clock& clock() const noexcept { return clock_; }
  std::uint64_t samples_accepted() const noexcept { return accepted_; }

  void on_message(const address& from, const cristian_msg::request& m) {
    if (cfg_.server && !clock_.synchronized()) {
      env_.count("request_while_unsynchronized");
      return;
    }
    const time_point t = synchronized_now();  // t2 = t3: the core answers within one event
    env_.send(from,
              cristian_msg::reply{m.id, m.t1, t.time_since_epoch().count(), t.time_since_epoch().count(),
                                  error_bound().count()});
  }

  void on_message(const address& from, const cristian_msg::reply& m) {
    if (from != cfg_.server) return env_.count("reply_not_from_server");
    if (!outstanding_ || m.id != outstanding_->id) return env_.count("unexpected_reply");  // late, duplicated or forged
    if (m.t1 != outstanding_->t1.time_since_epoch().count()) return env_.count("bogus_origin");
    const time_point t4 = env_.now();
    const time_sample s{outstanding_->t1, time_point(duration(m.t2)), time_point(duration(m.t3)), t4};
    const duration server_error(m.server_error);
    if (auto f = check(s, server_error, cfg_.limits); f != sample_fault::none) {
      env_.count("sample_refused");
      env_.count(to_string(f));
      return;  // the request stays outstanding: the genuine reply may still come
    }
    outstanding_.reset();
    ++accepted_;
    filter_.add(estimate(s, server_error, cfg_.limits));
    const auto best = *filter_.best(t4);
    clock_.adjust_to(t4, t4 + best.offset, {best.error, best.taken, cfg_.limits.drift_bound});
  }

 private:
  struct request_state {
    std::uint64_t id;
    time_point t1;
  };
  void poll() {
    if (outstanding_) env_.count("request_unanswered");
    outstanding_ = request_state{++next_id_, env_.now()};
    env_.send(*cfg_.server, cristian_msg::request{outstanding_->id, outstanding_->t1.time_since_epoch().count()});
  }

  E env_;
  cristian_config cfg_;
  disciplined_clock clock_;
  clock_filter filter_;
  std::optional<request_state> outstanding_;
  std::uint64_t next_id_ = 0, accepted_ = 0;
  periodic<E> polls_;
};

}  // namespace dcp::clock
