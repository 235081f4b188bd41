"""The fanoutd tests' client side (tests/tools/fanoutd/harness.py re-exports all of it).

HTTP/1.1 requests to a port on 127.0.0.1 (one-shot, or a keep-alive Session) answered as
Response (status, headers, body parsed as strict JSON when it is JSON), the Prometheus text
of /metrics read into a dict, and the README's error shape checked. Python standard library
only; nothing here starts a process.
"""

import http.client as http_client
import json
import re

HTTP_TIMEOUT = 30.0


# ----------------------------------------------------------------------------------------
# HTTP.

def _strict_object(pairs):
    seen = {}
    for k, v in pairs:
        if k in seen:
            raise ValueError(f"duplicate key {k!r} in JSON answer")
        seen[k] = v
    return seen


def _reject_constant(name):
    raise ValueError(f"non-JSON constant {name}")


def parse_json_strict(raw):
    """json.loads that refuses duplicate keys, NaN and Infinity (not JSON)."""
    return json.loads(raw, object_pairs_hook=_strict_object, parse_constant=_reject_constant)


def decode_body(raw):
    if not raw:
        return b""
    try:
        return parse_json_strict(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        return raw


class Response(tuple):
    """(status, headers, body) with body the parsed JSON, or the raw bytes when not JSON.

    Also `.raw` (the body bytes) and, for curl answers, `.http_version`.
    """

    def __new__(cls, status, headers, body, raw, http_version=None):
        obj = super().__new__(cls, (status, headers, body))
        obj.raw = raw
        obj.http_version = http_version
        return obj

    status = property(lambda self: self[0])
    headers = property(lambda self: self[1])
    body = property(lambda self: self[2])

    def describe(self):
        return f"HTTP {self.status} {self.raw[:600]!r}"


def encode_body(body):
    if body is None or isinstance(body, bytes):
        return body
    if isinstance(body, str):
        return body.encode("utf-8")
    return json.dumps(body).encode("utf-8")


def request_headers(key, body, content_type, headers):
    h = {}
    if key is not None:
        h["x-APIKey"] = key
    if body is not None and content_type is not None:
        h["Content-Type"] = content_type
    h.update(headers or {})
    return h


def http(port, method, path, key=None, body=None, content_type="application/json",
         headers=None, timeout=HTTP_TIMEOUT, conn=None):
    """One HTTP/1.1 request to 127.0.0.1:port. Returns Response (status, headers, body).

    body: dict/list (sent as JSON), str (UTF-8) or bytes (as is). content_type is sent only
    with a body; None sends none. conn: an open http_client.HTTPConnection to reuse.
    """
    data = encode_body(body)
    hdrs = request_headers(key, data, content_type, headers)
    own = conn is None
    c = conn or http_client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request(method, path, body=data, headers=hdrs)
        r = c.getresponse()
        raw = r.read()
        return Response(r.status, r.headers, decode_body(raw), raw)
    finally:
        if own:
            c.close()


class Session:
    """Keep-alive HTTP/1.1 requests to one port (for long runs of requests).

    A request that fails on a reused connection before any answer arrived (the server may
    close idle or finished connections) is sent once more on a new connection; a failure on
    a fresh connection is raised.
    """

    def __init__(self, port, timeout=HTTP_TIMEOUT):
        self.port = port
        self.timeout = timeout
        self.conn = None

    def http(self, method, path, key=None, body=None, content_type="application/json",
             headers=None):
        data = encode_body(body)
        hdrs = request_headers(key, data, content_type, headers)
        for fresh in (self.conn is None, True):
            if fresh:
                self.close()
                self.conn = http_client.HTTPConnection("127.0.0.1", self.port,
                                                       timeout=self.timeout)
            try:
                self.conn.request(method, path, body=data, headers=hdrs)
                r = self.conn.getresponse()
                raw = r.read()
            except (http_client.RemoteDisconnected, ConnectionResetError, BrokenPipeError,
                    http_client.CannotSendRequest):
                self.close()
                if fresh:
                    raise
                continue
            if (r.getheader("Connection") or "").lower() == "close" or r.will_close:
                self.close()
            return Response(r.status, r.headers, decode_body(raw), raw)
        raise AssertionError("unreachable")

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


# ----------------------------------------------------------------------------------------
# Metrics.

_SAMPLE_RE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+-?\d+)?$")
_LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def metric_key(name, **labels):
    """The dict key of a sample: name{a="1",b="2"} with labels sorted (no braces if none)."""
    if not labels:
        return name
    inner = ",".join(f'{k}="{labels[k]}"' for k in sorted(labels))
    return f"{name}{{{inner}}}"


