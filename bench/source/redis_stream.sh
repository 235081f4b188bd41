#!/usr/bin/env bash
# Events from a Redis stream through fanoutd to nghttpd, against fanout-load (the engine
# embedded, events generated in process) with the same receiver in the same run — the Redis
# source's speed goal: ≥ 0.8× fanout-load's deliveries/s, one instance, one worker.
#
#   nghttpd --no-tls -n 1 (h2c) pinned to CPU 1: the receiver of every delivery, one for the run;
#   redis-server pinned to CPU 1 (--redis-cpu): appendonly yes, appendfsync everysec (--fsync),
#     no RDB snapshots and no automatic AOF rewrite (neither may fork in the middle of a run);
#   fanoutd serve --workers 1 --no-durable --log-level warn, and fanout-load, on CPU 0.
#
# Each round runs, in turn:
#   (a) fanout-load --workers 1 --events N --orgs 10 (1 connection x 100 streams), unsigned;
#   (a') the same with --sign: fanoutd always signs its deliveries (Ed25519 on the worker, at the
#       first attempt), so this is the like-for-like baseline; (a) is the one the issue names;
#   (b) for each --batch B: a fresh redis-server; the same N envelopes ({"org_id":1..10,
#       "type":"business_updated","payload":<564 B>}, the 602 B delivery body of fanout-load)
#       XADDed to fanout:events with `redis-cli --pipe` (not timed); then fanoutd with
#       [source.redis] batch = B and the same pool (1 connection x 100 streams) as fanout-load,
#       10 webhooks (one per organisation) to the same nghttpd, made through the API once at
#       the start. Timed from fanoutd's "listening on" line (the source's first XREADGROUP goes
#       out on the loop's first turn, right after it; from the launch is recorded too) to the
#       moment XINFO GROUPS shows lag 0 and pending 0 (every entry read and acknowledged; asked
#       every 10 ms on one connection by a waiter pinned to CPU 1); deliveries/s = N / that
#       time. Then fanout_redis_entries_acknowledged_total and
#       fanout_outcomes_total{kind="delivered"} must be N.
#   For each --in-flight M (default 2000; "none" for no such run): one more Redis run at the first
#   batch with [source.redis] max_in_flight = M instead of the default 100,000.
#   With --always, one more Redis run per round at the first batch with appendfsync always.
#   With --unsigned, every fanoutd runs with [signing] no_partoo_signature = true: no Ed25519
#   per delivery, as fanout-load (a) sends them, so (b) / (a) is like for like (variants end in
#   "unsigned").
# CPU from /proc/PID/stat (utime + stime, 10 ms ticks): redis-server's over the XADD phase and
# over the consumption (and its write_bytes, the AOF), fanoutd's whole process and its main
# thread alone (the loop: Redis source, HTTP, metrics) from the launch to the last XACK,
# nghttpd's per run; fanout-load's own (getrusage) from its JSON. Redis's INFO commandstats
# (reset after the XADDs): calls and time per command (XREADGROUP, XACK, XCLAIM, ...).
#
# With --perf, one more Redis run at the end (not in the tables) with `perf record -e cpu-clock`
# attached to fanoutd (DWARF call graphs) and to redis-server: time per thread and library, the
# loop thread's inclusive and self costs, and Redis's top symbols go into the report.
# The binaries are copied to the temp directory first, so every round runs the same ones.
# Needs nghttpd, redis-server and redis-cli (Debian: nghttp2-server, redis-server, redis-tools),
# curl, python3, taskset, timeout; perf for --perf.
# Medians per variant, the ratios per round (b / a and b / a') and of the medians, with the load
# average at each run, are printed as Markdown and written to OUT/redis-stream.md.
#
# Usage: bash bench/source/redis_stream.sh [--events N] [--repeat R] [--batch B[,B...]]
#        [--in-flight M[,M...]|none] [--fsync everysec|always] [--always] [--unsigned]
#        [--redis-cpu 0|1]
#        [--perf] [--wait-quiet L] [--no-build] [--rev TEXT] [--smoke] [--out DIR]
#        [--build-dir D]
#   defaults: 200000 events, 3 rounds, --batch 500,2000, --in-flight 2000, --fsync everysec,
#   --redis-cpu 1, build/release (built with one job: CMAKE_BUILD_PARALLEL_LEVEL=1), OUT
#   bench/results.
#   --wait-quiet L: before the first round, wait (60 s at a time, 10 minutes at most) while the
#   1-minute load average is above L. --no-build: use the binaries already in the build dir.
#   --rev TEXT: what the binaries were built from, for the report (default: this tree's commit,
#   "+ uncommitted changes" when files outside bench/ differ from it).
#   --smoke: 2,000 events, one round, one batch; results in the temp dir unless --out.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
# shellcheck source=bench/lib.sh
source bench/lib.sh
# This script's runs and report (baseline, redis_run, perf_report, markdown_report):
# shellcheck source=bench/source/redis_stream_lib.sh
source bench/source/redis_stream_lib.sh

