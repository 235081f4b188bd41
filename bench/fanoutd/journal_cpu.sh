#!/usr/bin/env bash
# fanoutd's CPU per event, thread by thread, with its journal, at a steady rate through ingest:
# the fanoutd of --build-dir (A) against another fanoutd binary (--baseline FILE, B: a build of
# an earlier commit), in turn (A B A B ...), REPEAT times each, in one run. Where
# durable_ingest.sh measures the rate a burst is accepted at (which follows every thread's CPU,
# the load's included, and this machine's noise), this measures what each of fanoutd's threads
# spends per event, so that a change to one of them shows by itself.
#
#   fanout-sink (h2c) pinned to CPU 1; fanoutd serve --workers 1 (durable: the default) and
#   fanout-load --ingest (NDJSON batches of 500, one h2c connection, --rate R) on CPU 0;
#   10 organisations with one webhook each, unsigned (--no-partoo-signature), the budgets lifted
#   as in durable_ingest.sh. Each run: N events at R/s; once every one is delivered and the
#   journal's copy into SQLite has stopped moving, each thread's user + system time
#   (/proc/PID/task/*/stat) since the load began, divided by N. The threads: fanoutd (the loop:
#   HTTP, parsing, routing, the journal's accept), fanout-w0 (the worker), journal-log (the log's
#   writer and its syncs), journal-index (the copy into SQLite), journal-ckpt (SQLite's
#   checkpoints). fanout-sink and fanout-load are the same binaries for A and B.
#
# Prints, and writes to OUT/journal-cpu.md, a Markdown table: each thread's median µs per event
# for A and B and their ratio, the total, and the events/s accepted (which should be R for both).
#
# Usage: bash bench/fanoutd/journal_cpu.sh --baseline FANOUTD [--events N] [--rate R]
#        [--repeat R] [--no-history] [--smoke] [--out DIR] [--build-dir D]
#   --baseline FILE  the fanoutd binary to compare with (required; with --smoke it defaults to
#                    A's own binary)
#   --rate R         events/s offered (default 60000; a rate both can take, so that the runs
#                    compare CPU, not saturation)
#   --no-history     both with [durability] history_ms = 0
#   defaults: 300000 events, 3 repeats, build/bench
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
# shellcheck source=bench/lib.sh
source bench/lib.sh
BASELINE=""
RATE=60000
HISTORY_TOML=""
HISTORY="history kept"
args=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --baseline) BASELINE=$2; shift 2 ;;
    --rate) RATE=$2; shift 2 ;;
    --no-history) HISTORY_TOML=$'[durability]\nhistory_ms = 0\n'; HISTORY="no history"; shift ;;
    *) args+=("$1"); shift ;;
  esac
done
if [[ " ${args[*]} " != *" --events "* ]]; then args+=(--events 300000); fi
parse_bench_args journal_cpu "${args[@]}"
[[ $RATE =~ ^[1-9][0-9]*$ ]] || { echo "journal_cpu: --rate wants a positive integer" >&2; exit 2; }
build_daemon_tools
if [[ -z $BASELINE ]]; then
  [[ $SMOKE == 1 ]] || { echo "journal_cpu: --baseline FANOUTD is required" >&2; exit 2; }
  BASELINE=$FANOUTD
fi
[[ -x $BASELINE ]] || { echo "journal_cpu: --baseline $BASELINE is not an executable" >&2; exit 2; }
make_scratch fanout-journal-cpu
report_dirs
ORGS=10

# thread_ticks PID: "NAME TICKS" per thread name (threads of one name summed; the main thread,
# named after the binary, as "fanoutd").
thread_ticks() {
  local t name
  for t in /proc/"$1"/task/*; do
    name=$(cat "$t/comm")
    [[ ${t##*/} == "$1" ]] && name=fanoutd
    printf '%s %s\n' "$name" "$(awk '{ print $14 + $15 }' "$t/stat")"
  done | awk '{ a[$1] += $2 } END { for (k in a) print k, a[k] }'
}

