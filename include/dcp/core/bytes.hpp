#pragma once
// Byte buffers as they cross the API: owned (`bytes`) and borrowed (`byte_view`).
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

namespace dcp {

using bytes = std::vector<std::uint8_t>;
using byte_view = std::span<const std::uint8_t>;

inline byte_view as_bytes(std::string_view s) noexcept {
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}
inline bytes to_bytes(std::string_view s) { auto v = as_bytes(s); return {v.begin(), v.end()}; }
inline std::string_view as_string(byte_view b) noexcept {
  return {reinterpret_cast<const char*>(b.data()), b.size()};
}

}  // namespace dcp
