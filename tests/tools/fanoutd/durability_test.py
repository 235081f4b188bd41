#!/usr/bin/env python3
"""fanoutd's durability across restarts and crashes: idempotent event ids (also after SIGTERM
and kill -9), a start that fails keeps the saved deliveries, a stop within one deadline (a
second SIGTERM changes nothing), and accepted events that survive kill -9.

Run: python3 durability_test.py --fanoutd build/X/tools/fanoutd/fanoutd \
         --sink build/X/tools/fanout-sink

The delivery history route (GET /v2/webhooks/{id}/deliveries, api_history_test.py) is how most tests
see outcomes; with --no-durable (no history) the metrics and the sink's record do.
"""

import collections
import json
import os
import signal
import socket
import sqlite3
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
import harness  # noqa: E402
from harness import FanoutdTestCase, apikey, run_fanoutd, wait_until  # noqa: E402

ORG, OTHER = 42, 43
# Retries after 20, 40, 80 ms: failures are retried (or exhausted) at once.
FAST_RETRY = "[retry]\nbase_ms = 20\nfactor = 2\njitter = 0\nmax_retries = 3\n"
# A retry 3 s after a failed first attempt: time enough to stop (or kill) the daemon while the
# deliveries wait for it.
SLOW_RETRY = "[retry]\nbase_ms = 3000\nfactor = 1\njitter = 0\nmax_retries = 3\n"


def event(event_id, org=ORG, event_type="business_created", payload="{}"):
    """One NDJSON line; event_id None: no id (the daemon generates one)."""
    head = f'"id":{json.dumps(event_id)},' if event_id is not None else ""
    return f'{{{head}"org_id":{org},"type":"{event_type}","payload":{payload}}}'


class DurabilityCase(FanoutdTestCase):

    def publish(self, d, key, *lines):
        r = d.http("POST", "/v2/events", key, "\n".join(lines) + "\n",
                   content_type="application/x-ndjson")
        self.assertStatus(r, 202, "ingest")
        return r.body

    @staticmethod
    def statuses(body):
        return [(i["status"], i.get("id")) for i in body["items"]]

    @staticmethod
    def counts(body):
        return {k: body[k] for k in ("accepted", "dropped", "refused", "busy", "duplicate")}

    def hook(self, d, key, url, event_type="business_created", query=""):
        r = d.http("POST", "/v2/webhooks" + query, key,
                   {"items": [{"url": url, "event_type": event_type}]})
        self.assertStatus(r, 200, "create")
        return r.body["items"][0]["id"]

    def set_url(self, d, key, wid, url, query=""):
        self.assertStatus(d.http("PATCH", f"/v2/webhooks/{wid}{query}", key, {"url": url}), 200)

    def history(self, d, key, wid, query=""):
        """Every delivery of the webhook (one page of 100), newest first."""
        r = d.http("GET", f"/v2/webhooks/{wid}/deliveries?per_page=100{query}", key)
        self.assertStatus(r, 200, "deliveries")
        return r.body["items"]

    def wait_delivered(self, d, key, wid, n, query=""):
        """Waits until the webhook has n deliveries, all delivered; returns them."""
        seen = {}

        def done():
            seen["items"] = items = self.history(d, key, wid, query)
            return items if len(items) == n and all(i["outcome"] == "delivered"
                                                    for i in items) else None

        return wait_until(done, message=lambda: f"{n} delivered deliveries of webhook {wid}, "
                                                f"have {json.dumps(seen.get('items'))[:3000]}")

    def wait_metric(self, d, name, value, **labels):
        wait_until(lambda: d.metric(name, **labels) == value,
                   message=lambda: f"{name}{labels} == {value} (is {d.metric(name, **labels)})")


