#!/usr/bin/env bash
# A private Prosody XMPP server for tests (Debian's prosody 0.12, no systemd, all state
# under DIR):
#
#   tests/scripts/prosody.sh start  DIR   # start in the background, wait until c2s accepts
#   tests/scripts/prosody.sh status DIR   # exit 0 and print the ports if running, 3 if not
#   tests/scripts/prosody.sh stop   DIR   # SIGTERM (KILL if it hangs)
#
# `start` prints KEY=VALUE lines on stdout (also kept in DIR/ports.env):
#   PROSODY_C2S_PORT PROSODY_DOMAIN=localhost PROSODY_CA=<the PEM of the CA that signed its cert> PROSODY_PID
#   PROSODY_WS_URL=ws://127.0.0.1:PORT/xmpp-websocket   (only with PROSODY_WEBSOCKET=1)
# so a caller can `eval "$(tests/scripts/prosody.sh start DIR)"`; progress goes to stderr.
# start and stop are idempotent. Nothing is installed here (tests/scripts/install-deps.sh does).
#
# The server: c2s on 127.0.0.1 with STARTTLS required before SASL, internal_hashed auth,
# no s2s, one VirtualHost "localhost", users alice/bob/carol (passwords <name>-pass), and
# alice and bob in each other's roster with subscription "both" so presence flows between
# them from the first login.
#
# Env (defaults in brackets; default ports lie outside the kernel's ephemeral range):
#   PROSODY_C2S_PORT [15222]
#   PROSODY_WEBSOCKET [0]      1: also load mod_websocket (RFC 7395), the side-by-side target
#   PROSODY_HTTP_PORT [15280]  its HTTP port (only with PROSODY_WEBSOCKET=1)
#   PROSODY_EXTRA_USERS        more accounts, "name:pass name2:pass2"
#   PROSODY_START_TIMEOUT [20] seconds until `start` gives up (and stops what it started)
#
# Prosody refuses to run as root, so it runs as the `prosody` user (setpriv) and owns
# everything under DIR/prosody; DIR's ancestors get o+x where that user could not reach it.
set -uo pipefail

usage() { echo "usage: $0 start|stop|status DIR" >&2; exit 2; }
[ $# -eq 2 ] || usage
CMD="$1"
mkdir -p "$2" || exit 2
D="$(cd "$2" && pwd)"
P="$D/prosody" # Prosody's own files, owned by its user

C2S_PORT="${PROSODY_C2S_PORT:-15222}"
WEBSOCKET="${PROSODY_WEBSOCKET:-0}"
HTTP_PORT="${PROSODY_HTTP_PORT:-15280}"
EXTRA_USERS="${PROSODY_EXTRA_USERS:-}"
START_TIMEOUT="${PROSODY_START_TIMEOUT:-20}"
DOMAIN=localhost
HOST=127.0.0.1
RUN_AS=prosody
CFG="$P/prosody.cfg.lua"
LOG="$P/prosody.log"
PIDFILE="$P/prosody.pid"

log() { echo "prosody.sh: $*" >&2; }

alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }
pid_of() { [ -s "$1" ] && tr -dc '0-9' <"$1"; }
listening() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }
websocket() { [ "$WEBSOCKET" = 1 ]; }
as_prosody() { setpriv --reuid="$RUN_AS" --regid="$RUN_AS" --init-groups "$@"; }

server_pid() {
    local p
    for f in "$PIDFILE" "$D/launcher.pid"; do
        p="$(pid_of "$f")"
        alive "$p" && { echo "$p"; return 0; }
    done
    return 1
}

# The port saved at start: status and stop need no environment of their own.
saved_c2s_port() { sed -n 's/^PROSODY_C2S_PORT=//p' "$D/ports.env" 2>/dev/null; }
running() {
    local port
    port="$(saved_c2s_port)"
    server_pid >/dev/null && [ -n "$port" ] && listening "$port"
}

print_ports() { cat "$D/ports.env"; }

