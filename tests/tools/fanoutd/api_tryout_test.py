#!/usr/bin/env python3
"""fanoutd's tryout route, POST /v2/webhooks/tryout (tools/fanoutd/README.md, "HTTP API";
tools/fanoutd/api_tryout.cc): a sample event sent to a URL at once, against fanout-sinks, and
its own rate limit.

Run: python3 api_tryout_test.py
         --fanoutd build/X/tools/fanoutd/fanoutd --sink build/X/tools/fanout-sink
         [unittest arguments, e.g. -k pagination]
"""

import json
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
import harness  # noqa: E402
from harness import FanoutdTestCase, apikey, closed_port
from api_case import TRYOUT_KEYS, ApiCase, item

# ------------------------------------------------------------------------------------------
class TryoutTest(ApiCase):
    """POST /v2/webhooks/tryout: one POST now, no retries, nothing saved."""

    def _tryout(self, key, items):
        return self.call("POST", "/v2/webhooks/tryout", key, {"items": items})

    def _tryout_item(self, r):
        self.assertStatus(r, 200)
        self.assertEqual(set(r.body), {"items"}, r.body)
        self.assertEqual(len(r.body["items"]), 1, "only the first item is used")
        result = r.body["items"][0]
        self.assertEqual(set(result), TRYOUT_KEYS, result)
        self.assertIsInstance(result["duration_ms"], (int, float))
        self.assertNotIsInstance(result["duration_ms"], bool)
        self.assertGreaterEqual(result["duration_ms"], 0)
        return result

    def test_tryout_to_a_200_sink(self):
        """success true, status 200; the sink got one POST with the tryout header, the custom
        headers, a tryout- event id, attempt 1, fanout/ user agent and a {"type","payload"}
        body; nothing was saved (the second item went nowhere)."""
        org = self.new_org()
        key = self.admin_key(org)
        sink, other = self.start_sink("200:1"), self.start_sink("200:1")
        url = sink.url("/try?x=1")
        r = self._tryout(key, [item("message_created", url, {"X-Token": "t0k"}),
                               item("lead_received", other.url())])
        result = self._tryout_item(r)
        self.assertEqual(result["url"], url)
        self.assertEqual(result["event_type"], "message_created")
        self.assertIs(result["success"], True)
        self.assertEqual(result["status_code"], 200)
        self.assertIn(result["error"], (None, ""))
        self.assertNothingCreated(key)
        sink.stop()
        other.stop()
        self.assertEqual(other.requests(), [], "only the first item is sent")
        [req] = sink.requests()
        self.assertEqual(req["method"], "POST")
        self.assertEqual(req["path"], "/try?x=1")
        self.assertEqual(req.header("x-partoo-webhook-tryout"), "true")
        self.assertEqual(req.header("x-token"), "t0k")
        self.assertTrue(req.header("x-partoo-event-id", "").startswith("tryout-"), req)
        self.assertEqual(req.header("x-partoo-attempt"), "1")
        self.assertTrue(req.header("user-agent", "").startswith("fanout/"), req)
        self.assertTrue(req.header("content-type", "").startswith("application/json"), req)
        self.assertTrue(req.header("x-partoo-signature-v1"), "signed")
        body = req.body
        self.assertTrue(body.startswith(b'{"type":"message_created","payload":{'), body[:80])
        parsed = json.loads(body)
        self.assertEqual(list(parsed), ["type", "payload"])
        self.assertIsInstance(parsed["payload"], dict)

    def test_tryout_to_a_500_sink_is_one_attempt(self):
        """success false, status 500, and exactly one request (no retries)."""
        key = self.admin_key(self.new_org())
        sink = self.start_sink("500:1")
        result = self._tryout_item(self._tryout(key, [item(url=sink.url())]))
        self.assertIs(result["success"], False)
        self.assertEqual(result["status_code"], 500)
        sink.stop()
        self.assertEqual(len(sink.requests()), 1)
        self.assertEqual(sink.summary["requests"], 1)
        self.assertNothingCreated(key)

    def test_tryout_to_a_404_sink(self):
        """A 4xx answer: success false with that status code."""
        key = self.admin_key(self.new_org())
        sink = self.start_sink("404:1")
        result = self._tryout_item(self._tryout(key, [item(url=sink.url())]))
        self.assertEqual((result["success"], result["status_code"]), (False, 404))

    def test_tryout_to_a_closed_port(self):
        """No HTTP answer: success false, status_code null, error names the failure."""
        key = self.admin_key(self.new_org())
        url = f"http://127.0.0.1:{closed_port()}/hook"
        result = self._tryout_item(self._tryout(key, [item(url=url)]))
        self.assertIs(result["success"], False)
        self.assertIsNone(result["status_code"])
        self.assertIsInstance(result["error"], str)
        self.assertTrue(result["error"])

    def test_ports_outside_allowed_ports_are_refused(self):
        """allowed_ports (default 80, 443, 1024-65535): create, update and tryout of a URL on
        another port are 400 on the url with the rule; nothing is sent or saved."""
        org = self.new_org()
        key = self.admin_key(org)
        for port in (22, 25, 1023):
            url = f"https://example.com:{port}/hook"
            with self.subTest(port=port):
                for r, field in ((self.create(key, [item(url=url)]), "items.0.url"),
                                 (self._tryout(key, [item(url=url)]), "items.0.url")):
                    msg = self.assertFieldError(r, field)
                    self.assertIn(f"port {port} is not allowed", msg)
                    self.assertIn("[url_port_not_allowed]", msg)
        self.assertEqual(self.list_ids(key), [])
        made = self.create(key, [item(url="https://example.com:8443/hook")])
        self.assertStatus(made, 200)
        hook = made.body["items"][0]["id"]
        r = self.call("PATCH", f"/v2/webhooks/{hook}", key, {"url": "https://example.com:21/"})
        self.assertIn("[url_port_not_allowed]", self.assertFieldError(r, "url"))

    def test_tryout_validates_like_create(self):
        """Invalid items (the later ones too) are 400 like create; nothing is sent."""
        key = self.admin_key(self.new_org())
        sink = self.start_sink("200:1")
        self.assertRuleError(self._tryout(key, [item(url="ftp://x/")]), "items.0.url",
                             "url_bad_scheme")
        self.assertRuleError(self._tryout(key, [item(url=sink.url()), item("nope")]),
                             "items.1.event_type", "event_type_unknown")
        self.assertRuleError(self._tryout(key, [item(url=sink.url(),
                                                     headers={"Authorization": "x"})]),
                             "items.0.custom_headers", "header_key_no_x_prefix")
        self.assertFieldError(self._tryout(key, []), "items")
        self.assertFieldError(self._tryout(key, [item(url=sink.url(), extra=1)]),
                              "items.0.extra", "Unknown field.")
        self.assertFieldError(self.call("POST", "/v2/webhooks/tryout", key, b"{"), "_schema")
        self.assertError(self.call("POST", "/v2/webhooks/tryout", key, {"items": [item()]},
                                   content_type="text/plain"), 415)
        sink.stop()
        self.assertEqual(sink.requests(), [])


