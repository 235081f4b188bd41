#!/usr/bin/env python3
"""fanoutd's HTTP API, route by route and error by error (tools/fanoutd/README.md, "HTTP API").

Run: python3 api_test.py --fanoutd build/X/tools/fanoutd/fanoutd --sink build/X/tools/fanout-sink
     [unittest arguments, e.g. -k pagination]

Most tests share one daemon per class and keep apart by using organisations of their own.
Webhook URLs point at 127.0.0.1 (nothing is delivered to them: no event is ingested for those
organisations), except the tryout tests and the delivery history tests (history, resend,
recover), which use fanout-sinks (`--plan` for a known answer per event and attempt).
"""

import itertools
import json
import sys
import time
import urllib.parse

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
import harness  # noqa: E402
from harness import (PARTOO_TYPES, TIMESTAMP_RE, FanoutdTestCase, SharedDaemonCase, apikey,
                     apikey_id, apikey_revoke, closed_port, curl_h2, wait_until)

# 31 extra types (37 in all): enough for 31 subscriptions in one organisation, which the
# default page size (30) needs, and for the pagination test's 7.
EXTRA_TYPES = ["invoice_paid"] + [f"ext_type_{i:02d}" for i in range(1, 31)]
ALL_TYPES = PARTOO_TYPES + EXTRA_TYPES

CONFIG = (
    "event_types = [" + ", ".join(f'"{t}"' for t in EXTRA_TYPES) + "]\n"
    "[api]\n"
    "rate_limit_per_minute = 1000000\n"
)

CONFIG_KEYS = {"id", "org_id", "event_type", "url", "custom_headers", "created_at", "updated_at"}
TRYOUT_KEYS = {"url", "event_type", "success", "status_code", "duration_ms", "error"}

_urls = itertools.count(1)


def next_url():
    """A distinct https URL on loopback (never contacted by these tests)."""
    return f"https://127.0.0.1/hooks/{next(_urls)}"


def item(event_type="business_created", url=None, headers=None, **extra):
    """One create item; `headers` becomes custom_headers when given."""
    d = {"url": url if url is not None else next_url(), "event_type": event_type}
    if headers is not None:
        d["custom_headers"] = headers
    d.update(extra)
    return d


