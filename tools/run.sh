#!/usr/bin/env bash
# Runs fanout's main job, the daemon fanoutd, on its embedded default, on a fresh Debian 12
# machine (as root, or with sudo): installs missing packages, builds, then runs in the
# foreground until Ctrl-C (SIGINT), which stops it cleanly (pending deliveries are saved):
#   - fanoutd on 127.0.0.1:8080 with its data (SQLite store, signing key) in ./fanoutd-data;
#   - a local receiver, fanout-sink, on 127.0.0.1:9090, printing every delivery it receives.
# fanoutd runs with --insecure --allow-subnet 127.0.0.1/32 so that it may deliver over plain
# http:// to that local sink: that is the quick-start setting (README, "Quick start"). In
# production run `fanoutd serve` without them: https:// only, private addresses refused.
#
# Environment (for tests): FANOUTD_PORT (8080), FANOUT_SINK_PORT (9090), FANOUTD_DATA
# (fanoutd-data), FANOUT_BIN (a directory holding fanoutd/fanoutd and fanout-sink: skips the
# package and build steps). Extra arguments go to `fanoutd serve`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [ -z "${FANOUT_BIN:-}" ]; then
  bash tools/install-deps.sh
  cmake -S . -B build/release -G Ninja -Wno-dev -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DFANOUT_SANITIZE= -DFANOUT_BUILD_TOOLS=ON >/dev/null
  cmake --build build/release -j "$(nproc)" --target fanoutd fanout-sink
  FANOUT_BIN=build/release/tools
fi
port=${FANOUTD_PORT:-8080}
sink_port=${FANOUT_SINK_PORT:-9090}
data=${FANOUTD_DATA:-fanoutd-data}
mkdir -p "$data"

"$FANOUT_BIN/fanout-sink" --listen "127.0.0.1:$sink_port" --print --quiet \
  --record "$data/sink.ndjson" &
sink=$!
trap 'kill -TERM "$sink" 2>/dev/null || true; wait "$sink" 2>/dev/null || true' EXIT

"$FANOUT_BIN/fanoutd/fanoutd" serve --listen "127.0.0.1:$port" --data "$data" \
  --insecure --allow-subnet 127.0.0.1/32 "$@" &
daemon=$!
trap 'kill -TERM "$daemon" "$sink" 2>/dev/null || true; wait "$daemon" "$sink" 2>/dev/null || true' EXIT
trap 'kill -TERM "$daemon" 2>/dev/null || true' INT TERM
# A signal interrupts `wait` (its trap runs): wait again until fanoutd has saved its state and
# exited, and exit with fanoutd's own status.
set +e
while :; do
  wait "$daemon"
  status=$?
  kill -0 "$daemon" 2>/dev/null || break
done
wait "$daemon" 2>/dev/null
last=$?
[ "$last" -ne 127 ] && status=$last
exit "$status"
