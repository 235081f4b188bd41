#!/usr/bin/env bash
# fanout-load against the clients nobody here wrote, end to end, in one run (issue 6, "bench/"):
#
#   case            server (CPU 1)          clients, one at a time on CPU 0, same C x M and body
#   h2c 1x100       nghttpd --no-tls -n 1   fanout-load, h2load -c 1 -m 100, h2load-hdr, curl_multi
#   h2c 8x10        nghttpd --no-tls -n 1   fanout-load, h2load -c 8 -m 10, h2load-hdr, curl_multi
#   TLS 1x100       nghttpd (TLS) -n 1      fanout-load, h2load, h2load-hdr, curl_multi, undici
#   TLS 8x10        nghttpd (TLS) -n 1      fanout-load, h2load, h2load-hdr, curl_multi
#   HTTP/1.1 64x1   nginx, one process      fanout-load --http1, wrk -c 64, wrk-hdr, curl_multi, undici
#   signed 1x100    nghttpd --no-tls -n 1   fanout-load --sign beside the raw Ed25519 sign rate
#                                           (fanout-load --sign-rate-only, on CPU 0)
#   latency sweep   nghttpd --no-tls -n 1   fanout-load --rate R and h2load --rps R (1x100) at
#                                           10/25/50/75/90/100 % of fanout's h2c 1x100 rate
#
# h2load-hdr is h2load sending fanout's header names with values of the same length
# (user-agent: fanout/0.1.0, x-partoo-event-id: 32 hex digits, x-partoo-attempt: 1): the baseline
# of issue 16's first goal (fanout's client CPU per delivery <= 0.85x its CPU per request, the
# receiver's CPU per fanout request <= 1.05x, throughput >= 0.97x), reported in its own table.
# fanout-load runs with one worker (its publishing thread and the worker both on CPU 0, as
# h2load's one thread); curl_multi is bench/peers/curl_multi.c (libcurl's multi interface,
# compiled here with cc and never linked with fanout), undici is bench/peers/undici_load.mjs
# (Node.js, undici 6 Pool). Every client sends the same N POSTs of the same ~600 B JSON body (the
# delivery body fanout builds), except wrk, which cannot count: it runs for fanout's wall time
# of the same case, rounded up to a second. Undici speaks HTTP/2 only over TLS (no h2c); its
# TLS case runs only if a short probe with the case's connections x streams succeeds (undici
# 6's allowH2 is experimental), else the report says why it was skipped. Every client runs R
# times, interleaved; the tables hold medians, fanout's ratio to each peer and the goal beside
# it (issue 6: >= 0.9x h2load/wrk, >= 6x libcurl multi, >= 20x undici, signed >= 0.85x the sign
# rate, p99 < 5 ms at half of saturation). Each run also records the server's CPU per request
# (/proc) and the client's (GNU time, when installed).
#
# Usage (from anywhere):
#   bash bench/compare.sh [--events N] [--repeat R] [--smoke] [--out DIR] [--raw DIR]
#                         [--build-dir DIR]
#   --events N     requests (events) per client run (default 200000)
#   --repeat R     runs of each client in each case, and of each sweep point (default 3)
#   --smoke        N=2000, one run, every case and a short sweep: checks the wiring; results go
#                  to the temp dir only unless --out is given
#   --out DIR      where the report and the plot go: compare.md, compare.png (default
#                  bench/results)
#   --raw DIR      where the data go: compare.json (every run), compare-sweep.tsv (the plotted
#                  medians); default bench/results (git-ignored), the temp dir under --smoke
#                  without --out
#   --build-dir D  release tree (default build/bench, the other scripts' tree; configured here if
#                  it has no build.ninja, tools turned on if they are off)
#
# Installs what is missing when run as root: wrk, gnuplot-nox, libcurl4-openssl-dev, nodejs and
# npm from Debian; undici from npm into bench/peers/node_modules (npm ci, package-lock.json).
# Needs besides: cmake, ninja, cc, pkg-config, nghttpd and h2load (nghttp2-server,
# nghttp2-client), nginx, openssl, taskset, timeout, python3 (tools/install-deps.sh).
# Exit status: 0 when every run completed with every request answered 2xx (speed is reported,
# never asserted); 1 when a run failed; 2 when something needed is missing.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD

# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
parse_bench_args compare.sh "$@"

# Bounds of every load loop besides N: each client's own timeout (curl_multi, undici) and
# `timeout` around every client, so that nothing here can hang. The slowest peer (undici, some
# 10k requests/s on a quiet core) needs N / 10k seconds.
RUN_LIMIT_S=$((60 + N / 2000))
CLIENT_TIMEOUT_S=$((RUN_LIMIT_S + 30))
# Signatures per sign-rate run: about a second of signing.
SIGN_N=$((N / 4))
[[ $SIGN_N -ge 1000 ]] || SIGN_N=1000
# Latency sweep: offered rates in % of fanout's h2c 1x100 rate, SWEEP_S seconds of events each
# (at most N, at least SWEEP_MIN).
SWEEP_PCTS=(10 25 50 75 90 100)
SWEEP_S=2
SWEEP_MIN=1000
if [[ $SMOKE == 1 ]]; then SWEEP_MIN=200; fi
START_S=$SECONDS


# --- tools ---------------------------------------------------------------------------------------
command -v wrk >/dev/null || apt_install wrk || true
command -v gnuplot >/dev/null || apt_install gnuplot-nox || true
pkg-config --exists libcurl 2>/dev/null || apt_install libcurl4-openssl-dev || true
command -v node >/dev/null || apt_install nodejs npm || true
command -v npm >/dev/null || apt_install npm || true
require_tools cmake ninja cc pkg-config nghttpd h2load nginx wrk openssl taskset timeout python3 \
  node npm gnuplot
pkg-config --exists libcurl || { log "missing libcurl's development files (libcurl4-openssl-dev)"; exit 2; }
node -e 'const [a, b] = process.versions.node.split(".").map(Number);
         process.exit(a > 18 || (a === 18 && b >= 17) ? 0 : 1)' ||
  { log "undici 6 needs node >= 18.17; this is $(node --version)"; exit 2; }

# --- build ---------------------------------------------------------------------------------------
# fanout-load also prints the delivery body (--print-body) and measures the sign rate
# (--sign-rate-only).
build_targets "$BUILD_DIR" fanout-load
FANOUT_LOAD=${BUILT[fanout-load]}

make_scratch fanout-compare
report_dirs

# The peers: curl_multi compiled here (libcurl and its TLS library stay out of fanout's
# processes), undici installed from the lock file into bench/peers/node_modules (gitignored).
# shellcheck disable=SC2046  # pkg-config's flags split on purpose
cc -O2 -std=c11 -D_POSIX_C_SOURCE=200809L -Wall -Wextra -o "$TMP/curl_multi" \
  bench/peers/curl_multi.c $(pkg-config --cflags --libs libcurl)
CURL_MULTI=$TMP/curl_multi
UNDICI=$ROOT/bench/peers/undici_load.mjs
want_undici=$(python3 -c 'import json; print(json.load(open("bench/peers/package-lock.json"))["packages"]["node_modules/undici"]["version"])')
have_undici=$(python3 -c 'import json; print(json.load(open("bench/peers/node_modules/undici/package.json"))["version"])' 2>/dev/null || true)
if [[ $have_undici != "$want_undici" ]]; then
  log "installing undici $want_undici into bench/peers/node_modules (npm ci)"
  (cd bench/peers && timeout 300 npm ci --no-audit --no-fund --loglevel=error >&2)
fi

# --- body and servers ----------------------------------------------------------------------------
"$FANOUT_LOAD" --print-body >"$TMP/body.json"
BODY_BYTES=$(wc -c <"$TMP/body.json")
mkdir -p "$TMP/htdocs"
printf 'ok' >"$TMP/htdocs/hook"
make_cert "$TMP"
wrk_post_lua "$TMP/body.json" "$TMP/post.lua"