class ApiCase(SharedDaemonCase):
    """Helpers over the shared daemon's API."""

    config = CONFIG

    def call(self, method, path, key=None, body=None, **kw):
        return self.daemon.http(method, path, key=key, body=body, **kw)

    def create(self, key, items, query=""):
        return self.call("POST", "/v2/webhooks" + query, key, {"items": items})

    def create_ok(self, key, items, query=""):
        r = self.create(key, items, query)
        self.assertStatus(r, 200, "create")
        self.assertEqual(set(r.body), {"items"}, r.body)
        self.assertEqual(len(r.body["items"]), len(items), r.body)
        return r.body["items"]

    def listing(self, key, query=""):
        return self.call("GET", "/v2/webhooks" + query, key)

    def list_ids(self, key, query=""):
        """Ids of every subscription the key sees (one page of 100)."""
        r = self.listing(key, (query + "&" if query else "?") + "per_page=100")
        self.assertStatus(r, 200, "list")
        return [c["id"] for c in r.body["items"]]

    def get(self, key, wid, query=""):
        return self.call("GET", f"/v2/webhooks/{wid}{query}", key)

    def assertConfig(self, cfg, org, event_type, url, headers=None):
        """`cfg` is a config of the README's shape with these values."""
        self.assertIsInstance(cfg, dict, cfg)
        self.assertEqual(set(cfg), CONFIG_KEYS, cfg)
        self.assertIsInstance(cfg["id"], int)
        self.assertGreater(cfg["id"], 0)
        self.assertEqual(cfg["org_id"], org)
        self.assertEqual(cfg["event_type"], event_type)
        self.assertEqual(cfg["url"], url)
        self.assertEqual(cfg["custom_headers"], headers or {})
        for field in ("created_at", "updated_at"):
            self.assertRegex(cfg[field], TIMESTAMP_RE, f"{field} of {cfg}")

    def assertNothingCreated(self, key, query=""):
        self.assertEqual(self.list_ids(key, query), [], "the refused call must create nothing")


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
class CreateTest(ApiCase):
    """POST /v2/webhooks: shape, all-or-nothing, uniqueness, body validation."""

    def test_success_shape(self):
        """200 {"items":[config...]}: ids in item order, values as given, custom_headers {}
        when none, created_at == updated_at in ISO 8601 with microseconds and Z."""
        org = self.new_org()
        key = self.admin_key(org)
        u1, u2 = next_url() + "?token=abc", next_url()
        r = self.create(key, [item("business_updated", u1, {"X-Token": "s3cr3t", "x-b": "2"}),
                              item("lead_received", u2)])
        self.assertStatus(r, 200)
        self.assertTrue(r.headers.get("Content-Type", "").startswith("application/json"))
        a, b = r.body["items"]
        self.assertConfig(a, org, "business_updated", u1, {"X-Token": "s3cr3t", "x-b": "2"})
        self.assertConfig(b, org, "lead_received", u2)
        self.assertLess(a["id"], b["id"])
        for cfg in (a, b):
            self.assertEqual(cfg["created_at"], cfg["updated_at"])
            got = self.get(key, cfg["id"])
            self.assertStatus(got, 200)
            self.assertEqual(got.body, cfg)
        self.assertEqual(self.list_ids(key), [a["id"], b["id"]])

    def test_charset_parameter_is_accepted(self):
        """Content-Type: application/json; charset=utf-8 is application/json."""
        key = self.admin_key(self.new_org())
        r = self.call("POST", "/v2/webhooks", key, {"items": [item()]},
                      content_type="application/json; charset=utf-8")
        self.assertStatus(r, 200)

    def test_all_or_nothing(self):
        """One invalid item among valid ones refuses the whole call: nothing is created."""
        key = self.admin_key(self.new_org())
        r = self.create(key, [item("business_created"), item("business_updated", "ftp://x/"),
                              item("lead_received")])
        self.assertRuleError(r, "items.1.url", "url_bad_scheme")
        self.assertNotIn("items.0.url", r.body["error"]["json"])
        self.assertNothingCreated(key)

    def test_every_invalid_item_is_reported(self):
        """Errors are per field: two bad items give two keys."""
        key = self.admin_key(self.new_org())
        r = self.create(key, [item("nope"), item("lead_received", ""), item("business_created")])
        self.assertRuleError(r, "items.0.event_type", "event_type_unknown")
        self.assertRuleError(r, "items.1.url", "url_empty")
        self.assertNothingCreated(key)

    def test_duplicate_of_existing_pair(self):
        """A pair that has a subscription: 400 on items.N.event_type naming the rule
        duplicate and the existing id, whatever the URL; the batch creates nothing."""
        key = self.admin_key(self.new_org())
        existing = self.create_ok(key, [item("business_created")])[0]
        r = self.create(key, [item("message_created"), item("business_created", next_url())])
        msg = self.assertFieldError(r, "items.1.event_type", "duplicate")
        self.assertIn(str(existing["id"]), msg)
        self.assertEqual(self.list_ids(key), [existing["id"]])

    def test_duplicate_within_batch(self):
        """The same pair twice in one batch: 400 on the second item's event_type."""
        key = self.admin_key(self.new_org())
        r = self.create(key, [item("message_updated"), item("lead_received"),
                              item("message_updated")])
        self.assertFieldError(r, "items.2.event_type", "duplicate")
        self.assertNothingCreated(key)

    def test_same_event_type_in_two_orgs(self):
        """Uniqueness is per organisation: two orgs may subscribe to the same type and URL."""
        url = next_url()
        a = self.create_ok(self.admin_key(self.new_org()), [item("business_created", url)])
        b = self.create_ok(self.admin_key(self.new_org()), [item("business_created", url)])
        self.assertNotEqual(a[0]["id"], b[0]["id"])

    def test_item_count(self):
        """items: missing, empty and over 100 are 400 on items."""
        key = self.admin_key(self.new_org())
        self.assertFieldError(self.call("POST", "/v2/webhooks", key, {}), "items")
        self.assertFieldError(self.create(key, []), "items")
        many = [item(ALL_TYPES[i % len(ALL_TYPES)]) for i in range(101)]
        self.assertFieldError(self.create(key, many), "items")
        self.assertNothingCreated(key)

    def test_items_not_an_array(self):
        """items must be an array."""
        key = self.admin_key(self.new_org())
        for bad in [{}, "x", 1, True, None]:
            with self.subTest(items=bad):
                r = self.call("POST", "/v2/webhooks", key, {"items": bad})
                # null may read as "missing": only the field is checked for it
                self.assertFieldError(r, "items", "must be an array" if bad is not None else None)

    def test_item_not_an_object(self):
        """An item that is not an object: 400 on items.N, "must be an object"."""
        key = self.admin_key(self.new_org())
        for bad in [1, "x", [], None]:
            with self.subTest(item=bad):
                r = self.create(key, [item(), bad])
                self.assertFieldError(r, "items.1", "must be an object")
        self.assertNothingCreated(key)

    def test_unknown_fields(self):
        """Unknown fields: items.N.<field> in an item, <field> at the top; "Unknown field."."""
        key = self.admin_key(self.new_org())
        r = self.create(key, [item(), item("lead_received", secret="x")])
        self.assertEqual(self.assertFieldError(r, "items.1.secret"), "Unknown field.")
        r = self.call("POST", "/v2/webhooks", key, {"items": [item()], "extra": 1})
        self.assertEqual(self.assertFieldError(r, "extra"), "Unknown field.")
        r = self.create(key, [item(id=5)])
        self.assertEqual(self.assertFieldError(r, "items.0.id"), "Unknown field.")
        self.assertNothingCreated(key)

    def test_wrong_types(self):
        """url / event_type not strings, custom_headers not an object, a header value not a
        string: 400 on that field with the type message."""
        key = self.admin_key(self.new_org())
        cases = [({"url": 5, "event_type": "business_created"}, "items.0.url",
                  "must be a string"),
                 ({"url": next_url(), "event_type": 7}, "items.0.event_type",
                  "must be a string"),
                 ({"url": next_url(), "event_type": "business_created", "custom_headers": []},
                  "items.0.custom_headers", "must be an object"),
                 ({"url": next_url(), "event_type": "business_created",
                   "custom_headers": "X-A: b"}, "items.0.custom_headers", "must be an object"),
                 ({"url": next_url(), "event_type": "business_created",
                   "custom_headers": {"X-A": 5}}, "items.0.custom_headers",
                  "must be a string")]
        for body_item, field, message in cases:
            with self.subTest(item=body_item):
                self.assertFieldError(self.create(key, [body_item]), field, message)
        self.assertNothingCreated(key)

    def test_missing_required_fields(self):
        """url and event_type are required."""
        key = self.admin_key(self.new_org())
        self.assertFieldError(self.create(key, [{"event_type": "business_created"}]),
                              "items.0.url")
        self.assertFieldError(self.create(key, [{"url": next_url()}]), "items.0.event_type")
        self.assertNothingCreated(key)

    def test_unknown_event_type(self):
        """An event_type outside the catalogue: [event_type_unknown]."""
        key = self.admin_key(self.new_org())
        for bad in ["business_exploded", "BUSINESS_CREATED", ""]:
            with self.subTest(event_type=bad):
                self.assertRuleError(self.create(key, [item(bad)]), "items.0.event_type",
                                     "event_type_unknown")

    def test_extension_event_type_is_accepted(self):
        """A type added by `event_types` in the configuration can be subscribed to."""
        org = self.new_org()
        key = self.admin_key(org)
        url = next_url()
        cfg = self.create_ok(key, [item("invoice_paid", url)])[0]
        self.assertConfig(cfg, org, "invoice_paid", url)

    # -- custom headers (docs/webhook-contract.md §1) ------------------------------

    def assertHeadersRefused(self, key, headers, rule):
        r = self.create(key, [item(headers=headers)])
        self.assertRuleError(r, "items.0.custom_headers", rule, f"headers={headers!r}")

    def test_custom_header_rules(self):
        """Every rule of docs/webhook-contract.md §1 refuses the create with its rule code."""
        key = self.admin_key(self.new_org())
        six = {f"X-H{i}": "v" for i in range(6)}
        self.assertHeadersRefused(key, six, "headers_too_many")
        self.assertHeadersRefused(key, {"Authorization": "x"}, "header_key_no_x_prefix")
        self.assertHeadersRefused(key, {"Token": "x"}, "header_key_no_x_prefix")
        for reserved in ("X-Partoo-Foo", "x-partoo-signature-v1", "X-PARTOO"):
            self.assertHeadersRefused(key, {reserved: "x"}, "header_key_reserved_prefix")
        self.assertHeadersRefused(key, {"X-" + "a" * 127: "x"}, "header_key_too_long")
        self.assertHeadersRefused(key, {"X-A": "v" * 513}, "header_value_too_long")
        for ch in ' ()<>@,;:\\"/[]?={}':
            self.assertHeadersRefused(key, {f"X-A{ch}b": "x"}, "header_key_forbidden_char")
        self.assertHeadersRefused(key, {"X-Token": "a", "x-token": "b"}, "header_key_duplicate")
        self.assertHeadersRefused(key, {"": "x"}, "header_key_empty")
        self.assertHeadersRefused(key, {"X-A\x01": "x"}, "header_key_control_char")
        self.assertHeadersRefused(key, {"X-\u00e9": "x"}, "header_key_non_ascii")
        self.assertHeadersRefused(key, {"X-A": "a\nb"}, "header_value_control_char")
        self.assertHeadersRefused(key, {"X-A": "a\x7fb"}, "header_value_control_char")
        self.assertHeadersRefused(key, {"X-A": " padded"}, "header_value_edge_space")
        self.assertNothingCreated(key)

    def test_custom_header_limits_are_inclusive(self):
        """5 headers, a 128-character key, a 512-character value (code points) are fine."""
        org = self.new_org()
        key = self.admin_key(org)
        cases = [{f"X-H{i}": "v" for i in range(5)},
                 {"X-" + "k" * 126: "v"},
                 {"X-A": "v" * 512},
                 {"X-A": "\u00e9" * 512},
                 {"x-lower": "MiXeD case value with spaces inside"}]
        for event_type, headers in zip(ALL_TYPES, cases):
            with self.subTest(headers=list(headers)[:2]):
                url = next_url()
                cfg = self.create_ok(key, [item(event_type, url, headers)])[0]
                self.assertConfig(cfg, org, event_type, url, headers)

    # -- URL rules -------------------------------------------------------------------------

    def test_url_rules(self):
        """Each URL rule refuses the create on items.0.url with its rule code."""
        key = self.admin_key(self.new_org())
        cases = [("", "url_empty"),
                 ("ftp://a.example/f", "url_bad_scheme"),
                 ("https://user:pw@a.example/", "url_user_info"),
                 ("https:///path", "url_no_host"),
                 ("https://a.example/" + "p" * 2048, "url_too_long"),
                 ("https://a.example/p q", "url_bad_character"),
                 ("https://a.example/h#top", "url_fragment"),
                 ("https://a.example:0/", "url_bad_port"),
                 ("https://a.example:65536/", "url_bad_port"),
                 ("hooks.example.com/x", "url_malformed"),
                 ("https://hooks_crm.example/", "url_bad_host")]
        for url, rule in cases:
            with self.subTest(url=url[:40]):
                self.assertRuleError(self.create(key, [item(url=url)]), "items.0.url", rule)
        self.assertNothingCreated(key)

    def test_http_url_accepted_in_insecure_mode(self):
        """This daemon runs with --insecure: http:// URLs are accepted."""
        org = self.new_org()
        url = "http://127.0.0.1:8080/hook"
        cfg = self.create_ok(self.admin_key(org), [item(url=url)])[0]
        self.assertConfig(cfg, org, "business_created", url)

    # -- the body as a whole ---------------------------------------------------------------

    def test_body_not_json_or_not_an_object(self):
        """Not JSON, JSON that is not an object, an empty body, a duplicate key: _schema."""
        key = self.admin_key(self.new_org())
        good = json.dumps({"items": [item()]})
        for raw in [b"{", b"[1]", b"", b"null", b'"items"', b"42", good.encode() + b" x",
                    b'{"items":[],"items":[]}', b'{"items":["\xff"]}', good.encode()[:-1]]:
            with self.subTest(body=raw[:40]):
                self.assertFieldError(self.call("POST", "/v2/webhooks", key, raw), "_schema")
        self.assertNothingCreated(key)

    def test_415_for_other_content_types(self):
        """A body whose Content-Type is not application/json (or is missing) is 415."""
        key = self.admin_key(self.new_org())
        body = {"items": [item()]}
        for ctype in ["text/plain", "application/x-www-form-urlencoded",
                      "application/x-ndjson", "application/jsonx", None]:
            with self.subTest(content_type=ctype):
                r = self.call("POST", "/v2/webhooks", key, body, content_type=ctype)
                self.assertError(r, 415)
                self.assertEqual(r.body["error"]["json"],
                                 "Content-Type must be application/json")
        self.assertNothingCreated(key)


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
        for method, path, allowed in cases:
            for k in (key, None):
                with self.subTest(method=method, path=path, key=bool(k)):
                    body = {} if method in ("POST", "PUT", "PATCH") else None
                    r = self.call(method, path, k, body)
                    self.assertError(r, 405)
                    allow = {m.strip().upper() for m in r.headers.get("Allow", "").split(",")}
                    self.assertTrue(allowed <= allow, f"Allow: {r.headers.get('Allow')!r}")
                    self.assertNotIn(method, allow)
        self.assertStatus(self.get(key, wid), 200, "the 405 POST must not change anything")


