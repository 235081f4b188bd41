# shellcheck shell=bash disable=SC2153  # the globals are the driver's (redis_stream.sh)
# bench/source/redis_stream.sh's runs and report: sourced by it (after bench/lib.sh), never run.
# The functions read the driver's settings and set-up as globals: TMP, PIDS, N, REPEAT, ORGS,
# STREAM, DATA, HOOK, FANOUTD, LOAD, NGHTTPD_PID, RUN_LIMIT_S, REDIS_CPU, FSYNC, UNSIGNED,
# BATCH_LIST.
#
#   baseline ROUND SIGN                           fanout-load to nghttpd, one line of runs.jsonl
#   start_redis DIR FSYNC                         a redis-server of our own (RPORT, REDIS_PID)
#   redis_run ROUND BATCH FSYNC IN_FLIGHT [perf]  one Redis run through fanoutd, one line too
#   perf_report                                   the --perf run's profiles into $TMP/perf.md
#   markdown_report REV                           the runs of $TMP/runs.jsonl as tables
#
# wait_line, listen_port, stop_pid, forget_pid, scrape_metric, write_bytes: bench/lib.sh.
ticks() { server_ticks "$1"; }

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
  rm -f "$TMP/d.out"  # the last launch's: see wait_line in bench/lib.sh
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

# --- the reports --------------------------------------------------------------------------------

# perf_report: the --perf run (redis_run ... perf) as Markdown in $TMP/perf.md: fanoutd's
# threads and libraries, its loop thread inclusive and self, redis-server's top symbols.
perf_report() {
  local dpid wtid
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
}

# markdown_report REV: the report of every run in $TMP/runs.jsonl (REV: what the binaries
# were built from), Markdown on stdout.
markdown_report() {
  python3 - "$TMP/runs.jsonl" "$N" "$REPEAT" "$REDIS_CPU" "$FSYNC" "$1" \
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
}
