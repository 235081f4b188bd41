#!/usr/bin/env python3
"""fanoutd end to end, what does not succeed at once: 5xx retried until exhausted, GOAWAY-refused
requests resent, 4xx/3xx/429 not retried, mixed answers adding up, deletes dropping accepted
events, names resolving to refused addresses, and busy answers (tools/fanoutd/README.md,
docs/webhook-contract.md §4). What the end-to-end tests share: e2e_case.py.

Run: python3 e2e_retry_test.py --fanoutd build/X/tools/fanoutd/fanoutd --sink build/X/tools/fanout-sink
"""

import collections
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
import dns_server  # noqa: E402
import harness  # noqa: E402
from harness import wait_until  # noqa: E402
from e2e_case import FAST_RETRY, ORG, E2ECase, event  # noqa: E402


class RetryTest(E2ECase):
    """Partoo's delivery rules with a millisecond retry schedule."""

    def test_5xx_is_retried_until_exhausted(self):
        """503 every time, max_retries = 2: exactly 3 requests per event, attempts 1, 2, 3,
        the same event id and body each time; outcome exhausted."""
        d = self.daemon(config=FAST_RETRY)
        sink = self.start_sink("503:100")
        self.subscribe(d, "business_created", sink.url())
        ids = self.publish_ok(d, event(ORG, "business_created", '{"r":1}', "retry-1"),
                              event(ORG, "business_created", '{"r":2}', "retry-2"))
        self.wait_outcomes(d, 2, "exhausted")
        self.wait_idle(d)
        sink.stop()
        by_id = collections.defaultdict(list)
        for req in sink.requests():
            by_id[req.header("x-partoo-event-id")].append(req)
        self.assertEqual(sorted(by_id), ids)
        for event_id, reqs in by_id.items():
            self.assertEqual(sorted(q.header("x-partoo-attempt") for q in reqs), ["1", "2", "3"],
                             event_id)
            self.assertEqual(len({q.body for q in reqs}), 1, "same body on every attempt")
        m = d.metrics()
        self.assertEqual(m.value("fanout_outcomes_total", kind="exhausted"), 2)
        self.assertEqual(m.value("fanout_outcomes_total", kind="delivered"), 0)
        self.assertEqual(m.value("fanout_attempts_total", **{"class": "5xx"}), 6)
        self.assertEqual(m.value("fanout_waiting_retries"), 0)
        d.stop()

    def test_goaway_refused_requests_are_resent_and_not_counted(self):
        """A receiver that sends GOAWAY after every 15th request on a connection: requests it
        refused (above the last-stream-id) are re-sent on a new connection, not counted as
        attempts; it processes each event exactly once, as attempt 1."""
        d = self.daemon(config=FAST_RETRY)
        sink = self.start_sink(args=["--goaway-every", "15"])
        self.subscribe(d, "business_created", sink.url())
        lines = [event(ORG, "business_created", '{"g":%d}' % i, f"goaway-{i}") for i in range(40)]
        ids = self.publish_ok(d, *lines)
        self.wait_outcomes(d, 40, "delivered")
        self.wait_idle(d)
        sink.stop()
        seen = collections.Counter(q.header("x-partoo-event-id") for q in sink.requests())
        self.assertEqual(sorted(seen), sorted(ids))
        self.assertEqual(set(seen.values()), {1}, "each event processed once")
        self.assertEqual({q.header("x-partoo-attempt") for q in sink.requests()}, {"1"})
        self.assertGreaterEqual(sink.summary["goaways"], 1)
        self.assertEqual(d.metric("fanout_attempts_total", **{"class": "2xx"}), 40)
        self.assertEqual(d.metric("fanout_attempts_total", **{"class": "failed"}), 0)
        d.stop()

    def test_4xx_3xx_and_429_are_not_retried(self):
        """404, 429 (by default) and 301 (never followed) end as rejected after one request."""
        d = self.daemon(config=FAST_RETRY)
        sinks = {"business_created": self.start_sink("404:1"),
                 "business_updated": self.start_sink("429:1"),
                 "business_deleted": self.start_sink("301:1")}
        for event_type, sink in sinks.items():
            self.subscribe(d, event_type, sink.url())
            self.publish_ok(d, event(ORG, event_type, "{}", f"no-retry-{event_type}"))
        self.wait_outcomes(d, 3, "rejected")
        self.wait_idle(d)
        for event_type, sink in sinks.items():
            sink.stop()
            reqs = sink.requests()
            self.assertEqual(len(reqs), 1, event_type)
            self.assertEqual(reqs[0].header("x-partoo-event-id"), f"no-retry-{event_type}")
        m = d.metrics()
        self.assertEqual(m.value("fanout_outcomes_total", kind="rejected"), 3)
        self.assertEqual(m.value("fanout_attempts_total", **{"class": "4xx"}), 2)
        self.assertEqual(m.value("fanout_attempts_total", **{"class": "3xx"}), 1)
        d.stop()

    def test_mixed_answers_add_up(self):
        """A sink answering 200, 404 and 503 at random (seeded): every event gets consecutive
        attempts 1..k (k <= 3), ends once, and the metrics agree with what the sink answered
        (attempts by class, delivered = 200s, rejected = 404s, the rest exhausted)."""
        d = self.daemon(config=FAST_RETRY)
        sink = self.start_sink("200:2,404:1,503:2")
        self.subscribe(d, "message_created", sink.url())
        n = 40
        lines = [event(ORG, "message_created", f'{{"i":{i}}}', f"mix-{i}") for i in range(n)]
        self.assertEqual(len(self.publish_ok(d, *lines)), n)
        self.wait_outcomes(d, n)
        self.wait_idle(d)
        sink.stop()
        reqs = sink.requests()
        by_id = collections.defaultdict(list)
        for req in reqs:
            by_id[req.header("x-partoo-event-id")].append(req.header("x-partoo-attempt"))
        self.assertEqual(sorted(by_id), sorted(f"mix-{i}" for i in range(n)))
        for event_id, attempts in by_id.items():
            k = len(attempts)
            self.assertLessEqual(k, 3, event_id)
            self.assertEqual(sorted(attempts), [str(a) for a in range(1, k + 1)], event_id)
        m = d.metrics()
        status = {int(s): c for s, c in sink.summary["by_status"].items()}
        self.assertEqual(sum(status.values()), len(reqs))
        self.assertEqual(m.value("fanout_attempts_total", **{"class": "2xx"}), status.get(200, 0))
        self.assertEqual(m.value("fanout_attempts_total", **{"class": "4xx"}), status.get(404, 0))
        self.assertEqual(m.value("fanout_attempts_total", **{"class": "5xx"}), status.get(503, 0))
        self.assertEqual(m.value("fanout_attempts_total", **{"class": "failed"}), 0)
        self.assertEqual(m.value("fanout_outcomes_total", kind="delivered"), status.get(200, 0))
        self.assertEqual(m.value("fanout_outcomes_total", kind="rejected"), status.get(404, 0))
        exhausted = m.value("fanout_outcomes_total", kind="exhausted")
        self.assertEqual(status.get(200, 0) + status.get(404, 0) + exhausted, n)
        self.assertEqual(m.value("fanout_events_published_total"), n)
        self.assertEqual(sink.summary["duplicate_event_ids"], len(reqs) - n)
        d.stop()

    def test_delete_drops_accepted_events(self):
        """An event waiting for its retry when its subscription is deleted ends as dropped
        (README: DELETE — "events already accepted for it end as dropped")."""
        d = self.daemon(config="[retry]\nbase_ms = 1500\nfactor = 1\njitter = 0\n")
        sink = self.start_sink("503:1")
        cfg = self.subscribe(d, "lead_received", sink.url())
        self.publish_ok(d, event(ORG, "lead_received", "{}", "doomed"))
        wait_until(lambda: d.metric("fanout_waiting_retries") == 1, message="a waiting retry")
        self.assertStatus(d.http("DELETE", f"/v2/webhooks/{cfg['id']}", self.admin), 204)
        self.wait_outcomes(d, 1, "dropped")
        self.wait_idle(d)
        m = d.metrics()
        self.assertEqual(m.value("fanout_outcomes_total", kind="exhausted"), 0)
        self.assertEqual(m.value("fanout_outcomes_total", kind="delivered"), 0)
        sink.stop()
        reqs = sink.requests()
        self.assertGreaterEqual(len(reqs), 1)
        self.assertEqual(len(reqs), m.value("fanout_attempts_total", **{"class": "5xx"}))
        d.stop()


