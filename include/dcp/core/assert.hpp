#pragma once
// DCP_ASSERT(cond, "why"): a local invariant that cannot fail unless dcp has
// a bug. On failure it prints where, the condition and the reason to stderr,
// and aborts: a replica whose own state is inconsistent must not go on
// answering its peers (TigerBeetle's rule: assert the invariants, crash on a
// violation, rather than serve a corrupted state).
//
// What it is for, and what it is not for. A broken *local* invariant (commit
// index past the log's end, a leader without its own vote) is asserted. Input
// from the network is never asserted on: a malformed or hostile message from
// a peer is an expected event, refused with an error value and counted
// (env.count), so that no peer can crash a node by what it sends. Nor is a
// user's misuse: that is an error value or an exception.
//
// When it is on. The switch is DCP_ASSERTIONS (1 on, 0 off); undefined, it
// follows NDEBUG as <cassert> does: on in debug builds, off in release
// builds, where DCP_ASSERT(cond, why) compiles to nothing and `cond` is not
// evaluated (so an assertion may call an O(n) check without costing a user's
// release build anything). dcp's own tests, benchmarks, examples and
// sanitizer builds compile with DCP_ASSERTIONS=1 (the dcp_dev_flags target in
// CMakeLists.txt), so every simulated run checks them; a user keeps them in a
// release build by defining DCP_ASSERTIONS=1, as their simulation tests
// should. Define it the same way in every translation unit of a program.
#include <cstdio>
#include <cstdlib>

#ifndef DCP_ASSERTIONS
#ifdef NDEBUG
#define DCP_ASSERTIONS 0
#else
#define DCP_ASSERTIONS 1
#endif
#endif

namespace dcp {

/// Called, when set, after a failed DCP_ASSERT has printed and before it
/// aborts: a test prints what it was running (its seed), so that the failure
/// can be replayed (an abort skips the test framework's own reporting).
inline void (*on_assertion_failure)() noexcept = nullptr;

namespace detail {

/// Reports a violated invariant and aborts (out of line: the check stays small).
[[noreturn, gnu::cold, gnu::noinline]] inline void assertion_failed(const char* file, int line, const char* condition,
                                                                    const char* why) noexcept {
  std::fprintf(stderr, "%s:%d: dcp invariant violated: %s (%s)\n", file, line, condition, why);
  if (on_assertion_failure) on_assertion_failure();
  std::fflush(stderr);
  std::abort();
}

}  // namespace detail
}  // namespace dcp

#if DCP_ASSERTIONS
/// `why` must be a string literal: it says, in words, what should have held.
#define DCP_ASSERT(cond, why) \
  (static_cast<bool>(cond) ? void(0) : ::dcp::detail::assertion_failed(__FILE__, __LINE__, #cond, "" why))
#else
// Not evaluated, but still compiled (sizeof's operand is unevaluated): a
// variable used only in an assertion is not "unused", and a typo in one
// breaks every build, not only the tests'.
#define DCP_ASSERT(cond, why) static_cast<void>(sizeof(static_cast<bool>(cond) ? 1 : 0))
#endif
