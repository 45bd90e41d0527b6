#!/usr/bin/env bash
# Text generation speed of outpost (candle's quantized llama) against llama.cpp (llama-cpp-python,
# built from source), in one go, on the same GGUF, the same rendered prompt (same token ids) and
# the same number of CPU threads. The two engines alternate (A B, B A, ...) REPEATS times so that
# drift in the machine's load hits both; each invocation does one warm-up and RUNS timed runs and
# reports medians; the table shows the median over the repeats.
#
#   scripts/bench-llm.sh                # both engines, 2 threads, 128 tokens, 5 runs x 3 repeats
#   ENGINES=llamacpp scripts/bench-llm.sh   # llama.cpp's side only
#
# Measured per run (see bench/llm_llamacpp.py; `outpost bench llm` measures the same): prompt
# tok/s = prompt tokens / time of one batched forward pass over the prompt; TTFT = that pass + the
# first greedy token; generation tok/s = N / time of N one-token decode steps (greedy, end of
# sequence ignored); peak RSS = the process's ru_maxrss, plus the same seen from outside by
# /usr/bin/time where it exists. Prints a markdown block ready for docs/BENCHMARKS.md.
#
# Env: THREADS (2), N (128) tokens generated per run, RUNS (5), REPEATS (3),
# MODEL (.cache/outpost/models/SmolLM2-135M-Instruct/SmolLM2-135M-Instruct.Q4_1.gguf),
# PROMPT (bench/llm-prompt.txt), VENV (.cache/llama-venv: made here with llama-cpp-python pinned,
# which builds llama.cpp from source, -march=native, once; a marker file records success),
# ENGINES (both | llamacpp | outpost), OUTPOST_BIN uses that binary instead of building
# target/release/outpost, OUTPOST_LLM_ARGS extra arguments for `outpost bench llm`.
set -euo pipefail
cd "$(dirname "$0")/.."

THREADS="${THREADS:-2}"
N="${N:-128}"
RUNS="${RUNS:-5}"
REPEATS="${REPEATS:-3}"
MODEL="${MODEL:-.cache/outpost/models/SmolLM2-135M-Instruct/SmolLM2-135M-Instruct.Q4_1.gguf}"
PROMPT="${PROMPT:-bench/llm-prompt.txt}"
VENV="${VENV:-.cache/llama-venv}"
ENGINES="${ENGINES:-both}"
LLAMA_CPP_PYTHON_VERSION=0.3.36

case "$ENGINES" in
    both | llamacpp | outpost) ;;
    *) echo "ENGINES must be both, llamacpp or outpost, not $ENGINES" >&2; exit 2 ;;
esac
[ -f "$MODEL" ] || { echo "no model at $MODEL" >&2; exit 2; }
[ -f "$PROMPT" ] || { echo "no prompt at $PROMPT" >&2; exit 2; }

