//! The filter parser and a search with its filters: the input's first byte picks the search
//! mode (hybrid, vector, text) and k, its first line is the query, each further line (up to
//! eight) a filter parsed by `str::parse::<Filter>()`; the search runs through `Engine::search`
//! over a store of 2,050 documents (above the HNSW threshold, so the graph and its filtered
//! scan answer) with text, number and boolean metadata. What must hold: a filter either parses
//! or is refused as invalid input; the search answers or refuses the filters as invalid input
//! or a missing collection, never a panic or another error; every hit satisfies a `source=`
//! filter's prefix and a `collection=` filter's name, and no more than k come back.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use outpost_core::{
    Engine, ErrorKind, Filter, FilterOp, NewChunk, NewDocument, SearchMode, SearchOptions,
};
use outpost_fuzz::Scratch;
use serde_json::{json, Map, Value};

const DOCS: usize = 2_050;
const WORDS: [&str; 9] = [
    "bees", "hive", "varroa", "honey", "queen", "smoke", "frame", "wax", "pollen",
];

static STORE: OnceLock<(Scratch, Engine)> = OnceLock::new();

fn store() -> &'static Engine {
    &STORE
        .get_or_init(|| {
            let scratch = Scratch::new();
            let engine = scratch.engine();
            for name in ["default", "notes"] {
                engine.ensure_collection(name).expect("a collection");
            }
            let collections = engine.collections().expect("the collections");
            for i in 0..DOCS {
                let text = format!("{} {} {i}", WORDS[i % 9], WORDS[i % 7]);
                let embedding = engine
                    .embedder()
                    .embed(&[&text])
                    .expect("a vector")
                    .remove(0);
                let metadata = match json!({
                    "topic": WORDS[i % 5],
                    "year": 2000 + (i % 30) as i64,
                    "score": i as f64 / 7.0,
                    "draft": i % 3 == 0,
                }) {
                    Value::Object(m) => m,
                    _ => Map::new(),
                };
                let doc = NewDocument {
                    source: format!("{}/doc{i}.md", ["docs", "notes/a", "api:x"][i % 3]),
                    title: format!("doc {i}"),
                    content_hash: format!("h{i}"),
                    metadata,
                };
                let chunk = NewChunk {
                    token_count: 3,
                    byte_end: text.len(),
                    text,
                    embedding,
                    ..NewChunk::default()
                };
                engine
                    .put_embedded(&collections[i % 2], &doc, &[chunk])
                    .expect("a document");
            }
            engine.refresh_indexes().expect("the indexes");
            (scratch, engine)
        })
        .1
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let mut lines = text.split('\n');
    let query = lines.next().unwrap_or_default();
    let mut filters = Vec::new();
    for line in lines.take(8) {
        match line.parse::<Filter>() {
            Ok(f) => filters.push(f),
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::InvalidInput, "{line:?}: {e}");
                return;
            }
        }
    }
    let opts = SearchOptions {
        k: usize::from(pick >> 2) % 20,
        mode: [
            SearchMode::Hybrid,
            SearchMode::Vector,
            SearchMode::Text,
            SearchMode::Hybrid,
        ][usize::from(pick & 3)],
        filters: filters.clone(),
        ..SearchOptions::default()
    };
    let hits = match store().search(query, &opts) {
        Ok(hits) => hits,
        Err(e) if matches!(e.kind(), ErrorKind::InvalidInput | ErrorKind::NotFound) => return,
        Err(e) => panic!("search {query:?} {filters:?}: {e}"),
    };
    assert!(
        hits.len() <= opts.k,
        "{} hits for k = {}",
        hits.len(),
        opts.k
    );
    for f in filters.iter().filter(|f| f.op == FilterOp::Eq) {
        for h in &hits {
            match f.key.as_str() {
                "source" => assert!(h.source.starts_with(&f.value), "{h:?} for {f:?}"),
                "collection" => assert_eq!(h.collection, f.value, "{h:?} for {f:?}"),
                _ => {}
            }
        }
    }
});
