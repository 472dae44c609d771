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

sh "$(dirname "$0")/apt-install.sh" postgresql

if ! have_initdb; then
    echo "install-postgres: postgresql installed but no initdb under /usr/lib/postgresql/*/bin" >&2
    exit 1
fi
echo "install-postgres: installed $(ls -d /usr/lib/postgresql/*/bin | tr '\n' ' ')" >&2
