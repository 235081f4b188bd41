#!/usr/bin/env python3
"""Several fanoutd instances on one data directory (tools/fanoutd/README.md, "Several
instances on one host"): a change made through one instance's API is in the others'
routing tables from their first poll after it on (the README's "within 1 s"); concurrent writes through both never answer 5xx; each instance has its own
journal, and a second process on a journal directory in use fails at start with a clear error;
deliveries saved by a stop are resumed by one instance only when two start at once.

Run: python3 shared_dir_test.py --fanoutd build/X/tools/fanoutd/fanoutd \
         --sink build/X/tools/fanout-sink
"""

import os
import sys
import threading
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
import harness  # noqa: E402
from harness import Daemon, FanoutdTestCase, apikey, run_fanoutd, wait_until  # noqa: E402

ORG = 42
# Enough management requests for the concurrent-writes test (300 per minute by default).
NO_RATE_LIMIT = "[api]\nrate_limit_per_minute = 1000000\n"
# Retries far enough apart that a restart fits between the first attempt and the second.
SLOW_RETRY = "[retry]\nbase_ms = 4000\nfactor = 1\njitter = 0\nmax_retries = 3\n"


def event(event_type, event_id, org=ORG):
    return f'{{"id":"{event_id}","org_id":{org},"type":"{event_type}","payload":{{}}}}'


class SharedDirCase(FanoutdTestCase):

    def instance(self, data, name, config=None, args=()):
        """A started daemon on the shared `data`, with its own journal directory."""
        journal = os.path.join(self.tmp, f"journal-{name}")
        d = Daemon(data, workdir=self.tmp, config=config,
                   args=["--journal-dir", journal, *args])
        self._processes.append(d)
        return d.start()

    def publish(self, d, key, *lines):
        r = d.http("POST", "/v2/events", key, "\n".join(lines) + "\n",
                   content_type="application/x-ndjson")
        self.assertStatus(r, 202)
        return r.body["items"]

    def after_next_poll(self, d):
        """Waits until `d` has run a whole subscription-sync poll that began after this call.
        Metrics are answered on the loop that polls, so no poll is under way while they are
        read: a commit made before the call is in `d`'s routing table afterwards."""
        polls = d.metric("fanout_subscription_sync_polls_total")
        wait_until(lambda: d.metric("fanout_subscription_sync_polls_total") >= polls + 1,
                   message=f"a subscription-sync poll on {d.port}")

    def assert_routed(self, d, key, event_type, accepted, probe):
        """Publishes one probe through `d`: accepted, or dropped no_subscription when not
        `accepted`. Returns its id."""
        [item] = self.publish(d, key, event(event_type, probe))
        if accepted:
            self.assertEqual(item["status"], "accepted", f"{probe}: {item}")
        else:
            self.assertEqual((item["status"], item.get("reason")), ("dropped", "no_subscription"),
                             f"{probe}: {item}")
        return probe


