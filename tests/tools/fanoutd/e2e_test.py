#!/usr/bin/env python3
"""fanoutd end to end: webhooks made through the API, events through /v2/events and
`fanoutd publish`, deliveries checked at a real fanout-sink (headers, exact body, signature),
and metrics (tools/fanoutd/README.md, docs/webhook-contract.md §3–4). Retries, the address
guard and busy answers: e2e_retry_test.py; what both share: e2e_case.py.

Run: python3 e2e_test.py --fanoutd build/X/tools/fanoutd/fanoutd --sink build/X/tools/fanout-sink
"""

import collections
import json
import os
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
import harness  # noqa: E402
from harness import public_key_pem, verify_signature, wait_until  # noqa: E402
from e2e_case import (ANSWER_FIELDS, ITEM_FIELDS, ORG, PAYLOADS, E2ECase,  # noqa: E402
                      delivery_body, documented, event)


class DeliveryTest(E2ECase):

    def test_ingest_and_delivery(self):
        """One event (application/json) and NDJSON with invalid, unknown-type, unsubscribed
        and blank lines: 202 with per-item statuses in order; each accepted event reaches the
        sink once with the custom headers, its id, attempt 1, fanout's user agent, the exact
        body and a signature that verifies with `fanoutd keys public`; metrics agree."""
        d = self.daemon()
        sink = self.start_sink()
        headers = {"X-Token": "s3cr3t", "X-Tenant": "acme"}
        self.subscribe(d, "business_updated", sink.url("/hooks/a?x=1"), headers)
        self.subscribe(d, "message_created", sink.url("/hooks/m"))
        pem = public_key_pem(d.data)
        self.assertTrue(pem.startswith("-----BEGIN PUBLIC KEY-----"), pem)

        r = self.publish(d, event(ORG, "business_updated", PAYLOADS[0], "e2e-1"))
        self.assertStatus(r, 202)
        self.assertEqual(documented(r.body), {"accepted": 1, "dropped": 0, "refused": 0, "busy": 0,
                                              "duplicate": 0, "items": [{"status": "accepted", "line": 1, "id": "e2e-1"}]})

        lines = [
            event(ORG, "business_updated", PAYLOADS[1], "e2e-2"),         # 1 accepted
            event(ORG, "message_created", PAYLOADS[2]),                   # 2 accepted, new id
            "",                                                           # 3 blank: skipped
            '{"org_id": 42, "type": "business_updated", "payload": {',    # 4 invalid_json
            event(ORG, "business_exploded", "{}", "e2e-x"),               # 5 unknown_type
            event(ORG, "lead_received", '{"x":1}', "e2e-nosub"),          # 6 no subscription
            '{"type": "business_updated", "payload": {}}',                # 7 missing_org_id
            event(ORG, "business_updated", PAYLOADS[4], "e2e-3"),         # 8 accepted
        ]
        r = self.publish(d, *lines)
        self.assertStatus(r, 202)
        items = self.items(r)
        self.assertEqual({k: r.body[k] for k in ("accepted", "dropped", "refused")},
                         {"accepted": 3, "dropped": 1, "refused": 3}, r.body)
        self.assertEqual(len(items), 7, "one item per non-blank line")
        self.assertEqual(items[0], {"status": "accepted", "line": 1, "id": "e2e-2"})
        self.assertEqual((items[1]["status"], items[1]["line"]), ("accepted", 2))
        generated = items[1]["id"]
        self.assertIsInstance(generated, str)
        self.assertRegex(generated, r"^[\x21-\x7e]{1,128}$")
        self.assertEqual(items[2], {"status": "refused", "line": 4, "reason": "invalid_json"})
        self.assertEqual(items[3], {"status": "refused", "line": 5, "reason": "unknown_type"})
        self.assertEqual(items[4], {"status": "dropped", "line": 6, "id": "e2e-nosub",
                                    "reason": "no_subscription"})
        self.assertEqual(items[5], {"status": "refused", "line": 7, "reason": "missing_org_id"})
        self.assertEqual(items[6], {"status": "accepted", "line": 8, "id": "e2e-3"})

        self.wait_outcomes(d, 4, "delivered")
        self.wait_idle(d)
        sink.stop()
        by_id = collections.defaultdict(list)
        for req in sink.requests():
            by_id[req.header("x-partoo-event-id")].append(req)
        self.assertEqual(sorted(by_id), sorted(["e2e-1", "e2e-2", generated, "e2e-3"]))
        self.assertTrue(all(len(v) == 1 for v in by_id.values()), "one request per event")
        self.assertDelivery(by_id["e2e-1"][0], "business_updated", PAYLOADS[0], "e2e-1", pem,
                            path="/hooks/a?x=1", headers=headers)
        self.assertDelivery(by_id["e2e-2"][0], "business_updated", PAYLOADS[1], "e2e-2", pem,
                            path="/hooks/a?x=1", headers=headers)
        self.assertDelivery(by_id[generated][0], "message_created", PAYLOADS[2], generated,
                            pem, path="/hooks/m")
        self.assertIsNone(by_id[generated][0].header("x-token"), "headers are per subscription")
        self.assertDelivery(by_id["e2e-3"][0], "business_updated", PAYLOADS[4], "e2e-3", pem,
                            path="/hooks/a?x=1", headers=headers)
        tampered = by_id["e2e-1"][0].body.replace(b"Nord", b"Sud!")
        ok, _ = verify_signature(pem, tampered, by_id["e2e-1"][0].header("x-partoo-signature-v1"),
                                 self.tmp)
        self.assertFalse(ok, "the verification itself must be able to fail")

        # The latency histogram is recorded by the outcome's observer, after the outcome
        # counters the waits above read.
        wait_until(lambda: d.metric("fanout_delivery_latency_seconds_count") == 4,
                   message="four latencies recorded")
        m = d.metrics()
        self.assertEqual(m.value("fanout_events_published_total"), 4)
        for reason in ("invalid_json", "unknown_type", "missing_org_id", "no_subscription"):
            self.assertEqual(m.value("fanout_events_refused_total", reason=reason), 1, reason)
        self.assertEqual(m.value("fanout_outcomes_total", kind="delivered"), 4)
        self.assertEqual(m.value("fanout_attempts_total", **{"class": "2xx"}), 4)
        self.assertEqual(m.value("fanout_attempts_total", **{"class": "5xx"}), 0)
        self.assertEqual(m.value("fanout_in_flight"), 0)
        self.assertEqual(m.value("fanout_waiting_retries"), 0)
        self.assertEqual(m.value("fanout_subscriptions"), 2)
        self.assertEqual(m.value("fanout_delivery_latency_seconds_count"), 4)
        self.assertEqual(m.value("fanout_delivery_latency_seconds_bucket", le="+Inf"), 4)
        self.assertGreaterEqual(m.value("fanout_api_requests_total", method="POST",
                                        route="/v2/events", status="202"), 2)
        d.stop()

    def test_signing_threads_sign_every_delivery(self):
        """--signing-threads 2: the signature is made off the worker (the metric counts each
        one) and every delivery still carries a signature of its own body that verifies."""
        d = self.daemon(args=("--signing-threads", "2"))
        sink = self.start_sink()
        self.subscribe(d, "business_updated", sink.url("/hook"))
        pem = public_key_pem(d.data)
        ids = [f"st-{i}" for i in range(20)]
        lines = [event(ORG, "business_updated", '{"n":%d}' % i, ids[i]) for i in range(20)]
        self.assertEqual(self.publish_ok(d, *lines), ids)
        self.wait_outcomes(d, 20, "delivered")
        sink.stop()
        got = {req.header("x-partoo-event-id"): req for req in sink.requests()}
        self.assertEqual(sorted(got), sorted(ids))
        for i, event_id in enumerate(ids):
            self.assertDelivery(got[event_id], "business_updated", '{"n":%d}' % i, event_id, pem)
        self.assertEqual(d.metric("fanout_signatures_off_worker_total"), 20)
        d.stop()

    def test_no_partoo_signature_leaves_the_header_out(self):
        """--no-partoo-signature: deliveries and tryouts carry every other header, and no
        X-Partoo-Signature-v1; the key is still there (keys public prints it)."""
        d = self.daemon(args=("--no-partoo-signature",))
        sink, trial = self.start_sink(), self.start_sink()
        self.subscribe(d, "business_updated", sink.url("/hook"))
        ids = [f"np-{i}" for i in range(3)]
        lines = [event(ORG, "business_updated", '{"n":%d}' % i, ids[i]) for i in range(3)]
        self.assertEqual(self.publish_ok(d, *lines), ids)
        self.wait_outcomes(d, 3, "delivered")
        r = d.http("POST", "/v2/webhooks/tryout", self.admin,
                   {"items": [{"url": trial.url("/t"), "event_type": "business_updated"}]})
        self.assertStatus(r, 200)
        sink.stop()
        trial.stop()
        got = sink.requests()
        self.assertEqual(sorted(req.header("x-partoo-event-id") for req in got), ids)
        for req in got + trial.requests():
            self.assertIsNone(req.header("x-partoo-signature-v1"), req["headers"])
            self.assertEqual(req.header("x-partoo-attempt"), "1")
        self.assertEqual(len(trial.requests()), 1)
        self.assertIn("BEGIN PUBLIC KEY", public_key_pem(d.data))
        d.stop()

    def test_ingest_answer_has_exactly_the_documented_fields(self):
        """Each item carries exactly the fields README "Ingest" lists for its status, and the
        answer exactly accepted, dropped, refused, busy and items."""
        d = self.daemon()
        self.subscribe(d, "business_created", f"http://127.0.0.1:{harness.closed_port()}/")
        r = self.publish(d, event(ORG, "business_created", "{}", "shape-1"),
                         event(ORG, "lead_received", "{}", "shape-2"), "nope")
        self.assertStatus(r, 202)
        self.assertEqual(set(r.body), ANSWER_FIELDS, r.body)
        self.assertEqual([i["status"] for i in r.body["items"]],
                         ["accepted", "dropped", "refused"])
        for item in r.body["items"]:
            self.assertEqual(set(item), ITEM_FIELDS[item["status"]], item)
        d.stop()

    def test_refusal_reasons_and_limits(self):
        """Each envelope fault is refused with routing's reason code and its line number, and
        counted by reason; ingest.max_body_bytes gives 413; a body that is not JSON or NDJSON
        gives 415."""
        d = self.daemon(config="max_event_bytes = 512\n[ingest]\nmax_body_bytes = 4096\n")
        sink = self.start_sink()
        self.subscribe(d, "business_created", sink.url())
        cases = [(event(ORG, "business_created", '{"pad":"' + "p" * 600 + '"}'), "too_large"),
                 ("[1, 2]", "not_object"),
                 (event(ORG, "business_created", "[]"), "bad_payload"),
                 ('{"org_id":"42","type":"business_created","payload":{}}', "bad_org_id"),
                 ('{"org_id":0,"type":"business_created","payload":{}}', "bad_org_id"),
                 ('{"org_id":42,"payload":{}}', "missing_type"),
                 ('{"org_id":42,"type":7,"payload":{}}', "bad_type"),
                 ('{"org_id":42,"type":"business_created"}', "missing_payload"),
                 ('{"org_id":42,"org_id":42,"type":"business_created","payload":{}}',
                  "duplicate_field"),
                 (event(ORG, "business_created", "{}", "x" * 129), "bad_id"),
                 (event(ORG, "business_created", '{"d":' + "[" * 100 + "]" * 100 + "}"),
                  "too_deep"),
                 ('{"org_id":42,"type":"business_created","payload":{}} trailing',
                  "invalid_json")]
        r = self.publish(d, *[line for line, _ in cases], event(ORG, "business_created", "{}",
                                                                  "the-good-one"))
        self.assertStatus(r, 202)
        expected = [{"status": "refused", "line": n, "reason": reason}
                    for n, (_, reason) in enumerate(cases, start=1)]
        expected.append({"status": "accepted", "line": len(cases) + 1, "id": "the-good-one"})
        self.assertEqual(self.items(r), expected)
        self.assertEqual((r.body["accepted"], r.body["refused"]), (1, len(cases)))
        m = d.metrics()
        for reason in {reason for _, reason in cases}:
            count = sum(1 for _, x in cases if x == reason)
            self.assertEqual(m.value("fanout_events_refused_total", reason=reason), count,
                             reason)
        big = "\n".join(event(ORG, "lead_received", "{}", f"big-{i}") for i in range(100))
        self.assertGreater(len(big), 4096)
        self.assertError(self.publish(d, big, ndjson=True), 413)
        r = d.http("POST", "/v2/events", self.ingest_key,
                   event(ORG, "business_created", "{}"), content_type="text/plain")
        self.assertError(r, 415)
        r = d.http("POST", "/v2/events", self.ingest_key,
                   event(ORG, "business_created", "{}"), content_type=None)
        self.assertError(r, 415)
        r = d.http("POST", "/v2/events", self.ingest_key, event(ORG, "business_created", "{}"),
                   content_type="application/x-ndjson; charset=utf-8")
        self.assertStatus(r, 202)
        self.wait_outcomes(d, 2, "delivered")
        d.stop()

    def test_update_url_moves_later_deliveries(self):
        """After the URL changes to a second sink, later events go there only."""
        d = self.daemon()
        first, second = self.start_sink(), self.start_sink()
        cfg = self.subscribe(d, "lead_received", first.url("/one"), {"X-Kept": "yes"})
        [e1] = self.publish_ok(d, event(ORG, "lead_received", '{"n":1}', "move-1"))
        self.wait_outcomes(d, 1, "delivered")
        r = d.http("PATCH", f"/v2/webhooks/{cfg['id']}", self.admin, {"url": second.url("/two")})
        self.assertStatus(r, 200)
        later = self.publish_ok(d, event(ORG, "lead_received", '{"n":2}', "move-2"),
                                event(ORG, "lead_received", '{"n":3}', "move-3"))
        self.assertEqual(later, ["move-2", "move-3"])
        self.wait_outcomes(d, 3, "delivered")
        first.stop()
        second.stop()
        self.assertEqual([q.header("x-partoo-event-id") for q in first.requests()], [e1])
        got = second.requests()
        self.assertEqual(sorted(q.header("x-partoo-event-id") for q in got), later)
        for q in got:
            self.assertEqual(q["path"], "/two")
            self.assertEqual(q.header("x-kept"), "yes", "headers kept by a url-only update")
        d.stop()

    def test_delete_stops_deliveries(self):
        """After DELETE, events answer dropped/no_subscription and the sink gets nothing."""
        d = self.daemon()
        sink = self.start_sink()
        cfg = self.subscribe(d, "business_deleted", sink.url())
        self.publish_ok(d, event(ORG, "business_deleted", "{}", "del-1"))
        self.wait_outcomes(d, 1, "delivered")
        self.assertStatus(d.http("DELETE", f"/v2/webhooks/{cfg['id']}", self.admin), 204)
        r = self.publish(d, event(ORG, "business_deleted", "{}", "del-2"),
                         event(ORG, "business_deleted", "{}", "del-3"))
        self.assertStatus(r, 202)
        self.assertEqual(self.items(r), [
            {"status": "dropped", "line": 1, "id": "del-2", "reason": "no_subscription"},
            {"status": "dropped", "line": 2, "id": "del-3", "reason": "no_subscription"}])
        self.assertEqual((r.body["accepted"], r.body["dropped"]), (0, 2))
        self.wait_idle(d)
        sink.stop()
        self.assertEqual([q.header("x-partoo-event-id") for q in sink.requests()], ["del-1"])
        self.assertEqual(d.metric("fanout_subscriptions"), 0)
        d.stop()

    def test_tryout_uses_the_latest_ingested_payload(self):
        """Tryout's body carries the payload of the latest event ingested for the pair (byte
        for byte), else a built-in sample; it is signed and marked as a tryout."""
        d = self.daemon()
        sink, trial = self.start_sink(), self.start_sink()
        self.subscribe(d, "message_updated", sink.url())
        payload = '{"latest" : [1, 2, "tr\\u00fds"], "x":{ }}'
        self.publish_ok(d, event(ORG, "message_updated", '{"older":true}', "old"))
        self.publish_ok(d, event(ORG, "message_updated", payload, "newest"))
        self.wait_outcomes(d, 2, "delivered")
        pem = public_key_pem(d.data)
        for event_type in ("message_updated", "business_created"):
            r = d.http("POST", "/v2/webhooks/tryout", self.admin,
                       {"items": [{"url": trial.url("/t"), "event_type": event_type}]})
            self.assertStatus(r, 200)
            self.assertIs(r.body["items"][0]["success"], True, r.body)
        trial.stop()
        latest, sample = trial.requests()
        self.assertEqual(latest.body, delivery_body("message_updated", payload))
        self.assertTrue(sample.body.startswith(b'{"type":"business_created","payload":{'))
        self.assertIsInstance(json.loads(sample.body)["payload"], dict)
        for req in (latest, sample):
            self.assertEqual(req.header("x-partoo-webhook-tryout"), "true")
            self.assertTrue(req.header("x-partoo-event-id", "").startswith("tryout-"))
            ok, out = verify_signature(pem, req.body, req.header("x-partoo-signature-v1", ""),
                                       self.tmp)
            self.assertTrue(ok, out)
        d.stop()


