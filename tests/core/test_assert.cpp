// DCP_ASSERT's promise (include/dcp/core/assert.hpp): a violated invariant
// prints where, the condition and the reason, runs on_assertion_failure, and
// aborts; a kept one does nothing, and its condition is evaluated once. The
// failing case runs in a forked child (a death test), whose exit and stderr
// the parent reads.
#include <doctest/doctest.h>

#include <cstdio>
#include <string>

#include "../death_test.hpp"
#include "dcp/core/assert.hpp"

namespace test_assert {

namespace {

using dcp::test::in_child;

void report_seed() noexcept { std::fputs("replay with seed 42\n", stderr); }

}  // namespace

TEST_CASE("DCP_ASSERT: a violated invariant says where and why, runs the hook, and aborts") {
  static_assert(DCP_ASSERTIONS, "dcp's tests build with DCP_ASSERTIONS=1");
  const auto d = in_child([] {
    dcp::on_assertion_failure = report_seed;
    const int commit = 7, log_end = 5;
    DCP_ASSERT(commit <= log_end, "the commit index never passes the log's end");
  });
  CHECK(d.aborted);
  CHECK(d.stderr_text.find("test_assert.cpp:") != std::string::npos);
  CHECK(d.stderr_text.find("commit <= log_end") != std::string::npos);
  CHECK(d.stderr_text.find("the commit index never passes the log's end") != std::string::npos);
  CHECK(d.stderr_text.find("replay with seed 42") != std::string::npos);  // the hook ran before the abort
}

TEST_CASE("DCP_ASSERT: a kept invariant does nothing, and its condition is evaluated once") {
  const auto d = in_child([] {
    int evaluations = 0;
    DCP_ASSERT(++evaluations == 1, "evaluated once");
    if (evaluations != 1) std::abort();
  });
  CHECK_FALSE(d.aborted);
  CHECK(d.stderr_text.empty());
}

}  // namespace test_assert
