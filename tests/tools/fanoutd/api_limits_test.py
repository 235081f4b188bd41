#!/usr/bin/env python3
"""fanoutd's HTTP API, its limits and the secure mode: the rate limit per organisation, failed
authentications per client address, the body limit, a daemon without --insecure
(tools/fanoutd/README.md, "HTTP API" and "Rate limit"; tools/fanoutd/api.cc,
tools/fanoutd/rate_limit.h). Authentication and roles, paths and methods, health and metrics,
HTTP/2: api_test.py; what the API tests share: api_case.py.

Run: python3 api_limits_test.py
         --fanoutd build/X/tools/fanoutd/fanoutd --sink build/X/tools/fanout-sink
         [unittest arguments, e.g. -k RateLimitTest]

The rate limit tests start a daemon per test (a configuration and buckets of their own); the body
limit and the secure mode share one daemon per class and keep apart by using organisations of
their own. Webhook URLs point at 127.0.0.1 (nothing is delivered to them).
"""

import itertools
import json
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
import harness  # noqa: E402
from harness import PARTOO_TYPES, FanoutdTestCase, SharedDaemonCase, apikey
from api_case import item


# ------------------------------------------------------------------------------------------
def _requests_until_429(send, limit, max_requests):
    """Calls send() until it answers 429; returns (successes, elapsed_s, the 429 response)."""
    start = time.monotonic()
    successes = 0
    for _ in range(max_requests):
        r = send()
        if r.status == 429:
            return successes, time.monotonic() - start, r
        if r.status >= 500:
            raise AssertionError(f"unexpected {r.describe()}")
        successes += 1
    raise AssertionError(f"no 429 after {max_requests} requests (limit {limit}/min)")


