#!/usr/bin/env bash
# Across a network (issue 16, goal 3): receivers are 10-100 ms away, never on loopback. This
# kernel has no netem qdisc, so the delay comes from fanout-delay-relay (bench/net/delay_relay.cc),
# a libuv TCP relay holding every chunk D ms in each direction: RTT = 2 x D.
#
#   path        direct (no relay), relay D = 0 (the relay's own cost), D = 10 (RTT 20 ms),
#               D = 25 (RTT 50 ms)
#   protocol    h2c against nghttpd --no-tls -n 1; HTTP/1.1 against nginx (one process); the
#               servers and the relays on CPU 1
#   connections 1 and 8 (HTTP/2: 100 streams each; HTTP/1.1: one request at a time each)
#   clients     on CPU 0, one at a time, interleaved: fanout-load (one worker; --http1 for
#               HTTP/1.1), h2load (-t 1; --h1 for HTTP/1.1), curl_multi (libcurl's multi
#               interface, bench/peers/curl_multi.c)
#
# Every client sends the same ~600 B JSON body. Requests per run: enough for about TARGET_S (3)
# seconds at the round trip's bound (HTTP/2: C x 100 / RTT; HTTP/1.1: C / RTT), at least 200
# (HTTP/1.1: 60), at most N; the direct and D = 0 paths send N (HTTP/2) or N / 4 (HTTP/1.1).
# Latency is each request's round trip: h2load's time for request (--log-file), curl_multi's
# own, fanout-load's response_us (the last attempt's first byte written to its answer), so
# queueing inside the client is left out for all three. The table reports medians of R runs,
# fanout's ratio to h2load and to curl_multi, and the relay's CPU per request.
#
# Usage (from anywhere):
#   bash bench/network.sh [--events N] [--repeat R] [--smoke] [--out DIR] [--raw DIR]
#                         [--build-dir DIR]
#   --events N     the most requests per run (default 200000)
#   --repeat R     runs of each client in each case (default 3)
#   --smoke        N=2000, one run, HTTP/1.1 runs of 10 requests: checks the wiring (~1 min);
#                  results go to the temp dir only unless --out is given
#   --out DIR      where network.md and network.png go (default bench/results)
#   --raw DIR      network.json (every run) and network.tsv (the plotted medians)
#   --build-dir D  release tree (default build/bench; configured here if it has no build.ninja)
#
# Installs what is missing when run as root: gnuplot-nox, libcurl4-openssl-dev. Needs besides:
# cmake, ninja, cc, pkg-config, nghttpd and h2load, nginx, taskset, timeout, python3.
# Exit status: 0 when every run completed with every request answered 2xx (speed is reported,
# never asserted); 1 when a run failed; 2 when something needed is missing.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD

# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
parse_bench_args network.sh "$@"

TARGET_S=3
MIN_H2=200
MIN_H1=60
if [[ $SMOKE == 1 ]]; then
  TARGET_S=0
  MIN_H1=10
fi
RUN_LIMIT_S=$((60 + N / 2000))
CLIENT_TIMEOUT_S=$((RUN_LIMIT_S + 30))
DELAYS=(direct 0 10 25)
CONNS=(1 8)
STREAMS=100
START_S=$SECONDS

command -v gnuplot >/dev/null || apt_install gnuplot-nox || true
pkg-config --exists libcurl 2>/dev/null || apt_install libcurl4-openssl-dev || true
require_tools cmake ninja cc pkg-config nghttpd h2load nginx taskset timeout python3 gnuplot
pkg-config --exists libcurl || { log "missing libcurl's development files (libcurl4-openssl-dev)"; exit 2; }

build_targets "$BUILD_DIR" fanout-load fanout-delay-relay
FANOUT_LOAD=${BUILT[fanout-load]}
RELAY=${BUILT[fanout-delay-relay]}

