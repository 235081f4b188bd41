#!/usr/bin/env python3
"""fanoutd's HTTP API: authentication and roles, paths and methods, health and metrics, HTTP/2
(tools/fanoutd/README.md, "HTTP API"; tools/fanoutd/api.cc). The rate and body limits and the
secure mode are in api_limits_test.py, the webhook routes in api_webhooks_test.py, tryout in
api_tryout_test.py, the delivery history in api_history_test.py and api_history_resend_test.py;
api_case.py holds what they share.

Run: python3 api_test.py
         --fanoutd build/X/tools/fanoutd/fanoutd --sink build/X/tools/fanout-sink
         [unittest arguments, e.g. -k pagination]

Most tests share one daemon per class and keep apart by using organisations of their own.
Webhook URLs point at 127.0.0.1 (nothing is delivered to them: no event is ingested for those
organisations).
"""

import json
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
import harness  # noqa: E402
from harness import apikey, apikey_id, apikey_revoke, curl_h2, wait_until
from api_case import ApiCase, item, next_url

# ------------------------------------------------------------------------------------------
class AuthenticationTest(ApiCase):
    """401: x-APIKey missing, unknown or revoked (README "Authentication and organisations")."""

    ROUTES = [("GET", "/v2/webhooks"), ("POST", "/v2/webhooks"), ("GET", "/v2/webhooks/1"),
              ("PUT", "/v2/webhooks/1"), ("PATCH", "/v2/webhooks/1"),
              ("DELETE", "/v2/webhooks/1"), ("GET", "/v2/webhooks/events"),
              ("POST", "/v2/webhooks/tryout"), ("POST", "/v2/events")]

    def _body(self, method):
        return {"items": [item()]} if method in ("POST", "PUT", "PATCH") else None

    def test_missing_key_is_401_on_every_route(self):
        """Without x-APIKey every /v2 route answers 401 {"error":{"authentication":...}}."""
        for method, path in self.ROUTES:
            with self.subTest(method=method, path=path):
                r = self.call(method, path, None, self._body(method))
                self.assertError(r, 401)
                self.assertTrue(r.headers.get("Content-Type", "").startswith(
                    "application/json"), r.headers)

    def test_unknown_key_is_401(self):
        """A well-formed key that was never created, or garbage, is 401."""
        for key in ["fo_" + "A" * 43, "abc", "", "fo_"]:
            for method, path in self.ROUTES:
                with self.subTest(key=key, method=method, path=path):
                    self.assertError(self.call(method, path, key, self._body(method)), 401)

    def test_revoked_key_is_401_within_a_second(self):
        """`fanoutd apikey revoke` while the daemon runs takes effect within 1 s (keys are
        cached that long): the key is refused from then on, on every route."""
        org = self.new_org()
        name = f"revoke-me-{org}"
        key = apikey(self.data, "ORG_ADMIN", org=org, name=name)
        self.assertStatus(self.listing(key), 200)
        apikey_revoke(self.data, apikey_id(self.data, name))
        wait_until(lambda: self.listing(key).status == 401, message="the revocation to apply")
        self.assertError(self.listing(key), 401)
        self.assertError(self.create(key, [item()]), 401)

    def test_header_name_is_case_insensitive(self):
        """x-apikey, X-APIKEY and x-APIKey all authenticate."""
        org = self.new_org()
        key = self.admin_key(org)
        for name in ("x-apikey", "X-APIKEY", "X-ApiKey"):
            with self.subTest(header=name):
                r = self.call("GET", "/v2/webhooks", None, headers={name: key})
                self.assertStatus(r, 200)

    def test_created_keys_look_like_fo_base64url(self):
        """apikey create's last line is fo_ + 43 base64url characters, a new key each time."""
        keys = [apikey(self.data, "ORG_ADMIN", org=self.new_org()),
                apikey(self.data, "PROVIDER", orgs=[self.new_org(), self.new_org()]),
                apikey(self.data, "INGEST")]
        for key in keys:
            self.assertRegex(key, harness.KEY_RE)
        self.assertEqual(len(set(keys)), 3)


