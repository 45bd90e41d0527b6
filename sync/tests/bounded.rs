//! Bounded pushes: a push call carries at most `batch_size` records and `batch_bytes` of them;
//! a call the server refuses as too slow (its `statement_timeout`) or as malformed is split
//! until the one record it cannot take is alone, and that record is set aside with the
//! server's reason, in the outbox still, without holding up the rest or the pull. A document
//! larger than a call may carry goes in staged parts, committed in one server transaction
//! (schema version 3), so no reader sees part of it and a cut mid-upload loses nothing.
//!
//! The "too slow" record is played by a trigger on the test database that sleeps past the
//! statement timeout for documents under `slow/`, and the malformed one by a trigger that
//! rejects documents under `bad/` as the server rejects a record it cannot store: each stands
//! for what a real server does with such a record, on the real Postgres.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{user, Db, Device, TestResult};
use outpost_sync::pg::PgTransport;
use outpost_sync::{Backoff, BoxFuture, Central, SyncOptions, Transport};
use serde_json::Value;

const TRIGGERS: &str = r#"
create function public.test_refuse() returns trigger language plpgsql as $$
begin
  if new.source like 'slow/%' then perform pg_sleep(5); end if;
  if new.source like 'bad/%' then
    raise exception 'document % cannot be stored here', new.source using errcode = '22023';
  end if;
  return new;
end $$;
create trigger test_refuse before insert or update on public.outpost_documents
  for each row execute function public.test_refuse();
"#;

/// A device holding six one-line notes and, last, a note of some 40 paragraphs (as many
/// vectors), far larger than each of the others.
fn six_notes_and_a_long_one() -> Result<Device, Box<dyn std::error::Error>> {
    let mut a = Device::new()?;
    for n in 0..6 {
        a.put(&format!("notes/{n}.md"), &format!("Note {n}."))?;
    }
    let long: String = (0..40).map(|p| format!("Paragraph {p}.\n\n")).collect();
    a.put("notes/long.md", &long)?;
    Ok(a)
}

fn opts(device: &Device) -> SyncOptions {
    let mut o = device.options();
    o.backoff = Backoff {
        initial: Duration::from_millis(10),
        max: Duration::from_millis(50),
        give_up_after: Some(Duration::from_millis(200)),
    };
    o
}

#[tokio::test]
async fn a_record_the_server_refuses_is_set_aside_and_the_rest_goes_through() -> TestResult {
    if common::local_only(
        "a_record_the_server_refuses_is_set_aside_and_the_rest_goes_through",
        "it adds a trigger to the central tables, which needs a superuser",
    ) {
        return Ok(());
    }
    let db = Db::new(true).await?;
    db.admin().await?.batch_execute(TRIGGERS).await?;
    let u = user();
    // 2 s for a call: the server cancels the statement at 1.8 s.
    let central = Central::new(outpost_sync::pg::PgTransport::new(
        &db.url,
        &u,
        Duration::from_secs(2),
    )?);
    let mut a = Device::new()?;
    for n in 0..4 {
        a.put(&format!("notes/{n}.md"), &format!("Note {n}."))?;
    }
    a.put(
        "slow/huge.md",
        "A document the server takes too long to store.",
    )?;
    a.put("bad/odd.md", "A document the server rejects.")?;
    for n in 4..8 {
        a.put(&format!("notes/{n}.md"), &format!("Note {n}."))?;
    }

    let report =
        outpost_sync::sync_once(&a.sync_engine()?, &central, &opts(&a), &mut |_| {}).await?;
    assert_eq!((report.push_applied, report.parked), (8, 2), "{report:?}");
    assert_eq!(
        a.engine.outbox_depth()?,
        2,
        "the refused changes stay queued"
    );
    let status = outpost_sync::status(&a.engine)?;
    let mut parked: Vec<(String, String)> = status
        .parked
        .iter()
        .map(|p| (p.kind.clone(), p.reason.clone()))
        .collect();
    parked.sort();
    assert_eq!(parked.len(), 2);
    assert!(parked.iter().all(|(kind, _)| kind == "document"));
    assert!(
        parked
            .iter()
            .any(|(_, r)| r.contains("too large for the server")),
        "{parked:?}"
    );
    assert!(
        parked
            .iter()
            .any(|(_, r)| r.contains("bad/odd.md cannot be stored here")),
        "{parked:?}"
    );

    // The next round neither retries them (not due yet) nor fails; another device pulls the
    // eight that were stored.
    let again =
        outpost_sync::sync_once(&a.sync_engine()?, &central, &opts(&a), &mut |_| {}).await?;
    assert_eq!((again.pushed, again.parked), (0, 0), "{again:?}");
    let b = Device::new()?;
    common::settle(&db).await?;
    let pulled =
        outpost_sync::sync_once(&b.sync_engine()?, &central, &opts(&b), &mut |_| {}).await?;
    assert_eq!(pulled.pulled, 8, "{pulled:?}");

    // Once the server can take it, an edit of the slow document is pushed at once.
    db.admin()
        .await?
        .batch_execute("drop trigger test_refuse on public.outpost_documents")
        .await?;
    a.put(
        "slow/huge.md",
        "A document the server takes too long to store, edited.",
    )?;
    let edited =
        outpost_sync::sync_once(&a.sync_engine()?, &central, &opts(&a), &mut |_| {}).await?;
    assert_eq!((edited.push_applied, edited.parked), (1, 0), "{edited:?}");
    let status = outpost_sync::status(&a.engine)?;
    assert_eq!(
        status.parked.len(),
        1,
        "the rejected one waits for its time"
    );
    assert_eq!(a.engine.outbox_depth()?, 1);
    Ok(())
}

