#!/usr/bin/env bash
# Several gateways on one RabbitMQ (BENCHMARKS.md, "Scaling out: several gateways on one
# broker"), three parts in one run:
#
#   fanout    SUBSCRIBERS STOMP subscribers on one topic, publisher rate ramp: first all on
#             one gateway, then spread over GATEWAYS gateways (the load generator's worker
#             process K subscribes through gateway K mod GATEWAYS; the publisher uses the
#             first). Reports each side's sustainable and lossless peaks (aggregate
#             deliveries/s) and the gateways' CPU (summed).
#   broker    the broker's cost per subscriber: BROKER_COUNTS subscribers (spread over the
#             gateways) at BROKER_RATE msgs/s for BROKER_DURATION, with beam.smp as the
#             measured server (its CPU per step, its RSS) and `rabbitmqctl list_queues` /
#             `list_connections` counted while everyone is subscribed. Goal: flat (±10%).
#   failover  FAILOVER_CLIENTS client-library sessions (tests/loadgen/failover-bench.js) on
#             the first gateway with the others in their failover list; SIGKILL it and time
#             until every session is subscribed again on the others. Goal: < 10 s.
#
#   tests/loadgen/cluster-bench.sh                         # all three parts, full scale
#   CLUSTER=3 tests/loadgen/cluster-bench.sh               # the same on a 3-node cluster
#   SUBSCRIBERS=300 BROKER_COUNTS="100 300" FAILOVER_CLIENTS=300 \
#       LOADGEN_ARGS="--max-steps 2 --refine 0" tests/loadgen/cluster-bench.sh   # quick check
#
# Env: PARTS ("fanout broker failover"), GATEWAYS (3), SUBSCRIBERS (10000), PROCESSES (3:
# load generator processes, each may hold 20,000 open files; a multiple of GATEWAYS spreads
# evenly), RATE (first ramp rate, 2 msgs/s), BROKER_COUNTS ("1000 10000"), BROKER_RATE (5),
# BROKER_DURATION (20s), FAILOVER_CLIENTS (5000), FAILOVER_PROCESSES (2), PORT (first
# gateway's port, 25810; admin ports from PORT + 10), AMQP_PORT (25800; distribution port
# 25891, epmd ERL_EPMD_PORT 25890), CLUSTER (a node count: a private cluster of
# tests/scripts/rabbitmq-cluster.sh instead of one node, ports from CLUSTER_PORT_BASE 25840,
# epmd 25890; the gateways get every node's URI, the broker figures are the nodes' sums), AMQP_URL (use a running broker or cluster instead of a
# private node, e.g. the cluster of tests/scripts/rabbitmq-cluster.sh; BEAM_PID then names
# the beam.smp to measure and RMQCTL the rabbitmqctl command line), BIN (the gateway's and
# loadgen's directory, default ${CARGO_TARGET_DIR:-target}/release), BUILD (1: cargo build
# first), OUT (outputs, default /tmp/cluster-bench-DATE), QUIET_WAIT (most seconds to wait
# for a quiet machine before each run, 300), LOADGEN_ARGS (more stomp-fanout options).
set -euo pipefail
. "$(dirname "$0")/bench-lib.sh"

cd "$(dirname "$0")/../.."
PARTS=${PARTS:-fanout broker failover}
GATEWAYS=${GATEWAYS:-3}
SUBSCRIBERS=${SUBSCRIBERS:-10000}
PROCESSES=${PROCESSES:-3}
RATE=${RATE:-2}
BROKER_COUNTS=${BROKER_COUNTS:-1000 10000}
BROKER_RATE=${BROKER_RATE:-5}
BROKER_DURATION=${BROKER_DURATION:-20s}
FAILOVER_CLIENTS=${FAILOVER_CLIENTS:-5000}
FAILOVER_PROCESSES=${FAILOVER_PROCESSES:-2}
PORT=${PORT:-25810}
AMQP_PORT=${AMQP_PORT:-25800}
BIN=${BIN:-${CARGO_TARGET_DIR:-target}/release}
BUILD=${BUILD:-1}
OUT=${OUT:-/tmp/cluster-bench-$(date +%Y%m%d-%H%M%S)}
LG="$BIN/loadgen"
read -r -a EXTRA <<<"${LOADGEN_ARGS:-}"
mkdir -p "$OUT"

say() { echo "[cluster-bench] $*" >&2; }

if [ "$BUILD" = 1 ]; then
    cargo build --release --quiet -p gateway -p loadgen
fi
[ -d tests/loadgen/node/node_modules/ws ] || (cd tests/loadgen/node && npm ci --no-audit --no-fund --silent)

# Every process of the run may hold 20,000 open files, no more.
ulimit -n 20000