# ------------------------------------------------------------------------------------------
class UpdateDeleteTest(ApiCase):
    """GET/PUT/PATCH/DELETE /v2/webhooks/{id}."""

    def _one(self, headers=None, event_type="business_created"):
        org = self.new_org()
        key = self.admin_key(org)
        cfg = self.create_ok(key, [item(event_type, headers=headers)])[0]
        return org, key, cfg

    def test_url_only_keeps_headers(self):
        """PUT and PATCH with url only: url changes, headers and event_type stay, created_at
        stays, updated_at moves; GET shows the same."""
        for method in ("PUT", "PATCH"):
            with self.subTest(method=method):
                org, key, cfg = self._one({"X-Token": "t", "X-Other": "o"})
                url = next_url()
                r = self.call(method, f"/v2/webhooks/{cfg['id']}", key, {"url": url})
                self.assertStatus(r, 200)
                new = r.body
                self.assertConfig(new, org, "business_created", url,
                                  {"X-Token": "t", "X-Other": "o"})
                self.assertEqual(new["id"], cfg["id"])
                self.assertEqual(new["created_at"], cfg["created_at"])
                self.assertNotEqual(new["updated_at"], cfg["updated_at"])
                self.assertGreater(new["updated_at"], cfg["updated_at"])
                self.assertEqual(self.get(key, cfg["id"]).body, new)

    def test_headers_cleared_by_empty_object_or_null(self):
        """custom_headers {} and null clear the headers; the url stays."""
        for cleared in ({}, None):
            with self.subTest(custom_headers=cleared):
                org, key, cfg = self._one({"X-Token": "t"})
                r = self.call("PATCH", f"/v2/webhooks/{cfg['id']}", key,
                              {"custom_headers": cleared})
                self.assertStatus(r, 200)
                self.assertConfig(r.body, org, "business_created", cfg["url"], {})
                self.assertEqual(self.get(key, cfg["id"]).body["custom_headers"], {})

    def test_headers_replaced_not_merged(self):
        """New custom_headers replace the old set."""
        org, key, cfg = self._one({"X-Old": "o"})
        r = self.call("PUT", f"/v2/webhooks/{cfg['id']}", key, {"custom_headers": {"X-New": "n"}})
        self.assertStatus(r, 200)
        self.assertEqual(r.body["custom_headers"], {"X-New": "n"})
        self.assertEqual(r.body["url"], cfg["url"])

    def test_event_type_may_only_repeat_its_value(self):
        """event_type with the current value is accepted; another value is 400
        "cannot be changed" and changes nothing."""
        org, key, cfg = self._one(event_type="message_created")
        r = self.call("PATCH", f"/v2/webhooks/{cfg['id']}", key, {"event_type": "message_created"})
        self.assertStatus(r, 200)
        self.assertEqual(r.body["event_type"], "message_created")
        r = self.call("PATCH", f"/v2/webhooks/{cfg['id']}", key,
                      {"event_type": "message_updated", "url": next_url()})
        self.assertFieldError(r, "event_type", "cannot be changed")
        r = self.call("PUT", f"/v2/webhooks/{cfg['id']}", key, {"event_type": "nope"})
        self.assertFieldError(r, "event_type")
        self.assertEqual(self.get(key, cfg["id"]).body, cfg)

    def test_no_change_keeps_updated_at(self):
        """An empty body, the same url, the same headers: 200 and updated_at does not move."""
        org, key, cfg = self._one({"X-Token": "t"})
        for body in ({}, {"url": cfg["url"]}, {"custom_headers": {"X-Token": "t"}},
                     {"url": cfg["url"], "event_type": cfg["event_type"]}):
            for method in ("PUT", "PATCH"):
                with self.subTest(method=method, body=body):
                    r = self.call(method, f"/v2/webhooks/{cfg['id']}", key, body)
                    self.assertStatus(r, 200)
                    self.assertEqual(r.body, cfg)

    def test_update_errors_change_nothing(self):
        """Invalid url, headers, types, unknown fields, bad JSON: 400 on the field, and the
        subscription is unchanged."""
        org, key, cfg = self._one({"X-Token": "t"})
        path = f"/v2/webhooks/{cfg['id']}"
        checks = [({"url": "ftp://x/"}, "url", "[url_bad_scheme]"),
                  ({"url": ""}, "url", "[url_empty]"),
                  ({"url": 5}, "url", "must be a string"),
                  ({"url": None}, "url", None),
                  ({"custom_headers": {"Authorization": "x"}}, "custom_headers",
                   "[header_key_no_x_prefix]"),
                  ({"custom_headers": []}, "custom_headers", "must be an object"),
                  ({"custom_headers": {"X-A": 1}}, "custom_headers", "must be a string"),
                  ({"url": next_url(), "secret": 1}, "secret", "Unknown field."),
                  ({"items": [item()]}, "items", "Unknown field."),
                  ({"event_type": 3}, "event_type", None)]
        for body, field, contains in checks:
            for method in ("PUT", "PATCH"):
                with self.subTest(method=method, body=body):
                    self.assertFieldError(self.call(method, path, key, body), field, contains)
        for raw in [b"{", b"[]", b"", b"null", b'{"url":"https://a.example/","url":"x"}']:
            with self.subTest(raw=raw):
                self.assertFieldError(self.call("PATCH", path, key, raw), "_schema")
        for ctype in ("text/plain", None):
            self.assertError(self.call("PUT", path, key, {"url": next_url()}, content_type=ctype),
                             415)
        self.assertEqual(self.get(key, cfg["id"]).body, cfg)

    def test_update_url_rules_follow_insecure_mode(self):
        """This daemon is --insecure: an http:// URL is accepted by update too."""
        org, key, cfg = self._one()
        r = self.call("PATCH", f"/v2/webhooks/{cfg['id']}", key, {"url": "http://127.0.0.1:1024/x"})
        self.assertStatus(r, 200)
        self.assertEqual(r.body["url"], "http://127.0.0.1:1024/x")

    def test_delete(self):
        """DELETE → 204 with no body; then GET → 404, a second DELETE → 404, the list no
        longer has it, and the pair may be created again (with a bigger id)."""
        org, key, cfg = self._one()
        r = self.call("DELETE", f"/v2/webhooks/{cfg['id']}", key)
        self.assertStatus(r, 204)
        self.assertEqual(r.raw, b"")
        self.assertError(self.get(key, cfg["id"]), 404)
        self.assertError(self.call("DELETE", f"/v2/webhooks/{cfg['id']}", key), 404)
        self.assertError(self.call("PATCH", f"/v2/webhooks/{cfg['id']}", key, {}), 404)
        self.assertEqual(self.list_ids(key), [])
        again = self.create_ok(key, [item("business_created")])[0]
        self.assertGreater(again["id"], cfg["id"])

    def test_ids_never_reused(self):
        """create, delete, create: the new id is bigger than every id before."""
        key = self.admin_key(self.new_org())
        first = self.create_ok(key, [item("business_created"), item("lead_received")])
        for cfg in first:
            self.assertStatus(self.call("DELETE", f"/v2/webhooks/{cfg['id']}", key), 204)
        second = self.create_ok(key, [item("business_created")])[0]
        self.assertGreater(second["id"], max(c["id"] for c in first))