#[tokio::test]
async fn push_calls_keep_within_the_byte_cap_and_a_larger_document_goes_in_parts() -> TestResult {
    let db = Db::new(true).await?;
    let u = user();
    let central = db.pg(&u).measure_wire();
    let a = six_notes_and_a_long_one()?;
    let batch = a.engine.outbox_batch(100)?;
    let small = central.push_size(&batch.changes[0]).await;
    let large = central.push_size(&batch.changes[6]).await;
    assert!(large > 4 * small);

    // Room for two small records per call: three calls for the six; the long one (40 chunks)
    // is staged in parts of at most the same size, then committed.
    let mut o = opts(&a);
    o.batch_bytes = 2 * small + small / 2;
    let report = outpost_sync::sync_once(&a.sync_engine()?, &central, &o, &mut |_| {}).await?;
    assert_eq!(
        (report.push_applied, report.push_staged),
        (7, 1),
        "{report:?}"
    );
    let (push, stage, commit) = (
        central.wire_bytes("outpost_push"),
        central.wire_bytes("outpost_stage"),
        central.wire_bytes("outpost_push_staged"),
    );
    assert_eq!((push.calls, commit.calls), (3, 1));
    assert!(
        stage.calls as usize >= large / o.batch_bytes && stage.calls < 40,
        "{stage:?}"
    );
    assert_eq!(report.push_calls as u64, push.calls + stage.calls + 1);
    assert_eq!(a.engine.outbox_depth()?, 0);
    Ok(())
}

#[tokio::test]
async fn over_rest_a_request_too_large_and_a_statement_timeout_set_the_record_aside() -> TestResult
{
    if common::local_only(
        "over_rest_a_request_too_large_and_a_statement_timeout_set_the_record_aside",
        "it sets the stand-in's body limit and the role's statement_timeout of its own database",
    ) {
        return Ok(());
    }
    // A server before staged pushes (schema version 2): a document too large for one request
    // cannot be pushed at all, so it is set aside.
    let db = Db::at_version(2).await?;
    let admin = db.admin().await?;
    admin.batch_execute(TRIGGERS).await?;
    // As Supabase sets it per role (8 s for `authenticated`), shorter here so the test is quick.
    let name = db.url.rsplit('/').next().ok_or("a database name")?;
    admin
        .batch_execute(&format!(
            "alter role authenticated in database {name} set statement_timeout = '1s'"
        ))
        .await?;
    let mut config = db.standin_config();
    config.max_body_bytes = 64 * 1024;
    let shim = outpost_sync::shim::Shim::start_with(config).await?;
    let u = user();
    let central = common::rest(&shim.url, &u);

    let mut a = Device::new()?;
    for n in 0..4 {
        a.put(&format!("notes/{n}.md"), &format!("Note {n}."))?;
    }
    // Some 60 chunks of 384 floats as JSON: more than the 64 kB the gateway takes in one body.
    let long: String = (0..60).map(|p| format!("Paragraph {p}.\n\n")).collect();
    a.put("notes/long.md", &long)?;
    a.put(
        "slow/huge.md",
        "A document the server takes too long to store.",
    )?;

    let report =
        outpost_sync::sync_once(&a.sync_engine()?, &central, &opts(&a), &mut |_| {}).await?;
    assert_eq!((report.push_applied, report.parked), (4, 2), "{report:?}");
    let reasons: Vec<String> = outpost_sync::status(&a.engine)?
        .parked
        .into_iter()
        .map(|p| p.reason)
        .collect();
    assert!(
        reasons
            .iter()
            .all(|r| r.contains("too large for the server")),
        "{reasons:?}"
    );
    assert!(reasons.iter().any(|r| r.contains("413")), "{reasons:?}");
    assert!(
        reasons.iter().any(|r| r.contains("statement timeout")),
        "{reasons:?}"
    );
    assert_eq!(a.engine.outbox_depth()?, 2);
    Ok(())
}

