#!/usr/bin/env python3
"""fanoutd's HTTP API, route by route and error by error (tools/fanoutd/README.md, "HTTP API").

Run: python3 api_test.py --fanoutd build/X/tools/fanoutd/fanoutd --sink build/X/tools/fanout-sink
     [unittest arguments, e.g. -k pagination]

Most tests share one daemon per class and keep apart by using organisations of their own.
Webhook URLs point at 127.0.0.1 (nothing is delivered to them: no event is ingested for those
organisations), except the tryout tests, which use a fanout-sink.
"""

import itertools
import json
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
import harness  # noqa: E402
from harness import (PARTOO_TYPES, TIMESTAMP_RE, FanoutdTestCase, SharedDaemonCase, apikey,
                     apikey_id, apikey_revoke, closed_port, curl_h2)

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

    def test_revoked_key_is_401_at_once(self):
        """`fanoutd apikey revoke` while the daemon runs takes effect on the next request."""
        org = self.new_org()
        name = f"revoke-me-{org}"
        key = apikey(self.data, "ORG_ADMIN", org=org, name=name)
        self.assertStatus(self.listing(key), 200)
        apikey_revoke(self.data, apikey_id(self.data, name))
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

    # -- custom headers (contract.md §1) -----------------------------------------------

    def assertHeadersRefused(self, key, headers, rule):
        r = self.create(key, [item(headers=headers)])
        self.assertRuleError(r, "items.0.custom_headers", rule, f"headers={headers!r}")

    def test_custom_header_rules(self):
        """Every rule of contract.md §1 refuses the create with its rule code."""
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
        for path in ["/", "/v2", "/v2/", "/v2/webhook", "/v3/webhooks", "/v2/webhooks/1/x",
                     "/v2/webhooks/events/x", "/v2/event", "/v2/events/1", "/healthz/x",
                     "/V2/WEBHOOKS", "/metrics/x"]:
            for k in (None, key):
                with self.subTest(path=path, key=bool(k)):
                    self.assertError(self.call("GET", path, k), 404)

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
        r = self.call("PATCH", f"/v2/webhooks/{cfg['id']}", key, {"url": "http://127.0.0.1:1/x"})
        self.assertStatus(r, 200)
        self.assertEqual(r.body["url"], "http://127.0.0.1:1/x")

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


if __name__ == "__main__":
    harness.main()
