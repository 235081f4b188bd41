#!/usr/bin/env bash
# fanout's engine end to end (publish -> 1 worker -> receiver -> Observer) against the physical
# limit of this client stack, in one run (issue 4, "Benchmarks"):
#
#   throughput      server (CPU 1)              baseline (CPU 0)       fanout (CPU 0)
#   h2c 1x100       nghttpd --no-tls -n 1       h2load -c 1 -m 100     fanout-load --conns 1 --streams 100
#   h2c 8x10        nghttpd --no-tls -n 1       h2load -c 8 -m 10      ... --conns 8 --streams 10
#   signed 1x100    nghttpd --no-tls -n 1       raw Ed25519 sign rate  ... --sign --conns 1 --streams 100
#   signed 8x10     nghttpd --no-tls -n 1       (same, measured in     ... --sign --conns 8 --streams 10
#                                               each repeat)
#   signed 1x100,   nghttpd --no-tls -n 1       (same)                 ... --sign --signing-threads 2,
#   2 threads                                                          CPUs 0 and 1 (and 8x10 alike)
#   latency         at half of fanout's measured saturation rate (median of the throughput runs):
#                   fanout-load --rate R (p50/p99 publish -> outcome) beside
#                   h2load --rps R/C --log-file (p50/p99 of its request times) at the same rate.
#
# Same connections x streams, same ~600 B JSON body (fanout-load --print-body: the
# delivery body the engine builds), each client pinned to CPU 0 and nghttpd to CPU 1 (taskset).
# The engine's publishing thread and its worker share CPU 0, as h2load's one thread does. The
# signed baseline is measured on CPU 0 in each repeat by fanout-load --sign-rate-only:
# raw BoringSSL ED25519_sign (the rate issue 4 names) and the engine's Signer (libsodium +
# base64). Every pair runs R times, interleaved; the tables hold medians. Each run also records
# the server's CPU time per request (/proc) and the client's (GNU time, when installed).
# The "2 threads" rows sign off the worker (EngineOptions::signing_threads = 2) with fanout-load
# allowed on both cores, so that the signing threads run where the scheduler finds room (nghttpd
# keeps CPU 1): issue 16's goal 5 compares that rate with the fastest single-core sign rate.
#
# Usage (from the repository root):
#   bash bench/engine/engine_vs_h2load.sh [--events N] [--repeat R] [--smoke]
#                                         [--out DIR] [--raw DIR] [--build-dir DIR]
#   --events N     events (requests) per throughput run (default 200000)
#   --repeat R     runs of each pair (default 3)
#   --smoke        N=2000, one run, results in the temp dir only: checks that everything works
#   --out DIR      where engine_vs_h2load.md goes (default bench/results; --smoke: none)
#   --raw DIR      where engine_vs_h2load.json (every run) goes (default bench/results when the
#                  report is kept; git-ignored)
#   --build-dir D  release tree (default build/bench; configured here if it has no build.ninja)
#
# Needs: cmake, ninja, nghttpd and h2load (nghttp2-server, nghttp2-client), taskset, timeout,
# python3. Exit status: 0 when every run completed with every request answered 2xx.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
ROOT=$PWD

# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
parse_bench_args engine_vs_h2load.sh "$@"

# Signatures per --sign-rate-only run (each library): about a second of signing at full size.
SIGN_N=$((N / 4))
[[ $SIGN_N -ge 1000 ]] || SIGN_N=1000
# Upper bounds of every load loop: fanout's own --duration-max (signing is the slowest path, some
# 20k/s on a loaded core), and `timeout` around each client so that nothing here can hang.
RUN_LIMIT_S=$((60 + N / 2000))
CLIENT_TIMEOUT_S=$((RUN_LIMIT_S + 30))


# --- tools ---------------------------------------------------------------------------------------
require_tools cmake ninja nghttpd h2load taskset python3 timeout

# --- build ---------------------------------------------------------------------------------------
build_targets "$BUILD_DIR" fanout-load  # bench/lib.sh: turns the tools on in BUILD_DIR if needed
BENCH=${BUILT[fanout-load]}

# --- servers -------------------------------------------------------------------------------------
make_scratch fanout-engine-vs-h2load
report_dirs