#[tokio::test]
async fn pull_pages_keep_within_the_byte_cap_and_a_larger_record_comes_alone() -> TestResult {
    let db = Db::new(true).await?;
    let u = user();
    let central = db.pg(&u);
    let a = six_notes_and_a_long_one()?;
    outpost_sync::sync_once(&a.sync_engine()?, &central, &opts(&a), &mut |_| {}).await?;
    common::settle(&db).await?;

    // A whole page by rows alone, then pages of at most 6 kB: the long document (some 40
    // vectors) exceeds that and comes alone; the small ones share pages.
    central.check(&a.options().model, a.options().dims).await?;
    let all = central.pull("", 100, None, "").await?;
    assert_eq!((all.changes.len(), all.more), (7, false));
    let (mut cursor, mut pages) = (String::new(), Vec::new());
    loop {
        let page = central.pull(&cursor, 100, Some(6_000), "").await?;
        pages.push(page.changes.len());
        cursor = page.next_cursor;
        if !page.more {
            break;
        }
    }
    assert_eq!(pages.iter().sum::<usize>(), 7, "{pages:?}");
    assert!(pages.len() >= 3 && pages.contains(&1), "{pages:?}");

    // A device pulling with the cap gets everything, exactly once.
    let b = Device::new()?;
    let mut o = opts(&b);
    o.pull_bytes = 6_000;
    let report = outpost_sync::sync_once(&b.sync_engine()?, &central, &o, &mut |_| {}).await?;
    assert_eq!(report.pulled, 7, "{report:?}");
    assert!(b.verify(&central).await?.equal);
    Ok(())
}

/// A device holding one document of `n` paragraphs (as many chunks and vectors).
fn one_long_document(n: usize) -> Result<(Device, String), Box<dyn std::error::Error>> {
    let mut a = Device::new()?;
    let long: String = (0..n)
        .map(|p| format!("Paragraph {p} of the long document.\n\n"))
        .collect();
    let id = a.put("notes/long.md", &long)?;
    Ok((a, id))
}

/// The central chunk rows of document `id`, and the staged chunk rows of any upload.
async fn central_rows(db: &Db, id: &str) -> Result<(i64, i64), Box<dyn std::error::Error>> {
    let chunks = db
        .scalar(&format!(
            "select count(*) from public.outpost_document_chunks where document_id = '{id}'"
        ))
        .await?;
    let staged = db
        .scalar("select count(*) from public.outpost_staged_chunks")
        .await?;
    Ok((chunks.parse()?, staged.parse()?))
}

/// The direct transport, cut for good (as by a lost network or a killed process) after
/// `stages` staging calls went through.
#[derive(Debug)]
struct CutAfterStages {
    inner: PgTransport,
    left: AtomicUsize,
}

impl Transport for CutAfterStages {
    fn endpoint(&self) -> &str {
        self.inner.endpoint()
    }

    fn user_id(&self) -> &str {
        self.inner.user_id()
    }

