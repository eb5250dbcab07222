#!/usr/bin/env bash
# The XMPP benchmark of BENCHMARKS.md, side by side in one run: N sessions log in and pairs
# exchange messages (loadgen's `xmpp` scenario), first through the gateway's xmpp bridge
# (WebSocket -> gateway -> STARTTLS c2s -> Prosody), then straight to Prosody's own
# mod_websocket on the same Prosody.
#
#   tests/loadgen/xmpp-bench.sh                          # 5,000 sessions
#   SESSIONS=1000 MESSAGES=10 tests/loadgen/xmpp-bench.sh
#
# Env: SESSIONS [5000] MESSAGES [20] INTERVAL [1s] RATE [200 logins/s] PARTS ["gateway direct"]
# PORT/ADMIN_PORT move the gateway; BIN/BUILD as in stomp-bench.sh. Output goes to the
# terminal and to $OUT (default /tmp/xmpp-bench-DATE), one file per target, each ending with
# loadgen's JSON summary line.
set -euo pipefail

cd "$(dirname "$0")/../.."
SESSIONS=${SESSIONS:-5000}
MESSAGES=${MESSAGES:-20}
INTERVAL=${INTERVAL:-1s}
RATE=${RATE:-200}
PARTS=${PARTS:-gateway direct}
PORT=${PORT:-8080}
ADMIN_PORT=${ADMIN_PORT:-9090}
C2S_PORT=${C2S_PORT:-25222}
HTTP_PORT=${HTTP_PORT:-25280}
BIN=${BIN:-${CARGO_TARGET_DIR:-target}/release}
BUILD=${BUILD:-1}
OUT=${OUT:-/tmp/xmpp-bench-$(date +%Y%m%d-%H%M%S)}
PDIR="$OUT/prosody"
mkdir -p "$OUT"

if [ "$BUILD" = 1 ]; then
    cargo build --release --quiet -p gateway -p loadgen
fi

gateway=
cleanup() {
    [ -n "$gateway" ] && kill -TERM "$gateway" 2>/dev/null && wait "$gateway" 2>/dev/null
    bash tests/scripts/prosody.sh stop "$PDIR" >/dev/null 2>&1 || true
}
trap cleanup EXIT

# One Prosody serves both targets: c2s (STARTTLS) for the gateway, mod_websocket directly.
eval "$(PROSODY_WEBSOCKET=1 PROSODY_C2S_PORT=$C2S_PORT PROSODY_HTTP_PORT=$HTTP_PORT \
    bash tests/scripts/prosody.sh start "$PDIR")"
# Accounts u1..uN, all with alice's password: copying her account file is much faster than
# N `prosodyctl register` runs (each one starts a Lua VM).
accounts="$PDIR/prosody/data/localhost/accounts"
for i in $(seq 1 "$SESSIONS"); do cp "$accounts/alice.dat" "$accounts/u$i.dat"; done
chown prosody: "$accounts"/u*.dat

cat >"$OUT/gateway.toml" <<TOML
[server]
listen = "127.0.0.1:$PORT"

[admin]
listen = "127.0.0.1:$ADMIN_PORT"

[limits]
# One process may hold 20,000 open files here; each XMPP session takes two.
max_connections = 9900
max_connections_per_ip = 9900
idle_timeout = "300s"

[[service]]
name = "xmpp"
path = "/ws"
bridge = "xmpp"
allow_missing_origin = true

[service.settings]
server = "127.0.0.1:$PROSODY_C2S_PORT"
domains = ["localhost"]
ca_file = "$PROSODY_CA"
TOML

run() { # label url pid
    echo "== $1: $SESSIONS sessions, $MESSAGES round trips per pair every $INTERVAL ($(cut -d' ' -f1-3 /proc/loadavg) load)"
    "$BIN/loadgen" xmpp --label "$1" --url "$2" --server-pid "$3" --sessions "$SESSIONS" \
        --password alice-pass --messages "$MESSAGES" --interval "$INTERVAL" --rate "$RATE" \
        --concurrency 50 2>"$OUT/$1.err" | tee "$OUT/$1.txt"
}

for part in $PARTS; do
    case "$part" in
    gateway)
        "$BIN/gateway" --config "$OUT/gateway.toml" >"$OUT/gateway.log" 2>&1 &
        gateway=$!
        for _ in $(seq 1 100); do grep -q "listening on" "$OUT/gateway.log" && break; sleep 0.1; done
        run gateway "ws://127.0.0.1:$PORT/ws" "$gateway"
        kill -TERM "$gateway"; wait "$gateway" 2>/dev/null || true; gateway=
        ;;
    direct)
        run mod_websocket "$PROSODY_WS_URL" "$PROSODY_PID"
        ;;
    *) echo "unknown part $part" >&2; exit 2 ;;
    esac
done
echo "results in $OUT"
