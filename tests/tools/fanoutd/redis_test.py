"""fanoutd behind a Redis stream ([source.redis], source/redis/README.md), against a real
redis-server started here on a free port with AOF and `appendfsync always`.

- entries are delivered and acknowledged; invalid ones land in <stream>:dead with their reason;
  unsubscribed ones are acknowledged at once; an entry without an id has its entry id as id;
- 100,000 entries, two instances in one group, one killed with SIGKILL mid-run: the survivor
  takes over, every event reaches its final answer at the receiver with its attempts numbered
  1..n (the cap holds across the takeover), re-sends only for what was in flight at the kill
  (counted), and the group's pending list ends empty;
- Redis killed and restarted mid-run: nothing lost;
- both connections reset (a RST, not an end of stream, as from a Redis killed with a command of
  ours unread) mid-run: fanoutd notices, reconnects, nothing stays pending;
- a refused connect ends the attempt at once, and the log names the refusal;
- a tiny in-flight budget: the consumer never holds more than it, and everything arrives;
- an organisation at its own budget (a black-holed receiver) is parked, not blocking: the
  next organisation's entries are delivered meanwhile;
- a consumer restarting under its own name resumes its pending entries (no takeover), attempt
  numbers continuing from the records kept in Redis;
- a routing change made through one instance reaches the other.
"""

import os
import queue
import re
import selectors
import socket
import struct
import threading

import harness
import redis_server
from harness import FanoutdTestCase, apikey, wait_until

STREAM = "fanout:events"
GROUP = "fanout"
EVENTS = int(os.environ.get("FANOUTD_REDIS_EVENTS", "100000"))

# Plan i: (sink steps, attempts the receiver sees). max_retries 3: 4 attempts at most.
PLANS = [("200", 1), ("503,200", 2), ("404", 1), ("500", 4), ("reset,200", 2)]
PLAN_SPEC = ";".join(p[0] for p in PLANS)


def plan_index(event_id):
    """fanout-sink's plan choice: FNV-1a 64 of the id bytes, modulo the number of plans."""
    h = 0xCBF29CE484222325
    for b in event_id.encode():
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h % len(PLANS)


def config(redis, consumer, takeover_ms=3000, max_in_flight=5000, base_ms=300, extra="", url=None):
    return f"""
workers = 1
drain_timeout_ms = 2000
no_durable = true
[retry]
max_retries = 3
base_ms = {base_ms}
factor = 2
jitter = 0
[source.redis]
url = "{url or redis.url}"
consumer = "{consumer}"
takeover_ms = {takeover_ms}
max_in_flight = {max_in_flight}
{extra}
"""


def event(org, n, **kw):
    e = {"org_id": org, "type": "business_updated", "payload": {"n": n}}
    e.update(kw)
    return e