# ------------------------------------------------------------------------------------------
class RolesTest(ApiCase):
    """Roles and organisations: ORG_ADMIN, PROVIDER, INGEST (README "Authentication")."""

    def test_org_admin_cannot_see_another_orgs_webhook(self):
        """Another organisation's subscription is 404 for get, PUT, PATCH, DELETE and absent
        from the list; it is left untouched."""
        org_a, org_b = self.new_org(), self.new_org()
        key_a, key_b = self.admin_key(org_a), self.admin_key(org_b)
        theirs = self.create_ok(key_b, [item(headers={"X-Token": "b"})])[0]
        wid = theirs["id"]
        self.assertEqual(self.list_ids(key_a), [])
        self.assertError(self.get(key_a, wid), 404)
        self.assertError(self.call("PUT", f"/v2/webhooks/{wid}", key_a, {"url": next_url()}),
                         404)
        self.assertError(self.call("PATCH", f"/v2/webhooks/{wid}", key_a,
                                   {"custom_headers": {}}), 404)
        self.assertError(self.call("DELETE", f"/v2/webhooks/{wid}", key_a), 404)
        r = self.get(key_b, wid)
        self.assertStatus(r, 200)
        self.assertEqual(r.body, theirs)

    def test_org_admin_naming_another_org_is_403(self):
        """ORG_ADMIN with ?org_id= of another organisation: 403 on every webhook route; its
        own org_id is accepted."""
        org, other = self.new_org(), self.new_org()
        key = self.admin_key(org)
        mine = self.create_ok(key, [item()])[0]
        q = f"?org_id={other}"
        for method, path, body in [("GET", "/v2/webhooks" + q, None),
                                   ("POST", "/v2/webhooks" + q, {"items": [item()]}),
                                   ("GET", f"/v2/webhooks/{mine['id']}" + q, None),
                                   ("PATCH", f"/v2/webhooks/{mine['id']}" + q, {}),
                                   ("DELETE", f"/v2/webhooks/{mine['id']}" + q, None),
                                   ("POST", "/v2/webhooks/tryout" + q, {"items": [item()]})]:
            with self.subTest(method=method, path=path):
                self.assertError(self.call(method, path, key, body), 403)
        self.assertStatus(self.listing(key, f"?org_id={org}"), 200)
        self.assertStatus(self.get(key, mine["id"], f"?org_id={org}"), 200)
        self.assertEqual(self.list_ids(key), [mine["id"]], "the 403 DELETE must not delete")

    def test_provider_without_org_id_is_400(self):
        """PROVIDER must pass ?org_id= on every /v2/webhooks call (400 on org_id), except
        GET /v2/webhooks/events."""
        key = apikey(self.data, "PROVIDER", orgs=[self.new_org(), self.new_org()])
        for method, path, body in [("GET", "/v2/webhooks", None),
                                   ("POST", "/v2/webhooks", {"items": [item()]}),
                                   ("GET", "/v2/webhooks/1", None),
                                   ("PUT", "/v2/webhooks/1", {}),
                                   ("DELETE", "/v2/webhooks/1", None),
                                   ("POST", "/v2/webhooks/tryout", {"items": [item()]})]:
            with self.subTest(method=method, path=path):
                self.assertFieldError(self.call(method, path, key, body), "org_id")
        r = self.call("GET", "/v2/webhooks/events", key)
        self.assertStatus(r, 200)

    def test_provider_acts_for_its_granted_orgs_only(self):
        """PROVIDER: 403 for an organisation not granted; for a granted one it sees what the
        organisation's ORG_ADMIN created; another granted org's subscription is 404."""
        org_a, org_b, stranger = self.new_org(), self.new_org(), self.new_org()
        key = apikey(self.data, "PROVIDER", orgs=[org_a, org_b])
        admin_a = self.admin_key(org_a)
        created = self.create_ok(admin_a, [item()])[0]
        for method, path, body in [("GET", f"/v2/webhooks?org_id={stranger}", None),
                                   ("POST", f"/v2/webhooks?org_id={stranger}",
                                    {"items": [item()]}),
                                   ("GET", f"/v2/webhooks/{created['id']}?org_id={stranger}",
                                    None)]:
            with self.subTest(method=method, path=path):
                self.assertError(self.call(method, path, key, body), 403)
        self.assertEqual(self.list_ids(key, f"?org_id={org_a}"), [created["id"]])
        r = self.get(key, created["id"], f"?org_id={org_a}")
        self.assertStatus(r, 200)
        self.assertEqual(r.body, created)
        self.assertError(self.get(key, created["id"], f"?org_id={org_b}"), 404)
        url = next_url()
        made = self.create_ok(key, [item("lead_received", url)], f"?org_id={org_b}")[0]
        self.assertConfig(made, org_b, "lead_received", url)
        self.assertEqual(self.list_ids(self.admin_key(org_b)), [made["id"]])

    def test_ingest_key_on_webhook_routes_is_403(self):
        """INGEST keys may only call POST /v2/events."""
        key = apikey(self.data, "INGEST")
        for method, path, body in [("GET", "/v2/webhooks", None),
                                   ("GET", "/v2/webhooks?org_id=1", None),
                                   ("POST", "/v2/webhooks?org_id=1", {"items": [item()]}),
                                   ("GET", "/v2/webhooks/1", None),
                                   ("PATCH", "/v2/webhooks/1", {}),
                                   ("DELETE", "/v2/webhooks/1", None),
                                   ("GET", "/v2/webhooks/events", None),
                                   ("POST", "/v2/webhooks/tryout", {"items": [item()]})]:
            with self.subTest(method=method, path=path):
                self.assertError(self.call(method, path, key, body), 403)

    def test_webhook_roles_on_events_are_403(self):
        """ORG_ADMIN and PROVIDER keys get 403 on POST /v2/events."""
        org = self.new_org()
        event = {"org_id": org, "type": "business_created", "payload": {}}
        for key in (self.admin_key(org), apikey(self.data, "PROVIDER", orgs=[org])):
            self.assertError(self.call("POST", "/v2/events", key, event), 403)

    def test_scoped_ingest_key_publishes_for_its_organisations_only(self):
        """An INGEST key created with --orgs refuses events of other organisations per item
        (org_not_allowed), nothing queued for them; an unscoped key needs --all-orgs."""
        org, other = self.new_org(), self.new_org()
        scoped = apikey(self.data, "INGEST", orgs=[org])
        body = "\n".join(json.dumps({"org_id": o, "type": "business_created", "payload": {}})
                         for o in (org, other, org))
        r = self.call("POST", "/v2/events", scoped, body, content_type="application/x-ndjson")
        self.assertStatus(r, 202)
        statuses = [(i["status"], i.get("reason")) for i in r.body["items"]]
        self.assertEqual(statuses, [("dropped", "no_subscription"),
                                    ("refused", "org_not_allowed"),
                                    ("dropped", "no_subscription")])
        everywhere = apikey(self.data, "INGEST")  # harness: --all-orgs
        r = self.call("POST", "/v2/events", everywhere,
                      {"org_id": other, "type": "business_created", "payload": {}})
        self.assertEqual(r.body["items"][0]["reason"], "no_subscription")
        # Neither --orgs nor --all-orgs: refused at creation, naming both.
        bad = harness.run_fanoutd("apikey", "create", "--data", self.data, "--role", "INGEST")
        self.assertEqual(bad.returncode, 2, bad.stderr)
        self.assertIn("--orgs ID,ID,...", bad.stderr)
        self.assertIn("--all-orgs", bad.stderr)
        listed = harness.apikey_list(self.data)
        self.assertTrue(any(line.split()[1:3] == ["INGEST", "all"] for line in listed), listed)
        self.assertTrue(any(line.split()[1:3] == ["INGEST", str(org)] for line in listed), listed)

    def test_malformed_org_id_is_400(self):
        """org_id must be a positive decimal integer: 0, -1, abc, 1e3, 1.0, huge... are 400
        naming org_id, for PROVIDER and ORG_ADMIN keys alike."""
        org = self.new_org()
        provider = apikey(self.data, "PROVIDER", orgs=[org])
        admin = self.admin_key(org)
        for bad in ["0", "-1", "abc", "1e3", "1.0", "99999999999999999999", "0x10", "", "%20"]:
            for key in (provider, admin):
                with self.subTest(org_id=bad, key=key[:8]):
                    r = self.listing(key, f"?org_id={bad}")
                    self.assertFieldError(r, "org_id")

    def test_check_order(self):
        """route → authentication → role → org_id → content type → body (README)."""
        org, other = self.new_org(), self.new_org()
        admin = self.admin_key(org)
        provider = apikey(self.data, "PROVIDER", orgs=[org])
        ingest = apikey(self.data, "INGEST")
        # route before authentication
        self.assertError(self.call("GET", "/v2/nothing"), 404)
        self.assertError(self.call("DELETE", "/v2/webhooks"), 405)
        # authentication before role
        self.assertError(self.call("POST", "/v2/events", "fo_" + "B" * 43, {}), 401)
        # role before org_id
        self.assertError(self.listing(ingest, "?org_id=abc"), 403)
        # org_id before content type and body
        self.assertFieldError(self.call("POST", "/v2/webhooks", provider, "not json",
                                        content_type="text/plain"), "org_id")
        self.assertError(self.call("POST", f"/v2/webhooks?org_id={other}", admin, "not json",
                                   content_type="text/plain"), 403)
        # content type before body
        self.assertError(self.call("POST", "/v2/webhooks", admin, "{", content_type="text/plain"),
                         415)