if [ "$ENGINES" != outpost ]; then
    marker="$VENV/.llama-cpp-python-$LLAMA_CPP_PYTHON_VERSION"
    if [ ! -f "$marker" ]; then
        echo "installing llama-cpp-python==$LLAMA_CPP_PYTHON_VERSION into $VENV (builds llama.cpp, slow)" >&2
        [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
        "$VENV/bin/pip" install -q "llama-cpp-python==$LLAMA_CPP_PYTHON_VERSION" numpy
        touch "$marker"
    fi
fi
if [ "$ENGINES" != llamacpp ]; then
    if [ -n "${OUTPOST_BIN:-}" ]; then
        outpost="$OUTPOST_BIN"
    else
        cargo build --release --quiet -p outpost
        outpost=target/release/outpost
    fi
fi

# Both engines on the same THREADS cores: threads pinned by each engine's own setting, the
# process kept to cores 0..THREADS-1 where taskset exists and the machine has that many.
pin=()
if command -v taskset >/dev/null && [ "$(nproc)" -ge "$THREADS" ]; then
    pin=(taskset -c "0-$((THREADS - 1))")
fi
export OMP_NUM_THREADS="$THREADS" RAYON_NUM_THREADS="$THREADS"
export OUTPOST_LLM_MODEL="$MODEL"  # outpost's chat model: the same GGUF
timer=()
[ -x /usr/bin/time ] && timer=(/usr/bin/time -f %M -o)

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
load_before="$(cut -d' ' -f1-3 /proc/loadavg)"

run_llamacpp() {  # $1: repeat number
    local t=("${timer[@]}")
    [ ${#t[@]} -gt 0 ] && t+=("$work/llamacpp.$1.rss")
    "${t[@]}" "${pin[@]}" "$VENV/bin/python" bench/llm_llamacpp.py "$MODEL" "$PROMPT" \
        --tokens "$N" --runs "$RUNS" --threads "$THREADS" "${llamacpp_args[@]}" >"$work/llamacpp.$1.json" 2>"$work/llamacpp.$1.err" \
        || { cat "$work/llamacpp.$1.err" >&2; exit 1; }
    echo "llamacpp $1: $(cat "$work/llamacpp.$1.json")" >&2
}
run_outpost() {
    local t=("${timer[@]}")
    [ ${#t[@]} -gt 0 ] && t+=("$work/outpost.$1.rss")
    # shellcheck disable=SC2086 # OUTPOST_LLM_ARGS is a list of words
    "${t[@]}" "${pin[@]}" "$outpost" bench llm --prompt-file "$PROMPT" --tokens "$N" --runs "$RUNS" \
        --threads "$THREADS" --json ${OUTPOST_LLM_ARGS:-} >"$work/outpost.$1.json" 2>"$work/outpost.$1.err" \
        || { cat "$work/outpost.$1.err" >&2; exit 1; }
    echo "outpost $1: $(cat "$work/outpost.$1.json")" >&2
}

# llama.cpp built with -march=native compiles its AMX kernels where the CPU reports AMX; on a VM
# that reports it without enabling it, the first batched matmul dies of SIGILL. Then run it
# without the extra buffer types (for Q4_1/Q8_0 weights on x86 that turns off AMX only).
llamacpp_args=()
if [ "$ENGINES" != outpost ]; then
    rc=0
    "$VENV/bin/python" bench/llm_llamacpp.py "$MODEL" "$PROMPT" --tokens 1 --runs 1 --threads "$THREADS" \
        >/dev/null 2>"$work/smoke.err" || rc=$?
    if [ "$rc" -eq 132 ]; then
        echo "llama.cpp died of SIGILL (AMX reported but not usable here): running it with --no-extra-bufts" >&2
        llamacpp_args=(--no-extra-bufts)
    elif [ "$rc" -ne 0 ]; then
        cat "$work/smoke.err" >&2
        exit 1
    fi
fi

for i in $(seq 1 "$REPEATS"); do
    echo "repeat $i/$REPEATS" >&2
    if [ $((i % 2)) -eq 1 ]; then order=(llamacpp outpost); else order=(outpost llamacpp); fi
    for e in "${order[@]}"; do
        if [ "$ENGINES" = both ] || [ "$ENGINES" = "$e" ]; then "run_$e" "$i"; fi
    done
done
load_after="$(cut -d' ' -f1-3 /proc/loadavg)"

for e in llamacpp outpost; do
    if [ -f "$work/$e.1.err" ]; then grep -h "first 10 ids" "$work/$e.1.err" >&2 || true; fi
done

python3 - "$work" "$REPEATS" "$load_before" "$load_after" "$MODEL" "$PROMPT" <<'PY'
import glob, json, os, statistics, subprocess, sys, time
work, repeats, load_before, load_after, model, prompt = sys.argv[1], int(sys.argv[2]), *sys.argv[3:]

def load(engine):
    rows = []
    for i in range(1, repeats + 1):
        path = f"{work}/{engine}.{i}.json"
        if not os.path.exists(path):
            continue
        row = json.loads(open(path).read().strip().splitlines()[-1])
        rss = f"{work}/{engine}.{i}.rss"
        if os.path.exists(rss):
            row["ext_rss_mib"] = int(open(rss).read().split()[-1]) / 1024
        rows.append(row)
    return rows

def med(rows, key):
    vals = [r[key] for r in rows if r.get(key) is not None]
    return statistics.median(vals) if vals else None

engines = {e: rows for e in ("llamacpp", "outpost") if (rows := load(e))}
cpu = next((l.split(":", 1)[1].strip() for l in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines()
            if l.startswith("Model name")), "?")
runs = sorted({r["runs"] for rows in engines.values() for r in rows})
first = next(iter(engines.values()))[0]
out = [
    f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, `{os.path.basename(model)}`, prompt `{prompt}` "
    f"({first['prompt_tokens']} tokens), {first['gen_tokens']} tokens generated greedily, {first['threads']} threads; "
    f"{cpu}, nproc {os.cpu_count()}; load average {load_before} before, {load_after} after. "
    f"Medians over {repeats} alternating repeats, each of {'/'.join(map(str, runs))} runs after a warm-up:",
    "",
    "| | prompt tok/s | generation tok/s | time to first token | peak RSS |",
    "|---|---|---|---|---|",
]
summary = {}
for e, rows in engines.items():
    s = {k: med(rows, k) for k in ("prompt_tok_s", "gen_tok_s", "ttft_ms", "peak_rss_mib", "ext_rss_mib")}
    summary[e] = s
    rss = f"{s['peak_rss_mib']:.1f} MiB" if s["peak_rss_mib"] is not None else "-"
    out.append(f"| {rows[0]['engine']} | {s['prompt_tok_s']:.1f} | {s['gen_tok_s']:.1f} | {s['ttft_ms']:.1f} ms | {rss} |")
notes = []
if len(summary) == 2:
    o, l = summary["outpost"], summary["llamacpp"]
    rss = f"{o['peak_rss_mib'] / l['peak_rss_mib']:.2f}" if o["peak_rss_mib"] and l["peak_rss_mib"] else "-"
    out.append(f"| ratio outpost / llama.cpp | **{o['prompt_tok_s'] / l['prompt_tok_s']:.2f}** | "
               f"**{o['gen_tok_s'] / l['gen_tok_s']:.2f}** | {o['ttft_ms'] / l['ttft_ms']:.2f} | {rss} |")
    pt = {e: sorted({r["prompt_tokens"] for r in rows}) for e, rows in engines.items()}
    if pt["llamacpp"] != pt["outpost"]:
        notes.append(f"WARNING: the prompt's token counts differ: llama.cpp {pt['llamacpp']}, outpost {pt['outpost']}.")
    ids = {e: rows[0].get("first_ids") for e, rows in engines.items()}
    if None not in ids.values() and ids["llamacpp"] != ids["outpost"]:
        notes.append(f"WARNING: the first token ids differ: llama.cpp {ids['llamacpp']}, outpost {ids['outpost']}.")
out.append("")
for e, rows in engines.items():
    per = ", ".join(f"{r['prompt_tok_s']:.0f} / {r['gen_tok_s']:.1f}" for r in rows)
    ext = [r["ext_rss_mib"] for r in rows if "ext_rss_mib" in r]
    ext = f"; max RSS seen by /usr/bin/time {statistics.median(ext):.1f} MiB" if ext else ""
    out.append(f"- {rows[0]['engine']}, per repeat (prompt / generation tok/s): {per}{ext}")
if any(r.get("extra_bufts") is False for r in engines.get("llamacpp", [])):
    notes.append("llama.cpp ran without its extra buffer types (AMX): this CPU reports AMX but faults on it.")
out += notes
print("----- markdown for docs/BENCHMARKS.md -----")
print("\n".join(out))
print("-----")
PY
