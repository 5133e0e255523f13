#pragma once
// The wire between clients, coordinators and the origin. One protocol id
// (default 140) and one message set: a frame is dispatched by the sender's
// protocol id, so delegation::origin and delegation::peer share it and each
// ignores (and counts) the half meant for the other.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <cereal/types/optional.hpp>
#include <cereal/types/string.hpp>
#include <cereal/types/vector.hpp>

#include "dcp/core/address.hpp"
#include "dcp/core/bytes.hpp"
#include "dcp/delegation/certificate.hpp"
#include "dcp/wire/message.hpp"

namespace dcp::delegation {

inline constexpr protocol_id default_protocol_id = 140;

/// How a request was answered.
enum class status : std::uint8_t {
  ok = 0,
  retry,    ///< not now (not coordinating yet, share in use, shard delegated elsewhere): retry_after_ms
  refused,  ///< never (unknown shard, stock exhausted, a bad request)
};

namespace msg {
/// A node that owns a shard's key asks the origin to delegate the shard to it
/// (or to renew its delegation), reporting the demand it saw. Signed with the
/// key it names (request_signature.hpp): the origin refuses it otherwise.
struct delegate_request {
  static constexpr message_type wire_id = 1;
  static constexpr std::string_view wire_name = "delegate_request";
  std::string resource;
  std::uint32_t shard = 0;
  bytes public_key;          ///< the key its tokens will be signed with
  std::uint64_t demand = 0;  ///< permits (or requests per second, or units) its clients asked for lately
  std::int64_t sent_at = 0;  ///< the sender's wall clock, ns since the Unix epoch: the origin refuses stale ones
  bytes signature;           ///< by `public_key`'s private half
  template <class A> void serialize(A& ar) { ar(resource, shard, public_key, demand, sent_at, signature); }
};
struct delegate_reply {
  static constexpr message_type wire_id = 2;
  static constexpr std::string_view wire_name = "delegate_reply";
  std::string resource;
  std::uint32_t shard = 0;
  status code = status::ok;
  std::uint32_t error = 0;  ///< delegation::errc when not ok
  bytes certificate;        ///< sealed, when ok; shard_delegated: the holders' current one
  std::uint32_t retry_after_ms = 0;
  std::optional<address> coordinator;  ///< shard_delegated: who holds it now
  template <class A> void serialize(A& ar) {
    ar(resource, shard, code, error, certificate, retry_after_ms, coordinator);
  }
};

/// A client asks a shard's coordinator for a token (renew_fencing 0), or to
/// renew one it holds. For stock, permits are the units to allocate for good
/// and `request_id` makes the allocation idempotent across retries and
/// coordinators.
struct token_request {
  static constexpr message_type wire_id = 3;
  static constexpr std::string_view wire_name = "token_request";
  std::uint64_t nonce = 0;
  std::string resource;
  std::uint32_t shard = 0;
  std::uint32_t permits = 1;
  std::uint64_t renew_fencing = 0;
  std::uint64_t request_id = 0;
  template <class A> void serialize(A& ar) { ar(nonce, resource, shard, permits, renew_fencing, request_id); }
};
struct token_reply {
  static constexpr message_type wire_id = 4;
  static constexpr std::string_view wire_name = "token_reply";
  std::uint64_t nonce = 0;
  status code = status::ok;
  std::uint32_t error = 0;  ///< delegation::errc when not ok
  bytes certificate;        ///< sealed by the origin: the coordinator's authority
  bytes token;              ///< sealed by the coordinator
  std::uint32_t retry_after_ms = 0;
  std::uint64_t fencing = 0;  ///< the token's, so a client that no longer wants it can hand it back unread
  /// not_coordinator: the node the origin says holds the shard, when this one
  /// learnt it (DHT views differ for a while after joins and crashes).
  std::optional<address> coordinator;
  template <class A> void serialize(A& ar) {
    ar(nonce, code, error, certificate, token, retry_after_ms, fencing, coordinator);
  }
};
/// The holder is done with a token: its permits may be granted again once it expires.
struct token_release {
  static constexpr message_type wire_id = 5;
  static constexpr std::string_view wire_name = "token_release";
  std::string resource;
  std::uint32_t shard = 0;
  std::uint64_t fencing = 0;
  template <class A> void serialize(A& ar) { ar(resource, shard, fencing); }
};

/// A group of coordinators (multi-delegation, group.hpp) asks the origin,
/// through its leader, to delegate the shard to all of them, or to renew
/// that delegation: one certificate names every member and its key, so a
/// token signed by any member is honoured and a new leader renews the same
/// epoch. Answered with a delegate_reply.
struct group_delegate_request {
  static constexpr message_type wire_id = 8;
  static constexpr std::string_view wire_name = "group_delegate_request";
  std::string resource;
  std::uint32_t shard = 0;
  std::vector<coordinator_entry> members;  ///< every member, in the order that numbers their keys
  std::uint64_t demand = 0;
  std::int64_t sent_at = 0;  ///< the sending member's wall clock, ns since the Unix epoch
  bytes signature;           ///< by the sending member's key
  template <class A> void serialize(A& ar) { ar(resource, shard, members, demand, sent_at, signature); }
};

/// Stock allocations, committed to the origin in idempotent batches.
struct allocation {
  address holder;
  std::uint64_t request_id = 0;
  std::uint32_t units = 1;
  template <class A> void serialize(A& ar) { ar(holder, request_id, units); }
  bool operator==(const allocation&) const = default;
};
struct stock_commit {
  static constexpr message_type wire_id = 6;
  static constexpr std::string_view wire_name = "stock_commit";
  std::string resource;
  std::uint32_t shard = 0;
  std::uint32_t epoch = 0;
  std::uint64_t batch = 0;  ///< unique per coordinator and epoch: a retry carries the same id
  std::vector<allocation> allocations;
  bytes signature;  ///< by the coordinator's key (request_signature.hpp)
  template <class A> void serialize(A& ar) { ar(resource, shard, epoch, batch, allocations, signature); }
};
struct stock_ack {
  static constexpr message_type wire_id = 7;
  static constexpr std::string_view wire_name = "stock_ack";
  std::string resource;
  std::uint32_t shard = 0;
  std::uint64_t batch = 0;
  status code = status::ok;
  std::uint32_t error = 0;
  template <class A> void serialize(A& ar) { ar(resource, shard, batch, code, error); }
};

/// Quorum-signed certificates (token.hpp): a group's leader asks each
/// member to sign grant `fencing` as the member's own book holds it, with
/// this expiry (a renewal's); a member that has not applied that entry yet
/// answers once it has.
struct cosign_request {
  static constexpr message_type wire_id = 9;
  static constexpr std::string_view wire_name = "cosign_request";
  std::string resource;
  std::uint32_t shard = 0;
  std::uint64_t fencing = 0;
  std::int64_t expiry_ns = 0;
  template <class A> void serialize(A& ar) { ar(resource, shard, fencing, expiry_ns); }
};
/// A member's signature on the grant (cosignature.signature empty and
/// `error` a delegation::errc when it refuses, e.g. slot_held).
struct cosign_reply {
  static constexpr message_type wire_id = 10;
  static constexpr std::string_view wire_name = "cosign_reply";
  std::string resource;
  std::uint32_t shard = 0;
  std::uint64_t fencing = 0;
  std::int64_t expiry_ns = 0;
  std::uint32_t error = 0;
  bytes signature;
  template <class A> void serialize(A& ar) { ar(resource, shard, fencing, expiry_ns, error, signature); }
};

/// Quorum-signed: a member whose guard still holds a permit for grant
/// `fencing` (it never heard that grant's release: lost, or sent before a
/// restart) asks the grant's holder. A holder that neither holds it nor
/// waits for a grant of that shard answers with a token_release, to the
/// asker alone; otherwise it says nothing, and the permit is held until the
/// grant expires.
struct release_query {
  static constexpr message_type wire_id = 11;
  static constexpr std::string_view wire_name = "release_query";
  std::string resource;
  std::uint32_t shard = 0;
  std::uint64_t fencing = 0;
  template <class A> void serialize(A& ar) { ar(resource, shard, fencing); }
};

// ---- groups formed from the overlay (group_host.hpp) ----

/// The node that owns a shard's key asks one of the r nodes closest to it
/// whether it will serve in the shard's group, and for the key it signs with.
struct group_invite {
  static constexpr message_type wire_id = 12;
  static constexpr std::string_view wire_name = "group_invite";
  std::string resource;
  std::uint32_t shard = 0;
  template <class A> void serialize(A& ar) { ar(resource, shard); }
};
/// Yes, with this node's key (public_key empty: no room for another group).
struct group_accept {
  static constexpr message_type wire_id = 13;
  static constexpr std::string_view wire_name = "group_accept";
  std::string resource;
  std::uint32_t shard = 0;
  bytes public_key;
  template <class A> void serialize(A& ar) { ar(resource, shard, public_key); }
};
/// The origin's certificate for a group (sealed): a node it names at its own
/// key starts serving in the group. Sent by the founder once the origin has
/// certified the group, and to a member that asks (group_form_query).
struct group_form {
  static constexpr message_type wire_id = 14;
  static constexpr std::string_view wire_name = "group_form";
  bytes certificate;
  template <class A> void serialize(A& ar) { ar(certificate); }
};
/// A member heard from a group (of this epoch) it does not serve in yet: it
/// asks the sender for the group's certificate.
struct group_form_query {
  static constexpr message_type wire_id = 15;
  static constexpr std::string_view wire_name = "group_form_query";
  std::string resource;
  std::uint32_t shard = 0;
  std::uint32_t epoch = 0;
  template <class A> void serialize(A& ar) { ar(resource, shard, epoch); }
};
/// A message of a hosted group's Raft (its wire id and bytes), addressed by
/// the group's shard and epoch: one node serves in many groups.
struct group_raft {
  static constexpr message_type wire_id = 16;
  static constexpr std::string_view wire_name = "group_raft";
  std::string resource;
  std::uint32_t shard = 0;
  std::uint32_t epoch = 0;
  message_type type = 0;
  bytes payload;
  template <class A> void serialize(A& ar) { ar(resource, shard, epoch, type, payload); }
};

using all = wire::message_set<delegate_request, delegate_reply, token_request, token_reply, token_release, stock_commit,
                              stock_ack, group_delegate_request, cosign_request, cosign_reply, release_query,
                              group_invite, group_accept, group_form, group_form_query, group_raft>;
}  // namespace msg

}  // namespace dcp::delegation