class ResettingRelay:
    """A TCP relay in front of Redis whose reset() ends every connection through it with a reset
    (RST) on the client's side: what a client sees of a Redis killed while a command it sent was
    still unread (or of a reset in the network), an error on the socket rather than an end of
    stream. One thread polls and closes the sockets (a socket closed while another thread is
    blocked on it would send nothing until that thread returned)."""

    def __init__(self, upstream_port):
        self.upstream_port = upstream_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.setblocking(False)
        self.port = self._listener.getsockname()[1]
        self._wake_r, self._wake_w = socket.socketpair()
        self._sel = selectors.DefaultSelector()
        self._sel.register(self._listener, selectors.EVENT_READ)
        self._sel.register(self._wake_r, selectors.EVENT_READ)
        self._peer = {}  # socket -> the socket its bytes go to
        self._clients = set()
        self._orders, self._answers = queue.Queue(), queue.Queue()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}"

    def reset(self):
        """Resets every connection open now; returns how many clients it had."""
        return self._ask("reset")

    def stop(self):
        if self._thread.is_alive():
            self._ask("stop")
            self._thread.join(timeout=10)

    def _ask(self, order):
        self._orders.put(order)
        self._wake_w.send(b"x")
        return self._answers.get(timeout=30)

    def _run(self):
        while True:
            for key, _ in self._sel.select():
                s = key.fileobj
                if s is self._listener:
                    self._accept()
                elif s is self._wake_r:
                    self._wake_r.recv(64)
                    order = self._orders.get()
                    n = self._reset_all()
                    if order == "stop":
                        for x in (self._listener, self._wake_r, self._wake_w):
                            x.close()
                        self._answers.put(n)
                        return
                    self._answers.put(n)
                elif s in self._peer:
                    self._pump(s)

    def _accept(self):
        try:
            client, _ = self._listener.accept()
        except BlockingIOError:
            return
        client.setblocking(True)
        try:
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=10)
        except OSError:
            client.close()
            return
        upstream.settimeout(None)
        self._peer[client], self._peer[upstream] = upstream, client
        self._clients.add(client)
        for s in (client, upstream):
            self._sel.register(s, selectors.EVENT_READ)

    def _pump(self, s):
        try:
            data = s.recv(65536)
            if data:
                self._peer[s].sendall(data)
                return
        except OSError:
            pass
        self._close(s)  # one side ended: the other one too

    def _close(self, s, reset=False):
        for x in (s, self._peer[s]):
            self._sel.unregister(x)
            self._peer.pop(x)
            if reset and x in self._clients:
                x.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self._clients.discard(x)
            x.close()

    def _reset_all(self):
        clients = list(self._clients)
        for c in clients:
            self._close(c, reset=True)
        return len(clients)