    fn call<'a>(
        &'a self,
        function: &'a str,
        args: Value,
    ) -> BoxFuture<'a, outpost_sync::Result<Value>> {
        let staging = function == "outpost_stage" || function == "outpost_push_staged";
        if staging
            && self
                .left
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_err()
        {
            let endpoint = self.endpoint().to_string();
            return Box::pin(async move {
                Err(outpost_sync::Error::Offline {
                    endpoint,
                    detail: "connection cut by the test".into(),
                })
            });
        }
        Transport::call(&self.inner, function, args)
    }
}

#[tokio::test]
async fn a_document_over_the_byte_cap_goes_in_staged_parts_committed_at_once() -> TestResult {
    let db = Db::new(true).await?;
    let u = user();
    let (a, id) = one_long_document(300)?;
    let central = db.pg(&u);
    let change = a.engine.outbox_batch(1)?.changes.remove(0);
    let size = central.push_size(&change).await;

    // Parts of at most a tenth of the document: ten or so staging calls and one commit.
    let mut o = opts(&a);
    o.batch_bytes = size / 10;
    let cut = Central::new(CutAfterStages {
        inner: PgTransport::new(&db.url, &u, Duration::from_secs(10))?,
        left: AtomicUsize::new(4),
    });
    let failed = outpost_sync::sync_once(&a.sync_engine()?, &cut, &o, &mut |_| {}).await;
    assert!(failed.is_err(), "the cut shows: {failed:?}");
    // Four parts are staged, none of the document is visible, and it is still queued.
    let (chunks, staged) = central_rows(&db, &id).await?;
    assert_eq!(chunks, 0, "no reader sees part of a document");
    assert!(staged > 0 && staged < 300, "{staged} chunks staged");
    assert_eq!(
        db.scalar(&format!(
            "select count(*) from public.outpost_documents where id = '{id}'"
        ))
        .await?,
        "0"
    );
    assert_eq!(a.engine.outbox_depth()?, 1);

    // Resumed: the same upload is staged again (replacing the parts already there) and
    // committed; every chunk lands once, and nothing stays staged.
    let report = outpost_sync::sync_once(&a.sync_engine()?, &central, &o, &mut |_| {}).await?;
    assert_eq!(
        (
            report.push_applied,
            report.push_staged,
            report.pushed_chunks
        ),
        (1, 1, 300),
        "{report:?}"
    );
    assert!(report.push_calls >= 11, "{report:?}");
    assert_eq!(central_rows(&db, &id).await?, (300, 0));
    assert_eq!(a.engine.outbox_depth()?, 0);

    // Another device pulls it whole.
    common::settle(&db).await?;
    let b = Device::new()?;
    let pulled =
        outpost_sync::sync_once(&b.sync_engine()?, &central, &opts(&b), &mut |_| {}).await?;
    assert_eq!(
        (pulled.pulled, pulled.pulled_chunks),
        (1, 300),
        "{pulled:?}"
    );
    assert!(b.verify(&central).await?.equal);
    Ok(())
}

#[tokio::test]
async fn over_rest_a_document_too_large_for_a_request_is_staged_in_parts_that_fit() -> TestResult {
    if common::local_only(
        "over_rest_a_document_too_large_for_a_request_is_staged_in_parts_that_fit",
        "it sets the stand-in's body limit",
    ) {
        return Ok(());
    }
    let db = Db::new(true).await?;
    let mut config = db.standin_config();
    config.max_body_bytes = 64 * 1024;
    let shim = outpost_sync::shim::Shim::start_with(config).await?;
    let u = user();
    let central = common::rest(&shim.url, &u);

    // Some 200 vectors: about 500 kB of base64, under the default byte cap but well over the
    // gateway's 64 kB. Refused with 413 in a batch and alone, it is staged in halves of
    // halves until each part fits.
    let (mut a, id) = one_long_document(200)?;
    for n in 0..3 {
        a.put(&format!("notes/{n}.md"), &format!("Note {n}."))?;
    }
    let report =
        outpost_sync::sync_once(&a.sync_engine()?, &central, &opts(&a), &mut |_| {}).await?;
    assert_eq!(
        (report.push_applied, report.push_staged, report.parked),
        (4, 1, 0),
        "{report:?}"
    );
    assert_eq!(central_rows(&db, &id).await?, (200, 0));
    assert!(a.verify(&central).await?.equal);
    Ok(())
}
