#!/usr/bin/env bash
# fanout's transport::Client against the physical limit of this client stack, in one run:
#
#   scenario        server (CPU 1)              baseline (CPU 0)    fanout (CPU 0)
#   h2c 1x100       nghttpd --no-tls -n 1       h2load -c 1 -m 100  fanout-client-bench --conns 1 --streams 100
#   h2c 8x10        nghttpd --no-tls -n 1       h2load -c 8 -m 10   ... --conns 8 --streams 10
#   TLS 1x100       nghttpd (TLS) -n 1          h2load -c 1 -m 100  ... https:// --conns 1 --streams 100
#   TLS 8x10        nghttpd (TLS) -n 1          h2load -c 8 -m 10   ... https:// --conns 8 --streams 10
#   HTTP/1.1 64x1   nginx, one process          wrk -t 1 -c 64      ... --h1 --conns 64 --streams 1
#
# Same connections x streams, same ~600 B JSON body (fanout-client-bench --print-body), each
# client pinned to CPU 0 and each server to CPU 1 (taskset). Every pair runs R times,
# interleaved; the table holds the medians. h2load and fanout run N requests each; wrk runs for
# a duration (it cannot count), set to fanout's wall time for the same N rounded up to a second.
# Each run also records the server's CPU time per request (/proc) and the client's (GNU time,
# when installed): steadier than the rates on a busy machine, and the server's shows what a
# client's framing costs the receiver.
#
# Usage (from the repository root):
#   bash bench/transport/client_vs_h2load.sh [--requests N] [--repeat R] [--smoke]
#                                            [--out DIR] [--raw DIR] [--build-dir DIR]
#   --requests N   requests per h2 run (default 200000)
#   --repeat R     runs of each pair (default 3)
#   --smoke        N=2000, one run, results in the temp dir only: checks that everything works
#   --out DIR      where client_vs_h2load.md goes (default bench/results; --smoke: none)
#   --raw DIR      where client_vs_h2load.json (every run) goes (default bench/results when the
#                  report is kept; git-ignored)
#   --build-dir D  release tree (default build/bench; configured here if it has no build.ninja)
#
# Needs: cmake, ninja, nghttpd and h2load (nghttp2-server, nghttp2-client), nginx, wrk, openssl,
# taskset, python3. wrk is installed with apt-get when missing and the script runs as root.
# Exit status: 0 when every run of every tool completed without an error or a non-2xx answer.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
ROOT=$PWD

# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
parse_bench_args client_vs_h2load.sh "$@"

# Upper bounds of every load loop besides N: fanout's own --duration-max, and `timeout` around
# each client so that nothing here can hang.
RUN_LIMIT_S=$((60 + N / 2000))
CLIENT_TIMEOUT_S=$((RUN_LIMIT_S + 30))


# --- tools ---------------------------------------------------------------------------------------
command -v wrk >/dev/null || apt_install wrk || true
require_tools cmake ninja nghttpd h2load nginx wrk openssl taskset python3 timeout

# --- build ---------------------------------------------------------------------------------------
build_targets "$BUILD_DIR" fanout-client-bench
BENCH=${BUILT[fanout-client-bench]}

# --- servers -------------------------------------------------------------------------------------
make_scratch fanout-client-bench
report_dirs

"$BENCH" --print-body >"$TMP/body.json"
BODY_BYTES=$(wc -c <"$TMP/body.json")
mkdir -p "$TMP/htdocs"
printf 'ok' >"$TMP/htdocs/hook"
# fanout verifies the self-signed certificate with --ca; h2load verifies nothing.
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