class RedisTest(FanoutdTestCase):

    def setUp(self):
        super().setUp()
        if not redis_server.available():
            harness.skip_or_fail(self, "redis-server or redis-cli missing "
                                       "(tools/install-deps.sh installs them)")
        self.redis = redis_server.Redis(self.tmp).start()
        self.addCleanup(self.redis.kill)

    def webhook(self, daemon, data, org, url):
        admin = apikey(data, "ORG_ADMIN", org=org)
        r = daemon.http("POST", "/v2/webhooks", key=admin,
                        body={"items": [{"url": url, "event_type": "business_updated"}]})
        self.assertEqual(r.status, 200, r.describe())
        return r.body["items"][0]["id"], admin

    def wait_settled(self, expected_read=None):
        wait_until(lambda: self.redis.pending_count(STREAM, GROUP) == 0 and
                   (expected_read is None or self.group_read() >= expected_read),
                   timeout=max(harness.WAIT_TIMEOUT, 180), interval=0.2,
                   message=lambda: f"the group's pending list to empty "
                                   f"({self.redis.pending_count(STREAM, GROUP)} left)")

    def group_read(self):
        groups = self.redis.cli("XINFO", "GROUPS", STREAM) or []
        for g in groups:
            info = dict(zip(g[::2], g[1::2]))
            if info.get("name") == GROUP:
                return int(info.get("entries-read") or 0)
        return 0

    def test_delivers_acknowledges_and_dead_letters(self):
        sink = self.start_sink(args=["--quiet"])
        data = self.data_dir()
        daemon = self.start_daemon(data, config=config(self.redis, "one"))
        self.webhook(daemon, data, 1, sink.url())
        self.redis.xadd_events(STREAM, [
            event(1, 1), event(1, 2, id="given-id"), event(1, 3),
            event(1, 4, type="no_such_type"),      # invalid: unknown_type
            "{not json",                           # invalid: bad JSON
            event(2, 5),                           # nobody subscribed to org 2
        ])
        self.redis.pipe([["XADD", STREAM, "*", "other", "x"]])  # no `event` field
        ids = self.redis.entry_ids(STREAM)
        wait_until(lambda: sink.count() >= 3, message="three deliveries")
        self.wait_settled(expected_read=len(ids))
        dead = self.redis.cli("XRANGE", STREAM + ":dead", "-", "+")
        reasons = {dict(zip(f[::2], f[1::2]))["id"]: dict(zip(f[::2], f[1::2]))["reason"]
                   for _, f in dead}
        self.assertEqual(set(reasons), {ids[3], ids[4], ids[6]})
        self.assertEqual(reasons[ids[3]], "unknown_type")
        self.assertEqual(reasons[ids[6]], "missing_event_field")
        self.assertTrue(reasons[ids[4]])
        # Counted when the dead letter's transaction is answered, after its XACK is visible.
        wait_until(lambda: daemon.metric("fanout_redis_entries_dead_lettered_total") == 3,
                   message="three dead letters counted")
        m = daemon.metrics()
        self.assertEqual(m.value("fanout_redis_entries_dead_lettered_total"), 3)
        self.assertEqual(m.value("fanout_redis_entries_unsubscribed_total"), 1)
        self.assertEqual(m.value("fanout_redis_entries_read_total"), len(ids))
        self.assertEqual(m.value("fanout_redis_connected"), 1)
        daemon.stop()
        sink.stop()
        got = sorted(r.header("x-partoo-event-id") for r in sink.requests())
        # Without an id the entry id is the event id; a given id is kept.
        self.assertEqual(got, sorted([ids[0], "given-id", ids[2]]))

    def test_kill_9_one_of_two_instances(self):
        sink = self.start_sink(args=["--plan", PLAN_SPEC, "--quiet"])
        data = self.data_dir()
        a = self.start_daemon(data, config=config(self.redis, "a"))
        for org in (1, 2):
            self.webhook(a, data, org, sink.url(f"/org{org}"))
        b = self.start_daemon(data, config=config(self.redis, "b"))
        self.redis.xadd_events(STREAM, [event(1 + i % 2, i) for i in range(EVENTS)])
        ids = self.redis.entry_ids(STREAM)
        self.assertEqual(len(ids), EVENTS)
        # Killed while it holds retries, so the survivor has entries to take over (its
        # metrics say so; the sink's record may lag behind the run).
        seen = []

        def holding():
            m = a.metrics()
            seen.append((m.value("fanout_waiting_retries"),
                         m.value("fanout_redis_entries_acknowledged_total")))
            return seen[-1][0] >= 20

        wait_until(holding, timeout=max(harness.WAIT_TIMEOUT, 180), interval=0.02,
                   message=lambda: f"instance a to hold waiting retries (last seen "
                                   f"(waiting, acknowledged): {seen[-5:]})")
        a.kill()
        self.wait_settled(expected_read=EVENTS)
        claimed = b.metric("fanout_redis_entries_claimed_total")
        self.assertGreater(claimed, 0, "the survivor took entries over")
        self.assertEqual(self.redis.cli("HLEN", STREAM + ":attempts"), 0)
        b.stop()
        sink.stop()

        seen = {}
        for req in sink.requests():
            seen.setdefault(req.header("x-partoo-event-id"), []).append(
                int(req.header("x-partoo-attempt")))
        wrong, repeats = [], 0
        for eid in ids:
            numbers = seen.get(eid, [])
            expected = PLANS[plan_index(eid)][1]
            if sorted(set(numbers)) != list(range(1, expected + 1)):
                wrong.append(f"{eid}: attempts {numbers}, expected 1..{expected}")
            elif numbers != sorted(numbers) or max(map(numbers.count, numbers)) > 2:
                wrong.append(f"{eid}: attempts {numbers} go back or repeat more than once")
            repeats += len(numbers) - len(set(numbers))
        self.assertEqual(wrong[:20], [], f"{len(wrong)} events wrong")
        self.assertEqual(set(seen) - set(ids), set())
        print(f"\nredis kill test: {EVENTS} entries, {claimed} claimed by the survivor, "
              f"{repeats} attempts re-sent (in flight at the kill)", flush=True)
        self.assertLessEqual(repeats, 5000)  # what the killed consumer could hold

    def run_through_a_loss(self, n, started, lose, what, url=None):
        """n entries, half of them before `lose()` (called once `started` were delivered), the
        rest once fanoutd has reconnected: connected again, not still "connected" from before,
        so the loss was seen. Then nothing stays pending and every entry is delivered."""
        sink = self.start_sink(args=["--quiet"])
        data = self.data_dir()
        daemon = self.start_daemon(data, config=config(self.redis, "one", url=url))
        self.webhook(daemon, data, 1, sink.url())
        self.redis.xadd_events(STREAM, [event(1, i) for i in range(n // 2)])
        wait_until(lambda: sink.count() >= started, message="deliveries to start")
        lose()
        wait_until(lambda: daemon.metric("fanout_redis_reconnects_total") >= 1 and
                   daemon.metric("fanout_redis_connected") == 1,
                   message=lambda: f"fanoutd to notice the {what} and reconnect (reconnects: "
                                   f"{daemon.metric('fanout_redis_reconnects_total')})")
        self.redis.xadd_events(STREAM, [event(1, i) for i in range(n // 2, n)])
        ids = self.redis.entry_ids(STREAM)
        self.assertEqual(len(ids), n, "AOF with appendfsync always kept every entry")
        self.wait_settled(expected_read=n)
        daemon.stop()
        sink.stop()
        got = {r.header("x-partoo-event-id") for r in sink.requests()}
        self.assertEqual(set(ids) - got, set(), "every entry delivered")

    def test_redis_restarted_mid_run(self):
        # A Redis killed with a command of ours unread resets the connection rather than closing
        # it: test_connections_reset_mid_run.
        def restart():
            self.redis.kill()
            self.redis.start(keep_port=True)
        self.run_through_a_loss(4000, 200, restart, "restart")

    def test_connections_reset_mid_run(self):
        # Reset rather than closed: the socket reports an error, not an end of stream, and
        # fanoutd must take it for a lost connection all the same.
        relay = ResettingRelay(self.redis.port)
        self.addCleanup(relay.stop)

        def reset():
            self.assertEqual(relay.reset(), 2, "the read and the command connections")
        self.run_through_a_loss(2000, 100, reset, "reset", url=relay.url)

    def test_a_refused_connect_is_seen_at_once(self):
        # A port bound here and never listened on: a connect to it is refused (a reset). The
        # attempt ends on the refusal and names it, where hiredis 0.14's own libuv adapter left
        # it to the connect timeout ("not connected within 5000 ms").
        closed = socket.socket()
        closed.bind(("127.0.0.1", 0))
        self.addCleanup(closed.close)
        url = f"redis://127.0.0.1:{closed.getsockname()[1]}"
        daemon = self.start_daemon(self.data_dir(), config=config(self.redis, "one", url=url))
        retry = re.compile(r'msg="redis" message="([^"]*); connecting again')
        wait_until(lambda: retry.search(daemon.stderr()), message="a failed connect logged")
        self.assertRegex(retry.search(daemon.stderr()).group(1),
                         r"^redis (read|command) connection: Connection refused$", daemon.logs())
        self.assertEqual(daemon.metric("fanout_redis_connected"), 0)

    def test_tiny_budget_pauses_reading(self):
        sink = self.start_sink(args=["--plan", "slow:50:200", "--quiet"])
        data = self.data_dir()
        daemon = self.start_daemon(data, config=config(self.redis, "one", max_in_flight=5))
        self.webhook(daemon, data, 1, sink.url())
        n = 60
        self.redis.xadd_events(STREAM, [event(1, i) for i in range(n)])
        most = 0

        def done():
            nonlocal most
            most = max(most, self.redis.pending_count(STREAM, GROUP))
            return sink.count() >= n and self.redis.pending_count(STREAM, GROUP) == 0

        wait_until(done, interval=0.02, message=lambda: f"{n} delivered ({sink.count()})")
        self.assertLessEqual(most, 5, "never more entries held than the budget")
        self.assertGreater(most, 0)
        self.assertGreaterEqual(daemon.metric("fanout_redis_read_pauses_total"), 1)
        daemon.stop()

    def test_black_holed_organisation_is_parked_not_blocking(self):
        hole = self.start_sink(args=["--blackhole", "--quiet"])
        ok = self.start_sink(args=["--quiet"])
        data = self.data_dir()
        cfg = "org_max_in_flight = 20\norigin_max_in_flight = 0\n" + config(
            self.redis, "one", max_in_flight=200, extra="")
        daemon = self.start_daemon(data, config=cfg)
        self.webhook(daemon, data, 1, hole.url())
        self.webhook(daemon, data, 2, ok.url())
        # Org 1's entries first: 100 of them (its receiver never answers), then org 2's.
        self.redis.xadd_events(STREAM, [event(1, i) for i in range(100)] +
                               [event(2, i) for i in range(100)])
        wait_until(lambda: ok.count() >= 100, message=lambda: f"org 2's 100 deliveries "
                                                                f"({ok.count()})")
        # org 2's last answers may still be on their way to the worker when the sink has
        # recorded them: the count settles at org 1's budget.
        wait_until(lambda: daemon.metric("fanout_in_flight") == 20,
                   message=lambda: f"in flight: org 1's 20 ({daemon.metric('fanout_in_flight')})")
        m = daemon.metrics()
        self.assertEqual(m.value("fanout_in_flight"), 20, "org 1 held to its budget")
        self.assertGreaterEqual(m.value("fanout_budget_refusals_total", budget="org"), 80)
        self.assertEqual(m.value("fanout_budget_refusals_total", budget="global"), 0)
        daemon.stop()

    def test_restart_under_same_name_resumes_own_entries(self):
        sink = self.start_sink(args=["--plan", "503,200", "--quiet"])
        data = self.data_dir()
        # Takeover after 10 minutes: anything delivered in this test was not taken over.
        cfg = config(self.redis, "solo", takeover_ms=600000, base_ms=2000)
        daemon = self.start_daemon(data, config=cfg)
        self.webhook(daemon, data, 1, sink.url())
        n = 10
        self.redis.xadd_events(STREAM, [event(1, i) for i in range(n)])
        wait_until(lambda: self.redis.cli("HLEN", STREAM + ":attempts") == n,
                   message="an attempt record for each entry (first attempt answered 503)")
        daemon.stop()
        self.assertEqual(self.redis.pending_count(STREAM, GROUP), n, "still pending")
        daemon = self.start_daemon(data, config=cfg)
        self.wait_settled()
        self.assertEqual(daemon.metric("fanout_redis_entries_claimed_total"), 0)
        self.assertEqual(self.redis.cli("HLEN", STREAM + ":attempts"), 0)
        daemon.stop()
        sink.stop()
        seen = {}
        for req in sink.requests():
            seen.setdefault(req.header("x-partoo-event-id"), []).append(
                int(req.header("x-partoo-attempt")))
        self.assertEqual(sorted(seen.values()), [[1, 2]] * n,
                         "attempt 2 after the restart, never attempt 1 again")

    def test_routing_change_reaches_the_other_instance(self):
        first, second = self.start_sink(args=["--quiet"]), self.start_sink(args=["--quiet"])
        data = self.data_dir()
        a = self.start_daemon(data, config=config(self.redis, "a"))
        hook, admin = self.webhook(a, data, 1, first.url())
        b = self.start_daemon(data, config=config(self.redis, "b"))
        r = b.http("PATCH", f"/v2/webhooks/{hook}", key=admin, body={"url": second.url()})
        self.assertEqual(r.status, 200, r.describe())
        # A learns it from the shared store (within 1 s): probes published through A's own
        # ingest, one at a time, until one reaches the new URL. From then on A routes there.
        ingest = apikey(data, "INGEST")
        probes = iter(range(1_000_000))

        def probe_arrived():
            if second.count() >= 1:
                return True
            before = first.count() + second.count()
            r = a.http("POST", "/v2/events", key=ingest, body=event(1, -1, id=f"p{next(probes)}"))
            self.assertIn(r.status, (200, 202), r.describe())
            wait_until(lambda: first.count() + second.count() > before, message="the probe")
            return second.count() >= 1

        wait_until(probe_arrived, message="a probe through A at the new URL")
        at_old = first.count()
        n = 40
        self.redis.xadd_events(STREAM, [event(1, i) for i in range(n)])
        self.wait_settled(expected_read=n)
        wait_until(lambda: second.count() >= n + 1, message="every entry at the new URL")
        self.assertEqual(first.count(), at_old, "nothing more at the old URL")
        a.stop()
        b.stop()


if __name__ == "__main__":
    harness.main()
