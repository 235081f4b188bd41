"""Black-box test harness for fanoutd (tools/fanoutd/README.md is the specification).

The tests spawn the real `fanoutd` binary and the `fanout-sink` receiver, talk real HTTP to
them on 127.0.0.1 (port 0 everywhere), and clean every process up. Python standard library
only, plus the `curl` (HTTP/2) and `openssl` (Ed25519 verification) command-line tools.

Every test file is run as `python3 FILE --fanoutd PATH --sink PATH [unittest args]`; main()
parses the two paths and hands the rest to unittest.

Here: the two programs (Daemon, Sink), the fanoutd command line (apikey() and the others),
curl_h2(), the test cases' base classes and main(). The client side is harness_http.py, the
processes (spawning, stopping, sanitizer reports, temporary directories, ports, wait_until())
harness_process.py; both are re-exported here, so a test imports harness only.

Waiting: wait_until() is the only way a test waits. It polls a condition until a deadline;
nothing here sleeps a fixed time and then asserts.

Stopping: every process still running when its test ends (and every one left at exit) gets
SIGTERM, then SIGKILL if it has not exited within CLEANUP_TIMEOUT, so that a sanitized build
writes its reports (LeakSanitizer runs at exit); a sanitizer report in the stderr of any process
a test started fails that test, even of one stopped with kill() (kill -9 tests).

Skips: under CI (environment variable CI set) a skipped test is a failure (skip_or_fail(), and
run_unittest() fails a run with skips); elsewhere a run with skips and no failure exits 77, which
ctest reports as skipped (SKIP_RETURN_CODE 77 in tests/CMakeLists.txt).
"""

import argparse
import base64
import http.client as http_client
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import unittest

# The client side, re-exported: tests use harness.http, harness.Session, harness.Metrics...
from harness_http import (ERROR_STATUSES, HTTP_TIMEOUT, Metrics, Response, Session,  # noqa: F401
                          decode_body, encode_body, error_shape_problem, http, metric_key,
                          metrics, parse_json_strict, request_headers)
# The processes, re-exported: tests use harness.wait_until, harness.WAIT_TIMEOUT, harness.tail...
from harness_process import (CLEANUP_TIMEOUT, LISTENING_RE, SANITIZER_MARKERS,  # noqa: F401
                             START_TIMEOUT, STOP_TIMEOUT, WAIT_TIMEOUT, _helpers, _key_names,
                             _live_processes, _Process, _register, _temp_dirs, candidate_port,
                             closed_port, finish_processes, make_temp_dir, read_text,
                             remove_temp_dir, sanitizer_problems, tail, terminate, wait_until)

# Set by main() from the command line.
FANOUTD = ""
SINK = ""

CLI_TIMEOUT = 60.0
# Exit status of a run whose tests were skipped (ctest: SKIP_RETURN_CODE 77); never under CI.
EXIT_SKIPPED = 77

KEY_RE = re.compile(r"^fo_[A-Za-z0-9_-]{43}$")
TIMESTAMP_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")

PARTOO_TYPES = ["business_created", "business_updated", "business_deleted",
                "message_created", "message_updated", "lead_received"]

# ----------------------------------------------------------------------------------------
# Skips.

def in_ci():
    """True when running in CI (environment variable CI set and not empty)."""
    return bool(os.environ.get("CI"))


def skip_or_fail(test, reason):
    """A test that cannot run here (a missing peer program): skipped, but a failure under CI."""
    if in_ci():
        test.fail(f"{reason} (CI is set: a test that cannot run is a failure)")
    test.skipTest(reason)


# ----------------------------------------------------------------------------------------
# HTTP/2.

