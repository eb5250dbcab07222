#!/usr/bin/env bash
# The gateway in front of RabbitMQ (`backend = "amqp://..."`) against RabbitMQ Web-STOMP on
# the same node, in one run (BENCHMARKS.md, "STOMP on RabbitMQ: the gateway vs Web-STOMP"):
#
#   fanout   SUBSCRIBERS STOMP subscribers on one topic, publisher rate ramp; first through
#            the gateway, then straight to Web-STOMP. Reports each side's sustainable peak
#            (no loss, p99 <= 50 ms) and lossless peak, the ratio, the broker's queue count
#            (`rabbitmqctl list_queues`) and RSS (beam.smp) once everyone subscribed, and
#            the gateway's RSS.
#   latency  LAT_RATE msgs/s to LAT_SUBSCRIBERS subscribers for LAT_DURATION, through the
#            gateway and then straight to Web-STOMP, each time with a plain AMQP consumer
#            (amqp-latency.py, pika) timing the same messages on the same broker.
#
#   tests/loadgen/rabbitmq-gateway-bench.sh                       # both parts, full scale
#   SUBSCRIBERS=100 LAT_SUBSCRIBERS=100 tests/loadgen/rabbitmq-gateway-bench.sh   # quick check
#
# Env: PARTS ("fanout latency"), FANOUT_SIDES ("gateway webstomp"), SUBSCRIBERS (10000), PROCESSES (2, subscriber processes;
# each may hold 20,000 open files), GW_RATE / WS_RATE (first ramp rates: 2 and 0.5 msgs/s),
# LAT_SUBSCRIBERS (1000), LAT_RATE (10), LAT_DURATION (30s), PORT / ADMIN_PORT (gateway,
# 8484 / 9494), AMQP_PORT (5674; Web-STOMP 15676, STOMP 61617, epmd 4379), BIN (loadgen's and
# the gateway's directory, default ${CARGO_TARGET_DIR:-target}/release), BUILD (1: cargo build
# first), PY (python with pika, default tests/.venv/bin/python), OUT (outputs, default
# /tmp/rabbitmq-gateway-bench-DATE), QUIET_WAIT (most seconds to wait for a quiet machine
# before each run, 300), LOADGEN_ARGS (more stomp-fanout options for every run, e.g.
# "--max-steps 2 --noisy-retries 0" for a quick check). The node is private (tests/scripts/rabbitmq.sh, state under $OUT).
set -euo pipefail
. "$(dirname "$0")/bench-lib.sh"

cd "$(dirname "$0")/../.."
PARTS=${PARTS:-fanout latency}
FANOUT_SIDES=${FANOUT_SIDES:-gateway webstomp}
SUBSCRIBERS=${SUBSCRIBERS:-10000}
PROCESSES=${PROCESSES:-2}
GW_RATE=${GW_RATE:-2}
WS_RATE=${WS_RATE:-0.5}
LAT_SUBSCRIBERS=${LAT_SUBSCRIBERS:-1000}
LAT_RATE=${LAT_RATE:-10}
LAT_DURATION=${LAT_DURATION:-30s}
PORT=${PORT:-8484}
ADMIN_PORT=${ADMIN_PORT:-9494}
AMQP_PORT=${AMQP_PORT:-5674}
BIN=${BIN:-${CARGO_TARGET_DIR:-target}/release}
BUILD=${BUILD:-1}
PY=${PY:-tests/.venv/bin/python}
OUT=${OUT:-/tmp/rabbitmq-gateway-bench-$(date +%Y%m%d-%H%M%S)}
LG="$BIN/loadgen"
GW_URL="ws://127.0.0.1:$PORT/ws"
mkdir -p "$OUT"

say() { echo "[rabbitmq-gateway-bench] $*" >&2; }

if [ "$BUILD" = 1 ]; then
    cargo build --release --quiet -p gateway -p loadgen
fi

# --- RabbitMQ ---------------------------------------------------------------------------
# Ports next to, not on, the ones tests and rabbitmq-bench.sh use; a private epmd.
export RABBITMQ_AMQP_PORT=$AMQP_PORT RABBITMQ_WEB_STOMP_PORT=$((AMQP_PORT + 10002))
export RABBITMQ_STOMP_PORT=$((AMQP_PORT + 55943)) ERL_EPMD_PORT=${ERL_EPMD_PORT:-4379}
export RABBITMQ_NODENAME=${NODE:-gwbench@localhost} RABBITMQ_WEB_STOMP_FRAME=text
# Cowboy closes a WebSocket that has not heard from its client for web_stomp.ws_opts.idle_timeout
# (60 s by default): the subscribers send nothing after SUBSCRIBE, so without this the broker
# drops all of them a minute into the ramp.
export RABBITMQ_EXTRA_CONF="web_stomp.tcp.backlog = 4096
web_stomp.ws_opts.idle_timeout = 3600000"
RDIR="$OUT/rabbitmq"
gateway=
bg_jobs=()
cleanup() {
    for p in "${bg_jobs[@]}"; do kill "$p" 2>/dev/null || true; done
    [ -z "$gateway" ] || stop_gateway
    tests/scripts/rabbitmq.sh stop "$RDIR" >/dev/null 2>&1 || true
}
trap cleanup EXIT
info=$(tests/scripts/rabbitmq.sh start "$RDIR")
eval "$info"
BEAM=$(cat "$RDIR/rabbit.pid")
AMQP_URL="amqp://guest:guest@127.0.0.1:$AMQP_PORT/%2f"
say "RabbitMQ $(dpkg-query -W -f='${Version}' rabbitmq-server 2>/dev/null) pid $BEAM, AMQP $AMQP_URL, Web-STOMP $RABBITMQ_WS_URL"

