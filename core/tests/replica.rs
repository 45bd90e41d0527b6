//! The replication record without a server: every write queues a change; applying changes by
//! last-writer-wins makes two stores equal, whatever the order they arrive in.

use outpost_core::{Change, NewChunk, NewDocument, Store};

type TestResult = Result<(), Box<dyn std::error::Error>>;

const MODEL: (&str, usize) = ("test-model", 3);

fn put(store: &mut Store, source: &str, text: &str) -> Result<String, outpost_core::Error> {
    let c = store.ensure_collection("notes", MODEL.0, MODEL.1)?;
    let doc = NewDocument {
        source: source.into(),
        title: source.into(),
        content_hash: format!("{text}-hash"),
        ..Default::default()
    };
    let chunk = NewChunk {
        text: text.into(),
        byte_end: text.len(),
        embedding: vec![1.0, text.len() as f32, 0.5],
        ..Default::default()
    };
    Ok(store.put_document(&c, &doc, &[chunk])?.0)
}

/// Moves everything queued in `from` into `to`, as a push and a pull would.
fn ship(from: &mut Store, to: &mut Store) -> Result<Vec<Change>, outpost_core::Error> {
    let batch = from.outbox_batch(1000)?;
    to.apply_pulled(&batch.changes, "cursor", "test", MODEL)?;
    from.acknowledge(&batch.entries)?;
    Ok(batch.changes)
}

#[test]
fn every_write_is_queued_and_an_acknowledged_one_leaves_the_outbox() -> TestResult {
    let mut a = Store::open_in_memory()?;
    let id = put(&mut a, "a.txt", "alpha")?;
    let conv = a.create_conversation("chat")?;
    a.add_message(&conv.id, "user", "hi", None)?;
    assert_eq!(a.outbox_depth()?, 3);
    let batch = a.outbox_batch(10)?;
    assert_eq!(batch.changes.len(), 3);
    // An edit after the batch was read re-queues the document: acknowledging the old row must
    // not drop the new edit.
    put(&mut a, "a.txt", "alpha two")?;
    assert_eq!(a.acknowledge(&batch.entries)?, 2);
    let left = a.outbox_batch(10)?;
    assert_eq!(left.changes.len(), 1);
    assert_eq!(left.changes[0].id(), id);
    Ok(())
}

#[test]
fn two_stores_converge_whatever_the_order() -> TestResult {
    let mut a = Store::open_in_memory()?;
    let mut b = Store::open_in_memory()?;
    put(&mut a, "a.txt", "alpha")?;
    put(&mut b, "b.txt", "beta")?;
    let from_a = ship(&mut a, &mut b)?;
    ship(&mut b, &mut a)?;
    // Applying the same records again (a replayed pull) changes nothing.
    let again = b.apply_pulled(&from_a, "cursor", "test", MODEL)?;
    assert_eq!((again.applied, again.skipped), (0, 1));
    assert_eq!(a.checksums()?, b.checksums()?);
    assert_eq!(a.stats()?.collections[0].documents, 2);
    Ok(())
}

#[test]
fn concurrent_edits_resolve_to_the_last_writer_on_both_sides() -> TestResult {
    let mut a = Store::open_in_memory()?;
    let mut b = Store::open_in_memory()?;
    let id = put(&mut a, "a.txt", "first")?;
    ship(&mut a, &mut b)?;
    // Both delete-vs-edit orders: b deletes, then a edits later (by its clock).
    b.delete_document(&id)?;
    a.set_clock_skew_ms(60_000);
    put(&mut a, "a.txt", "edited later")?;
    let from_b = b.outbox_batch(10)?;
    let from_a = a.outbox_batch(10)?;
    a.apply_pulled(&from_b.changes, "cursor", "x", MODEL)?;
    b.apply_pulled(&from_a.changes, "cursor", "x", MODEL)?;
    assert_eq!(a.checksums()?, b.checksums()?);
    assert!(!b.get_document(&id)?.summary.deleted, "the later edit wins");
    Ok(())
}

