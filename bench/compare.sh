#!/usr/bin/env bash
# fanout-load against the clients nobody here wrote, end to end, in one run (issue 6, "bench/"):
#
#   case            server (CPU 1)          clients, one at a time on CPU 0, same C x M and body
#   h2c 1x100       nghttpd --no-tls -n 1   fanout-load, h2load -c 1 -m 100, curl_multi
#   h2c 8x10        nghttpd --no-tls -n 1   fanout-load, h2load -c 8 -m 10, curl_multi
#   TLS 1x100       nghttpd (TLS) -n 1      fanout-load, h2load, curl_multi, undici (allowH2)
#   HTTP/1.1 64x1   nginx, one process      fanout-load --http1, wrk -c 64, curl_multi, undici
#   signed 1x100    nghttpd --no-tls -n 1   fanout-load --sign beside the raw Ed25519 sign rate
#                                           (fanout-load --sign-rate-only, on CPU 0)
#   latency sweep   nghttpd --no-tls -n 1   fanout-load --rate R and h2load --rps R (1x100) at
#                                           10/25/50/75/90/100 % of fanout's h2c 1x100 rate
#
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
#   bash bench/compare.sh [--events N] [--repeat R] [--smoke] [--out DIR] [--build-dir DIR]
#   --events N     requests (events) per client run (default 200000)
#   --repeat R     runs of each client in each case, and of each sweep point (default 3)
#   --smoke        N=2000, one run, every case and a short sweep: checks the wiring; results go
#                  to the temp dir only unless --out is given
#   --out DIR      where compare.md, compare.json and compare.png go (default bench/results)
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
if [[ -n $OUT ]]; then
  mkdir -p "$OUT"
  OUT=$(cd "$OUT" && pwd)
fi

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
H2C_URL=http://127.0.0.1:$H2C_PORT/hook
TLS_URL=https://127.0.0.1:$TLS_PORT/hook
H1_URL=http://127.0.0.1:$H1_PORT/hook

# --- parsing and reporting (python, one file) ----------------------------------------------------
cat >"$TMP/compare.py" <<'PY'
import json, os, platform, re, statistics, subprocess, sys, time

