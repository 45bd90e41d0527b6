#!/usr/bin/env bash
# Compiles and runs the Swift suite of the library (cross/tests/swift/Tests/main.swift, the twin
# of cross/tests/test_engine.py) and the README's minimal Swift program
# (cross/tests/swift/Example/main.swift) against the real liboutpost_ffi, with Debian's
# `swiftlang` (Swift 6.2) in a Debian sid chroot under .cache/swift-sid (made once by
# cross/scripts/swift-sid.sh; the host's libc and packages are untouched). Needs root.
#
#   cross/scripts/check-swift.sh [TEST-NAME-SUBSTRING...]
#
# What it does:
#   1. makes or reuses the chroot (swift-sid.sh);
#   2. builds the library (debug) and generates the bindings (cross/scripts/bindings.sh), or takes
#      them from OUTPOST_SWIFT_BINDINGS (a folder bindings.sh filled, as scripts/test.sh does);
#   3. starts the test Postgres (scripts/pg.sh; or uses OUTPOST_TEST_PG_URL), makes two central
#      databases with Supabase's auth emulated and the migrations applied, and starts the Supabase
#      stand-in (the rest_shim example, built here or taken from OUTPOST_REST_SHIM; 4-second
#      access tokens) in front of the second;
#   4. copies the library, the bindings and the Swift sources into the chroot, bind-mounts the
#      model (OUTPOST_HOME, default .cache/outpost) read-only, and compiles both programs with
#      swiftc there (the C header through its module map, -loutpost_ffi);
#   5. runs the example, then the suite, which prints one line per test.
# The host-built library loads in sid: it needs glibc 2.34 at most, and sid's is newer.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"
if [ "$(id -u)" != 0 ]; then   # debootstrap, chroot and mount need root
    exec sudo --preserve-env "$0" "$@"
fi
export OUTPOST_HOME="${OUTPOST_HOME:-$ROOT/.cache/outpost}"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"

started=$(date +%s)
CHROOT="$(cross/scripts/swift-sid.sh)"
echo "check-swift.sh: chroot ready ($(($(date +%s) - started)) s)"

work="$(mktemp -d /tmp/outpost-swift.XXXXXX)"
pgdir=""
shim_pid=""
cleanup() {
    set +e
    # The mounts first: the chroot's copy is removed only once the model is no longer under it.
    cross/scripts/swift-sid.sh --unmount >/dev/null &&
        rm -rf "$CHROOT/outpost"
    if [ -n "$shim_pid" ]; then
        kill "$shim_pid" 2>/dev/null
        wait "$shim_pid" 2>/dev/null
    fi
    [ -n "$pgdir" ] && scripts/pg.sh stop "$pgdir" >/dev/null 2>&1
    rm -rf "$work" "$pgdir"
    return 0
}
trap cleanup EXIT
trap 'exit 130' INT TERM   # so that an interrupted run cleans up too

# 2. The library and its bindings.
bindings="${OUTPOST_SWIFT_BINDINGS:-}"
if [ -z "$bindings" ]; then
    bindings="$work/bindings"
    OUTPOST_FFI_PROFILE=debug cross/scripts/bindings.sh "$bindings" >/dev/null
fi
for f in python/liboutpost_ffi.so swift/outpost_ffi.swift swift/outpost_ffiFFI.h swift/outpost_ffiFFI.modulemap; do
    [ -f "$bindings/$f" ] || { echo "check-swift.sh: $bindings/$f is missing" >&2; exit 1; }
done

# 3. The central Postgres and the Supabase stand-in.
if [ -z "${OUTPOST_TEST_PG_URL:-}" ]; then
    pgdir="$(mktemp -d /tmp/outpost-swift-pg.XXXXXX)"
    OUTPOST_TEST_PG_URL="$(OUTPOST_PG_CONF="fsync = off" scripts/pg.sh start "$pgdir")"