# ------------------------------------------------------------------------------------------
class IdempotencyTest(DurabilityCase):
    """An (org_id, id) accepted within durability.idempotency_ms (default 24 h) is answered
    "duplicate", also after a restart; events without an id never are."""

    def test_duplicates_within_a_run_and_after_restart(self):
        """The same id again: 202 with "duplicate": 1 and the item {"status":"duplicate",
        "id":...}; within one batch the later one is the duplicate; another organisation's
        same id and events without an id are accepted. After SIGTERM and a restart on the same
        data directory the ids are still known. Each event reaches the sink once."""
        d = self.start_daemon(config=FAST_RETRY)
        admin, admin2 = apikey(d.data, "ORG_ADMIN", org=ORG), apikey(d.data, "ORG_ADMIN",
                                                                       org=OTHER)
        ingest = apikey(d.data, "INGEST")
        sink = self.start_sink("200:1")
        wid = self.hook(d, admin, sink.url("/a"))
        wid2 = self.hook(d, admin2, sink.url("/b"))

        body = self.publish(d, ingest, event("dup-1"))
        self.assertEqual(self.statuses(body), [("accepted", "dup-1")])
        self.assertEqual(body["duplicate"], 0)
        body = self.publish(d, ingest, event("dup-1"))
        self.assertEqual(body, {"accepted": 0, "dropped": 0, "refused": 0, "busy": 0,
                                "duplicate": 1,
                                "items": [{"line": 1, "status": "duplicate", "id": "dup-1"}]})
        body = self.publish(d, ingest, event("dup-1"), event("dup-2"), event("dup-2"),
                            event(None), event(None), event("dup-1", org=OTHER))
        got = self.statuses(body)
        self.assertEqual(got[:3], [("duplicate", "dup-1"), ("accepted", "dup-2"),
                                   ("duplicate", "dup-2")])
        self.assertEqual([s for s, _ in got[3:]], ["accepted"] * 3)
        self.assertEqual(got[5][1], "dup-1")
        generated = [got[3][1], got[4][1]]
        self.assertTrue(all(generated), body)
        self.assertEqual(len(set(generated) | {"dup-1", "dup-2"}), 4, "fresh generated ids")
        self.assertEqual(self.counts(body), {"accepted": 4, "dropped": 0, "refused": 0,
                                             "busy": 0, "duplicate": 2})
        self.wait_delivered(d, admin, wid, 4)
        self.assertEqual(d.metric("fanout_events_refused_total", reason="duplicate"), 3)

        d.restart()
        body = self.publish(d, ingest, event("dup-1"), event("dup-2"), event("dup-1", org=OTHER),
                            event(None))
        got = self.statuses(body)
        self.assertEqual(got[:3], [("duplicate", "dup-1"), ("duplicate", "dup-2"),
                                   ("duplicate", "dup-1")])
        self.assertEqual(got[3][0], "accepted")
        self.assertNotIn(got[3][1], generated + ["dup-1", "dup-2"])
        self.assertEqual((body["accepted"], body["duplicate"]), (1, 3), body)
        items = self.wait_delivered(d, admin, wid, 5)
        self.assertEqual([i["event_id"] for i in items],
                         [got[3][1], generated[1], generated[0], "dup-2", "dup-1"])
        self.assertEqual([i["event_id"] for i in self.wait_delivered(d, admin2, wid2, 1)],
                         ["dup-1"])
        d.stop()
        sink.stop()
        seen = collections.Counter((q["path"], q.header("x-partoo-event-id"))
                                   for q in sink.requests())
        expected = {("/a", e): 1 for e in ["dup-1", "dup-2", got[3][1]] + generated}
        expected[("/b", "dup-1")] = 1
        self.assertEqual(dict(seen), expected)

    def test_only_accepted_ids_are_remembered(self):
        """An id whose event was dropped (no subscription) or refused (no payload) is not
        remembered: the same id is accepted later, and only then a duplicate."""
        d = self.start_daemon(config=FAST_RETRY)
        admin = apikey(d.data, "ORG_ADMIN", org=ORG)
        ingest = apikey(d.data, "INGEST")
        body = self.publish(d, ingest, event("early"), f'{{"id":"bad","org_id":{ORG},'
                                                       f'"type":"business_created"}}')
        self.assertEqual([i["status"] for i in body["items"]], ["dropped", "refused"], body)
        sink = self.start_sink("200:1")
        self.hook(d, admin, sink.url())
        body = self.publish(d, ingest, event("early"), event("bad"))
        self.assertEqual(self.statuses(body), [("accepted", "early"), ("accepted", "bad")])
        body = self.publish(d, ingest, event("early"), event("bad"))
        self.assertEqual(self.statuses(body), [("duplicate", "early"), ("duplicate", "bad")])
        d.stop()

    def test_idempotency_window(self):
        """durability.idempotency_ms = 2000: the same id is a duplicate at once, and accepted
        again once the window has passed."""
        d = self.start_daemon(config="[durability]\nidempotency_ms = 2000\n" + FAST_RETRY)
        admin = apikey(d.data, "ORG_ADMIN", org=ORG)
        ingest = apikey(d.data, "INGEST")
        sink = self.start_sink("200:1")
        wid = self.hook(d, admin, sink.url())
        self.assertEqual(self.statuses(self.publish(d, ingest, event("w-1"))),
                         [("accepted", "w-1")])
        accepted_at = time.monotonic()
        self.assertEqual(self.statuses(self.publish(d, ingest, event("w-1"))),
                         [("duplicate", "w-1")])
        wait_until(lambda: self.statuses(self.publish(d, ingest, event("w-1")))[0][0] ==
                   "accepted", interval=0.2, message="w-1 accepted again after the window")
        self.assertGreater(time.monotonic() - accepted_at, 1.0, "not before the window ends")
        self.assertEqual(self.statuses(self.publish(d, ingest, event("w-1"))),
                         [("duplicate", "w-1")], "a new window from the new acceptance")
        self.wait_delivered(d, admin, wid, 2)
        d.stop()

    def test_idempotency_off(self):
        """[durability] idempotency_ms = 0: nothing is a duplicate, not even after a restart;
        each event is delivered."""
        d = self.start_daemon(config="[durability]\nidempotency_ms = 0\n" + FAST_RETRY)
        admin = apikey(d.data, "ORG_ADMIN", org=ORG)
        ingest = apikey(d.data, "INGEST")
        sink = self.start_sink("200:1")
        wid = self.hook(d, admin, sink.url())
        for _ in range(2):
            body = self.publish(d, ingest, event("same"), event("same"))
            self.assertEqual(self.statuses(body), [("accepted", "same")] * 2)
            self.assertEqual(body["duplicate"], 0)
        d.restart()
        body = self.publish(d, ingest, event("same"))
        self.assertEqual(self.statuses(body), [("accepted", "same")])
        self.wait_delivered(d, admin, wid, 5)
        d.stop()
        sink.stop()
        self.assertEqual([q.header("x-partoo-event-id") for q in sink.requests()], ["same"] * 5)

    def test_no_durable_has_no_duplicates(self):
        """--no-durable keeps no ids: the same id is accepted each time ("duplicate": 0)."""
        d = self.start_daemon(config=FAST_RETRY, args=["--no-durable"])
        admin = apikey(d.data, "ORG_ADMIN", org=ORG)
        ingest = apikey(d.data, "INGEST")
        sink = self.start_sink("200:1")
        self.hook(d, admin, sink.url())
        body = self.publish(d, ingest, event("nd"), event("nd"))
        self.assertEqual(self.counts(body), {"accepted": 2, "dropped": 0, "refused": 0,
                                             "busy": 0, "duplicate": 0})
        self.wait_metric(d, "fanout_outcomes_total", 2, kind="delivered")
        d.restart()
        self.assertEqual(self.statuses(self.publish(d, ingest, event("nd"))),
                         [("accepted", "nd")])
        self.wait_metric(d, "fanout_outcomes_total", 1, kind="delivered")
        sink.wait_count(3)
        d.stop()