class RateLimitTest(FanoutdTestCase):
    """api.rate_limit_per_minute: a token bucket per organisation (README "Rate limit")."""

    def assertLimited(self, successes, elapsed, limit, r):
        """The first 429 came after `limit` requests, plus what refilled meanwhile."""
        refilled = int(elapsed * limit / 60) + 1
        self.assertGreaterEqual(successes, limit)
        self.assertLessEqual(successes, limit + refilled,
                             f"{successes} requests passed in {elapsed:.1f} s")
        self.assertError(r, 429)
        retry_after = r.headers.get("Retry-After", "")
        self.assertRegex(retry_after, r"^\d+$")
        self.assertGreaterEqual(int(retry_after), 1)
        self.assertLessEqual(int(retry_after), -(-60 // limit), "one token is back within "
                             "60/limit seconds")

    def test_small_limit(self):
        """[api] rate_limit_per_minute = 5: the 6th request of an organisation is 429 with
        Retry-After and {"error":{"rate_limit":...}}, whatever the route or the key; another
        organisation is unaffected; requests refused by earlier checks (403) and ingest are
        not counted; the 429 comes before body checks."""
        d = self.start_daemon(config="[api]\nrate_limit_per_minute = 5\n")
        org, other = 501, 502
        admin = apikey(d.data, "ORG_ADMIN", org=org)
        provider = apikey(d.data, "PROVIDER", orgs=[org, other])
        ingest = apikey(d.data, "INGEST")
        for _ in range(8):  # 403 before the rate limit: not counted
            self.assertError(d.http("GET", f"/v2/webhooks?org_id={other}", admin), 403)
        for _ in range(8):  # ingest is not rate limited (no subscription: dropped)
            r = d.http("POST", "/v2/events", ingest,
                       {"org_id": org, "type": "business_created", "payload": {}})
            self.assertStatus(r, 202)
        calls = itertools.cycle([
            lambda: d.http("GET", "/v2/webhooks", admin),
            lambda: d.http("GET", "/v2/webhooks/123456", admin),
            lambda: d.http("GET", "/v2/webhooks/events", admin),
            lambda: d.http("POST", "/v2/webhooks", admin, {"items": []}),
            lambda: d.http("GET", f"/v2/webhooks?org_id={org}", provider),
        ])
        successes, elapsed, r = _requests_until_429(lambda: next(calls)(), 5, 50)
        self.assertLimited(successes, elapsed, 5, r)
        self.assertError(d.http("GET", f"/v2/webhooks?org_id={org}", provider), 429,
                         "the bucket is the organisation's, not the key's")
        self.assertError(d.http("POST", "/v2/webhooks", admin, "x" * 5000,
                                content_type="text/plain"), 429)
        self.assertStatus(d.http("GET", f"/v2/webhooks?org_id={other}", provider), 200)
        self.assertStatus(d.http("POST", "/v2/events", ingest,
                                 {"org_id": org, "type": "business_created", "payload": {}}),
                          202)
        self.assertError(d.http("GET", "/v2/webhooks", "fo_" + "C" * 43), 401)
        self.assertStatus(d.http("GET", "/healthz"), 200)
        m = d.metrics()
        self.assertGreaterEqual(m.value("fanout_api_requests_total", method="GET",
                                        route="/v2/webhooks", status="429"), 1)
        d.stop()

    def test_default_limit_is_300(self):
        """With the default configuration, one organisation's requests in a row are 429 from
        the 301st (plus what refilled at 5 per second meanwhile)."""
        d = self.start_daemon()
        admin = apikey(d.data, "ORG_ADMIN", org=601)
        other = apikey(d.data, "ORG_ADMIN", org=602)
        s = d.session()
        try:
            successes, elapsed, r = _requests_until_429(
                lambda: s.http("GET", "/v2/webhooks?per_page=1", admin), 300, 2000)
        finally:
            s.close()
        self.assertLimited(successes, elapsed, 300, r)
        self.assertStatus(d.http("GET", "/v2/webhooks", other), 200)
        d.stop()


# ------------------------------------------------------------------------------------------
class BodyLimitTest(SharedDaemonCase):
    """[api] max_body_bytes = 2048: 413 over it, before the content type is looked at."""

    config = "[api]\nmax_body_bytes = 2048\n"

    def body_of_size(self, size, event_type="business_created"):
        base = {"items": [{"url": "https://127.0.0.1/", "event_type": event_type}]}
        pad = size - len(json.dumps(base).encode())
        base["items"][0]["url"] += "a" * pad
        raw = json.dumps(base).encode()
        self.assertEqual(len(raw), size)
        return raw

    def test_413_over_the_limit(self):
        """2049 bytes → 413 "body larger than 2048 bytes"; 2048 bytes → 200."""
        key = self.admin_key(self.new_org())
        r = self.daemon.http("POST", "/v2/webhooks", key, self.body_of_size(2049))
        self.assertError(r, 413)
        self.assertEqual(r.body["error"]["json"], "body larger than 2048 bytes")
        r = self.daemon.http("POST", "/v2/webhooks", key, self.body_of_size(2048))
        self.assertStatus(r, 200)
        wid = r.body["items"][0]["id"]
        r = self.daemon.http("PUT", f"/v2/webhooks/{wid}", key,
                             {"url": "https://127.0.0.1/" + "b" * 3000})
        self.assertError(r, 413)
        r = self.daemon.http("POST", "/v2/webhooks/tryout", key, self.body_of_size(4000))
        self.assertError(r, 413)

    def test_413_comes_after_authentication_and_before_content_type(self):
        """No key → 401 even for a large body; a large text/plain body → 413, not 415."""
        key = self.admin_key(self.new_org())
        big = b"x" * 3000
        self.assertError(self.daemon.http("POST", "/v2/webhooks", None, big), 401)
        self.assertError(self.daemon.http("POST", "/v2/webhooks", key, big,
                                          content_type="text/plain"), 413)

    def test_ingest_has_its_own_limit(self):
        """api.max_body_bytes does not apply to /v2/events (ingest.max_body_bytes does)."""
        ingest = apikey(self.data, "INGEST")
        org = self.new_org()
        lines = [json.dumps({"org_id": org, "type": "business_created",
                             "payload": {"pad": "p" * 200}}) for _ in range(20)]
        body = "\n".join(lines) + "\n"
        self.assertGreater(len(body), 2048)
        r = self.daemon.http("POST", "/v2/events", ingest, body,
                             content_type="application/x-ndjson")
        self.assertStatus(r, 202)
        self.assertEqual(r.body["dropped"], 20)


# ------------------------------------------------------------------------------------------
class SecureModeTest(SharedDaemonCase):
    """A daemon without --insecure and without extra event types."""

    insecure = False

    def test_http_url_refused(self):
        """http:// is 400 on items.0.url [url_insecure] (create, update, tryout); https://
        is accepted."""
        key = self.admin_key(self.new_org())
        r = self.daemon.http("POST", "/v2/webhooks", key,
                             {"items": [item(url="http://127.0.0.1/x")]})
        self.assertRuleError(r, "items.0.url", "url_insecure")
        r = self.daemon.http("POST", "/v2/webhooks/tryout", key,
                             {"items": [item(url="http://127.0.0.1/x")]})
        self.assertRuleError(r, "items.0.url", "url_insecure")
        r = self.daemon.http("POST", "/v2/webhooks", key, {"items": [item()]})
        self.assertStatus(r, 200)
        wid = r.body["items"][0]["id"]
        r = self.daemon.http("PATCH", f"/v2/webhooks/{wid}", key, {"url": "http://127.0.0.1/"})
        self.assertRuleError(r, "url", "url_insecure")

    def test_default_catalogue(self):
        """Without configured extensions the catalogue is Partoo's six."""
        key = self.admin_key(self.new_org())
        r = self.daemon.http("GET", "/v2/webhooks/events", key)
        self.assertStatus(r, 200)
        self.assertEqual(sorted(r.body), sorted(PARTOO_TYPES))
        self.assertEqual(len(r.body), 6)
        r = self.daemon.http("POST", "/v2/webhooks", key, {"items": [item("invoice_paid")]})
        self.assertRuleError(r, "items.0.event_type", "event_type_unknown")



class FailedAuthenticationTest(FanoutdTestCase):
    """api.failed_auth_per_minute: wrong keys are limited per client address; the limit is
    checked before any lookup; a missing header is not a login attempt."""

    def test_wrong_keys_are_limited_per_address(self):
        d = self.start_daemon(config="[api]\nfailed_auth_per_minute = 3\n")
        good = apikey(d.data, "ORG_ADMIN", org=5)
        for i in range(3):
            self.assertError(d.http("GET", "/v2/webhooks", key=f"fo_wrong{i}"), 401)
        for _ in range(3):
            self.assertError(d.http("GET", "/v2/webhooks"), 401)  # no key: not counted
        r = d.http("GET", "/v2/webhooks", key="fo_wrong-again")
        self.assertError(r, 429)
        self.assertIn("failed authentications", r.body["error"]["rate_limit"])
        self.assertRegex(r.headers.get("Retry-After", ""), r"^\d+$")
        # Checked before the key: this address waits, whatever it presents.
        self.assertError(d.http("GET", "/v2/webhooks", key=good), 429)
        self.assertError(d.http("GET", "/v2/me", key=good), 429)


if __name__ == "__main__":
    harness.main()