write_ports() {
    kv() { printf '%s=%q\n' "$1" "$2"; } # shell-quoted: `eval` works on any DIR
    {
        kv PROSODY_DIR "$D"
        kv PROSODY_C2S_PORT "$C2S_PORT"
        kv PROSODY_DOMAIN "$DOMAIN"
        kv PROSODY_CA "$P/certs/ca.crt"
        if websocket; then
            kv PROSODY_HTTP_PORT "$HTTP_PORT"
            kv PROSODY_WS_URL "ws://$HOST:$HTTP_PORT/xmpp-websocket"
        fi
        kv PROSODY_PID "$(server_pid)"
    } >"$D/ports.env"
}

# A root-made temp dir is 0700: let the prosody user walk (not list) down to DIR.
make_reachable() {
    local dir="$P"
    while [ "$dir" != / ]; do
        dir="$(dirname "$dir")"
        if ! as_prosody test -x "$dir" 2>/dev/null; then
            chmod o+x "$dir" && log "chmod o+x $dir (for the $RUN_AS user)"
        fi
    done
}

# A private CA and a leaf for the domain signed by it (PROSODY_CA is the CA): strict
# verifiers such as rustls/webpki refuse a self-signed CA certificate as a server's own.
# EC keys: RSA key generation takes seconds on a busy machine.
make_cert() {
    local c="$P/certs"
    [ -s "$c/ca.crt" ] && [ -s "$c/$DOMAIN.crt" ] && [ -s "$c/$DOMAIN.key" ] && return 0
    local ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
    {
        openssl req -x509 "${ec[@]}" -days 3650 -subj "/CN=Prosody test CA for $DOMAIN" \
            -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
            -keyout "$c/ca.key" -out "$c/ca.crt" &&
            openssl req "${ec[@]}" -subj "/CN=$DOMAIN" -keyout "$c/$DOMAIN.key" -out "$c/$DOMAIN.csr" &&
            printf '%s\n' "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature" \
                "extendedKeyUsage=serverAuth" "subjectAltName=DNS:$DOMAIN" >"$c/leaf.ext" &&
            openssl x509 -req -in "$c/$DOMAIN.csr" -CA "$c/ca.crt" -CAkey "$c/ca.key" -CAcreateserial \
                -days 3650 -extfile "$c/leaf.ext" -out "$c/$DOMAIN.crt"
    } >"$c/openssl.log" 2>&1 || {
        log "openssl could not make the certificates:"
        tail -n 5 "$c/openssl.log" | sed 's/^/    /' >&2
        return 1
    }
    chmod 600 "$c/$DOMAIN.key" "$c/ca.key"
    chmod 644 "$c/$DOMAIN.crt" "$c/ca.crt"
}

write_config() {
    local modules='"roster", "saslauth", "tls", "disco", "ping", "presence", "posix"'
    websocket && modules="$modules, \"websocket\""
    {
        cat <<EOF
-- Written by tests/scripts/prosody.sh; rewritten at every start.
pidfile = "$PIDFILE"
data_path = "$P/data"
certificates = "$P/certs"
log = { { levels = { min = "info" }, to = "file", filename = "$LOG" } }

interfaces = { "$HOST" }
c2s_ports = { $C2S_PORT }
c2s_direct_tls_ports = { }
s2s_ports = { }
modules_disabled = { "s2s", "offline" }
modules_enabled = { $modules }

authentication = "internal_hashed"
storage = "internal"
c2s_require_encryption = true
allow_unencrypted_plain_auth = false
allow_registration = false
ssl = { certificate = "$P/certs/$DOMAIN.crt", key = "$P/certs/$DOMAIN.key" }
EOF
        if websocket; then
            cat <<EOF

http_interfaces = { "$HOST" }
http_ports = { $HTTP_PORT }
https_ports = { }
consider_websocket_secure = true
cross_domain_websocket = true
EOF
        else
            echo 'http_ports = { }'
            echo 'https_ports = { }'
        fi
        cat <<EOF

VirtualHost "$DOMAIN"
EOF
    } >"$CFG"
}

# Prosody 0.12's internal storage: one Lua table per user and store
# (data/<host>/roster/<user>.dat); [false] holds the roster's metadata.
roster_file() { # user contact...
    local user="$1"
    shift
    local f="$P/data/$DOMAIN/roster/$user.dat"
    [ -s "$f" ] && return 0 # keep what a previous run (or a client) saved
    mkdir -p "$(dirname "$f")"
    {
        echo 'return {'
        echo '	[false] = { ["version"] = 1; ["pending"] = {}; };'
        for c in "$@"; do
            echo "	[\"$c@$DOMAIN\"] = { [\"subscription\"] = \"both\"; [\"name\"] = \"$c\"; [\"groups\"] = {}; };"
        done
        echo '};'
    } >"$f"
}