# ------------------------------------------------------------------------------------------
class StartFailureTest(DurabilityCase):
    """A start that fails (the port is taken) loses none of the deliveries the previous run left
    without a final outcome; a later start resumes and delivers them."""

    def _start_fails_then_resumes(self, durable):
        d = self.start_daemon(config=SLOW_RETRY, args=[] if durable else ["--no-durable"])
        admin = apikey(d.data, "ORG_ADMIN", org=ORG)
        ingest = apikey(d.data, "INGEST")
        sink = self.start_sink(args=["--plan", "503,200"])  # attempt 1: 503, then 200
        wid = self.hook(d, admin, sink.url())
        ids = [f"saved-{i}" for i in range(3)]
        body = self.publish(d, ingest, *[event(i) for i in ids])
        self.assertEqual(body["accepted"], 3, body)
        self.wait_metric(d, "fanout_waiting_retries", 3)
        d.stop()  # the three wait for their retry: saved (store or journal)

        # The harness passes --listen 127.0.0.1:0; a later --listen wins.
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen(1)
            port = taken.getsockname()[1]
            for _ in range(2):  # failing twice loses nothing either
                r = run_fanoutd(*d.cmd[1:], "--listen", f"127.0.0.1:{port}")
                self.assertEqual(r.returncode, 1, f"stdout={r.stdout!r} stderr={r.stderr!r}")
                self.assertNotIn("listening on", r.stdout)
                self.assertTrue(r.stderr.strip(), "the reason on stderr")
                harness_markers = [m for m in harness.SANITIZER_MARKERS if m in r.stderr]
                self.assertEqual(harness_markers, [], r.stderr[-3000:])

        d.start()
        self.wait_metric(d, "fanout_outcomes_total", 3, kind="delivered")
        if durable:
            items = self.wait_delivered(d, admin, wid, 3)
            for i in items:
                self.assertEqual([a["status_code"] for a in i["attempts"]], [503, 200], i)
        else:
            r = d.http("GET", f"/v2/webhooks/{wid}/deliveries", admin)
            self.assertError(r, 501)
        d.stop()
        sink.stop()
        seen = collections.defaultdict(list)
        for q in sink.requests():
            seen[q.header("x-partoo-event-id")].append(q.header("x-partoo-attempt"))
        self.assertEqual(dict(seen), {i: ["1", "2"] for i in ids})

    def test_start_failure_keeps_saved_deliveries_without_durability(self):
        """--no-durable: deliveries waiting for a retry at SIGTERM are saved in the store; a
        start on a taken port exits 1; the next start delivers them (attempt 2)."""
        self._start_fails_then_resumes(durable=False)

    def test_start_failure_keeps_journal_deliveries(self):
        """Durable: the same, the deliveries kept by the journal."""
        self._start_fails_then_resumes(durable=True)

    def test_unreadable_saved_deliveries_fail_the_start_cleanly(self):
        """A saved delivery the store cannot read back (an attempt count out of range) fails
        the start after the server has its port: exit 1 with the reason, the listener and the
        loop closed in order (no sanitizer report, no abort), and the row kept."""
        d = self.start_daemon(args=["--no-durable"])
        d.stop()
        db = sqlite3.connect(os.path.join(d.data, "fanoutd.db"))
        db.execute("INSERT INTO pending_deliveries (event_id, org_id, event_type, body, "
                   "subscription_id, attempts, next_attempt_unix_ms) "
                   "VALUES ('bad', 42, 'business_created', '{}', 1, -1, 0)")
        db.commit()
        db.close()
        r = run_fanoutd(*d.cmd[1:])
        self.assertEqual(r.returncode, 1, f"stdout={r.stdout!r} stderr={r.stderr!r}")
        self.assertNotIn("listening on", r.stdout)
        self.assertIn("attempts out of range", r.stderr)
        self.assertEqual([m for m in harness.SANITIZER_MARKERS if m in r.stderr], [],
                         r.stderr[-3000:])
        db = sqlite3.connect(os.path.join(d.data, "fanoutd.db"))
        self.assertEqual(db.execute("SELECT count(*) FROM pending_deliveries").fetchone()[0], 1)
        db.close()


