#!/usr/bin/env bash
# fanoutd's memory with a million subscriptions and a million waiting retries (issue 16, goal 4:
# under 1 GiB resident).
#
#   fanout-sink answering 503 to everything, pinned to CPU 1;
#   fanoutd serve --workers 1 (durable, the default), pinned to CPU 0, its budgets raised to hold
#   them all (max_in_flight = 1,100,000, no per-organisation or per-origin budget) and a backoff
#   of an hour (retry.base_ms), so every delivery waits for its second attempt (the byte budgets,
#   per organisation and per origin, lifted too); max_backlog stays at its default (65,536), so
#   a burst waits at the door (503, re-sent by fanout-load after Retry-After), not in memory;
#   K organisations x 6 event types = 6K subscriptions (K = ceil(N / 6)), made through the API
#   (POST /v2/webhooks, 6 items a call; PROVIDER keys of 10,000 organisations each);
#   fanout-load --ingest publishes N events, one per subscription (event i is for subscription
#   i mod 6K), NDJSON batches of 500 over one h2c connection.
#
# Reported: fanoutd's VmRSS after start, after the subscriptions, and once every event waits
# (fanout_waiting_retries = N; read 2.5 s later, after fanoutd's heap trim), with VmHWM and
# fanout_heap_trims_total; fanout_waiting_retry_bytes; per subscription and per
# waiting retry. Two payload sizes: the default delivery body (602 bytes) and a small one.
#
# Usage: bash bench/fanoutd/million.sh [--events N] [--smoke] [--out DIR] [--build-dir D]
#        [--no-durable]  (fanoutd without its journal)
#        [--rate R]      (ingest at R events/s instead of as fast as fanoutd accepts)
#        [--payload B]   (one payload size, B bytes, instead of both)
#        (defaults: 1,000,000 events and subscriptions, build/bench; --smoke: 12,000)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
# shellcheck source=bench/lib.sh
source bench/lib.sh
args=()
DURABLE_ARGS=()
RATE_ARGS=()
PAYLOADS=(564 64)  # a 602-byte delivery body (fanout-load's default), and ~100 bytes
while [[ $# -gt 0 ]]; do
  case "$1" in
    --no-durable) DURABLE_ARGS=(--no-durable); shift ;;
    --rate) RATE_ARGS=(--rate "$2"); shift 2 ;;
    --payload) PAYLOADS=("$2"); shift 2 ;;
    *) args+=("$1"); shift ;;
  esac
done
have_events=0
for a in "${args[@]}"; do [[ $a == --events || $a == --smoke ]] && have_events=1; done
[[ $have_events == 0 ]] && args+=(--events 1000000)
parse_bench_args million "${args[@]}"
[[ $SMOKE == 1 ]] && N=12000
build_daemon_tools
make_scratch fanout-million
TYPES=business_created,business_updated,business_deleted,message_created,message_updated,lead_received
ORGS=$(((N + 5) / 6))
KEY_ORGS=10000  # organisations per PROVIDER key (one argument of the command line each)

rss_kb() { awk '/^VmRSS/ { print $2 }' "/proc/$1/status"; }
hwm_kb() { awk '/^VmHWM/ { print $2 }' "/proc/$1/status"; }

