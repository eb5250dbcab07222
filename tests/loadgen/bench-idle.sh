#!/usr/bin/env bash
# Idle-connection memory benchmark, in one command: build the gateway and the load
# generator (release), start the gateway with tests/loadgen/bench-gateway.toml, hold
# CONNECTIONS idle WebSocket connections on its echo service, report the server's RSS per
# connection, and stop the gateway.
#
#   tests/loadgen/bench-idle.sh                     # 19,000 connections, 4 worker processes
#   CONNECTIONS=5000 HOLD=30s tests/loadgen/bench-idle.sh
#   GATEWAY__LIMITS__READ_BUFFER_SIZE=1024 tests/loadgen/bench-idle.sh   # any config override
#   PORT=8181 ADMIN_PORT=9191 tests/loadgen/bench-idle.sh                 # other ports
#
# Extra arguments go to `loadgen idle` (e.g. --rate 1000). The last line printed is the JSON
# summary. Loopback only; the run is bounded by loadgen's own time limits.
set -euo pipefail

cd "$(dirname "$0")/../.."
CONNECTIONS=${CONNECTIONS:-19000}
PROCESSES=${PROCESSES:-4}
HOLD=${HOLD:-10s}
PORT=${PORT:-8080}
ADMIN_PORT=${ADMIN_PORT:-9090}
# BUILD=0 with BIN=DIR runs binaries built earlier (e.g. while the tree does not build).
BIN=${BIN:-${CARGO_TARGET_DIR:-target}/release}
BUILD=${BUILD:-1}

if [ "$BUILD" = 1 ]; then
    cargo build --release --quiet -p gateway -p loadgen
fi

workdir=$(mktemp -d)
config=tests/loadgen/bench-gateway.toml
# Ports can be moved without editing the file (the gateway reads GATEWAY__SECTION__KEY).
export GATEWAY__SERVER__LISTEN="127.0.0.1:$PORT"
export GATEWAY__ADMIN__LISTEN="127.0.0.1:$ADMIN_PORT"

"$BIN/gateway" --config "$config" >"$workdir/gateway.log" 2>&1 &
gateway=$!
stop_gateway() {
    if kill -0 "$gateway" 2>/dev/null; then
        kill -TERM "$gateway"
        # Bounded: the gateway drains for at most its drain_timeout (10 s).
        for _ in $(seq 1 150); do
            kill -0 "$gateway" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$gateway" 2>/dev/null || true
    fi
    wait "$gateway" 2>/dev/null || true
    rm -rf "$workdir"
}
trap stop_gateway EXIT

ready=no
for _ in $(seq 1 100); do
    if grep -q "listening on" "$workdir/gateway.log"; then
        ready=yes
        break
    fi
    kill -0 "$gateway" 2>/dev/null || break
    sleep 0.1
done
if [ "$ready" != yes ]; then
    echo "gateway did not start:" >&2
    cat "$workdir/gateway.log" >&2
    exit 1
fi
# The gateway's own note on how many connections its open-file limit allows.
sed 's/\x1b\[[0-9;]*m//g' "$workdir/gateway.log" | grep -m1 "open-file limit" | sed 's/^.*gateway::run: /gateway: /' || true

"$BIN/loadgen" idle \
    --url "ws://127.0.0.1:$PORT/echo" \
    --subprotocol echo \
    --connections "$CONNECTIONS" \
    --processes "$PROCESSES" \
    --server-pid "$gateway" \
    --hold "$HOLD" \
    "$@"
