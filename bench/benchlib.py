"""The Python the benchmark scripts share: h2load's and wrk's output parsed, h2load's latency log,
medians and ratios, Prometheus text from /metrics, JSON lines, and the lines that describe the
machine at the foot of every report.

The scripts import it (bench/lib.sh puts bench/ on PYTHONPATH) and call it from shell:

    python3 bench/benchlib.py COMMAND ARGS...   (bench/lib.sh: benchpy COMMAND ARGS...)

    field JSON KEY                 the value of KEY in the JSON object (booleans as 1/0; empty
                                   when missing)
    h2load FILE                    h2load's output in FILE -> "rate|succeeded|status codes" (rate
                                   and succeeded empty when h2load printed no summary)
    wrk FILE                       wrk's output in FILE -> "rate|requests|errors" (rate empty when
                                   wrk printed none; errors: its Non-2xx and Socket errors lines)
    median FILE KEY [--times X] [--default D] [FIELD=VALUE...]
                                   the median of KEY over the JSON lines of FILE whose FIELDs
                                   hold those VALUEs (a string, or true/false), times X,
                                   as an integer; D (default 0) when there is none
    ceil-seconds X                 max(1, ceil(X)): a wall time in whole seconds (wrk's -d)
"""

import json
import math
import os
import platform
import re
import statistics
import subprocess
import sys
import time


# --- numbers -------------------------------------------------------------------------------------

def present(v):
    """True for a number that is there: not None, not NaN."""
    return v is not None and v == v


def median(values, default=None):
    """The median of the values that are present (None and NaN dropped); default when none."""
    values = [v for v in values if present(v)]
    return statistics.median(values) if values else default


def ratio(a, b):
    """a / b, or None when either is missing or b is 0."""
    return a / b if present(a) and present(b) and b else None


def paired_ratio(pairs):
    """The median of a / b over (a, b) pairs (runs made back to back, so each pair shares that
    moment's load: steadier than the ratio of the medians on a shared machine)."""
    return median(a / b for a, b in pairs if present(a) and present(b) and b > 0)


def percentile(ordered, q):
    """The q-quantile (0..1) of an ascending list, nearest rank."""
    return ordered[min(len(ordered) - 1, max(0, int(q * len(ordered) + 0.5) - 1))]


def fmt(v, spec="%.0f", missing="-"):
    """v formatted with spec (%-style, or a str.format spec with braces); missing when absent."""
    if not present(v):
        return missing
    return spec.format(v) if "{" in spec else spec % v


# --- h2load and wrk ------------------------------------------------------------------------------

def _seconds(value, unit):
    return float(value) / (1000.0 if unit == "ms" else 1.0)


def parse_h2load(out):
    """h2load's summary: {"rate": req/s or None, "elapsed_s", "succeeded", "status_codes"}."""
    m = re.search(r"^finished in ([0-9.]+)(m?s), ([0-9.]+) req/s", out, re.M)
    s = re.search(r"^requests: .* ([0-9]+) succeeded", out, re.M)
    c = re.search(r"^status codes: (.*)$", out, re.M)
    return {"rate": float(m.group(3)) if m else None,
            "elapsed_s": _seconds(m.group(1), m.group(2)) if m else None,
            "succeeded": int(s.group(1)) if s else 0,
            "status_codes": c.group(1).strip() if c else "?"}


def h2load_latencies(path):
    """The request times (us, ascending) in h2load's --log-file (start, status, time in us)."""
    lat = []
    try:
        with open(path) as f:
            for line in f:
                fields = line.split("\t")
                if len(fields) >= 3:
                    lat.append(int(fields[2]))
    except (OSError, ValueError):
        pass
    lat.sort()
    return lat


def latency_summary(ordered):
    """p50, p90, p99, p99.9, max and mean of an ascending list of latencies; {} when empty."""
    if not ordered:
        return {}
    return {"p50": percentile(ordered, 0.50), "p90": percentile(ordered, 0.90),
            "p99": percentile(ordered, 0.99), "p999": percentile(ordered, 0.999),
            "max": ordered[-1], "mean": sum(ordered) / len(ordered)}


