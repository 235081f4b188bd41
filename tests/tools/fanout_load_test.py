#!/usr/bin/env python3
"""fanout-load end to end (tools/README.md, "fanout-load", is the specification).

Engine mode against a real fanout-sink on port 0: counts, duration, rate, retries until
exhausted, HTTP/1.1, signing (checked with the openssl tool), the spread over orgs and types,
usage errors. Ingest mode against a real fanoutd: accepted and dropped counts, busy lines re-sent.

Every run of fanout-load is bounded twice: its own --duration-max and a subprocess timeout.
Nothing here sleeps and then asserts, and nothing depends on how fast the machine is.

Run: python3 fanout_load_test.py --load build/X/tools/fanout-load
                                 --fanoutd build/X/tools/fanoutd/fanoutd
                                 --sink build/X/tools/fanout-sink
"""

import argparse
import base64
import json
import os
import subprocess
import sys
import unittest

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "fanoutd"))
import harness  # noqa: E402
from harness import FanoutdTestCase, apikey, verify_signature  # noqa: E402

LOAD = ""
# Generous bounds: the suite also runs under AddressSanitizer on a shared 2-core machine.
DURATION_MAX_S = 120
RUN_TIMEOUT_S = DURATION_MAX_S + 60

# What --json must hold in engine mode (README): counts, rates, latency, CPU, options used.
ENGINE_FIELDS = {
    "published", "delivered", "rejected", "exhausted", "dropped", "attempts", "attempts_2xx",
    "attempts_3xx", "attempts_4xx", "attempts_5xx", "attempts_failed", "deliveries_per_s",
    "elapsed_s", "latency_us", "cpu_user_s", "cpu_sys_s", "url", "conns", "streams", "workers",
    "orgs", "payload_bytes", "event_id", "rate", "signed"}
LATENCY_FIELDS = {"p50", "p90", "p99", "p999", "max"}


class QuietSink(harness.Sink):
    """fanout-sink without a record file: for runs whose size depends on the machine's speed."""

    def start(self, timeout=harness.START_TIMEOUT):
        return self._spawn([harness.SINK, "--listen", "127.0.0.1:0", "--json", "--quiet"],
                           timeout)


class FanoutLoadTestCase(FanoutdTestCase):

    def load(self, *args, expect=0):
        """Runs fanout-load ARGS to completion; asserts its exit status (None: any)."""
        cmd = [LOAD, *[str(a) for a in args]]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
        for marker in harness.SANITIZER_MARKERS:
            self.assertNotIn(marker, r.stderr, f"sanitizer report from {' '.join(cmd)}")
        if expect is not None:
            self.assertEqual(r.returncode, expect,
                             f"{' '.join(cmd)}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}")
        return r

    def load_json(self, *args, expect=0):
        """Runs fanout-load ARGS --json; returns its JSON summary (the only stdout line)."""
        r = self.load(*args, "--json", "--duration-max", DURATION_MAX_S, expect=expect)
        lines = r.stdout.strip().splitlines()
        self.assertEqual(len(lines), 1, f"--json prints one line:\n{r.stdout}")
        self.assertEqual(r.stderr, "", "--json prints no progress lines")
        return harness.parse_json_strict(lines[0])

    def assertAllFinal(self, d):
        final = d["delivered"] + d["rejected"] + d["exhausted"] + d["dropped"]
        self.assertEqual(final, d["published"], d)
        self.assertEqual(d["unfinished"], 0, d)
        self.assertFalse(d["cut"], d)


