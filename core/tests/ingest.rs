//! Ingestion with the real model: dedup, replace, and bad input that is reported and harmless.

mod common;

use std::path::PathBuf;

use outpost_core::ingest::{ingest_paths, IngestReport};
use outpost_core::{Error, IngestOptions, NewChunk, NewDocument, Store};

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn ingest(
    store: &mut Store,
    paths: &[PathBuf],
    opts: &IngestOptions,
) -> Result<IngestReport, Error> {
    let store = std::cell::RefCell::new(store);
    ingest_paths(&store, common::model().as_ref(), paths, opts, &mut |_| {})
}

fn chunk_ids(store: &Store, doc: &str) -> Result<Vec<String>, Error> {
    Ok(store
        .get_document(doc)?
        .chunks
        .into_iter()
        .map(|c| c.id)
        .collect())
}

/// Rows in the chunk table, the vector index and the full-text index.
fn index_rows(store: &Store) -> Result<(i64, i64, i64), Box<dyn std::error::Error>> {
    let conn = store.connection();
    let chunks = conn.query_row("SELECT count(*) FROM chunks", [], |r| r.get(0))?;
    let vectors = conn.query_row("SELECT count(*) FROM vec_chunks_1", [], |r| r.get(0))?;
    let fts = conn.query_row("SELECT count(*) FROM chunks_fts", [], |r| r.get(0))?;
    Ok((chunks, vectors, fts))
}

#[test]
fn reingesting_an_unchanged_file_is_a_no_op_and_a_changed_one_replaces_its_chunks() -> TestResult {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("note.md");
    std::fs::write(
        &file,
        "# Hives\n\nBees build comb from wax.\n\n## Winter\n\nThey cluster to keep warm.",
    )?;
    let mut store = Store::open(dir.path().join("o.db"))?;
    let opts = IngestOptions::default();

    let first = ingest(&mut store, std::slice::from_ref(&file), &opts)?;
    assert_eq!(
        (first.added, first.updated, first.unchanged, first.failed),
        (1, 0, 0, 0)
    );
    let id = first.documents[0].id.clone();
    let old_chunks = chunk_ids(&store, &id)?;

    let again = ingest(&mut store, std::slice::from_ref(&file), &opts)?;
    assert_eq!((again.added, again.updated, again.unchanged), (0, 0, 1));
    assert_eq!(
        chunk_ids(&store, &id)?,
        old_chunks,
        "unchanged file keeps its chunks"
    );

    let long: String = (0..120)
        .map(|i| format!("Paragraph {i} on propolis, pollen and nectar flows.\n\n"))
        .collect();
    std::fs::write(&file, format!("# Hives\n\n{long}"))?;
    let changed = ingest(&mut store, &[file], &opts)?;
    assert_eq!((changed.added, changed.updated), (0, 1));
    assert_eq!(
        changed.documents[0].id, id,
        "a changed file keeps its document id"
    );
    let doc = store.get_document(&id)?;
    assert!(doc.chunks.len() > 1);
    assert_eq!(doc.rev, 2);
    assert!(
        doc.chunks.iter().all(|c| !old_chunks.contains(&c.id)),
        "old chunks are gone"
    );
    let (chunks, vectors, fts) = index_rows(&store)?;
    assert_eq!(
        (chunks, vectors, fts),
        (doc.chunks.len() as i64, chunks, chunks)
    );
    for c in &doc.chunks {
        assert!(
            c.token_count <= opts.chunking.max_tokens,
            "chunk of {} tokens",
            c.token_count
        );
    }
    Ok(())
}

#[test]
fn each_format_is_extracted_with_a_title() -> TestResult {
    let dir = tempfile::tempdir()?;
    let mut store = Store::open(dir.path().join("o.db"))?;
    let files = ["hello.pdf", "page.html", "notes.md"].map(common::fixture);
    let report = ingest(&mut store, &files, &IngestOptions::default())?;
    assert_eq!(report.added, 3, "{:?}", report.failures);
    let docs = store.list_documents(None, false, 10)?;
    let text_of = |name: &str| -> Result<(String, String), Error> {
        let d = docs
            .iter()
            .find(|d| d.source.ends_with(name))
            .expect("ingested");
        let detail = store.get_document(&d.id)?;
        Ok((
            detail.summary.title,
            detail
                .chunks
                .iter()
                .map(|c| c.text.as_str())
                .collect::<Vec<_>>()
                .join("\n"),
        ))
    };
    let (_, pdf) = text_of("hello.pdf")?;
    assert!(pdf.contains("Outpost reads PDF files."), "{pdf}");
    let (title, html) = text_of("page.html")?;
    assert_eq!(title, "Fixture Page");
    assert!(
        !html.contains("SENTINEL") && !html.contains("MUST_NOT_APPEAR"),
        "{html}"
    );
    let (title, _) = text_of("notes.md")?;
    assert_eq!(title, "Field Notes");
    Ok(())
}

fn failure_for<'a>(report: &'a IngestReport, name: &str) -> &'a str {
    report
        .failures
        .iter()
        .find(|f| f.path.contains(name))
        .map(|f| f.reason.as_str())
        .unwrap_or_else(|| panic!("no failure reported for {name}: {:?}", report.failures))
}

