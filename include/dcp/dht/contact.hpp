#pragma once
// contact: a node of an overlay as other nodes know it, (node_id, address).
//
// Every DHT message that names a node carries contacts, so that a node learns
// where to reach the ids it routes by.
#include <ostream>

#include <cereal/cereal.hpp>

#include "dcp/core/address.hpp"
#include "dcp/core/node_id.hpp"

namespace dcp::dht {

struct contact {
  node_id id;
  address addr;

  bool empty() const noexcept { return addr.empty(); }
  explicit operator bool() const noexcept { return !empty(); }
  auto operator<=>(const contact&) const noexcept = default;
  bool operator==(const contact&) const noexcept = default;

  template <class Archive> void serialize(Archive& ar) { ar(id, addr); }
};

inline std::ostream& operator<<(std::ostream& os, const contact& c) { return os << c.id << '@' << c.addr; }

}  // namespace dcp::dht
