#!/usr/bin/env bash
# The STOMP benchmarks of BENCHMARKS.md in one run: the gateway (embedded broker, config
# tests/loadgen/bench-stomp.toml, a fresh process per scenario) and then RabbitMQ Web-STOMP
# (tests/loadgen/rabbitmq-bench.sh) on the same machine.
#
#   tests/loadgen/stomp-bench.sh                   # everything (~15 min)
#   PARTS="idle fanout1k" tests/loadgen/stomp-bench.sh
#
# PARTS: idle fanout1k fanout10k slow rabbitmq (default: all). Output goes to the terminal and
# to $OUT (default /tmp/stomp-bench-DATE), one file per scenario; each ends with loadgen's
# JSON summary line. PORT/ADMIN_PORT move the gateway; BIN/BUILD as in bench-idle.sh; LG
# names the loadgen binary (default $BIN/loadgen), so one generator can drive two builds.
set -euo pipefail
. "$(dirname "$0")/bench-lib.sh"

cd "$(dirname "$0")/../.."
PARTS=${PARTS:-idle fanout1k fanout10k slow rabbitmq}
PORT=${PORT:-8080}
ADMIN_PORT=${ADMIN_PORT:-9090}
BIN=${BIN:-${CARGO_TARGET_DIR:-target}/release}
BUILD=${BUILD:-1}
OUT=${OUT:-/tmp/stomp-bench-$(date +%Y%m%d-%H%M%S)}
URL="ws://127.0.0.1:$PORT/ws"
LG=${LG:-$BIN/loadgen}
mkdir -p "$OUT"

if [ "$BUILD" = 1 ]; then
    cargo build --release --quiet -p gateway -p loadgen
fi

export GATEWAY__SERVER__LISTEN="127.0.0.1:$PORT"
export GATEWAY__ADMIN__LISTEN="127.0.0.1:$ADMIN_PORT"
gateway=

start_gateway() {
    "$BIN/gateway" --config tests/loadgen/bench-stomp.toml >"$OUT/gateway.log" 2>&1 &
    gateway=$!
    for _ in $(seq 1 100); do
        grep -q "listening on" "$OUT/gateway.log" && return 0
        kill -0 "$gateway" 2>/dev/null || break
        sleep 0.1
    done
    echo "gateway did not start:" >&2
    cat "$OUT/gateway.log" >&2
    exit 1
}

stop_gateway() {
    [ -n "$gateway" ] || return 0
    if kill -0 "$gateway" 2>/dev/null; then
        kill -TERM "$gateway"
        for _ in $(seq 1 150); do
            kill -0 "$gateway" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$gateway" 2>/dev/null || true
    fi
    wait "$gateway" 2>/dev/null || true
    gateway=
}
trap stop_gateway EXIT

# The machine is shared: before each scenario wait (up to QUIET_WAIT seconds) until other
# processes use less than a fifth of a core, so that they don't take the gateway's CPU.
wait_quiet() { await_quiet; }

# run NAME CMD...: show and keep the output.
run() {
    local name=$1
    shift
    wait_quiet
    echo "== $name: $*" | sed "s/--server-pid [0-9]*/--server-pid PID/"
    "$@" 2>&1 | tee "$OUT/$name.txt" | grep -v '^{'
}

# A field of the JSON summary line of an earlier scenario.
field() {
    tail -1 "$OUT/$1.txt" | python3 -c "import json,sys; v=json.load(sys.stdin).get('$2'); print('' if v is None else v)"
}

# Kernel TCP memory while a scenario runs: the highest `mem` (pages) of /proc/net/sockstat,
# sampled every 0.5 s, so a stalled client's backlog shows whether it sits in the kernel.
sockstat_start() {
    (peak=0; while :; do
        m=$(awk '/^TCP:/{for (i = 1; i < NF; i++) if ($i == "mem") print $(i + 1)}' /proc/net/sockstat)
        [ "$m" -gt "$peak" ] && peak=$m && echo "$peak" >"$OUT/sockstat.peak"
        sleep 0.5
    done) &
    sockstat_pid=$!
}
sockstat_stop() {
    kill "$sockstat_pid" 2>/dev/null || true
    wait "$sockstat_pid" 2>/dev/null || true
    echo "kernel TCP memory, peak during the run: $(cat "$OUT/sockstat.peak") pages of $(getconf PAGESIZE) bytes (/proc/net/sockstat)"
}

# The gateway's count of slow-consumer policy actions (drop-oldest here).
slow_consumer_events() {
    echo "gateway slow-consumer events: $(curl -s "http://127.0.0.1:$ADMIN_PORT/metrics" |
        grep '^gateway_stomp_slow_consumer_events_total' || echo none)"
}

# fanout N START_RATE: ramp, then a fixed-rate run at half the peak (the sustainable one,
# else the lossless one).
fanout() {
    local n=$1 start=$2 name="fanout$3"
    start_gateway
    run "$name-ramp" "$LG" stomp-fanout --url "$URL" --subscribers "$n" --processes 2 \
        --rate "$start" --ramp --server-pid "$gateway"
    local peak
    peak=$(field "$name-ramp" peak_rate)
    [ -n "$peak" ] || peak=$(field "$name-ramp" lossless_peak_rate)
    if [ -n "$peak" ]; then
        local half
        half=$(python3 -c "print(round($peak / 2, 2))")
        run "$name-half" "$LG" stomp-fanout --url "$URL" --subscribers "$n" --processes 2 \
            --rate "$half" --duration 10s --server-pid "$gateway"
    fi
    stop_gateway
}

for part in $PARTS; do
    case "$part" in
        idle)
            start_gateway
            run idle "$LG" stomp-idle --url "$URL" --connections 19000 --processes 2 \
                --server-pid "$gateway"
            stop_gateway
            ;;
        fanout1k) fanout 1000 50 1k ;;
        fanout10k) fanout 10000 2 10k ;;
        slow)
            # 1,000 subscribers at 50 msgs/s: a stalled socket's backlog (1,500 messages)
            # fits in the gateway's kernel send buffer, so its queues never fill...
            start_gateway
            sockstat_start
            run slow "$LG" stomp-slow --url "$URL" --subscribers 1000 --slow-percent 1 \
                --rate "${SLOW_RATE:-50}" --duration 30s --processes 2 --server-pid "$gateway"
            sockstat_stop
            slow_consumer_events
            stop_gateway
            # ...so also 200 subscribers at 500 msgs/s (15,000 messages per stalled socket
            # in 30 s), which fills them and makes drop-oldest work.
            start_gateway
            sockstat_start
            run slow-fill "$LG" stomp-slow --url "$URL" --subscribers 200 --slow-percent 1 \
                --rate 500 --duration 30s --processes 2 --server-pid "$gateway"
            sockstat_stop
            slow_consumer_events
            stop_gateway
            ;;
        rabbitmq)
            wait_quiet
            BUILD=0 BIN="$BIN" tests/loadgen/rabbitmq-bench.sh 2>&1 | tee "$OUT/rabbitmq.txt" | grep -v '^{'
            ;;
        *)
            echo "unknown part $part" >&2
            exit 2
            ;;
    esac
done
echo "outputs in $OUT"
