#!/usr/bin/env python3
"""fanoutd's delivery history (tools/fanoutd/README.md, "Delivery history";
tools/fanoutd/api_history.cc): GET /v2/webhooks/{id}/deliveries, who may see what, their rate
limit, and the answer without a journal. Deliveries go to fanout-sinks (`--plan`: a known
answer per event and attempt). Resend and recover: api_history_resend_test.py; what both
share: api_history_case.py.

Run: python3 api_history_test.py
         --fanoutd build/X/tools/fanoutd/fanoutd --sink build/X/tools/fanout-sink
         [unittest arguments, e.g. -k pagination]
"""

import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
import harness  # noqa: E402
from harness import FanoutdTestCase, SharedDaemonCase, apikey, closed_port  # noqa: E402
from api_case import CONFIG, item, next_url  # noqa: E402
from api_history_case import (DELIVERED, EXHAUSTED, LONG_AGO, MAX_ATTEMPTS,  # noqa: E402
                              PLAN_SPEC, REJECTED, SECOND_TIME, HistoryCase, event_id_for,
                              quote)


class DeliveryHistoryTest(HistoryCase):
    """GET /v2/webhooks/{id}/deliveries: outcomes, attempts, newest first, the outcome filter,
    pagination, query errors."""

    def test_outcomes_and_attempts(self):
        """A plan sink answers 200, 404, 503 always, and 503 then 200: delivered, rejected,
        exhausted after 3 attempts, delivered at attempt 2; each attempt with its status;
        newest first; the sink saw exactly those attempts."""
        org = self.new_org()
        key = self.admin_key(org)
        sink = self.start_sink(args=["--plan", PLAN_SPEC])
        wid = self.hook(key, sink.url("/plan"))
        ids = [event_id_for(p, f"o{org}") for p in (DELIVERED, REJECTED, EXHAUSTED,
                                                     SECOND_TIME)]
        self.publish(org, ids)
        items = self.wait_final(key, wid, 4)
        self.assertEqual([d["event_id"] for d in items], ids[::-1], "newest first")
        by_id = {d["event_id"]: d for d in items}
        expected = {ids[0]: ("delivered", [200]), ids[1]: ("rejected", [404]),
                    ids[2]: ("exhausted", [503] * MAX_ATTEMPTS),
                    ids[3]: ("delivered", [503, 200])}
        for eid, (outcome, statuses) in expected.items():
            with self.subTest(event_id=eid, outcome=outcome):
                d = by_id[eid]
                self.assertEqual(d["outcome"], outcome, d)
                self.assertEqual([a["status_code"] for a in d["attempts"]], statuses, d)
                self.assertEqual(d["attempts_made"], len(statuses), d)
                self.assertIs(d["resend"], False, d)
                self.assertEqual(d["event_type"], "business_created", d)
                ats = [a["at"] for a in d["attempts"]]
                self.assertEqual(ats, sorted(ats), "attempts in time order")
                self.assertGreaterEqual(d["finished_at"], ats[-1], d)
        sink.stop()
        seen = {}
        for q in sink.requests():
            seen.setdefault(q.header("x-partoo-event-id"), []).append(q.header("x-partoo-attempt"))
        self.assertEqual({eid: sorted(v) for eid, v in seen.items()},
                         {eid: [str(n) for n in range(1, len(st) + 1)]
                          for eid, (_, st) in expected.items()})

    def test_attempts_without_an_answer(self):
        """A closed port: exhausted, every attempt with status_code null and an error."""
        org = self.new_org()
        key = self.admin_key(org)
        wid = self.hook(key, f"http://127.0.0.1:{closed_port()}/hook")
        self.publish(org, [f"closed-{org}"])
        [d] = self.wait_final(key, wid, 1)
        self.assertEqual((d["outcome"], d["attempts_made"]), ("exhausted", MAX_ATTEMPTS), d)
        for a in d["attempts"]:
            self.assertIsNone(a["status_code"], a)
            self.assertIsInstance(a["error"], str, a)

    def test_pending_and_outcome_filter(self):
        """?outcome= keeps one outcome (count and max_page follow the filter); an attempt in
        flight at a sink that never answers is pending: no finished_at, no attempt yet."""
        org = self.new_org()
        key = self.admin_key(org)
        sink = self.start_sink(args=["--plan", PLAN_SPEC])
        hole = self.start_sink(args=["--blackhole"])
        wid = self.hook(key, sink.url())
        held = self.hook(key, hole.url(), "lead_received")
        ids = [event_id_for(p, f"f{org}") for p in (DELIVERED, DELIVERED, REJECTED, EXHAUSTED)]
        self.publish(org, ids)
        self.wait_final(key, wid, 4)
        waiting = f"held-{org}"
        self.publish(org, [waiting], "lead_received")
        hole.wait_count(1)
        for outcome, expected in (("delivered", [ids[1], ids[0]]), ("rejected", [ids[2]]),
                                  ("exhausted", [ids[3]]), ("dropped", []), ("pending", [])):
            with self.subTest(outcome=outcome):
                body = self.history(key, wid, f"?outcome={outcome}")
                self.assertEqual((body["page"], body["max_page"], body["count"]),
                                 (1, 1, len(expected)), body)
                self.assertEqual([d["event_id"] for d in body["items"]], expected)
                self.assertTrue(all(d["outcome"] == outcome for d in body["items"]), body)
        body = self.history(key, wid, "?outcome=delivered&per_page=1&page=2")
        self.assertEqual((body["page"], body["max_page"], body["count"]), (2, 2, 2), body)
        self.assertEqual([d["event_id"] for d in body["items"]], [ids[0]])
        self.assertEqual(self.history(key, wid)["count"], 4, "other webhooks' deliveries apart")

        body = self.history(key, held, "?outcome=pending")
        self.assertEqual(body["count"], 1, body)
        [d] = body["items"]
        self.assertEqual((d["event_id"], d["event_type"], d["outcome"]),
                         (waiting, "lead_received", "pending"), d)
        self.assertIsNone(d["finished_at"], d)
        self.assertEqual((d["attempts_made"], d["attempts"]), (0, []), d)
        self.assertEqual(self.history(key, held), body, "the same without the filter")
        for outcome in ("delivered", "rejected", "exhausted", "dropped"):
            self.assertEqual(self.history(key, held, f"?outcome={outcome}")["count"], 0)

    def test_pagination(self):
        """No delivery: page 1, max_page 1, count 0. 31 deliveries: 30 on the default page,
        per_page 7 gives 5 pages newest first, pages past the end are empty (200), the page
        and per_page errors are those of the list."""
        org = self.new_org()
        key = self.admin_key(org)
        empty = self.hook(key, next_url(), "lead_received")
        self.assertEqual(self.history(key, empty),
                         {"page": 1, "max_page": 1, "count": 0, "items": []})
        sink = self.start_sink("200:1")
        wid = self.hook(key, sink.url())
        ids = [f"page-{org}-{i:02d}" for i in range(31)]
        self.publish(org, ids)
        newest = ids[::-1]
        self.assertEqual([d["event_id"] for d in self.wait_final(key, wid, 31)], newest)
        body = self.history(key, wid)
        self.assertEqual((body["page"], body["max_page"], body["count"]), (1, 2, 31))
        self.assertEqual([d["event_id"] for d in body["items"]], newest[:30])
        self.assertEqual(self.history_ids(key, wid, "?page=2"), newest[30:])
        seen = []
        for page in range(1, 6):
            body = self.history(key, wid, f"?page={page}&per_page=7")
            self.assertEqual((body["page"], body["max_page"], body["count"]), (page, 5, 31))
            self.assertEqual(len(body["items"]), 7 if page < 5 else 3)
            seen += [d["event_id"] for d in body["items"]]
        self.assertEqual(seen, newest)
        self.assertEqual(self.history(key, wid, "?page=6&per_page=7"),
                         {"page": 6, "max_page": 5, "count": 31, "items": []})
        for per_page, max_page in ((31, 1), (30, 2), (100, 1), (1, 31)):
            body = self.history(key, wid, f"?per_page={per_page}")
            self.assertEqual((body["max_page"], len(body["items"])),
                             (max_page, min(per_page, 31)), f"per_page={per_page}")
        body = self.history(key, wid, "?per_page=100&page=999999999999999999")
        self.assertEqual((body["count"], body["items"]), (31, []))
        self.assertEqual(self.history_ids(key, wid, f"?per_page=1&page=31&org_id={org}"),
                         [ids[0]])
        for bad in ["101", "0", "-1", "abc", "", "1.5", "99999999999999999999"]:
            with self.subTest(per_page=bad):
                self.assertFieldError(self.deliveries(key, wid, f"?per_page={bad}"), "per_page")
        for bad in ["0", "-1", "abc", "", "1.5"]:
            with self.subTest(page=bad):
                self.assertFieldError(self.deliveries(key, wid, f"?page={bad}"), "page")

    def test_bad_outcome_and_unknown_query_parameters(self):
        """outcome outside the five words is 400 naming outcome; each route's own parameters
        only (others are "Unknown field."); a parameter given twice is 400."""
        key = self.admin_key(self.new_org())
        wid = self.hook(key, next_url())
        for bad in ["DELIVERED", "", "success", "pending,delivered", "failed", "all", "delivered "]:
            with self.subTest(outcome=bad):
                self.assertFieldError(self.deliveries(key, wid, f"?outcome={quote(bad)}"),
                                      "outcome")
        since = f"since={quote(LONG_AGO)}"
        unknown = [("GET", f"/v2/webhooks/{wid}/deliveries?foo=1", "foo"),
                   ("GET", f"/v2/webhooks/{wid}/deliveries?{since}", "since"),
                   ("POST", f"/v2/webhooks/{wid}/deliveries/e1/resend?page=1", "page"),
                   ("POST", f"/v2/webhooks/{wid}/deliveries/e1/resend?outcome=delivered",
                    "outcome"),
                   ("POST", f"/v2/webhooks/{wid}/recover?{since}&outcome=exhausted", "outcome"),
                   ("POST", f"/v2/webhooks/{wid}/recover?{since}&per_page=5", "per_page"),
                   ("GET", f"/v2/webhooks/{wid}?outcome=delivered", "outcome")]
        for method, path, name in unknown:
            with self.subTest(method=method, path=path):
                self.assertEqual(self.assertFieldError(self.call(method, path, key), name),
                                 "Unknown field.")
        twice = [("GET", f"/v2/webhooks/{wid}/deliveries?outcome=delivered&outcome=rejected",
                  "outcome"),
                 ("GET", f"/v2/webhooks/{wid}/deliveries?page=1&page=2", "page"),
                 ("POST", f"/v2/webhooks/{wid}/recover?{since}&{since}", "since")]
        for method, path, name in twice:
            with self.subTest(method=method, path=path):
                self.assertFieldError(self.call(method, path, key), name)



