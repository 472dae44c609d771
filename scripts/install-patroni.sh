#!/bin/sh
# Installs the replicated setup's components on a fresh Debian machine (run as root):
# PostgreSQL (scripts/install-postgres.sh), etcd from Debian (`etcd-server`) and Patroni from
# PyPI (`patroni[etcd3,psycopg3]` 4.1.x) in a venv under $PATRONI_VENV.
# Idempotent: every step is skipped when its result is already there. Starts no service:
# scripts/cluster.sh runs etcd and Patroni itself, under its own directory.
#
# The venv is made with Debian's /usr/bin/python3: Patroni runs as the `postgres` user, which
# cannot read a Python installed under /root (pyenv and the like).
set -eu
cd "$(dirname "$0")/.."

VENV=${PATRONI_VENV:-/opt/appliance/patroni}
PATRONI_SPEC='patroni[etcd3,psycopg3]>=4.1,<4.2'

sh scripts/install-postgres.sh

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
        echo "install-patroni: not root and no sudo; cannot install etcd and Patroni" >&2
        exit 1
    fi
fi

missing=""
command -v etcd >/dev/null 2>&1 || missing="$missing etcd-server"
# scripts/cluster.sh asks Patroni's REST API who is primary.
command -v curl >/dev/null 2>&1 || missing="$missing curl"
/usr/bin/python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || missing="$missing python3-venv"
if [ -n "$missing" ]; then
    # shellcheck disable=SC2086
    sh scripts/apt-install.sh $missing
fi
command -v etcd >/dev/null 2>&1 || {
    echo "install-patroni: etcd-server installed but no etcd on PATH" >&2
    exit 1
}

if [ ! -x "$VENV/bin/patroni" ]; then
    $SUDO mkdir -p "$(dirname "$VENV")"
    $SUDO /usr/bin/python3 -m venv "$VENV"
    $SUDO "$VENV/bin/pip" install --quiet --disable-pip-version-check "$PATRONI_SPEC"
fi
"$VENV/bin/patroni" --version >/dev/null 2>&1 || {
    echo "install-patroni: $VENV/bin/patroni does not run" >&2
    exit 1
}
# The postgres user runs Patroni: it must be able to read the venv.
$SUDO chmod -R a+rX "$VENV"
echo "install-patroni: $(etcd --version 2>/dev/null | head -n 1), $("$VENV/bin/patroni" --version 2>&1)" >&2
