#!/usr/bin/env python3
"""fanoutd's webhook routes: create, update, delete, list (tools/fanoutd/README.md, "HTTP API";
tools/fanoutd/api_webhooks.cc), with Partoo's validation rules, error by error.

Run: python3 api_webhooks_test.py
         --fanoutd build/X/tools/fanoutd/fanoutd --sink build/X/tools/fanout-sink
         [unittest arguments, e.g. -k pagination]

Tests share one daemon per class and keep apart by using organisations of their own. Webhook
URLs point at 127.0.0.1 and are never contacted (no event is ingested for those organisations).
"""

import json
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
import harness  # noqa: E402
from harness import PARTOO_TYPES
from api_case import ALL_TYPES, ApiCase, item, next_url

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


if __name__ == "__main__":
    harness.main()