def parse(a):
    """parse TOOL OUT ERR RC KIND SCENARIO RUN REQUESTS SERVER_TICKS CLK_TCK CPUFILE LOAD TIMES
    OFFERED -> one JSON line: kind, scenario, run, tool, ok, rate, completed, p50_us, p99_us, ...
    (TIMES: h2load's --log-file or ""; OFFERED: the offered rate of a sweep run or "")"""
    tool, out_f, err_f, rc, kind, scenario, run, n, ticks, hz, cpu_f, load, times, offered = a
    out = open(out_f, errors="replace").read()
    err = open(err_f, errors="replace").read()
    rc, n, ticks, hz = int(rc), int(n), int(ticks), int(hz)
    d = {"kind": kind, "scenario": scenario, "run": int(run), "tool": tool, "exit": rc,
         "requests": n, "load": load, "rate": 0.0, "completed": 0, "ok": False}
    if offered:
        d["offered"] = int(offered)
    def last_json():
        for line in reversed(out.strip().splitlines()):
            line = line.strip()
            if line.startswith("{"):
                try:
                    return json.loads(line)
                except ValueError:
                    pass
        return None
    if tool in ("fanout", "fanout-signed"):
        j = last_json()
        if j is None:
            d["detail"] = "no JSON: " + (out + err)[-300:]
        else:
            d["raw"] = j
            delivered = j.get("delivered", 0)
            published = j.get("published", j.get("events", delivered))
            bad = sum(int(j.get(k, 0) or 0)
                      for k in ("rejected", "exhausted", "dropped", "unfinished", "refused"))
            d["rate"] = float(j.get("deliveries_per_s", 0.0))
            d["completed"] = delivered
            lat = j.get("latency_us") or {}
            d["p50_us"], d["p99_us"] = lat.get("p50"), lat.get("p99")
            d["elapsed_s"] = j.get("elapsed_s")
            d["ok"] = (rc == 0 and delivered == n and published == n and bad == 0
                       and not j.get("cut", False))
            d["detail"] = "delivered %s/%s, not delivered %s, connections h2 %s h1 %s%s" % (
                delivered, n, bad, j.get("connections_h2"), j.get("connections_h1"),
                (", " + j["first_failure"]) if j.get("first_failure") else "")
    elif tool == "h2load":
        m = re.search(r"^finished in ([0-9.]+)(m?s), ([0-9.]+) req/s", out, re.M)
        s = re.search(r"^requests: .* ([0-9]+) succeeded", out, re.M)
        c = re.search(r"^status codes: (.*)$", out, re.M)
        d["rate"] = float(m.group(3)) if m else 0.0
        if m:
            d["elapsed_s"] = float(m.group(1)) / (1000.0 if m.group(2) == "ms" else 1.0)
        d["completed"] = int(s.group(1)) if s else 0
        d["ok"] = rc == 0 and m is not None and d["completed"] == n
        d["detail"] = "status codes: " + (c.group(1) if c else "?")
        lat = []
        if times:
            try:
                for line in open(times):
                    f = line.split("\t")
                    if len(f) >= 3:
                        lat.append(int(f[2]))
            except OSError:
                pass
        if lat:
            lat.sort()
            pick = lambda q: lat[min(len(lat) - 1, max(0, int(q * len(lat) + 0.5) - 1))]
            d["p50_us"], d["p99_us"] = pick(0.50), pick(0.99)
    elif tool == "wrk":
        m = re.search(r"^Requests/sec: *([0-9.]+)", out, re.M)
        t = re.search(r"^ *([0-9]+) requests in ([0-9.]+)(m?s)", out, re.M)
        d["rate"] = float(m.group(1)) if m else 0.0
        d["completed"] = int(t.group(1)) if t else 0
        if t:
            d["elapsed_s"] = float(t.group(2)) / (1000.0 if t.group(3) == "ms" else 1.0)
        errors = re.findall(r"^ *(Non-2xx.*|Socket errors.*)$", out, re.M)
        d["ok"] = rc == 0 and m is not None and not errors
        d["detail"] = "; ".join(errors) or "%d requests in a fixed duration" % d["completed"]
    elif tool in ("curl_multi", "undici"):
        j = last_json()
        if j is None:
            d["detail"] = "no JSON: " + (out + err)[-300:]
        else:
            d["raw"] = j
            d["rate"] = float(j["requests_per_s"])
            d["completed"] = j["ok"]
            d["p50_us"], d["p99_us"] = j["p50_us"], j["p99_us"]
            d["elapsed_s"] = j["elapsed_s"]
            d["ok"] = rc == 0 and j["ok"] == n
            d["detail"] = "ok %s/%s, failed %s%s%s" % (
                j["ok"], n, j.get("failed"),
                (", error " + j["first_error"]) if j.get("first_error") else "",
                (", alpn %s" % j["alpn"]) if "alpn" in j else
                (", connections %s" % j["connections"]) if "connections" in j else "")
    elif tool == "sign-rate":
        j = last_json()
        d["raw"] = j
        if j is not None:
            d["rate"] = float(j.get("boringssl_per_s", 0.0))
            d["signer_per_s"] = float(j.get("signer_per_s", 0.0))
            d["ok"] = rc == 0 and d["rate"] > 0
            d["completed"] = n
            d["detail"] = "BoringSSL ED25519_sign %.0f/s, fanout's Signer %.0f/s" % (
                d["rate"], d["signer_per_s"])
        else:
            d["detail"] = "no JSON: " + (out + err)[-300:]
    done = d["completed"] or n
    d["server_cpu_us_per_request"] = ticks / hz * 1e6 / done if done else None
    d["client_cpu_us_per_request"] = None
    try:
        f = open(cpu_f).read().split()
        if len(f) >= 2 and done:
            d["client_cpu_us_per_request"] = (float(f[-2]) + float(f[-1])) * 1e6 / done
    except (OSError, ValueError):
        pass
    if not d["ok"] and rc != 0:
        d["detail"] = d.get("detail", "") + " (exit %d%s)" % (
            rc, "; stderr: " + err.strip()[-300:] if err.strip() else "")
    print(json.dumps(d))

