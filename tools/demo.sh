#!/usr/bin/env bash
# Runs fanout's main job on its embedded default, on a fresh Debian 12 machine (as root, or with
# sudo): installs missing packages, builds, and runs it. Until the daemon (fanoutd) exists this is
# fanout-demo: validation, the routing table and the event hot path on an embedded sample.
# Arguments go to the program (fanout-demo --help).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash tools/install-deps.sh
cmake -S . -B build/release -G Ninja -Wno-dev -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFANOUT_SANITIZE= \
  -DFANOUT_BUILD_TOOLS=ON >/dev/null
cmake --build build/release -j "$(nproc)" --target fanout-demo fanout-sink
exec build/release/tools/fanout-demo "$@"
