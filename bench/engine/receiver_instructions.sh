#!/usr/bin/env bash
# What each client's requests cost the receiver, in instructions: nghttpd (h2c, one thread)
# runs under callgrind, pinned to CPU 1, once per client run; the client, on CPU 0, sends N
# requests with the same ~600 B body (fanout-load --print-body) over one connection with 100
# streams. The receiver's instructions per request, unlike its CPU time, do not move with the
# machine's load, so the ratio issue 16's goal 1(b) asks for (the receiver's cost per fanout
# request over its cost per h2load-hdr request) is read here without noise:
#
#   client             what it sends
#   h2load             the body alone (h2load -d)
#   h2load-hdr         the body with fanout's header names and values of the same length:
#                      user-agent, x-partoo-event-id (32 hex digits, the same on every request),
#                      x-partoo-attempt, content-type
#   fanout             fanout-load, the engine: each event its own id, as the contract wants,
#                      sent never-indexed (a literal the receiver decodes on every request, where
#                      h2load-hdr's repeated id is a one-byte reference to its HPACK table)
#
# A run's count includes nghttpd's start and the connection's set-up (a few million
# instructions, the same for every client: under 0.5 % of a run of 50,000 requests).
#
# Prints, and writes to OUT/receiver_instructions.md, a Markdown table: each client's median
# instructions per request and its ratio to h2load-hdr's.
#
# Usage (from the repository root):
#   bash bench/engine/receiver_instructions.sh [--events N] [--repeat R] [--smoke]
#                                              [--out DIR] [--build-dir DIR]
#   --events N     requests per run (default 50000; callgrind runs nghttpd some 30x slower)
#   --repeat R     runs of each client, interleaved (default 1: the counts barely move)
#   --smoke        N=2000, one run, results in the temp dir only: checks that everything works
#   --out DIR      where receiver_instructions.md goes (default bench/results; --smoke: none)
#   --build-dir D  release tree (default build/bench; configured here if it has no build.ninja)
#
# Needs: cmake, ninja, nghttpd and h2load (nghttp2-server, nghttp2-client), valgrind, taskset,
# timeout, python3. Exit status: 0 when every run completed with every request answered.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
ROOT=$PWD

# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
args=("$@")
if [[ " ${args[*]} " != *" --events "* ]]; then args+=(--events 50000); fi
if [[ " ${args[*]} " != *" --repeat "* ]]; then args+=(--repeat 1); fi
parse_bench_args receiver_instructions.sh "${args[@]}"

# Upper bounds of every run: nghttpd under callgrind serves a few thousand requests a second.
RUN_LIMIT_S=$((120 + N / 500))
CLIENT_TIMEOUT_S=$((RUN_LIMIT_S + 30))

require_tools cmake ninja nghttpd h2load valgrind taskset python3 timeout
build_targets "$BUILD_DIR" fanout-load
LOAD=${BUILT[fanout-load]}

make_scratch fanout-receiver-instructions
report_dirs
"$LOAD" --print-body >"$TMP/body.json"
mkdir -p "$TMP/htdocs"
printf 'ok' >"$TMP/htdocs/hook"
UA="fanout/$(sed -n 's/^project(fanout VERSION \([0-9.]*\).*/\1/p' CMakeLists.txt)"
SAME_ID=0123456789abcdef0123456789abcdef  # as long as the ids the engine makes
RUNS=$TMP/runs.jsonl
: >"$RUNS"
FAILED=0

# h2load_ok: true when h2load's output (TMP/client.log) says every request was answered 2xx.
h2load_ok() {
  local rps succeeded codes
  IFS='|' read -r rps succeeded codes < <(benchpy h2load "$TMP/client.log")
  [[ -n $rps && $succeeded == "$N" && $codes == "$N 2xx,"* ]]
}

