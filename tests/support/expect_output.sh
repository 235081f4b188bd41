#!/usr/bin/env bash
# expect_output.sh PATTERN COMMAND [ARG...]: runs COMMAND, passes its output on, and succeeds only
# when COMMAND exits 0 AND its output (stdout and stderr) has a line matching PATTERN (grep -E).
# ctest's PASS_REGULAR_EXPRESSION ignores the exit status (an ASan abort or a UBSan exit 1 after
# the matched line would pass); this wrapper lets both decide.
set -uo pipefail
if [[ $# -lt 2 ]]; then
  echo "usage: expect_output.sh PATTERN COMMAND [ARG...]" >&2
  exit 2
fi
pattern=$1
shift
out=$(mktemp)
trap 'rm -f "$out"' EXIT
"$@" >"$out" 2>&1
rc=$?
cat "$out"
if [[ $rc -ne 0 ]]; then
  echo "expect_output: '$*' exited $rc" >&2
  exit 1
fi
if ! grep -Eq -- "$pattern" "$out"; then
  echo "expect_output: no line of the output of '$*' matches: $pattern" >&2
  exit 1
fi
