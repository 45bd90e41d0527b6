#!/usr/bin/env bash
# Runs the sync tests in their real-Supabase mode (sync/tests/common/mod.rs, OUTPOST_TEST_SUPABASE_*)
# against a STAND-IN for a Supabase project, so that the mode cannot rot where no Supabase is
# reachable: one shared database on the test Postgres ($OUTPOST_TEST_PG_URL, a superuser URL)
# with Supabase's auth emulated and the migrations applied, the REST test shim as its API, and a
# login role shaped like Supabase's `postgres` (no superuser; BYPASSRLS, CREATEROLE, CREATEDB;
# member of anon, authenticated and service_role) as its connection string. With a real project,
# set the four variables yourself and run `cargo test -p outpost-sync` instead.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
: "${OUTPOST_TEST_PG_URL:?the superuser URL of the test Postgres (scripts/pg.sh start DIR)}"
PSQL="$("$ROOT/scripts/pg.sh" bin)/psql"
export PGOPTIONS="-c client_min_messages=warning"
base="${OUTPOST_TEST_PG_URL%/*}"
db="supabase_standin"
q() { "$PSQL" -X -q -A -t -v ON_ERROR_STOP=1 "$@"; }

q -d "$OUTPOST_TEST_PG_URL" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db"
migrations=()
for m in "$ROOT"/migrations/supabase/*.sql; do # oldest first, as `supabase db push` applies them
    migrations+=(-f "$m")
done
q -d "$base/$db" -f "$ROOT/sync/tests/sql/supabase_auth_emulation.sql" "${migrations[@]}" \
    -c "DO \$\$ BEGIN
          IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'outpost_project_owner') THEN
            CREATE ROLE outpost_project_owner LOGIN NOSUPERUSER BYPASSRLS CREATEROLE CREATEDB;
          END IF;
        END \$\$;
        GRANT anon, authenticated, service_role TO outpost_project_owner;"

anon="standin-anon-key"
secret="standin-jwt-secret-standin-jwt-secret"
shim_out="$(mktemp)"
cargo build --quiet -p outpost-sync --features shim --example rest_shim
"${CARGO_TARGET_DIR:-$ROOT/target}/debug/examples/rest_shim" "$base/$db" "$anon" "$secret" >"$shim_out" &
shim=$!
trap 'kill $shim 2>/dev/null || true; rm -f "$shim_out"' EXIT
for _ in $(seq 100); do
    [ -s "$shim_out" ] && break
    sleep 0.1
done
[ -s "$shim_out" ] || { echo "supabase-mode.sh: the REST shim did not start" >&2; exit 1; }

OUTPOST_TEST_SUPABASE_URL="$(cat "$shim_out")" \
OUTPOST_TEST_SUPABASE_ANON_KEY="$anon" \
OUTPOST_TEST_SUPABASE_JWT_SECRET="$secret" \
OUTPOST_TEST_SUPABASE_DB_URL="${base/\/\/postgres@/\/\/outpost_project_owner@}/$db" \
    cargo test -p outpost-sync "$@"
