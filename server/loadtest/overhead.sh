#!/usr/bin/env bash
# What one feature of the service adds to the risk route's latency: two servers on the same
# artifact and the same embedded SQLite setup, one with `FLAG false`, one with `FLAG true` (the
# default of both flags below), loaded in turn by `loadtest` at concurrency 64, ROUNDS times each
# (off, on, off, on...), in one run. Prints each level's line and the median p50/p99 of each side.
#
#   CARGO_TARGET_DIR=... cargo build --workspace --release
#   server/loadtest/overhead.sh                  # the signed decision log (FLAG=--decision-log)
#   FLAG=--anomaly server/loadtest/overhead.sh   # the anomaly detector's part of every risk answer
#   # ROUNDS=3 SECONDS_PER_LEVEL=15 by default
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN="${CARGO_TARGET_DIR:-target}/release"
ROUNDS="${ROUNDS:-3}"
SECS="${SECONDS_PER_LEVEL:-15}"
FLAG="${FLAG:---decision-log}"
WORK="$(mktemp -d "${BENCH_DIR:-/tmp}/volcast-bench.XXXXXX")"
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
start() { # name port flag
  mkdir -p "$WORK/$1"
  "$BIN/server" --listen "127.0.0.1:$2" --log warn --database-url "sqlite://$WORK/$1/volcast.db" \
    "$FLAG" "$3" --daily-recalibration false >"$WORK/$1/log" 2>&1 &
  for _ in $(seq 1 300); do
    curl -sf "http://127.0.0.1:$2/readyz" >/dev/null && return 0
    sleep 0.2
  done
  echo "server $1 did not become ready" >&2; cat "$WORK/$1/log" >&2; exit 1
}
start off 18091 false
start on 18092 true
for r in $(seq 1 "$ROUNDS"); do
  for side in off on; do
    port=$([ "$side" = off ] && echo 18091 || echo 18092)
    line=$("$BIN/loadtest" --url "http://127.0.0.1:$port" --concurrency 64 --requests 100000 \
      --max-seconds "$SECS" --warmup 200 2>/dev/null | grep -F '| 64 |' | head -1)
    echo "round $r $FLAG $side: $line"
    echo "$side $line" >>"$WORK/results"
  done
done
echo "decisions logged by the 'on' server: $(curl -s http://127.0.0.1:18092/v1/keys | grep -o '"seq":[0-9]*')"
# Columns of a level line: | request | concurrency | requests | req/s | p50 | p99 | 429 | errors |
median() { # side column
  grep "^$1 " "$WORK/results" | awk -F'|' -v c="$2" '{ print $c + 0 }' | sort -g |
    awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'
}
for side in off on; do
  echo "median of $ROUNDS rounds, $FLAG $side: $(median "$side" 5) req/s, p50 $(median "$side" 6) ms, p99 $(median "$side" 7) ms"
done
