"""What a client without a key can take from fanoutd (tools/fanoutd/README.md, "Limits"):

- idle connections cannot stop deliveries: under a descriptor limit of 256 with fd_reserve 128,
  a flood of 400 idle connections gets at most 128 (the rest are closed at accept, counted), and
  events published meanwhile are still delivered (their connections need descriptors);
- a wrong key is refused on the request's headers: a POST announcing 16 MB gets its 401 before
  a byte of the body is sent;
- a client pipelining GET /metrics without reading stops being read once its unread answers
  pass api.max_unsent_output_bytes, and its answers all arrive once it reads;
- one organisation whose receiver is a black hole is held to its own budget
  (org_max_in_flight): its further events are answered busy (reason org_busy), while another
  organisation's events, in the same requests, are accepted and delivered;
- the heap: fanoutd runs itself again with glibc's heap on transparent huge pages (and not
  when told otherwise), and gives free heap back once after a backlog drained (heap_trim.h).
"""

import json
import os
import socket

import harness
from harness import FanoutdTestCase, apikey, wait_until

FLOOD = 400


def event(org, n):
    return {"org_id": org, "type": "business_updated", "payload": {"n": n}}


def recv_until(sock, done, limit=64 << 20):
    """Reads until done(bytes) holds or the peer closes; the socket has a timeout (a failure,
    never a timing assertion)."""
    got = b""
    while not done(got) and len(got) < limit:
        chunk = sock.recv(65536)
        if not chunk:
            break
        got += chunk
    return got


def count_answers(sock, n):
    """Reads until `n` answer status lines arrived (counted as they come); returns the count."""
    status = b"HTTP/1.1 200 "
    seen, tail = 0, b""
    while seen < n:
        chunk = sock.recv(1 << 20)
        if not chunk:
            break
        buf = tail + chunk
        seen += buf.count(status)
        tail = buf[-(len(status) - 1):]
    return seen