H2C_PORT=$(free_port)
start_nghttpd "$H2C_PORT" "$TMP/htdocs" "$TMP/nghttpd-h2c.log"
H2C_PID=$SERVER_PID
TLS_PORT=$(free_port)
start_nghttpd "$TLS_PORT" "$TMP/htdocs" "$TMP/nghttpd-tls.log" "$TMP/server.key" "$TMP/server.pem"
TLS_PID=$SERVER_PID
H1_PORT=$(free_port)
start_nginx_h1 "$H1_PORT" "$TMP/nginx"
H1_PID=$SERVER_PID
for port in "$H2C_PORT" "$TLS_PORT" "$H1_PORT"; do
  wait_accepting "$port" || { log "a server did not start on port $port; logs in $TMP"; \
    cat "$TMP"/*.log "$TMP"/nginx/*.log >&2 2>/dev/null || true; exit 1; }
done
# h2load-hdr's header values: fanout's user agent, an event id as long as fanout-load's.
FANOUT_UA="fanout/$(sed -n 's/^project(fanout VERSION \([0-9.]*\).*/\1/p' CMakeLists.txt)"
EVENT_ID_SAMPLE=0123456789abcdef0123456789abcdef
H2C_URL=http://127.0.0.1:$H2C_PORT/hook
TLS_URL=https://127.0.0.1:$TLS_PORT/hook
H1_URL=http://127.0.0.1:$H1_PORT/hook
# wrk-hdr: wrk with the same headers, for HTTP/1.1 what h2load-hdr is for HTTP/2.
wrk_post_lua "$TMP/body.json" "$TMP/post-hdr.lua" User-Agent "$FANOUT_UA" \
  X-Partoo-Event-Id "$EVENT_ID_SAMPLE" X-Partoo-Attempt 1

# --- runs ----------------------------------------------------------------------------------------
RUNS=$TMP/runs.jsonl
SKIPS=$TMP/skipped.jsonl
: >"$RUNS"
: >"$SKIPS"
FAILED=0

skip() {  # scenario tool reason
  python3 -c 'import json, sys; print(json.dumps({"scenario": sys.argv[1], "tool": sys.argv[2], "reason": sys.argv[3]}))' \
    "$1" "$2" "$3" >>"$SKIPS"
  log "    skipped $2 ($3)"
}

# fanout_cmd URL C M N [flags...]: sets FANOUT_ARGS to fanout-load's command line: one worker,
# no certificate verification over TLS (--insecure, like the peers: the local self-signed one;
# it also lets the address guard through to 127.0.0.1, as http:// URLs do).
fanout_cmd() {
  local url=$1 c=$2 m=$3 n=$4
  shift 4
  FANOUT_ARGS=("$FANOUT_LOAD" --url "$url" --events "$n" --conns "$c" --streams "$m" --workers 1
    --duration-max "$RUN_LIMIT_S" --json --quiet)
  [[ $url != https://* ]] || FANOUT_ARGS+=(--insecure)
  FANOUT_ARGS+=("$@")
}

# undici over h2 (TLS): experimental in undici 6; run its case only if a short probe with the
# case's shape answers every request.
UNDICI_H2=1
UNDICI_H2_REASON=""
probe_out=$(timeout 60 taskset -c 0 node "$UNDICI" --url "$TLS_URL" --requests 500 --conns 1 \
  --streams 100 --body "$TMP/body.json" --timeout 30 2>&1) || {
  UNDICI_H2=0
  UNDICI_H2_REASON="undici $want_undici with allowH2 failed a 500-request probe at 1x100: $(
    { grep -m1 -oE 'assert\([^)]*\)' <<<"$probe_out" ||
      grep -m1 -oE '"first_error":"[^"]*"|[A-Za-z]*Error[^:]*' <<<"$probe_out" || true; } |
      cut -c1-120)$(grep -m1 -oE ' at [A-Z][A-Za-z]*\.[A-Za-z]+ \(' <<<"$probe_out" |
      sed 's/^ at / in /; s/ ($//' || true)"
  log "undici over h2: not used ($UNDICI_H2_REASON)"
}

# case name | proto | url | conns | streams | server pid
CASES=(
  "h2c 1x100|h2c|$H2C_URL|1|100|$H2C_PID"
  "h2c 8x10|h2c|$H2C_URL|8|10|$H2C_PID"
  "TLS 1x100|tls|$TLS_URL|1|100|$TLS_PID"
  "TLS 8x10|tls|$TLS_URL|8|10|$TLS_PID"
  "HTTP/1.1 64x1|h1|$H1_URL|64|1|$H1_PID"
)
LOAD_BEFORE=$(uptime)
log "load before: $LOAD_BEFORE"
log "N=$N, repeat=$REPEAT, body $BODY_BYTES B, servers on CPU 1, clients on CPU 0"

for ((run = 1; run <= REPEAT; run++)); do
  for s in "${CASES[@]}"; do
    IFS='|' read -r scenario proto url c m spid <<<"$s"
    log "[$run/$REPEAT] $scenario  (load $(loadavg))"
    h1=()
    if [[ $proto == h1 ]]; then h1=(--http1); fi
    fanout_cmd "$url" "$c" "$m" "$N" "${h1[@]}"
    run_client throughput "$scenario" "$run" fanout "$spid" "$N" -- "${FANOUT_ARGS[@]}"
    wall=$(benchpy field "$LINE" elapsed_s)
    if [[ $proto == h1 ]]; then
      secs=$(benchpy ceil-seconds "$wall")
      run_client throughput "$scenario" "$run" wrk "$spid" "$N" -- \
        wrk -t 1 -c "$c" -d "${secs}s" -s "$TMP/post.lua" "$url"
      run_client throughput "$scenario" "$run" wrk-hdr "$spid" "$N" -- \
        wrk -t 1 -c "$c" -d "${secs}s" -s "$TMP/post-hdr.lua" "$url"
    else
      run_client throughput "$scenario" "$run" h2load "$spid" "$N" -- \
        h2load -n "$N" -c "$c" -m "$m" -t 1 -d "$TMP/body.json" \
        -H 'content-type: application/json' "$url"
      run_client throughput "$scenario" "$run" h2load-hdr "$spid" "$N" -- \
        h2load -n "$N" -c "$c" -m "$m" -t 1 -d "$TMP/body.json" \
        -H 'content-type: application/json' -H "user-agent: $FANOUT_UA" \
        -H "x-partoo-event-id: $EVENT_ID_SAMPLE" -H 'x-partoo-attempt: 1' "$url"
    fi
    run_client throughput "$scenario" "$run" curl_multi "$spid" "$N" -- \
      "$CURL_MULTI" --url "$url" --requests "$N" --conns "$c" --streams "$m" \
      --body "$TMP/body.json" --timeout "$RUN_LIMIT_S" "${h1[@]}"
    case $proto in
      h1)
        run_client throughput "$scenario" "$run" undici "$spid" "$N" -- \
          node "$UNDICI" --url "$url" --requests "$N" --conns "$c" --body "$TMP/body.json" \
          --timeout "$RUN_LIMIT_S" --http1 ;;
      tls)
        if [[ $scenario != "TLS 1x100" ]]; then
          :  # undici's experimental HTTP/2 is probed at 1x100 only
        elif [[ $UNDICI_H2 == 1 ]]; then
          run_client throughput "$scenario" "$run" undici "$spid" "$N" -- \
            node "$UNDICI" --url "$url" --requests "$N" --conns "$c" --streams "$m" \
            --body "$TMP/body.json" --timeout "$RUN_LIMIT_S"
        elif [[ $run == 1 ]]; then
          skip "$scenario" undici "$UNDICI_H2_REASON"
        fi ;;
      h2c)
        if [[ $run == 1 ]]; then skip "$scenario" undici "undici has no h2c (HTTP/2 only by ALPN over TLS)"; fi ;;
    esac
  done
  # Signing on: the raw sign rate on CPU 0 right before the signed run.
  log "[$run/$REPEAT] signed h2c 1x100  (load $(loadavg))"
  run_client sign-rate "sign" "$run" sign-rate "$H2C_PID" "$SIGN_N" -- \
    "$FANOUT_LOAD" --sign-rate-only --events "$SIGN_N" --json
  fanout_cmd "$H2C_URL" 1 100 "$N" --sign
  run_client signed "signed h2c 1x100" "$run" fanout-signed "$H2C_PID" "$N" -- "${FANOUT_ARGS[@]}"