fi
psql="$(scripts/pg.sh bin)/psql"
central_database() {   # as central_database() in cross/tests/test_engine.py; prints its URL
    local name="swift_$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
    "$psql" -X -q -d "$OUTPOST_TEST_PG_URL" -c "CREATE DATABASE $name"
    local url="${OUTPOST_TEST_PG_URL%/*}/$name" sql
    for sql in sync/tests/sql/supabase_auth_emulation.sql $(ls migrations/supabase/*.sql | sort); do
        PGOPTIONS="-c client_min_messages=warning" \
            "$psql" -X -q -v ON_ERROR_STOP=1 -d "$url" -f "$sql" >/dev/null
    done
    echo "$url"
}
central="$(central_database)"
session_db="$(central_database)"
shim="${OUTPOST_REST_SHIM:-}"
if [ -z "$shim" ]; then
    cargo build --quiet -p outpost-sync --features shim --example rest_shim
    shim="$TARGET_DIR/debug/examples/rest_shim"
fi
shim_out="$work/shim.out"
# As AppSessionTest in test_engine.py: 4-second tokens, a spent refresh token is reuse after 1 s,
# no grace on `exp`, and the user the app signs in as.
OUTPOST_SHIM_ACCESS_TTL_S=4 OUTPOST_SHIM_REUSE_INTERVAL_S=1 OUTPOST_SHIM_JWT_CLOCK_SKEW_S=0 \
    OUTPOST_SHIM_CREATE_USER="ada@example.com:correct horse battery" \
    "$shim" "$session_db" standin-anon-key \
    standin-jwt-secret-standin-jwt-secret >"$shim_out" &
shim_pid=$!
for _ in $(seq 300); do
    grep -q '^http://' "$shim_out" 2>/dev/null && break
    kill -0 "$shim_pid" 2>/dev/null || { echo "check-swift.sh: the REST stand-in did not start" >&2; exit 1; }
    sleep 0.1
done
shim_url="$(head -n1 "$shim_out")"
case "$shim_url" in http://*) ;; *) echo "check-swift.sh: no URL from the REST stand-in" >&2; exit 1 ;; esac
echo "check-swift.sh: library, bindings, Postgres and stand-in ready ($(($(date +%s) - started)) s)"

# 4. Into the chroot, and compile. The chroot shares the host's network: 127.0.0.1 reaches the
# Postgres and the stand-in.
rm -rf "$CHROOT/outpost"
mkdir -p "$CHROOT/outpost/lib" "$CHROOT/outpost/bindings" "$CHROOT/outpost/home" "$CHROOT/outpost/src"
cp "$bindings/python/liboutpost_ffi.so" "$CHROOT/outpost/lib/"
cp "$bindings/swift/"outpost_ffi* "$CHROOT/outpost/bindings/"
cp -r cross/tests/swift/Example cross/tests/swift/Tests "$CHROOT/outpost/src/"
mount --bind "$(realpath "$OUTPOST_HOME")" "$CHROOT/outpost/home"
mount -o remount,bind,ro "$CHROOT/outpost/home"
mount -t proc proc "$CHROOT/proc"
in_chroot() {
    chroot "$CHROOT" env -i PATH=/usr/bin:/bin HOME=/root TMPDIR=/tmp LANG=C.UTF-8 \
        LD_LIBRARY_PATH=/outpost/lib OUTPOST_HOME=/outpost/home "$@"
}
compile() {   # NAME: src/NAME/main.swift and the bindings → /outpost/NAME
    in_chroot swiftc -module-name "$1" -I /outpost/bindings \
        -Xcc -fmodule-map-file=/outpost/bindings/outpost_ffiFFI.modulemap \
        /outpost/bindings/outpost_ffi.swift "/outpost/src/$1/main.swift" \
        -L /outpost/lib -loutpost_ffi -o "/outpost/$1"
}
step=$(date +%s)
in_chroot swiftc --version 2>&1 | head -n1
compile Example
compile Tests
echo "check-swift.sh: compiled ($(($(date +%s) - step)) s)"

# 5. Run.
in_chroot /outpost/Example | tee "$work/example.out"
grep -q '^hit: Tides' "$work/example.out" && grep -q '^refused: ' "$work/example.out" ||
    { echo "check-swift.sh: the example did not find its note or was not refused" >&2; exit 1; }
in_chroot env OUTPOST_SWIFT_CENTRAL="$central" OUTPOST_SWIFT_SHIM="$shim_url" /outpost/Tests "$@"
echo "check-swift.sh: done in $(($(date +%s) - started)) s"
