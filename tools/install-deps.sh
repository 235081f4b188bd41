#!/usr/bin/env bash
# Installs every Debian 12 package fanout needs to build, test and benchmark.
# Idempotent: when every package is already installed it does nothing (no network).
# Must run as root (or via sudo) on Debian 12 (bookworm).
set -euo pipefail

packages=(
  # toolchain
  g++ cmake ninja-build pkg-config git clang-format
  # libraries (design.md, "Dependencies")
  libuv1-dev libnghttp2-dev android-libboringssl-dev libsimdjson-dev
  libconcurrentqueue-dev node-llhttp libsqlite3-dev libexpected-dev libsodium-dev
  libtomlplusplus-dev libc-ares-dev libgtest-dev libgmock-dev libbenchmark-dev libhiredis-dev
  libxxhash-dev
  # real peers for tests and benchmarks
  nghttp2-client nghttp2-server nginx wrk openssl curl ca-certificates python3
  redis-server redis-tools
  # the receiver's instructions per request (bench/engine/receiver_instructions.sh)
  valgrind
  # the app page's browser tests (Playwright from npm drives Debian's chromium)
  chromium
  # the long fuzz run (tools/fuzz.sh): clang and its libFuzzer runtime
  clang libclang-rt-14-dev
)
# Node.js and npm for Playwright: Debian's, unless the machine already has them (e.g. NodeSource).
command -v node >/dev/null 2>&1 || packages+=(nodejs)
command -v npm >/dev/null 2>&1 || packages+=(npm)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    exec sudo "$0" "$@"
  fi
  echo "install-deps: missing packages (${missing[*]}) and not root; run as root" >&2
  exit 1
fi

echo "install-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "${missing[@]}"