register_users() {
    local spec name pass pids=() failed=0
    # One prosodyctl per account, in parallel: each one loads Prosody's core (~0.3 s of CPU).
    for spec in alice:alice-pass bob:bob-pass carol:carol-pass $EXTRA_USERS; do
        name="${spec%%:*}"
        pass="${spec#*:}"
        as_prosody prosodyctl --config "$CFG" register "$name" "$DOMAIN" "$pass" \
            >"$P/prosodyctl-$name.log" 2>&1 &
        pids+=($!)
    done
    for p in "${pids[@]}"; do wait "$p" || failed=1; done
    if [ $failed = 1 ]; then
        log "prosodyctl register failed:"
        tail -n 5 "$P"/prosodyctl-*.log | sed 's/^/    /' >&2
        return 1
    fi
    roster_file alice bob
    roster_file bob alice
}

do_stop() {
    local p sig
    p="$(server_pid)"
    if alive "$p"; then
        log "stopping prosody $p"
        for sig in TERM KILL; do
            kill -s "$sig" "$p" 2>/dev/null
            for _ in $(seq 1 100); do alive "$p" || break; sleep 0.05; done
            alive "$p" || break
            log "prosody still running after SIG$sig"
        done
    fi
    rm -f "$PIDFILE" "$D/launcher.pid" "$D/ports.env"
    return 0
}

fail() {
    log "prosody did not start: $1; log tail ($LOG):"
    tail -n 20 "$LOG" "$D/console.log" 2>/dev/null | sed 's/^/    /' >&2
    do_stop
    return 1
}

do_start() {
    if running; then
        log "already running from $D"
        print_ports
        return 0
    fi
    command -v prosody >/dev/null || {
        log "prosody not found (apt-get install prosody; tests/scripts/install-deps.sh does)"
        return 1
    }
    do_stop >/dev/null 2>&1 # leftovers of an interrupted start
    local port
    for port in "$C2S_PORT" $(websocket && echo "$HTTP_PORT"); do
        if listening "$port"; then log "port $port is already in use"; return 1; fi
    done
    mkdir -p "$P/data" "$P/certs" || return 1
    make_cert || return 1
    write_config
    chown -R "$RUN_AS:$RUN_AS" "$P"
    make_reachable
    register_users || return 1
    chown -R "$RUN_AS:$RUN_AS" "$P"
    : >"$LOG"
    chown "$RUN_AS:$RUN_AS" "$LOG"

    local t0=$SECONDS
    # -F: stay in the foreground (no daemonizing), so the PID we hold is the server's.
    setsid setpriv --reuid="$RUN_AS" --regid="$RUN_AS" --init-groups \
        prosody --config "$CFG" -F </dev/null >>"$D/console.log" 2>&1 &
    local launcher=$!
    echo "$launcher" >"$D/launcher.pid"
    local deadline=$((SECONDS + START_TIMEOUT)) ok=0
    while [ $SECONDS -lt $deadline ]; do
        alive "$launcher" || { fail "it exited"; return 1; }
        # Prosody keeps running without a listener it could not bind: fail now, not at the timeout.
        if grep -q "Failed to open server port" "$LOG" 2>/dev/null; then fail "a port is already in use"; return 1; fi
        if listening "$C2S_PORT" && { ! websocket || listening "$HTTP_PORT"; }; then ok=1; break; fi
        sleep 0.1
    done
    [ $ok = 1 ] || { fail "no listener within ${START_TIMEOUT}s"; return 1; }
    write_ports
    log "ready in $((SECONDS - t0)) s (pid $(server_pid), state and log in $P)"
    print_ports
}

do_status() {
    if running; then
        log "running (pid $(server_pid))"
        print_ports
        return 0
    fi
    log "not running from $D"
    return 3
}

case "$CMD" in
    start) do_start ;;
    stop) do_stop ;;
    status) do_status ;;
    *) usage ;;
esac