class HistoryAccessTest(HistoryCase):
    """The history routes follow the other webhook routes' authentication, roles,
    organisation rules, methods and paths."""

    def paths(self, wid):
        return [("GET", f"/v2/webhooks/{wid}/deliveries", ""),
                ("POST", f"/v2/webhooks/{wid}/deliveries/e1/resend", ""),
                ("POST", f"/v2/webhooks/{wid}/recover", f"since={quote(LONG_AGO)}")]

    def test_roles_and_organisations(self):
        """No key or a bad key: 401; INGEST: 403; another organisation's webhook: 404 (ORG_ADMIN
        of that other organisation, PROVIDER acting for another granted one); PROVIDER without
        org_id: 400; an organisation not granted: 403; unknown or deleted webhook: 404. The
        owner and a PROVIDER with org_id get the answers."""
        org, other = self.new_org(), self.new_org()
        admin, stranger = self.admin_key(org), self.admin_key(other)
        provider = apikey(self.data, "PROVIDER", orgs=[org, other])
        outsider = apikey(self.data, "PROVIDER", orgs=[other])
        wid = self.hook(admin, next_url())
        gone = self.hook(admin, next_url(), "lead_received")
        self.assertStatus(self.call("DELETE", f"/v2/webhooks/{gone}", admin), 204)

        def q(own, extra=""):
            parts = [p for p in (own, extra) if p]
            return "?" + "&".join(parts) if parts else ""

        for method, path, own in self.paths(wid):
            with self.subTest(method=method, path=path):
                self.assertError(self.call(method, path + q(own), None), 401)
                self.assertError(self.call(method, path + q(own), "fo_" + "D" * 43), 401)
                self.assertError(self.call(method, path + q(own), self.ingest), 403)
                self.assertError(self.call(method, path + q(own, f"org_id={org}"),
                                           self.ingest), 403)
                self.assertError(self.call(method, path + q(own), stranger), 404)
                self.assertError(self.call(method, path + q(own, f"org_id={other}"), provider),
                                 404)
                self.assertFieldError(self.call(method, path + q(own), provider), "org_id")
                self.assertError(self.call(method, path + q(own, f"org_id={org}"), outsider),
                                 403)
                self.assertError(self.call(method, path + q(own, f"org_id={other}"), admin),
                                 403)
        for key, extra in ((admin, ""), (admin, f"org_id={org}"), (provider, f"org_id={org}")):
            with self.subTest(key=key[:8], extra=extra):
                body = self.history(key, wid, q("", extra))
                self.assertEqual(body, {"page": 1, "max_page": 1, "count": 0, "items": []})
                self.assertError(self.call("POST", f"/v2/webhooks/{wid}/deliveries/e1/resend"
                                           + q("", extra), key), 404, "no such delivery")
                r = self.call("POST", f"/v2/webhooks/{wid}/recover"
                              + q(f"since={quote(LONG_AGO)}", extra), key)
                self.assertStatus(r, 202)
                self.assertEqual(r.body, {"recovered": 0, "busy": 0})
        for missing in (gone, 987654321):
            for method, path, own in self.paths(missing):
                with self.subTest(method=method, path=path):
                    self.assertError(self.call(method, path + q(own), admin), 404)

    def test_methods_and_paths(self):
        """Other methods: 405 with Allow (before authentication); malformed paths below a
        webhook: 404; requests are counted by route pattern in /metrics."""
        key = self.admin_key(self.new_org())
        wid = self.hook(key, next_url())
        base = f"/v2/webhooks/{wid}"
        cases = [("POST", f"{base}/deliveries", {"GET"}),
                 ("DELETE", f"{base}/deliveries", {"GET"}),
                 ("PUT", f"{base}/deliveries", {"GET"}),
                 ("GET", f"{base}/deliveries/e1/resend", {"POST"}),
                 ("DELETE", f"{base}/deliveries/e1/resend", {"POST"}),
                 ("GET", f"{base}/recover", {"POST"}),
                 ("PATCH", f"{base}/recover", {"POST"})]
        self.assert405WithAllow(key, cases, exact=True)
        for method, path in [("GET", f"{base}/deliveries/"), ("GET", f"{base}/deliveries/e1"),
                             ("POST", f"{base}/deliveries/e1"),
                             ("POST", f"{base}/deliveries//resend"),
                             ("POST", f"{base}/deliveries/e1/resend/"),
                             ("POST", f"{base}/deliveries/resend"),
                             ("POST", f"{base}/recover/x"), ("GET", f"{base}/history"),
                             ("GET", "/v2/webhooks/abc/deliveries"),
                             ("GET", "/v2/webhooks/0/deliveries"),
                             ("POST", "/v2/webhooks/-1/recover?since=2000-01-01"),
                             ("POST", "/v2/webhooks/1.0/deliveries/e1/resend")]:
            with self.subTest(method=method, path=path):
                self.assertError(self.call(method, path, key), 404)
        self.assertStatus(self.deliveries(key, wid), 200)
        self.assertError(self.resend(key, wid, "e1"), 404)
        self.assertStatus(self.recover(key, wid), 202)
        m = self.daemon.metrics()
        for method, route, status in (("GET", "/v2/webhooks/{id}/deliveries", "200"),
                                      ("POST", "/v2/webhooks/{id}/deliveries/{event_id}/resend",
                                       "404"),
                                      ("POST", "/v2/webhooks/{id}/recover", "202")):
            self.assertGreaterEqual(m.value("fanout_api_requests_total", method=method,
                                            route=route, status=status), 1, route)
        for labels, _ in m.samples("fanout_api_requests_total"):
            self.assertNotRegex(labels.get("route", ""), r"/\d+|e1", labels)