# --- RabbitMQ -----------------------------------------------------------------------------
RDIR="$OUT/rabbitmq"
gws=()
bg_jobs=()
cleanup() {
    for p in "${bg_jobs[@]}"; do kill "$p" 2>/dev/null || true; done
    stop_gateways
    [ -n "${AMQP_URL_GIVEN:-}" ] || tests/scripts/rabbitmq.sh stop "$RDIR" >/dev/null 2>&1 || true
}
trap cleanup EXIT
if [ -n "${AMQP_URL:-}" ]; then
    AMQP_URL_GIVEN=1
    BEAM=${BEAM_PID:?BEAM_PID: the beam.smp to measure}
    read -r -a RMQCTL <<<"${RMQCTL:?RMQCTL: the rabbitmqctl command line for that broker}"
elif [ -n "${CLUSTER:-}" ]; then
    export RABBITMQ_CLUSTER_SIZE=$CLUSTER RABBITMQ_CLUSTER_PORT_BASE=${CLUSTER_PORT_BASE:-25840}
    export RABBITMQ_CLUSTER_EPMD_PORT=${ERL_EPMD_PORT:-25890} RABBITMQ_PLUGINS=""
    RABBITMQ_CLUSTER_NAME_PREFIX=gwcluster
    export RABBITMQ_CLUSTER_NAME_PREFIX
    eval "$(tests/scripts/rabbitmq-cluster.sh start "$RDIR")"
    cleanup() {
        for p in "${bg_jobs[@]}"; do kill "$p" 2>/dev/null || true; done
        stop_gateways
        tests/scripts/rabbitmq-cluster.sh stop "$RDIR" >/dev/null 2>&1 || true
    }
    # Every node's URI with the vhost "/" spelled out.
    AMQP_URL=$(echo "$RABBITMQ_CLUSTER_AMQP_URLS" | sed -E 's#/(,|$)#/%2f\1#g')
    BEAM=
    for d in ${RABBITMQ_CLUSTER_DIRS//,/ }; do BEAM+="${BEAM:+,}$(cat "$d/rabbit.pid")"; done
    first_dir=${RABBITMQ_CLUSTER_DIRS%%,*}
    RMQCTL=(env HOME="$first_dir" ERL_EPMD_PORT="$RABBITMQ_CLUSTER_EPMD_PORT" timeout 60
        /usr/lib/rabbitmq/bin/rabbitmqctl -n "${RABBITMQ_CLUSTER_NODES%%,*}" -q)
else
    export RABBITMQ_AMQP_PORT=$AMQP_PORT RABBITMQ_DIST_PORT=${RABBITMQ_DIST_PORT:-25891}
    export ERL_EPMD_PORT=${ERL_EPMD_PORT:-25890} RABBITMQ_PLUGINS=""
    export RABBITMQ_NODENAME=${NODE:-gwcluster@localhost}
    eval "$(tests/scripts/rabbitmq.sh start "$RDIR")"
    BEAM=$(cat "$RDIR/rabbit.pid")
    AMQP_URL="amqp://guest:guest@127.0.0.1:$AMQP_PORT/%2f"
    RMQCTL=(env HOME="$RDIR" timeout 60 /usr/lib/rabbitmq/bin/rabbitmqctl -n "$RABBITMQ_NODENAME" -q)
fi
say "RabbitMQ $(dpkg-query -W -f='${Version}' rabbitmq-server 2>/dev/null) beam.smp pid $BEAM, $AMQP_URL"

# RSS of one PID or the sum over a comma-separated list (a cluster's nodes), KiB.
rss_kib() {
    local p s=0 v
    for p in ${1//,/ }; do
        v=$(awk '/^VmRSS/{print $2}' "/proc/$p/status" 2>/dev/null || echo 0)
        s=$((s + ${v:-0}))
    done
    echo "$s"
}
mib() { awk -v k="$1" 'BEGIN{printf "%.1f MiB", k/1024}'; }
count_rows() { "${RMQCTL[@]}" "$@" --no-table-headers 2>/dev/null | grep -c . || true; }

# --- gateways -----------------------------------------------------------------------------
gw_port() { echo $((PORT + $1)); }
gw_admin() { echo $((PORT + 10 + $1)); }
gw_url() { echo "ws://127.0.0.1:$(gw_port "$1")/ws"; }

start_gateways() {
    local n=$1 i
    gws=()
    for ((i = 0; i < n; i++)); do
        cat >"$OUT/gateway$i.toml" <<EOF
# tests/loadgen/bench-stomp.toml with the STOMP service on RabbitMQ: gateway $i of $n.
[server]
listen = "127.0.0.1:$(gw_port "$i")"

[admin]
listen = "127.0.0.1:$(gw_admin "$i")"

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
        "$BIN/gateway" --config "$OUT/gateway$i.toml" >>"$OUT/gateway$i.log" 2>&1 &
        gws+=($!)
    done
    for ((i = 0; i < n; i++)); do
        local ok=
        for _ in $(seq 1 200); do
            if [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$(gw_port "$i")/readyz")" = 200 ]; then
                ok=1
                break
            fi
            sleep 0.1
        done
        [ -n "$ok" ] || { say "gateway $i not ready:"; cat "$OUT/gateway$i.log" >&2; exit 1; }
    done
}

stop_gateways() {
    local p
    for p in "${gws[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${gws[@]}"; do
        for _ in $(seq 1 150); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    gws=()
}

urls() {
    local n=$1 i out=
    for ((i = 0; i < n; i++)); do out+="${out:+,}$(gw_url "$i")"; done
    echo "$out"
}
pids() { local IFS=,; echo "${gws[*]}"; }
subscribers_now() {
    local i s=0 v
    for ((i = 0; i < ${#gws[@]}; i++)); do
        v=$(curl -s "http://127.0.0.1:$(gw_admin "$i")/metrics" |
            awk '/^gateway_stomp_upstream_local_subscribers/{s+=$NF} END{print s+0}')
        s=$((s + v))
    done
    echo "$s"
}

# run NAME CMD...: show and keep the output (the JSON summary line only in the file).
run() {
    local name=$1
    shift
    echo "== $name: $*" | sed -E "s/--server-pid [0-9,]+/--server-pid PIDS/"
    "$@" 2>&1 | tee "$OUT/$name.txt" | grep -v '^{' || true
}

wait_quiet() {
    await_quiet
    echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
}

# While a run holds its subscribers: the broker's queues, connections and RSS.
broker_snapshot() {
    local name=$1 want=$2 deadline=$((SECONDS + 600))
    until [ "$(subscribers_now)" -ge "$want" ]; do
        [ "$SECONDS" -lt "$deadline" ] || return 0
        sleep 0.5
    done
    sleep 2
    {
        echo "with $want subscribed: broker queues (list_queues) $(count_rows list_queues name)," \
            "connections (list_connections) $(count_rows list_connections name)," \
            "channels (list_channels) $(count_rows list_channels name)," \
            "broker RSS (beam.smp) $(mib "$(rss_kib "$BEAM")")"
    } >"$OUT/$name.snapshot"
}

# --- (a) fan-out: one gateway vs GATEWAYS gateways -----------------------------------------
fanout_part() {
    local n
    for n in 1 "$GATEWAYS"; do
        start_gateways "$n"
        wait_quiet
        broker_snapshot "fanout-$n" "$SUBSCRIBERS" &
        bg_jobs+=($!)
        run "fanout-$n" "$LG" stomp-fanout --url "$(urls "$n")" --subscribers "$SUBSCRIBERS" \
            --processes "$PROCESSES" --rate "$RATE" --ramp --server-pid "$(pids)" --noisy-threshold 60 "${EXTRA[@]}"
        cat "$OUT/fanout-$n.snapshot" 2>/dev/null || true
        for p in "${bg_jobs[@]}"; do kill "$p" 2>/dev/null || true; done
        bg_jobs=()
        stop_gateways
    done
}

# --- (b) the broker at 1,000 vs 10,000 subscribers -----------------------------------------
broker_part() {
    local n
    start_gateways "$GATEWAYS"
    for n in $BROKER_COUNTS; do
        wait_quiet
        echo "broker RSS before: $(mib "$(rss_kib "$BEAM")")"
        broker_snapshot "broker-$n" "$n" &
        bg_jobs+=($!)
        # The broker is the measured server here: "server CPU" is beam.smp's.
        run "broker-$n" "$LG" stomp-fanout --url "$(urls "$GATEWAYS")" --subscribers "$n" \
            --processes "$PROCESSES" --rate "$BROKER_RATE" --duration "$BROKER_DURATION" \
            --server-pid "$BEAM" --noisy-threshold 60 "${EXTRA[@]}"
        cat "$OUT/broker-$n.snapshot" 2>/dev/null || echo "(no snapshot: not everyone subscribed)"
        for p in "${bg_jobs[@]}"; do kill "$p" 2>/dev/null || true; done
        bg_jobs=()
    done
    stop_gateways
}

# --- (c) failover time ---------------------------------------------------------------------
failover_part() {
    local others other_pids i
    start_gateways "$GATEWAYS"
    others=
    other_pids=
    for ((i = 1; i < GATEWAYS; i++)); do
        others+="${others:+,}$(gw_url "$i")"
        other_pids+="${other_pids:+,}${gws[$i]}"
    done
    wait_quiet
    echo "== failover: $FAILOVER_CLIENTS sessions on gateway 0, then SIGKILL"
    NODE_PATH=tests/loadgen/node/node_modules VICTIM_URL="$(gw_url 0)" VICTIM_PID="${gws[0]}" \
        OTHER_URLS="$others" OTHER_PIDS="$other_pids" CLIENTS="$FAILOVER_CLIENTS" PROCESSES="$FAILOVER_PROCESSES" \
        node tests/loadgen/failover-bench.js 2>&1 | tee "$OUT/failover.txt" | grep -v '^{' || true
    wait "${gws[0]}" 2>/dev/null || true
    gws=("${gws[@]:1}")
    stop_gateways
}

echo "machine: $(nproc) cores, $(awk '/MemTotal/{printf "%.1f GiB", $2/1048576}' /proc/meminfo); outputs in $OUT"
for part in $PARTS; do
    case "$part" in
        fanout) fanout_part ;;
        broker) broker_part ;;
        failover) failover_part ;;
        *) say "unknown part $part"; exit 2 ;;
    esac
done