BATCHES=500,2000
IN_FLIGHT=2000
FSYNC=everysec
ALWAYS=0
UNSIGNED=0
REDIS_CPU=1
PERF=0
QUIET_LOAD=""
NO_BUILD=0
REV=""
rest=()
have_build_dir=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --batch) BATCHES=$2; shift 2 ;;
    --in-flight) IN_FLIGHT=$2; shift 2 ;;
    --fsync) FSYNC=$2; shift 2 ;;
    --always) ALWAYS=1; shift ;;
    --unsigned) UNSIGNED=1; shift ;;
    --redis-cpu) REDIS_CPU=$2; shift 2 ;;
    --perf) PERF=1; shift ;;
    --wait-quiet) QUIET_LOAD=$2; shift 2 ;;
    --no-build) NO_BUILD=1; shift ;;
    --rev) REV=$2; shift 2 ;;
    --build-dir) have_build_dir=1; rest+=("$1" "$2"); shift 2 ;;
    *) rest+=("$1"); shift ;;
  esac
done
[[ $have_build_dir == 1 ]] || rest+=(--build-dir build/release)
parse_bench_args redis_stream "${rest[@]}"
[[ $BATCHES =~ ^[1-9][0-9]*(,[1-9][0-9]*)*$ ]] ||
  { echo "redis_stream: --batch wants B[,B...], positive integers" >&2; exit 2; }
[[ $FSYNC == everysec || $FSYNC == always ]] ||
  { echo "redis_stream: --fsync wants everysec or always" >&2; exit 2; }
[[ $REDIS_CPU == 0 || $REDIS_CPU == 1 ]] ||
  { echo "redis_stream: --redis-cpu wants 0 or 1" >&2; exit 2; }
[[ $IN_FLIGHT == none || $IN_FLIGHT =~ ^[1-9][0-9]*(,[1-9][0-9]*)*$ ]] ||
  { echo "redis_stream: --in-flight wants M[,M...] (positive integers) or none" >&2; exit 2; }
IFS=, read -r -a BATCH_LIST <<<"$BATCHES"
IN_FLIGHT_LIST=()
[[ $IN_FLIGHT == none ]] || IFS=, read -r -a IN_FLIGHT_LIST <<<"$IN_FLIGHT"
if [[ $SMOKE == 1 ]]; then
  BATCH_LIST=("${BATCH_LIST[0]}")
  IN_FLIGHT_LIST=("${IN_FLIGHT_LIST[@]:0:1}")
fi

require_tools taskset timeout curl python3 nghttpd redis-server redis-cli
[[ $PERF == 0 ]] || require_tools perf
if [[ $NO_BUILD == 1 ]]; then
  for t in fanoutd fanout-load; do
    find_built "$BUILD_DIR" "$t" || { log "no $t in $BUILD_DIR (drop --no-build)"; exit 2; }
  done
else
  CMAKE_BUILD_PARALLEL_LEVEL=1 build_targets "$BUILD_DIR" fanoutd fanout-load
fi
FANOUTD=${BUILT[fanoutd]}
LOAD=${BUILT[fanout-load]}
make_scratch fanout-redis-stream
# Copies: every round runs the same binaries even if the build directory is rebuilt meanwhile.
mkdir -p "$TMP/bin"
cp "$FANOUTD" "$TMP/bin/fanoutd"
cp "$LOAD" "$TMP/bin/fanout-load"
FANOUTD=$TMP/bin/fanoutd
LOAD=$TMP/bin/fanout-load
ORGS=10
STREAM=fanout:events
RUN_LIMIT_S=$((120 + N / 2000))  # any one run: far above the slowest rate seen (~14k/s)

if [[ -n $QUIET_LOAD ]]; then
  for ((i = 0; i < 10; i++)); do
    awk -v l="$QUIET_LOAD" '{ exit !($1 > l) }' /proc/loadavg || break
    log "load $(loadavg) above $QUIET_LOAD: waiting 60 s ($((i + 1))/10)"
    sleep 60
  done
