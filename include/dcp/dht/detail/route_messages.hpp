#pragma once
// What the messages of the recursive routers (dht::pastry, dht::can,
// dht::tapestry) have in common: a hop's acknowledgement, the root's answer
// to a lookup, a route message as its origin starts it, and the kinds of
// route message they all have.
//
// The two structs carry the same wire ids in each router (route_ack 2,
// lookup_reply 3); each router names them in its own message namespace
// (pastry_msg::route_ack, ...) and message_set, under its own protocol id, so
// the bytes on the wire are the ones each router always sent.
#include <cstdint>
#include <string_view>
#include <vector>

#include "dcp/core/node_id.hpp"
#include "dcp/dht/contact.hpp"
#include "dcp/wire/message.hpp"

namespace dcp::dht::detail {

/// The route message kinds every recursive router has, with the same codes:
/// each router's own kind enum (pastry_msg::kind, ...) starts with them.
enum class route_kind : std::uint8_t { lookup = 0, join = 1, app = 2 };

/// Acknowledges one hop (hop_forwarder.hpp), by the nonce the hop carried.
struct route_ack {
  static constexpr message_type wire_id = 2;
  static constexpr std::string_view wire_name = "route_ack";
  std::uint64_t hop = 0;
  template <class A> void serialize(A& ar) { ar(hop); }
};

/// The root's answer to a lookup, straight to the origin: the owners, and the
/// hops the request took. Not acknowledged: the origin resends the lookup.
struct lookup_reply {
  static constexpr message_type wire_id = 3;
  static constexpr std::string_view wire_name = "lookup_reply";
  std::uint64_t nonce = 0;
  std::uint16_t hops = 0;
  std::vector<contact> owners;
  template <class A> void serialize(A& ar) { ar(nonce, hops, owners); }
};

/// A route message of kind `what` toward `key`, starting at `self`; the
/// forwarder sets its hop and sender at each hop.
template <class Route>
Route origin_route(std::uint8_t what, const node_id& key, const contact& self, std::uint64_t nonce = 0) {
  Route m;
  m.nonce = nonce;
  m.what = what;
  m.key = key;
  m.origin = self;
  return m;
}

}  // namespace dcp::dht::detail
