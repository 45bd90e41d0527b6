#!/usr/bin/env bash
# Compares two outpost binaries (before and after a change) on `bench search` and on an ingest
# of the first 300 SciFact documents, in alternating rounds on the same machine, and prints the
# median p50 of each row with the ratio after / before (also as JSON in $OUT/summary.json).
#
#   bench/before-after.sh BEFORE_BIN AFTER_BIN [ROUNDS=5] [OUT=.cache/before-after]
#
# Build each binary with `cargo build --release -p outpost` at its commit. The model must be
# installed (`outpost models fetch`, OUTPOST_HOME) and ../shared/data/scifact beside the repo.
set -euo pipefail

before=$(realpath "$1")
after=$(realpath "$2")
rounds=${3:-5}
root=$(cd "$(dirname "$0")/.." && pwd)
out=${4:-$root/.cache/before-after}
mkdir -p "$out"

corpus=$root/../shared/data/scifact/corpus.jsonl
docs=$out/sf300.jsonl
python3 - "$corpus" "$docs" <<'EOF'
import json, sys
with open(sys.argv[1]) as src, open(sys.argv[2], "w") as dst:
    for i, line in enumerate(src):
        if i == 300:
            break
        d = json.loads(line)
        dst.write(json.dumps({"id": d["_id"], "title": d["title"], "text": d["text"]}) + "\n")
EOF

for round in $(seq 1 "$rounds"); do
  for v in before after; do
    bin=$before
    [ "$v" = after ] && bin=$after
    echo "round $round: $v" >&2
    "$bin" bench search --n 100000 --queries 200 --expansion 24,48 --json \
      >"$out/search-$v-$round.json"
    rm -rf "$out/ing-$v.db"*
    "$bin" --db "$out/ing-$v.db" ingest "$docs" --json >"$out/ingest-$v-$round.json"
    rm -rf "$out/ing-$v.db"*
  done
done

python3 - "$out" "$rounds" <<'EOF'
import json, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])

def rows(v, r):
    s = json.load(open(f"{out}/search-{v}-{r}.json"))
    i = json.load(open(f"{out}/ingest-{v}-{r}.json"))
    row = {x["mode"]: x["p50_ms"] for x in s["results"]}
    row["index built and saved (100k), s"] = s["index_seconds"]
    row["cold start, s"] = s["cold_start_seconds"]
    secs = i.get("seconds") or i.get("elapsed_seconds")
    row["ingest, chunks/s"] = i["chunks"] / secs
    return row

data = {v: [rows(v, r) for r in range(1, rounds + 1)] for v in ("before", "after")}
summary = []
print(f"| row | before | after | after / before |\n|---|---|---|---|")
for key in data["before"][0]:
    b = [x[key] for x in data["before"]]
    a = [x[key] for x in data["after"]]
    mb, ma = statistics.median(b), statistics.median(a)
    fmt = lambda xs: ", ".join(f"{x:.3g}" for x in xs)
    print(f"| {key} | {mb:.3g} ({fmt(b)}) | {ma:.3g} ({fmt(a)}) | {ma / mb:.2f} |")
    summary.append({"row": key, "before": b, "after": a, "ratio": ma / mb})
json.dump(summary, open(f"{out}/summary.json", "w"), indent=1)
EOF