"$BENCH" --print-body >"$TMP/body.json"
BODY_BYTES=$(wc -c <"$TMP/body.json")
mkdir -p "$TMP/htdocs"
printf 'ok' >"$TMP/htdocs/hook"

PORT=$(free_port)
start_nghttpd "$PORT" "$TMP/htdocs" "$TMP/nghttpd.log"  # sets SERVER_PID
wait_accepting "$PORT" || { log "nghttpd did not start on port $PORT"; cat "$TMP/nghttpd.log" >&2; exit 1; }
URL=http://127.0.0.1:$PORT/hook

# --- helpers -------------------------------------------------------------------------------------

# Every run appends one JSON line to $RUNS: {"kind", "scenario", "run", "tool", ...}.
RUNS=$TMP/runs.jsonl
: >"$RUNS"
FAILED=0
record() {  # json-object
  printf '%s\n' "$1" >>"$RUNS"
}

run_fanout() {  # kind scenario run conns streams events extra...; prints its JSON on stdout
  local kind=$1 scenario=$2 run=$3 c=$4 m=$5 n=$6
  shift 6
  local out rc=0 t0 sus cus
  t0=$(server_ticks "$SERVER_PID")
  out=$(timed timeout "$CLIENT_TIMEOUT_S" taskset -c "${FANOUT_CPUS:-0}" "$BENCH" --url "$URL" --events "$n" \
    --conns "$c" --streams "$m" --workers 1 --duration-max "$RUN_LIMIT_S" --json "$@") || rc=$?
  sus=$(per_request_us $(($(server_ticks "$SERVER_PID") - t0)) "$n")
  cus=$(client_us "$n")
  python3 - "$out" "$kind" "$scenario" "$run" "$rc" "$sus" "$cus" "$(loadavg)" <<'PY'
import json, sys
out, kind, scenario, run, rc, sus, cus, load = sys.argv[1:]
try:
    d = json.loads(out)
except Exception:
    d = {"deliveries_per_s": 0, "delivered": 0, "events": -1, "error": "no JSON: " + out[:200]}
ok = rc == "0" and d.get("delivered") == d.get("events") and not d.get("cut", True)
d.update({"kind": kind, "scenario": scenario, "run": int(run), "tool": "fanout", "ok": ok,
          "exit": int(rc), "server_cpu_us_per_request": float(sus),
          "client_cpu_us_per_request": float(cus) if cus != "nan" else None, "load": load})
print(json.dumps(d))
PY
}

run_h2load() {  # kind scenario run conns streams requests [rps-per-client]; prints JSON
  local kind=$1 scenario=$2 run=$3 c=$4 m=$5 n=$6 rps=${7:-} out rc=0 t0 sus cus
  local extra=()
  if [[ -n $rps ]]; then extra=(--rps="$rps" --log-file="$TMP/h2load-times.tsv"); fi
  : >"$TMP/h2load-times.tsv"
  t0=$(server_ticks "$SERVER_PID")
  out=$(timed timeout "$CLIENT_TIMEOUT_S" taskset -c 0 h2load -n "$n" -c "$c" -m "$m" -t 1 \
    "${extra[@]}" -d "$TMP/body.json" -H 'content-type: application/json' "$URL" 2>&1) || rc=$?
  sus=$(per_request_us $(($(server_ticks "$SERVER_PID") - t0)) "$n")
  cus=$(client_us "$n")
  printf '%s\n' "$out" >>"$TMP/h2load.log"
  python3 - "$out" "$kind" "$scenario" "$run" "$rc" "$sus" "$cus" "$n" "$TMP/h2load-times.tsv" \
    "$(loadavg)" <<'PY'
import json, sys
from benchlib import h2load_latencies, latency_summary, parse_h2load
out, kind, scenario, run, rc, sus, cus, n, times, load = sys.argv[1:]
h = parse_h2load(out)
d = {"kind": kind, "scenario": scenario, "run": int(run), "tool": "h2load",
     "requests_per_s": h["rate"] or 0.0, "succeeded": h["succeeded"],
     "status_codes": h["status_codes"], "exit": int(rc), "server_cpu_us_per_request": float(sus),
     "client_cpu_us_per_request": float(cus) if cus != "nan" else None, "load": load}
d["ok"] = rc == "0" and h["rate"] is not None and d["succeeded"] == int(n)
lat = latency_summary(h2load_latencies(times))
if lat:
    d["latency_us"] = lat
print(json.dumps(d))
PY
}

