#!/usr/bin/env bash
# What durable acceptance costs fanoutd's ingest: the same load against fanoutd with its journal
# (the default) and with --no-durable, in turn, REPEAT times each, in one run.
#
#   fanout-sink (h2c) pinned to CPU 1 — the receiver of every delivery;
#   fanoutd serve --workers 1 and fanout-load --ingest (NDJSON batches of 500, one h2c
#   connection, or HTTP/1.1 with --http1) on CPU 0, 10 organisations with one webhook each. Every event goes to the one
#   receiver, so the per-origin and per-organisation budgets and the backlog bound are lifted
#   (origin_max_in_flight = 0, org_max_in_flight = 0, max_backlog = 0 in the daemon's config):
#   with the defaults (100,000 in flight, a backlog of 65,536) the backlog reaches the bound
#   mid-run and ingest answers busy, and the run would measure the delivery rate rather than
#   acceptance. Refused-busy events are counted ("busy").
#
# For each run: events/s accepted (fanout-load), the ingest answer's p50/p99, seconds until
# every event was delivered (fanout_outcomes_total), group commits per second and bytes written
# to storage per event (/proc/PID/io write_bytes: journal, WAL and checkpoints). Then one run at
# half the durable median rate (--rate) for the p99 of the ingest answer under a steady load, and
# one --no-durable run at that same rate (the p99 of the set-up without the journal). These two
# send --steady-seconds (default 10) of events at that rate, not N: long enough to leave the
# burst that the log absorbs ahead of its database copy (max_log_backlog_bytes, 256 MiB, ~260,000
# events) and to measure what the journal sustains, and a p99 of more than a few hundred answers.
# A first round (one run of each mode) warms the machine up and is not counted. Medians and
# ratios are printed as a Markdown table (and written to OUT/durable-ingest.md).
#
# Usage: bash bench/fanoutd/durable_ingest.sh [--events N] [--repeat R] [--smoke] [--out DIR]
#        [--conns C]          (ingest connections, default 1)
#        [--http1]            (ingest over HTTP/1.1 instead of h2c)
#        [--unsigned]         (both daemons with --no-partoo-signature: no Ed25519 per event, so
#                              the runs compare the journal with the rest of ingest and delivery
#                              rather than with the signing worker)
#        [--no-history]       (both daemons with [durability] history_ms = 0: a final delivery's
#                              row is removed instead of kept for the history routes, so the
#                              runs weigh the log and the pending rows without the history copy)
#        [--steady-seconds S] (the half-rate runs' length, default 10)
#        [--build-dir D]      (defaults: 200000 events, 3 repeats, build/bench)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
# shellcheck source=bench/lib.sh
source bench/lib.sh
CONNS=1
STEADY_S=10
PROTO_ARGS=()
PROTO=h2c
SIGN_ARGS=()
SIGNED=signed
HISTORY_TOML=""
HISTORY="history kept"
args=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --conns) CONNS=$2; shift 2 ;;
    --steady-seconds) STEADY_S=$2; shift 2 ;;
    --http1) PROTO_ARGS=(--http1); PROTO=HTTP/1.1; shift ;;
    --unsigned) SIGN_ARGS=(--no-partoo-signature); SIGNED=unsigned; shift ;;
    --no-history) HISTORY_TOML=$'[durability]\nhistory_ms = 0\n'; HISTORY="no history"; shift ;;
    *) args+=("$1"); shift ;;
  esac
done
parse_bench_args durable_ingest "${args[@]}"
[[ $STEADY_S =~ ^[1-9][0-9]*$ ]] || { echo "durable_ingest: --steady-seconds wants a positive integer" >&2; exit 2; }
build_daemon_tools
make_scratch fanout-durable
ORGS=10

metric() { scrape_metric "$DPORT" "$1"; }

