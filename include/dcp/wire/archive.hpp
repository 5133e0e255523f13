#pragma once
// The payload archives: Cereal's portable-binary format, written straight into
// a byte vector and read from a bounded span.
//
// The bytes are exactly those of cereal::PortableBinaryOutputArchive (one
// endianness byte, then little-endian values, 64-bit size tags), so any Cereal
// program can read a dcp payload. Two things differ from Cereal's own archive,
// and both are why this file exists:
//   - no std::ostream/std::istream in the hot path (an encode is a few
//     memcpy's into a vector that is reused);
//   - the input is hostile-safe: every read is bounds-checked, a container's
//     declared size may not exceed the bytes left (so a forged size cannot
//     make us allocate gigabytes), and a bool must be 0 or 1 (reading any other
//     byte into a bool is undefined behaviour).
// Failures throw cereal::Exception inside the decoder; dcp::wire::decode
// catches it at the boundary and returns an error value.
#include <bit>
#include <cstdint>
#include <cstring>
#include <string>
#include <type_traits>

#include <cereal/cereal.hpp>

#include "dcp/core/bytes.hpp"

namespace dcp::wire {

namespace detail {
template <std::size_t N>
inline void swap_each(std::uint8_t* data, std::size_t size) noexcept {
  for (std::size_t i = 0; i + N <= size; i += N)
    for (std::size_t j = 0; j < N / 2; ++j) std::swap(data[i + j], data[i + N - 1 - j]);
}
inline constexpr bool host_is_little = std::endian::native == std::endian::little;
}  // namespace detail

class output_archive : public cereal::OutputArchive<output_archive, cereal::AllowEmptyClassElision> {
 public:
  /// Appends to `out` (which keeps its capacity between uses).
  explicit output_archive(bytes& out) : OutputArchive(this), out_(out) {
    const std::uint8_t little = 1;  // Cereal's endianness flag: the payload is little-endian
    out_.push_back(little);
  }

  template <std::size_t DataSize>
  void save_binary(const void* data, std::size_t size) {
    const auto* p = static_cast<const std::uint8_t*>(data);
    const std::size_t at = out_.size();
    out_.insert(out_.end(), p, p + size);
    if constexpr (!detail::host_is_little && DataSize > 1) detail::swap_each<DataSize>(out_.data() + at, size);
  }

 private:
  bytes& out_;
};

class input_archive : public cereal::InputArchive<input_archive, cereal::AllowEmptyClassElision> {
 public:
  explicit input_archive(byte_view in) : InputArchive(this), in_(in) {
    std::uint8_t little = 0;
    load_binary<1>(&little, 1);
    if (little > 1) throw cereal::Exception("bad endianness flag " + std::to_string(little));
    swap_ = (little == 1) != detail::host_is_little;
  }

  template <std::size_t DataSize>
  void load_binary(void* data, std::size_t size) {
    if (size > remaining())
      throw cereal::Exception("truncated: wanted " + std::to_string(size) + " bytes, " +
                              std::to_string(remaining()) + " left");
    if (size == 0) return;  // an empty container's data() may be null, which memcpy forbids
    std::memcpy(data, in_.data() + pos_, size);
    pos_ += size;
    if constexpr (DataSize > 1)
      if (swap_) detail::swap_each<DataSize>(static_cast<std::uint8_t*>(data), size);
  }

  std::size_t remaining() const noexcept { return in_.size() - pos_; }

 private:
  byte_view in_;
  std::size_t pos_ = 0;
  bool swap_ = false;
};

// ---- Cereal's customization points for the two archives ----

template <class T>
  requires std::is_arithmetic_v<T>
inline void CEREAL_SAVE_FUNCTION_NAME(output_archive& ar, const T& t) {
  ar.template save_binary<sizeof(T)>(std::addressof(t), sizeof(t));
}

template <class T>
  requires std::is_arithmetic_v<T> && (!std::is_same_v<T, bool>)
inline void CEREAL_LOAD_FUNCTION_NAME(input_archive& ar, T& t) {
  ar.template load_binary<sizeof(T)>(std::addressof(t), sizeof(t));
}

inline void CEREAL_LOAD_FUNCTION_NAME(input_archive& ar, bool& t) {
  std::uint8_t v = 0;
  ar.template load_binary<1>(&v, 1);
  if (v > 1) throw cereal::Exception("bool byte is " + std::to_string(v));
  t = v == 1;
}

template <class Archive, class T>
  requires std::is_same_v<Archive, output_archive> || std::is_same_v<Archive, input_archive>
inline void CEREAL_SERIALIZE_FUNCTION_NAME(Archive& ar, cereal::NameValuePair<T>& t) {
  ar(t.value);
}

template <class T>
inline void CEREAL_SAVE_FUNCTION_NAME(output_archive& ar, const cereal::SizeTag<T>& t) {
  ar(static_cast<cereal::size_type>(t.size));
}

template <class T>
inline void CEREAL_LOAD_FUNCTION_NAME(input_archive& ar, cereal::SizeTag<T>& t) {
  cereal::size_type n = 0;
  ar(n);
  // Every element of a container takes at least one byte on the wire, so a
  // larger count is a lie: refuse it before the container allocates.
  if (n > ar.remaining())
    throw cereal::Exception("container size " + std::to_string(n) + " exceeds the " +
                            std::to_string(ar.remaining()) + " bytes left");
  t.size = static_cast<std::remove_reference_t<T>>(n);
}

template <class T>
inline void CEREAL_SAVE_FUNCTION_NAME(output_archive& ar, const cereal::BinaryData<T>& bd) {
  using TT = std::remove_pointer_t<T>;
  ar.template save_binary<sizeof(TT)>(bd.data, static_cast<std::size_t>(bd.size));
}

template <class T>
inline void CEREAL_LOAD_FUNCTION_NAME(input_archive& ar, cereal::BinaryData<T>& bd) {
  using TT = std::remove_pointer_t<T>;
  ar.template load_binary<sizeof(TT)>(bd.data, static_cast<std::size_t>(bd.size));
}

}  // namespace dcp::wire

CEREAL_REGISTER_ARCHIVE(dcp::wire::output_archive)
CEREAL_REGISTER_ARCHIVE(dcp::wire::input_archive)
CEREAL_SETUP_ARCHIVE_TRAITS(dcp::wire::input_archive, dcp::wire::output_archive)
