#pragma once
// The StateMachine concept: what a replicated log drives.
//
//   struct counter {
//     dcp::bytes apply(dcp::byte_view command);    // deterministic: same commands, same results
//     dcp::bytes snapshot() const;                 // the whole state, for log compaction
//     std::error_code restore(dcp::byte_view snapshot);  // replaces the state with a snapshot's
//   };
//
// restore() may return std::error_code (or void, if it cannot fail): a
// snapshot it refuses (bytes of another version, say) stops the replica
// loudly rather than letting its log run past a state it does not have. On
// an error it must leave its state as it was.
//
// apply() must be deterministic (no clocks, no randomness, no I/O): every
// replica applies the same commands in the same order and must reach the
// same state and return the same results. restore() receives only bytes that
// snapshot() produced on some replica (of this build, or another).
#include <concepts>
#include <system_error>

#include "dcp/core/bytes.hpp"

namespace dcp::consensus {

template <class M>
concept StateMachine = requires(M& m, const M& cm, byte_view in) {
  { m.apply(in) } -> std::convertible_to<bytes>;
  { cm.snapshot() } -> std::convertible_to<bytes>;
  m.restore(in);
};

}  // namespace dcp::consensus
