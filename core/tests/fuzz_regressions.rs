//! Regressions found by the fuzz targets (`fuzz/`, `scripts/fuzz.sh`); each test is named after
//! what broke, and the input that found it is kept in `fuzz/seeds/<target>/regression-*`, so
//! every fuzz run replays it too.

use std::sync::Arc;

use outpost_core::{Engine, HashEmbedder, NewChunk, NewDocument, SearchMode, SearchOptions};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// `apply_change` (`fuzz/seeds/apply_change/regression-int8-scale-inf`): a vector of subnormal
/// components (finite, so accepted) is too small to normalise; the HNSW index's int8 scale,
/// 127 over its largest component, came out infinite, and the index could be saved but never
/// loaded again ("damaged: int8 scale inf"), so unloading it failed.
#[test]
fn a_vector_too_small_to_normalise_keeps_the_int8_scale_finite() -> TestResult {
    let dir = tempfile::tempdir()?;
    let engine = Engine::open(
        dir.path().join("db.sqlite"),
        Arc::new(HashEmbedder::new(8)),
        1,
    )?;
    let collection = engine.ensure_collection("default")?;
    let doc = NewDocument {
        source: "tiny.md".into(),
        title: "tiny".into(),
        content_hash: "h".into(),
        metadata: serde_json::Map::new(),
    };
    let chunk = NewChunk {
        text: "tiny".into(),
        token_count: 1,
        byte_end: 4,
        embedding: vec![1e-44; 8],
        ..NewChunk::default()
    };
    engine.put_embedded(&collection, &doc, &[chunk])?;
    let opts = SearchOptions {
        mode: SearchMode::Vector,
        ..SearchOptions::default()
    };
    engine.search("tiny", &opts)?;
    engine.unload_indexes()?;
    engine.search("tiny", &opts)?;
    assert_eq!(engine.check()?, Vec::<String>::new());
    Ok(())
}
