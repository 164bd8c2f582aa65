#!/bin/bash
# Loads two artifacts in turn into the same release server binary and runs the load test on
# each (single-asset POST /v1/risk/parameters at concurrency 1, 16 and 64), then again in the
# reverse order; prints the table rows and the forward pass per batch (inference seconds / count).
#   server/loadtest/compare_artifacts.sh ARTIFACT_A ARTIFACT_B
# Each ARTIFACT is an artifact directory or an artifacts directory with a `default` pointer.
# Needs the release binaries (cargo build --release) in ${CARGO_TARGET_DIR:-target}.
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: $0 ARTIFACT_A ARTIFACT_B" >&2; exit 2; }
B=${CARGO_TARGET_DIR:-target}/release
PORT=${PORT:-18080}
one() {
  local art=$1 db
  db=$(mktemp -d)
  "$B/server" --artifact "$art" --listen "127.0.0.1:$PORT" --log warn --database-url "sqlite://$db/volcast.db" > "$db/server.log" 2>&1 &
  local pid=$!
  for _ in $(seq 120); do curl -sf "http://127.0.0.1:$PORT/v1/model" > /dev/null && break; sleep 1; done
  local networks
  networks=$(curl -s "http://127.0.0.1:$PORT/v1/model" | python3 -c 'import json,sys; print(json.load(sys.stdin)["networks"])')
  echo "== $art ($networks networks)"
  "$B/loadtest" --url "http://127.0.0.1:$PORT" --requests 5000 --max-seconds 15 2>/dev/null | grep -E '^\| POST'
  curl -s "http://127.0.0.1:$PORT/metrics" | python3 -c '
import sys
m = dict(l.split()[:2] for l in sys.stdin if l.startswith("volcast_inference_duration_seconds_"))
s, c = float(m["volcast_inference_duration_seconds_sum"]), float(m["volcast_inference_duration_seconds_count"])
print(f"forward pass per batch: {1000 * s / c:.2f} ms over {int(c)} batches")'
  kill "$pid"; wait "$pid" 2> /dev/null || true
  rm -rf "$db"
}
one "$1"; one "$2"; one "$2"; one "$1"
