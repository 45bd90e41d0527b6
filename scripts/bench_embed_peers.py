#!/usr/bin/env python3
"""The peers of `outpost bench embed`, for scripts/bench-embed.sh.

    bench_embed_peers.py prepare MODEL_DIR ONNX_DIR
        Exports the model to ONNX once: fp32.onnx (the legacy TorchScript exporter, opset 17),
        opt.onnx (fp32.onnx through ONNX Runtime's transformer optimizer: fused attention,
        SkipLayerNorm, BiasGelu) and int8.onnx (fp32.onnx through quantize_dynamic, int8
        per-channel weights).
    bench_embed_peers.py run PEER TEXTS MODEL_DIR ONNX_DIR THREADS BATCH VECTORS
        PEER is st | ort-fp32 | ort-opt | ort-int8. Embeds every line of TEXTS (sorted by length,
        batches of BATCH, truncated at 256 tokens, mean pooling, unit length), writes the vectors
        to VECTORS (.npy) and prints one JSON line: texts/s, seconds, single-query p50, peak RSS.
    bench_embed_peers.py report RESULTS_JSONL REFERENCE_NPY
        Medians per contestant over the rounds, ratios to outpost fp32, and parity (min and mean
        cosine of each contestant's vectors against sentence-transformers'), as a Markdown table.

Nothing here downloads: the model is the directory Outpost installed.
"""
import json
import os
import resource
import statistics
import sys
import time

MAX_TOKENS = 256
QUERY = "how do I keep a sourdough starter alive"


def peak_rss_bytes():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def prepare(model_dir, onnx_dir):
    os.makedirs(onnx_dir, exist_ok=True)
    fp32 = os.path.join(onnx_dir, "fp32.onnx")
    if not os.path.exists(fp32):
        import torch
        from transformers import AutoModel

        # Eager attention: the pattern ORT's optimizer fuses into its Attention operator.
        model = AutoModel.from_pretrained(model_dir, attn_implementation="eager").eval()

        class Wrapped(torch.nn.Module):
            def __init__(self, m):
                super().__init__()
                self.m = m

            def forward(self, input_ids, attention_mask, token_type_ids):
                return self.m(input_ids=input_ids, attention_mask=attention_mask,
                              token_type_ids=token_type_ids).last_hidden_state

        ids = torch.ones(2, 16, dtype=torch.long)
        axes = {0: "batch", 1: "sequence"}
        torch.onnx.export(
            Wrapped(model), (ids, torch.ones_like(ids), torch.zeros_like(ids)), fp32 + ".tmp",
            input_names=["input_ids", "attention_mask", "token_type_ids"],
            output_names=["last_hidden_state"],
            dynamic_axes={"input_ids": axes, "attention_mask": axes, "token_type_ids": axes,
                          "last_hidden_state": axes},
            opset_version=17, dynamo=False)
        os.replace(fp32 + ".tmp", fp32)
    opt = os.path.join(onnx_dir, "opt.onnx")
    if not os.path.exists(opt):
        from onnxruntime.transformers.optimizer import optimize_model

        config = json.load(open(os.path.join(model_dir, "config.json")))
        o = optimize_model(fp32, model_type="bert", num_heads=config["num_attention_heads"],
                           hidden_size=config["hidden_size"])
        fused = o.get_fused_operator_statistics()
        if not fused.get("Attention"):
            sys.exit(f"ORT's optimizer fused no attention: {fused}")
        o.save_model_to_file(opt + ".tmp")
        os.replace(opt + ".tmp", opt)
    int8 = os.path.join(onnx_dir, "int8.onnx")
    if not os.path.exists(int8):
        from onnxruntime.quantization import QuantType, quantize_dynamic

        quantize_dynamic(fp32, int8 + ".tmp", per_channel=True, weight_type=QuantType.QInt8)
        os.replace(int8 + ".tmp", int8)


def st_encoder(model_dir, threads, batch):
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(threads)
    model = SentenceTransformer(model_dir, device=os.environ.get("DEVICE", "cpu"))
    assert model.max_seq_length == MAX_TOKENS, model.max_seq_length
    info = {"torch": torch.__version__, "threads": torch.get_num_threads()}
    return (lambda texts: model.encode(texts, batch_size=batch, normalize_embeddings=True,
                                       convert_to_numpy=True)), info


