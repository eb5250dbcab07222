#!/usr/bin/env bash
# A private RabbitMQ node for tests (Debian's rabbitmq-server, run as the current user
# straight from /usr/lib/rabbitmq/bin, no systemd, all state under DIR):
#
#   tests/scripts/rabbitmq.sh start  DIR   # boot in the background, wait until ready, print the ports
#   tests/scripts/rabbitmq.sh status DIR   # exit 0 and print the ports if running, 3 if not
#   tests/scripts/rabbitmq.sh stop   DIR   # shut down (SIGTERM), stop the epmd this script started
#
# `start` prints KEY=VALUE lines on stdout (also kept in DIR/ports.env), e.g.
#   RABBITMQ_WS_URL=ws://127.0.0.1:15674/ws  RABBITMQ_AMQP_URL=amqp://guest:guest@127.0.0.1:5672/
# so a caller can `eval "$(tests/scripts/rabbitmq.sh start DIR)"`; progress goes to stderr.
# start and stop are idempotent: starting a running node reprints its ports, stopping a
# stopped one does nothing. Nothing is installed here (tests/scripts/install-deps.sh does).
#
# Env (defaults in brackets; all listeners bind 127.0.0.1 only, every default port lies
# outside the kernel's ephemeral range, where the gateway tests take their free ports):
#   RABBITMQ_AMQP_PORT [5672]  RABBITMQ_STOMP_PORT [61613]  RABBITMQ_WEB_STOMP_PORT [15674]
#   RABBITMQ_DIST_PORT [AMQP port + 20000]  ERL_EPMD_PORT [4369]
#   RABBITMQ_NODENAME [rabbit@localhost]   (a second node needs its own name and ports)
#   RABBITMQ_PLUGINS ["rabbitmq_stomp rabbitmq_web_stomp"]  (space-separated; may be empty)
#   RABBITMQ_USER / RABBITMQ_PASS [guest/guest]  created at first boot, vhost "/"
#   RABBITMQ_WEB_STOMP_FRAME [binary]  web_stomp.ws_frame; RabbitMQ's own default, text, puts
#                         bodies that are not UTF-8 into text messages (clients then fail)
#   RABBITMQ_EXTRA_CONF   extra rabbitmq.conf lines (newline-separated)
#   RABBITMQ_START_TIMEOUT [60] seconds until `start` gives up (and stops what it started)
set -uo pipefail

usage() { echo "usage: $0 start|stop|status DIR" >&2; exit 2; }
[ $# -eq 2 ] || usage
CMD="$1"
mkdir -p "$2" || exit 2
D="$(cd "$2" && pwd)"

RMQ_BIN=/usr/lib/rabbitmq/bin
AMQP_PORT="${RABBITMQ_AMQP_PORT:-5672}"
STOMP_PORT="${RABBITMQ_STOMP_PORT:-61613}"
WEB_STOMP_PORT="${RABBITMQ_WEB_STOMP_PORT:-15674}"
WEB_STOMP_FRAME="${RABBITMQ_WEB_STOMP_FRAME:-binary}"
DIST_PORT="${RABBITMQ_DIST_PORT:-$((AMQP_PORT + 20000))}"
EPMD_PORT="${ERL_EPMD_PORT:-4369}"
NODENAME="${RABBITMQ_NODENAME:-rabbit@localhost}"
PLUGINS="${RABBITMQ_PLUGINS-rabbitmq_stomp rabbitmq_web_stomp}"
USER_NAME="${RABBITMQ_USER:-guest}"
USER_PASS="${RABBITMQ_PASS:-guest}"
START_TIMEOUT="${RABBITMQ_START_TIMEOUT:-60}"
HOST=127.0.0.1

log() { echo "rabbitmq.sh: $*" >&2; }

# The node and rabbitmqctl must agree on these (the cookie lives in $HOME).
export HOME="$D"
export RABBITMQ_NODENAME="$NODENAME"
export RABBITMQ_CONFIG_FILE="$D/rabbitmq.conf"
export RABBITMQ_CONF_ENV_FILE="$D/rabbitmq-env.conf"
export RABBITMQ_ENABLED_PLUGINS_FILE="$D/enabled_plugins"
export RABBITMQ_MNESIA_BASE="$D/mnesia"
export RABBITMQ_LOG_BASE="$D/log"
export RABBITMQ_PID_FILE="$D/rabbit.pid"
export RABBITMQ_DIST_PORT="$DIST_PORT"
export ERL_EPMD_ADDRESS="$HOST"
export ERL_EPMD_PORT="$EPMD_PORT"
# rabbitmq-env would otherwise read these from the environment and override the conf file.
unset RABBITMQ_NODE_PORT RABBITMQ_NODE_IP_ADDRESS

alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }
pid_of() { [ -s "$1" ] && tr -dc '0-9' <"$1"; }
listening() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }
has_plugin() { case " $PLUGINS " in *" $1 "*) return 0 ;; esac; return 1; }

