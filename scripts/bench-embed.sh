#!/usr/bin/env bash
# Embedding throughput of outpost (candle) against sentence-transformers (PyTorch), in one go,
# on the same texts, machine and thread count: the first N SciFact documents (title + text;
# both truncate at the model's 256 tokens), batch 32, sorted by length in both.
#
# Needs a venv with sentence-transformers (see scripts/parity/README.md); PYTHON points at it.
# Env: N (1000), THREADS ($(nproc)), SCIFACT (../shared/data/scifact), PYTHON (.venv/bin/python),
# OUTPOST_HOME / OUTPOST_MODEL_DIR as for outpost; DEVICE (cpu) = cpu | cuda runs both sides on
# that device (outpost must then be built with `--features cuda`); OUTPOST_BIN uses that binary
# instead of building target/release/outpost; BATCH (32) is both sides' batch size.
set -euo pipefail
cd "$(dirname "$0")/.."

N="${N:-1000}"
THREADS="${THREADS:-$(nproc)}"
SCIFACT="${SCIFACT:-../shared/data/scifact}"
PYTHON="${PYTHON:-.venv/bin/python}"
DEVICE="${DEVICE:-cpu}"
BATCH="${BATCH:-32}"

case "$DEVICE" in
    cpu) device_flag=(--cpu) ;;
    cuda) device_flag=() ;;
    *) echo "DEVICE must be cpu or cuda, not $DEVICE" >&2; exit 2 ;;
esac
if [ -n "${OUTPOST_BIN:-}" ]; then
    outpost="$OUTPOST_BIN"
else
    cargo build --release --quiet -p outpost
    outpost=target/release/outpost
fi
model_dir="${OUTPOST_MODEL_DIR:-$("$outpost" models list --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["models"][0]["path"])')}"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
python3 - "$SCIFACT/corpus.jsonl" "$N" >"$work/texts.txt" <<'PY'
import json, sys
path, n = sys.argv[1], int(sys.argv[2])
with open(path) as f:
    for i, line in enumerate(f):
        if i >= n:
            break
        d = json.loads(line)
        print(" ".join((d["title"] + " " + d["text"]).split()))
PY

RAYON_NUM_THREADS="$THREADS" OUTPOST_MODEL_DIR="$model_dir" OUTPOST_EMBED_SUB_BATCH="$BATCH" \
    "$outpost" "${device_flag[@]}" bench embed --input "$work/texts.txt" --json >"$work/outpost.json"

HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 "$PYTHON" - "$work/texts.txt" "$model_dir" "$THREADS" "$DEVICE" "$BATCH" >"$work/st.json" <<'PY'
import json, sys, time
import torch
from sentence_transformers import SentenceTransformer
texts_path, model_dir, threads, device, batch = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
torch.set_num_threads(threads)
texts = [l.rstrip("\n") for l in open(texts_path) if l.strip()]
model = SentenceTransformer(model_dir, device=device)
model.encode(texts[:batch], batch_size=batch)  # warm-up: CUDA context, kernels, allocator
start = time.perf_counter()
model.encode(texts, batch_size=batch, normalize_embeddings=True)
seconds = time.perf_counter() - start
q = []
for _ in range(50):
    t = time.perf_counter()
    model.encode(["how do I keep a sourdough starter alive"])
    q.append((time.perf_counter() - t) * 1000)
q.sort()
print(json.dumps({"texts": len(texts), "seconds": seconds, "texts_per_second": len(texts) / seconds,
                  "query_p50_ms": q[len(q) // 2], "threads": torch.get_num_threads(),
                  "torch": torch.__version__}))
PY

python3 - "$work/outpost.json" "$work/st.json" <<'PY'
import json, sys
o, s = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
print(f"texts: {o['texts']} ({o['tokens']} tokens, {o['truncated']} truncated), threads: {o['threads']} / {s['threads']}, device: {o['device']}")
print(f"outpost (candle):        {o['texts_per_second']:8.1f} texts/s  {o['seconds']:7.2f} s  query p50 {o['query_p50_ms']:.2f} ms")
print(f"sentence-transformers:   {s['texts_per_second']:8.1f} texts/s  {s['seconds']:7.2f} s  query p50 {s['query_p50_ms']:.2f} ms  (torch {s['torch']})")
print(f"ratio outpost / sentence-transformers: {o['texts_per_second'] / s['texts_per_second']:.2f}")
PY
