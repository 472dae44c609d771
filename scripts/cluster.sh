#!/usr/bin/env bash
# The replicated database bookd runs on in production, on one machine: 3 etcd members (the
# Raft quorum) and 3 Patroni nodes, each managing a PostgreSQL instance, with quorum
# synchronous replication in strict mode (a commit is acknowledged only once a standby has
# it, so a failover never loses an acknowledged booking).
#
#   scripts/cluster.sh up DIR [BASE_PORT]   start (or restart) the cluster under DIR; prints
#                                           bookd's --database-url on stdout once a primary
#                                           takes writes
#   scripts/cluster.sh down DIR             stop everything started under DIR
#   scripts/cluster.sh primary DIR          the name of the node that is primary now (pg1..pg3)
#   scripts/cluster.sh url DIR              the --database-url again
#   scripts/cluster.sh api DIR              bookd's --patroni-api: the nodes' Patroni REST
#                                           endpoints, in the order of the URL's hosts
#
# Ports (BASE_PORT defaults to 25400): etcd clients BASE+1..3, etcd peers BASE+11..13,
# PostgreSQL BASE+21..23, Patroni REST BASE+31..33. Needs scripts/install-patroni.sh first.
# Run as root: PostgreSQL and Patroni run as the `postgres` system user.
set -euo pipefail

VENV=${PATRONI_VENV:-/opt/appliance/patroni}
STARTUP_SECS=${CLUSTER_STARTUP_SECS:-120}

die() {
    echo "cluster: $*" >&2
    exit 1
}

