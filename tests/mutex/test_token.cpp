// Token-based: Suzuki–Kasami and Raymond.
#include "harness.hpp"

using namespace dcp;
using sk = mutex::suzuki_kasami<sim::env>;
using ray = mutex::raymond<sim::env>;

TEST_CASE("suzuki_kasami: one holder, all granted; 1000 seeds with reordering") {
  harness::fault_free_property<sk>(mutex::suzuki_kasami_config{}, false);
}
TEST_CASE("suzuki_kasami: a crash loses the token at worst; waiters time out, never two holders") {
  harness::crash_property<sk>(mutex::suzuki_kasami_config{.request_timeout = 2s}, false);
}
TEST_CASE("raymond: one holder, all granted; 1000 seeds on FIFO channels") {
  harness::fault_free_property<ray>(mutex::raymond_config{}, true);
  harness::fault_free_property<ray>(mutex::raymond_config{.arity = 3}, true);
}
TEST_CASE("raymond: a crash on the path makes waiters time out, never two holders") {
  harness::crash_property<ray>(mutex::raymond_config{.request_timeout = 2s}, true);
}
