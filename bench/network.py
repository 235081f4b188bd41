"""bench/network.sh's report: the runs (bench/compare.py parse lines) into a table and the plot's data.

    python3 bench/network.py RUNS OUT_DIR RAW_DIR REPEAT BODY COMMAND LOAD_BEFORE LOAD_AFTER ELAPSED

writes OUT_DIR/network.md, RAW_DIR/network.json (every run and the medians) and RAW_DIR/network.tsv
(one row per case: label, then requests/s and p99 in ms of fanout-load, h2load, curl_multi).
A run's scenario is "PATH|PROTO|CONNS". fanout-load's latency is its response_us (the last
attempt's round trip), the figure that matches h2load's and curl_multi's per-request time.
"""
import json, sys

from benchlib import fmt, machine_lines, median, paired_ratio, read_jsonl, write_json

TOOLS = ("fanout", "h2load", "curl_multi")
GOAL = 0.9  # fanout-load >= 0.9x h2load


def p99_us(d):
    if d["tool"] == "fanout":
        return ((d.get("raw") or {}).get("response_us") or {}).get("p99")
    return d.get("p99_us")


def main(a):
    runs_f, out_dir, raw_dir, repeat, body, command, load_before, load_after, elapsed = a
    runs = read_jsonl(runs_f)
    cases = []
    for d in runs:
        if d["scenario"] not in cases:
            cases.append(d["scenario"])
    rows = []
    for c in cases:
        path, proto, conns = c.split("|")
        row = {"path": path, "protocol": "HTTP/2 (h2c)" if proto == "h2c" else "HTTP/1.1",
               "conns": int(conns), "streams": 100 if proto == "h2c" else 1, "tools": {}}
        per = {t: [d for d in runs if d["scenario"] == c and d["tool"] == t] for t in TOOLS}
        for t, r in per.items():
            row["tools"][t] = {
                "rate": median(d["rate"] for d in r), "p99_us": median(p99_us(d) for d in r),
                "requests": median(d["requests"] for d in r),
                "server_cpu_us_per_request": median(d["server_cpu_us_per_request"] for d in r),
                "client_cpu_us_per_request": median(d["client_cpu_us_per_request"] for d in r),
                "relay_cpu_us_per_request": median(d.get("also_cpu_us_per_request") for d in r),
                "runs": len(r), "all_ok": all(d["ok"] for d in r)}
        f = per["fanout"]
        for t in ("h2load", "curl_multi"):
            row["fanout_to_" + t] = paired_ratio(
                (x["rate"], y["rate"]) for x, y in zip(f, per[t]))
        rows.append(row)
    write_json(raw_dir + "/network.json", {"command": command, "repeat": int(repeat),
                                          "body_bytes": int(body), "cases": rows, "runs": runs})
    with open(raw_dir + "/network.tsv", "w") as tsv:
        for r in rows:
            label = "%s %s %dc" % ("h2" if r["streams"] > 1 else "h1", r["path"], r["conns"])
            vals = [r["tools"][t]["rate"] for t in TOOLS]
            vals += [(r["tools"][t]["p99_us"] or float("nan")) / 1000 for t in TOOLS]
            tsv.write(label + "\t" + "\t".join(fmt(v, "%.3f", "NaN") for v in vals) + "\n")

    md = ["# fanout-load, h2load and libcurl across a delaying relay", ""]
    md.append("Command: `%s` (from the repository root), %s s. Body %s B. Servers (nghttpd -n 1, "
              "nginx one process) and relays (`fanout-delay-relay`, RTT = 2 x D) on CPU 1, "
              "clients on CPU 0, one at a time, interleaved. Medians of %s runs; the ratios are "
              "medians of the ratios of back-to-back runs. p99: each request's round trip "
              "(fanout-load: `response_us`)." % (command, elapsed, body, repeat))
    md.append("")
    md.append("| path | protocol | conns | requests | fanout-load /s | h2load /s | curl_multi /s "
              "| fanout / h2load | fanout / curl | p99 ms fanout | p99 ms h2load | p99 ms curl "
              "| relay CPU µs/req (fanout, h2load) |")
    md.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        t = r["tools"]
        ok = all(t[x]["all_ok"] for x in TOOLS)
        md.append("| %s | %s | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s, %s%s |" % (
            r["path"], r["protocol"], r["conns"], fmt(t["fanout"]["requests"]),
            fmt(t["fanout"]["rate"]), fmt(t["h2load"]["rate"]), fmt(t["curl_multi"]["rate"]),
            fmt(r["fanout_to_h2load"], "%.2f"), fmt(r["fanout_to_curl_multi"], "%.2f"),
            fmt(t["fanout"]["p99_us"] and t["fanout"]["p99_us"] / 1000, "%.1f"),
            fmt(t["h2load"]["p99_us"] and t["h2load"]["p99_us"] / 1000, "%.1f"),
            fmt(t["curl_multi"]["p99_us"] and t["curl_multi"]["p99_us"] / 1000, "%.1f"),
            fmt(t["fanout"]["relay_cpu_us_per_request"], "%.2f"),
            fmt(t["h2load"]["relay_cpu_us_per_request"], "%.2f"),
            "" if ok else " (a run FAILED)"))
    md.append("")
    md.append("Goal (issue 16): fanout-load >= %.1fx h2load on every path. Not met on: %s." % (
        GOAL, ", ".join("%s %s %dc (%.2f)" % (r["path"], r["protocol"], r["conns"],
                                              r["fanout_to_h2load"])
                        for r in rows if r["fanout_to_h2load"] is not None
                        and r["fanout_to_h2load"] < GOAL) or "none"))
    md.append("")
    md.append("CPU per request (µs, medians): server and client")
    md.append("")
    md.append("| path | protocol | conns | server: fanout-load | server: h2load | client: fanout-load "
              "| client: h2load | client: curl_multi |")
    md.append("|---|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        t = r["tools"]
        md.append("| %s | %s | %d | %s | %s | %s | %s | %s |" % (
            r["path"], r["protocol"], r["conns"],
            fmt(t["fanout"]["server_cpu_us_per_request"], "%.2f"),
            fmt(t["h2load"]["server_cpu_us_per_request"], "%.2f"),
            fmt(t["fanout"]["client_cpu_us_per_request"], "%.2f"),
            fmt(t["h2load"]["client_cpu_us_per_request"], "%.2f"),
            fmt(t["curl_multi"]["client_cpu_us_per_request"], "%.2f")))
    md.append("")
    md += machine_lines(load_before, load_after,
                        (["h2load", "--version"], ["nghttpd", "--version"], ["nginx", "-v"]))
    md.append("")
    md.append("![requests/s and p99 per case](network.png)")
    with open(out_dir + "/network.md", "w") as f:
        f.write("\n".join(md) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
