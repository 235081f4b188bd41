#!/usr/bin/env python3
"""fanoutd's lifecycle: the command line, persistence across SIGTERM and restart, pending
deliveries handed back after a restart, API keys and the signing key (tools/fanoutd/README.md,
"Command line", "Store", "Shutdown and restart").

Run: python3 restart_test.py --fanoutd build/X/tools/fanoutd/fanoutd \
         --sink build/X/tools/fanout-sink
"""

import os
import re
import signal
import subprocess
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
import harness  # noqa: E402
from harness import (KEY_RE, Daemon, FanoutdTestCase, apikey, apikey_id, apikey_list,
                     apikey_revoke, public_key_pem, run_fanoutd, verify_signature, wait_until)

ORG, OTHER = 42, 43
# Exit status when `serve` cannot start (port in use): README "1 when it cannot start (with
# the reason)".
CANNOT_START = 1
# A configuration file with an unknown key or a bad value: our reading is that the daemon
# "cannot start" (1); the file is not the command line (2, "bad command line", with usage).
CONFIG_ERROR_EXIT = 1
# Retries an hour away: a delivery whose first attempt failed waits through anything a test
# does (a stop, a PATCH, a restart under a sanitizer), whatever the machine's speed.
HELD_RETRY = ("[retry]\nbase_ms = 3600000\nfactor = 1\njitter = 0\nmax_retries = 3\n"
              "cap_ms = 3600000\n")
# The same daemon restarted with a 1 ms cap: a resumed delivery waits min(its due time, cap_ms)
# (README "Shutdown and restart"), so the saved retries are made at once. The restart is what
# makes them due, not a clock.
DUE_AT_ONCE = ("[retry]\nbase_ms = 3600000\nfactor = 1\njitter = 0\nmax_retries = 3\n"
               "cap_ms = 1\n")
# fanout-sink's answers per attempt of every event: 503 to the first, 200 from the second on.
FIRST_FAILS = ("--plan", "503,200")


def event(event_type, event_id, org=ORG, payload="{}"):
    return f'{{"id":"{event_id}","org_id":{org},"type":"{event_type}","payload":{payload}}}'


class RestartCase(FanoutdTestCase):

    def publish(self, d, key, *lines):
        r = d.http("POST", "/v2/events", key, "\n".join(lines) + "\n",
                   content_type="application/x-ndjson")
        self.assertStatus(r, 202)
        return r.body

    def list_all(self, d, key, query=""):
        r = d.http("GET", "/v2/webhooks?per_page=100" + query, key)
        self.assertStatus(r, 200)
        return r.body["items"]

    def outcome(self, d, kind):
        return d.metric("fanout_outcomes_total", kind=kind)

    def wait_outcome(self, d, kind, n):
        wait_until(lambda: self.outcome(d, kind) >= n,
                   message=lambda: f"{n} outcomes {kind} (have {self.outcome(d, kind)})")

    def wait_idle(self, d):
        wait_until(lambda: d.metric("fanout_in_flight") == 0, message="fanout_in_flight == 0")


