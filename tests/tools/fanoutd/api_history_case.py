"""What the delivery history's tests share (api_history_test.py, api_history_resend_test.py):
fast retries, the documented shapes of a delivery and an attempt, fanout-sink's answer plans
and event ids that get a chosen plan, and HistoryCase: a shared (durable) daemon with helpers
for the history routes."""

import itertools
import json
import sys
import urllib.parse

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
from harness import TIMESTAMP_RE, apikey, wait_until  # noqa: E402
from api_case import CONFIG, ApiCase, item  # noqa: E402

# ------------------------------------------------------------------------------------------
# Delivery history (tools/fanoutd/api_history.cc): GET /v2/webhooks/{id}/deliveries,
# POST /v2/webhooks/{id}/deliveries/{event_id}/resend, POST /v2/webhooks/{id}/recover.

# Retries after 20 ms then 40 ms: a delivery that always fails is exhausted after 3 attempts
# within ~60 ms, so the tests see final outcomes quickly.
FAST_RETRY = "[retry]\nbase_ms = 20\nfactor = 2\njitter = 0\nmax_retries = 2\n"
MAX_ATTEMPTS = 3

DELIVERY_KEYS = {"event_id", "event_type", "created_at", "outcome", "finished_at",
                 "next_attempt_at", "attempts_made", "resend", "attempts"}
ATTEMPT_KEYS = {"attempt", "at", "status_code", "error", "duration_ms"}
OUTCOMES = ("delivered", "rejected", "exhausted", "dropped", "pending")
LONG_AGO = "2000-01-01T00:00:00Z"

# fanout-sink --plan PLAN_SPEC: the plan of an event is FNV-1a 64 of its id modulo the number
# of plans; step k answers attempt k, the last step repeats (tools/README.md, "Plans").
PLANS = ["200", "404", "503", "503,200"]
DELIVERED, REJECTED, EXHAUSTED, SECOND_TIME = range(len(PLANS))
PLAN_SPEC = ";".join(PLANS)


def plan_index(event_id, n_plans=len(PLANS)):
    h = 0xcbf29ce484222325
    for b in event_id.encode():
        h = ((h ^ b) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return h % n_plans


_event_numbers = itertools.count(1)


def event_id_for(plan, prefix):
    """A new event id that fanout-sink --plan PLAN_SPEC answers with PLANS[plan]."""
    while True:
        eid = f"{prefix}-{next(_event_numbers)}"
        if plan_index(eid) == plan:
            return eid


def quote(text):
    return urllib.parse.quote(text, safe="")


class HistoryCase(ApiCase):
    """A shared (durable) daemon with fast retries, an INGEST key, and helpers for the
    delivery history routes."""

    config = CONFIG + FAST_RETRY

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.ingest = apikey(cls.data, "INGEST")

    def hook(self, key, url, event_type="business_created", query=""):
        """Creates one webhook; returns its id."""
        return self.create_ok(key, [item(event_type, url)], query)[0]["id"]

    def publish(self, org, ids, event_type="business_created"):
        """The events (one per id, in order, one NDJSON request), all accepted."""
        lines = [json.dumps({"id": eid, "org_id": org, "type": event_type,
                             "payload": {"n": n}}, separators=(",", ":"))
                 for n, eid in enumerate(ids)]
        r = self.call("POST", "/v2/events", self.ingest, "\n".join(lines) + "\n",
                      content_type="application/x-ndjson")
        self.assertStatus(r, 202, "ingest")
        self.assertEqual((r.body["accepted"], r.body["duplicate"]), (len(ids), 0), r.body)
        return r.body

    def deliveries(self, key, wid, query=""):
        return self.call("GET", f"/v2/webhooks/{wid}/deliveries{query}", key)

    def resend(self, key, wid, event_id, query=""):
        return self.call("POST", f"/v2/webhooks/{wid}/deliveries/{quote(event_id)}/resend"
                         f"{query}", key)

    def recover(self, key, wid, since=LONG_AGO, query=""):
        q = [f"since={quote(since)}"] if since is not None else []
        q += [query] if query else []
        return self.call("POST", f"/v2/webhooks/{wid}/recover" + ("?" + "&".join(q) if q
                                                                   else ""), key)

    def recovered(self, key, wid, since=LONG_AGO):
        """recover → 202 {"recovered":N,"busy":0}; returns N."""
        r = self.recover(key, wid, since)
        self.assertStatus(r, 202, "recover")
        self.assertEqual(set(r.body), {"recovered", "busy"}, r.body)
        self.assertEqual(r.body["busy"], 0, r.body)
        return r.body["recovered"]

    def history(self, key, wid, query=""):
        """The page (200 asserted), each delivery checked for the documented shape."""
        r = self.deliveries(key, wid, query)
        self.assertStatus(r, 200, f"deliveries{query}")
        self.assertTrue(r.headers.get("Content-Type", "").startswith("application/json"))
        self.assertEqual(set(r.body), {"page", "max_page", "count", "items"}, r.body)
        for d in r.body["items"]:
            self.assertDeliveryShape(d)
        return r.body

    def history_ids(self, key, wid, query=""):
        return [d["event_id"] for d in self.history(key, wid, query)["items"]]

    def wait_final(self, key, wid, n):
        """Waits until the webhook has n deliveries, none pending; returns them, newest
        first."""
        seen = {}

        def final():
            seen["body"] = body = self.history(key, wid, "?per_page=100")
            if body["count"] == n and all(d["outcome"] != "pending" for d in body["items"]):
                return body["items"]
            return None

        return wait_until(final, message=lambda: f"{n} final deliveries of webhook {wid}, "
                                                 f"have {json.dumps(seen.get('body'))[:3000]}")

    def assertDeliveryShape(self, d):
        self.assertEqual(set(d), DELIVERY_KEYS, d)
        self.assertIsInstance(d["event_id"], str)
        self.assertIsInstance(d["event_type"], str)
        self.assertIn(d["outcome"], OUTCOMES, d)
        self.assertRegex(d["created_at"], TIMESTAMP_RE, d)
        self.assertIsInstance(d["resend"], bool, d)
        self.assertIs(type(d["attempts_made"]), int, d)
        if d["outcome"] == "pending":
            self.assertIsNone(d["finished_at"], d)
            if d["next_attempt_at"] is not None:
                self.assertRegex(d["next_attempt_at"], TIMESTAMP_RE, d)
        else:
            self.assertRegex(d["finished_at"], TIMESTAMP_RE, d)
            self.assertGreaterEqual(d["finished_at"], d["created_at"], d)
            self.assertIsNone(d["next_attempt_at"], "a final delivery has no next attempt")
        self.assertIsInstance(d["attempts"], list, d)
        self.assertEqual(d["attempts_made"], len(d["attempts"]), d)
        self.assertEqual([a["attempt"] for a in d["attempts"]],
                         list(range(1, len(d["attempts"]) + 1)), d)
        for a in d["attempts"]:
            self.assertEqual(set(a), ATTEMPT_KEYS, a)
            self.assertRegex(a["at"], TIMESTAMP_RE, a)
            self.assertGreaterEqual(a["at"], d["created_at"], d)
            self.assertIs(type(a["duration_ms"]), int, a)
            self.assertGreaterEqual(a["duration_ms"], 0, a)
            # an HTTP status, or the reason there was none: exactly one of the two
            if a["status_code"] is None:
                self.assertIsInstance(a["error"], str, a)
                self.assertTrue(a["error"], a)
            else:
                self.assertIs(type(a["status_code"]), int, a)
                self.assertIsNone(a["error"], a)
