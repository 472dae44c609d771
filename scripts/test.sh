#!/usr/bin/env bash
# Installs what the tests need on a fresh Debian machine (run as root) and runs every test.
# Long tests that read ../shared/fixtures skip with a message when it is absent.
set -euo pipefail
cd "$(dirname "$0")/.."

# PostgreSQL, and etcd + Patroni for the replicated-cluster test (bookd/tests/replicated.rs).
sh scripts/install-patroni.sh

cargo fmt --all -- --check
# A linker that runs out of disk dies of SIGBUS with no word about space: say how much there is.
df -h . | sed 's/^/disk before the build: /'
# One debug build (line tables only, see Cargo.toml [profile.dev]), then every test. A one-shot
# build has no use for incremental state (1 GB of disk in a cold run); set CARGO_INCREMENTAL=1
# to keep it when iterating with this script.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
status=0
cargo test --workspace --no-fail-fast || status=$?
df -h . | sed 's/^/disk after the tests: /'
exit "$status"
