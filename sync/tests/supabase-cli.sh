#!/usr/bin/env bash
# The Supabase CLI applies our central schema: `supabase db push --db-url` pushes
# migrations/supabase/*.sql to a fresh database on the test Postgres ($OUTPOST_TEST_PG_URL, a
# superuser URL) as it would to a project, twice (the second finds nothing to do), and
# `supabase migration list` shows every migration applied on both sides. Then, in SQL: the CLI
# recorded each version in supabase_migrations.schema_migrations, outpost_info() answers, and a
# user can push through the functions it created.
#
# The CLI is $OUTPOST_SUPABASE_CLI: scripts/test.sh installs the npm package `supabase` (pinned
# there) into .cache and sets it. A Supabase project
# has its roles and `auth` schema before any migration; on a plain Postgres
# sync/tests/sql/supabase_auth_emulation.sql plays them, applied with psql before the push. The
# CLI needs no Docker and no login for this: only a project folder (supabase/config.toml and
# supabase/migrations/, made in a temp dir from copies of our migrations) and the URL, with
# `sslmode=disable` since the test Postgres has no TLS. Telemetry is off and HOME is the temp
# dir, so nothing is written outside it. Prints one line on success; fails (never skips) when
# the CLI or the server is missing.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
: "${OUTPOST_TEST_PG_URL:?the superuser URL of the test Postgres (scripts/pg.sh start DIR)}"
CLI="${OUTPOST_SUPABASE_CLI:?the Supabase CLI binary (scripts/test.sh installs it)}"
PSQL="$("$ROOT/scripts/pg.sh" bin)/psql"
export PGOPTIONS="-c client_min_messages=warning"

fail() {
    echo "supabase-cli.sh: FAILED: $*" >&2
    exit 1
}
base="${OUTPOST_TEST_PG_URL%/*}"
db="supabase_cli"
url="$base/$db"
q() { "$PSQL" -X -q -A -t -v ON_ERROR_STOP=1 "$@"; }

work="$(mktemp -d /tmp/outpost-supabase-cli.XXXXXX)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/home" "$work/project/supabase/migrations"
cli() { HOME="$work/home" SUPABASE_TELEMETRY_DISABLED=1 DO_NOT_TRACK=1 "$CLI" "$@" </dev/null 2>&1; }
supabase() { cli "$@" --workdir "$work/project" --db-url "$url?sslmode=disable"; }

[ -x "$CLI" ] || fail "no Supabase CLI at $CLI: scripts/test.sh installs it (npm package supabase)"
version="$(cli --version)" || fail "$CLI --version: $version"

printf 'project_id = "outpost-cli-test"\n' >"$work/project/supabase/config.toml"
cp "$ROOT"/migrations/supabase/*.sql "$work/project/supabase/migrations/"
versions="$(for f in "$ROOT"/migrations/supabase/*_*.sql; do
    f="${f##*/}"
    echo "${f%%_*}"
done | sort)"
[ -n "$versions" ] || fail "no migrations in migrations/supabase"

q -d "$OUTPOST_TEST_PG_URL" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db"
q -d "$url" -f "$ROOT/sync/tests/sql/supabase_auth_emulation.sql"

# 1. The first push applies every migration, the second none.
out="$(supabase db push --yes)" || fail "db push: $out"
for v in $versions; do
    grep -q "Applying migration ${v}_" <<<"$out" || fail "db push did not apply $v: $out"
done
out="$(supabase db push --yes)" || fail "second db push: $out"
grep -q "Remote database is up to date" <<<"$out" || fail "the second db push was not a no-op: $out"
grep -q "Applying migration" <<<"$out" && fail "the second db push applied again: $out"

# 2. `migration list` shows each version both locally and on the database.
out="$(supabase migration list)" || fail "migration list: $out"
for v in $versions; do
    grep -Eq "^ *\`?$v\`? *\| *\`?$v\`? *\|" <<<"$out" || fail "migration list does not show $v applied: $out"
done

# 3. What the CLI recorded, and what the migrations made.
recorded="$(q -d "$url" -c "SELECT version FROM supabase_migrations.schema_migrations ORDER BY version")"
[ "$recorded" = "$versions" ] ||
    fail "supabase_migrations.schema_migrations holds [$recorded], expected [$versions]"
info="$(q -d "$url" -c "SET ROLE anon" -c "SELECT outpost_info() ->> 'schema_version'")"
[ "$info" -ge 1 ] 2>/dev/null || fail "outpost_info() answered '$info'"
conv='[{"kind": "conversation", "id": "0190b000-0000-7000-8000-0000000000c1", "hlc": 1,
        "device": "cli", "deleted": false, "title": "t", "created_at": 1, "updated_at": 1}]'
pushed="$(q -d "$url" <<SQL
begin;
set local role authenticated;
select set_config('request.jwt.claims', '{"sub":"11111111-1111-4111-8111-111111111111","role":"authenticated"}', true) \\gset ignored_
select outpost_push('$conv'::jsonb) -> 0 ->> 'outcome';
select count(*) from outpost_conversations;
commit;
SQL
)"
[ "$pushed" = "applied
1" ] || fail "a push on the pushed schema: $pushed"

q -d "$OUTPOST_TEST_PG_URL" -c "DROP DATABASE $db WITH (FORCE)"
echo "supabase-cli.sh: the Supabase CLI $version applied $(wc -w <<<"$versions") migration(s); all checks passed"
