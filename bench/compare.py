"""bench/compare.sh's Python: one client run's output read into a JSON line, and the report.

    python3 bench/compare.py parse TOOL OUT ERR RC KIND SCENARIO RUN REQUESTS SERVER_TICKS CLK_TCK
                                   CPUFILE LOAD TIMES OFFERED
    python3 bench/compare.py summary JSON
    python3 bench/compare.py report RUNS SKIPS OUT_DIR RAW_DIR N REPEAT BODY COMMAND LOAD_BEFORE
                                    LOAD_AFTER SMOKE SIGN_N ELAPSED FANOUT_KIND

report writes OUT_DIR/compare.md, RAW_DIR/compare.json and RAW_DIR/compare-sweep.tsv (the
plotted medians).
"""
import json, os, sys, time

from benchlib import (cpu_model, fmt, h2load_latencies, last_json, machine_lines, median,
                      paired_ratio, parse_h2load, parse_wrk, percentile, read_jsonl, tool_version,
                      write_json)

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
    if tool in ("fanout", "fanout-signed"):
        j = last_json(out)
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
    elif tool in ("h2load", "h2load-hdr"):
        h = parse_h2load(out)
        d["rate"] = h["rate"] or 0.0
        if h["elapsed_s"] is not None:
            d["elapsed_s"] = h["elapsed_s"]
        d["completed"] = h["succeeded"]
        d["ok"] = rc == 0 and h["rate"] is not None and d["completed"] == n
        d["detail"] = "status codes: " + h["status_codes"]
        lat = h2load_latencies(times) if times else []
        if lat:
            d["p50_us"], d["p99_us"] = percentile(lat, 0.50), percentile(lat, 0.99)
    elif tool in ("wrk", "wrk-hdr"):
        w = parse_wrk(out)
        d["rate"] = w["rate"] or 0.0
        d["completed"] = w["completed"]
        if w["elapsed_s"] is not None:
            d["elapsed_s"] = w["elapsed_s"]
        d["ok"] = rc == 0 and w["rate"] is not None and not w["errors"]
        d["detail"] = "; ".join(w["errors"]) or "%d requests in a fixed duration" % d["completed"]
    elif tool in ("curl_multi", "undici"):
        j = last_json(out)
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
        j = last_json(out)
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

def med(values):
    return median(values)

