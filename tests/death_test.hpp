#pragma once
// A death test: runs f in a forked child with stderr captured, and says
// whether it aborted (a failed DCP_ASSERT) and what it printed.
#include <doctest/doctest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <string>

namespace dcp::test {

struct death {
  bool aborted = false;
  std::string stderr_text;
};

/// Runs f in a child process with stderr captured; how it ended.
template <class F> death in_child(F f) {
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
  for (ssize_t n; (n = ::read(pipe_fds[0], buf, sizeof buf)) > 0;)
    d.stderr_text.append(buf, static_cast<std::size_t>(n));
  ::close(pipe_fds[0]);
  int status = 0;
  REQUIRE(::waitpid(child, &status, 0) == child);
  d.aborted = WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT;
  return d;
}

}  // namespace dcp::test
