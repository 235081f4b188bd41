#!/usr/bin/env python3
"""fanoutd under random and mutated requests: every answer must be a well-formed HTTP response
with a documented status and, for 4xx, the README's JSON error shape; the daemon must stay up
and exit 0 on SIGTERM (under AddressSanitizer a memory error aborts it, and the sanitizer's
report in its stderr fails the test).

Run: python3 fuzz_test.py --fanoutd build/X/tools/fanoutd/fanoutd --sink build/X/tools/fanout-sink
Environment: FANOUTD_FUZZ_SEED (replay a run; the seed is printed and named in failures),
             FANOUTD_FUZZ_REQUESTS (default 3000).

Traffic stays on 127.0.0.1: fuzzed subscriptions live in organisations no event is ever
ingested for, and tryout bodies whose URL is not a 127.0.0.1 literal are never sent (a
mutated host name would make the daemon query DNS). The requests are made in
fuzz_requests.py.
"""

import os
import posixpath
import random
import socket
import sys
import time
import urllib.parse

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
import harness  # noqa: E402
from harness import FanoutdTestCase, apikey, apikey_id, apikey_revoke, error_shape_problem
from fuzz_requests import (FUZZ_ORG, FUZZ_ORG2, INGEST_ORG, TYPES, Fuzzer,  # noqa: E402
                           ingest_is_safe, tryout_is_safe)

SEED = int(os.environ.get("FANOUTD_FUZZ_SEED") or random.SystemRandom().randrange(1 << 32))
REQUESTS = int(os.environ.get("FANOUTD_FUZZ_REQUESTS", "3000"))
H2_REQUESTS = 40
RAW_CONNECTIONS = 30

ALLOWED = {200, 202, 204, 302, 400, 401, 403, 404, 405, 413, 415, 429, 503}

# invoice_paid: one of TYPES; max_event_bytes: some of the fuzzer's payloads are larger.
CONFIG = """event_types = ["invoice_paid"]
max_event_bytes = 4096
[api]
rate_limit_per_minute = 1000000
tryout_rate_limit_per_minute = 1000000
failed_auth_per_minute = 1000000
max_body_bytes = 65536
[ingest]
max_body_bytes = 262144
max_events = 100
"""


def answer_problem(req, r):
    """None when `r` is an acceptable answer to `req`, else what is wrong."""
    if r.status not in ALLOWED:
        return f"status {r.status} is not one of {sorted(ALLOWED)}"
    if 400 <= r.status < 500:
        return error_shape_problem(r.status, r.body, r.headers)
    if r.status == 204:
        return None if r.raw == b"" else f"204 with a body {r.raw[:100]!r}"
    path = urllib.parse.unquote(req.path.split("?")[0])
    if r.status == 200 and path == "/metrics":
        return None
    # The app page: / redirects to it; it and its files are HTML, CSS and JavaScript. Over h2
    # the path arrives with its dot segments removed (RFC 3986 5.2.4): "/tryout/.." is "/".
    if r.status == 302:
        ok = (posixpath.normpath(path) == "/" and
              r.headers.get("Location") == "/settings/integrations/webhooks")
        return None if ok else f"302 for {path!r} to {r.headers.get('Location')!r}"
    if r.status == 200 and (path == "/settings/integrations/webhooks" or
                            path.startswith("/assets/")):
        return None if "Content-Security-Policy" in r.headers else "page answer without a CSP"
    if isinstance(r.body, bytes):
        return f"{r.status} answer is not JSON: {r.raw[:200]!r}"
    return None


