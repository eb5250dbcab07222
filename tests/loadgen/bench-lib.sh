# Shell functions the benchmark scripts share; sourced, not run.

# Percent of one core the whole machine used over 2 s (all cores counted, so up to
# 100 * nproc).
machine_busy() {
    local a b
    a=$(awk '/^cpu /{print $2+$3+$4+$7+$8, $2+$3+$4+$5+$6+$7+$8}' /proc/stat)
    sleep 2
    b=$(awk '/^cpu /{print $2+$3+$4+$7+$8, $2+$3+$4+$5+$6+$7+$8}' /proc/stat)
    echo "$a $b" | awk '{ t = $4 - $2; print (t > 0 ? int(($3 - $1) * 100 * '"$(nproc)"' / t) : 0) }'
}

# Stop the gateway started in the background as $gateway: SIGTERM, up to 15 s to drain,
# then SIGKILL.
stop_gateway() {
    [ -n "$gateway" ] || return 0
    kill -TERM "$gateway" 2>/dev/null || true
    for _ in $(seq 1 150); do kill -0 "$gateway" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$gateway" 2>/dev/null || true
    wait "$gateway" 2>/dev/null || true
    gateway=
}

# Wait (up to QUIET_WAIT s, default 300) until other processes use under a fifth of a core,
# so a run does not measure someone else's work; leaves the last reading in $busy_now.
await_quiet() {
    local waited=0
    while :; do
        busy_now=$(machine_busy)
        [ "$busy_now" -lt 20 ] && return 0
        if [ "$waited" -ge "${QUIET_WAIT:-300}" ]; then
            echo "(machine still ${busy_now}% busy after ${waited}s; going ahead)" >&2
            return 0
        fi
        waited=$((waited + 2))
    done
}

# Start "$BIN/gateway" with "$OUT/gateway.toml" in the background as $gateway (log appended
# to "$OUT/gateway.log") and wait until /readyz on $PORT answers 200.
start_bench_gateway() {
    "$BIN/gateway" --config "$OUT/gateway.toml" >>"$OUT/gateway.log" 2>&1 &
    gateway=$!
    for _ in $(seq 1 100); do
        [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/readyz")" = 200 ] && return 0
        kill -0 "$gateway" 2>/dev/null || break
        sleep 0.1
    done
    echo "gateway not ready:" >&2
    cat "$OUT/gateway.log" >&2
    exit 1
}
