"""What the end-to-end tests share (e2e_test.py, e2e_retry_test.py): the organisation, fast
retries, payloads that must arrive byte for byte, an event line, the documented ingest answer,
the delivery body, and E2ECase: a daemon of its own per test with its keys."""

import json
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
from harness import FanoutdTestCase, apikey, verify_signature, wait_until  # noqa: E402

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
