"""The requests fuzz_test.py sends: Fuzzer makes them from a seeded random.Random (bodies for
create, update, tryout and ingest, random bytes, queries, paths, headers, deep nesting, huge
numbers, keys of every role), and tryout_is_safe / ingest_is_safe tell which of them would make
the daemon contact anything but 127.0.0.1. TYPES needs the daemon's configuration to declare
invoice_paid, and some ingest payloads are meant to exceed its max_event_bytes (fuzz_test.py's
CONFIG: 4096)."""

import json
import re
import sys
import urllib.parse

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
import harness  # noqa: E402

FUZZ_ORG, FUZZ_ORG2 = 9000000001, 9000000002  # fuzzed subscriptions (never ingested for)
INGEST_ORG = 42  # a subscription to the sink: ingested events are really delivered
FUZZ_ORGS = {FUZZ_ORG, FUZZ_ORG2}

TYPES = harness.PARTOO_TYPES + ["invoice_paid"]

SAFE_URL_RE = re.compile(r"^https?://127\.0\.0\.1(:\d{1,5})?([/?][\x21-\x7e]*)?$")

STRINGS = ["", "a", "X-Token", "business_created", "https://127.0.0.1/x", "\u00e9", "\U0001F600",
           "\u2028", "\x00", "\x01", "\x7f", "\"", "\\", "/", "\ud800", "\udfff", "null", "0",
           "-1", "1e999", " ", "\t", "x" * 600, "X-Partoo-Evil", "items", "org_id", "%00"]
TOKENS = [b'"', b"{", b"}", b"[", b"]", b",", b":", b"\\", b"\x00", b"\xff", b"\xc3", b"null",
          b"1e999", b"-0", b'"\\ud800"', b"99999999999999999999999", b"\n", b"\r\n", b"\\u0000",
          b'"items"', b'"url"', b"true", b" ", b"\xef\xbb\xbf"]
CONTENT_TYPES = ["application/json", "application/json; charset=utf-8", "application/JSON",
                 "application/x-ndjson", "text/plain", "", "application/json;;;",
                 "application/json; charset=latin-1", "multipart/form-data; boundary=x",
                 "application/jsonp", "*/*", "application/json" + " " * 100, None]
PATH_SEGMENTS = ["v2", "webhooks", "events", "tryout", "healthz", "metrics", "1", "0", "-1",
                 "99999999999999999999", "abc", "", ".", "..", "%2F", "%00", "v3", "webhooks%2F1",
                 "%31", "1.0", "1e3", "00001", "+1", "%201"]
QUERY_KEYS = ["org_id", "page", "per_page", "foo", "", "ORG_ID", "org_id[]", "%00", "page%20"]
QUERY_VALUES = ["1", "0", "-1", str(FUZZ_ORG), str(FUZZ_ORG2), "abc", "", "1e3", "100", "101",
                "99999999999999999999", "%00", "%FF", "1.5", "%203", "+5", "0x10"]


def quote(text):
    """Percent-encodes every byte of text (lone surrogates included) for a path or query."""
    return urllib.parse.quote(text.encode("utf-8", "surrogatepass"), safe="")


class Request:
    def __init__(self, kind, method, path, headers, body):
        self.kind, self.method, self.path, self.headers, self.body = (kind, method, path,
                                                                      headers, body)

    def __repr__(self):
        body = self.body if self.body is None or len(self.body) < 300 else (
            self.body[:300] + b"...(%d bytes)" % len(self.body))
        headers = {k: (v[:100] + "..." if len(v) > 100 else v) for k, v in self.headers.items()}
        return f"<{self.kind}: {self.method} {self.path[:300]} headers={headers} body={body!r}>"


