"""fanoutd under mixed load with faults for a fixed time; its RSS and open descriptors sampled
every second (bench/soak.sh runs it; bench/README.md, "Soak").

Receivers (fanout-sink, loopback, free ports):
  mixed   a plan per event: 200; 503 then 200; 500 for ever (exhausted); reset then 200;
          slow (300 ms) 200; 404; and GOAWAY after every 50 requests on a connection
  hole    never answers (each attempt ends at the response timeout)
  flappy  200, killed and started again on the same port every --restart-every seconds
Clients:
  ingest  NDJSON batches at --rate events/s spread over --orgs organisations (each subscribed to
          one receiver, round robin); busy lines are counted, not re-sent
  slow    every 5 s a client pipelines 200 GET /metrics and reads nothing for 10 s, then leaves
Sampled each second: fanoutd's VmRSS (and its anonymous and file-backed parts: the journal's
SQLite file is memory-mapped, up to mmap_size) and open descriptors (/proc), and its in-flight
and delivered counts (/metrics). Everything stops by itself after --seconds.
"""

import argparse
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from benchlib import parse_metrics  # noqa: E402  (bench/benchlib.py)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def spawn(cmd, log):
    out = open(log, "wb")
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    out.close()
    return p


def wait_listening(port, proc, what, limit=30):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"soak: {what} exited {proc.returncode} before listening")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"soak: {what} did not listen on {port} within {limit} s")


