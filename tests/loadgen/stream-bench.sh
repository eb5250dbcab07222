#!/usr/bin/env bash
# Snapshot and resume through the gateway's streams (BENCHMARKS.md, "Snapshots and
# resume"): a release gateway on the embedded broker with a stream for /topic/bench., and
# tests/loadgen/stream-bench.js measuring both parts with the feature on and off in one run.
#
#   tests/loadgen/stream-bench.sh
#   SYMBOLS=1000 ROUNDS=20 RATE=100 GAP_MS=5000 tests/loadgen/stream-bench.sh
#
# Env: SYMBOLS (1000), TICK_MS (1000), ROUNDS (20), RATE (100), GAP_MS (5000), PARTS
# ("snapshot resume"), PORT / ADMIN_PORT (8686 / 9696), BIN (default
# ${CARGO_TARGET_DIR:-target}/release), BUILD (1: cargo build first), OUT (default
# /tmp/stream-bench-DATE).
set -euo pipefail
. "$(dirname "$0")/bench-lib.sh"
cd "$(dirname "$0")/../.."
PORT=${PORT:-8686}
ADMIN_PORT=${ADMIN_PORT:-9696}
BIN=${BIN:-${CARGO_TARGET_DIR:-target}/release}
OUT=${OUT:-/tmp/stream-bench-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
[ "${BUILD:-1}" = 1 ] && cargo build --release --quiet -p gateway
[ -d tests/loadgen/node/node_modules/ws ] || (cd tests/loadgen/node && npm ci --no-audit --no-fund --silent)

cat >"$OUT/gateway.toml" <<TOML
[server]
listen = "127.0.0.1:$PORT"
[admin]
listen = "127.0.0.1:$ADMIN_PORT"
[[service]]
name = "stomp"
path = "/ws"
bridge = "stomp"
allow_missing_origin = true
[service.settings]
heart_beat = [0, 0]
subscription_queue = 4096
[[service.settings.stream]]
destination = "/topic/bench."
history = 10000
snapshot_keys = ${SYMBOLS:-1000}
TOML
gateway=
trap stop_gateway EXIT
start_bench_gateway
QUIET_WAIT=${QUIET_WAIT:-60} await_quiet
echo "[stream-bench] machine ${busy_now}% busy before; gateway $(git rev-parse --short HEAD)" >&2
NODE_PATH=tests/loadgen/node/node_modules URL="ws://127.0.0.1:$PORT/ws" node tests/loadgen/stream-bench.js | tee "$OUT/results.txt"