#[test]
fn bad_files_are_reported_by_name_and_stored_data_is_kept() -> TestResult {
    let dir = tempfile::tempdir()?;
    let mut store = Store::open(dir.path().join("o.db"))?;
    let good = ingest(
        &mut store,
        &[common::fixture("notes.md")],
        &IngestOptions::default(),
    )?;
    assert_eq!(good.added, 1);

    let big = dir.path().join("big.txt");
    std::fs::write(&big, "word ".repeat(2000))?;
    let loop_dir = dir.path().join("loop");
    std::fs::create_dir(&loop_dir)?;
    std::os::unix::fs::symlink(&loop_dir, loop_dir.join("again"))?;
    let inputs: Vec<PathBuf> = [
        "empty.txt",
        "blank.md",
        "binary.bin",
        "latin1.txt",
        "scanned.pdf",
        "records.jsonl",
    ]
    .map(common::fixture)
    .into_iter()
    .chain([big, loop_dir, dir.path().join("missing.txt")])
    .collect();
    let opts = IngestOptions {
        max_file_size: 5000,
        ..Default::default()
    };
    let report = ingest(&mut store, &inputs, &opts)?;

    assert!(failure_for(&report, "empty.txt").contains("empty file"));
    assert!(failure_for(&report, "blank.md").contains("empty file"));
    assert!(failure_for(&report, "binary.bin").contains("binary file"));
    assert!(failure_for(&report, "latin1.txt").contains("invalid UTF-8 at byte"));
    assert!(failure_for(&report, "scanned.pdf").contains("no text layer"));
    assert!(failure_for(&report, "records.jsonl:3").contains("invalid JSON"));
    assert!(failure_for(&report, "big.txt").contains("over the size limit of 5000 bytes"));
    assert!(failure_for(&report, "loop").contains("symbolic link loop"));
    assert!(failure_for(&report, "missing.txt").contains("unreadable"));
    assert_eq!(report.failed, 9);
    // The JSONL file's good lines were ingested despite line 3.
    assert_eq!(report.added, 4);
    assert_eq!(
        store.list_documents(None, false, 100)?.len(),
        5,
        "nothing stored was lost"
    );
    assert_eq!(store.integrity_check()?, vec!["ok".to_string()]);
    Ok(())
}

#[test]
fn a_vector_of_the_wrong_dimension_is_refused_and_nothing_is_written() -> TestResult {
    let mut store = Store::open_in_memory()?;
    let c = store.ensure_collection("c", "m", 4)?;
    let doc = NewDocument {
        source: "s".into(),
        title: "t".into(),
        content_hash: "h".into(),
        ..Default::default()
    };
    let ok = NewChunk {
        text: "a".into(),
        byte_end: 1,
        embedding: vec![0.5; 4],
        ..Default::default()
    };
    let bad = NewChunk {
        text: "b".into(),
        byte_end: 1,
        embedding: vec![0.5; 3],
        ..Default::default()
    };
    let err = store
        .put_document(&c, &doc, &[ok, bad])
        .expect_err("wrong dimension");
    assert!(
        matches!(
            err,
            Error::DimensionMismatch {
                expected: 4,
                got: 3,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("collection 'c'"));
    assert!(store.list_documents(None, true, 10)?.is_empty());
    Ok(())
}

#[test]
fn a_collection_keeps_the_model_it_was_made_with() -> TestResult {
    let mut store = Store::open_in_memory()?;
    store.ensure_collection("notes", "model-a", 384)?;
    let err = store
        .ensure_collection("notes", "model-b", 768)
        .expect_err("other model");
    assert!(err.to_string().contains("model-a"), "{err}");
    Ok(())
}

#[test]
fn a_deleted_document_leaves_a_tombstone_and_its_chunks_go() -> TestResult {
    let dir = tempfile::tempdir()?;
    let mut store = Store::open(dir.path().join("o.db"))?;
    let report = ingest(
        &mut store,
        &[common::fixture("notes.md")],
        &IngestOptions::default(),
    )?;
    let id = &report.documents[0].id;
    store.delete_document(id)?;
    assert!(store.list_documents(None, false, 10)?.is_empty());
    let all = store.list_documents(None, true, 10)?;
    assert!(all[0].deleted);
    assert_eq!(index_rows(&store)?, (0, 0, 0));
    assert!(matches!(
        store.delete_document(id),
        Err(Error::NotFound { .. })
    ));
    // Ingesting the file again revives the same document.
    let again = ingest(
        &mut store,
        &[common::fixture("notes.md")],
        &IngestOptions::default(),
    )?;
    assert_eq!(&again.documents[0].id, id);
    assert_eq!(again.added, 1);
    Ok(())
}

#[test]
fn a_record_removed_from_a_jsonl_file_is_deleted_unless_a_line_is_malformed() -> TestResult {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("faq.jsonl");
    let line =
        |id: &str| format!("{{\"id\":\"{id}\",\"title\":\"{id}\",\"text\":\"answer {id}\"}}\n");
    std::fs::write(&file, [line("a"), line("b"), line("c")].concat())?;
    let mut store = Store::open(dir.path().join("o.db"))?;
    let opts = IngestOptions::default();
    assert_eq!(
        ingest(&mut store, std::slice::from_ref(&file), &opts)?.added,
        3
    );

    // A malformed line might be the missing record: nothing is deleted.
    std::fs::write(
        &file,
        [line("a"), "{\"id\":\"b\",\n".to_string(), line("c")].concat(),
    )?;
    let report = ingest(&mut store, std::slice::from_ref(&file), &opts)?;
    assert_eq!((report.unchanged, report.removed, report.failed), (2, 0, 1));
    assert_eq!(store.list_documents(None, false, 10)?.len(), 3);

    std::fs::write(&file, [line("a"), line("c")].concat())?;
    let report = ingest(&mut store, &[file], &opts)?;
    assert_eq!((report.unchanged, report.removed), (2, 1));
    let live: Vec<String> = store
        .list_documents(None, false, 10)?
        .into_iter()
        .map(|d| d.title)
        .collect();
    assert_eq!(live.len(), 2);
    assert!(!live.contains(&"b".to_string()));
    Ok(())
}
