#!/bin/sh
# Installs Debian packages without starting their services: `sh scripts/apt-install.sh PKG...`
# (as root, or with sudo). The package lists are updated only when one of the packages is
# not known yet. The project's scripts start PostgreSQL and etcd themselves, under their own
# directories, so a package's own system-wide service must never start.
set -eu
[ $# -gt 0 ] || { echo "usage: apt-install.sh PKG..." >&2; exit 2; }

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
        echo "apt-install: not root and no sudo; cannot install $*" >&2
        exit 1
    fi
fi
export DEBIAN_FRONTEND=noninteractive
if ! apt-cache show "$@" >/dev/null 2>&1; then
    $SUDO apt-get update
fi
# policy-rc.d (exit 101) keeps invoke-rc.d from starting the packages' services.
if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod 755 /usr/sbin/policy-rc.d
    REMOVE_POLICY=1
else
    REMOVE_POLICY=0
fi
status=0
$SUDO apt-get install -y --no-install-recommends "$@" || status=$?
if [ "$REMOVE_POLICY" = 1 ]; then $SUDO rm -f /usr/sbin/policy-rc.d; fi
exit $status