# ------------------------------------------------------------------------------------------
WORKERS = 4
DRAIN_MS = 3000
# Engine::stop drains every worker at once: with an attempt a black hole never answers on each
# of the 4 workers, SIGTERM takes one deadline (3 s) plus start-up and exit costs. 9 s leaves
# 6 s of margin (AddressSanitizer on a shared 2-core machine) and is still well below the 12 s
# (4 x 3 s) of a drain worker after worker (or even 3 deadlines), so it tells the two apart.
STOP_BOUND_S = 9.0
STOP_CONFIG = (f"workers = {WORKERS}\ndrain_timeout_ms = {DRAIN_MS}\n"
               # attempts stay in flight at the black hole (no response timeout meanwhile)
               "[timeouts]\nresponse_ms = 60000\n" + FAST_RETRY)


def worker_of(org):
    """The engine's worker for an organisation's events (engine.cc: one organisation's events
    stay on one worker, Fibonacci hash of org_id)."""
    return (((org * 0x9E3779B97F4A7C15) % (1 << 64)) >> 32) % WORKERS


def orgs_on_every_worker(per_worker=2, first=700):
    orgs, org = [], first
    while len(orgs) < WORKERS * per_worker:
        if sum(1 for o in orgs if worker_of(o) == worker_of(org)) < per_worker:
            orgs.append(org)
        org += 1
    return orgs


