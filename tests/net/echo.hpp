#pragma once
// A small protocol for the net tests: one-way notes, and request/reply calls
// with a time-out (a callback-style user call, as real protocols have).
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include <asio/io_context.hpp>

#include "dcp/core/env.hpp"
#include "dcp/core/protocol.hpp"
#include "dcp/wire/message.hpp"

namespace dcp::test {

namespace echo_msg {
struct request {
  static constexpr message_type wire_id = 1;
  std::uint64_t id = 0;
  std::string body;
  template <class A> void serialize(A& ar) { ar(id, body); }
};
struct reply {
  static constexpr message_type wire_id = 2;
  std::uint64_t id = 0;
  std::string body;
  template <class A> void serialize(A& ar) { ar(id, body); }
};
struct note {
  static constexpr message_type wire_id = 3;
  static constexpr std::string_view wire_name = "note";
  std::string body;
  template <class A> void serialize(A& ar) { ar(body); }
};
}  // namespace echo_msg

template <Env E> class echo {
 public:
  using messages = wire::message_set<echo_msg::request, echo_msg::reply, echo_msg::note>;
  static constexpr counter_set counters{{{"rounds", "counted by test_env through environment()"}}};
  static constexpr std::string_view name = "echo";
  using done_fn = std::function<void(std::error_code, std::string)>;

  struct received {
    address from;
    std::string body;
  };

  explicit echo(E env, duration call_timeout = 2s) : env_(std::move(env)), timeout_(call_timeout) {}
  ~echo() {
    for (auto& [id, c] : calls_) env_.cancel(c.timer);
  }

  bool tell(const address& to, std::string body) { return env_.send(to, echo_msg::note{std::move(body)}); }

  /// Asks `to` to echo `body`; done(error, body) once, with timed_out after the time-out.
  void call(const address& to, std::string body, done_fn done) {
    const std::uint64_t id = ++next_id_;
    if (!env_.send(to, echo_msg::request{id, std::move(body)})) {
      done(make_error_code(errc::queue_full), {});
      return;
    }
    const timer_id t = env_.arm(timeout_, [this, id] { finish(id, make_error_code(errc::timed_out), {}); });
    calls_.emplace(id, call_state{to, std::move(done), t});
  }

  void on_message(const address& from, const echo_msg::request& m) { env_.send(from, echo_msg::reply{m.id, m.body}); }
  void on_message(const address&, const echo_msg::reply& m) {
    auto it = calls_.find(m.id);
    if (it == calls_.end()) return;
    env_.cancel(it->second.timer);
    finish(m.id, {}, m.body);
  }
  void on_message(const address& from, const echo_msg::note& m) {
    notes.push_back({from, m.body});
    if (on_note) on_note(from, m.body);
  }
  void on_unreachable(const address& peer) {
    unreachable.push_back(peer);
    std::vector<std::uint64_t> failed;
    for (auto& [id, c] : calls_)
      if (c.to == peer) failed.push_back(id);
    for (auto id : failed) {
      env_.cancel(calls_.at(id).timer);
      finish(id, make_error_code(errc::peer_unreachable), {});
    }
  }

  std::vector<received> notes;
  std::vector<address> unreachable;
  std::function<void(const address&, const std::string&)> on_note;
  E& environment() { return env_; }

 private:
  struct call_state {
    address to;
    done_fn done;
    timer_id timer;
  };
  void finish(std::uint64_t id, std::error_code ec, std::string body) {
    auto it = calls_.find(id);
    if (it == calls_.end()) return;
    auto done = std::move(it->second.done);
    calls_.erase(it);
    done(ec, std::move(body));
  }

  E env_;
  duration timeout_;
  std::uint64_t next_id_ = 0;
  std::map<std::uint64_t, call_state> calls_;
};

/// Runs `io` until `pred()` holds or `limit` passes; returns pred().
template <class Pred>
bool run_until(asio::io_context& io, Pred pred, std::chrono::milliseconds limit = std::chrono::seconds(10)) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!pred()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    io.restart();
    io.run_for(std::chrono::milliseconds(5));
  }
  return true;
}

}  // namespace dcp::test
