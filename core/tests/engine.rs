//! The engine's locking: ingestion embeds with no connection held, so reads and other writes
//! go on while the model runs.

use std::path::PathBuf;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use outpost_core::{
    EmbedError, Embedder, Engine, HashEmbedder, IngestOptions, SearchMode, SearchOptions,
};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// A [`HashEmbedder`] that, once armed, says when it starts embedding and then waits to be let
/// go: a model in the middle of a long batch.
struct Held {
    inner: HashEmbedder,
    started: Mutex<Option<Sender<()>>>,
    release: Mutex<Option<Receiver<()>>>,
}

impl Embedder for Held {
    fn model_id(&self) -> &str {
        self.inner.model_id()
    }
    fn dims(&self) -> usize {
        self.inner.dims()
    }
    fn max_tokens(&self) -> usize {
        self.inner.max_tokens()
    }
    fn tokenizer(&self) -> std::result::Result<&tokenizers::Tokenizer, EmbedError> {
        self.inner.tokenizer()
    }
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let release = self
            .release
            .lock()
            .map_err(|_| EmbedError("poisoned".into()))?
            .take();
        if let Some(release) = release {
            if let Some(started) = self
                .started
                .lock()
                .map_err(|_| EmbedError("poisoned".into()))?
                .take()
            {
                let _ = started.send(());
            }
            // Bounded, so a broken engine fails the test instead of hanging it.
            release
                .recv_timeout(Duration::from_secs(60))
                .map_err(|_| EmbedError("never released".into()))?;
        }
        self.inner.embed(texts)
    }
}

#[test]
fn reads_and_writes_go_on_while_an_ingest_is_embedding() -> TestResult {
    let dir = tempfile::tempdir()?;
    let (started_tx, started_rx) = channel();
    let (release_tx, release_rx) = channel();
    let model = Arc::new(Held {
        inner: HashEmbedder::new(32),
        started: Mutex::new(None),
        release: Mutex::new(None),
    });
    let engine = Arc::new(Engine::open(dir.path().join("o.db"), model.clone(), 2)?);
    let opts = IngestOptions::default();
    let file = dir.path().join("notes.md");
    std::fs::write(&file, "# Bees\nA swarm leaves the hive with the old queen.")?;
    engine.ingest(&[file], &opts, &mut |_| {})?;

    *model.release.lock().map_err(|e| e.to_string())? = Some(release_rx);
    *model.started.lock().map_err(|e| e.to_string())? = Some(started_tx);
    let slow = dir.path().join("slow.md");
    std::fs::write(&slow, "# Wasps\nWasps build paper nests from chewed wood.")?;
    let ingesting = {
        let engine = engine.clone();
        let slow: PathBuf = slow.clone();
        std::thread::spawn(move || engine.ingest(&[slow], &IngestOptions::default(), &mut |_| {}))
    };
    started_rx.recv_timeout(Duration::from_secs(60))?;

    // The model is busy: a search (a read) and a new conversation (a write) still finish.
    let query = HashEmbedder::new(32).embed(&["swarm"])?.remove(0);
    let hits = engine.search_by_vector(
        &query,
        &SearchOptions {
            mode: SearchMode::Vector,
            ..Default::default()
        },
    )?;
    assert_eq!(hits.len(), 1, "only the first file is stored yet: {hits:?}");
    let conversation = engine.create_conversation("while embedding")?;
    engine.add_message(&conversation.id, "user", "still here")?;

    release_tx.send(())?;
    let report = ingesting
        .join()
        .map_err(|_| "the ingest thread panicked")??;
    assert_eq!((report.added, report.failed), (1, 0));
    let stats = engine.stats()?;
    assert_eq!(
        stats.collections.iter().map(|c| c.documents).sum::<usize>(),
        2
    );
    assert_eq!(stats.messages, 1);
    Ok(())
}

#[test]
fn the_last_engine_on_a_file_frees_its_derived_indexes() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("x.db");
    let open = || Engine::open(&path, Arc::new(HashEmbedder::new(384)), 1);
    let text = SearchOptions {
        mode: SearchMode::Text,
        ..Default::default()
    };
    let engine = open()?;
    let note = outpost_core::TextInput {
        text: "Glaciers carve valleys.".into(),
        title: None,
        source: "notes/ice".into(),
        metadata: serde_json::Map::new(),
    };
    engine.ingest_text(note, &IngestOptions::default())?;
    engine.search("glaciers", &text)?;
    assert!(
        engine.index_memory()?.text > 0,
        "the search loaded the text index"
    );

    // Shared while any engine on the file is open ...
    let second = open()?;
    drop(engine);
    assert!(second.index_memory()?.text > 0);
    // ... and freed with the last one (a process that opens many databases in turn kept every
    // one's indexes until it exited: a fuzzer ran out of 4 GB).
    drop(second);
    let third = open()?;
    assert_eq!(third.index_memory()?.text, 0);
    // Loaded again when needed, with the same answer.
    assert_eq!(third.search("glaciers", &text)?.len(), 1);
    assert!(third.index_memory()?.text > 0);
    Ok(())
}
