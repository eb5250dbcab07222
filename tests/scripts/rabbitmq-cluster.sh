#!/usr/bin/env bash
# A private RabbitMQ cluster on loopback for tests: N nodes (Debian's rabbitmq-server, each
# started by tests/scripts/rabbitmq.sh with its own name, ports and state in DIR/nI), one
# Erlang cookie, joined to the first node (`stop_app; join_cluster; start_app`).
#
#   tests/scripts/rabbitmq-cluster.sh start      DIR     # boot N nodes, join them, print the ports
#   tests/scripts/rabbitmq-cluster.sh status     DIR     # exit 0 and print the ports if all run, 3 if not
#   tests/scripts/rabbitmq-cluster.sh stop       DIR     # stop every node (by PID) and the cluster's epmd
#   tests/scripts/rabbitmq-cluster.sh stop-node  DIR I   # stop node I (1..N): a node loss for a test
#   tests/scripts/rabbitmq-cluster.sh start-node DIR I   # start node I again; it rejoins by itself
#
# `start` prints KEY=VALUE lines on stdout (also kept in DIR/cluster.env), e.g.
#   RABBITMQ_CLUSTER_AMQP_URLS=amqp://guest:guest@127.0.0.1:5801/,amqp://guest:guest@127.0.0.1:5802/,...
#   RABBITMQ_CLUSTER_AMQP_PORTS=5801,5802,5803  RABBITMQ_CLUSTER_NODES=rabbit1@localhost,...
#   RABBITMQ_CLUSTER_STOMP_PORTS=...  RABBITMQ_CLUSTER_DIRS=DIR/n1,...
# so a caller can `eval "$(tests/scripts/rabbitmq-cluster.sh start DIR)"`; progress goes to stderr.
# A node's own rabbitmqctl needs HOME=DIR/nI (its cookie) and ERL_EPMD_PORT.
#
# Env (defaults in brackets; every default port lies below the kernel's ephemeral range and
# apart from the single node's defaults, so both can run at once):
#   RABBITMQ_CLUSTER_SIZE [3]
#   RABBITMQ_CLUSTER_PORT_BASE [5800]: node I gets AMQP BASE+I, STOMP BASE+10+I,
#       Web-STOMP BASE+20+I, Erlang distribution BASE+30+I; the cluster's epmd BASE+90.
#       Each can be moved on its own: RABBITMQ_CLUSTER_AMQP_BASE, RABBITMQ_CLUSTER_STOMP_BASE,
#       RABBITMQ_CLUSTER_WEB_STOMP_BASE, RABBITMQ_CLUSTER_DIST_BASE (port of node I = X_BASE+I),
#       RABBITMQ_CLUSTER_EPMD_PORT.
#   RABBITMQ_CLUSTER_NAME_PREFIX [rabbit]: node names rabbit1@localhost, rabbit2@localhost, ...
#   RABBITMQ_PLUGINS ["rabbitmq_stomp"], RABBITMQ_USER/RABBITMQ_PASS, RABBITMQ_EXTRA_CONF,
#       RABBITMQ_START_TIMEOUT: passed to every node's rabbitmq.sh.
set -uo pipefail

usage() { echo "usage: $0 start|stop|status DIR | stop-node|start-node DIR I" >&2; exit 2; }
[ $# -ge 2 ] || usage
CMD="$1"
mkdir -p "$2" || exit 2
D="$(cd "$2" && pwd)"
NODE_ARG="${3:-}"

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
NODE_SCRIPT="$HERE/rabbitmq.sh"
RMQ_BIN=/usr/lib/rabbitmq/bin
HOST=127.0.0.1

# The layout is remembered at `start`, so later commands work without the same env.
if [ -f "$D/layout.env" ] && [ "$CMD" != start ]; then
    # shellcheck disable=SC1091
    . "$D/layout.env"
fi
SIZE="${RABBITMQ_CLUSTER_SIZE:-3}"
BASE="${RABBITMQ_CLUSTER_PORT_BASE:-5800}"
AMQP_BASE="${RABBITMQ_CLUSTER_AMQP_BASE:-$BASE}"
STOMP_BASE="${RABBITMQ_CLUSTER_STOMP_BASE:-$((BASE + 10))}"
WEB_STOMP_BASE="${RABBITMQ_CLUSTER_WEB_STOMP_BASE:-$((BASE + 20))}"
DIST_BASE="${RABBITMQ_CLUSTER_DIST_BASE:-$((BASE + 30))}"
EPMD_PORT="${RABBITMQ_CLUSTER_EPMD_PORT:-$((BASE + 90))}"
PREFIX="${RABBITMQ_CLUSTER_NAME_PREFIX:-rabbit}"
export RABBITMQ_PLUGINS="${RABBITMQ_PLUGINS-rabbitmq_stomp}"
USER_NAME="${RABBITMQ_USER:-guest}"
USER_PASS="${RABBITMQ_PASS:-guest}"

case "$SIZE" in '' | *[!0-9]*) echo "RABBITMQ_CLUSTER_SIZE must be a number" >&2; exit 2 ;; esac
[ "$SIZE" -ge 1 ] && [ "$SIZE" -le 9 ] || { echo "RABBITMQ_CLUSTER_SIZE must be 1..9" >&2; exit 2; }

