#!/usr/bin/env python3
"""Regenerate the test fixtures in core/tests/fixtures/.

Uses only the Python 3 standard library and is fully deterministic: running
it twice produces byte-identical files (no timestamps, no randomness).

Usage:
    python3 scripts/make-fixtures.py            # write the fixtures
    python3 scripts/make-fixtures.py --check    # verify, exit 1 on mismatch
    python3 scripts/make-fixtures.py --out DIR  # write somewhere else

Fixtures:
    hello.pdf      PDF 1.4, Helvetica text layer (HELLO_PDF_LINES), uncompressed
    scanned.pdf    PDF 1.4 whose only page content is an 8x8 grayscale image
    binary.bin     4096 bytes with NUL bytes, fixed pattern
    latin1.txt     ISO-8859-1 text with accents (invalid UTF-8)
    empty.txt      zero bytes
    blank.md       whitespace and newlines only
    records.jsonl  5 lines; line 3 is malformed JSON
    page.html      <title>Fixture Page</title>, script/style noise, 2 paragraphs
    notes.md       "# Title" heading and 3 sections
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "core" / "tests" / "fixtures"

# The exact text lines drawn into hello.pdf, top to bottom. Tests may assert
# on these strings. Keep them plain ASCII without parentheses or backslashes
# so they need no escaping inside a PDF string literal.
HELLO_PDF_LINES = [
    "Outpost reads PDF files.",
    "The quick brown fox jumps over the lazy dog.",
    "Offline search works without a network connection.",
]


# --------------------------------------------------------------------------
# Minimal PDF writer
# --------------------------------------------------------------------------


def build_pdf(objects: list[bytes], root: int, info: int | None = None) -> bytes:
    """Assemble a PDF 1.4 file from object bodies.

    objects[i] is the body of object number i + 1 (without "N 0 obj" /
    "endobj"). Byte offsets for the cross-reference table are computed from
    the bytes actually written, so the xref is always exact.
    """
    out = bytearray()
    # Header, then a comment with four bytes >= 128 so tools treat the file
    # as binary (recommended by the PDF specification).
    out += b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n"
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number
        out += body
        if not body.endswith(b"\n"):
            out += b"\n"
        out += b"endobj\n"

    xref_offset = len(out)
    size = len(objects) + 1
    out += b"xref\n"
    out += b"0 %d\n" % size
    # Each entry is exactly 20 bytes: 10-digit offset, space, 5-digit
    # generation, space, type, and a two-byte end of line (space + LF).
    out += b"0000000000 65535 f \n"
    for off in offsets:
        out += b"%010d 00000 n \n" % off
    out += b"trailer\n"
    trailer = b"<< /Size %d /Root %d 0 R" % (size, root)
    if info is not None:
        trailer += b" /Info %d 0 R" % info
    trailer += b" >>\n"
    out += trailer
    out += b"startxref\n%d\n%%%%EOF\n" % xref_offset
    return bytes(out)


def stream_object(dictionary: bytes, data: bytes) -> bytes:
    """A stream object body with an exact /Length."""
    entries = (dictionary + b" " if dictionary else b"") + b"/Length %d" % len(data)
    return (
        b"<< "
        + entries
        + b" >>\n"
        + b"stream\n"
        + data
        + b"\nendstream\n"
    )


def pdf_string(text: str) -> bytes:
    """Encode text as a PDF literal string, escaping the special characters."""
    escaped = text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
    return b"(" + escaped.encode("latin-1") + b")"


def make_hello_pdf() -> bytes:
    # US Letter page, 612 x 792 points. One line every 18 points, starting
    # one inch from the left and about 1.3 inches from the top.
    lines = [b"BT", b"/F1 12 Tf", b"72 700 Td"]
    for i, text in enumerate(HELLO_PDF_LINES):
        if i > 0:
            lines.append(b"0 -18 Td")
        lines.append(pdf_string(text) + b" Tj")
    lines.append(b"ET")
    content = b"\n".join(lines)

    objects = [
        # 1: catalog
        b"<< /Type /Catalog /Pages 2 0 R >>",
        # 2: page tree
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        # 3: the page
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792]"
        b" /Resources << /Font << /F1 5 0 R >> /ProcSet [/PDF /Text] >>"
        b" /Contents 4 0 R >>",
        # 4: uncompressed content stream
        stream_object(b"", content),
        # 5: standard 14 font, no embedding needed
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica"
        b" /Encoding /WinAnsiEncoding >>",
        # 6: document info (fixed, no dates, so output is deterministic)
        b"<< /Title (Outpost hello fixture) /Producer (scripts/make-fixtures.py) >>",
    ]
    return build_pdf(objects, root=1, info=6)


def make_scanned_pdf() -> bytes:
    # 8x8 8-bit grayscale checkerboard-like gradient, stored uncompressed.
    width = height = 8
    pixels = bytearray()
    for y in range(height):
        for x in range(width):
            base = 0x20 if (x + y) % 2 == 0 else 0xD0
            pixels.append((base + 4 * x + 2 * y) & 0xFF)
    # The page draws the image at 2 x 2 inches; there are no BT/ET/Tj
    # operators anywhere in the file, like a scan that was never OCR'd.
    content = b"q\n144 0 0 144 72 576 cm\n/Im1 Do\nQ"

    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792]"
        b" /Resources << /XObject << /Im1 5 0 R >> /ProcSet [/PDF /ImageB] >>"
        b" /Contents 4 0 R >>",
        stream_object(b"", content),
        stream_object(
            b"/Type /XObject /Subtype /Image /Width %d /Height %d"
            b" /ColorSpace /DeviceGray /BitsPerComponent 8" % (width, height),
            bytes(pixels),
        ),
    ]
    return build_pdf(objects, root=1)


# --------------------------------------------------------------------------
# Other fixtures
# --------------------------------------------------------------------------


def make_binary_bin() -> bytes:
    """4 KiB of binary data: a fixed 32-bit LCG, with a NUL every 16 bytes."""
    out = bytearray(b"\x00\x01\x02\x03OUTPOST\x00\xff\xfe\x00\x00")
    state = 0x12345678
    while len(out) < 4096:
        if len(out) % 16 == 0:
            out.append(0)
            continue
        state = (1103515245 * state + 12345) & 0xFFFFFFFF
        out.append((state >> 16) & 0xFF)
    return bytes(out[:4096])


LATIN1_TEXT = (
    "Café au lait à la crème, s'il vous plaît.\n"
    "Die Bienen überwintern in der Traube; Schöne Grüße aus München.\n"
    "El niño comió jalapeños en la montaña.\n"
    "Façade, naïve, déjà vu, señor, smörgåsbord.\n"
)

RECORDS_JSONL = (
    '{"id": "rec-1", "title": "First record", "text": "Outpost indexes JSONL records one line at a time.", "metadata": {"topic": "fixtures", "year": 2024}}\n'
    '{"id": "rec-2", "title": "Second record", "text": "Each valid line becomes one document with its own metadata.", "metadata": {"topic": "fixtures", "year": 2023}}\n'
    '{"id": "rec-3", "title": "Broken record", "text": "This line is truncated in the mid\n'
    '{"id": "rec-4", "title": "Fourth record", "text": "A malformed line must be reported, not silently dropped.", "metadata": {"topic": "fixtures", "year": 2025}}\n'
    '{"id": "rec-5", "title": "Fifth record", "text": "Ingestion continues after the bad line and keeps the rest.", "metadata": {"topic": "fixtures", "year": 2022}}\n'
)

PAGE_HTML = """<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Fixture Page</title>
  <style>
    /* STYLE_SENTINEL_MUST_NOT_APPEAR */
    body { font-family: sans-serif; color: #333; }
    .style-sentinel::after { content: "STYLE_CONTENT_MUST_NOT_APPEAR"; }
  </style>
  <script>
    // SCRIPT_SENTINEL_MUST_NOT_APPEAR
    var message = "SCRIPT_CONTENT_MUST_NOT_APPEAR";
    console.log(message);
  </script>
</head>
<body>
  <h1>Fixture Page</h1>
  <p>The first paragraph explains that lighthouse keepers once trimmed the lamp wicks every four hours.</p>
  <p>The second paragraph notes that a well-kept logbook records the weather, passing ships and the oil used each night.</p>
</body>
</html>
"""

NOTES_MD = """# Field Notes

A short Markdown document used by the ingestion and chunking tests.

## Equipment

- A notebook with waterproof paper.
- Two pencils, because ink freezes in the cold.
- A hand lens with 10x magnification.

## Observations

The river rose by 30 centimetres overnight after the storm. Herons were
fishing in the shallows below the weir at dawn.

## Next Steps

1. Repeat the river level reading at the same time tomorrow.
2. Photograph the weir from the footbridge.
3. Copy these notes into the main log.
"""


def fixtures() -> dict[str, bytes]:
    return {
        "hello.pdf": make_hello_pdf(),
        "scanned.pdf": make_scanned_pdf(),
        "binary.bin": make_binary_bin(),
        "latin1.txt": LATIN1_TEXT.encode("iso-8859-1"),
        "empty.txt": b"",
        "blank.md": b"   \n\n\t\n    \n\n",
        "records.jsonl": RECORDS_JSONL.encode("utf-8"),
        "page.html": PAGE_HTML.encode("utf-8"),
        "notes.md": NOTES_MD.encode("utf-8"),
    }


def self_check(files: dict[str, bytes]) -> None:
    """Sanity checks on the generated bytes; raise on failure."""
    for name, data in files.items():
        assert len(data) < 20 * 1024, f"{name} is too large"
    for name in ("hello.pdf", "scanned.pdf"):
        data = files[name]
        assert data.startswith(b"%PDF-1.4\n") and data.endswith(b"%%EOF\n")
        # startxref must point at the "xref" keyword.
        start = int(data.rsplit(b"startxref\n", 1)[1].split(b"\n", 1)[0])
        assert data[start : start + 5] == b"xref\n", name
        # Every in-use xref entry must point at "N 0 obj".
        table = data[start:].split(b"trailer", 1)[0].split(b"\n")[2:]
        for number, entry in enumerate(table[1:], start=1):
            if entry.strip():
                off = int(entry[:10])
                assert data[off:].startswith(b"%d 0 obj\n" % number), (name, number)
    assert b"BT" not in files["scanned.pdf"] and b"Tj" not in files["scanned.pdf"]
    assert b"\x00" in files["binary.bin"] and len(files["binary.bin"]) == 4096
    try:
        files["latin1.txt"].decode("utf-8")
    except UnicodeDecodeError:
        pass
    else:
        raise AssertionError("latin1.txt must not be valid UTF-8")
    assert files["blank.md"].strip() == b"" and files["blank.md"]
    import json

    lines = files["records.jsonl"].decode("utf-8").splitlines()
    assert len(lines) == 5
    for i, line in enumerate(lines, start=1):
        try:
            json.loads(line)
            ok = True
        except json.JSONDecodeError:
            ok = False
        assert ok == (i != 3), f"records.jsonl line {i}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument(
        "--check",
        action="store_true",
        help="compare existing files with the generated bytes instead of writing",
    )
    args = parser.parse_args()

    files = fixtures()
    self_check(files)

    if args.check:
        bad = []
        for name, data in files.items():
            path = args.out / name
            if not path.is_file() or path.read_bytes() != data:
                bad.append(name)
        if bad:
            print("out of date: " + ", ".join(bad), file=sys.stderr)
            return 1
        print(f"{len(files)} fixtures up to date in {args.out}")
        return 0

    args.out.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (args.out / name).write_bytes(data)
        print(f"wrote {name} ({len(data)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
