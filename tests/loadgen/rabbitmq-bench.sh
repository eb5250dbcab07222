#!/usr/bin/env bash
# RabbitMQ Web-STOMP for side-by-side benchmarks: install (Debian's rabbitmq-server) if
# missing, start a private node on loopback with the web_stomp plugin, wait for it, run the
# STOMP benchmarks (or a command of your own) against it, and stop it.
#
#   tests/loadgen/rabbitmq-bench.sh                 # fanout 1k and 10k (ramp), idle sessions
#   tests/loadgen/rabbitmq-bench.sh run -- CMD ...  # CMD with $RABBIT_URL and $RABBIT_PID set
#   tests/loadgen/rabbitmq-bench.sh start           # leave it running (prints URL and PID)
#   tests/loadgen/rabbitmq-bench.sh stop
#
# Environment: RABBIT_DIR (state, default /tmp/loadgen-rabbitmq); WS_PORT (Web-STOMP, default
# 15675), AMQP_PORT (5673), STOMP_PORT (61614), DIST_PORT (25673), NODE (rabbit-bench@localhost);
# RABBIT_PARTS (default "fanout1k fanout10k idle"), IDLE_CONNECTIONS (5000), RATE_1K and
# RATE_10K (first ramp rates, 5 and 0.5 msgs/s); BIN (loadgen's directory, default
# target/release), BUILD (1: cargo build first). The default ports are one above RabbitMQ's
# own so that a test broker another job runs on 15674/5672/61613 is left alone. Needs root
# (apt-get, and the node runs as root from /usr/lib/rabbitmq/bin, without systemd). Every
# wait is bounded.
set -euo pipefail

cd "$(dirname "$0")/../.."
D=${RABBIT_DIR:-/tmp/loadgen-rabbitmq}
WS_PORT=${WS_PORT:-15675}
AMQP_PORT=${AMQP_PORT:-5673}
STOMP_PORT=${STOMP_PORT:-61614}
DIST_PORT=${DIST_PORT:-25673}
NODE=${NODE:-rabbit-bench@localhost}
IDLE_CONNECTIONS=${IDLE_CONNECTIONS:-5000}
BIN=${BIN:-${CARGO_TARGET_DIR:-target}/release}
BUILD=${BUILD:-1}
RABBIT_URL="ws://127.0.0.1:$WS_PORT/ws"
SBIN=/usr/lib/rabbitmq/bin

say() { echo "[rabbitmq-bench] $*" >&2; }

install() {
    if [ -x "$SBIN/rabbitmq-server" ]; then
        return
    fi
    say "installing rabbitmq-server"
    export DEBIAN_FRONTEND=noninteractive
    if ! timeout 600 apt-get install -y rabbitmq-server >/dev/null; then
        timeout 600 apt-get update >/dev/null
        timeout 600 apt-get install -y rabbitmq-server >/dev/null
    fi
}

# Everything the node and rabbitmqctl read: private state, our node name, loopback epmd.
node_env() {
    export HOME="$D" RABBITMQ_NODENAME="$NODE" \
        RABBITMQ_CONFIG_FILE="$D/rabbitmq.conf" RABBITMQ_MNESIA_BASE="$D/mnesia" \
        RABBITMQ_LOG_BASE="$D/log" RABBITMQ_ENABLED_PLUGINS_FILE="$D/enabled_plugins" \
        RABBITMQ_PID_FILE="$D/rabbit.pid" RABBITMQ_DIST_PORT="$DIST_PORT" \
        ERL_EPMD_ADDRESS=127.0.0.1
}

port_busy() {
    ss -Hltn "sport = :$1" 2>/dev/null | grep -q .
}

