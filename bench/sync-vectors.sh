#!/usr/bin/env bash
# Vectors on the wire, before and after (issue 19, item 3; docs/BENCHMARKS.md, sync): runs
# `outpost bench sync` with a BEFORE binary against a database with only the first central
# migration and an AFTER binary against one with every migration, in alternating rounds on one
# server, and prints the median rates and bytes per chunk row of each (transport, form); then
# times outpost_push's decoding of 5,000 chunk rows in each form (sync-vectors/decode*.sql).
#
#   bench/sync-vectors.sh BEFORE_BIN AFTER_BIN SUPERUSER_URL [ROUNDS=3] [CHUNKS=10000] [OUT=.cache/sync-vectors]
#
# SUPERUSER_URL is a scratch server's (`scripts/pg.sh start DIR` prints one); the script makes
# (and replaces) the databases bench_v1, bench_v2 and bench_decode on it.
set -euo pipefail

before=$(realpath "$1")
after=$(realpath "$2")
url=$3
rounds=${4:-3}
chunks=${5:-10000}
root=$(cd "$(dirname "$0")/.." && pwd)
out=${6:-$root/.cache/sync-vectors}
mkdir -p "$out"
base=${url%/*}
psql="$("$root/scripts/pg.sh" bin)/psql"
export PGOPTIONS="-c client_min_messages=warning"
q() { "$psql" -X -q -v ON_ERROR_STOP=1 "$@"; }

first=("$root"/migrations/supabase/*.sql)
for db in bench_v1 bench_v2 bench_decode; do
    q -d "$url" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db"
    files=(-f "$root/sync/tests/sql/supabase_auth_emulation.sql")
    if [ "$db" = bench_v1 ]; then
        files+=(-f "${first[0]}")
    else
        for m in "${first[@]}"; do files+=(-f "$m"); done
    fi
    q -d "$base/$db" "${files[@]}"
done

for r in $(seq "$rounds"); do
    for side in before after; do
        if [ "$side" = before ]; then bin=$before db=bench_v1; else bin=$after db=bench_v2; fi
        echo "round $r: $side" >&2
        "$bin" bench sync --central "$base/$db" --chunks "$chunks" --batch 100 --json >"$out/$side-$r.json"
    done
done

python3 - "$out" <<'PY'
import glob, json, statistics as st, sys
out = sys.argv[1]
rows, copy = {}, {}
for side in ("before", "after"):
    for f in sorted(glob.glob(f"{out}/{side}-*.json")):
        d = json.load(open(f))
        copy.setdefault(side, []).append(d["copy_rows_per_s"])
        for r in d["results"]:
            rows.setdefault((side, r["transport"], r.get("vectors", "json (v1)")), []).append(r)
for side, c in copy.items():
    print(f"{side}: COPY {st.median(c):.0f} rows/s (median of {len(c)})")
print("side    transport vectors    push B/chunk pull B/chunk push rows/s pull rows/s")
for (side, t, v), rs in rows.items():
    med = lambda k: st.median(r[k] for r in rs) if k in rs[0] else float("nan")
    print(f"{side:<7} {t:<9} {v:<10} {med('push_bytes_per_chunk'):>12.0f} {med('pull_bytes_per_chunk'):>12.0f}"
          f" {med('push_rows_per_s'):>11.0f} {med('pull_rows_per_s'):>11.0f}")
PY

echo "outpost_push of 5,000 chunk rows without the HNSW index, JSON then base64, alternating:"
(cd "$root/bench/sync-vectors" && q -d "$base/bench_decode" -f decode.sql -f decode-only.sql 2>&1) |
    grep -E "^Time|request_bytes|^ (json|base64) |_to_vector|^push" | paste - -