def request(port, method, path, key=None, body=None, ctype="application/json"):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Content-Type": ctype}
    if key:
        headers["x-APIKey"] = key
    c.request(method, path, body=body, headers=headers)
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, data


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--fanoutd", required=True)
    ap.add_argument("--sink", required=True)
    ap.add_argument("--seconds", type=int, default=600)
    ap.add_argument("--rate", type=int, default=1000)
    ap.add_argument("--orgs", type=int, default=30)
    ap.add_argument("--restart-every", type=int, default=30)
    ap.add_argument("--no-durable", action="store_true",
                    help="run fanoutd without its journal (the default keeps it)")
    ap.add_argument("--out", required=True, help="where soak.tsv and soak.json go")
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="fanout-soak.")
    procs = []

    def stop_all():
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()

    try:
        ports = {name: free_port() for name in ("mixed", "hole", "flappy", "api")}
        sinks = {
            "mixed": [a.sink, "--listen", f"127.0.0.1:{ports['mixed']}", "--quiet",
                      "--plan", "200;503,200;500;reset,200;slow:300:200;404",
                      "--goaway-every", "50"],
            "hole": [a.sink, "--listen", f"127.0.0.1:{ports['hole']}", "--quiet", "--blackhole"],
            "flappy": [a.sink, "--listen", f"127.0.0.1:{ports['flappy']}", "--quiet"],
        }
        running = {}
        for name, cmd in sinks.items():
            running[name] = spawn(cmd, os.path.join(tmp, f"{name}.log"))
            procs.append(running[name])
            wait_listening(ports[name], running[name], name)
        data = os.path.join(tmp, "data")
        cfg = os.path.join(tmp, "fanoutd.toml")
        with open(cfg, "w") as f:
            f.write(("no_durable = true\n" if a.no_durable else "") +
                    "workers = 1\ndrain_timeout_ms = 2000\n"
                    "[retry]\nmax_retries = 3\nbase_ms = 500\nfactor = 2\njitter = 0.2\n"
                    "[timeouts]\nresponse_ms = 1000\nconnect_ms = 1000\n")
        d = spawn([a.fanoutd, "serve", "--listen", f"127.0.0.1:{ports['api']}", "--data", data,
                   "--config", cfg, "--insecure", "--allow-subnet", "127.0.0.1/32",
                   "--log-level", "warn"], os.path.join(tmp, "fanoutd.log"))
        procs.append(d)
        api = ports["api"]
        wait_listening(api, d, "fanoutd")

        def fanoutd_cli(*args):
            r = subprocess.run([a.fanoutd, *args], capture_output=True, text=True, timeout=60)
            if r.returncode != 0:
                sys.exit(f"soak: fanoutd {' '.join(args)}: {r.stderr}")
            return r.stdout.strip().splitlines()[-1]

        names = list(sinks)
        for org in range(1, a.orgs + 1):
            key = fanoutd_cli("apikey", "create", "--data", data, "--role", "ORG_ADMIN",
                              "--org", str(org), "--name", f"soak-{org}")
            url = f"http://127.0.0.1:{ports[names[org % 3]]}/hook"
            st, body = request(api, "POST", "/v2/webhooks", key, json.dumps(
                {"items": [{"url": url, "event_type": "business_updated"}]}))
            if st != 200:
                sys.exit(f"soak: webhook for org {org}: {st} {body[:200]!r}")
        ingest = fanoutd_cli("apikey", "create", "--data", data, "--role", "INGEST",
                             "--all-orgs", "--name", "soak-ingest")

        stop = threading.Event()
        counts = {"accepted": 0, "busy": 0, "requests": 0, "slow_clients": 0, "restarts": 0}

        def load():
            c = None
            n = 0
            per_tick = max(1, a.rate // 20)
            next_tick = time.monotonic()
            while not stop.is_set():
                lines = []
                for _ in range(per_tick):
                    n += 1
                    lines.append(json.dumps({"org_id": 1 + n % a.orgs, "type": "business_updated",
                                             "payload": {"n": n, "pad": "x" * (n % 512)}}))
                try:
                    if c is None:
                        c = http.client.HTTPConnection("127.0.0.1", api, timeout=30)
                    c.request("POST", "/v2/events", body="\n".join(lines) + "\n",
                              headers={"Content-Type": "application/x-ndjson",
                                       "x-APIKey": ingest})
                    r = c.getresponse()
                    reply = json.loads(r.read())
                    counts["accepted"] += reply.get("accepted", 0)
                    counts["busy"] += reply.get("busy", 0)
                    counts["requests"] += 1
                except (OSError, http.client.HTTPException, ValueError):
                    c = None
                next_tick += 0.05
                time.sleep(max(0.0, next_tick - time.monotonic()))

        def slow_readers():
            while not stop.wait(5):
                try:
                    s = socket.create_connection(("127.0.0.1", api), timeout=5)
                    s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n" * 200)
                    counts["slow_clients"] += 1
                    stop.wait(10)
                    s.close()
                except OSError:
                    pass

        def flapper():
            while not stop.wait(a.restart_every):
                p = running["flappy"]
                p.kill()
                p.wait()
                running["flappy"] = spawn(sinks["flappy"], os.path.join(tmp, "flappy.log"))
                procs.append(running["flappy"])
                counts["restarts"] += 1

        threads = [threading.Thread(target=f, daemon=True) for f in (load, slow_readers, flapper)]
        for t in threads:
            t.start()
        samples = []
        start = time.monotonic()
        with open(os.path.join(a.out, "soak.tsv"), "w") as tsv:
            tsv.write("t_s\trss_kib\tfds\tin_flight\tdelivered\taccepted\tbusy\t"
                      "rss_anon_kib\trss_file_kib\n")
            while time.monotonic() - start < a.seconds:
                time.sleep(1)
                if d.poll() is not None:
                    sys.exit(f"soak: fanoutd exited {d.returncode} during the run")
                with open(f"/proc/{d.pid}/status") as f:
                    status = {line.split(":")[0]: line.split()[1] for line in f
                              if line.startswith(("VmRSS:", "RssAnon:", "RssFile:"))}
                rss = int(status["VmRSS"])
                fds = len(os.listdir(f"/proc/{d.pid}/fd"))
                try:
                    _, text = request(api, "GET", "/metrics")
                    metrics = parse_metrics(text.decode())
                except OSError:
                    metrics = {}
                row = (round(time.monotonic() - start), rss, fds,
                       int(metrics.get("fanout_in_flight", 0)),
                       int(metrics.get('fanout_outcomes_total{kind="delivered"}', 0)),
                       counts["accepted"], counts["busy"], int(status.get("RssAnon", 0)),
                       int(status.get("RssFile", 0)))
                samples.append(row)
                tsv.write("\t".join(str(v) for v in row) + "\n")
                tsv.flush()
        stop.set()
        for t in threads:
            t.join(timeout=30)
        d.send_signal(signal.SIGTERM)
        rc = d.wait(timeout=60)

        def mean(col, lo, hi):
            vals = [s[col] for s in samples if lo <= s[0] < hi]
            return sum(vals) / len(vals) if vals else 0.0

        t_end = samples[-1][0]
        early = (120, 180) if t_end >= 300 else (t_end // 3, t_end // 3 + 30)
        late = (t_end - 60, t_end + 1)
        summary = {
            "seconds": t_end, "fanoutd_exit": rc, **counts,
            "rss_kib_early": round(mean(1, *early)), "rss_kib_late": round(mean(1, *late)),
            "rss_kib_max": max(s[1] for s in samples),
            "rss_anon_kib_early": round(mean(7, *early)),
            "rss_anon_kib_late": round(mean(7, *late)),
            "rss_file_kib_early": round(mean(8, *early)),
            "rss_file_kib_late": round(mean(8, *late)),
            "fds_early": round(mean(2, *early), 1), "fds_late": round(mean(2, *late), 1),
            "fds_max": max(s[2] for s in samples),
            "in_flight_late": round(mean(3, *late)),
            "delivered": samples[-1][4],
            "early_window_s": list(early), "late_window_s": list(late),
        }
        summary["rss_growth"] = round(summary["rss_kib_late"] / max(1, summary["rss_kib_early"]), 3)
        with open(os.path.join(a.out, "soak.json"), "w") as f:
            json.dump(summary, f, indent=2)
        print(json.dumps(summary, indent=2))
    finally:
        stop_all()


if __name__ == "__main__":
    main()
