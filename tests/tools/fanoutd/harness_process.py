"""The fanoutd tests' processes (tests/tools/fanoutd/harness.py re-exports all of it).

_Process: a spawned program with its stdout and stderr in files, ready once its first stdout
line says "listening on 127.0.0.1:PORT", stopped with its exit status asserted, its stderr read
once for sanitizer reports (even after kill()). Around it: the bookkeeping that stops whatever a
test left running (terminate(), finish_processes(), also at exit), temporary directories, ports
on 127.0.0.1 (one refused, one free for a moment), and wait_until(), the only way a test waits.
Python standard library only; nothing here knows which program it runs (harness.py's Daemon
and Sink do).
"""

import atexit
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

# Generous deadlines: the suite also runs under AddressSanitizer on a 2-core machine.
START_TIMEOUT = float(os.environ.get("FANOUTD_TEST_START_TIMEOUT", "30"))
STOP_TIMEOUT = float(os.environ.get("FANOUTD_TEST_STOP_TIMEOUT", "60"))
WAIT_TIMEOUT = float(os.environ.get("FANOUTD_TEST_WAIT_TIMEOUT", "60"))
# How long processes left running at the end of a test get after SIGTERM before SIGKILL.
CLEANUP_TIMEOUT = float(os.environ.get("FANOUTD_TEST_CLEANUP_TIMEOUT", "30"))

LISTENING_RE = re.compile(r"^listening on 127\.0\.0\.1:(\d+)\s*$")
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                     "WARNING: ThreadSanitizer")

# Numbers never used twice in a run: names of keys, log files, configuration files.
_key_names = iter(range(1, 1 << 30))


# ----------------------------------------------------------------------------------------
# Processes and temporary directories: always cleaned up, even when a test crashes.

_live_processes = []  # every Popen started through _register()
_helpers = []  # every _Process (fanoutd, fanout-sink): their stderr is read for sanitizer reports
_temp_dirs = []


def _register(proc):
    _live_processes.append(proc)
    return proc