log() { echo "rabbitmq-cluster.sh: $*" >&2; }
alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }
pid_of() { [ -s "$1" ] && tr -dc '0-9' <"$1"; }
listening() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

node_name() { echo "$PREFIX$1@localhost"; }
node_dir() { echo "$D/n$1"; }

# rabbitmq.sh for node I, with that node's name and ports.
node_script() {
    local i="$1" cmd="$2"
    RABBITMQ_NODENAME="$(node_name "$i")" \
        RABBITMQ_AMQP_PORT="$((AMQP_BASE + i))" \
        RABBITMQ_STOMP_PORT="$((STOMP_BASE + i))" \
        RABBITMQ_WEB_STOMP_PORT="$((WEB_STOMP_BASE + i))" \
        RABBITMQ_DIST_PORT="$((DIST_BASE + i))" \
        ERL_EPMD_PORT="$EPMD_PORT" \
        bash "$NODE_SCRIPT" "$cmd" "$(node_dir "$i")"
}

ctl() {
    local i="$1"
    shift
    HOME="$(node_dir "$i")" ERL_EPMD_PORT="$EPMD_PORT" ERL_EPMD_ADDRESS="$HOST" \
        RABBITMQ_ENABLED_PLUGINS_FILE="$(node_dir "$i")/enabled_plugins" \
        timeout 120 "$RMQ_BIN/rabbitmqctl" -n "$(node_name "$i")" "$@"
}

write_layout() {
    {
        echo "RABBITMQ_CLUSTER_SIZE=$SIZE"
        echo "RABBITMQ_CLUSTER_AMQP_BASE=$AMQP_BASE"
        echo "RABBITMQ_CLUSTER_STOMP_BASE=$STOMP_BASE"
        echo "RABBITMQ_CLUSTER_WEB_STOMP_BASE=$WEB_STOMP_BASE"
        echo "RABBITMQ_CLUSTER_DIST_BASE=$DIST_BASE"
        echo "RABBITMQ_CLUSTER_EPMD_PORT=$EPMD_PORT"
        echo "RABBITMQ_CLUSTER_NAME_PREFIX=$PREFIX"
        printf 'RABBITMQ_PLUGINS=%q\n' "$RABBITMQ_PLUGINS"
        printf 'RABBITMQ_USER=%q\nRABBITMQ_PASS=%q\n' "$USER_NAME" "$USER_PASS"
    } >"$D/layout.env"
}

write_env() {
    local i urls="" ports="" stomp="" nodes="" dirs="" sep=""
    for i in $(seq 1 "$SIZE"); do
        urls+="${sep}amqp://$USER_NAME:$USER_PASS@$HOST:$((AMQP_BASE + i))/"
        ports+="${sep}$((AMQP_BASE + i))"
        stomp+="${sep}$((STOMP_BASE + i))"
        nodes+="${sep}$(node_name "$i")"
        dirs+="${sep}$(node_dir "$i")"
        sep=","
    done
    # Shell-quoted only when needed: lists stay plain for callers that split them on commas.
    kv() {
        case "$2" in
            *[!A-Za-z0-9_@%+=:,./-]*) printf '%s=%q\n' "$1" "$2" ;;
            *) printf '%s=%s\n' "$1" "$2" ;;
        esac
    }
    {
        kv RABBITMQ_CLUSTER_DIR "$D"
        kv RABBITMQ_CLUSTER_SIZE "$SIZE"
        kv RABBITMQ_CLUSTER_NODES "$nodes"
        kv RABBITMQ_CLUSTER_AMQP_PORTS "$ports"
        kv RABBITMQ_CLUSTER_AMQP_URLS "$urls"
        case " $RABBITMQ_PLUGINS " in *" rabbitmq_stomp "*) kv RABBITMQ_CLUSTER_STOMP_PORTS "$stomp" ;; esac
        kv RABBITMQ_CLUSTER_DIRS "$dirs"
        kv RABBITMQ_CLUSTER_EPMD_PORT "$EPMD_PORT"
        kv RABBITMQ_USER "$USER_NAME"
        kv RABBITMQ_PASS "$USER_PASS"
    } >"$D/cluster.env"
}

# One epmd for the whole cluster, owned here: the nodes' rabbitmq.sh reuse it, so stopping
# any one node never takes it away from the others.
ensure_epmd() {
    listening "$EPMD_PORT" && return 0
    local epmd
    epmd="$(command -v epmd || ls /usr/lib/erlang/erts-*/bin/epmd 2>/dev/null | head -1)"
    [ -x "$epmd" ] || { log "epmd not found"; return 1; }
    setsid "$epmd" -address "$HOST" -port "$EPMD_PORT" </dev/null >>"$D/epmd.log" 2>&1 &
    echo $! >"$D/epmd.pid"
    for _ in $(seq 1 50); do listening "$EPMD_PORT" && return 0; sleep 0.1; done
    log "epmd did not listen on $EPMD_PORT"
    return 1
}