class LimitsTest(FanoutdTestCase):

    def subscribe(self, d, data, org, url):
        """A business_updated webhook of `org` to `url`, made with its own ORG_ADMIN key."""
        admin = apikey(data, "ORG_ADMIN", org=org)
        r = d.http("POST", "/v2/webhooks", key=admin,
                   body={"items": [{"url": url, "event_type": "business_updated"}]})
        self.assertEqual(r.status, 200, r.describe())

    def start_black_holed(self, config):
        """fanoutd with `config`, an hour's backoff and organisation 1 subscribed to a black
        hole (attempts time out after timeouts.response_ms, which `config` sets): the daemon
        and an INGEST key for organisation 1."""
        hole = self.start_sink(args=["--blackhole", "--quiet"])
        data = self.data_dir()
        d = self.start_daemon(data, config=config + "[retry]\nbase_ms = 3600000\njitter = 0\n")
        self.subscribe(d, data, 1, hole.url())
        return d, apikey(data, "INGEST", orgs=[1])

    def test_idle_connections_cannot_stop_deliveries(self):
        sink = self.start_sink(args=["--quiet"])
        data = self.data_dir()
        d = self.start_daemon(data, nofile=256, config="fd_reserve = 128\n"
                                                       "[api]\nmax_connections = 100000\n")
        self.subscribe(d, data, 7, sink.url())
        ingest = apikey(data, "INGEST", orgs=[7])
        session = d.session()  # opened before the flood: one of the slots
        self.assertEqual(session.http("GET", "/healthz").status, 200)
        flood = []
        try:
            for _ in range(FLOOD):
                s = socket.create_connection(("127.0.0.1", d.port), timeout=harness.HTTP_TIMEOUT)
                flood.append(s)
            def refused():
                m = harness.Metrics(session.http("GET", "/metrics").raw.decode())
                return m if m.value("fanout_api_connections_refused_total") > 0 else None

            m = wait_until(refused, message="connections past the cap to be refused")
            self.assertLessEqual(m.value("fanout_api_connections"), 128)
            # Deliveries still get descriptors: 50 events, each needs the receiver.
            for n in range(50):
                r = session.http("POST", "/v2/events", key=ingest, body=event(7, n))
                self.assertEqual(r.status, 202, r.describe())
            wait_until(lambda: sink.count() >= 50, message="the 50 deliveries during the flood")
        finally:
            for s in flood:
                s.close()
        # Poll through the session that holds a slot: a new connection could still be
        # refused while the server has not yet seen the flood's connections close.
        def metric(name, **labels):
            return harness.Metrics(session.http("GET", "/metrics").raw.decode()).value(
                name, **labels)

        wait_until(lambda: metric("fanout_api_connections") <= 1,
                   message="the flood's connections to close")
        # Outcomes are counted when the worker has read each answer, which can come after the
        # sink recorded the request: waited for, not read once.
        wait_until(lambda: metric("fanout_outcomes_total", kind="delivered") == 50,
                   message=lambda: "50 delivered outcomes "
                                   f"({metric('fanout_outcomes_total', kind='delivered')})")
        session.close()
        d.stop()
        sink.stop()

    def test_black_holed_organisation_does_not_block_another(self):
        hole = self.start_sink(args=["--blackhole", "--quiet"])
        ok = self.start_sink(args=["--quiet"])
        data = self.data_dir()
        d = self.start_daemon(data, config="max_in_flight = 200\norg_max_in_flight = 50\n"
                                           "origin_max_in_flight = 0\n")
        for org, sink in ((1, hole), (2, ok)):
            self.subscribe(d, data, org, sink.url())
        ingest = apikey(data, "INGEST", orgs=[1, 2])
        session = d.session()
        busy = delivered = 0
        for batch in range(10):
            # 30 events per request: 20 for the black hole, 10 for the healthy receiver.
            lines = [event(1 if i % 3 else 2, batch * 30 + i) for i in range(30)]
            body = "\n".join(json.dumps(e) for e in lines) + "\n"
            r = session.http("POST", "/v2/events", key=ingest, body=body.encode(),
                             content_type="application/x-ndjson")
            self.assertIn(r.status, (202, 503), r.describe())
            for item, e in zip(r.body["items"], lines):
                if e["org_id"] == 2:
                    self.assertEqual(item["status"], "accepted", r.describe())
                elif item["status"] == "busy":
                    self.assertEqual(item.get("reason"), "org_busy", r.describe())
                    busy += 1
            delivered += 10
            wait_until(lambda: ok.count() >= delivered, message="org 2's deliveries")
        session.close()
        self.assertEqual(busy, 200 - 50, "org 1 held to its 50")
        # The sink records a request before its answer reaches the worker: org 2's last
        # deliveries can still be in flight when the count above is reached. Waited for, so the
        # count settles at org 1's 50 (a count that stays above it fails the wait).
        wait_until(lambda: d.metric("fanout_outcomes_total", kind="delivered") == 100,
                   message=lambda: "org 2's 100 delivered outcomes "
                                   f"({d.metric('fanout_outcomes_total', kind='delivered')})")
        wait_until(lambda: d.metric("fanout_in_flight") == 50,
                   message=lambda: f"in flight: org 1's 50 ({d.metric('fanout_in_flight')})")
        m = d.metrics()
        self.assertEqual(m.value("fanout_events_refused_total", reason="org_busy"), 150)
        self.assertEqual(m.value("fanout_in_flight"), 50)
        self.assertEqual(ok.count(), 100)
        d.stop()

    def test_a_backlog_past_max_backlog_is_answered_busy(self):
        """max_backlog = 100 at a black hole: of 150 events, 100 accepted and 50 busy (503 with
        Retry-After, no reason: the daemon as a whole, not an organisation); once the 100
        attempts time out and wait an hour for their retry, they leave the backlog and 100 more
        are accepted, 200 in flight."""
        d, ingest = self.start_black_holed("max_backlog = 100\n[timeouts]\nresponse_ms = 2000\n")

        def post(first, n):
            body = "\n".join(json.dumps(event(1, first + i)) for i in range(n)) + "\n"
            return d.http("POST", "/v2/events", key=ingest, body=body.encode(),
                          content_type="application/x-ndjson")

        r = post(0, 150)
        self.assertEqual(r.status, 503, r.describe())
        self.assertEqual(r.headers.get("retry-after"), "1", r.describe())
        self.assertEqual([i["status"] for i in r.body["items"]], ["accepted"] * 100 + ["busy"] * 50)
        self.assertNotIn("reason", r.body["items"][100])
        self.assertEqual(d.metric("fanout_budget_refusals_total", budget="backlog"), 1)
        wait_until(lambda: d.metric("fanout_waiting_retries") == 100,
                   message="the 100 attempts to time out and wait")
        r = post(1000, 100)
        self.assertEqual(r.status, 202, r.describe())
        self.assertEqual(d.metric("fanout_in_flight"), 200)
        self.assertEqual(d.metric("fanout_budget_refusals_total", budget="backlog"), 1)
        d.stop()

    def test_heap_is_trimmed_once_after_a_backlog_drains(self):
        """300 deliveries held at a black hole (heap_trim_backlog = 200): no trim while they are
        held; once their attempts time out and they wait for an hour's backoff, one trim, said
        in the log with the peak it followed; and no second one while nothing else happens."""
        d, ingest = self.start_black_holed("heap_trim_backlog = 200\n"
                                           "[timeouts]\nresponse_ms = 4000\n")
        body = "\n".join(json.dumps(event(1, n)) for n in range(300)) + "\n"
        r = d.http("POST", "/v2/events", key=ingest, body=body.encode(),
                   content_type="application/x-ndjson")
        self.assertEqual(r.status, 202, r.describe())
        self.assertEqual([i["status"] for i in r.body["items"]], ["accepted"] * 300)
        m = d.metrics()
        if m.value("fanout_waiting_retries") == 0:  # all 300 still held at the black hole
            self.assertEqual(m.value("fanout_in_flight"), 300)
            self.assertEqual(m.value("fanout_heap_trims_total"), 0, "trimmed while held")
        wait_until(lambda: d.metric("fanout_waiting_retries") == 300,
                   message="the 300 attempts to time out and wait")
        wait_until(lambda: d.metric("fanout_heap_trims_total") >= 1,
                   message="a trim once the backlog drained")
        self.assertIn("heap trimmed after a backlog drained", d.stderr())
        self.assertIn("peak_held=300", d.stderr())
        # Nothing held and no new peak: no second trim at the next samples. The sync's polls
        # (every 200 ms, on the same timer wheel) are the clock: 11 of them span a second
        # sample at least.
        polls = d.metric("fanout_subscription_sync_polls_total")
        wait_until(lambda: d.metric("fanout_subscription_sync_polls_total") >= polls + 11,
                   message="eleven subscription-sync polls")
        self.assertEqual(d.metric("fanout_heap_trims_total"), 1)
        d.stop()
        self.assertEqual(d.stderr().count("heap trimmed after a backlog drained"), 1)

    def test_wrong_key_is_refused_before_the_body(self):
        data = self.data_dir()
        d = self.start_daemon(data)
        s = socket.create_connection(("127.0.0.1", d.port), timeout=harness.HTTP_TIMEOUT)
        try:
            s.sendall(b"POST /v2/events HTTP/1.1\r\nHost: x\r\nx-APIKey: nope\r\n"
                      b"Content-Type: application/x-ndjson\r\nContent-Length: 16000000\r\n\r\n")
            answer = recv_until(s, lambda b: b"\r\n\r\n" in b and b.rstrip().endswith(b"}"))
        finally:
            s.close()
        self.assertTrue(answer.startswith(b"HTTP/1.1 401 "), answer[:200])
        self.assertIn(b"invalid or revoked API key", answer)
        self.assertEqual(d.metric("fanout_api_requests_total", method="POST",
                                  route="/v2/events", status="401"), 1)
        d.stop()

    def test_pipelined_metrics_without_reading_stop_being_read(self):
        data = self.data_dir()
        d = self.start_daemon(data, config="[api]\nmax_unsent_output_bytes = 65536\n")
        n = 8000  # answers of several KiB each: far more than the kernel's socket buffers
        s = socket.create_connection(("127.0.0.1", d.port), timeout=harness.HTTP_TIMEOUT)
        try:
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n" * n)
            wait_until(lambda: d.metric("fanout_api_read_pauses_total") >= 1,
                       message="fanoutd to stop reading the pipeliner")
            answered = d.metric("fanout_api_requests_total", method="GET", route="/metrics",
                                status="200")
            self.assertLess(answered, n, "every pipelined request was answered unread")
            # Reading now: every answer arrives.
            self.assertEqual(count_answers(s, n), n)
        finally:
            s.close()
        d.stop()

    def test_heap_on_transparent_huge_pages(self):
        """`fanoutd serve` runs itself again once with glibc.malloc.hugetlb=1 (hugepages.h),
        under its own name and process id; FANOUT_MALLOC_HUGETLB=0 and an operator's own
        setting of that tunable are left alone."""
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
            offered = "[never]" not in f.read()
        data = self.data_dir()

        def started(env):
            saved = {k: os.environ.get(k) for k in env}
            os.environ.update({k: v for k, v in env.items() if v is not None})
            for k, v in env.items():
                if v is None:
                    os.environ.pop(k, None)
            try:
                d = self.start_daemon(data)
            finally:
                for k, v in saved.items():
                    if v is None:
                        os.environ.pop(k, None)
                    else:
                        os.environ[k] = v
            with open(f"/proc/{d.proc.pid}/environ", "rb") as f:
                environ = dict(kv.split("=", 1) for kv in f.read().decode().split("\0") if kv)
            with open(f"/proc/{d.proc.pid}/comm") as f:
                name = f.read().strip()
            self.assertEqual(d.http("GET", "/healthz").status, 200)
            d.stop()
            return environ.get("GLIBC_TUNABLES"), name

        tunables, name = started({"GLIBC_TUNABLES": None, "FANOUT_MALLOC_HUGETLB": None})
        self.assertEqual(name, "fanoutd")
        self.assertEqual(tunables, "glibc.malloc.hugetlb=1" if offered else None)
        tunables, _ = started({"GLIBC_TUNABLES": None, "FANOUT_MALLOC_HUGETLB": "0"})
        self.assertIsNone(tunables)
        tunables, _ = started({"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0",
                               "FANOUT_MALLOC_HUGETLB": None})
        self.assertEqual(tunables, "glibc.malloc.hugetlb=0")


if __name__ == "__main__":
    harness.main()