def curl_h2(port, method, path, key=None, body=None, content_type="application/json",
            headers=None, workdir=None):
    """One request over HTTP/2 with prior knowledge (h2c), through the curl tool.

    Returns Response with .http_version ("2" when HTTP/2 was used)."""
    workdir = workdir or make_temp_dir("fanoutd-curl-")
    hdr_file = os.path.join(workdir, "curl-headers")
    body_file = os.path.join(workdir, "curl-body")
    cmd = ["curl", "-sS", "--http2-prior-knowledge", "--max-time", str(int(HTTP_TIMEOUT)),
           "-X", method, "-D", hdr_file, "-o", body_file,
           "-w", "%{http_code} %{http_version}", f"http://127.0.0.1:{port}{path}"]
    data = encode_body(body)
    for name, value in request_headers(key, data, content_type, headers).items():
        cmd += ["-H", f"{name}: {value}"]
    if data is not None:
        data_file = os.path.join(workdir, "curl-data")
        with open(data_file, "wb") as f:
            f.write(data)
        cmd += ["--data-binary", "@" + data_file]
    r = subprocess.run(cmd, capture_output=True, timeout=HTTP_TIMEOUT + 10)
    if r.returncode != 0:
        raise AssertionError(f"curl failed ({r.returncode}): {r.stderr.decode(errors='replace')}")
    code, version = r.stdout.decode().split()
    msg = http_client.HTTPMessage()
    for line in read_text(hdr_file).splitlines()[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            msg[name.strip()] = value.strip()
    raw = b""
    if os.path.exists(body_file):
        with open(body_file, "rb") as f:
            raw = f.read()
    return Response(int(code), msg, decode_body(raw), raw, http_version=version)


# ----------------------------------------------------------------------------------------
# The fanoutd command line.

def run_fanoutd(*args, input=None, timeout=CLI_TIMEOUT):
    """Runs `fanoutd ARGS...` to completion; returns the CompletedProcess (text mode)."""
    cmd = [FANOUTD, *[str(a) for a in args]]
    return subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout)


def _check(r, what):
    if r.returncode != 0:
        raise AssertionError(f"{what} exited {r.returncode}\nstdout:\n{r.stdout}\n"
                             f"stderr:\n{r.stderr}")


def apikey(data, role, org=None, orgs=None, name=None):
    """`fanoutd apikey create`; returns the key (the last line of standard output). An INGEST
    key without `orgs` is created for every organisation (--all-orgs)."""
    if name is None:
        name = f"test-key-{next(_key_names)}"
    args = ["apikey", "create", "--data", data, "--role", role]
    if org is not None:
        args += ["--org", org]
    if orgs is not None:
        args += ["--orgs", ",".join(str(o) for o in orgs)]
    elif role == "INGEST":
        args.append("--all-orgs")
    args += ["--name", name]
    r = run_fanoutd(*args)
    _check(r, "apikey create")
    lines = [line.strip() for line in r.stdout.splitlines() if line.strip()]
    if not lines:
        raise AssertionError("apikey create printed nothing")
    return lines[-1]


def apikey_list(data):
    """The key lines of `fanoutd apikey list` (one per key: those starting with an id; a
    header line, if any, is left out)."""
    r = run_fanoutd("apikey", "list", "--data", data)
    _check(r, "apikey list")
    return [line for line in r.stdout.splitlines() if re.match(r"^\s*\d+\s", line)]


def apikey_id(data, name):
    """The id of the key named `name`: first field of its `apikey list` line."""
    for line in apikey_list(data):
        fields = line.split()
        if name in fields[1:]:
            return int(fields[0])
    raise AssertionError(f"no key named {name!r} in apikey list")


def apikey_revoke(data, key_id):
    r = run_fanoutd("apikey", "revoke", "--data", data, key_id)
    _check(r, "apikey revoke")


def public_key_pem(data):
    """`fanoutd keys public --data DIR`: the signing public key, PEM."""
    r = run_fanoutd("keys", "public", "--data", data)
    _check(r, "keys public")
    return r.stdout