class TryoutHardeningTest(FanoutdTestCase):
    """Tryout is not a probe: its own rate limit per organisation, and errors that never name
    the addresses a host resolved to."""

    def test_tryout_rate_limit_and_no_resolved_addresses(self):
        d = self.start_daemon(config="[api]\ntryout_rate_limit_per_minute = 2\n",
                              allow_subnets=())
        sink = self.start_sink()
        admin = apikey(d.data, "ORG_ADMIN", org=77)
        other = apikey(d.data, "ORG_ADMIN", org=78)
        url = f"http://localhost:{sink.port}/hook"  # resolves to loopback: refused by the guard
        body = {"items": [{"url": url, "event_type": "business_created"}]}
        for _ in range(2):
            r = d.http("POST", "/v2/webhooks/tryout", key=admin, body=body)
            self.assertStatus(r, 200)
            result = r.body["items"][0]
            self.assertIs(result["success"], False)
            self.assertIn("address refused", result["error"])
            for leak in ("127.0.0.1", "::1", "(loopback)"):
                self.assertNotIn(leak, result["error"])
        r = d.http("POST", "/v2/webhooks/tryout", key=admin, body=body)
        self.assertError(r, 429)
        self.assertIn("2 tryouts per minute", r.body["error"]["rate_limit"])
        self.assertRegex(r.headers.get("Retry-After", ""), r"^\d+$")
        # Another organisation has its own budget; other routes are not tryouts.
        self.assertStatus(d.http("POST", "/v2/webhooks/tryout", key=other, body=body), 200)
        self.assertStatus(d.http("GET", "/v2/webhooks", key=admin), 200)
        self.assertEqual(sink.count(), 0, "nothing reached the sink")


if __name__ == "__main__":
    harness.main()