class HistoryRateLimitTest(FanoutdTestCase):
    """The history routes take from the organisation's rate limit bucket like the others."""

    def test_history_routes_are_rate_limited(self):
        """rate_limit_per_minute = 3: create, history and recover pass, then every history
        route is 429 with Retry-After; another organisation is unaffected."""
        d = self.start_daemon(config="[api]\nrate_limit_per_minute = 3\n")
        org, other = 811, 812
        admin = apikey(d.data, "ORG_ADMIN", org=org)
        r = d.http("POST", "/v2/webhooks", admin,
                   {"items": [{"url": "https://127.0.0.1/h", "event_type": "lead_received"}]})
        self.assertStatus(r, 200)
        wid = r.body["items"][0]["id"]
        since = f"?since={quote(LONG_AGO)}"
        self.assertStatus(d.http("GET", f"/v2/webhooks/{wid}/deliveries", admin), 200)
        self.assertStatus(d.http("POST", f"/v2/webhooks/{wid}/recover{since}", admin), 202)
        for method, path in (("POST", f"/v2/webhooks/{wid}/deliveries/e1/resend"),
                             ("GET", f"/v2/webhooks/{wid}/deliveries"),
                             ("POST", f"/v2/webhooks/{wid}/recover{since}")):
            with self.subTest(method=method, path=path):
                self.assertError(d.http(method, path, admin), 429)
        self.assertStatus(d.http("GET", "/v2/webhooks", apikey(d.data, "ORG_ADMIN", org=other)),
                          200)
        d.stop()