def verify_signature(pem, body, signature_b64, workdir):
    """Ed25519 check with the openssl tool. Returns (ok, openssl's output)."""
    pub = os.path.join(workdir, "verify-pub.pem")
    body_file = os.path.join(workdir, "verify-body.bin")
    sig_file = os.path.join(workdir, "verify-sig.bin")
    with open(pub, "w") as f:
        f.write(pem)
    with open(body_file, "wb") as f:
        f.write(body)
    try:
        sig = base64.b64decode(signature_b64, validate=True)
    except ValueError as e:
        return False, f"signature is not base64: {e}"
    with open(sig_file, "wb") as f:
        f.write(sig)
    r = subprocess.run(["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", pub, "-rawin",
                        "-in", body_file, "-sigfile", sig_file],
                       capture_output=True, text=True, timeout=CLI_TIMEOUT)
    return r.returncode == 0, r.stdout + r.stderr


# ----------------------------------------------------------------------------------------
# Processes: the daemon and the sink.

class Daemon(_Process):
    """`fanoutd serve` on 127.0.0.1:0 with its own log files in `workdir`.

    config: TOML text written to a file and passed with --config (None: no file).
    insecure / allow_subnet: the test defaults (http:// allowed, 127.0.0.1 reachable).
    """

    name = "fanoutd"

    def __init__(self, data, workdir=None, config=None, insecure=True,
                 allow_subnets=("127.0.0.1/32",), args=(), nofile=None):
        super().__init__(workdir or data)
        self.data = data
        self.config = config
        self.insecure = insecure
        self.allow_subnets = list(allow_subnets)
        self.args = [str(a) for a in args]
        self.nofile = nofile  # RLIMIT_NOFILE (soft and hard) for the daemon, via prlimit

    def start(self, timeout=START_TIMEOUT):
        cmd = [FANOUTD, "serve", "--listen", "127.0.0.1:0", "--data", self.data]
        if self.nofile is not None:
            cmd = ["prlimit", f"--nofile={self.nofile}:{self.nofile}", "--"] + cmd
        if self.config is not None:
            path = os.path.join(self.workdir, f"fanoutd-{next(_key_names)}.toml")
            with open(path, "w") as f:
                f.write(self.config)
            cmd += ["--config", path]
        if self.insecure:
            cmd.append("--insecure")
        for subnet in self.allow_subnets:
            cmd += ["--allow-subnet", subnet]
        cmd += self.args
        return self._spawn(cmd, timeout)

    def restart(self, timeout=START_TIMEOUT):
        """SIGTERM (asserting exit 0), then start again on the same data (a new port)."""
        self.stop()
        return self.start(timeout)

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def http(self, method, path, key=None, body=None, content_type="application/json",
             headers=None):
        return http(self.port, method, path, key=key, body=body, content_type=content_type,
                    headers=headers)

    def session(self):
        return Session(self.port)

    def metrics(self):
        return metrics(self.port)

    def metric(self, name, **labels):
        return self.metrics().value(name, **labels)


class SinkRequest(dict):
    """One line of fanout-sink's --record file, with helpers."""

    def header(self, name, default=None):
        """The first value of header `name` (compared case-insensitively)."""
        for n, v in self["headers"]:
            if n.lower() == name.lower():
                return v
        return default

    def header_values(self, name):
        return [v for n, v in self["headers"] if n.lower() == name.lower()]

    @property
    def body(self):
        return base64.b64decode(self["body_base64"])