class PublishCommandTest(E2ECase):
    """`fanoutd publish --url ... --key ... [FILE]`."""

    def write(self, name, lines):
        path = os.path.join(self.tmp, name)
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
        return path

    def test_publish_file_and_stdin(self):
        """Prints accepted/dropped lines and the summary, exit 0; a refused line → exit 1
        with `refused LINE REASON`; stdin works; a bad command line → exit 2."""
        d = self.daemon()
        sink = self.start_sink()
        self.subscribe(d, "business_created", sink.url())
        good = self.write("good.ndjson", [event(ORG, "business_created", "{}", "p-1"),
                                          event(ORG, "business_created", '{"a":1}', "p-2"),
                                          event(ORG, "lead_received", "{}", "p-3")])
        r = harness.run_fanoutd("publish", "--url", d.url, "--key", self.ingest_key, good)
        self.assertEqual(r.returncode, 0, r.stderr)
        out = [line for line in r.stdout.splitlines() if line.strip()]
        self.assertIn("accepted p-1", out)
        self.assertIn("accepted p-2", out)
        self.assertIn("dropped p-3 no_subscription", out)
        self.assertEqual(out[-1], "published: accepted=2 dropped=1 refused=0 duplicate=0")
        # The same file again: the events with an id already accepted are duplicates, not sent
        # again (tools/fanoutd/README.md, "Ingest"), and that is a success.
        r = harness.run_fanoutd("publish", "--url", d.url, "--key", self.ingest_key, good)
        self.assertEqual(r.returncode, 0, r.stderr)
        out = [line for line in r.stdout.splitlines() if line.strip()]
        self.assertIn("duplicate p-1", out)
        self.assertIn("duplicate p-2", out)
        self.assertEqual(out[-1], "published: accepted=0 dropped=1 refused=0 duplicate=2")

        bad = self.write("bad.ndjson", [event(ORG, "business_created", "{}", "p-4"),
                                        event(ORG, "business_exploded", "{}", "p-5")])
        r = harness.run_fanoutd("publish", "--url", d.url, "--key", self.ingest_key, bad)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        out = [line for line in r.stdout.splitlines() if line.strip()]
        self.assertIn("accepted p-4", out)
        self.assertIn("refused 2 unknown_type", out)
        self.assertEqual(out[-1], "published: accepted=1 dropped=0 refused=1 duplicate=0")

        r = harness.run_fanoutd("publish", "--url", d.url, "--key", self.ingest_key,
                                input=event(ORG, "business_created", "{}", "p-6") + "\n")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("accepted p-6", r.stdout.splitlines())

        many = self.write("many.ndjson", [event(ORG, "lead_received", "{}", f"m-{i}")
                                          for i in range(2500)])
        posts = lambda: d.metric("fanout_api_requests_total", method="POST",  # noqa: E731
                                 route="/v2/events", status="202")
        before = posts()
        r = harness.run_fanoutd("publish", "--url", d.url, "--key", self.ingest_key, many)
        self.assertEqual(r.returncode, 0, r.stderr)
        out = [line for line in r.stdout.splitlines() if line.strip()]
        self.assertEqual(len(out), 2501)
        self.assertEqual(out[-1], "published: accepted=0 dropped=2500 refused=0 duplicate=0")
        requests = posts() - before
        self.assertGreaterEqual(requests, 3, "batches of up to 1,000 lines: at least 3")
        self.assertLess(requests, 2500, "batches, not one request per line")

        r = harness.run_fanoutd("publish", "--url", d.url, good)  # no --key
        self.assertEqual(r.returncode, 2, r.stdout)
        self.assertTrue(r.stderr.strip(), "the reason and the usage on stderr")

        self.wait_outcomes(d, 4, "delivered")
        sink.stop()
        self.assertEqual(sorted(q.header("x-partoo-event-id") for q in sink.requests()),
                         ["p-1", "p-2", "p-4", "p-6"])
        d.stop()

    def test_publish_resends_busy_lines(self):
        """max_in_flight = 1 and a receiver that answers after 200 ms: publish waits and
        re-sends the busy lines until all are accepted (exit 0)."""
        d = self.daemon(config="max_in_flight = 1\n")
        sink = self.start_sink(args=["--delay-ms", "200"])
        self.subscribe(d, "message_created", sink.url())
        path = self.write("busy.ndjson", [event(ORG, "message_created", "{}", f"q-{i}")
                                          for i in range(3)])
        r = harness.run_fanoutd("publish", "--url", d.url, "--key", self.ingest_key, path)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        out = [line for line in r.stdout.splitlines() if line.strip()]
        for i in range(3):
            self.assertEqual(out.count(f"accepted q-{i}"), 1, out)
        self.assertEqual(out[-1], "published: accepted=3 dropped=0 refused=0 duplicate=0")
        self.wait_outcomes(d, 3, "delivered")
        sink.stop()
        self.assertEqual(sorted(q.header("x-partoo-event-id") for q in sink.requests()),
                         ["q-0", "q-1", "q-2"])
        d.stop()


if __name__ == "__main__":
    harness.main()
