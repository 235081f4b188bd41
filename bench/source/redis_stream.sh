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

# wait_line, listen_port, stop_pid, forget_pid, scrape_metric, write_bytes: bench/lib.sh.
ticks() { server_ticks "$1"; }

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
provider=$("$FANOUTD" apikey create --data "$DATA" --role PROVIDER \
  --orgs "$(seq -s, 1 "$ORGS")" | tail -n 1)
for o in $(seq 1 "$ORGS"); do
  curl -sf -o /dev/null --max-time 10 -X POST "http://127.0.0.1:$dport/v2/webhooks?org_id=$o" \
    -H "x-APIKey: $provider" -H 'Content-Type: application/json' \
    -d "{\"items\":[{\"url\":\"$HOOK\",\"event_type\":\"business_updated\"}]}" ||
    { log "creating the webhook of organisation $o failed"; exit 1; }
done
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

# --- one run each -------------------------------------------------------------------------------

# baseline ROUND SIGN(0|1): fanout-load to nghttpd; appends a JSON line to runs.jsonl.
baseline() {
  local round=$1 sign=$2 args=() n0 n1 load rc=0
  [[ $sign == 1 ]] && args+=(--sign)
  load=$(loadavg)
  n0=$(ticks "$NGHTTPD_PID")
  timeout "$RUN_LIMIT_S" taskset -c 0 "$LOAD" --url "$HOOK" --events "$N" --orgs "$ORGS" \
    --workers 1 --conns 1 --streams 100 --duration-max "$RUN_LIMIT_S" --json "${args[@]}" \
    >"$TMP/load.json" 2>"$TMP/load.err" || rc=$?
  n1=$(ticks "$NGHTTPD_PID")
  python3 - "$TMP/load.json" "$round" "$sign" "$N" "$((n1 - n0))" "$CLK_TCK" "$load" "$rc" <<'EOF' | tee -a "$TMP/runs.jsonl" >&2
import json, sys
path, rnd, sign, n, nticks, hz, load, rc = sys.argv[1:]
try:
    j = json.load(open(path))
except Exception:
    j = {}
n = int(n)
print(json.dumps({
    "variant": "fanout-load" + (" --sign" if sign == "1" else ""), "round": int(rnd),
    "load": load, "ok": rc == "0" and j.get("delivered") == n,
    "deliveries_per_s": j.get("deliveries_per_s"), "elapsed_s": j.get("elapsed_s"),
    "fanout_cpu_us": j.get("cpu_us_per_event"),
    "publisher_cpu_us": j.get("publisher_cpu_us_per_event"),
    "nghttpd_cpu_us": int(nticks) / int(hz) * 1e6 / n}))
EOF
}

# start_redis DIR FSYNC: a redis-server on a free port (another port when the bind fails), pinned
# to REDIS_CPU; sets RPORT and REDIS_PID.
start_redis() {
  local dir=$1 fsync=$2 try port pid i
  mkdir -p "$dir"
  for ((try = 0; try < 5; try++)); do
    port=$(free_port)
    taskset -c "$REDIS_CPU" redis-server --port "$port" --bind 127.0.0.1 --dir "$dir" \
      --appendonly yes --appendfsync "$fsync" --save "" --auto-aof-rewrite-percentage 0 \
      --daemonize no --logfile "$dir/redis.log" >/dev/null 2>&1 &
    pid=$!
    PIDS+=("$pid")
    for ((i = 0; i < 500; i++)); do
      kill -0 "$pid" 2>/dev/null || break
      # Ours, not some other server that took the port: its pid answers.
      if redis-cli -p "$port" info server 2>/dev/null | grep -q "^process_id:$pid"; then
        RPORT=$port
        REDIS_PID=$pid
        return 0
      fi
      sleep 0.02
    done
    stop_pid "$pid"
  done
  log "redis-server would not start"
  tail -n 20 "$dir/redis.log" >&2 || true
  return 1
}

