#!/usr/bin/env bash
# Autobahn TestSuite (kosoku, fuzzingclient mode) against the gateway's echo bridge.
#
#   bash tests/scripts/autobahn.sh            # starts its own gateway
#   AUTOBAHN_URL=ws://127.0.0.1:9001/ bash tests/scripts/autobahn.sh   # test a running server
#   AUTOBAHN_CASES='1.* 9.1.*' ...            # a subset (default: all cases)
#   AUTOBAHN_COMPRESSION=1 AUTOBAHN_CASES='12.* 13.*' ...  # echo service with permessage-deflate
#
# Report: tests/artifacts/autobahn/index.json (+ HTML). Exits non-zero if any case
# FAILED/ERROR, or is UNIMPLEMENTED outside 12.* and 13.* (compression; with
# AUTOBAHN_COMPRESSION=1 those must pass too).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
PY="$ROOT/tests/.venv/bin/python"
KOSOKU="$ROOT/tests/.venv/bin/kosoku"
BIN="${GATEWAY_BIN:-target/debug/gateway}"
case "$BIN" in /*) ;; *) BIN="$ROOT/$BIN" ;; esac
OUT="${AUTOBAHN_OUT:-$ROOT/tests/artifacts/autobahn}"
PARALLEL="${AUTOBAHN_PARALLELISM:-2}"

rm -rf "$OUT"
mkdir -p "$OUT"
WORK="$(mktemp -d)"
GW_PID=""

cleanup() {
    if [ -n "$GW_PID" ] && kill -0 "$GW_PID" 2>/dev/null; then
        kill -TERM "$GW_PID" 2>/dev/null || true
        for _ in $(seq 1 100); do kill -0 "$GW_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$GW_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

if [ -z "${AUTOBAHN_URL:-}" ]; then
    [ -x "$BIN" ] || { echo "autobahn: gateway binary missing: $BIN" >&2; exit 1; }
    PORT="$(free_port)"
    ADMIN="$(free_port)"
    cat > "$WORK/autobahn.toml" <<TOML
[server]
listen = "127.0.0.1:$PORT"
trusted_proxies = []

[admin]
listen = "127.0.0.1:$ADMIN"

[limits]
max_connections = 19000
max_connections_per_ip = 19000
handshake_timeout = "10s"
max_message_size = 16777216
max_frame_size = 16777216
max_header_bytes = 16384
idle_timeout = "120s"
outgoing_queue = 256
drain_timeout = "5s"

[[service]]
name = "echo"
path = "/echo"
bridge = "echo"
allow_no_subprotocol = true
allowed_origins = []
allow_missing_origin = true
require_auth = false
require_roles = []
TOML
    if [ -n "${AUTOBAHN_COMPRESSION:-}" ]; then
        # Dedicated mode and client context allowed, so 13.x's offers are taken as made.
        cat >> "$WORK/autobahn.toml" <<TOML
[service.compression]
mode = "${AUTOBAHN_COMPRESSION_MODE:-dedicated}"
min_size = 0
client_no_context_takeover = false
TOML
    fi
    RUST_LOG="${RUST_LOG:-warn}" "$BIN" --config "$WORK/autobahn.toml" 2> "$OUT/gateway.stderr.log" &
    GW_PID=$!
    ok=""
    for _ in $(seq 1 200); do
        if "$PY" - "$PORT" <<'PYEOF' 2>/dev/null
import http.client, sys
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=1)
c.request("GET", "/healthz")
sys.exit(0 if c.getresponse().status == 200 else 1)
PYEOF
        then ok=1; break; fi
        kill -0 "$GW_PID" 2>/dev/null || break
        sleep 0.05
    done
    if [ -z "$ok" ]; then
        echo "autobahn: gateway did not become healthy" >&2
        cat "$OUT/gateway.stderr.log" >&2
        exit 1
    fi
    URL="ws://127.0.0.1:$PORT/echo"
else
    URL="$AUTOBAHN_URL"
fi

args=(-m fuzzingclient -o "$OUT" -p "$PARALLEL")
for c in ${AUTOBAHN_CASES:-}; do args+=(-i "$c"); done
echo "autobahn: kosoku ${args[*]} $URL"
start=$(date +%s)
# kosoku exits 1 when any case is not OK (UNIMPLEMENTED included): judge index.json instead.
timeout "${AUTOBAHN_TIMEOUT:-600}" "$KOSOKU" "${args[@]}" "$URL" > "$OUT/kosoku.log" 2>&1 || echo "autobahn: kosoku exited with $? (expected while 12.*/13.* are UNIMPLEMENTED; index.json decides)"
echo "autobahn: kosoku took $(( $(date +%s) - start ))s"
if [ ! -s "$OUT/index.json" ]; then
    echo "autobahn: no report written" >&2
    tail -50 "$OUT/kosoku.log" >&2
    exit 1
fi

min=1
[ -z "${AUTOBAHN_CASES:-}" ] && min=500
status=0
"$PY" "$ROOT/tests/scripts/autobahn_report.py" "$OUT/index.json" "$min" ${AUTOBAHN_COMPRESSION:+--compression} || status=1

if [ -n "$GW_PID" ]; then
    if ! kill -0 "$GW_PID" 2>/dev/null; then
        echo "autobahn: the gateway died during the run" >&2
        tail -50 "$OUT/gateway.stderr.log" >&2
        status=1
    fi
fi
[ "$status" = 0 ] || echo "autobahn: report in $OUT/index.html, gateway log $OUT/gateway.stderr.log" >&2
exit "$status"
