"""What the API tests share (api_test.py, api_limits_test.py, api_webhooks_test.py,
api_tryout_test.py, and api_history_test.py and api_history_resend_test.py through
api_history_case.py): the daemon's configuration with 31 extra event types, the shapes of a
config and a tryout result, create items, and ApiCase, helpers over a shared daemon's API."""

import itertools
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
from harness import PARTOO_TYPES, TIMESTAMP_RE, SharedDaemonCase

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

    def assert405WithAllow(self, key, cases, exact=False):
        """Each (method, path, allowed) answers 405, with and without `key`, its Allow header
        naming the allowed methods (all of them with `exact`, at least them otherwise) and never
        the method itself."""
        for method, path, allowed in cases:
            for k in (key, None):
                with self.subTest(method=method, path=path, key=bool(k)):
                    body = {} if method in ("POST", "PUT", "PATCH") else None
                    r = self.call(method, path, k, body)
                    self.assertError(r, 405)
                    allow = {m.strip().upper() for m in r.headers.get("Allow", "").split(",")}
                    if exact:
                        self.assertEqual(allowed, allow, f"Allow: {r.headers.get('Allow')!r}")
                    else:
                        self.assertTrue(allowed <= allow, f"Allow: {r.headers.get('Allow')!r}")
                    self.assertNotIn(method, allow)

    def assertNothingCreated(self, key, query=""):
        self.assertEqual(self.list_ids(key, query), [], "the refused call must create nothing")