class Metrics(dict):
    """Parsed Prometheus text: {metric_key: float}, plus .types {family: type}."""

    def __init__(self, text):
        super().__init__()
        self.text = text
        self.types = {}
        for line in text.splitlines():
            line = line.strip()
            if not line:
                continue
            if line.startswith("#"):
                parts = line.split()
                if len(parts) >= 4 and parts[1] == "TYPE":
                    self.types[parts[2]] = parts[3]
                continue
            m = _SAMPLE_RE.match(line)
            if not m:
                raise AssertionError(f"malformed metrics line: {line!r}")
            labels = dict(_LABEL_RE.findall(m.group(2) or ""))
            self[metric_key(m.group(1), **labels)] = float(m.group(3))

    def value(self, name, **labels):
        """The sample's value; 0 when absent (a labelled counter not yet incremented)."""
        return self.get(metric_key(name, **labels), 0.0)

    def samples(self, name):
        """[(labels dict, value)] of every sample named exactly `name`."""
        out = []
        for key, v in self.items():
            base, _, rest = key.partition("{")
            if base == name:
                out.append((dict(_LABEL_RE.findall(rest)), v))
        return out


def metrics(port):
    """GET /metrics (no key) parsed into a Metrics dict."""
    r = http(port, "GET", "/metrics")
    if r.status != 200:
        raise AssertionError(f"/metrics answered {r.describe()}")
    return Metrics(r.raw.decode("utf-8"))


# ----------------------------------------------------------------------------------------
# Checks shared by the test files.

ERROR_STATUSES = {400, 401, 403, 404, 405, 413, 415, 429}


def error_shape_problem(status, body, headers=None):
    """None when `body` is the README's error shape for `status`, else what is wrong."""
    if not isinstance(body, dict) or set(body) != {"error"} or not isinstance(body["error"],
                                                                              dict):
        return f"not {{\"error\":{{...}}}}: {body!r}"
    err = body["error"]
    if status == 400:
        fields = err.get("json")
        if set(err) != {"json"} or not isinstance(fields, dict) or not fields:
            return f"400 needs {{\"error\":{{\"json\":{{field: message}}}}}}: {body!r}"
        if not all(isinstance(k, str) and isinstance(v, str) and v for k, v in fields.items()):
            return f"400 field messages must be non-empty strings: {body!r}"
        return None
    expected = {401: "authentication", 403: "authorization", 429: "rate_limit"}.get(status,
                                                                                   "json")
    if set(err) != {expected} or not isinstance(err[expected], str) or not err[expected]:
        return f"{status} needs {{\"error\":{{\"{expected}\":\"...\"}}}}: {body!r}"
    exact = {404: "Resource not found", 405: "Method not allowed"}
    if status in exact and err[expected] != exact[status]:
        return f"{status} message must be {exact[status]!r}: {body!r}"
    if status == 413 and not err[expected].startswith("body larger than "):
        return f"413 message must be 'body larger than N bytes': {body!r}"
    if headers is not None:
        if status == 405 and not headers.get("Allow"):
            return "405 without an Allow header"
        if status == 429 and not headers.get("Retry-After"):
            return "429 without a Retry-After header"
    return None