# ------------------------------------------------------------------------------------------
class PathsAndMethodsTest(ApiCase):
    """404 for unknown paths and ids, 405 (with Allow) for known paths and other methods."""

    def test_unknown_paths_are_404(self):
        """Unknown paths are 404 {"error":{"json":"Resource not found"}}, with or without key."""
        key = self.admin_key(self.new_org())
        for path in ["/v2", "/v2/", "/v2/webhook", "/assets/nope.js", "/assets/",
                     "/settings/integrations", "/settings/integrations/webhooks/x", "/v3/webhooks", "/v2/webhooks/1/x",
                     "/v2/webhooks/events/x", "/v2/event", "/v2/events/1", "/healthz/x",
                     "/V2/WEBHOOKS", "/metrics/x"]:
            for k in (None, key):
                with self.subTest(path=path, key=bool(k)):
                    self.assertError(self.call("GET", path, k), 404)

    def test_the_app_page_and_its_files(self):
        """/ redirects to the page; the page and its files carry a CSP with no inline script
        and no framing; only GET; GET /v2/me names the key's role and organisations."""
        r = self.call("GET", "/")
        self.assertEqual(r.status, 302)
        self.assertEqual(r.headers["Location"], "/settings/integrations/webhooks")
        for path, kind in [("/settings/integrations/webhooks", "text/html"),
                           ("/assets/app.js", "text/javascript"), ("/assets/app.css", "text/css")]:
            with self.subTest(path=path):
                r = self.call("GET", path)
                self.assertEqual(r.status, 200)
                self.assertTrue(r.headers["Content-Type"].startswith(kind), r.headers)
                csp = r.headers["Content-Security-Policy"]
                self.assertIn("script-src 'self'", csp)
                self.assertIn("frame-ancestors 'none'", csp)
                self.assertNotIn("unsafe-inline", csp)
                self.assertEqual(r.headers["X-Content-Type-Options"], "nosniff")
        self.assertError(self.call("POST", "/settings/integrations/webhooks", body={}), 405)
        self.assertError(self.call("GET", "/v2/me"), 401)
        org = self.new_org()
        r = self.call("GET", "/v2/me", self.admin_key(org))
        self.assertEqual(r.body, {"role": "ORG_ADMIN", "org_ids": [org]})
        r = self.call("GET", "/v2/me", apikey(self.data, "PROVIDER", orgs=[org + 1, org]))
        self.assertEqual(r.body, {"role": "PROVIDER", "org_ids": [org, org + 1]})
        r = self.call("GET", "/v2/me", apikey(self.data, "INGEST"))
        self.assertEqual(r.body, {"role": "INGEST", "org_ids": []})

    def test_bad_and_unknown_ids_are_404(self):
        """Ids that are not positive integers, too large, or unknown: 404 on every method."""
        key = self.admin_key(self.new_org())
        for wid in ["abc", "0", "-1", "99999999999999999999", "1.0", "1e3", "%31", "999999999"]:
            for method, body in [("GET", None), ("PUT", {}), ("PATCH", {}), ("DELETE", None)]:
                with self.subTest(id=wid, method=method):
                    r = self.call(method, f"/v2/webhooks/{wid}", key, body)
                    self.assertError(r, 404)

    def test_405_with_allow(self):
        """A known path with another method is 405 with an Allow header listing the methods."""
        key = self.admin_key(self.new_org())
        wid = self.create_ok(key, [item()])[0]["id"]
        cases = [("DELETE", "/v2/webhooks", {"GET", "POST"}),
                 ("PUT", "/v2/webhooks", {"GET", "POST"}),
                 ("POST", f"/v2/webhooks/{wid}", {"GET", "PUT", "PATCH", "DELETE"}),
                 ("PUT", "/v2/webhooks/events", {"GET"}),
                 ("POST", "/v2/webhooks/events", {"GET"}),
                 ("GET", "/v2/webhooks/tryout", {"POST"}),
                 ("GET", "/v2/events", {"POST"}),
                 ("DELETE", "/v2/events", {"POST"}),
                 ("POST", "/healthz", {"GET"}),
                 ("DELETE", "/metrics", {"GET"})]
        self.assert405WithAllow(key, cases)
        self.assertStatus(self.get(key, wid), 200, "the 405 POST must not change anything")


