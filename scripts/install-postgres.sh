#!/bin/sh
# Installs PostgreSQL server binaries from Debian packages when they are missing.
# Idempotent: does nothing when /usr/lib/postgresql/*/bin/initdb exists. Never starts the
# Debian cluster (bookd runs its own embedded cluster; package installs here do not start
# services).
set -eu

have_initdb() {
    for f in /usr/lib/postgresql/*/bin/initdb; do
        [ -x "$f" ] && return 0
    done
    return 1
}

if have_initdb; then
    echo "install-postgres: PostgreSQL already installed: $(ls -d /usr/lib/postgresql/*/bin | tr '\n' ' ')" >&2
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
        echo "install-postgres: not root and no sudo; cannot install postgresql" >&2
        exit 1
    fi
fi

export DEBIAN_FRONTEND=noninteractive
# Update the package lists once, only when the package is not known yet.
if ! apt-cache show postgresql >/dev/null 2>&1; then
    $SUDO apt-get update
fi
# policy-rc.d keeps the package from starting the Debian cluster.
if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod 755 /usr/sbin/policy-rc.d
    REMOVE_POLICY=1
else
    REMOVE_POLICY=0
fi
$SUDO apt-get install -y --no-install-recommends postgresql
if [ "$REMOVE_POLICY" = 1 ]; then $SUDO rm -f /usr/sbin/policy-rc.d; fi

if ! have_initdb; then
    echo "install-postgres: postgresql installed but no initdb under /usr/lib/postgresql/*/bin" >&2
    exit 1
fi
echo "install-postgres: installed $(ls -d /usr/lib/postgresql/*/bin | tr '\n' ' ')" >&2
