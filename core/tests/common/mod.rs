//! Shared test helpers: the real embedding model, loaded once per test binary.

use std::sync::{Arc, OnceLock};

use outpost_models::BertEmbedder;

/// The real all-MiniLM-L6-v2, from `OUTPOST_MODEL_DIR` or the model cache under `OUTPOST_HOME`.
pub fn model() -> Arc<BertEmbedder> {
    static MODEL: OnceLock<Arc<BertEmbedder>> = OnceLock::new();
    MODEL
        .get_or_init(|| {
            let dir = outpost_models::resolve_model_dir(None).unwrap_or_else(|e| {
                panic!("the real model is needed for this test: {e}; run scripts/test.sh (it fetches it) or `outpost models fetch`, with the same OUTPOST_HOME")
            });
            let device = outpost_models::select_device(false);
            Arc::new(BertEmbedder::load(&dir, &device).unwrap_or_else(|e| panic!("loading {}: {e}", dir.display())))
        })
        .clone()
}

/// The repository's example corpus.
#[allow(dead_code)]
pub fn corpus() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/corpus")
}

/// A test fixture file.
#[allow(dead_code)]
pub fn fixture(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}
