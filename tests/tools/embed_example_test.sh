#!/usr/bin/env bash
# Runs the README's embedding example (tools/examples/embed.cc) against a real fanout-sink:
# starts the sink on port 0, reads the port from its first stdout line, runs the example
# against it and checks that three events were delivered, then stops the sink.
#
# Usage: embed_example_test.sh FANOUT_SINK FANOUT_EMBED_EXAMPLE   (ctest passes both paths)
set -euo pipefail

SINK=${1:?usage: embed_example_test.sh FANOUT_SINK FANOUT_EMBED_EXAMPLE}
EXAMPLE=${2:?usage: embed_example_test.sh FANOUT_SINK FANOUT_EMBED_EXAMPLE}

TMP=$(mktemp -d "${TMPDIR:-/tmp}/fanout-embed-test.XXXXXX")
SINK_PID=""
cleanup() {
  if [[ -n $SINK_PID ]]; then
    kill "$SINK_PID" 2>/dev/null || true
    wait "$SINK_PID" 2>/dev/null || true
  fi
  rm -rf "$TMP"
}
trap cleanup EXIT

mkfifo "$TMP/sink.out"
"$SINK" --listen 127.0.0.1:0 --quiet >"$TMP/sink.out" 2>"$TMP/sink.err" &
SINK_PID=$!
# The first line ("listening on 127.0.0.1:PORT") arrives as soon as the socket listens; the rest
# of the sink's stdout (its summary at exit) goes to a file.
exec 3<"$TMP/sink.out"
if ! IFS= read -r -t 10 first <&3; then
  echo "embed_example_test: fanout-sink printed no listening line" >&2
  cat "$TMP/sink.err" >&2
  exit 1
fi
cat <&3 >"$TMP/sink.rest" &
PORT=${first##*:}
[[ $PORT =~ ^[0-9]+$ ]] || { echo "embed_example_test: unexpected line: $first" >&2; exit 1; }

rc=0
timeout 60 "$EXAMPLE" "http://127.0.0.1:$PORT/hook" >"$TMP/example.out" 2>&1 || rc=$?
cat "$TMP/example.out"
delivered=$(grep -c '^outcome delivered: ' "$TMP/example.out" || true)
SANITIZER_MARKERS='ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error:|WARNING: ThreadSanitizer'
if [[ $rc != 0 || $delivered != 3 ]] || grep -Eq "$SANITIZER_MARKERS" "$TMP/example.out"; then
  echo "embed_example_test: FAILED (exit $rc, $delivered delivered outcomes, want 3)" >&2
  exit 1
fi
# The sink stops on SIGTERM with exit 0 and no sanitizer report (a sanitized build writes its
# reports, LeakSanitizer's among them, at exit).
kill -TERM "$SINK_PID"
sink_rc=0
wait "$SINK_PID" || sink_rc=$?
SINK_PID=""
if [[ $sink_rc != 0 ]] || grep -Eq "$SANITIZER_MARKERS" "$TMP/sink.err"; then
  echo "embed_example_test: FAILED: fanout-sink exited $sink_rc after SIGTERM" >&2
  cat "$TMP/sink.err" >&2
  exit 1
fi
echo "embed_example_test: ok (3 delivered)"