class EngineModeTest(FanoutLoadTestCase):

    def test_events_are_each_delivered_once_and_counted_alike_by_the_sink(self):
        sink = self.start_sink()
        d = self.load_json("--url", sink.url(), "--events", 2000)
        self.assertLessEqual(ENGINE_FIELDS, set(d), "documented JSON fields")
        self.assertLessEqual(LATENCY_FIELDS, set(d["latency_us"]))
        self.assertEqual((d["published"], d["delivered"], d["attempts"], d["attempts_2xx"]),
                         (2000, 2000, 2000, 2000), d)
        self.assertEqual((d["rejected"], d["exhausted"], d["dropped"], d["attempts_failed"]),
                         (0, 0, 0, 0), d)
        self.assertAllFinal(d)
        # The options used, with their defaults.
        self.assertEqual((d["url"], d["conns"], d["streams"], d["workers"], d["orgs"],
                          d["payload_bytes"], d["event_id"], d["rate"], d["signed"]),
                         (sink.url(), 1, 100, 1, 10000, 564, "", 0, False))
        self.assertGreater(d["deliveries_per_s"], 0)
        self.assertGreater(d["latency_us"]["max"], 0)
        self.assertLessEqual(d["latency_us"]["p50"], d["latency_us"]["p99"])
        self.assertLessEqual(d["latency_us"]["p99"], d["latency_us"]["max"])
        sink.stop()
        self.assertEqual(sink.summary["requests"], 2000, sink.summary)
        self.assertEqual(sink.summary["unique_event_ids"], 2000, sink.summary)
        self.assertEqual(sink.summary["by_protocol"].get("h2"), 2000, sink.summary)
        self.assertEqual(len(sink.requests()[0].body), 602, "the default body is 602 B")

    def test_duration_stops_by_itself_with_every_event_final(self):
        sink = self.start_quiet_sink()
        d = self.load_json("--url", sink.url(), "--duration", 1)
        self.assertGreater(d["published"], 0, d)
        self.assertEqual(d["delivered"], d["published"], d)
        self.assertAllFinal(d)
        sink.stop()
        self.assertEqual(sink.summary["requests"], d["published"], sink.summary)

    def test_rate_paced_run_completes(self):
        sink = self.start_sink()
        d = self.load_json("--url", sink.url(), "--rate", 500, "--events", 300)
        self.assertEqual((d["published"], d["delivered"], d["rate"]), (300, 300, 500), d)
        self.assertAllFinal(d)

    def test_5xx_is_retried_until_exhausted(self):
        sink = self.start_sink(status_mix="503:1")
        n = 50
        d = self.load_json("--url", sink.url(), "--events", n, "--retry-base-ms", 10,
                           "--max-retries", 2)
        self.assertEqual((d["exhausted"], d["delivered"], d["attempts"], d["attempts_5xx"]),
                         (n, 0, 3 * n, 3 * n), d)
        self.assertAllFinal(d)
        sink.stop()
        self.assertEqual(sink.summary["requests"], 3 * n, sink.summary)
        self.assertEqual(sink.summary["unique_event_ids"], n, sink.summary)

    def test_http1_speaks_http_1_1(self):
        sink = self.start_sink()
        d = self.load_json("--url", sink.url(), "--events", 200, "--http1", "--conns", 4)
        self.assertEqual(d["delivered"], 200, d)
        self.assertEqual(d["connections_h2"], 0, d)
        self.assertTrue(d["http1"])
        sink.stop()
        self.assertEqual(sink.summary["by_protocol"].get("http/1.1"), 200, sink.summary)
        self.assertEqual(sink.summary["by_protocol"].get("h2", 0), 0, sink.summary)

    def test_sign_adds_the_signature_header(self):
        sink = self.start_sink()
        d = self.load_json("--url", sink.url(), "--events", 20, "--sign")
        self.assertTrue(d["signed"])
        self.assertEqual(d["delivered"], 20, d)
        sink.stop()
        requests = sink.requests()
        self.assertEqual(len(requests), 20)
        for req in requests:
            sig = req.header("x-partoo-signature-v1")
            self.assertIsNotNone(sig, req["headers"])
            self.assertEqual(len(base64.b64decode(sig, validate=True)), 64)

    def signed_run(self, events, *args):
        """fanout-load with a fresh openssl key (--sign-key) and `args`, to a sink: its JSON,
        after checking that every request's signature verifies with the key's public half."""
        key = os.path.join(self.tmp, "signing.pem")
        subprocess.run(["openssl", "genpkey", "-algorithm", "ed25519", "-out", key], check=True,
                       capture_output=True, timeout=harness.CLI_TIMEOUT)
        pub = subprocess.run(["openssl", "pkey", "-in", key, "-pubout"], check=True,
                             capture_output=True, text=True, timeout=harness.CLI_TIMEOUT).stdout
        sink = self.start_sink()
        d = self.load_json("--url", sink.url(), "--events", events, "--sign-key", key, *args)
        self.assertTrue(d["signed"])
        self.assertEqual(d["delivered"], events, d)
        sink.stop()
        requests = sink.requests()
        self.assertEqual(len(requests), events)
        for req in requests:
            ok, out = verify_signature(pub, req.body, req.header("x-partoo-signature-v1"),
                                       self.tmp)
            self.assertTrue(ok, out)
        return d

    def test_sign_key_signatures_verify_with_its_public_key(self):
        d = self.signed_run(5)
        self.assertEqual((d["signing_threads"], d["signed_off_worker"]), (0, 0), d)

    def test_signing_threads_sign_off_the_worker(self):
        d = self.signed_run(8, "--signing-threads", 2)
        self.assertEqual((d["signing_threads"], d["signed_off_worker"]), (2, 8), d)

    def test_events_spread_over_orgs_and_types_with_the_payload_size(self):
        sink = self.start_sink()
        d = self.load_json("--url", sink.url(), "--events", 60, "--orgs", 3, "--types", 2,
                           "--payload-bytes", 100)
        self.assertEqual(d["delivered"], 60, d)
        sink.stop()
        by_type = {}
        for req in sink.requests():
            body = json.loads(req.body)
            by_type[body["type"]] = by_type.get(body["type"], 0) + 1
            start = req.body.index(b'"payload":') + len(b'"payload":')
            self.assertEqual(len(req.body[start:-1]), 100, req.body)
        self.assertEqual(by_type, {"business_updated": 30, "business_deleted": 30})

    def test_event_id_gives_every_request_that_id(self):
        sink = self.start_sink()
        d = self.load_json("--url", sink.url(), "--events", 30, "--orgs", 3,
                           "--event-id", "evt:fixed-1")
        self.assertEqual((d["delivered"], d["event_id"]), (30, "evt:fixed-1"), d)
        sink.stop()
        ids = [req.header("x-partoo-event-id") for req in sink.requests()]
        self.assertEqual(ids, ["evt:fixed-1"] * 30)
        self.assertEqual(sink.summary["unique_event_ids"], 1, sink.summary)

    def test_usage_errors_exit_2_naming_the_option(self):
        url = "http://127.0.0.1:9/hook"
        cases = [
            ([], "--url"),
            (["--url"], "--url"),
            (["--url", url, "--events", "0"], "--events"),
            (["--url", url, "--events", "5", "--duration", "1"], "--duration"),
            (["--url", url, "--rate", "-1"], "--rate"),
            (["--url", url, "--types", "7"], "--types"),
            (["--url", url, "--payload-bytes", "1"], "--payload-bytes"),
            (["--url", url, "--event-id", 'a"b'], "--event-id"),
            (["--url", url, "--event-id", "x" * 129], "--event-id"),
            (["--url", url, "--event-id", "a b"], "--event-id"),
            (["--url", url, "--allow-subnet", "10.0.0.1/8"], "--allow-subnet"),
            (["--url", url, "--sign-key", os.path.join(self.tmp, "missing.pem")], "--sign-key"),
            (["--url", url, "--sign", "--sign-key", "k.pem"], "--sign-key"),
            (["--url", url, "--signing-threads", "2"], "--signing-threads"),
            (["--url", url, "--sign", "--signing-threads", "257"], "--signing-threads"),
            (["--url", url, "--batch", "10"], "--batch"),
            (["--url", "ftp://127.0.0.1/hook"], "--url"),
            (["--url", url, "--no-such-option"], "--no-such-option"),
            (["--ingest", "http://127.0.0.1:9"], "--key"),
            (["--ingest", "http://127.0.0.1:9", "--key", "k", "--sign"], "--sign"),
            (["--ingest", "http://127.0.0.1:9", "--key", "k", "--signing-threads", "1"],
             "--signing-threads"),
            (["--ingest", "http://127.0.0.1:9", "--key", "k", "--batch", "10001"], "--batch"),
        ]
        for args, option in cases:
            with self.subTest(args=args):
                r = self.load(*args, expect=2)
                self.assertIn(option, r.stderr)
                self.assertEqual(r.stdout, "")

    def start_quiet_sink(self):
        s = QuietSink(self.tmp)
        self._processes.append(s)
        return s.start()


