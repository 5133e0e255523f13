#pragma once
// dcp's version, for code that must know which dcp it was compiled against.
// The numbers here and CMake's project(dcp VERSION ...) are the same release:
// CMakeLists.txt refuses to configure when they differ, so the installed
// dcpConfigVersion.cmake and this header never disagree.
#include <string_view>

#define DCP_VERSION_MAJOR 0
#define DCP_VERSION_MINOR 1
#define DCP_VERSION_PATCH 0
/// One number that orders releases: major * 10000 + minor * 100 + patch.
#define DCP_VERSION (DCP_VERSION_MAJOR * 10000 + DCP_VERSION_MINOR * 100 + DCP_VERSION_PATCH)

#define DCP_VERSION_DETAIL_STR(x) #x
#define DCP_VERSION_DETAIL_XSTR(x) DCP_VERSION_DETAIL_STR(x)

namespace dcp {

struct version_info {
  int major, minor, patch;
  friend constexpr auto operator<=>(const version_info&, const version_info&) = default;
};

/// The version of the dcp headers in use, e.g. {0, 1, 0}.
inline constexpr version_info version{DCP_VERSION_MAJOR, DCP_VERSION_MINOR, DCP_VERSION_PATCH};

/// The same, as "major.minor.patch".
inline constexpr std::string_view version_string = DCP_VERSION_DETAIL_XSTR(
    DCP_VERSION_MAJOR) "." DCP_VERSION_DETAIL_XSTR(DCP_VERSION_MINOR) "." DCP_VERSION_DETAIL_XSTR(DCP_VERSION_PATCH);

}  // namespace dcp
