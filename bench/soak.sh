#!/usr/bin/env bash
# Soak: fanoutd for SECONDS (default 600) under mixed load with faults — receivers that reset,
# send GOAWAY, answer 500 or 503, answer slowly, never answer, or are killed and restarted —
# plus API clients that pipeline and never read; its RSS and open descriptors sampled every
# second (bench/soak/soak.py says exactly what runs). Not part of CI.
#
# Writes RAW/soak.tsv (the samples), RAW/soak.json (early and late means, maxima, counts) and
# OUT/soak.png (RSS, its anonymous and file-backed parts, and descriptors over time, gnuplot).
# bench/report/soak.md reads a run; its plot is committed beside it, the data are not.
# Healthy: descriptors and in-flight deliveries flat; anonymous memory levelling off once the
# journal's SQLite page caches are full (32 MiB each); file-backed memory is the journal's
# memory-mapped database, which grows with the kept history up to mmap_size (256 MiB) and is
# the kernel's to drop. --no-durable takes the journal out, so RSS itself should level off.
#
# Usage: bash bench/soak.sh [--seconds S] [--rate EVENTS_PER_S] [--no-durable] [--out DIR]
#        [--raw DIR] [--build-dir D]
#   defaults: 600 s, 1000 events/s, durable, OUT and RAW bench/results (git-ignored),
#   build/bench.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck source=bench/lib.sh
source bench/lib.sh
SECONDS_RUN=600
RATE=1000
OUT=bench/results
RAW=bench/results
BUILD_DIR=build/bench
EXTRA=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --seconds) SECONDS_RUN=$2; shift 2 ;;
    --rate) RATE=$2; shift 2 ;;
    --no-durable) EXTRA+=(--no-durable); shift ;;
    --out) OUT=$2; shift 2 ;;
    --raw) RAW=$2; shift 2 ;;
    --build-dir) BUILD_DIR=$2; shift 2 ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) log "soak: unknown option $1"; exit 2 ;;
  esac
done
[[ $SECONDS_RUN =~ ^[1-9][0-9]*$ ]] || { log "soak: --seconds wants a positive integer"; exit 2; }
require_tools python3
build_targets "$BUILD_DIR" fanoutd fanout-sink
mkdir -p "$OUT" "$RAW"
python3 bench/soak/soak.py --fanoutd "${BUILT[fanoutd]}" --sink "${BUILT[fanout-sink]}" \
  --seconds "$SECONDS_RUN" --rate "$RATE" "${EXTRA[@]}" --out "$RAW"

command -v gnuplot >/dev/null || apt_install gnuplot-nox || true
if command -v gnuplot >/dev/null; then
  gnuplot <<EOF
set terminal pngcairo size 900,600 font ",10"
set output "$OUT/soak.png"
set multiplot layout 2,1 title "fanoutd soak: ${SECONDS_RUN} s, ${RATE} events/s, faults (bench/soak.sh)"
set xlabel "seconds"
set ylabel "MiB"
set key top left
plot "$RAW/soak.tsv" using 1:(\$2/1024) skip 1 with lines lw 2 title "RSS", \
     "" using 1:(\$8/1024) skip 1 with lines title "anonymous (heap)", \
     "" using 1:(\$9/1024) skip 1 with lines title "file-backed (the journal, mapped)"
set key off
set ylabel "open descriptors"
plot "$RAW/soak.tsv" using 1:3 skip 1 with lines lw 2
unset multiplot
EOF
  log "wrote $OUT/soak.png (data: $RAW/soak.tsv, $RAW/soak.json)"
else
  log "gnuplot missing: wrote $RAW/soak.tsv and $RAW/soak.json (no plot)"
fi