class HelpersTest(FanoutLoadTestCase):
    """The options the benchmark scripts use besides the load itself."""

    def test_print_body_is_the_delivery_body(self):
        r = self.load("--print-body")
        self.assertEqual(len(r.stdout.encode()), 602)
        body = json.loads(r.stdout)
        self.assertEqual(body["type"], "business_updated")
        r = self.load("--print-body", "--payload-bytes", 50)
        self.assertEqual(r.stdout, '{"type":"business_updated","payload":{"pad":"'
                         + "x" * 40 + '"}}')

    def test_sign_rate_only_measures_both_libraries(self):
        d = self.load_json("--sign-rate-only", "--events", 200)
        self.assertEqual((d["mode"], d["signatures"], d["body_bytes"]),
                         ("sign-rate-only", 200, 602), d)
        self.assertGreater(d["signer_per_s"], 0)
        self.assertGreater(d["boringssl_per_s"], 0)

    def test_waiting_retries_leaves_every_delivery_waiting(self):
        sink = self.start_sink(status_mix="503:1")
        d = self.load_json("--url", sink.url(), "--waiting-retries", "--events", 100)
        self.assertEqual((d["mode"], d["waiting_retry"], d["final"], d["handed_back"]),
                         ("waiting-retries", 100, 0, 100), d)


