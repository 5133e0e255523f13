#pragma once
// The protocol both transport benchmarks run (net_pingpong: dcp::net against
// raw sockets; transport_cost: plaintext against the keyring): ping-pong for
// round trips, and a windowed one-way stream acknowledged every `ack_every`
// messages for throughput.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <functional>
#include <string_view>
#include <vector>

#include "dcp/core/env.hpp"
#include "dcp/wire/message.hpp"

namespace pingpong_bench {

using clk = std::chrono::steady_clock;

namespace bench_msg {
struct ping {
  static constexpr dcp::message_type wire_id = 1;
  std::uint64_t seq = 0;
  std::vector<std::uint8_t> payload;
  template <class A> void serialize(A& ar) { ar(seq, payload); }
};
struct pong {
  static constexpr dcp::message_type wire_id = 2;
  std::uint64_t seq = 0;
  std::vector<std::uint8_t> payload;
  template <class A> void serialize(A& ar) { ar(seq, payload); }
};
struct data {
  static constexpr dcp::message_type wire_id = 3;
  std::vector<std::uint8_t> payload;
  template <class A> void serialize(A& ar) { ar(payload); }
};
struct ack {
  static constexpr dcp::message_type wire_id = 4;
  std::uint64_t received = 0;
  template <class A> void serialize(A& ar) { ar(received); }
};
}  // namespace bench_msg

// One protocol for both sides of both measurements.
template <dcp::Env E> class bench {
 public:
  using messages = dcp::wire::message_set<bench_msg::ping, bench_msg::pong, bench_msg::data, bench_msg::ack>;
  static constexpr std::string_view name = "bench";
  struct config {
    dcp::address peer;  // where the parent sends
    std::size_t payload = 64;
    std::uint64_t total = 0;   // messages to send (parent)
    std::uint64_t window = 0;  // throughput: unacknowledged messages at most
    std::uint64_t ack_every = 1024;
    std::function<void()> done;
  };
  bench(E env, config c) : env_(std::move(env)), cfg_(std::move(c)) {
    msg_.payload.assign(cfg_.payload, 0xAB);
    ping_.payload.assign(cfg_.payload, 0xCD);
  }

  // ---- ping-pong (parent) ----
  void start_pingpong() {
    rtts.reserve(cfg_.total);
    send_ping();
  }
  void on_message(const dcp::address& from, const bench_msg::ping& m) {
    env_.send(from, bench_msg::pong{m.seq, m.payload});
  }
  void on_message(const dcp::address&, const bench_msg::pong& m) {
    if (m.seq != ping_.seq) return;
    rtts.push_back(clk::now() - sent_at_);
    if (rtts.size() == cfg_.total) return cfg_.done();
    send_ping();
  }

  // ---- one-way throughput ----
  void start_stream() {
    started = clk::now();
    fill();
  }
  void on_message(const dcp::address& from, const bench_msg::data&) {
    if (++received_ % cfg_.ack_every == 0) env_.send(from, bench_msg::ack{received_});
  }
  void on_message(const dcp::address&, const bench_msg::ack& m) {
    acked_ = std::max(acked_, m.received);
    if (acked_ >= cfg_.total) {
      finished = clk::now();
      return cfg_.done();
    }
    fill();
  }

  std::vector<clk::duration> rtts;
  clk::time_point started, finished;
  std::uint64_t refused = 0;

 private:
  void send_ping() {
    ++ping_.seq;
    sent_at_ = clk::now();
    env_.send(cfg_.peer, ping_);
  }
  void fill() {
    while (sent_ < cfg_.total && sent_ - acked_ < cfg_.window) {
      if (!env_.send(cfg_.peer, msg_)) {  // not expected: the window fits the queue
        ++refused;
        return;
      }
      ++sent_;
    }
  }

  E env_;
  config cfg_;
  bench_msg::data msg_;
  bench_msg::ping ping_;
  clk::time_point sent_at_;
  std::uint64_t sent_ = 0, acked_ = 0, received_ = 0;
};
constexpr dcp::protocol_id bench_id = 9;

}  // namespace pingpong_bench
