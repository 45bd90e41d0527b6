//! The agent's durable work queue and document moves, on a real SQLite file: work survives a
//! reopen, bursts coalesce, and work re-queued while it ran is not lost.

use outpost_core::{NewChunk, NewDocument, Store, WorkItem, WorkOp};

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn item(path: &str, op: WorkOp) -> WorkItem {
    WorkItem {
        path: path.into(),
        op,
        collection: "notes".into(),
    }
}

#[test]
fn queued_work_survives_a_reopen_and_a_burst_for_one_path_is_one_piece_of_work() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("outpost.db");
    {
        let mut store = Store::open(&path)?;
        let burst: Vec<WorkItem> = (0..1000)
            .map(|i| item(&format!("/notes/{}.md", i % 10), WorkOp::Index))
            .collect();
        store.enqueue_work(&burst)?;
        store.enqueue_work(&[item("/notes/3.md", WorkOp::Index)])?;
    }
    let store = Store::open(&path)?;
    assert_eq!(store.work_depth()?, 10);
    let work = store.next_work(100)?;
    assert_eq!(work.len(), 10);
    // Oldest first: /notes/3.md was queued again last.
    assert_eq!(
        work.last().map(|w| w.item.path.as_str()),
        Some("/notes/3.md")
    );
    Ok(())
}

#[test]
fn work_queued_again_while_it_ran_is_kept() -> TestResult {
    let mut store = Store::open_in_memory()?;
    store.enqueue_work(&[item("/a.md", WorkOp::Index)])?;
    let first = store.next_work(1)?.remove(0);
    // The file changes again while the worker indexes it.
    store.enqueue_work(&[item("/a.md", WorkOp::Index)])?;
    assert!(!store.finish_work("/a.md", first.seq)?);
    let second = store.next_work(1)?.remove(0);
    assert!(second.seq > first.seq);
    assert!(store.finish_work("/a.md", second.seq)?);
    assert_eq!(store.work_depth()?, 0);
    Ok(())
}

#[test]
fn failed_work_is_put_off_and_counted() -> TestResult {
    let mut store = Store::open_in_memory()?;
    store.enqueue_work(&[item("/a.md", WorkOp::Index)])?;
    let w = store.next_work(1)?.remove(0);
    store.retry_work("/a.md", w.seq, "disk on fire", 60_000)?;
    assert!(store.next_work(10)?.is_empty(), "not due for a minute");
    assert_eq!(store.work_depth()?, 1);
    store.retry_work("/a.md", w.seq, "disk on fire", -1)?;
    let again = store.next_work(1)?.remove(0);
    assert_eq!(again.attempts, 2);
    assert_eq!(again.last_error.as_deref(), Some("disk on fire"));
    Ok(())
}

#[test]
fn a_delete_after_a_queued_move_deletes_the_origin_too() -> TestResult {
    let mut store = Store::open_in_memory()?;
    let moved = WorkOp::Move {
        from: "/old.md".into(),
    };
    store.enqueue_work(&[item("/new.md", moved.clone())])?;
    // Modified after the rename: still a move (which indexes too).
    store.enqueue_work(&[item("/new.md", WorkOp::Index)])?;
    assert_eq!(store.next_work(10)?[0].item.op, moved);
    // Deleted before the move ran: both paths' documents must go.
    store.enqueue_work(&[item("/new.md", WorkOp::Delete)])?;
    let mut ops: Vec<(String, WorkOp)> = store
        .next_work(10)?
        .into_iter()
        .map(|w| (w.item.path, w.item.op))
        .collect();
    ops.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        ops,
        vec![
            ("/new.md".into(), WorkOp::Delete),
            ("/old.md".into(), WorkOp::Delete)
        ]
    );
    Ok(())
}

#[test]
fn a_moved_document_keeps_its_id_and_chunks_and_travels_to_the_outbox() -> TestResult {
    let mut store = Store::open_in_memory()?;
    let c = store.ensure_collection("notes", "test-model", 3)?;
    let doc = NewDocument {
        source: "/notes/tides.md".into(),
        title: "tides".into(),
        content_hash: "h1".into(),
        ..Default::default()
    };
    let chunk = NewChunk {
        text: "Tides follow the moon.".into(),
        byte_end: 22,
        embedding: vec![1.0, 0.0, 0.0],
        ..Default::default()
    };
    let (id, _) = store.put_document(&c, &doc, &[chunk])?;
    let before = store.outbox_depth()?;
    let batch = store.outbox_batch(100)?;
    store.acknowledge(&batch.entries)?;

    let moved = store.move_document(&c, "/notes/tides.md", "/notes/moon-tides.md")?;
    assert_eq!(moved.as_deref(), Some(id.as_str()));
    let d = store.get_document(&id)?;
    assert_eq!(d.summary.source, "/notes/moon-tides.md");
    assert_eq!(
        d.summary.title, "moon-tides",
        "a title that was the file name follows it"
    );
    assert_eq!(d.chunks.len(), 1);
    assert_eq!(
        store.outbox_depth()?,
        1,
        "the move is queued for sync ({before} before)"
    );
    assert!(store.document_by_source(&c, "/notes/tides.md")?.is_none());

    // Nothing to move from, or something already at the destination: no move.
    assert_eq!(
        store.move_document(&c, "/notes/gone.md", "/notes/x.md")?,
        None
    );
    let (other, _) = store.put_document(
        &c,
        &NewDocument {
            source: "/notes/x.md".into(),
            content_hash: "h2".into(),
            ..doc.clone()
        },
        &[],
    )?;
    assert_eq!(
        store.move_document(&c, "/notes/moon-tides.md", "/notes/x.md")?,
        None
    );
    assert_ne!(other, id);
    Ok(())
}