# --- runs ----------------------------------------------------------------------------------------
# scenario name | baseline tool | url | conns | streams | server pid | fanout extra flags
SCENARIOS=(
  "h2c 1x100|h2load|http://127.0.0.1:$H2C_PORT/hook|1|100|$H2C_PID|"
  "h2c 8x10|h2load|http://127.0.0.1:$H2C_PORT/hook|8|10|$H2C_PID|"
  "TLS 1x100|h2load|https://127.0.0.1:$TLS_PORT/hook|1|100|$TLS_PID|--ca $TMP/server.pem"
  "TLS 8x10|h2load|https://127.0.0.1:$TLS_PORT/hook|8|10|$TLS_PID|--ca $TMP/server.pem"
  "HTTP/1.1 64x1|wrk|http://127.0.0.1:$H1_PORT/hook|64|1|$H1_PID|--h1"
)
# scenario, run, tool, req/s, ok, server CPU us per request, client CPU us per request, detail
RESULTS=$TMP/runs.tsv
: >"$RESULTS"
FAILED=0
LOAD_BEFORE=$(uptime)
log "load before: $LOAD_BEFORE"
log "N=$N, repeat=$REPEAT, body $BODY_BYTES B, servers on CPU 1, clients on CPU 0"

# Server and client CPU per request: server_ticks, per_request_us, timed, client_us (lib.sh).