class PersistenceTest(RestartCase):

    def test_webhooks_and_keys_survive_restart(self):
        """After SIGTERM (exit 0) and a restart on the same data directory (new port): the
        same configs (timestamps included), keys still work, a revoked key stays revoked,
        the routing table is loaded (an event is delivered), ids are never reused."""
        d = self.start_daemon()
        admin = apikey(d.data, "ORG_ADMIN", org=ORG)
        provider = apikey(d.data, "PROVIDER", orgs=[ORG, OTHER])
        ingest = apikey(d.data, "INGEST")
        gone_key = apikey(d.data, "ORG_ADMIN", org=ORG, name="gone")
        sink = self.start_sink()
        r = d.http("POST", "/v2/webhooks", admin, {"items": [
            {"url": sink.url("/kept"), "event_type": "business_created",
             "custom_headers": {"X-Token": "t"}},
            {"url": "https://127.0.0.1/a", "event_type": "business_updated"},
            {"url": "https://127.0.0.1/b", "event_type": "lead_received"}]})
        self.assertStatus(r, 200)
        deleted = r.body["items"][2]["id"]
        self.assertStatus(d.http("DELETE", f"/v2/webhooks/{deleted}", admin), 204)
        r = d.http("POST", f"/v2/webhooks?org_id={OTHER}", provider,
                   {"items": [{"url": "https://127.0.0.1/c", "event_type": "message_created"}]})
        self.assertStatus(r, 200)
        apikey_revoke(d.data, apikey_id(d.data, "gone"))
        before = self.list_all(d, admin)
        before_other = self.list_all(d, provider, f"&org_id={OTHER}")
        self.assertEqual(len(before), 2)

        d.restart()
        self.assertEqual(self.list_all(d, admin), before)
        self.assertEqual(self.list_all(d, provider, f"&org_id={ORG}"), before)
        self.assertEqual(self.list_all(d, provider, f"&org_id={OTHER}"), before_other)
        for cfg in before:
            self.assertEqual(d.http("GET", f"/v2/webhooks/{cfg['id']}", admin).body, cfg)
        self.assertError(d.http("GET", f"/v2/webhooks/{deleted}", admin), 404)
        self.assertError(d.http("GET", "/v2/webhooks", gone_key), 401)
        self.assertEqual(d.metric("fanout_subscriptions"), 3)

        body = self.publish(d, ingest, event("business_created", "after-restart"))
        self.assertEqual([(i["status"], i.get("id")) for i in body["items"]],
                         [("accepted", "after-restart")])
        self.wait_outcome(d, "delivered", 1)
        r = d.http("POST", "/v2/webhooks", admin, {"items": [
            {"url": "https://127.0.0.1/d", "event_type": "lead_received"}]})
        self.assertStatus(r, 200)
        self.assertGreater(r.body["items"][0]["id"], max(deleted, before_other[0]["id"]))
        d.stop()
        sink.stop()
        [req] = sink.requests()
        self.assertEqual(req.header("x-partoo-event-id"), "after-restart")
        self.assertEqual(req.header("x-token"), "t")
        self.assertEqual(req["path"], "/kept")

    def test_revoked_key_stays_revoked_after_restart(self):
        """A key revoked while the daemon runs is still refused after a restart, and the other
        keys still work."""
        d = self.start_daemon()
        live = apikey(d.data, "ORG_ADMIN", org=ORG)
        dead = apikey(d.data, "ORG_ADMIN", org=ORG, name="dead-key")
        apikey_revoke(d.data, apikey_id(d.data, "dead-key"))
        self.assertError(d.http("GET", "/v2/webhooks", dead), 401)
        d.restart()
        self.assertError(d.http("GET", "/v2/webhooks", dead), 401)
        self.assertStatus(d.http("GET", "/v2/webhooks", live), 200)
        d.stop()

    def test_sigint_exits_0(self):
        """SIGINT stops the daemon like SIGTERM: exit 0, state kept."""
        d = self.start_daemon()
        admin = apikey(d.data, "ORG_ADMIN", org=ORG)
        r = d.http("POST", "/v2/webhooks", admin,
                   {"items": [{"url": "https://127.0.0.1/x", "event_type": "business_created"}]})
        self.assertStatus(r, 200)
        self.assertStatus(d.http("GET", "/healthz"), 200)
        d.stop(signum=signal.SIGINT)
        d.start()
        self.assertEqual(self.list_all(d, admin), r.body["items"])
        d.stop(signum=signal.SIGINT)


