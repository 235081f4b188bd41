#!/usr/bin/env bash
# The README's quick start, run as written: tools/run.sh (with FANOUT_BIN, so no build) starts
# fanoutd and fanout-sink, then the README's quickstart block runs with its ports, data
# directory and binary path substituted; the sink must receive the event with its custom header
# and a signature.
# Usage: quickstart_test.sh SOURCE_DIR BIN_DIR   (BIN_DIR holds fanoutd/fanoutd and fanout-sink)
set -euo pipefail
src=$1
bin=$2
work=$(mktemp -d)
cleanup() {
  if [ -n "${runner:-}" ]; then kill -TERM "$runner" 2>/dev/null || true; wait "$runner" || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

data="$work/data"

# Port 0 for both: each binds its own and prints "listening on 127.0.0.1:PORT" (a port picked
# free by the test and handed on could be taken by a concurrent test meanwhile).
FANOUT_BIN="$bin" FANOUTD_PORT=0 FANOUT_SINK_PORT=0 FANOUTD_DATA="$data" \
  bash "$src/tools/run.sh" >"$work/run.out" 2>"$work/run.err" &
runner=$!

wait_for() {  # wait_for DESCRIPTION COMMAND...: polls a condition, 30 s at most
  local what=$1; shift
  for _ in $(seq 1 300); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    if ! kill -0 "$runner" 2>/dev/null; then break; fi
    sleep 0.1
  done
  echo "quickstart: timed out waiting for $what" >&2
  cat "$work/run.out" "$work/run.err" >&2
  exit 1
}
listening_ports() { grep -o '^listening on 127\.0\.0\.1:[0-9]*' "$work/run.out" | cut -d: -f2; }
two_ports() { [ "$(listening_ports | wc -l)" -ge 2 ]; }
wait_for "fanoutd and the sink to listen" two_ports
# Which is which: fanoutd's /healthz answers {"status":"ok"}, the sink answers anything "ok".
port= sink_port=
for p in $(listening_ports); do
  if curl -sf "http://127.0.0.1:$p/healthz" | grep -q '"status":"ok"'; then
    port=$p
  else
    sink_port=$p
  fi
done
[ -n "$port" ] && [ -n "$sink_port" ] || { echo "quickstart: ports not found" >&2; cat "$work/run.out" >&2; exit 1; }

# The block between the quickstart marker and the end of the next fenced block.
awk '/<!-- quickstart/{f=1} f&&/^```sh/{g=1; next} g&&/^```/{exit} g' "$src/README.md" |
  sed -e "s#127.0.0.1:8080#127.0.0.1:$port#g" -e "s#127.0.0.1:9090#127.0.0.1:$sink_port#g" \
      -e "s#fanoutd-data#$data#g" -e "s#build/release/tools/fanoutd/fanoutd#$bin/fanoutd/fanoutd#g" \
      >"$work/quickstart.sh"
grep -q 'apikey create' "$work/quickstart.sh"
bash -euo pipefail "$work/quickstart.sh" >"$work/quickstart.out" 2>&1 || {
  echo "quickstart: the block failed" >&2; cat "$work/quickstart.out" >&2; exit 1; }
grep -q '"status":"accepted","id":"evt-1"' "$work/quickstart.out" || {
  echo "quickstart: the event was not accepted" >&2; cat "$work/quickstart.out" >&2; exit 1; }

wait_for "the delivery" grep -q 'evt-1' "$data/sink.ndjson"
line=$(grep 'evt-1' "$data/sink.ndjson")
for h in '"x-token","s3cr3t"' '"x-partoo-attempt","1"' '"x-partoo-signature-v1"'; do
  grep -qi -- "$h" <<<"$line" || { echo "quickstart: header $h missing: $line" >&2; exit 1; }
done
wait_for "the sink's printed line" grep -q 'received POST /hook event_id=evt-1 attempt=1' "$work/run.out"

kill -TERM "$runner"
wait "$runner"
runner=
grep -q 'fanoutd stopped' "$work/run.err" || { echo "quickstart: no clean stop" >&2; cat "$work/run.err" >&2; exit 1; }
echo "quickstart: ok"