def terminate(procs, timeout=CLEANUP_TIMEOUT):
    """SIGTERM to every Popen of `procs` still running, then waits for them all, together at
    most `timeout` seconds; SIGKILL to any still running then. Returns those that needed it."""
    running = [p for p in procs if p.poll() is None]
    for p in running:
        try:
            p.send_signal(signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    killed = []
    for p in running:
        try:
            p.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            killed.append(p)
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
    return killed


def sanitizer_problems(helpers):
    """Sanitizer reports not yet seen in the stderr of `helpers` (each _Process), as messages."""
    out = []
    for h in helpers:
        report = h.sanitizer_report()
        if report:
            out.append(report)
    return out


def finish_processes():
    """Stops whatever is left (SIGTERM, then SIGKILL) and reads every helper's stderr once more.
    Returns the sanitizer reports found (messages), also written to stderr."""
    for p in terminate(_live_processes):
        sys.stderr.write(f"harness: pid {p.pid} ignored SIGTERM for {CLEANUP_TIMEOUT:.0f} s: "
                         f"killed\n")
    problems = sanitizer_problems(_helpers)
    for msg in problems:
        sys.stderr.write(f"\n{msg}\n")
    return problems


def _cleanup_everything():
    finish_processes()
    if not os.environ.get("FANOUTD_KEEP_TMP"):
        for d in _temp_dirs:
            shutil.rmtree(d, ignore_errors=True)


atexit.register(_cleanup_everything)


def make_temp_dir(prefix="fanoutd-test-"):
    """A fresh temporary directory, removed at exit (kept if FANOUTD_KEEP_TMP is set)."""
    d = tempfile.mkdtemp(prefix=prefix)
    _temp_dirs.append(d)
    return d


def remove_temp_dir(d):
    if not os.environ.get("FANOUTD_KEEP_TMP"):
        shutil.rmtree(d, ignore_errors=True)


def read_text(path):
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return ""


def tail(text, lines=40):
    return "\n".join(text.splitlines()[-lines:])


_held_ports = []


def closed_port():
    """A port on 127.0.0.1 that nothing listens on: bound to port 0 and held, not listening,
    until the test process ends, so a connection to it is refused and no other process (a
    concurrent test) can take it meanwhile."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    _held_ports.append(s)
    return s.getsockname()[1]


def candidate_port():
    """A port that was free a moment ago (bound to 0, then released), for a server that cannot
    bind port 0 and report it (redis-server): the caller must make sure the server it starts got
    the port, and try another when it did not."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ----------------------------------------------------------------------------------------
# Waiting.

def wait_until(predicate, timeout=WAIT_TIMEOUT, interval=0.05, message=None):
    """Polls predicate() until it returns a truthy value, which is returned.

    Raises AssertionError after `timeout` seconds. `message` (a string or a callable giving
    one) says what was awaited, e.g. the last value seen, for the failure report.
    """
    deadline = time.monotonic() + timeout
    delay = min(interval, 0.01)
    while True:
        value = predicate()
        if value:
            return value
        now = time.monotonic()
        if now >= deadline:
            what = message() if callable(message) else (message or repr(predicate))
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for: {what}")
        time.sleep(min(delay, deadline - now))
        delay = min(delay * 2, interval)


# ----------------------------------------------------------------------------------------
# A spawned program.

class _Process:
    """A spawned program with stdout and stderr in files of `workdir`."""

    name = "process"

    def __init__(self, workdir):
        self.workdir = workdir
        self.proc = None
        self.port = None
        self.returncode = None
        self.stdout_path = self.stderr_path = os.devnull
        self._unread_stderr = []  # stderr files of every run not yet read for sanitizer reports

    def _spawn(self, cmd, timeout):
        """Starts `cmd` (fresh log files each time) and waits for its listening line."""
        self.cmd = cmd
        self.returncode = None
        tag = f"{self.name}-{next(_key_names)}"
        self.stdout_path = os.path.join(self.workdir, tag + ".stdout")
        self.stderr_path = os.path.join(self.workdir, tag + ".stderr")
        self._unread_stderr.append(self.stderr_path)
        if self not in _helpers:
            _helpers.append(self)
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.proc = _register(subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out,
                                                   stderr=err))

        def listening():
            first = read_text(self.stdout_path).split("\n", 1)
            if len(first) == 2:  # a complete first line
                m = LISTENING_RE.match(first[0])
                if not m:
                    raise AssertionError(f"{self.name}: first stdout line is {first[0]!r}, "
                                         f"expected 'listening on 127.0.0.1:PORT'")
                return int(m.group(1))
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited {self.proc.returncode} before "
                                     f"listening: {' '.join(cmd)}\n{self.logs()}")
            return None

        try:
            self.port = wait_until(listening, timeout, interval=0.02,
                                   message=lambda: f"{self.name} to listen\n{self.logs()}")
        except BaseException:
            self.kill()
            raise
        return self

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def stdout(self):
        return read_text(self.stdout_path)

    def stderr(self):
        return read_text(self.stderr_path)

    def logs(self, lines=40):
        return f"--- {self.name} stderr (last {lines} lines) ---\n{tail(self.stderr(), lines)}"

    def send_signal(self, signum):
        self.proc.send_signal(signum)

    def stop(self, timeout=STOP_TIMEOUT, signum=signal.SIGTERM, expect=0):
        """Signals (SIGTERM by default), waits, and asserts the exit status is `expect`."""
        if self.proc is None or self.returncode is not None:
            return self.returncode
        if self.proc.poll() is None:
            self.proc.send_signal(signum)
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"{self.name} did not exit within {timeout:.0f} s of signal "
                                 f"{signum}\n{self.logs()}")
        self.returncode = rc
        self._check_sanitizers()
        if expect is not None and rc != expect:
            raise AssertionError(f"{self.name} exited {rc}, expected {expect}\n{self.logs()}")
        return rc

    def kill(self):
        """SIGKILL, no questions asked (kill -9 tests; a failed start). The stderr of the run
        killed is still read for sanitizer reports, at the next stop() or at cleanup."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        if self.proc is not None:
            self.returncode = self.proc.returncode

    def terminate(self, timeout=CLEANUP_TIMEOUT):
        """Cleanup: SIGTERM, SIGKILL after `timeout` s; no exit status asserted. True if it had
        to be killed."""
        return bool(self.proc is not None and terminate([self.proc], timeout))

    def sanitizer_report(self):
        """A failure message if the stderr of a run not yet read (this one after it exited, and
        earlier ones) holds a sanitizer report, else None. Each file is read once."""
        pending = [p for p in self._unread_stderr if p != self.stderr_path or not self.running]
        self._unread_stderr = [p for p in self._unread_stderr if p not in pending]
        for path in pending:
            err = read_text(path)
            for marker in SANITIZER_MARKERS:
                at = err.find(marker)
                if at >= 0:
                    start = err.rfind("\n", 0, max(0, err.rfind("\n", 0, at))) + 1
                    return (f"{self.name}: sanitizer report ({marker!r}) in {path}\n"
                            f"--- from the report on (first 120 lines) ---\n"
                            + "\n".join(err[start:].splitlines()[:120]))
        return None

    def _check_sanitizers(self):
        report = self.sanitizer_report()
        if report:
            raise AssertionError(report)
