#!/usr/bin/env python3
"""fanoutd end to end: webhooks made through the API, events through /v2/events and
`fanoutd publish`, deliveries checked at a real fanout-sink (headers, exact body, signature),
retries, busy answers and metrics (tools/fanoutd/README.md, docs/webhook-contract.md §3–4).

Run: python3 e2e_test.py --fanoutd build/X/tools/fanoutd/fanoutd --sink build/X/tools/fanout-sink
"""

import collections
import json
import os
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
import dns_server  # noqa: E402
import harness  # noqa: E402
from harness import FanoutdTestCase, apikey, public_key_pem, verify_signature, wait_until

ORG = 42
# Retries in milliseconds, so that a test sees them all.
FAST_RETRY = "[retry]\nbase_ms = 50\nfactor = 1\njitter = 0\nmax_retries = 2\n"

# Payloads with odd spacing, escapes, raw UTF-8 and a big integer: they must arrive byte for
# byte (docs/webhook-contract.md §3: "payload copied byte for byte").
PAYLOADS = [
    '{ "name" : "Caf\\u00e9 \\"Le Nord\\"",  "rating":4.50 ,"tags":[ "a" , "b" ] }',
    '{"big":123456789012345678901234567890,"nested":{"z":null,"t":true,"e":1e-7}}',
    '{"text":"r\u00e9sum\u00e9 \u2713 \U0001F600","empty":{},"list":[]}',
    '{}',
    '{"dup":1,"dup":2}',
]


def event(org, event_type, payload, event_id=None):
    """An event envelope as text; `payload` is raw JSON text kept exactly."""
    parts = []
    if event_id is not None:
        parts.append(f'"id":{json.dumps(event_id)}')
    parts += [f'"org_id":{org}', f'"type":{json.dumps(event_type)}', f'"payload":{payload}']
    return "{" + ", ".join(parts) + "}"


# The fields README "Ingest" documents for each item status, and for the whole answer.
ITEM_FIELDS = {"accepted": {"status", "line", "id"}, "duplicate": {"status", "line", "id"},
               "dropped": {"status", "line", "id", "reason"},
               "refused": {"status", "line", "reason"}, "busy": {"status", "line"}}
ANSWER_FIELDS = {"accepted", "dropped", "refused", "busy", "duplicate", "items"}


def documented(answer):
    """The ingest answer reduced to its documented fields (extra fields are checked apart, in
    test_ingest_answer_has_exactly_the_documented_fields, so that they do not hide the rest)."""
    out = {k: answer[k] for k in ANSWER_FIELDS if k in answer}
    out["items"] = [{k: v for k, v in item.items() if k in ITEM_FIELDS.get(item.get("status"),
                                                                             item)}
                    for item in answer.get("items", [])]
    return out


def delivery_body(event_type, payload):
    """What the receiver must get: {"type":T,"payload":P}, P's bytes as sent."""
    return b'{"type":"' + event_type.encode() + b'","payload":' + payload.encode() + b"}"