# ------------------------------------------------------------------------------------------
class HealthAndMetricsTest(ApiCase):
    """/healthz and /metrics need no key."""

    FAMILIES = {"fanout_events_published_total": "counter",
                "fanout_events_refused_total": "counter",
                "fanout_outcomes_total": "counter",
                "fanout_attempts_total": "counter",
                "fanout_in_flight": "gauge",
                "fanout_waiting_retries": "gauge",
                "fanout_waiting_retry_bytes": "gauge",
                "fanout_connections": "gauge",
                "fanout_delivery_latency_seconds": "histogram",
                "fanout_api_requests_total": "counter",
                "fanout_subscriptions": "gauge"}

    def test_healthz(self):
        """GET /healthz → 200 {"status":"ok"}."""
        r = self.call("GET", "/healthz")
        self.assertStatus(r, 200)
        self.assertEqual(r.body, {"status": "ok"})
        self.assertTrue(r.headers.get("Content-Type", "").startswith("application/json"))

    def test_metrics_families(self):
        """Every family of the README's table is declared with its type; API requests are
        counted by route pattern (never the raw id)."""
        key = self.admin_key(self.new_org())
        wid = self.create_ok(key, [item()])[0]["id"]
        self.assertStatus(self.get(key, wid), 200)
        self.assertError(self.get(key, 987654321), 404)
        r = self.call("GET", "/metrics")
        self.assertStatus(r, 200)
        self.assertTrue(r.headers.get("Content-Type", "").startswith("text/plain"), r.headers)
        m = harness.Metrics(r.raw.decode())
        for family, kind in self.FAMILIES.items():
            self.assertEqual(m.types.get(family), kind, f"# TYPE {family} {kind}")
        self.assertGreaterEqual(m.value("fanout_api_requests_total", method="POST",
                                        route="/v2/webhooks", status="200"), 1)
        self.assertGreaterEqual(m.value("fanout_api_requests_total", method="GET",
                                        route="/v2/webhooks/{id}", status="200"), 1)
        self.assertGreaterEqual(m.value("fanout_api_requests_total", method="GET",
                                        route="/v2/webhooks/{id}", status="404"), 1)
        for labels, _ in m.samples("fanout_api_requests_total"):
            self.assertNotRegex(labels.get("route", ""), r"/\d+", labels)
        self.assertGreaterEqual(m.value("fanout_subscriptions"), 1)
        self.assertTrue(m.samples("fanout_delivery_latency_seconds_bucket"))
        self.assertIn(harness.metric_key("fanout_delivery_latency_seconds_bucket", le="+Inf"),
                      m)