class AddressGuardTest(E2ECase):
    """The address guard with host names (contract: private and loopback addresses refused
    unless allowed): the name is resolved by fanoutd's own resolver (a DNS server of the test's
    own, `dns_servers`), and the delivery goes to the address that was checked."""

    def test_names_resolving_to_refused_addresses_are_rejected(self):
        sink = self.start_sink()
        dns = dns_server.DnsServer({"private.example": "10.1.2.3",
                                    "loop.example": "127.0.0.1"})
        self.addCleanup(dns.close)
        cfg = f'dns_servers = "{dns.address}"\n' + FAST_RETRY
        # No allow-list: loopback is refused too.
        d = self.daemon(config=cfg, args=())
        d.stop()
        strict = self.start_daemon(data=d.data, config=cfg, allow_subnets=())
        self.subscribe(strict, "business_created", f"http://private.example:{sink.port}/hook")
        self.subscribe(strict, "business_updated", f"http://loop.example:{sink.port}/hook")
        self.publish_ok(strict, event(ORG, "business_created", "{}", "to-private"),
                        event(ORG, "business_updated", "{}", "to-loop"))
        self.wait_outcomes(strict, 2, "rejected")
        self.assertEqual(sink.count(), 0, "nothing reached a refused address")
        self.assertIn(("private.example", 1), dns.queries)
        self.assertIn(("loop.example", 1), dns.queries)
        strict.stop()
        # 127.0.0.1/32 allowed: the name resolving there is delivered, to that address.
        ok = self.start_daemon(data=d.data, config=cfg)
        self.publish_ok(ok, event(ORG, "business_updated", "{}", "to-loop-allowed"),
                        event(ORG, "business_created", "{}", "to-private-again"))
        self.wait_outcomes(ok, 1, "delivered")
        self.wait_outcomes(ok, 1, "rejected")
        ok.stop()
        sink.stop()
        got = [q.header("x-partoo-event-id") for q in sink.requests()]
        self.assertEqual(got, ["to-loop-allowed"])
        self.assertEqual(sink.requests()[0]["authority"], f"loop.example:{sink.port}")

    def test_unknown_name_is_retried_until_exhausted(self):
        dns = dns_server.DnsServer({})
        self.addCleanup(dns.close)
        d = self.daemon(config=f'dns_servers = "{dns.address}"\n' + FAST_RETRY)
        self.subscribe(d, "business_created", "http://nowhere.example:8080/hook")
        self.publish_ok(d, event(ORG, "business_created", "{}", "nx"))
        self.wait_outcomes(d, 1, "exhausted")
        self.assertEqual(d.metric("fanout_attempts_total", **{"class": "failed"}), 3)
        d.stop()