def ort_encoder(model_dir, path, threads, batch):
    import numpy as np
    import onnxruntime as ort
    from tokenizers import Tokenizer

    # The bundled tokenizer.json pads and truncates to 128: read 256, without padding.
    tok = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(MAX_TOKENS)
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])

    def encode(texts):
        encodings = tok.encode_batch(texts)
        # Longest first, as sentence-transformers sorts, so each batch pads little.
        order = sorted(range(len(texts)), key=lambda i: -len(encodings[i].ids))
        out = np.zeros((len(texts), 0), dtype=np.float32)
        for start in range(0, len(order), batch):
            idx = order[start:start + batch]
            width = max(len(encodings[i].ids) for i in idx)
            ids = np.zeros((len(idx), width), dtype=np.int64)
            mask = np.zeros((len(idx), width), dtype=np.int64)
            for row, i in enumerate(idx):
                e = encodings[i].ids
                ids[row, :len(e)] = e
                mask[row, :len(e)] = 1
            hidden = sess.run(None, {"input_ids": ids, "attention_mask": mask,
                                     "token_type_ids": np.zeros_like(ids)})[0]
            m = mask[:, :, None].astype(np.float32)
            pooled = (hidden * m).sum(1) / m.sum(1)
            pooled /= np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
            if out.shape[1] == 0:
                out = np.zeros((len(texts), pooled.shape[1]), dtype=np.float32)
            out[idx] = pooled
        return out

    return encode, {"onnxruntime": ort.__version__, "threads": threads}


def run(peer, texts_path, model_dir, onnx_dir, threads, batch, vectors_path):
    import numpy as np

    texts = [line.rstrip("\n") for line in open(texts_path) if line.strip()]
    if peer == "st":
        encode, info = st_encoder(model_dir, threads, batch)
    else:
        name = {"ort-fp32": "fp32", "ort-opt": "opt", "ort-int8": "int8"}[peer]
        encode, info = ort_encoder(model_dir, os.path.join(onnx_dir, name + ".onnx"), threads,
                                   batch)
    encode(texts[:batch])  # warm-up: lazy initialisation and allocator pools are not timed
    start = time.perf_counter()
    vectors = encode(texts)
    seconds = time.perf_counter() - start
    np.save(vectors_path, np.asarray(vectors, dtype=np.float32))
    q = []
    for _ in range(50):
        t = time.perf_counter()
        encode([QUERY])
        q.append((time.perf_counter() - t) * 1000)
    print(json.dumps({"peer": peer, "texts": len(texts), "seconds": seconds,
                      "texts_per_second": len(texts) / seconds,
                      "query_p50_ms": statistics.median(q), "peak_rss_bytes": peak_rss_bytes(),
                      **info}))


NAMES = {
    "outpost": "**outpost** fp32 (`bench embed`)",
    "outpost-int8": "**outpost** int8 (`--quantize int8 bench embed`)",
    "st": "sentence-transformers (PyTorch)",
    "ort-fp32": "ONNX Runtime fp32 (legacy export)",
    "ort-opt": "ONNX Runtime fp32, transformer optimizer",
    "ort-int8": "ONNX Runtime int8 (`quantize_dynamic`)",
}


def report(results_path, reference_path):
    import numpy as np

    rows = [json.loads(line) for line in open(results_path) if line.strip()]
    ref = np.load(reference_path)
    by = {}
    for r in rows:
        by.setdefault(r["peer"], []).append(r)
    base = statistics.median(r["texts_per_second"] for r in by["outpost"])
    print("| what ran | texts/s (median) | rounds | ÷ outpost fp32 | query p50 | peak RSS "
          "| min cosine vs ST | mean cosine |")
    print("|---|---|---|---|---|---|---|---|")
    summary = {}
    for peer in [p for p in NAMES if p in by]:
        rs = by[peer]
        tps = statistics.median(r["texts_per_second"] for r in rs)
        p50 = statistics.median(r["query_p50_ms"] for r in rs)
        rss = max(r["peak_rss_bytes"] for r in rs)
        v = np.load(rs[-1]["vectors"])
        cos = (v * ref).sum(1) / (np.linalg.norm(v, axis=1) * np.linalg.norm(ref, axis=1))
        rounds = " / ".join(f"{r['texts_per_second']:.1f}" for r in rs)
        print(f"| {NAMES[peer]} | {tps:.1f} | {rounds} | {tps / base:.2f} | {p50:.2f} ms "
              f"| {rss / 1048576:.0f} MiB | {cos.min():.7f} | {cos.mean():.7f} |")
        summary[peer] = {"texts_per_second": tps, "ratio_to_outpost": tps / base,
                         "query_p50_ms": p50, "peak_rss_bytes": rss,
                         "min_cosine": float(cos.min()), "mean_cosine": float(cos.mean())}
    print()
    print(json.dumps(summary))


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "prepare":
        prepare(*args)
    elif cmd == "run":
        run(args[0], args[1], args[2], args[3], int(args[4]), int(args[5]), args[6])
    elif cmd == "report":
        report(*args)
    else:
        sys.exit(__doc__)