run_fanout() {  # scenario run url conns streams server_pid extra; sets WALL
  local scenario=$1 run=$2 url=$3 c=$4 m=$5 spid=$6 extra=$7 out rc=0 t0
  t0=$(server_ticks "$spid")
  # shellcheck disable=SC2086  # extra flags split on purpose
  out=$(timed timeout "$CLIENT_TIMEOUT_S" taskset -c 0 "$BENCH" --url "$url" --requests "$N" \
    --conns "$c" --streams "$m" --body "$TMP/body.json" --duration-max "$RUN_LIMIT_S" \
    $extra --json) || rc=$?
  local sus cus
  sus=$(per_request_us $(($(server_ticks "$spid") - t0)) "$N")
  cus=$(client_us "$N")
  printf '%s\n' "$out" >>"$TMP/fanout.jsonl"
  local fields
  fields=$(python3 -c '
import json, sys
try:
    d = json.loads(sys.argv[1])
except Exception:
    print("0\t0\t0\tno JSON from fanout-client-bench"); sys.exit()
ok = d["ok"] == d["requested"] and d["failed"] == 0 and not d["cut_by_duration"]
detail = "cpu %.2f us/req, %d conns, status %s, failures %s" % (
    d["cpu_us_per_request"], d["connections_opened"], d["by_status"], d["failures"] or "none")
print("%.1f\t%d\t%.6f\t%s" % (d["requests_per_s"], 1 if ok else 0, d["wall_s"], detail))
' "$out")
  local rps okflag wall detail
  IFS=$'\t' read -r rps okflag wall detail <<<"$fields"
  if [[ $rc != 0 || $okflag != 1 ]]; then
    okflag=0
    FAILED=1
    log "  FAILED: fanout $scenario (exit $rc): $detail"
  fi
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$scenario" "$run" fanout "$rps" "$okflag" "$sus" \
    "$cus" "$detail" >>"$RESULTS"
  log "  fanout  $scenario  run $run: $rps req/s; us/req: server $sus, client $cus ($detail)"
  WALL=$wall
}

run_h2load() {  # scenario run url conns streams server_pid
  local scenario=$1 run=$2 url=$3 c=$4 m=$5 spid=$6 out rc=0 t0
  t0=$(server_ticks "$spid")
  out=$(timed timeout "$CLIENT_TIMEOUT_S" taskset -c 0 h2load -n "$N" -c "$c" -m "$m" -t 1 \
    -d "$TMP/body.json" -H 'content-type: application/json' "$url" 2>&1) || rc=$?
  local sus cus
  sus=$(per_request_us $(($(server_ticks "$spid") - t0)) "$N")
  cus=$(client_us "$N")
  printf '%s\n' "$out" >"$TMP/h2load.out"
  cat "$TMP/h2load.out" >>"$TMP/h2load.log"
  local rps succeeded codes okflag=1
  IFS='|' read -r rps succeeded codes < <(benchpy h2load "$TMP/h2load.out")
  if [[ $rc != 0 || -z $rps || $succeeded != "$N" ]]; then
    okflag=0
    FAILED=1
    log "  FAILED: h2load $scenario (exit $rc): $(grep -E '^(requests|status codes):' <<<"$out" | tr '\n' ' ')"
  fi
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$scenario" "$run" h2load "${rps:-0}" "$okflag" \
    "$sus" "$cus" "status codes: $codes" >>"$RESULTS"
  log "  h2load  $scenario  run $run: ${rps:-?} req/s; us/req: server $sus, client $cus"
}

run_wrk() {  # scenario run url conns seconds server_pid
  local scenario=$1 run=$2 url=$3 c=$4 secs=$5 spid=$6 out rc=0 t0
  t0=$(server_ticks "$spid")
  out=$(timed timeout "$CLIENT_TIMEOUT_S" taskset -c 0 wrk -t 1 -c "$c" -d "${secs}s" \
    -s "$TMP/post.lua" "$url" 2>&1) || rc=$?
  local ticks=$(($(server_ticks "$spid") - t0))
  printf '%s\n' "$out" >"$TMP/wrk.out"
  cat "$TMP/wrk.out" >>"$TMP/wrk.log"
  local rps total errors okflag=1 sus cus
  IFS='|' read -r rps total errors < <(benchpy wrk "$TMP/wrk.out")
  sus=$(per_request_us "$ticks" "${total:-0}")
  cus=$(client_us "${total:-0}")
  if [[ $rc != 0 || -z $rps || -n $errors ]]; then
    okflag=0
    FAILED=1
    log "  FAILED: wrk $scenario (exit $rc): $errors"
  fi
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$scenario" "$run" wrk "${rps:-0}" "$okflag" "$sus" \
    "$cus" "${total:-?} requests in ${secs} s" >>"$RESULTS"
  log "  wrk     $scenario  run $run: ${rps:-?} req/s; us/req: server $sus, client $cus (${total:-?} requests in ${secs} s)"
}

for ((run = 1; run <= REPEAT; run++)); do
  for s in "${SCENARIOS[@]}"; do
    IFS='|' read -r scenario tool url c m spid extra <<<"$s"
    log "[$run/$REPEAT] $scenario  (load $(loadavg))"
    WALL=1
    run_fanout "$scenario" "$run" "$url" "$c" "$m" "$spid" "$extra"
    if [[ $tool == h2load ]]; then
      run_h2load "$scenario" "$run" "$url" "$c" "$m" "$spid"
    else
      secs=$(benchpy ceil-seconds "$WALL")
      run_wrk "$scenario" "$run" "$url" "$c" "$secs" "$spid"
    fi
  done
done
LOAD_AFTER=$(uptime)
log "load after: $LOAD_AFTER"

# --- report --------------------------------------------------------------------------------------
COMMAND="bash bench/transport/client_vs_h2load.sh"
[[ $SMOKE == 1 ]] && COMMAND+=" --smoke" || COMMAND+=" --requests $N --repeat $REPEAT"
python3 - "$RESULTS" "$REPORT_DIR" "$RAW_DIR" "$N" "$REPEAT" "$BODY_BYTES" "$COMMAND" \
  "$LOAD_BEFORE" "$LOAD_AFTER" "$SMOKE" <<'PY'
import os, sys
from benchlib import cpu_model, machine_lines, median, paired_ratio, write_json
results, out_dir, raw_dir, n, repeat, body, command, load_before, load_after, smoke = sys.argv[1:]
rows = [l.rstrip("\n").split("\t") for l in open(results) if l.strip()]
order = []
runs = {}
for scenario, run, tool, rps, ok, server_us, client_us, detail in rows:
    if scenario not in order:
        order.append(scenario)
    runs.setdefault((scenario, tool), []).append(
        {"run": int(run), "rps": float(rps), "ok": ok == "1",
         "server_cpu_us_per_request": float(server_us),
         "client_cpu_us_per_request": float(client_us), "detail": detail})

def med(values):
    return median(values, float("nan"))

cpu = cpu_model()

table = []
for scenario in order:
    baseline = "h2load" if ("h2load" in [t for (s, t) in runs if s == scenario]) else "wrk"
    rb, rf = runs[(scenario, baseline)], runs[(scenario, "fanout")]
    b = med(r["rps"] for r in rb)
    f = med(r["rps"] for r in rf)
    # Pairs run back to back, so each pair's ratio shares that moment's machine load.
    paired = paired_ratio((y["rps"], x["rps"]) for x, y in zip(rb, rf))
    paired = float("nan") if paired is None else paired
    table.append({"scenario": scenario, "baseline": baseline, "baseline_rps": b, "fanout_rps": f,
                  "ratio": f / b if b > 0 else 0.0, "median_paired_ratio": paired,
                  "baseline_server_cpu_us_per_request": med(r["server_cpu_us_per_request"] for r in rb),
                  "fanout_server_cpu_us_per_request": med(r["server_cpu_us_per_request"] for r in rf),
                  "baseline_client_cpu_us_per_request": med(r["client_cpu_us_per_request"] for r in rb),
                  "fanout_client_cpu_us_per_request": med(r["client_cpu_us_per_request"] for r in rf),
                  "runs": {"baseline": runs[(scenario, baseline)],
                           "fanout": runs[(scenario, "fanout")]}})

md = []
md.append("# fanout transport::Client vs h2load / wrk")
md.append("")
md.append("Command: `%s` (from the repository root)%s" %
          (command, " - smoke run, numbers meaningless" if smoke == "1" else ""))
md.append("")
md.append("Requests per h2 run: %s; runs per pair: %s (medians below); body %s B of JSON; "
          "clients on CPU 0, servers (nghttpd -n 1, nginx 1 process) on CPU 1." % (n, repeat, body))
md.append("")
md.append("| scenario | baseline | baseline req/s | fanout req/s | ratio |")
md.append("|---|---|---:|---:|---:|")
for t in table:
    md.append("| %s | %s | %.0f | %.0f | %.2f |" % (t["scenario"], t["baseline"], t["baseline_rps"],
                                                   t["fanout_rps"], t["ratio"]))
md.append("")
md.append("CPU cost per request (medians, us): the server's (one core, /proc ticks) shows what each")
md.append("client's framing costs the receiver; the client's (GNU time, whole process) its own work.")
md.append("On a loaded machine these are steadier than the rates.")
md.append("")
md.append("| scenario | paired ratio | server CPU: baseline | server CPU: fanout "
          "| client CPU: baseline | client CPU: fanout |")
md.append("|---|---:|---:|---:|---:|---:|")
for t in table:
    md.append("| %s | %.2f | %.2f | %.2f | %.2f | %.2f |" % (
        t["scenario"], t["median_paired_ratio"], t["baseline_server_cpu_us_per_request"],
        t["fanout_server_cpu_us_per_request"], t["baseline_client_cpu_us_per_request"],
        t["fanout_client_cpu_us_per_request"]))
md.append("")
md.extend(machine_lines(load_before, load_after,
                        [["h2load", "--version"], ["nghttpd", "--version"], ["nginx", "-v"],
                         ["wrk", "--version"]]))
md.append("")
md.append("Every run:")
md.append("")
md.append("| scenario | tool | run | req/s | ok | server CPU us/req | client CPU us/req | detail |")
md.append("|---|---|---:|---:|---|---:|---:|---|")
for t in table:
    for who in ("baseline", "fanout"):
        tool = t["baseline"] if who == "baseline" else "fanout"
        for r in t["runs"][who]:
            md.append("| %s | %s | %d | %.0f | %s | %.2f | %.2f | %s |" % (
                t["scenario"], tool, r["run"], r["rps"], "yes" if r["ok"] else "NO",
                r["server_cpu_us_per_request"], r["client_cpu_us_per_request"], r["detail"]))
text = "\n".join(md) + "\n"
with open(os.path.join(out_dir, "client_vs_h2load.md"), "w") as f:
    f.write(text)
write_json(os.path.join(raw_dir, "client_vs_h2load.json"), {
    "command": command, "requests": int(n), "repeat": int(repeat), "body_bytes": int(body),
    "load_before": load_before.strip(), "load_after": load_after.strip(), "cpu": cpu,
    "smoke": smoke == "1", "scenarios": table})
print(text)
PY
if [[ -n $OUT ]]; then
  log "wrote $OUT/client_vs_h2load.md (data: $RAW/client_vs_h2load.json)"
fi
if [[ $FAILED != 0 ]]; then
  log "some runs FAILED (see above)"
  exit 1
fi