# ------------------------------------------------------------------------------------------
class ListTest(ApiCase):
    """GET /v2/webhooks pagination and GET /v2/webhooks/events."""

    def test_event_catalogue(self):
        """The six Partoo types plus the configured extensions, each once, as strings."""
        key = self.admin_key(self.new_org())
        r = self.call("GET", "/v2/webhooks/events", key)
        self.assertStatus(r, 200)
        self.assertIsInstance(r.body, list)
        self.assertEqual(sorted(r.body), sorted(ALL_TYPES))
        self.assertEqual(len(r.body), len(set(r.body)))
        self.assertEqual(r.body[:6], PARTOO_TYPES, "catalogue order: Partoo's six first")

    def test_empty_list(self):
        """No subscription: page 1, max_page 1, count 0, no items."""
        key = self.admin_key(self.new_org())
        r = self.listing(key)
        self.assertStatus(r, 200)
        self.assertEqual(r.body, {"page": 1, "max_page": 1, "count": 0, "items": []})

    def test_pagination(self):
        """7 subscriptions, per_page=3: pages of 3, 3, 1 ordered by id, max_page 3, count 7;
        page 4 is 200 with no items; per_page=100 gives all 7."""
        org = self.new_org()
        key = self.admin_key(org)
        created = self.create_ok(key, [item(t) for t in PARTOO_TYPES + ["invoice_paid"]])
        ids = sorted(c["id"] for c in created)
        by_id = {c["id"]: c for c in created}
        seen = []
        for page, size in ((1, 3), (2, 3), (3, 1)):
            r = self.listing(key, f"?page={page}&per_page=3")
            self.assertStatus(r, 200)
            self.assertEqual({k: r.body[k] for k in ("page", "max_page", "count")},
                             {"page": page, "max_page": 3, "count": 7})
            self.assertEqual(len(r.body["items"]), size, f"page {page}")
            for cfg in r.body["items"]:
                self.assertEqual(cfg, by_id[cfg["id"]])
            seen += [c["id"] for c in r.body["items"]]
        self.assertEqual(seen, ids, "ordered by id across pages")
        r = self.listing(key, "?page=4&per_page=3")
        self.assertStatus(r, 200)
        self.assertEqual(r.body, {"page": 4, "max_page": 3, "count": 7, "items": []})
        r = self.listing(key, "?per_page=100")
        self.assertStatus(r, 200)
        self.assertEqual([c["id"] for c in r.body["items"]], ids)
        self.assertEqual((r.body["page"], r.body["max_page"]), (1, 1))
        r = self.listing(key, f"?per_page=7&org_id={org}&page=1")
        self.assertEqual((r.body["max_page"], len(r.body["items"])), (1, 7))

    def test_default_page_size_is_30(self):
        """31 subscriptions: the default page holds 30, max_page 2, page 2 holds the last."""
        key = self.admin_key(self.new_org())
        created = self.create_ok(key, [item(t) for t in ALL_TYPES[:31]])
        ids = sorted(c["id"] for c in created)
        r = self.listing(key)
        self.assertStatus(r, 200)
        self.assertEqual((r.body["page"], r.body["max_page"], r.body["count"]), (1, 2, 31))
        self.assertEqual([c["id"] for c in r.body["items"]], ids[:30])
        r = self.listing(key, "?page=2")
        self.assertEqual([c["id"] for c in r.body["items"]], ids[30:])

    def test_bad_page_and_per_page(self):
        """per_page outside 1..100 or not an integer, page < 1 or not an integer: 400."""
        key = self.admin_key(self.new_org())
        for bad in ["101", "0", "-1", "abc", "", "1.5", "1e2", "99999999999999999999"]:
            with self.subTest(per_page=bad):
                self.assertFieldError(self.listing(key, f"?per_page={bad}"), "per_page")
        for bad in ["0", "-1", "abc", "", "1.5"]:
            with self.subTest(page=bad):
                self.assertFieldError(self.listing(key, f"?page={bad}"), "page")
        self.assertStatus(self.listing(key, "?per_page=1&page=1000"), 200)

    def test_unknown_query_parameters(self):
        """A query parameter the route does not document: 400 naming it, "Unknown field."."""
        key = self.admin_key(self.new_org())
        wid = self.create_ok(key, [item()])[0]["id"]
        cases = [("GET", "/v2/webhooks?foo=1", "foo"),
                 ("GET", "/v2/webhooks?page=1&sort=id", "sort"),
                 ("POST", "/v2/webhooks?page=1", "page"),
                 ("GET", f"/v2/webhooks/{wid}?per_page=2", "per_page"),
                 ("PATCH", f"/v2/webhooks/{wid}?x=1", "x"),
                 ("DELETE", f"/v2/webhooks/{wid}?force=1", "force"),
                 ("GET", "/v2/webhooks/events?lang=fr", "lang"),
                 ("POST", "/v2/webhooks/tryout?dry=1", "dry")]
        for method, path, name in cases:
            with self.subTest(method=method, path=path):
                body = {"items": [item()]} if method == "POST" else {} if method == "PATCH" \
                    else None
                msg = self.assertFieldError(self.call(method, path, key, body), name)
                self.assertEqual(msg, "Unknown field.")
        self.assertEqual(self.list_ids(key), [wid], "refused calls change nothing")


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
        for method, path, allowed in cases:
            for k in (key, None):
                with self.subTest(method=method, path=path, key=bool(k)):
                    body = {} if method in ("POST", "PUT", "PATCH") else None
                    r = self.call(method, path, k, body)
                    self.assertError(r, 405)
                    allow = {m.strip().upper() for m in r.headers.get("Allow", "").split(",")}
                    self.assertEqual(allowed, allow, f"Allow: {r.headers.get('Allow')!r}")
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
