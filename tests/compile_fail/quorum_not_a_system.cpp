// expect: dcp: a QuorumSystem needs members()
#include "dcp/quorum.hpp"

struct everyone {  // no choose(): not a QuorumSystem
  std::vector<dcp::address> all;
  std::span<const dcp::address> members() const { return all; }
  bool is_quorum(std::span<const dcp::address>) const { return true; }
};

int main() { return dcp::quorum::check_intersection(everyone{}).has_value(); }
