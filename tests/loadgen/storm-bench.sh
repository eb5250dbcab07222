#!/usr/bin/env bash
# Reconnect-storm benchmark of BENCHMARKS.md, with and without the login cache in one run:
# CONNECTIONS STOMP clients (default 10,000) log in with a few realm accounts (argon2id,
# the gateway's own parameters) and subscribe; the gateway is restarted (SIGTERM, exit,
# start) and every client reconnects at once. Reports the time until all are subscribed
# again and the CPU of the gateway and of the load generator, first with the default cache,
# then with auth.login_cache_size = 0 for the restarted gateway (the first logins, before
# the restart, use the cache in both runs, so both storms start from the same state).
#
#   tests/loadgen/storm-bench.sh
#   CONNECTIONS=2000 MODES=cache tests/loadgen/storm-bench.sh      # quick check
#
# MODES: cache no-cache (default both). ACCOUNTS (default 4), PROCESSES (default 4: each
# process may hold only 20,000 open files), PORT/ADMIN_PORT, BIN/BUILD as in bench-idle.sh.
# Output goes to the terminal and to $OUT (default /tmp/storm-bench-DATE); each run ends
# with loadgen's JSON summary line. Loopback only; bounded by loadgen's --limit.
set -euo pipefail
. "$(dirname "$0")/bench-lib.sh"

cd "$(dirname "$0")/../.."
CONNECTIONS=${CONNECTIONS:-10000}
ACCOUNTS=${ACCOUNTS:-4}
PROCESSES=${PROCESSES:-4}
MODES=${MODES:-cache no-cache}
PORT=${PORT:-8080}
ADMIN_PORT=${ADMIN_PORT:-9090}
BIN=${BIN:-${CARGO_TARGET_DIR:-target}/release}
BUILD=${BUILD:-1}
OUT=${OUT:-/tmp/storm-bench-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"

if [ "$BUILD" = 1 ]; then
    cargo build --release --quiet -p gateway -p loadgen
fi

accounts=
: >"$OUT/users.toml"
for i in $(seq 1 "$ACCOUNTS"); do
    hash=$("$BIN/gateway" hash-password "dash-pw-$i")
    printf '[[user]]\nname = "dash%s"\npassword_hash = "%s"\nroles = ["viewer"]\n\n' \
        "$i" "$hash" >>"$OUT/users.toml"
    accounts="${accounts:+$accounts,}dash$i:dash-pw-$i"
done
{
    cat tests/loadgen/bench-stomp.toml
    printf '\n[auth]\nrealm_file = "%s"\n' "$OUT/users.toml"
} >"$OUT/gateway.toml"

export GATEWAY__SERVER__LISTEN="127.0.0.1:$PORT"
export GATEWAY__ADMIN__LISTEN="127.0.0.1:$ADMIN_PORT"

for mode in $MODES; do
    case $mode in
        cache) restart_env=GATEWAY__AUTH__LOGIN_CACHE_SIZE=10000 ;;
        no-cache) restart_env=GATEWAY__AUTH__LOGIN_CACHE_SIZE=0 ;;
        *) echo "unknown mode $mode (cache, no-cache)" >&2; exit 2 ;;
    esac
    await_quiet
    echo "== $mode (machine ${busy_now}% busy before) =="
    "$BIN/loadgen" stomp-storm \
        --url "ws://127.0.0.1:$PORT/ws" \
        --connections "$CONNECTIONS" \
        --processes "$PROCESSES" \
        --accounts "$accounts" \
        --metrics-url "http://127.0.0.1:$ADMIN_PORT/metrics" \
        --server-log "$OUT/gateway-$mode.log" \
        --label "$mode" \
        --restart-env "$restart_env" \
        "$@" \
        -- "$BIN/gateway" --config "$OUT/gateway.toml" | tee "$OUT/$mode.txt" || true
done
echo "output in $OUT"
