// expect: dcp: check_linearizability needs a Model
#include "dcp/check.hpp"

struct counter {  // a step without the output parameter: not a Model
  using state = int;
  using input = int;
  using output = int;
  static state init() { return 0; }
  static std::optional<state> step(const state& s, const input& in) { return s + in; }
};

int main() { return static_cast<int>(dcp::check::check_linearizability<counter>({}).outcome); }
