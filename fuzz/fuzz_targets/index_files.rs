//! The derived index file loaders (HNSW graph `.usearch`, its f32 rows `.vectors`, the text
//! index `.lex`): a database of 2,050 chunks (above the HNSW threshold) with its saved index
//! files is copied, and the file of the kind the first byte picks is replaced by the rest of the
//! input — as it is, or (second byte's low bit) as the payload of a sound header of this format
//! whose checksum covers as much of it as the third and fourth bytes say, so that the bytes get
//! past the header to usearch's and our own payload parsers. Then a new engine searches (vector
//! and text) and checks the store. What must hold: a file that is not sound is rejected and the
//! index rebuilt from SQLite; nothing panics or reads out of bounds; both searches answer, and
//! `Engine::check` returns (whatever problems it names).
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use outpost_core::{Engine, NewChunk, NewDocument, SearchMode, SearchOptions};
use outpost_fuzz::{index_file, magic, template, Scratch};

const CHUNKS: usize = 2_050;
const WORDS: [&str; 7] = [
    "amber", "birch", "cedar", "delta", "ember", "fjord", "grove",
];

static TEMPLATE: OnceLock<Scratch> = OnceLock::new();

fn build(engine: &Engine) {
    let collection = engine.ensure_collection("default").expect("a collection");
    for d in 0..CHUNKS / 10 {
        let chunks: Vec<NewChunk> = (0..10)
            .map(|c| {
                let i = d * 10 + c;
                let text = format!("{} {} {i}", WORDS[i % 7], WORDS[i % 5]);
                NewChunk {
                    embedding: engine
                        .embedder()
                        .embed(&[&text])
                        .expect("a vector")
                        .remove(0),
                    token_count: 3,
                    byte_end: text.len(),
                    text,
                    ..NewChunk::default()
                }
            })
            .collect();
        let doc = NewDocument {
            source: format!("doc{d}.md"),
            title: format!("doc {d}"),
            content_hash: format!("h{d}"),
            metadata: serde_json::Map::new(),
        };
        engine
            .put_embedded(&collection, &doc, &chunks)
            .expect("a document");
    }
    engine.refresh_indexes().expect("the indexes");
}

fuzz_target!(|data: &[u8]| {
    let [pick, mode, c0, c1, payload @ ..] = data else {
        return;
    };
    let (suffix, kind) = [
        (".usearch", magic::GRAPH),
        (".vectors", magic::ROWS),
        (".lex", magic::TEXT),
    ][usize::from(*pick) % 3];
    let scratch = Scratch::copy_of(template(&TEMPLATE, build));
    let ann = scratch.dir().join("db.sqlite.ann");
    let file = std::fs::read_dir(&ann)
        .expect("the index folder")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.to_string_lossy().ends_with(suffix))
        .expect("a saved index file of each kind");
    let bytes = if mode & 1 == 0 {
        payload.to_vec()
    } else {
        let checked = usize::from(u16::from_le_bytes([*c0, *c1]));
        let checked = if mode & 2 == 0 {
            payload.len()
        } else {
            checked
        };
        index_file(kind, payload, checked)
    };
    std::fs::write(&file, bytes).expect("writing the fuzzed index file");
    let engine = scratch.engine();
    for mode in [SearchMode::Vector, SearchMode::Text] {
        let opts = SearchOptions {
            k: 5,
            mode,
            ..SearchOptions::default()
        };
        if let Err(e) = engine.search("cedar ember", &opts) {
            panic!("{mode:?} search over a fuzzed {suffix}: {e}");
        }
    }
    if let Err(e) = engine.check() {
        panic!("check over a fuzzed {suffix}: {e}");
    }
    outpost_fuzz::close(engine);
});
