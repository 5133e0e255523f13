#pragma once
// Encoding of durable values with dcp's wire archives (Cereal portable
// binary): the same total, bounds-checked decoder as network input, since a
// damaged disk is as untrustworthy as a hostile peer.
#include <exception>
#include <system_error>

#include "dcp/core/bytes.hpp"
#include "dcp/core/error.hpp"
#include "dcp/wire/archive.hpp"
#include "dcp/wire/message.hpp"

namespace dcp::storage::detail {

template <class T> void encode_value(const T& v, bytes& out) {
  wire::output_archive ar(out);
  ar(v);
}

template <class T> std::error_code decode_value(byte_view in, T& v) noexcept {
  try {
    wire::input_archive ar(in);
    ar(v);
    return ar.remaining() == 0 ? std::error_code{} : make_error_code(errc::trailing_bytes);
  } catch (const std::exception&) { return errc::malformed_payload; }
}

}  // namespace dcp::storage::detail