class NoDurableHistoryTest(SharedDaemonCase):
    """fanoutd --no-durable keeps no journal: the history routes answer 501 (after the usual
    checks: a webhook the caller cannot see is still 404)."""

    config = CONFIG
    daemon_args = ("--no-durable",)

    def test_history_routes_answer_501(self):
        org = self.new_org()
        key = self.admin_key(org)
        stranger = self.admin_key(self.new_org())
        r = self.daemon.http("POST", "/v2/webhooks", key, {"items": [item()]})
        self.assertStatus(r, 200)
        wid = r.body["items"][0]["id"]
        since = f"since={quote(LONG_AGO)}"
        for method, path in (("GET", f"/v2/webhooks/{wid}/deliveries"),
                             ("GET", f"/v2/webhooks/{wid}/deliveries?outcome=pending&page=2"),
                             ("POST", f"/v2/webhooks/{wid}/deliveries/e1/resend"),
                             ("POST", f"/v2/webhooks/{wid}/recover?{since}")):
            with self.subTest(method=method, path=path):
                r = self.daemon.http(method, path, key)
                self.assertError(r, 501)
                self.assertIn("--no-durable", r.body["error"]["json"])
                self.assertError(self.daemon.http(method, path, stranger), 404)
                self.assertError(self.daemon.http(method, path.replace(f"/{wid}/", "/987654321/"),
                                                  key), 404)
        self.assertFieldError(self.daemon.http("GET", f"/v2/webhooks/{wid}/deliveries?outcome=x",
                                               key), "outcome")
        self.assertFieldError(self.daemon.http("POST", f"/v2/webhooks/{wid}/recover", key),
                              "since")
        self.assertError(self.daemon.http("GET", f"/v2/webhooks/{wid}/recover", key), 405)
        self.assertStatus(self.daemon.http("GET", "/healthz"), 200)


if __name__ == "__main__":
    harness.main()