usage() {
    sed -n '/^#   scripts\/cluster.sh up/,/endpoints, in the order of the URL/p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

[ $# -ge 2 ] || usage
cmd=$1
dir=$2
base=${3:-}

pg_bin() {
    local best=""
    for d in /usr/lib/postgresql/*/bin; do
        [ -x "$d/initdb" ] && best=$d
    done
    [ -n "$best" ] || die "no PostgreSQL under /usr/lib/postgresql (run scripts/install-patroni.sh)"
    echo "$best"
}


ports() {
    if [ -z "$base" ]; then
        if [ -f "$dir/base_port" ]; then base=$(cat "$dir/base_port"); else base=25400; fi
    fi
    [[ "$base" =~ ^[0-9]+$ ]] && [ "$base" -ge 1024 ] && [ "$base" -le 65000 ] ||
        die "BASE_PORT must be a number in 1024-65000, not '$base'"
}

url() {
    ports
    echo "postgresql://postgres@127.0.0.1:$((base + 21)),127.0.0.1:$((base + 22)),127.0.0.1:$((base + 23))/postgres?target_session_attrs=read-write&connect_timeout=2"
}

api() {
    ports
    echo "http://127.0.0.1:$((base + 31)),http://127.0.0.1:$((base + 32)),http://127.0.0.1:$((base + 33))"
}

# HTTP status of a Patroni REST endpoint, 000 when nothing answers.
rest() {
    curl -s -o /dev/null -m 2 -w '%{http_code}' "http://127.0.0.1:$1$2" 2>/dev/null || true
}

primary() {
    ports
    local i
    for i in 1 2 3; do
        if [ "$(rest $((base + 30 + i)) /primary)" = 200 ]; then
            echo "pg$i"
            return 0
        fi
    done
    return 1
}

start_etcd() {
    local i=$1 cluster="" j
    for j in 1 2 3; do
        cluster="${cluster:+$cluster,}etcd$j=http://127.0.0.1:$((base + 10 + j))"
    done
    mkdir -p "$dir/etcd$i"
    etcd --name "etcd$i" --data-dir "$dir/etcd$i/data" \
        --listen-client-urls "http://127.0.0.1:$((base + i))" \
        --advertise-client-urls "http://127.0.0.1:$((base + i))" \
        --listen-peer-urls "http://127.0.0.1:$((base + 10 + i))" \
        --initial-advertise-peer-urls "http://127.0.0.1:$((base + 10 + i))" \
        --initial-cluster "$cluster" --initial-cluster-state new \
        --initial-cluster-token "appliance-$base" \
        --heartbeat-interval 100 --election-timeout 1000 \
        >"$dir/etcd$i/etcd.log" 2>&1 </dev/null &
    echo $! >"$dir/etcd$i/pid"
}

write_patroni_conf() {
    local i=$1 bin=$2 hosts=""
    local node=$dir/pg$i
    for j in 1 2 3; do hosts="${hosts:+$hosts,}127.0.0.1:$((base + j))"; done
    mkdir -p "$node/sock"
    cat >"$node/patroni.yml" <<EOF
scope: appliance-$base
name: pg$i
restapi:
  listen: 127.0.0.1:$((base + 30 + i))
  connect_address: 127.0.0.1:$((base + 30 + i))
etcd3:
  hosts: $hosts
bootstrap:
  dcs:
    # Patroni's smallest leader-key TTL (it raises anything lower to 20): the longest a
    # dead primary keeps the lock, so about the longest writes stop in a failover.
    ttl: 20
    loop_wait: 1
    retry_timeout: 4
    maximum_lag_on_failover: 0
    synchronous_mode: quorum
    synchronous_mode_strict: true
    postgresql:
      use_pg_rewind: true
      parameters:
        max_connections: 200
        wal_level: replica
        hot_standby: "on"
        wal_log_hints: "on"
        max_wal_senders: 10
        max_replication_slots: 10
        synchronous_commit: "on"
        fsync: "on"
  initdb:
    - encoding: UTF8
    - locale: C.UTF-8
  pg_hba:
    - local all all trust
    - host replication replicator 127.0.0.1/32 trust
    - host all all 127.0.0.1/32 trust
postgresql:
  listen: 127.0.0.1:$((base + 20 + i))
  connect_address: 127.0.0.1:$((base + 20 + i))
  data_dir: $node/data
  bin_dir: $bin
  pgpass: $node/pgpass
  authentication:
    superuser:
      username: postgres
      password: postgres
    replication:
      username: replicator
      password: replicator
    rewind:
      username: postgres
      password: postgres
  parameters:
    unix_socket_directories: $node/sock
tags:
  nofailover: false
  noloadbalance: false
EOF
}

start_patroni() {
    local i=$1
    local node=$dir/pg$i
    # One simple command in the background (setpriv and env exec), so that $! is Patroni.
    if [ "$(id -u)" -eq 0 ]; then
        setpriv --reuid=postgres --regid=postgres --init-groups -- \
            env HOME="$node" "$VENV/bin/patroni" "$node/patroni.yml" >>"$node/patroni.log" 2>&1 </dev/null &
    else
        env HOME="$node" "$VENV/bin/patroni" "$node/patroni.yml" >>"$node/patroni.log" 2>&1 </dev/null &
    fi
    echo $! >"$node/pid"
}

alive() {
    [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null
}

up() {
    ports
    command -v etcd >/dev/null 2>&1 || die "no etcd on PATH (run scripts/install-patroni.sh)"
    [ -x "$VENV/bin/patroni" ] || die "no Patroni at $VENV (run scripts/install-patroni.sh)"
    local bin
    bin=$(pg_bin)
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    echo "$base" >"$dir/base_port"
    local i
    for i in 1 2 3; do
        alive "$dir/etcd$i/pid" || start_etcd "$i"
    done
    for i in 1 2 3; do
        write_patroni_conf "$i" "$bin"
    done
    # The postgres user owns the node directories (PostgreSQL refuses a data directory it
    # does not own) and must reach them through DIR.
    if [ "$(id -u)" -eq 0 ]; then
        chmod 755 "$dir"
        for i in 1 2 3; do chown -R postgres:postgres "$dir/pg$i"; done
    fi
    for i in 1 2 3; do
        alive "$dir/pg$i/pid" || start_patroni "$i"
    done
    # Ready when a primary takes writes and a synchronous standby is attached (strict mode
    # blocks every commit until one is).
    local deadline=$((SECONDS + STARTUP_SECS)) p
    while :; do
        if p=$(primary) && [ "$(sync_standbys)" -ge 1 ]; then
            break
        fi
        [ $SECONDS -lt $deadline ] || die "no primary with a synchronous standby after ${STARTUP_SECS}s (logs: $dir/pg*/patroni.log, $dir/etcd*/etcd.log)"
        sleep 0.5
    done
    echo "cluster: primary $p, $(sync_standbys) synchronous standby(s), under $dir" >&2
    url
}

# How many standbys the primary counts as synchronous (Patroni's view, from its REST API).
sync_standbys() {
    ports
    local i n=0
    for i in 1 2 3; do
        if [ "$(rest $((base + 30 + i)) /sync)" = 200 ] || [ "$(rest $((base + 30 + i)) /quorum)" = 200 ]; then
            n=$((n + 1))
        fi
    done
    echo "$n"
}

stop_pid_file() {
    local f=$1 sig=${2:-TERM}
    [ -f "$f" ] || return 0
    local pid
    pid=$(head -n 1 "$f")
    [[ "$pid" =~ ^[0-9]+$ ]] || return 0
    kill -"$sig" "$pid" 2>/dev/null || true
}

wait_gone() {
    local f=$1 n
    [ -f "$f" ] || return 0
    local pid
    pid=$(head -n 1 "$f")
    [[ "$pid" =~ ^[0-9]+$ ]] || return 0
    for n in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
}

down() {
    [ -d "$dir" ] || return 0
    local i
    for i in 1 2 3; do stop_pid_file "$dir/pg$i/pid"; done
    for i in 1 2 3; do wait_gone "$dir/pg$i/pid"; done
    # The postmaster can outlive Patroni.
    for i in 1 2 3; do
        stop_pid_file "$dir/pg$i/data/postmaster.pid" INT
    done
    for i in 1 2 3; do wait_gone "$dir/pg$i/data/postmaster.pid"; done
    for i in 1 2 3; do stop_pid_file "$dir/etcd$i/pid"; done
    for i in 1 2 3; do wait_gone "$dir/etcd$i/pid"; done
}

case "$cmd" in
    up) up ;;
    down) down ;;
    primary) primary || die "no primary now" ;;
    url) url ;;
    api) api ;;
    *) usage ;;
esac
