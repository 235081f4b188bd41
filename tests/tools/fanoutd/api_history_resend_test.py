#!/usr/bin/env python3
"""fanoutd's delivery history, sending again (tools/fanoutd/README.md, "Delivery history";
tools/fanoutd/api_history.cc): POST /v2/webhooks/{id}/deliveries/{event_id}/resend and
POST /v2/webhooks/{id}/recover?since=, against fanout-sinks (`--plan`: a known answer per event
and attempt). The history itself: api_history_test.py; what both share: api_history_case.py.

Run: python3 api_history_resend_test.py
         --fanoutd build/X/tools/fanoutd/fanoutd --sink build/X/tools/fanout-sink
         [unittest arguments, e.g. -k recover]
"""

import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
import harness  # noqa: E402
from api_case import next_url  # noqa: E402
from api_history_case import (DELIVERED, EXHAUSTED, PLAN_SPEC, REJECTED,  # noqa: E402
                              HistoryCase, event_id_for)


class ResendRecoverTest(HistoryCase):
    """POST .../deliveries/{event_id}/resend and POST /v2/webhooks/{id}/recover."""

    def test_resend(self):
        """A rejected delivery, the URL changed, resend: 202 {"resent":1,"event_id":...}; a new
        delivery of the same body and event id, X-Partoo-Attempt 1 again, with its own outcome
        (delivered), newest first with "resend": true; resending again makes a third; an id
        needing percent-encoding works; an unknown event or another webhook's is 404."""
        org = self.new_org()
        key = self.admin_key(org)
        refusing, good = self.start_sink("404:1"), self.start_sink("200:1")
        wid = self.hook(key, refusing.url("/refusing"))
        other = self.hook(key, good.url("/other"), "lead_received")
        eid = f"odd/{org}#1?x+y%&"  # printable ASCII, no space
        self.publish(org, [eid])
        [first] = self.wait_final(key, wid, 1)
        self.assertEqual((first["outcome"], first["resend"]), ("rejected", False), first)
        self.assertStatus(self.call("PATCH", f"/v2/webhooks/{wid}", key,
                                    {"url": good.url("/good")}), 200)

        r = self.resend(key, wid, eid)
        self.assertStatus(r, 202, "resend")
        self.assertTrue(r.headers.get("Content-Type", "").startswith("application/json"))
        self.assertEqual(r.body, {"resent": 1, "event_id": eid})
        newer, older = self.wait_final(key, wid, 2)
        self.assertEqual(older, first, "the first delivery is unchanged")
        self.assertEqual((newer["event_id"], newer["outcome"], newer["resend"]),
                         (eid, "delivered", True), newer)
        self.assertEqual([(a["attempt"], a["status_code"]) for a in newer["attempts"]],
                         [(1, 200)], newer)
        self.assertGreaterEqual(newer["created_at"], first["finished_at"])

        self.assertEqual(self.resend(key, wid, eid).body, {"resent": 1, "event_id": eid},
                         "a delivered one may be sent again too")
        items = self.wait_final(key, wid, 3)
        self.assertEqual([(d["outcome"], d["resend"]) for d in items],
                         [("delivered", True), ("delivered", True), ("rejected", False)])

        for missing in (f"never-{org}", eid + "x", eid.upper()):
            with self.subTest(event_id=missing):
                self.assertError(self.resend(key, wid, missing), 404)
        self.assertError(self.resend(key, other, eid), 404, "the event went to another webhook")
        self.assertEqual(self.history(key, other)["count"], 0)

        refusing.stop()
        good.stop()
        [original] = refusing.requests()
        again = good.requests()
        self.assertEqual(len(again), 2, [q.header("x-partoo-event-id") for q in again])
        for q in again:
            self.assertEqual(q["path"], "/good")
            self.assertEqual(q.header("x-partoo-event-id"), eid)
            self.assertEqual(q.header("x-partoo-attempt"), "1")
            self.assertEqual(q.body, original.body)
            self.assertEqual(q.body, b'{"type":"business_created","payload":{"n":0}}')
            self.assertEqual(q.header("x-partoo-signature-v1"),
                             original.header("x-partoo-signature-v1"))

    def test_recover(self):
        """recover?since= resends the exhausted deliveries created at or after `since` (not
        the delivered or rejected ones), each once: a second recover resends nothing new; the
        new deliveries are resends with outcomes of their own."""
        org = self.new_org()
        key = self.admin_key(org)
        plan, good = self.start_sink(args=["--plan", PLAN_SPEC]), self.start_sink("200:1")
        wid = self.hook(key, plan.url())
        x1, x2 = (event_id_for(EXHAUSTED, f"r{org}") for _ in range(2))
        kept = [event_id_for(DELIVERED, f"r{org}"), event_id_for(REJECTED, f"r{org}")]
        self.publish(org, [x1, kept[0], x2, kept[1]])
        self.wait_final(key, wid, 4)
        x3 = event_id_for(EXHAUSTED, f"r{org}")
        self.publish(org, [x3])
        items = self.wait_final(key, wid, 5)
        self.assertEqual(items[0]["event_id"], x3)
        since = items[0]["created_at"]
        self.assertTrue(all(d["created_at"] < since for d in items[1:]),
                        "the first batch was final before the second was published")

        self.assertStatus(self.call("PATCH", f"/v2/webhooks/{wid}", key,
                                    {"url": good.url("/good")}), 200)
        self.assertEqual(self.recovered(key, wid, "2999-01-01T00:00:00Z"), 0, "since: future")
        self.assertEqual(self.recovered(key, wid, since), 1, "x3 only: created at `since`")
        self.assertEqual(self.recovered(key, wid), 2, "x1 and x2: x3 was recovered already")
        self.assertEqual(self.recovered(key, wid), 0, "nothing new")
        items = self.wait_final(key, wid, 8)
        resent = [d for d in items if d["resend"]]
        self.assertEqual(sorted(d["event_id"] for d in resent), sorted([x1, x2, x3]))
        for d in resent:
            self.assertEqual((d["outcome"], d["attempts_made"]), ("delivered", 1), d)
        self.assertEqual([(d["event_id"], d["resend"]) for d in items[:3]],
                         [(x2, True), (x1, True), (x3, True)],
                         "newest first: x3 was resent first, then x1 and x2 in their order")
        self.assertEqual(self.recovered(key, wid), 0, "the resends were delivered")
        self.assertEqual(self.history(key, wid, "?outcome=exhausted")["count"], 3,
                         "the originals stay exhausted")
        good.stop()
        reqs = good.requests()
        self.assertEqual(sorted(q.header("x-partoo-event-id") for q in reqs), sorted([x1, x2, x3]))
        self.assertEqual({q.header("x-partoo-attempt") for q in reqs}, {"1"})

    def test_recover_since(self):
        """since: an ISO 8601 time with Z or an offset, fractional seconds, or a date alone;
        missing, empty or anything else is 400 naming since."""
        key = self.admin_key(self.new_org())
        wid = self.hook(key, next_url())
        for good in ["2000-01-01", "2000-01-01T00:00:00.5Z", "2000-01-01T01:00:00+01:00",
                     "2000-01-01T00:00:00-05:30", "2000-01-01t00:00:00z",
                     "2024-11-27T16:10:44.123456Z"]:
            with self.subTest(since=good):
                self.assertEqual(self.recovered(key, wid, good), 0)
        msg = self.assertFieldError(self.recover(key, wid, None), "since")
        self.assertIn("required", msg)
        for bad in ["", "yesterday", "1700000000", "2024-13-01T00:00:00Z",
                    "2024-01-01T24:00:00Z", "2024-01-01T00:00:00", "2024-01-01T00:00Z",
                    "2024-01-01T00:00:00+0100", "2024-1-01", "2024-01-01T00:00:00.Z",
                    "2024-01-01T00:00:00Zjunk"]:
            with self.subTest(since=bad):
                self.assertFieldError(self.recover(key, wid, bad), "since")


if __name__ == "__main__":
    harness.main()