class E2ECase(FanoutdTestCase):
    """A daemon of its own per test, an ORG_ADMIN key for ORG and an INGEST key."""

    def daemon(self, config=None, args=()):
        d = self.start_daemon(config=config, args=args)
        self.admin = apikey(d.data, "ORG_ADMIN", org=ORG)
        self.ingest_key = apikey(d.data, "INGEST")
        return d

    def subscribe(self, d, event_type, url, headers=None):
        item = {"url": url, "event_type": event_type}
        if headers is not None:
            item["custom_headers"] = headers
        r = d.http("POST", "/v2/webhooks", self.admin, {"items": [item]})
        self.assertStatus(r, 200, "create")
        return r.body["items"][0]

    def publish(self, d, *lines, ndjson=None):
        """POST /v2/events: one event as application/json, several as NDJSON."""
        if ndjson is None:
            ndjson = len(lines) != 1
        body = "\n".join(lines) + "\n" if ndjson else lines[0]
        ctype = "application/x-ndjson" if ndjson else "application/json"
        return d.http("POST", "/v2/events", self.ingest_key, body, content_type=ctype)

    def publish_ok(self, d, *lines, ndjson=None):
        """Publishes and asserts 202; returns the accepted ids in order."""
        r = self.publish(d, *lines, ndjson=ndjson)
        self.assertStatus(r, 202)
        return [i["id"] for i in r.body["items"] if i["status"] == "accepted"]

    def items(self, r):
        """The documented fields of the items of an ingest answer."""
        return documented(r.body)["items"]

    def outcomes(self, d):
        m = d.metrics()
        return {k: int(m.value("fanout_outcomes_total", kind=k))
                for k in ("delivered", "rejected", "exhausted", "dropped")}

    def wait_outcomes(self, d, total, kind=None):
        """Waits until `total` final outcomes (of `kind`, or of every kind) were counted."""
        def reached():
            o = self.outcomes(d)
            return (o[kind] if kind else sum(o.values())) >= total

        wait_until(reached, message=lambda: f"{total} outcomes {kind or ''}: {self.outcomes(d)}")

    def wait_idle(self, d):
        """Waits until no accepted delivery is without its final outcome."""
        wait_until(lambda: d.metric("fanout_in_flight") == 0,
                   message=lambda: f"fanout_in_flight == 0 (is {d.metric('fanout_in_flight')})")

    def assertDelivery(self, req, event_type, payload, event_id, pem, attempt="1",
                       path="/hook", headers=None):
        """One recorded request is the delivery of this event, headers and signature included."""
        self.assertEqual(req["method"], "POST")
        self.assertEqual(req["path"], path)
        self.assertEqual(req.header("content-type", "").split(";")[0].strip(),
                         "application/json")
        for name, value in (headers or {}).items():
            self.assertEqual(req.header_values(name), [value], f"custom header {name}")
        self.assertEqual(req.header("x-partoo-event-id"), event_id)
        self.assertEqual(req.header("x-partoo-attempt"), attempt)
        self.assertTrue(req.header("user-agent", "").startswith("fanout/"), req["headers"])
        self.assertIsNone(req.header("x-partoo-webhook-tryout"), "not a tryout")
        self.assertEqual(req.body, delivery_body(event_type, payload))
        signature = req.header("x-partoo-signature-v1")
        self.assertTrue(signature, "signed")
        ok, out = verify_signature(pem, req.body, signature, self.tmp)
        self.assertTrue(ok, f"signature does not verify: {out}")