fi

# --- the receiver: one nghttpd for the whole run (a free port, another on a failed bind) -------
mkdir -p "$TMP/htdocs"
printf ok >"$TMP/htdocs/hook"
NPORT=""
for ((try = 0; try < 5; try++)); do
  port=$(free_port)
  start_nghttpd "$port" "$TMP/htdocs" "$TMP/nghttpd.log"
  NGHTTPD_PID=$SERVER_PID
  if wait_accepting "$port" && kill -0 "$NGHTTPD_PID" 2>/dev/null; then
    NPORT=$port
    break
  fi
  stop_pid "$NGHTTPD_PID"
done
[[ -n $NPORT ]] || { log "nghttpd would not start"; cat "$TMP/nghttpd.log" >&2; exit 1; }
HOOK=http://127.0.0.1:$NPORT/hook

# --- fanoutd's data directory: 10 webhooks (one per organisation) to nghttpd, made once -------
DATA=$TMP/data
taskset -c 0 "$FANOUTD" serve --listen 127.0.0.1:0 --data "$DATA" --insecure \
  --allow-subnet 127.0.0.1/32 --workers 1 --no-durable --log-level warn \
  >"$TMP/setup.out" 2>"$TMP/setup.err" &
pid=$!
PIDS+=("$pid")
wait_line "$TMP/setup.out" listening || { cat "$TMP/setup.err" >&2; exit 1; }
dport=$(listen_port "$TMP/setup.out")
add_webhooks "$dport" "$DATA" "$HOOK"
stop_pid "$pid"

# --- the stream's content: fanout-load's events as XADD commands (RESP, for redis-cli --pipe) --
"$LOAD" --print-body >"$TMP/body.json"
python3 - "$TMP/body.json" "$N" "$ORGS" "$STREAM" "$TMP/xadd.resp" <<'EOF'
import sys
body = open(sys.argv[1], "rb").read().strip()
prefix = b'{"type":"business_updated","payload":'
assert body.startswith(prefix) and body.endswith(b"}"), body[:80]
payload = body[len(prefix):-1]
n, orgs, stream = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4].encode()
def bulk(b):
    return b"$%d\r\n%s\r\n" % (len(b), b)
head = b"*5\r\n" + bulk(b"XADD") + bulk(stream) + bulk(b"*") + bulk(b"event")
with open(sys.argv[5], "wb") as f:
    for i in range(n):
        # fanout-load's EventSource: event i is for organisation i mod K + 1.
        f.write(head + bulk(b'{"org_id":%d,"type":"business_updated","payload":%s}'
                            % (i % orgs + 1, payload)))
EOF

# --- the rounds, interleaved --------------------------------------------------------------------
log "redis_stream: $N events per run, $REPEAT round(s), batches ${BATCH_LIST[*]}, fsync $FSYNC" \
  "$([[ $ALWAYS == 1 ]] && echo "(+ always)"), redis on CPU $REDIS_CPU, load $(loadavg)"
: >"$TMP/runs.jsonl"
for ((r = 1; r <= REPEAT; r++)); do
  log "round $r/$REPEAT (load $(loadavg))"
  baseline "$r" 0
  baseline "$r" 1
  for b in "${BATCH_LIST[@]}"; do redis_run "$r" "$b" "$FSYNC" -; done
  for m in "${IN_FLIGHT_LIST[@]}"; do redis_run "$r" "${BATCH_LIST[0]}" "$FSYNC" "$m"; done
  [[ $ALWAYS == 0 ]] || redis_run "$r" "${BATCH_LIST[0]}" always -
done
if [[ $PERF == 1 ]]; then
  log "profile run: batch ${BATCH_LIST[0]}, perf record on fanoutd and redis-server (load $(loadavg))"
  redis_run 0 "${BATCH_LIST[0]}" "$FSYNC" - perf
  perf_report
fi

rev=$REV
if [[ -z $rev ]]; then
  rev=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
  [[ -z $(git status --porcelain -- . ':!bench' 2>/dev/null) ]] || rev+=" + uncommitted changes"
fi
report=$(markdown_report "$rev")
[[ ! -f $TMP/perf.md ]] || report+=$'\n\n'$(cat "$TMP/perf.md")
printf '%s\n' "$report"
if [[ -n $OUT ]]; then
  mkdir -p "$OUT"
  printf '%s\n' "$report" >"$OUT/redis-stream.md"
  log "wrote $OUT/redis-stream.md"
fi
! grep -q '"ok": false' "$TMP/runs.jsonl"