class Sink(_Process):
    """fanout-sink on 127.0.0.1:0 recording every request.

    The record file is complete once the sink has exited, so tests read requests() after
    stop() (older sinks buffer the file until they exit; newer ones flush it each loop turn).
    While it runs, count() tells how many requests arrived: the larger of the complete lines
    in the record file and the sink's once-a-second stderr line ("... total N ...").
    """

    name = "fanout-sink"

    def __init__(self, workdir, status_mix=None, args=()):
        super().__init__(workdir)
        self.record_path = os.path.join(workdir, f"sink-{next(_key_names)}.jsonl")
        self.status_mix = status_mix
        self.args = [str(a) for a in args]
        self.summary = None

    def start(self, timeout=START_TIMEOUT):
        cmd = [SINK, "--listen", "127.0.0.1:0", "--record", self.record_path, "--json"]
        if self.status_mix:
            cmd += ["--status-mix", self.status_mix]
        cmd += self.args
        return self._spawn(cmd, timeout)

    def url(self, path="/hook"):
        return f"http://127.0.0.1:{self.port}{path}"

    def count(self):
        """Requests received so far (see the class comment)."""
        totals = re.findall(r"\btotal (\d+)\b", self.stderr())
        from_stderr = int(totals[-1]) if totals else 0
        try:
            with open(self.record_path, "rb") as f:
                from_record = f.read().count(b"\n")
        except FileNotFoundError:
            from_record = 0
        return max(from_stderr, from_record)

    def wait_count(self, n, timeout=WAIT_TIMEOUT):
        """Waits until the sink has received at least n requests."""
        return wait_until(lambda: self.count() >= n, timeout, interval=0.2,
                          message=lambda: f"sink to receive {n} requests (has {self.count()})")

    def wait_recorded(self, n, timeout=WAIT_TIMEOUT):
        """Waits until n complete lines are in the record file, for requests(partial=True):
        the sink counts a request (its stderr's total) before its line is written."""
        return wait_until(lambda: len(self.requests(partial=True)) >= n, timeout, interval=0.2,
                          message=lambda: f"sink to record {n} requests")

    def stop(self, timeout=STOP_TIMEOUT, signum=signal.SIGTERM, expect=0):
        rc = super().stop(timeout, signum, expect)
        for line in reversed(self.stdout().splitlines()):
            if line.startswith("{"):
                self.summary = json.loads(line)
                break
        return rc

    def requests(self, partial=False):
        """Every request recorded, in arrival order. Call after stop(), or pass partial=True
        to read the complete lines written so far."""
        if self.running and not partial:
            raise AssertionError("Sink.requests() before stop(): the record file is only "
                                 "complete once the sink has exited")
        out = []
        try:
            with open(self.record_path, "rb") as f:
                for line in f:
                    if line.endswith(b"\n"):
                        out.append(SinkRequest(json.loads(line)))
        except FileNotFoundError:
            pass
        return out


class FanoutdTestCase(unittest.TestCase):
    """Base class: a temporary directory per test, daemons and sinks cleaned up after it.

    On failure, the stderr of every process the test started is printed.
    """

    maxDiff = 4000

    def setUp(self):
        self.tmp = make_temp_dir()
        self.addCleanup(remove_temp_dir, self.tmp)
        self._processes = []
        self._helpers_before = len(_helpers)
        self.addCleanup(self._stop_processes)

    def shared_processes(self):
        """Processes owned by the class (shared daemons): logged on failure, not killed."""
        return []

    def _stop_processes(self):
        """Every process this test started (through start_daemon/start_sink or directly) that
        still runs gets SIGTERM (SIGKILL after CLEANUP_TIMEOUT); then a sanitizer report in the
        stderr of any of them fails the test."""
        outcome = getattr(self, "_outcome", None)
        failed = outcome is not None and not getattr(outcome, "success", True)
        if failed:
            for p in self.shared_processes() + self._processes:
                sys.stderr.write(f"\n{p.logs(60)}\n")
        mine = list(self._processes)
        mine += [h for h in _helpers[self._helpers_before:] if h not in mine]
        for p in terminate([h.proc for h in mine if h.proc is not None]):
            sys.stderr.write(f"harness: pid {p.pid} ignored SIGTERM for {CLEANUP_TIMEOUT:.0f} s: "
                             f"killed\n")
        problems = sanitizer_problems(mine + self.shared_processes())
        if problems:
            raise AssertionError("\n\n".join(problems))

    def data_dir(self, name="data"):
        d = os.path.join(self.tmp, name)
        os.makedirs(d, exist_ok=True)
        return d

    def start_daemon(self, data=None, config=None, **kw):
        """A started Daemon on `data` (default: the test's own data directory)."""
        d = Daemon(data or self.data_dir(), workdir=self.tmp, config=config, **kw)
        self._processes.append(d)
        return d.start()

    def start_sink(self, status_mix=None, args=()):
        s = Sink(self.tmp, status_mix=status_mix, args=args)
        self._processes.append(s)
        return s.start()

    # -- assertions ---------------------------------------------------------------------

    def assertStatus(self, response, status, msg=""):
        self.assertEqual(response.status, status,
                         f"{msg} expected HTTP {status}, got {response.describe()}")

    def assertError(self, response, status, msg=""):
        """`response` is `status` with the README's error body for that status."""
        self.assertStatus(response, status, msg)
        problem = error_shape_problem(status, response.body, response.headers)
        self.assertIsNone(problem, msg)

    def assertFieldError(self, response, field, contains=None, msg=""):
        """400 naming `field` (and its message containing `contains`); returns the message."""
        self.assertError(response, 400, msg)
        fields = response.body["error"]["json"]
        self.assertIn(field, fields, f"{msg} 400 should name {field!r}: {response.body!r}")
        if contains is not None:
            self.assertIn(contains, fields[field], f"{msg} {response.body!r}")
        return fields[field]

    def assertRuleError(self, response, field, rule, msg=""):
        """400 on `field` whose message carries the rule code in brackets, e.g. [url_empty]."""
        return self.assertFieldError(response, field, f"[{rule}]", msg)


