#!/usr/bin/env bash
# Runs fanout's whole test suite on a fresh Debian 12 machine (as root, or with sudo):
# installs missing packages, then builds and runs ctest three times:
#   build/release  RelWithDebInfo     every label (unit, loop, integration, bench-smoke)
#   build/asan     ASan + UBSan       every label
#   build/tsan     ThreadSanitizer    label tsan (the threaded tests; builds only what they need,
#                                     the target fanout_tsan_targets)
# FANOUT_TEST_QUICK=1 runs the first build only. Extra arguments go to every ctest call
# (e.g. -L unit, -R routing).
# With CI set (the CI runner sets it), a test that cannot run for want of a peer program (curl,
# nghttpd, nginx, openssl, redis-server, node, chromium) fails instead of skipping.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash tools/install-deps.sh
# The browser tests' npm packages, exactly as the lock file pins them (tests/tools/fanoutd/web).
npm ci --prefix tests/tools/fanoutd/web --no-audit --no-fund --loglevel=error

jobs=$(nproc)
status=0

# suite <build> <ctest label or ""> <build target or ""> <cmake options...>
suite() {
  local name=$1 label=$2 target=$3
  shift 3
  echo "=== fanout tests: ${name} ===" >&2
  cmake -S . -B "build/${name}" -G Ninja -Wno-dev -DFANOUT_BUILD_TESTS=ON -DFANOUT_BUILD_BENCH=ON \
    -DFANOUT_BUILD_TOOLS=ON "$@" >/dev/null
  cmake --build "build/${name}" -j "${jobs}" ${target:+--target "${target}"}
  # --no-tests=error: a label or -R that matches nothing is a failure, not a green run.
  local args=(--test-dir "build/${name}" --output-on-failure --no-tests=error -j "${jobs}")
  [ -n "${label}" ] && args+=(-L "${label}")
  ctest "${args[@]}" "${EXTRA_CTEST_ARGS[@]}" || status=1
}

EXTRA_CTEST_ARGS=("$@")
suite release "" "" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFANOUT_SANITIZE=
if [ "${FANOUT_TEST_QUICK:-0}" != 1 ]; then
  # halt_on_error keeps a report from scrolling past; detect_leaks is LeakSanitizer (ASan's).
  export ASAN_OPTIONS=detect_leaks=1:halt_on_error=1:abort_on_error=1
  export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
  export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:suppressions=$PWD/tests/tsan.supp"
  suite asan "" "" -DCMAKE_BUILD_TYPE=Debug -DFANOUT_SANITIZE=address,undefined
  suite tsan tsan fanout_tsan_targets -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFANOUT_SANITIZE=thread
fi

if [ "${status}" -ne 0 ]; then
  echo "fanout tests: FAILED" >&2
else
  echo "fanout tests: all suites passed" >&2
fi
exit "${status}"