check() {  # json-line label
  local ok
  ok=$(benchpy field "$1" ok)
  if [[ $ok != 1 ]]; then
    FAILED=1
    log "  FAILED: $2: $1"
  fi
}

summary() {  # json-line
  python3 -c '
import json, sys
d = json.loads(sys.argv[1])
if d["tool"] == "h2load":
    s = "%.0f req/s" % d["requests_per_s"]
    if "latency_us" in d:
        s += ", p50 %d us, p99 %d us" % (d["latency_us"]["p50"], d["latency_us"]["p99"])
elif d.get("mode") == "sign-rate-only":
    s = "Signer %.0f/s, BoringSSL %.0f/s" % (d["signer_per_s"], d["boringssl_per_s"])
else:
    s = "%.0f deliveries/s, p50 %.0f us, p99 %.0f us, cpu %.2f us/event (publisher %.2f)" % (
        d["deliveries_per_s"], d["latency_us"]["p50"], d["latency_us"]["p99"],
        d["cpu_us_per_event"], d["publisher_cpu_us_per_event"])
print(s + "; server %.2f us/req" % d.get("server_cpu_us_per_request", 0))
' "$1"
}

# --- runs ----------------------------------------------------------------------------------------
SHAPES=("1x100|1|100" "8x10|8|10")
LOAD_BEFORE=$(uptime)
log "load before: $LOAD_BEFORE"
log "N=$N, repeat=$REPEAT, body $BODY_BYTES B, nghttpd on CPU 1, clients on CPU 0"