def field(a):
    """field JSON KEY -> the value (empty when missing)"""
    v = json.loads(a[0]).get(a[1])
    print("" if v is None else (int(v) if isinstance(v, bool) else v))

def summary(a):
    d = json.loads(a[0])
    s = "%-13s %10.0f/s" % (d["tool"], d["rate"])
    if d.get("p99_us") is not None:
        s += "  p50 %s us  p99 %s us" % (d.get("p50_us"), d["p99_us"])
    if d.get("server_cpu_us_per_request") is not None:
        s += "  server %.2f us/req" % d["server_cpu_us_per_request"]
    if d.get("client_cpu_us_per_request") is not None:
        s += "  client %.2f us/req" % d["client_cpu_us_per_request"]
    if not d["ok"]:
        s += "  FAILED: " + d.get("detail", "")
    print(s)

def saturation(a):
    """saturation RUNS KIND SCENARIO TOOL -> median rate (integer, 0 if none)"""
    rates = [d["rate"] for d in map(json.loads, open(a[0]))
             if d["kind"] == a[1] and d["scenario"] == a[2] and d["tool"] == a[3] and d["ok"]]
    print(int(statistics.median(rates)) if rates else 0)

def med(values):
    values = [v for v in values if v is not None and v == v]
    return statistics.median(values) if values else None

def version(cmd):
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
        return ((p.stdout + p.stderr).strip().splitlines() or ["?"])[0]
    except Exception:
        return "?"