done

# Latency against offered rate: 10..100 % of fanout's median h2c 1x100 rate, fanout-load --rate
# and h2load --rps (per connection: one connection here) at the same rate and count.
SAT=$(benchpy median "$RUNS" rate kind=throughput "scenario=h2c 1x100" tool=fanout ok=true)
if [[ $SAT -le 0 ]]; then
  log "no successful fanout h2c 1x100 run: no latency sweep"
  FAILED=1
else
  log "latency sweep: fanout's h2c 1x100 rate is $SAT/s"
  for ((run = 1; run <= REPEAT; run++)); do
    for pct in "${SWEEP_PCTS[@]}"; do
      rate=$((SAT * pct / 100))
      [[ $rate -ge 1 ]] || rate=1
      events=$((rate * SWEEP_S))
      [[ $events -le $N ]] || events=$N
      [[ $events -ge $SWEEP_MIN ]] || events=$SWEEP_MIN
      log "[$run/$REPEAT] sweep $pct% = $rate/s, $events events  (load $(loadavg))"
      fanout_cmd "$H2C_URL" 1 100 "$events" --rate "$rate"
      run_client sweep "$pct%" "$run" fanout "$H2C_PID" "$events" --offered "$rate" -- \
        "${FANOUT_ARGS[@]}"
      : >"$TMP/h2load-times.tsv"
      run_client sweep "$pct%" "$run" h2load "$H2C_PID" "$events" --offered "$rate" \
        --times "$TMP/h2load-times.tsv" -- \
        h2load -n "$events" -c 1 -m 100 -t 1 --rps="$rate" --log-file="$TMP/h2load-times.tsv" \
        -d "$TMP/body.json" -H 'content-type: application/json' "$H2C_URL"
    done
  done
