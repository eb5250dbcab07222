#!/usr/bin/env bash
# AMQP 0-9-1 over WebSocket through the gateway (`amqp` bridge, /amqp) against amqplib
# straight to RabbitMQ, same node, same client library, one run (BENCHMARKS.md, "AMQP 0-9-1
# over WebSocket: amqplib through the gateway vs straight to RabbitMQ"):
#
#   perf     for each side: (a) publish with confirms for DURATION s (SIZE-byte bodies, at
#            most WINDOW unconfirmed), (b) consume CONSUME_COUNT messages (prefetch PREFETCH,
#            manual ack with multiple every ACK_EVERY), (c) round-trip latency at LAT_RATE
#            msgs/s for LAT_DURATION s, publisher and consumer on two connections.
#   clients  CLIENTS AMQP-over-WebSocket clients in CLIENT_PROCESSES Node processes, each with
#            a consumer on its own server-named queue: the broker connections RabbitMQ lists
#            (goal: POOL_SIZE), the gateway's RSS per client, the generator's CPU share.
#
#   tests/loadgen/amqp-bench.sh                                   # everything, ~2 minutes
#   DURATION=3 CONSUME_COUNT=30000 CLIENTS=100 tests/loadgen/amqp-bench.sh   # quick check
#
# Env: PARTS ("perf clients"), SIDES ("gateway direct"), DURATION (10), SIZE (100), WINDOW
# (1000), CONSUME_COUNT (300000), PREFETCH (1000), ACK_EVERY (500), LAT_RATE (100),
# LAT_DURATION (10), CLIENTS (1000), CLIENT_PROCESSES (4), POOL_SIZE (4), CREDENTIALS
# ("service": clients log in to the gateway's realm; "pass-through": with the broker's
# guest), PORT / ADMIN_PORT (gateway, 8585 / 9595), AMQP_PORT (5990), ERL_EPMD_PORT (4590),
# NODE (amqpbench@localhost), BIN (the gateway's directory, default
# ${CARGO_TARGET_DIR:-target}/release), BUILD (1: cargo build first), OUT (outputs, default
# /tmp/amqp-bench-DATE), QUIET_WAIT (most seconds to wait for a quiet machine before each
# part, 120). Node deps: `npm ci` in tests/loadgen/node (done here when missing).
set -euo pipefail
. "$(dirname "$0")/bench-lib.sh"

cd "$(dirname "$0")/../.."
PARTS=${PARTS:-perf clients}
SIDES=${SIDES:-gateway direct}
DURATION=${DURATION:-10}
SIZE=${SIZE:-100}
WINDOW=${WINDOW:-1000}
CONSUME_COUNT=${CONSUME_COUNT:-300000}
PREFETCH=${PREFETCH:-1000}
ACK_EVERY=${ACK_EVERY:-500}
LAT_RATE=${LAT_RATE:-100}
LAT_DURATION=${LAT_DURATION:-10}
CLIENTS=${CLIENTS:-1000}
CLIENT_PROCESSES=${CLIENT_PROCESSES:-4}
POOL_SIZE=${POOL_SIZE:-4}
CREDENTIALS=${CREDENTIALS:-service}
PORT=${PORT:-8585}
ADMIN_PORT=${ADMIN_PORT:-9595}
AMQP_PORT=${AMQP_PORT:-5990}
BIN=${BIN:-${CARGO_TARGET_DIR:-target}/release}
BUILD=${BUILD:-1}
OUT=${OUT:-/tmp/amqp-bench-$(date +%Y%m%d-%H%M%S)}
JS=tests/loadgen/amqp-bench.js
mkdir -p "$OUT"

say() { echo "[amqp-bench] $*" >&2; }

if [ "$BUILD" = 1 ]; then
    cargo build --release --quiet -p gateway
fi
if [ ! -d tests/loadgen/node/node_modules/amqplib ]; then
    (cd tests/loadgen/node && npm ci --no-audit --no-fund --silent)
fi

