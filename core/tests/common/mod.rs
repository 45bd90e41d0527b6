//! Shared test helpers: the real embedding model, loaded once per test binary.

use std::sync::{Arc, OnceLock};

use outpost_models::BertEmbedder;

/// The real all-MiniLM-L6-v2, from `OUTPOST_MODEL_DIR` or the model cache under `OUTPOST_HOME`.
#[allow(dead_code)]
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

/// SplitMix64: a small deterministic generator, so that test data (and the index fixtures made
/// from it) is the same on every run and machine.
#[allow(dead_code)]
pub struct Rng(pub u64);

#[allow(dead_code)]
impl Rng {
    /// The next value, uniform in [-0.5, 0.5).
    pub fn next(&mut self) -> f32 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    }
}
