"""The Redis embedding example (tools/examples/redis_consumer.cc), as source/redis/README.md
shows it: a real redis-server (free port, AOF), a fanout-sink, three events XADDed with
redis-cli; the example prints three delivered outcomes, acknowledges them and exits 0, and the
group's pending list is empty.

    python3 redis_example_test.py --example PATH --sink PATH
"""

import argparse
import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "fanoutd"))

import harness  # noqa: E402
import redis_server  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--example", required=True)
    parser.add_argument("--sink", required=True)
    args = parser.parse_args()
    if not redis_server.available():
        if os.environ.get("CI"):
            sys.exit("redis-server or redis-cli missing (tools/install-deps.sh installs them)")
        print("SKIP: redis-server not installed")
        sys.exit(harness.EXIT_SKIPPED)  # ctest: skipped (SKIP_RETURN_CODE 77)
    harness.SINK = os.path.abspath(args.sink)
    tmp = harness.make_temp_dir("redis-example-")
    redis = redis_server.Redis(tmp).start()
    sink = harness.Sink(tmp, args=["--quiet"]).start()
    try:
        redis.xadd_events("fanout:events", [
            {"org_id": 42, "type": "business_updated", "payload": {"n": n}} for n in range(3)])
        ids = redis.entry_ids("fanout:events")
        r = subprocess.run([args.example, redis.url, sink.url(), "3"], capture_output=True,
                           text=True, timeout=120)
        sys.stdout.write(r.stdout)
        sys.stderr.write(r.stderr)
        assert r.returncode == 0, f"exit {r.returncode}"
        delivered = [line for line in r.stdout.splitlines()
                     if line.startswith("outcome delivered: event ")]
        assert sorted(line.split()[3] for line in delivered) == sorted(ids), delivered
        assert "acknowledged 3" in r.stdout, r.stdout
        assert redis.pending_count("fanout:events", "fanout") == 0
        sink.stop()
        assert len(sink.requests()) == 3
        print("redis example: 3 events delivered and acknowledged")
    finally:
        sink.kill()
        redis.kill()
    if harness.finish_processes():
        sys.exit("sanitizer report in fanout-sink's stderr")


if __name__ == "__main__":
    main()
