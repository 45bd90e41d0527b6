#!/usr/bin/env python3
"""Compute the reference embeddings that models/tests/parity.rs checks the candle embedder against.

The reference is sentence-transformers (PyTorch) on the CPU running all-MiniLM-L6-v2 from the same
model directory the Rust tests load. The output, models/tests/fixtures/parity_minilm.json, holds:

* ``texts``: every text in ``TEXTS`` below with its unit-length embedding
  (``normalize_embeddings=True``), each value rounded to 7 significant digits;
* ``scifact``: for each of the first 20 queries of ``queries.jsonl`` (file order), the ids of the
  10 nearest of the first 500 documents of ``corpus.jsonl`` (file order) by cosine, with their
  scores and the score at rank 11 (so a near-tie at the cut-off can be judged).

A SciFact document is embedded as ``title + " " + text`` -- the same join parity.rs uses. SciFact
is CC BY-NC, so no SciFact text is written to the fixture: only ids and results.

Usage (see scripts/parity/README.md):
    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 .venv/bin/python scripts/parity/make_reference.py \
        [MODEL_DIR] [--scifact DIR] [--out FILE]

MODEL_DIR defaults to $OUTPOST_MODEL_DIR, else $OUTPOST_HOME/models/all-MiniLM-L6-v2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent.parent
DEFAULT_OUT = REPO_ROOT / "models" / "tests" / "fixtures" / "parity_minilm.json"
DEFAULT_SCIFACT = REPO_ROOT.parent / "shared" / "data" / "scifact"

MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
N_DOCS = 500
N_QUERIES = 20
TOP_K = 10

_LONG_EN = (
    "The river delta has shifted many times over the last ten thousand years, and each shift "
    "left behind a band of fertile silt that farmers learned to follow. Engineers who study the "
    "region today use satellite imagery, sediment cores and old maps to reconstruct how the "
    "channels moved, because the same processes still threaten towns built on the floodplain. "
)
_LONG_DE = (
    "Die Bibliothek der kleinen Stadt wurde im neunzehnten Jahrhundert gegründet und besitzt "
    "heute eine bemerkenswerte Sammlung handschriftlicher Chroniken, Landkarten und Briefe, die "
    "von Historikerinnen aus ganz Europa besucht und ausgewertet werden. "
)
_LONG_ZH = "机器学习是人工智能的一个分支，它使计算机能够从数据中学习规律，而无需进行明确的编程。"

# Varied inputs: short, long (> 256 tokens, so truncated), non-English, emoji, whitespace edges,
# punctuation, numbers, code, URLs, case, and words longer than WordPiece reads.
TEXTS: list[str] = [
    # Short words and phrases.
    "hello",
    "Hello world",
    "cat",
    "a",
    "I",
    "bank",
    "river bank",
    "quantum chromodynamics",
    # Ordinary sentences.
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The stock market fell sharply on Tuesday.",
    "How do I reset my router?",
    "Steps to restart a wifi router",
    "The quick brown fox jumps over the lazy dog.",
    "Vaccination reduces the incidence of measles in young children.",
    "Offline retrieval lets field teams search manuals without a network connection.",
    "What is the boiling point of water at high altitude?",
    "She sells sea shells by the sea shore, and the shells she sells are surely sea shells.",
    # Longer than max_seq_length (256 tokens) -- truncated on both sides.
    _LONG_EN * 4,
    _LONG_EN * 12,
    _LONG_DE * 8,
    _LONG_ZH * 10,
    " ".join(f"item{i}" for i in range(400)),
    "word " * 300,
    # Non-English.
    "Das ist ein kurzer deutscher Satz über das Wetter.",
    "Grüße aus München! Über den Fluss führt eine Brücke.",
    "Le chat dort sur le canapé pendant que la pluie tombe.",
    "Où est la bibliothèque la plus proche ? Ça dépend.",
    "El niño comió una manzana en el jardín.",
    "机器学习是人工智能的一个分支。",
    "今天天气很好，我们去公园散步吧。",
    "東京は日本の首都です。",
    "ひらがなとカタカナと漢字が混ざった文章です。",
    "Москва — столица России.",
    "Привет, как дела? Всё хорошо.",
    "اللغة العربية جميلة جدا.",
    "مرحبا بالعالم",
    "Ελληνικά: η γρήγορη καφέ αλεπού.",
    "한국어 문장도 시험해 봅니다.",
    "हिन्दी में एक वाक्य।",
    # Emoji, alone and mixed.
    "😀",
    "🚀🔥💯",
    "👨‍👩‍👧‍👦 family",
    "I love pizza 🍕 and tacos 🌮!",
    "Great job! 👍👍👍",
    "🇩🇪 🇫🇷 🇯🇵 flags",
    # Whitespace edges (leading/trailing, and whitespace-only).
    "   leading spaces",
    "trailing spaces   ",
    "\tTabbed\twords\t",
    "line one\nline two\r\nline three",
    "  \n  padded on both sides  \n  ",
    " ",
    "\t",
    "\n\n\n",
    " \t \n \r\n ",
    "",
    # Punctuation-only and symbols.
    "...",
    "?!?!",
    "!@#$%^&*()_+-=[]{}|;':\",./<>?",
    "— – … « » „ “ ” ‘ ’",
    # Numbers.
    "42",
    "3.14159265358979323846",
    "The meeting is at 10:30 on 2024-03-15, room 7B, budget $1,250,000.",
    "1 2 3 4 5 6 7 8 9 10",
    # Code and URLs.
    "fn main() { println!(\"Hello, world!\"); }",
    "SELECT id, title FROM docs WHERE score > 0.5 ORDER BY score DESC;",
    "def f(x):\n    return x ** 2 + 1\n",
    "https://www.example.com/path/to/page?query=rust&lang=en#section-2",
    "Contact us at support@example.org or visit http://localhost:8080/api/v1.",
    # Mixed case.
    "THIS SENTENCE IS ALL UPPER CASE.",
    "tHiS iS mIxEd CaSe TeXt",
    "iPhone eBay McDonald's NASA",
    # Very long single words (beyond WordPiece's 100-character word limit) and accents.
    "a" * 150,
    "Pneumonoultramicroscopicsilicovolcanoconiosis",
    "supercalifragilisticexpialidocious" * 5,
    "naïve café résumé coöperate",
    "ﬁne ligatures and full-width ＡＢＣ１２３",
]


def default_model_dir() -> Path:
    explicit = os.environ.get("OUTPOST_MODEL_DIR")
    if explicit:
        return Path(explicit)
    home = os.environ.get("OUTPOST_HOME")
    if not home:
        sys.exit(
            "make_reference.py: no model directory: pass MODEL_DIR or set OUTPOST_MODEL_DIR or "
            "OUTPOST_HOME"
        )
    return Path(home) / "models" / "all-MiniLM-L6-v2"


def read_jsonl(path: Path, limit: int) -> list[dict]:
    rows = []
    with path.open(encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            rows.append(json.loads(line))
            if len(rows) == limit:
                break
    if len(rows) < limit:
        sys.exit(f"make_reference.py: {path} has only {len(rows)} records, need {limit}")
    return rows


def doc_text(doc: dict) -> str:
    """A SciFact document as embedded: title, one space, text (same join as parity.rs)."""
    return doc["title"] + " " + doc["text"]


def round7(values) -> list[float]:
    return [float(f"{float(v):.7g}") for v in values]


def dump(fixture: dict) -> str:
    """JSON with one text or query per line: compact, yet reviewable as a diff."""

    def compact(value) -> str:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))

    lines = ["{"]
    for key, value in fixture.items():
        if key == "texts":
            lines.append(f'"{key}":[')
            lines.append(",\n".join(compact(t) for t in value))
            lines.append("],")
        elif key == "scifact":
            inner = ",".join(
                f"{compact(k)}:{compact(v)}" for k, v in value.items() if k != "queries"
            )
            lines.append(f'"{key}":{{{inner},"queries":[')
            lines.append(",\n".join(compact(q) for q in value["queries"]))
            lines.append("]}")
        else:
            lines.append(f"{compact(key)}:{compact(value)},")
    lines.append("}")
    text = "\n".join(lines) + "\n"
    json.loads(text)  # the layout above must still be valid JSON
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model_dir", nargs="?", type=Path, help="all-MiniLM-L6-v2 directory")
    parser.add_argument("--scifact", type=Path, default=DEFAULT_SCIFACT, help="BEIR SciFact dir")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="fixture to write")
    args = parser.parse_args()

    model_dir = args.model_dir or default_model_dir()
    if not (model_dir / "model.safetensors").is_file():
        sys.exit(f"make_reference.py: no model.safetensors in {model_dir}")

    import numpy as np
    import sentence_transformers
    import torch
    from sentence_transformers import SentenceTransformer

    torch.manual_seed(0)
    model = SentenceTransformer(str(model_dir), device="cpu")
    model.eval()
    if model.max_seq_length != 256:
        sys.exit(f"make_reference.py: expected max_seq_length 256, got {model.max_seq_length}")

    def embed(texts: list[str]) -> np.ndarray:
        return model.encode(
            texts,
            batch_size=32,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        ).astype(np.float64)

    if len(set(TEXTS)) != len(TEXTS):
        sys.exit("make_reference.py: TEXTS has duplicates")
    text_vecs = embed(TEXTS)

    docs = read_jsonl(args.scifact / "corpus.jsonl", N_DOCS)
    queries = read_jsonl(args.scifact / "queries.jsonl", N_QUERIES)
    doc_vecs = embed([doc_text(d) for d in docs])
    query_vecs = embed([q["text"] for q in queries])
    scores = query_vecs @ doc_vecs.T

    results = []
    for q, row in zip(queries, scores):
        # Stable sort on descending score: ties keep corpus order.
        order = np.argsort(-row, kind="stable")
        top = order[:TOP_K]
        results.append(
            {
                "id": q["_id"],
                "top10": [docs[i]["_id"] for i in top],
                "scores": round7(row[top]),
                "score11": round7([row[order[TOP_K]]])[0],
            }
        )

    fixture = {
        "model": MODEL_ID,
        "generated_by": "scripts/parity/make_reference.py",
        "sentence_transformers": sentence_transformers.__version__,
        "torch": torch.__version__,
        "max_seq_length": model.max_seq_length,
        "texts": [
            {"text": t, "embedding": round7(v)} for t, v in zip(TEXTS, text_vecs)
        ],
        "scifact": {
            "docs": N_DOCS,
            "doc_text": "title + \" \" + text",
            "queries": results,
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", encoding="utf-8") as f:
        f.write(dump(fixture))
    print(
        f"wrote {args.out}: {len(TEXTS)} texts, {len(results)} queries over {N_DOCS} docs, "
        f"{args.out.stat().st_size} bytes"
    )


if __name__ == "__main__":
    main()
