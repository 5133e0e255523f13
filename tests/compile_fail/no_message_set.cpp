// expect: dcp: a protocol must declare `using messages = dcp::wire::message_set<M1, M2, ...>
#include "dcp/sim.hpp"

template <dcp::Env E> struct silent {
  explicit silent(E) {}
};

int main() {
  dcp::sim::simulator w(1);
  w.add_node([](dcp::sim::node_context& n) { n.add<silent<dcp::sim::env>>(1); });
}