class BusyTest(E2ECase):
    """max_in_flight: over it, ingest answers busy (503 + Retry-After)."""

    def test_busy_batch(self):
        """max_in_flight = 1 and a receiver that never answers: NDJSON of 3 events → 503 with
        Retry-After 1, items accepted, busy, busy; from the first busy line on everything is
        busy (invalid and unsubscribed lines included); a single event → 503 busy line 1."""
        d = self.daemon(config="max_in_flight = 1\n", args=["--drain-timeout-ms", "500"])
        sink = self.start_sink(args=["--blackhole"])
        self.subscribe(d, "business_created", sink.url())
        r = self.publish(d, event(ORG, "business_created", "{}", "b-1"),
                         event(ORG, "business_created", "{}", "b-2"),
                         event(ORG, "business_created", "{}", "b-3"))
        self.assertStatus(r, 503)
        self.assertEqual(r.headers.get("Retry-After"), "1")
        self.assertEqual(self.items(r), [{"status": "accepted", "line": 1, "id": "b-1"},
                                           {"status": "busy", "line": 2},
                                           {"status": "busy", "line": 3}])
        self.assertEqual(r.body["accepted"], 1)
        r = self.publish(d, event(ORG, "business_created", "{}", "b-4"))
        self.assertStatus(r, 503)
        self.assertEqual(r.headers.get("Retry-After"), "1")
        self.assertEqual(self.items(r), [{"status": "busy", "line": 1}])
        r = self.publish(d, "not json", event(ORG, "lead_received", "{}", "nosub-1"),
                         event(ORG, "business_created", "{}", "b-5"), "not json either",
                         event(ORG, "lead_received", "{}", "nosub-2"))
        self.assertStatus(r, 503)
        self.assertEqual(self.items(r), [
            {"status": "refused", "line": 1, "reason": "invalid_json"},
            {"status": "dropped", "line": 2, "id": "nosub-1", "reason": "no_subscription"},
            {"status": "busy", "line": 3}, {"status": "busy", "line": 4},
            {"status": "busy", "line": 5}])
        self.assertEqual(d.metric("fanout_in_flight"), 1)
        self.assertGreaterEqual(d.metric("fanout_events_refused_total", reason="busy"), 1)
        sink.wait_count(1)
        d.stop()


if __name__ == "__main__":
    harness.main()
