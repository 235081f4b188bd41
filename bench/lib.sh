# shellcheck shell=bash
# Shared by the end-to-end benchmark scripts (bench/*/…_vs_h2load.sh): sourced, never run.
# Expects ROOT (the repository root) to be set by the caller.

log() { printf '%s\n' "$*" >&2; }

# require_tools TOOL...: exits 2 naming the first one missing; also needs 2 CPUs (clients on
# CPU 0, servers on CPU 1).
require_tools() {
  local tool
  for tool in "$@"; do
    command -v "$tool" >/dev/null || { log "missing tool: $tool"; exit 2; }
  done
  local cpus
  cpus=$(nproc)
  if [[ $cpus -lt 2 ]]; then
    log "needs at least 2 CPUs (clients on CPU 0, servers on CPU 1); this machine has $cpus"
    exit 2
  fi
}

# build_bench BUILD_DIR TARGET: configures a Release tree of its own if needed (the benchmarks
# need neither tests nor tools), builds TARGET and sets BENCH to its absolute path.
build_bench() {
  local dir=$1 target=$2
  if [[ ! -f $dir/build.ninja ]]; then
    log "configuring $dir (Release)"
    cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=Release \
      -DFANOUT_BUILD_TESTS=OFF -DFANOUT_BUILD_TOOLS=OFF >/dev/null
  fi
  log "building $target in $dir"
  cmake --build "$dir" --target "$target" >/dev/null
  BENCH=$dir/bench/$target
  [[ $BENCH == /* ]] || BENCH=$ROOT/$BENCH
  [[ -x $BENCH ]] || { log "no $BENCH after the build"; exit 2; }
}

# make_scratch NAME: sets TMP to a fresh directory and PIDS to an empty list; on exit every pid
# in PIDS is killed and reaped and TMP removed.
make_scratch() {
  TMP=$(mktemp -d "${TMPDIR:-/tmp}/$1.XXXXXX")
  PIDS=()
  trap bench_cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
}
bench_cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$TMP"
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# wait_accepting PORT: true once 127.0.0.1:PORT accepts connections, false after ~10 s.
wait_accepting() {
  local i
  for ((i = 0; i < 200; i++)); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.05
  done
  return 1
}

# CPU accounting shared by the scripts.
# server_ticks PID: the process's CPU time (user + system) in clock ticks, from /proc: how much
# server work a client's way of framing requests costs.
CLK_TCK=$(getconf CLK_TCK)
server_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# per_request_us TICKS REQUESTS
per_request_us() {
  awk -v t="$1" -v n="$2" -v hz="$CLK_TCK" 'BEGIN { printf "%.2f", (n > 0) ? t / hz * 1e6 / n : 0 }'
}
# timed CMD...: runs CMD, recording its CPU time (user + system) through GNU time when installed;
# client_us REQUESTS then gives it in us per request ("nan" without GNU time).
timed() {
  if [[ -x /usr/bin/time ]]; then
    /usr/bin/time -f '%U %S' -o "$TMP/client-cpu.txt" "$@"
  else
    : >"$TMP/client-cpu.txt"
    "$@"
  fi
}
client_us() {
  tail -n 1 "$TMP/client-cpu.txt" |
    awk -v n="$1" '(NF == 2 && n > 0) { printf "%.2f", ($1 + $2) * 1e6 / n; found = 1 }
                   END { if (!found) printf "nan" }'
}