# ------------------------------------------------------------------------------------------
class Http2Test(ApiCase):
    """The same API over HTTP/2 with prior knowledge (h2c), through curl."""

    def h2(self, method, path, key=None, body=None, **kw):
        r = curl_h2(self.daemon.port, method, path, key, body, workdir=self.tmp, **kw)
        self.assertEqual(r.http_version, "2", "curl must have used HTTP/2")
        return r

    def test_crud_over_h2(self):
        """list, create, get, patch, delete, and the errors 401/404/405/415 over h2c."""
        org = self.new_org()
        key = self.admin_key(org)
        r = self.h2("GET", "/v2/webhooks", key)
        self.assertStatus(r, 200)
        self.assertEqual(r.body["count"], 0)
        url = next_url()
        r = self.h2("POST", "/v2/webhooks", key, {"items": [item("lead_received", url,
                                                                  {"X-T": "1"})]})
        self.assertStatus(r, 200)
        cfg = r.body["items"][0]
        self.assertConfig(cfg, org, "lead_received", url, {"X-T": "1"})
        r = self.h2("GET", f"/v2/webhooks/{cfg['id']}", key)
        self.assertStatus(r, 200)
        self.assertEqual(r.body, cfg)
        r = self.h2("PATCH", f"/v2/webhooks/{cfg['id']}", key, {"custom_headers": None})
        self.assertStatus(r, 200)
        self.assertEqual(r.body["custom_headers"], {})
        r = self.h2("GET", "/v2/webhooks?per_page=1", key)
        self.assertEqual([c["id"] for c in r.body["items"]], [cfg["id"]])
        r = self.h2("DELETE", f"/v2/webhooks/{cfg['id']}", key)
        self.assertStatus(r, 204)
        self.assertError(self.h2("GET", f"/v2/webhooks/{cfg['id']}", key), 404)
        self.assertError(self.h2("GET", "/v2/webhooks"), 401)
        self.assertError(self.h2("GET", "/nowhere", key), 404)
        self.assertError(self.h2("DELETE", "/v2/webhooks", key), 405)
        self.assertError(self.h2("POST", "/v2/webhooks", key, "x", content_type="text/plain"),
                         415)
        self.assertFieldError(self.h2("POST", "/v2/webhooks", key, {"items": []}), "items")
        r = self.h2("GET", "/healthz")
        self.assertEqual((r.status, r.body), (200, {"status": "ok"}))


if __name__ == "__main__":
    harness.main()