def parse_wrk(out):
    """wrk's summary: {"rate": req/s or None, "completed", "elapsed_s", "errors": [lines]}
    (errors: its "Non-2xx" and "Socket errors" lines)."""
    m = re.search(r"^Requests/sec: *([0-9.]+)", out, re.M)
    t = re.search(r"^ *([0-9]+) requests in ([0-9.]+)(m?s)", out, re.M)
    return {"rate": float(m.group(1)) if m else None,
            "completed": int(t.group(1)) if t else 0,
            "elapsed_s": _seconds(t.group(2), t.group(3)) if t else None,
            "errors": [e.strip() for e in
                       re.findall(r"^ *(Non-2xx.*|Socket errors.*)$", out, re.M)]}


# --- JSON ----------------------------------------------------------------------------------------

def last_json(text):
    """The last line of text that parses as a JSON object, or None."""
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                pass
    return None


def read_jsonl(path):
    """The JSON objects of a file, one a line (blank lines skipped)."""
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")


# --- /metrics ------------------------------------------------------------------------------------

def parse_metrics(text):
    """Prometheus text -> {'name{labels}': value} (comments skipped)."""
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            try:
                out[key] = float(value)
            except ValueError:
                pass
    return out


def scrape_metrics(port, host="127.0.0.1", timeout=5):
    """GET /metrics from host:port, parsed; {} when it cannot be read."""
    import http.client
    try:
        c = http.client.HTTPConnection(host, port, timeout=timeout)
        c.request("GET", "/metrics")
        text = c.getresponse().read().decode()
        c.close()
    except (OSError, http.client.HTTPException):
        return {}
    return parse_metrics(text)


# --- the machine ---------------------------------------------------------------------------------

def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "?"


def tool_version(cmd):
    """The first line a tool prints for its version (cmd: argv), or "?"."""
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
        return ((p.stdout + p.stderr).strip().splitlines() or ["?"])[0]
    except Exception:
        return "?"


def machine_lines(load_before, load_after, tools=()):
    """The Markdown list every report ends with: date, machine, load before and after, and the
    versions of the tools (argv lists) joined by "; "."""
    lines = ["- date: %s" % time.strftime("%Y-%m-%d %H:%M:%S %Z"),
             "- machine: %s, %d CPUs, %s" % (cpu_model(), os.cpu_count() or 0,
                                             platform.platform()),
             "- load before: `%s`" % load_before.strip(),
             "- load after: `%s`" % load_after.strip()]
    if tools:
        lines.append("- " + "; ".join(tool_version(t) for t in tools))
    return lines


# --- command line --------------------------------------------------------------------------------

def _cmd_field(args):
    value = json.loads(args[0]).get(args[1])
    print("" if value is None else (int(value) if isinstance(value, bool) else value))


def _cmd_h2load(args):
    with open(args[0], errors="replace") as f:
        d = parse_h2load(f.read())
    print("%s|%s|%s" % ("" if d["rate"] is None else d["rate"],
                        d["succeeded"] if d["rate"] is not None else "", d["status_codes"]))


def _cmd_wrk(args):
    with open(args[0], errors="replace") as f:
        d = parse_wrk(f.read())
    print("%s|%s|%s" % ("" if d["rate"] is None else d["rate"], d["completed"],
                        "; ".join(d["errors"])))


def _cmd_median(args):
    path, key, times, default, want = args[0], args[1], 1.0, 0, {}
    rest = args[2:]
    while rest:
        if rest[0] == "--times":
            times, rest = float(rest[1]), rest[2:]
        elif rest[0] == "--default":
            default, rest = int(rest[1]), rest[2:]
        else:
            field, _, value = rest[0].partition("=")
            want[field] = {"true": True, "false": False}.get(value, value)
            rest = rest[1:]
    m = median(d.get(key) for d in read_jsonl(path)
               if all(d.get(f) == v for f, v in want.items()))
    print(default if m is None else int(m * times))


def _cmd_ceil_seconds(args):
    print(max(1, math.ceil(float(args[0] or 1))))


def main(argv):
    commands = {"field": _cmd_field, "h2load": _cmd_h2load, "wrk": _cmd_wrk,
                "median": _cmd_median, "ceil-seconds": _cmd_ceil_seconds}
    if len(argv) < 2 or argv[1] not in commands:
        sys.exit("usage: benchlib.py {%s} ARGS..." % "|".join(commands))
    commands[argv[1]](argv[2:])


if __name__ == "__main__":
    main(sys.argv)