# run WHICH BINARY: one daemon and one load; prints a JSON line.
run() {
  local which=$1 bin=$2 data="$TMP/data-$RANDOM"
  start_ingest_daemon "$bin" "$data" \
    "$(printf 'origin_max_in_flight = 0\norg_max_in_flight = 0\nmax_backlog = 0\n%s' "$HISTORY_TOML")" \
    --no-partoo-signature
  local dpid=$DPID sink_pid=$SINK_PID ingest=$INGEST_KEY dport=$DPORT
  thread_ticks "$dpid" >"$TMP/before"
  taskset -c 0 "$LOAD" --ingest "http://127.0.0.1:$dport" --key "$ingest" --events "$N" \
    --orgs "$ORGS" --rate "$RATE" --json >"$TMP/load.json"
  local delivered=0 frames="" last=-1 i
  for ((i = 0; i < 6000; i++)); do
    delivered=$(scrape_metric "$dport" 'fanout_outcomes_total{kind="delivered"}')
    [[ ${delivered:-0} -ge $N ]] && break
    sleep 0.05
  done
  # The copy into SQLite lags the deliveries: counted once it has stopped moving (the indexer
  # gathers for 50 ms between passes once caught up).
  for ((i = 0; i < 300; i++)); do
    frames=$(scrape_metric "$dport" fanout_journal_frames_indexed_total)
    [[ $frames == "$last" ]] && break
    last=$frames
    sleep 0.2
  done
  thread_ticks "$dpid" >"$TMP/after"
  stop_pid "$dpid"
  kill "$sink_pid"
  wait "$sink_pid" 2>/dev/null || true
  PIDS=()
  rm -rf "$data"
  [[ ${delivered:-0} -ge $N ]] || { log "journal_cpu: $which delivered ${delivered:-0} of $N"; exit 1; }
  python3 - "$which" "$N" "$CLK_TCK" "$TMP/before" "$TMP/after" "$TMP/load.json" <<'EOF'
import json, sys
which, n, hz, before, after, load = sys.argv[1:]
n, hz = int(n), int(hz)
def ticks(path):
    return {k: int(v) for k, v in (line.split() for line in open(path))}
a, b = ticks(before), ticks(after)
us = {k: (b[k] - a.get(k, 0)) / hz * 1e6 / n for k in b}
print(json.dumps({"which": which, "threads": us, "total": sum(us.values()),
                  "accepted_per_s": json.load(open(load))["accepted_per_s"]}))
EOF
}

log "journal_cpu: $N events at $RATE/s per run, $REPEAT runs each, $HISTORY; A $FANOUTD, B $BASELINE, load $(loadavg)"
: >"$TMP/runs.jsonl"
for ((r = 1; r <= REPEAT; r++)); do
  run A "$FANOUTD" | tee -a "$TMP/runs.jsonl" >&2
  run B "$BASELINE" | tee -a "$TMP/runs.jsonl" >&2
done
report=$(python3 - "$TMP/runs.jsonl" "$N" "$RATE" "$REPEAT" "$HISTORY" <<'EOF'
import sys
from benchlib import median, read_jsonl
runs = read_jsonl(sys.argv[1])
n, rate, repeat, history = sys.argv[2:6]
order = ["fanoutd", "fanout-w0", "journal-log", "journal-index", "journal-ckpt"]
names = order + sorted({k for r in runs for k in r["threads"]} - set(order))
def med(which, get):
    return median((get(r) for r in runs if r["which"] == which), float("nan"))
print(f"| {int(n):,} events at {int(rate):,}/s, {history}, medians of {repeat} | A (µs/event) | B (µs/event) | A / B |")
print("|---|---:|---:|---:|")
rows = [(name, lambda r, k=name: r["threads"].get(k, 0.0)) for name in names]
rows.append(("**total**", lambda r: r["total"]))
for label, get in rows:
    a, b = med("A", get), med("B", get)
    ratio = f"{a / b:.2f}" if b else "–"
    print(f"| {label} | {a:.2f} | {b:.2f} | {ratio} |")
a, b = med("A", lambda r: r["accepted_per_s"]), med("B", lambda r: r["accepted_per_s"])
print(f"| events/s accepted | {a:,.0f} | {b:,.0f} | {a / b:.2f} |")
EOF
)
printf '%s\n' "$report"
printf '%s\n' "$report" >"$REPORT_DIR/journal-cpu.md"
log "wrote $REPORT_DIR/journal-cpu.md"