def _json_pairs_all(raw):
    """Every (key, value) pair of every object in `raw` (duplicates kept), or None if `raw`
    is not JSON even for Python's lenient parser (then the daemon refuses it too). Lenient on
    purpose: a BOM, bad UTF-8 and raw control characters are let through, so that whatever
    the daemon might accept is looked at."""
    pairs = []

    def hook(p):
        pairs.extend(p)
        return dict(p)

    text = raw.decode("utf-8", "replace").lstrip("\ufeff")
    try:
        json.loads(text, object_pairs_hook=hook, strict=False)
    except (ValueError, RecursionError):
        return None
    return pairs


def tryout_is_safe(body):
    """True when no URL in the body could make the daemon contact anything but 127.0.0.1."""
    if body is None:
        return True
    pairs = _json_pairs_all(body)
    if pairs is None:
        return True
    return all(SAFE_URL_RE.match(v) for k, v in pairs if k == "url" and isinstance(v, str))


def ingest_is_safe(body):
    """True when no event in the body is for a fuzzed organisation (whose URLs are random)."""
    if body is None:
        return True
    for chunk in [body] + body.split(b"\n"):
        pairs = _json_pairs_all(chunk)
        if pairs is None:
            continue
        for k, v in pairs:
            if k == "org_id" and isinstance(v, (int, float)) and v in FUZZ_ORGS:
                return False
    return True


