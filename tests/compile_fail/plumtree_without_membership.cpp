// expect: dcp: plumtree<Env, M> needs M to model dcp::membership::Membership
#include "dcp/gossip.hpp"
#include "dcp/sim.hpp"

struct not_a_membership {
  std::vector<dcp::address> peers() const { return {}; }
};

int main() {
  dcp::sim::simulator w(1);
  w.add_node([](dcp::sim::node_context& n) {
    static not_a_membership m;
    n.add<dcp::gossip::plumtree<dcp::sim::env, not_a_membership>>(21, m);
  });
}
