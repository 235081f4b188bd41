# shellcheck shell=bash
# Shared by every benchmark script in bench/ (*.sh and */*.sh): sourced, never run. Expects ROOT
# (the repository root) to be set by the caller. The Python they share is bench/benchlib.py:
# this puts bench/ on PYTHONPATH (so their Python can `import benchlib`) and runs its commands
# as `benchpy COMMAND ARGS...`.

export PYTHONPATH="$ROOT/bench${PYTHONPATH:+:$PYTHONPATH}"
benchpy() { python3 "$ROOT/bench/benchlib.py" "$@"; }

log() { printf '%s\n' "$*" >&2; }

# require_tools TOOL...: exits 2 naming the first one missing; also needs 2 CPUs (clients on
# CPU 0, servers on CPU 1).
require_tools() {
  local tool
  for tool in "$@"; do
    command -v "$tool" >/dev/null || { log "missing tool: $tool"; exit 2; }
  done
  local cpus
  cpus=$(nproc)
  if [[ $cpus -lt 2 ]]; then
    log "needs at least 2 CPUs (clients on CPU 0, servers on CPU 1); this machine has $cpus"
    exit 2
  fi
}

# make_scratch NAME: sets TMP to a fresh directory and PIDS to an empty list; on exit every pid
# in PIDS is killed and reaped and TMP removed.
make_scratch() {
  TMP=$(mktemp -d "${TMPDIR:-/tmp}/$1.XXXXXX")
  PIDS=()
  trap bench_cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
}
bench_cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$TMP"
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# wait_accepting PORT: true once 127.0.0.1:PORT accepts connections, false after ~10 s.
wait_accepting() {
  local i
  for ((i = 0; i < 200; i++)); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.05
  done
  return 1
}

# wait_line FILE PATTERN: true once FILE has a line matching PATTERN (grep), polled every 10 ms;
# false after ~30 s. For the "listening on 127.0.0.1:PORT" line of fanoutd and fanout-sink. A
# FILE used before must be removed before the process is started: the `>FILE` of a command run
# with `&` truncates it in the child, maybe after this has matched the last run's line.
wait_line() {
  local i
  for ((i = 0; i < 3000; i++)); do
    grep -q "$2" "$1" 2>/dev/null && return 0
    sleep 0.01
  done
  log "timed out waiting for '$2' in $1"
  return 1
}

# listen_port FILE: the port of the first line of FILE ("listening on 127.0.0.1:PORT").
listen_port() {
  local line
  line=$(head -n 1 "$1")
  printf '%s\n' "${line##*:}"
}

# scrape_metric PORT NAME: the value of the sample NAME (with its labels, as printed:
# 'fanout_outcomes_total{kind="delivered"}') in GET http://127.0.0.1:PORT/metrics; empty when
# absent.
scrape_metric() {
  curl -s --max-time 5 "http://127.0.0.1:$1/metrics" | awk -v m="$2" '$1 == m { print $2 }'
}

# forget_pid PID: takes PID out of PIDS (make_scratch), once it has been reaped.
forget_pid() {
  local keep=() p
  for p in "${PIDS[@]}"; do [[ $p == "$1" ]] || keep+=("$p"); done
  PIDS=("${keep[@]}")
}
# stop_pid PID: SIGTERM, ~20 s to exit, then SIGKILL; reaped and forgotten either way.
stop_pid() {
  local i
  kill "$1" 2>/dev/null || true
  for ((i = 0; i < 400; i++)); do
    kill -0 "$1" 2>/dev/null || break
    sleep 0.05
  done
  kill -9 "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
  forget_pid "$1"
}

