// The embedded ways (add_subdirectory, FetchContent) check CMake plumbing:
// dcp::dcp's include path, its dependencies' targets, and that nothing of
// dcp's own build settings leaks into the user's code. consumer.cpp, built
// the find_package way, checks the headers themselves under strict warnings;
// compiling it three times cost CI ~30 s for no check more.
#include <dcp/core/address.hpp>
#include <dcp/version.hpp>

#include <asio/io_service.hpp>

#ifdef ASIO_NO_DEPRECATED
#error "linking dcp must not put ASIO_NO_DEPRECATED on the user's code"
#endif
#ifdef DCP_ASSERTIONS
#error "dcp's own assertion switch must not reach the user's code"
#endif

int main() {
  static_assert(dcp::version.major == DCP_VERSION_MAJOR);
  asio::io_service legacy;  // the user's own Asio code may use the deprecated names
  bool ran = false;
  legacy.post([&] { ran = true; });
  legacy.run();
  return ran && dcp::address::sim(1) == dcp::address::sim(1) ? 0 : 1;
}
