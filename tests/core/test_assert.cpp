// DCP_ASSERT's promise (include/dcp/core/assert.hpp): a violated invariant
// prints where, the condition and the reason, runs on_assertion_failure, and
// aborts; a kept one does nothing, and its condition is evaluated once. The
// failing case runs in a forked child (a death test), whose exit and stderr
// the parent reads.
#include <doctest/doctest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <string>

#include "dcp/core/assert.hpp"

namespace test_assert {

namespace {

struct death {
  bool aborted = false;
  std::string stderr_text;
};

/// Runs f in a child process with stderr captured; how it ended.
template <class F>
death in_child(F f) {
  int pipe_fds[2];
  REQUIRE(::pipe(pipe_fds) == 0);
  std::fflush(nullptr);
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    ::dup2(pipe_fds[1], 2);
    ::close(pipe_fds[0]);
    ::close(pipe_fds[1]);
    std::signal(SIGABRT, SIG_DFL);
    f();
    ::_exit(0);  // the assertion held: no abort
  }
  ::close(pipe_fds[1]);
  death d;
  char buf[512];
  for (ssize_t n; (n = ::read(pipe_fds[0], buf, sizeof buf)) > 0;) d.stderr_text.append(buf, static_cast<std::size_t>(n));
  ::close(pipe_fds[0]);
  int status = 0;
  REQUIRE(::waitpid(child, &status, 0) == child);
  d.aborted = WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT;
  return d;
}

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
