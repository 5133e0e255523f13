# FindAsio: standalone Asio (Debian: libasio-dev), header-only.
# Defines the imported target asio::asio (unless the project already has one).
# Only ASIO_STANDALONE is set on it: the user's own code may still use Asio's
# deprecated names (io_service, io_context::post).
find_path(ASIO_INCLUDE_DIR NAMES asio.hpp PATH_SUFFIXES include)
include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(Asio REQUIRED_VARS ASIO_INCLUDE_DIR
  REASON_FAILURE_MESSAGE "standalone Asio not found: on Debian, apt-get install libasio-dev")
if(Asio_FOUND AND NOT TARGET asio::asio)
  find_package(Threads REQUIRED)
  add_library(asio::asio INTERFACE IMPORTED)
  set_target_properties(asio::asio PROPERTIES
    INTERFACE_INCLUDE_DIRECTORIES "${ASIO_INCLUDE_DIR}"
    INTERFACE_COMPILE_DEFINITIONS "ASIO_STANDALONE"
    INTERFACE_LINK_LIBRARIES Threads::Threads)
endif()
mark_as_advanced(ASIO_INCLUDE_DIR)
