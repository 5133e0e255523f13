#!/usr/bin/env bash
# The README's second command (and CI's): build everything and pass the whole
# test suite, then again under AddressSanitizer + UndefinedBehaviorSanitizer.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
jobs=$(nproc)
start=$SECONDS

echo "== release build, with g++: library, tests (under UBSan), examples, benchmarks"
# -Og: CI checks behaviour, not speed (benchmarks are built -O2 by users); it
# compiles the template-heavy suites in half the time of -O3, and 15-25% less
# than -O1 (user time, test_swim 8.2 s against 9.7-11.3, test_raft 11.0
# against 12.7-13.2), with suites as fast (test_delegation 6.2 s against 6.3).
# The benchmarks too (their own -O2 is for figures, not for a smoke run).
# The sanitizers are split between the passes: UBSan here, on the tests only
# (g++ compiles a suite 1.5x slower with it), ASan in the clang pass. With
# both there, clang compiled a suite 1.6-2.4x slower than with ASan alone,
# and that pass was the longest part of CI.
cmake -S . -B build-ci -DCMAKE_CXX_COMPILER=g++ -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_FLAGS_RELEASE="-Og -DNDEBUG" \
  -DDCP_BENCHMARK_FLAGS="" -DDCP_SANITIZE=undefined >/dev/null
cmake --build build-ci -j"$jobs"
echo "== tests ($((SECONDS - start)) s so far)"
(cd build-ci && UBSAN_OPTIONS=print_stacktrace=1 ctest --output-on-failure -j"$jobs" --timeout 600)

echo "== sanitizer build, with clang: tests under ASan ($((SECONDS - start)) s so far)"
# Two compilers for the price of two builds: the release pass is g++ (and
# builds the examples, benchmarks and the header check), this one is clang, so
# code that only one of them accepts fails CI (and the seeded suites, whose
# runs differ between the two compilers, try twice the schedules).
# -Og: with ASan + UBSan, -O1 takes 3.5x longer to compile than -Og (140 s
# against 40 s for one coord suite, g++) for little faster tests.
# -gline-tables-only: file and line in every sanitizer report, at half the
# compile time of full -g (59 s against 107 s for one suite, clang).
cmake -S . -B build-asan -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS="-Og" \
  -DCMAKE_CXX_FLAGS_DEBUG="-gline-tables-only" -DDCP_SANITIZE=address -DDCP_CHECK_HEADERS=OFF \
  -DDCP_BUILD_EXAMPLES=OFF -DDCP_BUILD_BENCHMARKS=OFF -DDCP_BUILD_TOOLS=OFF >/dev/null  # (dcpctl's test needs the examples)
cmake --build build-asan -j"$jobs"
(cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
  ctest --output-on-failure -j"$jobs" --timeout 900 -E "^(compile_fail_|downstream_)")  # compiler checks: once is enough
echo "== all green in $((SECONDS - start)) s"