_orgs = itertools.count(101)


class SharedDaemonCase(FanoutdTestCase):
    """One daemon for the whole class, started in setUpClass and stopped (exit 0 asserted) in
    tearDownClass. Tests keep apart by using organisations of their own (new_org())."""

    config = None  # TOML text
    insecure = True
    daemon_args = ()

    @classmethod
    def setUpClass(cls):
        cls.class_tmp = make_temp_dir()
        cls.data = os.path.join(cls.class_tmp, "data")
        cls.daemon = Daemon(cls.data, workdir=cls.class_tmp, config=cls.config,
                            insecure=cls.insecure, args=cls.daemon_args)
        cls.daemon.start()

    @classmethod
    def tearDownClass(cls):
        try:
            cls.daemon.stop()
        finally:
            cls.daemon.kill()
            remove_temp_dir(cls.class_tmp)

    def shared_processes(self):
        return [self.daemon]

    @staticmethod
    def new_org():
        """An organisation id no other test of this run uses."""
        return next(_orgs)

    def admin_key(self, org):
        return apikey(self.data, "ORG_ADMIN", org=org)


def main():
    """Parses --fanoutd and --sink, then runs unittest with the remaining arguments."""
    global FANOUTD, SINK
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--fanoutd", required=True, help="path of the fanoutd binary")
    parser.add_argument("--sink", required=True, help="path of the fanout-sink binary")
    args, rest = parser.parse_known_args()
    FANOUTD = os.path.abspath(args.fanoutd)
    SINK = os.path.abspath(args.sink)
    for path in (FANOUTD, SINK):
        if not os.access(path, os.X_OK):
            sys.exit(f"not an executable: {path}")
    sys.exit(run_unittest(rest))


def run_unittest(args):
    """Runs unittest on __main__ with `args`, stops every process left, and returns the exit
    status: 1 on a failure, an error or a sanitizer report left in a helper's stderr; under CI
    also 1 when a test was skipped; otherwise EXIT_SKIPPED (77) when a test was skipped, or 0."""
    program = unittest.main(module="__main__", argv=[sys.argv[0]] + list(args), verbosity=2,
                            exit=False)
    result = program.result
    problems = finish_processes()
    if problems:
        sys.stderr.write(f"FAILED: {len(problems)} sanitizer report(s) in helpers' stderr\n")
    if not result.wasSuccessful() or problems:
        return 1
    if result.skipped:
        reasons = "; ".join(f"{t.id()}: {why}" for t, why in result.skipped[:5])
        if in_ci():
            sys.stderr.write(f"FAILED: {len(result.skipped)} test(s) skipped under CI (CI is "
                             f"set: a test that cannot run is a failure): {reasons}\n")
            return 1
        sys.stderr.write(f"SKIPPED: {len(result.skipped)} test(s): {reasons}\n")
        return EXIT_SKIPPED
    if result.testsRun == 0:
        sys.stderr.write("FAILED: no test ran\n")
        return 1
    return 0