# run MODE RATE [EVENTS]: one daemon (MODE durable | volatile) and one load of EVENTS (default N)
# events; prints a JSON line.
run() {
  local mode=$1 rate=$2 events=${3:-$N} data="$TMP/data-$RANDOM" args=()
  [[ $mode == volatile ]] && args+=(--no-durable)
  start_ingest_daemon "$FANOUTD" "$data" \
    "$(printf 'origin_max_in_flight = 0\norg_max_in_flight = 0\nmax_backlog = 0\n%s' "$HISTORY_TOML")" \
    "${args[@]}" "${SIGN_ARGS[@]}"
  local dpid=$DPID sink_pid=$SINK_PID ingest=$INGEST_KEY
  local w0 c0 t0 t1 load_args=()
  [[ $rate != 0 ]] && load_args+=(--rate "$rate")
  load_args+=(--conns "$CONNS" "${PROTO_ARGS[@]}")
  w0=$(write_bytes "$dpid")
  c0=$(metric fanout_journal_commits_total)
  t0=$(date +%s.%N)
  taskset -c 0 "$LOAD" --ingest "http://127.0.0.1:$DPORT" --key "$ingest" --events "$events" \
    --orgs "$ORGS" --json "${load_args[@]}" >"$TMP/load.json"
  local delivered=0 i
  for ((i = 0; i < 6000; i++)); do
    delivered=$(metric 'fanout_outcomes_total{kind="delivered"}')
    [[ ${delivered:-0} -ge $events ]] && break
    sleep 0.05
  done
  t1=$(date +%s.%N)
  local w1 c1
  w1=$(write_bytes "$dpid")
  c1=$(metric fanout_journal_commits_total)
  kill "$dpid" "$sink_pid"
  wait "$dpid" "$sink_pid" 2>/dev/null || true
  PIDS=()
  rm -rf "$data"
  python3 - "$TMP/load.json" "$mode" "$events" "$w0" "$w1" "$c0" "$c1" "$t0" "$t1" "$delivered" <<'EOF'
import json, sys
load = json.load(open(sys.argv[1]))
mode, n, w0, w1, c0, c1, t0, t1, delivered = sys.argv[2:]
n = int(n)
elapsed = float(load["elapsed_s"]) or 1e-9
lat = load["request_latency_us"]
print(json.dumps({
    "mode": mode, "events": n, "accepted_per_s": load["accepted_per_s"], "busy": load["busy"],
    "p50_ms": lat["p50"] / 1000, "p99_ms": lat["p99"] / 1000, "max_ms": lat["max"] / 1000,
    "answers": load["requests"],
    "all_delivered_s": float(t1) - float(t0) if int(delivered) >= n else None,
    "commits_per_s": (int(c1) - int(c0)) / elapsed,
    "bytes_per_event": (int(w1) - int(w0)) / n}))
EOF
}

log "durable_ingest: $N events per run, $REPEAT runs per mode, $PROTO x $CONNS, $SIGNED, $HISTORY, load $(loadavg)"
# One round first that is not counted. On the VM this was measured on (DAMON's kdamond pages out
# physical memory left untouched for a minute), the first run after a pause pays for faulting
# memory back in, and that run was the durable one, which also fills the page cache with its
# log: before this round the first durable run of every script ran at 30-60 % of the later ones.
log "warm-up round (not counted)"
for mode in durable volatile; do
  run "$mode" 0 >"$TMP/line.json"
  sed "s/\"mode\": \"$mode\"/\"mode\": \"warm-up $mode\"/" "$TMP/line.json" >&2
done
: >"$TMP/runs.jsonl"
for ((r = 1; r <= REPEAT; r++)); do
  for mode in durable volatile; do
    # Not in a pipeline: run() must add its processes to this shell's PIDS (killed on exit).
    run "$mode" 0 >"$TMP/line.json"
    tee -a "$TMP/runs.jsonl" <"$TMP/line.json" >&2
  done