fi
LOAD_AFTER=$(uptime)
log "load after: $LOAD_AFTER"

# --- report --------------------------------------------------------------------------------------
COMMAND="bash bench/compare.sh"
if [[ $SMOKE == 1 ]]; then COMMAND+=" --smoke"; else COMMAND+=" --events $N --repeat $REPEAT"; fi
python3 bench/compare.py report "$RUNS" "$SKIPS" "$REPORT_DIR" "$RAW_DIR" "$N" "$REPEAT" "$BODY_BYTES" \
  "$COMMAND" "$LOAD_BEFORE" "$LOAD_AFTER" "$SMOKE" "$SIGN_N" "$((SECONDS - START_S))" \
  fanout-load

# The plot: deliveries/s and p99 against offered rate, fanout and h2load.
cat >"$TMP/compare.gp" <<GP
set terminal pngcairo size 900,900 font ",10"
set output "$REPORT_DIR/compare.png"
set datafile separator "\t"
set datafile missing "NaN"
set key top left
set grid
set multiplot layout 2,1 title "fanout-load vs h2load, h2c 1x100 against nghttpd (CPU 1), clients on CPU 0"
set xlabel "offered rate (k requests/s)"
set ylabel "achieved (k deliveries or requests/s)"
plot "$RAW_DIR/compare-sweep.tsv" using (\$2/1000):(\$3/1000) with linespoints lw 2 pt 7 title "fanout-load", \
     "" using (\$2/1000):(\$4/1000) with linespoints lw 2 pt 5 title "h2load", \
     "" using (\$2/1000):(\$2/1000) with lines dt 2 lc rgb "gray" title "offered"
set ylabel "p99 latency (ms)"
set logscale y
plot "$RAW_DIR/compare-sweep.tsv" using (\$2/1000):5 with linespoints lw 2 pt 7 title "fanout-load (publish to outcome)", \
     "" using (\$2/1000):6 with linespoints lw 2 pt 5 title "h2load (request time)", \
     5 with lines dt 2 lc rgb "red" title "goal: 5 ms at half of saturation"
unset multiplot
GP
if ! gnuplot "$TMP/compare.gp" 2>"$TMP/gnuplot.err"; then
  log "gnuplot failed: $(cat "$TMP/gnuplot.err")"
  FAILED=1
fi
if [[ -n $OUT ]]; then
  log "wrote $OUT/compare.md and $OUT/compare.png (data: $RAW/compare.json, $RAW/compare-sweep.tsv)"
fi
log "took $((SECONDS - START_S)) s"
if [[ $FAILED != 0 ]]; then
  log "some runs FAILED (see above)"
  exit 1
fi