# CPU and I/O accounting.
# server_ticks PID: the process's CPU time (user + system) in clock ticks, from /proc: how much
# server work a client's way of framing requests costs.
CLK_TCK=$(getconf CLK_TCK)
server_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# write_bytes PID: bytes the process has caused to be written to storage (/proc/PID/io).
write_bytes() { awk '/^write_bytes/ { print $2 }' "/proc/$1/io"; }
# per_request_us TICKS REQUESTS
per_request_us() {
  awk -v t="$1" -v n="$2" -v hz="$CLK_TCK" 'BEGIN { printf "%.2f", (n > 0) ? t / hz * 1e6 / n : 0 }'
}
# timed CMD...: runs CMD, recording its CPU time (user + system) through GNU time when installed;
# client_us REQUESTS then gives it in us per request ("nan" without GNU time).
timed() {
  if [[ -x /usr/bin/time ]]; then
    /usr/bin/time -f '%U %S' -o "$TMP/client-cpu.txt" "$@"
  else
    : >"$TMP/client-cpu.txt"
    "$@"
  fi
}
client_us() {
  tail -n 1 "$TMP/client-cpu.txt" |
    awk -v n="$1" '(NF == 2 && n > 0) { printf "%.2f", ($1 + $2) * 1e6 / n; found = 1 }
                   END { if (!found) printf "nan" }'
}

