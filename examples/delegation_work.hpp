#pragma once
// The work protocol of the delegation examples: a client presents its token
// (and the certificate that vouches for it) with each unit of work it asks of
// the origin. delegation_origin serves it; delegation_clients asks.
//
// Protocol id 141 (delegation itself is 140). A real service would carry the
// token in its own protocol (an HTTP header, a gRPC metadata entry); what
// matters is that the origin checks it offline before doing the work.
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <utility>

#include <cereal/types/string.hpp>
#include <cereal/types/vector.hpp>

#include "dcp/core/env.hpp"
#include "dcp/wire/message.hpp"

namespace work {

inline constexpr dcp::protocol_id protocol = 141;

struct request {
  static constexpr dcp::message_type wire_id = 1;
  static constexpr std::string_view wire_name = "work_request";
  std::uint64_t id = 0;
  dcp::bytes token;        ///< sealed by the shard's coordinator
  dcp::bytes certificate;  ///< sealed by the origin: kept for the audit (admission does not need it)
  bool last = false;       ///< the holder is done: release the token's permits after this unit
  template <class A> void serialize(A& ar) { ar(id, token, certificate, last); }
};
struct reply {
  static constexpr dcp::message_type wire_id = 2;
  static constexpr std::string_view wire_name = "work_reply";
  std::uint64_t id = 0;
  bool ok = false;
  std::string error;  ///< why the work was refused
  template <class A> void serialize(A& ar) { ar(id, ok, error); }
};
using all = dcp::wire::message_set<request, reply>;

/// The client's side: one unit of work at a time or many, each answered or
/// failed after `timeout` (an origin that died, a reply lost).
template <dcp::Env E> class client {
 public:
  using messages = all;
  static constexpr dcp::counter_set counters{
      {{"work_reply_not_from_origin", "a reply from an address other than the origin's, dropped"},
       {"unexpected_message", "a request sent to a client, dropped"}}};
  static constexpr std::string_view name = "work_client";
  static constexpr dcp::protocol_id default_id = protocol;
  using callback = std::function<void(bool ok, const std::string& error)>;

  client(E env, dcp::address origin, dcp::duration timeout)
      : env_(std::move(env)), origin_(std::move(origin)), timeout_(timeout) {}
  client(const client&) = delete;
  client& operator=(const client&) = delete;
  ~client() {
    for (auto& [id, p] : pending_) env_.cancel(p.timer);
  }
  void start() {}

  void submit(dcp::bytes token, dcp::bytes certificate, bool last, callback done) {
    const auto id = ++next_;
    auto timer = env_.arm(timeout_, [this, id] { finish(id, false, "no answer from the origin"); });
    pending_.emplace(id, pending{std::move(done), timer});
    env_.send(origin_, request{id, std::move(token), std::move(certificate), last});
  }

  void on_message(const dcp::address& from, const reply& m) {
    if (from != origin_) {
      env_.count("work_reply_not_from_origin");
      return;
    }
    finish(m.id, m.ok, m.error);
  }
  void on_message(const dcp::address&, const request&) { env_.count("unexpected_message"); }

 private:
  struct pending {
    callback done;
    dcp::timer_id timer;
  };
  void finish(std::uint64_t id, bool ok, const std::string& error) {
    auto it = pending_.find(id);
    if (it == pending_.end()) return;
    auto p = std::move(it->second);
    pending_.erase(it);
    env_.cancel(p.timer);
    p.done(ok, error);
  }

  E env_;
  dcp::address origin_;
  dcp::duration timeout_;
  std::uint64_t next_ = 0;
  std::map<std::uint64_t, pending> pending_;
};

}  // namespace work