class PropagationTest(SharedDirCase):

    def test_changes_through_one_instance_reach_the_other(self):
        """Create through A, publish through B: delivered. Update the URL through B: A
        delivers to the new URL. Delete through A: B answers no_subscription. Each change is
        routed by the other instance from its first poll after the change on (every 200 ms:
        the README's "within 1 s" is that plus one read), counted in polls, not seconds."""
        data = self.data_dir()
        a = self.instance(data, "a")
        b = self.instance(data, "b")
        admin = apikey(data, "ORG_ADMIN", org=ORG)
        ingest = apikey(data, "INGEST")
        first, second = self.start_sink(), self.start_sink()

        r = a.http("POST", "/v2/webhooks", admin, {"items": [
            {"url": first.url("/one"), "event_type": "business_created"}]})
        self.assertStatus(r, 200)
        wid = r.body["items"][0]["id"]
        self.after_next_poll(b)
        probe = self.assert_routed(b, ingest, "business_created", True, "create")
        first.wait_count(1)
        self.assertEqual(b.metric("fanout_subscriptions"), 1)

        r = b.http("PATCH", f"/v2/webhooks/{wid}", admin, {"url": second.url("/two")})
        self.assertStatus(r, 200)
        self.after_next_poll(a)
        moved = self.assert_routed(a, ingest, "business_created", True, "update")
        second.wait_recorded(1)
        self.assertEqual([(q["path"], q.header("x-partoo-event-id"))
                          for q in second.requests(partial=True)], [("/two", moved)])

        self.assertStatus(a.http("DELETE", f"/v2/webhooks/{wid}", admin), 204)
        self.after_next_poll(b)
        self.assert_routed(b, ingest, "business_created", False, "delete")
        self.assertEqual(b.metric("fanout_subscriptions"), 0)

        for d in (a, b):
            wait_until(lambda d=d: d.metric("fanout_in_flight") == 0, message="idle")
        a.stop()
        b.stop()
        first.stop()
        got = [q.header("x-partoo-event-id") for q in first.requests()]
        self.assertEqual(got, [probe], "B delivered to the URL created through A")
        self.assertTrue(all(q["path"] == "/one" for q in first.requests()))

    def test_concurrent_writes_through_both_never_fail(self):
        """Two clients write through A and B at once (creates, updates, deletes on the same
        pairs): no answer is 5xx, and afterwards both routing tables agree with the store."""
        data = self.data_dir()
        a = self.instance(data, "a", config=NO_RATE_LIMIT)
        b = self.instance(data, "b", config=NO_RATE_LIMIT)
        admin = apikey(data, "ORG_ADMIN", org=ORG)
        ingest = apikey(data, "INGEST")
        sink = self.start_sink()
        statuses = {}
        lock = threading.Lock()

        def client(d, n):
            session = d.session()
            for i in range(n):
                t = harness.PARTOO_TYPES[i % len(harness.PARTOO_TYPES)]
                r = session.http("POST", "/v2/webhooks", admin, {"items": [
                    {"url": sink.url(f"/{d.port}/{i}"), "event_type": t}]})
                answers = [r.status]
                listing = session.http("GET", "/v2/webhooks?per_page=100", admin)
                answers.append(listing.status)
                for cfg in (listing.body.get("items", []) if listing.status == 200 else []):
                    if cfg["event_type"] == t:
                        if i % 3 == 0:
                            r = session.http("DELETE", f"/v2/webhooks/{cfg['id']}", admin)
                        else:
                            r = session.http("PATCH", f"/v2/webhooks/{cfg['id']}", admin,
                                             {"custom_headers": {"X-I": str(i)}})
                        answers.append(r.status)
                with lock:
                    for s in answers:
                        statuses[s] = statuses.get(s, 0) + 1
            session.close()

        threads = [threading.Thread(target=client, args=(d, 60)) for d in (a, b)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertFalse([s for s in statuses if s >= 500], statuses)
        self.assertTrue(set(statuses) <= {200, 204, 400, 404}, statuses)
        self.assertGreater(statuses.get(200, 0), 100, statuses)

        listing = a.http("GET", "/v2/webhooks?per_page=100", admin)
        self.assertStatus(listing, 200)
        stored = {cfg["event_type"] for cfg in listing.body["items"]}

        def agree(d):
            items = self.publish(d, ingest, *[event(t, f"agree-{d.port}-{time.monotonic_ns()}-{t}")
                                              for t in harness.PARTOO_TYPES])
            routed = {t for t, item in zip(harness.PARTOO_TYPES, items)
                      if item["status"] == "accepted"}
            return routed == stored

        for d in (a, b):
            wait_until(lambda d=d: agree(d), interval=0.1,
                       message=f"instance {d.port} to route exactly {sorted(stored)}")
            wait_until(lambda d=d: d.metric("fanout_subscriptions") == len(stored),
                       message=f"instance {d.port}: fanout_subscriptions == {len(stored)}")


class OwnChangesTest(SharedDirCase):

    def test_own_changes_past_the_log_then_a_commit_elsewhere_reload_nothing(self):
        """One instance makes more subscription changes than the change log keeps (10,000),
        then another process commits (`fanoutd apikey create`): the instance reads the log and
        reloads nothing (before, its position had fallen out of the log behind its own changes,
        and it rebuilt the whole routing table); every subscription still routes. A change
        made elsewhere after that still reaches it."""
        extra = [f"own_type_{i}" for i in range(94)]  # 100 types with Partoo's six
        types = list(harness.PARTOO_TYPES) + extra
        config = "event_types = [" + ", ".join(f'"{t}"' for t in extra) + "]\n" + NO_RATE_LIMIT
        data = self.data_dir()
        a = self.instance(data, "a", config=config)
        orgs = list(range(1, 102))  # 101 x 100 = 10,100 subscriptions: past the log's 10,000
        provider = apikey(data, "PROVIDER", orgs=orgs)
        ingest = apikey(data, "INGEST")
        sink = self.start_sink()

        def two_polls():
            # One of them ran wholly after what came before the call: every commit made
            # before it has been seen, and the instance's position is where that poll left it.
            polls = a.metric("fanout_subscription_sync_polls_total")
            wait_until(lambda: a.metric("fanout_subscription_sync_polls_total") >= polls + 2,
                       message="two subscription-sync polls")

        # The keys' commits read first, so that the instance's position is before every change
        # below (a read in the middle of them would move it there).
        two_polls()
        session = a.session()
        for org in orgs:
            r = session.http("POST", f"/v2/webhooks?org_id={org}", provider,
                             {"items": [{"url": sink.url(f"/{org}"), "event_type": t}
                                        for t in types]})
            self.assertStatus(r, 200)
        session.close()
        total = len(orgs) * len(types)
        self.assertEqual(a.metric("fanout_subscriptions"), total)
        # A poll after the last write finds data_version unmoved and passes the own changes.
        two_polls()
        reads = a.metric("fanout_subscription_sync_reads_total")
        apikey(data, "ORG_ADMIN", org=1)  # a commit by another process
        wait_until(lambda: a.metric("fanout_subscription_sync_reads_total") > reads,
                   message="the instance to read the change log after another process's commit")
        self.assertEqual(a.metric("fanout_subscription_sync_reloads_total"), 0)
        self.assertEqual(a.metric("fanout_subscriptions"), total)
        items = self.publish(a, ingest, event(types[0], "own-first", org=orgs[0]),
                             event(types[-1], "own-last", org=orgs[-1]))
        self.assertEqual([i["status"] for i in items], ["accepted", "accepted"])
        # A change through another instance is still applied from the log, not by a reload.
        b = self.instance(data, "b", config=config)
        admin = apikey(data, "ORG_ADMIN", org=500)
        r = b.http("POST", "/v2/webhooks?org_id=500", admin,
                   {"items": [{"url": sink.url("/500"), "event_type": types[0]}]})
        self.assertStatus(r, 200)
        wait_until(lambda: a.metric("fanout_subscriptions") == total + 1,
                   message=f"instance a: fanout_subscriptions == {total + 1}")
        self.assertEqual(a.metric("fanout_subscription_sync_reloads_total"), 0)


class JournalLockTest(SharedDirCase):

    def serve_fails(self, data, journal=None):
        args = ["serve", "--listen", "127.0.0.1:0", "--data", data, "--insecure"]
        if journal is not None:
            args += ["--journal-dir", journal]
        r = run_fanoutd(*args)
        self.assertEqual(r.returncode, 1, f"stdout:\n{r.stdout}\nstderr:\n{r.stderr}")
        self.assertNotIn("listening on", r.stdout)
        return r.stderr

    def test_second_instance_on_a_journal_in_use_fails(self):
        """Same --journal-dir as a live instance: exit 1 naming the directory and the way out;
        the default journal (the data directory) likewise. kill -9 releases the lock."""
        data = self.data_dir()
        a = self.instance(data, "a")
        journal = os.path.join(self.tmp, "journal-a")
        err = self.serve_fails(data, journal)
        self.assertIn(f"journal directory {journal} is in use", err)
        self.assertIn(f"pid {a.proc.pid}", err)
        self.assertIn("give each instance its own --journal-dir", err)

        # Without --journal-dir both would use the data directory's journal.
        other = Daemon(data, workdir=self.tmp)
        self._processes.append(other)
        other.start()
        err = self.serve_fails(data)
        self.assertIn(f"journal directory {data} is in use", err)

        a.kill()
        again = Daemon(data, workdir=self.tmp, args=["--journal-dir", journal])
        self._processes.append(again)
        again.start()
        self.assertStatus(again.http("GET", "/healthz"), 200)
        again.stop()
        other.stop()

    def test_journal_dir_in_the_configuration_file(self):
        """[durability] dir is the file's name for --journal-dir."""
        data = self.data_dir()
        journal = os.path.join(self.tmp, "journal-from-file")
        d = Daemon(data, workdir=self.tmp, config=f'[durability]\ndir = "{journal}"\n')
        self._processes.append(d)
        d.start()
        self.assertTrue(os.path.exists(os.path.join(journal, "journal.db")))
        self.assertTrue(os.path.exists(os.path.join(journal, "journal.lock")))
        self.assertFalse(os.path.exists(os.path.join(data, "journal.db")))
        err = self.serve_fails(data, journal)
        self.assertIn(f"journal directory {journal} is in use", err)
        d.stop()


class SavedDeliveriesTest(SharedDirCase):

    def test_two_instances_starting_at_once_resume_saved_deliveries_once(self):
        """Deliveries saved by a --no-durable stop are resumed by exactly one of two instances
        started at the same time: each event reaches the receiver once."""
        n = 20
        data = self.data_dir()
        first = self.instance(data, "first", config=SLOW_RETRY, args=["--no-durable"])
        admin = apikey(data, "ORG_ADMIN", org=ORG)
        ingest = apikey(data, "INGEST")
        failing = self.start_sink("503:100")
        r = first.http("POST", "/v2/webhooks", admin, {"items": [
            {"url": failing.url("/old"), "event_type": "business_updated"}]})
        self.assertStatus(r, 200)
        wid = r.body["items"][0]["id"]
        ids = [f"saved-{i}" for i in range(n)]
        items = self.publish(first, ingest, *[event("business_updated", i) for i in ids])
        self.assertEqual([i["status"] for i in items], ["accepted"] * n)
        wait_until(lambda: first.metric("fanout_waiting_retries") == n,
                   message=f"{n} waiting retries")
        # The retries are due 4 s after the first attempts: they will go to the new URL.
        good = self.start_sink("200:1")
        r = first.http("PATCH", f"/v2/webhooks/{wid}", admin, {"url": good.url("/new")})
        self.assertStatus(r, 200)
        first.stop()
        failing.stop()

        daemons = [Daemon(data, workdir=self.tmp, config=SLOW_RETRY,
                          args=["--journal-dir", os.path.join(self.tmp, f"journal-{x}")])
                   for x in ("a", "b")]
        self._processes.extend(daemons)
        errors = []

        def start(d):
            try:
                d.start()
            except BaseException as e:  # reported below, with the logs
                errors.append(e)

        starters = [threading.Thread(target=start, args=(d,)) for d in daemons]
        for t in starters:
            t.start()
        for t in starters:
            t.join()
        self.assertEqual(errors, [])
        good.wait_count(n)
        for d in daemons:
            wait_until(lambda d=d: d.metric("fanout_in_flight") == 0, message="idle")
        delivered = sum(d.metric("fanout_outcomes_total", kind="delivered") for d in daemons)
        self.assertEqual(delivered, n)
        for d in daemons:
            d.stop()
        good.stop()
        got = sorted(q.header("x-partoo-event-id") for q in good.requests())
        self.assertEqual(got, sorted(ids), "each saved delivery resumed exactly once")
        self.assertEqual({q.header("x-partoo-attempt") for q in good.requests()}, {"2"})
        resumed_logs = [line for d in daemons for line in d.stderr().splitlines()
                        if "pending deliveries resumed" in line]
        self.assertEqual(len(resumed_logs), 1, resumed_logs)
        self.assertIn(f"resumed={n}", resumed_logs[0])


if __name__ == "__main__":
    harness.main()