class PendingDeliveriesTest(RestartCase):
    """Deliveries without a final outcome at shutdown are saved and resumed (README "Shutdown
    and restart")."""

    def _first_attempts(self, n, prefix):
        """Run 1: n events to a sink that answers 503 to first attempts (200 to later ones);
        waits until all wait for their retry (an hour away)."""
        d = self.start_daemon(config=HELD_RETRY)
        admin = apikey(d.data, "ORG_ADMIN", org=ORG)
        ingest = apikey(d.data, "INGEST")
        sink = self.start_sink(args=FIRST_FAILS)
        r = d.http("POST", "/v2/webhooks", admin,
                   {"items": [{"url": sink.url("/old"), "event_type": "business_updated",
                               "custom_headers": {"X-Run": "kept"}}]})
        self.assertStatus(r, 200)
        wid = r.body["items"][0]["id"]
        ids = [f"{prefix}-{i}" for i in range(n)]
        body = self.publish(d, ingest, *[event("business_updated", i) for i in ids])
        self.assertEqual(body["accepted"], n)
        wait_until(lambda: d.metric("fanout_waiting_retries") == n,
                   message=lambda: f"{n} waiting retries "
                                   f"(have {d.metric('fanout_waiting_retries')})")
        sink.wait_count(n)
        return d, admin, ingest, sink, wid, ids

    def _restart_with_retries_due(self, d):
        d.stop()
        d.config = DUE_AT_ONCE
        d.start()

    def _old_sink_saw_first_attempts(self, old, ids):
        old.stop()
        reqs = old.requests()
        self.assertEqual(sorted(q.header("x-partoo-event-id") for q in reqs), sorted(ids))
        self.assertEqual({q.header("x-partoo-attempt") for q in reqs}, {"1"},
                         "only first attempts before the restart")

    def test_pending_deliveries_resume_after_restart(self):
        """5 events wait for their retry at SIGTERM; after a restart each is delivered once,
        with the same event id and X-Partoo-Attempt 2; a second restart has nothing pending
        (no duplicate). The sink lives through the restarts."""
        d, admin, ingest, sink, wid, ids = self._first_attempts(5, "pend")
        self._restart_with_retries_due(d)
        self.wait_outcome(d, "delivered", 5)
        self.wait_idle(d)
        m = d.metrics()
        self.assertEqual(m.value("fanout_outcomes_total", kind="delivered"), 5)
        self.assertEqual(m.value("fanout_outcomes_total", kind="exhausted"), 0)
        self.assertEqual(m.value("fanout_outcomes_total", kind="dropped"), 0)
        self.assertEqual(m.value("fanout_attempts_total", **{"class": "2xx"}), 5)
        self.assertEqual(m.value("fanout_attempts_total", **{"class": "5xx"}), 0,
                         "the first attempts were run 1's")
        self.assertEqual(m.value("fanout_waiting_retries"), 0)
        d.stop()

        d.start()  # run 3: nothing pending
        body = self.publish(d, ingest, event("business_updated", "pend-extra"))
        self.assertEqual(body["accepted"], 1)
        self.wait_outcome(d, "delivered", 1)
        self.wait_idle(d)
        m = d.metrics()
        self.assertEqual(m.value("fanout_outcomes_total", kind="delivered"), 1)
        self.assertEqual(m.value("fanout_attempts_total", **{"class": "2xx"}), 1)
        self.assertEqual(m.value("fanout_waiting_retries"), 0)
        d.stop()
        sink.stop()
        reqs = sink.requests()
        got = sorted((q.header("x-partoo-event-id"), q.header("x-partoo-attempt")) for q in reqs)
        # pend-extra, published in run 3, meets the same plan: 503 then 200 at its retry.
        self.assertEqual(got, sorted([(i, a) for i in ids + ["pend-extra"] for a in ("1", "2")]),
                         "each event's first attempt, then its retry after the restart, once")
        for q in reqs:
            self.assertEqual(q["path"], "/old")
            self.assertEqual(q.header("x-run"), "kept")
            self.assertEqual(q.body, b'{"type":"business_updated","payload":{}}')

    def test_url_change_reaches_the_saved_retry(self):
        """A webhook's URL changed while its deliveries wait for their retry: the retries go to
        the new URL with X-Partoo-Attempt 2 and the new headers; the old URL, still alive and
        answering, gets nothing more (a retry sent there would be seen, not merely fail)."""
        d, admin, ingest, old, wid, ids = self._first_attempts(3, "moved")
        new = self.start_sink("200:1")
        r = d.http("PATCH", f"/v2/webhooks/{wid}", admin,
                   {"url": new.url("/new"), "custom_headers": {"X-Run": "moved"}})
        self.assertStatus(r, 200)
        self._restart_with_retries_due(d)
        self.wait_outcome(d, "delivered", 3)
        self.wait_idle(d)
        m = d.metrics()
        self.assertEqual(m.value("fanout_attempts_total", **{"class": "2xx"}), 3)
        self.assertEqual(sum(v for _, v in m.samples("fanout_attempts_total")), 3)
        d.stop()
        new.stop()
        reqs = new.requests()
        self.assertEqual(sorted(q.header("x-partoo-event-id") for q in reqs), sorted(ids))
        for q in reqs:
            self.assertEqual(q.header("x-partoo-attempt"), "2")
            self.assertEqual(q["path"], "/new")
            self.assertEqual(q.header("x-run"), "moved")
        self.assertEqual(new.summary["duplicate_event_ids"], 0)
        self._old_sink_saw_first_attempts(old, ids)

    def test_pending_delivery_of_deleted_subscription_is_dropped(self):
        """Deliveries saved at shutdown whose subscription was deleted before it end as
        dropped after the restart; nothing is sent."""
        d, admin, ingest, old, wid, ids = self._first_attempts(3, "orphan")
        self.assertStatus(d.http("DELETE", f"/v2/webhooks/{wid}", admin), 204)
        self._restart_with_retries_due(d)
        self.wait_idle(d)
        m = d.metrics()
        self.assertEqual(m.value("fanout_outcomes_total", kind="delivered"), 0)
        self.assertEqual(sum(v for _, v in m.samples("fanout_attempts_total")), 0)
        self._old_sink_saw_first_attempts(old, ids)
        # "ends as dropped": counted with the other final outcomes
        wait_until(lambda: self.outcome(d, "dropped") == 3,
                   message=lambda: "fanout_outcomes_total{kind=\"dropped\"} == 3 after the "
                                   f"restart (is {self.outcome(d, 'dropped')})")
        d.stop()