# run PAYLOAD_BYTES: prints one JSON line.
run() {
  local payload=$1 data="$TMP/data-$RANDOM"
  rm -f "$TMP/sink.out" "$TMP/d.out"  # the last run's: see wait_line in bench/lib.sh
  taskset -c 1 "$SINK" --listen 127.0.0.1:0 --quiet --status-mix 503:1 >"$TMP/sink.out" 2>&1 &
  local sink_pid=$!
  PIDS+=("$sink_pid")
  wait_line "$TMP/sink.out" listening
  local sport
  sport=$(listen_port "$TMP/sink.out")
  printf '%s\n' 'max_in_flight = 1100000' 'org_max_in_flight = 0' 'origin_max_in_flight = 0' \
    'org_max_in_flight_bytes = 0' 'origin_max_in_flight_bytes = 0' 'retry.base_ms = 3600000' \
    >"$TMP/fanoutd.toml"
  taskset -c 0 "$FANOUTD" serve --listen 127.0.0.1:0 --data "$data" --insecure \
    --config "$TMP/fanoutd.toml" --allow-subnet 127.0.0.1/32 --workers 1 --log-level warn \
    "${DURABLE_ARGS[@]}" >"$TMP/d.out" 2>"$TMP/d.err" &
  local dpid=$!
  PIDS+=("$dpid")
  wait_line "$TMP/d.out" listening || { cat "$TMP/d.err" >&2; exit 1; }
  local dport rss_start rss_subs rss_waiting hwm first keys=()
  dport=$(listen_port "$TMP/d.out")
  rss_start=$(rss_kb "$dpid")
  for ((first = 1; first <= ORGS; first += KEY_ORGS)); do
    local last=$((first + KEY_ORGS - 1))
    ((last > ORGS)) && last=$ORGS
    keys+=("$first:$last:$("$FANOUTD" apikey create --data "$data" --role PROVIDER \
      --orgs "$(seq -s, "$first" "$last")" | tail -n 1)")
  done
  local t0 t1
  t0=$(date +%s.%N)
  python3 - "$dport" "$TYPES" "http://127.0.0.1:$sport/hook" "${keys[@]}" <<'EOF'
import http.client, json, sys
port, types, url = int(sys.argv[1]), sys.argv[2].split(","), sys.argv[3]
c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
for spec in sys.argv[4:]:
    first, last, key = spec.split(":", 2)
    for org in range(int(first), int(last) + 1):
        body = json.dumps({"items": [{"url": url, "event_type": t} for t in types]})
        c.request("POST", f"/v2/webhooks?org_id={org}", body,
                  {"x-APIKey": key, "Content-Type": "application/json"})
        r = c.getresponse()
        answer = r.read()
        if r.status != 200:
            sys.exit(f"organisation {org}: {r.status} {answer[:300]!r}")
EOF
  t1=$(date +%s.%N)
  rss_subs=$(rss_kb "$dpid")
  local subs ingest
  subs=$(scrape_metric "$dport" fanout_subscriptions)
  ingest=$("$FANOUTD" apikey create --data "$data" --role INGEST --all-orgs | tail -n 1)
  taskset -c 0 "$LOAD" --ingest "http://127.0.0.1:$dport" --key "$ingest" --events "$N" \
    --orgs "$ORGS" --types 6 --payload-bytes "$payload" "${RATE_ARGS[@]}" --json \
    >"$TMP/load.json"
  local waiting=0 i
  for ((i = 0; i < 6000; i++)); do  # at most ~5 minutes
    waiting=$(scrape_metric "$dport" fanout_waiting_retries)
    [[ ${waiting:-0} -ge $N ]] && break
    sleep 0.05
  done
  if [[ ${waiting:-0} -lt $N ]]; then
    log "million: only ${waiting:-0} of $N events wait for their retry ($(cat "$TMP/load.json"))"
    exit 1
  fi
  # fanoutd gives free heap back within a second of a backlog draining (heap_trim.h): read
  # once that has had its turn, 2.5 s later (a benchmark; a test would wait on a condition).
  # --smoke only checks the wiring: no wait.
  [[ $SMOKE == 1 ]] || sleep 2.5
  rss_waiting=$(rss_kb "$dpid")
  local trims
  trims=$(scrape_metric "$dport" fanout_heap_trims_total)
  hwm=$(hwm_kb "$dpid")
  local anon file
  anon=$(awk '/^RssAnon/ { print $2 }' "/proc/$dpid/status")
  file=$(awk '/^RssFile/ { print $2 }' "/proc/$dpid/status")
  local bytes
  bytes=$(scrape_metric "$dport" fanout_waiting_retry_bytes)
  stop_pid "$dpid"
  stop_pid "$sink_pid"
  rm -rf "$data"
  python3 - "$TMP/load.json" "$payload" "$N" "$subs" "$waiting" "$rss_start" "$rss_subs" \
    "$rss_waiting" "$hwm" "$bytes" "$t0" "$t1" "$anon" "$file" "${trims:-0}" <<'EOF'
import json, sys
load = json.load(open(sys.argv[1]))
payload, n, subs, waiting, rss0, rss1, rss2, hwm, wbytes = (int(float(x or 0)) for x in sys.argv[2:11])
t0, t1 = float(sys.argv[11]), float(sys.argv[12])
anon, file, trims = int(sys.argv[13]), int(sys.argv[14]), int(float(sys.argv[15]))
print(json.dumps({
    "payload_bytes": payload, "events": n, "subscriptions": subs, "waiting": waiting,
    "accepted": load["accepted"], "busy": load["busy"], "subscribe_s": round(t1 - t0, 1),
    "rss_start_mib": rss0 / 1024, "rss_subscriptions_mib": rss1 / 1024,
    "rss_waiting_mib": rss2 / 1024, "hwm_mib": hwm / 1024,
    "rss_anon_mib": anon / 1024, "rss_file_mib": file / 1024, "heap_trims": trims,
    "per_subscription_bytes": (rss1 - rss0) * 1024 / max(subs, 1),
    "per_waiting_retry_bytes": (rss2 - rss1) * 1024 / max(waiting, 1),
    "waiting_retry_bytes_each": wbytes / max(waiting, 1)}))
EOF
}

log "million: $N subscriptions and events, load $(loadavg)"
: >"$TMP/runs.jsonl"
for payload in "${PAYLOADS[@]}"; do
  run "$payload" >"$TMP/line.json"
  tee -a "$TMP/runs.jsonl" <"$TMP/line.json" >&2
done
report=$(python3 - "$TMP/runs.jsonl" <<'EOF'
import json, sys
runs = [json.loads(l) for l in open(sys.argv[1])]
print("| payload | subscriptions | waiting retries | RSS after start | + subscriptions | + waiting retries (anonymous + file) | peak (VmHWM) | heap trims | per subscription | per waiting retry (RSS) | per waiting retry (blocks) |")
print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for r in runs:
    print(f"| {r['payload_bytes']} B | {r['subscriptions']:,} | {r['waiting']:,} | "
          f"{r['rss_start_mib']:.0f} MiB | {r['rss_subscriptions_mib']:.0f} MiB | "
          f"**{r['rss_waiting_mib']:.0f} MiB** ({r['rss_anon_mib']:.0f} + "
          f"{r['rss_file_mib']:.0f}) | {r['hwm_mib']:.0f} MiB | {r['heap_trims']} | "
          f"{r['per_subscription_bytes']:,.0f} B | {r['per_waiting_retry_bytes']:,.0f} B | "
          f"{r['waiting_retry_bytes_each']:,.0f} B |")
EOF
)
printf '%s\n' "$report"
if [[ -n $OUT ]]; then
  mkdir -p "$OUT"
  printf '%s\n' "$report" >"$OUT/million.md"
  log "wrote $OUT/million.md"
fi