# --- RabbitMQ: a private node (own name, ports, epmd and state), no plugins -------------
export RABBITMQ_AMQP_PORT=$AMQP_PORT RABBITMQ_PLUGINS=""
export ERL_EPMD_PORT=${ERL_EPMD_PORT:-4590} RABBITMQ_NODENAME=${NODE:-amqpbench@localhost}
RDIR="$OUT/rabbitmq"
gateway=
cleanup() {
    stop_gateway
    tests/scripts/rabbitmq.sh stop "$RDIR" >/dev/null 2>&1 || true
}
trap cleanup EXIT
eval "$(tests/scripts/rabbitmq.sh start "$RDIR")"
BEAM=$(cat "$RDIR/rabbit.pid")
AMQP_URL="amqp://guest:guest@127.0.0.1:$AMQP_PORT/%2f"
say "RabbitMQ $(dpkg-query -W -f='${Version}' rabbitmq-server 2>/dev/null) pid $BEAM at $AMQP_URL"

# --- the gateway: one amqp service on that node ----------------------------------------
# A realm user for credentials = "service"; the broker sees only the backend URI's guest.
BENCH_USER=bench
BENCH_PASS=bench-$RANDOM$RANDOM
HASH=$("$BIN/gateway" hash-password "$BENCH_PASS")
cat >"$OUT/users.toml" <<EOF
[[user]]
name = "$BENCH_USER"
password_hash = "$HASH"
roles = ["bench"]
EOF
if [ "$CREDENTIALS" = pass-through ]; then GW_USER=guest GW_PASS=guest; else GW_USER=$BENCH_USER GW_PASS=$BENCH_PASS; fi
cat >"$OUT/gateway.toml" <<EOF
[server]
listen = "127.0.0.1:$PORT"

[admin]
listen = "127.0.0.1:$ADMIN_PORT"

[limits]
max_connections = 19900
max_connections_per_ip = 19900
idle_timeout = "300s"

[auth]
realm_file = "$OUT/users.toml"

[[service]]
name = "amqp"
path = "/amqp"
bridge = "amqp"
allow_no_subprotocol = true
allow_missing_origin = true

[service.settings]
backend = "$AMQP_URL"
pool_size = $POOL_SIZE
credentials = "$CREDENTIALS"
EOF

# The machine is shared: wait (up to QUIET_WAIT s) until other processes use under a fifth
# of a core, as the other benches do, and print where the run starts.
wait_quiet() {
    QUIET_WAIT=${QUIET_WAIT:-120} await_quiet
    say "$1: machine ${busy_now}% busy before, load average $(cut -d' ' -f1-3 /proc/loadavg)"
}

CLK=(--clk-tck "$(getconf CLK_TCK)")
PERF_ARGS=(--duration "$DURATION" --size "$SIZE" --window "$WINDOW" --consume-count "$CONSUME_COUNT"
    --prefetch "$PREFETCH" --ack-every "$ACK_EVERY" --lat-rate "$LAT_RATE" --lat-duration "$LAT_DURATION"
    --fill-url "$AMQP_URL" --broker-pid "$BEAM" "${CLK[@]}")

start_bench_gateway
say "gateway pid $gateway, credentials $CREDENTIALS, pool_size $POOL_SIZE"
for part in $PARTS; do
    case "$part" in
        perf)
            for side in $SIDES; do
                wait_quiet "perf $side"
                if [ "$side" = gateway ]; then
                    node "$JS" perf --side gateway --ws-url "ws://127.0.0.1:$PORT/amqp" --user "$GW_USER" \
                        --pass "$GW_PASS" --gateway-pid "$gateway" "${PERF_ARGS[@]}" >"$OUT/perf-gateway.json"
                else
                    node "$JS" perf --side direct --amqp-url "$AMQP_URL" --gateway-pid "$gateway" \
                        "${PERF_ARGS[@]}" >"$OUT/perf-direct.json"
                fi
            done
            ;;
        clients)
            # A fresh gateway, so that RSS before and after differ by the clients only (the
            # perf part's backlogs leave mimalloc with pages it keeps).
            stop_gateway
            start_bench_gateway
            wait_quiet "clients"
            node "$JS" clients --count "$CLIENTS" --processes "$CLIENT_PROCESSES" \
                --ws-url "ws://127.0.0.1:$PORT/amqp" --user "$GW_USER" --pass "$GW_PASS" \
                --amqp-url "$AMQP_URL" --gateway-pid "$gateway" "${CLK[@]}" \
                --rabbit-dir "$RDIR" --rabbit-node "$RABBITMQ_NODENAME" >"$OUT/clients.json"
            ;;
        *)
            echo "unknown part $part" >&2
            exit 2
            ;;
    esac
