//! Text extraction, each format: the first byte picks Markdown, HTML, PDF, JSONL or plain text
//! (by the file name's extension, as a walk would), the rest is the file. What must hold:
//! `ingest::extract::extract` returns documents or an input error and never panics (but inside
//! the PDF parser, whose panics it catches on purpose); a whole-file format gives one document
//! of that format with text; a JSONL file gives its records and bad lines with line numbers
//! inside the file. Each extracted text is then chunked, embedded (the hash embedder) and
//! stored through `Engine::ingest_document`, which must succeed.
#![no_main]

use std::path::Path;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use outpost_core::ingest::extract::{extract, Format};
use outpost_core::IngestOptions;
use outpost_fuzz::Scratch;

const NAMES: [&str; 5] = [
    "doc.md",
    "page.html",
    "file.pdf",
    "records.jsonl",
    "notes.txt",
];

/// Texts longer than this are extracted but not stored (a store per run would be slow).
const STORE_AT_MOST: usize = 16 * 1024;

static DB: OnceLock<(Scratch, outpost_core::Engine)> = OnceLock::new();

fuzz_target!(
    init: outpost_fuzz::abort_on_panic_except_in_pdf_parser(),
    |data: &[u8]| {
        let Some((&pick, bytes)) = data.split_first() else {
            return;
        };
        let path = Path::new(NAMES[usize::from(pick) % NAMES.len()]);
        let format = Format::of(path);
        let Ok((docs, bad)) = extract(path, bytes) else {
            return;
        };
        if format == Format::Jsonl {
            let lines = bytes.split(|&b| b == b'\n').count();
            assert!(!docs.is_empty(), "JSONL: Ok without a record");
            for b in &bad {
                assert!(b.line >= 1 && b.line <= lines, "bad line {} of {lines}", b.line);
            }
        } else {
            assert_eq!(docs.len(), 1, "one document per {format:?} file");
            assert!(bad.is_empty());
            assert!(!docs[0].text.trim().is_empty(), "{format:?}: Ok with no text");
        }
        let (_, engine) = DB.get_or_init(|| {
            let scratch = Scratch::new();
            let engine = scratch.engine();
            (scratch, engine)
        });
        for doc in docs.into_iter().filter(|d| d.text.len() <= STORE_AT_MOST) {
            assert_eq!(doc.format, format);
            if let Err(e) = engine.ingest_document("fuzz:extract", doc, &IngestOptions::default()) {
                panic!("an extracted document was not stored: {e}");
            }
        }
    }
);