class Fuzzer:
    """Makes requests from a seeded random.Random."""

    KINDS = [("create", 18), ("update", 14), ("tryout", 5), ("ingest_single", 10),
             ("ingest_ndjson", 10), ("random_bytes", 9), ("query", 12), ("path", 8),
             ("headers", 8), ("deep", 3), ("huge_numbers", 3)]

    def __init__(self, rng, keys, ids, sink_url, closed_url):
        self.rng = rng
        self.keys = keys  # name → key text
        self.ids = ids  # ids of subscriptions in FUZZ_ORG
        self.safe_urls = [sink_url, closed_url, sink_url + "?q=1", "https://127.0.0.1:1024/x"]
        self.kinds, self.weights = zip(*self.KINDS)

    # -- random values -------------------------------------------------------------------

    def string(self):
        r = self.rng
        if r.random() < 0.5:
            return r.choice(STRINGS)
        alphabet = r.choice(["abcXYZ-_ ", "\u00e9\u4e2d\U0001F600", "\x00\x01\x1f\x7f\"\\",
                             "".join(chr(c) for c in range(32, 127))])
        return "".join(r.choice(alphabet) for _ in range(r.randint(0, 40)))

    def number(self):
        return self.rng.choice([0, -1, 1, 42, 2 ** 31, 2 ** 63 - 1, 2 ** 63, 2 ** 64, 10 ** 30,
                                -10 ** 30, 1.5, -0.0, 1e308, 5e-324, FUZZ_ORG])

    def value(self, depth=0):
        r = self.rng
        choice = r.randint(0, 9 if depth < 3 else 5)
        if choice == 0:
            return None
        if choice == 1:
            return r.random() < 0.5
        if choice in (2, 3):
            return self.number()
        if choice in (4, 5):
            return self.string()
        if choice in (6, 7):
            return [self.value(depth + 1) for _ in range(r.randint(0, 4))]
        return {self.string(): self.value(depth + 1) for _ in range(r.randint(0, 4))}

    def headers_object(self):
        r = self.rng
        names = ["X-Token", "X-A", "x-b", "Authorization", "X-Partoo-X", "", "X-" + "k" * 127,
                 "X-\u00e9", "X-A b", "x-token"]
        return {r.choice(names) if r.random() < 0.7 else self.string():
                r.choice(["v", "", " v", "v" * 513, "\u00e9" * 512]) if r.random() < 0.6
                else self.string() for _ in range(r.randint(0, 7))}

    def url(self, safe=False):
        r = self.rng
        if safe or r.random() < 0.5:
            return r.choice(self.safe_urls)
        return r.choice(["", "ftp://x/", "https://user:pw@127.0.0.1/", "https:///p",
                         "https://127.0.0.1/" + "p" * 2100, "https://127.0.0.1/a b",
                         "https://127.0.0.1/#f", "https://127.0.0.1:0/", "https://[::1]/",
                         "https://hooks.example/", "http://127.0.0.1:99999/", "127.0.0.1/x"])

    def item(self, safe=False):
        r = self.rng
        d = {"url": self.url(safe), "event_type": r.choice(TYPES + ["nope", ""])}
        if r.random() < 0.6:
            d["custom_headers"] = self.headers_object()
        if r.random() < 0.1:
            d[self.string()] = self.value()
        return d

    def dumps(self, obj):
        text = json.dumps(obj, ensure_ascii=self.rng.random() < 0.5)
        return text.encode("utf-8", "surrogatepass")

    # -- mutations -----------------------------------------------------------------------

    def mutate_bytes(self, data):
        r = self.rng
        data = bytearray(data)
        for _ in range(r.randint(1, 4)):
            op = r.randint(0, 6)
            pos = r.randint(0, len(data))
            if op == 0 and data:  # flip a byte
                i = r.randrange(len(data))
                data[i] = r.randrange(256)
            elif op == 1 and data:  # delete a range
                del data[pos:pos + r.randint(1, 16)]
            elif op == 2:  # insert a token
                data[pos:pos] = r.choice(TOKENS)
            elif op == 3 and data:  # duplicate a range
                end = min(len(data), pos + r.randint(1, 64))
                data[pos:pos] = data[pos:end]
            elif op == 4:  # truncate
                del data[pos:]
            elif op == 5:  # random bytes
                data[pos:pos] = r.randbytes(r.randint(1, 8))
            else:  # duplicate a key
                data = bytearray(bytes(data).replace(b'{"url"', b'{"url":1,"url"', 1))
        return bytes(data)

    def mutate_structure(self, obj):
        """Replaces one random value inside obj (in place) with a random one."""
        r = self.rng
        node = obj
        for _ in range(4):
            if isinstance(node, dict) and node:
                k = r.choice(list(node))
                if r.random() < 0.4 or not isinstance(node[k], (dict, list)):
                    node[k] = self.value()
                    return obj
                node = node[k]
            elif isinstance(node, list) and node:
                i = r.randrange(len(node))
                if r.random() < 0.4 or not isinstance(node[i], (dict, list)):
                    node[i] = self.value()
                    return obj
                node = node[i]
            else:
                break
        return obj

    def mutated(self, obj):
        r = self.rng
        if r.random() < 0.4:
            obj = self.mutate_structure(obj)
        data = self.dumps(obj)
        return self.mutate_bytes(data) if r.random() < 0.7 else data

    # -- requests ------------------------------------------------------------------------

    def key_headers(self):
        r = self.rng
        name = r.choices(["admin", "provider", "ingest", "none", "garbage", "revoked"],
                         [45, 20, 10, 10, 10, 5])[0]
        if name == "none":
            return {}, name
        if name == "garbage":
            return {r.choice(["x-APIKey", "X-APIKEY"]): r.choice(
                ["", "fo_", "fo_" + "A" * 43, "x" * 2000, "fo_" + "A" * 44])}, name
        return {r.choice(["x-APIKey", "x-apikey"]): self.keys[name]}, name

    def org_query(self, key_name, extra=""):
        r = self.rng
        q = extra
        if key_name == "provider" or r.random() < 0.1:
            org = r.choice([FUZZ_ORG, FUZZ_ORG2, FUZZ_ORG, 5, "abc"])
            q += ("&" if q else "") + f"org_id={org}"
        return "?" + q if q else ""

    def content_type(self, default="application/json"):
        r = self.rng
        return default if r.random() < 0.85 else r.choice(CONTENT_TYPES)

    def make(self, kind, method, path, body, ctype="application/json", key=None):
        headers, key_name = self.key_headers() if key is None else key
        if ctype is not None and body is not None:
            headers["Content-Type"] = ctype
        return Request(kind, method, path, headers, body), key_name

    def next(self):
        kind = self.rng.choices(self.kinds, self.weights)[0]
        return getattr(self, "gen_" + kind)()

    def gen_create(self):
        r = self.rng
        key = self.key_headers()
        items = [self.item() for _ in range(r.choice([0, 1, 1, 2, 3, 101]))]
        body = self.mutated({"items": items})
        path = "/v2/webhooks" + self.org_query(key[1])
        return self.make("create", "POST", path, body, self.content_type(), key)[0]

    def wid(self):
        r = self.rng
        if self.ids and r.random() < 0.8:
            return str(r.choice(self.ids))
        return r.choice(["0", "1", "abc", "99999999999999999999", "-5", str(r.randint(1, 500))])

    def gen_update(self):
        r = self.rng
        key = self.key_headers()
        body = {}
        if r.random() < 0.7:
            body["url"] = self.url()
        if r.random() < 0.5:
            body["custom_headers"] = self.headers_object() if r.random() < 0.8 else None
        if r.random() < 0.2:
            body["event_type"] = r.choice(TYPES)
        path = f"/v2/webhooks/{self.wid()}" + self.org_query(key[1])
        return self.make("update", r.choice(["PUT", "PATCH"]), path, self.mutated(body),
                         self.content_type(), key)[0]

    def gen_tryout(self):
        r = self.rng
        key = self.key_headers()
        items = [self.item(safe=True) for _ in range(r.choice([1, 1, 2]))]
        body = self.mutated({"items": items})
        path = "/v2/webhooks/tryout" + self.org_query(key[1])
        return self.make("tryout", "POST", path, body, self.content_type(), key)[0]

    def event(self):
        r = self.rng
        ev = {"org_id": r.choice([INGEST_ORG, INGEST_ORG, 7, 0, -1, "42", 2 ** 63]),
              "type": r.choice(TYPES + ["nope", 5]),
              "payload": {self.string(): self.value() for _ in range(r.randint(0, 3))}}
        if r.random() < 0.7:
            ev["id"] = r.choice([f"ev-{r.randrange(10 ** 6)}", "", "x" * 129, "a b", "\u00e9"])
        if r.random() < 0.1:
            ev["payload"] = self.value()
        if r.random() < 0.05:
            ev["payload"] = {"big": "p" * 5000}  # over max_event_bytes: too_large
        return ev

    def ingest_key(self):
        r = self.rng
        return self.key_headers() if r.random() < 0.2 else (
            {"x-APIKey": self.keys["ingest"]}, "ingest")

    def gen_ingest_single(self):
        body = self.mutated(self.event())
        return self.make("ingest", "POST", "/v2/events", body, self.content_type(),
                         self.ingest_key())[0]

    def gen_ingest_ndjson(self):
        r = self.rng
        lines = []
        for _ in range(r.choice([1, 2, 5, 20, 101])):
            line = self.dumps(self.event())
            if r.random() < 0.2:
                line = self.mutate_bytes(line)
            lines.append(line)
            if r.random() < 0.1:
                lines.append(r.choice([b"", b"   ", b"\r"]))
        sep = b"\r\n" if r.random() < 0.2 else b"\n"
        body = sep.join(lines) + (sep if r.random() < 0.8 else b"")
        return self.make("ingest", "POST", "/v2/events", body,
                         self.content_type("application/x-ndjson"), self.ingest_key())[0]

    def gen_random_bytes(self):
        r = self.rng
        path = r.choice(["/v2/webhooks", f"/v2/webhooks/{self.wid()}", "/v2/webhooks/tryout",
                         "/v2/events"])
        body = r.randbytes(r.choice([0, 1, 16, 300, 5000, 70000]))
        method = r.choice(["POST", "PUT", "PATCH"])
        return self.make("random_bytes", method, path, body,
                         r.choice(CONTENT_TYPES) or "application/json")[0]

    def query_string(self):
        r = self.rng
        parts = []
        for _ in range(r.randint(0, 5)):
            k = r.choice(QUERY_KEYS) if r.random() < 0.8 else quote(self.string())
            v = r.choice(QUERY_VALUES) if r.random() < 0.8 else quote(self.string())
            parts.append(k + ("=" + v if r.random() < 0.9 else ""))
        return "&".join(parts)

    def gen_query(self):
        r = self.rng
        key = self.key_headers()
        path = r.choice(["/v2/webhooks", f"/v2/webhooks/{self.wid()}", "/v2/webhooks/events",
                         "/healthz", "/metrics"])
        qs = self.query_string()
        method = r.choice(["GET", "GET", "GET", "DELETE"])
        return self.make("query", method, path + ("?" + qs if qs else ""), None, None, key)[0]

    def gen_path(self):
        r = self.rng
        segs = [r.choice(PATH_SEGMENTS) if r.random() < 0.85
                else quote(self.string()) for _ in range(r.randint(0, 5))]
        path = "/" + "/".join(segs)
        if r.random() < 0.1:
            path = "/" + "a" * r.randint(1000, 4000)
        if r.random() < 0.1:
            path = "/" + path.lstrip("/")  # "//" and friends
        method = r.choice(["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
        body = self.dumps({"items": [self.item()]}) if method in ("POST", "PUT", "PATCH") else None
        return self.make("path", method, path, body)[0]

    def gen_headers(self):
        r = self.rng
        req = self.gen_create() if r.random() < 0.5 else self.gen_query()
        for _ in range(r.randint(1, 6)):
            name = r.choice(["X-Custom", "Accept", "Content-Type", "X-Forwarded-For", "Cookie",
                             "Transfer-Encoding-X", "Expect-X", "x-" + "n" * 200])
            value = "".join(r.choice("abc;,=/ \"'") for _ in range(r.randint(0, 40)))
            if r.random() < 0.3:
                value = "v" * r.randint(1000, 8000)
            req.headers[name] = value.strip()
        if req.body is not None and r.random() < 0.5:
            req.headers["Content-Type"] = r.choice([c for c in CONTENT_TYPES if c is not None])
        req.kind = "headers"
        return req

    def gen_deep(self):
        r = self.rng
        depth = r.choice([100, 1000, 10000])
        deep = "[" * depth + "]" * depth
        if r.random() < 0.5:
            deep = '{"a":' * depth + "1" + "}" * depth
        which = r.randint(0, 2)
        if which == 0:
            return self.make("deep", "POST", "/v2/webhooks", ('{"items":' + deep + "}").encode(),
                             key=({"x-APIKey": self.keys["admin"]}, "admin"))[0]
        if which == 1:
            return self.make("deep", "PATCH", f"/v2/webhooks/{self.wid()}",
                             ('{"custom_headers":' + deep + "}").encode(),
                             key=({"x-APIKey": self.keys["admin"]}, "admin"))[0]
        ev = f'{{"org_id":{INGEST_ORG},"type":"business_created","payload":{{"d":{deep}}}}}'
        return self.make("deep", "POST", "/v2/events", ev.encode(),
                         key=({"x-APIKey": self.keys["ingest"]}, "ingest"))[0]

    def gen_huge_numbers(self):
        r = self.rng
        n = r.choice(["1e400", "-1e400", "9" * 400, "1" + "0" * 30, "-0", "1E+2", "0.0000001"])
        which = r.randint(0, 2)
        if which == 0:
            body = f'{{"items":[{{"url":"https://127.0.0.1/","event_type":{n}}}]}}'
            return self.make("huge", "POST", "/v2/webhooks", body.encode())[0]
        if which == 1:
            body = f'{{"org_id":{n},"type":"business_created","payload":{{"n":{n}}}}}'
            return self.make("huge", "POST", "/v2/events", body.encode(),
                             key=({"x-APIKey": self.keys["ingest"]}, "ingest"))[0]
        return self.make("huge", "GET", f"/v2/webhooks?page={n}&per_page={n}", None)[0]
