#pragma once
// What differs between the platforms dcp supports (README: Linux with GCC or
// Clang; macOS and the BSDs kept compiling, but untested), in one place.
#if defined(__unix__) || defined(__APPLE__)
#include <fcntl.h>
#include <unistd.h>
#endif

namespace dcp::detail {

/// A hint to fetch `p`'s cache line; nothing where the compiler has no builtin.
/// Inlined by force, and so must be every function that only calls it: GCC
/// drops a call to a function without visible effects (ipa-pure-const).
[[gnu::always_inline]] inline void prefetch([[maybe_unused]] const void* p) noexcept {
#if defined(__GNUC__) || defined(__clang__)
  __builtin_prefetch(p);
#endif
}

#if defined(__unix__) || defined(__APPLE__)
/// Makes what was written to `fd` durable; 0 on success, like fsync(2).
/// macOS: fsync() only hands the data to the drive, whose cache may still lose
/// it on power loss; F_FULLFSYNC asks the drive to flush (falling back to
/// fsync where the file system refuses it, e.g. some network file systems).
inline int sync_file(int fd) noexcept {
#if defined(__APPLE__)
  if (::fcntl(fd, F_FULLFSYNC) == 0) return 0;
  return ::fsync(fd);
#else
  return ::fsync(fd);
#endif
}

/// As sync_file, but the file's metadata other than its size may be left
/// behind (fdatasync(2) where POSIX synchronized I/O is there: one write less).
inline int sync_file_data(int fd) noexcept {
#if defined(__APPLE__)
  return sync_file(fd);
#elif defined(_POSIX_SYNCHRONIZED_IO) && _POSIX_SYNCHRONIZED_IO > 0
  return ::fdatasync(fd);
#else
  return ::fsync(fd);
#endif
}
#endif

}  // namespace dcp::detail