class DeliveryTest(E2ECase):

    def test_ingest_and_delivery(self):
        """One event (application/json) and NDJSON with invalid, unknown-type, unsubscribed
        and blank lines: 202 with per-item statuses in order; each accepted event reaches the
        sink once with the custom headers, its id, attempt 1, fanout's user agent, the exact
        body and a signature that verifies with `fanoutd keys public`; metrics agree."""
        d = self.daemon()
        sink = self.start_sink()
        headers = {"X-Token": "s3cr3t", "X-Tenant": "acme"}
        self.subscribe(d, "business_updated", sink.url("/hooks/a?x=1"), headers)
        self.subscribe(d, "message_created", sink.url("/hooks/m"))
        pem = public_key_pem(d.data)
        self.assertTrue(pem.startswith("-----BEGIN PUBLIC KEY-----"), pem)

        r = self.publish(d, event(ORG, "business_updated", PAYLOADS[0], "e2e-1"))
        self.assertStatus(r, 202)
        self.assertEqual(documented(r.body), {"accepted": 1, "dropped": 0, "refused": 0, "busy": 0,
                                              "duplicate": 0, "items": [{"status": "accepted", "line": 1, "id": "e2e-1"}]})

        lines = [
            event(ORG, "business_updated", PAYLOADS[1], "e2e-2"),         # 1 accepted
            event(ORG, "message_created", PAYLOADS[2]),                   # 2 accepted, new id
            "",                                                           # 3 blank: skipped
            '{"org_id": 42, "type": "business_updated", "payload": {',    # 4 invalid_json
            event(ORG, "business_exploded", "{}", "e2e-x"),               # 5 unknown_type
            event(ORG, "lead_received", '{"x":1}', "e2e-nosub"),          # 6 no subscription
            '{"type": "business_updated", "payload": {}}',                # 7 missing_org_id
            event(ORG, "business_updated", PAYLOADS[4], "e2e-3"),         # 8 accepted
        ]
        r = self.publish(d, *lines)
        self.assertStatus(r, 202)
        items = self.items(r)
        self.assertEqual({k: r.body[k] for k in ("accepted", "dropped", "refused")},
                         {"accepted": 3, "dropped": 1, "refused": 3}, r.body)
        self.assertEqual(len(items), 7, "one item per non-blank line")
        self.assertEqual(items[0], {"status": "accepted", "line": 1, "id": "e2e-2"})
        self.assertEqual((items[1]["status"], items[1]["line"]), ("accepted", 2))
        generated = items[1]["id"]
        self.assertIsInstance(generated, str)
        self.assertRegex(generated, r"^[\x21-\x7e]{1,128}$")
        self.assertEqual(items[2], {"status": "refused", "line": 4, "reason": "invalid_json"})
        self.assertEqual(items[3], {"status": "refused", "line": 5, "reason": "unknown_type"})
        self.assertEqual(items[4], {"status": "dropped", "line": 6, "id": "e2e-nosub",
                                    "reason": "no_subscription"})
        self.assertEqual(items[5], {"status": "refused", "line": 7, "reason": "missing_org_id"})
        self.assertEqual(items[6], {"status": "accepted", "line": 8, "id": "e2e-3"})

        self.wait_outcomes(d, 4, "delivered")
        self.wait_idle(d)
        sink.stop()
        by_id = collections.defaultdict(list)
        for req in sink.requests():
            by_id[req.header("x-partoo-event-id")].append(req)
        self.assertEqual(sorted(by_id), sorted(["e2e-1", "e2e-2", generated, "e2e-3"]))
        self.assertTrue(all(len(v) == 1 for v in by_id.values()), "one request per event")
        self.assertDelivery(by_id["e2e-1"][0], "business_updated", PAYLOADS[0], "e2e-1", pem,
                            path="/hooks/a?x=1", headers=headers)
        self.assertDelivery(by_id["e2e-2"][0], "business_updated", PAYLOADS[1], "e2e-2", pem,
                            path="/hooks/a?x=1", headers=headers)
        self.assertDelivery(by_id[generated][0], "message_created", PAYLOADS[2], generated,
                            pem, path="/hooks/m")
        self.assertIsNone(by_id[generated][0].header("x-token"), "headers are per subscription")
        self.assertDelivery(by_id["e2e-3"][0], "business_updated", PAYLOADS[4], "e2e-3", pem,
                            path="/hooks/a?x=1", headers=headers)
        tampered = by_id["e2e-1"][0].body.replace(b"Nord", b"Sud!")
        ok, _ = verify_signature(pem, tampered, by_id["e2e-1"][0].header("x-partoo-signature-v1"),
                                 self.tmp)
        self.assertFalse(ok, "the verification itself must be able to fail")

        # The latency histogram is recorded by the outcome's observer, after the outcome
        # counters the waits above read.
        wait_until(lambda: d.metric("fanout_delivery_latency_seconds_count") == 4,
                   message="four latencies recorded")
        m = d.metrics()
        self.assertEqual(m.value("fanout_events_published_total"), 4)
        for reason in ("invalid_json", "unknown_type", "missing_org_id", "no_subscription"):
            self.assertEqual(m.value("fanout_events_refused_total", reason=reason), 1, reason)
        self.assertEqual(m.value("fanout_outcomes_total", kind="delivered"), 4)
        self.assertEqual(m.value("fanout_attempts_total", **{"class": "2xx"}), 4)
        self.assertEqual(m.value("fanout_attempts_total", **{"class": "5xx"}), 0)
        self.assertEqual(m.value("fanout_in_flight"), 0)
        self.assertEqual(m.value("fanout_waiting_retries"), 0)
        self.assertEqual(m.value("fanout_subscriptions"), 2)
        self.assertEqual(m.value("fanout_delivery_latency_seconds_count"), 4)
        self.assertEqual(m.value("fanout_delivery_latency_seconds_bucket", le="+Inf"), 4)
        self.assertGreaterEqual(m.value("fanout_api_requests_total", method="POST",
                                        route="/v2/events", status="202"), 2)
        d.stop()

    def test_signing_threads_sign_every_delivery(self):
        """--signing-threads 2: the signature is made off the worker (the metric counts each
        one) and every delivery still carries a signature of its own body that verifies."""
        d = self.daemon(args=("--signing-threads", "2"))
        sink = self.start_sink()
        self.subscribe(d, "business_updated", sink.url("/hook"))
        pem = public_key_pem(d.data)
        ids = [f"st-{i}" for i in range(20)]
        lines = [event(ORG, "business_updated", '{"n":%d}' % i, ids[i]) for i in range(20)]
        self.assertEqual(self.publish_ok(d, *lines), ids)
        self.wait_outcomes(d, 20, "delivered")
        sink.stop()
        got = {req.header("x-partoo-event-id"): req for req in sink.requests()}
        self.assertEqual(sorted(got), sorted(ids))
        for i, event_id in enumerate(ids):
            self.assertDelivery(got[event_id], "business_updated", '{"n":%d}' % i, event_id, pem)
        self.assertEqual(d.metric("fanout_signatures_off_worker_total"), 20)
        d.stop()

    def test_no_partoo_signature_leaves_the_header_out(self):
        """--no-partoo-signature: deliveries and tryouts carry every other header, and no
        X-Partoo-Signature-v1; the key is still there (keys public prints it)."""
        d = self.daemon(args=("--no-partoo-signature",))
        sink, trial = self.start_sink(), self.start_sink()
        self.subscribe(d, "business_updated", sink.url("/hook"))
        ids = [f"np-{i}" for i in range(3)]
        lines = [event(ORG, "business_updated", '{"n":%d}' % i, ids[i]) for i in range(3)]
        self.assertEqual(self.publish_ok(d, *lines), ids)
        self.wait_outcomes(d, 3, "delivered")
        r = d.http("POST", "/v2/webhooks/tryout", self.admin,
                   {"items": [{"url": trial.url("/t"), "event_type": "business_updated"}]})
        self.assertStatus(r, 200)
        sink.stop()
        trial.stop()
        got = sink.requests()
        self.assertEqual(sorted(req.header("x-partoo-event-id") for req in got), ids)
        for req in got + trial.requests():
            self.assertIsNone(req.header("x-partoo-signature-v1"), req["headers"])
            self.assertEqual(req.header("x-partoo-attempt"), "1")
        self.assertEqual(len(trial.requests()), 1)
        self.assertIn("BEGIN PUBLIC KEY", public_key_pem(d.data))
        d.stop()

    def test_ingest_answer_has_exactly_the_documented_fields(self):
        """Each item carries exactly the fields README "Ingest" lists for its status, and the
        answer exactly accepted, dropped, refused, busy and items."""
        d = self.daemon()
        self.subscribe(d, "business_created", f"http://127.0.0.1:{harness.closed_port()}/")
        r = self.publish(d, event(ORG, "business_created", "{}", "shape-1"),
                         event(ORG, "lead_received", "{}", "shape-2"), "nope")
        self.assertStatus(r, 202)
        self.assertEqual(set(r.body), ANSWER_FIELDS, r.body)
        self.assertEqual([i["status"] for i in r.body["items"]],
                         ["accepted", "dropped", "refused"])
        for item in r.body["items"]:
            self.assertEqual(set(item), ITEM_FIELDS[item["status"]], item)
        d.stop()

    def test_refusal_reasons_and_limits(self):
        """Each envelope fault is refused with routing's reason code and its line number, and
        counted by reason; ingest.max_body_bytes gives 413; a body that is not JSON or NDJSON
        gives 415."""
        d = self.daemon(config="max_event_bytes = 512\n[ingest]\nmax_body_bytes = 4096\n")
        sink = self.start_sink()
        self.subscribe(d, "business_created", sink.url())
        cases = [(event(ORG, "business_created", '{"pad":"' + "p" * 600 + '"}'), "too_large"),
                 ("[1, 2]", "not_object"),
                 (event(ORG, "business_created", "[]"), "bad_payload"),
                 ('{"org_id":"42","type":"business_created","payload":{}}', "bad_org_id"),
                 ('{"org_id":0,"type":"business_created","payload":{}}', "bad_org_id"),
                 ('{"org_id":42,"payload":{}}', "missing_type"),
                 ('{"org_id":42,"type":7,"payload":{}}', "bad_type"),
                 ('{"org_id":42,"type":"business_created"}', "missing_payload"),
                 ('{"org_id":42,"org_id":42,"type":"business_created","payload":{}}',
                  "duplicate_field"),
                 (event(ORG, "business_created", "{}", "x" * 129), "bad_id"),
                 (event(ORG, "business_created", '{"d":' + "[" * 100 + "]" * 100 + "}"),
                  "too_deep"),
                 ('{"org_id":42,"type":"business_created","payload":{}} trailing',
                  "invalid_json")]
        r = self.publish(d, *[line for line, _ in cases], event(ORG, "business_created", "{}",
                                                                  "the-good-one"))
        self.assertStatus(r, 202)
        expected = [{"status": "refused", "line": n, "reason": reason}
                    for n, (_, reason) in enumerate(cases, start=1)]
        expected.append({"status": "accepted", "line": len(cases) + 1, "id": "the-good-one"})
        self.assertEqual(self.items(r), expected)
        self.assertEqual((r.body["accepted"], r.body["refused"]), (1, len(cases)))
        m = d.metrics()
        for reason in {reason for _, reason in cases}:
            count = sum(1 for _, x in cases if x == reason)
            self.assertEqual(m.value("fanout_events_refused_total", reason=reason), count,
                             reason)
        big = "\n".join(event(ORG, "lead_received", "{}", f"big-{i}") for i in range(100))
        self.assertGreater(len(big), 4096)
        self.assertError(self.publish(d, big, ndjson=True), 413)
        r = d.http("POST", "/v2/events", self.ingest_key,
                   event(ORG, "business_created", "{}"), content_type="text/plain")
        self.assertError(r, 415)
        r = d.http("POST", "/v2/events", self.ingest_key,
                   event(ORG, "business_created", "{}"), content_type=None)
        self.assertError(r, 415)
        r = d.http("POST", "/v2/events", self.ingest_key, event(ORG, "business_created", "{}"),
                   content_type="application/x-ndjson; charset=utf-8")
        self.assertStatus(r, 202)
        self.wait_outcomes(d, 2, "delivered")
        d.stop()

    def test_update_url_moves_later_deliveries(self):
        """After the URL changes to a second sink, later events go there only."""
        d = self.daemon()
        first, second = self.start_sink(), self.start_sink()
        cfg = self.subscribe(d, "lead_received", first.url("/one"), {"X-Kept": "yes"})
        [e1] = self.publish_ok(d, event(ORG, "lead_received", '{"n":1}', "move-1"))
        self.wait_outcomes(d, 1, "delivered")
        r = d.http("PATCH", f"/v2/webhooks/{cfg['id']}", self.admin, {"url": second.url("/two")})
        self.assertStatus(r, 200)
        later = self.publish_ok(d, event(ORG, "lead_received", '{"n":2}', "move-2"),
                                event(ORG, "lead_received", '{"n":3}', "move-3"))
        self.assertEqual(later, ["move-2", "move-3"])
        self.wait_outcomes(d, 3, "delivered")
        first.stop()
        second.stop()
        self.assertEqual([q.header("x-partoo-event-id") for q in first.requests()], [e1])
        got = second.requests()
        self.assertEqual(sorted(q.header("x-partoo-event-id") for q in got), later)
        for q in got:
            self.assertEqual(q["path"], "/two")
            self.assertEqual(q.header("x-kept"), "yes", "headers kept by a url-only update")
        d.stop()

    def test_delete_stops_deliveries(self):
        """After DELETE, events answer dropped/no_subscription and the sink gets nothing."""
        d = self.daemon()
        sink = self.start_sink()
        cfg = self.subscribe(d, "business_deleted", sink.url())
        self.publish_ok(d, event(ORG, "business_deleted", "{}", "del-1"))
        self.wait_outcomes(d, 1, "delivered")
        self.assertStatus(d.http("DELETE", f"/v2/webhooks/{cfg['id']}", self.admin), 204)
        r = self.publish(d, event(ORG, "business_deleted", "{}", "del-2"),
                         event(ORG, "business_deleted", "{}", "del-3"))
        self.assertStatus(r, 202)
        self.assertEqual(self.items(r), [
            {"status": "dropped", "line": 1, "id": "del-2", "reason": "no_subscription"},
            {"status": "dropped", "line": 2, "id": "del-3", "reason": "no_subscription"}])
        self.assertEqual((r.body["accepted"], r.body["dropped"]), (0, 2))
        self.wait_idle(d)
        sink.stop()
        self.assertEqual([q.header("x-partoo-event-id") for q in sink.requests()], ["del-1"])
        self.assertEqual(d.metric("fanout_subscriptions"), 0)
        d.stop()

    def test_tryout_uses_the_latest_ingested_payload(self):
        """Tryout's body carries the payload of the latest event ingested for the pair (byte
        for byte), else a built-in sample; it is signed and marked as a tryout."""
        d = self.daemon()
        sink, trial = self.start_sink(), self.start_sink()
        self.subscribe(d, "message_updated", sink.url())
        payload = '{"latest" : [1, 2, "tr\\u00fds"], "x":{ }}'
        self.publish_ok(d, event(ORG, "message_updated", '{"older":true}', "old"))
        self.publish_ok(d, event(ORG, "message_updated", payload, "newest"))
        self.wait_outcomes(d, 2, "delivered")
        pem = public_key_pem(d.data)
        for event_type in ("message_updated", "business_created"):
            r = d.http("POST", "/v2/webhooks/tryout", self.admin,
                       {"items": [{"url": trial.url("/t"), "event_type": event_type}]})
            self.assertStatus(r, 200)
            self.assertIs(r.body["items"][0]["success"], True, r.body)
        trial.stop()
        latest, sample = trial.requests()
        self.assertEqual(latest.body, delivery_body("message_updated", payload))
        self.assertTrue(sample.body.startswith(b'{"type":"business_created","payload":{'))
        self.assertIsInstance(json.loads(sample.body)["payload"], dict)
        for req in (latest, sample):
            self.assertEqual(req.header("x-partoo-webhook-tryout"), "true")
            self.assertTrue(req.header("x-partoo-event-id", "").startswith("tryout-"))
            ok, out = verify_signature(pem, req.body, req.header("x-partoo-signature-v1", ""),
                                       self.tmp)
            self.assertTrue(ok, out)
        d.stop()


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