done

# --- side by side -------------------------------------------------------------------------
python3 - "$OUT" "$POOL_SIZE" <<'EOF'
import json, os, sys
out, pool = sys.argv[1], int(sys.argv[2])
def load(name):
    p = os.path.join(out, name)
    return json.load(open(p)) if os.path.exists(p) and os.path.getsize(p) else None
g, d, c = load("perf-gateway.json"), load("perf-direct.json"), load("clients.json")
def cpu(x):
    u = x.get("cpu", {})
    return f"gen {u.get('generator')}% gw {u.get('gateway', '-')}% broker {u.get('broker')}% machine {u.get('machine')}%"
if g or d:
    print(f"{'':34} {'gateway':>16} {'direct':>16} {'ratio':>7}")
    def row(label, key, field, fmt="{:,.0f}", ratio=True, unit=""):
        a = g and g.get(key, {}).get(field)
        b = d and d.get(key, {}).get(field)
        r = f"{a / b:.2f}x" if ratio and a and b else ""
        fa = (fmt.format(a) + unit) if a is not None else "-"
        fb = (fmt.format(b) + unit) if b is not None else "-"
        print(f"{label:34} {fa:>16} {fb:>16} {r:>7}")
    row("(a) publish, confirmed msgs/s", "publish", "rate")
    row("(b) consume msgs/s", "consume", "rate")
    row("(c) round trip p50", "latency", "p50_ms", "{:.3f}", False, " ms")
    row("(c) round trip p99", "latency", "p99_ms", "{:.3f}", False, " ms")
    row("(c) round trip p99.9", "latency", "p999_ms", "{:.3f}", False, " ms")
    for side, x in (("gateway", g), ("direct", d)):
        if not x:
            continue
        for k in ("publish", "consume", "latency"):
            if k in x:
                extra = {kk: v for kk, v in x[k].items() if kk not in ("cpu",)}
                print(f"  {side} {k}: {json.dumps(extra)}; CPU % of a core: {cpu(x[k])}")
    if g and d:
        pr = g["publish"]["rate"] / d["publish"]["rate"]
        cr = g["consume"]["rate"] / d["consume"]["rate"]
        dp = g["latency"]["p50_ms"] - d["latency"]["p50_ms"]
        print(f"goal publish >= 0.8x direct: {pr:.2f}x {'met' if pr >= 0.8 else 'MISSED'}")
        print(f"goal consume >= 0.8x direct: {cr:.2f}x {'met' if cr >= 0.8 else 'MISSED'}")
        print(f"goal p50 within +1 ms of direct: {dp:+.3f} ms {'met' if dp <= 1 else 'MISSED'}")
if c:
    print(f"(d) {c['ready']} of {c['clients']} clients consuming in {c['connect_secs']} s over {c['processes']} processes "
          f"(failed {c['failed']} {json.dumps(c['errors'])}; setup p50 {c['setup_p50_ms']:.1f} ms, p99 {c['setup_p99_ms']:.1f} ms)")
    print(f"    broker connections (rabbitmqctl list_connections): {c['broker_connections']} "
          f"(before the clients: {c['broker_connections_before']}); queues {c['broker_queues']}, consumers {c['broker_consumers']}")
    for l in c["broker_connection_list"]:
        print(f"      {l}")
    print(f"    gateway RSS: {c['gateway_rss_before_kib'] / 1024:.1f} MiB before, {c['gateway_rss_held_kib'] / 1024:.1f} MiB with the clients: "
          f"{c['gateway_rss_per_client_kib']} KiB per client")
    u = c["cpu_connecting"]
    print(f"    while connecting, CPU % of a core: generator ({c['processes']} processes) {u['generator']}%, gateway {u.get('gateway')}%, "
          f"machine {u['machine']}% of {100 * os.cpu_count()}% (generator's share of the busy machine {100 * u['generator'] / max(1, u['machine']):.0f}%)")
    print(f"    check: {c['check_received']} of {c['ready']} consumers got a message published to their queue; "
          f"{c['check_ws_closed']} WebSockets closed")
    # Nothing but the gateway is connected to the node while the clients are held.
    ok = c["broker_connections"] <= pool
    print(f"goal broker connections = pool size ({pool}): {c['broker_connections']} {'met' if ok else 'MISSED'}")
EOF
echo "outputs in $OUT"
