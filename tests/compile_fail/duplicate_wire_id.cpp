// expect: dcp: two messages in one message_set share a wire_id
#include "dcp/wire.hpp"

struct a {
  static constexpr dcp::message_type wire_id = 1;
  template <class A> void serialize(A&) {}
};
struct b {
  static constexpr dcp::message_type wire_id = 1;
  template <class A> void serialize(A&) {}
};

int main() { return static_cast<int>(dcp::wire::message_set<a, b>::size); }
