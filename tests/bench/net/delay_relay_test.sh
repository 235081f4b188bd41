#!/usr/bin/env bash
# fanout-delay-relay (bench/net/delay_relay.cc) against nghttpd: with D ms each way, no request
# can be answered in under 2 x D (h2load's fastest request time), every request is answered,
# the bytes each way are counted, and at SIGTERM it exits 0 with its JSON line. With D = 0 the
# same requests pass unchanged (an h2c conversation relayed byte for byte), and a server that
# closes the connection (nghttpd ending an HTTP/1.1 attempt) is passed on: the client returns.
# Usage: delay_relay_test.sh RELAY
set -euo pipefail
RELAY=$1
CI=${CI:-}
for tool in nghttpd h2load python3; do
  if ! command -v "$tool" >/dev/null; then
    echo "no $tool (apt-get install nghttp2-server nghttp2-client python3)"
    [[ -z $CI ]] && exit 77 || exit 1
  fi
done
TMP=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$TMP"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
# wait_for FILE PATTERN: polls (10 ms) until FILE has PATTERN, at most ~20 s.
wait_for() {
  for ((i = 0; i < 2000; i++)); do
    grep -q "$2" "$1" 2>/dev/null && return 0
    sleep 0.01
  done
  fail "no '$2' in $1: $(cat "$1")"
}

mkdir -p "$TMP/htdocs"
printf 'relayed-ok' >"$TMP/htdocs/hook"
PORT=$(free_port)
nghttpd --address=127.0.0.1 --no-tls -d "$TMP/htdocs" "$PORT" >"$TMP/nghttpd.log" 2>&1 &
PIDS+=("$!")
for ((i = 0; i < 2000; i++)); do
  (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
  sleep 0.01
done

# start_relay DELAY NAME: sets RPID, RPORT.
start_relay() {
  "$RELAY" --to "127.0.0.1:$PORT" --delay-ms "$1" --max-seconds 120 >"$TMP/$2.out" 2>"$TMP/$2.err" &
  RPID=$!
  PIDS+=("$RPID")
  wait_for "$TMP/$2.out" "listening on"
  RPORT=$(sed 's/.*://' "$TMP/$2.out")
}

# Bad arguments: usage, exit 2.
rc=0
"$RELAY" --delay-ms 5 >/dev/null 2>&1 || rc=$?
[[ $rc == 2 ]] || fail "no --to: exit $rc, want 2"

# D = 20: every request takes at least one 40 ms round trip.
start_relay 20 slow
h2load -n 20 -c 1 -m 1 "http://127.0.0.1:$RPORT/hook" >"$TMP/h2load-slow.txt" 2>&1 ||
  fail "h2load through the relay: $(cat "$TMP/h2load-slow.txt")"
grep -q "20 succeeded" "$TMP/h2load-slow.txt" || fail "not 20 answered: $(cat "$TMP/h2load-slow.txt")"
min_ms=$(awk '/time for request:/ { v = $4; if (v ~ /us$/) { sub("us", "", v); v /= 1000 }
  else if (v ~ /ms$/) { sub("ms", "", v) } else { sub("s", "", v); v *= 1000 }; print v }' \
  "$TMP/h2load-slow.txt")
awk -v m="$min_ms" 'BEGIN { exit !(m >= 40) }' || fail "fastest request ${min_ms} ms < 40 ms"
kill -TERM "$RPID"
wait "$RPID" || fail "relay exit $? at SIGTERM"
grep -q '"connections":1,' "$TMP/slow.err" || fail "stats: $(cat "$TMP/slow.err")"
python3 - "$TMP/slow.err" <<'PY' || fail "stats: $(cat "$TMP/slow.err")"
import json, sys
s = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
assert s["delay_ms"] == 20 and s["bytes_up"] > 0 and s["bytes_down"] > 0, s
PY

# D = 0: the same conversation, relayed at once; with 4 connections and 10 streams each.
start_relay 0 fast
h2load -n 400 -c 4 -m 10 -d "$TMP/htdocs/hook" "http://127.0.0.1:$RPORT/hook" \
  >"$TMP/h2load-fast.txt" 2>&1 || fail "h2load D=0: $(cat "$TMP/h2load-fast.txt")"
grep -q "400 succeeded" "$TMP/h2load-fast.txt" || fail "D=0: $(cat "$TMP/h2load-fast.txt")"
# A peer that closes: nghttpd ends an HTTP/1.1 conversation, the relay passes the end on and
# the client's read returns (no hang: bounded by the client's own timeout).
if command -v curl >/dev/null; then
  rc=0
  curl -s --http1.1 --max-time 10 -o /dev/null "http://127.0.0.1:$RPORT/hook" || rc=$?
  [[ $rc != 28 ]] || fail "curl timed out: the relay did not pass the server's close on"
fi
kill -TERM "$RPID"
wait "$RPID" || fail "relay exit $? at SIGTERM (D=0)"
python3 - "$TMP/fast.err" <<'PY' || fail "stats: $(cat "$TMP/fast.err")"
import json, sys
s = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
assert s["delay_ms"] == 0 and s["connections"] >= 4, s
PY
echo "delay_relay_test: ok (fastest request through D=20: ${min_ms} ms)"