rmqctl() { HOME="$RDIR" timeout 60 /usr/lib/rabbitmq/bin/rabbitmqctl -n "$RABBITMQ_NODENAME" -q "$@"; }
rss_kib() { awk '/^VmRSS/{print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
mib() { awk -v k="$1" 'BEGIN{printf "%.1f MiB", k/1024}'; }

# --- the gateway --------------------------------------------------------------------------
cat >"$OUT/gateway.toml" <<EOF
# tests/loadgen/bench-stomp.toml with the STOMP service on RabbitMQ.
[server]
listen = "127.0.0.1:$PORT"

[admin]
listen = "127.0.0.1:$ADMIN_PORT"

[limits]
max_connections = 19900
max_connections_per_ip = 19900
idle_timeout = "300s"
outgoing_queue = 256

[[service]]
name = "stomp"
path = "/ws"
bridge = "stomp"
allow_missing_origin = true

[service.settings]
backend = "$AMQP_URL"
heart_beat = [0, 0]
subscription_queue = 1024
EOF
start_gateway() {
    "$BIN/gateway" --config "$OUT/gateway.toml" >"$OUT/gateway.log" 2>&1 &
    gateway=$!
    for _ in $(seq 1 200); do
        [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/readyz")" = 200 ] && return 0
        kill -0 "$gateway" 2>/dev/null || break
        sleep 0.1
    done
    say "gateway not ready:"
    cat "$OUT/gateway.log" >&2
    exit 1
}
# --- helpers ------------------------------------------------------------------------------
# Wait (up to QUIET_WAIT s) until other processes use under a fifth of a core, as in
# stomp-bench.sh; print the load average the run starts at.
wait_quiet() {
    await_quiet
    echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
}

# run NAME CMD...: show and keep the output (the JSON summary line only in the file).
run() {
    local name=$1
    shift
    echo "== $name: $*" | sed "s/--server-pid [0-9]*/--server-pid PID/"
    "$@" 2>&1 | tee "$OUT/$name.txt" | grep -v '^{' || true
}

# Peak RSS of a process, sampled every second until killed, into FILE.
peak_rss() {
    local pid=$1 file=$2 max=0 v
    while kill -0 "$pid" 2>/dev/null; do
        v=$(rss_kib "$pid")
        [ "${v:-0}" -gt "$max" ] && max=$v && echo "$max" >"$file"
        sleep 1
    done
}

# Once `ready_cmd` succeeds (everyone subscribed), note the broker's queues and both RSS.
snapshot() {
    local name=$1 ready_cmd=$2 deadline=$((SECONDS + 600))
    until eval "$ready_cmd"; do
        [ "$SECONDS" -lt "$deadline" ] || return 0
        sleep 0.5
    done
    sleep 2
    local queues
    queues=$(rmqctl list_queues name --no-table-headers | grep -c . || true)
    {
        echo "broker queues (rabbitmqctl list_queues): $queues"
        echo "broker RSS (beam.smp): $(mib "$(rss_kib "$BEAM")")"
        [ -n "$gateway" ] && echo "gateway RSS: $(mib "$(rss_kib "$gateway")")"
    } >"$OUT/$name.snapshot"
}

gw_subscribers() {
    curl -s "http://127.0.0.1:$ADMIN_PORT/metrics" |
        awk '/^gateway_stomp_upstream_local_subscribers/{s+=$NF} END{print s+0}'
}
ws_connections() {
    ss -Htn state established "sport = :$RABBITMQ_WEB_STOMP_PORT" 2>/dev/null | grep -c . || true
}

field() {
    tail -1 "$OUT/$1.txt" | python3 -c "import json,sys; v=json.load(sys.stdin).get('$2'); print('' if v is None else v)"
}

# fanout_case NAME URL START_RATE SERVER_PID READY_CMD EXTRA...
fanout_case() {
    local name=$1 url=$2 rate=$3 pid=$4 ready=$5
    shift 5
    wait_quiet
    echo "broker RSS before: $(mib "$(rss_kib "$BEAM")")"
    peak_rss "$BEAM" "$OUT/$name.beam-peak" &
    bg_jobs+=($!)
    if [ -n "$gateway" ]; then
        peak_rss "$gateway" "$OUT/$name.gw-peak" &
        bg_jobs+=($!)
    fi
    snapshot "$name" "$ready" &
    bg_jobs+=($!)
    run "$name" "$LG" stomp-fanout --url "$url" --subscribers "$SUBSCRIBERS" --processes "$PROCESSES" \
        --rate "$rate" --ramp --server-pid "$pid" "$@" "${EXTRA[@]}"
    cat "$OUT/$name.snapshot" 2>/dev/null || echo "(no snapshot: not everyone subscribed)"
    echo "broker RSS peak during the run: $(mib "$(cat "$OUT/$name.beam-peak" 2>/dev/null || echo 0)")"
    [ -f "$OUT/$name.gw-peak" ] && echo "gateway RSS peak during the run: $(mib "$(cat "$OUT/$name.gw-peak")")"
    for p in "${bg_jobs[@]}"; do kill "$p" 2>/dev/null || true; done
    bg_jobs=()
}

# latency_case NAME URL SERVER_PID EXTRA...: the STOMP subscribers and an AMQP consumer.
latency_case() {
    local name=$1 url=$2 pid=$3
    shift 3
    wait_quiet
    "$PY" tests/loadgen/amqp-latency.py --url "$AMQP_URL" --key bench --skip 2 \
        >"$OUT/$name-amqp.txt" 2>"$OUT/$name-amqp.err" &
    local consumer=$!
    bg_jobs+=("$consumer")
    for _ in $(seq 1 100); do grep -q ready "$OUT/$name-amqp.err" && break; sleep 0.1; done
    run "$name" "$LG" stomp-fanout --url "$url" --subscribers "$LAT_SUBSCRIBERS" --processes "$PROCESSES" \
        --rate "$LAT_RATE" --duration "$LAT_DURATION" --server-pid "$pid" "$@" "${EXTRA[@]}"
    kill -TERM "$consumer" 2>/dev/null || true
    wait "$consumer" 2>/dev/null || true
    bg_jobs=()
    grep -v '^{' "$OUT/$name-amqp.txt" || cat "$OUT/$name-amqp.err"
}

# The broker's CPU counts as another process's for the generator's noise check, and in the
# gateway case the broker works for every publish: allow it a little more.
GW_NOISY=(--noisy-threshold "${GW_NOISY_THRESHOLD:-40}")
read -ra EXTRA <<<"${LOADGEN_ARGS:-}"
WS_AUTH=(--login guest --passcode guest --host / --connect-rate 500)

for part in $PARTS; do
    case "$part" in
        fanout)
            echo "== fan-out, $SUBSCRIBERS subscribers: the gateway on RabbitMQ, then Web-STOMP"
            if [[ " $FANOUT_SIDES " == *" gateway "* ]]; then
                start_gateway
                fanout_case fanout-gateway "$GW_URL" "$GW_RATE" "$gateway" \
                    "[ \"\$(gw_subscribers)\" -ge $SUBSCRIBERS ]" "${GW_NOISY[@]}"
                stop_gateway
                sleep 5 # the node drops the shared queue
            fi
            if [[ " $FANOUT_SIDES " == *" webstomp "* ]]; then
                fanout_case fanout-webstomp "$RABBITMQ_WS_URL" "$WS_RATE" "$BEAM" \
                    "[ \"\$(ws_connections)\" -ge $SUBSCRIBERS ]" "${WS_AUTH[@]}"
            fi
            if [ ! -f "$OUT/fanout-gateway.txt" ] || [ ! -f "$OUT/fanout-webstomp.txt" ]; then continue; fi
            python3 - "$OUT" <<'EOF'
