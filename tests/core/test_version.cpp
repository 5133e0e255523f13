#include <doctest/doctest.h>

#include <string>

#include "dcp/version.hpp"

namespace test_version {

// DCP_PROJECT_VERSION comes from CMake's project(dcp VERSION ...) (see
// tests/core/CMakeLists.txt): the header and the CMake package must name the
// same release, or find_package(dcp 0.2) would accept headers of 0.1.
TEST_CASE("version.hpp names the release CMake's project() declares") {
  CHECK(std::string(dcp::version_string) == DCP_PROJECT_VERSION);
  CHECK(dcp::version_string ==
        std::to_string(dcp::version.major) + "." + std::to_string(dcp::version.minor) + "." +
            std::to_string(dcp::version.patch));
  static_assert(DCP_VERSION == DCP_VERSION_MAJOR * 10000 + DCP_VERSION_MINOR * 100 + DCP_VERSION_PATCH);
  static_assert(dcp::version == dcp::version_info{DCP_VERSION_MAJOR, DCP_VERSION_MINOR, DCP_VERSION_PATCH});
  static_assert(dcp::version_info{0, 1, 0} < dcp::version_info{0, 2, 0});
  static_assert(dcp::version_info{0, 9, 9} < dcp::version_info{1, 0, 0});
}

}  // namespace test_version