# redis_run ROUND BATCH FSYNC IN_FLIGHT [perf]: fresh Redis, N entries XADDed, fanoutd reads
# them all (IN_FLIGHT "-": the source's default max_in_flight).
redis_run() {
  local round=$1 batch=$2 fsync=$3 in_flight=$4 profile=${5:-} dir="$TMP/redis-$RANDOM" load out
  local rc=0
  start_redis "$dir" "$fsync"
  local r0 w0
  r0=$(ticks "$REDIS_PID")
  out=$(timeout 600 redis-cli -p "$RPORT" --pipe <"$TMP/xadd.resp" 2>&1) || rc=$?
  if [[ $rc != 0 ]] || ! grep -q "errors: 0, replies: $N" <<<"$out"; then
    log "XADD failed: $out"
    exit 1
  fi
  redis-cli -p "$RPORT" config resetstat >/dev/null  # INFO commandstats: the consumption only
  : >"$TMP/fanoutd.toml"
  [[ $UNSIGNED == 0 ]] || printf '[signing]\nno_partoo_signature = true\n\n' >"$TMP/fanoutd.toml"
  cat >>"$TMP/fanoutd.toml" <<TOML
[limits]
max_connections_per_origin = 1
max_streams_per_connection = 100

[source.redis]
url = "redis://127.0.0.1:$RPORT"
stream = "$STREAM"
consumer = "bench"
batch = $batch
TOML
  [[ $in_flight == - ]] || echo "max_in_flight = $in_flight" >>"$TMP/fanoutd.toml"
  load=$(loadavg)
  local r1 n1 dpid wpid i
  r1=$(ticks "$REDIS_PID")
  w0=$(write_bytes "$REDIS_PID")
  n1=$(ticks "$NGHTTPD_PID")
  : >"$TMP/d.out"
  rm -f "$TMP/dpid" "$TMP/ready"
  # The waiter, started first (so that its own start-up is not in the figures): once fanoutd's
  # pid is in $TMP/dpid it watches for the listening line (every 1 ms), then asks Redis every
  # 10 ms until every entry is read and acknowledged, reads every /proc figure at that moment,
  # then fanoutd's /metrics once. Prints one JSON object.
  taskset -c 1 python3 - "$TMP" "$N" "$REDIS_PID" "$NGHTTPD_PID" "$RUN_LIMIT_S" "$RPORT" \
    "$STREAM" >"$TMP/wait.json" <<'EOF' &
import json, os, socket, sys, time
from benchlib import scrape_metrics
tmp, n, rpid, npid, limit, rport, stream = sys.argv[1:]
n, limit = int(n), float(limit)
def resp(f):
    # One RESP reply from a file object: arrays, bulk and simple strings, integers, errors.
    line = f.readline()
    kind, rest = line[:1], line[1:-2]
    if kind == b"*":
        k = int(rest)
        return None if k < 0 else [resp(f) for _ in range(k)]
    if kind == b"$":
        k = int(rest)
        return None if k < 0 else f.read(k + 2)[:-2].decode()
    if kind == b":":
        return int(rest)
    if kind in (b"+", b"-"):
        return rest.decode()
    raise EOFError("redis closed the connection")
def command(sock, f, *args):
    sock.sendall(b"*%d\r\n" % len(args) + b"".join(
        b"$%d\r\n%s\r\n" % (len(a.encode()), a.encode()) for a in args))
    return resp(f)
hz = os.sysconf("SC_CLK_TCK")
def ticks(path):
    f = open(path).read().rsplit(")", 1)[1].split()
    return int(f[11]) + int(f[12])  # utime, stime (fields 14 and 15)
open(f"{tmp}/ready", "w").close()
deadline = time.time() + limit
while not os.path.exists(f"{tmp}/dpid") and time.time() < deadline:
    time.sleep(0.001)
dpid, t_launch = open(f"{tmp}/dpid").read().split()
t_launch = float(t_launch)
port = None
while port is None and time.time() < deadline:
    line = open(f"{tmp}/d.out").readline()
    if line.startswith("listening on") and line.endswith("\n"):
        port = int(line.rsplit(":", 1)[1])
    else:
        time.sleep(0.001)
t_listen = time.time()
start_ticks = ticks(f"/proc/{dpid}/stat")
res = {"t_listen_s": t_listen - t_launch, "startup_ticks": start_ticks}
# Done when the group has read every entry (lag 0) and holds none unacknowledged (pending 0):
# XINFO GROUPS every 10 ms on one connection (Redis's time for it is in its CPU figure; polling
# fanoutd's /metrics instead would put ~0.1 ms per poll on fanoutd's loop thread, on CPU 0).
sock = socket.create_connection(("127.0.0.1", int(rport)), timeout=5)
rf = sock.makefile("rb")
cut = port is None
while port is not None:
    if time.time() > deadline:
        cut = True
        break
    groups = command(sock, rf, "XINFO", "GROUPS", stream)
    info = {}
    for g in groups if isinstance(groups, list) else []:
        d = dict(zip(g[::2], g[1::2]))
        if d.get("name") == "fanout":
            info = d
    if info.get("lag") == 0 and info.get("pending") == 0:
        break
    time.sleep(0.01)
t_done = time.time()
tasks = {}
for tid in os.listdir(f"/proc/{dpid}/task"):
    try:
        tasks[tid] = ticks(f"/proc/{dpid}/task/{tid}/stat")
    except OSError:
        pass
w = 0
for l in open(f"/proc/{rpid}/io"):
    if l.startswith("write_bytes"):
        w = int(l.split()[1])
metrics = scrape_metrics(port) if port is not None else {}
acked = int(metrics.get("fanout_redis_entries_acknowledged_total", 0))
res.update({
    "cut": cut, "acked": acked, "t_done_s": t_done - t_launch,
    "fanoutd_ticks": ticks(f"/proc/{dpid}/stat"), "main_ticks": tasks.get(dpid, 0),
    "threads": len(tasks), "redis_ticks": ticks(f"/proc/{rpid}/stat"),
    "nghttpd_ticks": ticks(f"/proc/{npid}/stat"), "redis_write_bytes": w, "hz": hz,
    "read": int(metrics.get("fanout_redis_entries_read_total", 0)),
    "pauses": int(metrics.get("fanout_redis_read_pauses_total", 0)),
    "delivered": int(metrics.get('fanout_outcomes_total{kind="delivered"}', 0))})
print(json.dumps(res))
EOF
  wpid=$!
  PIDS+=("$wpid")
  for ((i = 0; i < 3000; i++)); do
    [[ -f $TMP/ready ]] && break
    sleep 0.01
  done
  local t_launch
  t_launch=$(date +%s.%N)
  taskset -c 0 "$FANOUTD" serve --config "$TMP/fanoutd.toml" --listen 127.0.0.1:0 \
    --data "$DATA" --insecure --allow-subnet 127.0.0.1/32 --workers 1 --no-durable \
    --log-level warn >"$TMP/d.out" 2>"$TMP/d.err" &
  dpid=$!
  PIDS+=("$dpid")
  echo "$dpid $t_launch" >"$TMP/dpid.new"
  mv "$TMP/dpid.new" "$TMP/dpid"
  local perf_pids=()
  if [[ -n $profile ]]; then
    wait_line "$TMP/d.out" listening || { tail -n 20 "$TMP/d.err" >&2; exit 1; }
    echo "$dpid" >"$TMP/perf-dpid"
    perf record -q -e cpu-clock -F 499 --call-graph dwarf,16384 -p "$dpid" \
      -o "$TMP/perf-fanoutd.data" >/dev/null 2>&1 &
    perf_pids+=("$!")
    perf record -q -e cpu-clock -F 1999 -p "$REDIS_PID" -o "$TMP/perf-redis.data" \
      >/dev/null 2>&1 &
    perf_pids+=("$!")
    PIDS+=("${perf_pids[@]}")
  fi
  wait "$wpid" || rc=$?
  forget_pid "$wpid"
  local p
  for p in "${perf_pids[@]}"; do
    kill -INT "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
    forget_pid "$p"
  done
  # The delivered count may trail the last XACK by nothing (outcomes come first); read it again.
  local delivered groups
  delivered=$(scrape_metric "$(listen_port "$TMP/d.out")" 'fanout_outcomes_total{kind="delivered"}')
  groups=$(redis-cli -p "$RPORT" xinfo groups "$STREAM" | tr '\n' ' ')
  redis-cli -p "$RPORT" info commandstats | tr -d '\r' >"$TMP/cmdstats.txt"
  stop_pid "$dpid"
  stop_pid "$REDIS_PID"
  rm -rf "$dir"
  [[ -z $profile ]] || return 0
  UNSIGNED=$UNSIGNED python3 - "$TMP/wait.json" "$round" "$batch" "$fsync" "$N" "$load" "$rc" "$r0" "$r1" "$w0" \
    "$n1" "${delivered:-0}" "$groups" "$in_flight" "$TMP/cmdstats.txt" <<'EOF' |
import json, os, re, sys
(path, rnd, batch, fsync, n, load, rc, r0, r1, w0, n1, delivered, groups, in_flight,
 cmdstats) = sys.argv[1:]
n = int(n)
try:
    w = json.load(open(path))
except Exception:
    w = {"cut": True}
hz = w.get("hz", 100)
us = lambda t: t / hz * 1e6 / n
g = groups.split()
def field(name):
    # redis-cli's raw output (not a terminal): name, value, name, value, ... one a line.
    for i in range(0, len(g) - 1, 2):
        if g[i] == name:
            return g[i + 1]
    return None
pending, lag = field("pending"), field("lag")
# cmdstat_xack:calls=4576,usec=253365,usec_per_call=55.37,... -> {"xack": [calls, usec]}
cmd = {}
for l in open(cmdstats):
    m = re.match(r"cmdstat_([a-z|]+):calls=(\d+),usec=(\d+)", l)
    if m and m.group(1) in ("xreadgroup", "xack", "xclaim", "xautoclaim", "hmget", "hset",
                            "hdel", "multi", "exec", "xinfo|groups"):
        cmd[m.group(1)] = [int(m.group(2)), int(m.group(3))]
ok = (rc == "0" and not w.get("cut") and w.get("acked", 0) >= n and int(delivered) == n
      and pending == "0" and lag == "0")
t_read = w["t_done_s"] - w["t_listen_s"] if "t_done_s" in w else None
print(json.dumps({
    "variant": f"redis batch {batch}" + ("" if in_flight == "-" else f" max_in_flight {in_flight}")
               + ("" if fsync == "everysec" else f" fsync {fsync}")
               + (" unsigned" if os.environ.get("UNSIGNED") == "1" else ""),
    "round": int(rnd), "batch": int(batch), "fsync": fsync, "load": load, "ok": ok,
    "max_in_flight": None if in_flight == "-" else int(in_flight),
    "commands": cmd,
    "deliveries_per_s": n / t_read if t_read else None,
    "deliveries_per_s_from_launch": n / w["t_done_s"] if "t_done_s" in w else None,
    "elapsed_s": t_read, "startup_s": w.get("t_listen_s"),
    "redis_xadd_cpu_us": us(int(r1) - int(r0)),
    "redis_cpu_us": us(w.get("redis_ticks", 0) - int(r1)) if "redis_ticks" in w else None,
    "redis_aof_bytes": (w.get("redis_write_bytes", 0) - int(w0)) / n,
    "fanoutd_cpu_us": us(w["fanoutd_ticks"]) if "fanoutd_ticks" in w else None,
    "fanoutd_run_cpu_us": us(w["fanoutd_ticks"] - w["startup_ticks"]) if "fanoutd_ticks" in w else None,
    "main_cpu_us": us(w["main_ticks"]) if "main_ticks" in w else None,
    "other_cpu_us": us(w["fanoutd_ticks"] - w["main_ticks"]) if "main_ticks" in w else None,
    "nghttpd_cpu_us": us(w.get("nghttpd_ticks", 0) - int(n1)) if "nghttpd_ticks" in w else None,
    "read_pauses": w.get("pauses"), "delivered": int(delivered),
    "group_pending": pending, "group_lag": lag}))
EOF
    tee -a "$TMP/runs.jsonl" >&2
}

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
  # The loop thread is fanoutd's pid; the worker is the other thread that used the most CPU.
  dpid=$(cat "$TMP/perf-dpid")
  wtid=$(perf report -i "$TMP/perf-fanoutd.data" --stdio --no-children --sort pid -g none \
    2>/dev/null | awk -v m="$dpid" '$1 ~ /%$/ && !w { split($2, t, ":"); if (t[1] != m) w = t[1] }
                         END { print w }')
  name_threads() { sed -e "s/ $dpid:fanoutd/ loop:fanoutd/" -e "s/ ${wtid:-none}:fanoutd/ worker:fanoutd/"; }
  # top N: the first N lines with a percentage (reads all of its input: no SIGPIPE upstream).
  top() { awk -v n="$1" '/%/ && !/^#/ && c < n { print; c++ }'; }
  {
    echo "### perf: fanoutd during one run (batch ${BATCH_LIST[0]}, default max_in_flight; cpu-clock"
    echo "499 Hz with DWARF call graphs, which slow it down: its rate is not in the tables)"
    echo
    echo "Self time by thread and library, % of fanoutd's samples:"
    echo
    echo '```'
    perf report -i "$TMP/perf-fanoutd.data" --stdio --no-children --sort pid,dso -g none \
      --percent-limit 1 2>/dev/null | top 14 | name_threads
    echo '```'
    echo
    echo "The loop thread (Redis source, HTTP, metrics), inclusive time (children), % of the"
    echo "thread's samples (nested frames can add up to more than 100 %):"
    echo
    echo '```'
    perf report -i "$TMP/perf-fanoutd.data" --stdio --children --tid "$dpid" \
      --percentage relative --sort sym -g none --percent-limit 2.5 2>/dev/null |
      awk '!/\] 0x/' | top 45
    echo '```'
    echo
    echo "The loop thread, self time, % of the thread's samples (in this VM, kernel time shows up"
    echo "mostly as pvm_irq_enable: syscalls and page faults end there):"
    echo
    echo '```'
    perf report -i "$TMP/perf-fanoutd.data" --stdio --no-children --tid "$dpid" \
      --percentage relative --sort dso,sym -g none --percent-limit 1 2>/dev/null | top 25
    echo '```'
    echo
    echo "### perf: redis-server during the same run (cpu-clock 1999 Hz, self time, % of its samples;"
    echo "the redis-server binary shows as redis-check-rdb, the same file)"
    echo
    echo '```'
    perf report -i "$TMP/perf-redis.data" --stdio --no-children --sort pid,dso -g none \
      --percent-limit 2 2>/dev/null | top 8
    echo
    perf report -i "$TMP/perf-redis.data" --stdio --no-children --sort sym -g none \
      --percent-limit 1 2>/dev/null | top 30
    echo '```'
  } >"$TMP/perf.md"
fi

rev=$REV
if [[ -z $rev ]]; then
  rev=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
  [[ -z $(git status --porcelain -- . ':!bench' 2>/dev/null) ]] || rev+=" + uncommitted changes"
fi
report=$(python3 - "$TMP/runs.jsonl" "$N" "$REPEAT" "$REDIS_CPU" "$FSYNC" "$rev" \
  "$(redis-server --version | sed 's/ sha=.*//')" <<'EOF'
import statistics, sys
from benchlib import fmt, median, read_jsonl
runs = read_jsonl(sys.argv[1])
n, repeat, redis_cpu, fsync, rev, redis_version = sys.argv[2], int(sys.argv[3]), *sys.argv[4:]
variants = list(dict.fromkeys(r["variant"] for r in runs))
redis_variants = [v for v in variants if v.startswith("redis")]
def med(variant, key, rounds=None):
    return median((r.get(key) for r in runs if r["variant"] == variant
                   and (rounds is None or r["round"] in rounds)), float("nan"))
def get(variant, rnd, key):
    for r in runs:
        if r["variant"] == variant and r["round"] == rnd:
            return r.get(key)
    return None
def f(x, spec="{:,.0f}"):
    return fmt(x, spec, "–")
print(f"{n} events per run, {repeat} round(s), fanoutd and fanout-load on CPU 0, nghttpd on "
      f"CPU 1, redis-server on CPU {redis_cpu} (appendonly yes, appendfsync {fsync} unless "
      f"named; {redis_version}); fanoutd and fanout-load built from {rev}.\n")
print("Per round (deliveries/s; ratio = Redis run / baseline of the same round; CPU µs per event):\n")
print("| round | load (1/5/15 min) | variant | deliveries/s | / fanout-load | / fanout-load --sign "
      "| Redis CPU µs (XADD phase) | fanoutd CPU µs (main thread) | nghttpd CPU µs | ok |")
print("|---:|---|---|---:|---:|---:|---:|---:|---:|---|")
for r in runs:
    rnd = r["round"]
    a, s = get("fanout-load", rnd, "deliveries_per_s"), get("fanout-load --sign", rnd, "deliveries_per_s")
    d = r.get("deliveries_per_s")
    if r["variant"].startswith("redis"):
        ra = f(d / a, "{:.2f}") if d and a else "–"
        rs = f(d / s, "{:.2f}") if d and s else "–"
        rc = f"{f(r.get('redis_cpu_us'), '{:.2f}')} ({f(r.get('redis_xadd_cpu_us'), '{:.2f}')})"
        fc = f"{f(r.get('fanoutd_cpu_us'), '{:.2f}')} ({f(r.get('main_cpu_us'), '{:.2f}')})"
    else:
        ra = rs = rc = "–"
        fc = f"{f(r.get('fanout_cpu_us'), '{:.2f}')} (publisher {f(r.get('publisher_cpu_us'), '{:.2f}')})"
    print(f"| {rnd} | {r['load']} | {r['variant']} | {f(d)} | {ra} | {rs} | {rc} | {fc} | "
          f"{f(r.get('nghttpd_cpu_us'), '{:.2f}')} | {'yes' if r['ok'] else '**no**'} |")
print("\nMedians over the rounds:\n")
print("| variant | deliveries/s | ratio of medians / fanout-load | / fanout-load --sign | median of "
      "per-round ratios (unsigned / signed) | Redis CPU µs/event | Redis CPU µs/event, XADD phase "
      "| AOF bytes/event | fanoutd CPU µs/event (main thread; after start-up) | nghttpd CPU µs/event |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
A, S = med("fanout-load", "deliveries_per_s"), med("fanout-load --sign", "deliveries_per_s")
for v in variants:
    d = med(v, "deliveries_per_s")
    if v.startswith("redis"):
        pr_a, pr_s = [], []
        for r in runs:
            if r["variant"] != v or not r.get("deliveries_per_s"):
                continue
            a, s = get("fanout-load", r["round"], "deliveries_per_s"), get("fanout-load --sign", r["round"], "deliveries_per_s")
            if a: pr_a.append(r["deliveries_per_s"] / a)
            if s: pr_s.append(r["deliveries_per_s"] / s)
        paired = (f"{f(statistics.median(pr_a), '{:.2f}') if pr_a else '–'} / "
                  f"{f(statistics.median(pr_s), '{:.2f}') if pr_s else '–'}")
        print(f"| {v} | {f(d)} | **{f(d / A, '{:.2f}')}** | **{f(d / S, '{:.2f}')}** | {paired} | "
              f"{f(med(v, 'redis_cpu_us'), '{:.2f}')} | {f(med(v, 'redis_xadd_cpu_us'), '{:.2f}')} | "
              f"{f(med(v, 'redis_aof_bytes'))} | {f(med(v, 'fanoutd_cpu_us'), '{:.2f}')} "
              f"({f(med(v, 'main_cpu_us'), '{:.2f}')}; {f(med(v, 'fanoutd_run_cpu_us'), '{:.2f}')}) | "
              f"{f(med(v, 'nghttpd_cpu_us'), '{:.2f}')} |")
    else:
        print(f"| {v} | {f(d)} | – | – | – | – | – | – | {f(med(v, 'fanout_cpu_us'), '{:.2f}')} "
              f"(publisher {f(med(v, 'publisher_cpu_us'), '{:.2f}')}) | {f(med(v, 'nghttpd_cpu_us'), '{:.2f}')} |")
print("\nRedis's commands during the consumption (INFO commandstats, medians; µs are Redis's own "
      "time in the command per event):\n")
print("| variant | XREADGROUP calls | XACK calls (ids per XACK) | XCLAIM calls (idle refresh) | "
      "XAUTOCLAIM calls | µs/event in XREADGROUP | in XACK | in XCLAIM |")
print("|---|---:|---:|---:|---:|---:|---:|---:|")
nn = int(n)
for v in redis_variants:
    def cm(name, i):
        vals = [r["commands"].get(name, [0, 0])[i] for r in runs if r["variant"] == v and "commands" in r]
        return statistics.median(vals) if vals else float("nan")
    xack = cm("xack", 0)
    print(f"| {v} | {f(cm('xreadgroup', 0))} | {f(xack)} ({f(nn / xack if xack else None, '{:.0f}')}) | "
          f"{f(cm('xclaim', 0))} | {f(cm('xautoclaim', 0))} | {f(cm('xreadgroup', 1) / nn, '{:.2f}')} | "
          f"{f(cm('xack', 1) / nn, '{:.2f}')} | {f(cm('xclaim', 1) / nn, '{:.2f}')} |")
bad = [r for r in runs if not r["ok"]]
if bad:
    print(f"\n**{len(bad)} run(s) not complete** (not every event delivered and acknowledged): "
          + ", ".join(f"round {r['round']} {r['variant']}" for r in bad))
EOF
)
[[ ! -f $TMP/perf.md ]] || report+=$'\n\n'$(cat "$TMP/perf.md")
printf '%s\n' "$report"
if [[ -n $OUT ]]; then
  mkdir -p "$OUT"
  printf '%s\n' "$report" >"$OUT/redis-stream.md"
  log "wrote $OUT/redis-stream.md"
fi
! grep -q '"ok": false' "$TMP/runs.jsonl"
