#!/usr/bin/env python3
"""llama.cpp's side of `scripts/bench-llm.sh`: prompt and generation speed of a GGUF through
llama-cpp-python, measured the way `outpost bench llm` measures candle.

Usage: llm_llamacpp.py MODEL.gguf PROMPT_FILE [--tokens N] [--runs R] [--threads T] [--seed S]

PROMPT_FILE holds the exact rendered chat prompt (ChatML, ending in `<|im_start|>assistant\\n`);
it is tokenized with special tokens parsed and no BOS added, so both engines see the same ids.
Per run, after `llm.reset()`:
  - prompt:  `llm.eval(prompt_tokens)` timed; prompt_tok_s = prompt tokens / that time;
  - ttft:    prompt eval + the first greedy token (argmax of the last logits);
  - gen:     N decode steps, each `llm.eval([tok])` + argmax, end of sequence ignored so every
             run generates exactly N more tokens; gen_tok_s = N / the time of those N steps.
One warm-up run, then R timed runs; medians are reported. peak_rss_mib is the process's
ru_maxrss after the runs (Python, numpy and the mmapped model included); rss_before_load_mib is
the same before the model was loaded, for comparison.
--no-extra-bufts loads the weights without llama.cpp's AMX/repacking buffer types (see --help).
Prints one JSON object on stdout; the prompt's first 10 token ids (and the greedy text of the
last run) go to stderr.
"""

import argparse
import ctypes
import json
import resource
import statistics
import sys
import time

import numpy as np


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("prompt_file")
    ap.add_argument("--tokens", type=int, default=128, help="tokens generated per run (N)")
    ap.add_argument("--runs", type=int, default=5, help="timed runs after one warm-up (R)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--ctx", type=int, default=2048)
    ap.add_argument("--no-extra-bufts", action="store_true",
                    help="load the weights without llama.cpp's extra CPU buffer types (AMX, repacking): for a "
                    "CPU that reports AMX but faults on it (SIGILL in ggml_backend_amx_mul_mat); for Q4_1 and "
                    "Q8_0 weights on x86 it turns off AMX only, there being no x86 repacking for them")
    args = ap.parse_args()

    rss_before = rss_mib()
    import llama_cpp
    import llama_cpp.llama_cpp as lib
    from llama_cpp import Llama

    if args.no_extra_bufts:  # not a Llama() argument in 0.3.36: patch the defaults it starts from
        default_params = lib.llama_model_default_params

        def without_extra_bufts():
            params = default_params()
            params.use_extra_bufts = False
            return params

        lib.llama_model_default_params = without_extra_bufts

    llm = Llama(
        model_path=args.model,
        n_threads=args.threads,
        n_threads_batch=args.threads,
        n_ctx=args.ctx,
        n_batch=512,
        verbose=False,
        seed=args.seed,
    )
    n_vocab = llm.n_vocab()

    with open(args.prompt_file, encoding="utf-8") as f:
        text = f.read()
    prompt = llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)
    if len(prompt) + args.tokens + 1 > args.ctx:
        print(f"prompt ({len(prompt)}) + tokens ({args.tokens}) do not fit n_ctx {args.ctx}", file=sys.stderr)
        return 2
    print(f"llama.cpp: {len(prompt)} prompt tokens, first 10 ids: {prompt[:10]}", file=sys.stderr)

    ctx = llm._ctx.ctx  # the raw llama_context pointer

    def argmax_last() -> int:
        # With logits_all off, llama-cpp-python 0.3.x no longer copies logits into llm.scores
        # (sampling moved into llama.cpp's sampler), so read the last output row directly.
        ptr = lib.llama_get_logits_ith(ctx, -1)
        logits = np.ctypeslib.as_array(ctypes.cast(ptr, ctypes.POINTER(ctypes.c_float)), shape=(n_vocab,))
        return int(np.argmax(logits))

    def one_run():
        llm.reset()
        t0 = time.perf_counter()
        llm.eval(prompt)
        t1 = time.perf_counter()
        tok = argmax_last()
        t2 = time.perf_counter()
        out = [tok]
        for _ in range(args.tokens):
            llm.eval([tok])
            tok = argmax_last()
            out.append(tok)
        t3 = time.perf_counter()
        return t1 - t0, t2 - t0, t3 - t2, out

    one_run()  # warm-up: page in the weights, grow buffers
    prompt_s, ttft_s, gen_s = [], [], []
    out = []
    for _ in range(args.runs):
        p, f, g, out = one_run()
        prompt_s.append(p)
        ttft_s.append(f)
        gen_s.append(g)

    try:
        greedy = llm.detokenize(out).decode("utf-8", "replace")
        print(f"llama.cpp greedy output ({len(out)} tokens): {greedy!r}", file=sys.stderr)
    except Exception as e:  # only a diagnostic
        print(f"(detokenize failed: {e})", file=sys.stderr)

    result = {
        "engine": f"llama.cpp (llama-cpp-python {llama_cpp.__version__})",
        "threads": args.threads,
        "prompt_tokens": len(prompt),
        "prompt_tok_s": round(len(prompt) / statistics.median(prompt_s), 2),
        "gen_tokens": args.tokens,
        "gen_tok_s": round(args.tokens / statistics.median(gen_s), 2),
        "ttft_ms": round(statistics.median(ttft_s) * 1000, 2),
        "peak_rss_mib": round(rss_mib(), 1),
        "rss_before_load_mib": round(rss_before, 1),
        "runs": args.runs,
        "extra_bufts": not args.no_extra_bufts,
        "first_ids": prompt[:10],
        "greedy_ids": out[:16],
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
