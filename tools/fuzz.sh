#!/usr/bin/env bash
# The long fuzz run (tests/fuzz/README.md), one command: builds the fuzz targets as libFuzzer
# programs (clang, ASan + UBSan, -DFANOUT_FUZZ=ON) in build/fuzz, then runs each for
# FUZZ_SECONDS (default 60) on a copy of its seed corpus, with its dictionary.
#
#   bash tools/fuzz.sh                       # every target, 60 s each
#   FUZZ_SECONDS=600 bash tools/fuzz.sh http_server_fuzz
#
# Environment: FUZZ_SECONDS (per target), FUZZ_BUILD_DIR (default build/fuzz), FUZZ_BUILD_JOBS
# (default nproc), FUZZ_ARGS (more
# libFuzzer flags, e.g. "-jobs=2 -workers=2"). Each run's corpus, log and any crash-*, leak-* or
# timeout-* input are kept in $FUZZ_BUILD_DIR/runs/<target>/; replay one with
# `$FUZZ_BUILD_DIR/tests/fuzz/<target> FILE`. Exits 1 when a target failed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash tools/install-deps.sh

seconds=${FUZZ_SECONDS:-60}
dir=${FUZZ_BUILD_DIR:-build/fuzz}
all=(envelope_fuzz api_fuzz api_ingest_fuzz http_server_fuzz)
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=("${all[@]}")

CC=clang CXX=clang++ cmake -S . -B "${dir}" -G Ninja -Wno-dev -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DFANOUT_SANITIZE=address,undefined -DFANOUT_FUZZ=ON -DFANOUT_BUILD_TESTS=ON \
  -DFANOUT_BUILD_BENCH=OFF -DFANOUT_BUILD_TOOLS=ON >/dev/null
cmake --build "${dir}" -j "${FUZZ_BUILD_JOBS:-$(nproc)}" --target "${targets[@]}"

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
root=$PWD
bin=$(cd "${dir}" && pwd)/tests/fuzz
status=0
for t in "${targets[@]}"; do
  run="${dir}/runs/${t}"
  rm -rf "${run}"
  mkdir -p "${run}/corpus"
  cp tests/fuzz/corpus/"${t}"/* "${run}/corpus/"
  dict=json.dict
  [ "${t}" = http_server_fuzz ] && dict=http.dict
  echo "=== ${t}: ${seconds} s ===" >&2
  # -timeout: one input taking this long is a hang (each of the server target's inputs is one
  # connection); -rss_limit_mb: libFuzzer's own limit, above ASan's overhead. Crash inputs are
  # written to the current directory, the run's.
  # shellcheck disable=SC2086
  if (cd "${run}" && "${bin}/${t}" -max_total_time="${seconds}" -timeout=10 -rss_limit_mb=4096 \
        -print_final_stats=1 -dict="${root}/tests/fuzz/${dict}" ${FUZZ_ARGS:-} corpus) \
        >"${run}/log" 2>&1; then
    echo "${t}: ok, $(ls "${run}/corpus" | wc -l) inputs in ${run}/corpus" >&2
  else
    status=1
    echo "${t}: FAILED, see ${run}/log" >&2
    tail -n 40 "${run}/log" >&2
  fi
done
exit "${status}"
