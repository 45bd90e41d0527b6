#!/usr/bin/env python3
"""Vector-search peers on exactly the data of `outpost bench search`.

    target/release/outpost bench search --n 100000 --export /tmp/vs --json > /tmp/vs/outpost.json
    bench/.venv/bin/python bench/peers.py /tmp/vs [--peers usearch,chroma,lancedb,numpy]

Reads what `--export` wrote (vectors.f32, queries.f32, truth.u32, meta.json), builds each peer's
index over the same vectors, runs the same queries one at a time (k from meta.json), and prints
p50 / p99 latency and recall@k against the exact neighbours. With outpost.json beside them (the
bench's --json report from the same run), it also prints outpost's rows and the ratios
peer p50 / outpost p50, against outpost's fastest setting with recall@k >= 0.98 (above 1:
outpost is faster).

Set up the venv once: python3 -m venv bench/.venv &&
bench/.venv/bin/pip install numpy usearch chromadb lancedb pyarrow
"""

import argparse
import json
import os
import shutil
import sys
import tempfile
import time

import numpy as np


def load(folder):
    meta = json.load(open(os.path.join(folder, "meta.json")))
    d, k = meta["dims"], meta["k"]
    vectors = np.fromfile(os.path.join(folder, "vectors.f32"), dtype="<f4").reshape(-1, d)
    queries = np.fromfile(os.path.join(folder, "queries.f32"), dtype="<f4").reshape(-1, d)
    truth = np.fromfile(os.path.join(folder, "truth.u32"), dtype="<u4").reshape(-1, k)
    return meta, vectors, queries, truth


def measure(name, search, queries, truth, k, build_s, note=""):
    for q in queries[:20]:  # warm-up, as outpost's bench does
        search(q)
    times, found = [], 0
    for q, t in zip(queries, truth):
        start = time.perf_counter()
        ids = search(q)
        times.append((time.perf_counter() - start) * 1000)
        found += len(set(int(i) for i in ids[:k]) & set(int(i) for i in t))
    times.sort()
    return {
        "peer": name,
        "p50_ms": times[len(times) // 2],
        "p99_ms": times[min(len(times) - 1, int(round((len(times) - 1) * 0.99)))],
        "recall": found / (k * len(queries)),
        "build_s": build_s,
        "note": note,
    }


def peer_numpy(vectors, queries, truth, k):
    def search(q):
        s = vectors @ q
        top = np.argpartition(-s, k)[:k]
        return top[np.argsort(-s[top])]

    return [measure("numpy exact (BLAS)", search, queries, truth, k, 0.0)]


def peer_usearch(vectors, queries, truth, k):
    from usearch.index import Index

    out = []
    start = time.perf_counter()
    index = Index(ndim=vectors.shape[1], metric="cos", dtype="f32")
    index.add(np.arange(len(vectors)), vectors)
    build = time.perf_counter() - start
    for ef in (16, 32, 64):
        index.expansion_search = ef
        out.append(measure(f"usearch HNSW f32 ef={ef}", lambda q: index.search(q, k).keys,
                           queries, truth, k, build, f"usearch {__import__('usearch').__version__}"))
    return out


def peer_chroma(vectors, queries, truth, k):
    import chromadb

    client = chromadb.EphemeralClient()
    coll = client.create_collection("bench", metadata={"hnsw:space": "cosine"})
    start = time.perf_counter()
    step = 5000
    for i in range(0, len(vectors), step):
        ids = [str(j) for j in range(i, min(i + step, len(vectors)))]
        coll.add(ids=ids, embeddings=vectors[i:i + step])
    build = time.perf_counter() - start

    def search(q):
        r = coll.query(query_embeddings=[q], n_results=k, include=[])
        return [int(x) for x in r["ids"][0]]

    return [measure("chroma (HNSW)", search, queries, truth, k, build,
                    f"chromadb {chromadb.__version__}")]


def peer_lancedb(vectors, queries, truth, k):
    import lancedb
    import pyarrow as pa

    tmp = tempfile.mkdtemp()
    try:
        db = lancedb.connect(tmp)
        start = time.perf_counter()
        table = db.create_table("bench", pa.table({
            "id": pa.array(np.arange(len(vectors)), pa.int64()),
            "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), vectors.shape[1]),
        }))
        partitions = max(1, int(np.sqrt(len(vectors))))
        table.create_index(metric="cosine", num_partitions=partitions, num_sub_vectors=48)
        build = time.perf_counter() - start

        def search(q):
            r = table.search(q).metric("cosine").refine_factor(10).limit(k).select(["id"]).to_arrow()
            return r["id"].to_pylist()

        return [measure("lancedb IVF-PQ refine x10", search, queries, truth, k, build,
                        f"lancedb {lancedb.__version__}")]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


PEERS = {"numpy": peer_numpy, "usearch": peer_usearch, "chroma": peer_chroma, "lancedb": peer_lancedb}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder")
    ap.add_argument("--peers", default="numpy,usearch,chroma,lancedb")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    meta, vectors, queries, truth = load(args.folder)
    k = meta["k"]
    rows = []
    for name in args.peers.split(","):
        try:
            rows += PEERS[name](vectors, queries, truth, k)
        except ImportError as e:
            print(f"skipping {name}: {e} (see the venv line in this file's docstring)", file=sys.stderr)
    ours = None
    path = os.path.join(args.folder, "outpost.json")
    if os.path.exists(path):
        report = json.load(open(path))
        ours = {r["mode"]: r for r in report["results"]}
    if args.json:
        print(json.dumps({"meta": meta, "peers": rows, "outpost": ours}, indent=2))
        return
    print(f"{meta['n']} vectors x {meta['dims']} dims, {meta['queries']} queries, k={k}")
    print(f"{'system':<34} {'p50 ms':>8} {'p99 ms':>8} {'recall':>7} {'build s':>8}")
    if ours:
        for mode, r in ours.items():
            if mode.startswith("vector") and r.get("recall_at_k") is not None and "filter" not in mode:
                print(f"{'outpost ' + mode:<34} {r['p50_ms']:8.3f} {r['p99_ms']:8.3f} {r['recall_at_k']:7.3f}")
    for r in rows:
        print(f"{r['peer']:<34} {r['p50_ms']:8.3f} {r['p99_ms']:8.3f} {r['recall']:7.3f} {r['build_s']:8.1f}  {r['note']}")
    # The base: outpost's fastest unfiltered setting with recall@k >= 0.98 (the bar).
    good = [(r["p50_ms"], m) for m, r in (ours or {}).items()
            if m.startswith("vector") and "filter" not in m and (r.get("recall_at_k") or 0) >= 0.98]
    if good:
        base, mode = min(good)
        print(f"ratios, peer p50 / outpost '{mode}' p50 ({base:.3f} ms; above 1: outpost faster):")
        for r in rows:
            print(f"  {r['peer']:<32} {r['p50_ms'] / base:8.2f}")


if __name__ == "__main__":
    main()
