#!/usr/bin/env bash
# The HTTP fallback transport against WebSocket in one run (BENCHMARKS.md, "HTTP fallback vs
# WebSocket"): a release gateway on the embedded broker, tests/loadgen/fallback-bench.js
# with its subscribers spread over PROCS worker processes.
#
#   tests/loadgen/fallback-bench.sh
#   SUBS=1000 RATE=100 DURATION=10 IDLE=1000 tests/loadgen/fallback-bench.sh
#
# Env: SUBS (1000), PROCS (4), RATE (100 msgs/s), DURATION (10 s), IDLE (1000 sessions per
# transport), TRANSPORTS ("websocket http"), PARTS ("fanout idle"), PORT / ADMIN_PORT
# (8787 / 9797), BIN (default ${CARGO_TARGET_DIR:-target}/release), BUILD (1: cargo build
# first), OUT (default /tmp/fallback-bench-DATE), QUIET_WAIT (60).
set -euo pipefail
. "$(dirname "$0")/bench-lib.sh"
cd "$(dirname "$0")/../.."
PORT=${PORT:-8787}
ADMIN_PORT=${ADMIN_PORT:-9797}
BIN=${BIN:-${CARGO_TARGET_DIR:-target}/release}
OUT=${OUT:-/tmp/fallback-bench-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
[ "${BUILD:-1}" = 1 ] && cargo build --release --quiet -p gateway
[ -d tests/loadgen/node/node_modules/ws ] || (cd tests/loadgen/node && npm ci --no-audit --no-fund --silent)

cat >"$OUT/gateway.toml" <<TOML
[server]
listen = "127.0.0.1:$PORT"
[admin]
listen = "127.0.0.1:$ADMIN_PORT"
[limits]
max_connections = 19900
max_connections_per_ip = 19900
idle_timeout = "300s"
[[service]]
name = "stomp"
path = "/ws"
bridge = "stomp"
allow_missing_origin = true
[service.settings]
heart_beat = [0, 0]
TOML
gateway=
trap stop_gateway EXIT
run_js() {
    NODE_PATH=tests/loadgen/node/node_modules BASE="http://127.0.0.1:$PORT" GW_PID=$gateway CLK_TCK=$(getconf CLK_TCK) \
        node tests/loadgen/fallback-bench.js | tee -a "$OUT/results.txt"
}
TRANSPORTS=${TRANSPORTS:-websocket http}
PARTS=${PARTS:-fanout idle}
start_bench_gateway
QUIET_WAIT=${QUIET_WAIT:-60} await_quiet
echo "[fallback-bench] machine ${busy_now}% busy before; gateway $(git rev-parse --short HEAD)" >&2
if [[ " $PARTS " == *" fanout "* ]]; then
    PARTS=fanout TRANSPORTS="$TRANSPORTS" run_js
fi
# Idle memory on a fresh gateway per transport, so one measurement does not reuse memory
# the allocator kept from the one before.
if [[ " $PARTS " == *" idle "* ]]; then
    for t in $TRANSPORTS; do
        stop_gateway
        start_bench_gateway
        sleep 1
        PARTS=idle TRANSPORTS=$t run_js
    done
fi