node_pid() {
    local p
    p="$(pid_of "$D/rabbit.pid")"
    alive "$p" && { echo "$p"; return 0; }
    p="$(pid_of "$D/launcher.pid")"
    alive "$p" && { echo "$p"; return 0; }
    return 1
}

print_ports() { cat "$D/ports.env"; }

write_ports() {
    kv() { printf '%s=%q\n' "$1" "$2"; } # shell-quoted: `eval` works on any DIR
    {
        kv RABBITMQ_NODENAME "$NODENAME"
        kv RABBITMQ_DIR "$D"
        kv RABBITMQ_AMQP_PORT "$AMQP_PORT"
        kv RABBITMQ_AMQP_URL "amqp://$USER_NAME:$USER_PASS@$HOST:$AMQP_PORT/"
        kv RABBITMQ_USER "$USER_NAME"
        kv RABBITMQ_PASS "$USER_PASS"
        if has_plugin rabbitmq_stomp; then kv RABBITMQ_STOMP_PORT "$STOMP_PORT"; fi
        if has_plugin rabbitmq_web_stomp; then
            kv RABBITMQ_WEB_STOMP_PORT "$WEB_STOMP_PORT"
            kv RABBITMQ_WS_URL "ws://$HOST:$WEB_STOMP_PORT/ws"
        fi
    } >"$D/ports.env"
}

write_config() {
    mkdir -p "$D/log" "$D/mnesia"
    : >"$D/rabbitmq-env.conf" # not /etc/rabbitmq/rabbitmq-env.conf
    local list
    list="$(echo "$PLUGINS" | xargs | tr ' ' ',')"
    echo "[${list}]." >"$D/enabled_plugins"
    {
        echo "listeners.tcp.default = $HOST:$AMQP_PORT"
        echo "loopback_users = none"
        echo "default_user = $USER_NAME"
        echo "default_pass = $USER_PASS"
        echo "default_vhost = /"
        echo "log.console = false"
        echo "log.file.level = info"
        if has_plugin rabbitmq_stomp || has_plugin rabbitmq_web_stomp; then
            echo "stomp.listeners.tcp.1 = $HOST:$STOMP_PORT"
        fi
        if has_plugin rabbitmq_web_stomp; then
            echo "web_stomp.tcp.ip = $HOST"
            echo "web_stomp.tcp.port = $WEB_STOMP_PORT"
            echo "web_stomp.ws_frame = $WEB_STOMP_FRAME"
        fi
        if [ -n "${RABBITMQ_EXTRA_CONF:-}" ]; then printf '%s\n' "$RABBITMQ_EXTRA_CONF"; fi
    } >"$D/rabbitmq.conf"
}

# epmd: reuse one already listening (another node's), else start our own and remember its
# PID, so `stop` ends exactly that one (and only once no other node is registered with it).
ensure_epmd() {
    listening "$EPMD_PORT" && return 0
    local epmd
    epmd="$(command -v epmd || ls /usr/lib/erlang/erts-*/bin/epmd 2>/dev/null | head -1)"
    [ -x "$epmd" ] || { log "epmd not found"; return 1; }
    setsid "$epmd" -address "$HOST" -port "$EPMD_PORT" </dev/null >>"$D/log/epmd.log" 2>&1 &
    echo $! >"$D/epmd.pid"
    local i
    for i in $(seq 1 50); do listening "$EPMD_PORT" && return 0; sleep 0.1; done
    log "epmd did not listen on $EPMD_PORT"
    return 1
}

stop_epmd() {
    local p
    p="$(pid_of "$D/epmd.pid")"
    rm -f "$D/epmd.pid"
    alive "$p" || return 0
    [ "$(cat "/proc/$p/comm" 2>/dev/null)" = epmd ] || return 0
    local names
    names="$("$(dirname "$(readlink -f "/proc/$p/exe")")/epmd" -port "$EPMD_PORT" -names 2>/dev/null | grep -c '^name ' || true)"
    if [ "${names:-0}" != 0 ]; then
        log "leaving epmd $p running: other nodes are registered with it"
        return 0
    fi
    kill "$p" 2>/dev/null
    local i
    for i in $(seq 1 20); do alive "$p" || return 0; sleep 0.1; done
    kill -9 "$p" 2>/dev/null || true
}