make_scratch fanout-network
report_dirs
# shellcheck disable=SC2046  # pkg-config's flags split on purpose
cc -O2 -std=c11 -D_POSIX_C_SOURCE=200809L -Wall -Wextra -o "$TMP/curl_multi" \
  bench/peers/curl_multi.c $(pkg-config --cflags --libs libcurl)
CURL_MULTI=$TMP/curl_multi

"$FANOUT_LOAD" --print-body >"$TMP/body.json"
BODY_BYTES=$(wc -c <"$TMP/body.json")
mkdir -p "$TMP/htdocs"
printf 'ok' >"$TMP/htdocs/hook"

H2C_PORT=$(free_port)
start_nghttpd "$H2C_PORT" "$TMP/htdocs" "$TMP/nghttpd.log"
H2C_PID=$SERVER_PID
H1_PORT=$(free_port)
start_nginx_h1 "$H1_PORT" "$TMP/nginx"
H1_PID=$SERVER_PID
for port in "$H2C_PORT" "$H1_PORT"; do
  wait_accepting "$port" || { log "a server did not start on port $port; logs in $TMP"; exit 1; }
done

# One relay per delay and server, for the whole run, pinned beside the servers; each stops by
# itself after the run's bound.
declare -A RELAY_PORT=() RELAY_PID=()
RELAY_LIMIT_S=$((CLIENT_TIMEOUT_S * 100))
start_relay() {  # delay server-port key
  taskset -c 1 "$RELAY" --to "127.0.0.1:$2" --delay-ms "$1" --max-seconds "$RELAY_LIMIT_S" \
    >"$TMP/relay-$3.out" 2>"$TMP/relay-$3.err" &
  RELAY_PID[$3]=$!
  PIDS+=("$!")
  wait_line "$TMP/relay-$3.out" "listening on" || exit 1
  RELAY_PORT[$3]=$(listen_port "$TMP/relay-$3.out")
}
for d in "${DELAYS[@]}"; do
  [[ $d == direct ]] && continue
  start_relay "$d" "$H2C_PORT" "h2c-$d"
  start_relay "$d" "$H1_PORT" "h1-$d"
done

# requests PROTO DELAY CONNS: the count for one run (see the header).
requests() {
  local proto=$1 d=$2 c=$3 n
  if [[ $d == direct || $d == 0 ]]; then
    if [[ $proto == h2c ]]; then n=$N; else n=$((N / 4)); fi
  else
    local per_rtt=$c
    [[ $proto == h1 ]] || per_rtt=$((c * STREAMS))
    n=$((per_rtt * TARGET_S * 1000 / (2 * d)))
    local min=$MIN_H2
    [[ $proto == h2c ]] || min=$MIN_H1
    [[ $n -ge $min ]] || n=$min
    [[ $n -le $N ]] || n=$N
  fi
  [[ $n -ge 1 ]] || n=1
  printf '%s\n' "$n"
}

RUNS=$TMP/runs.jsonl
: >"$RUNS"
FAILED=0
LOAD_BEFORE=$(uptime)
log "load before: $LOAD_BEFORE"
log "N<=$N, repeat=$REPEAT, body $BODY_BYTES B; servers and relays on CPU 1, clients on CPU 0"