# run CLIENT RUN: one nghttpd under callgrind, one run of CLIENT against it; appends
# {"tool", "run", "instructions", "requests", "ok"} to RUNS.
run() {
  local tool=$1 run=$2 port rc=0 url out="$TMP/callgrind.$1.$2"
  port=$(free_port)
  NGHTTPD_UNDER=(valgrind --tool=callgrind --callgrind-out-file="$out")
  start_nghttpd "$port" "$TMP/htdocs" "$TMP/nghttpd.$tool.$run.log"  # sets SERVER_PID
  # Under valgrind nghttpd takes a few seconds to listen: up to a minute.
  local i
  for ((i = 0; i < 6; i++)); do
    if wait_accepting "$port"; then break; fi
  done
  url=http://127.0.0.1:$port/hook
  case $tool in
    h2load)
      timeout "$CLIENT_TIMEOUT_S" taskset -c 0 h2load -n "$N" -c 1 -m 100 -t 1 \
        -d "$TMP/body.json" "$url" >"$TMP/client.log" 2>&1 || rc=$?
      h2load_ok || rc=1
      ;;
    h2load-hdr)
      timeout "$CLIENT_TIMEOUT_S" taskset -c 0 h2load -n "$N" -c 1 -m 100 -t 1 \
        -d "$TMP/body.json" -H 'content-type: application/json' -H "user-agent: $UA" \
        -H "x-partoo-event-id: $SAME_ID" -H 'x-partoo-attempt: 1' "$url" \
        >"$TMP/client.log" 2>&1 || rc=$?
      h2load_ok || rc=1
      ;;
    fanout)
      timeout "$CLIENT_TIMEOUT_S" taskset -c 0 "$LOAD" --url "$url" --events "$N" --conns 1 \
        --streams 100 --workers 1 --duration-max "$RUN_LIMIT_S" --json \
        >"$TMP/client.log" 2>&1 || rc=$?
      grep -q "\"delivered\":$N," "$TMP/client.log" || rc=1
      ;;
  esac
  stop_pid "$SERVER_PID"  # callgrind writes its counts as nghttpd exits
  if [[ $rc != 0 ]]; then
    log "receiver_instructions: $tool run $run failed (exit $rc):"
    tail -n 20 "$TMP/client.log" >&2
    FAILED=1
  fi
  python3 - "$out" "$tool" "$run" "$N" "$rc" >>"$RUNS" <<'PY'
import json, sys
path, tool, run, n, rc = sys.argv[1:]
total = None
try:
    with open(path) as f:
        for line in f:
            if line.startswith(("summary:", "totals:")):
                total = int(line.split()[1])
except OSError:
    pass
print(json.dumps({"tool": tool, "run": int(run), "requests": int(n),
                  "instructions": total, "ok": rc == "0" and total is not None}))
PY
}

log "receiver_instructions: $N requests a run, $REPEAT run(s) of each client, load $(loadavg)"
for ((r = 1; r <= REPEAT; r++)); do
  for tool in h2load h2load-hdr fanout; do
    run "$tool" "$r"
  done
done

python3 - "$RUNS" "$REPORT_DIR/receiver_instructions.md" "$N" "$REPEAT" <<'PY'
import json, sys
from benchlib import median
runs_path, report, n, repeat = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
runs = [json.loads(l) for l in open(runs_path) if l.strip()]
per = {}
for r in runs:
    if r["ok"]:
        per.setdefault(r["tool"], []).append(r["instructions"] / r["requests"])
med = {t: median(v) for t, v in per.items()}
base = med.get("h2load-hdr")
what = {
    "h2load": "the body alone",
    "h2load-hdr": "fanout's header names, values of the same length, the id the same each time",
    "fanout": "fanout-load: each event its own id, never-indexed",
}
lines = [f"| nghttpd under callgrind, h2c 1x100, {n:,} requests, median of {repeat} | "
         "instructions per request | / h2load-hdr |", "|---|---:|---:|"]
for tool in ("h2load", "h2load-hdr", "fanout"):
    if tool not in med:
        lines.append(f"| {tool} ({what[tool]}) | failed | |")
        continue
    ratio = f"{med[tool] / base:.3f}" if base else ""
    lines.append(f"| {tool} ({what[tool]}) | {med[tool]:,.0f} | {ratio} |")
text = "\n".join(lines) + "\n"
print(text, end="")
open(report, "w").write(text)
PY
[[ -n $OUT ]] && log "wrote $OUT/receiver_instructions.md"
exit "$FAILED"