do_stop() {
    local p launcher sig q
    p="$(pid_of "$D/rabbit.pid")"
    launcher="$(pid_of "$D/launcher.pid")"
    if alive "$p" || alive "$launcher"; then
        log "stopping $NODENAME"
        # RabbitMQ handles SIGTERM as a graceful stop (the same as `rabbitmqctl shutdown`,
        # without starting another Erlang VM): ~1 s. KILL only if it hangs.
        for sig in TERM KILL; do
            for q in $p $launcher; do alive "$q" && kill -s "$sig" "$q" 2>/dev/null; done
            for _ in $(seq 1 200); do { alive "$p" || alive "$launcher"; } || break; sleep 0.1; done
            { alive "$p" || alive "$launcher"; } || break
            log "$NODENAME still running after SIG$sig"
        done
    fi
    rm -f "$D/rabbit.pid" "$D/launcher.pid" "$D/ports.env"
    stop_epmd
    return 0
}

do_start() {
    if node_pid >/dev/null && [ -f "$D/ports.env" ] && listening "$AMQP_PORT"; then
        log "$NODENAME already running from $D"
        print_ports
        return 0
    fi
    [ -x "$RMQ_BIN/rabbitmq-server" ] || {
        log "$RMQ_BIN/rabbitmq-server not found (apt-get install rabbitmq-server; tests/scripts/install-deps.sh does)"
        return 1
    }
    do_stop >/dev/null 2>&1 # leftovers of an interrupted start
    local port
    for port in "$AMQP_PORT" "$DIST_PORT" \
        $(has_plugin rabbitmq_stomp && echo "$STOMP_PORT") \
        $(has_plugin rabbitmq_web_stomp && echo "$WEB_STOMP_PORT"); do
        if listening "$port"; then log "port $port is already in use"; return 1; fi
    done
    write_config
    ensure_epmd || return 1
    local t0=$SECONDS
    setsid "$RMQ_BIN/rabbitmq-server" </dev/null >>"$D/log/console.log" 2>&1 &
    echo $! >"$D/launcher.pid"
    local launcher=$!
    # `rabbitmqctl wait` returns once the node booted; watch the launcher meanwhile, so a
    # node that dies early fails now rather than at the timeout.
    timeout "$START_TIMEOUT" "$RMQ_BIN/rabbitmqctl" -n "$NODENAME" wait "$D/rabbit.pid" --timeout "$START_TIMEOUT" \
        </dev/null >>"$D/log/rabbitmqctl.log" 2>&1 &
    local waiter=$! rc=
    while alive "$waiter"; do
        if ! alive "$launcher"; then kill "$waiter" 2>/dev/null; rc=dead; break; fi
        sleep 0.2
    done
    if [ -z "$rc" ]; then wait "$waiter"; rc=$?; fi
    if [ "$rc" = 0 ] && has_plugin rabbitmq_web_stomp; then
        # The plugins come up with the node; make sure Web-STOMP really accepts connections.
        for port in $(seq 1 50); do listening "$WEB_STOMP_PORT" && break; sleep 0.1; done
        listening "$WEB_STOMP_PORT" || rc=no-web-stomp
    fi
    if [ "$rc" != 0 ]; then
        log "$NODENAME did not start (${rc}) within ${START_TIMEOUT}s; logs in $D/log:"
        tail -n 20 "$D/log/console.log" "$D/log/rabbitmqctl.log" "$D/log/$NODENAME.log" 2>/dev/null | sed 's/^/    /' >&2
        do_stop
        return 1
    fi
    write_ports
    log "$NODENAME ready in $((SECONDS - t0)) s (pid $(pid_of "$D/rabbit.pid"), state and logs in $D)"
    print_ports
}

do_status() {
    if node_pid >/dev/null && [ -f "$D/ports.env" ] && listening "$AMQP_PORT"; then
        log "$NODENAME running (pid $(node_pid))"
        print_ports
        return 0
    fi
    log "$NODENAME not running from $D"
    return 3
}

case "$CMD" in
    start) do_start ;;
    stop) do_stop ;;
    status) do_status ;;
    *) usage ;;
esac
