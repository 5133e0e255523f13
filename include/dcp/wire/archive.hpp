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
//     byte into a bool is undefined behaviour);
//   - a decode has an allocation budget: the containers it fills are charged
//     what they allocate (elements, map and set nodes, string bytes), and
//     past the budget the decode fails. A count bounded by the bytes left is
//     not enough: an element can take one byte on the wire and 24 or 72 in
//     memory (an empty address, a disengaged optional), so a 4 MiB frame of
//     them would become 100 MiB or more. dcp::wire::decode gives each frame
//     a small multiple of its size (limits.hpp, decode_budget).
// Failures throw cereal::Exception inside the decoder; dcp::wire::decode
// catches it at the boundary and returns an error value.
#include <bit>
#include <cstdint>
#include <cstring>
#include <deque>
#include <limits>
#include <map>
#include <set>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <cereal/cereal.hpp>

#include "dcp/core/bytes.hpp"

namespace dcp::wire {

namespace detail {
template <std::size_t N> inline void swap_each(std::uint8_t* data, std::size_t size) noexcept {
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

  template <std::size_t DataSize> void save_binary(const void* data, std::size_t size) {
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
  /// `budget`: bytes the containers this decode fills may allocate in all
  /// (unbounded for data this node wrote itself, such as its own storage).
  explicit input_archive(byte_view in, std::size_t budget = std::numeric_limits<std::size_t>::max())
      : InputArchive(this), in_(in), budget_(budget) {
    std::uint8_t little = 0;
    load_binary<1>(&little, 1);
    if (little > 1) throw cereal::Exception("bad endianness flag " + std::to_string(little));
    swap_ = (little == 1) != detail::host_is_little;
  }

  template <std::size_t DataSize> void load_binary(void* data, std::size_t size) {
    if (size > remaining())
      throw cereal::Exception("truncated: wanted " + std::to_string(size) + " bytes, " + std::to_string(remaining()) +
                              " left");
    if (size == 0) return;  // an empty container's data() may be null, which memcpy forbids
    std::memcpy(data, in_.data() + pos_, size);
    pos_ += size;
    if constexpr (DataSize > 1)
      if (swap_) detail::swap_each<DataSize>(static_cast<std::uint8_t*>(data), size);
  }

  std::size_t remaining() const noexcept { return in_.size() - pos_; }

  /// Charges `count` objects of `each` bytes to the budget, before they are
  /// allocated; throws past it. `count` is at most the bytes left (the size
  /// tag checked it), so the product cannot overflow.
  void charge(std::size_t count, std::size_t each) {
    const std::size_t n = count * each;
    if (n > budget_ - spent_)
      throw cereal::Exception("decoding would allocate more than its budget of " + std::to_string(budget_) + " bytes");
    spent_ += n;
  }
  std::size_t spent() const noexcept { return spent_; }

 private:
  byte_view in_;
  std::size_t pos_ = 0;
  bool swap_ = false;
  std::size_t budget_, spent_ = 0;
};

/// A field added at the end of a payload after the payload shipped: written
/// only when it differs from its default, read only when bytes remain. So
/// while it keeps its default the bytes are the older layout's, and older
/// and newer builds read each other's payloads; a non-default value is
/// trailing bytes to an older build (refused there, as before). Only for the
/// last field of a top-level payload (a message, or a stored value): nested,
/// "bytes remain" would read the next field's.
template <class Archive, class T> void trailing(Archive& ar, T& field) {
  if constexpr (std::is_same_v<Archive, input_archive>) {
    if (ar.remaining() > 0) ar(field);
  } else {
    if (!(field == T{})) ar(field);
  }
}

// ---- Cereal's customization points for the two archives ----

template <class T>
requires std::is_arithmetic_v<T>
inline void CEREAL_SAVE_FUNCTION_NAME(output_archive& ar, const T& t) {
  ar.template save_binary<sizeof(T)>(std::addressof(t), sizeof(t));
}

template <class T>
requires std::is_arithmetic_v<T> &&
    (!std::is_same_v<T, bool>)inline void CEREAL_LOAD_FUNCTION_NAME(input_archive& ar, T& t) {
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
inline void CEREAL_SERIALIZE_FUNCTION_NAME(Archive& ar, cereal::NameValuePair<T>& t) { ar(t.value); }

template <class T> inline void CEREAL_SAVE_FUNCTION_NAME(output_archive& ar, const cereal::SizeTag<T>& t) {
  ar(static_cast<cereal::size_type>(t.size));
}

template <class T> inline void CEREAL_LOAD_FUNCTION_NAME(input_archive& ar, cereal::SizeTag<T>& t) {
  cereal::size_type n = 0;
  ar(n);
  // Every element of a container takes at least one byte on the wire, so a
  // larger count is a lie: refuse it before the container allocates.
  if (n > ar.remaining())
    throw cereal::Exception("container size " + std::to_string(n) + " exceeds the " + std::to_string(ar.remaining()) +
                            " bytes left");
  t.size = static_cast<std::remove_reference_t<T>>(n);
}

template <class T> inline void CEREAL_SAVE_FUNCTION_NAME(output_archive& ar, const cereal::BinaryData<T>& bd) {
  using TT = std::remove_pointer_t<T>;
  ar.template save_binary<sizeof(TT)>(bd.data, static_cast<std::size_t>(bd.size));
}

template <class T> inline void CEREAL_LOAD_FUNCTION_NAME(input_archive& ar, cereal::BinaryData<T>& bd) {
  using TT = std::remove_pointer_t<T>;
  ar.template load_binary<sizeof(TT)>(bd.data, static_cast<std::size_t>(bd.size));
}

// ---- Containers, as Cereal writes them, with the allocation charged ----
//
// The same bytes as Cereal's own load functions (a size tag, then the
// elements; a map's key then value), chosen over them by overload resolution
// (these name the archive; Cereal's are templates on it). Only loading
// differs: each charges what it is about to allocate.

namespace detail {
/// What a node-based container allocates per element beyond the element:
/// the node's links and colour (libstdc++: three pointers and an int).
inline constexpr std::size_t node_overhead = 4 * sizeof(void*);
template <class T> inline constexpr bool bulk = std::is_arithmetic_v<T> && !std::is_same_v<T, bool>;
inline std::size_t load_count(input_archive& ar) {
  cereal::size_type n = 0;
  ar(cereal::make_size_tag(n));
  return static_cast<std::size_t>(n);
}
}  // namespace detail

template <class T, class A>
requires(!std::is_same_v<T, bool>) inline void CEREAL_LOAD_FUNCTION_NAME(input_archive& ar, std::vector<T, A>& v) {
  const std::size_t n = detail::load_count(ar);
  ar.charge(n, sizeof(T));
  v.clear();
  v.resize(n);
  if constexpr (detail::bulk<T>)
    ar(cereal::binary_data(v.data(), n * sizeof(T)));
  else
    for (auto& e : v) ar(e);
}

// Its own overload: Cereal's is as specialized as the one above, in the other parameter.
template <class A> inline void CEREAL_LOAD_FUNCTION_NAME(input_archive& ar, std::vector<bool, A>& v) {
  const std::size_t n = detail::load_count(ar);
  ar.charge(n, 1);
  v.assign(n, false);
  for (std::size_t i = 0; i < n; ++i) {
    bool b = false;
    ar(b);
    v[i] = b;
  }
}

template <class T, class A> inline void CEREAL_LOAD_FUNCTION_NAME(input_archive& ar, std::deque<T, A>& d) {
  const std::size_t n = detail::load_count(ar);
  ar.charge(n, sizeof(T));
  d.clear();
  d.resize(n);
  for (auto& e : d) ar(e);
}

template <class C, class Tr, class A>
requires detail::bulk<C>
inline void CEREAL_LOAD_FUNCTION_NAME(input_archive& ar, std::basic_string<C, Tr, A>& s) {
  const std::size_t n = detail::load_count(ar);
  ar.charge(n, sizeof(C));
  s.resize(n);
  ar(cereal::binary_data(s.data(), n * sizeof(C)));
}

template <class K, class V, class Cmp, class A>
inline void CEREAL_LOAD_FUNCTION_NAME(input_archive& ar, std::map<K, V, Cmp, A>& m) {
  const std::size_t n = detail::load_count(ar);
  ar.charge(n, sizeof(typename std::map<K, V, Cmp, A>::value_type) + detail::node_overhead);
  m.clear();
  auto hint = m.begin();
  for (std::size_t i = 0; i < n; ++i) {
    K key{};
    V value{};
    ar(key, value);  // Cereal's map item: the key, then the value
    hint = m.emplace_hint(hint, std::move(key), std::move(value));
  }
}

template <class K, class Cmp, class A>
inline void CEREAL_LOAD_FUNCTION_NAME(input_archive& ar, std::set<K, Cmp, A>& s) {
  const std::size_t n = detail::load_count(ar);
  ar.charge(n, sizeof(K) + detail::node_overhead);
  s.clear();
  auto hint = s.begin();
  for (std::size_t i = 0; i < n; ++i) {
    K key{};
    ar(key);
    hint = s.emplace_hint(hint, std::move(key));
  }
}

}  // namespace dcp::wire

CEREAL_REGISTER_ARCHIVE(dcp::wire::output_archive)
CEREAL_REGISTER_ARCHIVE(dcp::wire::input_archive)
CEREAL_SETUP_ARCHIVE_TRAITS(dcp::wire::input_archive, dcp::wire::output_archive)
