"""fanoutd's Standard Webhooks signing (tools/fanoutd/README.md, "Standard Webhooks"), checked
the way a receiver would: `v1` with the `standardwebhooks` npm package, `v1a` with node:crypto
and the daemon's public key (web/verify_standard_webhooks.mjs). Also: a delivery replayed to
another webhook does not verify with that webhook's secret, a rotated secret replaces the old one
at once, X-Partoo-Signature-v1 is unchanged, and with the default configuration the Partoo API
answers exactly what it did before (no new fields, no new headers).

Needs node and `npm ci --prefix tests/tools/fanoutd/web`: skipped without them, except under CI
(CI set), where that is a failure.
"""

import base64
import json
import os
import shutil
import subprocess
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
import harness  # noqa: E402
from harness import FanoutdTestCase, apikey, public_key_pem, verify_signature  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
VERIFIER = os.path.join(HERE, "web", "verify_standard_webhooks.mjs")
PARTOO_FIELDS = {"id", "org_id", "event_type", "url", "custom_headers", "created_at", "updated_at"}
STANDARD_HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")


def event(org, event_id, name):
    return json.dumps({"id": event_id, "org_id": org, "type": "business_updated",
                       "payload": {"id": "b1", "name": name}})


class StandardWebhooksTest(FanoutdTestCase):

    def setUp(self):
        super().setUp()
        self.node = shutil.which("node") or shutil.which("nodejs")
        if self.node is None:
            harness.skip_or_fail(self, "node is missing")

    def verify(self, cases):
        """Runs the verifier on `cases`; returns {name: (ok, error)}."""
        r = subprocess.run([self.node, VERIFIER], input=json.dumps({"cases": cases}),
                           capture_output=True, text=True, timeout=harness.CLI_TIMEOUT,
                           cwd=os.path.dirname(VERIFIER))
        if r.returncode == 77:
            harness.skip_or_fail(self, r.stdout.strip())
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        return {x["name"]: (x["ok"], x["error"]) for x in json.loads(r.stdout)["results"]}

    @staticmethod
    def case(name, kind, req, secret=None, pem=None):
        c = {"name": name, "kind": kind, "body_base64": req["body_base64"],
             "headers": {n: req.header(n) for n in STANDARD_HEADERS if req.header(n) is not None}}
        if secret is not None:
            c["secret"] = secret
        if pem is not None:
            c["public_key_pem"] = pem
        return c

    def setup_daemon(self, config=None):
        d = self.start_daemon(config=config)
        self.ingest = apikey(d.data, "INGEST")
        return d

    def create(self, d, key, url, signing=None):
        item = {"url": url, "event_type": "business_updated"}
        if signing is not None:
            item["signing"] = signing
        r = d.http("POST", "/v2/webhooks", key, {"items": [item]})
        self.assertStatus(r, 200, "create")
        return r.body["items"][0]

    def publish(self, d, org, event_id, name="Bakery"):
        r = d.http("POST", "/v2/events", self.ingest, event(org, event_id, name))
        self.assertStatus(r, 202, "ingest")
        self.assertEqual(r.body["accepted"], 1, r.body)

    def assertPartooSignature(self, d, req):
        ok, out = verify_signature(public_key_pem(d.data), req.body,
                                   req.header("x-partoo-signature-v1"), self.tmp)
        self.assertTrue(ok, f"X-Partoo-Signature-v1 (Ed25519 of the body) must verify: {out}")

    def test_v1_verifies_with_the_package_a_replay_does_not_and_rotation_replaces_the_secret(self):
        d = self.setup_daemon()
        sink = self.start_sink()
        key_a, key_b = apikey(d.data, "ORG_ADMIN", org=301), apikey(d.data, "ORG_ADMIN", org=302)
        a = self.create(d, key_a, sink.url("/a"), signing="v1")
        b = self.create(d, key_b, sink.url("/b"), signing="v1")
        for w in (a, b):
            self.assertEqual(w["signing"], "v1")
            self.assertTrue(w["secret"].startswith("whsec_"), w)
            self.assertEqual(len(base64.b64decode(w["secret"][6:])), 32)
        self.assertNotEqual(a["secret"], b["secret"])
        got = d.http("GET", f"/v2/webhooks/{a['id']}", key_a)
        self.assertStatus(got, 200)
        self.assertEqual(got.body["signing"], "v1")
        self.assertNotIn("secret", got.body, "a secret is shown once, at creation")
        listed = d.http("GET", "/v2/webhooks", key_a)
        self.assertNotIn("secret", listed.body["items"][0])

        self.publish(d, 301, "sw-a1")
        self.publish(d, 302, "sw-b1")
        sink.wait_count(2)
        rotated = d.http("POST", f"/v2/webhooks/{a['id']}/secret/rotate", key_a)
        self.assertStatus(rotated, 200, "rotate")
        self.assertEqual(set(rotated.body), {"id", "secret"})
        self.assertEqual(rotated.body["id"], a["id"])
        new_secret = rotated.body["secret"]
        self.assertTrue(new_secret.startswith("whsec_"))
        self.assertNotEqual(new_secret, a["secret"])
        self.publish(d, 301, "sw-a2")
        sink.wait_count(3)
        sink.stop()
        by_id = {r.header("x-partoo-event-id"): r for r in sink.requests()}
        a1, b1, a2 = by_id["sw-a1"], by_id["sw-b1"], by_id["sw-a2"]
        for req, path in ((a1, "/a"), (b1, "/b"), (a2, "/a")):
            self.assertEqual(req["path"], path)
            self.assertEqual(req.header("webhook-id"), req.header("x-partoo-event-id"))
            self.assertRegex(req.header("webhook-timestamp"), r"^\d{10}$")
            entries = req.header("webhook-signature").split(" ")
            self.assertEqual([e.split(",")[0] for e in entries], ["v1"], "v1 only")
            self.assertPartooSignature(d, req)

        results = self.verify([
            self.case("a1 with a's secret", "v1", a1, secret=a["secret"]),
            self.case("b1 with b's secret", "v1", b1, secret=b["secret"]),
            self.case("a1 replayed to b", "v1", a1, secret=b["secret"]),
            self.case("a2 with the new secret", "v1", a2, secret=new_secret),
            self.case("a2 with the old secret", "v1", a2, secret=a["secret"]),
            dict(self.case("a1 tampered", "v1", a1, secret=a["secret"]),
                 body_base64=base64.b64encode(a1.body.replace(b"Bakery", b"Bakerz")).decode()),
        ])
        for name in ("a1 with a's secret", "b1 with b's secret", "a2 with the new secret"):
            self.assertEqual(results[name], (True, ""), name)
        for name in ("a1 replayed to b", "a2 with the old secret", "a1 tampered"):
            self.assertFalse(results[name][0], f"{name} must not verify")
            self.assertIn("No matching signature", results[name][1])

    def test_v1a_from_the_daemon_option_verifies_with_the_public_key(self):
        d = self.setup_daemon(config='[signing]\nstandard_webhooks = "v1a"\n')
        sink = self.start_sink()
        key = apikey(d.data, "ORG_ADMIN", org=303)
        w = self.create(d, key, sink.url())
        self.assertEqual(w["signing"], "default", "shown: the daemon's option is on")
        self.assertTrue(w["secret"].startswith("whsec_"))
        self.publish(d, 303, "sw-v1a")
        sink.wait_count(1)
        sink.stop()
        (req,) = sink.requests()
        entries = req.header("webhook-signature").split(" ")
        self.assertEqual([e.split(",")[0] for e in entries], ["v1a"])
        self.assertPartooSignature(d, req)
        other_pem = public_key_pem(self.data_dir("other"))  # a key of another daemon
        results = self.verify([
            self.case("with the daemon's key", "v1a", req, pem=public_key_pem(d.data)),
            self.case("with another key", "v1a", req, pem=other_pem),
            self.case("v1 with its secret (none sent)", "v1", req, secret=w["secret"]),
        ])
        self.assertEqual(results["with the daemon's key"], (True, ""))
        self.assertFalse(results["with another key"][0])
        self.assertFalse(results["v1 with its secret (none sent)"][0])

    def test_both_and_the_per_webhook_override(self):
        d = self.setup_daemon(config='[signing]\nstandard_webhooks = "v1"\n')
        sink = self.start_sink()
        key = apikey(d.data, "ORG_ADMIN", org=304)
        w = self.create(d, key, sink.url(), signing="both")
        self.publish(d, 304, "sw-both")
        sink.wait_count(1)
        off = d.http("PATCH", f"/v2/webhooks/{w['id']}", key, {"signing": "off"})
        self.assertStatus(off, 200)
        self.assertEqual(off.body["signing"], "off")
        self.assertNotIn("secret", off.body)
        self.publish(d, 304, "sw-off")
        sink.wait_count(2)
        sink.stop()
        by_id = {r.header("x-partoo-event-id"): r for r in sink.requests()}
        both = by_id["sw-both"]
        self.assertEqual([e.split(",")[0] for e in both.header("webhook-signature").split(" ")],
                         ["v1", "v1a"])
        for name in STANDARD_HEADERS:
            self.assertIsNone(by_id["sw-off"].header(name), "off on the webhook wins")
        self.assertPartooSignature(d, by_id["sw-off"])
        results = self.verify([
            self.case("v1", "v1", both, secret=w["secret"]),
            self.case("v1a", "v1a", both, pem=public_key_pem(d.data)),
        ])
        self.assertEqual(results, {"v1": (True, ""), "v1a": (True, "")})

    def test_by_default_the_partoo_api_and_headers_are_unchanged(self):
        d = self.setup_daemon()
        sink = self.start_sink()
        key = apikey(d.data, "ORG_ADMIN", org=305)
        w = self.create(d, key, sink.url())
        self.assertEqual(set(w), PARTOO_FIELDS, "no new field unless Standard Webhooks are used")
        got = d.http("GET", f"/v2/webhooks/{w['id']}", key)
        self.assertEqual(set(got.body), PARTOO_FIELDS)
        patched = d.http("PATCH", f"/v2/webhooks/{w['id']}", key, {"url": sink.url("/x")})
        self.assertEqual(set(patched.body), PARTOO_FIELDS)
        self.publish(d, 305, "sw-partoo")
        sink.wait_count(1)
        sink.stop()
        (req,) = sink.requests()
        for name in STANDARD_HEADERS:
            self.assertIsNone(req.header(name))
        self.assertPartooSignature(d, req)

    def test_rotation_and_signing_errors(self):
        d = self.setup_daemon()
        key = apikey(d.data, "ORG_ADMIN", org=306)
        other = apikey(d.data, "ORG_ADMIN", org=307)
        url = f"http://127.0.0.1:{harness.closed_port()}/hook"
        w = self.create(d, key, url, signing="v1")
        path = f"/v2/webhooks/{w['id']}/secret/rotate"
        self.assertError(d.http("POST", path, other), 404, "another organisation's webhook")
        self.assertError(d.http("POST", "/v2/webhooks/999999/secret/rotate", key), 404)
        r = d.http("GET", path, key)
        self.assertError(r, 405)
        self.assertEqual(r.headers.get("Allow"), "POST")
        self.assertError(d.http("POST", path), 401)
        bad = d.http("POST", "/v2/webhooks", key,
                     {"items": [{"url": url, "event_type": "lead_received",
                                 "signing": "v2"}]})
        self.assertRuleError(bad, "items.0.signing", "signing_unknown")
        self.assertRuleError(d.http("PATCH", f"/v2/webhooks/{w['id']}", key, {"signing": 1}),
                             "signing", "signing_unknown")
        # The secret survives a restart (stored), and rotation still works after it.
        d.restart()
        self.assertEqual(d.http("GET", f"/v2/webhooks/{w['id']}", key).body["signing"], "v1")
        self.assertStatus(d.http("POST", path, key), 200)


if __name__ == "__main__":
    harness.main()