class IngestModeTest(FanoutLoadTestCase):

    def start_subscribed_daemon(self, config=None, sink_args=()):
        """A fanoutd with organisation 1 subscribed to business_updated at a fanout-sink."""
        sink = self.start_sink(args=sink_args)
        daemon = self.start_daemon(config=config)
        admin = apikey(daemon.data, "ORG_ADMIN", org=1)
        r = daemon.http("POST", "/v2/webhooks", key=admin,
                        body={"items": [{"url": sink.url(), "event_type": "business_updated"}]})
        self.assertStatus(r, 200)
        return daemon, sink, apikey(daemon.data, "INGEST")

    def test_accepted_and_dropped_are_counted(self):
        daemon, sink, key = self.start_subscribed_daemon()
        # Organisation 2 has no subscription: every other event is dropped.
        d = self.load_json("--ingest", daemon.url, "--key", key, "--events", 1000, "--orgs", 2,
                           "--batch", 100)
        self.assertEqual((d["accepted"], d["dropped"], d["refused"], d["busy"]),
                         (500, 500, 0, 0), d)
        self.assertEqual((d["requests"], d["requests_failed"], d["cut"]), (10, 0, False), d)
        sink.wait_count(500)
        d = self.load_json("--ingest", daemon.url, "--key", key, "--events", 200, "--orgs", 1,
                           "--http1")
        self.assertEqual((d["accepted"], d["dropped"]), (200, 0), d)
        sink.wait_count(700)

    def test_a_repeated_id_is_counted_duplicate(self):
        daemon, sink, key = self.start_subscribed_daemon()
        d = self.load_json("--ingest", daemon.url, "--key", key, "--events", 50, "--orgs", 1,
                           "--batch", 10, "--event-id", "same-id")
        self.assertEqual((d["accepted"], d["duplicate"], d["dropped"], d["refused"]),
                         (1, 49, 0, 0), d)
        self.assertEqual((d["requests"], d["requests_failed"], d["unanswered"], d["error"]),
                         (5, 0, 0, ""), d)
        sink.wait_recorded(1)
        self.assertEqual(sink.requests(partial=True)[0].header("x-partoo-event-id"), "same-id")

    def test_busy_lines_are_sent_again(self):
        # Room for 50 events in flight, each held 200 ms by the sink: a batch of 100 is half
        # busy, and the busy half goes again after the daemon's Retry-After.
        daemon, sink, key = self.start_subscribed_daemon(config="max_in_flight = 50\n",
                                                         sink_args=["--delay-ms", "200"])
        d = self.load_json("--ingest", daemon.url, "--key", key, "--events", 300, "--orgs", 1,
                           "--batch", 100)
        self.assertEqual((d["accepted"], d["busy_unsent"], d["cut"]), (300, 0, False), d)
        self.assertGreater(d["busy"], 0, d)
        sink.wait_count(300)

    def test_no_new_batch_while_the_daemon_answers_busy(self):
        # Room for 50 events in flight at a black hole, one request at a time, for 2 s: the
        # first batch is half busy, and every re-send after it all busy (nothing in flight ever
        # ends). A sender that heeds Retry-After never sends a second batch; one that does not
        # sends batch after batch, each answered busy.
        hole = self.start_sink(args=["--blackhole", "--quiet"])
        daemon = self.start_daemon(config="max_in_flight = 50\n")
        admin = apikey(daemon.data, "ORG_ADMIN", org=1)
        r = daemon.http("POST", "/v2/webhooks", key=admin,
                        body={"items": [{"url": hole.url(), "event_type": "business_updated"}]})
        self.assertStatus(r, 200)
        key = apikey(daemon.data, "INGEST")
        r = self.load("--ingest", daemon.url, "--key", key, "--duration", 2, "--orgs", 1,
                      "--batch", 100, "--conns", 1, "--streams", 1, "--json", expect=1)
        d = harness.parse_json_strict(r.stdout.strip())
        self.assertEqual((d["generated"], d["accepted"], d["busy_unsent"], d["cut"]),
                         (100, 50, 50, False), d)
        self.assertGreaterEqual(d["busy_pauses"], 1, d)
        self.assertGreaterEqual(d["busy"], 50, d)

    def test_a_bad_key_fails_with_exit_1(self):
        daemon, _, _ = self.start_subscribed_daemon()
        d = self.load_json("--ingest", daemon.url, "--key", "fo_wrong", "--events", 10,
                           expect=1)
        self.assertEqual(d["accepted"], 0, d)
        self.assertIn("401", d["error"])


def main():
    global LOAD
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--load", required=True, help="path of the fanout-load binary")
    parser.add_argument("--fanoutd", required=True, help="path of the fanoutd binary")
    parser.add_argument("--sink", required=True, help="path of the fanout-sink binary")
    args, rest = parser.parse_known_args()
    LOAD = os.path.abspath(args.load)
    harness.FANOUTD = os.path.abspath(args.fanoutd)
    harness.SINK = os.path.abspath(args.sink)
    for path in (LOAD, harness.FANOUTD, harness.SINK):
        if not os.access(path, os.X_OK):
            sys.exit(f"not an executable: {path}")
    sys.exit(harness.run_unittest(rest))


if __name__ == "__main__":
    main()