class PublishCommandTest(E2ECase):
    """`fanoutd publish --url ... --key ... [FILE]`."""

    def write(self, name, lines):
        path = os.path.join(self.tmp, name)
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
        return path

    def test_publish_file_and_stdin(self):
        """Prints accepted/dropped lines and the summary, exit 0; a refused line → exit 1
        with `refused LINE REASON`; stdin works; a bad command line → exit 2."""
        d = self.daemon()
        sink = self.start_sink()
        self.subscribe(d, "business_created", sink.url())
        good = self.write("good.ndjson", [event(ORG, "business_created", "{}", "p-1"),
                                          event(ORG, "business_created", '{"a":1}', "p-2"),
                                          event(ORG, "lead_received", "{}", "p-3")])
        r = harness.run_fanoutd("publish", "--url", d.url, "--key", self.ingest_key, good)
        self.assertEqual(r.returncode, 0, r.stderr)
        out = [line for line in r.stdout.splitlines() if line.strip()]
        self.assertIn("accepted p-1", out)
        self.assertIn("accepted p-2", out)
        self.assertIn("dropped p-3 no_subscription", out)
        self.assertEqual(out[-1], "published: accepted=2 dropped=1 refused=0 duplicate=0")
        # The same file again: the events with an id already accepted are duplicates, not sent
        # again (tools/fanoutd/README.md, "Ingest"), and that is a success.
        r = harness.run_fanoutd("publish", "--url", d.url, "--key", self.ingest_key, good)
        self.assertEqual(r.returncode, 0, r.stderr)
        out = [line for line in r.stdout.splitlines() if line.strip()]
        self.assertIn("duplicate p-1", out)
        self.assertIn("duplicate p-2", out)
        self.assertEqual(out[-1], "published: accepted=0 dropped=1 refused=0 duplicate=2")

        bad = self.write("bad.ndjson", [event(ORG, "business_created", "{}", "p-4"),
                                        event(ORG, "business_exploded", "{}", "p-5")])
        r = harness.run_fanoutd("publish", "--url", d.url, "--key", self.ingest_key, bad)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        out = [line for line in r.stdout.splitlines() if line.strip()]
        self.assertIn("accepted p-4", out)
        self.assertIn("refused 2 unknown_type", out)
        self.assertEqual(out[-1], "published: accepted=1 dropped=0 refused=1 duplicate=0")

        r = harness.run_fanoutd("publish", "--url", d.url, "--key", self.ingest_key,
                                input=event(ORG, "business_created", "{}", "p-6") + "\n")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("accepted p-6", r.stdout.splitlines())

        many = self.write("many.ndjson", [event(ORG, "lead_received", "{}", f"m-{i}")
                                          for i in range(2500)])
        posts = lambda: d.metric("fanout_api_requests_total", method="POST",  # noqa: E731
                                 route="/v2/events", status="202")
        before = posts()
        r = harness.run_fanoutd("publish", "--url", d.url, "--key", self.ingest_key, many)
        self.assertEqual(r.returncode, 0, r.stderr)
        out = [line for line in r.stdout.splitlines() if line.strip()]
        self.assertEqual(len(out), 2501)
        self.assertEqual(out[-1], "published: accepted=0 dropped=2500 refused=0 duplicate=0")
        requests = posts() - before
        self.assertGreaterEqual(requests, 3, "batches of up to 1,000 lines: at least 3")
        self.assertLess(requests, 2500, "batches, not one request per line")

        r = harness.run_fanoutd("publish", "--url", d.url, good)  # no --key
        self.assertEqual(r.returncode, 2, r.stdout)
        self.assertTrue(r.stderr.strip(), "the reason and the usage on stderr")

        self.wait_outcomes(d, 4, "delivered")
        sink.stop()
        self.assertEqual(sorted(q.header("x-partoo-event-id") for q in sink.requests()),
                         ["p-1", "p-2", "p-4", "p-6"])
        d.stop()

    def test_publish_resends_busy_lines(self):
        """max_in_flight = 1 and a receiver that answers after 200 ms: publish waits and
        re-sends the busy lines until all are accepted (exit 0)."""
        d = self.daemon(config="max_in_flight = 1\n")
        sink = self.start_sink(args=["--delay-ms", "200"])
        self.subscribe(d, "message_created", sink.url())
        path = self.write("busy.ndjson", [event(ORG, "message_created", "{}", f"q-{i}")
                                          for i in range(3)])
        r = harness.run_fanoutd("publish", "--url", d.url, "--key", self.ingest_key, path)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        out = [line for line in r.stdout.splitlines() if line.strip()]
        for i in range(3):
            self.assertEqual(out.count(f"accepted q-{i}"), 1, out)
        self.assertEqual(out[-1], "published: accepted=3 dropped=0 refused=0 duplicate=0")
        self.wait_outcomes(d, 3, "delivered")
        sink.stop()
        self.assertEqual(sorted(q.header("x-partoo-event-id") for q in sink.requests()),
                         ["q-0", "q-1", "q-2"])
        d.stop()


if __name__ == "__main__":
    harness.main()