done
half=$(benchpy median "$TMP/runs.jsonl" accepted_per_s --times 0.5 mode=durable)
steady=$N
[[ $SMOKE == 1 ]] || steady=$(python3 -c "print(max($N, int(float('$half') * $STEADY_S)))")
log "steady load at $half events/s (half the durable median), $steady events"
run durable "$half" "$steady" >"$TMP/line.json"
sed 's/"mode": "durable"/"mode": "durable-half"/' "$TMP/line.json" | tee -a "$TMP/runs.jsonl" >&2
# The same rate without the journal: what the rest of the set-up (the loop sharing CPU 0 with the
# signing worker and the load) gives the p99 by itself.
run volatile "$half" "$steady" >"$TMP/line.json"
sed 's/"mode": "volatile"/"mode": "volatile-half"/' "$TMP/line.json" | tee -a "$TMP/runs.jsonl" >&2

report=$(python3 - "$TMP/runs.jsonl" "$N" "$REPEAT" "$PROTO" "$CONNS" "$SIGNED, $HISTORY" <<'EOF'
import sys
from benchlib import median, read_jsonl
runs = read_jsonl(sys.argv[1])
n, repeat, proto, conns, signed = sys.argv[2:7]
def med(mode, key):
    return median((r[key] for r in runs if r["mode"] == mode), float("nan"))
d, v = "durable", "volatile"
print(f"| {n} events, {proto} x {conns}, {signed}, medians of {repeat} | durable | --no-durable | durable / no-durable |")
print("|---|---:|---:|---:|")
for key, label, fmt in [("accepted_per_s", "events/s accepted", "{:,.0f}"),
                        ("all_delivered_s", "s until all delivered", "{:.2f}"),
                        ("p50_ms", "ingest answer p50 (ms, 500 events)", "{:.1f}"),
                        ("p99_ms", "ingest answer p99 (ms)", "{:.1f}"),
                        ("busy", "events answered busy (re-sent)", "{:,.0f}"),
                        ("commits_per_s", "group commits/s", "{:,.0f}"),
                        ("bytes_per_event", "bytes written per event", "{:,.0f}")]:
    a, b = med(d, key), med(v, key)
    ratio = ("–" if key in ("busy", "bytes_per_event", "commits_per_s") else
             f"{a / b:.2f}" if b and b == b and a == a else "–")
    print(f"| {label} | {fmt.format(a)} | {fmt.format(b)} | {ratio} |")
pairs = zip([r for r in runs if r["mode"] == d], [r for r in runs if r["mode"] == v])
per_round = [a["accepted_per_s"] / b["accepted_per_s"] for a, b in pairs if b["accepted_per_s"]]
print("\nPer round (durable run, then --no-durable run), events/s accepted durable / no-durable: "
      + ", ".join(f"{x:.2f}" for x in per_round) + ".")
h = [r for r in runs if r["mode"] == "durable-half"][0]
hv = [r for r in runs if r["mode"] == "volatile-half"][0]
print(f"\nSteady load at half the durable rate, {h['events']:,} events: "
      f"{h['accepted_per_s']:,.0f} events/s accepted; ingest answer p50 {h['p50_ms']:.1f} ms, "
      f"p99 {h['p99_ms']:.1f} ms, max {h['max_ms']:.1f} ms ({h['answers']:,} answers); "
      f"{h['commits_per_s']:,.0f} group commits/s, {h['bytes_per_event']:,.0f} bytes written per "
      f"event. The same load with --no-durable: {hv['accepted_per_s']:,.0f} events/s accepted; "
      f"p50 {hv['p50_ms']:.1f} ms, p99 {hv['p99_ms']:.1f} ms, max {hv['max_ms']:.1f} ms.")
EOF
)
printf '%s\n' "$report"
if [[ -n $OUT ]]; then
  mkdir -p "$OUT"
  printf '%s\n' "$report" >"$OUT/durable-ingest.md"
  log "wrote $OUT/durable-ingest.md"
fi
