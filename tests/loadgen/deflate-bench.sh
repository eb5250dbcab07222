#!/usr/bin/env bash
# permessage-deflate on the STOMP price feed (BENCHMARKS.md, "Compression"): the same fan-out
# to 1,000 subscribers with compression off, in shared mode and in dedicated mode, and idle
# subscribed sessions in each mode. Prints per delivery: WebSocket payload bytes sent
# (gateway_bytes_out_total without compression, gateway_ws_deflate_bytes_out_total with it;
# frame headers, 4 bytes here, and TCP/IP not counted) and gateway CPU; per idle session:
# server RSS.
#
#   tests/loadgen/deflate-bench.sh
#   RATE=100 SIZE=600 IDLE=5000 tests/loadgen/deflate-bench.sh
#
# PORT/ADMIN_PORT move the gateway; BIN names the directory with release builds of gateway
# and loadgen (built here unless BUILD=0).
set -euo pipefail
. "$(dirname "$0")/bench-lib.sh"

cd "$(dirname "$0")/../.."
PORT=${PORT:-8080}
ADMIN_PORT=${ADMIN_PORT:-9090}
BIN=${BIN:-${CARGO_TARGET_DIR:-target}/release}
BUILD=${BUILD:-1}
RATE=${RATE:-50}
SIZE=${SIZE:-600}
IDLE=${IDLE:-5000}
MODES=${MODES:-off shared dedicated}
OUT=${OUT:-/tmp/deflate-bench-$(date +%Y%m%d-%H%M%S)}
URL="ws://127.0.0.1:$PORT/ws"
mkdir -p "$OUT"
[ "$BUILD" = 1 ] && cargo build --release --quiet -p gateway -p loadgen
gateway=
trap stop_gateway EXIT

config() {
    sed -e "s/127.0.0.1:8080/127.0.0.1:$PORT/; s/127.0.0.1:9090/127.0.0.1:$ADMIN_PORT/" \
        tests/loadgen/bench-stomp.toml
    if [ "$1" != off ]; then
        printf '\n[service.compression]\nmode = "%s"\n%b' "$1" "${COMPRESSION_EXTRA:-}"
    fi
}

# Payload bytes the gateway sent so far: compressed where compression is on.
sent_bytes() {
    local name=gateway_bytes_out_total
    [ "$1" != off ] && name=gateway_ws_deflate_bytes_out_total
    curl -s "http://127.0.0.1:$ADMIN_PORT/metrics" |
        awk -v n="$name" '$1 ~ "^"n"[{ ]" && $1 ~ /transport="websocket"|deflate/ {s += $NF} END {printf "%d\n", s}'
}

for mode in $MODES; do
    ext=()
    [ "$mode" != off ] && ext=(--extensions "permessage-deflate; client_max_window_bits")
    config "$mode" >"$OUT/gateway.toml"

    start_bench_gateway
    await_quiet
    before=$(sent_bytes "$mode")
    echo "== fanout $mode: loadgen stomp-fanout --url $URL --subscribers 1000 --processes 2 --rate $RATE --duration 10s --size $SIZE --price-payload ${ext[*]:+--extensions '${ext[1]}'} --server-pid PID"
    "$BIN/loadgen" stomp-fanout --url "$URL" --subscribers 1000 --processes 2 --rate "$RATE" \
        --duration 10s --size "$SIZE" --price-payload "${ext[@]}" --server-pid "$gateway" \
        >"$OUT/fanout-$mode.txt" 2>&1
    after=$(sent_bytes "$mode")
    stop_gateway
    python3 - "$OUT/fanout-$mode.txt" "$before" "$after" "$mode" <<'PY'
import json, sys
path, before, after, mode = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
summary = json.loads(open(path).read().strip().splitlines()[-1])
step = summary["steps"][-1]
received = step["received"]
cpu_us = step["server_cpu_percent"] / 100 * step["duration_s"] * 1e6 / max(received, 1)
print(f"fanout {mode}: {received} deliveries ({step['loss_percent']:.2f}% lost), "
      f"p50 {step['latency_us']['p50_us']} us p99 {step['latency_us']['p99_us']} us, "
      f"{(after - before) / max(received, 1):.1f} payload bytes sent per delivery, "
      f"gateway CPU {cpu_us:.2f} us per delivery ({step['server_cpu_percent']:.0f}% of a core)")
PY

    start_bench_gateway
    await_quiet
    echo "== idle $mode: loadgen stomp-idle --url $URL --connections $IDLE --processes 2 ${ext[*]:+--extensions '${ext[1]}'} --server-pid PID"
    "$BIN/loadgen" stomp-idle --url "$URL" --connections "$IDLE" --processes 2 "${ext[@]}" \
        --server-pid "$gateway" >"$OUT/idle-$mode.txt" 2>&1
    stop_gateway
    grep -E "per subscribed session|sessions received" "$OUT/idle-$mode.txt" | sed "s/^/idle $mode: /" || true
done