#[test]
fn a_wall_clock_going_backwards_still_orders_edits() -> TestResult {
    let mut a = Store::open_in_memory()?;
    let mut b = Store::open_in_memory()?;
    let id = put(&mut a, "a.txt", "one")?;
    ship(&mut a, &mut b)?;
    // a's clock jumps an hour back; its next edit must still beat its previous one.
    a.set_clock_skew_ms(-3_600_000);
    put(&mut a, "a.txt", "two")?;
    ship(&mut a, &mut b)?;
    assert_eq!(b.get_document(&id)?.content_hash, "two-hash");
    // b's clock is an hour behind a's: once it has seen a's edit, its own edit still wins.
    b.set_clock_skew_ms(-7_200_000);
    b.delete_document(&id)?;
    ship(&mut b, &mut a)?;
    assert!(a.get_document(&id)?.summary.deleted);
    assert_eq!(a.checksums()?, b.checksums()?);
    Ok(())
}

#[test]
fn the_same_path_on_two_devices_is_two_documents() -> TestResult {
    let mut a = Store::open_in_memory()?;
    let mut b = Store::open_in_memory()?;
    put(&mut a, "notes/todo.md", "a's list")?;
    put(&mut b, "notes/todo.md", "b's list")?;
    ship(&mut a, &mut b)?;
    ship(&mut b, &mut a)?;
    assert_eq!(a.stats()?.collections[0].documents, 2);
    assert_eq!(a.checksums()?, b.checksums()?);
    // Re-ingesting on b updates b's own document, not a's.
    put(&mut b, "notes/todo.md", "b's new list")?;
    assert_eq!(b.stats()?.collections[0].documents, 2);
    Ok(())
}

#[test]
fn vectors_of_another_model_are_queued_for_local_embedding() -> TestResult {
    let mut a = Store::open_in_memory()?;
    let mut b = Store::open_in_memory()?;
    put(&mut a, "a.txt", "alpha")?;
    let batch = a.outbox_batch(10)?;
    let report = b.apply_pulled(&batch.changes, "cursor", "x", ("other-model", 3))?;
    assert_eq!(report.reembed, 1);
    let pending = b.pending_reembed()?;
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].1, ["alpha"]);
    b.store_reembedded(&pending[0].0, &[vec![0.0, 1.0, 0.0]])?;
    assert!(b.pending_reembed()?.is_empty());
    Ok(())
}

#[test]
fn a_parked_change_is_skipped_kept_and_back_when_due_or_edited() -> TestResult {
    let mut a = Store::open_in_memory()?;
    let big = put(&mut a, "big.txt", "too large for the server")?;
    let small = put(&mut a, "small.txt", "fine")?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as i64;
    let batch = a.outbox_batch(10)?;
    let entry = batch
        .entries
        .iter()
        .find(|e| e.id == big)
        .ok_or("big is queued")?;

    // Set aside for an hour: later batches skip it, and nothing is lost.
    a.park(entry, "statement timeout", now + 3_600_000)?;
    let ids: Vec<String> = a
        .outbox_batch(10)?
        .entries
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(ids, vec![small.clone()]);
    assert_eq!(a.outbox_depth()?, 2, "the parked row stays in the outbox");
    let parked = a.parked()?;
    assert_eq!(parked.len(), 1);
    assert_eq!(
        (parked[0].id.as_str(), parked[0].reason.as_str()),
        (big.as_str(), "statement timeout")
    );

    // An edit queues a new change, which is pushed as usual; the old park no longer applies.
    put(&mut a, "big.txt", "smaller now")?;
    assert!(a.outbox_batch(10)?.entries.iter().any(|e| e.id == big));
    assert!(a.parked()?.is_empty());

    // A park whose time has come lets the row through again.
    let entry = a
        .outbox_batch(10)?
        .entries
        .into_iter()
        .find(|e| e.id == big)
        .ok_or("big is queued")?;
    a.park(&entry, "request too large", now - 1)?;
    assert!(a.outbox_batch(10)?.entries.iter().any(|e| e.id == big));

    // Once acknowledged, row and park are gone.
    let batch = a.outbox_batch(10)?;
    a.acknowledge(&batch.entries)?;
    assert_eq!(a.outbox_depth()?, 0);
    assert!(a.parked()?.is_empty());
    Ok(())
}