class KeysTest(RestartCase):
    """`fanoutd apikey list` and `fanoutd keys public`."""

    def test_apikey_list_never_shows_keys(self):
        """One line per key: id, role, orgs, name, created_at [revoked_at]; never a key, not
        before, during or after a daemon run; revoking adds revoked_at."""
        data = self.data_dir()
        keys = {"alice": apikey(data, "ORG_ADMIN", org=ORG, name="alice"),
                "bob": apikey(data, "PROVIDER", orgs=[ORG, OTHER], name="bob"),
                "carol": apikey(data, "INGEST", name="carol")}
        for key in keys.values():
            self.assertRegex(key, KEY_RE)

        def timestamps(line):
            return len(re.findall(r"\b\d{4}-\d\d-\d\d", line))

        def check(lines):
            self.assertEqual(len(lines), 3, lines)
            text = "\n".join(lines)
            for key in keys.values():
                self.assertNotIn(key, text)
                self.assertNotIn(key[3:], text)
            self.assertIsNone(re.search(r"fo_[A-Za-z0-9_-]{43}", text), text)
            for name, role in (("alice", "ORG_ADMIN"), ("bob", "PROVIDER"), ("carol", "INGEST")):
                [line] = [li for li in lines if name in li.split()]
                self.assertRegex(line.split()[0], r"^\d+$")
                self.assertIn(role, line.split())
            return {name: next(li for li in lines if name in li.split())
                    for name in keys}

        first = check(apikey_list(data))
        self.assertIn(str(ORG), first["alice"])
        for name in keys:
            self.assertEqual(timestamps(first[name]), 1, "created_at, no revoked_at")
        apikey_revoke(data, apikey_id(data, "bob"))
        after = check(apikey_list(data))
        self.assertEqual(timestamps(after["bob"]), 2, "created_at and revoked_at")
        self.assertEqual(after["alice"], first["alice"])
        self.assertEqual(after["carol"], first["carol"])
        d = self.start_daemon(data)
        check(apikey_list(data))
        self.assertError(d.http("GET", f"/v2/webhooks?org_id={ORG}", keys["bob"]), 401)
        self.assertStatus(d.http("GET", "/v2/webhooks", keys["alice"]), 200)
        d.stop()
        self.assertEqual(check(apikey_list(data)), after)
        r = run_fanoutd("apikey", "revoke", "--data", data, "999999")
        self.assertNotEqual(r.returncode, 0, "revoking an unknown id fails")

    def test_public_key_is_stable(self):
        """`keys public` prints the same Ed25519 PEM before the first start, while running
        and after a restart; deliveries are signed with the matching private key."""
        data = self.data_dir()
        pem = public_key_pem(data)
        self.assertTrue(pem.startswith("-----BEGIN PUBLIC KEY-----"), pem)
        self.assertIn("-----END PUBLIC KEY-----", pem)
        r = subprocess.run(["openssl", "pkey", "-pubin", "-noout", "-text"], input=pem,
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("ED25519", r.stdout.upper())
        d = self.start_daemon(data)
        self.assertEqual(public_key_pem(data), pem)
        d.restart()
        self.assertEqual(public_key_pem(data), pem)
        admin = apikey(data, "ORG_ADMIN", org=ORG)
        sink = self.start_sink()
        r = d.http("POST", "/v2/webhooks/tryout", admin,
                   {"items": [{"url": sink.url(), "event_type": "lead_received"}]})
        self.assertStatus(r, 200)
        d.stop()
        self.assertEqual(public_key_pem(data), pem)
        sink.stop()
        [req] = sink.requests()
        ok, out = verify_signature(pem, req.body, req.header("x-partoo-signature-v1", ""),
                                   self.tmp)
        self.assertTrue(ok, out)

    def test_each_data_directory_has_its_own_key(self):
        """Two data directories get two different signing keys."""
        self.assertNotEqual(public_key_pem(self.data_dir("a")), public_key_pem(self.data_dir("b")))


class CommandLineTest(RestartCase):
    """Exit statuses of the command line (README "Command line")."""

    def test_bad_command_lines_exit_2(self):
        """A bad command line exits 2 with the reason and the usage on standard error."""
        data = self.data_dir()
        cases = [[], ["bogus"], ["serve", "--bogus"], ["serve", "--listen"],
                 ["serve", "--listen", "localhost:0", "--data", data],
                 ["serve", "--log-level", "loud", "--data", data],
                 ["apikey"], ["apikey", "create", "--data", data, "--role", "NOPE", "--org", "1"],
                 ["apikey", "create", "--data", data, "--role", "ORG_ADMIN"],
                 ["apikey", "create", "--data", data, "--role", "PROVIDER"],
                 ["apikey", "revoke", "--data", data],
                 ["keys"], ["publish", "--key", "x"]]
        for args in cases:
            with self.subTest(args=args):
                r = run_fanoutd(*args)
                self.assertEqual(r.returncode, 2, f"stdout={r.stdout!r} stderr={r.stderr!r}")
                self.assertTrue(r.stderr.strip(), "reason on stderr")
        self.assertEqual(apikey_list(data), [], "no key was created by a bad command line")

    def test_version_and_help(self):
        """--version and --help exit 0 and print something."""
        for flag in ("--version", "--help"):
            r = run_fanoutd(flag)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertTrue((r.stdout + r.stderr).strip())
        self.assertIn("serve", run_fanoutd("--help").stdout + run_fanoutd("--help").stderr)

    def _serve_fails(self, *extra, config=None, expect=CANNOT_START):
        args = ["serve", "--data", self.data_dir(), "--insecure"]
        if config is not None:
            path = os.path.join(self.tmp, "bad.toml")
            with open(path, "w") as f:
                f.write(config)
            args += ["--config", path]
        r = run_fanoutd(*args, *extra, timeout=20)
        self.assertEqual(r.returncode, expect, f"stdout={r.stdout!r} stderr={r.stderr!r}")
        self.assertNotIn("listening on", r.stdout)
        return r.stderr

    def test_port_in_use_exits_1(self):
        """Listening on a port another daemon holds: exit 1 with the reason."""
        d = self.start_daemon()
        err = self._serve_fails("--listen", f"127.0.0.1:{d.port}")
        self.assertTrue(err.strip())
        self.assertStatus(d.http("GET", "/healthz"), 200, "the first daemon is unaffected")
        d.stop()

    def test_bad_configuration_file_exits_1(self):
        """An unknown key (top level or in a table) or a bad value in the TOML file: the
        daemon cannot start (exit CONFIG_ERROR_EXIT) and names the key."""
        for config, name in [("no_such_key = 1\n", "no_such_key"),
                             ("[api]\nbogus = 1\n", "bogus"),
                             ("[retry]\nfactor = 0.5\n", "retry.factor")]:
            with self.subTest(config=config):
                err = self._serve_fails("--listen", "127.0.0.1:0", config=config,
                                        expect=CONFIG_ERROR_EXIT)
                self.assertIn(name, err)

    def test_listen_line_and_data_directory(self):
        """serve creates a missing data directory (and parents) and prints its real port."""
        data = os.path.join(self.tmp, "deep", "er", "data")
        d = Daemon(data, workdir=self.tmp)
        self._processes.append(d)
        d.start()
        self.assertNotEqual(d.port, 0)
        self.assertTrue(os.path.exists(os.path.join(data, "fanoutd.db")))
        self.assertEqual(d.stdout().splitlines()[0], f"listening on 127.0.0.1:{d.port}")
        d.stop()

    def test_serves_https_with_tls_cert_and_key(self):
        """--tls-cert/--tls-key: the API over TLS, HTTP/2 and HTTP/1.1 chosen by ALPN; an
        unreadable certificate makes serve exit 1 with the reason."""
        cert, key = os.path.join(self.tmp, "cert.pem"), os.path.join(self.tmp, "key.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", cert,
                        "-days", "1", "-subj", "/CN=127.0.0.1",
                        "-addext", "subjectAltName=IP:127.0.0.1"],
                       check=True, capture_output=True, timeout=60)
        data = self.data_dir()
        admin = apikey(data, "ORG_ADMIN", org=5)
        d = Daemon(data, workdir=self.tmp, args=["--tls-cert", cert, "--tls-key", key])
        self._processes.append(d)
        d.start()
        body = '{"items":[{"url":"https://example.com/hook","event_type":"lead_received"}]}'
        for flag, version in (("--http2", "2"), ("--http1.1", "1.1")):
            with self.subTest(protocol=version):
                r = subprocess.run(
                    ["curl", "-sS", flag, "--cacert", cert, "--max-time", "30",
                     "-w", "\n%{http_code} %{http_version}", "-H", f"x-APIKey: {admin}",
                     f"https://127.0.0.1:{d.port}/v2/webhooks"],
                    capture_output=True, text=True, timeout=60)
                self.assertEqual(r.returncode, 0, r.stderr)
                self.assertEqual(r.stdout.splitlines()[-1], f"200 {version}", r.stdout)
        r = subprocess.run(
            ["curl", "-sS", "--http2", "--cacert", cert, "--max-time", "30", "-X", "POST",
             "-H", f"x-APIKey: {admin}", "-H", "Content-Type: application/json",
             "--data-binary", body, f"https://127.0.0.1:{d.port}/v2/webhooks"],
            capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn('"event_type":"lead_received"', r.stdout)
        d.stop()
        r = subprocess.run([harness.FANOUTD, "serve", "--listen", "127.0.0.1:0", "--data", data,
                            "--tls-cert", os.path.join(self.tmp, "missing.pem"), "--tls-key", key],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("missing.pem", r.stderr)


if __name__ == "__main__":
    harness.main()
