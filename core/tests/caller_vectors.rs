//! Texts stored with vectors the caller made with a model of its own (a LangChain `Embeddings`,
//! say): kept unsplit in a collection of that model, found by vectors of that model only, and
//! updated, left unchanged, deleted and brought back by source like any other document.

use std::sync::Arc;

use outpost_core::{
    Engine, ErrorKind, HashEmbedder, IngestOptions, PutOutcome, SearchMode, SearchOptions,
    TextInput,
};

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn text(source: &str, text: &str, metadata: serde_json::Value) -> TextInput {
    TextInput {
        text: text.into(),
        title: None,
        source: source.into(),
        metadata: metadata.as_object().cloned().unwrap_or_default(),
    }
}

fn k(k: usize) -> SearchOptions {
    SearchOptions {
        k,
        ..Default::default()
    }
}

#[test]
fn vectors_of_the_callers_own_model_are_stored_and_searched_apart() -> TestResult {
    let dir = tempfile::tempdir()?;
    // The engine's own model has 32 dimensions; the caller's has 3.
    let engine = Engine::open(dir.path().join("o.db"), Arc::new(HashEmbedder::new(32)), 1)?;
    let model = "langchain:fake";
    let meta =
        serde_json::json!({"id": 1, "topic": "bees", "score": 0.5, "seen": true, "none": null});

    let foo = engine.put_text_with_vector(
        "lc",
        model,
        text("1", "foo", meta.clone()),
        vec![1.0, 0.0, 0.0],
    )?;
    assert_eq!(
        (foo.outcome, foo.chunks, foo.source.as_str()),
        (PutOutcome::Added, 1, "1")
    );
    let bar = engine.put_text_with_vector(
        "lc",
        model,
        text("2", "bar", serde_json::json!({})),
        vec![0.0, 1.0, 0.0],
    )?;

    // Nearest first, by cosine similarity; the text is stored whole, the metadata as given.
    let hits = engine.search_by_vector_of(model, &[0.1, 0.9, 0.0], &k(5))?;
    let sources: Vec<&str> = hits.iter().map(|h| h.source.as_str()).collect();
    assert_eq!(sources, ["2", "1"]);
    assert!((hits[0].score - 0.9939).abs() < 1e-3, "{}", hits[0].score);
    let stored = engine.get_document(&foo.id)?;
    assert_eq!(
        stored.metadata, meta,
        "no `format` key added, numbers and null kept"
    );
    assert_eq!(stored.chunks.len(), 1);
    assert_eq!(stored.chunks[0].text, "foo");

    // The same source with the same text, metadata and vector again changes nothing; with a
    // new text it keeps its id and replaces its chunk.
    let again = engine.put_text_with_vector(
        "lc",
        model,
        text("1", "foo", meta.clone()),
        vec![1.0, 0.0, 0.0],
    )?;
    assert_eq!(
        (again.outcome, again.id.as_str()),
        (PutOutcome::Unchanged, foo.id.as_str())
    );
    let moved = engine.put_text_with_vector(
        "lc",
        model,
        text("1", "new foo", meta),
        vec![0.0, 1.0, 0.1],
    )?;
    assert_eq!(
        (moved.outcome, moved.id.as_str()),
        (PutOutcome::Updated, foo.id.as_str())
    );
    let hits = engine.search_by_vector_of(model, &[0.0, 0.0, 1.0], &k(1))?;
    assert_eq!(
        (hits[0].source.as_str(), hits[0].text.as_str()),
        ("1", "new foo")
    );

    // Deleted, it is gone from searches and from its source; stored again, it is back.
    engine.delete_document(&bar.id)?;
    assert_eq!(
        engine
            .search_by_vector_of(model, &[0.0, 1.0, 0.0], &k(5))?
            .len(),
        1
    );
    assert_eq!(engine.document_by_source("lc", "2")?, None);
    let back = engine.put_text_with_vector(
        "lc",
        model,
        text("2", "bar", serde_json::json!({})),
        vec![0.0, 1.0, 0.0],
    )?;
    assert_eq!(
        (back.outcome, back.id.as_str()),
        (PutOutcome::Added, bar.id.as_str())
    );

    // The engine's own model does not see these vectors, and its own ingest and search work
    // beside them.
    assert!(engine
        .search_by_vector_of("another model", &[1.0, 0.0, 0.0], &k(5))?
        .is_empty());
    let mine = IngestOptions::default();
    engine.ingest_text(
        text(
            "notes/bees",
            "Bees dance to show where flowers are.",
            serde_json::json!({}),
        ),
        &mine,
    )?;
    let own = engine.search("where are the flowers", &k(5))?;
    assert_eq!(own[0].source, "notes/bees");
    Ok(())
}