for ((run = 1; run <= REPEAT; run++)); do
  for d in "${DELAYS[@]}"; do
    for proto in h2c h1; do
      for c in "${CONNS[@]}"; do
        if [[ $proto == h2c ]]; then spid=$H2C_PID; port=$H2C_PORT; else spid=$H1_PID; port=$H1_PORT; fi
        also=()
        if [[ $d != direct ]]; then
          port=${RELAY_PORT[$proto-$d]}
          also=(--also "${RELAY_PID[$proto-$d]}")
        fi
        url=http://127.0.0.1:$port/hook
        n=$(requests "$proto" "$d" "$c")
        path=$d
        [[ $d == direct ]] || path="D=$d ms"
        scenario="$path|$proto|$c"
        log "[$run/$REPEAT] $path $proto ${c}c: $n requests  (load $(loadavg))"
        if [[ $proto == h2c ]]; then
          run_client network "$scenario" "$run" fanout "$spid" "$n" "${also[@]}" -- \
            "$FANOUT_LOAD" --url "$url" --events "$n" --conns "$c" --streams "$STREAMS" \
            --workers 1 --duration-max "$RUN_LIMIT_S" --json --quiet
          : >"$TMP/h2load-times.tsv"
          run_client network "$scenario" "$run" h2load "$spid" "$n" \
            --times "$TMP/h2load-times.tsv" "${also[@]}" -- \
            h2load -n "$n" -c "$c" -m "$STREAMS" -t 1 --log-file="$TMP/h2load-times.tsv" \
            -d "$TMP/body.json" -H 'content-type: application/json' "$url"
          run_client network "$scenario" "$run" curl_multi "$spid" "$n" "${also[@]}" -- \
            "$CURL_MULTI" --url "$url" --requests "$n" --conns "$c" --streams "$STREAMS" \
            --body "$TMP/body.json" --timeout "$RUN_LIMIT_S"
        else
          run_client network "$scenario" "$run" fanout "$spid" "$n" "${also[@]}" -- \
            "$FANOUT_LOAD" --url "$url" --events "$n" --conns "$c" --workers 1 --http1 \
            --duration-max "$RUN_LIMIT_S" --json --quiet
          : >"$TMP/h2load-times.tsv"
          run_client network "$scenario" "$run" h2load "$spid" "$n" \
            --times "$TMP/h2load-times.tsv" "${also[@]}" -- \
            h2load --h1 -n "$n" -c "$c" -t 1 --log-file="$TMP/h2load-times.tsv" \
            -d "$TMP/body.json" -H 'content-type: application/json' "$url"
          run_client network "$scenario" "$run" curl_multi "$spid" "$n" "${also[@]}" -- \
            "$CURL_MULTI" --url "$url" --requests "$n" --conns "$c" --http1 \
            --body "$TMP/body.json" --timeout "$RUN_LIMIT_S"
        fi
      done
    done
  done
done
LOAD_AFTER=$(uptime)
log "load after: $LOAD_AFTER"

COMMAND="bash bench/network.sh"
if [[ $SMOKE == 1 ]]; then COMMAND+=" --smoke"; else COMMAND+=" --events $N --repeat $REPEAT"; fi
python3 bench/network.py "$RUNS" "$REPORT_DIR" "$RAW_DIR" "$REPEAT" "$BODY_BYTES" "$COMMAND" \
  "$LOAD_BEFORE" "$LOAD_AFTER" "$((SECONDS - START_S))"

cat >"$TMP/network.gp" <<GP
set terminal pngcairo size 1100,900 font ",10"
set output "$REPORT_DIR/network.png"
set datafile separator "\t"
set datafile missing "NaN"
set style data histogram
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set xtics rotate by -30 scale 0
set key top right
set grid ytics
set logscale y
set multiplot layout 2,1 title "fanout-load, h2load and libcurl across a delaying relay (RTT = 2 x D), medians"
set ylabel "requests/s (log)"
plot "$RAW_DIR/network.tsv" using 2:xtic(1) title "fanout-load", "" using 3 title "h2load", \
     "" using 4 title "curl_multi"
set ylabel "p99 round trip (ms, log)"
plot "$RAW_DIR/network.tsv" using 5:xtic(1) title "fanout-load", "" using 6 title "h2load", \
     "" using 7 title "curl_multi"
unset multiplot
GP
if ! gnuplot "$TMP/network.gp" 2>"$TMP/gnuplot.err"; then
  log "gnuplot failed: $(cat "$TMP/gnuplot.err")"
  FAILED=1
fi
[[ -z $OUT ]] || log "wrote $OUT/network.md and $OUT/network.png (data: $RAW/network.json, $RAW/network.tsv)"
log "took $((SECONDS - START_S)) s"
if [[ $FAILED != 0 ]]; then
  log "some runs FAILED (see above)"
  exit 1
fi
