"""A real redis-server for the tests (Debian's redis-server 7.0), and redis-cli to talk to it.

The server listens on 127.0.0.1 on a port picked free (bind to 0, close, hand it to Redis:
Redis 7.0 cannot listen on a TCP port it chose itself, `--port 0` means no TCP at all). A start
that loses that race to another process is retried on a new port: Redis exits when it cannot
bind ("Could not create server TCP listening socket" in its log), and the server that answers
is only taken for ours when its INFO names our process id, so another process (even another
redis-server) on the port can never pass for it. Persistence is an append-only file with `appendfsync always`, so a
SIGKILL of the server loses nothing it acknowledged (the tests restart it that way).

redis-cli does the talking (RESP2 answers as JSON), `--pipe` the bulk loading: the tests never
parse the Redis protocol themselves.
"""

import json
import os
import shutil
import signal
import subprocess

import harness

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
REDIS_CLI = shutil.which("redis-cli") or "/usr/bin/redis-cli"


def available():
    return os.access(REDIS_SERVER, os.X_OK) and os.access(REDIS_CLI, os.X_OK)


class Redis:
    def __init__(self, workdir):
        self.workdir = workdir
        self.port = None
        self.proc = None
        self.log_path = os.path.join(workdir, "redis.log")

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}"

    def start(self, keep_port=False):
        for _ in range(5):
            if not keep_port or self.port is None:
                self.port = harness.candidate_port()
            if self._spawn():
                return self
            if keep_port:
                # Restarting on the same port: wait for it to be free (a killed server's socket).
                harness.wait_until(self._spawn, message=f"redis-server on port {self.port}")
                return self
        raise AssertionError(f"redis-server would not start:\n{harness.tail(self.log())}")

    def _spawn(self):
        with open(self.log_path, "ab") as log:
            self.proc = harness._register(subprocess.Popen(
                [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1",
                 "--dir", self.workdir, "--appendonly", "yes", "--appendfsync", "always",
                 "--save", "", "--daemonize", "no", "--protected-mode", "yes"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log))
        try:
            harness.wait_until(lambda: self.proc.poll() is not None or self._ours(),
                               message=lambda: f"redis-server (pid {self.proc.pid}) to answer "
                                               f"on port {self.port}\n"
                                               f"{harness.tail(self.log())}")
        except AssertionError:
            self.proc.kill()
            raise
        return self.proc.poll() is None

    def _ours(self):
        """True when the server answering on the port is the process we started."""
        r = subprocess.run([REDIS_CLI, "-p", str(self.port), "INFO", "server"],
                           capture_output=True, text=True, timeout=30)
        return f"process_id:{self.proc.pid}\r" in r.stdout or \
            f"process_id:{self.proc.pid}\n" in r.stdout

    def log(self):
        return harness.read_text(self.log_path)

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=60)

    def cli(self, *args):
        """One command; its answer decoded from redis-cli's JSON (RESP2)."""
        r = subprocess.run([REDIS_CLI, "-2", "--json", "-p", str(self.port)] +
                           [str(a) for a in args], capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            raise AssertionError(f"redis-cli {args}: {r.stderr}")
        out = r.stdout.strip()
        return json.loads(out) if out else None

    def pipe(self, commands):
        """Sends many commands at once (redis-cli --pipe); returns how many were answered."""
        chunks = []
        for cmd in commands:
            parts = [a if isinstance(a, bytes) else str(a).encode() for a in cmd]
            chunks.append(b"*%d\r\n" % len(parts))
            for p in parts:
                chunks.append(b"$%d\r\n%s\r\n" % (len(p), p))
        r = subprocess.run([REDIS_CLI, "-p", str(self.port), "--pipe"], input=b"".join(chunks),
                           capture_output=True, timeout=300)
        if r.returncode != 0 or b"errors: 0" not in r.stdout:
            raise AssertionError(f"redis-cli --pipe: {r.stdout!r} {r.stderr!r}")
        return len(commands)

    def xadd_events(self, stream, events):
        """XADD one entry per event (a dict, or raw text) with the field `event`."""
        self.pipe([["XADD", stream, "*", "event",
                    e if isinstance(e, str) else json.dumps(e, separators=(",", ":"))]
                   for e in events])

    def entry_ids(self, stream):
        return [e[0] for e in (self.cli("XRANGE", stream, "-", "+") or [])]

    def pending_count(self, stream, group):
        summary = self.cli("XPENDING", stream, group)
        return int(summary[0]) if summary else 0