start() {
    install
    for p in "$WS_PORT" "$AMQP_PORT" "$STOMP_PORT" "$DIST_PORT"; do
        if port_busy "$p"; then
            say "port $p is in use: set WS_PORT/AMQP_PORT/STOMP_PORT/DIST_PORT"
            exit 1
        fi
    done
    rm -rf "$D"
    mkdir -p "$D/log" "$D/mnesia"
    cat >"$D/rabbitmq.conf" <<EOF
listeners.tcp.default = 127.0.0.1:$AMQP_PORT
stomp.listeners.tcp.1 = 127.0.0.1:$STOMP_PORT
web_stomp.tcp.ip = 127.0.0.1
web_stomp.tcp.port = $WS_PORT
web_stomp.tcp.backlog = 4096
loopback_users = none
EOF
    echo '[rabbitmq_stomp,rabbitmq_web_stomp].' >"$D/enabled_plugins"
    # epmd is shared by every Erlang node on the machine: note whether one was already up,
    # so that stop() only ends the one this node started.
    if ss -Hltn "sport = :4369" 2>/dev/null | grep -q .; then
        echo shared >"$D/epmd"
    else
        echo ours >"$D/epmd"
    fi
    (
        node_env
        exec setsid "$SBIN/rabbitmq-server" >"$D/log/stdout.log" 2>&1 </dev/null
    ) &
    echo $! >"$D/launcher.pid"
    node_env
    if ! timeout 90 "$SBIN/rabbitmqctl" wait "$D/rabbit.pid" --timeout 60 >/dev/null 2>&1; then
        say "node did not start; last log lines:"
        tail -20 "$D/log/stdout.log" >&2 || true
        stop
        exit 1
    fi
    # The Web-STOMP listener comes up with the plugin; wait for its port too.
    for _ in $(seq 1 100); do
        port_busy "$WS_PORT" && break
        sleep 0.1
    done
    RABBIT_PID=$(cat "$D/rabbit.pid")
    export RABBIT_PID RABBIT_URL
    say "RabbitMQ $(dpkg-query -W -f='${Version}' rabbitmq-server 2>/dev/null) node $NODE pid $RABBIT_PID, Web-STOMP $RABBIT_URL"
}

stop() {
    node_env
    if [ -f "$D/rabbit.pid" ]; then
        timeout 60 "$SBIN/rabbitmqctl" shutdown >/dev/null 2>&1 || true
        local pid
        pid=$(cat "$D/rabbit.pid" 2>/dev/null || true)
        if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid" 2>/dev/null || true
            for _ in $(seq 1 100); do
                kill -0 "$pid" 2>/dev/null || break
                sleep 0.1
            done
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    if [ -f "$D/launcher.pid" ]; then
        kill -TERM "$(cat "$D/launcher.pid")" 2>/dev/null || true
    fi
    if [ "$(cat "$D/epmd" 2>/dev/null)" = ours ]; then
        # The epmd listening on 4369 is the one our node started; end it unless another
        # node has registered with it since.
        local epmd others
        epmd=$(ss -Hltnp "sport = :4369" 2>/dev/null | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2)
        others=$(timeout 10 epmd -names 2>/dev/null | grep -c '^name ' || true)
        if [ -n "$epmd" ] && [ "${others:-0}" = 0 ]; then
            kill -TERM "$epmd" 2>/dev/null || true
        fi
    fi
    rm -f "$D/rabbit.pid" "$D/launcher.pid" "$D/epmd"
    say "stopped"
}

# Each scenario gets a fresh node: a node that just dropped 10,000 queues is still busy and
# holds their memory.
bench() {
    local lg="$BIN/loadgen"
    local auth=(--url "$RABBIT_URL" --login guest --passcode guest --host / --processes 2)
    local part
    for part in ${RABBIT_PARTS:-fanout1k fanout10k idle}; do
        start
        case "$part" in
            fanout1k)
                echo "== RabbitMQ Web-STOMP: fan-out, 1,000 subscribers (ramp)"
                "$lg" stomp-fanout "${auth[@]}" --subscribers 1000 --rate "${RATE_1K:-5}" \
                    --ramp --connect-rate 500 --server-pid "$RABBIT_PID" || true
                ;;
            fanout10k)
                echo "== RabbitMQ Web-STOMP: fan-out, 10,000 subscribers (ramp)"
                "$lg" stomp-fanout "${auth[@]}" --subscribers 10000 --rate "${RATE_10K:-0.5}" \
                    --ramp --connect-rate 500 --server-pid "$RABBIT_PID" || true
                ;;
            idle)
                echo "== RabbitMQ Web-STOMP: $IDLE_CONNECTIONS idle subscribed sessions"
                "$lg" stomp-idle "${auth[@]}" --connections "$IDLE_CONNECTIONS" \
                    --connect-rate 500 --server-pid "$RABBIT_PID" || true
                ;;
            *) echo "unknown part $part" >&2 ;;
        esac
        stop
    done
}

cmd=${1:-bench}
[ $# -gt 0 ] && shift
case "$cmd" in
    start)
        start
        echo "RABBIT_URL=$RABBIT_URL RABBIT_PID=$RABBIT_PID"
        ;;
    stop) stop ;;
    run | bench)
        [ "${1:-}" = "--" ] && shift
        if [ "$BUILD" = 1 ]; then
            cargo build --release --quiet -p loadgen
        fi
        trap stop EXIT
        if [ "$cmd" = run ]; then
            start
            "$@"
        else
            bench
        fi
        ;;
    *)
        echo "usage: $0 [bench | run -- CMD... | start | stop]" >&2
        exit 2
        ;;
esac