class StopDeadlineTest(DurabilityCase):
    """SIGTERM with attempts in flight on every worker: one deadline for the whole stop; a
    second SIGTERM does not kill the daemon; the deliveries are still there after a restart."""

    def _in_flight_on_every_worker(self):
        d = self.start_daemon(config=STOP_CONFIG)
        orgs = orgs_on_every_worker()
        self.assertEqual({worker_of(o) for o in orgs}, set(range(WORKERS)))
        provider = apikey(d.data, "PROVIDER", orgs=orgs)
        ingest = apikey(d.data, "INGEST")
        hole = self.start_sink(args=["--blackhole"])
        wids = {org: self.hook(d, provider, hole.url(f"/org{org}"), query=f"?org_id={org}")
                for org in orgs}
        ids = {org: [f"inflight-{org}-{k}" for k in range(2)] for org in orgs}
        body = self.publish(d, ingest, *[event(i, org) for org in orgs for i in ids[org]])
        self.assertEqual(body["accepted"], 2 * len(orgs), body)
        hole.wait_count(2 * len(orgs))  # every attempt has reached the black hole
        return d, provider, wids, ids, hole

    def _still_there_after_restart(self, d, provider, wids, ids, hole):
        """After a restart every delivery is pending (the attempt cut at the deadline is not
        counted, and the black hole holds the new one); once the URL points at a sink that
        answers and the black hole goes away, each is delivered exactly once."""
        d.start()
        for org, wid in wids.items():
            items = self.history(d, provider, wid, f"&org_id={org}")
            self.assertEqual(sorted(i["event_id"] for i in items), ids[org])
            for i in items:
                self.assertEqual((i["outcome"], i["finished_at"], i["attempts_made"]),
                                 ("pending", None, 0), i)
        good = self.start_sink("200:1")
        for org, wid in wids.items():
            self.set_url(d, provider, wid, good.url(f"/org{org}"), f"?org_id={org}")
        hole.stop()  # closes its connections: the attempts there fail and are retried
        for org, wid in wids.items():
            for i in self.wait_delivered(d, provider, wid, 2, f"&org_id={org}"):
                self.assertEqual(i["attempts"][-1]["status_code"], 200, i)
        d.stop()
        good.stop()
        seen = collections.Counter((q["path"], q.header("x-partoo-event-id"))
                                   for q in good.requests())
        self.assertEqual(dict(seen), {(f"/org{org}", i): 1 for org in ids for i in ids[org]})

    def test_stop_within_one_deadline(self):
        """workers = 4, drain_timeout_ms = 3000, attempts in flight at a black hole on every
        worker: SIGTERM → exit 0 within STOP_BOUND_S (see there)."""
        d, *rest = self._in_flight_on_every_worker()
        started = time.monotonic()
        d.stop()  # asserts exit 0
        elapsed = time.monotonic() - started
        self.assertLess(elapsed, STOP_BOUND_S,
                        f"stop took {elapsed:.1f} s: more than one {DRAIN_MS} ms deadline")
        # A black hole never answers: the stop waits for the deadline (else the attempts were
        # not in flight, or were cut early).
        self.assertGreater(elapsed, DRAIN_MS / 1000 - 0.5,
                           "stop ended before the deadline with attempts in flight")
        self._still_there_after_restart(d, *rest)

    def test_second_sigterm_does_not_kill(self):
        """A second SIGTERM right after the first (once the daemon logged that it is stopping)
        changes nothing: exit 0 within the same bound, and the deliveries in flight are still
        there after a restart."""
        d, *rest = self._in_flight_on_every_worker()
        started = time.monotonic()
        d.send_signal(signal.SIGTERM)
        wait_until(lambda: 'msg="stopping"' in d.stderr(), timeout=STOP_BOUND_S,
                   message="the daemon to log that it is stopping")
        d.send_signal(signal.SIGTERM)
        wait_until(lambda: 'msg="already stopping"' in d.stderr() or not d.running,
                   timeout=STOP_BOUND_S, message="the second SIGTERM to be seen")
        d.stop()  # (a third SIGTERM if still running) asserts exit 0
        elapsed = time.monotonic() - started
        self.assertIn('msg="already stopping"', d.stderr())
        self.assertLess(elapsed, STOP_BOUND_S,
                        f"stop took {elapsed:.1f} s: more than one {DRAIN_MS} ms deadline")
        self._still_there_after_restart(d, *rest)