#[test]
fn a_collection_holds_the_vectors_of_one_model_and_one_size() -> TestResult {
    let dir = tempfile::tempdir()?;
    let engine = Engine::open(dir.path().join("o.db"), Arc::new(HashEmbedder::new(32)), 1)?;
    engine.put_text_with_vector(
        "lc",
        "m1",
        text("a", "alpha", serde_json::json!({})),
        vec![1.0, 0.0],
    )?;

    let other_model = engine.put_text_with_vector(
        "lc",
        "m2",
        text("b", "beta", serde_json::json!({})),
        vec![0.0, 1.0],
    );
    assert!(
        matches!(other_model, Err(ref e) if e.kind() == ErrorKind::InvalidInput),
        "{other_model:?}"
    );
    let other_size = engine.put_text_with_vector(
        "lc",
        "m1",
        text("b", "beta", serde_json::json!({})),
        vec![0.0, 1.0, 0.0],
    );
    assert!(
        matches!(other_size, Err(ref e) if e.kind() == ErrorKind::InvalidInput),
        "{other_size:?}"
    );
    let wrong_query = engine.search_by_vector_of("m1", &[1.0, 0.0, 0.0], &k(1));
    assert!(wrong_query.is_err(), "{wrong_query:?}");

    // Nothing stored is refused with a reason, and nothing is written.
    let nested = engine.put_text_with_vector(
        "lc",
        "m1",
        text("c", "gamma", serde_json::json!({"tags": ["x"]})),
        vec![1.0, 0.0],
    );
    assert!(
        matches!(nested, Err(ref e) if e.to_string().contains("tags")),
        "{nested:?}"
    );
    let no_source = engine.put_text_with_vector(
        "lc",
        "m1",
        text(" ", "gamma", serde_json::json!({})),
        vec![1.0, 0.0],
    );
    assert!(no_source.is_err());
    let nan = engine.put_text_with_vector(
        "lc",
        "m1",
        text("c", "gamma", serde_json::json!({})),
        vec![f32::NAN, 0.0],
    );
    assert!(nan.is_err());
    assert_eq!(
        engine.search_by_vector_of("m1", &[1.0, 0.0], &k(5))?.len(),
        1
    );
    Ok(())
}

#[test]
fn a_pulled_text_of_another_model_waits_in_a_collection_of_the_callers_vectors() -> TestResult {
    let dir = tempfile::tempdir()?;
    let a = Engine::open(dir.path().join("a.db"), Arc::new(HashEmbedder::new(32)), 1)?;
    let b = Engine::open(dir.path().join("b.db"), Arc::new(HashEmbedder::new(32)), 1)?;
    // Each device keeps `lc` for the vectors of a model of the app's, not the same one.
    a.put_text_with_vector(
        "lc",
        "model-a",
        text("1", "foo", serde_json::json!({})),
        vec![1.0, 0.0, 0.0],
    )?;
    b.put_text_with_vector(
        "lc",
        "model-b",
        text("2", "bar", serde_json::json!({})),
        vec![0.0, 1.0, 0.0],
    )?;

    let batch = a.outbox_batch(100)?;
    let local = (b.embedder().model_id().to_string(), b.embedder().dims());
    let report = b.apply_pulled(&batch.changes, "cursor", "1", (&local.0, local.1))?;
    assert_eq!(
        report.reembed, 1,
        "model-a's vector is not model-b's: stored without it"
    );

    // B's engine cannot make model-b's vectors: the text waits, queued, and nothing fails.
    assert_eq!(b.reembed_pending(&|| false)?, 0);
    assert_eq!(b.pending_reembed_count()?, 1);
    let text = SearchOptions {
        mode: SearchMode::Text,
        ..k(5)
    };
    assert_eq!(b.search("foo", &text)?[0].source, "1", "found by its words");
    let hits = b.search_by_vector_of("model-b", &[0.0, 1.0, 0.0], &k(5))?;
    assert_eq!(
        hits.iter().map(|h| h.source.as_str()).collect::<Vec<_>>(),
        ["2"]
    );
    Ok(())
}
