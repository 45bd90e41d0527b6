#!/usr/bin/env bash
# Embedding throughput of outpost against the encoders a user would pick instead, in one run on
# the same texts, machine, thread count and batching: sentence-transformers (PyTorch) and ONNX
# Runtime (fp32 export, the same after ORT's transformer optimizer, and int8 by quantize_dynamic),
# all from the same all-MiniLM-L6-v2 weights. Texts: the first N SciFact documents (title + text;
# every encoder truncates at the model's 256 tokens). Rounds are interleaved (outpost, then each
# peer, ROUNDS times); the table gives medians, ratios to outpost fp32, single-query p50, peak
# resident memory and parity (min and mean cosine against sentence-transformers).
#
# Env: N (1000), THREADS ($(nproc)), ROUNDS (3), BATCH (32: the peers' batch size),
# SCIFACT (../shared/data/scifact), PEERS ("st ort-fp32 ort-opt ort-int8"),
# OUTPOST_VARIANTS ("fp32 int8" on the CPU, "fp32" on CUDA: outpost's own rows), VENV (.cache/embed-peers: created with the
# pinned versions below when missing), OUTPOST_BIN (else target/release/outpost is built),
# OUTPOST_HOME / OUTPOST_MODEL_DIR as for outpost. DEVICE=cuda runs outpost and
# sentence-transformers on the GPU (outpost built with `--features cuda`; PEERS defaults to st).
set -euo pipefail
cd "$(dirname "$0")/.."

N="${N:-1000}"
THREADS="${THREADS:-$(nproc)}"
ROUNDS="${ROUNDS:-3}"
BATCH="${BATCH:-32}"
SCIFACT="${SCIFACT:-../shared/data/scifact}"
DEVICE="${DEVICE:-cpu}"
VENV="${VENV:-.cache/embed-peers}"
case "$DEVICE" in
    cpu) device_flag=(--cpu); PEERS="${PEERS:-st ort-fp32 ort-opt ort-int8}"
        OUTPOST_VARIANTS="${OUTPOST_VARIANTS:-fp32 int8}" ;;
    # int8 is a CPU path (outpost would run it on the CPU): not a row of a GPU comparison.
    cuda) device_flag=(); PEERS="${PEERS:-st}"; OUTPOST_VARIANTS="${OUTPOST_VARIANTS:-fp32}" ;;
    *) echo "DEVICE must be cpu or cuda, not $DEVICE" >&2; exit 2 ;;
esac

# The peers, pinned: current sentence-transformers on transformers 5, PyTorch, ONNX Runtime.
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import sentence_transformers, onnxruntime, onnx' 2>/dev/null; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q torch==2.15.0 sentence-transformers==6.3.0 transformers==5.25.0 \
        onnxruntime==1.32.0 onnx==1.23.2 numpy
fi
py="$VENV/bin/python"

if [ -n "${OUTPOST_BIN:-}" ]; then
    outpost="$OUTPOST_BIN"
else
    cargo build --release --quiet -p outpost
    outpost=target/release/outpost
fi
model_dir="${OUTPOST_MODEL_DIR:-$("$outpost" models list --json | python3 -c 'import json,sys; print(next(m["path"] for m in json.load(sys.stdin)["models"] if m["name"] == "all-MiniLM-L6-v2" and m["present"]))')}"
onnx_dir="$VENV/onnx/$(basename "$model_dir")"
mkdir -p "$onnx_dir"
HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 "$py" scripts/bench_embed_peers.py prepare "$model_dir" "$onnx_dir" 2>"$onnx_dir.log" \
    || { cat "$onnx_dir.log" >&2; exit 1; }

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

echo "$N texts, $THREADS threads, $ROUNDS rounds, device $DEVICE, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)" >&2
for round in $(seq "$ROUNDS"); do
    for variant in $OUTPOST_VARIANTS; do
        name=outpost; quant=()
        if [ "$variant" = int8 ]; then name=outpost-int8; quant=(--quantize int8); fi
        RAYON_NUM_THREADS="$THREADS" OUTPOST_MODEL_DIR="$model_dir" \
            "$outpost" "${device_flag[@]}" bench embed --input "$work/texts.txt" "${quant[@]}" \
            --save-vectors "$work/$name.npy" --json >"$work/run.json"
        python3 - "$work/run.json" "$name" "$work/$name.npy" >>"$work/results.jsonl" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print(json.dumps({"peer": sys.argv[2], "texts_per_second": r["texts_per_second"],
                  "query_p50_ms": r["query_p50_ms"], "peak_rss_bytes": r["peak_rss_bytes"],
                  "vectors": sys.argv[3]}))
PY
        echo "round $round: $name $(tail -1 "$work/results.jsonl")" >&2
    done
    for peer in $PEERS; do
        OMP_NUM_THREADS="$THREADS" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 DEVICE="$DEVICE" \
            "$py" scripts/bench_embed_peers.py run "$peer" "$work/texts.txt" "$model_dir" "$onnx_dir" \
            "$THREADS" "$BATCH" "$work/$peer.npy" 2>>"$work/peers.log" \
            | python3 -c 'import json,sys; r=json.loads(sys.stdin.read()); r["vectors"]=sys.argv[1]; print(json.dumps(r))' "$work/$peer.npy" \
            >>"$work/results.jsonl" || { cat "$work/peers.log" >&2; exit 1; }
        echo "round $round: $peer $(tail -1 "$work/results.jsonl")" >&2
    done
done
if [ ! -f "$work/st.npy" ]; then
    echo "no sentence-transformers run to compare with (PEERS lacks st)" >&2
    exit 1
fi
"$py" scripts/bench_embed_peers.py report "$work/results.jsonl" "$work/st.npy"