# ------------------------------------------------------------------------------------------
class CrashTest(DurabilityCase):
    """kill -9: what was answered "accepted" is on disk and gets delivered after a restart."""

    def test_kill_9_before_the_sink_answered(self):
        """An accepted event whose attempt is in flight (black hole) at kill -9: after a
        restart it is delivered (X-Partoo-Attempt 1 or 2: the attempt in flight may be
        repeated with the same number), same id and body, once; its id is still known."""
        d = self.start_daemon(config=FAST_RETRY)
        admin = apikey(d.data, "ORG_ADMIN", org=ORG)
        ingest = apikey(d.data, "INGEST")
        hole, good = self.start_sink(args=["--blackhole"]), self.start_sink("200:1")
        wid = self.hook(d, admin, hole.url("/hole"))
        body = self.publish(d, ingest, event("crash-1", payload='{"k":"v"}'))
        self.assertEqual(self.statuses(body), [("accepted", "crash-1")])
        hole.wait_count(1)
        # Routing is read at each attempt: the attempt after the restart goes here.
        self.set_url(d, admin, wid, good.url("/good"))
        d.kill()
        self.assertEqual(d.returncode, -signal.SIGKILL)

        d.start()
        [item] = self.wait_delivered(d, admin, wid, 1)
        self.assertEqual(item["event_id"], "crash-1")
        self.assertEqual(item["attempts"][-1]["status_code"], 200, item)
        self.assertIn(item["attempts_made"], (1, 2), item)
        self.assertEqual(self.statuses(self.publish(d, ingest, event("crash-1"))),
                         [("duplicate", "crash-1")])
        d.stop()
        hole.stop()
        good.stop()
        self.assertEqual([q.header("x-partoo-attempt") for q in hole.requests()], ["1"])
        [q] = good.requests()
        self.assertEqual((q["path"], q.header("x-partoo-event-id")), ("/good", "crash-1"))
        self.assertIn(q.header("x-partoo-attempt"), ("1", "2"))
        self.assertEqual(q.header("x-partoo-attempt"), str(item["attempts_made"]))
        self.assertEqual(q.body, b'{"type":"business_created","payload":{"k":"v"}}')

    def test_kill_9_right_after_accepted(self):
        """50 events answered accepted, kill -9 at once: after a restart each is delivered
        (at least once: one delivered just before the crash may come again) and each id is a
        duplicate."""
        d = self.start_daemon(config=FAST_RETRY)
        admin = apikey(d.data, "ORG_ADMIN", org=ORG)
        ingest = apikey(d.data, "INGEST")
        sink = self.start_sink("200:1")
        wid = self.hook(d, admin, sink.url())
        ids = [f"burst-{i:02d}" for i in range(50)]
        body = self.publish(d, ingest, *[event(i) for i in ids])
        self.assertEqual(body["accepted"], 50, self.counts(body))
        d.kill()
        d.start()
        items = self.wait_delivered(d, admin, wid, 50)
        self.assertEqual([i["event_id"] for i in items], ids[::-1])
        body = self.publish(d, ingest, *[event(i) for i in ids])
        self.assertEqual(self.counts(body), {"accepted": 0, "dropped": 0, "refused": 0,
                                             "busy": 0, "duplicate": 50})
        d.stop()
        sink.stop()
        self.assertEqual({q.header("x-partoo-event-id") for q in sink.requests()}, set(ids))

    def test_kill_9_keeps_waiting_retries(self):
        """Deliveries waiting for their retry at kill -9 keep their attempt count and retry
        time: after a restart each is attempted once more (X-Partoo-Attempt 2) and delivered;
        the history shows both attempts."""
        d = self.start_daemon(config=SLOW_RETRY)
        admin = apikey(d.data, "ORG_ADMIN", org=ORG)
        ingest = apikey(d.data, "INGEST")
        sink = self.start_sink(args=["--plan", "503,200"])
        wid = self.hook(d, admin, sink.url())
        ids = [f"retry-{i}" for i in range(3)]
        self.assertEqual(self.publish(d, ingest, *[event(i) for i in ids])["accepted"], 3)
        self.wait_metric(d, "fanout_waiting_retries", 3)
        # The journal records each attempt's result in its next group commit: wait for the
        # history to show them, so that the crash comes after (what was on disk is tested).
        wait_until(lambda: all(i["attempts_made"] == 1 for i in self.history(d, admin, wid))
                   and len(self.history(d, admin, wid)) == 3,
                   message="the first attempts in the journal")
        d.kill()
        d.start()
        items = self.wait_delivered(d, admin, wid, 3)
        for i in items:
            self.assertEqual([a["status_code"] for a in i["attempts"]], [503, 200], i)
        d.stop()
        sink.stop()
        seen = collections.defaultdict(list)
        for q in sink.requests():
            seen[q.header("x-partoo-event-id")].append(q.header("x-partoo-attempt"))
        self.assertEqual(dict(seen), {i: ["1", "2"] for i in ids})


if __name__ == "__main__":
    harness.main()