for ((run = 1; run <= REPEAT; run++)); do
  for shape in "${SHAPES[@]}"; do
    IFS='|' read -r name c m <<<"$shape"
    log "[$run/$REPEAT] h2c $name  (load $(loadavg))"
    line=$(run_fanout throughput "h2c $name" "$run" "$c" "$m" "$N")
    record "$line"; check "$line" "fanout h2c $name"; log "  fanout  $(summary "$line")"
    line=$(run_h2load throughput "h2c $name" "$run" "$c" "$m" "$N")
    record "$line"; check "$line" "h2load h2c $name"; log "  h2load  $(summary "$line")"
  done
  # Signing on: the raw sign rate on CPU 0 right before the signed runs.
  log "[$run/$REPEAT] signed  (load $(loadavg))"
  out=$(timeout "$CLIENT_TIMEOUT_S" taskset -c 0 "$BENCH" --sign-rate-only --events "$SIGN_N" --json)
  line=$(python3 -c '
import json, sys
d = json.loads(sys.argv[1]); d.update({"kind": "sign-rate", "scenario": "sign", "run": int(sys.argv[2]),
    "tool": "sign-rate-only", "ok": True, "load": sys.argv[3]}); print(json.dumps(d))' \
    "$out" "$run" "$(loadavg)")
  record "$line"; log "  sign    $(summary "$line")"
  for shape in "${SHAPES[@]}"; do
    IFS='|' read -r name c m <<<"$shape"
    line=$(run_fanout signed "signed $name" "$run" "$c" "$m" "$N" --sign)
    record "$line"; check "$line" "fanout signed $name"; log "  fanout --sign $name  $(summary "$line")"
    line=$(FANOUT_CPUS=0,1 run_fanout signed "signed $name 2 threads" "$run" "$c" "$m" "$N" --sign \
      --signing-threads 2)
    record "$line"; check "$line" "fanout signed $name 2 threads"
    log "  fanout --sign --signing-threads 2 $name  $(summary "$line")"
  done
done

# Latency below saturation: half of fanout's median rate in each scenario, fanout and h2load
# paced at that rate (h2load's --rps is per connection).
half_rate() {  # kind scenario -> events/s (integer)
  local r
  r=$(benchpy median "$RUNS" deliveries_per_s --times 0.5 --default 1000 "kind=$1" "scenario=$2" \
    tool=fanout)
  echo $((r > 1 ? r : 1))
}
LAT_SCENARIOS=("throughput|h2c 1x100|1|100|" "throughput|h2c 8x10|8|10|" "signed|signed 1x100|1|100|--sign")
for ((run = 1; run <= REPEAT; run++)); do
  for s in "${LAT_SCENARIOS[@]}"; do
    IFS='|' read -r kind scenario c m flag <<<"$s"
    rate=$(half_rate "$kind" "$scenario")
    # About 4 s of events at that rate, at most N, at least 1,000.
    events=$((rate * 4))
    [[ $events -le $N ]] || events=$N
    [[ $events -ge 1000 ]] || events=1000
    log "[$run/$REPEAT] latency $scenario at $rate events/s, $events events  (load $(loadavg))"
    # shellcheck disable=SC2086  # an optional flag, split on purpose
    line=$(run_fanout latency "$scenario" "$run" "$c" "$m" "$events" --rate "$rate" $flag)
    record "$line"; check "$line" "fanout latency $scenario"; log "  fanout  $(summary "$line")"
    if [[ -z $flag ]]; then
      rps=$(((rate + c - 1) / c))
      line=$(run_h2load latency "$scenario" "$run" "$c" "$m" "$events" "$rps")
      record "$line"; check "$line" "h2load latency $scenario"; log "  h2load  $(summary "$line")"
    fi
  done
done
LOAD_AFTER=$(uptime)
log "load after: $LOAD_AFTER"

# --- report --------------------------------------------------------------------------------------
COMMAND="bash bench/engine/engine_vs_h2load.sh"
if [[ $SMOKE == 1 ]]; then COMMAND+=" --smoke"; else COMMAND+=" --events $N --repeat $REPEAT"; fi
python3 - "$RUNS" "$REPORT_DIR" "$RAW_DIR" "$N" "$REPEAT" "$BODY_BYTES" "$COMMAND" \
  "$LOAD_BEFORE" "$LOAD_AFTER" "$SMOKE" "$SIGN_N" <<'PY'
import os, sys
from benchlib import cpu_model, fmt, machine_lines, median, paired_ratio, read_jsonl, write_json
(runs_file, out_dir, raw_dir, n, repeat, body, command, load_before, load_after, smoke,
 sign_n) = sys.argv[1:]
runs = read_jsonl(runs_file)

def med(values):
    return median(values, float("nan"))

def paired(pairs):
    r = paired_ratio(pairs)
    return float("nan") if r is None else r

def pick(kind, scenario, tool):
    return [d for d in runs if d["kind"] == kind and d["scenario"] == scenario and d["tool"] == tool]

cpu = cpu_model()

throughput = []
for scenario in ("h2c 1x100", "h2c 8x10"):
    f, h = pick("throughput", scenario, "fanout"), pick("throughput", scenario, "h2load")
    fr, hr = med(d["deliveries_per_s"] for d in f), med(d["requests_per_s"] for d in h)
    paired_r = paired((x["deliveries_per_s"], y["requests_per_s"]) for x, y in zip(f, h))
    throughput.append({
        "scenario": scenario, "h2load_rps": hr, "fanout_deliveries_per_s": fr,
        "ratio": fr / hr if hr > 0 else 0.0, "median_paired_ratio": paired_r,
        "fanout_cpu_us_per_event": med(d.get("cpu_us_per_event") for d in f),
        "fanout_publisher_cpu_us_per_event": med(d.get("publisher_cpu_us_per_event") for d in f),
        "h2load_client_cpu_us_per_request": med(d["client_cpu_us_per_request"] for d in h),
        "fanout_server_cpu_us_per_request": med(d["server_cpu_us_per_request"] for d in f),
        "h2load_server_cpu_us_per_request": med(d["server_cpu_us_per_request"] for d in h)})
    t = throughput[-1]
    # What the ratio would be were both CPU-bound on CPU 0: steadier than the rates when other
    # processes share the machine.
    t["cpu_ratio"] = (t["h2load_client_cpu_us_per_request"] / t["fanout_cpu_us_per_event"]
                      if t["fanout_cpu_us_per_event"] and t["h2load_client_cpu_us_per_request"]
                      else float("nan"))

signs = [d for d in runs if d["kind"] == "sign-rate"]
boring = med(d["boringssl_per_s"] for d in signs)
signer = med(d["signer_per_s"] for d in signs)
signed = []
fastest = max(boring, signer)
for scenario in ("signed 1x100", "signed 8x10", "signed 1x100 2 threads", "signed 8x10 2 threads"):
    f = pick("signed", scenario, "fanout")
    fr = med(d["deliveries_per_s"] for d in f)
    # Paired with the sign rates measured in the same repeat.
    by_run = {d["run"]: d for d in signs}
    paired_b = paired((d["deliveries_per_s"], by_run[d["run"]]["boringssl_per_s"])
                      for d in f if d["run"] in by_run)
    paired_fast = paired((d["deliveries_per_s"], max(by_run[d["run"]]["boringssl_per_s"],
                                                     by_run[d["run"]]["signer_per_s"]))
                         for d in f if d["run"] in by_run)
    signed.append({
        "scenario": scenario, "boringssl_sign_per_s": boring, "signer_sign_per_s": signer,
        "fanout_deliveries_per_s": fr, "ratio_to_boringssl": fr / boring if boring > 0 else 0.0,
        "ratio_to_signer": fr / signer if signer > 0 else 0.0,
        "median_paired_ratio_to_boringssl": paired_b,
        "ratio_to_fastest": fr / fastest if fastest > 0 else 0.0,
        "median_paired_ratio_to_fastest": paired_fast,
        "fanout_cpu_us_per_event": med(d.get("cpu_us_per_event") for d in f),
        "fanout_publisher_cpu_us_per_event": med(d.get("publisher_cpu_us_per_event") for d in f)})

latency = []
for scenario in ("h2c 1x100", "h2c 8x10", "signed 1x100"):
    f, h = pick("latency", scenario, "fanout"), pick("latency", scenario, "h2load")
    row = {"scenario": scenario, "rate": med(d["rate"] for d in f),
           "achieved": med(d["deliveries_per_s"] for d in f)}
    for q in ("p50", "p90", "p99", "p999"):
        row["fanout_" + q] = med(d["latency_us"][q] for d in f)
        row["h2load_" + q] = med(d["latency_us"][q] for d in h if "latency_us" in d) if h else None
    latency.append(row)

md = ["# fanout engine end to end vs h2load", ""]
md.append("Command: `%s` (from the repository root)%s" %
          (command, " - smoke run, numbers meaningless" if smoke == "1" else ""))
md.append("")
md.append("Events per throughput run: %s; runs per pair: %s (medians below); body %s B of JSON "
          "(the delivery body); fanout-load (publishing thread + 1 worker) and h2load on "
          "CPU 0, nghttpd -n 1 on CPU 1; 10,000 orgs all subscribed to the one URL." % (n, repeat, body))
md.append("")
md.append("## Throughput (goal: ratio >= 0.85)")
md.append("")
md.append("| scenario | h2load req/s | fanout deliveries/s | ratio | paired ratio | CPU ratio "
          "| fanout CPU us/event (publisher) | h2load CPU us/req | server CPU us/req: h2load / fanout |")
md.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
for t in throughput:
    md.append("| %s | %s | %s | %.2f | %.2f | %s | %s (%s) | %s | %s / %s |" % (
        t["scenario"], fmt(t["h2load_rps"]), fmt(t["fanout_deliveries_per_s"]), t["ratio"],
        t["median_paired_ratio"], fmt(t["cpu_ratio"], "%.2f"),
        fmt(t["fanout_cpu_us_per_event"], "%.2f"),
        fmt(t["fanout_publisher_cpu_us_per_event"], "%.2f"),
        fmt(t["h2load_client_cpu_us_per_request"], "%.2f"),
        fmt(t["h2load_server_cpu_us_per_request"], "%.2f"),
        fmt(t["fanout_server_cpu_us_per_request"], "%.2f")))
md.append("")
md.append("ratio: median fanout rate / median h2load rate; paired: median of each repeat's "
          "back-to-back ratio; CPU ratio: h2load's client CPU per request (GNU time) / fanout's "
          "process CPU per event (getrusage over the run, both threads): the rate ratio when both "
          "are CPU-bound on CPU 0, the steadiest of the three on a shared machine.")
md.append("")
md.append("## Signed (goals: >= 0.85 of the raw BoringSSL Ed25519 sign rate, per worker; "
          ">= 0.9 of the fastest single-core sign rate)")
md.append("")
md.append("Sign rates: %d signatures of the %s B body per library per repeat, on CPU 0. "
          "\"2 threads\": --signing-threads 2, fanout-load on CPUs 0 and 1 (nghttpd on CPU 1); "
          "the other rows sign on the worker, all on CPU 0." % (int(sign_n), body))
md.append("")
md.append("| scenario | BoringSSL sign/s | engine Signer sign/s | fanout signed deliveries/s "
          "| ratio to BoringSSL | paired | ratio to the fastest | paired "
          "| fanout CPU us/event (publisher) |")
md.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
for t in signed:
    md.append("| %s | %s | %s | %s | %.2f | %.2f | %.2f | %.2f | %s (%s) |" % (
        t["scenario"], fmt(t["boringssl_sign_per_s"]), fmt(t["signer_sign_per_s"]),
        fmt(t["fanout_deliveries_per_s"]), t["ratio_to_boringssl"],
        t["median_paired_ratio_to_boringssl"], t["ratio_to_fastest"],
        t["median_paired_ratio_to_fastest"],
        fmt(t["fanout_cpu_us_per_event"], "%.2f"), fmt(t["fanout_publisher_cpu_us_per_event"], "%.2f")))
md.append("")
md.append("## Latency at half of fanout's saturation rate (us)")
md.append("")
md.append("fanout: publish() to the Observer's outcome (log-bucketed, <= 6.25% bucket width); "
          "h2load: its per-request times (--log-file) at the same total rate (--rps per connection).")
md.append("")
md.append("| scenario | rate events/s | fanout p50 | fanout p99 | fanout p99.9 | h2load p50 | h2load p99 |")
md.append("|---|---:|---:|---:|---:|---:|---:|")
for t in latency:
    md.append("| %s | %s | %s | %s | %s | %s | %s |" % (
        t["scenario"], fmt(t["rate"]), fmt(t["fanout_p50"]), fmt(t["fanout_p99"]),
        fmt(t["fanout_p999"]), fmt(t["h2load_p50"]), fmt(t["h2load_p99"])))
md.append("")
md.extend(machine_lines(load_before, load_after,
                        [["h2load", "--version"], ["nghttpd", "--version"]]))
md.append("")
md.append("Every run:")
md.append("")
md.append("| kind | scenario | tool | run | rate/s | p50 us | p99 us | ok | load (1/5/15 min) |")
md.append("|---|---|---|---:|---:|---:|---:|---|---|")
for d in runs:
    if d["tool"] == "fanout":
        r, lat = d["deliveries_per_s"], d.get("latency_us", {})
    elif d["tool"] == "h2load":
        r, lat = d["requests_per_s"], d.get("latency_us", {})
    else:
        r, lat = d["boringssl_per_s"], {}
    md.append("| %s | %s | %s | %d | %.0f | %s | %s | %s | %s |" % (
        d["kind"], d["scenario"], d["tool"] if d["tool"] != "sign-rate-only"
        else "BoringSSL sign (Signer %.0f/s)" % d["signer_per_s"], d["run"], r,
        fmt(lat.get("p50")), fmt(lat.get("p99")), "yes" if d["ok"] else "NO", d["load"]))
text = "\n".join(md) + "\n"
with open(os.path.join(out_dir, "engine_vs_h2load.md"), "w") as f:
    f.write(text)
write_json(os.path.join(raw_dir, "engine_vs_h2load.json"), {
    "command": command, "events": int(n), "repeat": int(repeat), "body_bytes": int(body),
    "load_before": load_before.strip(), "load_after": load_after.strip(), "cpu": cpu,
    "smoke": smoke == "1", "throughput": throughput, "signed": signed, "latency": latency,
    "runs": runs})
print(text)
PY
if [[ -n $OUT ]]; then
  log "wrote $OUT/engine_vs_h2load.md (data: $RAW/engine_vs_h2load.json)"
fi
if [[ $FAILED != 0 ]]; then
  log "some runs FAILED (see above)"
  exit 1
fi
