#pragma once
// Messages: a struct with a type id and a Cereal serialize function.
//
// Registering a message type is one line inside the struct:
//
//     struct ping {
//       static constexpr dcp::message_type wire_id = 1;   // <- the registration
//       std::uint64_t seq = 0;
//       template <class Archive> void serialize(Archive& ar) { ar(seq); }
//     };
//
// A protocol lists the messages it accepts, `using messages =
// dcp::wire::message_set<ping, pong>;`, and gets the codec, the limits and
// the metrics of every runtime. Ids are per protocol: two protocols may both
// have a message 1. An optional `static constexpr std::string_view wire_name`
// names the message in metrics and traces.
//
// Decoding is total: whatever the bytes, decode() returns a message or an
// error value and never throws, crashes or leaves state half-written.
#include <array>
#include <concepts>
#include <exception>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>

#include <cereal/cereal.hpp>
#include <cereal/types/array.hpp>
#include <cereal/types/map.hpp>
#include <cereal/types/optional.hpp>
#include <cereal/types/set.hpp>
#include <cereal/types/string.hpp>
#include <cereal/types/utility.hpp>
#include <cereal/types/vector.hpp>

#include "dcp/core/bytes.hpp"
#include "dcp/core/error.hpp"
#include "dcp/wire/archive.hpp"
#include "dcp/wire/frame.hpp"
#include "dcp/wire/limits.hpp"

namespace dcp::wire {

template <class M>
concept Message = std::default_initializable<M> && std::copy_constructible<M> && requires {
  { M::wire_id } -> std::convertible_to<message_type>;
} && cereal::traits::is_output_serializable<M, output_archive>::value &&
    cereal::traits::is_input_serializable<M, input_archive>::value;

/// "#id": the name of a message type that has no wire_name.
inline std::string numbered(message_type t) {
  std::string n = std::to_string(t);
  n.insert(n.begin(), '#');  // not "#" + ...: GCC 12 warns falsely (-Wrestrict) on that form
  return n;
}

/// The message's name for metrics and traces: wire_name if given, else "#id".
template <Message M> std::string message_name() {
  if constexpr (requires { std::string_view{M::wire_name}; })
    return std::string(M::wire_name);
  else
    return numbered(M::wire_id);
}

/// Appends the payload of `m` to `out`.
template <Message M> void encode(const M& m, bytes& out) {
  output_archive ar(out);
  ar(m);
}

/// Encodes a whole frame (header then payload) onto the end of `out`.
/// Returns frame_too_large (and leaves `out` as it was) past the limit.
template <Message M>
std::error_code encode_frame(protocol_id protocol, const M& m, bytes& out, const limits& lim = {}) {
  const std::size_t at = out.size();
  out.resize(at + header_size);
  encode(m, out);
  const std::size_t length = out.size() - at - header_size;
  if (length > lim.max_frame_size) {
    out.resize(at);
    return errc::frame_too_large;
  }
  write_header(out.data() + at, {protocol, static_cast<message_type>(M::wire_id), static_cast<std::uint32_t>(length)});
  return {};
}

/// Decodes `payload` into `m`. On error `m` may hold a partial value: decode
/// into a fresh object and use it only on success (message_set does).
template <Message M> std::error_code decode(byte_view payload, M& m) noexcept {
  try {
    input_archive ar(payload, decode_budget(payload.size()));
    ar(m);
    if (ar.remaining() != 0) return errc::trailing_bytes;
    return {};
  } catch (const std::exception&) {  // cereal::Exception, a user's validation, bad_alloc, length_error
    return errc::malformed_payload;
  }
}

template <Message... Ms> struct message_set {
  static constexpr std::size_t size = sizeof...(Ms);
  static constexpr std::array<message_type, sizeof...(Ms)> ids{static_cast<message_type>(Ms::wire_id)...};

  static constexpr bool unique_ids() {
    for (std::size_t i = 0; i < ids.size(); ++i)
      for (std::size_t j = i + 1; j < ids.size(); ++j)
        if (ids[i] == ids[j]) return false;
    return true;
  }
  static_assert(unique_ids(), "dcp: two messages in one message_set share a wire_id; give each its own number");

  template <class M> static constexpr bool contains = (std::is_same_v<M, Ms> || ...);

  static bool knows(message_type t) noexcept { return ((t == Ms::wire_id) || ...); }

  static std::string name_of(message_type t) {
    std::string n = numbered(t);
    (void)((t == Ms::wire_id ? (n = message_name<Ms>(), true) : false) || ...);  // void: an empty set is valid
    return n;
  }

  /// Decodes the payload as the message with id `t` and calls `f(message&&)`.
  /// Errors: unknown_message_type, malformed_payload, trailing_bytes; `f` is
  /// then not called. Exceptions thrown by `f` itself propagate.
  template <class F>
  static std::error_code dispatch([[maybe_unused]] message_type t, [[maybe_unused]] byte_view payload, F&& f) {
    std::error_code ec = errc::unknown_message_type;
    (void)((t == Ms::wire_id ? (ec = decode_and_call<Ms>(payload, f), true) : false) || ...);
    return ec;
  }

 private:
  template <class M, class F> static std::error_code decode_and_call(byte_view payload, F& f) {
    M m{};
    if (auto ec = decode(payload, m)) return ec;
    f(std::move(m));
    return {};
  }
};

template <class T> struct is_message_set : std::false_type {};
template <class... Ms> struct is_message_set<message_set<Ms...>> : std::true_type {};

}  // namespace dcp::wire