import json, sys
out = sys.argv[1]
def summary(name):
    with open(f"{out}/{name}.txt") as f:
        return json.loads([l for l in f if l.startswith("{")][-1])
g, w = summary("fanout-gateway"), summary("fanout-webstomp")
for key, what in (("peak_deliveries_per_sec", "sustainable (no loss, p99 <= 50 ms)"),
                  ("lossless_peak_deliveries_per_sec", "lossless (any latency)")):
    a, b = g.get(key), w.get(key)
    ratio = f"{a / b:.1f}x" if a and b else "n/a"
    fa = f"{a:,.0f}/s" if a else "none"
    fb = f"{b:,.0f}/s" if b else "none"
    print(f"{what}: gateway {fa}, Web-STOMP {fb}, ratio {ratio}")
EOF
            ;;
        latency)
            echo "== low-load latency, $LAT_SUBSCRIBERS subscribers at $LAT_RATE msgs/s, with an AMQP consumer"
            start_gateway
            latency_case latency-gateway "$GW_URL" "$gateway" "${GW_NOISY[@]}"
            stop_gateway
            latency_case latency-webstomp "$RABBITMQ_WS_URL" "$BEAM" "${WS_AUTH[@]}"
            ;;
        *)
            echo "unknown part $part" >&2
            exit 2
            ;;
    esac
done
echo "outputs in $OUT"