class FuzzTest(FanoutdTestCase):
    """Random and mutated requests; the daemon must answer each one properly and survive."""

    def setUp(self):
        super().setUp()
        sys.stderr.write(f"\nfuzz seed: {SEED} (FANOUTD_FUZZ_SEED={SEED} replays it)\n")

    def fail_request(self, i, req, problem, d):
        self.fail(f"seed {SEED}, request #{i} {req!r}: {problem}\n{d.logs(30)}")

    def test_fuzz(self):
        """~3,000 fuzzed requests over HTTP/1.1 keep-alive, some over h2c and some malformed
        raw connections; then /healthz is 200, the store reloads after a restart, and the
        daemon exits 0 without a sanitizer report."""
        started = time.monotonic()
        rng = random.Random(SEED)
        d = self.start_daemon(config=CONFIG)
        sink = self.start_sink()
        keys = {"admin": apikey(d.data, "ORG_ADMIN", org=FUZZ_ORG),
                "provider": apikey(d.data, "PROVIDER", orgs=[FUZZ_ORG, FUZZ_ORG2]),
                "ingest": apikey(d.data, "INGEST"),
                "revoked": apikey(d.data, "ORG_ADMIN", org=FUZZ_ORG, name="fuzz-revoked")}
        apikey_revoke(d.data, apikey_id(d.data, "fuzz-revoked"))
        ingest_admin = apikey(d.data, "ORG_ADMIN", org=INGEST_ORG)
        r = d.http("POST", "/v2/webhooks", ingest_admin, {"items": [
            {"url": sink.url("/in"), "event_type": t} for t in TYPES[:4]]})
        self.assertStatus(r, 200)
        r = d.http("POST", "/v2/webhooks", keys["admin"], {"items": [
            {"url": "https://127.0.0.1/f", "event_type": t, "custom_headers": {"X-F": "1"}}
            for t in TYPES[:5]]})
        self.assertStatus(r, 200)
        ids = [c["id"] for c in r.body["items"]]
        fuzzer = Fuzzer(rng, keys, ids, sink.url("/try"),
                        f"http://127.0.0.1:{harness.closed_port()}/x")

        statuses = {}
        session = d.session()
        sent = 0
        try:
            while sent < REQUESTS:
                req = fuzzer.next()
                path = urllib.parse.unquote(req.path.split("?")[0]).lower()
                if "tryout" in path and not tryout_is_safe(req.body):
                    continue
                if "events" in path and not ingest_is_safe(req.body):
                    continue
                sent += 1
                try:
                    r = session.http(req.method, req.path, body=req.body, content_type=None,
                                     headers=req.headers)
                except Exception as e:  # noqa: BLE001 - any failure to get an answer
                    self.fail_request(sent, req, f"no well-formed answer: {e!r}", d)
                statuses[r.status] = statuses.get(r.status, 0) + 1
                problem = answer_problem(req, r)
                if problem:
                    self.fail_request(sent, req, problem, d)
        finally:
            session.close()

        for i in range(H2_REQUESTS):
            req = fuzzer.next()
            path = urllib.parse.unquote(req.path.split("?")[0]).lower()
            if ("tryout" in path and not tryout_is_safe(req.body)) or (
                    "events" in path and not ingest_is_safe(req.body)):
                continue
            key = next((v for k, v in req.headers.items() if k.lower() == "x-apikey"), None)
            # HTTP/2 forbids leading and trailing white space in field values (RFC 9113
            # 8.2.1): a stream reset would be the right answer to such a request.
            ctype = next((v.strip() for k, v in req.headers.items()
                          if k.lower() == "content-type"), None)
            try:
                r = harness.curl_h2(d.port, req.method, req.path, key=key, body=req.body,
                                    content_type=ctype or None, workdir=self.tmp)
            except Exception as e:  # noqa: BLE001
                self.fail_request(f"h2-{i}", req, f"no well-formed h2 answer: {e!r}", d)
            problem = answer_problem(req, r)
            if problem:
                self.fail_request(f"h2-{i}", req, problem, d)

        self.raw_connections(rng, d.port)

        self.assertEqual(d.http("GET", "/healthz").body, {"status": "ok"}, d.logs())
        d.metrics()  # parses, or fails on a malformed line
        before = self.all_configs(d, keys["admin"]) + self.all_configs(
            d, keys["provider"], f"&org_id={FUZZ_ORG2}")
        sys.stderr.write(f"fuzz: {sent} requests, statuses {dict(sorted(statuses.items()))}, "
                         f"{len(before)} fuzzed subscriptions, "
                         f"{time.monotonic() - started:.1f} s\n")
        self.assertGreater(statuses.get(400, 0), 0, "the fuzzer reached validation")
        self.assertGreater(statuses.get(200, 0) + statuses.get(202, 0), 0)
        d.stop()  # exit 0, no sanitizer report
        d.start()  # what the fuzzing stored loads again
        after = self.all_configs(d, keys["admin"]) + self.all_configs(
            d, keys["provider"], f"&org_id={FUZZ_ORG2}")
        self.assertEqual(after, before)
        d.stop()
        sink.stop()

    def all_configs(self, d, key, query=""):
        configs, page = [], 1
        while page <= 100:
            r = d.http("GET", f"/v2/webhooks?per_page=100&page={page}{query}", key)
            self.assertStatus(r, 200)
            for cfg in r.body["items"]:
                self.assertEqual(set(cfg), {"id", "org_id", "event_type", "url",
                                            "custom_headers", "created_at", "updated_at"})
                self.assertRegex(cfg["updated_at"], harness.TIMESTAMP_RE)
            configs += r.body["items"]
            if page >= r.body["max_page"]:
                return configs
            page += 1
        self.fail("more than 100 pages")

    def raw_connections(self, rng, port):
        """Malformed HTTP on raw sockets: the daemon may answer or close, but must live on."""
        garbage = [b"GET / HTTP/1.1\r\n\r\n", b"GARBAGE\r\n\r\n", b"GET /healthz HTTP/9.9\r\n\r\n",
                   b"POST /v2/webhooks HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n",
                   b"POST /v2/events HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                   b"GET /v2/webhooks HTTP/1.1\r\nHost: x\r\n" + b"X: y\r\n" * 2000 + b"\r\n",
                   b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x04\x08\x00\x00\x00\x00\x00",
                   b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03"]
        for i in range(RAW_CONNECTIONS):
            data = rng.choice(garbage) if rng.random() < 0.6 else rng.randbytes(rng.randint(1, 400))
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                try:
                    s.sendall(data)
                    if i % 2 == 0:
                        s.shutdown(socket.SHUT_WR)
                        s.settimeout(1)
                        for _ in range(1000):
                            if not s.recv(65536):
                                break
                except OSError:
                    pass  # reset or timeout: both fine, only survival matters


if __name__ == "__main__":
    harness.main()
