#!/usr/bin/env bash
# Smoke test of the central schema on a throwaway PostgreSQL 18 + pgvector (scripts/pg.sh):
# runs the Supabase emulation and the migrations twice (re-runnable), smoke.sql (push outcomes,
# pulls, row-level security, search, checksums, malformed records), then two concurrency checks
# with parallel sessions: a pull never hands out a row of a transaction that committed after an
# older one still running, and concurrent pushes of one id get applied/duplicate/stale right.
# Prints one line on success; exits non-zero on the first failure. Leaves no server running.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../../.." && pwd)"
HERE="$ROOT/sync/tests/sql"
DIR="$(mktemp -d /tmp/outpost-smoke.XXXXXX)"
trap '"$ROOT/scripts/pg.sh" stop "$DIR" || true; rm -rf "$DIR"' EXIT

URL="$("$ROOT/scripts/pg.sh" start "$DIR")"
PSQL="$("$ROOT/scripts/pg.sh" bin)/psql"
export PGOPTIONS="-c client_min_messages=warning"
q() { "$PSQL" -X -q -A -t -v ON_ERROR_STOP=1 -d "$URL" "$@"; }

migrations=()
for m in "$ROOT"/migrations/supabase/*.sql; do # oldest first, as `supabase db push` applies them
    migrations+=(-f "$m")
done
for _ in 1 2; do
    q -f "$HERE/supabase_auth_emulation.sql" "${migrations[@]}"
done
q -f "$HERE/smoke.sql" >/dev/null

fail() {
    echo "smoke.sh: FAILED: $*" >&2
    exit 1
}

# Runs SQL as user A in one transaction (the direct transport's way).
as_a() {
    q <<SQL
begin;
set local role authenticated;
select set_config('request.jwt.claims', '{"sub":"11111111-1111-4111-8111-111111111111","role":"authenticated"}', true) \\gset ignored_
$1
commit;
SQL
}
conv() { # id hlc
    echo "jsonb_build_array(jsonb_build_object('kind','conversation','id','$1','hlc',$2,'device','dev',
        'deleted',false,'title','t','created_at',1,'updated_at',1))"
}
X=0190b000-0000-7000-8000-000000000001
Y=0190b000-0000-7000-8000-000000000002
Z=0190b000-0000-7000-8000-000000000003

# 1. A transaction that started early and commits late does not land behind the cursor.
c0="$(as_a "select outpost_pull() ->> 'next_cursor';")"
as_a "select outpost_push($(conv "$X" 1)); select pg_sleep(3);" >"$DIR/s1.out" &
s1=$!
sleep 1
as_a "select outpost_push($(conv "$Y" 1));" >/dev/null
early="$(as_a "select jsonb_path_query_array(outpost_pull('$c0'), '\$.changes[*].id');")"
[ "$early" = "[]" ] || fail "pull handed out rows while an older transaction was running: $early"
wait "$s1"
late="$(as_a "select jsonb_path_query_array(outpost_pull('$c0'), '\$.changes[*].id');")"
[ "$late" = "[\"$X\", \"$Y\"]" ] || fail "pull after both committed: $late"

# 2. Concurrent pushes of one id: the second and third wait for the first, then see its row.
as_a "select outpost_push($(conv "$Z" 10)) -> 0 ->> 'outcome'; select pg_sleep(2);" >"$DIR/p1.out" &
p1=$!
sleep 0.7
as_a "select outpost_push($(conv "$Z" 10)) -> 0 ->> 'outcome';" >"$DIR/p2.out" &
p2=$!
as_a "select outpost_push($(conv "$Z" 9)) -> 0 ->> 'outcome';" >"$DIR/p3.out" &
p3=$!
as_a "select outpost_push($(conv "$Z" 11)) -> 0 ->> 'outcome';" >"$DIR/p4.out" &
p4=$!
wait "$p1" "$p2" "$p3" "$p4"
outcomes="$(grep -h . "$DIR/p1.out" "$DIR/p2.out" "$DIR/p3.out" "$DIR/p4.out" | tr '\n' ' ')"
[ "$outcomes" = "applied duplicate stale applied " ] ||
    [ "$outcomes" = "applied stale stale applied " ] || # p4 (hlc 11) may land before p2
    fail "concurrent pushes: $outcomes"
final="$(as_a "select hlc from outpost_conversations where id = '$Z';")"
[ "$final" = 11 ] || fail "concurrent pushes left hlc $final"

echo "smoke.sh: all checks passed"