# apt_install PACKAGE...: installs Debian packages with apt-get when running as root (apt-get
# update once and a retry if the first attempt fails: the package lists may be stale or absent).
# False when not root, without apt-get, or when the install fails.
apt_install() {
  [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null || return 1
  log "installing $* (apt-get)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" \
    >/dev/null 2>&1 && return 0
  DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null 2>&1 || true
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# build_targets BUILD_DIR TARGET...: configures a Release tree (no tests; tools and benchmarks
# on) if BUILD_DIR has no build.ninja (configure_tree), or turns FANOUT_BUILD_TOOLS on in an
# existing tree configured without tools; then builds the TARGETs (under tools/ or bench/) and
# sets BUILT[TARGET] to each absolute path.
declare -gA BUILT=()
configure_tree() {
  local dir=$1
  if [[ ! -f $dir/build.ninja ]]; then
    log "configuring $dir (Release)"
    cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=Release \
      -DFANOUT_BUILD_TESTS=OFF -DFANOUT_BUILD_TOOLS=ON -DFANOUT_BUILD_BENCH=ON >/dev/null
  elif grep -q '^FANOUT_BUILD_TOOLS:BOOL=OFF' "$dir/CMakeCache.txt" 2>/dev/null; then
    log "turning FANOUT_BUILD_TOOLS on in $dir"
    cmake -S . -B "$dir" -DFANOUT_BUILD_TOOLS=ON >/dev/null
  fi
}
build_targets() {
  local dir=$1 target path
  shift
  configure_tree "$dir"
  log "building $* in $dir"
  local out
  if ! out=$(cmake --build "$dir" --target "$@" 2>&1); then
    printf '%s\n' "$out" | tail -n 40 >&2
    log "the build of $* in $dir failed"
    exit 2
  fi
  for target in "$@"; do
    find_built "$dir" "$target" || { log "no $target in $dir after the build"; exit 2; }
  done
}
# find_built BUILD_DIR TARGET: sets BUILT[TARGET] to the absolute path of the program TARGET
# already built in BUILD_DIR (under tools/, tools/TARGET/, bench/ or the top); false if none.
# shellcheck disable=SC2034  # BUILT is the callers'
find_built() {
  local dir=$1 target=$2 path
  for path in "$dir/tools/$target" "$dir/tools/$target/$target" "$dir/bench/$target" \
    "$dir/$target"; do
    if [[ -f $path && -x $path ]]; then
      [[ $path == /* ]] || path=$ROOT/$path
      BUILT[$target]=$path
      return 0
    fi
  done
  return 1
}

# make_cert DIR: a self-signed P-256 certificate for 127.0.0.1 in DIR/server.pem, DIR/server.key.
make_cert() {
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1,DNS:localhost \
    -keyout "$1/server.key" -out "$1/server.pem" 2>/dev/null
}

# start_nghttpd PORT DOCROOT LOG [KEY CERT]: nghttpd on 127.0.0.1:PORT pinned to CPU 1, one
# worker (-n 1), -m 256 (its stream limit never binds below a client's window); h2c without
# KEY CERT, TLS with them. A POST to an existing file is answered 200 with the file. Adds the
# pid to PIDS (make_scratch) and sets SERVER_PID. With NGHTTPD_UNDER set (an array: a command
# and its options), nghttpd runs under it (receiver_instructions.sh: valgrind); SERVER_PID is
# then that command's.
start_nghttpd() {
  local port=$1 docroot=$2 logfile=$3
  shift 3
  local under=()
  if [[ -n ${NGHTTPD_UNDER+x} ]]; then under=("${NGHTTPD_UNDER[@]}"); fi
  if [[ $# -eq 2 ]]; then
    taskset -c 1 "${under[@]}" nghttpd --address=127.0.0.1 -n 1 -m 256 -d "$docroot" "$port" \
      "$1" "$2" >"$logfile" 2>&1 &
  else
    taskset -c 1 "${under[@]}" nghttpd --address=127.0.0.1 -n 1 -m 256 -d "$docroot" --no-tls \
      "$port" >"$logfile" 2>&1 &
  fi
  SERVER_PID=$!
  PIDS+=("$SERVER_PID")
}

# start_nginx_h1 PORT DIR: nginx on 127.0.0.1:PORT pinned to CPU 1, one process (no master),
# HTTP/1.1 keep-alive for the whole run, every request answered 200 "ok" (the request body read
# and discarded); its files under DIR. Adds the pid to PIDS and sets SERVER_PID.
start_nginx_h1() {
  local port=$1 dir=$2
  mkdir -p "$dir"
  cat >"$dir/nginx.conf" <<NGINX
daemon off;
master_process off;
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/error.log;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $dir/body;
  proxy_temp_path $dir/proxy;
  fastcgi_temp_path $dir/fcgi;
  uwsgi_temp_path $dir/uwsgi;
  scgi_temp_path $dir/scgi;
  keepalive_requests 100000000;
  keepalive_timeout 600s;
  server {
    listen 127.0.0.1:$port;
    location / { return 200 "ok"; }
  }
}
NGINX
  taskset -c 1 nginx -p "$dir" -e "$dir/stderr.log" -c "$dir/nginx.conf" >"$dir/stdout.log" 2>&1 &
  SERVER_PID=$!
  PIDS+=("$SERVER_PID")
}

# wrk_post_lua BODY_FILE LUA_FILE [NAME VALUE]...: a wrk script POSTing BODY_FILE (read once at
# start-up) as application/json, with the headers NAME: VALUE as well.
wrk_post_lua() {
  cat >"$2" <<LUA
local f = assert(io.open("$1", "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
LUA
  local lua=$2
  shift 2
  while [[ $# -ge 2 ]]; do
    printf 'wrk.headers["%s"] = "%s"\n' "$1" "$2" >>"$lua"
    shift 2
  done
}

# loadavg: the 1, 5 and 15 minute load averages.
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

# build_daemon_tools: what the scripts of bench/fanoutd/ run, checked and built in BUILD_DIR:
# taskset, curl, python3; fanoutd, fanout-sink and fanout-load into FANOUTD, SINK and LOAD.
# shellcheck disable=SC2034  # the globals are the callers'
build_daemon_tools() {
  require_tools taskset curl python3
  build_targets "$BUILD_DIR" fanoutd fanout-sink fanout-load
  FANOUTD=${BUILT[fanoutd]}
  SINK=${BUILT[fanout-sink]}
  LOAD=${BUILT[fanout-load]}
}

# add_webhooks PORT DATA URL: on the fanoutd listening on PORT with data directory DATA, a
# PROVIDER key for organisations 1..ORGS and one business_updated webhook each, to URL. Needs
# FANOUTD (its `apikey` command) and ORGS; exits with a message if a webhook is refused.
add_webhooks() {
  local port=$1 data=$2 url=$3 provider o
  provider=$("$FANOUTD" apikey create --data "$data" --role PROVIDER \
    --orgs "$(seq -s, 1 "$ORGS")" | tail -n 1)
  for o in $(seq 1 "$ORGS"); do
    curl -sf -o /dev/null --max-time 10 -X POST "http://127.0.0.1:$port/v2/webhooks?org_id=$o" \
      -H "x-APIKey: $provider" -H 'Content-Type: application/json' \
      -d "{\"items\":[{\"url\":\"$url\",\"event_type\":\"business_updated\"}]}" ||
      { log "creating the webhook of organisation $o failed"; exit 1; }
  done
}

# start_ingest_daemon BIN DATA TOML [ARG...]: the set-up of the ingest benchmarks in
# bench/fanoutd/: a fanout-sink (h2c) pinned to CPU 1, and `BIN serve --workers 1` on CPU 0 with
# DATA, the config text TOML and ARGs, ORGS organisations (1..ORGS) with one business_updated
# webhook each to the sink. Sets SINK_PID and DPID (both added to PIDS), DPORT and INGEST_KEY (an
# INGEST key for every organisation). Needs FANOUTD (its `apikey` command), SINK, TMP and ORGS.
# shellcheck disable=SC2034
start_ingest_daemon() {
  local bin=$1 data=$2 toml=$3
  shift 3
  rm -f "$TMP/sink.out" "$TMP/d.out"  # the last run's: see wait_line
  taskset -c 1 "$SINK" --listen 127.0.0.1:0 --quiet >"$TMP/sink.out" 2>/dev/null &
  SINK_PID=$!
  PIDS+=("$SINK_PID")
  wait_line "$TMP/sink.out" listening
  local sport
  sport=$(listen_port "$TMP/sink.out")
  printf '%s' "$toml" >"$TMP/fanoutd.toml"
  taskset -c 0 "$bin" serve --listen 127.0.0.1:0 --data "$data" --insecure \
    --config "$TMP/fanoutd.toml" --allow-subnet 127.0.0.1/32 --workers 1 --log-level warn "$@" \
    >"$TMP/d.out" 2>"$TMP/d.err" &
  DPID=$!
  PIDS+=("$DPID")
  wait_line "$TMP/d.out" listening || { cat "$TMP/d.err" >&2; exit 1; }
  DPORT=$(listen_port "$TMP/d.out")
  add_webhooks "$DPORT" "$data" "http://127.0.0.1:$sport/hook"
  INGEST_KEY=$("$FANOUTD" apikey create --data "$data" --role INGEST --all-orgs | tail -n 1)
}

# The options every comparison script takes, into the globals N, REPEAT, SMOKE, OUT, RAW and
# BUILD_DIR: --events N (or --requests N), --repeat R, --smoke (N=2000, one repeat), --out DIR
# (the Markdown report and the plot), --raw DIR (the raw data: JSON, TSV), --build-dir D,
# --help (prints the calling script's header comment). OUT defaults to bench/results except
# under --smoke (then empty: the temp dir); RAW to bench/results whenever OUT is set (so that
# `--out bench/report` commits the report and the plot, never the data), else empty. Both are
# git-ignored there. Usage: parse_bench_args NAME "$@" (NAME for messages).
# shellcheck disable=SC2034  # the globals are the callers'
parse_bench_args() {
  local name=$1
  shift
  N=200000
  REPEAT=3
  SMOKE=0
  OUT=""
  RAW=""
  BUILD_DIR=build/bench
  while [[ $# -gt 0 ]]; do
    case "$1" in
      --events | --requests) N=$2; shift 2 ;;
      --repeat) REPEAT=$2; shift 2 ;;
      --smoke) SMOKE=1; shift ;;
      --out) OUT=$2; shift 2 ;;
      --raw) RAW=$2; shift 2 ;;
      --build-dir) BUILD_DIR=$2; shift 2 ;;
      -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
      *) echo "$name: unknown option $1" >&2; exit 2 ;;
    esac
  done
  if [[ $SMOKE == 1 ]]; then
    N=2000
    REPEAT=1
  fi
  [[ $N =~ ^[1-9][0-9]*$ ]] || { echo "$name: --events wants a positive integer" >&2; exit 2; }
  [[ $REPEAT =~ ^[1-9][0-9]*$ ]] || { echo "$name: --repeat wants a positive integer" >&2; exit 2; }
  if [[ -z $OUT && $SMOKE == 0 ]]; then OUT=bench/results; fi
  if [[ -z $RAW && -n $OUT ]]; then RAW=bench/results; fi
}

# report_dirs: after parse_bench_args and make_scratch, makes OUT and RAW absolute (created) and
# sets REPORT_DIR and RAW_DIR to them, or to TMP when empty.
# shellcheck disable=SC2034
report_dirs() {
  local d
  for d in OUT RAW; do
    if [[ -n ${!d} ]]; then
      mkdir -p "${!d}"
      printf -v "$d" '%s' "$(cd "${!d}" && pwd)"
    fi
  done
  REPORT_DIR=${OUT:-$TMP}
  RAW_DIR=${RAW:-$TMP}
}

# run_client KIND SCENARIO RUN TOOL SERVER_PID REQUESTS [--times FILE] [--offered R] -- CMD...:
# runs CMD on CPU 0 under `timeout` (CLIENT_TIMEOUT_S), measures the server's and its own CPU,
# reads the tool's output into one JSON line (bench/compare.py parse), appends it to RUNS, sets
# LINE to it and FAILED=1 when the run failed. For compare.sh and network.sh. --times: h2load's
# --log-file (latencies); --offered: the sweep's offered rate; --also PID: a second process
# whose CPU per request goes in the line as also_cpu_us_per_request (network.sh's relay).
run_client() {
  local kind=$1 scenario=$2 run=$3 tool=$4 spid=$5 n=$6 times="" offered="" also=""
  shift 6
  while [[ $1 != -- ]]; do
    case $1 in
      --times) times=$2; shift 2 ;;
      --offered) offered=$2; shift 2 ;;
      --also) also=$2; shift 2 ;;
      *) log "run_client: unknown option $1"; exit 2 ;;
    esac
  done
  shift
  local rc=0 t0 a0=0
  t0=$(server_ticks "$spid")
  [[ -z $also ]] || a0=$(server_ticks "$also")
  timed timeout "$CLIENT_TIMEOUT_S" taskset -c 0 "$@" >"$TMP/out.txt" 2>"$TMP/err.txt" || rc=$?
  local ticks=$(($(server_ticks "$spid") - t0))
  cat "$TMP/out.txt" "$TMP/err.txt" >>"$TMP/clients.log"
  LINE=$(python3 bench/compare.py parse "$tool" "$TMP/out.txt" "$TMP/err.txt" "$rc" "$kind" \
    "$scenario" "$run" "$n" "$ticks" "$CLK_TCK" "$TMP/client-cpu.txt" "$(loadavg)" "$times" \
    "$offered")
  if [[ -n $also ]]; then
    LINE=$(python3 -c 'import json, sys
d = json.loads(sys.argv[1]); done = d["completed"] or d["requests"]
d["also_cpu_us_per_request"] = int(sys.argv[2]) / int(sys.argv[3]) * 1e6 / done if done else None
print(json.dumps(d))' "$LINE" "$(($(server_ticks "$also") - a0))" "$CLK_TCK")
  fi
  printf '%s\n' "$LINE" >>"$RUNS"
  if [[ $(benchpy field "$LINE" ok) != 1 ]]; then FAILED=1; fi
  log "    $(python3 bench/compare.py summary "$LINE")"
}