stop_epmd() {
    local p
    p="$(pid_of "$D/epmd.pid")"
    rm -f "$D/epmd.pid"
    alive "$p" && [ "$(cat "/proc/$p/comm" 2>/dev/null)" = epmd ] || return 0
    kill "$p" 2>/dev/null
    for _ in $(seq 1 20); do alive "$p" || return 0; sleep 0.1; done
    kill -9 "$p" 2>/dev/null || true
}

# Every node must carry the same cookie to talk to the others; rabbitmq.sh points HOME at
# the node's dir, where Erlang looks for it.
write_cookie() {
    local dir="$1"
    mkdir -p "$dir"
    [ -f "$D/cookie" ] || { head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' | tr a-f A-F >"$D/cookie"; }
    if ! cmp -s "$D/cookie" "$dir/.erlang.cookie" 2>/dev/null; then
        rm -f "$dir/.erlang.cookie"
        cp "$D/cookie" "$dir/.erlang.cookie"
        chmod 400 "$dir/.erlang.cookie"
    fi
}

check_index() {
    case "$NODE_ARG" in '' | *[!0-9]*) usage ;; esac
    [ "$NODE_ARG" -ge 1 ] && [ "$NODE_ARG" -le "$SIZE" ] || { log "node $NODE_ARG: the cluster has nodes 1..$SIZE"; exit 2; }
}

joined() { ctl "$1" -q cluster_status --formatter json 2>/dev/null | grep -q "\"$(node_name 1)\""; }

do_stop() {
    local i pids=()
    for i in $(seq "$SIZE" -1 1); do
        [ -d "$(node_dir "$i")" ] || continue
        node_script "$i" stop >/dev/null 2>&1 &
        pids+=($!)
    done
    [ "${#pids[@]}" -gt 0 ] && wait "${pids[@]}"
    stop_epmd
    rm -f "$D/cluster.env"
    return 0
}

do_status() {
    local i down=0
    for i in $(seq 1 "$SIZE"); do
        if node_script "$i" status >/dev/null 2>&1; then log "$(node_name "$i") running"
        else log "$(node_name "$i") not running"; down=1; fi
    done
    [ "$down" = 0 ] && [ -f "$D/cluster.env" ] && { cat "$D/cluster.env"; return 0; }
    return 3
}

do_start() {
    if [ -f "$D/cluster.env" ] && do_status >/dev/null 2>&1; then
        log "cluster already running from $D"
        cat "$D/cluster.env"
        return 0
    fi
    do_stop >/dev/null 2>&1 # leftovers of an interrupted start
    write_layout
    ensure_epmd || return 1
    local t0=$SECONDS i pids=() failed=0
    # All nodes boot at once (the boot is mostly CPU; in parallel it still ends sooner).
    for i in $(seq 1 "$SIZE"); do
        write_cookie "$(node_dir "$i")"
        node_script "$i" start >"$(node_dir "$i")/start.env" 2>"$(node_dir "$i")/start.log" &
        pids+=($!)
    done
    for i in $(seq 1 "$SIZE"); do
        if ! wait "${pids[$((i - 1))]}"; then
            failed=1
            log "$(node_name "$i") did not start:"
            sed 's/^/    /' "$(node_dir "$i")/start.log" >&2
        fi
    done
    [ "$failed" = 0 ] || { do_stop; return 1; }
    log "$SIZE nodes booted in $((SECONDS - t0)) s; joining them to $(node_name 1)"
    for i in $(seq 2 "$SIZE"); do
        joined "$i" && continue
        if ! { ctl "$i" -q stop_app && ctl "$i" -q join_cluster "$(node_name 1)" && ctl "$i" -q start_app; } \
            >>"$(node_dir "$i")/log/join.log" 2>&1; then
            log "$(node_name "$i") did not join; see $(node_dir "$i")/log/join.log"
            sed 's/^/    /' "$(node_dir "$i")/log/join.log" >&2
            do_stop
            return 1
        fi
    done
    write_env
    log "cluster of $SIZE ready in $((SECONDS - t0)) s (state and logs in $D/n1..n$SIZE)"
    cat "$D/cluster.env"
}

do_stop_node() {
    check_index
    node_script "$NODE_ARG" stop
}

do_start_node() {
    check_index
    ensure_epmd || return 1
    write_cookie "$(node_dir "$NODE_ARG")"
    # A member rejoins its cluster at boot (its state says where it belongs).
    node_script "$NODE_ARG" start >"$(node_dir "$NODE_ARG")/start.env" || return 1
    log "$(node_name "$NODE_ARG") back"
}

case "$CMD" in
    start) do_start ;;
    stop) do_stop ;;
    status) do_status ;;
    stop-node) do_stop_node ;;
    start-node) do_start_node ;;
    *) usage ;;
esac