def report(a):
    (runs_f, skips_f, out_dir, n, repeat, body, command, load_before, load_after, smoke,
     sign_n, elapsed, fanout_kind) = a
    runs = [json.loads(l) for l in open(runs_f) if l.strip()]
    skips = [json.loads(l) for l in open(skips_f) if l.strip()]
    def pick(kind, scenario, tool):
        return [d for d in runs if d["kind"] == kind and d["scenario"] == scenario and d["tool"] == tool]
    cases = []
    for d in runs:
        if d["kind"] == "throughput" and d["scenario"] not in cases:
            cases.append(d["scenario"])
    peers = ("h2load", "wrk", "curl_multi", "undici")
    goals = {"h2load": 0.9, "wrk": 0.9, "curl_multi": 6.0, "undici": 20.0}
    throughput = []
    for c in cases:
        f = pick("throughput", c, "fanout")
        row = {"scenario": c, "fanout": {
            "rate": med(d["rate"] for d in f), "p99_us": med(d.get("p99_us") for d in f),
            "server_cpu_us_per_request": med(d["server_cpu_us_per_request"] for d in f),
            "client_cpu_us_per_request": med(d["client_cpu_us_per_request"] for d in f),
            "runs": len(f), "all_ok": all(d["ok"] for d in f)}, "peers": {}}
        for p in peers:
            r = pick("throughput", c, p)
            if not r:
                continue
            rate = med(d["rate"] for d in r)
            fr = row["fanout"]["rate"]
            paired = med(x["rate"] / y["rate"] for x, y in zip(f, r) if y["rate"] > 0)
            row["peers"][p] = {
                "rate": rate, "p99_us": med(d.get("p99_us") for d in r),
                "ratio": fr / rate if fr and rate else None, "median_paired_ratio": paired,
                "goal": goals[p], "met": (fr / rate >= goals[p]) if fr and rate else None,
                "server_cpu_us_per_request": med(d["server_cpu_us_per_request"] for d in r),
                "client_cpu_us_per_request": med(d["client_cpu_us_per_request"] for d in r),
                "runs": len(r), "all_ok": all(d["ok"] for d in r)}
        throughput.append(row)
    signs = [d for d in runs if d["kind"] == "sign-rate"]
    sf = pick("signed", "signed h2c 1x100", "fanout-signed")
    boring, signer = med(d["rate"] for d in signs), med(d.get("signer_per_s") for d in signs)
    srate = med(d["rate"] for d in sf)
    by_run = {d["run"]: d for d in signs}
    signed = {"scenario": "signed h2c 1x100", "fanout_deliveries_per_s": srate,
              "boringssl_sign_per_s": boring, "signer_sign_per_s": signer,
              "ratio_to_boringssl": srate / boring if srate and boring else None,
              "ratio_to_signer": srate / signer if srate and signer else None,
              "median_paired_ratio_to_boringssl": med(
                  d["rate"] / by_run[d["run"]]["rate"] for d in sf
                  if d["run"] in by_run and by_run[d["run"]]["rate"] > 0),
              "goal": 0.85, "p99_us": med(d.get("p99_us") for d in sf)}
    signed["met"] = (signed["ratio_to_boringssl"] >= 0.85
                     if signed["ratio_to_boringssl"] is not None else None)
    sweep = []
    pcts = sorted({int(d["scenario"].split("%")[0]) for d in runs if d["kind"] == "sweep"})
    for p in pcts:
        sc = "%d%%" % p
        f, h = pick("sweep", sc, "fanout"), pick("sweep", sc, "h2load")
        sweep.append({"pct": p, "offered": med(d.get("offered") for d in f + h),
                      "fanout_rate": med(d["rate"] for d in f),
                      "fanout_p50_us": med(d.get("p50_us") for d in f),
                      "fanout_p99_us": med(d.get("p99_us") for d in f),
                      "h2load_rate": med(d["rate"] for d in h),
                      "h2load_p50_us": med(d.get("p50_us") for d in h),
                      "h2load_p99_us": med(d.get("p99_us") for d in h)})
    half = next((s for s in sweep if s["pct"] == 50), None)
    latency_goal = {"offered": half["offered"] if half else None,
                    "fanout_p99_us": half["fanout_p99_us"] if half else None,
                    "goal_us": 5000}
    latency_goal["met"] = (half["fanout_p99_us"] < 5000
                           if half and half["fanout_p99_us"] is not None else None)

    def fmt(v, spec="%.0f"):
        return "-" if v is None or v != v else spec % v
    def yes(b):
        return "-" if b is None else "yes" if b else "**no**"
    cpu = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    md = ["# fanout-load against h2load / wrk, libcurl multi and undici", ""]
    md.append("Command: `%s` (from the repository root)%s" %
              (command, " - smoke run, numbers meaningless" if smoke == "1" else ""))
    md.append("")
    md.append("%s requests per client run, %s runs of each (medians below), %s B JSON body (the "
              "delivery body), clients one at a time on CPU 0, servers on CPU 1 (nghttpd -n 1 for "
              "HTTP/2, nginx with one process for HTTP/1.1). fanout: %s with one worker. "
              "Whole run: %s s." % (n, repeat, body, fanout_kind, elapsed))
    md.append("")
    md.append("## Throughput (requests or deliveries per second, medians)")
    md.append("")
    md.append("| case | fanout | h2load / wrk | libcurl multi | undici |")
    md.append("|---|---:|---:|---:|---:|")
    for r in throughput:
        base = r["peers"].get("h2load") or r["peers"].get("wrk")
        md.append("| %s | %s | %s | %s | %s |" % (
            r["scenario"], fmt(r["fanout"]["rate"]), fmt(base and base["rate"]),
            fmt(r["peers"].get("curl_multi", {}).get("rate")),
            fmt(r["peers"].get("undici", {}).get("rate"))))
    md.append("")
    md.append("## fanout's ratio to each peer, against the goals of issue 6")
    md.append("")
    md.append("| case | peer | fanout / peer | paired | goal | met |")
    md.append("|---|---|---:|---:|---:|---|")
    for r in throughput:
        for p, g in r["peers"].items():
            md.append("| %s | %s | %s | %s | >= %g | %s |" % (
                r["scenario"], p, fmt(g["ratio"], "%.2f"), fmt(g["median_paired_ratio"], "%.2f"),
                g["goal"], yes(g["met"])))
    md.append("| signed h2c 1x100 | raw Ed25519 sign rate (BoringSSL) | %s | %s | >= 0.85 | %s |" % (
        fmt(signed["ratio_to_boringssl"], "%.2f"),
        fmt(signed["median_paired_ratio_to_boringssl"], "%.2f"), yes(signed["met"])))
    md.append("| p99 at half of saturation (%s/s) | - | %s us | - | < 5000 us | %s |" % (
        fmt(latency_goal["offered"]), fmt(latency_goal["fanout_p99_us"]), yes(latency_goal["met"])))
    md.append("")
    md.append("paired: the median of each repeat's back-to-back ratio (steadier on a shared machine).")
    if skips:
        md.append("")
        md.append("Not run:")
        md.append("")
        for s in skips:
            md.append("- %s, %s: %s" % (s["scenario"], s["tool"], s["reason"]))
    md.append("")
    md.append("## Signed")
    md.append("")
    md.append("| fanout --sign deliveries/s | BoringSSL ED25519_sign/s | fanout's Signer (libsodium + "
              "base64) sign/s | to BoringSSL | to Signer | fanout p99 us |")
    md.append("|---:|---:|---:|---:|---:|---:|")
    md.append("| %s | %s | %s | %s | %s | %s |" % (
        fmt(signed["fanout_deliveries_per_s"]), fmt(boring), fmt(signer),
        fmt(signed["ratio_to_boringssl"], "%.2f"), fmt(signed["ratio_to_signer"], "%.2f"),
        fmt(signed["p99_us"])))
    md.append("")
    md.append("Sign rates: %s signatures of the %s B body per repeat, on CPU 0 "
              "(fanout-load --sign-rate-only)." % (sign_n, body))
    md.append("")
    md.append("## Latency against offered rate (h2c 1x100)")
    md.append("")
    md.append("fanout: publish to outcome (fanout-load --rate); h2load: its request times "
              "(--rps, --log-file). Plot: compare.png.")
    md.append("")
    md.append("| offered | offered/s | fanout deliveries/s | fanout p50 us | fanout p99 us "
              "| h2load req/s | h2load p50 us | h2load p99 us |")
    md.append("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for s in sweep:
        md.append("| %d%% | %s | %s | %s | %s | %s | %s | %s |" % (
            s["pct"], fmt(s["offered"]), fmt(s["fanout_rate"]), fmt(s["fanout_p50_us"]),
            fmt(s["fanout_p99_us"]), fmt(s["h2load_rate"]), fmt(s["h2load_p50_us"]),
            fmt(s["h2load_p99_us"])))
    md.append("")
    md.append("## CPU per request (medians, us): server (/proc ticks) and client (GNU time)")
    md.append("")
    md.append("| case | client | server CPU | client CPU |")
    md.append("|---|---|---:|---:|")
    for r in throughput:
        md.append("| %s | fanout | %s | %s |" % (
            r["scenario"], fmt(r["fanout"]["server_cpu_us_per_request"], "%.2f"),
            fmt(r["fanout"]["client_cpu_us_per_request"], "%.2f")))
        for p, g in r["peers"].items():
            md.append("| %s | %s | %s | %s |" % (
                r["scenario"], p, fmt(g["server_cpu_us_per_request"], "%.2f"),
                fmt(g["client_cpu_us_per_request"], "%.2f")))
    md.append("")
    md.append("- date: %s" % time.strftime("%Y-%m-%d %H:%M:%S %Z"))
    md.append("- machine: %s, %d CPUs, %s" % (cpu, os.cpu_count() or 0, platform.platform()))
    md.append("- load before: `%s`" % load_before.strip())
    md.append("- load after: `%s`" % load_after.strip())
    curl_v = next((d["raw"].get("libcurl") for d in runs if d["tool"] == "curl_multi" and d.get("raw")), "?")
    und = next((d["raw"] for d in runs if d["tool"] == "undici" and d.get("raw")), {})
    md.append("- %s; %s; %s; %s; libcurl %s; undici %s on node %s" % (
        version(["h2load", "--version"]), version(["nghttpd", "--version"]),
        version(["nginx", "-v"]), version(["wrk", "--version"]), curl_v,
        und.get("undici", "?"), und.get("node", "?")))
    md.append("")
    md.append("Every run:")
    md.append("")
    md.append("| kind | case | tool | run | rate/s | p50 us | p99 us | ok | load | detail |")
    md.append("|---|---|---|---:|---:|---:|---:|---|---|---|")
    for d in runs:
        md.append("| %s | %s | %s | %d | %.0f | %s | %s | %s | %s | %s |" % (
            d["kind"], d["scenario"], d["tool"], d["run"], d["rate"], fmt(d.get("p50_us")),
            fmt(d.get("p99_us")), "yes" if d["ok"] else "NO", d["load"],
            d.get("detail", "").replace("|", "/")))
    text = "\n".join(md) + "\n"
    with open(os.path.join(out_dir, "compare.md"), "w") as f:
        f.write(text)
    with open(os.path.join(out_dir, "compare.json"), "w") as f:
        json.dump({"command": command, "requests": int(n), "repeat": int(repeat),
                   "body_bytes": int(body), "fanout": fanout_kind, "elapsed_s": int(elapsed),
                   "load_before": load_before.strip(), "load_after": load_after.strip(),
                   "cpu": cpu, "smoke": smoke == "1", "throughput": throughput,
                   "signed": signed, "sweep": sweep, "latency_goal": latency_goal,
                   "skipped": skips, "runs": runs}, f, indent=2)
        f.write("\n")
    with open(os.path.join(out_dir, "compare-sweep.tsv"), "w") as f:
        f.write("# pct\toffered\tfanout_rate\th2load_rate\tfanout_p99_ms\th2load_p99_ms\n")
        for s in sweep:
            row = [s["pct"], s["offered"], s["fanout_rate"], s["h2load_rate"],
                   s["fanout_p99_us"] / 1000 if s["fanout_p99_us"] is not None else None,
                   s["h2load_p99_us"] / 1000 if s["h2load_p99_us"] is not None else None]
            f.write("\t".join("NaN" if v is None else str(v) for v in row) + "\n")
    print(text)

{"parse": parse, "field": field, "summary": summary, "saturation": saturation,
 "report": report}[sys.argv[1]](sys.argv[2:])
PY

# --- runs ----------------------------------------------------------------------------------------
RUNS=$TMP/runs.jsonl
SKIPS=$TMP/skipped.jsonl
: >"$RUNS"
: >"$SKIPS"
FAILED=0

# run_client KIND SCENARIO RUN TOOL SERVER_PID REQUESTS [--times FILE] [--offered R] -- CMD...:
# runs CMD on CPU 0 under `timeout`, measures the server's and its own CPU, records one JSON line
# in RUNS and sets LINE to it. --times: h2load's --log-file (latencies); --offered: the sweep's
# offered rate.
run_client() {
  local kind=$1 scenario=$2 run=$3 tool=$4 spid=$5 n=$6 times="" offered=""
  shift 6
  while [[ $1 != -- ]]; do
    case $1 in
      --times) times=$2; shift 2 ;;
      --offered) offered=$2; shift 2 ;;
      *) log "run_client: unknown option $1"; exit 2 ;;
    esac
  done
  shift
  local rc=0 t0
  t0=$(server_ticks "$spid")
  timed timeout "$CLIENT_TIMEOUT_S" taskset -c 0 "$@" >"$TMP/out.txt" 2>"$TMP/err.txt" || rc=$?
  local ticks=$(($(server_ticks "$spid") - t0))
  cat "$TMP/out.txt" "$TMP/err.txt" >>"$TMP/clients.log"
  LINE=$(python3 "$TMP/compare.py" parse "$tool" "$TMP/out.txt" "$TMP/err.txt" "$rc" "$kind" \
    "$scenario" "$run" "$n" "$ticks" "$CLK_TCK" "$TMP/client-cpu.txt" "$(loadavg)" "$times" \
    "$offered")
  printf '%s\n' "$LINE" >>"$RUNS"
  if [[ $(python3 "$TMP/compare.py" field "$LINE" ok) != 1 ]]; then FAILED=1; fi
  log "    $(python3 "$TMP/compare.py" summary "$LINE")"
}

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
    wall=$(python3 "$TMP/compare.py" field "$LINE" elapsed_s)
    if [[ $proto == h1 ]]; then
      secs=$(python3 -c 'import math, sys; print(max(1, math.ceil(float(sys.argv[1] or 1))))' "$wall")
      run_client throughput "$scenario" "$run" wrk "$spid" "$N" -- \
        wrk -t 1 -c "$c" -d "${secs}s" -s "$TMP/post.lua" "$url"
    else
      run_client throughput "$scenario" "$run" h2load "$spid" "$N" -- \
        h2load -n "$N" -c "$c" -m "$m" -t 1 -d "$TMP/body.json" \
        -H 'content-type: application/json' "$url"
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
        if [[ $UNDICI_H2 == 1 ]]; then
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
SAT=$(python3 "$TMP/compare.py" saturation "$RUNS" throughput "h2c 1x100" fanout)
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
REPORT_DIR=${OUT:-$TMP}
COMMAND="bash bench/compare.sh"
if [[ $SMOKE == 1 ]]; then COMMAND+=" --smoke"; else COMMAND+=" --events $N --repeat $REPEAT"; fi
python3 "$TMP/compare.py" report "$RUNS" "$SKIPS" "$REPORT_DIR" "$N" "$REPEAT" "$BODY_BYTES" \
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
plot "$REPORT_DIR/compare-sweep.tsv" using (\$2/1000):(\$3/1000) with linespoints lw 2 pt 7 title "fanout-load", \
     "" using (\$2/1000):(\$4/1000) with linespoints lw 2 pt 5 title "h2load", \
     "" using (\$2/1000):(\$2/1000) with lines dt 2 lc rgb "gray" title "offered"
set ylabel "p99 latency (ms)"
set logscale y
plot "$REPORT_DIR/compare-sweep.tsv" using (\$2/1000):5 with linespoints lw 2 pt 7 title "fanout-load (publish to outcome)", \
     "" using (\$2/1000):6 with linespoints lw 2 pt 5 title "h2load (request time)", \
     5 with lines dt 2 lc rgb "red" title "goal: 5 ms at half of saturation"
unset multiplot
GP
if ! gnuplot "$TMP/compare.gp" 2>"$TMP/gnuplot.err"; then
  log "gnuplot failed: $(cat "$TMP/gnuplot.err")"
  FAILED=1
fi
if [[ -n $OUT ]]; then
  log "wrote $OUT/compare.md, $OUT/compare.json, $OUT/compare.png (data: $OUT/compare-sweep.tsv)"
fi
log "took $((SECONDS - START_S)) s"
if [[ $FAILED != 0 ]]; then
  log "some runs FAILED (see above)"
  exit 1
fi
