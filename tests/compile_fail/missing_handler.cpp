// expect: dcp: the protocol needs `void on_message(const dcp::address& from, const M& m)` for every message M
// expect: on_message_missing_for<forgetful<dcp::sim::env>, bye>
#include "dcp/sim.hpp"

struct hello {
  static constexpr dcp::message_type wire_id = 1;
  template <class A> void serialize(A&) {}
};
struct bye {
  static constexpr dcp::message_type wire_id = 2;
  template <class A> void serialize(A&) {}
};
template <dcp::Env E> struct forgetful {
  using messages = dcp::wire::message_set<hello, bye>;
  explicit forgetful(E) {}
  void on_message(const dcp::address&, const hello&) {}  // no handler for bye
};

int main() {
  dcp::sim::simulator w(1);
  w.add_node([](dcp::sim::node_context& n) { n.add<forgetful<dcp::sim::env>>(1); });
}