def report(a):
    (runs_f, skips_f, out_dir, raw_dir, n, repeat, body, command, load_before, load_after, smoke,
     sign_n, elapsed, fanout_kind) = a
    runs = read_jsonl(runs_f)
    skips = read_jsonl(skips_f)
    def pick(kind, scenario, tool):
        return [d for d in runs if d["kind"] == kind and d["scenario"] == scenario and d["tool"] == tool]
    cases = []
    for d in runs:
        if d["kind"] == "throughput" and d["scenario"] not in cases:
            cases.append(d["scenario"])
    peers = ("h2load", "h2load-hdr", "wrk", "wrk-hdr", "curl_multi", "undici")
    goals = {"h2load": 0.9, "h2load-hdr": 0.97, "wrk": 0.9, "wrk-hdr": 0.97, "curl_multi": 6.0,
             "undici": 20.0}
    throughput = []
    for c in cases:
        f = pick("throughput", c, "fanout")
        row = {"scenario": c, "fanout": {
            "rate": med(d["rate"] for d in f), "p99_us": med(d.get("p99_us") for d in f),
            "server_cpu_us_per_request": med(d["server_cpu_us_per_request"] for d in f),
            "client_cpu_us_per_request": med(d["client_cpu_us_per_request"] for d in f),
            # The publishing thread's share (parse, route, body, enqueue), by fanout-load's own
            # per-thread clock: what fanout does that the peers do not.
            "publisher_cpu_us_per_request": med(
                (d.get("raw") or {}).get("publisher_cpu_us_per_event") for d in f),
            "runs": len(f), "all_ok": all(d["ok"] for d in f)}, "peers": {}}
        for p in peers:
            r = pick("throughput", c, p)
            if not r:
                continue
            rate = med(d["rate"] for d in r)
            fr = row["fanout"]["rate"]
            paired = paired_ratio((x["rate"], y["rate"]) for x, y in zip(f, r))
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
              "median_paired_ratio_to_boringssl": paired_ratio(
                  (d["rate"], by_run[d["run"]]["rate"]) for d in sf if d["run"] in by_run),
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

    def yes(b):
        return "-" if b is None else "yes" if b else "**no**"
    cpu = cpu_model()
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
    md.append("")
    md.append("## Against h2load sending fanout's header set (issue 16, goal 1)")
    md.append("")
    md.append("The baseline is h2load-hdr (h2load with `user-agent: fanout/...`, a 32-hex-digit "
              "`x-partoo-event-id` and `x-partoo-attempt: 1`: the same names, values of the same "
              "length; its event id repeats, so HPACK indexes it, where fanout's are unique) and, "
              "over HTTP/1.1, wrk-hdr (wrk with the same three headers). Goals: fanout's client CPU per delivery (whole process, "
              "publishing thread included) <= 0.85x the peer's per request; the receiver's CPU per "
              "fanout request <= 1.05x; throughput >= 0.97x. Bare h2load beside it. The last two "
              "columns split fanout's client CPU: its publishing thread (the envelope's validating "
              "parse, routing, the body, the hand-off: work the peers do not do), and the rest "
              "(the worker delivering, by HTTP, what the peer does) against the peer's.")
    md.append("")
    md.append("| case | peer | client CPU us: fanout / peer | ratio (<= 0.85) | receiver CPU us: "
              "fanout / peer | ratio (<= 1.05) | throughput ratio (>= 0.97) | to bare h2load | "
              "fanout's publishing thread us | the rest / peer |")
    md.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in throughput:
        p = next((q for q in ("h2load-hdr", "wrk-hdr", "wrk") if q in r["peers"]), None)
        if p is None:
            continue
        g, f = r["peers"][p], r["fanout"]
        cr = (f["client_cpu_us_per_request"] / g["client_cpu_us_per_request"]
              if f["client_cpu_us_per_request"] and g["client_cpu_us_per_request"] else None)
        sr = (f["server_cpu_us_per_request"] / g["server_cpu_us_per_request"]
              if f["server_cpu_us_per_request"] and g["server_cpu_us_per_request"] else None)
        bare = r["peers"].get("h2load")
        pub = f.get("publisher_cpu_us_per_request")
        rest = (f["client_cpu_us_per_request"] - pub) / g["client_cpu_us_per_request"] if (
            pub is not None and f["client_cpu_us_per_request"]
            and g["client_cpu_us_per_request"]) else None
        md.append("| %s | %s | %s / %s | %s %s | %s / %s | %s %s | %s %s | %s | %s | %s |" % (
            r["scenario"], p, fmt(f["client_cpu_us_per_request"], "%.2f"),
            fmt(g["client_cpu_us_per_request"], "%.2f"), fmt(cr, "%.2f"),
            "" if cr is None else "yes" if cr <= 0.85 else "**no**",
            fmt(f["server_cpu_us_per_request"], "%.2f"),
            fmt(g["server_cpu_us_per_request"], "%.2f"), fmt(sr, "%.2f"),
            "" if sr is None else "yes" if sr <= 1.05 else "**no**",
            fmt(g["ratio"], "%.2f"), yes(g["ratio"] >= 0.97 if g["ratio"] else None),
            fmt(bare and bare["ratio"], "%.2f"), fmt(pub, "%.2f"), fmt(rest, "%.2f")))
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
    md.extend(machine_lines(load_before, load_after))
    curl_v = next((d["raw"].get("libcurl") for d in runs if d["tool"] == "curl_multi" and d.get("raw")), "?")
    und = next((d["raw"] for d in runs if d["tool"] == "undici" and d.get("raw")), {})
    md.append("- %s; %s; %s; %s; libcurl %s; undici %s on node %s" % (
        tool_version(["h2load", "--version"]), tool_version(["nghttpd", "--version"]),
        tool_version(["nginx", "-v"]), tool_version(["wrk", "--version"]), curl_v,
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
    write_json(os.path.join(raw_dir, "compare.json"), {
        "command": command, "requests": int(n), "repeat": int(repeat), "body_bytes": int(body),
        "fanout": fanout_kind, "elapsed_s": int(elapsed), "load_before": load_before.strip(),
        "load_after": load_after.strip(), "cpu": cpu, "smoke": smoke == "1",
        "throughput": throughput, "signed": signed, "sweep": sweep,
        "latency_goal": latency_goal, "skipped": skips, "runs": runs})
    with open(os.path.join(raw_dir, "compare-sweep.tsv"), "w") as f:
        f.write("# pct\toffered\tfanout_rate\th2load_rate\tfanout_p99_ms\th2load_p99_ms\n")
        for s in sweep:
            row = [s["pct"], s["offered"], s["fanout_rate"], s["h2load_rate"],
                   s["fanout_p99_us"] / 1000 if s["fanout_p99_us"] is not None else None,
                   s["h2load_p99_us"] / 1000 if s["h2load_p99_us"] is not None else None]
            f.write("\t".join("NaN" if v is None else str(v) for v in row) + "\n")
    print(text)

if __name__ == "__main__":
    {"parse": parse, "summary": summary, "report": report}[sys.argv[1]](sys.argv[2:])
